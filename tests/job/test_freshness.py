"""Late data is not "normal": a series whose newest rows are empty because its data arrives
late is judged up to its newest value, within ``detection.max_data_age``; beyond it the series
is stale and its empty rows are judged as they are. Every series' age is reported."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from anomaly_lab import synth

from anomaly.config import MetricConfig, config_from_dict
from anomaly.errors import ConfigError
from anomaly.frame import build_frame
from anomaly.io.prometheus import RawSeries
from anomaly.job import export
from anomaly.job.freshness import Freshness, align_tenants, freshness
from anomaly.job.plan import BatchPlan, Shard
from anomaly.job.report import MetricOutcome
from anomaly.job.run import process_batch
from anomaly.models.scoring import ScoreResult

STEP = 300.0
END = 1795305600.0 + 2 * 86400 + 14 * 3600  # Tuesday 2026-11-24 14:00 UTC


def _grid(n: int = 400) -> np.ndarray:
    return END - STEP * np.arange(n - 1, -1, -1, dtype=float)


# --------------------------------------------------------------------------- freshness()


def test_a_late_regular_series_is_judged_up_to_its_newest_value() -> None:
    times = _grid()
    values = np.ones((times.size, 5))
    values[-2:, 1] = np.nan  # late by two rows: judged two rows back
    values[-7:, 2] = np.nan  # newest value 35 minutes old: stale
    values[:, 3] = np.nan
    values[::12, 3] = 1.0  # sampled hourly: its empty rows are its normal
    values[-12:, 3] = np.nan
    values[:, 4] = np.nan  # nothing at all
    now = END + 90.0
    fresh = freshness(times, values, now, 1800.0)
    assert fresh.shift.tolist() == [0, 2, 0, 0, 0]
    assert fresh.newest.tolist() == [399, 397, 392, 384, -1]
    np.testing.assert_allclose(fresh.age_seconds[:4], [90.0, 690.0, 2190.0, 4590.0])
    assert math.isnan(fresh.age_seconds[4])
    # max_data_age 0: no series is late, the grid's newest rows are judged as they are.
    assert freshness(times, values, now, 0.0).shift.tolist() == [0] * 5


def test_an_old_gap_does_not_make_a_series_sparse() -> None:
    """A two-hour outage yesterday leaves a series regular: today's empty rows are late data."""
    times = _grid(600)
    values = np.ones((times.size, 1))
    values[-300:-276, 0] = np.nan
    values[-3:, 0] = np.nan
    assert freshness(times, values, END, 1800.0).shift.tolist() == [3]


def test_a_tenant_s_series_are_judged_as_far_back_as_most_of_them_are_late() -> None:
    """Tenant a: three metrics two rows late, a rate over a range that still answers (its
    newest rows hold values), and a sparse one. The rate is judged two rows back, aged as
    that row; the sparse one keeps its rows. Tenant b: one series without its newest row, one
    on time: no majority, so the first has stopped (a p95 with no requests to measure) and is
    judged at the grid's newest row, where it is out."""
    times = _grid()
    plain = np.ones((times.size, 2))
    plain[-2:, 0] = np.nan  # a: late
    plain[-1:, 1] = np.nan  # b: late by one
    rate = np.ones((times.size, 3))  # a, b, and a series without a tenant
    sparse = np.full((times.size, 1), np.nan)
    sparse[::6, 0] = 1.0
    parts = [freshness(times, v, END + 10.0, 1800.0) for v in (plain, plain, plain, rate, sparse)]
    parts[1] = parts[2] = freshness(times, plain[:, :1], END + 10.0, 1800.0)
    tenants = [["a", "b"], ["a"], ["a"], ["a", "b", None], ["a"]]
    aligned = align_tenants(tenants, parts)
    assert [p.shift.tolist() for p in aligned] == [[2, 0], [2], [2], [2, 0, 0], [0]]
    assert aligned[3].age_seconds.tolist() == [610.0, 10.0, 10.0]
    assert aligned[4].age_seconds.tolist() == parts[4].age_seconds.tolist()


def test_max_data_age_is_a_duration_and_zero_turns_it_off() -> None:
    base = {
        "prometheus": {"url": "http://127.0.0.1:9"},
        "pushgateway": {"url": "http://127.0.0.1:9"},
        "metrics": [{"name": "m", "query": "m"}],
    }
    assert config_from_dict(base).detection.max_data_age_seconds == 1800.0
    for raw, seconds in (("1h", 3600.0), (0, 0.0), ("0s", 0.0)):
        config = config_from_dict({**base, "detection": {"max_data_age": raw}})
        assert config.detection.max_data_age_seconds == seconds
    with pytest.raises(ConfigError, match=r"detection\.max_data_age"):
        config_from_dict({**base, "detection": {"max_data_age": "soon"}})


# --------------------------------------------------------------------------- findings


