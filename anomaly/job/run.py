"""One cycle of the job: source → frame → detectors → scoring / health → sink.

The CLI, the scheduler and notebooks call the same functions:

- :func:`fetch_frame` — one metric's aligned :class:`~anomaly.frame.Frame` from Prometheus;
- :func:`detect` — fit (or reuse) a model on a frame and score its newest points;
- :func:`run_once` — the whole cycle, returning a :class:`RunReport`.

Scale: a run plans its batches and shards first (:mod:`anomaly.job.plan`), then fetches,
fits, scores and pushes batch by batch (:func:`run_once`), in ``scale.workers`` processes.
Each batch's tenant groups are complete (every metric and the health of its tenants), so they
are pushed batch by batch with replace semantics; stale groups are deleted and the job group
pushed only after every batch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anomaly.config import Config, MetricConfig, format_duration
from anomaly.errors import DataError, QueryError, StoreError
from anomaly.frame import Frame, SeriesKey, build_frame
from anomaly.health import TenantHealth, global_health, tenant_health
from anomaly.io.prometheus import PrometheusSource, restrict_query, tenant_matcher
from anomaly.io.pushgateway import PushgatewaySink, PushReport, Sample
from anomaly.io.store import ModelStore
from anomaly.job import export
from anomaly.job.plan import BatchPlan, Shard, evaluation_window, plan_batches
from anomaly.models.forecast import Forecast, breach_seconds, forecast
from anomaly.models.scoring import AnomalyModel, ScoreResult

log = logging.getLogger(__name__)

MODEL_FORMAT = 1
#: Series fitted in one call (see :func:`load_or_fit`).
FIT_CHUNK_SERIES = 64


@dataclass(frozen=True)
class Finding:
    """One scored series at the newest point."""

    metric: str
    key: SeriesKey
    score: float
    is_anomaly: bool
    actual: float
    expected: float
    lower: float
    upper: float


@dataclass
class MetricOutcome:
    """What happened to one metric in a run (summed over its batches).

    ``frame``, ``result``, ``forecast`` and ``breach_seconds`` are kept only when the run read
    the metric in one batch in this process; with batches they would hold every series at
    once, which is what batching avoids. The counters are always filled.
    """

    metric: MetricConfig
    frame: Frame | None = None
    result: ScoreResult | None = None
    forecast: Forecast | None = None
    breach_seconds: np.ndarray | None = None
    error: str | None = None
    refitted: int = 0
    seconds: float = 0.0
    n_series: int = 0
    """Series in the frame(s) (after skipping)."""
    n_skipped: int = 0
    """Series left out of the frame(s) (no tenant label, duplicates)."""
    n_unscored: int = 0
    """Series in the frame(s) the model could not score."""
    fetch_seconds: float = 0.0
    model_seconds: float = 0.0
    """Loading stored state and fitting."""
    score_seconds: float = 0.0
    forecast_seconds: float = 0.0
    breaches: list[tuple[float, str]] = field(default_factory=list)
    """``(seconds until breach, summary line)`` of every finite forecast breach."""
    query_failed: bool = False
    store_error: str | None = None
    """Why the fitted model could not be saved (the scores stand; the next run fits again)."""


@dataclass
class RunReport:
    """Summary of one cycle."""

    started_at: float
    evaluated_at: float
    outcomes: list[MetricOutcome] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    health: list[TenantHealth] = field(default_factory=list)
    global_health: float = 100.0
    push: PushReport | None = None
    duration_seconds: float = 0.0
    shard: Shard | None = None
    batches: int = 1
    push_seconds: float = 0.0
    """Time spent in Pushgateway requests (PUTs, the group listing, deletions)."""

    @property
    def series_scored(self) -> int:
        return len(self.findings)

    @property
    def series_failed(self) -> int:
        return sum(o.n_skipped + o.n_unscored for o in self.outcomes)

    @property
    def metrics_failed(self) -> list[MetricOutcome]:
        return [o for o in self.outcomes if o.error is not None]

    @property
    def anomalies(self) -> list[Finding]:
        return [f for f in self.findings if f.is_anomaly]


# --------------------------------------------------------------------------- library functions


def fetch_frame(
    config: Config,
    metric: str | MetricConfig,
    *,
    now: float | None = None,
    source: PrometheusSource | None = None,
    tenants: Collection[str] | None = None,
) -> Frame:
    """Query one configured metric over the lookback and align it on the run's grid.

    With ``tenants``, only their series: the query gets a matcher for them on every selector
    (:func:`~anomaly.io.prometheus.restrict_query`; a metric with ``split: false`` or without
    selectors is fetched whole), and the frame keeps only their columns.
    """
    mc = config.metric(metric) if isinstance(metric, str) else metric
    source = source or PrometheusSource(config.prometheus)
    times = evaluation_window(config, now, mc)
    frame = build_frame(
        mc.name,
        _query_range(config, source, mc, float(times[0]), float(times[-1]), tenants),
        times,
        config.tenant_label,
    )
    if tenants is None:
        return frame
    wanted = set(tenants)
    keep = [j for j, k in enumerate(frame.keys) if k.tenant in wanted]
    return frame if len(keep) == frame.n_series else frame.select(keep)


def _query_range(
    config: Config,
    source: PrometheusSource,
    mc: MetricConfig,
    start: float,
    end: float,
    tenants: Collection[str] | None,
) -> Iterator[tuple[dict[str, str], np.ndarray, np.ndarray]]:
    query = mc.query
    if tenants is not None and config.tenant_label is not None:
        restricted = (
            restrict_query(mc.query, tenant_matcher(config.tenant_label, tenants))
            if mc.split and tenants
            else None
        )
        if restricted is None:
            log.debug("metric %s: fetched whole, filtered by tenant afterwards", mc.name)
        else:
            query = restricted
    wanted = None if tenants is None or query != mc.query else set(tenants)
    tl = config.tenant_label
    for r in source.query_range(query, start, end, config.step_seconds):
        # A whole fetch for a batch: drop other tenants' series before they cost anything.
        if wanted is not None and tl is not None and r.labels.get(tl) not in wanted:
            continue
        yield r.labels, r.times, r.values


def detect(
    frame: Frame,
    model: AnomalyModel | None = None,
    *,
    threshold: float = 0.5,
    n_eval: int = 1,
    random_state: int = 0,
) -> tuple[AnomalyModel, ScoreResult]:
    """Fit a model on ``frame`` unless one is given, and score the newest ``n_eval`` rows."""
    if model is None:
        model = AnomalyModel(
            step_seconds=frame.step_seconds, threshold=threshold, random_state=random_state
        ).fit(frame.times, frame.values)
    return model, model.score(frame.times, frame.values, n_eval=n_eval)


def _key_id(key: SeriesKey) -> str:
    return json.dumps([key.tenant, [list(kv) for kv in key.labels]], ensure_ascii=False)


@dataclass(frozen=True)
class _Stored:
    """A usable stored model: its series' ids (column order) and when it was fitted."""

    model: AnomalyModel
    column_of: dict[str, int]
    fitted_at: float


