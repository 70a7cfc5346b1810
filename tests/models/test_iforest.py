"""The numpy tree traversal reproduces scikit-learn's ``score_samples``."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest

from anomaly.models.iforest import IsolationForestDetector


def test_traversal_equals_sklearn_score_samples() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(600, 6, 3))
    train[:4, 2, :] = np.nan
    det = IsolationForestDetector(
        n_estimators=30, max_samples=100, random_state=7, backend="sklearn"
    ).fit(train)
    test = rng.normal(size=(200, 6, 3)) * 3
    ours = det.isolation_score(test)
    for j in range(3):
        ref = IsolationForest(n_estimators=30, max_samples=100, random_state=7)
        ref.fit(np.nan_to_num(train[:, :, j]))
        np.testing.assert_allclose(
            ours[:, j], -ref.score_samples(test[:, :, j]), rtol=0, atol=1e-12
        )


def test_numpy_backend_grows_forests_like_sklearn() -> None:
    rng = np.random.default_rng(3)
    train = rng.normal(size=(2000, 8, 3))
    train[:, 4, 1] = 1.0  # a constant feature is never split on
    ours = IsolationForestDetector(n_estimators=50, max_samples=128).fit(train)
    ref = IsolationForestDetector(n_estimators=50, max_samples=128, backend="sklearn").fit(train)
    inliers = rng.normal(size=(300, 8, 3))
    outliers = rng.normal(size=(60, 8, 3)) * 5
    for det in (ours, ref):
        leaves = det.children_left_ < 0
        used = det.n_node_samples_ > 0
        assert np.all((det.n_node_samples_ * (leaves & used)).sum(axis=1) == 128)
        assert not np.any((det.feature_ == 4) & ~leaves & used & (np.arange(3) == 1))
    s_ours, s_ref = ours.isolation_score(inliers), ref.isolation_score(inliers)
    np.testing.assert_allclose(s_ours.mean(axis=0), s_ref.mean(axis=0), atol=0.01)
    o_ours, o_ref = ours.isolation_score(outliers), ref.isolation_score(outliers)
    np.testing.assert_allclose(o_ours.mean(axis=0), o_ref.mean(axis=0), atol=0.02)
    assert np.all(o_ours.mean(axis=0) > s_ours.mean(axis=0) + 0.1)
    both = np.concatenate([s_ours, o_ours])
    ref_both = np.concatenate([s_ref, o_ref])
    for j in range(3):
        assert np.corrcoef(both[:, j], ref_both[:, j])[0, 1] > 0.9


def test_state_is_small_integer_and_float32_arrays() -> None:
    rng = np.random.default_rng(1)
    det = IsolationForestDetector(n_estimators=10, max_samples=64).fit(rng.normal(size=(300, 4, 2)))
    state = det.get_state()
    assert state["children_left"].dtype == np.int16
    assert state["threshold"].dtype == np.float32
    assert state["children_left"].shape[0] == 10 and state["children_left"].shape[-1] == 2
    assert all(a.dtype != object for a in state.values())


def test_short_series_is_skipped_with_reason() -> None:
    feats = np.random.default_rng(2).normal(size=(100, 4, 2))
    feats[10:, 0, 1] = np.nan
    det = IsolationForestDetector(n_estimators=5, min_rows=50).fit(feats)
    assert det.valid_.tolist() == [True, False]
    assert "too short" in det.reason_[1]
    assert np.all(det.evidence(feats)[:, 1] == 0)
