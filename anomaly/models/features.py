"""Array helpers shared by the detectors: calendar indices, NaN-aware robust statistics,
rolling windows, the level-adaptive transform, and fitted state as plain numpy arrays
(validation, column selection, concatenation).

Everything here works column-wise on ``(n_t, n_series)`` arrays (or stacks of them): no
result for one column depends on another column, which is what keeps tenants apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from anomaly.errors import DataError

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


def run_surprise(values: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Accumulated surprise of the current run of repeated values.

    ``S[t] = S[t-1] + cost[t]`` while ``values[t]`` repeats ``values[t-1]`` (both finite, see
    :func:`is_repeat`), else 0.

    Parameters
    ----------
    values : ndarray of shape (n_t, n_series)
        Raw values (NaN = missing; a gap ends a run).
    cost : ndarray of shape (n_t, n_series)
        Surprise (nats) of one more repeat at each row.

    Returns
    -------
    ndarray of shape (n_t, n_series)
    """
    n_t = values.shape[0]
    repeat = np.zeros(values.shape, dtype=bool)
    if n_t > 1:
        with np.errstate(invalid="ignore"):
            repeat[1:] = is_repeat(values[1:], values[:-1])
    c = np.where(repeat, cost, 0.0)
    csum = np.cumsum(c, axis=0)
    # Cumulated cost at the last row that broke the run.
    idx = np.where(~repeat, np.arange(n_t)[:, None], 0)
    last_break = np.maximum.accumulate(idx, axis=0)
    return csum - np.take_along_axis(csum, last_break, axis=0)


def asinh_scale(values: np.ndarray) -> np.ndarray:
    """Per-series scale ``c`` of the transform ``asinh(x / c)``.

    ``asinh(x / c)`` is close to ``log(2x / c)`` well above ``c`` (multiplicative noise
    becomes additive) and linear near zero (zeros and tiny ratios stay finite).

    Parameters
    ----------
    values : ndarray of shape (n_t, n_series)
        Finite or NaN.

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
    return np.where(np.isfinite(c) & (c > 0), c, 1.0)


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


# --- fitted state as plain arrays ------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One array of a fitted state.

    ``kind`` is a numpy dtype kind string (``"f"``, ``"i"``, ``"b"``, ``"U"``); ``ndim`` counts
    the series axis, which is last when ``per_series``.
    """

    kind: str
    ndim: int
    per_series: bool = True
    finite: bool = False


def check_state(
    state: Mapping[str, np.ndarray], prefix: str, fields: Mapping[str, Field]
) -> dict[str, np.ndarray]:
    """Return the ``prefix``-ed arrays of ``state`` (without prefix) after checking them.

    Raises
    ------
    DataError
        A key is missing, has the wrong dtype or rank, the series axes disagree, or an
        array that must be finite is not.
    """
    if not isinstance(state, Mapping):
        raise DataError(f"state must be a mapping of arrays, got {type(state).__name__}")
    out: dict[str, np.ndarray] = {}
    n_series: int | None = None
    for name, spec in fields.items():
        key = prefix + name
        if key not in state:
            raise DataError(f"state is missing `{key}`")
        arr = state[key]
        if not isinstance(arr, np.ndarray):
            raise DataError(f"state `{key}` must be a numpy array, got {type(arr).__name__}")
        if arr.dtype.kind not in spec.kind:
            raise DataError(f"state `{key}` has dtype {arr.dtype}, expected kind {spec.kind!r}")
        if arr.ndim != spec.ndim:
            raise DataError(f"state `{key}` has {arr.ndim} dimensions, expected {spec.ndim}")
        if spec.per_series:
            if n_series is None:
                n_series = arr.shape[-1]
            elif arr.shape[-1] != n_series:
                raise DataError(
                    f"state `{key}` has {arr.shape[-1]} series on its last axis, "
                    f"expected {n_series}"
                )
        if spec.finite and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise DataError(f"state `{key}` holds non-finite values")
        out[name] = arr
    return out


def scalar(arrays: Mapping[str, np.ndarray], name: str, low: float, high: float) -> float:
    """The value of a 0-d parameter array, checked to lie in ``[low, high]``."""
    arr = arrays[name]
    if arr.shape != ():
        raise DataError(f"state `{name}` must be a scalar, got shape {arr.shape}")
    value = float(arr)
    if not (np.isfinite(value) and low <= value <= high):
        raise DataError(f"state `{name}` must be within [{low}, {high}], got {value}")
    return value


def select_columns(
    arrays: Mapping[str, np.ndarray], fields: Mapping[str, Field], columns: np.ndarray
) -> dict[str, np.ndarray]:
    """Restrict every per-series array to ``columns`` (indices or boolean mask)."""
    cols = np.asarray(columns)
    return {
        name: (
            np.take(arrays[name], _as_indices(cols, arrays, fields), axis=-1)
            if spec.per_series
            else arrays[name]
        )
        for name, spec in fields.items()
    }


def _as_indices(
    cols: np.ndarray, arrays: Mapping[str, np.ndarray], fields: Mapping[str, Field]
) -> np.ndarray:
    n = next(arrays[k].shape[-1] for k, f in fields.items() if f.per_series)
    if cols.dtype == bool:
        if cols.shape != (n,):
            raise ValueError(f"`columns` mask must have shape ({n},), got {cols.shape}")
        return np.flatnonzero(cols)
    idx = cols.astype(np.int64).ravel()
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"`columns` out of range for {n} series")
    return idx


def concat_columns(
    parts: Sequence[Mapping[str, np.ndarray]], fields: Mapping[str, Field]
) -> dict[str, np.ndarray]:
    """Put states side by side; non-series arrays must agree exactly."""
    out: dict[str, np.ndarray] = {}
    for name, spec in fields.items():
        if spec.per_series:
            out[name] = np.concatenate([p[name] for p in parts], axis=-1)
        else:
            first = parts[0][name]
            for p in parts[1:]:
                if p[name].shape != first.shape or not np.array_equal(p[name], first):
                    raise ValueError(f"cannot concat models whose `{name}` differ")
            out[name] = first
    return out
