"""Building blocks of the zoo's generators: local clocks, daily and weekly shapes, noise, the
truth's breach time, and placing a breach at a chosen time.

Arrays are ``(n_t, n_series)`` (time along axis 0); times are epoch seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

HOUR = 3600.0
DAY = 86400.0


def local_hours(
    times: np.ndarray,
    offset_hours: np.ndarray,
    dst_at: np.ndarray | None = None,
    dst_delta_hours: np.ndarray | None = None,
) -> np.ndarray:
    """Local clock time in hours since the epoch, ``(n_t, n_series)``.

    Each series keeps the clock of a UTC offset (half and quarter hours allowed), moved by
    ``dst_delta_hours`` from ``dst_at`` on (a daylight-saving switch; NaN ``dst_at``: none).
    ``local % 24`` is the hour of the day, ``local // 24`` the local day number.
    """
    t = np.asarray(times, dtype=float)[:, None] / HOUR
    local = t + np.asarray(offset_hours, dtype=float)[None, :]
    if dst_at is not None and dst_delta_hours is not None:
        at = np.asarray(dst_at, dtype=float)[None, :]
        switched = np.isfinite(at) & (t * HOUR >= np.nan_to_num(at, nan=np.inf))
        local = local + np.where(switched, np.asarray(dst_delta_hours)[None, :], 0.0)
    return np.asarray(local)


def daily_shape(
    hours: np.ndarray, peak_hour: np.ndarray, night_floor: np.ndarray, width_hours: np.ndarray
) -> np.ndarray:
    """A day's shape with mean 1: a night floor and one smooth bump peaking at `peak_hour`.

    `hours` is the local clock (:func:`local_hours`), ``(n_t, n_s)``; the other arguments are
    per series, ``(n_s,)``: the floor as a share of the peak (0-1) and the bump's width (its
    standard deviation, hours).
    """
    kappa = (24.0 / (2 * math.pi * np.asarray(width_hours, dtype=float))) ** 2

    def raw(h: np.ndarray) -> np.ndarray:
        bump = np.exp(kappa * (np.cos(2 * math.pi * (h - peak_hour) / 24.0) - 1.0))
        return np.asarray(night_floor + (1.0 - night_floor) * bump)

    mean = raw(np.linspace(0.0, 24.0, 288, endpoint=False)[:, None]).mean(axis=0)
    return raw(hours % 24.0) / mean


def week_factor(hours: np.ndarray, rest_days: tuple[int, ...], strength: np.ndarray) -> np.ndarray:
    """1 on working days, ``1 - strength`` on the local `rest_days` (Monday = 0), changing
    over the two hours around each local midnight; `strength` is per series."""

    def rest(h: np.ndarray) -> np.ndarray:
        weekday = (np.floor(h / 24.0) + 3) % 7  # 1970-01-01 was a Thursday
        return np.isin(weekday, rest_days).astype(float)

    level = (rest(hours - 1.0) + rest(hours) + rest(hours + 1.0)) / 3.0
    return np.asarray(1.0 - np.asarray(strength)[None, :] * level)


def ar1(
    rng: np.random.Generator, n_t: int, n_s: int, tau_points: float, sigma: float
) -> np.ndarray:
    """Stationary AR(1) noise with time constant `tau_points` and standard deviation `sigma`."""
    phi = math.exp(-1.0 / max(tau_points, 1e-9))
    e = rng.normal(0.0, sigma * math.sqrt(1 - phi**2), (n_t, n_s))
    out = np.empty((n_t, n_s))
    out[0] = rng.normal(0.0, sigma, n_s)
    for i in range(1, n_t):
        out[i] = phi * out[i - 1] + e[i]
    return out


def crossed(values: np.ndarray, threshold: float, direction: str) -> np.ndarray:
    """Where `values` are at or past `threshold` (``above``: ``>=``; ``below``: ``<=``)."""
    if direction == "above":
        return np.asarray(values >= threshold)
    if direction == "below":
        return np.asarray(values <= threshold)
    raise ValueError(f"`direction` must be 'above' or 'below', got {direction!r}")


def first_crossing(
    series: np.ndarray,
    times: np.ndarray,
    after: float,
    threshold: float,
    direction: str = "above",
    lasting_seconds: float = 0.0,
) -> float:
    """Epoch seconds of the first point at or after `after` where `series` (one series,
    ``(n_t,)``) has crossed `threshold`, or ``inf``.

    With `lasting_seconds`, the crossing must hold that long (the rule of
    :func:`anomaly.models.forecast.breach_seconds`, whose countdown is compared with this time).
    """
    step = float(times[1] - times[0])
    clean = np.nan_to_num(series, nan=-np.inf if direction == "above" else np.inf)
    over = (times >= after) & crossed(clean, threshold, direction)
    need = max(1, math.ceil(lasting_seconds / step - 1e-9) + 1) if lasting_seconds > 0 else 1
    if need > 1:
        c = np.concatenate([[0], np.cumsum(over)])
        i = np.arange(over.size)
        end = np.minimum(i + need, over.size)
        over = over & (c[end] - c[i] == end - i)
    idx = np.flatnonzero(over)
    return float(times[idx[0]]) if idx.size else math.inf


def bisect(predicate: Callable[[float], bool], lo: float, hi: float) -> float:
    """The smallest `p` in ``[lo, hi]`` (to 1e-9 relative) with ``predicate(p)`` true, for a
    predicate false below some point and true above it; `hi` if it is true nowhere."""
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if predicate(mid):
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-9 * max(1.0, abs(hi)):
            break
    return hi


def place_crossing(
    curve: Callable[[float], np.ndarray],
    times: np.ndarray,
    target: float,
    bounds: tuple[float, float],
    threshold: float,
    direction: str = "above",
    *,
    after: float,
    lasting_seconds: float = 1800.0,
) -> float:
    """The parameter in `bounds` whose ``curve(p)`` (``(n_t,)``) first crosses at `target`
    (from `after` on, lasting `lasting_seconds`).

    The crossing must come no later as `p` grows (`p` a level added to a rising curve, a
    slope, a growth factor); the result is within a grid step of `target` when `bounds` hold
    it.
    """
    return bisect(
        lambda p: (
            first_crossing(curve(p), times, after, threshold, direction, lasting_seconds) <= target
        ),
        *bounds,
    )


def draw_crossing(
    draw: Callable[[], Callable[[float], np.ndarray]],
    times: np.ndarray,
    window: tuple[float, float],
    rng: np.random.Generator,
    bounds: tuple[float, float],
    threshold: float,
    direction: str = "above",
    *,
    after: float,
    lasting_seconds: float = 1800.0,
    tries: int = 30,
) -> tuple[Callable[[float], np.ndarray], float]:
    """A curve of a parameter, drawn by ``draw()``, and the parameter in `bounds` that puts
    its first crossing from `after` on at a time drawn uniformly in `window`
    (:func:`place_crossing`).

    A daily swing makes some times unreachable (the curve crosses first at the peak before):
    the time, and the curve (its phase, if ``draw`` draws one), are drawn again, up to `tries`
    times; ``ValueError`` if none fits.
    """
    lo, hi = window
    for _ in range(tries):
        curve = draw()
        p = place_crossing(
            curve,
            times,
            rng.uniform(lo, hi),
            bounds,
            threshold,
            direction,
            after=after,
            lasting_seconds=lasting_seconds,
        )
        when = first_crossing(curve(p), times, after, threshold, direction, lasting_seconds)
        if lo <= when <= hi:
            return curve, p
    raise ValueError(f"no parameter in {bounds} puts the crossing inside {window}")