def _load_fresh(
    store: ModelStore, metric: str, params: dict[str, object], now: float, refit_seconds: float
) -> _Stored | None:
    """The stored model of ``metric`` if it is fresh, fitted with ``params`` and intact."""
    loaded = store.load(metric)
    if loaded is None:
        return None
    arrays, meta = loaded
    try:
        fitted_at = float(meta.get("fitted_at", 0))
        if now - fitted_at >= refit_seconds or meta.get("params") != params:
            return None
        model = AnomalyModel.from_state(arrays)
        ids = [str(k) for k in meta.get("keys", [])]
        if len(ids) != model.n_series_:
            raise DataError("key count does not match the stored model")
    except (DataError, TypeError, ValueError) as e:
        log.warning("metric %s: stored model unusable (%s); refitting", metric, e)
        return None
    return _Stored(model, {k: i for i, k in enumerate(ids)}, fitted_at)


def load_or_fit(
    config: Config,
    frame: Frame,
    store: ModelStore | None,
    now: float,
    *,
    key: str | None = None,
    save_errors: list[str] | None = None,
) -> tuple[AnomalyModel, int]:
    """Reuse stored fitted state where it is fresh; fit the series that have none.

    ``key`` names the stored state (default: the metric's name); a sharded or batched run keys
    it by shard and batch too, so that each holds only its own series.

    A series that appeared since the last full refit is fitted alone and joins the stored
    model, which keeps its fitting time, so the whole metric still refits on the configured
    cadence. Returns the model (columns in the frame's order) and the number of series fitted
    now.

    A model that cannot be saved (:class:`~anomaly.errors.StoreError`: disk full, no permission)
    raises, unless ``save_errors`` is given: then the message is appended to it and the model
    is returned all the same.
    """
    det = config.detection
    params: dict[str, object] = {
        "step_seconds": frame.step_seconds,
        "threshold": det.threshold,
        "lookback_seconds": float(frame.times[-1] - frame.times[0]),
        "format": MODEL_FORMAT,
    }
    key = frame.metric if key is None else key
    stored = (
        _load_fresh(store, key, params, now, det.refit_interval_seconds)
        if store is not None
        else None
    )
    column_of = stored.column_of if stored is not None else {}
    ids = [_key_id(k) for k in frame.keys]
    known = [i for i, k in enumerate(ids) if k in column_of]
    missing = [i for i, k in enumerate(ids) if k not in column_of]
    pieces: list[AnomalyModel] = []
    if stored is not None and known:
        columns = np.array([column_of[ids[i]] for i in known], dtype=int)
        same = np.array_equal(columns, np.arange(stored.model.n_series_))
        pieces.append(stored.model if same else stored.model.select(columns))
    # Fitting holds about 3 MB of temporaries per series (the forests' growth), so series are
    # fitted FIT_CHUNK_SERIES at a time: memory stays flat whatever the batch size.
    for first in range(0, len(missing), FIT_CHUNK_SERIES):
        sub = frame.select(missing[first : first + FIT_CHUNK_SERIES])
        fresh = AnomalyModel(step_seconds=frame.step_seconds, threshold=det.threshold)
        pieces.append(fresh.fit(sub.times, sub.values))
    model = pieces[0] if len(pieces) == 1 else AnomalyModel.concat(pieces)
    order = known + missing
    if order != sorted(order):
        model = model.select(np.argsort(np.array(order)))
    if store is not None and missing:
        fitted_at = stored.fitted_at if stored is not None and known else now
        state = model.get_state(copy=False)
        try:
            store.save(key, state, {"keys": ids, "fitted_at": fitted_at, "params": params})
        except StoreError as e:
            if save_errors is None:
                raise
            save_errors.append(str(e))
            log.error("metric %s: %s; scored without saving the model", frame.metric, e)
    return model, len(missing)


