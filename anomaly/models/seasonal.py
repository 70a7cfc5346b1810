"""The robust seasonal baseline and the feature rows every detector reads.

The baseline works in a level-adaptive space ``y = asinh(x / c)`` (``c`` per series): there,
multiplicative noise (request rates, costs) is roughly constant while zeros and tiny ratios
stay finite. In that space it learns, per series and vectorised over all series:

* a time-of-day slot profile per *day type*: with about a week of history, weekdays and
  weekend days get separate profiles; with two weeks or more, each weekday gets its own,
  shrunk towards its day type. Days are UTC calendar days shifted by whole hours per series
  when the series' weekend visibly starts elsewhere (a tenant in UTC+10);
* a per-slot robust noise scale (MAD over neighbouring slots of all days; for sparse counts
  with many exact zeros, at least the 95th percentile of the deviations / 1.96);
* per slot, the typical point-to-point step, and how surprising a row that barely moves
  (a repeat, or a step far below that typical one) is there (for stuck series), and how
  surprising a missing row is there (for series that stop reporting).

Profiles are medians over days and neighbouring slots, refitted once with points beyond
``outlier_z`` scales masked, so a past outage or level shift neither becomes normal nor
inflates the scale much. The newest day of the training window is held out of all of this
(for each series with three days of values before it, :func:`baseline_mask`), so an anomaly
in progress at fit time is not learned.

From the standardised residual ``z`` the baseline derives the feature rows the detectors
read (:data:`FEATURE_NAMES`): point ``z``, trailing means of ``z`` over 6/12/36 rows, a
variance ratio over 12 rows, the surprise of a run of still rows (a collapse of the
point-to-point variation) or of missing ones, the local change, and calendar position; the learned ones are
normalised by their training median and MAD.
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import NormalDist
from typing import Any, ClassVar

import numpy as np

from anomaly.errors import DataError
from anomaly.models.base import SERIES, Field, FittedState, param
from anomaly.models.calendar import (
    Calendar,
    ClockSwitch,
    cell_times,
    describe,
    local_day,
    local_weekday,
    read_calendars,
)
from anomaly.models.counts import (
    PLAUSIBLE_Z,
    band_edges,
    count_unit,
    fit_count_rates,
    tail_z,
)
from anomaly.models.features import (
    SECONDS_PER_DAY,
    asinh_scale,
    calendar_index,
    from_model_space,
    is_still,
    median_sorted,
    n_slots_per_day,
    nanmedian0,
    quantile_sorted,
    rolling_nanmean,
    run_surprise,
    sanitize,
    sliding_stack,
    sorted_last,
    to_model_space,
)

#: Names of the feature axis returned by :meth:`SeasonalBaseline.features`.
FEATURE_NAMES: tuple[str, ...] = (
    "z",
    "mean_6",
    "mean_12",
    "mean_36",
    "var_12",
    "stuck",
    "change",
    "tod_sin",
    "tod_cos",
    "weekend",
)
N_FEATURES = len(FEATURE_NAMES)
_MEAN_WINDOWS = {1: 6, 2: 12, 3: 36}
_VAR_WINDOW = 12
#: Features learned with a median/MAD normalisation.
_LEARNED = (1, 2, 3, 4, 6)
_MAD_TO_SIGMA = 1.4826
_Z_CLIP = 10.0


class SeasonalBaseline(FittedState):
    """Seasonal baseline with robust noise scales, and the feature rows derived from it.

    Parameters
    ----------
    step_seconds : float
        Grid step of the series (seconds).
    min_points : int or None
        Fewest finite points a series needs; default one day of slots.
    profile_half_width : int
        Neighbouring slots on each side pooled into a profile median.
    scale_half_width : int
        Neighbouring slots on each side pooled into a noise-scale estimate.
    outlier_z : float
        Training points beyond this many scales are masked before the final fit.
    holdout_seconds : float
        The newest part of the training window left out of the baseline and of the feature
        statistics when at least three days of older history remain (0 = use everything).
    estimate_day_offset : bool
        Find each series' own day boundary (whole hours from UTC) from where its weekend
        level change falls, so a tenant in UTC+10 gets its weekend on its local Saturday and
        Sunday. Off (or no visible weekend): UTC calendar days.
    bucketed : bool
        The values are quantiles read off histogram buckets (``histogram_quantile``): they
        jump between bucket bounds, and each slot's noise scale covers the typical day's
        jumps there (:func:`_jump_scale`) instead of one heavy-tail threshold for the day.
    """

    state_fields: ClassVar[dict[str, Field]] = {
        "step_seconds": param(1e-3, SECONDS_PER_DAY),
        "day_type": Field(np.int64, (7, SERIES)),
        "rest": Field(np.bool_, (7, SERIES)),
        "day_offset": Field(np.float64, (SERIES,), finite=True),
        "calendar": Field(np.str_, (SERIES,)),
        "profile": Field(np.float64, ("n_types", "n_slots", SERIES), finite=True),
        "seen": Field(np.bool_, ("n_types", "n_slots", SERIES)),
        "scale": Field(np.float64, ("n_slots", SERIES), finite=True),
        "stuck_cost": Field(np.float64, ("n_slots", SERIES), finite=True),
        "stuck_cost_zero": Field(np.float64, ("n_slots", SERIES), finite=True),
        "stuck_tol": Field(np.float64, ("n_slots", SERIES), finite=True),
        "absent_cost": Field(np.float64, ("n_slots", SERIES), finite=True),
        "c": Field(np.float64, (SERIES,), finite=True),
        "count_unit": Field(np.float64, (SERIES,), finite=True),
        "count_mean": Field(np.float64, ("n_slots", SERIES), finite=True),
        "nonneg": Field(np.bool_, (SERIES,)),
        "center": Field(np.float64, (N_FEATURES, SERIES), finite=True),
        "spread": Field(np.float64, (N_FEATURES, SERIES), finite=True),
        "valid": Field(np.bool_, (SERIES,)),
        "reason": Field(np.str_, (SERIES,)),
    }

    def __init__(
        self,
        step_seconds: float = 300.0,
        min_points: int | None = None,
        profile_half_width: int = 2,
        scale_half_width: int = 6,
        outlier_z: float = 4.0,
        holdout_seconds: float = SECONDS_PER_DAY,
        estimate_day_offset: bool = True,
        bucketed: bool = False,
    ) -> None:
        self.step_seconds = step_seconds
        self.min_points = min_points
        self.profile_half_width = profile_half_width
        self.scale_half_width = scale_half_width
        self.outlier_z = outlier_z
        self.holdout_seconds = holdout_seconds
        self.estimate_day_offset = estimate_day_offset
        self.bucketed = bucketed

    # ------------------------------------------------------------------ fitting
    def fit(
        self, times: np.ndarray, values: np.ndarray, calendar: Calendar | None = None
    ) -> SeasonalBaseline:
        """Learn profiles, scales and feature normalisation from a training window.

        Parameters
        ----------
        times : ndarray of shape (n_t,)
            Epoch seconds, increasing.
        values : ndarray of shape (n_t, n_series)
            NaN or non-finite = missing.
        calendar : Calendar, optional
            The series' calendars, read beforehand (:func:`estimate_calendars`, e.g. pooled
            over each tenant's metrics); default: read off ``values`` when
            ``estimate_day_offset``, else UTC days.

        Returns
        -------
        self
        """
        if not (np.isfinite(self.step_seconds) and self.step_seconds > 0):
            raise ValueError(f"`step_seconds` must be positive, got {self.step_seconds}")
        t, v = check_input(times, values)
        n_t, n_s = v.shape
        n_slots = n_slots_per_day(self.step_seconds)
        min_points = n_slots if self.min_points is None else int(self.min_points)

        # The newest rows are held out of the baseline and the feature statistics (when enough
        # older history remains), so an anomaly in progress at fit time is judged against the
        # past instead of being learned as normal.
        rows, mask = training_rows(t, v, self.holdout_seconds, self.step_seconds)
        t_base, v_base = t[rows], np.where(mask, v, np.nan)[rows]
        valid, reason = _validity(v, min_points)
        c = asinh_scale(v, t)
        sparse = _sparse(v)
        y = to_model_space(v_base, c)
        y[:, ~valid] = np.nan

        grid, d0, n_days = _day_grid(t_base, y, self.step_seconds, n_slots)
        cell_time = cell_times(d0, n_days, n_slots)
        if calendar is None and self.estimate_day_offset:
            calendar = estimate_calendars(t, v, self.step_seconds, min_points=min_points)
        if calendar is not None:
            if calendar.n_series != n_s:
                raise ValueError(
                    f"`calendar` describes {calendar.n_series} series, `values` has {n_s}"
                )
            switch, day_offset, rest = calendar.switch, calendar.offset, calendar.rest
            grid = switch.realign(cell_time, grid)
            v = switch.realign(t, v)  # what the detectors learn from, on the newest clock too
        else:
            switch = ClockSwitch.none(n_s)
            day_offset, rest = np.zeros(n_s), np.zeros((7, n_s), dtype=bool)
        wd_grid = local_weekday(cell_time, day_offset)

        weekly = n_days >= 14
        day_type = (
            np.repeat(np.arange(7, dtype=np.int64)[:, None], n_s, axis=1)
            if weekly
            else rest.astype(np.int64)
        )
        k, ks = self.profile_half_width, self.scale_half_width
        type_grid = np.take_along_axis(rest.astype(np.int64), wd_grid, axis=0)
        pgrid = np.take_along_axis(day_type, wd_grid, axis=0)

        profile = _fit_profiles(grid, n_days, n_slots, wd_grid, rest, weekly, k)
        rounding = _rounding(grid, c, v_base, sparse)
        scale = _fit_scale(
            grid, profile, pgrid, n_days, n_slots, ks, sparse, self.bucketed, rounding
        )
        resid = grid - _grid_expected(profile, pgrid, n_slots)
        z = resid / np.tile(scale, (n_days, 1))
        # Days that fit no profile (a public holiday, a deploy day, a past incident of hours)
        # are left out whole; single points beyond `outlier_z` scales too.
        cell_day = local_day(cell_time, day_offset)
        first_day, share = _day_shares(z, cell_day, n_slots)
        odd = _odd_days(share)
        # Of those, the days that fit the other day type (a public holiday: a work day at a
        # rest day's level, a working Saturday) are left out of the detectors' calibration
        # too. Other odd days (an incident, a new regime) still calibrate them: real series
        # that once misbehaved for a day are likelier to do it again.
        if profile.shape[0] == 2:
            other = _grid_expected(profile, 1 - type_grid, n_slots)
            z_other = (grid - other) / np.tile(scale, (n_days, 1))
            with np.errstate(invalid="ignore"):
                holiday = odd & (_day_shares(z_other, cell_day, n_slots)[1] < 0.25 * share)
        else:
            holiday = np.zeros_like(odd)
        with np.errstate(invalid="ignore"):
            outlier = (np.abs(z) > self.outlier_z) | _on_days(cell_day, first_day, odd)
        masked = np.where(outlier, np.nan, grid)
        profile = _fit_profiles(masked, n_days, n_slots, wd_grid, rest, weekly, k)
        scale = _fit_scale(
            masked, profile, pgrid, n_days, n_slots, ks, sparse, self.bucketed, rounding
        )
        # The cells the detectors learn from: the baseline's, less the holidays.
        self.train_cells_ = mask & ~_on_days(local_day(t, day_offset), first_day, holiday)
        # The window on the newest clock, and its training values (NaN outside the training
        # cells): what the detectors learn from. Not part of the state.
        self.aligned_values_ = v
        self.train_values_ = np.where(self.train_cells_, v, np.nan)

        fallback = nanmedian0(grid)
        profile = np.where(np.isfinite(profile), profile, fallback)
        profile = np.where(np.isfinite(profile), profile, 0.0)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)

        self.day_type_ = day_type
        self.rest_ = rest
        self.day_offset_ = day_offset
        self.calendar_ = np.array(
            [
                describe(
                    day_offset[j],
                    rest[:, j],
                    float(switch.at[j]),
                    float(switch.shift_seconds[j]),
                )
                for j in range(n_s)
            ],
            dtype=np.str_,
        ).reshape(n_s)
        self.profile_ = profile
        self.seen_ = _seen(masked, pgrid, profile.shape[0], n_days, n_slots, k)
        self.scale_ = scale
        self.stuck_cost_, self.stuck_cost_zero_, self.stuck_tol_ = _fit_stuck(
            grid, n_days, n_slots, ks
        )
        self.absent_cost_ = _fit_absent(grid, cell_time, t_base, n_days, n_slots, ks)
        self._fit_counts(grid, c, n_days, n_slots, ks)
        self.c_ = c
        with np.errstate(invalid="ignore"):
            self.nonneg_ = ~np.any(v < 0, axis=0)
        self.valid_ = valid
        self.reason_ = reason
        self.center_ = np.zeros((N_FEATURES, n_s))
        self.spread_ = np.ones((N_FEATURES, n_s))

        raw = self._raw_features(t[rows], self.train_values_[rows])
        center = nanmedian0(raw[:, _LEARNED, :])
        spread = _MAD_TO_SIGMA * nanmedian0(np.abs(raw[:, _LEARNED, :] - center))
        self.center_[_LEARNED, :] = np.where(np.isfinite(center), center, 0.0)
        self.spread_[_LEARNED, :] = np.where(np.isfinite(spread) & (spread > 1e-9), spread, 1.0)
        return self

    def _fit_counts(
        self, grid: np.ndarray, c: np.ndarray, n_days: int, n_slots: int, ks: int
    ) -> None:
        """Sparse counts (:mod:`~anomaly.models.counts`): each series' event unit (0 for
        other series) and mean count per slot, from its model-space grid."""
        n_s = grid.shape[1]
        values = from_model_space(grid, c)
        unit = count_unit(values)
        self.count_unit_ = unit
        self.count_mean_ = np.zeros((n_slots, n_s))
        cols = np.flatnonzero(unit > 0)
        if cols.size:
            events = np.rint(values[:, cols] / unit[cols])
            self.count_mean_[:, cols] = fit_count_rates(events, n_days, n_slots, ks)

    @property
    def n_slots_(self) -> int:
        """Time-of-day slots of the profiles."""
        return int(self.profile_.shape[1])

    # ------------------------------------------------------------------ baseline
    def expected_model(self, times: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        """Expected value in model space (``asinh(x / c)``), shape (n_t, n_series).

        With ``values`` (the rows at ``times``), the newest day of each series is read as
        the other day type when its values so far, up to an hour before the newest row,
        clearly follow that type's profile instead of its own: a public holiday today is a
        rest day, a working Saturday a work day (see :meth:`today_swapped`); and the last day
        follows the profile an hour early or late when its clock moved (see
        :meth:`recent_clock`).
        """
        self._check_fitted()
        t = np.asarray(times, dtype=np.float64)
        types = self._types(t)
        if values is None:
            return self._profile_at(t, types)
        swapped = self.today_swapped(t, values)
        types = np.where(swapped, self._other(types), types)
        expected = self._profile_at(t, types)
        moved = self.recent_clock(t, values, expected, types)
        recent = t > t[-1] - _CLOCK_SECONDS
        for shift in (-3600.0, 3600.0):
            cols = np.flatnonzero(moved == shift)
            if cols.size:
                shifted = self._profile_at(t + shift, self._types(t + shift))
                expected[np.ix_(recent, cols)] = shifted[np.ix_(recent, cols)]
        return expected + self._today_level(t, values, types, expected)

    def recent_clock(
        self, t: np.ndarray, values: np.ndarray, expected: np.ndarray, types: np.ndarray
    ) -> np.ndarray:
        """Seconds (0, -3600 or +3600) by which each series' clock moved within the last day.

        A daylight-saving switch in the newest day (or one the calendar missed because the
        window shows too little of the other side) puts the profile an hour off: a night
        batch or a morning ramp arrives an hour early or late. Over the rows of the newest
        row's day type from :data:`_CLOCK_SECONDS` to an hour before the newest row, the
        profile shifted by an hour is taken when it fits and the unshifted one does not, on
        the same evidence as a swapped day type (:func:`_fits_other`).
        """
        n_s = np.asarray(values).shape[1]
        out = np.zeros(n_s)
        if t.shape[0] < 2:
            return out
        y = to_model_space(np.asarray(values, dtype=np.float64), self.c_)
        scale = self.scale_at(t)
        rows = ((t > t[-1] - _CLOCK_SECONDS) & (t <= t[-1] - 3600.0))[:, None]
        rows = rows & (types == types[-1])
        best = np.full(n_s, np.inf)
        for shift in (-3600.0, 3600.0):
            other = self._profile_at(t + shift, self._types(t + shift))
            fits, m_other = _fits_other(y, expected, other, scale, rows, self.step_seconds)
            with np.errstate(invalid="ignore"):
                ok = fits & (m_other < best)
            out = np.where(ok, shift, out)
            best = np.where(ok, m_other, best)
        return out

    def _today_level(
        self, t: np.ndarray, values: np.ndarray, types: np.ndarray, expected: np.ndarray
    ) -> np.ndarray:
        """Where today's day type was never seen at this time of day in training (a six-day
        week's only rest day, whose last occurrence sits at the window's far edge, is seen
        there only in its evening hours), the profile there is a guess: today's own level
        against it, from its rows of such hours between four hours and one hour before the
        newest one (one hour of them at least; the guessed shape drifts over a day), is
        added to it. Shape (n_t, n_series); 0 elsewhere."""
        v = np.asarray(values, dtype=np.float64)
        _, slot, _ = calendar_index(t, self.step_seconds, self.n_slots_)
        n_s = v.shape[1]
        unseen = ~self.seen_[types, slot[:, None], np.arange(n_s)[None, :]]
        today = self._today(t) & unseen
        y = to_model_space(v, self.c_)
        recent = (t <= t[-1] - 3600.0) & (t > t[-1] - 4 * 3600.0)
        votes = today & np.isfinite(y) & recent[:, None]
        enough = np.sum(votes, axis=0) * self.step_seconds >= 3600.0
        level = nanmedian0(np.where(votes, y - expected, np.nan))
        ok = enough & np.isfinite(level)
        return np.where(today & ok[None, :], np.where(ok, level, 0.0)[None, :], 0.0)

    def _count_means(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sparse counts' columns and their mean count at each of ``t``, shape
        (n_t, n_counts)."""
        cols = np.flatnonzero(self.count_unit_ > 0)
        if cols.size == 0:
            return cols, np.zeros((t.shape[0], 0))
        _, slot, _ = calendar_index(t, self.step_seconds, self.n_slots_)
        return cols, self.count_mean_[slot][:, cols]

    def _today(self, t: np.ndarray) -> np.ndarray:
        """Rows on each series' newest local day, shape (n_t, n_series)."""
        day = local_day(t, self.day_offset_)
        today: np.ndarray = day == day[-1][None, :]
        return today

    def _types(self, t: np.ndarray) -> np.ndarray:
        return np.take_along_axis(self.day_type_, local_weekday(t, self.day_offset_), axis=0)

    def _other(self, types: np.ndarray) -> np.ndarray:
        return 1 - types if self.profile_.shape[0] == 2 else types

    def _profile_at(self, t: np.ndarray, types: np.ndarray) -> np.ndarray:
        _, slot, _ = calendar_index(t, self.step_seconds, self.n_slots_)
        n_s = self.profile_.shape[-1]
        return self.profile_[types, slot[:, None], np.arange(n_s)[None, :]]

    def _residual(self, t: np.ndarray, v: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Standardised residual ``z`` of each row (n_t, n_series).

        Within :data:`_EDGE_SECONDS` of a change of day type (a weekend starting or ending)
        the row may belong to either side: the estimated day start is uncertain by a cell,
        and a query with a trailing window (``rate(...[1h])``) still reads the previous
        day for a while. There, the smaller residual of the two sides counts, but only in
        the run of rows next to the change that all fit the other side better: the lag moves
        one way, so once a row after the change fits its own side, so do the rows after it
        (a spike 15 minutes into a weekend is judged against the weekend).
        """
        scale = self.scale_at(t)
        expected = self.expected_model(t, v)
        z = (y - expected) / scale
        own = self._types(t)
        for edge in (-_EDGE_SECONDS, _EDGE_SECONDS):
            near = self._types(t + edge)
            window = near != own
            other = np.where(window, (y - self._profile_at(t, near)) / scale, np.nan)
            with np.errstate(invalid="ignore"):
                closer = np.abs(other) < np.abs(z)
            # After a change (edge < 0) the run starts at the change, before one it ends there.
            # (A missing row neither ends the run nor takes a side.)
            run = _run_from_edge(closer | np.isnan(z), window, backward=edge > 0)
            z = np.where(run & closer, other, z)
        cols, mean = self._count_means(t)
        if cols.size:
            # A sparse count's residual: no larger than its own tails make it where those
            # call the count plausible (:data:`~anomaly.models.counts.PLAUSIBLE_Z`).
            events = np.rint(v[:, cols] / self.count_unit_[cols])
            own = tail_z(events, mean)
            part = z[:, cols]
            with np.errstate(invalid="ignore"):
                shrink = (
                    np.isfinite(own)
                    & (part * own > 0)
                    & (np.abs(part) > np.abs(own))
                    & (np.abs(own) < PLAUSIBLE_Z)
                )
            z[:, cols] = np.where(shrink, own, part)
        return z

    def today_swapped(self, times: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Rows (n_t, n_series) of each series' newest local day that are read as the other
        day type (work for rest, rest for work).

        A day is swapped when, over its rows up to an hour before the newest one where the
        two types' profiles differ by more than :data:`_SWAP_DIFFER` noise scales (two hours
        of them at least), the other type's profile fits (median ``|z|`` below
        :data:`_SWAP_FIT`) and its own does not (above :data:`_SWAP_MISFIT`). The newest hour
        never votes, so an incident that starts now is judged against the day's own type.
        Weekly profiles (two weeks of history) are never swapped.
        """
        t = np.asarray(times, dtype=np.float64)
        v = np.asarray(values, dtype=np.float64)
        out = np.zeros(v.shape, dtype=bool)
        if self.profile_.shape[0] != 2 or t.shape[0] < 2:
            return out
        today = self._today(t)
        types = self._types(t)
        own = self._profile_at(t, types)
        other = self._profile_at(t, 1 - types)
        scale = self.scale_at(t)
        y = to_model_space(v, self.c_)
        rows = today & (t <= t[-1] - 3600.0)[:, None]
        swap, _ = _fits_other(y, own, other, scale, rows, self.step_seconds)
        return today & swap[None, :]

    def scale_at(self, times: np.ndarray) -> np.ndarray:
        """Noise scale in model space at ``times``, shape (n_t, n_series)."""
        self._check_fitted()
        _, slot, _ = calendar_index(times, self.step_seconds, self.n_slots_)
        return self.scale_[slot]

    def bands(
        self, times: np.ndarray, sigmas: np.ndarray | float, values: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Expected value and the band of ``sigmas`` noise scales around it, in the source unit.

        Parameters
        ----------
        times : ndarray of shape (n_t,)
        sigmas : float or ndarray of shape (n_series,)
            Half-width of the band in noise scales (model space).
        values : ndarray of shape (n_t, n_series), optional
            The rows at ``times``: the newest day may then read as the other day type (see
            :meth:`expected_model`).

        Returns
        -------
        expected, lower, upper : ndarray of shape (n_t, n_series)
            NaN for invalid series; ``lower`` is at least 0 for a series never negative.
        """
        e = self.expected_model(times, values)
        half = sigmas * self.scale_at(times)
        expected = from_model_space(e, self.c_)
        lower = from_model_space(e - half, self.c_)
        upper = from_model_space(e + half, self.c_)
        cols, mean = self._count_means(np.asarray(times, dtype=np.float64))
        if cols.size:  # a sparse count's band is also where its own tails begin
            unit = self.count_unit_[cols]
            sig = np.broadcast_to(np.asarray(sigmas, dtype=np.float64), self.c_.shape)[cols]
            lo, hi = band_edges(mean, np.minimum(sig, PLAUSIBLE_Z))
            lower[:, cols] = np.minimum(lower[:, cols], lo * unit)
            upper[:, cols] = np.where(
                np.isfinite(hi), np.maximum(upper[:, cols], hi * unit), upper[:, cols]
            )
        lower = np.where(self.nonneg_, np.maximum(lower, 0.0), lower)
        invalid = ~self.valid_
        for a in (expected, lower, upper):
            a[:, invalid] = np.nan
        return expected, lower, upper

    # ------------------------------------------------------------------ features
    def features(self, times: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Normalised features of every row; see :data:`FEATURE_NAMES`.

        Parameters
        ----------
        times : ndarray of shape (n_t,)
        values : ndarray of shape (n_t, n_series)
            The rows to describe plus the history their trailing windows need (36 rows).

        Returns
        -------
        ndarray of shape (n_t, n_features, n_series)
            NaN where a feature is undefined (missing value, too little history).
        """
        t, v = check_input(times, values)
        return self._normalise(self._raw_features(t, v))

    def _raw_features(self, t: np.ndarray, v: np.ndarray) -> np.ndarray:
        self._check_series(v)
        n_t, n_s = v.shape
        y = to_model_space(v, self.c_)
        z = self._residual(t, v, y)
        zc = np.clip(z, -_Z_CLIP, _Z_CLIP)
        out = np.full((n_t, N_FEATURES, n_s), np.nan)
        out[:, 0] = z
        for i, w in _MEAN_WINDOWS.items():
            out[:, i] = rolling_nanmean(zc, w, min_count=max(1, w // 2))
        var = rolling_nanmean(np.minimum(zc * zc, 36.0), _VAR_WINDOW, min_count=_VAR_WINDOW // 2)
        out[:, 4] = np.log(var + 0.1)
        _, slot, _ = calendar_index(t, self.step_seconds, self.n_slots_)
        still = is_still(v, y, self.stuck_tol_[slot])
        cost = np.where(v == 0, self.stuck_cost_zero_[slot], self.stuck_cost_[slot])
        # A series that stops reporting where it always reports (a p95 with no requests to
        # measure, an exporter gone) is out: its run of missing rows weighs as a run of
        # still ones :data:`_ABSENT_WEIGHT` times as surprising.
        # A series gone for a day is gone (a tenant that left, a renamed pod), not an outage
        # that pages for the rest of the lookback.
        missing = ~np.isfinite(v) & (np.cumsum(np.isfinite(v), axis=0) > 0)
        absent = run_surprise(missing, self.absent_cost_[slot])
        gone = run_surprise(missing, np.ones(v.shape)) * self.step_seconds > SECONDS_PER_DAY
        absent[gone] = 0.0
        out[:, 5] = np.maximum(run_surprise(still, cost), _ABSENT_WEIGHT * absent)
        if n_t > 1:
            out[1:, 6] = zc[1:] - zc[:-1]
        phase = 2.0 * np.pi * (np.mod(t, SECONDS_PER_DAY) / SECONDS_PER_DAY)
        out[:, 7] = np.sin(phase)[:, None]
        out[:, 8] = np.cos(phase)[:, None]
        out[:, 9] = np.take_along_axis(self.rest_, local_weekday(t, self.day_offset_), axis=0)
        return out

    def _normalise(self, raw: np.ndarray) -> np.ndarray:
        return (raw - self.center_) / self.spread_

    # ------------------------------------------------------------------ state
    @classmethod
    def _check_arrays(
        cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, float], prefix: str
    ) -> None:
        n_slots = n_slots_per_day(params["step_seconds"])
        n_types, n_state_slots, _ = arrays["profile"].shape
        if n_state_slots != n_slots:
            raise DataError(
                f"state `{prefix}profile` has {n_state_slots} slots, a step of "
                f"{params['step_seconds']:g}s has {n_slots}"
            )
        day_type = arrays["day_type"]
        if day_type.size and (day_type.min() < 0 or day_type.max() >= n_types):
            raise DataError(f"state `{prefix}day_type` is inconsistent with {n_types} profiles")
        if (
            np.any(arrays["scale"] <= 0)
            or np.any(arrays["spread"] <= 0)
            or np.any(arrays["c"] <= 0)
        ):
            raise DataError(f"state `{prefix}scale`, `spread` and `c` must be positive")
        if any(
            np.any(arrays[k] < 0)
            for k in ("stuck_cost", "stuck_cost_zero", "stuck_tol", "absent_cost")
        ):
            raise DataError(
                f"state `{prefix}stuck_cost`, `stuck_cost_zero`, `stuck_tol` and "
                "`absent_cost` must be >= 0"
            )
        if np.any(np.abs(arrays["day_offset"]) > SECONDS_PER_DAY):
            raise DataError(f"state `{prefix}day_offset` must be within one day")

    @classmethod
    def _align_states(cls, states: list[dict[str, np.ndarray]]) -> None:
        if any(s["profile"].shape[0] != states[0]["profile"].shape[0] for s in states):
            for s in states:  # mixed weekly / day-type models: expand to one profile per weekday
                n_s = s["profile"].shape[-1]
                for name in ("profile", "seen"):
                    s[name] = s[name][s["day_type"], :, np.arange(n_s)[None, :]].transpose(0, 2, 1)
                s["day_type"] = np.repeat(np.arange(7, dtype=np.int64)[:, None], n_s, axis=1)

    # ------------------------------------------------------------------ helpers
    def _check_series(self, v: np.ndarray) -> None:
        self._check_fitted()
        if v.shape[1] != self.c_.shape[0]:
            raise ValueError(
                f"`values` has {v.shape[1]} series, the model was fitted on {self.c_.shape[0]}"
            )

    def __repr__(self) -> str:
        params: dict[str, Any] = {k: getattr(self, k) for k in ("step_seconds", "holdout_seconds")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


def estimate_calendars(
    times: np.ndarray,
    values: np.ndarray,
    step_seconds: float,
    groups: np.ndarray | None = None,
    min_points: int | None = None,
) -> Calendar:
    """Each series' calendar (day start, rest days, clock switch), read off its whole window
    (:func:`~anomaly.models.calendar.read_calendars`), for :meth:`SeasonalBaseline.fit`.

    The whole window, the newest rows included: where a weekend ends or the clock moved is a
    fact of the calendar, and with a week of history the held-out day is often the only one
    that shows a weekend's edge. With ``groups`` (a tenant id per series, -1 for none), the
    calendar is each tenant's, read off all of its series: pass the columns of all of a
    tenant's metrics on one grid.

    Parameters
    ----------
    times : ndarray of shape (n_t,)
    values : ndarray of shape (n_t, n_series)
    step_seconds : float
    groups : ndarray of int, shape (n_series,), optional
    min_points : int, optional
        Fewest finite points a series needs to be read (default one day of slots).
    """
    t, v = check_input(times, values)
    n_s = v.shape[1]
    ids = np.arange(n_s) if groups is None else np.asarray(groups, dtype=np.int64)
    if ids.shape != (n_s,):
        raise ValueError(f"`groups` must have shape ({n_s},), got {ids.shape}")
    ids = np.where(ids >= 0, ids, -1 - np.arange(n_s))  # no group: a group of one
    n_slots = n_slots_per_day(step_seconds)
    out = Calendar.none(n_s)
    # Whole groups, about _CHUNK_SERIES columns at a time: the search's memory stays flat.
    order = np.argsort(ids, kind="stable")
    cuts = np.flatnonzero(np.diff(ids[order])) + 1
    start = 0
    for end in _chunk_ends(cuts, n_s):
        cols = order[start:end]
        start = end
        if cols.size == 0:
            continue
        part = v[:, cols]
        valid, _ = _validity(part, n_slots if min_points is None else int(min_points))
        y = to_model_space(part, asinh_scale(part, t))
        y[:, ~valid] = np.nan
        grid, d0, n_days = _day_grid(t, y, step_seconds, n_slots)
        cal = read_calendars(grid, n_days, n_slots, d0, _sparse(part), ids[cols])
        out.offset[cols], out.rest[:, cols] = cal.offset, cal.rest
        out.switch.at[cols], out.switch.shift_seconds[cols] = (
            cal.switch.at,
            cal.switch.shift_seconds,
        )
        out.switch.gain[cols] = cal.switch.gain
    return out


#: Columns of one calendar search (whole groups; a bigger group is searched whole).
_CHUNK_SERIES = 256


def _chunk_ends(cuts: np.ndarray, n: int) -> list[int]:
    """Ends of consecutive chunks of ``n`` columns sorted by group, cut at group boundaries
    ``cuts``: at most :data:`_CHUNK_SERIES` columns each, or one group if it is bigger."""
    ends: list[int] = []
    start = last = 0
    for bound in [*cuts.tolist(), n]:
        if bound - start > _CHUNK_SERIES and last > start:
            ends.append(last)
            start = last
        last = bound
    ends.append(n)
    return ends


def _sparse(v: np.ndarray) -> np.ndarray:
    """Sparse counts: series with exact zeros at 5 % of their values or more."""
    with np.errstate(invalid="ignore"):
        out: np.ndarray = np.sum(v == 0, axis=0) >= 0.05 * np.maximum(
            np.sum(np.isfinite(v), axis=0), 1
        )
    return out


def training_rows(
    times: np.ndarray, values: np.ndarray, holdout_seconds: float, step_seconds: float
) -> tuple[np.ndarray, np.ndarray]:
    """The rows models learn from and the cells of them (:func:`baseline_mask`).

    Returns
    -------
    rows : ndarray of bool, shape (n_t,)
        Rows with a cell some series learns from (every row when there is no series).
    mask : ndarray of bool, shape (n_t, n_series)
        :func:`baseline_mask`.
    """
    mask = baseline_mask(times, values, holdout_seconds, step_seconds)
    return mask.any(axis=1) | (values.shape[1] == 0), mask


def baseline_mask(
    times: np.ndarray, values: np.ndarray, holdout_seconds: float, step_seconds: float
) -> np.ndarray:
    """Cells a model learns from: per series, all but the newest ``holdout_seconds``, when the
    series has three days of finite values before them (else all of its cells).

    Counting finite values per series (not rows) matters for a series that started recently
    in a long window: its only day of data is not held out, leaving it nothing to learn from.

    Parameters
    ----------
    times : ndarray of shape (n_t,)
    values : ndarray of shape (n_t, n_series)

    Returns
    -------
    ndarray of bool, shape (n_t, n_series)
    """
    t = np.asarray(times, dtype=np.float64)
    finite = np.isfinite(values)
    older = t <= t[-1] - holdout_seconds
    enough = np.count_nonzero(finite & older[:, None], axis=0) >= 3 * n_slots_per_day(step_seconds)
    hold = (holdout_seconds > 0) & enough
    return np.where(hold[None, :], older[:, None], True)


def check_input(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a ``(times, values)`` pair; return float64 copies with non-finite as NaN.

    Raises
    ------
    ValueError
        Wrong ranks, mismatched lengths, no rows, or non-finite times.
    """
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values)
    if t.ndim != 1:
        raise ValueError(f"`times` must be 1-D, got shape {t.shape}")
    if v.ndim != 2:
        raise ValueError(f"`values` must be 2-D (n_t, n_series), got shape {v.shape}")
    if v.shape[0] != t.shape[0]:
        raise ValueError(f"`values` has {v.shape[0]} rows but `times` has {t.shape[0]}")
    if t.shape[0] == 0:
        raise ValueError("`times` must not be empty")
    if not np.all(np.isfinite(t)):
        raise ValueError("`times` must be finite")
    return t, sanitize(v)


def _validity(v: np.ndarray, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    n_finite = np.sum(np.isfinite(v), axis=0)
    reason = np.full(v.shape[1], "", dtype="<U64")
    too_short = (n_finite > 0) & (n_finite < min_points)
    reason[n_finite == 0] = "all values missing"
    for j in np.flatnonzero(too_short):
        reason[j] = f"too short: {int(n_finite[j])} finite points, need {min_points}"
    # A constant series is scored: 0 while it stays at its value, an anomaly when it leaves
    # it (its noise scale is the floor, so any departure is far).
    return reason == "", reason


def _day_grid(
    times: np.ndarray, y: np.ndarray, step_seconds: float, n_slots: int
) -> tuple[np.ndarray, int, int]:
    """Rows ``y`` (n_t, n_series) placed on whole UTC days of ``n_slots`` slots.

    Returns
    -------
    grid : ndarray of shape (n_days * n_slots, n_series)
        NaN where no row falls.
    first_day, n_days : int
        UTC day number of the grid's first day, and its number of days.
    """
    day, slot, _ = calendar_index(times, step_seconds, n_slots)
    first = int(day.min())
    n_days = int(day.max()) - first + 1
    grid = np.full((n_days * n_slots, y.shape[1]), np.nan)
    grid[(day - first) * n_slots + slot] = y
    return grid, first, n_days


def _run_from_edge(ok: np.ndarray, window: np.ndarray, backward: bool) -> np.ndarray:
    """Rows (n_t, n_series) of each run of ``window`` rows that are ``ok`` without a break
    from the run's start (its end with ``backward``): the rows next to a change of day type
    that read as the other side, up to the first that does not."""
    if backward:
        return _run_from_edge(ok[::-1], window[::-1], backward=False)[::-1]
    out = np.zeros(window.shape, dtype=bool)
    starts = window.copy()
    starts[1:] &= ~window[:-1]
    # Only the rows some series has in a window (a few near each change) are counted on.
    rows = np.flatnonzero(window.any(axis=1))
    if rows.size == 0:
        return out
    w, st = window[rows], starts[rows]
    bad = w & ~ok[rows]
    index = np.arange(rows.size, dtype=np.int32)[:, None]
    first = np.maximum.accumulate(np.where(st, index, 0), axis=0)  # each run's first row
    before = np.cumsum(bad, axis=0, dtype=np.int32) - bad  # breaks before each row
    breaks = before - np.take_along_axis(before, first, axis=0)  # ... since its run began
    out[rows] = w & ok[rows] & (breaks == 0)
    return out


#: How far from a change of day type a row may still belong to the other side.
_EDGE_SECONDS = 2700.0

#: Reading today as the other day type (:meth:`SeasonalBaseline.today_swapped`): where the
#: profiles differ by this many scales, the other fits within this median |z| and its own
#: misfits beyond this one.
_SWAP_DIFFER = 2.0
_SWAP_FIT = 1.5
_SWAP_MISFIT = 3.0
#: How far back the clock of the newest day is checked (:meth:`SeasonalBaseline.recent_clock`).
_CLOCK_SECONDS = 25 * 3600.0

#: A day with at least this share of its points beyond :data:`_ODD_Z` scales fits no profile.
_ODD_SHARE = 0.15
_ODD_Z = 3.5


def _day_shares(z: np.ndarray, day: np.ndarray, n_slots: int) -> tuple[int, np.ndarray]:
    """Share of each local day's points beyond :data:`_ODD_Z` scales.

    Returns
    -------
    first_day : int
        Index of the first local day.
    share : ndarray of shape (n_days, n_series)
        NaN for a day with less than a quarter of its points.
    """
    first = int(day.min()) if day.size else 0
    n_ld = int(day.max()) - first + 1 if day.size else 0
    share = np.full((n_ld, z.shape[1]), np.nan)
    with np.errstate(invalid="ignore"):
        big = np.abs(z) > _ODD_Z
    fin = np.isfinite(z)
    for i in range(n_ld):
        on = day == first + i
        n = np.sum(fin & on, axis=0)
        share[i] = np.where(n >= n_slots // 4, np.sum(big & on, axis=0) / np.maximum(n, 1), np.nan)
    return first, share


def _odd_days(share: np.ndarray) -> np.ndarray:
    """Days of each series that fit no profile (:func:`_day_shares` at least
    :data:`_ODD_SHARE`): a public holiday, a deploy day, a past incident of hours. At most a
    quarter of the judged days (the worst) per series; shape of ``share``."""
    judged = np.sum(np.isfinite(share), axis=0)
    cap = judged // 4
    rank = np.argsort(np.argsort(-np.where(np.isfinite(share), share, -1.0), axis=0), axis=0)
    with np.errstate(invalid="ignore"):
        odd: np.ndarray = (share >= _ODD_SHARE) & (rank < cap[None, :])
    return odd


def _on_days(day: np.ndarray, first_day: int, odd: np.ndarray) -> np.ndarray:
    """Whether each cell falls on one of the ``odd`` days, shape of ``day``."""
    idx = day - first_day
    inside = (idx >= 0) & (idx < odd.shape[0])
    hit = (
        np.take_along_axis(odd, np.clip(idx, 0, max(odd.shape[0] - 1, 0)), axis=0)
        if odd.size
        else np.zeros(idx.shape, bool)
    )
    return inside & hit


def _fit_profiles(
    grid: np.ndarray,
    n_days: int,
    n_slots: int,
    wd_grid: np.ndarray,
    rest: np.ndarray,
    weekly: bool,
    k: int,
) -> np.ndarray:
    """Profiles (n_types, n_slots, n_series) from a grid (n_days * n_slots, n_series), the
    weekday of each of its cells and each series' rest days (7, n_series): work and rest
    day types, or one profile per weekday shrunk towards its type's when ``weekly``."""
    n_s = grid.shape[1]
    n_samples = (2 * k + 1) * n_days

    def pooled(mask: np.ndarray | None, prior: np.ndarray | None, weight: int) -> np.ndarray:
        part = grid if mask is None else np.where(mask, grid, np.nan)
        samples = sliding_stack(part, k).reshape(n_samples, n_slots, n_s)
        if prior is not None:  # the prior counts as `weight` more samples
            samples = np.concatenate([samples, np.repeat(prior[None], weight, axis=0)])
        return nanmedian0(samples)

    all_days = pooled(None, None, 0)
    type_grid = np.take_along_axis(rest.astype(np.int64), wd_grid, axis=0)
    by_type = np.empty((2, n_slots, n_s))
    for g in range(2):
        mask = type_grid == g
        diff = np.where(mask, grid - np.tile(all_days, (n_days, 1)), np.nan)
        # The all-days shape shifted to the day type's level only breaks ties (one sample):
        # it is a poor guess of a rest day's shape, but it sides with the normal one of two
        # disagreeing days. At a time of day the type was never seen, the guess is all there
        # is: there, the type's offset is that of the times as busy (:func:`_carried`).
        offset = np.tile(nanmedian0(diff), (n_slots, 1))
        days = diff.reshape(n_days, n_slots, n_s)
        seen = np.asarray(np.isfinite(days).any(axis=0))
        part = np.flatnonzero(seen.any(axis=0) & ~seen.all(axis=0))
        if part.size:
            by_slot = nanmedian0(days[:, :, part])
            offset[:, part] = np.where(
                seen[:, part], offset[:, part], _carried(by_slot, all_days[:, part])
            )
        prof = pooled(mask, all_days + offset, 1)
        by_type[g] = np.where(np.isfinite(prof), prof, all_days)
    if not weekly:
        return by_type
    by_weekday = np.empty((7, n_slots, n_s))
    for w in range(7):
        prior = np.where(rest[w][None, :], by_type[1], by_type[0])
        prof = pooled(wd_grid == w, prior, 2 * k + 1)
        by_weekday[w] = np.where(np.isfinite(prof), prof, prior)
    return by_weekday


#: Times of day (of those a day type was seen at) that lend it its offset where it was not.
_CARRY_NEAREST = 12


def _carried(by_slot: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Each series' offsets (n_slots, n_series) at its NaN slots: the median offset of the
    :data:`_CARRY_NEAREST` finite slots whose all-days ``level`` is closest (NaN where a
    column has none).

    A six-day week's rest day, with the default week of history and the newest day held out,
    is seen only from the time of day the window starts. Where it was not, its offset from
    the all-days profile is that of the hours as busy as these: a rest day rests like any
    night at night and is quieter by day, and one whole-day offset guessed that a quiet
    night's requests would halve.
    """
    out = by_slot.copy()
    finite = np.isfinite(by_slot) & np.isfinite(level)
    for j in np.flatnonzero(np.any(finite, axis=0) & ~np.all(finite, axis=0)):
        ok = finite[:, j]
        gap = np.abs(level[~ok, j][:, None] - level[ok, j][None, :])
        n = min(_CARRY_NEAREST, int(ok.sum()))
        near = np.argpartition(gap, n - 1, axis=1)[:, :n]
        out[~ok, j] = np.median(by_slot[ok, j][near], axis=1)
    return out


def _fits_other(
    y: np.ndarray,
    own: np.ndarray,
    other: np.ndarray,
    scale: np.ndarray,
    rows: np.ndarray,
    step_seconds: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Which series' ``rows`` follow the ``other`` profile rather than their ``own``, and the
    median ``|z|`` against ``other``.

    Only rows where the two differ by more than :data:`_SWAP_DIFFER` noise scales vote, and
    two hours of them at least are needed; the other profile must fit (median ``|z|`` below
    :data:`_SWAP_FIT`) and the own one misfit (above :data:`_SWAP_MISFIT`).
    """
    with np.errstate(invalid="ignore"):
        votes = rows & (np.abs(own - other) > _SWAP_DIFFER * scale) & np.isfinite(y)
        z_own = np.where(votes, np.abs(y - own) / scale, np.nan)
        z_other = np.where(votes, np.abs(y - other) / scale, np.nan)
    enough = np.sum(votes, axis=0) * step_seconds >= 2 * 3600.0
    m_own, m_other = nanmedian0(z_own), nanmedian0(z_other)
    with np.errstate(invalid="ignore"):
        return enough & (m_other < _SWAP_FIT) & (m_own > _SWAP_MISFIT), m_other


def _seen(
    grid: np.ndarray, pgrid: np.ndarray, n_types: int, n_days: int, n_slots: int, k: int
) -> np.ndarray:
    """Whether each profile had a training value at each slot or its ``k`` neighbours on either
    side, shape (n_types, n_slots, n_series), from the grid and each cell's profile index."""
    n_s = grid.shape[1]
    finite = np.isfinite(grid)
    out = np.zeros((n_types, n_slots, n_s), dtype=bool)
    for g in range(n_types):
        count = np.sum((finite & (pgrid == g)).reshape(n_days, n_slots, n_s), axis=0)
        out[g] = np.nansum(sliding_stack(count.astype(np.float64), k), axis=0) > 0
    return out


#: A slot's typical jumps widen its scale where they exceed a Gaussian's largest deviation
#: by this factor (the point threshold's heavy-tail factor in :mod:`~anomaly.models.rules`).
_JUMP_HEAVY = 1.5


def _jump_scale(stack: np.ndarray) -> np.ndarray:
    """The scale that the typical day's largest deviation around each slot implies, divided
    by :data:`_JUMP_HEAVY`, shape (n_slots, n_series): the median over days of each day's
    largest ``|residual|`` within the slot's window (``stack``, (window, n_days, n_slots,
    n_series)) over a Gaussian's median largest of as many.

    A quantile read off histogram buckets sits at a bucket's bound when traffic is thin and
    jumps into the next bucket with a few slow requests, every night: its median deviation
    there is tiny, and those jumps, at 10-20 such scales, would otherwise set one heavy-tail
    threshold for the whole day (a p95 that doubled by day went unseen). A typical day's, so
    one incident in training does not widen it.
    """
    window = stack.shape[0]
    # |residuals| are >= 0: -1 marks a day with no value there.
    day_max = np.max(np.where(np.isfinite(stack), stack, -1.0), axis=0)
    day_max = np.where(day_max >= 0, day_max, np.nan)
    gaussian = NormalDist().inv_cdf((1.0 + 0.5 ** (1.0 / window)) / 2.0)
    out: np.ndarray = np.nan_to_num(nanmedian0(day_max) / (gaussian * _JUMP_HEAVY), nan=0.0)
    return out


def _rounding(
    grid: np.ndarray, c: np.ndarray, v: np.ndarray, sparse: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The gauges of whole numbers (a connection pool, a queue, replicas) among the series,
    and half the width, in model space, of the unit each of their cells was rounded to:
    ``(columns, half)``, ``half`` of shape (n_cells, n_columns); None where there are none.
    Other series, constant ones and sparse counts (whose tails their own model reads) are
    not rounded.

    The median absolute deviation of whole numbers collapses where more than half of them
    sit on the profile exactly: a pool of 9 +- 1 connections at night then got a third of
    its spread as its scale, and 7 read as 7 scales low.
    """
    seen = np.isfinite(v)
    with np.errstate(invalid="ignore"):
        whole = np.all(~seen | (v == np.round(v)), axis=0)
    varies = np.max(np.where(seen, v, -np.inf), axis=0) > np.min(np.where(seen, v, np.inf), axis=0)
    # A constant series has no noise to spread: it leaves its value or it does not.
    cols = np.flatnonzero(whole & ~sparse & varies)
    if cols.size == 0:
        return None
    x = from_model_space(grid[:, cols], c[cols])
    half = (to_model_space(x + 0.5, c[cols]) - to_model_space(x - 0.5, c[cols])) / 2.0
    return cols, np.where(np.isfinite(half), half, 0.0)


def _dither(n_rows: int, cols: np.ndarray) -> np.ndarray:
    """A fixed, evenly spread offset in [-0.5, 0.5) per cell of columns `cols`, shape
    (n_rows, n_cols) (a golden-ratio sequence down each column, started elsewhere in each):
    residuals of whole numbers spread across their rounding unit, so that their median
    absolute deviation is a continuous one's (jittering, as for quantiles of counts;
    deterministic, so a fit repeats)."""
    rows = np.arange(n_rows, dtype=np.float64)[:, None]
    start = cols.astype(np.float64)[None, :]
    out: np.ndarray = np.mod(rows * 0.6180339887498949 + start * 0.7548776662466927, 1.0) - 0.5
    return out


def _grid_expected(profile: np.ndarray, type_grid: np.ndarray, n_slots: int) -> np.ndarray:
    """Profile value of each grid cell, shape (n_days * n_slots, n_series)."""
    n_cells, n_s = type_grid.shape
    slot = np.arange(n_cells) % n_slots
    return profile[type_grid, slot[:, None], np.arange(n_s)[None, :]]


def _fit_scale(
    grid: np.ndarray,
    profile: np.ndarray,
    type_grid: np.ndarray,
    n_days: int,
    n_slots: int,
    ks: int,
    sparse: np.ndarray,
    jumps: bool = False,
    rounding: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Per-slot robust scale, shape (n_slots, n_series), floored at 0.3 x the global scale;
    with ``jumps``, at least the typical day's jumps there (:func:`_jump_scale`); with
    ``rounding`` (:func:`_rounding`), of the residuals dithered across each cell's rounding
    unit (:func:`_dither`)."""
    n_s = grid.shape[1]
    resid = grid - _grid_expected(profile, type_grid, n_slots)
    if rounding is not None:
        cols, half = rounding
        resid[:, cols] += 2.0 * half * _dither(resid.shape[0], cols)
    absres = np.abs(resid)
    stack = sliding_stack(absres, ks).reshape(2 * ks + 1, n_days, n_slots, n_s)
    pooled = stack.reshape((2 * ks + 1) * n_days, n_slots, n_s)
    ordered = sorted_last(pooled)  # one sort for the median and the 95th percentile
    local = _MAD_TO_SIGMA * median_sorted(ordered)
    # Sparse counts (many exact zeros): the median deviation collapses at quiet hours while
    # single events are routine there; the 95th percentile of |r| keeps that spread.
    local = np.where(sparse, np.maximum(local, quantile_sorted(ordered, 0.95) / 1.96), local)
    if jumps:
        local = np.maximum(local, _jump_scale(stack))
    glob = _MAD_TO_SIGMA * nanmedian0(absres)
    count = np.sum(np.isfinite(absres), axis=0)
    mean_abs = np.nansum(absres, axis=0) / np.maximum(count, 1) * 1.2533
    glob = np.where(np.isfinite(glob) & (glob > 0), glob, mean_abs)
    glob = np.where(np.isfinite(glob) & (glob > 0), glob, 1e-6)
    local = np.where(np.isfinite(local), local, glob)
    return np.maximum(np.maximum(local, 0.3 * glob), 1e-6)


#: A step below this fraction of the slot's typical step (median |first difference| in model
#: space) counts as no movement: a collapse of the point-to-point variation.
_STILL_FRACTION = 0.05


#: A run of missing rows weighs this many times a run of still rows of the same surprise:
#: two 5-minute rows missing at an hour that never missed in training (about 5 nats each)
#: reach the stuck threshold (25 nats).
_ABSENT_WEIGHT = 2.5


def _fit_absent(
    grid: np.ndarray,
    cell_time: np.ndarray,
    times: np.ndarray,
    n_days: int,
    n_slots: int,
    ks: int,
) -> np.ndarray:
    """Surprise (nats) of one more missing row per slot, shape (n_slots, n_series): from how
    often the slot and its neighbours (``ks`` on each side) had no value over the training
    rows after each series' first value (a series that started late is not missing before)."""
    n_s = grid.shape[1]
    finite = np.isfinite(grid)
    inside = (cell_time >= times[0]) & (cell_time <= times[-1])
    counted = inside[:, None] & (np.cumsum(finite, axis=0) > 0)
    miss = np.where(counted, (~finite).astype(np.float64), np.nan)
    stack = sliding_stack(miss, ks).reshape((2 * ks + 1) * n_days, n_slots, n_s)
    total = np.sum(np.isfinite(stack), axis=0)
    n_miss = np.nansum(stack, axis=0)
    p = np.clip((n_miss + 0.5) / (total + 1.0), 1e-6, 0.999)
    out: np.ndarray = -np.log(p)
    return out


def _fit_stuck(
    grid: np.ndarray, n_days: int, n_slots: int, ks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Surprise (nats) of one more still row per slot, at a nonzero value and at zero, and the
    step tolerance that makes a row still (see :func:`~anomaly.models.features.is_still`),
    each of shape (n_slots, n_series).

    The tolerance is :data:`_STILL_FRACTION` of the median step around the slot over all
    days (0 where most steps are exact repeats: then only repeats are still). The still rates
    are the medians over days of each day's rate around the slot, so one stuck period in
    training does not make stillness look normal, while a series that is routinely still at
    some hours learns it there. Runs of zeros (a sparse count at night) keep the cost of an
    exact repeat of any value; a row still at a nonzero value costs by the rate of those
    alone, so zeros repeating at some hour do not make a value held there look normal.
    """
    n_s = grid.shape[1]
    step = np.full(grid.shape, np.nan)
    step[1:] = np.abs(grid[1:] - grid[:-1])
    step_stack = sliding_stack(step, ks).reshape((2 * ks + 1) * n_days, n_slots, n_s)
    typical = nanmedian0(step_stack)
    tol = _STILL_FRACTION * np.where(np.isfinite(typical), typical, 0.0)
    pair = np.isfinite(step)
    still = is_still(grid, grid, np.tile(tol, (n_days, 1)))
    exact = is_still(grid, grid, np.zeros(grid.shape))
    costs = []
    for counted in (still & (grid != 0), exact):
        rep = np.where(pair, counted.astype(np.float64), np.nan)
        stack = sliding_stack(rep, ks).reshape(2 * ks + 1, n_days, n_slots, n_s)
        n_pairs = np.sum(np.isfinite(stack), axis=0)  # (n_days, n_slots, n_s)
        n_rep = np.nansum(stack, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(n_pairs > 0, n_rep / n_pairs, np.nan)
        typical_rate = nanmedian0(rate)
        total = np.sum(n_pairs, axis=0)
        typical_rate = np.where(np.isfinite(typical_rate), typical_rate, 0.0)
        p = np.clip((typical_rate * total + 0.5) / (total + 1.0), 1e-6, 0.999)
        costs.append(-np.log(p))
    return costs[0], costs[1], tol
