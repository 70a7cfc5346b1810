"""One contract suite over every detector and the combined model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from _synthetic import make_panel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from anomaly.errors import DataError
from anomaly.models.iforest import IsolationForestDetector
from anomaly.models.scoring import AnomalyModel
from anomaly.models.seasonal import SeasonalDetector


@dataclass
class Case:
    name: str
    make: Callable[[], Any]
    fit: Callable[[Any, np.ndarray, np.ndarray], Any]
    score: Callable[[Any, np.ndarray, np.ndarray], np.ndarray]


def _features(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    return SeasonalDetector().fit(t, v).features(t, v)


CASES = [
    Case(
        "seasonal",
        SeasonalDetector,
        lambda m, t, v: m.fit(t, v),
        lambda m, t, v: m.anomaly_score(t, v)[-48:],
    ),
    Case(
        "iforest",
        lambda: IsolationForestDetector(n_estimators=10, max_samples=64),
        lambda m, t, v: m.fit(_features(t, v)),
        lambda m, t, v: m.evidence(_features(t, v)[-48:]),
    ),
    Case(
        "model",
        lambda: AnomalyModel(n_estimators=10, max_samples=64),
        lambda m, t, v: m.fit(t, v),
        lambda m, t, v: m.score(t, v, n_eval=24).score,
    ),
]
IDS = [c.name for c in CASES]


@pytest.fixture(scope="module")
def panel() -> tuple[np.ndarray, np.ndarray]:
    times, values, _ = make_panel(21, 6, "spike")
    values[:, 5] = np.nan
    return times, values


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fit_returns_self_and_scores_are_finite(case: Case, panel: Any) -> None:
    t, v = panel
    model = case.make()
    assert case.fit(model, t, v) is model
    s = case.score(model, t, v)
    assert s.shape[1] == v.shape[1] and np.all(np.isfinite(s)) and np.all(s >= 0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_refit_replaces_state(case: Case, panel: Any) -> None:
    t, v = panel
    model = case.fit(case.make(), t, v)
    other = case.fit(case.make(), t, v * 3 + 1)
    case.fit(model, t, v * 3 + 1)
    np.testing.assert_allclose(case.score(model, t, v), case.score(other, t, v))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_state_round_trip_gives_identical_scores(case: Case, panel: Any) -> None:
    t, v = panel
    model = case.fit(case.make(), t, v)
    state = model.get_state()
    assert all(isinstance(a, np.ndarray) and a.dtype != object for a in state.values())
    again = type(model).from_state({k: a.copy() for k, a in state.items()})
    np.testing.assert_array_equal(case.score(again, t, v), case.score(model, t, v))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_select_and_concat_match_the_whole(case: Case, panel: Any) -> None:
    t, v = panel
    model = case.fit(case.make(), t, v)
    whole = case.score(model, t, v)
    left, right = model.select(np.arange(0, 2)), model.select(np.array([2, 3, 4, 5]))
    joined = type(model).concat([left, right])
    np.testing.assert_allclose(case.score(joined, t, v), whole, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(case.score(right, t, v[:, 2:]), whole[:, 2:], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_tenant_isolation(case: Case, panel: Any) -> None:
    t, v = panel
    base = case.score(case.fit(case.make(), t, v), t, v)
    changed = v.copy()
    changed[:, 1:] = changed[::-1, 1:] * 7.0
    other = case.score(case.fit(case.make(), t, changed), t, changed)
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
    result = AnomalyModel(n_estimators=5, max_samples=32).fit(times, values).score(times, values)
    assert result.valid.tolist() == [False, False, False, True]
    assert result.reason[0] == "all values missing"
    assert result.reason[1] == "constant"
    assert result.reason[2] is not None and result.reason[2].startswith("too short")
    assert result.reason[3] is None
    assert np.all(result.score[:, :3] == 0) and not result.is_anomaly[:, :3].any()
    assert np.all(np.isnan(result.expected[:, :3]))
    assert np.all(np.isfinite(result.expected[:, 3]))
    assert result.lower[-1, 3] <= result.expected[-1, 3] <= result.upper[-1, 3]


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
