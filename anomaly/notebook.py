"""Notebook helpers: scores and bands over a whole frame as one tidy DataFrame."""

from __future__ import annotations

import numpy as np
import pandas as pd

from anomaly.frame import Frame
from anomaly.models.scoring import AnomalyModel


def score_frame(
    frame: Frame, model: AnomalyModel | None = None, *, threshold: float = 0.5
) -> pd.DataFrame:
    """Fit (unless ``model`` is given) and score every row of ``frame``.

    Returns a long DataFrame with columns ``time, series, tenant, value, expected, lower,
    upper, score, is_anomaly``: one row per (time, series). The model is fitted on the whole
    frame, so this is an in-sample view for exploring; ``anomaly score-csv`` gives an honest
    walk-forward backtest.
    """
    if model is None:
        model = AnomalyModel(step_seconds=frame.step_seconds, threshold=threshold).fit(
            frame.times, frame.values
        )
    res = model.score_history(frame.times, frame.values)
    n_t, n_s = frame.values.shape
    names = [str(k) for k in frame.keys]
    return pd.DataFrame(
        {
            "time": np.repeat(pd.to_datetime(frame.times, unit="s", utc=True), n_s),
            "series": np.tile(names, n_t),
            "tenant": np.tile([k.tenant for k in frame.keys], n_t),
            "value": frame.values.ravel(),
            "expected": res.expected.ravel(),
            "lower": res.lower.ravel(),
            "upper": res.upper.ravel(),
            "score": res.score.ravel(),
            "is_anomaly": res.is_anomaly.ravel(),
        }
    )
