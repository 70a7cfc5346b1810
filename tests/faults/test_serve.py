"""``anomaly serve`` as a process: a run longer than the schedule's interval never overlaps
the next, missed ticks coalesce into one next run instead of a burst, and SIGTERM or SIGINT
during a run let it finish before the process exits 0.

To stay fast, the process's loop gets a trigger that ticks every second and a cycle that is a
fake that sleeps 1.5 s and logs when it starts and ends (both are parameters of
:func:`anomaly.job.serve.serve`, bound by a wrapper before ``main``); scheduling, locking and
signal handling are the real ones. SIGTERM against the real servers is in
tests/e2e/test_failures.py; the loop in-process is in tests/job/test_serve.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

RUN_SECONDS = 1.5

WRAPPER = """
import functools, sys, time
from apscheduler.triggers.cron import CronTrigger
from anomaly import cli
from anomaly.job import serve
from anomaly.job.report import RunReport

events, seconds = sys.argv[1], float(sys.argv[2])

def slow_cycle(config):
    with open(events, "a") as f:
        f.write(f"start {time.time()}\\n")
    time.sleep(seconds)
    with open(events, "a") as f:
        f.write(f"end {time.time()}\\n")
    return RunReport(started_at=time.time(), evaluated_at=time.time())

serve.serve = functools.partial(  # what `anomaly serve` calls: every second, the fake cycle
    serve.serve, cycle=slow_cycle, trigger=CronTrigger(second="*", timezone="UTC")
)
sys.exit(cli.main(["serve", "--config", sys.argv[3]]))
"""


def _events(path: Path) -> list[tuple[str, float]]:
    if not path.exists():
        return []
    return [(k, float(t)) for k, t in (line.split() for line in path.read_text().splitlines())]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_slow_runs_never_overlap_and_a_signal_lets_the_run_finish(
    tmp_path: Path, signum: signal.Signals
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "prometheus": {"url": "http://127.0.0.1:1"},
                "pushgateway": {"url": "http://127.0.0.1:1"},
                "schedule": "* * * * *",
                "metrics": [{"name": "m", "query": "up"}],
            }
        )
    )
    events = tmp_path / "events"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, str(events), str(RUN_SECONDS), str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Let a run go by, then signal in the middle of one.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            starts = [t for k, t in _events(events) if k == "start"]
            if len(starts) >= 2:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        assert _events(events)[-1][0] == "start", "not in the middle of a run"
        signalled = time.time()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert f"received {signum.name}; finishing the current run" in err and "stopped" in err

    ev = _events(events)
    kinds = [k for k, _ in ev]
    # Strictly alternating start/end: never two runs at once, and the run in progress when the
    # signal came finished (the last event is its end, after the signal).
    assert kinds == ["start", "end"] * (len(ev) // 2), kinds
    assert ev[-1][1] > signalled
    starts = [t for k, t in ev if k == "start"]
    ends = [t for k, t in ev if k == "end"]
    for prev_end, next_start in zip(ends, starts[1:], strict=False):
        # Ticks missed during a run coalesce: the next run starts at the next tick (within
        # ~1 s), once, rather than a burst of catch-up runs back to back.
        assert 0 <= next_start - prev_end < 1.6, (prev_end, next_start)
    for a, b in zip(starts, starts[1:], strict=False):
        assert b - a >= RUN_SECONDS, (a, b)
    # No run started after the signal.
    assert all(t < signalled for t in starts)
