"""Calendars learned per series: local day starts, rest days on any weekday, holidays left
out, clocks that move, and today read as the day it turns out to be."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from anomaly.models.calendar import local_weekday
from anomaly.models.scoring import AnomalyModel
from anomaly.models.seasonal import estimate_calendars

STEP = 300.0
#: 2026-11-02 00:00 UTC, a Monday.
_MONDAY = 1793577600.0
#: Noise of the generated rates (multiplicative, log scale).
NOISE = 0.05


@dataclass(frozen=True)
class Tenant:
    """One tenant's clock: UTC offset (hours), rest weekdays (Monday = 0), how much lower a
    rest day is, public holidays (local day numbers), and a clock switch."""

    offset_hours: float = 0.0
    rest: tuple[int, ...] = (5, 6)
    rest_factor: float = 0.4
    holidays: tuple[int, ...] = ()
    switch_at: float | None = None
    switch_hours: float = 0.0


def local_seconds(t: np.ndarray, tenant: Tenant) -> np.ndarray:
    shift = tenant.offset_hours * 3600.0
    if tenant.switch_at is not None:
        shift = shift + np.where(t >= tenant.switch_at, tenant.switch_hours * 3600.0, 0.0)
    return t + shift


def rate(t: np.ndarray, tenant: Tenant, seed: int) -> np.ndarray:
    """A business-hours rate on the tenant's clock with multiplicative noise."""
    rng = np.random.default_rng(seed)
    local = local_seconds(t, tenant)
    hours = np.mod(local / 3600.0, 24.0)
    day = np.floor(local / 86400.0).astype(np.int64)
    weekday = (day + 3) % 7
    level = 100.0 * (0.15 + np.exp(-0.5 * ((hours - 13.0) / 2.5) ** 2))
    resting = np.isin(weekday, tenant.rest) | np.isin(day, tenant.holidays)
    level = np.where(resting, tenant.rest_factor * level, level)
    return level * np.exp(NOISE * rng.standard_normal(t.size))


def week(end: float, days: float = 7.0) -> np.ndarray:
    return np.arange(end - days * 86400.0, end + 1.0, STEP)


def fit(times: np.ndarray, values: np.ndarray) -> AnomalyModel:
    return AnomalyModel(step_seconds=STEP, use_iforest=False).fit(times, values)


def local_day_of(t: float, tenant: Tenant) -> int:
    return int(np.floor(local_seconds(np.array([t]), tenant)[0] / 86400.0))


@pytest.mark.parametrize(
    ("tenant", "rest_names"),
    [
        (Tenant(offset_hours=5.75, rest=(4, 5)), "Fri-Sat"),
        (Tenant(offset_hours=-3.5, rest=(6,)), "Sun"),
        (Tenant(offset_hours=12.0, rest=(3, 4)), "Thu-Fri"),
        (Tenant(offset_hours=-10.0, rest=(5, 6)), "Sat-Sun"),
    ],
)
def test_rest_days_and_day_start_are_the_tenant_s_own(tenant: Tenant, rest_names: str) -> None:
    times = week(_MONDAY + 9 * 86400 + 10 * 3600)
    model = fit(times, rate(times, tenant, seed=1)[:, None])
    start = (-tenant.offset_hours) % 24.0
    assert f"rest {rest_names}" in model.seasonal_.calendar_[0]
    day_start = model.seasonal_.calendar_[0].split("day starts ")[1][:5]
    got = int(day_start[:2]) + int(day_start[3:]) / 60.0
    # A boundary in the quiet night is anywhere in it; it must fall there.
    assert abs((got - start + 12.0) % 24.0 - 12.0) <= 5.0
    # The tenant's rest weekdays, on its local days.
    probe = _MONDAY + 9 * 86400 + np.arange(0, 7 * 86400, 3600.0)
    weekday = local_weekday(probe, model.seasonal_.day_offset_)[:, 0]
    truth = (np.floor(local_seconds(probe, tenant) / 86400).astype(np.int64) + 3) % 7
    day_hours = np.abs(np.mod(local_seconds(probe, tenant) / 3600.0, 24.0) - 13.0) < 5.0
    assert np.array_equal(weekday[day_hours], truth[day_hours])


def test_a_six_day_week_split_across_the_window_s_ends_still_has_its_rest_day() -> None:
    # A week's window that ends on a Sunday afternoon holds that Sunday's first hours and the
    # previous Sunday's last ones, no whole rest day: the partial days still show it.
    end = _MONDAY + 13 * 86400 + 16 * 3600  # Sunday 16:00 UTC
    times = week(end)
    tenant = Tenant(rest=(6,), rest_factor=0.6)
    model = fit(times, rate(times, tenant, seed=3)[:, None])
    assert "rest Sun" in model.seasonal_.calendar_[0]
    # Today's hours were never seen on a rest day in training (the older Sunday holds only
    # its evening): today's own level up to an hour ago carries the profile there, so the
    # rest day is not flagged, and a drop that starts now still is.
    values = rate(times, tenant, seed=3)[:, None]
    result = model.score_history(times, values)
    assert not result.is_anomaly[times >= end - 6 * 3600, 0].any()
    values[-6:] *= 0.4
    assert model.score(times, values).is_anomaly[-1, 0]


