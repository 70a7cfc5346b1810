"""A run's progress is logged as the work happens: a line per metric of each batch and per
batch as each finishes (from worker processes too), the metrics' totals, and a last line."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import pytest
from anomaly_lab import synth

from anomaly.config import load_config
from anomaly.job.plan import BatchPlan, Shard
from anomaly.job.report import RunReport
from anomaly.job.run import AUTO_WORKERS_MIN_SERIES, auto_workers, run_once
from tests.conftest import write_config
from tests.job.conftest import World

N_METRICS = 7  # config.yaml's
N_BATCHES = 4  # four tenants, one series each per batch at most


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_lines_appear_in_order_for_a_multi_batch_run(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture, workers: int
) -> None:
    config = load_config(
        write_config(tmp_path / "config.yaml", world.stack, scale={"batch_series": 1})
    )
    with caplog.at_level(logging.INFO, logger="anomaly"):
        report = run_once(config, now=world.dataset.end, workers=workers)
    assert report.batches == N_BATCHES
    records = [r for r in caplog.records if r.name.startswith("anomaly.job")]
    lines = [r.getMessage() for r in records]

    def where(pattern: str) -> list[int]:
        return [i for i, line in enumerate(lines) if re.fullmatch(pattern, line)]

    batches = range(1, N_BATCHES + 1)
    done = [
        where(rf"batch {b}/{N_BATCHES}: [\d,]+ series, [\d,]+ anomalies, [\d.]+s") for b in batches
    ]
    assert all(len(at) == 1 for at in done), lines
    done_at = [at[0] for at in done]
    metrics = [where(rf"batch {b}/{N_BATCHES}: metric \w+: [\d,]+ series, .*") for b in batches]
    for b, at, metric_at in zip(batches, done_at, metrics, strict=True):
        # Every metric of a batch with tenants (all of them have every metric), each logged
        # before its batch's line.
        has_series = not lines[at].startswith(f"batch {b}/{N_BATCHES}: 0 series")
        assert len(metric_at) == (N_METRICS if has_series else 0), lines
        assert all(i < at for i in metric_at)
    if workers == 1:  # one process: batch after batch
        assert done_at == sorted(done_at)
        for at, metric_at in zip(done_at, metrics[1:], strict=False):
            assert all(at < i for i in metric_at)
    else:  # the workers' lines reached this process's log as records of theirs
        assert {records[at].processName for at in done_at}.isdisjoint({"MainProcess"})
    totals = where(rf"\[\d/{N_METRICS}\] metric \w+: [\d,]+ series, .*")
    assert len(totals) == N_METRICS
    assert max(done_at) < min(totals) and max(totals) < len(lines) - 1
    assert lines[-1].startswith(f"run finished: {report.series_scored} series in 4 batches, ")


def test_workers_started_from_another_thread_give_the_same_run(
    world: World, tmp_path: Path
) -> None:
    """``serve`` runs cycles in APScheduler's thread, where workers start from a fork server
    (``run --once`` forks from the main thread): both give the same findings and health."""
    config = load_config(
        write_config(tmp_path / "config.yaml", world.stack, scale={"batch_series": 1})
    )
    in_main = run_once(config, now=world.dataset.end, workers=2)
    reports: list[RunReport] = []
    thread = threading.Thread(
        target=lambda: reports.append(run_once(config, now=world.dataset.end, workers=2))
    )
    thread.start()
    thread.join(timeout=300)
    (in_thread,) = reports

    def found(report: RunReport) -> list[tuple[str, str | None, float, bool]]:
        return sorted((f.metric, f.key.tenant, f.score, f.is_anomaly) for f in report.findings)

    assert in_thread.batches == in_main.batches == N_BATCHES
    assert found(in_thread) == found(in_main) and found(in_main)
    assert [(h.tenant, h.score) for h in in_thread.health] == [
        (h.tenant, h.score) for h in in_main.health
    ]


def test_a_replay_past_the_newest_sample_still_runs_in_batches(
    world: World, tmp_path: Path
) -> None:
    """`--at` half an hour after the data ends (beyond Prometheus' 5-minute lookback): the run
    still reads its tenants in batches and pushes one group per batch, not a whole read with
    one group per tenant."""
    config = load_config(
        write_config(
            tmp_path / "config.yaml",
            world.stack,
            metrics=[{"name": "latency_p95", "query": synth.QUERIES["latency_p95"]}],
            health={"objectives": []},
            pushgateway={"url": world.stack.pushgateway_url, "job": "replay_after_end"},
            scale={"batch_series": 1},
        )
    )
    report = run_once(config, now=world.dataset.end + 1800, workers=1)
    assert report.batches == N_BATCHES
    assert report.series_scored == len(world.dataset.tenants)
    assert report.push is not None
    tenant_groups = [g for g in report.push.groups_pushed if g]  # {}: the job's own group
    assert tenant_groups and all(g.keys() == {"tenant_group"} for g in tenant_groups)
    assert all(g["tenant_group"].endswith("-of-4") for g in tenant_groups)


# --------------------------------------------------------------------------- workers: auto


def _plan(**series: int) -> BatchPlan:
    return BatchPlan(Shard(), None, series, {})


def test_auto_workers_keep_a_small_run_in_one_process() -> None:
    assert auto_workers(_plan(a=4, b=4), cpus=8) == 1
    assert auto_workers(_plan(a=AUTO_WORKERS_MIN_SERIES - 1), cpus=8) == 1
    assert (
        auto_workers(_plan(a=AUTO_WORKERS_MIN_SERIES // 2, b=AUTO_WORKERS_MIN_SERIES), cpus=8) == 8
    )
    assert auto_workers(_plan(a=10_000), cpus=200) == 64  # scale.workers' ceiling
    assert 1 <= auto_workers(_plan(a=10_000)) <= 64  # this machine's CPUs


def test_a_small_run_with_default_workers_starts_no_process(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`scale.workers` unset (auto) on a machine of 8 CPUs: a run of 28 series does its work
    in the calling process, and says so."""
    monkeypatch.setattr("anomaly.job.run.available_cpus", lambda: 8)

    def no_pool(n: int) -> None:
        raise AssertionError(f"a small run started {n} worker processes")

    monkeypatch.setattr("anomaly.job.run._worker_pool", no_pool)
    config = load_config(write_config(tmp_path / "config.yaml", world.stack))
    assert config.scale.workers is None
    with caplog.at_level(logging.INFO, logger="anomaly"):
        report = run_once(config, now=world.dataset.end)
    assert report.series_scored == 4 * (N_METRICS - 1)  # ai_spend_24h is forecast only
    assert "1 process (scale.workers: auto, 28 series: fewer than 500 run in one)" in [
        r.getMessage() for r in caplog.records
    ]


def test_a_large_run_with_default_workers_uses_the_cpus_available(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Auto on 2 CPUs with a run deemed large: its metrics are scored in 2 worker processes."""
    monkeypatch.setattr("anomaly.job.run.available_cpus", lambda: 2)
    monkeypatch.setattr("anomaly.job.run.AUTO_WORKERS_MIN_SERIES", 10)
    config = load_config(write_config(tmp_path / "config.yaml", world.stack))
    with caplog.at_level(logging.INFO, logger="anomaly"):
        run_once(config, now=world.dataset.end)
    lines = {r.getMessage(): r.processName for r in caplog.records}
    assert "2 worker processes (scale.workers: auto, 2 CPUs available)" in lines
    metric_lines = [p for line, p in lines.items() if re.match(r"\[\d/\d\] metric ", line)]
    assert metric_lines and "MainProcess" not in metric_lines
