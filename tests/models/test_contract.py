"""One contract suite over every detector, then the baseline and the combined model.

The detectors (:class:`~anomaly.models.base.Detector`) share one interface: ``fit(features,
valid=None)`` returns ``self``, ``evidence(features)`` gives ``(n_t, n_series)``, and their
fitted state is the named arrays of ``state_fields``; so each test below runs over the
detector classes as they are.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
from _synthetic import make_panel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from anomaly.errors import DataError
from anomaly.models.base import Detector
from anomaly.models.iforest import IsolationForestDetector
from anomaly.models.rules import RuleDetector
from anomaly.models.scoring import AnomalyModel
from anomaly.models.seasonal import FEATURE_NAMES, SeasonalBaseline

DETECTORS: list[type[Detector]] = [RuleDetector, IsolationForestDetector]
IDS = [cls.__name__ for cls in DETECTORS]


@pytest.fixture(scope="module")
def panel() -> tuple[np.ndarray, np.ndarray]:
    times, values, _ = make_panel(21, 6, "spike")
    values[:, 5] = np.nan
    return times, values


@pytest.fixture(scope="module")
def rows(panel: Any) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows of the panel and the series the baseline can model."""
    t, v = panel
    baseline = SeasonalBaseline().fit(t, v)
    return baseline.features(t, v), baseline.valid_


def _recent(features: np.ndarray) -> np.ndarray:
    return features[-288:]


# ---------------------------------------------------------------------------- detectors
@pytest.mark.parametrize("cls", DETECTORS, ids=IDS)
def test_init_stores_parameters_only(cls: type[Detector]) -> None:
    det = cls()
    assert set(vars(det)) == set(inspect.signature(cls).parameters)
    with pytest.raises(AttributeError, match="not fitted"):
        det.evidence(np.zeros((3, len(FEATURE_NAMES), 2)))
    with pytest.raises(AttributeError, match="not fitted"):
        det.get_state()


@pytest.mark.parametrize("cls", DETECTORS, ids=IDS)
def test_fit_returns_self_and_evidence_is_finite(cls: type[Detector], rows: Any) -> None:
    features, valid = rows
    det = cls()
    assert det.fit(features, valid) is det
    learned = set(vars(det)) - set(inspect.signature(cls).parameters)
    assert learned and all(name.endswith("_") for name in learned)
    ev = det.evidence(_recent(features))
    assert ev.shape == (288, features.shape[2])
    assert np.all(np.isfinite(ev)) and np.all(ev >= 0)
    assert det.valid_.tolist() == valid.tolist() and np.all(ev[:, ~valid] == 0)
    assert ev[:, valid].max() > 0


@pytest.mark.parametrize("cls", DETECTORS, ids=IDS)
def test_fit_checks_its_input(cls: type[Detector], rows: Any) -> None:
    features, valid = rows
    with pytest.raises(ValueError, match="`features` must be 3-D"):
        cls().fit(features[:, 0])
    with pytest.raises(ValueError, match="`valid`"):
        cls().fit(features, valid[:-1])
    det = cls().fit(features, valid)
    with pytest.raises(ValueError, match="series"):
        det.evidence(features[:, :, :-1])


@pytest.mark.parametrize("cls", DETECTORS, ids=IDS)
def test_refit_replaces_state(cls: type[Detector], rows: Any) -> None:
    features, valid = rows
    other = features[::-1] * 3 + 1
    det = cls().fit(features, valid).fit(other, valid)
    fresh = cls().fit(other, valid)
    np.testing.assert_allclose(det.evidence(_recent(features)), fresh.evidence(_recent(features)))


@pytest.mark.parametrize("cls", DETECTORS, ids=IDS)
def test_state_round_trip_gives_identical_evidence(cls: type[Detector], rows: Any) -> None:
    features, valid = rows
    det = cls().fit(features, valid)
    state = det.get_state()
    assert list(state) == list(cls.state_fields)
    for name, field in cls.state_fields.items():
        assert state[name].dtype.kind == field.kind and state[name].ndim == len(field.shape)
    again = cls.from_state({k: a.copy() for k, a in state.items()})
    np.testing.assert_array_equal(
        again.evidence(_recent(features)), det.evidence(_recent(features))
    )
    shared = det.get_state(copy=False)
    assert all(
        shared[k] is getattr(det, k + "_") for k, f in cls.state_fields.items() if not f.is_param
    )