def test_a_work_day_a_little_below_the_others_does_not_join_the_rest_day() -> None:
    # A six-day week whose Mondays run 10 % below the other work days: as a two-day block with
    # Sunday, Monday explains a little more day-to-day variation than Sunday alone, but told
    # from Sunday's own days it is a work day.
    tenant = Tenant(offset_hours=-3.5, rest=(6,), rest_factor=0.7)
    times = week(_MONDAY + 12 * 86400 + 17 * 3600)  # Saturday 17:00 UTC
    weekday = (np.floor(local_seconds(times, tenant) / 86400).astype(np.int64) + 3) % 7
    values = np.where(weekday == 0, 0.9, 1.0) * rate(times, tenant, seed=1)
    assert fit(times, values[:, None]).seasonal_.calendar_[0].startswith("rest Sun;")


def test_an_uneven_weekend_keeps_both_its_days() -> None:
    # Saturdays half as quiet as Sundays: each is told better by the other than by the week.
    tenant = Tenant(offset_hours=2.0, rest=(5, 6), rest_factor=0.4)
    times = week(_MONDAY + 11 * 86400 + 15 * 3600)  # Friday 15:00 UTC
    weekday = (np.floor(local_seconds(times, tenant) / 86400).astype(np.int64) + 3) % 7
    values = np.where(weekday == 5, 1.8, 1.0) * rate(times, tenant, seed=2)
    assert fit(times, values[:, None]).seasonal_.calendar_[0].startswith("rest Sat-Sun;")


def test_a_spike_just_after_a_weekend_begins_is_judged_against_the_weekend() -> None:
    # Near a change of day type a row may belong to either side (a trailing rate window
    # still reads the old day for a while), but only the run of rows next to the change that
    # fit the other side: here the weekend's first rows read as a weekend, so a jump 15
    # minutes in to 2.5 times the weekend's level (the weekday's, at midnight) is a spike.
    tenant = Tenant()
    end = _MONDAY + 12 * 86400 + 15 * 60  # Saturday 00:15 UTC, the weekend 15 minutes old
    times = week(end)
    values = rate(times, tenant, seed=4)[:, None]
    model = fit(times, values)
    assert model.seasonal_.calendar_[0].startswith("rest Sat-Sun;")
    assert not model.score(times, values).is_anomaly[-1, 0]
    spiked = values.copy()
    spiked[-1] *= 2.5
    assert model.score(times, spiked).is_anomaly[-1, 0]
    # A lagging read (the weekend's first rows still at the weekday's level) stays excused.
    lagged = values.copy()
    weekday_level = rate(times - 7 * 86400, Tenant(rest=()), seed=4)[:, None]
    lagged[-4:-1] = weekday_level[-4:-1]
    assert not model.score_history(times, lagged).is_anomaly[-4:-1, 0].any()


def test_noise_alone_makes_no_weekend() -> None:
    rng = np.random.default_rng(3)
    for end_days in (4.5, 5.5, 7.0):
        times = week(_MONDAY + 8 * 86400, days=end_days)
        hours = np.mod(times / 3600.0, 24.0)
        values = 50 + 20 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 1.5, times.size)
        model = fit(times, values[:, None])
        assert model.seasonal_.calendar_[0] == "daily"


