"""scikit-learn's ``IsolationForest`` is the checked reference of the numpy forest: on the same
trees both give the same scores (scikit-learn's trees traversed here, and the numpy-grown
trees loaded into scikit-learn), and the two growers score seeded data alike."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.tree._tree import NODE_DTYPE

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


def _sklearn_forest_with_trees_of(det: IsolationForestDetector, j: int) -> IsolationForest:
    """A fitted ``IsolationForest`` whose trees are series ``j``'s trees of ``det``.

    Fitted on noise for its shape, then every tree rebuilt as pickle rebuilds one
    (``Tree.__reduce__``, ``__setstate__``) from our nodes, and the per-tree path tables
    recomputed as ``IsolationForest.fit`` computes them.
    """
    from sklearn.ensemble._iforest import _average_path_length

    n_trees, _, _ = det.feature_.shape
    n_features = int(det.feature_.max()) + 1
    max_samples = int(det.max_samples_[j])
    noise = np.random.default_rng(0).normal(size=(max_samples, n_features))
    forest = IsolationForest(n_estimators=n_trees, max_samples=max_samples).fit(noise)
    for i, est in enumerate(forest.estimators_):
        m = int(np.count_nonzero(det.n_node_samples_[i, :, j]))  # nodes are 0..m-1
        left = det.children_left_[i, :m, j].astype(np.int64)
        nodes = np.zeros(m, dtype=NODE_DTYPE)
        nodes["left_child"] = left
        nodes["right_child"] = det.children_right_[i, :m, j]
        nodes["feature"] = np.where(left >= 0, det.feature_[i, :m, j], -2)
        nodes["threshold"] = np.where(left >= 0, det.threshold_[i, :m, j], -2.0)
        nodes["n_node_samples"] = det.n_node_samples_[i, :m, j]
        nodes["weighted_n_node_samples"] = det.n_node_samples_[i, :m, j]
        cls, args, state = est.tree_.__reduce__()  # how pickle rebuilds a tree
        state.update(node_count=m, nodes=nodes, values=np.zeros((m,) + state["values"].shape[1:]))
        est.tree_ = cls(*args)
        est.tree_.__setstate__(state)
        forest.estimators_features_[i] = np.arange(n_features)
    forest._average_path_length_per_tree, forest._decision_path_lengths = zip(
        *[
            (_average_path_length(e.tree_.n_node_samples), e.tree_.compute_node_depths())
            for e in forest.estimators_
        ],
        strict=True,
    )
    return forest


def test_numpy_grown_trees_score_in_sklearn_as_here() -> None:
    rng = np.random.default_rng(5)
    train = rng.normal(size=(1500, 6, 2))
    det = IsolationForestDetector(n_estimators=40, max_samples=128, random_state=3).fit(train)
    test = np.concatenate([rng.normal(size=(150, 6, 2)), rng.normal(size=(50, 6, 2)) * 4])
    ours = det.isolation_score(test)
    for j in range(2):
        ref = _sklearn_forest_with_trees_of(det, j)
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
    outliers_at = set(range(300, 360))
    for j in range(3):
        assert np.corrcoef(both[:, j], ref_both[:, j])[0, 1] > 0.9
        top_ours, top_ref = set(np.argsort(-both[:, j])[:60]), set(np.argsort(-ref_both[:, j])[:60])
        assert len(top_ours & outliers_at) >= 50 and len(top_ref & outliers_at) >= 50
        assert len(top_ours & top_ref) >= 50  # the same rows rank highest


def test_scikit_learn_is_imported_only_by_the_reference_backend() -> None:
    code = (
        "import sys, numpy as np\n"
        "from anomaly.models.scoring import AnomalyModel\n"
        "t = 1767571200.0 + 300.0 * np.arange(2016)\n"
        "v = 10 + np.random.default_rng(0).normal(size=(2016, 2))\n"
        "AnomalyModel(n_estimators=5).fit(t, v).score(t, v)\n"
        "assert 'sklearn' not in sys.modules, 'sklearn was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


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
