"""Tests of the synthetic ProcessAudit data: shapes, ranges, determinism, injections, output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from anomaly_lab import synth
from anomaly_lab.synth import KINDS, METRICS, Injection
from hypothesis import given, settings
from hypothesis import strategies as st

END = 1_700_000_100.0  # a Tuesday, 22:15 UTC; on the 5-minute grid
STEP = 300


def small(injections: tuple[Injection, ...] = (), **kwargs: object) -> synth.Dataset:
    """Three tenants, three days, seed 3."""
    params: dict[str, object] = {"days": 3.0, "end": END, "seed": 3, "injections": injections}
    params.update(kwargs)
    return synth.generate(3, **params)  # type: ignore[arg-type]


def test_shapes_and_grid() -> None:
    ds = small()
    assert ds.tenants == ("org-01", "org-02", "org-03")
    assert len(ds.series) == 3 * len(METRICS)
    assert ds.timestamps.shape == (3 * 288 + 1,)
    assert ds.end == END
    assert np.all(np.diff(ds.timestamps) == STEP)
    assert ds.matrix("latency_p95").shape == (ds.timestamps.size, 3)
    for s in ds.series:
        assert s.values.shape == ds.timestamps.shape
        assert s.labels == {"organization_id": s.tenant}
        assert not s.values.flags.writeable


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = small(), small(), small(seed=4)
    for sa, sb, sc in zip(a.series, b.series, c.series, strict=True):
        np.testing.assert_array_equal(sa.values, sb.values)
        assert not np.array_equal(sa.values, sc.values)


def test_evaluation_scenario_is_deterministic() -> None:
    (a, truth_a), (b, truth_b) = (synth.evaluation_scenario(seed=5, end=END) for _ in range(2))
    assert truth_a == truth_b
    assert a.injections == b.injections
    np.testing.assert_array_equal(a.matrix("ai_cost"), b.matrix("ai_cost"))


def check_ranges(ds: synth.Dataset) -> None:
    for metric in ("error_ratio", "completion"):
        x = ds.matrix(metric)
        assert np.all((x >= 0) & (x <= 1)), metric
    for metric in METRICS:
        assert np.all(np.isfinite(ds.matrix(metric))) and np.all(ds.matrix(metric) >= 0), metric
    assert np.all(np.diff(ds.matrix("ai_cost"), axis=0) >= 0)
    queue = ds.matrix("queue_depth")
    np.testing.assert_array_equal(queue, np.round(queue))


def test_value_ranges() -> None:
    ds, _ = synth.evaluation_scenario(end=END)
    check_ranges(ds)
    assert 0.25 <= float(np.median(ds.matrix("latency_p95"))) <= 1.5
    assert 0.0008 <= float(np.median(ds.matrix("error_ratio"))) <= 0.004
    assert 0.88 <= float(np.median(ds.matrix("completion"))) <= 0.99


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(KINDS),
    metric=st.sampled_from(list(METRICS)),
)
def test_ranges_hold_for_any_seed_and_injection(seed: int, kind: str, metric: str) -> None:
    magnitude = 0.9 if kind == "dip" else None
    inj = synth.ending_injection("org-02", metric, kind, end=END, magnitude=magnitude)
    check_ranges(synth.generate(2, days=1.0, end=END, seed=seed, injections=[inj]))


def test_seasonality_daily_and_weekly() -> None:
    ds = synth.generate(6, days=14.0, end=END, seed=1)
    rps = ds.matrix("request_rate")
    hours = (ds.timestamps % 86400) // 3600
    hourly = np.array([rps[hours == h].mean(axis=0) for h in range(24)])  # (24, n_tenants)
    assert np.all(hourly.max(axis=0) / hourly.min(axis=0) > 3)
    weekday = ((ds.timestamps // 86400) + 3) % 7
    weekend_ratio = rps[weekday >= 5].mean(axis=0) / rps[weekday < 5].mean(axis=0)
    assert np.all((weekend_ratio > 0.3) & (weekend_ratio < 0.85))


def test_ai_spend_is_20_to_80_dollars_a_day() -> None:
    ds = synth.generate(12, days=7.0, end=END, seed=2)
    per_hour = synth.to_frame(ds, "ai_cost", as_queried=True)
    daily = per_hour.mean() * 24
    assert daily.between(15, 90).all(), daily


def test_expected_spend_rate_is_the_mean_of_the_drawn_rate() -> None:
    drift = Injection("org-02", "ai_cost", "trend_drift", END - 2 * 86400.0, None, 1.0)
    params: dict[str, object] = {"days": 6.0, "end": END, "seed": 5, "injections": (drift,)}
    drawn = np.diff(synth.generate(4, **params).matrix("ai_cost"), axis=0) / STEP  # type: ignore[arg-type]
    expected = synth.expected_spend_rate(4, **params)[1:]  # type: ignore[arg-type]
    ratio = drawn / expected
    # Only the noise differs: unbiased over the whole history and over the drifting tail alike.
    np.testing.assert_allclose(ratio.mean(axis=0), 1.0, atol=0.01)
    np.testing.assert_allclose(ratio[-288:].mean(axis=0), 1.0, atol=0.02)
    clean = synth.expected_spend_rate(4, days=6.0, end=END, seed=5)[1:]
    gain = expected[:, 1] / clean[:, 1]
    assert gain[0] == 1.0 and gain[-1] == pytest.approx(2.0)
    for bad in (["org-01", "org-01"], []):
        with pytest.raises(ValueError, match="`tenants` must be non-empty and unique"):
            synth.expected_spend_rate(bad, days=6.0, end=END)


def with_and_without(inj: Injection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(timestamps, injected values, clean values) of the injected pair."""
    hit, clean = small((inj,)), small()
    return (
        hit.timestamps,
        hit.get(inj.tenant, inj.metric).values,
        clean.get(inj.tenant, inj.metric).values,
    )


