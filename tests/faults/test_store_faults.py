"""The model store under ``anomaly run --once`` against the real servers: tampered, truncated
and foreign files, and planted pickle payloads, mean a refit and never code execution; two
concurrent runs on one store both succeed; a full disk is one clear error line, after the
tenants' scores were pushed (detection goes on; the job's own group is held back, so its last
success ages and AnomalyJobStale fires).

The store's own unit tests (tests/test_store.py) cover the same at the library level.
"""

from __future__ import annotations

import errno
import os
import pickle
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from anomaly.io.store import ModelStore
from tests.faults.conftest import Result, samples, snapshot
from tests.faults.world import TENANT, World, config_for

pytestmark = pytest.mark.e2e

KEY = "latency_p95"  # the store key of the one metric the runs score


class Payload:
    """Unpickling this creates ``path``: proof that a pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (os.mkdir, (str(self.path),))


def _tamper(f: Path, marker: Path) -> None:
    data = bytearray(f.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0x5A
    f.write_bytes(bytes(data))


def _truncate(f: Path, marker: Path) -> None:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _foreign(f: Path, marker: Path) -> None:
    # A valid .npz, but nobody's model.
    with zipfile.ZipFile(f, "w") as zf, zf.open("weights.npy", "w") as m:
        np.lib.format.write_array(m, np.arange(5.0))


def _other_key(f: Path, marker: Path) -> None:
    store = ModelStore(f.parent)
    store.save("someone_else", {"x": np.zeros(3)}, {"fitted_at": 0})
    os.replace(store.file_for("someone_else"), f)


def _raw_pickle(f: Path, marker: Path) -> None:
    f.write_bytes(pickle.dumps(Payload(marker)))


def _pickle_in_npz(f: Path, marker: Path) -> None:
    arr = np.empty(1, dtype=object)
    arr[0] = Payload(marker)
    with open(f, "wb") as out:
        np.savez(out, __meta__=arr, state=arr)


@pytest.mark.parametrize(
    "spoil",
    [_tamper, _truncate, _foreign, _other_key, _raw_pickle, _pickle_in_npz],
    ids=["tampered", "truncated", "foreign", "other-key", "raw-pickle", "pickle-in-npz"],
)
def test_a_bad_model_file_means_a_refit_never_code_execution(
    world: World,
    tmp_path: Path,
    anomaly: Callable[..., Result],
    spoil: Callable[[Path, Path], None],
) -> None:
    job = "faults_store_bad"
    config = config_for(tmp_path / "c.yaml", world, job=job)
    args = ("run", "--once", "--config", str(config), "--at", str(world.end))
    first = anomaly(*args)
    assert first.code == 0, first.err[-3000:]
    f = ModelStore(tmp_path / "models").file_for(KEY)
    assert f.is_file()
    marker = tmp_path / "pwned"
    spoil(f, marker)

    result = anomaly(*args)
    assert result.code == 0, result.err[-3000:]
    assert not marker.exists(), "a planted pickle was executed"
    warnings = [line for line in result.err.splitlines() if str(f) in line]
    assert warnings and "refitted" in warnings[0], result.err
    assert "3 fitted" in result.err  # every series refitted
    assert ModelStore(tmp_path / "models").load(KEY) is not None  # a good file replaced it
    scored = samples(snapshot(world.stack.pushgateway_url, job), "anomaly_score")
    assert {lab[TENANT] for lab, _ in scored} == set(world.normal.tenants)


def test_two_concurrent_runs_on_one_store_both_succeed(world: World, tmp_path: Path) -> None:
    config = config_for(tmp_path / "c.yaml", world, job="faults_store_concurrent")
    argv = [sys.executable, "-m", "anomaly.cli", "run", "--once", "--config", str(config)]
    argv += ["--at", str(world.end)]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    for code, err in outcomes:
        assert code == 0, err[-3000:]
        assert "Traceback" not in err
    models = tmp_path / "models"
    assert ModelStore(models).load(KEY) is not None
    assert not [p for p in models.iterdir() if p.suffix == ".tmp"]  # no temp file left


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A full 64 KiB tmpfs (root only); else the test skips, and the in-process ENOSPC test
    below still runs."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        (mnt / "models").mkdir()
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _full_disk_line(result: Result, where: Path, world: World, job: str) -> None:
    line = result.assert_fails_in_one_line(
        "cannot", str(where), "No space left on device", "scores of this run were pushed"
    )
    assert line.startswith("anomaly: cannot write model file") or line.startswith(
        "anomaly: cannot create model directory"
    ), line
    snap = snapshot(world.stack.pushgateway_url, job)
    scored = samples(snap, "anomaly_score")
    assert {lab[TENANT] for lab, _ in scored} == set(world.normal.tenants)
    assert not samples(snap, "anomaly_job_last_success_timestamp_seconds")


def test_a_full_disk_is_one_clear_error(
    world: World, tmp_path: Path, anomaly: Callable[..., Result], tiny_disk: Path
) -> None:
    models = tiny_disk / "models"
    job = "faults_store_full"
    config = config_for(tmp_path / "c.yaml", world, job=job, model_dir=str(models))
    result = anomaly("run", "--once", "--config", str(config), "--at", str(world.end))
    _full_disk_line(result, models, world, job)
    assert not [p for p in models.iterdir() if p.suffix == ".tmp"]


def test_enospc_while_writing_is_one_clear_error(
    world: World,
    tmp_path: Path,
    anomaly: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("anomaly.io.store._write_npz", full)
    job = "faults_store_enospc"
    config = config_for(tmp_path / "c.yaml", world, job=job)
    result = anomaly("run", "--once", "--config", str(config), "--at", str(world.end))
    _full_disk_line(result, tmp_path / "models", world, job)
    assert not [p for p in (tmp_path / "models").iterdir() if p.suffix == ".tmp"]
