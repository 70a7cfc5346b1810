"""Tests for anomaly.io.store: round trips, safe file names, bad files, no pickle, atomicity, locking."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import multiprocessing
import os
import pickle
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anomaly.errors import StoreError
from anomaly.io.store import FORMAT_VERSION, ModelStore


def sample_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "level": rng.normal(size=(288, 3)),
        "counts": np.arange(5, dtype=np.int32),
        "mask": np.array([True, False, True]),
        "names": np.array(["ä", "b/c", 'q"']),
        "scalar": np.float64(2.5),
    }


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        x, y = np.asarray(a[k]), b[k]
        assert x.dtype == y.dtype and x.shape == y.shape, k
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- round trips


def test_save_then_load_round_trips_arrays_and_meta(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    meta = {
        "fitted_at": 1.7e9,
        "keys": ["a", "b"],
        "params": {"step_seconds": 300.0},
        "nan": float("nan"),
    }
    store.save("error_ratio", sample_arrays(), meta)
    loaded = store.load("error_ratio")
    assert loaded is not None
    arrays, got = loaded
    assert_same(sample_arrays(), arrays)
    assert got["keys"] == ["a", "b"] and got["params"] == {"step_seconds": 300.0}
    assert np.isnan(got["nan"])
    entry = store.load_entry("error_ratio")
    assert entry is not None and entry.created_at > 1.7e9 and entry.package_version
    # The meta alone (deciding whether a refit is due reads no arrays).
    light = store.load_entry("error_ratio", arrays=False)
    assert light is not None and light.arrays == {} and light.meta["keys"] == ["a", "b"]
    only_meta = store.load_meta("error_ratio")
    assert only_meta is not None and only_meta["params"] == {"step_seconds": 300.0}
    assert only_meta["fitted_at"] == 1.7e9 and store.load_meta("other") is None


def test_missing_key_is_none_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert ModelStore(tmp_path / "nowhere").load("x") is None
    assert caplog.records == []


def test_save_replaces_and_delete_removes(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.save("k", {"a": np.zeros(3)}, {"v": 1})
    store.save("k", {"b": np.ones(2)}, {"v": 2})
    arrays, meta = store.load("k") or ({}, {})
    assert list(arrays) == ["b"] and meta == {"v": 2}
    store.delete("k")
    assert store.load("k") is None
    store.delete("k")  # idempotent


def test_array_names_that_collide_with_numpy_parameters_are_fine(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.save("k", {"file": np.ones(1), "allow_pickle": np.zeros(1)}, {})
    arrays, _ = store.load("k") or ({}, {})
    assert set(arrays) == {"file", "allow_pickle"}


@pytest.mark.parametrize(
    "key", ["", "../../etc/passwd", "a/b\\c", "x\x00y", "ünï €", "." * 300, ".lock"]
)
def test_any_key_maps_into_the_store_directory(tmp_path: Path, key: str) -> None:
    store = ModelStore(tmp_path)
    f = store.file_for(key)
    assert f.parent == tmp_path and f.name.endswith(".npz") and len(f.name) < 100
    store.save(key, {"a": np.arange(3)}, {"key": key})
    arrays, meta = store.load(key) or ({}, {})
    assert meta == {"key": key}
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".npz"] == [f.name]


@settings(max_examples=200)
@given(st.text(), st.text())
def test_distinct_keys_get_distinct_files(a: str, b: str) -> None:
    store = ModelStore("/models")
    assert (store.file_for(a) == store.file_for(b)) == (a == b)


def test_keys_differing_only_in_unsafe_characters_do_not_collide(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.save("a/b", {"x": np.array([1])}, {})
    store.save("a_b", {"x": np.array([2])}, {})
    assert (store.load("a/b") or ({}, {}))[0]["x"].tolist() == [1]
    assert (store.load("a_b") or ({}, {}))[0]["x"].tolist() == [2]


# --------------------------------------------------------------------------- caller errors


def test_object_arrays_are_refused_on_save(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="object dtype"):
        ModelStore(tmp_path).save("k", {"a": np.array([{"x": 1}], dtype=object)}, {})


@pytest.mark.parametrize("name", ["", "__meta__", "a/b"])
def test_bad_array_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="array name"):
        ModelStore(tmp_path).save("k", {name: np.zeros(1)}, {})


def test_non_json_meta_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JSON"):
        ModelStore(tmp_path).save("k", {"a": np.zeros(1)}, {"when": object()})
    assert list(tmp_path.glob("*.npz")) == []


# --------------------------------------------------------------------------- bad content


def write_npz(path: Path, members: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in members.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=True)
            zf.writestr(f"{name}.npy", buf.getvalue())


def envelope(key: str, **over: Any) -> np.ndarray:
    doc = {
        "format": "anomaly-model-store",
        "format_version": FORMAT_VERSION,
        "key": key,
        "created_at": 0.0,
        "package_version": "x",
        "meta": {},
    }
    doc.update(over)
    return np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)


def _truncated(store: ModelStore, f: Path) -> None:
    store.save("k", sample_arrays(), {"a": 1})
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])


def _flipped(store: ModelStore, f: Path) -> None:
    store.save("k", sample_arrays(), {"a": 1})
    data = bytearray(f.read_bytes())
    for i in range(100, len(data) - 100, 97):
        data[i] ^= 0xFF
    f.write_bytes(bytes(data))


BAD_FILES = {
    "empty": lambda s, f: f.write_bytes(b""),
    "garbage": lambda s, f: f.write_bytes(os.urandom(4096)),
    "truncated": _truncated,
    "bit flips": _flipped,
    "plain npy": lambda s, f: np.save(f.open("wb"), np.arange(3)),
    "foreign npz": lambda s, f: write_npz(f, {"a": np.arange(3)}),
    "meta not json": lambda s, f: write_npz(
        f, {"__meta__": np.frombuffer(b"{nope", dtype=np.uint8)}
    ),
    "meta wrong dtype": lambda s, f: write_npz(f, {"__meta__": np.arange(3.0)}),
    "other format": lambda s, f: write_npz(f, {"__meta__": envelope("k", format="something-else")}),
    "wrong version": lambda s, f: write_npz(
        f, {"__meta__": envelope("k", format_version=FORMAT_VERSION + 1)}
    ),
    "other key": lambda s, f: write_npz(f, {"__meta__": envelope("other")}),
    "meta not a dict": lambda s, f: write_npz(f, {"__meta__": envelope("k", meta=[1, 2])}),
    "a directory": lambda s, f: f.mkdir(),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_files_load_as_none_with_a_warning_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    store = ModelStore(tmp_path)
    f = store.file_for("k")
    BAD_FILES[kind](store, f)
    with caplog.at_level(logging.WARNING, logger="anomaly.io.store"):
        assert store.load("k") is None
    assert any(f.name in r.getMessage() for r in caplog.records), caplog.text
    if kind == "a directory":
        return
    store.save("k", {"a": np.ones(2)}, {})  # and the caller can refit over it
    assert store.load("k") is not None


class Planted:
    """Unpickling this creates a file: the proof that a payload ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def test_a_planted_pickle_in_an_npz_is_never_executed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ModelStore(tmp_path)
    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = Planted(str(marker))
    # A well-formed envelope, so the loader gets as far as the array members.
    write_npz(store.file_for("k"), {"__meta__": envelope("k"), "state": payload})
    with pickle.loads(pickle.dumps(Planted(str(tmp_path / "selftest")))):
        pass
    assert (tmp_path / "selftest").exists()  # the payload really would work if unpickled
    with caplog.at_level(logging.WARNING):
        assert store.load("k") is None
    assert not marker.exists()


