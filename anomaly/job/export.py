"""The series the job pushes: one table of names, help text and labels.

Everything that names a pushed series derives from :data:`SERIES`: the sample builders, the
help text the Pushgateway shows, the README's list (:func:`markdown_table`, checked by a test),
and the contract test. A new series is one row here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SERIES", "HELP", "POS_INF", "Series", "markdown_table"]


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
        "Anomaly score in [0, 1] of the newest evaluated points; higher is more anomalous.",
        "series",
    ),
    Series(
        "anomaly_detected",
        "1 when the shipped decision rule flags the series as anomalous, else 0.",
        "series",
    ),
    Series(
        "anomaly_actual_value",
        "The series' own value at the newest point, in the source metric's unit.",
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
