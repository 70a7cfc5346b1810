""":func:`forecast`: checks the input arrays, finds the series that can be forecast, and hands
them to the plain forecaster (:mod:`.plain`) or, given a rate, to rate mode (:mod:`.rolling`)."""

from __future__ import annotations

import math

import numpy as np

from anomaly.models.forecast.common import Grid, points_per_day
from anomaly.models.forecast.params import ForecastParams
from anomaly.models.forecast.plain import forecast_plain
from anomaly.models.forecast.result import Forecast
from anomaly.models.forecast.rolling import forecast_rolling


def forecast(
    times: np.ndarray,
    values: np.ndarray,
    params: ForecastParams,
    *,
    rate: np.ndarray | None = None,
    step_seconds: float | None = None,
) -> Forecast:
    """Forecast every column of `values` to ``params.horizon_seconds`` past the newest time.

    Parameters
    ----------
    times : array, shape (n_t,)
        Epoch seconds on a regular grid, ascending.
    values : array, shape (n_t, n_series) or (n_t,)
        One series per column (never mixed); NaN marks a gap.
    params : ForecastParams
        The horizon and how to forecast (checked when it is made).
    rate : array, shape like `values`, optional
        The rate whose rolling sums `values` are, per ``params.rate_unit_seconds`` (e.g. AI
        spend in $/hour beside its rolling 24-hour spend). Given, the *rate* is forecast and
        the sums are carried forward from it (:mod:`.rolling`): far more accurate than
        extrapolating the lagging sums themselves.
    step_seconds : float, optional
        Grid spacing; by default the spacing of `times`.

    Returns
    -------
    Forecast
        Invalid series (too short, no values in the last ``params.smooth_seconds``) are NaN
        with a reason; nothing is raised for them.
    """
    t, y, r, step = _checked(times, values, rate, step_seconds)
    n_t, n_s = y.shape
    per_day = points_per_day(step)
    n_h = max(1, math.ceil(params.horizon_seconds / step - 1e-9))
    smooth = max(1, round(params.smooth_seconds / step))
    season = params.season
    if season == "auto":
        season = "weekly" if n_t >= 7 * per_day + per_day + 2 * smooth else "daily"

    now = float(t[-1]) if n_t else 0.0
    future_t = now + step * np.arange(1, n_h + 1)
    last_value = y[-1].copy() if n_t else np.full(n_s, np.nan)
    reason = _unusable(y, r, step, per_day, smooth, params.min_history_seconds)
    valid = np.array([why is None for why in reason], dtype=bool)
    cols = np.flatnonzero(valid)

    value, lower, upper = (np.full((n_h, n_s), np.nan) for _ in range(3))
    guard = held = additive = None
    grid = Grid(t, step, n_h, season)
    if cols.size and r is None:
        plain = forecast_plain(grid, y[:, cols], params)
        value[:, cols], lower[:, cols], upper[:, cols] = plain.value, plain.lower, plain.upper
        guard = _spread(plain.guard, cols, n_s)
    elif cols.size and r is not None:
        part = forecast_rolling(grid, y[:, cols], r[:, cols], params)
        value[:, cols], lower[:, cols], upper[:, cols] = part.value, part.lower, part.upper
        guard = _spread(part.guard, cols, n_s)
        held = None if part.held_guard is None else _spread(part.held_guard, cols, n_s)
        additive = _spread(part.additive, cols, n_s)
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
        held,
        additive,
    )


def _checked(
    times: np.ndarray,
    values: np.ndarray,
    rate: np.ndarray | None,
    step_seconds: float | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    """``(t, y, rate, step)``: float copies with the series as columns and ±Inf as NaN, and the
    grid step; raises ``ValueError`` naming the argument that does not fit."""
    t = np.asarray(times, dtype=float)
    y = np.array(values, dtype=float)  # a copy: ±Inf become NaN below
    if y.ndim == 1:
        y = y[:, None]
    if t.ndim != 1 or y.ndim != 2 or y.shape[0] != t.size:
        raise ValueError(
            f"`times` must have shape (n_t,) and `values` (n_t, n_series), got {t.shape} "
            f"and {np.shape(values)}"
        )
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
        r[~np.isfinite(r)] = np.nan
    return t, y, r, step


def _unusable(
    y: np.ndarray,
    rate: np.ndarray | None,
    step: float,
    per_day: int,
    smooth: int,
    min_history_seconds: float,
) -> list[str | None]:
    """Per series of `y` (and `rate`), why it cannot be forecast, or ``None`` if it can."""
    n_t, n_s = y.shape
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
        elif rate is not None and not np.isfinite(rate[max(0, n_t - smooth) :, j]).any():
            reason[j] = f"no rate values in the last {smooth * step / 3600:.1f} h"
    return reason


def _spread(part: np.ndarray, cols: np.ndarray, n_s: int) -> np.ndarray:
    """`part`, whose last axis holds the series `cols`, widened to all `n_s` series (NaN)."""
    whole = np.full(part.shape[:-1] + (n_s,), np.nan)
    whole[..., cols] = part
    return whole