def test_injection_leaves_everything_else_alone() -> None:
    inj = synth.ending_injection("org-02", "latency_p95", "level_shift", end=END)
    hit, clean = small((inj,)), small()
    for a, b in zip(hit.series, clean.series, strict=True):
        if (a.tenant, a.metric) != ("org-02", "latency_p95"):
            np.testing.assert_array_equal(a.values, b.values)
    ts, x, x0 = with_and_without(inj)
    before = ts < inj.start
    np.testing.assert_array_equal(x[before], x0[before])
    np.testing.assert_allclose(x[~before], x0[~before] * 1.5)


def test_spike_and_dip_hit_only_the_last_points() -> None:
    ts, x, x0 = with_and_without(synth.ending_injection("org-01", "request_rate", "spike", end=END))
    np.testing.assert_allclose(x[-2:], 3 * x0[-2:])
    np.testing.assert_array_equal(x[:-2], x0[:-2])
    assert x[-1] > 2 * np.percentile(x0, 99) or x[-1] > 2.5 * x0[-3]
    inj = synth.ending_injection("org-01", "completion", "dip", end=END, duration_seconds=0)
    ts, x, x0 = with_and_without(inj)
    assert x[-1] == pytest.approx(0.7 * x0[-1])
    np.testing.assert_array_equal(x[:-1], x0[:-1])


def test_outage_zeroes_a_gauge_and_stops_the_counter() -> None:
    inj = synth.ending_injection("org-03", "request_rate", "outage", end=END)
    ts, x, _ = with_and_without(inj)
    assert np.all(x[ts >= inj.start] == 0) and np.all(x[ts < inj.start] > 0)
    inj = synth.ending_injection("org-03", "ai_cost", "outage", end=END)
    ts, x, x0 = with_and_without(inj)
    during = ts >= inj.start
    assert np.all(np.diff(x[during]) == 0)
    assert np.all(np.diff(x[~during]) > 0)
    assert x[-1] < x0[-1]


def test_flatline_keeps_the_tail_constant() -> None:
    inj = synth.ending_injection("org-01", "latency_p95", "flatline", end=END)
    ts, x, x0 = with_and_without(inj)
    tail = x[ts >= inj.start]
    assert tail.size == 2 * 3600 // STEP + 1
    assert np.all(tail == x0[ts < inj.start][-1])


def test_variance_burst_widens_the_noise() -> None:
    inj = synth.ending_injection("org-02", "request_rate", "variance_burst", end=END)
    ts, x, x0 = with_and_without(inj)
    during = ts >= inj.start
    assert np.std(np.diff(np.log(x[during]))) > 3 * np.std(np.diff(np.log(x0[during])))


def test_trend_drift_ramps_up_to_the_magnitude() -> None:
    inj = synth.ending_injection("org-02", "queue_depth", "trend_drift", end=END, magnitude=1.0)
    ts, x, x0 = with_and_without(inj)
    ratio = (x[ts >= inj.start] + 1) / (x0[ts >= inj.start] + 1)
    assert ratio[:6].mean() < 1.2 and ratio[-6:].mean() > 1.6


def test_default_magnitudes_are_visible_but_plausible() -> None:
    for kind in KINDS:
        for metric in METRICS:
            m = synth.default_magnitude(metric, kind)
            assert m is None if kind in ("outage", "flatline") else 0 < abs(m or 0) <= 8


def test_anomalous_pairs_follow_the_injection_windows() -> None:
    live = synth.ending_injection("org-01", "error_ratio", "spike", end=END)
    past = Injection("org-02", "request_rate", "outage", END - 86400, END - 80000)
    ds = small((live, past))
    assert ds.anomalous_pairs() == {("org-01", "error_ratio")}
    assert ds.anomalous_pairs(at=END - 83000) == {("org-02", "request_rate")}