# --------------------------------------------------------------------------- the cycle


def _series_labels(mc: MetricConfig, key: SeriesKey) -> dict[str, str]:
    labels = {}
    for k, v in key.labels:
        # The `metric` label is ours; a source label of that name is kept under another name.
        labels["exported_metric" if k == "metric" else k] = v
    labels.update(mc.labels)
    labels["metric"] = mc.name
    return labels


def _samples_for(
    config: Config, mc: MetricConfig, frame: Frame, result: ScoreResult
) -> tuple[list[Sample], list[Finding]]:
    samples: list[Sample] = []
    findings: list[Finding] = []
    last = -1
    for j, key in enumerate(frame.keys):
        if not result.valid[j]:
            continue
        score = float(np.max(result.score[:, j]))
        flagged = bool(np.any(result.is_anomaly[:, j]))
        labels = _series_labels(mc, key)
        vals = {
            "anomaly_score": score,
            "anomaly_detected": 1.0 if flagged else 0.0,
            "anomaly_expected_value": float(result.expected[last, j]),
            "anomaly_lower_bound": float(result.lower[last, j]),
            "anomaly_upper_bound": float(result.upper[last, j]),
            "anomaly_actual_value": float(frame.values[last, j]),
        }
        for name, value in vals.items():
            if math.isfinite(value):
                samples.append(Sample(name, labels, value))
        findings.append(
            Finding(
                metric=mc.name,
                key=key,
                score=score,
                is_anomaly=flagged,
                actual=float(frame.values[last, j]),
                expected=vals["anomaly_expected_value"],
                lower=vals["anomaly_lower_bound"],
                upper=vals["anomaly_upper_bound"],
            )
        )
    return samples, findings


def _forecast_samples(mc: MetricConfig, outcome: MetricOutcome) -> list[Sample]:
    fc, frame = outcome.forecast, outcome.frame
    if fc is None or frame is None or mc.forecast is None:
        return []
    horizon = mc.forecast.horizon_seconds
    value, lower, upper = fc.at(horizon)
    samples = []
    for j, key in enumerate(frame.keys):
        if not fc.valid[j]:
            continue
        labels = _series_labels(mc, key)
        with_h = {**labels, "horizon": format_duration(horizon)}
        samples += [
            Sample("anomaly_forecast_value", with_h, float(value[j])),
            Sample("anomaly_forecast_lower_bound", with_h, float(lower[j])),
            Sample("anomaly_forecast_upper_bound", with_h, float(upper[j])),
        ]
        if outcome.breach_seconds is not None and mc.forecast.threshold is not None:
            samples += [
                Sample("anomaly_forecast_breach_seconds", labels, float(outcome.breach_seconds[j])),
                Sample("anomaly_forecast_threshold", labels, mc.forecast.threshold),
            ]
    return samples


def newest_value(values: np.ndarray, k: int = 3) -> float:
    """The newest finite value among a series' last ``k`` points (NaN if none): what health
    judges a tenant's objectives on."""
    tail = values[-k:]
    finite = tail[np.isfinite(tail)]
    return float(finite[-1]) if finite.size else math.nan


def _health(
    config: Config, outcomes: Sequence[MetricOutcome], findings: Sequence[Finding]
) -> list[TenantHealth]:
    """Health of every tenant in ``outcomes``' frames (one batch's tenants are all of theirs)."""
    current: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    flagged: dict[str, dict[str, float]] = defaultdict(dict)
    tenants: set[str] = set()
    for o in outcomes:
        if o.frame is None:
            continue
        for j, key in enumerate(o.frame.keys):
            if key.tenant is None:
                continue
            tenants.add(key.tenant)
            current[key.tenant][o.metric.name].append(newest_value(o.frame.values[:, j]))
    for f in findings:
        if f.is_anomaly and f.key.tenant is not None:
            prev = flagged[f.key.tenant].get(f.metric, 0.0)
            flagged[f.key.tenant][f.metric] = max(prev, f.score)
    return [tenant_health(config.health, t, current[t], flagged[t]) for t in sorted(tenants)]


