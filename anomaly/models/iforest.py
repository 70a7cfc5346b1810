"""Isolation-forest evidence per series (:class:`IsolationForestDetector`), stored as plain
arrays and scored with numpy.

Each series gets its own isolation forest over the seasonal features, seeded identically for
every series so a series' trees depend only on its own data and the number of feature rows
(fitted alone or beside other series, on the same rows, they are the same trees; their
scores may differ in the last bit, as numpy's vectorised ``log`` rounds by array layout).
By default all forests are grown at once in numpy by :func:`grow_forests`: scikit-learn's
``IsolationForest`` algorithm (random non-constant feature, uniform threshold, depth limit
``ceil(log2(max_samples))``) vectorised over trees and series. ``backend="sklearn"`` fits
one ``sklearn.ensemble.IsolationForest`` per series instead (~100 ms per series of Python
overhead) and copies its trees out: the checked reference. ``tests/models/test_iforest.py``
checks that on scikit-learn's trees the traversal here gives its ``score_samples``, and that
the numpy forests score seeded data as scikit-learn's do. scikit-learn is imported only by
that backend.

Either way the state is padded arrays of shape ``(n_trees, n_nodes, n_series)``
(``children_left/right`` int16, ``feature`` int8, ``threshold`` float32 rounded toward
-inf so float32 comparisons are exact, ``n_node_samples`` int16), scored by a vectorised
traversal that reproduces ``IsolationForest.score_samples`` (negated: our
``isolation_score`` is higher for more anomalous rows). No pickle is ever needed.

Evidence is the isolation score relative to the series' own training distribution:
``(s - median) / (threshold_factor * (q99 - median))``; 1 = at the decision threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from anomaly.errors import DataError
from anomaly.models.base import SERIES, Detector, Field, check_features, param, valid_series
from anomaly.models.features import nanmedian0, nanquantile0

if TYPE_CHECKING:  # scikit-learn is imported only by the reference backend (~1 s, ~80 MB)
    from sklearn.ensemble import IsolationForest

log = logging.getLogger(__name__)

#: Axes of the tree arrays: nodes numbered breadth-first, padded to the largest tree.
_TREE_AXES = ("n_trees", "n_nodes", SERIES)


def average_path_length(n: np.ndarray) -> np.ndarray:
    """Expected path length of an unsuccessful search in a BST of ``n`` nodes (iForest ``c(n)``)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    big = n > 2
    out[n == 2] = 1.0
    nb = n[big]
    out[big] = 2.0 * (np.log(nb - 1.0) + np.euler_gamma) - 2.0 * (nb - 1.0) / nb
    return out