def test_evaluation_scenario_ground_truth() -> None:
    ds, truth = synth.evaluation_scenario(end=END)
    assert len(ds.tenants) == 24 and len(ds.series) == 24 * 6
    assert 15 <= len(truth) <= 20
    assert truth == ds.anomalous_pairs()
    live = [i for i in ds.injections if i.active(ds.end)]
    past = [i for i in ds.injections if not i.active(ds.end)]
    assert len(live) == len(truth)
    for kind in KINDS:
        assert len({(i.tenant, i.metric) for i in live if i.kind == kind}) >= 2, kind
    assert {i.metric for i in live} == set(METRICS)
    for i in live:
        if i.kind in ("spike", "dip"):
            assert i.end == ds.end and ds.end - i.start <= STEP
    assert past, "expected healed incidents in the history"
    for i in past:
        assert (i.tenant, i.metric) not in truth
        assert i.end is not None and 2 * 86400 <= ds.end - i.end <= 5 * 86400


def test_demo_scenario() -> None:
    ds = synth.demo_scenario(end=END)
    assert len(ds.tenants) == 12 and len(ds.series) == 72
    assert 7 <= (ds.end - ds.timestamps[0]) / 86400 <= 8
    assert 4 <= len(ds.anomalous_pairs()) <= 6
    assert 1 <= sum(not i.active(ds.end) for i in ds.injections) <= 2


def test_injection_validation_quotes_the_parameter() -> None:
    with pytest.raises(ValueError, match="`kind`"):
        Injection("org-01", "request_rate", "wobble", END)
    with pytest.raises(ValueError, match="`metric`"):
        Injection("org-01", "requests", "spike", END)
    with pytest.raises(ValueError, match="`end`"):
        Injection("org-01", "request_rate", "spike", END, END - 1)
    with pytest.raises(ValueError, match="not among"):
        small((Injection("org-99", "request_rate", "spike", END),))


def test_to_frame() -> None:
    ds = small()
    frame = synth.to_frame(ds, "completion")
    assert list(frame.columns) == list(ds.tenants)
    assert str(frame.index.tz) == "UTC"
    assert frame.index[-1].timestamp() == END
    np.testing.assert_array_equal(frame["org-02"].to_numpy(), ds.get("org-02", "completion").values)


def test_queries_cover_every_metric() -> None:
    assert set(synth.QUERIES) == set(METRICS)
    for metric, query in synth.QUERIES.items():
        assert METRICS[metric].name in query and "organization_id" in query


def test_openmetrics_text(tmp_path: Path) -> None:
    ds = synth.generate(
        ["org-01", 'we"ird\\org\nx'], days=0.5, end=END, extra_labels={"service": "api"}
    )
    path = tmp_path / "data.om"
    synth.write_openmetrics(ds, path)
    text = path.read_text()
    lines = text.splitlines()
    assert lines[-1] == "# EOF"
    assert "# TYPE processaudit_ai_cost_usd counter" in lines
    assert "# TYPE processaudit_latency_p95_seconds gauge" in lines
    assert 'processaudit_ai_cost_usd_total{organization_id="org-01",service="api"}' in text
    assert 'organization_id="we\\"ird\\\\org\\nx"' in text
    samples = [line for line in lines if not line.startswith("#")]
    assert len(samples) == sum(s.values.size for s in ds.series)
    assert samples[0].endswith(f" {int(ds.timestamps[0])}")

    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["processaudit_ai_cost_usd"].type == "counter"
    tenants = {s.labels["organization_id"] for s in families["processaudit_error_ratio"].samples}
    assert tenants == set(ds.tenants)


def test_openmetrics_joins_consecutive_datasets(tmp_path: Path) -> None:
    coarse = synth.generate(2, days=0.1, end=END - 3600, step_seconds=300)
    dense = synth.generate(2, days=1 / 24 - 1 / 1440, end=END, step_seconds=60)
    path = tmp_path / "data.om"
    synth.write_openmetrics([coarse, dense], path)
    samples = [line for line in path.read_text().splitlines() if line.startswith("processaudit_")]
    assert len(samples) == sum(s.values.size for s in coarse.series + dense.series)
    prefix = 'processaudit_error_ratio{organization_id="org-01"} '
    times = [float(line.rsplit(" ", 1)[1]) for line in samples if line.startswith(prefix)]
    assert times == [*coarse.timestamps.tolist(), *dense.timestamps.tolist()]

    with pytest.raises(ValueError, match="follow one another"):
        synth.write_openmetrics([dense, coarse], path)
    other = synth.generate(["org-09", "org-10"], days=0.01, end=END + 3600)
    with pytest.raises(ValueError, match="same series"):
        synth.write_openmetrics([coarse, other], path)


def test_promtool_accepts_the_openmetrics(tmp_path: Path, promtool: str) -> None:
    ds = synth.demo_scenario(end=END, days=1.0)
    synth.write_openmetrics(ds, tmp_path / "data.om")
    out = tmp_path / "blocks"
    result = subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(tmp_path / "data.om"),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert any((block / "meta.json").is_file() for block in out.iterdir())
