"""One metric's step of a run: read → fit or load the stored model → score → forecast.

- :func:`read_frame` — the metric's aligned :class:`~anomaly.frame.Frame` from Prometheus
  (only some tenants' series, for a batch);
- :func:`load_or_fit` — reuse stored fitted state where it is fresh, fit the series without;
- :func:`score_metric` — the whole step, as a :class:`~anomaly.job.report.MetricOutcome`;
- :func:`metric_outcomes` — the metrics of one batch of a plan, sharing their reads: a metric
  that is the rate of a forecast metric is read once for both.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from anomaly.config import Config, MetricConfig, format_duration
from anomaly.errors import DataError, QueryError, StoreError
from anomaly.frame import Frame, SeriesKey, build_frame
from anomaly.io.prometheus import PrometheusSource
from anomaly.io.promql import reads_bucket_quantile, restrict_query, tenant_matcher
from anomaly.io.store import ModelStore
from anomaly.job.freshness import freshness
from anomaly.job.plan import BatchPlan, evaluation_window, evidence_rows
from anomaly.job.report import RECENT_SECONDS, MetricOutcome
from anomaly.models.calendar import Calendar
from anomaly.models.forecast import Forecast, ForecastParams, breach_seconds, forecast
from anomaly.models.scoring import AnomalyModel, history_rows
from anomaly.models.seasonal import estimate_calendars

__all__ = [
    "CalendarBook",
    "TenantCalendars",
    "load_or_fit",
    "metric_outcomes",
    "read_calendar_book",
    "read_frame",
    "refit_due",
    "score_metric",
]

log = logging.getLogger(__name__)

MODEL_FORMAT = 6
#: Series fitted in one call (see :func:`load_or_fit`).
FIT_CHUNK_SERIES = 64

# --------------------------------------------------------------------------- reading


def read_frame(
    config: Config,
    mc: MetricConfig,
    *,
    now: float | None,
    source: PrometheusSource,
    tenants: Collection[str] | None = None,
    rows: int | None = None,
) -> Frame:
    """Query ``mc`` over its lookback (``rows``: only the newest rows of it) and align it on
    the run's grid.

    With ``tenants``, only their series: the query gets a matcher for them on every selector
    (:func:`~anomaly.io.promql.restrict_query`; a metric with ``split: false`` or without
    selectors is fetched whole), and the frame keeps only their columns.
    """
    times = evaluation_window(config, now, mc)
    if rows is not None:
        times = times[-rows:]
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
        frames[mc.name] = read_frame(config, wide, now=now, source=source, tenants=tenants)
    frame = frames[mc.name]
    n = times.size
    if n > frame.times.size or not np.array_equal(frame.times[frame.times.size - n :], times):
        return None
    return frame if n == frame.times.size else frame.last_rows(n)


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


# --------------------------------------------------------------------------- calendars


@dataclass(frozen=True)
class CalendarBook:
    """The calendars of some tenants' series read off all of their detected metrics together
    (:func:`read_calendar_book`): the grid they were read on, the column of each
    ``(metric, series)``, and the calendars. Plain arrays: it travels to worker processes."""

    times: np.ndarray
    column: dict[tuple[str, SeriesKey], int]
    calendar: Calendar

    def for_frame(self, frame: Frame) -> Calendar | None:
        """The calendars of ``frame``'s series (None unless all of them were read, on its grid)."""
        if frame.n_series == 0 or not np.array_equal(frame.times, self.times):
            return None
        cols = [self.column.get((frame.metric, k), -1) for k in frame.keys]
        return None if min(cols) < 0 else self.calendar.select(cols)


