"""The serve loop in-process, on a trigger that ticks every 0.1 s: a failed or crashed cycle
is logged and the next tick runs again; a cycle longer than the interval never overlaps the
next; stopping waits for the run in progress. (``anomaly serve`` as a process, with signals,
is tests/faults/test_serve.py.)"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from apscheduler.triggers.interval import IntervalTrigger

from anomaly.config import Config, config_from_dict
from anomaly.errors import SourceError
from anomaly.job.report import RunReport
from anomaly.job.serve import serve

TICK = IntervalTrigger(seconds=0.1, timezone="UTC")


def _config() -> Config:
    return config_from_dict(
        {
            "prometheus": {"url": "http://127.0.0.1:9"},
            "pushgateway": {"url": "http://127.0.0.1:9"},
            "metrics": [{"name": "m", "query": "up"}],
        }
    )


def _report() -> RunReport:
    return RunReport(started_at=time.time(), evaluated_at=time.time())


def test_a_failed_or_crashed_cycle_is_logged_and_the_next_tick_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = threading.Event()
    calls: list[int] = []

    def cycle(config: Config) -> RunReport:
        calls.append(len(calls))
        if len(calls) == 1:
            raise SourceError("http://127.0.0.1:9: connection refused")
        if len(calls) == 2:
            raise RuntimeError("a bug")
        stop.set()
        return _report()

    with caplog.at_level(logging.INFO, logger="anomaly"):
        serve(_config(), stop, cycle=cycle, trigger=TICK)
    messages = [r.getMessage() for r in caplog.records if r.name == "anomaly.job.serve"]
    failed = messages.index("run failed: http://127.0.0.1:9: connection refused")
    crashed = messages.index("run crashed")
    finished = next(i for i, m in enumerate(messages) if m.startswith("run finished\nscored 0"))
    assert failed < crashed < finished < messages.index("stopped")
    assert len(calls) >= 3


def test_runs_never_overlap_and_stopping_waits_for_the_run_in_progress() -> None:
    stop = threading.Event()
    events: list[tuple[str, float]] = []

    def slow(config: Config) -> RunReport:
        events.append(("start", time.monotonic()))
        if sum(kind == "start" for kind, _ in events) == 3:
            stop.set()  # stop in the middle of the third run
        time.sleep(0.35)
        events.append(("end", time.monotonic()))
        return _report()

    serve(_config(), stop, cycle=slow, trigger=TICK, initial_run=False)
    stopped = time.monotonic()
    kinds = [kind for kind, _ in events]
    assert kinds == ["start", "end"] * 3, kinds  # strictly alternating; the third finished
    assert events[-1][1] <= stopped
    starts = [t for kind, t in events if kind == "start"]
    ends = [t for kind, t in events if kind == "end"]
    for prev_end, next_start in zip(ends, starts[1:], strict=False):
        # Ticks missed during a run coalesce: the next run starts at the next tick, once.
        assert 0 <= next_start - prev_end < 0.3, (prev_end, next_start)