def _health_samples(config: Config, health: Sequence[TenantHealth]) -> list[Sample]:
    samples = []
    label = config.tenant_label or "tenant"
    pushed_at = time.time()
    for h in health:
        samples.append(Sample("anomaly_health_score", {label: h.tenant}, h.score))
        samples.append(
            Sample("anomaly_tenant_last_run_timestamp_seconds", {label: h.tenant}, pushed_at)
        )
        for comp, value in h.components.items():
            samples.append(
                Sample(
                    "anomaly_health_component_score", {label: h.tenant, "component": comp}, value
                )
            )
    return samples


def _job_samples(config: Config, report: RunReport, finished_at: float) -> list[Sample]:
    samples = [
        Sample("anomaly_job_last_success_timestamp_seconds", {}, finished_at),
        Sample("anomaly_job_duration_seconds", {}, finished_at - report.started_at),
        Sample("anomaly_job_series", {}, float(report.series_scored)),
        Sample("anomaly_job_series_failed", {}, float(report.series_failed)),
        Sample("anomaly_job_anomalies", {}, float(len(report.anomalies))),
    ]
    if report.health:
        samples.append(Sample("anomaly_global_health_score", {}, report.global_health))
    for o in report.outcomes:
        samples.append(
            Sample(
                "anomaly_job_metric_failed",
                {"metric": o.metric.name},
                0.0 if o.error is None else 1.0,
            )
        )
    return samples


def _fetch_lookback(config: Config, mc: MetricConfig) -> float:
    """How far back a batch reads ``mc``: its own lookback, or that of a forecast metric it is
    the rate of, if longer, so that one read serves both (:func:`_shared_frame`)."""
    return max(
        m.lookback_seconds or config.lookback_seconds
        for m in config.metrics
        if m.name == mc.name or (m.forecast is not None and m.forecast.rate == mc.name)
    )


def _shared_frame(
    config: Config,
    mc: MetricConfig,
    times: np.ndarray,
    *,
    now: float,
    source: PrometheusSource,
    tenants: Collection[str] | None,
    frames: dict[str, Frame],
) -> Frame | None:
    """``mc`` on the grid ``times`` (a suffix of its :func:`_fetch_lookback` window), read at
    most once per batch: ``frames`` keeps each read. ``None`` if ``times`` is not such a
    suffix. Raises :class:`QueryError`."""
    if mc.name not in frames:
        wide = dataclasses.replace(mc, lookback_seconds=_fetch_lookback(config, mc))
        frames[mc.name] = fetch_frame(config, wide, now=now, source=source, tenants=tenants)
    frame = frames[mc.name]
    n = times.size
    if n > frame.times.size or not np.array_equal(frame.times[frame.times.size - n :], times):
        return None
    return frame.last_rows(n)


def _rate_for(
    config: Config,
    frame: Frame,
    rate_metric: MetricConfig,
    source: PrometheusSource,
    tenants: Collection[str] | None = None,
    *,
    now: float | None = None,
    frames: dict[str, Frame] | None = None,
) -> np.ndarray | None:
    """The rate metric's values on ``frame``'s grid, columns matched to ``frame``'s series
    (same labels, else same tenant); NaN where a series has no rate. None if the query fails.

    With ``frames`` (and ``now``, the run's time), the batch's one read of the rate metric is
    reused (:func:`_shared_frame`): it also feeds the rate metric's own detection."""
    try:
        rates = None
        if frames is not None and now is not None:
            rates = _shared_frame(
                config,
                rate_metric,
                frame.times,
                now=now,
                source=source,
                tenants=tenants,
                frames=frames,
            )
        if rates is None:
            raw = _query_range(
                config, source, rate_metric, float(frame.times[0]), float(frame.times[-1]), tenants
            )
            rates = build_frame(rate_metric.name, list(raw), frame.times, config.tenant_label)
    except QueryError as e:
        log.error("metric %s: rate query %s failed: %s", frame.metric, rate_metric.name, e)
        return None
    by_key = {k: j for j, k in enumerate(rates.keys)}
    by_tenant = {k.tenant: j for j, k in enumerate(rates.keys) if k.tenant is not None}
    out = np.full(frame.values.shape, np.nan)
    for i, key in enumerate(frame.keys):
        j = by_key.get(key, by_tenant.get(key.tenant) if key.tenant is not None else None)
        if j is not None:
            out[:, i] = rates.values[:, j]
    return out