class IsolationForestDetector(Detector):
    """Per-series isolation forests over feature rows, stored as arrays.

    Parameters
    ----------
    n_estimators : int
        Trees per series.
    max_samples : int
        Rows drawn per tree (capped at the number of training rows).
    random_state : int
        Seed, identical for every series.
    threshold_factor : float
        Evidence 1 is reached at ``median + threshold_factor * (q99 - median)`` of the
        series' training isolation scores.
    min_rows : int
        Fewest complete feature rows a series needs.
    backend : {"numpy", "sklearn"}
        ``"numpy"`` grows all series' trees at once with :func:`grow_forests` (the same
        algorithm, ~15 ms per series for 50 trees x 128 rows against ~80-140 ms of mostly
        Python overhead per scikit-learn fit); ``"sklearn"`` fits one ``IsolationForest`` per
        series, skipping (with a reason) a series it cannot fit. Both store and score the
        same arrays.
    """

    state_fields: ClassVar[dict[str, Field]] = {
        "threshold_factor": param(1e-6, 1e6),
        "children_left": Field(np.int16, _TREE_AXES),
        "children_right": Field(np.int16, _TREE_AXES),
        "feature": Field(np.int8, _TREE_AXES),
        "threshold": Field(np.float32, _TREE_AXES, finite=True),
        "n_node_samples": Field(np.int16, _TREE_AXES),
        "max_samples": Field(np.int64, (SERIES,)),
        "center": Field(np.float64, (SERIES,), finite=True),
        "spread": Field(np.float64, (SERIES,), finite=True),
        "valid": Field(np.bool_, (SERIES,)),
        "reason": Field(np.str_, (SERIES,)),
    }

    def __init__(
        self,
        n_estimators: int = 50,
        max_samples: int = 128,
        random_state: int = 0,
        threshold_factor: float = 2.0,
        min_rows: int = 64,
        backend: str = "numpy",
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state
        self.threshold_factor = threshold_factor
        self.min_rows = min_rows
        self.backend = backend

    def fit(self, features: np.ndarray, valid: np.ndarray | None = None) -> IsolationForestDetector:
        """Fit one forest per series on the rows whose first feature is finite (other NaN
        become 0), then learn each series' score distribution; see
        :meth:`Detector.fit <anomaly.models.base.Detector.fit>`."""
        check_features(features)
        if features.shape[1] > 127:
            raise ValueError(f"at most 127 features are supported, got {features.shape[1]}")
        n_t, n_feat, n_s = features.shape
        if self.backend not in ("numpy", "sklearn"):
            raise ValueError(f"`backend` must be 'numpy' or 'sklearn', got {self.backend!r}")
        ok = valid_series(valid, n_s)
        reason = np.full(n_s, "", dtype="<U64")
        reason[~ok] = "skipped by the baseline"
        usable = np.isfinite(features[:, 0, :]) & ok[None, :]
        n_usable = np.sum(usable, axis=0)
        short = ok & (n_usable < self.min_rows)
        for j in np.flatnonzero(short):
            reason[j] = f"too short: {int(n_usable[j])} complete feature rows, need {self.min_rows}"
            log.info("isolation forest skips series %d: %s", j, reason[j])
        ok &= ~short
        usable &= ok[None, :]
        x = np.nan_to_num(features, nan=0.0, posinf=1e6, neginf=-1e6)
        if self.backend == "numpy":
            arrays, max_samples = grow_forests(
                x, usable, self.n_estimators, self.max_samples, self.random_state
            )
        else:
            arrays, max_samples = self._fit_sklearn(x, usable, ok, reason)
        max_samples[~ok] = 0
        self.children_left_ = arrays["children_left"]
        self.children_right_ = arrays["children_right"]
        self.feature_ = arrays["feature"]
        self.threshold_ = arrays["threshold"]
        self.n_node_samples_ = arrays["n_node_samples"]
        self.max_samples_ = max_samples
        self.valid_ = ok
        self.reason_ = reason
        self.center_ = np.zeros(n_s)
        self.spread_ = np.ones(n_s)
        # Calibrate on every third training row: the quantiles need no more.
        s = self.isolation_score(features[::3])
        s[:, ~ok] = np.nan
        center = nanmedian0(s)
        spread = nanquantile0(s, 0.99) - center
        self.center_ = np.where(np.isfinite(center), center, 0.0)
        self.spread_ = np.where(np.isfinite(spread) & (spread > 1e-3), spread, 1e-3)
        return self

    def _fit_sklearn(
        self, x: np.ndarray, usable: np.ndarray, ok: np.ndarray, reason: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """One ``sklearn.ensemble.IsolationForest`` per series (the reference backend).

        A series whose fit fails is marked in ``ok`` and ``reason`` (in place) and skipped.
        scikit-learn comes with the ``reference`` extra, not with the package.
        """
        try:
            from sklearn.ensemble import IsolationForest
        except ImportError:
            raise ImportError(
                "IsolationForestDetector(backend='sklearn') needs scikit-learn: "
                "pip install 'anomaly[reference]'"
            ) from None

        n_s = x.shape[2]
        per_series: list[dict[str, np.ndarray] | None] = [None] * n_s
        max_samples = np.zeros(n_s, dtype=np.int64)
        for j in np.flatnonzero(ok):
            xs = x[usable[:, j], :, j]
            try:
                forest = IsolationForest(
                    n_estimators=self.n_estimators,
                    max_samples=min(self.max_samples, xs.shape[0]),
                    random_state=self.random_state,
                ).fit(xs)
            except ValueError as exc:
                ok[j] = False
                reason[j] = f"isolation forest failed: {exc}"[:64]
                log.warning("isolation forest skips series %d: %s", j, exc)
                continue
            per_series[j] = extract_trees(forest)
            max_samples[j] = int(forest.max_samples_)
        n_nodes = max([tr["feature"].shape[1] for tr in per_series if tr is not None], default=1)
        shape = (self.n_estimators, n_nodes, n_s)
        arrays = empty_trees(shape)
        for col, tr in enumerate(per_series):
            if tr is not None:
                m = tr["feature"].shape[1]
                for name, arr in arrays.items():
                    arr[:, :m, col] = tr[name]
        return arrays, max_samples

    def isolation_score(self, features: np.ndarray) -> np.ndarray:
        """``2 ** (-mean path length / c(max_samples))``: higher = more anomalous.

        Equal to ``-IsolationForest.score_samples`` of the series' forest.

        Parameters
        ----------
        features : ndarray of shape (n_t, n_features, n_series)
            NaN become 0.

        Returns
        -------
        ndarray of shape (n_t, n_series)
            In (0, 1]; 0 for unfitted series.
        """
        self._check_scoring(features)
        n_t, _, n_s = features.shape
        n_trees, n_nodes, _ = self.feature_.shape
        if n_t == 0:
            return np.zeros((0, n_s))
        x = np.nan_to_num(features, nan=0.0, posinf=1e6, neginf=-1e6).astype(np.float32)
        rows_per_chunk = max(1, _WALKS_PER_CHUNK // max(1, n_trees * n_s))
        # Many rows (fitting, backtests): flat walk arrays pay for themselves (about 36 bytes
        # a node, built per call). A few rows (a run scoring its newest points): walk the
        # stored arrays as they are.
        walk = self._walk_arrays() if n_t * 8 >= n_nodes else None
        depth = np.concatenate(
            [self._depths(x[i : i + rows_per_chunk], walk) for i in range(0, n_t, rows_per_chunk)]
        )
        mean_depth = depth.mean(axis=1)
        denom = average_path_length(self.max_samples_)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(denom > 0, 2.0 ** (-mean_depth / np.where(denom > 0, denom, 1.0)), 1.0)
        out[:, ~self.valid_] = 0.0
        return out

    def _walk_arrays(self) -> tuple[np.ndarray, ...]:
        """Flat per-node arrays for :meth:`_depths`: left and right child positions (a leaf's
        are its own), ``feature * n_series + series`` (the offset of the node's feature in a
        row of features), the threshold, and the average path length below the node (the
        leaf's depth correction)."""
        n_trees, n_nodes, n_s = self.feature_.shape
        left = self.children_left_.astype(np.int64)
        right = self.children_right_.astype(np.int64)
        inner = left >= 0
        here = np.arange(n_nodes)[None, :, None]
        left = np.where(inner, left, here)
        right = np.where(inner & (right >= 0), right, left)
        series = np.arange(n_s)[None, None, :]
        base = (np.arange(n_trees) * n_nodes * n_s)[:, None, None] + series
        return (
            (base + left * n_s).ravel(),
            (base + right * n_s).ravel(),
            (self.feature_.astype(np.int64) * n_s + series).ravel(),
            np.where(inner, self.threshold_, np.float32(0)).ravel(),
            average_path_length(self.n_node_samples_.ravel()),
        )

    def _depths(self, x: np.ndarray, walk: tuple[np.ndarray, ...] | None) -> np.ndarray:
        """Path length of every (row, tree, series) of float32 features ``x``, with the
        leaf's average-path correction; through ``walk`` (:meth:`_walk_arrays`) or, when
        None, the stored arrays."""
        n_t, _, n_s = x.shape
        n_trees, n_nodes, _ = self.feature_.shape
        tree_base = (np.arange(n_trees) * n_nodes * n_s)[None, :, None]
        series = np.arange(n_s)[None, None, :]
        steps = np.zeros((n_t, n_trees, n_s), dtype=np.int16)
        if walk is None:
            left, right = self.children_left_.ravel(), self.children_right_.ravel()
            feat, thr = self.feature_.ravel(), self.threshold_.ravel()
            node = np.zeros((n_t, n_trees, n_s), dtype=np.int64)
            rows = np.arange(n_t)[:, None, None]
            for _ in range(n_nodes):
                flat = tree_base + node * n_s + series
                child = left[flat].astype(np.int64)
                inner = child >= 0
                if not inner.any():
                    break
                xv = x[rows, feat[flat], series]
                node = np.where(inner, np.where(xv <= thr[flat], child, right[flat]), node)
                steps += inner
            leaf = tree_base + node * n_s + series
            return steps + average_path_length(self.n_node_samples_.ravel()[leaf])
        go_left, go_right, feature_at, thr, leaf_depth = walk
        # Positions index the flattened (n_trees, n_nodes, n_series) arrays; leaves point to
        # themselves, so a finished walk stops moving.
        pos = np.broadcast_to(tree_base + series, (n_t, n_trees, n_s)).copy()
        row_base = (np.arange(n_t) * x.shape[1] * n_s)[:, None, None]
        x_flat = x.ravel()
        for _ in range(n_nodes):
            xv = x_flat[row_base + feature_at[pos]]
            nxt = np.where(xv <= thr[pos], go_left[pos], go_right[pos])
            moved = nxt != pos
            if not moved.any():
                break
            steps += moved
            pos = nxt
        return steps + leaf_depth[pos]

    def evidence(self, features: np.ndarray) -> np.ndarray:
        """The isolation score above the series' training median, in units of
        ``threshold_factor`` times its spread to the 99th percentile; see
        :meth:`Detector.evidence <anomaly.models.base.Detector.evidence>`."""
        s = self.isolation_score(features)
        e = np.maximum(s - self.center_, 0.0) / (self.threshold_factor * self.spread_)
        e[:, ~self.valid_] = 0.0
        return e

    # ------------------------------------------------------------------ state
    def check_n_features(self, n_features: int) -> None:
        """Raise :class:`DataError` if a tree splits on a feature index ``>= n_features``."""
        if self.feature_.size and int(self.feature_.max()) >= n_features:
            raise DataError(
                f"isolation trees use feature {int(self.feature_.max())}, only {n_features} exist"
            )

    @classmethod
    def _check_arrays(
        cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, float], prefix: str
    ) -> None:
        n_nodes = arrays["feature"].shape[1]
        for name in ("children_left", "children_right"):
            ch = arrays[name]
            if ch.size and (ch.min() < -1 or ch.max() >= n_nodes):
                raise DataError(f"state `{prefix}{name}` points outside the {n_nodes} nodes")
        if arrays["feature"].size and arrays["feature"].min() < 0:
            raise DataError(f"state `{prefix}feature` holds negative feature indices")
        if np.any(arrays["spread"] <= 0) or np.any(arrays["max_samples"] < 0):
            raise DataError(f"state `{prefix}spread` and `max_samples` must be positive")

    @classmethod
    def _align_states(cls, states: list[dict[str, np.ndarray]]) -> None:
        """Pad every part's trees to the largest node count (padding nodes are never reached)."""
        n_nodes = max(s["feature"].shape[1] for s in states)
        for s in states:
            pad = n_nodes - s["feature"].shape[1]
            if pad:
                for name, fill in _NODE_FILL.items():
                    s[name] = np.pad(s[name], ((0, 0), (0, pad), (0, 0)), constant_values=fill)


#: The tree arrays and their value at a node that does not exist.
_NODE_FILL = {
    "children_left": -1,
    "children_right": -1,
    "feature": 0,
    "threshold": 0,
    "n_node_samples": 0,
}


def empty_trees(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Tree arrays of ``shape`` without nodes, in their stored dtypes."""
    fields = IsolationForestDetector.state_fields
    return {
        name: np.full(shape, fill, dtype=fields[name].dtype) for name, fill in _NODE_FILL.items()
    }


#: (row, tree, series) walks :meth:`IsolationForestDetector.isolation_score` makes at once:
#: about 40 bytes each in temporaries.
_WALKS_PER_CHUNK = 500_000

#: Trees whose row draws are made together in :func:`grow_forests` (bounds its memory).
_TREES_PER_DRAW = 8


def extract_trees(forest: IsolationForest) -> dict[str, np.ndarray]:
    """Copy a fitted forest's trees into padded arrays of shape (n_trees, n_nodes).

    Thresholds become float32 rounded toward -inf: for float32 inputs (which is what sklearn
    trees compare), ``x <= t32`` is then exactly ``x <= t64``.
    """
    trees = [est.tree_ for est in forest.estimators_]
    n_nodes = max(t.node_count for t in trees)
    n_trees = len(trees)
    out = empty_trees((n_trees, n_nodes))
    for i, (t, feats) in enumerate(zip(trees, forest.estimators_features_, strict=True)):
        m = t.node_count
        leaf = t.children_left[:m] < 0
        out["children_left"][i, :m] = t.children_left[:m]
        out["children_right"][i, :m] = t.children_right[:m]
        out["feature"][i, :m] = np.where(leaf, 0, np.asarray(feats)[np.maximum(t.feature[:m], 0)])
        out["threshold"][i, :m] = np.where(leaf, 0, _float32_down(t.threshold[:m]))
        out["n_node_samples"][i, :m] = t.n_node_samples[:m]
    return out


def grow_forests(
    x: np.ndarray,
    usable: np.ndarray,
    n_estimators: int,
    max_samples: int,
    random_state: int,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Grow isolation trees for every series at once, vectorised (scikit-learn's algorithm).

    Each tree draws ``max_samples`` usable rows without replacement and splits nodes on a
    random non-constant feature at a threshold uniform between the node's minimum and
    maximum, down to ``ceil(log2(max_samples))``, as ``IsolationForest`` does. The random
    draws are shared by all series, so a series' trees depend only on its own data and on
    ``n_t`` (pass every row, marking unusable ones in ``usable``, not a per-call subset).

    Parameters
    ----------
    x : ndarray of shape (n_t, n_features, n_series)
        Finite feature rows (compared as float32, like scikit-learn trees).
    usable : ndarray of bool, shape (n_t, n_series)
        Rows a series may sample.
    n_estimators, max_samples, random_state : int

    Returns
    -------
    trees : dict of ndarray
        ``children_left``, ``children_right``, ``feature``, ``threshold``,
        ``n_node_samples``, each of shape (n_estimators, n_nodes, n_series).
    n_drawn : ndarray of int64, shape (n_series,)
        Rows drawn per tree (``max_samples`` capped by the usable rows).
    """
    n_t, n_feat, n_s = x.shape
    n_trees = int(n_estimators)
    rng = np.random.default_rng(random_state)
    n_drawn = np.minimum(np.sum(usable, axis=0), max_samples).astype(np.int64)
    m = int(min(max_samples, n_t))
    max_depth = int(np.ceil(np.log2(max(max_samples, 2))))
    depth_limit = np.ceil(np.log2(np.maximum(n_drawn, 2))).astype(np.int64)
    n_heap = 2 ** (max_depth + 1) - 1

    # Row draws: shared random keys, unusable rows pushed last; a few trees at a time, as
    # the keys of every (tree, row, series) would take n_trees x n_t x n_s x 16 bytes.
    tree_keys = rng.random((n_trees, n_t))
    penalty = np.where(usable, 0.0, 2.0)
    rows = np.empty((n_trees, m, n_s), dtype=np.int64)
    for first in range(0, n_trees, _TREES_PER_DRAW):
        keys = tree_keys[first : first + _TREES_PER_DRAW, :, None] + penalty[None]
        r = np.argpartition(keys, m - 1, axis=1)[:, :m] if m < n_t else np.argsort(keys, axis=1)
        rows[first : first + _TREES_PER_DRAW] = np.take_along_axis(
            r, np.argsort(np.take_along_axis(keys, r, axis=1), axis=1), axis=1
        )
    ok = np.broadcast_to(np.arange(m)[None, :, None] < n_drawn[None, None, :], (n_trees, m, n_s))
    flat_rows = (rows * n_s + np.arange(n_s)[None, None, :])[ok]  # (N,) into (n_t * n_s)
    x_by_feature = np.ascontiguousarray(x.astype(np.float32).transpose(1, 0, 2)).reshape(
        n_feat, n_t * n_s
    )
    # Each node's features in the order its random keys rank them (lowest key first).
    feat_rank = np.argsort(rng.random((n_trees, n_heap, n_feat)), axis=2)
    thr_u = rng.random((n_trees, n_heap))

    # Heap-numbered nodes (children of i: 2i+1, 2i+2); the stored dtypes, to keep memory low.
    left = np.full((n_trees, n_s, n_heap), -1, dtype=np.int16)
    feature = np.zeros((n_trees, n_s, n_heap), dtype=np.int8)
    threshold = np.zeros((n_trees, n_s, n_heap), dtype=np.float64)
    count = np.zeros((n_trees, n_s, n_heap), dtype=np.int16)

    tree_of = np.broadcast_to(np.arange(n_trees)[:, None, None], (n_trees, m, n_s))[ok]
    series_of = np.broadcast_to(np.arange(n_s)[None, None, :], (n_trees, m, n_s))[ok]
    pair = tree_of * n_s + series_of
    cell = flat_rows  # each drawn sample's index into x_by_feature's columns
    node = np.zeros(pair.size, dtype=np.int64)
    for level in range(max_depth + 1):
        if pair.size == 0:
            break
        key = pair * n_heap + node
        order = np.argsort(key, kind="stable")
        pair, node, cell, key = pair[order], node[order], cell[order], key[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        sizes = np.diff(np.r_[starts, key.size])
        g_pair, g_node = pair[starts], node[starts]
        g_tree, g_series = g_pair // n_s, g_pair % n_s
        count[g_tree, g_series, g_node] = sizes
        group_of = np.repeat(np.arange(starts.size), sizes)
        f, f_lo, f_hi, varying = _split_features(
            x_by_feature, cell, group_of, starts, sizes, feat_rank[g_tree, g_node]
        )
        split = (sizes > 1) & varying & (level < depth_limit[g_series])
        thr = f_lo + thr_u[g_tree, g_node] * (f_hi - f_lo)
        thr = np.where(thr >= f_hi, f_lo, thr)
        sg = np.flatnonzero(split)
        left[g_tree[sg], g_series[sg], g_node[sg]] = 2 * g_node[sg] + 1
        feature[g_tree[sg], g_series[sg], g_node[sg]] = f[sg]
        threshold[g_tree[sg], g_series[sg], g_node[sg]] = thr[sg]
        # Move samples of split nodes to their child; drop the others (they reached a leaf).
        keep = split[group_of]
        gi = group_of[keep]
        pair, node, cell = pair[keep], node[keep], cell[keep]
        xv = x_by_feature[f[gi], cell].astype(np.float64)
        node = 2 * node + np.where(xv <= thr[gi], 1, 2)

    # Compact: renumber the nodes that exist in breadth-first order.
    exists = count > 0
    new_index = np.cumsum(exists, axis=2, dtype=np.int16) - 1
    n_nodes = max(int(exists.sum(axis=2).max(initial=1)), 1)
    is_inner = left >= 0
    safe_left = np.where(is_inner, left, 0)
    new_left = np.where(is_inner, np.take_along_axis(new_index, safe_left, axis=2), -1)
    new_right = np.where(is_inner, np.take_along_axis(new_index, safe_left + 1, axis=2), -1)
    t_idx, s_idx, h_idx = np.nonzero(exists)
    dest = new_index[t_idx, s_idx, h_idx]
    out = empty_trees((n_trees, n_nodes, n_s))
    out["children_left"][t_idx, dest, s_idx] = new_left[t_idx, s_idx, h_idx]
    out["children_right"][t_idx, dest, s_idx] = new_right[t_idx, s_idx, h_idx]
    out["feature"][t_idx, dest, s_idx] = feature[t_idx, s_idx, h_idx]
    out["threshold"][t_idx, dest, s_idx] = _float32_down(threshold[t_idx, s_idx, h_idx])
    out["n_node_samples"][t_idx, dest, s_idx] = count[t_idx, s_idx, h_idx]
    return out, n_drawn


def _split_features(
    x_by_feature: np.ndarray,
    cell: np.ndarray,
    group_of: np.ndarray,
    starts: np.ndarray,
    sizes: np.ndarray,
    rank: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each node's split feature: the first non-constant one in its random order ``rank``
    (shape (n_nodes, n_features)).

    Tries the features in key order and reduces only the samples of the nodes still
    undecided, so a level costs about one feature's min/max instead of all of them.

    Returns ``(feature, its min, its max, whether any feature varies)``, one entry per node
    (``feature`` is the lowest-key one and ``varying`` False where every feature is constant).
    """
    n_groups, n_feat = rank.shape
    f = rank[:, 0].copy()
    lo = np.zeros(n_groups)
    hi = np.zeros(n_groups)
    varying = np.zeros(n_groups, dtype=bool)
    todo = np.arange(n_groups)  # undecided nodes, ascending
    el = np.arange(cell.size)  # their samples, grouped by node
    el_group = group_of
    g_starts, g_sizes = starts, sizes
    slot = np.arange(n_groups)  # position of each undecided node in `todo`
    for r in range(n_feat):
        fr = rank[todo, r]
        v = x_by_feature[fr[slot[el_group]], cell[el]]
        v_lo = np.minimum.reduceat(v, g_starts).astype(np.float64)
        v_hi = np.maximum.reduceat(v, g_starts).astype(np.float64)
        found = v_hi > v_lo
        if r == 0:
            lo[todo], hi[todo] = v_lo, v_hi  # the first choice stands where nothing varies
        hit = todo[found]
        f[hit], lo[hit], hi[hit], varying[hit] = fr[found], v_lo[found], v_hi[found], True
        again = ~found & (g_sizes > 1)
        if not again.any():
            break
        el_keep = np.repeat(again, g_sizes)
        el, el_group = el[el_keep], el_group[el_keep]
        todo, g_sizes = todo[again], g_sizes[again]
        g_starts = np.r_[0, np.cumsum(g_sizes)[:-1]]
        slot[todo] = np.arange(todo.size)
    return f, lo, hi, varying


def _float32_down(thr64: np.ndarray) -> np.ndarray:
    """Largest float32 ``<= thr64``: then ``x <= t32`` equals ``x <= thr64`` for float32 ``x``."""
    thr32 = thr64.astype(np.float32)
    too_big = thr32.astype(np.float64) > thr64
    thr32[too_big] = np.nextafter(thr32[too_big], np.float32(-np.inf))
    return thr32
