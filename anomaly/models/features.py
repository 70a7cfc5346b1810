"""Array helpers shared by the models: calendar indices, NaN-aware robust statistics,
rolling windows and the level-adaptive transform (fitted state lives in
:mod:`anomaly.models.base`).

Everything here works column-wise on ``(n_t, n_series)`` arrays (or stacks of them): no
result for one column depends on another column, which is what keeps tenants apart.
"""

from __future__ import annotations

import numpy as np

SECONDS_PER_DAY = 86400.0
#: 1970-01-01 was a Thursday; with Monday = 0 that is weekday 3.
_EPOCH_WEEKDAY = 3


def calendar_index(
    times: np.ndarray, step_seconds: float, n_slots: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """UTC calendar position of each timestamp.

    Parameters
    ----------
    times : ndarray of shape (n_t,)
        Epoch seconds.
    step_seconds : float
        Grid step; a day has ``n_slots`` slots of this length.
    n_slots : int
        Number of time-of-day slots.

    Returns
    -------
    day : ndarray of int64, shape (n_t,)
        Days since the epoch (UTC).
    slot : ndarray of int64, shape (n_t,)
        Time-of-day slot in ``[0, n_slots)``.
    weekday : ndarray of int64, shape (n_t,)
        Monday = 0 ... Sunday = 6.
    """
    t = np.asarray(times, dtype=np.float64)
    day = np.floor(t / SECONDS_PER_DAY).astype(np.int64)
    seconds_of_day = t - day * SECONDS_PER_DAY
    slot = np.clip(np.floor(seconds_of_day / step_seconds + 1e-9).astype(np.int64), 0, n_slots - 1)
    weekday = (day + _EPOCH_WEEKDAY) % 7
    return day, slot, weekday


def n_slots_per_day(step_seconds: float) -> int:
    """Number of grid slots in a day for ``step_seconds``."""
    return max(1, int(np.ceil(SECONDS_PER_DAY / step_seconds - 1e-9)))


def nanmedian0(a: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN (NaN where a column has no finite value).

    A sort-based replacement for :func:`numpy.nanmedian`, which falls back to a Python loop
    over columns for large arrays.

    Parameters
    ----------
    a : ndarray of shape (n, ...)

    Returns
    -------
    ndarray of shape (...)
    """
    s = np.sort(a, axis=0)  # NaN sorts last
    n = np.sum(~np.isnan(a), axis=0)
    lo = np.clip((n - 1) // 2, 0, None)
    hi = np.clip(n // 2, 0, None)
    v_lo = np.take_along_axis(s, lo[None, ...], axis=0)[0]
    v_hi = np.take_along_axis(s, hi[None, ...], axis=0)[0]
    out = 0.5 * (v_lo + v_hi)
    return np.where(n > 0, out, np.nan)


def nanquantile0(a: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` (linear interpolation) over axis 0 ignoring NaN; sort-based.

    Parameters
    ----------
    a : ndarray of shape (n, ...)
    q : float
        In ``[0, 1]``.

    Returns
    -------
    ndarray of shape (...)
    """
    s = np.sort(a, axis=0)
    n = np.sum(~np.isnan(a), axis=0)
    pos = q * np.clip(n - 1, 0, None)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.clip(n - 1, 0, None))
    frac = pos - lo
    v_lo = np.take_along_axis(s, lo[None, ...], axis=0)[0]
    v_hi = np.take_along_axis(s, hi[None, ...], axis=0)[0]
    out = v_lo + frac * (v_hi - v_lo)
    return np.where(n > 0, out, np.nan)


def sorted_last(a: np.ndarray) -> np.ndarray:
    """``a`` with axis 0 moved last and sorted along it (NaN last), contiguous: one sort for
    several :func:`median_sorted` / :func:`quantile_sorted` of the same data."""
    out = np.ascontiguousarray(np.moveaxis(a, 0, -1))
    out.sort(axis=-1)
    return out


def median_sorted(s: np.ndarray) -> np.ndarray:
    """:func:`nanmedian0` of the data ``s = sorted_last(a)`` came from."""
    n = np.sum(~np.isnan(s), axis=-1)
    v_lo = np.take_along_axis(s, np.clip((n - 1) // 2, 0, None)[..., None], axis=-1)[..., 0]
    v_hi = np.take_along_axis(s, np.clip(n // 2, 0, None)[..., None], axis=-1)[..., 0]
    return np.where(n > 0, 0.5 * (v_lo + v_hi), np.nan)


def quantile_sorted(s: np.ndarray, q: float) -> np.ndarray:
    """:func:`nanquantile0` of the data ``s = sorted_last(a)`` came from."""
    n = np.sum(~np.isnan(s), axis=-1)
    pos = q * np.clip(n - 1, 0, None)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.clip(n - 1, 0, None))
    v_lo = np.take_along_axis(s, lo[..., None], axis=-1)[..., 0]
    v_hi = np.take_along_axis(s, hi[..., None], axis=-1)[..., 0]
    return np.where(n > 0, v_lo + (pos - lo) * (v_hi - v_lo), np.nan)


def sliding_stack(a: np.ndarray, half_width: int) -> np.ndarray:
    """Neighbours ``a[t - k], ..., a[t + k]`` of each row, NaN beyond the ends.

    Parameters
    ----------
    a : ndarray of shape (n_t, n_series)
    half_width : int
        ``k``; the window has ``2k + 1`` rows.

    Returns
    -------
    ndarray of shape (2k + 1, n_t, n_series)
    """
    k = int(half_width)
    n_t = a.shape[0]
    pad = np.full((k,) + a.shape[1:], np.nan)
    padded = np.concatenate([pad, a, pad], axis=0)
    return np.stack([padded[j : j + n_t] for j in range(2 * k + 1)], axis=0)


def rolling_nanmean(a: np.ndarray, window: int, min_count: int = 1) -> np.ndarray:
    """Trailing mean over the last ``window`` rows (including the current one), NaN-aware.

    Parameters
    ----------
    a : ndarray of shape (n_t, n_series)
    window : int
    min_count : int
        Rows with fewer finite values in the window get NaN.

    Returns
    -------
    ndarray of shape (n_t, n_series)
    """
    finite = np.isfinite(a)
    filled = np.where(finite, a, 0.0)
    zeros = np.zeros((1,) + a.shape[1:])
    csum = np.concatenate([zeros, np.cumsum(filled, axis=0)], axis=0)
    ccount = np.concatenate([zeros, np.cumsum(finite, axis=0, dtype=np.float64)], axis=0)
    n_t = a.shape[0]
    end = np.arange(1, n_t + 1)
    start = np.maximum(end - window, 0)
    total = csum[end] - csum[start]
    count = ccount[end] - ccount[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    return np.where(count >= max(min_count, 1), mean, np.nan)


def is_repeat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether ``a`` repeats ``b`` up to float rounding (relative 1e-9); NaN never repeats.

    Values derived from a stuck source (a rate computed from a counter that stopped
    accruing evenly) differ from each other in the last bits only.
    """
    with np.errstate(invalid="ignore", over="ignore"):  # a - b overflows: not a repeat
        return np.abs(a - b) <= 1e-9 * np.maximum(np.abs(a), np.abs(b))


def is_still(values: np.ndarray, y: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """Whether each row barely moved from the previous one, shape ``(n_t, n_series)``.

    A row is *still* when its raw value repeats the previous one (:func:`is_repeat`) or when
    its step in model space ``|y[t] - y[t-1]|`` is within ``tol[t]``: a fraction of the
    series' normal point-to-point variation, so a rate alternating between two close values by
    rounding (0.001377, 0.0013773, ...) is as still as an exact repeat. The first row and
    rows next to a missing value are never still.

    Parameters
    ----------
    values, y : ndarray of shape (n_t, n_series)
        Raw values and the same in model space (NaN = missing).
    tol : ndarray of shape (n_t, n_series)
        Largest step (model space) that still counts as no movement; 0 = exact repeats only.
    """
    still = np.zeros(values.shape, dtype=bool)
    if values.shape[0] > 1:
        with np.errstate(invalid="ignore", over="ignore"):
            step = np.abs(y[1:] - y[:-1])
            still[1:] = is_repeat(values[1:], values[:-1]) | (step <= tol[1:])
    return still


def run_surprise(still: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Accumulated surprise of the current run of still rows.

    ``S[t] = S[t-1] + cost[t]`` while ``still[t]`` (see :func:`is_still`), else 0.

    Parameters
    ----------
    still : ndarray of bool, shape (n_t, n_series)
        Whether each row continues the run of the previous one (a gap ends a run).
    cost : ndarray of shape (n_t, n_series)
        Surprise (nats) of one more still row at each row.

    Returns
    -------
    ndarray of shape (n_t, n_series)
    """
    n_t = still.shape[0]
    c = np.where(still, cost, 0.0)
    csum = np.cumsum(c, axis=0)
    # Cumulated cost at the last row that broke the run.
    idx = np.where(~still, np.arange(n_t)[:, None], 0)
    last_break = np.maximum.accumulate(idx, axis=0)
    return csum - np.take_along_axis(csum, last_break, axis=0)


def asinh_scale(values: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
    """Per-series scale ``c`` of the transform ``asinh(x / c)``.

    ``asinh(x / c)`` is close to ``log(2x / c)`` well above ``c`` (multiplicative noise
    becomes additive) and linear near zero (zeros and tiny ratios stay finite).

    With ``times``, ``c`` is also fitted to how each series' noise grows with its level
    (:func:`_noise_law_scale`): a series whose noise stays the same at any level (a gauge with
    additive integer noise, a queue depth) gets a larger ``c``, a transform closer to linear, so
    that its quiet hours' noise is not stretched into a band that hides a spike at a busy one.

    Parameters
    ----------
    values : ndarray of shape (n_t, n_series)
        Finite or NaN.
    times : ndarray of shape (n_t,), optional
        Unix seconds of the rows, evenly stepped.

    Returns
    -------
    ndarray of shape (n_series,)
        Positive where the series has a nonzero finite value, else 1.
    """
    mag = np.abs(values)
    c = 0.5 * nanmedian0(mag)
    # Many exact zeros (sparse counts, ratios of rare events): stay closer to linear, where
    # the log-like branch would stretch the gap between 0 and the smallest count.
    n_finite = np.sum(np.isfinite(mag), axis=0)
    zero_share = np.sum(mag == 0, axis=0) / np.maximum(n_finite, 1)
    c = np.where(zero_share >= 0.05, 2.0 * nanquantile0(mag, 0.9), c)
    with np.errstate(invalid="ignore"):
        finite_count = np.sum(np.isfinite(mag), axis=0)
        mean_mag = np.where(
            finite_count > 0, np.nansum(mag, axis=0) / np.maximum(finite_count, 1), 0
        )
    c = np.where(np.isfinite(c) & (c > 0), c, 0.5 * mean_mag)
    c = np.where(np.isfinite(c) & (c > 0), c, 1.0)
    if times is None:
        return c
    return np.maximum(c, _noise_law_scale(np.asarray(times, dtype=np.float64), values, c))


#: Candidate scales ``c`` of the noise law, as multiples of a series' median magnitude.
_C_MULTIPLES = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0])
#: Hours of the day (UTC) with a typical step needed to read a series' noise law ...
_C_MIN_HOURS = 12
#: ... and the spread of their levels (q90 / q10) that makes the law readable at all.
_C_MIN_RANGE = 1.5


def _noise_law_scale(times: np.ndarray, values: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The ``c`` under which each series' noise is most even in model space, else ``c``.

    The noise of an hour is the median step between consecutive points in it, its level the
    median magnitude. In ``asinh(x / c)`` a step ``s`` at level ``L`` becomes about
    ``s / sqrt(L**2 + c**2)``, so the chosen ``c`` (among :data:`_C_MULTIPLES` of the series'
    median magnitude) makes ``log s - log(L**2 + c**2) / 2`` vary least over the hours of the
    day: a small ``c`` where noise grows with the level (multiplicative), a large one where it
    does not (additive). Series with too few hours or too little spread of level keep ``c``.
    """
    v = np.asarray(values, dtype=np.float64)
    n_t, n_s = v.shape
    if n_t < 3 or n_s == 0:
        return c
    step = np.abs(np.diff(v, axis=0))
    level = 0.5 * (np.abs(v[1:]) + np.abs(v[:-1]))
    hour = np.floor(np.mod(times[1:], SECONDS_PER_DAY) / 3600.0)
    noise = np.full((24, n_s), np.nan)
    lev = np.full((24, n_s), np.nan)
    for h in range(24):
        rows = hour == h
        if rows.any():
            noise[h], lev[h] = nanmedian0(step[rows]), nanmedian0(level[rows])
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(noise) & (noise > 0) & np.isfinite(lev)
        n_ok = np.sum(ok, axis=0)
        lev_ok = np.where(ok, lev, np.nan)
        spread = nanquantile0(lev_ok, 0.9) >= _C_MIN_RANGE * nanquantile0(lev_ok, 0.1)
        usable = (n_ok >= _C_MIN_HOURS) & spread
        med = nanmedian0(np.abs(v))
        best, best_cost = c.copy(), np.full(n_s, np.inf)
        for m in _C_MULTIPLES:
            cand = m * med
            r = np.where(ok, np.log(noise) - np.log(np.hypot(lev, cand)), np.nan)
            cost = np.nansum((r - np.nansum(r, axis=0) / np.maximum(n_ok, 1)) ** 2, axis=0)
            better = usable & np.isfinite(cand) & (cand > 0) & (cost < best_cost - 1e-12)
            best = np.where(better, cand, best)
            best_cost = np.where(better, cost, best_cost)
    return best


def to_model_space(values: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``asinh(values / c)``; non-finite results become NaN. Shapes broadcast over series."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        y = np.arcsinh(values / c)
    return np.where(np.isfinite(y), y, np.nan)


def from_model_space(y: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_model_space`: ``c * sinh(y)``."""
    with np.errstate(over="ignore", invalid="ignore"):
        return c * np.sinh(y)


def sanitize(values: np.ndarray) -> np.ndarray:
    """Float64 copy with every non-finite value (±Inf) replaced by NaN."""
    v = np.array(values, dtype=np.float64, copy=True)
    v[~np.isfinite(v)] = np.nan
    return v
