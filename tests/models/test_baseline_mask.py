"""Which cells the baseline learns from: the newest day is held out per series, by values."""

from __future__ import annotations

import numpy as np

from anomaly.models.seasonal import SeasonalBaseline, baseline_mask

_DAY = 86400.0
_SIGMAS = 5.0


def test_a_series_with_one_day_of_values_in_a_week_keeps_that_day() -> None:
    times = 1767571200.0 + 300.0 * np.arange(7 * 288)
    values = np.full((times.size, 2), np.nan)
    rng = np.random.default_rng(0)
    values[:, 0] = 10 + rng.standard_normal(times.size)  # a full week
    values[-288:, 1] = 10 + rng.standard_normal(288)  # started a day ago
    mask = baseline_mask(times, values, _DAY, 300.0)
    newest = times > times[-1] - _DAY
    assert not mask[newest, 0].any() and mask[~newest, 0].all()
    assert mask[:, 1].all()
    det = SeasonalBaseline().fit(times, values)
    assert det.valid_.all()
    expected, _, _ = det.bands(times[-1:] + 300.0, _SIGMAS)
    np.testing.assert_allclose(expected[0], 10.0, rtol=0.1)


def test_no_holdout_without_three_older_days_of_values() -> None:
    times = 300.0 * np.arange(4 * 288)
    values = np.ones((times.size, 1))
    values[: 2 * 288] = np.nan  # two days with values, one of them the newest
    assert baseline_mask(times, values, _DAY, 300.0).all()
    assert baseline_mask(times, np.ones((times.size, 1)), 0.0, 300.0).all()