def _band_widths(model: AnomalyModel, times: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Half-widths of the 0.5-score band at working-day noon, in log-noise widths."""
    result = model.score_history(times, values)
    noon = np.abs(np.mod(times / 3600.0, 24.0) - 13.0) < 1.0
    weekday = (np.floor(times / 86400).astype(np.int64) + 3) % 7
    rows = noon & (weekday < 5) & (times >= times[-1] - 3 * 86400)
    return np.log(result.upper[rows, 0] / result.expected[rows, 0]) / NOISE


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_holiday_in_training_does_not_widen_the_band(seed: int) -> None:
    end = _MONDAY + 9 * 86400 + 15 * 3600  # a Wednesday afternoon
    times = week(end)
    plain = Tenant()
    holiday = Tenant(holidays=(local_day_of(end - 5 * 86400, plain),))  # last Friday
    widths = {}
    for name, tenant in (("plain", plain), ("holiday", holiday)):
        values = rate(times, tenant, seed)[:, None]
        widths[name] = np.median(_band_widths(fit(times, values), times, values))
    # Five noise widths at the default threshold, within a small margin; the holiday
    # changes it by less than a tenth.
    assert 4.0 <= widths["plain"] <= 7.0
    assert abs(widths["holiday"] - widths["plain"]) <= 0.1 * widths["plain"]


def test_a_holiday_in_training_keeps_a_level_shift_visible() -> None:
    end = _MONDAY + 9 * 86400 + 14 * 3600
    times = week(end)
    tenant = Tenant(holidays=(local_day_of(end - 2 * 86400, Tenant()),))  # Monday
    values = rate(times, tenant, seed=4)
    values[-6:] *= np.exp(7 * NOISE)  # a 7-noise-width shift for the newest 30 minutes
    result = fit(times, values[:, None]).score(times, values[:, None], n_eval=6)
    assert result.is_anomaly[-1, 0]


def test_a_clock_that_moved_is_followed_not_flagged() -> None:
    end = _MONDAY + 9 * 86400 + 10 * 3600  # Wednesday morning: the daily ramp is on
    times = week(end)
    tenant = Tenant(offset_hours=1.0, switch_at=end - 3.6 * 86400, switch_hours=-1.0)
    values = rate(times, tenant, seed=5)[:, None]
    model = fit(times, values)
    assert "clock moved 1 h" in model.seasonal_.calendar_[0]
    result = model.score_history(times, values)
    today = times >= end - 12 * 3600
    assert not result.is_anomaly[today, 0].any()
    # Without the move, the model expects the ramp an hour off.
    rows = today & (np.abs(np.mod(local_seconds(times, tenant) / 3600, 24) - 10.5) < 1.5)
    error = np.abs(np.log(result.expected[rows, 0] / values[rows, 0]))
    assert np.median(error) < 2 * NOISE


def test_a_holiday_today_is_read_as_a_rest_day() -> None:
    end = _MONDAY + 9 * 86400 + 16 * 3600  # Wednesday 16:00
    times = week(end)
    tenant = Tenant(holidays=(local_day_of(end, Tenant()),))
    values = rate(times, tenant, seed=6)[:, None]
    result = fit(times, values).score(times, values, n_eval=12)
    assert not result.is_anomaly[:, 0].any()
    # ... while the same drop in the newest hour alone is an incident.
    drop = rate(times, Tenant(), seed=6)
    drop[-12:] *= Tenant().rest_factor
    result = fit(times, drop[:, None]).score(times, drop[:, None], n_eval=12)
    assert result.is_anomaly[-1, 0]


def batch_pool(t: np.ndarray, tenant: Tenant, seed: int) -> np.ndarray:
    """A connection pool: flat integers all day, 30 busier during a local night-batch hour
    (03:00-04:00), with additive noise: its only daily feature is that hour."""
    rng = np.random.default_rng(seed)
    hours = np.mod(local_seconds(t, tenant) / 3600.0, 24.0)
    level = 10.0 + 30.0 * ((hours >= 3.0) & (hours < 4.0))
    return np.round(level + 1.5 * rng.standard_normal(t.size))


def test_a_tenant_s_clock_and_weekend_are_read_off_all_its_metrics() -> None:
    # The request rate shows the clock switch and the weekend; the connection pool alone
    # shows neither clearly. Read together (grouped by tenant), the pool's batch hour is
    # realigned with the clocks, so the newest batch hour is expected where it now falls;
    # a second tenant without a switch is read apart and keeps its own clock.
    end = _MONDAY + 9 * 86400 + 4.5 * 3600  # Wednesday 04:30 UTC, after the batch hour
    times = week(end)
    moved = Tenant(offset_hours=1.0, switch_at=end - 2.6 * 86400, switch_hours=-1.0)
    still = Tenant(offset_hours=1.0)
    values = np.column_stack(
        [
            rate(times, moved, seed=1),
            batch_pool(times, moved, seed=2),
            rate(times, still, seed=3),
            batch_pool(times, still, seed=4),
        ]
    )
    groups = np.array([0, 0, 1, 1])
    calendar = estimate_calendars(times, values, STEP, groups=groups)
    assert calendar.switch.shift_seconds.tolist() == [-3600.0, -3600.0, 0.0, 0.0]
    assert abs(calendar.switch.at[1] - moved.switch_at) <= 86400
    assert calendar.rest[:, 0].tolist() == calendar.rest[:, 2].tolist()
    assert calendar.rest[5:, 0].all() and not calendar.rest[:5, 0].any()
    # The flat pool shows no weekend of its own: it keeps one daily profile.
    assert not calendar.rest[:, [1, 3]].any()
    # Apart, the pool misses the move.
    own = estimate_calendars(times, values[:, 1:2], STEP)
    assert own.switch.shift_seconds[0] == 0.0
    # Fitted by the tenant's calendar, the pool's batch hour today is where it now falls.
    pooled = AnomalyModel(step_seconds=STEP, use_iforest=False).fit(
        times, values[:, [1]], calendar.select([1])
    )
    alone = AnomalyModel(step_seconds=STEP, use_iforest=False).fit(times, values[:, [1]])
    hours = np.mod(local_seconds(times, moved) / 3600.0, 24.0)
    batch_today = (times >= end - 6 * 3600) & (hours >= 3.0) & (hours < 4.0)
    assert batch_today.sum() >= 6
    for model, wrong in ((pooled, False), (alone, True)):
        res = model.score_history(times, values[:, [1]])
        assert res.is_anomaly[batch_today, 0].any() == wrong


def test_calendars_of_one_series_each_are_the_series_own() -> None:
    end = _MONDAY + 9 * 86400 + 10 * 3600
    times = week(end)
    values = np.column_stack(
        [rate(times, Tenant(offset_hours=h, rest=(4, 5)), seed=7) for h in (-5.0, 3.0)]
    )
    grouped = estimate_calendars(times, values, STEP, groups=np.array([0, 1]))
    alone = [estimate_calendars(times, values[:, [j]], STEP) for j in range(2)]
    for j in range(2):
        assert grouped.offset[j] == alone[j].offset[0]
        assert grouped.rest[:, j].tolist() == alone[j].rest[:, 0].tolist()
    with pytest.raises(ValueError, match="groups"):
        estimate_calendars(times, values, STEP, groups=np.array([0]))
    with pytest.raises(ValueError, match="calendar"):
        AnomalyModel(step_seconds=STEP).fit(times, values, grouped.select([0]))


def test_a_rest_day_seen_only_today_is_the_tenant_s_when_its_series_agree() -> None:
    # A six-day week's window that ends on Sunday evening: the older Sunday shows only its
    # last four night hours, so the rest day is seen on the newest day alone. One series
    # never reads its newest day as a rest day (that is as often an incident of hours); a
    # tenant whose series all show it does.
    end = _MONDAY + 13 * 86400 + 20 * 3600  # Sunday 20:00 UTC
    times = week(end)
    tenant = Tenant(rest=(6,), rest_factor=0.6)
    values = np.column_stack([rate(times, tenant, seed=s) * (1 + s) for s in range(4)])
    alone = estimate_calendars(times, values[:, [0]], STEP)
    assert not alone.rest.any()
    together = estimate_calendars(times, values, STEP, groups=np.zeros(4, dtype=np.int64))
    assert together.rest[6].all() and not together.rest[:6].any()
    model = AnomalyModel(step_seconds=STEP, use_iforest=False).fit(times, values, together)
    assert not model.score(times, values).is_anomaly[-1].any()
    # One series low since this morning on a working Friday is an incident, not a rest day.
    friday = end - 2 * 86400
    times = week(friday)
    values = np.column_stack([rate(times, tenant, seed=s) * (1 + s) for s in range(4)])
    values[times >= friday - 14 * 3600, 0] *= 0.6
    calendar = estimate_calendars(times, values, STEP, groups=np.zeros(4, dtype=np.int64))
    assert not calendar.rest[4].any()


def test_a_rest_day_never_seen_at_night_is_expected_to_rest_like_other_nights() -> None:
    # A six-day week whose rest day lowers only the business hours, in a week of history
    # that ends on Sunday afternoon: the newest day is held out of training and the older
    # Sunday is seen only from 14:00 on, so at 03:00 the rest day's profile was never seen.
    # Its guess takes the offset of the hours as quiet (the evening's: none), not the whole
    # day's, which would have the night's requests a quarter lower.
    end = _MONDAY + 13 * 86400 + 14 * 3600  # Sunday 14:00 UTC
    times = week(end)
    rng = np.random.default_rng(3)
    hours = np.mod(times / 3600.0, 24.0)
    bump = np.exp(-0.5 * ((hours - 13.0) / 2.5) ** 2)
    sunday = (np.floor(times / 86400.0).astype(np.int64) + 3) % 7 == 6
    truth = 100.0 * (0.15 + np.where(sunday, 0.4, 1.0) * bump)
    values = (truth * np.exp(NOISE * rng.standard_normal(times.size)))[:, None]
    model = fit(times, values)
    assert "rest Sun" in model.seasonal_.calendar_[0]
    night = sunday & (hours >= 2) & (hours < 5) & (times > end - 86400)
    expected, _, _ = model.seasonal_.bands(times[night], 1.0)
    assert np.all(np.abs(np.log(expected[:, 0] / truth[night])) < 2 * NOISE)
