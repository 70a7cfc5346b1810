"""The plain forecaster: a series extrapolated from its own past, vectorised over all series.

``y(t) = reference(t) + d(t)``
    The *reference* is the seasonal expectation: in ``weekly`` mode the (lightly smoothed)
    value one week earlier (the median over up to three earlier weeks when the history holds
    them), in ``daily`` mode the median time-of-day profile over all days. Weekly mode is what
    keeps a tenant whose spend only swings with the week (low weekends, a Monday climb) from
    being extrapolated into a breach; it needs a week plus two days of history, and ``auto``
    falls back to daily mode with less.

``d(t + k) = A + rho * (q * (A - B) + dc(t - 1d + k') - B)``  with ``k = q * 1d + k'``
    The deviation from the reference continues as it did over the last day: ``A`` and ``B``
    are robust levels of ``d`` over the last ``smooth_seconds`` now and one day earlier, and
    ``dc`` is ``d`` smoothed over ``smooth_seconds``. So the trend grows by ``A - B`` a day and
    inside the day it grows *in the shape it grew yesterday*: a spend ramp that only climbs in
    business hours (the 24-hour rolling sum of a drifting rate does exactly that) is forecast
    to climb in business hours again, rather than at its daily average pace. A linear ramp is
    extrapolated exactly; a series without trend gets ``A - B`` and the shape near zero.
    ``rho`` is the acceleration: today's growth over the last ``recent_seconds`` divided by
    the growth over the same hours yesterday (1 unless both are clearly beyond the noise,
    bounded by ``max_acceleration``), so a ramp in its first day is not under-forecast.
    For positive series ``d`` is the ratio ``y / reference - 1`` (a drifting rate scales
    weekdays and weekends alike), otherwise the difference. Where the last day's change of
    ``d`` over the day before is a step (:data:`STEP_WINDOW_SECONDS`, :func:`~.trend.stepped`),
    it is not replayed: ``d`` is held at ``A``.

Intervals have the shape of a normal band whose variance grows with the lead time ``k``:
``sigma_noise**2 + sigma_day**2 * (k / 1d + (k / 1d)**2)``, where ``sigma_noise`` is the spread
of ``d`` around ``dc`` (point noise) and ``sigma_day`` the spread of the day-over-day change of
``dc`` (how irregular the trend and the reference are); their width at each lead is calibrated
on the forecaster's own errors from past origins (:func:`forecast_plain`).

A breach is announced only when a *guard* crosses too (:attr:`PlainForecast.guard`): the
forecast with the day's growth capped by the median hourly growth of the last
``recent_seconds``, damped where that growth slows, so that a step is not extrapolated into a
breach, nor a ratio levelling off above its floor carried through it.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from anomaly.models.features import nanmedian0, nanquantile0
from anomaly.models.forecast.common import (
    Grid,
    by_day,
    cumsum0,
    finite_or,
    first_slot,
    quiet,
    robust_sigma,
    smooth_slots,
)
from anomaly.models.forecast.params import ForecastParams
from anomaly.models.forecast.trend import stepped

WALK_FORWARD_ORIGINS = 16
"""Past origins (``WALK_FORWARD_STRIDE_SECONDS`` apart, the newest one stride back) from which
the plain forecast is made again and compared with what followed, to calibrate its band."""
WALK_FORWARD_STRIDE_SECONDS = 3 * 3600.0
STEP_WINDOW_SECONDS = 24 * 3600.0
"""The newest day-over-day change of the deviation this long is tested for a step
(:func:`~.trend.stepped`): a one-off step of the level is held, neither extrapolated nor
replayed a day later, while a drop that comes every day (a log rotation the smoothed reference
blurs) cancels in the change and is replayed."""
GUARD_BLOCK_SECONDS = 3600.0
"""The guard's growth is the median change of the smoothed deviation per block this long over
the last ``recent_seconds``: a step is one block's change, a trend every block's."""


class PlainForecast(NamedTuple):
    """The plain forecaster's result, each field ``(n_h, n_s)``."""

    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    guard: np.ndarray
    """The forecast with the day's growth no larger than the median hourly growth of the last
    ``recent_seconds`` (none where they disagree in sign), damped where that growth slows
    (:func:`_guard_growth`): a breach is announced only when this crosses too, so a step is
    not extrapolated into a breach, nor a decline levelling off through its floor."""