def test_a_raw_pickle_file_is_never_executed(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    marker = tmp_path / "pwned"
    store.file_for("k").write_bytes(pickle.dumps(Planted(str(marker))))
    assert store.load("k") is None
    assert not marker.exists()


# --------------------------------------------------------------------------- write failures


@pytest.mark.parametrize(
    "where,err", [("fsync", errno.ENOSPC), ("replace", errno.EACCES), ("mkstemp", errno.EACCES)]
)
def test_write_failures_raise_store_error_and_keep_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, err: int
) -> None:
    store = ModelStore(tmp_path)
    store.save("k", {"a": np.zeros(3)}, {"v": "old"})

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(err, os.strerror(err))

    target = {
        "fsync": (os, "fsync"),
        "replace": (os, "replace"),
        "mkstemp": (__import__("tempfile"), "mkstemp"),
    }[where]
    monkeypatch.setattr(*target, fail)
    with pytest.raises(StoreError) as info:
        store.save("k", {"a": np.ones(3)}, {"v": "new"})
    monkeypatch.undo()
    msg = str(info.value)
    assert str(store.file_for("k")) in msg and os.strerror(err) in msg and "\n" not in msg
    arrays, meta = store.load("k") or ({}, {})
    assert meta == {"v": "old"} and arrays["a"].tolist() == [0, 0, 0]
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_unwritable_model_dir_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match=str(blocker / "models")):
        ModelStore(blocker / "models").save("k", {"a": np.zeros(1)}, {})


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` made unwritable: by its mode, or, for root (whom modes do not stop), through a
    read-only bind mount of it."""
    if os.geteuid() != 0:
        path.chmod(0o500)
        try:
            yield path
        finally:
            path.chmod(0o700)
        return
    view = path.parent / (path.name + "-ro")
    view.mkdir()
    mounted = subprocess.run(
        ["mount", "--bind", "-o", "ro", str(path), str(view)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"root cannot make a read-only mount here: {mounted.stderr.decode().strip()}")
    try:
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_read_only_directory_is_a_store_error(tmp_path: Path) -> None:
    models = tmp_path / "models"
    ModelStore(models).save("k", {"a": np.zeros(1)}, {})
    with read_only(models) as path:
        store = ModelStore(path)
        with pytest.raises(StoreError, match="Permission denied|Read-only file system"):
            store.save("k", {"a": np.ones(1)}, {})
        assert store.load("k") is not None


# --------------------------------------------------------------------------- concurrency


def _hammer(path: str, worker: int, rounds: int, queue: Any) -> None:
    store = ModelStore(path)
    problems = []
    for i in range(rounds):
        value = worker * 1000 + i
        store.save("shared", {"v": np.full(20000, value, dtype=np.int64)}, {"value": value})
        loaded = store.load("shared")
        if loaded is None:
            problems.append(f"{worker}/{i}: load returned None")
            continue
        arrays, meta = loaded
        if not (arrays["v"] == meta["value"]).all():
            problems.append(f"{worker}/{i}: arrays and meta disagree")
    queue.put(problems)


def test_two_processes_share_a_store(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path), w, 40, queue)) for w in (1, 2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert results == [[], []]
    arrays, meta = ModelStore(tmp_path).load("shared") or ({}, {})
    assert (arrays["v"] == meta["value"]).all()
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
