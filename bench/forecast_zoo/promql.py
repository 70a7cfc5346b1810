"""Rolling-sum queries served as Prometheus serves them, in numpy, and how the job forecasts each.

The forecast zoo writes the rolling 24-hour spend the ways users write it::

    sum by (organization_id) (increase(pa_ai_cost_usd_total[1d]))
    sum by (organization_id) (sum_over_time(pa_ai_cost_usd_minute[1d]))
    sum by (organization_id) (avg_over_time(pa_ai_cost_usd_minute[1d])) * 1440
    sum by (organization_id) (rate(pa_ai_cost_usd_total[1d])) * 86400

:func:`serve` evaluates such a query at the 5-minute steps of a ``query_range`` from raw
samples (:class:`Scrapes`), the way Prometheus 2.x and 3.x compute it: ``increase`` and
``rate`` take the first and last sample in the range, add back counter resets and extrapolate
to the range's edges (``extrapolatedRate`` in ``promql/functions.go``: towards an edge by the
distance to it when that is under 1.1 average sample intervals, else by half an interval, and
never below a counter's zero point); ``sum_over_time`` and ``avg_over_time`` sum and average
the samples in the range. The scrapes are offset from the query steps (``Scrapes.start``), so
no sample sits on a range's edge and the 2.x closed and 3.x left-open ranges read the same
samples. One series per tenant: ``sum by (organization_id)`` leaves each column as it is. An
end-to-end test compares every form with a real Prometheus' answers on the same samples.

:func:`job_mode` says how the job forecasts a query: plain, or in rate mode from a derived
rate query with its window and unit: the product's recognition of rolling windows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from anomaly.io.promql_syntax import duration_seconds
from anomaly.io.rolling_query import NotRollingSum, recognise_rolling_sum

_DURATION = r"((?:\d+(?:ms|[smhdw]))+)"
_QUERY = re.compile(
    r"^\s*(?P<agg>sum|max|min|avg)\s+by\s*\((?P<by>[^)]*)\)\s*\(\s*(?:(?P<func>increase|rate|sum_over_time|"
    r"avg_over_time)\s*\(\s*(?P<metric>[A-Za-z_:][\w:]*)\s*\[" + _DURATION + r"\]\s*\)|"
    r"(?P<gauge>[A-Za-z_:][\w:]*))\s*\)\s*(?:\*\s*(?P<factor>\d+(?:\.\d+)?))?\s*$"
)


@dataclass(frozen=True)
class Scrapes:
    """The raw samples of one metric as Prometheus stored them, one column per tenant.

    Sample ``k`` was scraped at ``start + k * interval_seconds``.
    """

    start: float
    interval_seconds: float
    values: np.ndarray
    """Shape ``(n_k, n_series)``."""

    @property
    def times(self) -> np.ndarray:
        """Shape ``(n_k,)``: epoch seconds of the samples."""
        return self.start + self.interval_seconds * np.arange(self.values.shape[0])


@dataclass(frozen=True)
class Query:
    """A parsed zoo query: ``sum by (...) (func(metric[window])) * factor``, or a bare gauge
    (``func`` None)."""

    func: str | None
    metric: str
    window_seconds: float
    factor: float
    by: str
    aggregation: str = "sum"


@dataclass(frozen=True)
class ForecastMode:
    """How the job forecasts a metric: from its own values (``rate_query`` None) or in rate
    mode, carrying the rolling sum forward from ``rate_query``'s forecast."""

    rate_query: str | None
    window_seconds: float = 86400.0
    rate_unit_seconds: float = 3600.0
    why: str = ""


def parse(query: str) -> Query:
    """The parts of `query`; raises ``ValueError`` for a form the zoo does not write."""
    m = _QUERY.match(query)
    if m is None:
        raise ValueError(
            "`query` must be AGG by (...) (FUNC(metric[window])) [* factor] or AGG by (...) "
            f"(gauge), got {query!r}"
        )
    factor = float(m.group("factor")) if m.group("factor") else 1.0
    if m.group("gauge"):
        return Query(None, m.group("gauge"), 0.0, factor, m.group("by").strip(), m.group("agg"))
    window = duration_seconds(m.group(5))
    by, agg = m.group("by").strip(), m.group("agg")
    return Query(m.group("func"), m.group("metric"), window, factor, by, agg)