def forecast_plain(grid: Grid, y: np.ndarray, params: ForecastParams) -> PlainForecast:
    """Point forecast, calibrated band and guard of every column of `y`.

    Parameters
    ----------
    grid : Grid
        The input's times and step, the points to forecast and the season.
    y : array, shape (n_t, n_s)
        Series that can be forecast (checked by the caller); NaN marks a gap.
    params : ForecastParams

    The band is the normal band of the model (see the module docstring) with its width scaled,
    per series and lead, by the walk-forward errors: the same forecast from
    ``WALK_FORWARD_ORIGINS`` past origins, ``WALK_FORWARD_STRIDE_SECONDS`` apart, against what
    followed (the errors in units of each origin's own standard deviation; their
    ``interval`` quantile replaces the normal one where at least 8 origins saw the lead, the
    longest such lead's standing in beyond).
    """
    n_t = y.shape[0]
    point, sd, guard = _plain(grid, y, params)
    stride = max(1, round(WALK_FORWARD_STRIDE_SECONDS / grid.step))
    z = NormalDist().inv_cdf(0.5 + params.interval / 2)
    n_h, n_s = point.shape
    scaled = np.full((WALK_FORWARD_ORIGINS, n_h, n_s), np.nan)
    min_t = grid.per_day + 2 * max(1, round(params.smooth_seconds / grid.step))
    for i in range(WALK_FORWARD_ORIGINS):
        o = n_t - 1 - stride * (i + 1)
        if o + 1 < max(min_t, round(params.min_history_seconds / grid.step)):
            break
        past_grid = Grid(grid.t[: o + 1], grid.step, n_h, grid.season)
        p_point, p_sd, _ = _plain(past_grid, y[: o + 1], params)
        seen = min(n_h, n_t - 1 - o)
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled[i, :seen] = np.abs(y[o + 1 : o + 1 + seen] - p_point[:seen]) / p_sd[:seen]
    factor = _calibrated_z(scaled, params.interval, z)
    half = factor * sd
    return PlainForecast(point, point - half, point + half, guard)


def _calibrated_z(scaled: np.ndarray, interval: float, z: float) -> np.ndarray:
    """Per lead and series ``(n_h, n_s)``, the `interval` quantile of the absolute standardised
    walk-forward errors `scaled` ``(n_o, n_h, n_s)`` where at least 8 origins saw the lead;
    beyond the longest such lead its value, before the shortest the shortest's; `z` (the
    normal quantile) for a series with no such lead."""
    n_h, n_s = scaled.shape[1:]
    n = np.isfinite(scaled).sum(axis=0)
    with quiet():
        q = nanquantile0(scaled, interval)
    q = np.where(n >= 8, q, np.nan)
    out = np.full((n_h, n_s), z)
    for j in range(n_s):
        good = np.flatnonzero(np.isfinite(q[:, j]))
        if good.size:
            col = q[:, j].copy()
            col[good[-1] + 1 :] = col[good[-1]]
            out[:, j] = finite_or(col, col[good[0]])
    return np.maximum(out, 0.25 * z)  # a lucky stretch does not shut the band


