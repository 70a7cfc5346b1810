"""The score mapping and the decision rule."""

from __future__ import annotations

import numpy as np

from anomaly.models.scoring import evidence_to_score


def test_evidence_one_is_the_default_threshold() -> None:
    assert evidence_to_score(np.array([1.0]))[0] == 0.5


def test_score_is_monotone_bounded_and_never_nan() -> None:
    e = np.array([np.nan, -1.0, 0.0, 0.5, 1.0, 2.0, 1e300, np.inf])
    s = evidence_to_score(e)
    assert np.all(np.isfinite(s)) and np.all((s >= 0) & (s <= 1))
    assert s[0] == 0 and s[1] == 0 and s[2] == 0
    assert np.all(np.diff(s[2:]) >= 0) and s[-1] == 1.0
