"""Threshold rules on the seasonal features: a detector (:class:`RuleDetector`).

Each rule compares one feature of :data:`~anomaly.models.seasonal.FEATURE_NAMES` with its own
threshold; the evidence is the largest ratio,

    ``evidence = max_k |f_k| / (threshold_k * calibration_k)``

so 1 means "at the decision threshold": the point residual ``z`` against
``point_threshold``, the trailing means of ``z`` against ``mean_threshold``, the variance
ratio (upwards only) against ``var_threshold``, and the surprise of a run of still values
(repeated, or moving far less than the series normally does) or of missing values where the
series always reports, against ``stuck_threshold_nats`` (narrowed for a series whose training
week never held still for long: twice its most surprising run there, at least 12 nats).
``calibration_k >= 1`` widens a
feature's threshold for a series whose training distribution of that feature has heavier
tails than a Gaussian (its 95th percentile of ``|f_k|`` over 1.96); the point threshold also
covers the typical day's 99.5th percentile where that lies far beyond a Gaussian's (a series
whose single points jump every day).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from anomaly.errors import DataError
from anomaly.models.base import SERIES, Detector, Field, check_features, param, valid_series
from anomaly.models.features import nanmedian0, nanquantile0
from anomaly.models.seasonal import FEATURE_NAMES, N_FEATURES

#: The rules of :meth:`RuleDetector.rule_evidence`, by the feature each one reads.
RULE_NAMES = ("point", "mean_6", "mean_12", "mean_36", "variance", "still")
#: Features whose tails are calibrated (two-sided q95 against a Gaussian's 1.96).
_CALIBRATED = (0, 1, 2, 3, 4)
#: A Gaussian's two-sided 99.5th percentile.
_Q995_GAUSS = 2.807
#: How much heavier than a Gaussian's a typical day's tail must be to set the point threshold.
_HEAVY = 1.5
#: A still run reaches the threshold at this many times the most surprising one in training,
#: and never below :data:`_STUCK_FLOOR_NATS` (nats).
_STUCK_MARGIN = 2.0
_STUCK_FLOOR_NATS = 12.0


class RuleDetector(Detector):
    """Per-feature thresholds on the seasonal features, calibrated per series.

    Parameters
    ----------
    point_threshold, mean_threshold, var_threshold : float
        Normalised feature values (about "sigmas") at which a point / a trailing mean / the
        variance ratio alone reaches the decision threshold.
    stuck_threshold_nats : float
        Surprise (nats) of a run of still values that alone reaches the threshold.
    """

    state_fields: ClassVar[dict[str, Field]] = {
        "point_threshold": param(1e-6, 1e6),
        "mean_threshold": param(1e-6, 1e6),
        "var_threshold": param(1e-6, 1e6),
        "stuck_threshold_nats": param(1e-6, 1e9),
        "calibration": Field(np.float64, (N_FEATURES, SERIES), finite=True),
        "valid": Field(np.bool_, (SERIES,)),
    }

    def __init__(
        self,
        point_threshold: float = 5.0,
        mean_threshold: float = 5.5,
        var_threshold: float = 4.0,
        stuck_threshold_nats: float = 25.0,
        block_rows: int = 288,
    ) -> None:
        self.point_threshold = point_threshold
        self.mean_threshold = mean_threshold
        self.var_threshold = var_threshold
        self.stuck_threshold_nats = stuck_threshold_nats
        self.block_rows = block_rows

    def fit(self, features: np.ndarray, valid: np.ndarray | None = None) -> RuleDetector:
        """Calibrate the thresholds on the tails of each series' training features
        (:meth:`~anomaly.models.seasonal.SeasonalBaseline.features` of the training rows); see
        :meth:`Detector.fit <anomaly.models.base.Detector.fit>`."""
        check_features(features)
        if features.shape[1] != N_FEATURES:
            raise ValueError(_n_features_message(features.shape[1]))
        n_s = features.shape[2]
        self.valid_ = valid_series(valid, n_s)
        self.calibration_ = np.ones((N_FEATURES, n_s))
        q95 = nanquantile0(np.abs(features[:, _CALIBRATED, :]), 0.95)
        self.calibration_[_CALIBRATED, :] = np.where(
            np.isfinite(q95), np.maximum(1.0, q95 / 1.96), 1.0
        )
        # Single points that jump far every day (a p95 read off histogram buckets jumps when
        # the quantile crosses a bucket's bound) are that series' normal: where the typical
        # day's 99.5th percentile lies beyond a Gaussian's by :data:`_HEAVY`, the point
        # threshold covers it. A typical day's, so a past incident (one day's worth of far
        # points) does not widen it; a tail only a little heavier than a Gaussian's (counts,
        # rounding) is left to the 95th percentile.
        tail = _daily_tail(np.abs(features[:, 0, :]), self.block_rows) / _Q995_GAUSS
        with np.errstate(invalid="ignore"):
            heavy = np.isfinite(tail) & (tail >= _HEAVY)
        self.calibration_[0] = np.where(
            heavy, np.maximum(self.calibration_[0], tail), self.calibration_[0]
        )
        # A run of still values is judged against the runs of the series' own week: at
        # :data:`_STUCK_MARGIN` times the most surprising one in training, between
        # :data:`_STUCK_FLOOR_NATS` and ``stuck_threshold_nats``. An integer gauge whose value
        # repeats every few steps (2 nats a repeat) reaches 25 nats only after an hour held;
        # where its week never held a value for 20 minutes, 40 minutes held is a flatline.
        still = np.where(np.isfinite(features[:, 5, :]), features[:, 5, :], 0.0)
        top = np.max(still, axis=0, initial=0.0)
        self.calibration_[5] = np.clip(
            _STUCK_MARGIN * top / self.stuck_threshold_nats,
            min(_STUCK_FLOOR_NATS / self.stuck_threshold_nats, 1.0),
            1.0,
        )
        return self

    def evidence(self, features: np.ndarray) -> np.ndarray:
        """The largest ratio of a feature to its threshold (NaN features count 0); see
        :meth:`Detector.evidence <anomaly.models.base.Detector.evidence>`."""
        out = np.max(self.rule_evidence(features), axis=0)
        return np.where(np.isfinite(out), out, np.where(np.isnan(out), 0.0, np.inf))

    def rule_evidence(self, features: np.ndarray) -> np.ndarray:
        """Each rule's ratio of its feature to its threshold, in the order of
        :data:`RULE_NAMES`, shape ``(n_rules, n_rows, n_series)`` (NaN features count 0, an
        invalid series 0 throughout): which rule a row's evidence came from."""
        self._check_scoring(features)
        cal = self.calibration_
        parts = [
            np.abs(features[:, 0]) / (self.point_threshold * cal[0]),
            np.abs(features[:, 1]) / (self.mean_threshold * cal[1]),
            np.abs(features[:, 2]) / (self.mean_threshold * cal[2]),
            np.abs(features[:, 3]) / (self.mean_threshold * cal[3]),
            np.maximum(features[:, 4], 0.0) / (self.var_threshold * cal[4]),
            features[:, 5] / (self.stuck_threshold_nats * cal[5]),
        ]
        stacked = np.stack(parts, axis=0)
        stacked = np.where(np.isnan(stacked), 0.0, stacked)
        stacked[:, :, ~self.valid_] = 0.0
        return stacked

    def band_sigmas(self) -> np.ndarray:
        """Half-width of the point band in noise scales, shape (n_series,): a value beyond it
        alone reaches the decision threshold (see
        :meth:`~anomaly.models.seasonal.SeasonalBaseline.bands`)."""
        self._check_fitted()
        return self.point_threshold * self.calibration_[0]

    def check_n_features(self, n_features: int) -> None:
        if n_features != N_FEATURES:
            raise DataError(_n_features_message(n_features))

    @classmethod
    def _check_arrays(
        cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, float], prefix: str
    ) -> None:
        cal = arrays["calibration"]
        if np.any(np.delete(cal, 5, axis=0) < 1) or np.any(cal[5] <= 0) or np.any(cal[5] > 1):
            raise DataError(
                f"state `{prefix}calibration` must be at least 1 (in (0, 1] for the still runs)"
            )


def _daily_tail(a: np.ndarray, block_rows: int) -> np.ndarray:
    """Median over blocks of ``block_rows`` rows (days) of each block's 99.5th percentile of
    ``a`` (n_t, n_series); blocks with fewer than half their rows finite are skipped (NaN
    where none is left)."""
    n_t, n_s = a.shape
    size = max(int(block_rows), 1)
    n_blocks = n_t // size
    if n_blocks == 0:
        return np.full(n_s, np.nan)
    blocks = a[n_t - n_blocks * size :].reshape(n_blocks, size, n_s).transpose(1, 0, 2)
    q = nanquantile0(blocks, 0.995)  # (n_blocks, n_s)
    enough = np.sum(np.isfinite(blocks), axis=0) >= size // 2
    return nanmedian0(np.where(enough, q, np.nan))


def _n_features_message(n_features: int) -> str:
    return (
        f"the threshold rules read the {N_FEATURES} features {', '.join(FEATURE_NAMES)}, "
        f"got {n_features}"
    )