def _breach_lines(mc: MetricConfig, outcome: MetricOutcome) -> list[tuple[float, str]]:
    fc, frame, fc_cfg = outcome.forecast, outcome.frame, mc.forecast
    if outcome.breach_seconds is None or frame is None or fc is None or fc_cfg is None:
        return []
    value, _, _ = fc.at(fc_cfg.horizon_seconds)
    lines = []
    for j, key in enumerate(frame.keys):
        b = float(outcome.breach_seconds[j])
        if math.isfinite(b):
            who = key.tenant if key.tenant is not None else str(key)
            when = "already crossed" if b == 0 else f"crosses in {b / 3600:.1f}h"
            lines.append(
                (
                    b,
                    f"  {who:<16} {mc.name:<14} {when:<18} threshold "
                    f"{fc_cfg.threshold:g} ({fc_cfg.direction}), forecast "
                    f"{value[j]:.4g} in {format_duration(fc_cfg.horizon_seconds)}",
                )
            )
    return lines


def score_metric(
    config: Config,
    mc: MetricConfig,
    *,
    now: float,
    source: PrometheusSource,
    store: ModelStore | None,
    tenants: Collection[str] | None = None,
    store_key: str | None = None,
    frames: dict[str, Frame] | None = None,
) -> MetricOutcome:
    """Fetch, fit or reuse, and score one metric (``tenants``: only theirs, see
    :func:`fetch_frame`). A broken query is reported, not raised.

    ``frames`` is the batch's cache of reads shared between metrics: a metric that is the
    rate of a forecast metric is read once over the longer of the two lookbacks, for its own
    detection and for that forecast (in either order)."""
    t0 = time.perf_counter()
    outcome = MetricOutcome(mc)
    try:
        frame = None
        own = mc.lookback_seconds or config.lookback_seconds
        if frames is not None and _fetch_lookback(config, mc) > own:
            times = evaluation_window(config, now, mc)
            frame = _shared_frame(
                config, mc, times, now=now, source=source, tenants=tenants, frames=frames
            )
        if frame is None:
            frame = fetch_frame(config, mc, now=now, source=source, tenants=tenants)
    except QueryError as e:
        outcome.error = str(e)
        outcome.query_failed = True
        log.error("metric %s: query failed: %s", mc.name, e)
        return outcome
    t1 = time.perf_counter()
    outcome.fetch_seconds = t1 - t0
    outcome.frame = frame
    outcome.n_series, outcome.n_skipped = frame.n_series, len(frame.skipped)
    if frame.n_series == 0:
        outcome.error = (
            f"all {len(frame.skipped)} series skipped ({frame.skipped[0].reason})"
            if frame.skipped
            else "query returned no series"
        )
        if tenants is None:
            log.warning("metric %s: %s", mc.name, outcome.error)
        return outcome
    if mc.detect:
        save_errors: list[str] = []
        model, outcome.refitted = load_or_fit(
            config, frame, store, now, key=store_key, save_errors=save_errors
        )
        outcome.store_error = save_errors[0] if save_errors else None
        t2 = time.perf_counter()
        outcome.result = model.score(frame.times, frame.values, n_eval=1)
        outcome.model_seconds, outcome.score_seconds = t2 - t1, time.perf_counter() - t2
        outcome.n_unscored = int(np.count_nonzero(~outcome.result.valid))
        for j, reason in enumerate(outcome.result.reason):
            if reason:
                log.warning("metric %s: series %s not scored: %s", mc.name, frame.keys[j], reason)
    if mc.forecast is not None:
        t3 = time.perf_counter()
        fcc = mc.forecast
        rate = None
        if fcc.rate is not None:
            rate = _rate_for(
                config, frame, config.metric(fcc.rate), source, tenants, now=now, frames=frames
            )
        fc = forecast(
            frame.times,
            frame.values,
            fcc.horizon_seconds,
            step_seconds=frame.step_seconds,
            rate=rate,
            window_seconds=fcc.window_seconds,
            rate_unit_seconds=fcc.rate_unit_seconds,
        )
        outcome.forecast = fc
        if mc.forecast.threshold is not None:
            outcome.breach_seconds = breach_seconds(
                fc, None, mc.forecast.threshold, mc.forecast.direction
            )
        for j, reason in enumerate(fc.reason):
            if reason:
                log.warning("metric %s: series %s not forecast: %s", mc.name, frame.keys[j], reason)
        outcome.breaches = _breach_lines(mc, outcome)
        outcome.forecast_seconds = time.perf_counter() - t3
    outcome.seconds = time.perf_counter() - t0
    return outcome


# --------------------------------------------------------------------------- batches


@dataclass
class BatchResult:
    """What one batch produced: all of its tenants' samples (their groups are whole), the
    findings and health of those tenants, and per-metric outcomes."""

    index: int
    samples: list[Sample]
    findings: list[Finding]
    health: list[TenantHealth]
    outcomes: list[MetricOutcome]
    seconds: float = 0.0


