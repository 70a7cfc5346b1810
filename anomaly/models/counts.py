"""Sparse counts judged as counts: a few events more than usual at a quiet hour are no anomaly.

A sparse count (failed jobs in the last hour, a queue of a handful of jobs) takes a few small
integer values at its quiet hours: its median there is 0 and its noise scale a fraction of
one event, so three failures in an hour where there usually are none or one read as a
residual of four noise scales, while a count of mean 0.7 reaches 3 or more one hour in
thirty. For series whose values are whole multiples of one unit (``increase()`` scales them
by its extrapolation, so the unit is the series' own), the residual of a row is therefore
no larger than the count's own tail says where that tail calls the count plausible (above
one row in a thousand, :data:`PLAUSIBLE_Z`): the Gaussian quantile of the probability of at
least (at most) that many events at that time of day, under a Poisson law of the time of
day's mean count. Rarer counts keep their residual: a burst of fifty failures where two
are usual is as far out as ever, and a series whose days vary more than a Poisson's keeps
the wider scale it learned. (A negative binomial of the day-to-day dispersion was tried: at
means below one event its tail is so heavy that a queue jumping from 0 to 12 went
unflagged.)
"""

from __future__ import annotations

import math

import numpy as np

from anomaly.models.features import nanmedian0, nanquantile0, sliding_stack

#: A series is a count when at least this share of its values are 0 ...
_MIN_ZERO_SHARE = 0.01
#: ... and its small nonzero values (up to :data:`_SMALL` units) lie within this fraction of
#: their size of a whole number of units (``increase()`` extrapolates each window by its own
#: factor, a few percent), at least :data:`_WHOLE_SHARE` of them.
_WHOLE = 0.04
_SMALL = 10.0
_WHOLE_SHARE = 0.95
#: A count's own tail replaces its residual only where it is at least this likely (in
#: standard normal quantiles: one row in a thousand).
PLAUSIBLE_Z = 3.09
#: The tail is summed up to this many events; beyond, the residual is kept as it is.
_MAX_EVENTS = 400


def count_unit(values: np.ndarray) -> np.ndarray:
    """Each series' event unit, shape (n_series,): the size of one event where the series
    is a sparse count (zeros at :data:`_MIN_ZERO_SHARE` of its values or more, its small
    values whole multiples of its smallest, within :data:`_WHOLE`), else 0."""
    v = np.asarray(values, dtype=np.float64)
    n_s = v.shape[1]
    if v.shape[0] == 0:
        return np.zeros(n_s)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(v)
        zero_share = np.sum(v == 0, axis=0) / np.maximum(np.sum(finite, axis=0), 1)
        positive = np.where(v > 0, v, np.nan)
    unit = nanquantile0(positive, 0.02)
    ok = np.isfinite(unit) & (unit > 0) & (zero_share >= _MIN_ZERO_SHARE)
    unit = np.where(ok, unit, 1.0)
    with np.errstate(invalid="ignore"):
        ratio = positive / unit[None, :]
        nearest = np.rint(ratio)
        small = np.isfinite(ratio) & (ratio <= _SMALL)
        near = small & (np.abs(ratio - nearest) <= _WHOLE * np.maximum(nearest, 1.0))
        whole = np.sum(near, axis=0) >= _WHOLE_SHARE * np.maximum(np.sum(small, axis=0), 1)
        negative = np.any(v < 0, axis=0)
    out: np.ndarray = np.where(ok & whole & ~negative, unit, 0.0)
    return out


