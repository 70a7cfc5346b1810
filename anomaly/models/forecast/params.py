"""The forecaster's parameters: one frozen dataclass, its defaults, and the checks of its fields."""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass

from anomaly.models.forecast.common import SECONDS_PER_DAY

SEASONS = ("auto", "weekly", "daily")

_POSITIVE = (
    "horizon_seconds",
    "smooth_seconds",
    "recent_seconds",
    "window_seconds",
    "rate_unit_seconds",
    "trend_seconds",
    "trend_horizon_seconds",
)
_NON_NEGATIVE = (
    "min_history_seconds",
    "trend_z",
    "calibration_seconds",
    "guard_z",
    "hold_seconds",
)


@dataclass(frozen=True)
class ForecastParams:
    """How :func:`~anomaly.models.forecast.forecast` forecasts: the horizon, then settings
    whose defaults suit 5-minute data with daily and weekly seasons.

    The fields are checked on construction: a bad value raises ``ValueError`` naming it.
    Fields marked *rate mode* apply only when the forecast is given a ``rate``.
    """

    horizon_seconds: float
    """How far ahead to forecast; the grid has ``ceil(horizon_seconds / step_seconds)`` points."""
    _: KW_ONLY
    interval: float = 0.9
    """Central coverage of the band ``[lower, upper]``, in (0, 1)."""
    season: str = "auto"
    """``auto``, ``weekly`` or ``daily``: the reference (see :mod:`.plain` and :mod:`.rolling`);
    ``auto`` is weekly with at least ``7d + 1d + 2 * smooth_seconds`` of history, else daily."""
    smooth_seconds: float = 3600.0
    """Window of the robust levels and of the smoothing of the deviation; also how recent a
    series' newest value must be for it to be forecast."""
    min_history_seconds: float = 2 * SECONDS_PER_DAY
    """A series with a shorter span of finite values is invalid (at least a day and a bit)."""
    multiplicative: bool | None = None
    """Plain series: deviation from the reference as a ratio (``None``: for every series whose
    recent values and reference are all positive) or, with ``False``, as a difference."""
    recent_seconds: float = 12 * 3600.0
    """Plain series: window comparing today's growth with yesterday's (the acceleration)."""
    max_acceleration: float = 3.0
    """Plain series: bound of that growth ratio, both ways (at least 1)."""
    window_seconds: float = SECONDS_PER_DAY
    """Rate mode: length of the rolling window of the sums."""
    rate_unit_seconds: float = 3600.0
    """Rate mode: the time unit of the rate: 3600 for a rate per hour."""
    trend_seconds: float = 1.5 * SECONDS_PER_DAY
    """Rate mode: window of the rate's level and slope fit."""
    trend_z: float = 3.0
    """Rate mode: a fitted slope of the rate is kept only when this many standard errors from
    zero."""
    trend_horizon_seconds: float = 8 * 3600.0
    """Rate mode: the rate's slope is extrapolated this far ahead, its ratio to the reference
    then held (a ramp seldom runs on for a whole day)."""
    calibration_seconds: float = 4 * SECONDS_PER_DAY
    """Rate mode: how far back the walk-forward origins that calibrate the band reach."""
    guard_z: float = 1.0
    """Rate mode: the guard (:attr:`Forecast.guard`) moves the fitted level and slope this many
    standard errors towards zero."""
    hold_seconds: float = 2 * 3600.0
    """Rate mode: a breach announced from an origin this recent (the half-hourly origins before
    the newest point) stays announced while the point forecast still crosses, even if the
    newest guard no longer does (:attr:`Forecast.held_guard`; 0 turns it off)."""

    def __post_init__(self) -> None:
        for name in _POSITIVE:
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"`{name}` must be positive, got {v}")
        for name in _NON_NEGATIVE:
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"`{name}` must be non-negative, got {v}")
        if not 0 < self.interval < 1:
            raise ValueError(f"`interval` must be in (0, 1), got {self.interval}")
        if self.season not in SEASONS:
            raise ValueError(f"`season` must be one of {list(SEASONS)}, got {self.season!r}")
        if self.multiplicative not in (None, True, False):
            raise ValueError(
                f"`multiplicative` must be True, False or None, got {self.multiplicative!r}"
            )
        if not (math.isfinite(self.max_acceleration) and self.max_acceleration >= 1):
            raise ValueError(f"`max_acceleration` must be at least 1, got {self.max_acceleration}")