def _metric_outcome(
    config: Config,
    plan: BatchPlan,
    index: int,
    mc: MetricConfig,
    *,
    now: float,
    source: PrometheusSource,
    store: ModelStore | None,
    frames: dict[str, Frame] | None = None,
) -> MetricOutcome:
    """One metric of one batch: refused by the plan, empty, or scored (``frames``: the
    batch's shared reads, see :func:`score_metric`)."""
    tenants = None if plan.batches is None else plan.batches[index]
    if mc.name in plan.failed:
        return MetricOutcome(mc, error=plan.failed[mc.name], query_failed=True)
    if tenants is not None and not tenants:
        return MetricOutcome(mc)
    return score_metric(
        config,
        mc,
        now=now,
        source=source,
        store=store,
        tenants=tenants,
        store_key=plan.store_key(mc.name, index),
        frames=frames,
    )


def _metric_outcomes(
    config: Config,
    plan: BatchPlan,
    index: int,
    metrics: Sequence[int],
    *,
    now: float,
    source: PrometheusSource,
    store: ModelStore | None,
) -> list[MetricOutcome]:
    """The outcomes of the metrics at ``metrics`` (indices, in order) for one batch, sharing
    their reads (see :func:`score_metric`)."""
    frames: dict[str, Frame] = {}
    return [
        _metric_outcome(
            config,
            plan,
            index,
            config.metrics[i],
            now=now,
            source=source,
            store=store,
            frames=frames,
        )
        for i in metrics
    ]


def _metric_units(config: Config) -> list[list[int]]:
    """The metrics' indices in groups that share reads: a forecast metric joins the metric that
    is its rate; groups in order of their first metric, each in config order."""
    unit_of = list(range(len(config.metrics)))
    names = {mc.name: i for i, mc in enumerate(config.metrics)}
    for i, mc in enumerate(config.metrics):
        if mc.forecast is not None and mc.forecast.rate in names:
            unit_of[i] = unit_of[names[mc.forecast.rate]]
    units: dict[int, list[int]] = {}
    for i, u in enumerate(unit_of):
        units.setdefault(u, []).append(i)
    return sorted(units.values())


def process_batch(
    config: Config,
    plan: BatchPlan,
    index: int,
    *,
    now: float,
    source: PrometheusSource,
    store: ModelStore | None,
    keep_frames: bool = True,
    outcomes: list[MetricOutcome] | None = None,
) -> BatchResult:
    """Fetch, fit or reuse, score and forecast every metric for one batch's tenants
    (``outcomes``: the metrics already scored, e.g. in parallel), and assemble the samples."""
    t0 = time.perf_counter()
    if outcomes is None:
        outcomes = _metric_outcomes(
            config, plan, index, range(len(config.metrics)), now=now, source=source, store=store
        )
    samples: list[Sample] = []
    findings: list[Finding] = []
    for mc, outcome in zip(config.metrics, outcomes, strict=True):
        if outcome.frame is not None and outcome.result is not None:
            s, f = _samples_for(config, mc, outcome.frame, outcome.result)
            samples.extend(s)
            findings.extend(f)
        samples.extend(_forecast_samples(mc, outcome))
    health = _health(config, outcomes, findings)
    samples.extend(_health_samples(config, health))
    if not keep_frames:
        for o in outcomes:
            o.frame = o.result = o.forecast = o.breach_seconds = None
    return BatchResult(index, samples, findings, health, outcomes, time.perf_counter() - t0)


def _merge(total: MetricOutcome, part: MetricOutcome, single: bool) -> None:
    """Add one batch's outcome of a metric to the run's."""
    if single:
        total.frame, total.result = part.frame, part.result
        total.forecast, total.breach_seconds = part.forecast, part.breach_seconds
    for name in (
        "refitted",
        "seconds",
        "n_series",
        "n_skipped",
        "n_unscored",
        "fetch_seconds",
        "model_seconds",
        "score_seconds",
        "forecast_seconds",
    ):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    total.breaches.extend(part.breaches)
    total.store_error = total.store_error or part.store_error
    # One batch without series of a metric is normal (its tenants lack it); the metric fails
    # when its query does, or when no batch had any series (set by run_once afterwards).
    if single or part.query_failed:
        total.error = total.error or part.error
        total.query_failed = total.query_failed or part.query_failed


# The worker processes' inputs, inherited through fork (Config holds mapping proxies, which do
# not pickle); set only around a pool's lifetime.
_WORKER: dict[str, Any] = {}


def _batch_in_worker(index: int) -> BatchResult:
    config: Config = _WORKER["config"]
    with PrometheusSource(config.prometheus) as source:
        result = process_batch(
            config,
            _WORKER["plan"],
            index,
            now=_WORKER["now"],
            source=source,
            store=_WORKER["store"],
            keep_frames=False,
        )
    for o in result.outcomes:  # MetricConfig does not pickle; the parent puts it back
        o.metric = None  # type: ignore[assignment]
    return result


