"""The series the job pushes: one table of names, help text and labels, and the builders of
the samples pushed under those names.

Everything that names a pushed series derives from :data:`SERIES`: the sample builders (they
take their names from it, checked when this module loads), the help text the Pushgateway
shows, the README's list (:func:`markdown_table`, checked by a test), and the contract test. A
new series is one row here and a line in a builder.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from anomaly.config import MetricConfig, format_duration
from anomaly.frame import SeriesKey
from anomaly.health import TenantHealth
from anomaly.io.pushgateway import Sample
from anomaly.job.report import Finding, MetricOutcome, RunReport

__all__ = [
    "SERIES",
    "HELP",
    "POS_INF",
    "Series",
    "markdown_table",
    "series_labels",
    "finding_samples",
    "forecast_samples",
    "health_samples",
    "job_samples",
]


@dataclass(frozen=True)
class Series:
    """One pushed gauge.

    ``scope`` says which labels it carries: ``series`` (``metric``, the tenant label, the
    source series' labels and the metric's configured ``labels``), ``forecast`` (the same plus
    ``horizon`` where noted), ``tenant`` (the tenant label only), ``job`` (none of them).
    ``pos_inf`` allows +Inf as a value (a breach beyond the horizon); every other non-finite
    value is dropped before the push.
    """

    name: str
    help: str
    scope: str
    extra_labels: tuple[str, ...] = ()
    pos_inf: bool = False


SERIES: tuple[Series, ...] = (
    Series(
        "anomaly_score",
        "Anomaly score in [0, 1]: the highest of the grid points since the previous run; 0.5 = one detector at its threshold.",
        "series",
    ),
    Series(
        "anomaly_detected",
        "1 when any grid point since the previous run scored at least `detection.threshold`, else 0.",
        "series",
    ),
    Series(
        "anomaly_expected_value",
        "Model expectation at the newest point, in the source metric's unit.",
        "series",
    ),
    Series(
        "anomaly_lower_bound",
        "Lower edge of the expected band at the newest point, in the source unit.",
        "series",
    ),
    Series(
        "anomaly_upper_bound",
        "Upper edge of the expected band at the newest point, in the source unit.",
        "series",
    ),
    Series(
        "anomaly_actual_value",
        "The series' own value at the newest point, in the source metric's unit.",
        "series",
    ),
    Series(
        "anomaly_data_age_seconds",
        "Seconds from the run's time to the newest point, where the series is judged: its "
        "newest grid row holding a value, or its tenant's late data (up to "
        "`detection.max_data_age` old).",
        "series",
    ),
    Series(
        "anomaly_forecast_value",
        "Forecast at now + horizon, in the source metric's unit.",
        "forecast",
        ("horizon",),
    ),
    Series(
        "anomaly_forecast_lower_bound",
        "Lower edge of the forecast band at now + horizon.",
        "forecast",
        ("horizon",),
    ),
    Series(
        "anomaly_forecast_upper_bound",
        "Upper edge of the forecast band at now + horizon.",
        "forecast",
        ("horizon",),
    ),
    Series(
        "anomaly_forecast_breach_seconds",
        "Seconds until the forecast first crosses the threshold; 0 if already crossed, "
        "+Inf if not within the horizon.",
        "forecast",
        pos_inf=True,
    ),
    Series(
        "anomaly_forecast_threshold",
        "The configured forecast threshold the breach countdown is measured against.",
        "forecast",
    ),
    Series(
        "anomaly_health_score",
        "Health score 0..100 per tenant from objectives and anomalies.",
        "tenant",
    ),
    Series(
        "anomaly_health_component_score",
        "One component (0..100) of a tenant's health score.",
        "tenant",
        ("component",),
    ),
    Series(
        "anomaly_tenant_last_run_timestamp_seconds",
        "Unix time the job last pushed this tenant's results; alert freshness guard.",
        "tenant",
    ),
    Series(
        "anomaly_tenant_data_age_seconds",
        "Seconds from the run's time to the oldest of the tenant's series' newest points: "
        "how old the data behind its health is at worst (`AnomalyDataStale` fires above 900).",
        "tenant",
    ),
    Series(
        "anomaly_global_health_score",
        "Health score 0..100 across all tenants.",
        "job",
    ),
    Series(
        "anomaly_job_last_success_timestamp_seconds",
        "Unix time the last successful run finished.",
        "job",
    ),
    Series("anomaly_job_duration_seconds", "Duration of the last run in seconds.", "job"),
    Series("anomaly_job_series", "Number of series scored by the last run.", "job"),
    Series("anomaly_job_series_failed", "Number of series the last run could not score.", "job"),
    Series("anomaly_job_anomalies", "Number of anomalous series found by the last run.", "job"),
    Series(
        "anomaly_job_metric_failed",
        "1 when the last run could not score a configured metric, else 0.",
        "job",
        ("metric",),
    ),
)

#: Help text by series name, for the Pushgateway's ``# HELP`` lines.
HELP: dict[str, str] = {s.name: s.help for s in SERIES}
#: Series whose value may be +Inf.
POS_INF: frozenset[str] = frozenset(s.name for s in SERIES if s.pos_inf)


def _names(*names: str) -> tuple[str, ...]:
    """``names``, each checked against :data:`SERIES` (a builder cannot push an unlisted one)."""
    unlisted = [n for n in names if n not in HELP]
    if unlisted:
        raise KeyError(f"not rows of export.SERIES: {', '.join(unlisted)}")
    return names


_SCORE, _DETECTED, _EXPECTED, _LOWER, _UPPER, _ACTUAL, _DATA_AGE = _names(
    "anomaly_score",
    "anomaly_detected",
    "anomaly_expected_value",
    "anomaly_lower_bound",
    "anomaly_upper_bound",
    "anomaly_actual_value",
    "anomaly_data_age_seconds",
)
_FC_VALUE, _FC_LOWER, _FC_UPPER, _FC_BREACH, _FC_THRESHOLD = _names(
    "anomaly_forecast_value",
    "anomaly_forecast_lower_bound",
    "anomaly_forecast_upper_bound",
    "anomaly_forecast_breach_seconds",
    "anomaly_forecast_threshold",
)
_HEALTH, _HEALTH_COMPONENT, _TENANT_LAST_RUN, _TENANT_DATA_AGE = _names(
    "anomaly_health_score",
    "anomaly_health_component_score",
    "anomaly_tenant_last_run_timestamp_seconds",
    "anomaly_tenant_data_age_seconds",
)
(
    _JOB_LAST_SUCCESS,
    _JOB_DURATION,
    _JOB_SERIES,
    _JOB_SERIES_FAILED,
    _JOB_ANOMALIES,
    _GLOBAL_HEALTH,
    _JOB_METRIC_FAILED,
) = _names(
    "anomaly_job_last_success_timestamp_seconds",
    "anomaly_job_duration_seconds",
    "anomaly_job_series",
    "anomaly_job_series_failed",
    "anomaly_job_anomalies",
    "anomaly_global_health_score",
    "anomaly_job_metric_failed",
)


# --------------------------------------------------------------------------- sample builders


def series_labels(mc: MetricConfig, key: SeriesKey) -> dict[str, str]:
    """The labels of ``mc``'s derived series for the source series ``key`` (scope ``series``):
    the source's labels, the metric's configured ``labels`` and ``metric``."""
    labels = {}
    for k, v in key.labels:
        # The `metric` label is ours; a source label of that name is kept under another name.
        labels["exported_metric" if k == "metric" else k] = v
    labels.update(mc.labels)
    labels["metric"] = mc.name
    return labels


def finding_samples(mc: MetricConfig, findings: Iterable[Finding]) -> list[Sample]:
    """Score, decision, band, actual value and data age of every finding of ``mc``
    (non-finite values are left out)."""
    samples: list[Sample] = []
    for f in findings:
        labels = series_labels(mc, f.key)
        for name, value in (
            (_SCORE, f.score),
            (_DETECTED, 1.0 if f.is_anomaly else 0.0),
            (_EXPECTED, f.expected),
            (_LOWER, f.lower),
            (_UPPER, f.upper),
            (_ACTUAL, f.actual),
            (_DATA_AGE, f.data_age_seconds),
        ):
            if math.isfinite(value):
                samples.append(Sample(name, labels, value))
    return samples


def forecast_samples(outcome: MetricOutcome) -> list[Sample]:
    """The forecast at now + horizon of every forecast series of ``outcome``, with the breach
    countdown and threshold when the metric has a threshold."""
    mc, fc, frame = outcome.metric, outcome.forecast, outcome.frame
    if fc is None or frame is None or mc.forecast is None:
        return []
    horizon = mc.forecast.horizon_seconds
    value, lower, upper = fc.at(horizon)
    samples = []
    for j, key in enumerate(frame.keys):
        if not fc.valid[j]:
            continue
        labels = series_labels(mc, key)
        with_h = {**labels, "horizon": format_duration(horizon)}
        samples += [
            Sample(_FC_VALUE, with_h, float(value[j])),
            Sample(_FC_LOWER, with_h, float(lower[j])),
            Sample(_FC_UPPER, with_h, float(upper[j])),
        ]
        if outcome.breach_seconds is not None and mc.forecast.threshold is not None:
            samples += [
                Sample(_FC_BREACH, labels, float(outcome.breach_seconds[j])),
                Sample(_FC_THRESHOLD, labels, mc.forecast.threshold),
            ]
    return samples


def health_samples(
    tenant_label: str | None, health: Sequence[TenantHealth], pushed_at: float
) -> list[Sample]:
    """Each tenant's health score, its components, when its results were pushed and how old
    the data behind them is."""
    samples = []
    label = tenant_label or "tenant"
    for h in health:
        samples.append(Sample(_HEALTH, {label: h.tenant}, h.score))
        samples.append(Sample(_TENANT_LAST_RUN, {label: h.tenant}, pushed_at))
        if math.isfinite(h.data_age_seconds):
            samples.append(Sample(_TENANT_DATA_AGE, {label: h.tenant}, h.data_age_seconds))
        for comp, value in h.components.items():
            samples.append(Sample(_HEALTH_COMPONENT, {label: h.tenant, "component": comp}, value))
    return samples


def job_samples(report: RunReport, finished_at: float) -> list[Sample]:
    """The job's own health: last success, duration, counts, and which metrics failed."""
    samples = [
        Sample(_JOB_LAST_SUCCESS, {}, finished_at),
        Sample(_JOB_DURATION, {}, finished_at - report.started_at),
        Sample(_JOB_SERIES, {}, float(report.series_scored)),
        Sample(_JOB_SERIES_FAILED, {}, float(report.series_failed)),
        Sample(_JOB_ANOMALIES, {}, float(len(report.anomalies))),
    ]
    if report.health:
        samples.append(Sample(_GLOBAL_HEALTH, {}, report.global_health))
    for o in report.outcomes:
        samples.append(
            Sample(_JOB_METRIC_FAILED, {"metric": o.metric.name}, 0.0 if o.error is None else 1.0)
        )
    return samples


# --------------------------------------------------------------------------- the README's table

_SCOPES = {
    "series": "per scored series",
    "forecast": "per forecast series",
    "tenant": "per tenant",
    "job": "the job's own group",
}


def markdown_table() -> str:
    """The README's table of pushed series, made from :data:`SERIES`."""
    rows = ["| name | labels | meaning |", "|---|---|---|"]
    for s in SERIES:
        labels = _SCOPES[s.scope] + "".join(f", `{x}`" for x in s.extra_labels)
        rows.append(f"| `{s.name}` | {labels} | {s.help} |")
    return "\n".join(rows)