@pytest.mark.parametrize("cls", DETECTORS, ids=IDS)
def test_from_state_rejects_each_missing_or_malformed_array(cls: type[Detector], rows: Any) -> None:
    features, valid = rows
    state = cls().fit(features, valid).get_state()
    for name, field in cls.state_fields.items():
        broken = {k: a for k, a in state.items() if k != name}
        with pytest.raises(DataError, match=f"`{name}`"):
            cls.from_state(broken)
        other_kind = np.zeros(state[name].shape, dtype=bool if field.kind != "b" else np.float64)
        with pytest.raises(DataError, match=f"`{name}`"):
            cls.from_state({**state, name: other_kind})
        with pytest.raises(DataError, match=f"`{name}`"):
            cls.from_state({**state, name: state[name][None]})
        if field.per_series and name != next(
            n for n, f in cls.state_fields.items() if f.per_series
        ):
            with pytest.raises(DataError, match=f"`{name}`"):
                cls.from_state({**state, name: state[name][..., :-1]})


@pytest.mark.parametrize("cls", DETECTORS, ids=IDS)
def test_select_and_concat_match_the_whole(cls: type[Detector], rows: Any) -> None:
    features, valid = rows
    det = cls().fit(features, valid)
    whole = det.evidence(_recent(features))
    left, right = det.select(np.arange(0, 2)), det.select(np.array([2, 3, 4, 5]))
    joined = cls.concat([left, right])
    np.testing.assert_allclose(joined.evidence(_recent(features)), whole, rtol=1e-9, atol=1e-12)
    part = right.evidence(_recent(features)[:, :, 2:])
    np.testing.assert_allclose(part, whole[:, 2:], rtol=1e-9, atol=1e-12)
    mask = np.array([True, False, True, False, False, True])
    np.testing.assert_allclose(
        det.select(mask).evidence(_recent(features)[:, :, mask]), whole[:, mask], rtol=1e-9
    )