def _unit_in_worker(unit: list[int]) -> list[MetricOutcome]:
    """The outcomes of one group of metrics (:func:`_metric_units`) of a run of one batch."""
    config: Config = _WORKER["config"]
    with PrometheusSource(config.prometheus) as source:
        outcomes = _metric_outcomes(
            config,
            _WORKER["plan"],
            0,
            unit,
            now=_WORKER["now"],
            source=source,
            store=_WORKER["store"],
        )
    for o in outcomes:
        o.metric = None  # type: ignore[assignment]  # the parent puts it back
    return outcomes


def _batch_results(
    config: Config,
    plan: BatchPlan,
    *,
    now: float,
    source: PrometheusSource,
    store: ModelStore | None,
    workers: int,
) -> Iterator[BatchResult]:
    """Every batch's result in batch order, from ``workers`` processes when more than one:
    batches side by side, or, for a run of one batch, its metrics side by side (a forecast
    metric with its rate metric, :func:`_metric_units`)."""
    single = plan.n_batches == 1
    units = _metric_units(config)
    if workers <= 1 or (single and len(units) == 1):
        for i in range(plan.n_batches):
            yield process_batch(
                config, plan, i, now=now, source=source, store=store, keep_frames=single
            )
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _WORKER.update(config=config, plan=plan, now=now, store=store)
    try:
        with ProcessPoolExecutor(
            max_workers=min(workers, len(units) if single else plan.n_batches),
            mp_context=multiprocessing.get_context("fork"),
        ) as pool:
            if single:
                by_index: dict[int, MetricOutcome] = {}
                for unit, unit_outcomes in zip(
                    units, pool.map(_unit_in_worker, units), strict=True
                ):
                    by_index.update(zip(unit, unit_outcomes, strict=True))
                outcomes = [by_index[i] for i in range(len(config.metrics))]
                for o, mc in zip(outcomes, config.metrics, strict=True):
                    o.metric = mc
                yield process_batch(
                    config, plan, 0, now=now, source=source, store=store, outcomes=outcomes
                )
                return
            for result in pool.map(_batch_in_worker, range(plan.n_batches)):
                for o, mc in zip(result.outcomes, config.metrics, strict=True):
                    o.metric = mc
                yield result
    finally:
        _WORKER.clear()


def _batch_group(config: Config, plan: BatchPlan) -> Callable[[int], str | None]:
    """The Pushgateway group of a batch's tenants: ``None`` (one group per tenant) or the
    batch's name, per ``pushgateway.grouping``."""
    grouping = config.pushgateway.grouping
    if grouping == "tenant" or (grouping == "auto" and plan.n_batches == 1):
        return lambda index: None
    return lambda index: f"{index + 1}-of-{plan.n_batches}"


