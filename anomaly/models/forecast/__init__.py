"""Seasonal trend forecasts with prediction intervals, and the time until they cross a threshold.

The model of a plain series, per series and vectorised over all series of a grid:

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
    weekdays and weekends alike), otherwise the difference.

Intervals of a plain series are normal approximations whose variance grows with the lead time ``k``:
``sigma_noise**2 + sigma_day**2 * (k / 1d + (k / 1d)**2)``, where ``sigma_noise`` is the spread
of ``d`` around ``dc`` (point noise) and ``sigma_day`` the spread of the day-over-day change of
``dc`` (how irregular the trend and the reference are).

Rolling sums (``rate=`` given): a rolling 24-hour sum such as
``increase(processaudit_ai_cost_usd_total[1d])`` lags its rate by up to a day, so it is not
extrapolated itself. With the rate beside it (``rate(...[15m]) * 3600``), the sum is carried
forward exactly: ``sum(o + k) = sum(o) - (rate history leaving the window) + (forecast rate
entering)``. Only the rate is forecast, as its seasonal reference times
``1 + level + slope * lead``:

* the reference is the tenant's median time-of-day shape (each day divided by its mean, so
  weekends and drifts do not bend it) scaled by the rate's level around the same time one week
  earlier (over +-``LEVEL_HALF_SECONDS``): a week-ago value alone carries one point's noise.
  That window stops at the tenant's local weekend edges (the midnights opening and closing its
  weekend, found from where the level steps), so the hours either side of a weekend are not
  scaled by a level half from the other kind of day.
  Without that week in the history (and in ``daily`` mode), the median day's level;
* the level and slope are fitted to the hourly ratios ``rate / reference`` of the last
  ``trend_seconds``, weighted by the reference (quiet nights count little). Besides a constant
  and a line, the fit tries a ramp that began a third or two thirds into the window and a ramp
  that ended there, and keeps the one with the lowest BIC among those whose slope is
  ``trend_z`` standard errors from zero (a ramp that ended must also beat the line by
  ``trend_z`` standard errors, and have been the choice an hour and two hours earlier as
  well, ``ENDED_PERSIST_SECONDS``): a ramp that began this morning is extrapolated at its own pace
  rather than averaged with the flat night before it - the seasonal profile no longer hides a
  creep at night or over a weekend - and a ramp that has ended is not extrapolated. That
  choice decides (the guard below is built from it); where it has a slope, the point forecast
  takes its level and slope from the same choice with the ramp's beginning searched over the
  window's whole hours, so that a ramp a few hours old is timed at its own pace, and with the
  hours weighted by the reference to a power between 0 and 1 chosen from the tenant's own
  hour-to-hour noise (1 where a quiet hour's ratio is noisier, as with counts; 0 where every
  hour's ratio is equally noisy, as with multiplicative noise);
* the slope is held after ``trend_horizon_seconds`` (a ramp seldom runs on for a whole day).

The band comes from the forecaster's own walk-forward errors: the same computation from every
half-hourly origin of the last ``calibration_seconds`` is compared with what followed, and the
empirical quantiles of the ratio errors at each lead (vectorised over origins, leads and
series) scale the point forecast; leads seen from too few origins grow the widths of the
longest well-seen lead by the square root of the lead. Beside it, :attr:`Forecast.guard` is the
forecast with the deciding fit's level and slope ``guard_z`` standard errors nearer zero.

:func:`breach_seconds` reads the *point* forecast: the first time it crosses the threshold and
stays crossed for ``min_duration_seconds``, 0 if the newest value has crossed, ``+Inf`` if the
forecast does not cross within the horizon. When the forecast has a guard, the guard must
cross within the horizon too: a breach is announced only when the trend carrying it is
significant, so that a steady tenant whose normal swings come near the threshold stays silent;
the intervals are only the bounds and decide nothing. Once announced, a breach is held: the
guards from the half-hourly origins of the last ``hold_seconds`` (:attr:`Forecast.held_guard`)
count as well, so a warning does not drop out for a run or two where the fit is less sure -
a ramp's newest hours briefly looking flat, a guard just short of the threshold - while the
point forecast still crosses. The hold needs no state between runs: it refits the past
origins from the same history.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

SECONDS_PER_DAY = 86400.0
SECONDS_PER_WEEK = 7 * SECONDS_PER_DAY

SEASONS = ("auto", "weekly", "daily")
LEVEL_HALF_SECONDS = 6 * 3600.0
"""Rate mode: the week-ago level of the reference is read over this many seconds either side."""
WEEKEND_MIN_CONTRAST = 0.3
"""Rate mode: the least weekend contrast (Monday's log step minus Saturday's) that marks a
series' local weekend edges, which the week-ago level window then never reaches across."""
RATE_CHUNK_SERIES = 32
"""Rate mode: series forecast together; memory stays flat whatever the number of tenants."""
CALIBRATION_STRIDE_SECONDS = 1800.0
"""Rate mode: spacing of the walk-forward origins whose errors calibrate the band."""
KINK_MARGIN_SECONDS = 4 * 3600.0
"""Rate mode: the timing fit places a ramp's beginning at whole hours at least this far from
both ends of the trend window."""
ENDED_PERSIST_SECONDS = 2 * 3600.0
"""Rate mode: a ramp is taken for ended only if the decision took it for ended at the origins
this far back too, hour by hour (see :func:`_fit_trend`)."""
NOISE_EXPONENTS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Rate mode: the exponents ``p`` the timing fit chooses from, per series, for its block weights
``sum(reference)**p`` (1: counting noise, 0: multiplicative noise)."""
MIN_NOISE_PAIRS = 6
"""Rate mode: adjacent block pairs needed to choose ``p``; with fewer the weights stay ``**1``."""
DIRECTIONS = ("above", "below")


@dataclass(frozen=True)
class Forecast:
    """Point forecast and prediction interval of every series on a future grid.

    Arrays of shape ``(n_h, n_series)`` hold, for an invalid series, NaN; for a valid one,
    finite numbers with ``lower <= value <= upper``.
    """

    times: np.ndarray
    """Shape ``(n_h,)``: epoch seconds ``now + step, now + 2 * step, ...`` (past the horizon at most by one step)."""
    value: np.ndarray
    """Shape ``(n_h, n_series)``: point forecast."""
    lower: np.ndarray
    """Shape ``(n_h, n_series)``: lower edge of the central ``interval`` band."""
    upper: np.ndarray
    """Shape ``(n_h, n_series)``: upper edge of the band."""
    valid: np.ndarray
    """Shape ``(n_series,)``, bool: whether the series could be forecast."""
    reason: list[str | None]
    """Per series: why it is invalid, else ``None``."""
    now: float
    """Epoch seconds of the newest input point."""
    step_seconds: float
    last_value: np.ndarray
    """Shape ``(n_series,)``: newest input value (NaN if missing)."""
    season: str
    """``weekly`` or ``daily``: the reference the forecast used."""
    guard: np.ndarray | None = None
    """Shape ``(n_h, n_series)`` or ``None``: the forecast with its deciding fit's trend shrunk
    towards none by ``guard_z`` standard errors. :func:`breach_seconds` announces a crossing
    only if this crosses too within the horizon: noise is not extrapolated into a breach."""
    held_guard: np.ndarray | None = None
    """Shape ``(n_held, n_h, n_series)`` or ``None``: the guards of the same forecast made from
    the half-hourly origins of the last ``hold_seconds`` (newest first, each over its own
    horizon; NaN where the history was too short). A breach one of them announced stays
    announced while the point forecast still crosses (:func:`breach_seconds`)."""

    def at(self, horizon_seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(value, lower, upper)`` at ``now + horizon_seconds``, each of shape ``(n_series,)``.

        The forecast point at or just after the requested time is used.
        """
        if not 0 < horizon_seconds <= self.times[-1] - self.now + 1e-9:
            raise ValueError(
                f"`horizon_seconds` must be in (0, {self.times[-1] - self.now:g}], "
                f"got {horizon_seconds}"
            )
        i = int(np.searchsorted(self.times, self.now + horizon_seconds - 1e-6))
        return self.value[i], self.lower[i], self.upper[i]