def test_findings_of_a_late_series_are_its_newest_points() -> None:
    """Series 0 is fresh, series 1 two rows late: each is judged on the rows since the previous
    run ending at its own newest point, where its band and actual value are read, and its
    recent trouble is weighed from there."""
    times = _grid(12)
    values = np.tile(np.arange(12, dtype=float)[:, None], (1, 2))
    values[-2:, 1] = np.nan
    frame = build_frame(
        "m",
        [({"organization_id": t}, times, values[:, j]) for j, t in enumerate(("a", "b"))],
        times,
        "organization_id",
    )
    score = np.zeros((12, 2))
    score[-1, 0] = 0.9  # fresh series, flagged at the grid's newest row
    score[-3, 1] = 0.8  # late series, flagged at its newest value
    score[-1, 1] = 0.95  # its empty newest row: not judged
    expected = np.tile(np.arange(12, dtype=float)[:, None] + 100.0, (1, 2))
    result = ScoreResult(
        score, score >= 0.5, expected, expected - 1, expected + 1, np.ones(2, bool), [None] * 2
    )
    outcome = MetricOutcome(
        MetricConfig(name="m", query="m"),
        frame=frame,
        result=result,
        n_evidence=1,
        freshness=freshness(times, values, END + 30.0, 1800.0),
    )
    a, b = outcome.findings()
    assert (a.score, a.is_anomaly, a.actual, a.expected) == (0.9, True, 11.0, 111.0)
    assert (b.score, b.is_anomaly, b.actual, b.expected) == (0.8, True, 9.0, 109.0)
    assert b.recent == pytest.approx(0.8)  # flagged at its newest point: in full
    assert (a.data_age_seconds, b.data_age_seconds) == (30.0, 630.0)
    labels = export.series_labels(outcome.metric, b.key)
    assert export.Sample("anomaly_data_age_seconds", labels, 630.0) in export.finding_samples(
        outcome.metric, [b]
    )


def test_without_freshness_the_grid_s_newest_row_is_judged() -> None:
    times = _grid(12)
    frame = build_frame("m", [({"t": "a"}, times, np.ones(12))], times, None)
    score = np.zeros((12, 1))
    score[-1] = 0.7
    band = np.ones((12, 1))
    result = ScoreResult(score, score >= 0.5, band, band, band, np.ones(1, bool), [None])
    outcome = MetricOutcome(MetricConfig(name="m", query="m"), frame=frame, result=result)
    (found,) = outcome.findings()
    assert found.is_anomaly and math.isnan(found.data_age_seconds)
    assert Freshness.fresh(1).shift.tolist() == [0]


# --------------------------------------------------------------------------- a run's step


class _LateSource:
    """Prometheus answering from generated data in which each tenant's samples end at its own
    time (``None``: a tenant's data is cut nowhere); an empty range is no series, as there."""

    def __init__(self, dataset: synth.Dataset, ends: dict[str, float]) -> None:
        self.dataset, self.ends = dataset, ends

    def query_range(
        self, query: str, start: float, end: float, step_seconds: float
    ) -> list[RawSeries]:
        metric = next(m for m, q in synth.QUERIES.items() if q == query)
        ts = self.dataset.timestamps
        out = []
        for tenant in self.dataset.tenants:
            values = self.dataset.get(tenant, metric).values
            keep = (ts >= start) & (ts <= min(end, self.ends.get(tenant, end)))
            out.append(RawSeries({"organization_id": tenant}, ts[keep], values[keep]))
        return out


def test_a_late_tenant_is_judged_on_its_data_and_a_stale_one_is_not_healthy(
    tmp_path: Path,
) -> None:
    """Three tenants at 14:00 on a Tuesday: org-01 on time, org-02's data 10 minutes late with
    its request rate at 0 for the 20 minutes before, org-03's data 45 minutes old. The late
    outage is found, with its age; the late tenant's health reads its newest data; the stale
    tenant's reads its objective's metric as out, not 100, and its age says why."""
    outage = synth.ending_injection(
        "org-02", "request_rate", "outage", end=END - 600, duration_seconds=1200
    )
    dataset = synth.generate(3, days=8.0, end=END, seed=11, injections=[outage])
    source = _LateSource(dataset, {"org-02": END - 600, "org-03": END - 2700})
    config = config_from_dict(
        {
            "prometheus": {"url": "http://127.0.0.1:9"},
            "pushgateway": {"url": "http://127.0.0.1:9"},
            "metrics": [
                {"name": m, "query": synth.QUERIES[m]} for m in ("request_rate", "latency_p95")
            ],
            "health": {"objectives": [{"metric": "latency_p95", "max": 5.0}]},
            "model_dir": str(tmp_path / "models"),
        }
    )
    result = process_batch(
        config,
        BatchPlan(Shard(), None, {}, {}),
        0,
        now=END,
        source=source,  # type: ignore[arg-type]
        store=None,
    )
    found = {(f.key.tenant, f.metric): f for f in result.findings}
    late = found[("org-02", "request_rate")]
    assert late.is_anomaly and late.actual == 0.0
    assert late.data_age_seconds == 600.0
    assert found[("org-01", "request_rate")].data_age_seconds == 0.0
    assert found[("org-03", "latency_p95")].data_age_seconds == 2700.0
    assert not any(f.is_anomaly for (t, _), f in found.items() if t == "org-01")
    health = {h.tenant: h for h in result.health}
    assert health["org-01"].score == 100.0 and health["org-01"].data_age_seconds == 0.0
    # The late tenant: its objective met on its newest values, its outage an anomaly.
    assert health["org-02"].components["objective:latency_p95"] == 100.0
    assert health["org-02"].components["anomalies"] < 100.0
    assert health["org-02"].data_age_seconds == 600.0
    # The stale tenant: its objective's metric is out, and the pushed age says how old.
    assert health["org-03"].components["objective:latency_p95"] == 35.0
    assert health["org-03"].score < 60.0
    pushed = {
        (s.name, s.labels.get("organization_id")): s.value
        for s in result.samples
        if s.name == "anomaly_tenant_data_age_seconds"
    }
    assert pushed == {
        ("anomaly_tenant_data_age_seconds", "org-01"): 0.0,
        ("anomaly_tenant_data_age_seconds", "org-02"): 600.0,
        ("anomaly_tenant_data_age_seconds", "org-03"): 2700.0,
    }
