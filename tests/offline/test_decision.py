"""The alert decision: one alert per incident, a higher bar for young series and routine
surprises, and a band that widens with the bar."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.models.scoring import evidence_to_score
from anomaly.offline.decision import (
    AlertRule,
    alert_onsets,
    routine_evidence,
    run_starts,
    score_to_evidence,
    widen_band,
)


def test_alert_onsets_open_once_per_incident_and_reopen_after_the_refractory_period() -> None:
    times = np.arange(20, dtype=float) * 10.0
    above = np.zeros(20, dtype=bool)
    above[2:9] = True  # one incident: one alert
    above[10] = True  # flaps back within the refractory period (100 s): none
    above[13] = above[15] = True  # after a below row past the period: a new alert, then none
    opens = alert_onsets(times, above, refractory_seconds=100.0)
    assert list(np.flatnonzero(opens)) == [2, 13]
    assert list(np.flatnonzero(alert_onsets(times, above, 0.0))) == [2, 10, 13, 15]
    # Held above for longer than the period: still one alert until it drops below.
    assert list(np.flatnonzero(alert_onsets(times, np.ones(20, dtype=bool), 30.0))) == [0]


def test_run_starts_are_alert_onsets_without_a_refractory_period() -> None:
    flags = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1], dtype=bool)
    assert list(np.flatnonzero(run_starts(flags))) == [1, 4, 7]
    times = np.arange(flags.size, dtype=float)
    np.testing.assert_array_equal(run_starts(flags), alert_onsets(times, flags, 0.0))
    assert run_starts(np.zeros(0, dtype=bool)).shape == (0,)


def test_routine_evidence_is_the_median_of_past_days_at_the_same_time() -> None:
    t = np.arange(6 * 288, dtype=float) * 300.0
    ev = np.zeros(t.size)
    ev[288 + 100] = 4.0  # day 1, slot 100
    ev[2 * 288 + 102] = 2.0  # day 2, ten minutes later
    ev[3 * 288 + 150] = 9.0  # day 3, another time
    r = routine_evidence(t, ev)
    assert r[3 * 288 + 100] == 2.0  # median of 0 (day 0), 4 and 2 around slot 100
    assert r[4 * 288 + 100] == 1.0  # median of 0, 4, 2, 0
    assert r[4 * 288 + 150] == 0.0  # one surprising day of four: not routine
    assert (r[: 2 * 288] == 0).all()  # fewer than two past days
    # Causal: evidence of the last day changes nothing before it.
    later = ev.copy()
    later[5 * 288 :] = 7.0
    np.testing.assert_array_equal(routine_evidence(t, later)[: 5 * 288], r[: 5 * 288])


def test_score_to_evidence_inverts_evidence_to_score() -> None:
    e = np.array([0.0, 0.3, 1.0, 2.0, 7.5])
    np.testing.assert_allclose(score_to_evidence(evidence_to_score(e)), e, rtol=1e-12)
    assert score_to_evidence(np.array([1.0]))[0] == np.inf


def test_alert_rule_flags_onsets_and_keeps_other_scores_below_half_the_threshold() -> None:
    times = np.arange(4 * 288, dtype=float) * 300.0
    model_score = np.full(times.size, 0.1)
    model_score[600:700] = 0.95  # one incident on day 2
    rule = AlertRule(young_days=0.0, routine_factor=0.0)
    alerts = rule.decide(times, times / 86400.0, model_score)
    assert list(np.flatnonzero(alerts.is_anomaly)) == [600]
    np.testing.assert_array_equal(alerts.is_anomaly, alerts.score >= rule.threshold)
    assert alerts.score[600] == pytest.approx(0.95)
    assert (alerts.score[~alerts.is_anomaly] <= rule.threshold / 2).all()
    np.testing.assert_array_equal(alerts.gain, 1.0)
    young = AlertRule(routine_factor=0.0).decide(times, times / 86400.0, model_score)
    np.testing.assert_allclose(young.gain[1:], 1 + 1.5 / (times[1:] / 86400.0))


def test_widen_band_keeps_the_band_at_gain_one_and_widens_it_above() -> None:
    expected = np.array([10.0, 100.0, 0.5])
    upper = np.array([14.0, 150.0, 2.0])
    c = np.array([5.0, 50.0, 1.0])
    nonneg = np.array([True, False, True])
    lower, same_upper = widen_band(expected, upper, c, nonneg, np.ones(3))
    np.testing.assert_allclose(same_upper, upper, rtol=1e-12)
    assert (lower < expected).all() and lower[0] >= 0 and lower[2] == 0
    wide_lower, wide_upper = widen_band(expected, upper, c, nonneg, np.full(3, 2.0))
    assert (wide_upper > upper).all() and (wide_lower <= lower).all()


@pytest.mark.parametrize(
    ("field", "value"),
    [("refractory_seconds", -1.0), ("young_days", float("nan")), ("routine_factor", -0.5)],
)
def test_bad_alert_rule_names_the_parameter(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"`{field}`"):
        AlertRule(**{field: value})  # type: ignore[arg-type]
