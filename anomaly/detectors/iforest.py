"""Isolation-forest evidence per series, stored as plain arrays and scored with numpy.

One :class:`sklearn.ensemble.IsolationForest` (seeded, the same seed for every series, so a
series' model does not depend on its position) is fitted per series on the seasonal
features; this per-series loop is the only one of the detectors. The fitted trees are then
copied into padded arrays of shape ``(n_trees, n_nodes, n_series)`` and scored by a
vectorised traversal that reproduces ``IsolationForest.score_samples`` (negated: our
``isolation_score`` is higher for more anomalous rows), so no pickle is ever needed.

Evidence is the isolation score relative to the series' own training distribution:
``(s - median) / (factor * (q99 - median))``; 1 = at the decision threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
from sklearn.ensemble import IsolationForest

from anomaly.detectors.features import (
    Field,
    check_state,
    concat_columns,
    nanmedian0,
    nanquantile0,
    scalar,
    select_columns,
)
from anomaly.errors import DataError

log = logging.getLogger(__name__)

_FIELDS: dict[str, Field] = {
    "threshold_factor": Field("f", 0, per_series=False),
    "children_left": Field("i", 3),
    "children_right": Field("i", 3),
    "feature": Field("i", 3),
    "threshold": Field("f", 3),
    "n_node_samples": Field("i", 3),
    "max_samples": Field("i", 1),
    "center": Field("f", 1, finite=True),
    "spread": Field("f", 1, finite=True),
    "valid": Field("b", 1),
    "reason": Field("U", 1),
}


def average_path_length(n: np.ndarray) -> np.ndarray:
    """Expected path length of an unsuccessful search in a BST of ``n`` nodes (iForest ``c(n)``)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    big = n > 2
    out[n == 2] = 1.0
    nb = n[big]
    out[big] = 2.0 * (np.log(nb - 1.0) + np.euler_gamma) - 2.0 * (nb - 1.0) / nb
    return out


