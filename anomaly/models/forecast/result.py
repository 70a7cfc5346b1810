"""The result of a forecast, :class:`Forecast`, and what is read from it: :func:`breach_seconds`.

:func:`breach_seconds` reads the *point* forecast: the first time it crosses the threshold and
stays crossed for ``min_duration_seconds``, 0 if the newest value has crossed, ``+Inf`` if the
forecast does not cross within the horizon. When the forecast has a guard (rate mode), the
guard must cross within the horizon too: a breach is announced only when the trend carrying it
is significant, so that a steady tenant whose normal swings come near the threshold stays
silent; the intervals are only the bounds and decide nothing. Once announced, a breach is held:
the guards from the half-hourly origins of the last ``hold_seconds``
(:attr:`Forecast.held_guard`) count as well, so a warning does not drop out for a run or two
where the fit is less sure - a ramp's newest hours briefly looking flat, a guard just short of
the threshold - while the point forecast still crosses. The hold needs no state between runs:
it refits the past origins from the same history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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
    additive: np.ndarray | None = None
    """Shape ``(n_series,)`` or ``None``: in rate mode, the weight in (0, 1) of the trend added
    to the daily shape (a new workload beside the old) against the one scaling it (growth of
    the same use), from their out-of-sample errors; near 0 or 1 where the data chose one, near
    0.5 where they could not be told apart (the forecast blends them)."""

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

    crossed = _crossed(fc.value, threshold, direction)
    already = _crossed(last, threshold, direction)
    need = max(1, math.ceil(min_duration_seconds / fc.step_seconds - 1e-9) + 1)
    lasting = _lasting(crossed, need)
    has = lasting.any(axis=0)
    if fc.guard is not None:
        guards = [fc.guard] + ([] if fc.held_guard is None else list(fc.held_guard))
        announced = np.zeros(has.shape, dtype=bool)
        for guard in guards:
            announced |= _lasting(_crossed(guard, threshold, direction), need).any(axis=0)
        has &= announced
    first = np.argmax(lasting, axis=0)
    seconds = np.where(has, fc.times[first] - start, np.inf)
    seconds = np.where(already, 0.0, np.maximum(seconds, 0.0))
    return np.where(fc.valid, seconds, np.nan)


def _crossed(a: np.ndarray, threshold: float, direction: str) -> np.ndarray:
    """Where `a` is at or beyond `threshold` in `direction` (False where NaN)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(a >= threshold if direction == "above" else a <= threshold)


def _lasting(crossed: np.ndarray, need: int) -> np.ndarray:
    """Crossed at i and at every point of the following run of `need` points (or to the end of
    the horizon), shape of `crossed` ``(n_h, n_s)``: a reverse count of consecutive crossed
    points."""
    run = np.zeros(crossed.shape, dtype=int)
    count = np.zeros(crossed.shape[1], dtype=int)
    n_h = crossed.shape[0]
    for i in range(n_h - 1, -1, -1):
        count = np.where(crossed[i], count + 1, 0)
        run[i] = count
    remaining = n_h - np.arange(n_h)[:, None]
    return np.asarray(crossed & (run >= np.minimum(need, remaining)))
