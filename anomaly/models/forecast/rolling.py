"""Rate mode: rolling sums carried forward from their rate, with a calibrated band and a guard.

A rolling 24-hour sum such as ``increase(processaudit_ai_cost_usd_total[1d])`` lags its rate by
up to a day, so it is not extrapolated itself. With the rate beside it
(``rate(...[15m]) * 3600``), the sum is carried forward exactly: ``sum(o + k) = sum(o) - (rate
history leaving the window) + (forecast rate entering)``. Only the rate is forecast, as its
seasonal reference ``u`` (:mod:`.rate_reference`) plus a trend ``v * (level + slope * lead)``,
the level and slope fitted to the last ``trend_seconds`` (:mod:`.trend`); the slope is held
after ``trend_horizon_seconds`` (a ramp seldom runs on for a whole day). The trend either
scales the reference (``v = u``: the same use growing, its growth following the daily shape)
or is added to it (``v`` constant: a new workload beside the old, not bent by the evening's
fall); each series weighs the two by their out-of-sample errors (:func:`_additive_weight`),
and the one they choose clearly decides whether a breach comes (:func:`_additive_decides`).

The band comes from the forecaster's own walk-forward errors: the same computation from every
half-hourly origin of the last ``calibration_seconds`` is compared with what followed, and the
empirical quantiles of the ratio errors at each lead (vectorised over origins, leads and
series) scale the point forecast; leads seen from too few origins grow the widths of the
longest well-seen lead by the square root of the lead. Beside it, :attr:`Forecast.guard` is the
forecast with the deciding fit's level and slope ``guard_z`` standard errors nearer zero, and
:attr:`Forecast.held_guard` the guards of the half-hourly origins of the last
``hold_seconds``.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from anomaly.models.forecast.common import SECONDS_PER_DAY, Grid, cumsum0, finite_or, quiet
from anomaly.models.forecast.params import ForecastParams
from anomaly.models.forecast.rate_reference import rate_reference
from anomaly.models.forecast.trend import Trend, fit_trend

RATE_CHUNK_SERIES = 32
"""Series forecast together; memory stays flat whatever the number of tenants."""
CHOICE_LEAD_SECONDS = 3 * 3600.0
"""The multiplicative and the additive trend are compared on the walk-forward errors of the
origins of the last ``trend_seconds`` at leads up to this: further ahead, the noise of the
fitted slopes, alike in both, drowns the difference."""
CHOICE_SHARPNESS = 3.4
"""The additive trend's weight is ``1 / (1 + exp(-CHOICE_SHARPNESS * t))`` of the paired
t-statistic ``t`` of the two trends' errors: about the normal CDF of ``2 t``, so a clear
difference (``|t| > CHOICE_CLEAR_T``) chooses one trend and an unclear one blends the two."""
CHOICE_CLEAR_T = 1.0
"""A paired t-statistic this far from zero is a clear choice of trend: that trend's guard
decides whether a breach comes (:func:`_additive_decides`). At 1.5 a growth added beside a
nightly batch (whose hours read, as a ratio to the shape, as the growth stopping) lost its
warning whenever the batch began, though its errors preferred the added trend at t near 1."""
CALIBRATION_STRIDE_SECONDS = 1800.0
"""Spacing of the walk-forward origins whose errors calibrate the band, and of the origins
whose guards are held."""


class RollingForecast(NamedTuple):
    """Rate mode's result for the series it was given: fields ``(n_h, n_s)`` but the last."""

    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    guard: np.ndarray
    held_guard: np.ndarray | None
    """``(n_held, n_h, n_s)``, or ``None`` where ``hold_seconds`` holds no origin."""
    additive: np.ndarray
    """``(n_s,)``: the weight of the additive trend (:func:`_additive_weight`)."""