class IsolationForestDetector:
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
    """

    def __init__(
        self,
        n_estimators: int = 50,
        max_samples: int = 128,
        random_state: int = 0,
        threshold_factor: float = 2.0,
        min_rows: int = 64,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state
        self.threshold_factor = threshold_factor
        self.min_rows = min_rows

    def fit(self, features: np.ndarray, valid: np.ndarray | None = None) -> IsolationForestDetector:
        """Fit one forest per series.

        Parameters
        ----------
        features : ndarray of shape (n_t, n_features, n_series)
            Rows whose first feature is NaN are skipped; other NaN become 0.
        valid : ndarray of bool, shape (n_series,), optional
            Series to skip (left unfitted, evidence 0).

        Returns
        -------
        self
        """
        if features.ndim != 3:
            raise ValueError(
                f"`features` must be 3-D (n_t, n_features, n_series), got {features.shape}"
            )
        if features.shape[1] > 127:
            raise ValueError(f"at most 127 features are supported, got {features.shape[1]}")
        n_t, n_feat, n_s = features.shape
        ok = np.ones(n_s, dtype=bool) if valid is None else np.asarray(valid, dtype=bool).copy()
        reason = np.full(n_s, "", dtype="<U64")
        reason[~ok] = "skipped by the baseline"
        trees: list[dict[str, np.ndarray] | None] = [None] * n_s
        max_samples = np.zeros(n_s, dtype=np.int64)
        for j in np.flatnonzero(ok):
            try:
                trees[j], n_drawn = self._fit_one(features[:, :, j])
                max_samples[j] = n_drawn
            except DataError as exc:
                ok[j] = False
                reason[j] = str(exc)
                log.info("isolation forest skips series %d: %s", j, exc)
        n_nodes = max([len(tr["feature"][0]) for tr in trees if tr is not None], default=1)
        shape = (self.n_estimators, n_nodes, n_s)
        self.children_left_ = np.full(shape, -1, dtype=np.int16)
        self.children_right_ = np.full(shape, -1, dtype=np.int16)
        self.feature_ = np.zeros(shape, dtype=np.int8)
        self.threshold_ = np.zeros(shape, dtype=np.float32)
        self.n_node_samples_ = np.zeros(shape, dtype=np.int16)
        for col, tr in enumerate(trees):
            if tr is None:
                continue
            m = tr["feature"].shape[1]
            self.children_left_[:, :m, col] = tr["children_left"]
            self.children_right_[:, :m, col] = tr["children_right"]
            self.feature_[:, :m, col] = tr["feature"]
            self.threshold_[:, :m, col] = tr["threshold"]
            self.n_node_samples_[:, :m, col] = tr["n_node_samples"]
        self.max_samples_ = max_samples
        self.valid_ = ok
        self.reason_ = reason
        self.center_ = np.zeros(n_s)
        self.spread_ = np.ones(n_s)
        # Calibrate on every other training row: quantiles need no more.
        s = self.isolation_score(features[::2])
        s[:, ~ok] = np.nan
        center = nanmedian0(s)
        spread = nanquantile0(s, 0.99) - center
        self.center_ = np.where(np.isfinite(center), center, 0.0)
        self.spread_ = np.where(np.isfinite(spread) & (spread > 1e-3), spread, 1e-3)
        return self

    def _fit_one(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], int]:
        rows = np.isfinite(x[:, 0])
        if np.count_nonzero(rows) < self.min_rows:
            raise DataError(
                f"too short: {int(np.count_nonzero(rows))} complete feature rows, need {self.min_rows}"
            )
        xs = np.nan_to_num(x[rows], nan=0.0, posinf=1e6, neginf=-1e6)
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, xs.shape[0]),
            random_state=self.random_state,
        ).fit(xs)
        return extract_trees(forest), int(forest.max_samples_)

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
        self._check_fitted()
        n_t, _, n_s = features.shape
        if n_s != self.valid_.shape[0]:
            raise ValueError(
                f"`features` has {n_s} series, the model was fitted on {self.valid_.shape[0]}"
            )
        rows_per_chunk = max(1, 2_000_000 // max(1, self.feature_.shape[0] * n_s))
        if n_t > rows_per_chunk:
            return np.concatenate(
                [
                    self.isolation_score(features[i : i + rows_per_chunk])
                    for i in range(0, n_t, rows_per_chunk)
                ]
            )
        x = np.nan_to_num(features, nan=0.0, posinf=1e6, neginf=-1e6).astype(np.float32)
        n_trees, n_nodes, _ = self.feature_.shape
        # Flat index of (tree, node, series) into the (n_trees, n_nodes, n_series) arrays.
        tree_base = (np.arange(n_trees) * n_nodes * n_s)[None, :, None]
        series = np.arange(n_s)[None, None, :]
        left = self.children_left_.ravel()
        right = self.children_right_.ravel()
        feat = self.feature_.ravel()
        thr = self.threshold_.ravel()
        node = np.zeros((n_t, n_trees, n_s), dtype=np.int64)
        depth = np.zeros((n_t, n_trees, n_s))
        rows = np.arange(n_t)[:, None, None]
        for _ in range(n_nodes):
            flat = tree_base + node * n_s + series
            child_l = left[flat]
            inner = child_l >= 0
            if not inner.any():
                break
            xv = x[rows, feat[flat], series]
            nxt = np.where(xv <= thr[flat], child_l, right[flat])
            node = np.where(inner, nxt, node)
            depth += inner
        flat = tree_base + node * n_s + series
        depth += average_path_length(self.n_node_samples_.ravel()[flat])
        mean_depth = depth.mean(axis=1)
        denom = average_path_length(self.max_samples_)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(denom > 0, 2.0 ** (-mean_depth / np.where(denom > 0, denom, 1.0)), 1.0)
        out[:, ~self.valid_] = 0.0
        return out

    def evidence(self, features: np.ndarray) -> np.ndarray:
        """Evidence from the isolation score; 1 = at the decision threshold.

        Parameters
        ----------
        features : ndarray of shape (n_t, n_features, n_series)

        Returns
        -------
        ndarray of shape (n_t, n_series)
            Finite, non-negative; 0 for unfitted series.
        """
        s = self.isolation_score(features)
        e = np.maximum(s - self.center_, 0.0) / (self.threshold_factor * self.spread_)
        e[:, ~self.valid_] = 0.0
        return e

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        """All fitted state as numpy arrays; per-series arrays have the series last."""
        self._check_fitted()
        return {
            "threshold_factor": np.array(float(self.threshold_factor)),
            "children_left": self.children_left_.copy(),
            "children_right": self.children_right_.copy(),
            "feature": self.feature_.copy(),
            "threshold": self.threshold_.copy(),
            "n_node_samples": self.n_node_samples_.copy(),
            "max_samples": self.max_samples_.copy(),
            "center": self.center_.copy(),
            "spread": self.spread_.copy(),
            "valid": self.valid_.copy(),
            "reason": self.reason_.copy(),
        }

    @classmethod
    def from_state(
        cls, state: Mapping[str, np.ndarray], prefix: str = ""
    ) -> IsolationForestDetector:
        """Rebuild a fitted detector from :meth:`get_state`.

        Raises
        ------
        DataError
            Missing keys, wrong dtypes or shapes, child indices out of range.
        """
        a = check_state(state, prefix, _FIELDS)
        det = cls(threshold_factor=scalar(a, "threshold_factor", 1e-6, 1e6))
        tree_shape = a["feature"].shape
        n_s = tree_shape[-1]
        for name in ("children_left", "children_right", "threshold", "n_node_samples"):
            if a[name].shape != tree_shape:
                raise DataError(
                    f"state `{prefix}{name}` has shape {a[name].shape}, expected {tree_shape}"
                )
        for name in ("max_samples", "center", "spread", "valid", "reason"):
            if a[name].shape != (n_s,):
                raise DataError(
                    f"state `{prefix}{name}` has shape {a[name].shape}, expected ({n_s},)"
                )
        n_nodes = tree_shape[1]
        for name in ("children_left", "children_right"):
            ch = a[name]
            if ch.size and (ch.min() < -1 or ch.max() >= n_nodes):
                raise DataError(f"state `{prefix}{name}` points outside the {n_nodes} nodes")
        if a["feature"].size and a["feature"].min() < 0:
            raise DataError(f"state `{prefix}feature` holds negative feature indices")
        if np.any(a["spread"] <= 0) or np.any(a["max_samples"] < 0):
            raise DataError(f"state `{prefix}spread` and `max_samples` must be positive")
        if not np.all(np.isfinite(a["threshold"])):
            raise DataError(f"state `{prefix}threshold` holds non-finite values")
        det.children_left_ = a["children_left"].astype(np.int16)
        det.children_right_ = a["children_right"].astype(np.int16)
        det.feature_ = a["feature"].astype(np.int8)
        det.threshold_ = a["threshold"].astype(np.float32)
        det.n_node_samples_ = a["n_node_samples"].astype(np.int16)
        det.max_samples_ = a["max_samples"].astype(np.int64)
        det.center_ = a["center"].astype(np.float64)
        det.spread_ = a["spread"].astype(np.float64)
        det.valid_ = a["valid"].astype(bool)
        det.reason_ = a["reason"].astype(str)
        return det

    def check_n_features(self, n_features: int) -> None:
        """Raise :class:`DataError` if a tree splits on a feature index ``>= n_features``."""
        if self.feature_.size and int(self.feature_.max()) >= n_features:
            raise DataError(
                f"isolation trees use feature {int(self.feature_.max())}, only {n_features} exist"
            )

    def select(self, columns: np.ndarray) -> IsolationForestDetector:
        """A fitted detector restricted to ``columns`` (indices or boolean mask)."""
        return type(self).from_state(select_columns(self.get_state(), _FIELDS, columns))

    @classmethod
    def concat(cls, detectors: list[IsolationForestDetector]) -> IsolationForestDetector:
        """Fitted detectors side by side, series in order (trees padded to a common size)."""
        if not detectors:
            raise ValueError("`detectors` must not be empty")
        states = [d.get_state() for d in detectors]
        n_nodes = max(s["feature"].shape[1] for s in states)
        for s in states:
            pad = n_nodes - s["feature"].shape[1]
            if pad:
                for name, fill in (
                    ("children_left", -1),
                    ("children_right", -1),
                    ("feature", 0),
                    ("threshold", 0),
                    ("n_node_samples", 0),
                ):
                    s[name] = np.pad(s[name], ((0, 0), (0, pad), (0, 0)), constant_values=fill)
        return cls.from_state(concat_columns(states, _FIELDS))

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_"):
            raise AttributeError(f"{type(self).__name__} is not fitted; call fit() first")


def extract_trees(forest: IsolationForest) -> dict[str, np.ndarray]:
    """Copy a fitted forest's trees into padded arrays of shape (n_trees, n_nodes).

    Thresholds become float32 rounded toward -inf: for float32 inputs (which is what sklearn
    trees compare), ``x <= t32`` is then exactly ``x <= t64``.
    """
    trees = [est.tree_ for est in forest.estimators_]
    n_nodes = max(t.node_count for t in trees)
    n_trees = len(trees)
    out = {
        "children_left": np.full((n_trees, n_nodes), -1, dtype=np.int16),
        "children_right": np.full((n_trees, n_nodes), -1, dtype=np.int16),
        "feature": np.zeros((n_trees, n_nodes), dtype=np.int8),
        "threshold": np.zeros((n_trees, n_nodes), dtype=np.float32),
        "n_node_samples": np.zeros((n_trees, n_nodes), dtype=np.int16),
    }
    for i, (t, feats) in enumerate(zip(trees, forest.estimators_features_, strict=True)):
        m = t.node_count
        leaf = t.children_left[:m] < 0
        out["children_left"][i, :m] = t.children_left[:m]
        out["children_right"][i, :m] = t.children_right[:m]
        out["feature"][i, :m] = np.where(leaf, 0, np.asarray(feats)[np.maximum(t.feature[:m], 0)])
        thr64 = t.threshold[:m]
        thr32 = thr64.astype(np.float32)
        too_big = thr32.astype(np.float64) > thr64
        thr32[too_big] = np.nextafter(thr32[too_big], np.float32(-np.inf))
        out["threshold"][i, :m] = np.where(leaf, 0, thr32)
        out["n_node_samples"][i, :m] = t.n_node_samples[:m]
    return out