def _plain(
    grid: Grid, y: np.ndarray, params: ForecastParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point forecast, the model's standard deviation and the guard, each ``(n_h, n_s)``."""
    n_t = y.shape[0]
    t, step, n_h, per_day = grid.t, grid.step, grid.n_h, grid.per_day
    smooth = max(1, round(params.smooth_seconds / step))
    # The tail where the deviation d is needed: the last day plus margins for the smoothing,
    # and one more day for the day-over-day spread that sizes the interval.
    r0 = max(0, n_t - 2 * per_day - 2 * smooth)
    daily = _daily_profile(t, y, step, per_day)
    ref_tail, fell_back = _reference(y, daily, grid, r0)
    ref_past = ref_tail[: n_t - r0]
    ref_future = ref_tail[n_t - r0 :]
    # Positive series (spend, rates, latencies) deviate multiplicatively: a drifting rate
    # scales the weekday and the weekend alike, so the ratio to the reference grows evenly
    # where the difference would jump at every weekend.
    with np.errstate(invalid="ignore"):
        tail = y[r0:]
        positive = (np.nanmin(tail, axis=0) > 0) & (np.nanmin(ref_tail, axis=0) > 0)
    if params.multiplicative is False:
        positive[:] = False
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(positive, tail / ref_past - 1.0, tail - ref_past)

    recent = max(1, round(params.recent_seconds / step))
    lv = _deviation_levels(d, per_day, smooth, recent)
    a = finite_or(lv.a, 0.0)
    # A day-over-day change across the switch from the time-of-day profile (weeks not yet in
    # the history) to the weekly reference would be a step of the reference's own: left out.
    changed = d[per_day:] - d[:-per_day]
    switched = fell_back[per_day : n_t - r0] != fell_back[: n_t - r0 - per_day]
    changed[switched] = np.nan
    held = stepped(changed, step, STEP_WINDOW_SECONDS, params.trend_z)
    trend_day = np.where(np.isfinite(lv.b) & ~held, a - lv.b, 0.0)
    b = a - trend_day
    steady = _steady_growth(lv.dc, recent, max(1, round(GUARD_BLOCK_SECONDS / step)), per_day)
    guard_day = np.where(
        np.sign(steady) == np.sign(trend_day),
        np.sign(trend_day) * np.minimum(np.abs(trend_day), np.abs(steady)),
        0.0,
    )
    dev = _deviation_ahead(lv, a, b, trend_day, n_h, per_day, smooth, params.max_acceleration)
    dev = np.where(held, a, dev)
    lead_days = (np.arange(1, n_h + 1) / per_day)[:, None]
    guard_dev = a + _guard_growth(lv.dc, guard_day, recent, step, per_day, n_h)

    # The reference can still have holes (a slot never observed): the recent median stands in.
    with quiet():
        recent_median = nanmedian0(y[max(0, n_t - per_day) :])
    fallback = np.where(positive, recent_median / (1.0 + a), recent_median - a)
    fallback = finite_or(fallback, 0.0)
    ref_future = finite_or(ref_future, fallback)
    point = np.where(positive, ref_future * (1.0 + dev), ref_future + dev)
    guard = np.where(positive, ref_future * (1.0 + guard_dev), ref_future + guard_dev)

    sigma_noise = finite_or(lv.sigma_noise, 0.0)
    sigma_day = finite_or(lv.sigma_day, sigma_noise)
    sigma_day = np.maximum(sigma_day, 0.25 * sigma_noise)
    sd = np.sqrt(sigma_noise**2 + sigma_day**2 * (lead_days + lead_days**2))
    sd = np.where(positive, np.abs(ref_future) * sd, sd)
    sd = np.hypot(sd, 1e-6 * np.maximum(1.0, np.abs(point)))  # no overflow near 1e300
    return point, sd, guard


def _guard_growth(
    dc: np.ndarray,
    growth_day: np.ndarray,
    recent: int,
    step: float,
    per_day: int,
    n_h: int,
) -> np.ndarray:
    """The guard's growth of the deviation at leads ``1..n_h`` ``(n_h, n_s)``: `growth_day`
    per day, damped where it slows down: where the median hourly growth of the newest half
    of the last `recent` points is below the older half's (same sign), the growth continues
    from the newer one and shrinks geometrically at the rate it shrank (a ratio levelling off
    towards its floor is not extrapolated through it)."""
    block = max(1, round(GUARD_BLOCK_SECONDS / step))
    half = max(block, recent // 2)
    g_new = _steady_growth(dc, half, block, per_day)
    g_old = _steady_growth(dc[: max(0, dc.shape[0] - half)], half, block, per_day)
    slowing = (np.sign(g_new) == np.sign(g_old)) & (np.abs(g_new) < np.abs(g_old))
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = np.where(slowing, (g_new / g_old) ** (block / half), 1.0)  # per block
    phi = np.clip(finite_or(phi, 1.0), 0.0, 1.0)
    k = np.arange(1, n_h + 1)[:, None] / block  # lead in blocks
    with np.errstate(invalid="ignore", divide="ignore"):
        damped = np.where(phi < 1.0, phi * (1.0 - phi**k) / (1.0 - phi), k)
    per_block = np.where(
        slowing,
        np.sign(growth_day) * np.minimum(np.abs(growth_day), np.abs(g_new)),
        growth_day,
    ) * (block / per_day)
    return np.asarray(per_block * finite_or(damped, k))


def _steady_growth(dc: np.ndarray, recent: int, block: int, per_day: int) -> np.ndarray:
    """Per series, the median change of the smoothed deviation `dc` ``(n_d, n_s)`` per block of
    `block` points over its last `recent` points, per day (0 without two blocks)."""
    n_d = dc.shape[0]
    ends = n_d - 1 - block * np.arange(0, max(1, recent // block) + 1)
    ends = ends[ends >= 0]
    if ends.size < 2:
        return np.zeros(dc.shape[1])
    with quiet():
        steps = dc[ends[:-1]] - dc[ends[1:]]
        return np.asarray(finite_or(nanmedian0(steps), 0.0) * per_day / block)


class _Levels(NamedTuple):
    """Robust summaries of the deviation ``d`` ``(n_d, n_s)`` from its reference; each field
    ``(n_s,)`` but ``dc``."""

    a: np.ndarray
    """Median of ``d`` over the last `smooth` points (``A``)."""
    b: np.ndarray
    """The same a day earlier (``B``; NaN without that day)."""
    a_then: np.ndarray
    """``A`` as it was `recent` points ago."""
    b_then: np.ndarray
    """``B`` as it was `recent` points ago."""
    dc: np.ndarray
    """``d`` smoothed over `smooth` points (centred where possible), shape ``(n_d, n_s)``."""
    sigma_noise: np.ndarray
    """Spread of ``d`` around ``dc``."""
    sigma_day: np.ndarray
    """Spread of the day-over-day change of ``dc``."""


def _deviation_levels(d: np.ndarray, per_day: int, smooth: int, recent: int) -> _Levels:
    """Robust levels of the deviation `d` now and a day earlier, its smoothed shape and spreads."""
    n_d, n_s = d.shape
    with quiet():
        a = nanmedian0(d[n_d - smooth :])
        b_rows = d[max(0, n_d - per_day - smooth) : n_d - per_day]
        b = nanmedian0(b_rows) if b_rows.size else np.full(a.shape, np.nan)
        a_then = nanmedian0(d[max(0, n_d - recent - smooth) : n_d - recent])
        b_rows = d[max(0, n_d - per_day - recent - smooth) : max(0, n_d - per_day - recent)]
        b_then = nanmedian0(b_rows) if b_rows.size else np.full(a.shape, np.nan)
        dc = _centred_nanmean(d, smooth)
        sigma_noise = robust_sigma(d - dc)
        day_change = dc[per_day:] - dc[:-per_day] if n_d > per_day else np.empty((0, n_s))
        sigma_day = robust_sigma(day_change)
    return _Levels(a, b, a_then, b_then, dc, sigma_noise, sigma_day)


def _deviation_ahead(
    lv: _Levels,
    a: np.ndarray,
    b: np.ndarray,
    trend_day: np.ndarray,
    n_h: int,
    per_day: int,
    smooth: int,
    max_acceleration: float,
) -> np.ndarray:
    """The deviation at leads ``1..n_h``, shape ``(n_h, n_s)``: ``A`` (`a`) plus the daily
    growth `trend_day` per whole day and yesterday's shape from ``B`` (`b`) on within the day,
    scaled by the acceleration."""
    n_d, n_s = lv.dc.shape
    # Yesterday's shape of the deviation from B onwards, k' = 1..per_day; gaps fall back to
    # the straight line with the same daily growth.
    shape = lv.dc[n_d - per_day : n_d] - b if n_d >= per_day else np.full((per_day, n_s), np.nan)
    line = trend_day * (np.arange(1, per_day + 1) / per_day)[:, None]
    shape = finite_or(shape, line)

    # Acceleration: how today's growth over the last `recent_seconds` compares with the same
    # hours yesterday. A ramp in its first day grows faster today than yesterday; yesterday's
    # shape is scaled by the ratio when both growths are clearly beyond the noise.
    grow_now = a - lv.a_then
    grow_then = b - lv.b_then
    noise_floor = 4.0 * finite_or(lv.sigma_noise, 0.0) / math.sqrt(smooth)
    clear = (
        np.isfinite(grow_now)
        & np.isfinite(grow_then)
        & (np.abs(grow_then) > noise_floor)
        & (np.abs(grow_now) > noise_floor)
        & (np.sign(grow_now) == np.sign(grow_then))
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(clear, grow_now / grow_then, 1.0)
    ratio = np.clip(ratio, 1.0 / max_acceleration, max_acceleration)

    k = np.arange(1, n_h + 1)
    q, k_in_day = np.divmod(k - 1, per_day)
    return np.asarray(a + ratio * (q[:, None] * trend_day + shape[k_in_day]))


def _daily_profile(t: np.ndarray, y: np.ndarray, step: float, per_day: int) -> np.ndarray:
    """Median time-of-day profile, shape ``(per_day, n_series)``, lightly smoothed, NaN if unseen.

    A trend across days (Theil-Sen slope of the daily medians) is removed first, so that a
    ramp leaves a flat profile and not a saw-tooth whose jump would sit at midnight.
    """
    n_t, n_s = y.shape
    days, offset = by_day(t, y, step, per_day)
    n_days = days.shape[0]
    with quiet():
        medians = nanmedian0(np.moveaxis(days, 1, 0))  # (n_days, n_s)
        medians[np.isfinite(days).sum(axis=1) < 0.8 * per_day] = np.nan
        i, j = np.triu_indices(n_days, k=1)
        slope = nanmedian0((medians[j] - medians[i]) / (j - i)[:, None]) if i.size else None
    if slope is not None:
        slope = finite_or(slope, 0.0)
        position = np.arange(n_days * per_day) / per_day - (offset + n_t - 1) / per_day
        days = days - (position[:, None] * slope).reshape(n_days, per_day, n_s)
    with quiet():
        profile = nanmedian0(days)
    return smooth_slots(profile, per_day)


def _reference(
    y: np.ndarray, daily: np.ndarray, grid: Grid, lo: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seasonal reference of `y` from grid index `lo` through the forecast (``n_t + n_h``,
    exclusive), shape ``(n_t + n_h - lo, n_s)``; `daily` is the time-of-day profile. Also
    where a weekly reference fell back to that profile (no earlier week seen), same shape."""
    n_t = y.shape[0]
    per_day, per_week = grid.per_day, grid.per_week
    idx = np.arange(lo, n_t + grid.n_h)
    slot = (first_slot(grid.t, grid.step) + idx) % per_day
    by_slot = daily[slot]
    if grid.season == "daily":
        return by_slot, np.zeros(by_slot.shape, dtype=bool)
    # Same slot in earlier weeks (the newest week before `n_t` for future points), each value
    # smoothed over +-4 points; the median over up to three weeks.
    weeks_back = np.maximum(1, -((n_t - idx - 1) // per_week))  # ceil((idx - n_t + 1) / W)
    picks = []
    for extra in range(3):
        src = idx - per_week * (weeks_back + extra)
        picks.append(_smoothed_at(y, src))
    with quiet():
        weekly = nanmedian0(np.stack(picks))
    return finite_or(weekly, by_slot), ~np.isfinite(weekly)


def _smoothed_at(y: np.ndarray, idx: np.ndarray, half: int = 4) -> np.ndarray:
    """Mean of ``y`` over ``idx - half .. idx + half`` (NaN-aware; NaN where ``idx`` is outside)."""
    n_t = y.shape[0]
    total = np.zeros((idx.size, y.shape[1]))
    count = np.zeros((idx.size, y.shape[1]))
    for s in range(-half, half + 1):
        j = idx + s
        ok = (j >= 0) & (j < n_t)
        rows = np.where(ok, j, 0)
        v = y[rows]
        good = ok[:, None] & np.isfinite(v)
        total += np.where(good, v, 0.0)
        count += good
    inside = (idx >= 0) & (idx < n_t)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count
    out[~inside] = np.nan
    return out


def _centred_nanmean(a: np.ndarray, window: int) -> np.ndarray:
    """Mean over a centred window of `window` rows (truncated at the ends), NaN-aware."""
    half_lo = window // 2
    half_hi = window - 1 - half_lo
    ok = np.isfinite(a)
    csum = cumsum0(np.where(ok, a, 0.0))
    ccnt = cumsum0(ok)
    n = a.shape[0]
    i = np.arange(n)
    lo = np.clip(i - half_lo, 0, n)
    hi = np.clip(i + half_hi + 1, 0, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((csum[hi] - csum[lo]) / (ccnt[hi] - ccnt[lo]))
