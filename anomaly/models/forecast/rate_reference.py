"""Rate mode: the rate's seasonal reference ``u``, what the rate is expected to be without a trend.

The reference is the tenant's median time-of-day shape (each day divided by its mean, so
weekends and drifts do not bend it) scaled by the rate's level around the same time one week
earlier (over +-``LEVEL_HALF_SECONDS``): a week-ago value alone carries one point's noise.
That window stops at the tenant's local weekend edges (the midnights opening and closing its
weekend, found from where the level steps), so the hours either side of a weekend are not
scaled by a level half from the other kind of day. Without that week in the history (and in
``daily`` mode), the median day's level.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from anomaly.models.features import nanmedian0
from anomaly.models.forecast.common import (
    SECONDS_PER_DAY,
    Grid,
    by_day,
    cumsum0,
    finite_or,
    first_slot,
    quiet,
    smooth_slots,
)

LEVEL_HALF_SECONDS = 6 * 3600.0
"""The week-ago level of the reference is read over this many seconds either side."""
WEEKEND_MIN_CONTRAST = 0.3
"""The least weekend contrast (Monday's log step minus Saturday's) that marks a series' local
weekend edges, which the week-ago level window then never reaches across."""


def rate_reference(grid: Grid, rate: np.ndarray, lo: int) -> np.ndarray:
    """The reference of `rate` ``(n_t, n_s)`` from grid index `lo` through the forecast
    (``n_t + n_h``, exclusive), shape ``(n_t + n_h - lo, n_s)``: finite and non-negative.

    Where the shape or the level is unknown, the median of the last day's rate stands in
    (0 without one).
    """
    n_t = rate.shape[0]
    shape, typical = shape_profile(grid.t, rate, grid.step, grid.per_day)
    shape = finite_or(shape, 1.0)  # a slot never seen: the day's mean
    half = max(1, round(LEVEL_HALF_SECONDS / grid.step))
    u = profile_reference(rate, shape, typical, grid, lo, half)
    with quiet():
        recent_median = nanmedian0(rate[max(0, n_t - grid.per_day) :])
    u = finite_or(u, finite_or(recent_median, 0.0))
    return np.maximum(u, 0.0)


def shape_profile(
    t: np.ndarray, y: np.ndarray, step: float, per_day: int
) -> tuple[np.ndarray, np.ndarray]:
    """Median time-of-day shape of ``y`` relative to each day's mean, and the median day's mean.

    Shapes ``(per_day, n_s)`` and ``(n_s,)``.

    Dividing by the day's mean keeps a multiplicative change of level (a weekend, a drift) out
    of the shape; the median over days keeps one odd day out. Lightly smoothed; NaN if unseen.
    """
    days, _ = by_day(t, y, step, per_day)
    # Day means as sums over axis 0 of a (per_day, n_days, n_s) array: row by row, so a column's
    # result does not depend on the other columns, to the last bit.
    by_slot = np.ascontiguousarray(days.transpose(1, 0, 2))
    seen = np.isfinite(by_slot)
    count = seen.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (np.where(seen, by_slot, 0.0).sum(axis=0) / count)[:, None, :]
    full = (count >= 0.8 * per_day)[:, None, :] & (mean > 0)
    with quiet():
        rel = np.where(full, days / np.where(full, mean, 1.0), np.nan)
        profile = nanmedian0(rel)
        typical = nanmedian0(np.where(full, mean, np.nan))[0]
    profile = smooth_slots(profile, per_day)
    with quiet():
        typical = np.where(np.isfinite(typical), typical, np.nanmean(y, axis=0))
    return np.asarray(profile), np.asarray(typical)


def profile_reference(
    y: np.ndarray, shape: np.ndarray, typical: np.ndarray, grid: Grid, lo: int, half: int
) -> np.ndarray:
    """The time-of-day `shape` ``(per_day, n_s)`` scaled by an earlier level of `y`, from grid
    index `lo` through the forecast (``n_t + n_h``, exclusive).

    Returns shape ``(n_t + n_h - lo, n_s)``. The level is ``sum(y) / sum(shape)`` over ``+-half``
    points around the same time one week earlier (``weekly``; the newest week whose window
    lies in the past): many points' worth of noise averaged, where a week-ago value carries one
    point's. The window is cut at the series' local weekend edges (:func:`weekend_edges`), so
    it averages only the kind of day (weekday or weekend) its centre lies in. Where that week
    is not in the history (and in ``daily`` mode) the `typical` level stands in (shape
    ``(n_s,)``; the median day's mean): a day-ago level would turn every Monday into a jump
    from the weekend.
    """
    n_t, n_s = y.shape
    idx = np.arange(lo, n_t + grid.n_h)
    start_slot = first_slot(grid.t, grid.step)
    prof = shape[(start_slot + idx) % grid.per_day]
    all_prof = shape[(start_slot + np.arange(n_t)) % grid.per_day]
    ok = np.isfinite(y) & np.isfinite(all_prof)
    sums = _WindowSums(
        cumsum0(np.where(ok, y, 0.0)), cumsum0(np.where(ok, all_prof, 0.0)), cumsum0(ok)
    )

    # Segments between local weekend edges: a window never reaches across one.
    edge = weekend_edges(grid.t, y, all_prof, ok, grid.step)
    pos = np.arange(n_t)[:, None]
    seg_lo = np.maximum.accumulate(np.where(edge, pos, 0), axis=0)
    seg_hi = np.minimum.accumulate(np.where(edge, pos, n_t)[::-1], axis=0)[::-1]
    seg_hi = np.concatenate([seg_hi[1:], np.full((1, n_s), n_t)])  # the next edge after i

    level = np.broadcast_to(typical, prof.shape)
    if grid.season == "weekly":
        level_week = sums.level_back(idx, grid.per_week, half, seg_lo, seg_hi)
        level = np.where(np.isnan(level_week), level, level_week)
    return np.asarray(prof * level)


class _WindowSums(NamedTuple):
    """Cumulative sums ``(n_t + 1, n_s)`` over the points where a series `y` and its time-of-day
    shape are both finite: the level ``sum(y) / sum(shape)`` of any window."""

    cy: np.ndarray
    """Of `y`."""
    cp: np.ndarray
    """Of the shape."""
    cn: np.ndarray
    """Of the count of points."""

    def level_back(
        self, idx: np.ndarray, lag: int, half: int, seg_lo: np.ndarray, seg_hi: np.ndarray
    ) -> np.ndarray:
        """The level over ``+-half`` points around ``idx - lag * back`` for the least whole
        ``back >= 1`` whose window lies in the past, cut to the segment ``seg_lo..seg_hi``
        (shape ``(n_t, n_s)``) around its centre; shape ``(idx.size, n_s)``, NaN where fewer
        than `half` points count."""
        n_t = self.cy.shape[0] - 1
        back = np.maximum(1, -((n_t - 1 - half - idx) // lag))  # newest lag fully in the past
        src = idx - lag * back
        at = np.clip(src, 0, n_t - 1)
        a = np.clip(np.maximum(src - half, 0)[:, None], seg_lo[at], n_t)
        b = np.clip(np.minimum(src + half + 1, n_t)[:, None], 0, seg_hi[at])
        with np.errstate(invalid="ignore", divide="ignore"):
            level = _between(self.cy, a, b) / _between(self.cp, a, b)
        return np.where((_between(self.cn, a, b) >= half) & np.isfinite(level), level, np.nan)


def _between(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Window sums from cumulative sums `c`: rows ``a..b-1`` per column (``a``, ``b`` as `c`'s)."""
    return np.asarray(np.take_along_axis(c, b, 0) - np.take_along_axis(c, a, 0))


def weekend_edges(
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
    ys, offset = by_day(t, np.where(ok, y, np.nan), step, per_day)
    ps, _ = by_day(t, np.where(ok, prof, np.nan), step, per_day)
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
    cl = cumsum0(np.where(good, level, 0.0))
    cn = cumsum0(good)
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
    with quiet():
        for k in range(shifts.size):  # a few hours per shift; row sums keep columns apart
            drop = np.nanmean(step_at[midnight[k] & (weekday[k] == 5)], axis=0)
            rise = np.nanmean(step_at[midnight[k] & (weekday[k] == 0)], axis=0)
            contrast[k] = np.abs(rise - drop)
    contrast = finite_or(contrast, 0.0)
    best = np.argmax(contrast, axis=0)
    clear = contrast[best, np.arange(n_s)] > WEEKEND_MIN_CONTRAST
    local = t[:, None] + shifts[best][None, :] * 3600.0
    day = np.floor(local / SECONDS_PER_DAY)
    new_day = np.concatenate([np.zeros((1, n_s), dtype=bool), day[1:] != day[:-1]])
    wd = (day + 3) % 7
    return np.asarray(new_day & ((wd == 5) | (wd == 0)) & clear[None, :])
