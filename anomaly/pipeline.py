"""One cycle of the job: source → frame → detectors → scoring / health → sink.

The CLI, the scheduler and notebooks call the same functions:

- :func:`fetch_frame` — one metric's aligned :class:`~anomaly.frame.Frame` from Prometheus;
- :func:`detect` — fit (or reuse) a model on a frame and score its newest points;
- :func:`run_once` — the whole cycle, returning a :class:`RunReport`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from anomaly.config import Config, MetricConfig, format_duration
from anomaly.errors import DataError, QueryError
from anomaly.forecast import Forecast, breach_seconds, forecast
from anomaly.frame import Frame, SeriesKey, build_frame, time_grid
from anomaly.health import TenantHealth, global_health, tenant_health
from anomaly.scoring import AnomalyModel, ScoreResult
from anomaly.sink import PushgatewaySink, PushReport, Sample
from anomaly.source import PrometheusSource
from anomaly.store import ModelStore

log = logging.getLogger(__name__)

MODEL_FORMAT = 1


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
    """What happened to one metric in a run."""

    metric: MetricConfig
    frame: Frame | None = None
    result: ScoreResult | None = None
    forecast: Forecast | None = None
    breach_seconds: np.ndarray | None = None
    error: str | None = None
    refitted: int = 0
    seconds: float = 0.0


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

    @property
    def series_scored(self) -> int:
        return len(self.findings)

    @property
    def series_failed(self) -> int:
        n = 0
        for o in self.outcomes:
            if o.frame is not None:
                n += len(o.frame.skipped)
            if o.result is not None:
                n += int(np.count_nonzero(~o.result.valid))
        return n

    @property
    def metrics_failed(self) -> list[MetricOutcome]:
        return [o for o in self.outcomes if o.error is not None]

    @property
    def anomalies(self) -> list[Finding]:
        return [f for f in self.findings if f.is_anomaly]


# --------------------------------------------------------------------------- library functions


def evaluation_window(
    config: Config, now: float | None = None, metric: MetricConfig | None = None
) -> np.ndarray:
    """The grid a run reads: ``lookback`` (the metric's own, if set) back from ``now`` rounded
    down to ``step``."""
    now = time.time() if now is None else now
    end = math.floor(now / config.step_seconds) * config.step_seconds
    lookback = (metric.lookback_seconds if metric else None) or config.lookback_seconds
    return time_grid(end - lookback, end, config.step_seconds)


def fetch_frame(
    config: Config,
    metric: str | MetricConfig,
    *,
    now: float | None = None,
    source: PrometheusSource | None = None,
) -> Frame:
    """Query one configured metric over the lookback and align it on the run's grid."""
    mc = config.metric(metric) if isinstance(metric, str) else metric
    source = source or PrometheusSource(config.prometheus)
    times = evaluation_window(config, now, mc)
    raw = source.query_range(mc.query, float(times[0]), float(times[-1]), config.step_seconds)
    return build_frame(
        mc.name, ((r.labels, r.times, r.values) for r in raw), times, config.tenant_label
    )


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
) -> tuple[AnomalyModel, int]:
    """Reuse stored fitted state where it is fresh; fit the series that have none.

    A series that appeared since the last full refit is fitted alone and joins the stored
    model, which keeps its fitting time, so the whole metric still refits on the configured
    cadence. Returns the model (columns in the frame's order) and the number of series fitted
    now.
    """
    det = config.detection
    params: dict[str, object] = {
        "step_seconds": frame.step_seconds,
        "threshold": det.threshold,
        "lookback_seconds": float(frame.times[-1] - frame.times[0]),
        "format": MODEL_FORMAT,
    }
    stored = (
        _load_fresh(store, frame.metric, params, now, det.refit_interval_seconds)
        if store is not None
        else None
    )
    column_of = stored.column_of if stored is not None else {}
    ids = [_key_id(k) for k in frame.keys]
    known = [i for i, k in enumerate(ids) if k in column_of]
    missing = [i for i, k in enumerate(ids) if k not in column_of]
    pieces: list[AnomalyModel] = []
    if stored is not None and known:
        pieces.append(stored.model.select(np.array([column_of[ids[i]] for i in known], dtype=int)))
    if missing:
        sub = frame.select(missing)
        fresh = AnomalyModel(step_seconds=frame.step_seconds, threshold=det.threshold)
        pieces.append(fresh.fit(sub.times, sub.values))
    model = pieces[0] if len(pieces) == 1 else AnomalyModel.concat(pieces)
    order = known + missing
    if order != sorted(order):
        model = model.select(np.argsort(np.array(order)))
    if store is not None and missing:
        fitted_at = stored.fitted_at if stored is not None and known else now
        store.save(
            frame.metric, model.get_state(), {"keys": ids, "fitted_at": fitted_at, "params": params}
        )
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