def job_mode(query: str) -> ForecastMode:
    """How the job forecasts a metric whose config names only `query` (no ``forecast.rate``):
    the product's own recognition of rolling windows
    (:func:`anomaly.io.rolling_query.recognise_rolling_sum`) at the zoo's 5-minute step."""
    from bench.forecast_zoo import STEP  # the package imports this module first

    found = recognise_rolling_sum(query, STEP)
    if isinstance(found, NotRollingSum):
        return ForecastMode(None, why=found.reason)
    return ForecastMode(
        found.rate_query, found.window_seconds, found.rate_unit_seconds, why=found.function
    )


def serve(query: str, raw: Mapping[str, Scrapes], times: np.ndarray) -> np.ndarray:
    """`query` evaluated at every time of `times`, ``(n_t, n_series)``; NaN where Prometheus
    returns nothing (a range with too few samples, a gauge older than 5 minutes)."""
    q = parse(query)
    if q.metric not in raw:
        raise ValueError(f"`query` reads {q.metric!r}, which `raw` does not hold: {sorted(raw)}")
    s = raw[q.metric]
    t = np.asarray(times, dtype=float)
    if q.func is None:
        return q.factor * _instant(s, t)
    if q.func in ("increase", "rate"):
        out = _extrapolated(s, t, q.window_seconds, q.func == "rate")
    else:
        out = _over_time(s, t, q.window_seconds, q.func == "avg_over_time")
    return q.factor * out


def _range(s: Scrapes, t: np.ndarray, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(first, last)`` of the samples in ``[t - window, t]``, ``(n_t,)`` each (first
    past last where the range holds none)."""
    eps = 1e-6 * s.interval_seconds
    first = np.ceil((t - window - s.start - eps) / s.interval_seconds).astype(int)
    last = np.floor((t - s.start + eps) / s.interval_seconds).astype(int)
    first = np.maximum(first, 0)
    last = np.minimum(last, s.values.shape[0] - 1)
    return first, last


def _instant(s: Scrapes, t: np.ndarray) -> np.ndarray:
    """The newest sample at or before each time, within Prometheus' 5-minute lookback."""
    _, last = _range(s, t, 0.0)
    ok = (last >= 0) & (t - (s.start + last * s.interval_seconds) <= 300.0)
    out = s.values[np.clip(last, 0, None)].astype(float)
    out[~ok] = np.nan
    return out


def _extrapolated(s: Scrapes, t: np.ndarray, window: float, is_rate: bool) -> np.ndarray:
    """``increase`` (or ``rate``) over `window` at each time: Prometheus' ``extrapolatedRate``."""
    first, last = _range(s, t, window)
    ok = last - first >= 1  # at least two samples
    a, b = np.where(ok, first, 0), np.where(ok, last, 0)
    v = s.values.astype(float)
    # A drop is a counter reset: the value before it was lost, add it back.
    drops = np.vstack([np.zeros((1, v.shape[1])), np.where(v[1:] < v[:-1], v[:-1], 0.0)])
    resets = np.cumsum(drops, axis=0)
    delta = v[b] - v[a] + resets[b] - resets[a]
    ts = s.times
    to_start = (ts[a] - (t - window))[:, None] * np.ones_like(delta)
    to_end = (t - ts[b])[:, None]
    sampled = (ts[b] - ts[a])[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        average = sampled / np.maximum(b - a, 1)[:, None]
        to_zero = sampled * (v[a] / delta)
    clamp = (delta > 0) & (v[a] >= 0) & (to_zero < to_start)
    to_start = np.where(clamp, to_zero, to_start)
    threshold = 1.1 * average
    interval = (
        sampled
        + np.where(to_start < threshold, to_start, average / 2)
        + np.where(to_end < threshold, to_end, average / 2)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        out = delta * interval / sampled
    if is_rate:
        out = out / window
    out[~ok] = np.nan
    return np.asarray(out)


def _over_time(s: Scrapes, t: np.ndarray, window: float, mean: bool) -> np.ndarray:
    """``sum_over_time`` (or ``avg_over_time``) over `window` at each time."""
    first, last = _range(s, t, window)
    count = last - first + 1
    c = np.vstack([np.zeros((1, s.values.shape[1])), np.cumsum(s.values, axis=0)])
    ok = count >= 1
    a, b = np.where(ok, first, 0), np.where(ok, last, 0)
    out = c[b + 1] - c[a]
    if mean:
        out = out / np.maximum(count, 1)[:, None]
    out[~ok] = np.nan
    return np.asarray(out)