def run_once(
    config: Config,
    *,
    now: float | None = None,
    source: PrometheusSource | None = None,
    sink: PushgatewaySink | None = None,
    store: ModelStore | None = None,
    shard: Shard | None = None,
    workers: int | None = None,
) -> RunReport:
    """One cycle: query every metric, fit or load models, score, compute health, push.

    The tenants are read in batches (:func:`plan_batches`), each processed and its tenants'
    groups pushed before the next, so memory is bounded by a batch; stale groups are deleted
    and the job's own group is pushed only after every batch succeeded. ``shard`` restricts
    the run to its tenants and pushes under its own ``shard`` grouping key; ``workers``
    (default ``scale.workers``) processes batches in parallel processes, which use their own
    connections to Prometheus (not ``source``).

    Raises :class:`~anomaly.errors.SourceError` when Prometheus is unreachable and
    :class:`~anomaly.errors.SinkError` when the push fails; a broken query only fails its metric.
    A model store that cannot save (disk full) raises :class:`~anomaly.errors.StoreError` after
    the tenants' results were pushed, without the job's own group: detection goes on, and the
    job's ageing last success is the alarm.
    """
    started = time.time()
    now = started if now is None else now
    shard = shard or Shard()
    source = source or PrometheusSource(config.prometheus)
    sink = sink or PushgatewaySink(
        config.pushgateway,
        config.tenant_label,
        shard=shard.grouping,
        help_text=export.HELP,
        pos_inf=export.POS_INF,
    )
    store = store if store is not None else ModelStore(config.model_dir)
    workers = config.scale.workers if workers is None else workers
    source.check()
    plan = plan_batches(config, source, now, shard)
    report = RunReport(started_at=started, evaluated_at=now, shard=shard, batches=plan.n_batches)
    report.outcomes = [MetricOutcome(mc) for mc in config.metrics]
    single = plan.n_batches == 1
    pushed: list[dict[str, str]] = []
    group_of = _batch_group(config, plan)
    if not single:
        log.info(
            "shard %s: %d tenants in %d batches (largest metric: %d series)",
            shard,
            sum(len(b) for b in plan.batches or ()),
            plan.n_batches,
            max(plan.series.values(), default=0),
        )
    retired: list[dict[str, str]] = []
    sink.start_run()
    for result in _batch_results(
        config, plan, now=now, source=source, store=store, workers=workers
    ):
        for total, part in zip(report.outcomes, result.outcomes, strict=True):
            _merge(total, part, single)
        report.findings.extend(result.findings)
        report.health.extend(result.health)
        t_push = time.perf_counter()
        put = sink.put(result.samples, group=group_of(result.index))
        pushed.extend(put.groups_pushed)
        retired.extend(put.groups_deleted)
        report.push_seconds += time.perf_counter() - t_push
        if not single:
            log.info(
                "batch %d/%d: %d series scored, %.1fs",
                result.index + 1,
                plan.n_batches,
                len(result.findings),
                result.seconds,
            )
    for o in report.outcomes if not single else ():
        if o.error is None and o.n_series == 0:
            o.error = (
                f"all {o.n_skipped} series skipped" if o.n_skipped else "query returned no series"
            )
            log.warning("metric %s: %s", o.metric.name, o.error)
    for i, o in enumerate(report.outcomes, 1):
        if o.error is None:
            log.info(
                "[%d/%d] metric %s: %d series, %d fitted, %.1fs (fetch %.1fs, models %.1fs, "
                "score %.1fs, forecast %.1fs)",
                i,
                len(report.outcomes),
                o.metric.name,
                o.n_series,
                o.refitted,
                o.seconds,
                o.fetch_seconds,
                o.model_seconds,
                o.score_seconds,
                o.forecast_seconds,
            )
    report.global_health = global_health(report.health)
    unsaved = [o.store_error for o in report.outcomes if o.store_error is not None]
    if unsaved:
        # The tenants' results are pushed and their alerts stay live; the job's own group is
        # not: its last success ages, so AnomalyJobStale tells the platform team.
        report.duration_seconds = time.time() - started
        raise StoreError(
            f"{unsaved[0]}; the scores of this run were pushed, its models not saved"
            + (f" ({len(unsaved)} metrics)" if len(unsaved) > 1 else "")
        )
    finished = time.time()
    t_push = time.perf_counter()
    push = sink.push(_job_samples(config, report, finished), keep=pushed)
    report.push_seconds += time.perf_counter() - t_push
    report.push = PushReport(
        tuple(pushed) + push.groups_pushed,
        tuple(retired) + push.groups_deleted,
        push.samples_pushed,
        push.samples_dropped,
        push.duplicates,
    )
    report.duration_seconds = time.time() - started
    return report


def format_summary(report: RunReport, *, limit: int = 50) -> str:
    """A short human summary of a run: anomalies with expected vs actual, health per tenant."""
    where = ""
    if report.shard is not None and report.shard.count > 1:
        where += f" (shard {report.shard})"
    if report.batches > 1:
        where += f" in {report.batches} batches"
    lines = [
        f"scored {report.series_scored} series{where} in {report.duration_seconds:.1f}s: "
        f"{len(report.anomalies)} anomalous, {report.series_failed} skipped, "
        f"{len(report.metrics_failed)} metrics failed"
    ]
    for o in report.metrics_failed:
        lines.append(f"  metric {o.metric.name} FAILED: {o.error}")
    if report.anomalies:
        lines.append("anomalies (tenant / metric: actual vs expected [band], score):")
        for f in sorted(report.anomalies, key=lambda f: -f.score)[:limit]:
            who = f.key.tenant if f.key.tenant is not None else str(f.key)
            lines.append(
                f"  {who:<16} {f.metric:<14} {f.actual:>12.4g} vs {f.expected:>10.4g} "
                f"[{f.lower:.4g}, {f.upper:.4g}]  score {f.score:.2f}"
            )
    breaches = [line for o in report.outcomes for line in o.breaches]
    if breaches:
        lines.append("forecast threshold breaches:")
        lines.extend(text for _, text in sorted(breaches)[:limit])
    if report.health:
        lines.append(f"health (global {report.global_health:.0f}/100):")
        for h in sorted(report.health, key=lambda h: h.score):
            worst = sorted(
                ((k, v) for k, v in h.components.items() if k.startswith("objective:") and v < 100),
                key=lambda kv: kv[1],
            )
            why = ", ".join(f"{k.split(':', 1)[1]} breached" for k, _ in worst)
            lines.append(f"  {h.tenant:<16} {h.score:5.1f}  {why}")
    return "\n".join(lines)


def metric_names(config: Config) -> Sequence[str]:
    return [m.name for m in config.metrics]
