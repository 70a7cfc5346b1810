"""The cycle's model reuse: stored state is reused while fresh, new series are fitted alone,
stale or unusable state means a refit, a model that cannot be saved is reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from anomaly_lab import synth

from anomaly.config import Config, config_from_dict
from anomaly.errors import StoreError
from anomaly.frame import Frame, build_frame
from anomaly.io.prometheus import RawSeries
from anomaly.io.store import ModelStore
from anomaly.job.metric import load_or_fit, metric_outcomes
from anomaly.job.plan import BatchPlan, Shard

END = 1795305600.0 + 10 * 3600  # Sunday 2026-11-22 10:00 UTC


def _config(tmp_path: Path) -> Config:
    return config_from_dict(
        {
            "prometheus": {"url": "http://127.0.0.1:9"},
            "pushgateway": {"url": "http://127.0.0.1:9"},
            "metrics": [{"name": "latency_p95", "query": "x"}],
            "model_dir": str(tmp_path / "models"),
            "detection": {"refit_interval": "1d"},
        }
    )


def _frame(n_tenants: int = 4, seed: int = 1) -> Frame:
    ds = synth.generate(n_tenants, days=7.0, end=END, seed=seed)
    values = ds.matrix("latency_p95")
    series = [
        ({"organization_id": t}, ds.timestamps, values[:, j]) for j, t in enumerate(ds.tenants)
    ]
    return build_frame("latency_p95", series, ds.timestamps, "organization_id")


def test_fresh_state_is_reused_without_refitting(tmp_path: Path) -> None:
    config, frame = _config(tmp_path), _frame()
    store = ModelStore(config.model_dir)
    first, fitted = load_or_fit(config, frame, store, END)
    assert fitted == 4
    second, fitted = load_or_fit(config, frame, store, END + 3600)
    assert fitted == 0
    a = first.score(frame.times, frame.values)
    b = second.score(frame.times, frame.values)
    np.testing.assert_array_equal(a.score, b.score)
    np.testing.assert_array_equal(a.expected, b.expected)


@pytest.mark.parametrize(
    ("query", "bucketed"),
    [
        ("histogram_quantile(0.95, sum by (organization_id, le) (rate(d_bucket[5m])))", True),
        ("max by (organization_id) (latency_p95_seconds)", False),
    ],
)
def test_a_quantile_read_off_buckets_is_fitted_as_one(
    tmp_path: Path, query: str, bucketed: bool
) -> None:
    config = config_from_dict(
        {
            "prometheus": {"url": "http://127.0.0.1:9"},
            "pushgateway": {"url": "http://127.0.0.1:9"},
            "metrics": [{"name": "latency_p95", "query": query}],
        }
    )
    model, _ = load_or_fit(config, _frame(2), None, END)
    assert model.bucketed is bucketed


def test_only_new_series_are_fitted_and_order_follows_the_frame(tmp_path: Path) -> None:
    config = _config(tmp_path)
    store = ModelStore(config.model_dir)
    full = _frame(4)
    load_or_fit(config, full.select([0, 2]), store, END)
    model, fitted = load_or_fit(config, full, store, END + 60)
    assert fitted == 2
    alone = load_or_fit(config, full, None, END)[0]
    got = model.score(full.times, full.values)
    want = alone.score(full.times, full.values)
    # Each column is its own model, wherever it was fitted: same bands as fitting all at once.
    np.testing.assert_allclose(got.expected, want.expected)


def test_stale_state_is_refitted(tmp_path: Path) -> None:
    config, frame = _config(tmp_path), _frame()
    store = ModelStore(config.model_dir)
    load_or_fit(config, frame, store, END)
    _, fitted = load_or_fit(config, frame, store, END + 86400 + 1)
    assert fitted == 4


@pytest.mark.parametrize("damage", ["truncate", "garbage", "pickle"])
def test_damaged_store_means_a_refit(tmp_path: Path, damage: str) -> None:
    config, frame = _config(tmp_path), _frame()
    store = ModelStore(config.model_dir)
    load_or_fit(config, frame, store, END)
    path = store.file_for("latency_p95")
    marker = tmp_path / "pwned"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a model\xff" * 50)
    else:
        import pickle

        class Payload:
            def __reduce__(self) -> tuple:
                return (open, (str(marker), "w"))

        path.write_bytes(pickle.dumps(Payload()))
    model, fitted = load_or_fit(config, frame, store, END + 60)
    assert fitted == 4
    assert not marker.exists()
    assert model.score(frame.times, frame.values).valid.all()


def test_a_model_that_cannot_be_saved_raises_or_is_reported(tmp_path: Path) -> None:
    config, frame = _config(tmp_path), _frame()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = ModelStore(blocker / "models")  # its directory cannot be created
    with pytest.raises(StoreError, match="cannot create model directory"):
        load_or_fit(config, frame, store, END)
    errors: list[str] = []
    model, fitted = load_or_fit(config, frame, store, END, save_errors=errors)
    assert fitted == 4 and len(errors) == 1 and str(blocker) in errors[0]
    want = load_or_fit(config, frame, None, END)[0].score(frame.times, frame.values)
    np.testing.assert_array_equal(model.score(frame.times, frame.values).score, want.score)


@pytest.mark.parametrize("keep_format", [False, True])
def test_a_model_of_the_previous_format_is_refitted(tmp_path: Path, keep_format: bool) -> None:
    # Format 1 had no `stuck_tol` / `stuck_cost_zero` (the stuck-value test of exact repeats
    # only): such a file is refitted, never a crash, whether or not its params say so.
    config, frame = _config(tmp_path), _frame()
    store = ModelStore(config.model_dir)
    load_or_fit(config, frame, store, END)
    loaded = store.load("latency_p95")
    assert loaded is not None
    arrays, meta = loaded
    old = {k: a for k, a in arrays.items() if not k.endswith(("stuck_tol", "stuck_cost_zero"))}
    assert len(old) == len(arrays) - 2
    if not keep_format:
        meta = {**meta, "params": {**meta["params"], "format": 1}}
    store.save("latency_p95", old, meta)
    model, fitted = load_or_fit(config, frame, store, END + 60)
    assert fitted == 4
    assert model.score(frame.times, frame.values).valid.all()


def test_findings_judge_the_points_since_the_previous_run_and_remember_the_last_hour() -> None:
    from anomaly.config import MetricConfig
    from anomaly.job.report import MetricOutcome
    from anomaly.models.scoring import ScoreResult

    frame = _frame(n_tenants=3)
    n = 12  # the last hour at 5 minutes
    score = np.zeros((n, 3))
    score[-1, 0] = 0.9  # flagged now
    score[-3, 1] = 0.9  # flagged ten minutes ago, quiet now
    score[0, 2] = 0.9  # flagged 55 minutes ago
    band = np.ones((n, 3))
    result = ScoreResult(score, score >= 0.5, band, band, band, np.ones(3, bool), [None] * 3)
    metric = MetricConfig(name="latency_p95", query="x")
    for n_evidence, flagged in ((1, [True, False, False]), (3, [True, True, False])):
        outcome = MetricOutcome(metric, frame=frame, result=result, n_evidence=n_evidence)
        findings = outcome.findings()
        assert [f.is_anomaly for f in findings] == flagged
        recent = [f.recent for f in findings]
        assert recent[0] == pytest.approx(0.9)
        assert recent[1] == pytest.approx(0.9 * (1 - 600 / 3600))  # ten minutes old
        assert 0.0 < recent[2] < 0.1  # almost an hour old: almost gone


class _FakeSource:
    """Two metrics of two tenants, from functions of time; counts the queries it answers."""

    def __init__(self, series: dict[str, dict[str, object]]) -> None:
        self.series = series
        self.queries: list[str] = []

    def query_range(
        self, query: str, start: float, end: float, step_seconds: float
    ) -> list[RawSeries]:
        self.queries.append(query)
        times = np.arange(start, end + 1.0, step_seconds)
        return [
            RawSeries({"organization_id": tenant}, times, make(times))  # type: ignore[operator]
            for tenant, make in self.series[query].items()
        ]


def test_a_run_fits_each_tenant_by_the_calendar_of_all_its_metrics(tmp_path: Path) -> None:
    # The connection pool alone misses its tenant's clock switch; the run reads the request
    # rate beside it (once: the metric's own step reuses that read) and fits the pool by the
    # tenant's clock. The other tenant, without a switch, keeps its own.
    from tests.models.test_calendar import _MONDAY, Tenant, batch_pool, rate

    end = _MONDAY + 9 * 86400 + 4.5 * 3600  # a Wednesday, 04:30 UTC
    moved = Tenant(offset_hours=1.0, switch_at=end - 2.6 * 86400, switch_hours=-1.0)
    still = Tenant(offset_hours=1.0)
    source = _FakeSource(
        {
            "requests": {"a": lambda t: rate(t, moved, 1), "b": lambda t: rate(t, still, 3)},
            "pool": {
                "a": lambda t: batch_pool(t, moved, 2),
                "b": lambda t: batch_pool(t, still, 4),
            },
        }
    )
    config = config_from_dict(
        {
            "prometheus": {"url": "http://127.0.0.1:9"},
            "pushgateway": {"url": "http://127.0.0.1:9"},
            "metrics": [
                {"name": "requests", "query": "requests"},
                {"name": "pool", "query": "pool"},
            ],
            "model_dir": str(tmp_path / "models"),
            "lookback": "7d",
            "step": "5m",
            "tenant_label": "organization_id",
        }
    )
    store = ModelStore(config.model_dir)
    plan = BatchPlan(Shard(), None, {}, {})  # one batch of every tenant
    outcomes = metric_outcomes(
        config,
        plan,
        0,
        [1, 0],
        now=end,
        source=source,
        store=store,  # type: ignore[arg-type]
    )
    assert [o.error for o in outcomes] == [None, None]
    assert sorted(q for q in source.queries if q in ("requests", "pool")) == ["pool", "requests"]
    pool = outcomes[0]
    model, _ = load_or_fit(config, pool.frame, store, end)  # the stored model, reused
    column = {k.tenant: j for j, k in enumerate(pool.frame.keys)}
    assert "clock moved 1 h" in model.seasonal_.calendar_[column["a"]]
    assert "clock moved" not in model.seasonal_.calendar_[column["b"]]