def _newest(values: np.ndarray, k: int = 3) -> float:
    tail = values[-k:]
    finite = tail[np.isfinite(tail)]
    return float(finite[-1]) if finite.size else math.nan


def _health(config: Config, report: RunReport) -> list[TenantHealth]:
    current: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    flagged: dict[str, dict[str, float]] = defaultdict(dict)
    tenants: set[str] = set()
    for o in report.outcomes:
        if o.frame is None:
            continue
        for j, key in enumerate(o.frame.keys):
            if key.tenant is None:
                continue
            tenants.add(key.tenant)
            current[key.tenant][o.metric.name].append(_newest(o.frame.values[:, j]))
    for f in report.anomalies:
        if f.key.tenant is not None:
            prev = flagged[f.key.tenant].get(f.metric, 0.0)
            flagged[f.key.tenant][f.metric] = max(prev, f.score)
    return [tenant_health(config.health, t, current[t], flagged[t]) for t in sorted(tenants)]


def _health_samples(config: Config, report: RunReport) -> list[Sample]:
    samples = []
    label = config.tenant_label or "tenant"
    for h in report.health:
        samples.append(Sample("anomaly_health_score", {label: h.tenant}, h.score))
        for comp, value in h.components.items():
            samples.append(
                Sample(
                    "anomaly_health_component_score", {label: h.tenant, "component": comp}, value
                )
            )
    if report.health:
        samples.append(Sample("anomaly_global_health_score", {}, report.global_health))
    return samples


def _job_samples(config: Config, report: RunReport, finished_at: float) -> list[Sample]:
    samples = [
        Sample("anomaly_job_last_success_timestamp_seconds", {}, finished_at),
        Sample("anomaly_job_duration_seconds", {}, finished_at - report.started_at),
        Sample("anomaly_job_series", {}, float(report.series_scored)),
        Sample("anomaly_job_series_failed", {}, float(report.series_failed)),
        Sample("anomaly_job_anomalies", {}, float(len(report.anomalies))),
    ]
    for o in report.outcomes:
        samples.append(
            Sample(
                "anomaly_job_metric_failed",
                {"metric": o.metric.name},
                0.0 if o.error is None else 1.0,
            )
        )
    return samples


def _rate_for(
    config: Config, frame: Frame, rate_metric: MetricConfig, source: PrometheusSource
) -> np.ndarray | None:
    """The rate metric's values on ``frame``'s grid, columns matched to ``frame``'s series
    (same labels, else same tenant); NaN where a series has no rate. None if the query fails."""
    try:
        raw = source.query_range(
            rate_metric.query, float(frame.times[0]), float(frame.times[-1]), frame.step_seconds
        )
    except QueryError as e:
        log.error("metric %s: rate query %s failed: %s", frame.metric, rate_metric.name, e)
        return None
    rates = build_frame(
        rate_metric.name,
        ((r.labels, r.times, r.values) for r in raw),
        frame.times,
        config.tenant_label,
    )
    by_key = {k: j for j, k in enumerate(rates.keys)}
    by_tenant = {k.tenant: j for j, k in enumerate(rates.keys) if k.tenant is not None}
    out = np.full(frame.values.shape, np.nan)
    for i, key in enumerate(frame.keys):
        j = by_key.get(key, by_tenant.get(key.tenant) if key.tenant is not None else None)
        if j is not None:
            out[:, i] = rates.values[:, j]
    return out


