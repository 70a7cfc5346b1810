"""End to end: the job's clock runs 10 minutes ahead of the newest sample in a real Prometheus.
The run judges each series at its newest value, finds what a run on time finds, and pushes how
old that value is to a real Pushgateway."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from anomaly_lab import devstack, synth

from anomaly.config import Config, load_config
from anomaly.job.run import run_once
from tests.conftest import Servers, write_config

pytestmark = pytest.mark.e2e

GRID = 1795305600.0 + 2 * 86400 + 14 * 3600  # Tuesday 2026-11-24 14:00 UTC, on the 5m grid
#: The newest sample, scraped 30 s before a grid point (a scrape's phase is not the grid's).
END = GRID - 30.0
#: ai_cost is a rate over 15 minutes: its newest rows hold values, too low, while the samples
#: behind them are late; it is judged where its tenant's other metrics are.
METRICS = ("request_rate", "latency_p95", "error_ratio", "ai_cost")
TRUTH = {("org-01", "request_rate"), ("org-02", "latency_p95")}


@dataclass(frozen=True)
class World:
    stack: devstack.Stack
    config: Config


@pytest.fixture(scope="module")
def world(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    injections = [  # the last 20 minutes of data: a request rate at 0, a latency doubled
        synth.ending_injection("org-01", "request_rate", "outage", end=END, duration_seconds=1200),
        synth.ending_injection(
            "org-02", "latency_p95", "level_shift", end=END, duration_seconds=1200, magnitude=1.0
        ),
    ]
    dataset = synth.generate(4, days=8.0, end=END, seed=5, injections=injections)
    with servers.stack(dataset=dataset, with_alertmanager=False) as stack:
        path = write_config(
            tmp_path_factory.mktemp("late") / "config.yaml",
            stack,
            metrics=[{"name": m, "query": synth.QUERIES[m]} for m in METRICS],
            health={"objectives": [{"metric": "latency_p95", "max": 5.0}]},
        )
        yield World(stack, load_config(path))


def _pushed(stack: devstack.Stack, name: str) -> dict[tuple[str, str | None], float]:
    data = requests.get(f"{stack.pushgateway_url}/api/v1/metrics", timeout=10).json()["data"]
    return {
        (m["labels"]["organization_id"], m["labels"].get("metric")): float(m["value"])
        for group in data
        for m in group.get(name, {}).get("metrics", [])
    }


@pytest.mark.parametrize("ahead", [600.0, 1200.0])
def test_a_run_ahead_of_the_data_finds_what_a_run_on_time_finds(world: World, ahead: float) -> None:
    """10 minutes ahead (the issue's case) and 20 (the newest rows empty for longer than the
    model lets a series miss rows unremarked: read as missing, every series was anomalous)."""
    on_time = run_once(world.config, now=GRID + 5.0, workers=1)
    late = run_once(world.config, now=END + ahead, workers=1)
    flagged = {(f.key.tenant, f.metric) for f in late.anomalies}
    assert flagged == TRUTH == {(f.key.tenant, f.metric) for f in on_time.anomalies}
    down = next(f for f in late.findings if (f.key.tenant, f.metric) == ("org-01", "request_rate"))
    assert down.actual == 0.0 and down.expected > 1.0  # the newest value, not an empty row
    # What the late run pushed: the age of each series' newest point, the newest grid row
    # (the grid ends at the run's time) that still holds the newest sample, which is `ahead`
    # seconds old: Prometheus carries a sample for its 5-minute lookback.
    ages = _pushed(world.stack, "anomaly_data_age_seconds")
    assert len(ages) == 4 * len(METRICS)
    assert set(ages.values()) == {ahead - 300.0}
    assert set(_pushed(world.stack, "anomaly_tenant_data_age_seconds").values()) == {ahead - 300.0}
    detected = _pushed(world.stack, "anomaly_detected")
    assert {k for k, v in detected.items() if v == 1.0} == TRUTH
    health = _pushed(world.stack, "anomaly_health_score")
    assert health[("org-01", None)] < 100.0 and health[("org-02", None)] < 100.0
    assert health[("org-03", None)] == health[("org-04", None)] == 100.0