def read_calendar_book(
    config: Config,
    *,
    now: float,
    source: PrometheusSource,
    tenants: Collection[str] | None,
    frames: dict[str, Frame],
    errors: dict[str, QueryError],
) -> CalendarBook | None:
    """The tenants' calendars (day start, rest days, clock switch), each read off all of its
    detected metrics on the run's grid together
    (:func:`~anomaly.models.seasonal.estimate_calendars` with the tenant as the group): a clock
    that moved or a weekend is the tenant's, and its request rate shows it where a flat
    connection pool or a sparse counter cannot. Reads through ``frames`` (the batch's shared
    reads, which the metrics' own steps then reuse); a failed read goes to ``errors``. None
    without a tenant label or anything to read."""
    if config.tenant_label is None:
        return None
    times = evaluation_window(config, now)
    parts: list[Frame] = []
    for mc in config.metrics:
        if not mc.detect or not np.array_equal(evaluation_window(config, now, mc), times):
            continue
        try:
            frame = _shared_frame(
                config, mc, times, now=now, source=source, tenants=tenants, frames=frames
            )
        except QueryError as e:
            errors[mc.name] = e  # the metric's own step reports it, without asking again
            continue
        if frame is not None and frame.n_series:
            parts.append(frame)
    if not parts:
        return None
    ids: dict[str, int] = {}
    groups: list[int] = []
    column: dict[tuple[str, SeriesKey], int] = {}
    for frame in parts:
        for key in frame.keys:
            column[(frame.metric, key)] = len(groups)
            groups.append(-1 if key.tenant is None else ids.setdefault(key.tenant, len(ids)))
    values = np.concatenate([f.values for f in parts], axis=1)
    calendar = estimate_calendars(
        times, values, config.step_seconds, groups=np.array(groups, dtype=np.int64)
    )
    return CalendarBook(times, column, calendar)


class TenantCalendars:
    """One batch's :class:`CalendarBook`, read on the first fit that needs it (a run whose
    models are all fresh never reads it), or given (read by the parent of worker processes
    that score the batch's metrics side by side; None there: each series its own).

    Metrics on another grid (their own ``lookback``) and runs without a tenant label keep each
    series' own calendar.
    """

    def __init__(
        self,
        config: Config,
        *,
        now: float,
        source: PrometheusSource | None,
        tenants: Collection[str] | None,
        frames: dict[str, Frame],
    ) -> None:
        self._config, self._now, self._source = config, now, source
        self._tenants, self._frames = tenants, frames
        self._read = False
        self._book: CalendarBook | None = None
        #: Metrics whose read failed while the calendars were read.
        self.errors: dict[str, QueryError] = {}

    @classmethod
    def given(cls, config: Config, book: CalendarBook | None, now: float) -> TenantCalendars:
        """Calendars read elsewhere (``None``: each series reads its own)."""
        out = cls(config, now=now, source=None, tenants=None, frames={})
        out._read, out._book = True, book
        return out

    def for_frame(self, frame: Frame) -> Calendar | None:
        """The calendars of ``frame``'s series (None: each series reads its own)."""
        if not self._read and self._source is not None:
            self._read = True
            self._book = read_calendar_book(
                self._config,
                now=self._now,
                source=self._source,
                tenants=self._tenants,
                frames=self._frames,
                errors=self.errors,
            )
        return None if self._book is None else self._book.for_frame(frame)


def refit_due(
    config: Config, plan: BatchPlan, index: int, store: ModelStore | None, now: float
) -> bool:
    """Whether some detected metric of batch ``index`` has no fresh stored model (read from
    the stored files' metadata only): its next run fits, and wants the tenants' calendars."""
    return any(
        _fresh_ids(config, mc, store, plan.store_key(mc.name, index), now) is None
        for mc in config.metrics
        if mc.detect
    )


def _fresh_ids(
    config: Config, mc: MetricConfig, store: ModelStore | None, key: str, now: float
) -> set[str] | None:
    """The series of ``mc``'s stored model under ``key`` if it is fresh and fitted on the
    run's window (read from its metadata only), else None: the metric is (re)fitted."""
    if store is None:
        return None
    meta = store.load_meta(key)
    times = evaluation_window(config, now, mc)
    params = _fit_params(config, config.step_seconds, float(times[-1] - times[0]))
    if (
        meta is None
        or meta.get("params") != params
        or now - float(meta.get("fitted_at", 0)) >= config.detection.refit_interval_seconds
    ):
        return None
    return {str(k) for k in meta.get("keys", [])}


def _forecasts_fed(config: Config, mc: MetricConfig) -> list[MetricConfig]:
    """The forecast metrics ``mc`` is the rate of."""
    return [m for m in config.metrics if m.forecast is not None and m.forecast.rate == mc.name]