def forecast_rolling(
    grid: Grid, y: np.ndarray, rate: np.ndarray, params: ForecastParams
) -> RollingForecast:
    """Point forecast, calibrated band, guard and held guards of the rolling sums `y` of `rate`.

    Parameters
    ----------
    grid : Grid
        The input's times and step, the points to forecast and the season.
    y, rate : array, shape (n_t, n_s)
        Rolling sums over ``params.window_seconds`` and their rate per
        ``params.rate_unit_seconds``, of series that can be forecast (checked by the caller).
    params : ForecastParams
    """
    n_h, n_s = grid.n_h, y.shape[1]
    n_held = int(params.hold_seconds // CALIBRATION_STRIDE_SECONDS)
    value, lower, upper, guard = (np.full((n_h, n_s), np.nan) for _ in range(4))
    held = np.full((n_held, n_h, n_s), np.nan)
    additive = np.full(n_s, np.nan)
    # A few series at a time: the walk-forward calibration holds (origins x leads) paths
    # per series (~3.5 MB each at 5-minute steps), and every series' result is its own.
    for first in range(0, n_s, RATE_CHUNK_SERIES):
        c = np.arange(first, min(first + RATE_CHUNK_SERIES, n_s))
        part = _forecast_chunk(grid, y[:, c], rate[:, c], params, n_held)
        value[:, c], lower[:, c], upper[:, c], guard[:, c] = part[:4]
        held[:, :, c] = part.held_guard
        additive[c] = part.additive
    return RollingForecast(value, lower, upper, guard, held if n_held else None, additive)


def _forecast_chunk(
    grid: Grid, y: np.ndarray, rate: np.ndarray, params: ForecastParams, n_held: int
) -> RollingForecast:
    """:func:`forecast_rolling` of a few series, with `n_held` held guards (an array always).

    Two trends are fitted, each from every origin: one that scales the reference (growth
    that follows the daily shape) and one added to it (growth that does not: a new workload
    beside the old, in units of the reference's mean over the last day). Each series' point
    forecast and band weigh them by how their walk-forward forecasts from the origins of the
    last ``trend_seconds`` erred over the next ``CHOICE_LEAD_SECONDS``
    (:func:`_additive_weight`): an added ramp is not bent by the evening's fall, and where a
    young ramp cannot tell them apart, neither is trusted alone. The decision whether a
    breach comes (the guards) is the multiplicative trend's unless those errors chose the
    additive one clearly (:func:`_additive_decides`).
    """
    n_t, n_s = y.shape
    w = max(3, round(params.trend_seconds / grid.step))
    n_calib = max(0, round(params.calibration_seconds / grid.step))
    stride = max(1, round(CALIBRATION_STRIDE_SECONDS / grid.step))
    lo = max(0, n_t - 1 - max(n_calib, n_held * stride) - w)
    u = rate_reference(grid, rate, lo)
    day_mean = _seq_nanmean(u[max(0, n_t - lo - grid.per_day) : n_t - lo], axis=0)
    flat = np.broadcast_to(finite_or(day_mean, 0.0), u.shape)
    scaled = _forecast_with(grid, y, rate, u, u, lo, params, n_held)
    added = _forecast_with(grid, y, rate, u, flat, lo, params, n_held)
    weight = _additive_weight(scaled.error, added.error)
    value, lower, upper = (a + weight * (b - a) for a, b in zip(scaled[:3], added[:3], strict=True))
    added_decides = _additive_decides(weight)
    guard = np.where(added_decides, added.guard, scaled.guard)
    held = np.where(added_decides, added.held_guard, scaled.held_guard)
    return RollingForecast(value, lower, upper, guard, held, weight)


def _additive_decides(weight: np.ndarray) -> np.ndarray:
    """Per series, ``(n_s,)``: whether the additive trend's guard decides whether a breach
    comes. The multiplicative trend decides unless the recent hours chose the additive one
    clearly (``t >= CHOICE_CLEAR_T``, :func:`_additive_weight`): a growth added to a shape with
    quiet nights looks, as a ratio to the shape, like a ramp that ended by day, and its breach
    must not drop out for that; where the two cannot be told apart, a steady tenant's noise
    read as an added trend must not raise one."""
    return np.asarray(weight >= 1.0 / (1.0 + math.exp(-CHOICE_SHARPNESS * CHOICE_CLEAR_T)))


def _additive_weight(scaled: np.ndarray, added: np.ndarray) -> np.ndarray:
    """The weight of the additive trend per series, ``(n_s,)`` in (0, 1), from the errors of
    both trends at the same recent origins ``(n_o, n_s)``: logistic in the paired t-statistic
    of their differences (``CHOICE_SHARPNESS`` sharp), the origins' overlap (leads of
    ``CHOICE_LEAD_SECONDS`` from origins ``CALIBRATION_STRIDE_SECONDS`` apart) counted in the
    effective number of origins; 0.5 where nothing tells them apart."""
    d = scaled - added  # positive where the additive trend erred less
    n = np.isfinite(d).sum(axis=0)
    mean = _seq_nanmean(d, axis=0)
    c = d - mean
    with quiet():
        var = _seq_nanmean(c**2, axis=0)
        n_eff = np.maximum(n * CALIBRATION_STRIDE_SECONDS / CHOICE_LEAD_SECONDS, 1.0)
        t = mean / np.sqrt(var / n_eff)
    # Rounded: the walk-forward errors differ in their last bits with the number of series
    # forecast together, and a series' forecast must not depend on its neighbours.
    t = np.round(np.clip(finite_or(t, 0.0), -50.0, 50.0), 9)
    # math.exp, one series at a time: numpy's vectorised exp rounds by the array's length.
    return np.array([1.0 / (1.0 + math.exp(-CHOICE_SHARPNESS * float(x))) for x in t])


def _trend_spread(
    carry: _Carry, newest: np.ndarray, trend: Trend, point: np.ndarray, interval: float
) -> np.ndarray:
    """Half-width of the `interval` band, relative to `point` ``(n_h, n_s)``, that the
    uncertainty of the newest fit's level and slope alone gives the forecast: the paths'
    sensitivity to each, times its standard error (independent, normal)."""
    n_s = point.shape[1]
    zero, one = np.zeros((1, n_s)), np.ones((1, n_s))
    base = carry.paths(newest, zero, zero)[0]
    d_level = carry.paths(newest, one, zero)[0] - base
    d_slope = carry.paths(newest, zero, one)[0] - base
    se_level = finite_or(trend.se_level[0], 0.0)
    se_slope = finite_or(trend.se_slope[0], 0.0)
    z = NormalDist().inv_cdf(0.5 + interval / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = z * np.hypot(se_level * d_level, se_slope * d_slope) / np.abs(point)
    return np.asarray(finite_or(rel, 0.0))


def _seq_nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    """NaN-aware mean along `axis`, summed in order (a cumulative sum): numpy's pairwise sums
    round differently with the number of columns, and a series' forecast must not depend on
    its neighbours to the last bit."""
    ok = np.isfinite(a)
    total = np.take(np.cumsum(np.where(ok, a, 0.0), axis=axis), -1, axis=axis)
    n = ok.sum(axis=axis)
    with quiet():
        return np.asarray(np.where(n > 0, total / np.maximum(n, 1), np.nan))


class _Variant(NamedTuple):
    """One trend's forecast: fields ``(n_h, n_s)`` but the last two."""

    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    guard: np.ndarray
    held_guard: np.ndarray
    """``(n_held, n_h, n_s)``."""
    error: np.ndarray
    """``(n_o, n_s)``: the mean absolute ratio error of the walk-forward forecast from each
    origin of the trend window over the next ``CHOICE_LEAD_SECONDS`` (:func:`_additive_weight`)."""


def _forecast_with(
    grid: Grid,
    y: np.ndarray,
    rate: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    lo: int,
    params: ForecastParams,
    n_held: int,
) -> _Variant:
    """The forecast with the rate modelled as ``u + v * (level + slope * lead)`` (`u`, `v`
    from grid index `lo` through the forecast): point, band, guard and `n_held` held guards,
    and the errors that weigh it against the other trend."""
    n_t, n_s = y.shape
    step, n_h = grid.step, grid.n_h
    w = max(3, round(params.trend_seconds / step))
    stride = max(1, round(CALIBRATION_STRIDE_SECONDS / step))
    carry = _carry(
        y,
        rate,
        u,
        v,
        lo,
        n_h,
        step,
        n_win=max(1, round(params.window_seconds / step)),
        cap=max(1, round(params.trend_horizon_seconds / step)),
        per_point=step / params.rate_unit_seconds,
    )
    rate_tail, u_tail, v_tail = rate[lo:], u[: n_t - lo], v[: n_t - lo]

    def fit(origins: np.ndarray) -> Trend:
        return fit_trend(rate_tail, u_tail, origins - lo, step, w, params.trend_z, v_tail)

    newest = np.array([n_t - 1])
    trend = fit(newest)
    point = carry.paths(newest, trend.level, trend.slope)[0]
    first = lo + w
    guard = carry.guards(newest, trend, params.guard_z)[0]
    held = np.full((n_held, n_h, n_s), np.nan)
    back = n_t - 1 - stride * np.arange(1, n_held + 1)
    can = back >= first
    if can.any():
        held[can] = carry.guards(back[can], fit(back[can]), params.guard_z)

    # Walk-forward errors: forecasts from past origins against what happened, as ratios.
    origins = np.arange(n_t - 2, first - 1, -stride)[::-1]
    if origins.size:
        past_trend = fit(origins)
        past = carry.paths(origins, past_trend.level, past_trend.slope)
        ratio = _ratio_errors(past, y, origins)
        q_lo, q_hi = _error_quantiles(ratio, params.interval)
        # The trends differ in the hours after recent origins: compare them there.
        recent = origins >= n_t - 1 - w
        near = max(1, round(CHOICE_LEAD_SECONDS / step))
        error = _seq_nanmean(np.abs(ratio[recent, :near]), axis=1)
    else:
        q_lo, q_hi = np.full((n_h, n_s), np.nan), np.full((n_h, n_s), np.nan)
        error = np.full((0, n_s), np.nan)  # nothing to compare: weight 0.5
    q_lo = np.minimum(finite_or(q_lo, 0.0), 0.0)
    q_hi = np.maximum(finite_or(q_hi, 0.0), 0.0)
    # The walk-forward errors come mostly from origins without a trend; where the newest fit
    # has one, its level's and slope's standard errors widen the band (in quadrature).
    rel = _trend_spread(carry, newest, trend, point, params.interval)
    q_lo, q_hi = -np.hypot(q_lo, rel), np.hypot(q_hi, rel)
    q_lo = np.minimum.accumulate(q_lo, axis=0)
    q_hi = np.maximum.accumulate(q_hi, axis=0)
    lower = point * (1.0 + q_lo)
    upper = point * (1.0 + q_hi)
    # A growth may stop at any hour: the band holds the forecast of it stopping now, too.
    stopped = carry.paths(newest, trend.level, np.zeros_like(trend.slope))[0]
    lower = np.minimum(lower, stopped * (1.0 + q_lo))
    upper = np.maximum(upper, stopped * (1.0 + q_hi))
    return _Variant(point, np.minimum(lower, point), np.maximum(upper, point), guard, held, error)


class _Carry(NamedTuple):
    """What carrying the rolling sums forward from any origin (absolute index) needs.

    Cumulative sums have a row of zeros first (:func:`~.common.cumsum0`); the reference's run
    from grid index `lo` over the future.
    """

    anchor: np.ndarray
    """``(n_t, n_s)``: the sums, rebuilt from the rate where missing."""
    cc: np.ndarray
    """``(n_t + 1, n_s)``: cumulative inflow of the rate history (gaps: the window's mean)."""
    cu: np.ndarray
    """``(n_t - lo + n_h + 1, n_s)``: cumulative inflow of the reference `u`."""
    cv: np.ndarray
    """Like `cu`, of what the trend scales, `v` (`u` itself for a multiplicative trend)."""
    cvp: np.ndarray
    """Like `cv`, of `v`'s inflow times `fpos`."""
    fpos: np.ndarray
    """``(n_t - lo + n_h, 1)``: days from the newest point of each point from `lo` on."""
    lo: int
    n_h: int
    n_win: int
    """Points in the rolling window."""
    cap: int
    """Points the slope is extrapolated; the ratio is held after."""
    step: float

    def paths(self, origins: np.ndarray, level: np.ndarray, slope: np.ndarray) -> np.ndarray:
        """Forecasts from each origin with the trend's `level` and `slope` (``(n_o, n_s)``),
        the rate being ``u + v * (level + slope * lead)``; shape ``(n_o, n_h, n_s)``."""
        n_t, n_h, cap, n_win = self.anchor.shape[0], self.n_h, self.cap, self.n_win
        k = np.arange(1, n_h + 1)
        tail_o = origins - self.lo
        end = tail_o[:, None] + k[None, :]  # tail index of o + k
        # The inflow of u and of v from o to o + k, and of v weighted by the lead in days.
        inflow_u = self.cu[end + 1] - self.cu[tail_o + 1][:, None]
        inflow_v = (
            inflow_u if self.cv is self.cu else self.cv[end + 1] - self.cv[tail_o + 1][:, None]
        )
        inflow_vp = self.cvp[end + 1] - self.cvp[tail_o + 1][:, None]
        inflow_vx = inflow_vp - self.fpos[tail_o][:, None] * inflow_v
        if cap < n_h:  # the slope is extrapolated `cap` points, the ratio then held
            held = inflow_vx[:, cap - 1 : cap] + (cap * self.step / SECONDS_PER_DAY) * (
                inflow_v - inflow_v[:, cap - 1 : cap]
            )
            inflow_vx = np.where(k[None, :, None] <= cap, inflow_vx, held)
        ao, bo = level[:, None], slope[:, None]
        inflow = np.maximum(inflow_u + ao * inflow_v + bo * inflow_vx, 0.0)
        leave_hi = np.clip(origins[:, None] + k[None, :] - n_win + 1, 0, n_t)
        leave_lo = np.clip(origins - n_win + 1, 0, n_t)[:, None]
        outflow = self.cc[leave_hi] - self.cc[leave_lo]
        return np.asarray(self.anchor[origins][:, None] + inflow - outflow)

    def guards(self, origins: np.ndarray, trend: Trend, guard_z: float) -> np.ndarray:
        """The guard from each origin: the decided level and slope `guard_z` standard errors
        nearer none; shape ``(n_o, n_h, n_s)``."""
        level = _toward_zero(trend.decided_level, guard_z * trend.se_level)
        slope = _toward_zero(trend.decided_slope, guard_z * trend.se_slope)
        return self.paths(origins, level, slope)


def _carry(
    y: np.ndarray,
    rate: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    lo: int,
    n_h: int,
    step: float,
    *,
    n_win: int,
    cap: int,
    per_point: float,
) -> _Carry:
    """The sums `y`, the rate history, its reference `u` and what the trend scales, `v` (both
    from grid index `lo` on, over the future too), as cumulative sums; `per_point` turns a rate
    into one point's inflow."""
    n_t = y.shape[0]
    c_in = finite_or(rate, np.nan) * per_point
    with quiet():
        mean_in = np.nanmean(c_in[max(0, n_t - n_win) :], axis=0)
    c_in = finite_or(c_in, finite_or(mean_in, 0.0))
    cc = cumsum0(c_in)
    fpos = ((np.arange(u.shape[0]) + lo - (n_t - 1)) * step / SECONDS_PER_DAY)[:, None]
    anchor = finite_or(y, cc[1:] - cc[np.maximum(0, np.arange(n_t) + 1 - n_win)])
    cu = cumsum0(u * per_point)
    cv = cu if v is u else cumsum0(v * per_point)
    cvp = cumsum0(v * per_point * fpos)
    return _Carry(anchor, cc, cu, cv, cvp, fpos, lo, n_h, n_win, cap, step)


def _toward_zero(a: np.ndarray, by: np.ndarray) -> np.ndarray:
    """`a` moved `by` towards zero, stopping there."""
    return np.asarray(np.sign(a) * np.maximum(np.abs(a) - by, 0.0))


def _ratio_errors(past: np.ndarray, y: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """The ratio errors ``actual / forecast - 1`` of the forecasts `past` ``(n_o, n_h, n_s)``
    from `origins` against `y`, same shape; NaN where the future is not yet seen."""
    n_t = y.shape[0]
    k = np.arange(1, past.shape[1] + 1)
    target = origins[:, None] + k[None, :]
    actual = y[np.minimum(target, n_t - 1)]
    actual[target > n_t - 1] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(np.abs(past) > 0, actual / past - 1.0, np.nan))


def _error_quantiles(ratio: np.ndarray, interval: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper quantiles of the ratio errors `ratio` ``(n_o, n_h, n_s)`` at each lead:
    shapes ``(n_h, n_s)``.

    Leads seen from too few origins borrow the widths of the longest well-seen lead, grown
    with the square root of the lead; NaN for a series without one.
    """
    n_h, n_s = ratio.shape[1:]
    k = np.arange(1, n_h + 1)
    alpha = (1.0 - interval) / 2
    q_lo, q_hi, n_ok = _quantiles_axis0(ratio, alpha, 1.0 - alpha)
    enough = n_ok >= 8
    ref_k = np.where(enough.any(axis=0), n_h - 1 - np.argmax(enough[::-1], axis=0), -1)
    for j in range(n_s):
        r = ref_k[j]
        if r < 0:
            q_lo[:, j], q_hi[:, j] = np.nan, np.nan
            continue
        grow = np.sqrt(k[r + 1 :] / k[r])
        q_lo[r + 1 :, j] = q_lo[r, j] * grow
        q_hi[r + 1 :, j] = q_hi[r, j] * grow
    return q_lo, q_hi


def _quantiles_axis0(
    a: np.ndarray, q_low: float, q_high: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NaN-aware quantiles along axis 0 (linear interpolation) and the count of finite values."""
    s = np.sort(a, axis=0)  # NaN last
    n = np.isfinite(a).sum(axis=0)
    out = []
    for q in (q_low, q_high):
        pos = q * np.maximum(n - 1, 0)
        i0 = np.floor(pos).astype(int)
        i1 = np.minimum(i0 + 1, np.maximum(n - 1, 0))
        frac = pos - i0
        v0 = np.take_along_axis(s, i0[None], axis=0)[0]
        v1 = np.take_along_axis(s, i1[None], axis=0)[0]
        out.append(np.where(n > 0, v0 + frac * (v1 - v0), np.nan))
    return out[0], out[1], n
