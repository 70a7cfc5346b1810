"""The seasonal baseline: robust profiles, level-dependent bands, day types."""

from __future__ import annotations

from typing import Any

import numpy as np
from _synthetic import make_panel
from hypothesis import given
from hypothesis import strategies as st

from anomaly.models.features import (
    asinh_scale,
    from_model_space,
    median_sorted,
    nanmedian0,
    nanquantile0,
    quantile_sorted,
    sorted_last,
)
from anomaly.models.rules import RuleDetector
from anomaly.models.scoring import AnomalyModel
from anomaly.models.seasonal import SeasonalBaseline

_MONDAY = 1767571200.0
#: Half-width of the point band in noise scales (the rules' default point threshold).
_SIGMAS = 5.0


def _weekly_rate(n_days: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    times = _MONDAY + 300.0 * np.arange(n_days * 288)
    hours = np.mod(times / 3600.0, 24.0)
    weekday = (np.floor(times / 86400).astype(np.int64) + 3) % 7
    level = 100.0 * (0.2 + np.exp(-0.5 * ((hours - 13.0) / 3.0) ** 2))
    level = np.where(weekday >= 5, 0.4 * level, level)
    values = level * np.exp(0.07 * rng.standard_normal(times.size))
    return times, values[:, None]


def test_past_outage_neither_becomes_normal_nor_inflates_the_scale() -> None:
    times, clean = _weekly_rate()
    broken = clean.copy()
    tuesday_noon = np.flatnonzero(times >= _MONDAY + 86400 + 11 * 3600)[:24]
    broken[tuesday_noon] = 0.0
    a = SeasonalBaseline(holdout_seconds=0).fit(times, clean)
    b = SeasonalBaseline(holdout_seconds=0).fit(times, broken)
    probe = times[tuesday_noon] + 7 * 86400
    # The model's point band: as wide as the threshold rules fitted on the same rows make it.
    sigmas_a = RuleDetector().fit(a.features(times, clean), a.valid_).band_sigmas()
    sigmas_b = RuleDetector().fit(b.features(times, broken), b.valid_).band_sigmas()
    exp_a, low_a, up_a = a.bands(probe, sigmas_a)
    exp_b, low_b, up_b = b.bands(probe, sigmas_b)
    np.testing.assert_allclose(exp_b, exp_a, rtol=0.05)
    assert np.all((up_b - low_b) <= 1.3 * (up_a - low_a))


Bands = tuple[np.ndarray, np.ndarray, np.ndarray]


def _peak_and_night(det: SeasonalBaseline, day: int, sigmas: Any) -> tuple[Bands, Bands]:
    """The bands (expected, lower, upper) at 13:00 and 03:00 of day ``day`` of the week."""
    start = _MONDAY + day * 86400
    return det.bands(np.array([start + 13 * 3600]), sigmas), det.bands(
        np.array([start + 3 * 3600]), sigmas
    )


def test_bands_follow_the_level_for_multiplicative_noise() -> None:
    times, values = _weekly_rate()
    det = SeasonalBaseline().fit(times, values)
    (e_peak, lo_peak, up_peak), (e_night, lo_night, up_night) = _peak_and_night(det, 2, _SIGMAS)
    assert e_peak[0, 0] > 3 * e_night[0, 0]
    width_peak, width_night = up_peak - lo_peak, up_night - lo_night
    ratio = (width_peak / e_peak)[0, 0] / (width_night / e_night)[0, 0]
    assert 0.5 < ratio < 2.0  # relative width about constant: the band scales with the level
    assert lo_peak[0, 0] < e_peak[0, 0] < up_peak[0, 0]


def test_saturday_has_its_own_profile() -> None:
    times, values = _weekly_rate(n_days=8)
    det = SeasonalBaseline().fit(times, values)
    saturday_noon = np.array([_MONDAY + 5 * 86400 + 13 * 3600])
    tuesday_noon = np.array([_MONDAY + 1 * 86400 + 13 * 3600])
    assert (
        det.bands(saturday_noon, _SIGMAS)[0][0, 0] < 0.6 * det.bands(tuesday_noon, _SIGMAS)[0][0, 0]
    )


def test_value_outside_the_band_is_an_anomaly() -> None:
    times, values, _ = make_panel(2, 6, None)
    model = AnomalyModel(use_iforest=False).fit(times, values)
    res = model.score(times, values)
    pushed = values.copy()
    pushed[-1] = res.upper[-1] * 1.05 + 1e-9
    assert model.score(times, pushed).is_anomaly[-1].all()


def test_score_history_is_causal() -> None:
    times, values, _ = make_panel(6, 4, "level_shift")
    model = AnomalyModel(n_estimators=10).fit(times, values)
    full = model.score_history(times, values).score
    cut = 1500
    part = model.score_history(times[:cut], values[:cut]).score
    np.testing.assert_allclose(full[:cut], part, rtol=1e-9, atol=1e-12)


@given(
    st.integers(1, 9),
    st.integers(1, 4),
    st.floats(0, 1),
    st.integers(0, 2**32 - 1),
)
def test_sorted_median_and_quantile_equal_the_unsorted_ones(
    n: int, cols: int, q: float, seed: int
) -> None:
    """One sort serves median and quantile (the noise scale's fit) with the same results."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 3, cols))
    a[rng.random(a.shape) < 0.3] = np.nan
    s = sorted_last(a)
    np.testing.assert_array_equal(median_sorted(s), nanmedian0(a))
    np.testing.assert_array_equal(quantile_sorted(s, q), nanquantile0(a, q))


def _additive_gauge(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A queue depth: a daily swing from 3 to 40 with integer noise of 2 at every level."""
    rng = np.random.default_rng(seed)
    times = _MONDAY + 300.0 * np.arange(8 * 288)
    hours = np.mod(times / 3600.0, 24.0)
    level = 3.0 + 37.0 * np.exp(-0.5 * ((hours - 13.0) / 3.0) ** 2)
    return times, np.round(level + 2.0 * rng.standard_normal(times.size))[:, None]


def test_bands_keep_their_width_for_additive_noise() -> None:
    """Noise that does not grow with the level gets a transform close to linear: the band is
    about as wide at the peak as at night, so a spike of 14 at the peak (7 noise widths) is out
    of it, where a band scaled by the level would hold it."""
    times, values = _additive_gauge()
    det = SeasonalBaseline().fit(times, values)
    sigmas = RuleDetector().fit(det.features(times, values), det.valid_).band_sigmas()
    (e_peak, lo_peak, up_peak), (e_night, lo_night, up_night) = _peak_and_night(det, 7, sigmas)
    assert e_peak[0, 0] > 8 * e_night[0, 0]
    assert (up_peak - lo_peak)[0, 0] < 2.0 * (up_night - lo_night)[0, 0]
    assert up_peak[0, 0] < e_peak[0, 0] + 14.0


def test_noise_law_scale_follows_how_noise_grows_with_the_level() -> None:
    times, additive = _additive_gauge()
    _, multiplicative = _weekly_rate()
    for values, widened in ((additive, True), (multiplicative, False)):
        plain, fitted = asinh_scale(values), asinh_scale(values, times)
        assert bool(fitted[0] > 2 * plain[0]) is widened
        assert fitted[0] >= plain[0]


def test_a_clock_moved_in_the_newest_day_moves_its_profile() -> None:
    """Daylight-saving time began a day ago, after the model was fitted: the newest day, its
    night batch (five times the level at 02:00-03:00 local) included, comes an hour early in
    UTC. Its rows are judged against the profile an hour on, the batch against the batch; a
    series on the old clock is left alone."""
    rng = np.random.default_rng(3)
    times = _MONDAY + 300.0 * np.arange(9 * 288)
    utc = np.mod(times / 3600.0, 24.0)
    newest = times > times[-1] - 86400

    def series(hours: np.ndarray) -> np.ndarray:
        level = 100.0 * (0.2 + np.exp(-0.5 * ((hours - 13.0) / 3.0) ** 2))
        level = np.where((hours >= 2.0) & (hours < 3.0), 5.0 * level, level)
        return level * np.exp(0.05 * rng.standard_normal(times.size))

    both = np.column_stack([series(np.where(newest, np.mod(utc + 1.0, 24.0), utc)), series(utc)])
    det = SeasonalBaseline().fit(times[~newest], both[~newest])
    expected = from_model_space(det.expected_model(times, both), det.c_)
    early = newest & (utc >= 1.0) & (utc < 2.0)
    np.testing.assert_allclose(expected[early, 0], both[early, 0], rtol=0.2)  # the batch
    assert np.all(expected[early, 1] < 0.5 * expected[early, 0])  # the quiet hour, as before
    np.testing.assert_allclose(expected[~newest, 0], expected[~newest, 1], rtol=0.2)


def test_a_gauge_of_whole_numbers_gets_its_spread_as_its_scale() -> None:
    """A connection pool of 9 +- 1: more than half of its values sit on the profile exactly,
    where the median absolute deviation of whole numbers collapses. Its scale is that of the
    numbers' spread (they are dithered across their unit), not a third of it, so a 7 is
    about two noise widths low, not seven."""
    rng = np.random.default_rng(5)
    times = _MONDAY + 300.0 * np.arange(8 * 288)
    values = np.round(9.0 + 0.8 * rng.standard_normal(times.size))[:, None]
    assert np.mean(values == 9.0) > 0.45
    det = SeasonalBaseline().fit(times, values)
    newest = times[-288:]
    expected, lower, upper = det.bands(newest, 1.0)
    width = (upper - lower)[:, 0] / 2.0
    spread = float(np.std(values[:, 0]))
    assert 0.8 * spread < np.median(width) < 1.2 * spread
    assert np.all(width > 0.6 * spread)