@pytest.mark.parametrize("cls", DETECTORS, ids=IDS)
def test_tenant_isolation(cls: type[Detector], rows: Any) -> None:
    features, valid = rows
    base = cls().fit(features, valid).evidence(_recent(features))
    changed = features.copy()
    changed[:, :, 1:] = changed[::-1, :, 1:] * 7.0
    other = cls().fit(changed, valid).evidence(_recent(changed))
    np.testing.assert_allclose(other[:, 0], base[:, 0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("cls", DETECTORS, ids=IDS)
def test_check_n_features_rejects_a_state_for_other_features(
    cls: type[Detector], rows: Any
) -> None:
    features, valid = rows
    det = cls().fit(features, valid)
    det.check_n_features(len(FEATURE_NAMES))
    with pytest.raises(DataError):
        det.check_n_features(2)


# ---------------------------------------------------------------------------- the baseline
def test_baseline_state_round_trip_select_and_concat(panel: Any) -> None:
    t, v = panel
    baseline = SeasonalBaseline().fit(t, v)
    assert baseline.fit(t, v) is baseline
    whole = baseline.features(t, v)
    state = baseline.get_state()
    assert list(state) == list(SeasonalBaseline.state_fields)
    again = SeasonalBaseline.from_state({k: a.copy() for k, a in state.items()})
    np.testing.assert_array_equal(again.features(t, v), whole)
    joined = SeasonalBaseline.concat([baseline.select([0, 1]), baseline.select([2, 3, 4, 5])])
    np.testing.assert_allclose(joined.features(t, v), whole, rtol=1e-9, atol=1e-12)
    for a, b in zip(joined.bands(t[-5:], 5.0), baseline.bands(t[-5:], 5.0), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9)


def test_baseline_concat_of_weekly_and_day_type_profiles() -> None:
    t, v, _ = make_panel(5, 4, None, n_days=15.0)
    weekly = SeasonalBaseline().fit(t, v[:, :2])  # two weeks: one profile per weekday
    short = SeasonalBaseline().fit(t[-8 * 288 :], v[-8 * 288 :, 2:])  # weekdays / weekend
    assert (weekly.profile_.shape[0], short.profile_.shape[0]) == (7, 2)
    joined = SeasonalBaseline.concat([weekly, short])
    probe = t[-300:]
    expected = np.concatenate([weekly.expected_model(probe), short.expected_model(probe)], axis=1)
    np.testing.assert_array_equal(joined.expected_model(probe), expected)


# ---------------------------------------------------------------------------- the model
def _model() -> AnomalyModel:
    return AnomalyModel(n_estimators=10, max_samples=64)


def _score(model: AnomalyModel, t: np.ndarray, v: np.ndarray) -> np.ndarray:
    return model.score(t, v, n_eval=24).score


def test_model_fit_returns_self_and_scores_are_finite(panel: Any) -> None:
    t, v = panel
    model = _model()
    assert model.fit(t, v) is model
    s = _score(model, t, v)
    assert s.shape == (24, v.shape[1]) and np.all(np.isfinite(s)) and np.all(s >= 0)


def test_model_refit_replaces_state(panel: Any) -> None:
    t, v = panel
    model = _model().fit(t, v).fit(t, v * 3 + 1)
    np.testing.assert_allclose(_score(model, t, v), _score(_model().fit(t, v * 3 + 1), t, v))


def test_model_state_round_trip_gives_identical_scores(panel: Any) -> None:
    t, v = panel
    model = _model().fit(t, v)
    state = model.get_state()
    assert all(isinstance(a, np.ndarray) and a.dtype != object for a in state.values())
    again = AnomalyModel.from_state({k: a.copy() for k, a in state.items()})
    np.testing.assert_array_equal(_score(again, t, v), _score(model, t, v))


def test_model_select_and_concat_match_the_whole(panel: Any) -> None:
    t, v = panel
    model = _model().fit(t, v)
    whole = _score(model, t, v)
    left, right = model.select(np.arange(0, 2)), model.select(np.array([2, 3, 4, 5]))
    joined = AnomalyModel.concat([left, right])
    np.testing.assert_allclose(_score(joined, t, v), whole, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(_score(right, t, v[:, 2:]), whole[:, 2:], rtol=1e-9, atol=1e-12)


def test_model_tenant_isolation(panel: Any) -> None:
    t, v = panel
    base = _score(_model().fit(t, v), t, v)
    changed = v.copy()
    changed[:, 1:] = changed[::-1, 1:] * 7.0
    other = _score(_model().fit(t, changed), t, changed)
    np.testing.assert_allclose(other[:, 0], base[:, 0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"model.threshold": np.array(0.5)},
        "not a dict",
    ],
)
def test_from_state_rejects_garbage(bad: Any) -> None:
    with pytest.raises(DataError):
        AnomalyModel.from_state(bad)


def test_from_state_rejects_inconsistent_shapes(panel: Any) -> None:
    t, v = panel
    state = AnomalyModel(n_estimators=5, max_samples=32).fit(t, v).get_state()
    for key, bad in [
        ("seasonal.scale", state["seasonal.scale"][:, :-1]),
        ("seasonal.profile", state["seasonal.profile"].astype(np.int64)),
        ("iforest.children_left", state["iforest.children_left"] + 10_000),
        ("seasonal.c", -state["seasonal.c"]),
        ("iforest.feature", state["iforest.feature"] + 100),
    ]:
        broken = dict(state)
        broken[key] = bad
        with pytest.raises(DataError):
            AnomalyModel.from_state(broken)


def test_invalid_series_get_reasons_and_zero_scores() -> None:
    times, values, _ = make_panel(4, 4, None)
    values[:, 0] = np.nan
    values[:, 1] = 3.0
    values[:-100, 2] = np.nan
    values[5, 3] = np.inf
    model = AnomalyModel(n_estimators=5, max_samples=32).fit(times, values)
    result = model.score(times, values)
    assert result.valid.tolist() == [False, True, False, True]
    assert result.reason[0] == "all values missing"
    assert result.reason[2] is not None and result.reason[2].startswith("too short")
    assert result.reason[1] is None and result.reason[3] is None
    invalid = [0, 2]
    assert np.all(result.score[:, invalid] == 0) and not result.is_anomaly[:, invalid].any()
    assert np.all(np.isnan(result.expected[:, invalid]))
    assert np.all(np.isfinite(result.expected[:, [1, 3]]))
    assert result.lower[-1, 3] <= result.expected[-1, 3] <= result.upper[-1, 3]
    # A constant series is scored: about 0 while it stays, an anomaly when it leaves its value.
    assert result.score[-1, 1] < 0.05 and result.expected[-1, 1] == pytest.approx(3.0)
    for departed in (0.0, 4.0):
        moved = values.copy()
        moved[-1, 1] = departed
        assert model.score(times, moved).is_anomaly[-1, 1]


_MODEL_CACHE: dict[str, AnomalyModel] = {}


def _fitted() -> tuple[np.ndarray, AnomalyModel]:
    if "m" not in _MODEL_CACHE:
        times, values, _ = make_panel(8, 3, None, n_days=3.0)
        _MODEL_CACHE["m"] = AnomalyModel(n_estimators=5, max_samples=32).fit(times, values)
        _MODEL_CACHE["t"] = times  # type: ignore[assignment]
    return _MODEL_CACHE["t"], _MODEL_CACHE["m"]  # type: ignore[return-value]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(np.float64, (60, 3), elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_scores_always_in_unit_interval(window: np.ndarray) -> None:
    times, model = _fitted()
    result = model.score(times[-60:], window, n_eval=5)
    assert np.all(np.isfinite(result.score))
    assert np.all((result.score >= 0) & (result.score <= 1))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hnp.arrays(
        np.float64,
        (300, 2),
        elements=st.one_of(st.floats(min_value=-1e12, max_value=1e12), st.just(np.nan)),
    )
)
def test_fit_on_arbitrary_finite_data_never_crashes(values: np.ndarray) -> None:
    times = 1767571200.0 + 300.0 * np.arange(300)
    model = AnomalyModel(n_estimators=3, max_samples=16).fit(times, values)
    score = model.score(times, values, n_eval=10).score
    assert np.all(np.isfinite(score)) and np.all((score >= 0) & (score <= 1))


_MUTATIONS = ("drop", "transpose", "truncate", "as_float", "as_int", "as_text", "nan", "scalar")


def _mutate(arr: np.ndarray, how: str) -> np.ndarray | None:
    if how == "drop":
        return None
    if how == "transpose":
        return arr.T if arr.ndim > 1 else arr[None]
    if how == "truncate":
        return arr[..., :-1] if arr.ndim else arr.reshape(1)
    if how == "as_float":
        return arr.astype(np.float64) + 0.5 if arr.dtype.kind in "iub" else arr
    if how == "as_int":
        return (
            np.zeros(arr.shape, np.int64)
            if arr.dtype.kind == "U"
            else np.round(np.nan_to_num(arr)).astype(np.int64)
        )
    if how == "as_text":
        return arr.astype(str)
    if how == "nan":
        return np.full(arr.shape, np.nan)
    return np.array(3.0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupt_state_raises_data_error_or_still_scores(data: st.DataObject) -> None:
    times, model = _fitted()
    state = model.get_state()
    key = data.draw(st.sampled_from(sorted(state)))
    how = data.draw(st.sampled_from(_MUTATIONS))
    broken = dict(state)
    mutated = _mutate(state[key], how)
    if mutated is None:
        del broken[key]
    else:
        broken[key] = mutated
    try:
        loaded = AnomalyModel.from_state(broken)
    except DataError:
        return
    window = np.ones((60, 3))
    result = loaded.score(times[-60:], window)
    assert np.all(np.isfinite(result.score))


def test_zero_series_is_a_valid_empty_model() -> None:
    times = 1767571200.0 + 300.0 * np.arange(600)
    model = AnomalyModel().fit(times, np.zeros((600, 0)))
    result = AnomalyModel.from_state(model.get_state()).score(times, np.zeros((600, 0)))
    assert result.score.shape == (1, 0) and result.reason == []
