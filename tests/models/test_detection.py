"""Behaviour on synthetic metrics: quiet on clean series, catches each anomaly kind at the newest point."""

from __future__ import annotations

import numpy as np
import pytest
from _synthetic import METRICS, make_panel

from anomaly.models.rules import RULE_NAMES
from anomaly.models.scoring import AnomalyModel, evidence_to_score

#: Metrics where each kind is physically visible (a dip or outage of a sparse count is not).
CONTINUOUS = ("request_rate", "latency", "completion", "ai_cost")
APPLICABLE = {
    "spike": METRICS,
    "dip": CONTINUOUS,
    "level_shift": CONTINUOUS,
    "outage": CONTINUOUS,
    "variance": CONTINUOUS,
    "flatline": METRICS,
    "drift": CONTINUOUS,
}
#: Minimum detection rate at the newest point, per kind, over the applicable metrics.
MIN_RATE = {
    "spike": 0.9,
    "dip": 0.95,
    "level_shift": 0.95,
    "outage": 0.99,
    "variance": 0.85,
    "flatline": 0.9,
    "drift": 0.95,
}


def _flags(seed: int, anomaly: str | None, metrics: tuple[str, ...], n: int = 48) -> np.ndarray:
    times, values, _ = make_panel(seed, n, anomaly, metrics=metrics)
    model = AnomalyModel(use_iforest=False).fit(times, values)
    return model.score(times, values).is_anomaly[-1]


def test_false_positive_rate_on_clean_series_is_below_one_percent() -> None:
    flags = np.concatenate([_flags(seed, None, METRICS, n=60) for seed in range(8)])
    assert flags.size == 480
    assert flags.mean() < 0.01


@pytest.mark.parametrize("anomaly", sorted(APPLICABLE))
def test_injected_anomaly_is_flagged_at_newest_point(anomaly: str) -> None:
    flags = np.concatenate([_flags(seed, anomaly, APPLICABLE[anomaly]) for seed in range(3)])
    assert flags.mean() >= MIN_RATE[anomaly], f"{anomaly}: {flags.mean():.2%} detected"


def test_past_incident_is_not_flagged_now() -> None:
    times, values, series = make_panel(11, 60, None, past_incident_share=1.0)
    result = AnomalyModel(use_iforest=False).fit(times, values).score(times, values)
    assert result.is_anomaly[-1].mean() < 0.02


def test_model_fitted_on_history_flags_new_anomaly() -> None:
    times, values, series = make_panel(5, 24, "level_shift", metrics=CONTINUOUS)
    rows = max(s.anomaly_rows for s in series)
    model = AnomalyModel(use_iforest=False).fit(times[:-rows], values[:-rows])
    assert model.score(times, values).is_anomaly[-1].mean() >= 0.95


def test_weekend_is_not_anomalous_for_being_a_weekend() -> None:
    rng_seeds = range(4)
    flags = []
    for seed in rng_seeds:
        times, values, _ = make_panel(seed, 30, None, metrics=("request_rate",))
        weekday = (np.floor(times / 86400).astype(np.int64) + 3) % 7
        model = AnomalyModel(use_iforest=False).fit(times, values)
        hist = model.score_history(times, values)
        flags.append(hist.is_anomaly[-288:][weekday[-288:] >= 5].ravel())
    allflags = np.concatenate(flags)
    assert allflags.size >= 4 * 2 * 72  # every seed's last day holds weekend points
    assert allflags.mean() < 0.01


def test_with_isolation_forest_clean_stays_quiet_and_outage_is_caught() -> None:
    times, values, _ = make_panel(3, 24, None)
    clean = AnomalyModel(n_estimators=20).fit(times, values).score(times, values)
    assert clean.is_anomaly[-1].mean() <= 1 / 24
    times, values, _ = make_panel(3, 8, "outage", metrics=CONTINUOUS)
    hit = AnomalyModel(n_estimators=20).fit(times, values).score(times, values)
    assert hit.is_anomaly[-1].all()


def test_two_weeks_of_history_use_weekday_profiles_and_stay_quiet() -> None:
    times, values, _ = make_panel(13, 36, None, n_days=15.0, past_incident_share=0.5)
    model = AnomalyModel(use_iforest=False).fit(times, values)
    assert model.seasonal_.profile_.shape[0] == 7
    assert model.score(times, values).is_anomaly[-1].mean() <= 1 / 36
    times, values, _ = make_panel(13, 24, "outage", n_days=15.0, metrics=CONTINUOUS)
    result = AnomalyModel(use_iforest=False).fit(times, values).score(times, values)
    assert result.is_anomaly[-1].all()


def test_error_ratio_incident_is_flagged() -> None:
    times, values, _ = make_panel(17, 30, None, metrics=("error_ratio",))
    values = values.copy()
    values[-1] = np.random.default_rng(17).uniform(0.1, 0.3, size=30)
    result = AnomalyModel().fit(times, values).score(times, values)
    assert result.is_anomaly[-1].mean() >= 0.95


def test_tenant_local_weekends_are_found_and_not_flagged() -> None:
    # Tenants far from UTC: their weekend starts hours before or after UTC midnight. The
    # newest point sits right after a UTC weekend boundary, where a UTC-only model errs.
    from anomaly_lab import synth

    friday_late = 1767571200.0 + 4 * 86400 + 23.5 * 3600
    monday_early = 1767571200.0 + 7 * 86400 + 0.5 * 3600
    flags = []
    for seed, end in ((0, friday_late), (1, monday_early), (2, friday_late)):
        data = synth.generate(30, days=8.0, seed=seed, end=end)
        values = data.matrix("request_rate")
        model = AnomalyModel(use_iforest=False).fit(data.timestamps, values)
        flags.append(model.score(data.timestamps, values).is_anomaly[-1])
    assert np.concatenate(flags).mean() < 0.02


def test_explain_gives_the_score_and_names_what_drove_it() -> None:
    # The score is evidence_to_score of the largest part, exactly as score() gives it, with
    # and without the forest; each kind is told by the rule that reads it.
    drivers = {
        "spike": {"point"},
        "outage": {"point", "mean_6", "mean_12", "mean_36"},
        "flatline": {"still"},
    }
    for use_iforest in (False, True):
        for kind, names in drivers.items():
            times, values, _ = make_panel(11, 8, kind, metrics=CONTINUOUS)
            model = AnomalyModel(use_iforest=use_iforest).fit(times, values)
            parts = model.explain(times, values, n_eval=3)
            assert list(parts) == [*RULE_NAMES, "forest"]
            top = np.max(np.stack(list(parts.values())), axis=0)
            result = model.score(times, values, n_eval=3)
            np.testing.assert_allclose(evidence_to_score(top), result.score, atol=1e-12)
            rules = np.stack([parts[k] for k in RULE_NAMES])
            flagged = result.is_anomaly[-1] & (rules[:, -1].max(axis=0) >= 1.0)
            assert flagged.any()
            lead = {RULE_NAMES[i] for i in np.argmax(rules[:, -1], axis=0)[flagged]}
            assert lead <= names, (kind, lead)
            if not use_iforest:
                assert not parts["forest"].any()
