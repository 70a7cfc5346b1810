"""End to end: generated data with known anomalies → real Prometheus → `anomaly run --once` →
real Pushgateway (and Prometheus scraping it). Asserts what the servers then hold."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from anomaly_lab import devstack, synth

from anomaly.config import load_config
from anomaly.io.prometheus import PrometheusSource
from anomaly.job.metric import score_metric
from anomaly.job.plan import plan_batches
from anomaly.job.report import MetricOutcome
from anomaly.job.run import _batch_results, process_batch
from tests.conftest import Servers, write_config

pytestmark = pytest.mark.e2e

TENANT = "organization_id"


@dataclass(frozen=True)
class Scenario:
    stack: devstack.Stack
    dataset: synth.Dataset
    truth: set[tuple[str, str]]
    config: Path
    run: subprocess.CompletedProcess[str]


def anomaly_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anomaly.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pushed(stack: devstack.Stack) -> list[dict]:
    """Every metric family the Pushgateway holds, per group."""
    r = requests.get(f"{stack.pushgateway_url}/api/v1/metrics", timeout=10)
    r.raise_for_status()
    return r.json()["data"]


def pushed_samples(stack: devstack.Stack, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for group in pushed(stack):
        family = group.get(name)
        if not family:
            continue
        for m in family["metrics"]:
            out.append((m["labels"], float(m["value"])))
    return out


def last_monday_morning() -> float:
    """The latest Monday 06:00 UTC at least an hour ago: a fixed phase of the week, so that the
    test sees the same data every run, and a hard one (weekends end in every time zone)."""
    now = time.time() - 3600
    monday = math.floor((now - 4 * 86400) / (7 * 86400)) * 7 * 86400 + 4 * 86400  # epoch: Thu
    end = monday + 6 * 3600
    return end if end <= now else end - 7 * 86400


@pytest.fixture(scope="module")
def scenario(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    dataset, truth = synth.evaluation_scenario(n_tenants=24, seed=42, end=last_monday_morning())
    with servers.stack(dataset=dataset, with_alertmanager=False) as stack:
        config = write_config(tmp_path_factory.mktemp("run") / "config.yaml", stack)
        run = anomaly_cli("run", "--once", "--config", str(config), "--at", str(dataset.end))
        yield Scenario(stack, dataset, truth, config, run)


def test_run_succeeds_and_summarises(scenario: Scenario) -> None:
    assert scenario.run.returncode == 0, scenario.run.stderr[-3000:]
    assert "Traceback" not in scenario.run.stderr
    assert "scored 144 series" in scenario.run.stdout
    assert "health (global" in scenario.run.stdout


def test_detection_quality_f1(scenario: Scenario) -> None:
    flagged = {
        (labels[TENANT], labels["metric"])
        for labels, value in pushed_samples(scenario.stack, "anomaly_detected")
        if value == 1.0
    }
    tp = len(flagged & scenario.truth)
    fp = sorted(flagged - scenario.truth)
    fn = sorted(scenario.truth - flagged)
    precision = tp / max(len(flagged), 1)
    recall = tp / len(scenario.truth)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    print(f"\nE2E detection: TP={tp} FP={len(fp)} FN={len(fn)} F1={f1:.3f} FP={fp} FN={fn}")
    assert len(scenario.truth) >= 15
    assert f1 >= 0.9, f"F1 {f1:.3f}: false positives {fp}, missed {fn}"
    assert len(fp) <= 2, f"false positives {fp}"


def test_every_series_has_bands_and_finite_scores(scenario: Scenario) -> None:
    scores = pushed_samples(scenario.stack, "anomaly_score")
    assert len(scores) == 24 * 6
    for labels, value in scores:
        assert 0.0 <= value <= 1.0
        assert labels["metric"] in synth.METRICS
        assert labels.get("team") and labels.get("severity")
    expected = {
        (lab[TENANT], lab["metric"])
        for lab, _ in pushed_samples(scenario.stack, "anomaly_expected_value")
    }
    assert len(expected) == 24 * 6
    lower = {
        (lab[TENANT], lab["metric"]): v
        for lab, v in pushed_samples(scenario.stack, "anomaly_lower_bound")
    }
    upper = {
        (lab[TENANT], lab["metric"]): v
        for lab, v in pushed_samples(scenario.stack, "anomaly_upper_bound")
    }
    assert set(lower) == set(upper) == expected
    assert all(lower[k] <= upper[k] for k in lower)


def test_no_tenant_labels_leak_between_groups(scenario: Scenario) -> None:
    groups = pushed(scenario.stack)
    tenant_groups = [g for g in groups if TENANT in g["labels"]]
    assert len(tenant_groups) == 24
    for g in tenant_groups:
        owner = g["labels"][TENANT]
        for key, family in g.items():
            if key in (
                "labels",
                "last_push_successful",
                "push_time_seconds",
                "push_failure_time_seconds",
            ):
                continue
            for m in family["metrics"]:
                assert m["labels"].get(TENANT) == owner, (owner, key, m["labels"])


def test_health_scores_and_job_series(scenario: Scenario) -> None:
    health = {lab[TENANT]: v for lab, v in pushed_samples(scenario.stack, "anomaly_health_score")}
    assert len(health) == 24
    assert all(0 <= v <= 100 for v in health.values())
    troubled = {t for t, _ in scenario.truth}
    clean = set(health) - troubled
    assert min(health[t] for t in clean) > min(health[t] for t in troubled)
    job = {
        name: pushed_samples(scenario.stack, name)
        for name in (
            "anomaly_job_last_success_timestamp_seconds",
            "anomaly_job_series",
            "anomaly_job_series_failed",
            "anomaly_job_duration_seconds",
        )
    }
    assert job["anomaly_job_series"][0][1] == 144
    assert job["anomaly_job_series_failed"][0][1] == 0
    assert job["anomaly_job_last_success_timestamp_seconds"][0][1] > scenario.dataset.end - 600


def test_prometheus_scrapes_the_results(scenario: Scenario) -> None:
    rows = devstack.wait_for_query(
        scenario.stack.prometheus_url,
        'anomaly_detected{job="anomaly_detector"} == 1',
        timeout_seconds=30,
    )
    flagged = {(r["metric"][TENANT], r["metric"]["metric"]) for r in rows}
    assert flagged and flagged <= {
        (lab[TENANT], lab["metric"])
        for lab, v in pushed_samples(scenario.stack, "anomaly_detected")
        if v == 1.0
    }


def test_second_run_reuses_stored_models_and_replaces_groups(scenario: Scenario) -> None:
    models = scenario.config.parent / "models"
    assert len(list(models.glob("*.npz"))) == 6 + 1  # six detected metrics, one forecast
    before = {p.name: p.stat().st_mtime_ns for p in models.glob("*.npz")}
    run = anomaly_cli(
        "run", "--once", "--config", str(scenario.config), "--at", str(scenario.dataset.end)
    )
    assert run.returncode == 0, run.stderr[-2000:]
    after = {p.name: p.stat().st_mtime_ns for p in models.glob("*.npz")}
    assert before == after, "a warm run must reuse the stored models and forecast"
    assert "0 fitted" in run.stderr
    assert len(pushed_samples(scenario.stack, "anomaly_score")) == 24 * 6


def test_forecasts_and_breach_countdowns_are_pushed(scenario: Scenario) -> None:
    values = {
        (lab[TENANT], lab["horizon"]): v
        for lab, v in pushed_samples(scenario.stack, "anomaly_forecast_value")
    }
    assert {h for _, h in values} == {"1d"}
    assert len(values) == 24
    lower = {
        lab[TENANT]: v for lab, v in pushed_samples(scenario.stack, "anomaly_forecast_lower_bound")
    }
    upper = {
        lab[TENANT]: v for lab, v in pushed_samples(scenario.stack, "anomaly_forecast_upper_bound")
    }
    for (tenant, _), v in values.items():
        assert lower[tenant] <= v <= upper[tenant]
    breach = pushed_samples(scenario.stack, "anomaly_forecast_breach_seconds")
    assert len(breach) == 24
    assert all(v >= 0 and lab["metric"] == "ai_spend_24h" for lab, v in breach)
    thresholds = {v for _, v in pushed_samples(scenario.stack, "anomaly_forecast_threshold")}
    assert thresholds == {100.0}


def test_a_rate_is_read_once_for_its_own_detection_and_the_forecast_it_feeds(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ai_cost (7d, detected) is the rate of the ai_spend_24h forecast (10d): one read of 10d
    serves both, in either config order and in worker processes, with the same results as
    reading each on its own."""
    config = load_config(scenario.config)
    now = scenario.dataset.end
    queries: list[str] = []
    real = PrometheusSource.query_range

    def counting(self: PrometheusSource, query: str, *args: Any, **kwargs: Any) -> Any:
        queries.append(query)
        return real(self, query, *args, **kwargs)

    monkeypatch.setattr(PrometheusSource, "query_range", counting)
    cost, spend = config.metric("ai_cost"), config.metric("ai_spend_24h")
    with PrometheusSource(config.prometheus) as source:
        plan = plan_batches(config, source, now)
        alone = {
            mc.name: score_metric(config, mc, now=now, source=source, store=None)
            for mc in (cost, spend)
        }
        assert queries.count(cost.query) == 2  # its own read, and the forecast's
        for order in ([cost, spend], [spend, cost]):
            reordered = dataclasses.replace(config, metrics=tuple(order))
            queries.clear()
            result = process_batch(reordered, plan, 0, now=now, source=source, store=None)
            assert queries.count(cost.query) == 1
            shared = {o.metric.name: o for o in result.outcomes}
            _assert_same_outcome(shared["ai_cost"], alone["ai_cost"])
            _assert_same_outcome(shared["ai_spend_24h"], alone["ai_spend_24h"])
        # A run of one batch with workers scores metrics side by side: the rate and the
        # forecast it feeds go to the same worker.
        results = list(_batch_results(config, plan, now=now, source=source, store=None, workers=2))
    by_name = {o.metric.name: o for o in results[0].outcomes}
    _assert_same_outcome(by_name["ai_cost"], alone["ai_cost"])
    _assert_same_outcome(by_name["ai_spend_24h"], alone["ai_spend_24h"])


def _assert_same_outcome(a: MetricOutcome, b: MetricOutcome) -> None:
    assert a.error is None and b.error is None
    assert a.frame is not None and b.frame is not None
    assert a.frame.keys == b.frame.keys
    np.testing.assert_array_equal(a.frame.times, b.frame.times)
    np.testing.assert_array_equal(a.frame.values, b.frame.values)
    if b.result is not None:
        assert a.result is not None
        np.testing.assert_array_equal(a.result.score, b.result.score)
    if b.forecast is not None:
        assert a.forecast is not None and a.breach_seconds is not None
        np.testing.assert_array_equal(a.forecast.value, b.forecast.value)
        np.testing.assert_array_equal(a.breach_seconds, b.breach_seconds)
