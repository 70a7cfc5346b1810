"""Array helpers both forecasters use: the grid laid out by day, time-of-day smoothing,
cumulative sums, and NaN handling.

Every array is ``(n_t, n_series)`` (time along axis 0) unless a docstring says otherwise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

from anomaly.models.features import nanmedian0

SECONDS_PER_DAY = 86400.0
SECONDS_PER_WEEK = 7 * SECONDS_PER_DAY


class Grid(NamedTuple):
    """The regular time grid of the input, and the forecast made on it."""

    t: np.ndarray
    """Shape ``(n_t,)``: epoch seconds of the input, ascending."""
    step: float
    """Spacing of `t` in seconds."""
    n_h: int
    """Points forecast, one `step` apart after ``t[-1]``."""
    season: str
    """``weekly`` or ``daily``: the reference the forecast uses (``auto`` already resolved)."""

    @property
    def per_day(self) -> int:
        """Grid points in a day."""
        return points_per_day(self.step)

    @property
    def per_week(self) -> int:
        """Grid points in a week."""
        return 7 * self.per_day


@contextmanager
def quiet() -> Iterator[None]:
    """Silence numpy's RuntimeWarnings (an all-NaN slice, a mean of nothing): NaN is the answer."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def points_per_day(step: float) -> int:
    """Grid points in a day (at least 1)."""
    return max(1, round(SECONDS_PER_DAY / step))


def first_slot(t: np.ndarray, step: float) -> int:
    """Time-of-day slot (UTC) of the first grid point ``t[0]``."""
    return int(round((t[0] % SECONDS_PER_DAY) / step))


def finite_or(a: np.ndarray, fallback: np.ndarray | float) -> np.ndarray:
    """`a` with its NaN and +-Inf replaced by `fallback` (broadcast)."""
    return np.where(np.isfinite(a), a, fallback)


def cumsum0(a: np.ndarray) -> np.ndarray:
    """Cumulative sums along axis 0 with a row of zeros first, shape ``(n + 1, ...)``, float:
    the sum of rows ``i..j-1`` is ``c[j] - c[i]``."""
    return np.concatenate([np.zeros((1,) + a.shape[1:]), np.cumsum(a, axis=0)])


def robust_sigma(a: np.ndarray) -> np.ndarray:
    """Standard deviation along axis 0 from the median absolute deviation (NaN-aware)."""
    return 1.4826 * nanmedian0(np.abs(a - nanmedian0(a)))


def by_day(t: np.ndarray, y: np.ndarray, step: float, per_day: int) -> tuple[np.ndarray, int]:
    """``y`` laid out by day, shape ``(n_days, per_day, n_s)`` with NaN outside the data, and
    the slot of its first point."""
    n_t, n_s = y.shape
    offset = first_slot(t, step) % per_day
    n_days = math.ceil((offset + n_t) / per_day)
    grid = np.full((n_days * per_day, n_s), np.nan)
    grid[offset : offset + n_t] = y
    return grid.reshape(n_days, per_day, n_s), offset


def smooth_slots(profile: np.ndarray, per_day: int) -> np.ndarray:
    """A time-of-day profile ``(per_day, n_s)`` averaged over +-2 neighbouring slots (wrapping
    at midnight)."""
    half = min(2, per_day // 2)
    if half:
        stacked = np.stack([np.roll(profile, s, axis=0) for s in range(-half, half + 1)])
        with quiet():
            profile = np.nanmean(stacked, axis=0)
    return np.asarray(profile)