def _rate_metric(config: Config, mc: MetricConfig) -> MetricConfig | None:
    """Where rate mode reads the rate of ``mc``'s forecast: the configured metric
    ``forecast.rate`` names, or, for a rate derived from ``mc``'s query, an internal metric
    reading it over ``mc``'s lookback and tenants (named ``<name>:rate``, which no configured
    metric can be; never detected or pushed). None for a plain forecast."""
    fcc = mc.forecast
    if fcc is None or fcc.mode == "plain":
        return None
    if fcc.rate is not None:
        return config.metric(fcc.rate)
    if fcc.rate_query is None:
        raise ValueError(f"metric {mc.name}: forecast mode {fcc.mode!r} without a rate")
    return MetricConfig(
        name=f"{mc.name}:rate",
        query=fcc.rate_query,
        detect=False,
        lookback_seconds=mc.lookback_seconds,
        split=mc.split,
    )


def _scored_rows(config: Config, times: np.ndarray, now: float) -> int:
    """How many of the newest rows of ``times`` a run scores: the points since the previous
    run it judges, and at least the last hour, for the recent trouble health remembers; and
    ``detection.max_data_age`` more, where a late series' points end."""
    recent = int(np.count_nonzero(times > times[-1] - RECENT_SECONDS))
    late = int(config.detection.max_data_age_seconds // config.step_seconds)
    return min(max(evidence_rows(config, times, now), recent) + late, times.shape[0])


def _reporting(frame: Frame, rows: int) -> Frame:
    """``frame`` without the series that have values, but none in its newest ``rows`` (the
    rows a run scores): gone for longer than scoring looks back (a tenant that left, a renamed
    pod), they are not scored, whether the run read the whole lookback or only those rows."""
    finite = np.isfinite(frame.values)
    keep = np.flatnonzero(np.any(finite[-rows:], axis=0) | ~np.any(finite, axis=0))
    return frame if keep.size == frame.n_series else frame.select(keep.tolist())


def _read_warm(
    config: Config,
    mc: MetricConfig,
    *,
    now: float,
    source: PrometheusSource,
    store: ModelStore | None,
    key: str,
    tenants: Collection[str] | None,
) -> Frame | None:
    """``mc``'s newest rows only, as many as the run needs of them, when nothing of ``mc``
    needs its whole lookback this run; None when something does. A detected metric needs the
    rows scoring reads (:func:`_scored_rows` plus
    :func:`~anomaly.models.scoring.history_rows`) while its stored model is fresh; a forecast
    metric the rows scored while its stored forecast is (``forecast.refresh``); the rate of a
    forecast metric its whole lookback when that forecast is made anew. A series the stored
    state does not know needs the lookback too. Raises :class:`QueryError`."""
    known: list[set[str]] = []
    if mc.detect:
        known.append(_fresh_ids(config, mc, store, key, now) or set())
    if mc.forecast is not None:
        known.append(_fresh_forecast_ids(config, mc, store, key, now) or set())
    suffix = key[len(mc.name) :] if key.startswith(mc.name) else None
    for fed in _forecasts_fed(config, mc):
        fed_key = None if suffix is None else fed.name + suffix
        if fed_key is None or not _fresh_forecast_ids(config, fed, store, fed_key, now):
            return None
    times = evaluation_window(config, now, mc)
    rows = _scored_rows(config, times, now) + (
        history_rows(config.step_seconds) if mc.detect else 0
    )
    if not known or not all(known) or rows >= times.shape[0]:
        return None
    frame = read_frame(config, mc, now=now, source=source, tenants=tenants, rows=rows)
    if not all(_key_id(k) in ids for ids in known for k in frame.keys):
        log.info("metric %s: a new series; reading the whole lookback", mc.name)
        return None
    return frame


# --------------------------------------------------------------------------- models


def _key_id(key: SeriesKey) -> str:
    return json.dumps([key.tenant, [list(kv) for kv in key.labels]], ensure_ascii=False)


@dataclass(frozen=True)
class _Stored:
    """A usable stored model: its series' ids (column order) and when it was fitted."""

    model: AnomalyModel
    column_of: dict[str, int]
    fitted_at: float


def _fit_params(config: Config, step_seconds: float, lookback_seconds: float) -> dict[str, object]:
    """What a stored model must have been fitted with to be reused."""
    return {
        "step_seconds": step_seconds,
        "threshold": config.detection.threshold,
        "lookback_seconds": lookback_seconds,
        "format": MODEL_FORMAT,
    }


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
    calendars: TenantCalendars | None = None,
    window_seconds: float | None = None,
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

    ``calendars``: the batch's tenant calendars, which the series fitted now learn by
    (default: each series its own). ``window_seconds``: the span of the run's window that
    the stored model must have been fitted on (default: ``frame``'s, which must then be the
    whole window when a series is fitted).
    """
    det = config.detection
    if window_seconds is None:
        window_seconds = float(frame.times[-1] - frame.times[0])
    params = _fit_params(config, frame.step_seconds, window_seconds)
    key = frame.metric if key is None else key
    stored = (
        _load_fresh(store, key, params, now, det.refit_interval_seconds)
        if store is not None
        else None
    )
    column_of = stored.column_of if stored is not None else {}
    bucketed = reads_bucket_quantile(config.metric(frame.metric).query)
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
        fresh = AnomalyModel(
            step_seconds=frame.step_seconds, threshold=det.threshold, bucketed=bucketed
        )
        calendar = calendars.for_frame(sub) if calendars is not None else None
        pieces.append(fresh.fit(sub.times, sub.values, calendar))
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


# --------------------------------------------------------------------------- forecasts


#: Suffix of the model store key of a metric's stored forecast.
_FORECAST_KEY = "#forecast"
#: The arrays of a stored :class:`Forecast`, and those it has only in some modes; every one
#: but ``times`` holds the series along its last axis.
_FORECAST_ARRAYS = ("times", "value", "lower", "upper", "valid", "last_value")
_FORECAST_OPTIONAL = ("guard", "held_guard", "additive")


def _forecast_params(config: Config, mc: MetricConfig) -> dict[str, object]:
    """What a stored forecast must have been made with to be reused."""
    fcc = mc.forecast
    assert fcc is not None
    window = evaluation_window(config, 0.0, mc)
    rate_metric = _rate_metric(config, mc)
    return {
        "step_seconds": config.step_seconds,
        "lookback_seconds": float(window[-1] - window[0]),
        "query": mc.query,
        "horizon_seconds": fcc.horizon_seconds,
        "rate": None if rate_metric is None else rate_metric.query,
        "window_seconds": fcc.window_seconds,
        "rate_unit_seconds": fcc.rate_unit_seconds,
        "format": MODEL_FORMAT,
    }


def _fresh_forecast_ids(
    config: Config, mc: MetricConfig, store: ModelStore | None, key: str, now: float
) -> set[str] | None:
    """The series of ``mc``'s stored forecast under ``key`` if it was made less than
    ``forecast.refresh`` before ``now`` with the same settings (read from its metadata only),
    else None: the forecast is made anew."""
    fcc = mc.forecast
    if store is None or fcc is None or fcc.refresh_seconds <= 0:
        return None
    meta = store.load_meta(key + _FORECAST_KEY)
    if meta is None or meta.get("params") != _forecast_params(config, mc):
        return None
    made_at = float(meta.get("now", -math.inf))
    if not 0 <= now - made_at < fcc.refresh_seconds:
        return None
    return {str(k) for k in meta.get("keys", [])}


def _save_forecast(
    store: ModelStore, key: str, fc: Forecast, frame: Frame, params: dict[str, object]
) -> None:
    arrays = {name: getattr(fc, name) for name in _FORECAST_ARRAYS}
    arrays.update(
        {name: getattr(fc, name) for name in _FORECAST_OPTIONAL if getattr(fc, name) is not None}
    )
    meta = {
        "keys": [_key_id(k) for k in frame.keys],
        "now": fc.now,
        "step_seconds": fc.step_seconds,
        "season": fc.season,
        "reason": list(fc.reason),
        "params": params,
    }
    store.save(key + _FORECAST_KEY, arrays, meta)


def _load_forecast(store: ModelStore, key: str, frame: Frame) -> Forecast | None:
    """The stored forecast under ``key`` with columns in ``frame``'s order (None if it is
    missing, unusable or lacks a series of ``frame``)."""
    loaded = store.load(key + _FORECAST_KEY)
    if loaded is None:
        return None
    arrays, meta = loaded
    try:
        column = {str(k): j for j, k in enumerate(meta["keys"])}
        cols = np.array([column[_key_id(k)] for k in frame.keys], dtype=np.int64)
        reason = [meta["reason"][j] for j in cols]
        per_series = {
            name: arrays[name][..., cols]
            for name in _FORECAST_ARRAYS[1:] + _FORECAST_OPTIONAL
            if name in arrays
        }
        return Forecast(
            times=arrays["times"],
            valid=per_series.pop("valid").astype(bool),
            reason=reason,
            now=float(meta["now"]),
            step_seconds=float(meta["step_seconds"]),
            season=str(meta["season"]),
            **per_series,
        )
    except (KeyError, IndexError, TypeError, ValueError) as e:
        log.warning("metric %s: stored forecast unusable (%s); forecasting anew", frame.metric, e)
        return None


def _forecast(
    config: Config,
    mc: MetricConfig,
    frame: Frame,
    *,
    now: float,
    source: PrometheusSource,
    tenants: Collection[str] | None,
    frames: dict[str, Frame] | None,
    store: ModelStore | None = None,
    key: str | None = None,
) -> tuple[Forecast, np.ndarray | None]:
    """The forecast of every series of ``frame`` (of a rolling sum from its rate, in rate
    mode: ``forecast.mode``, see :func:`_rate_metric`), and the seconds until it crosses
    ``fcc.threshold`` (``None`` without a threshold). The one place the job calls
    :mod:`anomaly.models.forecast`.

    A rate metric of the config is read once per batch with its own detection (``frames``);
    a rate derived from ``mc``'s query that no configured metric reads is read over
    ``frame``'s grid, for its tenants.

    With a ``store``, the forecast is kept under ``key`` and reused for ``forecast.refresh``:
    a run that read only ``frame``'s newest rows (:func:`_read_warm`) counts down to the
    stored forecast's breach from its own time and newest values; a stored forecast that
    turns out unusable is made anew from a read of the whole lookback."""
    fcc = mc.forecast
    assert fcc is not None
    key = mc.name if key is None else key
    whole = evaluation_window(config, now, mc).shape[0]
    if store is not None and frame.times.shape[0] < whole:
        fc = _load_forecast(store, key, frame)
        if fc is not None:
            if fcc.threshold is None:
                return fc, None
            newest = frame.values[-1]
            return fc, breach_seconds(
                fc, newest, fcc.threshold, fcc.direction, now=float(frame.times[-1])
            )
        frame = read_frame(config, mc, now=now, source=source, tenants=tenants)
    rate = None
    rate_metric = _rate_metric(config, mc)
    if rate_metric is not None:
        shared = frames if fcc.rate is not None else None
        rate = _rate_for(config, frame, rate_metric, source, tenants, now=now, frames=shared)
    params = ForecastParams(
        fcc.horizon_seconds,
        window_seconds=fcc.window_seconds,
        rate_unit_seconds=fcc.rate_unit_seconds,
    )
    fc = forecast(frame.times, frame.values, params, rate=rate, step_seconds=frame.step_seconds)
    if store is not None and fcc.refresh_seconds > 0:
        try:
            _save_forecast(store, key, fc, frame, _forecast_params(config, mc))
        except StoreError as e:
            log.error("metric %s: %s; the forecast is made anew next run", mc.name, e)
    if fcc.threshold is None:
        return fc, None
    return fc, breach_seconds(fc, None, fcc.threshold, fcc.direction)


def _breach_lines(outcome: MetricOutcome) -> list[tuple[float, str]]:
    mc = outcome.metric
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


# --------------------------------------------------------------------------- the step


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
    calendars: TenantCalendars | None = None,
) -> MetricOutcome:
    """Fetch, fit or reuse, and score one metric (``tenants``: only theirs, see
    :func:`read_frame`). A broken query is reported, not raised.

    ``frames`` is the batch's cache of reads shared between metrics: a metric that is the
    rate of a forecast metric is read once over the longer of the two lookbacks, for its own
    detection and for that forecast (in either order), and the tenant ``calendars`` read every
    detected metric once. Series fitted now learn by those calendars.

    A detected metric whose stored model is fresh reads only the rows scoring reads (about a
    day, :func:`_read_warm`), unless the batch read it whole already."""
    t0 = time.perf_counter()
    outcome = MetricOutcome(mc)
    times = evaluation_window(config, now, mc)
    try:
        frame = None
        if calendars is not None and mc.name in calendars.errors:
            raise calendars.errors[mc.name]
        if frames is None or mc.name not in frames:
            frame = _read_warm(
                config,
                mc,
                now=now,
                source=source,
                store=store,
                key=mc.name if store_key is None else store_key,
                tenants=tenants,
            )
        if frame is None and frames is not None:
            frame = _shared_frame(
                config, mc, times, now=now, source=source, tenants=tenants, frames=frames
            )
        if frame is None:
            frame = read_frame(config, mc, now=now, source=source, tenants=tenants)
    except QueryError as e:
        outcome.error = str(e)
        outcome.query_failed = True
        log.error("metric %s: query failed: %s", mc.name, e)
        return outcome
    t1 = time.perf_counter()
    outcome.fetch_seconds = t1 - t0
    if mc.detect:
        frame = _reporting(
            frame, _scored_rows(config, times, now) + history_rows(frame.step_seconds)
        )
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
    outcome.freshness = freshness(
        frame.times, frame.values, now, config.detection.max_data_age_seconds
    )
    if mc.detect:
        save_errors: list[str] = []
        model, outcome.refitted = load_or_fit(
            config,
            frame,
            store,
            now,
            key=store_key,
            save_errors=save_errors,
            calendars=calendars,
            window_seconds=float(times[-1] - times[0]),
        )
        outcome.store_error = save_errors[0] if save_errors else None
        t2 = time.perf_counter()
        # The points since the previous run are judged (a late series' up to its newest
        # value: they end up to `max_data_age` earlier, see anomaly.job.freshness); the
        # last hour is scored too, for the recent trouble health remembers.
        outcome.n_evidence = min(evidence_rows(config, frame.times, now), frame.times.shape[0])
        n_eval = _scored_rows(config, frame.times, now)
        outcome.result = model.score(frame.times, frame.values, n_eval=n_eval)
        outcome.model_seconds, outcome.score_seconds = t2 - t1, time.perf_counter() - t2
        outcome.n_unscored = int(np.count_nonzero(~outcome.result.valid))
        for j, reason in enumerate(outcome.result.reason):
            if reason:
                log.warning("metric %s: series %s not scored: %s", mc.name, frame.keys[j], reason)
    if mc.forecast is not None:
        t3 = time.perf_counter()
        fc, outcome.breach_seconds = _forecast(
            config,
            mc,
            frame,
            now=now,
            source=source,
            tenants=tenants,
            frames=frames,
            store=store,
            key=mc.name if store_key is None else store_key,
        )
        outcome.forecast = fc
        for j, reason in enumerate(fc.reason):
            if reason:
                log.warning("metric %s: series %s not forecast: %s", mc.name, frame.keys[j], reason)
        outcome.breaches = _breach_lines(outcome)
        outcome.forecast_seconds = time.perf_counter() - t3
    outcome.seconds = time.perf_counter() - t0
    return outcome


# --------------------------------------------------------------------------- a batch's metrics


def _batch_outcome(
    config: Config,
    plan: BatchPlan,
    index: int,
    mc: MetricConfig,
    *,
    now: float,
    source: PrometheusSource,
    store: ModelStore | None,
    frames: dict[str, Frame] | None = None,
    calendars: TenantCalendars | None = None,
) -> MetricOutcome:
    """One metric of one batch: refused by the plan, empty, or scored (``frames``: the
    batch's shared reads, ``calendars`` its tenants' calendars, see :func:`score_metric`)."""
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
        calendars=calendars,
    )


def metric_outcomes(
    config: Config,
    plan: BatchPlan,
    index: int,
    metrics: Sequence[int],
    *,
    now: float,
    source: PrometheusSource,
    store: ModelStore | None,
    calendars: TenantCalendars | None = None,
    frames: dict[str, Frame] | None = None,
) -> list[MetricOutcome]:
    """The outcomes of the metrics at ``metrics`` (indices into ``config.metrics``, in order)
    for batch ``index`` of ``plan``, sharing their reads (see :func:`score_metric`; ``frames``:
    reads made already) and the tenants' ``calendars`` (default: read on the first fit).

    Each scored metric logs a progress line as it finishes, prefixed with its batch when the
    run has several (in a worker process too: its log records reach the run's log)."""
    frames = {} if frames is None else dict(frames)
    if calendars is None:
        tenants = None if plan.batches is None else plan.batches[index]
        calendars = TenantCalendars(config, now=now, source=source, tenants=tenants, frames=frames)
    outcomes = []
    for i in metrics:
        outcome = _batch_outcome(
            config,
            plan,
            index,
            config.metrics[i],
            now=now,
            source=source,
            store=store,
            frames=frames,
            calendars=calendars,
        )
        if outcome.error is None and outcome.n_series:
            where = (
                f"batch {index + 1}/{plan.n_batches}: "
                if plan.n_batches > 1
                else f"[{i + 1}/{len(config.metrics)}] "
            )
            log.info("%s%s", where, outcome.progress())
        outcomes.append(outcome)
    return outcomes