def forecast(
    times: np.ndarray,
    values: np.ndarray,
    horizon_seconds: float,
    *,
    step_seconds: float | None = None,
    interval: float = 0.9,
    season: str = "auto",
    smooth_seconds: float = 3600.0,
    min_history_seconds: float = 2 * SECONDS_PER_DAY,
    multiplicative: bool | None = None,
    recent_seconds: float = 12 * 3600.0,
    max_acceleration: float = 3.0,
    rate: np.ndarray | None = None,
    window_seconds: float = SECONDS_PER_DAY,
    rate_unit_seconds: float = 3600.0,
    trend_seconds: float = 1.5 * SECONDS_PER_DAY,
    trend_z: float = 3.0,
    trend_horizon_seconds: float = 8 * 3600.0,
    calibration_seconds: float = 4 * SECONDS_PER_DAY,
    guard_z: float = 1.0,
    hold_seconds: float = 2 * 3600.0,
) -> Forecast:
    """Forecast every column of `values` to `horizon_seconds` past the newest time.

    Parameters
    ----------
    times : array, shape (n_t,)
        Epoch seconds on a regular grid, ascending.
    values : array, shape (n_t, n_series) or (n_t,)
        One series per column (never mixed); NaN marks a gap.
    horizon_seconds : float
        How far ahead to forecast; the grid has ``ceil(horizon_seconds / step_seconds)`` points.
    step_seconds : float, optional
        Grid spacing; by default the spacing of `times`.
    interval : float
        Central coverage of the band ``[lower, upper]``, in (0, 1).
    season : {"auto", "weekly", "daily"}
        The reference (see the module docstring); ``auto`` is weekly with at least
        ``7d + 1d + 2 * smooth_seconds`` of history, else daily.
    smooth_seconds : float
        Window of the robust levels and of the smoothing of the deviation.
    min_history_seconds : float
        A series with a shorter span of finite values is invalid (at least a day and a bit).
    multiplicative : bool, optional
        Deviation from the reference as a ratio (default: for every series whose recent values
        and reference are all positive) or, with ``False``, as a difference.
    recent_seconds : float
        Window comparing today's growth with yesterday's (the acceleration).
    max_acceleration : float
        Bound of that growth ratio, both ways.
    rate : array, shape like `values`, optional
        The rate whose rolling sums `values` are, per `rate_unit_seconds` (e.g. AI spend in
        $/hour beside its rolling 24-hour spend). Given, the *rate* is forecast and the sums are
        carried forward from it (see "Rolling sums" in the module docstring): far more
        accurate than extrapolating the lagging sums themselves.
    window_seconds : float
        Length of the rolling window of `values` (rate mode).
    rate_unit_seconds : float
        The time unit of `rate`: 3600 for a rate per hour (rate mode).
    trend_seconds : float
        Window of the rate's level and slope fit (rate mode).
    trend_z : float
        A fitted slope of the rate is kept only when this many standard errors from zero (rate
        mode).
    trend_horizon_seconds : float
        The rate's slope is extrapolated this far ahead, its ratio to the reference then held
        (rate mode): a ramp seldom runs on for a whole day.
    calibration_seconds : float
        How far back the walk-forward origins that calibrate the band reach (rate mode).
    guard_z : float
        The guard (see :attr:`Forecast.guard`) moves the fitted level and slope this many
        standard errors towards zero (rate mode).
    hold_seconds : float
        A breach announced from an origin this recent (the half-hourly origins before the
        newest point) stays announced while the point forecast still crosses, even if the
        newest guard no longer does (:attr:`Forecast.held_guard`; rate mode; 0 turns it off).

    Returns
    -------
    Forecast
        Invalid series (too short, no values in the last `smooth_seconds`) are NaN with a reason;
        nothing is raised for them.
    """
    t = np.asarray(times, dtype=float)
    y = np.array(values, dtype=float)  # a copy: ±Inf become NaN below
    if y.ndim == 1:
        y = y[:, None]
    if t.ndim != 1 or y.ndim != 2 or y.shape[0] != t.size:
        raise ValueError(
            f"`times` must have shape (n_t,) and `values` (n_t, n_series), got {t.shape} "
            f"and {np.shape(values)}"
        )
    if not math.isfinite(horizon_seconds) or horizon_seconds <= 0:
        raise ValueError(f"`horizon_seconds` must be positive, got {horizon_seconds}")
    if not 0 < interval < 1:
        raise ValueError(f"`interval` must be in (0, 1), got {interval}")
    if season not in SEASONS:
        raise ValueError(f"`season` must be one of {list(SEASONS)}, got {season!r}")
    if t.size < 2 and step_seconds is None:
        raise ValueError(f"`times` needs at least 2 points to infer the step, got {t.size}")
    step = float(step_seconds) if step_seconds is not None else float(np.median(np.diff(t)))
    if not step > 0:
        raise ValueError(f"`step_seconds` must be positive, got {step}")
    if t.size > 1 and not np.allclose(np.diff(t), step, rtol=0, atol=1e-6 * step + 1e-9):
        raise ValueError(f"`times` must be a regular grid with step {step:g} s")
    y[~np.isfinite(y)] = np.nan
    r: np.ndarray | None = None
    if rate is not None:
        r = np.array(rate, dtype=float)
        if r.ndim == 1:
            r = r[:, None]
        if r.shape != y.shape:
            raise ValueError(f"`rate` must have the shape of `values` {y.shape}, got {r.shape}")
        for name, v in (
            ("window_seconds", window_seconds),
            ("rate_unit_seconds", rate_unit_seconds),
            ("trend_seconds", trend_seconds),
        ):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"`{name}` must be positive, got {v}")
        for name, v in (("guard_z", guard_z), ("hold_seconds", hold_seconds)):
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"`{name}` must be non-negative, got {v}")
        r[~np.isfinite(r)] = np.nan

    n_t, n_s = y.shape
    per_day = max(1, round(SECONDS_PER_DAY / step))
    per_week = 7 * per_day
    n_h = max(1, math.ceil(horizon_seconds / step - 1e-9))
    smooth = max(1, round(smooth_seconds / step))
    if season == "auto":
        season = "weekly" if n_t >= per_week + per_day + 2 * smooth else "daily"

    now = float(t[-1]) if n_t else 0.0
    future_t = now + step * np.arange(1, n_h + 1)
    empty = np.full((n_h, n_s), np.nan)
    last_value = y[-1].copy() if n_t else np.full(n_s, np.nan)

    # Which series can be forecast at all.
    finite = np.isfinite(y)
    any_finite = finite.any(axis=0)
    first = np.where(any_finite, np.argmax(finite, axis=0), n_t)
    span = (n_t - first) * step
    recent = finite[max(0, n_t - smooth) :].any(axis=0)
    reason: list[str | None] = [None] * n_s
    for j in range(n_s):
        if not any_finite[j]:
            reason[j] = "no finite values"
        elif span[j] < min_history_seconds or n_t < per_day + 2 * smooth:
            reason[j] = (
                f"too short: {span[j] / 3600:.1f} h of history, need {min_history_seconds / 3600:.1f} h"
            )
        elif not recent[j]:
            reason[j] = f"no values in the last {smooth * step / 3600:.1f} h"
        elif r is not None and not np.isfinite(r[max(0, n_t - smooth) :, j]).any():
            reason[j] = f"no rate values in the last {smooth * step / 3600:.1f} h"
    valid = np.array([r is None for r in reason], dtype=bool)
    if not valid.any():
        return Forecast(
            future_t,
            empty,
            empty.copy(),
            empty.copy(),
            valid,
            reason,
            now,
            step,
            last_value,
            season,
        )

    cols = np.flatnonzero(valid)
    z = NormalDist().inv_cdf(0.5 + interval / 2)
    value, lower, upper = empty, empty.copy(), empty.copy()
    if r is not None:
        guard = empty.copy()
        n_held = int(hold_seconds // CALIBRATION_STRIDE_SECONDS)
        held = np.full((n_held, n_h, n_s), np.nan)
        # A few series at a time: the walk-forward calibration holds (origins x leads) paths
        # per series (~3.5 MB each at 5-minute steps), and every series' result is its own.
        for first in range(0, cols.size, RATE_CHUNK_SERIES):
            c = cols[first : first + RATE_CHUNK_SERIES]
            point, low, high, guard_v, held_v = _forecast_rolling(
                t,
                y[:, c],
                r[:, c],
                n_h,
                step,
                window_seconds=window_seconds,
                rate_unit_seconds=rate_unit_seconds,
                interval=interval,
                season=season,
                trend_seconds=trend_seconds,
                trend_z=trend_z,
                trend_horizon_seconds=trend_horizon_seconds,
                calibration_seconds=calibration_seconds,
                guard_z=guard_z,
                n_held=n_held,
            )
            value[:, c], lower[:, c], upper[:, c], guard[:, c] = point, low, high, guard_v
            held[:, :, c] = held_v
        return Forecast(
            future_t,
            value,
            lower,
            upper,
            valid,
            reason,
            now,
            step,
            last_value,
            season,
            guard,
            held if n_held else None,
        )

    yv = y[:, cols]
    # The tail where the deviation d is needed: the last day plus margins for the smoothing,
    # and one more day for the day-over-day spread that sizes the interval.
    r0 = max(0, n_t - 2 * per_day - 2 * smooth)
    daily = _daily_profile(t, yv, step, per_day)
    ref_tail = _reference(yv, daily, t, step, per_day, per_week, r0, n_t + n_h, season)
    ref_past = ref_tail[: n_t - r0]
    ref_future = ref_tail[n_t - r0 :]
    # Positive series (spend, rates, latencies) deviate multiplicatively: a drifting rate
    # scales the weekday and the weekend alike, so the ratio to the reference grows evenly
    # where the difference would jump at every weekend.
    with np.errstate(invalid="ignore"):
        tail = yv[r0:]
        positive = (np.nanmin(tail, axis=0) > 0) & (np.nanmin(ref_tail, axis=0) > 0)
    if multiplicative is False:
        positive[:] = False
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(positive, tail / ref_past - 1.0, tail - ref_past)

    # Robust levels now and a day earlier; the deviation smoothed (centred where possible).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        n_d = d.shape[0]
        a = np.nanmedian(d[n_d - smooth :], axis=0)
        b_rows = d[max(0, n_d - per_day - smooth) : n_d - per_day]
        b = np.nanmedian(b_rows, axis=0) if b_rows.size else np.full(a.shape, np.nan)
        recent = max(1, round(recent_seconds / step))
        a_then = np.nanmedian(d[max(0, n_d - recent - smooth) : n_d - recent], axis=0)
        b_rows = d[max(0, n_d - per_day - recent - smooth) : max(0, n_d - per_day - recent)]
        b_then = np.nanmedian(b_rows, axis=0) if b_rows.size else np.full(a.shape, np.nan)
        dc = _centred_nanmean(d, smooth)
        noise = d - dc
        sigma_noise = 1.4826 * np.nanmedian(np.abs(noise - np.nanmedian(noise, axis=0)), axis=0)
        day_change = dc[per_day:] - dc[:-per_day] if n_d > per_day else np.empty((0, cols.size))
        sigma_day = 1.4826 * np.nanmedian(
            np.abs(day_change - np.nanmedian(day_change, axis=0)), axis=0
        )

    a = np.where(np.isfinite(a), a, 0.0)
    trend_day = np.where(np.isfinite(b), a - b, 0.0)
    b = a - trend_day
    # Yesterday's shape of the deviation from B onwards, k' = 1..per_day; gaps fall back to
    # the straight line with the same daily growth.
    shape = dc[n_d - per_day : n_d] - b if n_d >= per_day else np.full((per_day, cols.size), np.nan)
    line = trend_day * (np.arange(1, per_day + 1) / per_day)[:, None]
    shape = np.where(np.isfinite(shape), shape, line)

    # Acceleration: how today's growth over the last `recent_seconds` compares with the same
    # hours yesterday. A ramp in its first day grows faster today than yesterday; yesterday's
    # shape is scaled by the ratio when both growths are clearly beyond the noise.
    grow_now = a - a_then
    grow_then = b - b_then
    noise_floor = 4.0 * np.where(np.isfinite(sigma_noise), sigma_noise, 0.0) / math.sqrt(smooth)
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
    dev = a + ratio * (q[:, None] * trend_day + shape[k_in_day])

    # The reference can still have holes (a slot never observed): the recent median stands in.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        recent_median = np.nanmedian(yv[max(0, n_t - per_day) :], axis=0)
    fallback = np.where(positive, recent_median / (1.0 + a), recent_median - a)
    fallback = np.where(np.isfinite(fallback), fallback, 0.0)
    ref_future = np.where(np.isfinite(ref_future), ref_future, fallback)
    point = np.where(positive, ref_future * (1.0 + dev), ref_future + dev)

    sigma_noise = np.where(np.isfinite(sigma_noise), sigma_noise, 0.0)
    sigma_day = np.where(np.isfinite(sigma_day), sigma_day, sigma_noise)
    sigma_day = np.maximum(sigma_day, 0.25 * sigma_noise)
    lead = (k / per_day)[:, None]
    sd = np.sqrt(sigma_noise**2 + sigma_day**2 * (lead + lead**2))
    sd = np.where(positive, np.abs(ref_future) * sd, sd)
    sd = np.hypot(sd, 1e-6 * np.maximum(1.0, np.abs(point)))  # no overflow near 1e300
    value[:, cols] = point
    lower[:, cols] = point - z * sd
    upper[:, cols] = point + z * sd
    return Forecast(future_t, value, lower, upper, valid, reason, now, step, last_value, season)


def breach_seconds(
    fc: Forecast,
    last_values: np.ndarray | None = None,
    threshold: float = 0.0,
    direction: str = "above",
    now: float | None = None,
    *,
    min_duration_seconds: float = 1800.0,
) -> np.ndarray:
    """Seconds from `now` until the point forecast crosses `threshold`, per series.

    With a guard (:attr:`Forecast.guard`, rate mode), a crossing counts only if the guard
    crosses too within the horizon, or one of the held guards (:attr:`Forecast.held_guard`,
    from the origins of the last ``hold_seconds``) crossed within its own: a breach, once
    announced, does not come and go with each run's fit while the point forecast still
    crosses. The countdown is always the point forecast's.

    Parameters
    ----------
    fc : Forecast
    last_values : array, shape (n_series,), optional
        Newest actual values (default ``fc.last_value``); a crossed one gives 0.
    threshold : float
    direction : {"above", "below"}
        ``above``: crossed when ``value >= threshold`` (spend); ``below``: ``value <= threshold``
        (a completion ratio, free capacity).
    now : float, optional
        Epoch seconds the countdown starts from (default ``fc.now``).
    min_duration_seconds : float
        The forecast must stay crossed this long (or until the horizon ends) for the crossing to
        count, so that one noisy forecast point does not raise a breach.

    Returns
    -------
    array, shape (n_series,)
        0 if already crossed, the seconds until the first lasting crossing, ``+inf`` if none
        within the horizon, NaN for an invalid series.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"`direction` must be one of {list(DIRECTIONS)}, got {direction!r}")
    if not math.isfinite(threshold):
        raise ValueError(f"`threshold` must be finite, got {threshold}")
    if min_duration_seconds < 0:
        raise ValueError(f"`min_duration_seconds` must be non-negative, got {min_duration_seconds}")
    last = fc.last_value if last_values is None else np.asarray(last_values, dtype=float)
    if last.shape != fc.valid.shape:
        raise ValueError(f"`last_values` must have shape {fc.valid.shape}, got {last.shape}")
    start = fc.now if now is None else float(now)

    with np.errstate(invalid="ignore"):
        if direction == "above":
            crossed = fc.value >= threshold
            already = last >= threshold
        else:
            crossed = fc.value <= threshold
            already = last <= threshold

    # Lasting: crossed at i and at every point of the following run of `need` points (or to
    # the end of the horizon). A reverse cumulative count of consecutive crossed points.
    need = max(1, math.ceil(min_duration_seconds / fc.step_seconds - 1e-9) + 1)
    lasting = _lasting(crossed, need)
    has = lasting.any(axis=0)
    if fc.guard is not None:
        guards = [fc.guard] + ([] if fc.held_guard is None else list(fc.held_guard))
        announced = np.zeros(has.shape, dtype=bool)
        for guard in guards:
            with np.errstate(invalid="ignore"):
                g = guard >= threshold if direction == "above" else guard <= threshold
            announced |= _lasting(g, need).any(axis=0)
        has &= announced
    first = np.argmax(lasting, axis=0)
    seconds = np.where(has, fc.times[first] - start, np.inf)
    seconds = np.where(already, 0.0, np.maximum(seconds, 0.0))
    return np.where(fc.valid, seconds, np.nan)


def _lasting(crossed: np.ndarray, need: int) -> np.ndarray:
    """Crossed at i and at every point of the following run of `need` points (or to the end)."""
    run = np.zeros(crossed.shape, dtype=int)
    count = np.zeros(crossed.shape[1], dtype=int)
    n_h = crossed.shape[0]
    for i in range(n_h - 1, -1, -1):
        count = np.where(crossed[i], count + 1, 0)
        run[i] = count
    remaining = n_h - np.arange(n_h)[:, None]
    return np.asarray(crossed & (run >= np.minimum(need, remaining)))


def _by_day(t: np.ndarray, y: np.ndarray, step: float, per_day: int) -> tuple[np.ndarray, int]:
    """``y`` laid out by day, shape ``(n_days, per_day, n_s)`` with NaN outside the data, and
    the slot of its first point."""
    n_t, n_s = y.shape
    offset = int(round((t[0] % SECONDS_PER_DAY) / step)) % per_day
    n_days = math.ceil((offset + n_t) / per_day)
    grid = np.full((n_days * per_day, n_s), np.nan)
    grid[offset : offset + n_t] = y
    return grid.reshape(n_days, per_day, n_s), offset


def _smooth_slots(profile: np.ndarray, per_day: int) -> np.ndarray:
    """A time-of-day profile averaged over +-2 neighbouring slots (wrapping at midnight)."""
    half = min(2, per_day // 2)
    if half:
        stacked = np.stack([np.roll(profile, s, axis=0) for s in range(-half, half + 1)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            profile = np.nanmean(stacked, axis=0)
    return np.asarray(profile)


def _daily_profile(t: np.ndarray, y: np.ndarray, step: float, per_day: int) -> np.ndarray:
    """Median time-of-day profile, shape ``(per_day, n_series)``, lightly smoothed, NaN if unseen.

    A trend across days (Theil-Sen slope of the daily medians) is removed first, so that a
    ramp leaves a flat profile and not a saw-tooth whose jump would sit at midnight.
    """
    n_t, n_s = y.shape
    days, offset = _by_day(t, y, step, per_day)
    n_days = days.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        medians = np.nanmedian(days, axis=1)  # (n_days, n_s)
        medians[np.isfinite(days).sum(axis=1) < 0.8 * per_day] = np.nan
        i, j = np.triu_indices(n_days, k=1)
        slope = (
            np.nanmedian((medians[j] - medians[i]) / (j - i)[:, None], axis=0) if i.size else None
        )
    if slope is not None:
        slope = np.where(np.isfinite(slope), slope, 0.0)
        position = np.arange(n_days * per_day) / per_day - (offset + n_t - 1) / per_day
        days = days - (position[:, None] * slope).reshape(n_days, per_day, n_s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        profile = np.nanmedian(days, axis=0)
    return _smooth_slots(profile, per_day)


def _reference(
    y: np.ndarray,
    daily: np.ndarray,
    t: np.ndarray,
    step: float,
    per_day: int,
    per_week: int,
    lo: int,
    hi: int,
    season: str,
) -> np.ndarray:
    """Seasonal reference at grid indices ``lo..hi-1`` (past and future), shape ``(hi-lo, n_s)``."""
    n_t = y.shape[0]
    idx = np.arange(lo, hi)
    slot = (int(round((t[0] % SECONDS_PER_DAY) / step)) + idx) % per_day
    by_day = daily[slot]
    if season == "daily":
        return by_day
    # Same slot in earlier weeks (the newest week before `n_t` for future points), each value
    # smoothed over +-4 points; the median over up to three weeks.
    weeks_back = np.maximum(1, -((n_t - idx - 1) // per_week))  # ceil((idx - n_t + 1) / W)
    picks = []
    for extra in range(3):
        src = idx - per_week * (weeks_back + extra)
        picks.append(_smoothed_at(y, src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        weekly = np.nanmedian(np.stack(picks), axis=0)
    return np.where(np.isfinite(weekly), weekly, by_day)


def _shape_profile(
    t: np.ndarray, y: np.ndarray, step: float, per_day: int
) -> tuple[np.ndarray, np.ndarray]:
    """Median time-of-day shape of ``y`` relative to each day's mean, and the median day's mean.

    Shapes ``(per_day, n_s)`` and ``(n_s,)``.

    Dividing by the day's mean keeps a multiplicative change of level (a weekend, a drift) out
    of the shape; the median over days keeps one odd day out. Lightly smoothed; NaN if unseen.
    """
    days, _ = _by_day(t, y, step, per_day)
    # Day means as sums over axis 0 of a (per_day, n_days, n_s) array: row by row, so a column's
    # result does not depend on the other columns, to the last bit.
    by_slot = np.ascontiguousarray(days.transpose(1, 0, 2))
    seen = np.isfinite(by_slot)
    count = seen.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (np.where(seen, by_slot, 0.0).sum(axis=0) / count)[:, None, :]
    full = (count >= 0.8 * per_day)[:, None, :] & (mean > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rel = np.where(full, days / np.where(full, mean, 1.0), np.nan)
        profile = np.nanmedian(rel, axis=0)
        typical = np.nanmedian(np.where(full, mean, np.nan), axis=0)[0]
    profile = _smooth_slots(profile, per_day)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        typical = np.where(np.isfinite(typical), typical, np.nanmean(y, axis=0))
    return np.asarray(profile), np.asarray(typical)


def _profile_reference(
    y: np.ndarray,
    shape: np.ndarray,
    typical: np.ndarray,
    t: np.ndarray,
    step: float,
    per_day: int,
    per_week: int,
    lo: int,
    hi: int,
    season: str,
    half: int,
) -> np.ndarray:
    """The time-of-day `shape` scaled by an earlier level of `y`, at indices ``lo..hi-1``.

    Returns shape ``(hi - lo, n_s)``. The level is ``sum(y) / sum(shape)`` over ``+-half``
    points around the same time one week earlier (``weekly``; the newest week whose window
    lies in the past): many points' worth of noise averaged, where a week-ago value carries one
    point's. The window is cut at the series' local weekend edges (:func:`_weekend_edges`), so
    it averages only the kind of day (weekday or weekend) its centre lies in. Where that week
    is not in the history (and in ``daily`` mode) the `typical` level stands in (shape
    ``(n_s,)``; the median day's mean): a day-ago level would turn every Monday into a jump
    from the weekend.
    """
    n_t, n_s = y.shape
    idx = np.arange(lo, hi)
    start_slot = int(round((t[0] % SECONDS_PER_DAY) / step))
    prof = shape[(start_slot + idx) % per_day]
    all_prof = shape[(start_slot + np.arange(n_t)) % per_day]
    ok = np.isfinite(y) & np.isfinite(all_prof)
    zero = np.zeros((1, n_s))
    cy = np.concatenate([zero, np.cumsum(np.where(ok, y, 0.0), axis=0)])
    cp = np.concatenate([zero, np.cumsum(np.where(ok, all_prof, 0.0), axis=0)])
    cn = np.concatenate([zero, np.cumsum(ok, axis=0)])

    # Segments between local weekend edges: a window never reaches across one.
    edge = _weekend_edges(t, y, all_prof, ok, step)
    pos = np.arange(n_t)[:, None]
    seg_lo = np.maximum.accumulate(np.where(edge, pos, 0), axis=0)
    seg_hi = np.minimum.accumulate(np.where(edge, pos, n_t)[::-1], axis=0)[::-1]
    seg_hi = np.concatenate([seg_hi[1:], np.full((1, n_s), n_t)])  # the next edge after i

    def level_back(lag: int) -> np.ndarray:
        back = np.maximum(1, -((n_t - 1 - half - idx) // lag))  # newest lag fully in the past
        src = idx - lag * back
        at = np.clip(src, 0, n_t - 1)
        a = np.clip(np.maximum(src - half, 0)[:, None], seg_lo[at], n_t)
        b = np.clip(np.minimum(src + half + 1, n_t)[:, None], 0, seg_hi[at])

        def total(c: np.ndarray) -> np.ndarray:
            return np.asarray(np.take_along_axis(c, b, 0) - np.take_along_axis(c, a, 0))

        with np.errstate(invalid="ignore", divide="ignore"):
            level = total(cy) / total(cp)
        return np.where((total(cn) >= half) & np.isfinite(level), level, np.nan)

    level = np.broadcast_to(typical, prof.shape)
    if season == "weekly":
        level_week = level_back(per_week)
        level = np.where(np.isnan(level_week), level, level_week)
    return np.asarray(prof * level)


def _weekend_edges(
    t: np.ndarray, y: np.ndarray, prof: np.ndarray, ok: np.ndarray, step: float
) -> np.ndarray:
    """Where each series' local weekend begins and ends: bool, shape ``(n_t, n_s)``.

    The hourly level ``log(sum(y) / sum(prof))`` (the time-of-day shape divided out) steps at
    the local midnights that open and close a weekend. For each whole-hour shift from UTC
    (-12..+11 h), the mean step over 6 hours either side of those midnights is measured; the
    shift with the largest contrast (the Monday step minus the Saturday step, either sign)
    wins if that contrast exceeds ``WEEKEND_MIN_CONTRAST``. A series without one has no
    edges. Steps are local, so a drift over a day or two barely moves them.
    """
    n_t, n_s = y.shape
    edges = np.zeros((n_t, n_s), dtype=bool)
    per_hour = round(3600.0 / step)
    if per_hour < 1 or abs(per_hour * step - 3600.0) > 1e-6:
        return edges
    per_day = 24 * per_hour
    ys, offset = _by_day(t, np.where(ok, y, np.nan), step, per_day)
    ps, _ = _by_day(t, np.where(ok, prof, np.nan), step, per_day)
    n_hours = ys.shape[0] * 24
    ys = ys.reshape(n_hours, per_hour, n_s)
    ps = ps.reshape(n_hours, per_hour, n_s)
    seen = np.isfinite(ys).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        level = np.log(np.nansum(ys, axis=1) / np.nansum(ps, axis=1))
    level = np.where((seen >= per_hour / 2) & np.isfinite(level), level, np.nan)
    # Step at each hour h: mean of hours h..h+5 minus mean of h-6..h-1 (at least 4 of each).
    side = 6
    good = np.isfinite(level)
    cl = np.concatenate([np.zeros((1, n_s)), np.cumsum(np.where(good, level, 0.0), axis=0)])
    cn = np.concatenate([np.zeros((1, n_s)), np.cumsum(good, axis=0)])
    h = np.arange(side, n_hours - side + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        after = (cl[h + side] - cl[h]) / (cn[h + side] - cn[h])
        before = (cl[h] - cl[h - side]) / (cn[h] - cn[h - side])
    enough = ((cn[h + side] - cn[h]) >= 4) & ((cn[h] - cn[h - side]) >= 4)
    step_at = np.full((n_hours, n_s), np.nan)
    step_at[h] = np.where(enough, after - before, np.nan)
    day0 = round((t[0] - offset * step) / SECONDS_PER_DAY)  # the UTC day of row 0 of `ys`
    shifts = np.arange(-12, 12)
    local_hour = (day0 * 24 + np.arange(n_hours))[None, :] + shifts[:, None]  # (n_shift, n_hours)
    midnight = local_hour % 24 == 0
    weekday = (np.floor_divide(local_hour, 24) + 3) % 7  # Monday = 0
    contrast = np.zeros((shifts.size, n_s))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for k in range(shifts.size):  # a few hours per shift; row sums keep columns apart
            drop = np.nanmean(step_at[midnight[k] & (weekday[k] == 5)], axis=0)
            rise = np.nanmean(step_at[midnight[k] & (weekday[k] == 0)], axis=0)
            contrast[k] = np.abs(rise - drop)
    contrast = np.where(np.isfinite(contrast), contrast, 0.0)
    best = np.argmax(contrast, axis=0)
    clear = contrast[best, np.arange(n_s)] > WEEKEND_MIN_CONTRAST
    local = t[:, None] + shifts[best][None, :] * 3600.0
    day = np.floor(local / SECONDS_PER_DAY)
    new_day = np.concatenate([np.zeros((1, n_s), dtype=bool), day[1:] != day[:-1]])
    wd = (day + 3) % 7
    return np.asarray(new_day & ((wd == 5) | (wd == 0)) & clear[None, :])


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
    csum = np.concatenate([np.zeros((1, a.shape[1])), np.cumsum(np.where(ok, a, 0.0), axis=0)])
    ccnt = np.concatenate([np.zeros((1, a.shape[1])), np.cumsum(ok, axis=0)])
    n = a.shape[0]
    i = np.arange(n)
    lo = np.clip(i - half_lo, 0, n)
    hi = np.clip(i + half_hi + 1, 0, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (csum[hi] - csum[lo]) / (ccnt[hi] - ccnt[lo])


def _forecast_rolling(
    t: np.ndarray,
    y: np.ndarray,
    rate: np.ndarray,
    n_h: int,
    step: float,
    *,
    window_seconds: float,
    rate_unit_seconds: float,
    interval: float,
    season: str,
    trend_seconds: float,
    trend_z: float,
    trend_horizon_seconds: float,
    calibration_seconds: float,
    guard_z: float,
    n_held: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Point forecast, calibrated band and guard of rolling sums `y` of `rate`, ``(n_h, n_s)``
    each, and the guards from the `n_held` half-hourly origins before the newest,
    ``(n_held, n_h, n_s)``.

    ``y[o + k] = y[o] - (inflow that leaves the window) + (forecast inflow)``: what leaves is
    known from the rate history; what enters is the rate's reference times
    ``1 + level + slope * lead`` (:func:`_profile_reference`, :func:`_fit_trend`). The same
    computation at past origins gives the walk-forward errors whose quantiles form the band;
    the guard is the forecast with the deciding fit's level and slope `guard_z` standard
    errors nearer zero.
    """
    n_t, n_s = y.shape
    per_day = max(1, round(SECONDS_PER_DAY / step))
    per_week = 7 * per_day
    n_win = max(1, round(window_seconds / step))
    w = max(3, round(trend_seconds / step))
    n_calib = max(0, round(calibration_seconds / step))
    cap = max(1, round(trend_horizon_seconds / step))
    stride = max(1, round(CALIBRATION_STRIDE_SECONDS / step))
    lo = max(0, n_t - 1 - max(n_calib, n_held * stride) - w)
    shape, typical = _shape_profile(t, rate, step, per_day)
    shape = np.where(np.isfinite(shape), shape, 1.0)  # a slot never seen: the day's mean
    half = max(1, round(LEVEL_HALF_SECONDS / step))
    u = _profile_reference(
        rate, shape, typical, t, step, per_day, per_week, lo, n_t + n_h, season, half
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        typical = np.nanmedian(rate[max(0, n_t - per_day) :], axis=0)
    u = np.where(np.isfinite(u), u, np.where(np.isfinite(typical), typical, 0.0))
    u = np.maximum(u, 0.0)
    per_point = step / rate_unit_seconds

    m = n_t - lo
    rate_tail, u_tail = rate[lo:], u[:m]

    # Cumulative sums the paths are read from (absolute indices; `cu` over the tail + future).
    c_in = np.where(np.isfinite(rate), rate, np.nan) * per_point
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_in = np.nanmean(c_in[max(0, n_t - n_win) :], axis=0)
    c_in = np.where(np.isfinite(c_in), c_in, np.where(np.isfinite(mean_in), mean_in, 0.0))
    cc = np.concatenate([np.zeros((1, n_s)), np.cumsum(c_in, axis=0)])
    uu = u * per_point
    fpos = ((np.arange(u.shape[0]) + lo - (n_t - 1)) * step / SECONDS_PER_DAY)[:, None]
    cu = np.concatenate([np.zeros((1, n_s)), np.cumsum(uu, axis=0)])
    cup = np.concatenate([np.zeros((1, n_s)), np.cumsum(uu * fpos, axis=0)])
    anchor = np.where(np.isfinite(y), y, cc[1:] - cc[np.maximum(0, np.arange(n_t) + 1 - n_win)])

    def paths(origins: np.ndarray, a_o: np.ndarray, b_o: np.ndarray) -> np.ndarray:
        """Forecasts from each origin (absolute index), shape ``(n_o, n_h, n_s)``."""
        k = np.arange(1, n_h + 1)
        tail_o = origins - lo
        end = tail_o[:, None] + k[None, :]  # tail index of o + k
        inflow_u = cu[end + 1] - cu[tail_o + 1][:, None]
        inflow_ux = (cup[end + 1] - cup[tail_o + 1][:, None]) - fpos[tail_o][:, None] * inflow_u
        if cap < n_h:  # the slope is extrapolated `cap` points, the ratio then held
            held = inflow_ux[:, cap - 1 : cap] + (cap * step / SECONDS_PER_DAY) * (
                inflow_u - inflow_u[:, cap - 1 : cap]
            )
            inflow_ux = np.where(k[None, :, None] <= cap, inflow_ux, held)
        ao, bo = a_o[:, None], b_o[:, None]
        inflow = np.maximum((1.0 + ao) * inflow_u + bo * inflow_ux, 0.0)
        leave_hi = np.clip(origins[:, None] + k[None, :] - n_win + 1, 0, n_t)
        leave_lo = np.clip(origins - n_win + 1, 0, n_t)[:, None]
        outflow = cc[leave_hi] - cc[leave_lo]
        return np.asarray(anchor[origins][:, None] + inflow - outflow)

    def guards(origins: np.ndarray, trend: _Trend) -> np.ndarray:
        """The guard from each origin: the decided level and slope `guard_z` standard errors
        nearer none; shape ``(n_o, n_h, n_s)``."""
        a_d, b_d = trend.decided_level, trend.decided_slope
        a_g = np.sign(a_d) * np.maximum(np.abs(a_d) - guard_z * trend.se_level, 0.0)
        b_g = np.sign(b_d) * np.maximum(np.abs(b_d) - guard_z * trend.se_slope, 0.0)
        return paths(origins, a_g, b_g)

    newest = np.array([n_t - 1])
    trend = _fit_trend(rate_tail, u_tail, newest - lo, step, w, trend_z)
    point = paths(newest, trend.level, trend.slope)[0]
    guard = guards(newest, trend)[0]
    first = lo + w
    held = np.full((n_held, n_h, n_s), np.nan)
    back = n_t - 1 - stride * np.arange(1, n_held + 1)
    fit = back >= first
    if fit.any():
        held[fit] = guards(
            back[fit], _fit_trend(rate_tail, u_tail, back[fit] - lo, step, w, trend_z)
        )

    # Walk-forward errors: forecasts from past origins against what happened, as ratios.
    origins = np.arange(n_t - 2, first - 1, -stride)[::-1]
    q_lo = np.full((n_h, n_s), np.nan)
    q_hi = np.full((n_h, n_s), np.nan)
    if origins.size:
        past_trend = _fit_trend(rate_tail, u_tail, origins - lo, step, w, trend_z)
        past = paths(origins, past_trend.level, past_trend.slope)
        k = np.arange(1, n_h + 1)
        target = origins[:, None] + k[None, :]
        actual = y[np.minimum(target, n_t - 1)]
        actual[target > n_t - 1] = np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(np.abs(past) > 0, actual / past - 1.0, np.nan)
        alpha = (1.0 - interval) / 2
        q_lo, q_hi, n_ok = _quantiles_axis0(ratio, alpha, 1.0 - alpha)
        # Leads seen from too few origins borrow the widths of the longest well-seen lead,
        # grown with the square root of the lead.
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
    q_lo = np.minimum(np.where(np.isfinite(q_lo), q_lo, 0.0), 0.0)
    q_hi = np.maximum(np.where(np.isfinite(q_hi), q_hi, 0.0), 0.0)
    q_lo = np.minimum.accumulate(q_lo, axis=0)
    q_hi = np.maximum.accumulate(q_hi, axis=0)
    lower = point * (1.0 + q_lo)
    upper = point * (1.0 + q_hi)
    return point, np.minimum(lower, point), np.maximum(upper, point), guard, held


class _Trend(NamedTuple):
    """A rate's fitted trend at each origin; every field has shape ``(n_o, n_s)``.

    ``level`` and ``slope`` time the point forecast; ``decided_level`` and ``decided_slope``,
    with their standard errors, are the coarser fit the guard (the decision) is built from.
    """

    level: np.ndarray
    slope: np.ndarray
    decided_level: np.ndarray
    decided_slope: np.ndarray
    se_level: np.ndarray
    se_slope: np.ndarray


class _Fits(NamedTuple):
    """Weighted least-squares fits of candidate trend models, each field ``(n_m, n_o, n_s)``."""

    level: np.ndarray
    slope: np.ndarray
    se_level: np.ndarray
    se_slope: np.ndarray
    rss: np.ndarray
    s2: np.ndarray
    bic: np.ndarray
    ok: np.ndarray
    """Whether the model may be chosen (its slope is significant, enough blocks)."""


def _fit_trend(
    rate: np.ndarray, u: np.ndarray, origins: np.ndarray, step: float, w: int, z: float
) -> _Trend:
    """Level and slope of the rate's ratio to its reference at each origin, with standard errors.

    Parameters
    ----------
    rate, u : array, shape (n_t, n_s)
        The rate and its seasonal reference on the same grid.
    origins : array of int, shape (n_o,)
        Indices of the newest point each fit may see.
    step : float
        Grid spacing in seconds.
    w : int
        Points of history each fit reads (the trend window).
    z : float
        How many standard errors a slope must be from zero to be kept.

    Returns
    -------
    _Trend
        Levels are ``rate / u - 1`` at the origin, slopes its growth per day, each of shape
        ``(n_o, n_s)``.

    The window is cut into hourly blocks, each summarised by ``sum(rate) / sum(u) - 1`` and
    weighted by ``sum(u)`` (quiet nights count little; hourly blocks are nearly independent, so
    the standard errors are honest). Candidate models, each a weighted least-squares fit: a
    constant level; a line over the whole window; a ramp that began at one or two thirds of the
    window (flat before); a ramp that ended there (flat since). A model other than the constant
    needs a slope `z` standard errors from zero and the lowest BIC (a ramp's kink costs one
    more parameter); a ramp that ended must moreover fit better than the line by `z` standard
    errors (its residual sum of squares lower by ``z**2`` residual variances), so that the
    noise of a few flat-looking hours does not stop a ramp that runs on. A recent ramp is
    extrapolated at its own pace, not averaged with the flat hours before it, and a finished
    ramp is not extrapolated at all.

    That choice is the *decision*: ``decided_level``, ``decided_slope`` and the standard errors,
    which the guard is built from. The *timing* (``level``, ``slope``) makes the same choice
    with a ramp allowed to begin at any whole hour of the window but its first and last
    ``KINK_MARGIN_SECONDS`` (a ramp that began 9 hours ago is not forced to have begun 12 or
    24 hours ago); it is used where both choices have a slope (a line or a ramp that began),
    elsewhere the decision is. The searched kink sharpens when a breach comes, never whether
    it is announced: with that many kinks to choose from, noise alone often finds a
    significant one. The timing fit also weights its blocks by ``sum(u)**p`` rather than
    ``sum(u)``, with ``p`` chosen per origin and series from how the hour-to-hour changes of
    the ratio scale with ``u`` (:func:`_noise_exponent`): ``sum(u)`` weights are right for
    counting noise, equal weights for multiplicative noise, under which the quiet hours of a
    young ramp would otherwise count too little. The decision keeps ``sum(u)``: given the chosen
    weights as well, it warned more steady tenants and missed more breaches in the benchmark.

    A ramp that ended is allowed at an origin only if the decision chose one at each of the
    origins 1, 2, ... hours earlier, up to ``ENDED_PERSIST_SECONDS``: had the ramp ended a
    third of the window ago, those fits would have seen it too. A decision that flips to
    "ended" for one run rests on the newest hour or two - often an error of the reference
    there - and would drop a warning in the middle of a ramp that runs on.
    """
    per_block = max(1, round(3600.0 / step))
    n_blocks = max(3, w // per_block)
    n_s = rate.shape[1]
    ok = np.isfinite(rate) & np.isfinite(u) & (u > 0)
    zero = np.zeros((1, n_s))
    cr = np.concatenate([zero, np.cumsum(np.where(ok, rate, 0.0), axis=0)])
    cu = np.concatenate([zero, np.cumsum(np.where(ok, u, 0.0), axis=0)])
    cn = np.concatenate([zero, np.cumsum(ok, axis=0)])
    # The origins and the same an hour earlier, two hours earlier, ... (the decisions there
    # tell whether an ended ramp persists), each fitted once: walk-forward origins half an
    # hour apart are mostly each other's earlier origins.
    n_o = origins.size
    persist = max(0, round(ENDED_PERSIST_SECONDS / 3600.0))
    every, where = np.unique(
        np.concatenate(
            [origins] + [np.maximum(origins - per_block * j, 0) for j in range(1, persist + 1)]
        ),
        return_inverse=True,
    )
    now_at = where[:n_o]
    # Blocks along axis 0 (n_blocks, n_o, n_s), newest first: sums over it add whole rows, so a
    # column's result does not depend on how many columns there are, to the last bit.
    i = np.arange(n_blocks)
    hi = np.maximum(every[None, :] + 1 - per_block * i[:, None], 0)
    lo = np.maximum(hi - per_block, 0)
    rs, us, ns = cr[hi] - cr[lo], cu[hi] - cu[lo], cn[hi] - cn[lo]
    good = (ns >= per_block / 2) & (us > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q = np.where(good, rs / np.where(good, us, 1.0) - 1.0, 0.0)
        scale = np.nanmean(np.where(good, us, np.nan), axis=0)
        wt = np.where(good & (scale > 0), us / scale, 0.0)
    wt = np.where(np.isfinite(wt), wt, 0.0)
    block_hours = per_block * step / 3600.0
    x = (-(i + 0.5) * block_hours)[:, None, None]  # block centres, hours before the origin
    thirds = sorted({round(n_blocks / 3), round(2 * n_blocks / 3)} - {0, n_blocks})
    edge = max(1, round(KINK_MARGIN_SECONDS / 3600.0 / block_hours))
    hourly = list(range(edge, n_blocks - edge + 1))
    n_good = good.sum(axis=0)

    def candidates(
        wt: np.ndarray, q: np.ndarray, n_good: np.ndarray, kinks: list[int]
    ) -> list[_Fits | None]:
        """The constant, the line, ramps that began at ``kinks`` and ramps that ended at the
        thirds, fitted to the ratios ``q`` with block weights ``wt``."""
        # Weighted moments over the newest k blocks, k = 0..n_blocks: every model below is a
        # line in x over a run of blocks (its regressor is x - c there and 0 elsewhere).
        moments = [
            np.concatenate([np.zeros((1,) + wt.shape[1:]), np.cumsum(v, axis=0)])
            for v in (wt, wt * x, wt * x * x, wt * q, wt * x * q)
        ]
        sw, sq = moments[0][-1], moments[3][-1]
        sqq = (wt * q * q).sum(axis=0)
        n_eff = sw**2 / (wt * wt).sum(axis=0)  # Kish's effective number of blocks
        level = np.where(sw > 0, sq / sw, 0.0)
        rss0 = np.maximum(sqq - level * sq, 0.0)
        var0 = rss0 / np.maximum(n_eff - 1, 1) / sw
        constant = _Fits(
            level[None],
            np.zeros((1,) + level.shape),
            np.sqrt(var0)[None],
            np.zeros((1,) + level.shape),
            rss0[None],
            var0[None],
            (n_eff * np.log(np.maximum(rss0 / sw, 1e-12)))[None],
            np.ones((1,) + level.shape, dtype=bool),
        )

        def fits(blocks: list[int], began: bool, kinked: bool) -> _Fits:
            """Ramps that began (``began``) or ended ``blocks`` blocks before the origin."""
            k = np.array(blocks)
            c = (-k * block_hours)[:, None, None]
            m = [v[k] for v in moments] if began else [v[-1] - v[k] for v in moments]
            s, sx, sxx, sq_, sxq = m
            sg = sx - c * s
            sgg = sxx - 2.0 * c * sx + c * c * s
            sgq = sxq - c * sq_
            det = sw * sgg - sg * sg
            beta = (sw * sgq - sg * sq) / det
            alpha = (sq - beta * sg) / sw
            rss = np.maximum(sqq - alpha * sq - beta * sgq, 0.0)
            s2 = rss / np.maximum(n_eff - 2, 1)  # residual variance per unit weight
            var_beta = s2 * sw / det
            g0 = -c if began else 0.0  # the regressor at the origin
            var_level = s2 * (1.0 / sw + (g0 - sg / sw) ** 2 * sw / det)
            per_day = 24.0 if began else 0.0
            bic = n_eff * np.log(np.maximum(rss / sw, 1e-12)) + (1.0 + kinked) * np.log(n_eff)
            chosen = (det > 1e-12) & (beta * beta > z * z * var_beta) & (n_good >= 4)
            return _Fits(
                alpha + beta * g0,
                beta * per_day,
                np.sqrt(var_level),
                np.sqrt(var_beta) * per_day,
                rss,
                s2,
                bic,
                chosen,
            )

        line = fits([n_blocks], began=True, kinked=False)
        ended = fits(thirds, began=False, kinked=True)
        ended = ended._replace(ok=ended.ok & (line.rss - ended.rss > z * z * ended.s2))
        began = fits(kinks, began=True, kinked=True) if kinks else None
        return [constant, line, began, ended]

    def persisting(fits: list[_Fits | None]) -> list[_Fits | None]:
        """``fits`` with a ramp that ended allowed only where the earlier decisions chose one."""
        ended = fits[-1]
        if ended is None or allowed is None:
            return fits
        return fits[:-1] + [ended._replace(ok=ended.ok & allowed[None])]

    with np.errstate(invalid="ignore", divide="ignore"):
        coarse = candidates(wt, q, n_good, thirds)
        allowed: np.ndarray | None = None
        if persist:
            ended_then = _choose(coarse)[2][where[n_o:]]
            allowed = np.asarray(
                ended_then.reshape((persist, n_o) + ended_then.shape[1:]).all(axis=0)
            )
        coarse = [None if c is None else _Fits(*(f[:, now_at] for f in c)) for c in coarse]
        q, wt, good, n_good = q[:, now_at], wt[:, now_at], good[:, now_at], n_good[now_at]
        decided, decided_sloped, _ = _choose(persisting(coarse))
        wt_timed = np.where(good, wt ** _noise_exponent(q, wt, good)[None], 0.0)
        timed, timed_sloped, _ = _choose(persisting(candidates(wt_timed, q, n_good, hourly)))
    use = decided_sloped & timed_sloped
    a, b, sa, sb = decided.level, decided.slope, decided.se_level, decided.se_slope
    a_t = np.where(use, timed.level, a)
    b_t = np.where(use, timed.slope, b)
    return _Trend(
        np.where(np.isfinite(a_t), a_t, 0.0),
        np.where(np.isfinite(b_t), b_t, 0.0),
        np.where(np.isfinite(a), a, 0.0),
        np.where(np.isfinite(b), b, 0.0),
        np.where(np.isfinite(sa), sa, np.inf),
        np.where(np.isfinite(sb), sb, np.inf),
    )


def _noise_exponent(q: np.ndarray, wt: np.ndarray, good: np.ndarray) -> np.ndarray:
    """How a block's noise variance scales with its reference: ``var(q) ~ wt**-p``, per fit.

    Parameters
    ----------
    q, wt, good : array, shape (n_blocks, n_o, n_s)
        Hourly ratios, their weights (the reference's sum, scaled to mean 1) and which blocks
        count; adjacent along axis 0.

    Returns
    -------
    array, shape (n_o, n_s)
        ``p`` in ``NOISE_EXPONENTS``: 1 for counting noise (a quiet hour's ratio is noisier),
        0 for multiplicative noise (every hour's ratio equally noisy). It is the maximum
        likelihood choice for the changes between adjacent blocks, whose variance is
        ``s2 * (wt_i**-p + wt_j**-p)``: differences cancel the level and, nearly, the slope, so
        a ramp does not pass for noise. With fewer than ``MIN_NOISE_PAIRS`` pairs, 1.
    """
    pair = good[1:] & good[:-1]
    d2 = np.where(pair, q[1:] - q[:-1], 0.0) ** 2
    inv = 1.0 / np.where(good & (wt > 0), wt, 1.0)
    n = pair.sum(axis=0)
    best_ll = np.full(q.shape[1:], -np.inf)
    best_p = np.ones(q.shape[1:])
    for p in NOISE_EXPONENTS:
        v = np.where(pair, inv[1:] ** p + inv[:-1] ** p, 1.0)
        s2 = (d2 / v).sum(axis=0) / np.maximum(n, 1)
        ll = -n * np.log(np.maximum(s2, 1e-300)) - np.log(v).sum(axis=0)
        better = ll > best_ll
        best_p = np.where(better, p, best_p)
        best_ll = np.where(better, ll, best_ll)
    return np.where(n >= MIN_NOISE_PAIRS, best_p, 1.0)


def _choose(candidates: list[_Fits | None]) -> tuple[_Fits, np.ndarray, np.ndarray]:
    """Per origin and series, the allowed candidate of lowest BIC (the first on ties), whether
    it has a slope (a line or a ramp that began) and whether it is of the last family (the
    ramps that ended); fields and flags of shape ``(n_o, n_s)``.

    The first candidate is the constant, the fallback where nothing else is allowed; ``None``
    stands for a family without members (a window too short for kinks).
    """
    present = [c for c in candidates if c is not None]
    stacked = _Fits(*(np.concatenate(f, axis=0) for f in zip(*present, strict=True)))
    bic = np.where(stacked.ok & np.isfinite(stacked.bic), stacked.bic, np.inf)
    bic[0] = np.where(np.isfinite(bic[0]), bic[0], -np.inf)  # the constant is the fallback
    pick = np.argmin(bic, axis=0)[None]
    chosen = _Fits(*(np.take_along_axis(f, pick, axis=0)[0] for f in stacked))
    last = candidates[-1]
    n_last = 0 if last is None else last.level.shape[0]
    return chosen, chosen.slope != 0.0, pick[0] >= stacked.level.shape[0] - n_last


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