def fit_count_rates(counts: np.ndarray, n_days: int, n_slots: int, half_width: int) -> np.ndarray:
    """Mean count at each time of day, shape (n_slots, n_series): the median over days of
    each day's mean around the slot (one day of an incident does not raise it).

    Parameters
    ----------
    counts : ndarray of shape (n_days * n_slots, n_series)
        Events per row on the day grid (NaN where missing or left out).
    half_width : int
        Slots on each side pooled with a slot.
    """
    n_s = counts.shape[1]
    stack = sliding_stack(counts, half_width).reshape(2 * half_width + 1, n_days, n_slots, n_s)
    finite = np.isfinite(stack)
    n = finite.sum(axis=0)
    per_day = np.where(n > 0, np.where(finite, stack, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
    mean = nanmedian0(per_day)
    out: np.ndarray = np.where(np.isfinite(mean), np.maximum(mean, 0.0), 0.0)
    return out


def tail_z(events: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """A Poisson count's own residual, elementwise over arrays of one shape: the standard
    normal quantile of ``P(X >= events)`` above ``mean``, minus that of ``P(X <= events)``
    below it; NaN at the mean or beyond :data:`_MAX_EVENTS` events."""
    x = np.asarray(events, dtype=np.float64)
    lam = np.maximum(np.asarray(mean, dtype=np.float64), 1e-9)
    todo = np.isfinite(x) & (x != lam) & (x >= 0) & (x <= _MAX_EVENTS)
    out = np.full(x.shape, np.nan)
    if not todo.any():
        return out
    xs, ls = x[todo], lam[todo]
    # P(X <= x) and P(X = x), from pmf(k) = exp(-lam) lam^k / k! in logs against underflow.
    log_pmf = -ls
    cdf = np.zeros(xs.shape)
    at = np.zeros(xs.shape)
    for k in range(int(xs.max()) + 1):
        pmf = np.exp(log_pmf)
        cdf = cdf + np.where(k <= xs, pmf, 0.0)
        at = np.where(k == xs, pmf, at)
        log_pmf = log_pmf + np.log(ls / (k + 1.0))
    above = xs > ls
    tail = np.where(above, 1.0 - cdf + at, cdf)
    z = norm_isf(np.clip(tail, 1e-300, 1.0))
    out[todo] = np.where(above, z, -z)
    return out


def band_edges(mean: np.ndarray, sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where a Poisson count of ``mean`` (n_t, n_series) reaches ``sigmas`` (per series) of
    :func:`tail_z` on either side, in events, half an event beyond the last count inside
    (the edge between two counts): -0.5 below where even 0 is inside, NaN above where the
    tail is too small to sum (then the residual alone decides)."""
    lam = np.maximum(np.asarray(mean, dtype=np.float64), 1e-9)
    sig = np.broadcast_to(np.asarray(sigmas, dtype=np.float64), lam.shape[-1:])
    tail = [0.5 * math.erfc(float(x) / math.sqrt(2.0)) for x in sig]
    p = np.broadcast_to(np.array(tail)[None, :], lam.shape)  # each side's tail probability
    lower = np.full(lam.shape, -0.5)
    upper = np.full(lam.shape, np.nan)
    summable = p > 1e-12
    log_pmf = -lam
    cdf = np.zeros(lam.shape)
    for k in range(_MAX_EVENTS):
        cdf = cdf + np.exp(log_pmf)
        lower = np.where((cdf <= p) & (k < lam), k + 0.5, lower)
        hit = summable & np.isnan(upper) & (1.0 - cdf <= p)  # P(X >= k + 1) small enough
        upper = np.where(hit, k + 0.5, upper)
        if k > lam.max() and not np.any(summable & np.isnan(upper)):
            break
        log_pmf = log_pmf + np.log(lam / (k + 1.0))
    return lower, upper


def norm_isf(p: np.ndarray) -> np.ndarray:
    """Standard normal inverse survival function (``z`` with ``P(Z > z) = p``), elementwise;
    Acklam's rational approximation (relative error below 1.2e-9)."""
    prob = np.clip(np.asarray(p, dtype=np.float64), 1e-300, 1.0 - 1e-16)
    lower = 1.0 - prob  # the CDF value
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
         1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)  # fmt: skip
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
         6.680131188771972e01, -1.328068155288572e01)  # fmt: skip
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
         -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)  # fmt: skip
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
         3.754408661907416e00)  # fmt: skip
    out = np.empty(prob.shape)
    lo = lower < 0.02425
    hi = lower > 1 - 0.02425
    mid = ~lo & ~hi
    if mid.any():
        qm = lower[mid] - 0.5
        r = qm * qm
        num = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * qm
        den = ((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1
        out[mid] = num / den
    for mask, sign, tail in ((lo, 1.0, lower), (hi, -1.0, prob)):
        if mask.any():
            qt = np.sqrt(-2.0 * np.log(tail[mask]))
            num = ((((c[0] * qt + c[1]) * qt + c[2]) * qt + c[3]) * qt + c[4]) * qt + c[5]
            den = (((d[0] * qt + d[1]) * qt + d[2]) * qt + d[3]) * qt + 1
            out[mask] = sign * num / den
    return out  # the quantile of the CDF value 1 - p: the survival quantile of p