def score_metric(
    config: Config,
    mc: MetricConfig,
    *,
    now: float,
    source: PrometheusSource,
    store: ModelStore | None,
) -> MetricOutcome:
    """Fetch, fit or reuse, and score one metric. A broken query is reported, not raised."""
    t0 = time.perf_counter()
    outcome = MetricOutcome(mc)
    try:
        frame = fetch_frame(config, mc, now=now, source=source)
    except QueryError as e:
        outcome.error = str(e)
        log.error("metric %s: query failed: %s", mc.name, e)
        return outcome
    outcome.frame = frame
    if frame.n_series == 0:
        outcome.error = (
            f"all {len(frame.skipped)} series skipped ({frame.skipped[0].reason})"
            if frame.skipped
            else "query returned no series"
        )
        log.warning("metric %s: %s", mc.name, outcome.error)
        return outcome
    if mc.detect:
        model, outcome.refitted = load_or_fit(config, frame, store, now)
        outcome.result = model.score(frame.times, frame.values, n_eval=1)
        for j, reason in enumerate(outcome.result.reason):
            if reason:
                log.warning("metric %s: series %s not scored: %s", mc.name, frame.keys[j], reason)
    if mc.forecast is not None:
        fcc = mc.forecast
        rate = None
        if fcc.rate is not None:
            rate = _rate_for(config, frame, config.metric(fcc.rate), source)
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
    outcome.seconds = time.perf_counter() - t0
    return outcome


def run_once(
    config: Config,
    *,
    now: float | None = None,
    source: PrometheusSource | None = None,
    sink: PushgatewaySink | None = None,
    store: ModelStore | None = None,
) -> RunReport:
    """One cycle: query every metric, fit or load models, score, compute health, push.

    Raises :class:`~anomaly.errors.SourceError` when Prometheus is unreachable and
    :class:`~anomaly.errors.SinkError` when the push fails; a broken query only fails its metric.
    """
    started = time.time()
    now = started if now is None else now
    source = source or PrometheusSource(config.prometheus)
    sink = sink or PushgatewaySink(config.pushgateway, config.tenant_label)
    store = store if store is not None else ModelStore(config.model_dir)
    source.check()
    report = RunReport(started_at=started, evaluated_at=now)
    samples: list[Sample] = []
    for i, mc in enumerate(config.metrics, 1):
        outcome = score_metric(config, mc, now=now, source=source, store=store)
        report.outcomes.append(outcome)
        if outcome.frame is not None and outcome.result is not None:
            s, f = _samples_for(config, mc, outcome.frame, outcome.result)
            samples.extend(s)
            report.findings.extend(f)
            n_anom = sum(1 for x in f if x.is_anomaly)
            log.info(
                "[%d/%d] metric %s: %d series scored, %d anomalous, %d fitted, %.1fs",
                i,
                len(config.metrics),
                mc.name,
                len(f),
                n_anom,
                outcome.refitted,
                outcome.seconds,
            )
        samples.extend(_forecast_samples(mc, outcome))
    report.health = _health(config, report)
    report.global_health = global_health(report.health)
    samples.extend(_health_samples(config, report))
    finished = time.time()
    samples.extend(_job_samples(config, report, finished))
    report.push = sink.push(samples)
    report.duration_seconds = time.time() - started
    return report


def format_summary(report: RunReport, *, limit: int = 50) -> str:
    """A short human summary of a run: anomalies with expected vs actual, health per tenant."""
    lines = [
        f"scored {report.series_scored} series in {report.duration_seconds:.1f}s: "
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
    breaches = []
    for o in report.outcomes:
        if (
            o.breach_seconds is None
            or o.frame is None
            or o.forecast is None
            or not o.metric.forecast
        ):
            continue
        fc_cfg = o.metric.forecast
        value, _, _ = o.forecast.at(fc_cfg.horizon_seconds)
        for j, key in enumerate(o.frame.keys):
            b = float(o.breach_seconds[j])
            if math.isfinite(b):
                who = key.tenant if key.tenant is not None else str(key)
                when = "already crossed" if b == 0 else f"crosses in {b / 3600:.1f}h"
                breaches.append(
                    (
                        b,
                        f"  {who:<16} {o.metric.name:<14} {when:<18} threshold "
                        f"{fc_cfg.threshold:g} ({fc_cfg.direction}), forecast "
                        f"{value[j]:.4g} in {format_duration(fc_cfg.horizon_seconds)}",
                    )
                )
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
