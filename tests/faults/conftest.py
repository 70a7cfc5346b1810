"""Fixtures of the fault tests: one world of real servers per session, and the CLI run
in-process (its exit code, stdout and stderr) or as a subprocess."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import requests

from anomaly import cli
from tests.conftest import Servers
from tests.faults.world import World, run_world


@pytest.fixture(scope="session")
def world(servers: Servers) -> Iterator[World]:
    with run_world(servers) as w:
        yield w


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("anomaly:")]

    def assert_fails_in_one_line(self, *fragments: str) -> str:
        """Exit 1, exactly one ``anomaly: ...`` line holding every fragment, no traceback."""
        assert self.code == 1, (self.code, self.err[-3000:])
        assert "Traceback" not in self.err, self.err
        assert len(self.error_lines) == 1, self.err
        (line,) = self.error_lines
        for f in fragments:
            assert f in line, (f, line)
        return line


@pytest.fixture
def anomaly(capfd: pytest.CaptureFixture[str]) -> Iterator[Callable[..., Result]]:
    """``anomaly(*argv)`` runs ``anomaly.cli.main`` in this process (it is the CLI minus the
    interpreter start-up); an unexpected exception propagates and fails the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(*argv: str) -> Result:
        capfd.readouterr()
        t0 = time.monotonic()
        try:
            code = cli.main(list(argv))
        finally:
            seconds = time.monotonic() - t0
            for h in root.handlers[:]:
                if h not in handlers:
                    root.removeHandler(h)
            for h in handlers:
                if h not in root.handlers:
                    root.addHandler(h)
            root.setLevel(level)
        out, err = capfd.readouterr()
        return Result(code, out, err, seconds)

    yield run


def anomaly_subprocess(*argv: str, timeout: float = 300) -> Result:
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "anomaly.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


# --------------------------------------------------------------------------- the Pushgateway


# The Pushgateway's own series and the job's wall-clock push time, which differ in every run.
_PUSHGATEWAY_OWN = {
    "labels",
    "push_time_seconds",
    "push_failure_time_seconds",
    "anomaly_tenant_last_run_timestamp_seconds",
}
Snapshot = dict[frozenset[tuple[str, str]], dict[tuple[str, frozenset[tuple[str, str]]], float]]


def snapshot(pushgateway_url: str, job: str) -> Snapshot:
    """Every group of ``job``: grouping labels → {(series name, labels): value}, without the
    Pushgateway's own ``push_time_seconds``/``push_failure_time_seconds`` and the job's
    ``anomaly_tenant_last_run_timestamp_seconds``."""
    r = requests.get(f"{pushgateway_url}/api/v1/metrics", timeout=10)
    r.raise_for_status()
    out: Snapshot = {}
    for group in r.json()["data"]:
        if group["labels"].get("job") != job:
            continue
        series = {}
        for name, family in group.items():
            if not isinstance(family, dict) or name in _PUSHGATEWAY_OWN:
                continue
            for m in family["metrics"]:
                series[(name, frozenset(m["labels"].items()))] = float(m["value"])
        out[frozenset(group["labels"].items())] = series
    return out


def samples(snap: Snapshot, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(labels), value)
        for series in snap.values()
        for (n, labels), value in series.items()
        if n == name
    ]
