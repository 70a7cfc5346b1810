"""The notebook API: a configured metric's frame from Prometheus (:func:`fetch_frame`), a
model fitted and scored on it (:func:`detect`), and scores and bands over a whole frame as one
tidy DataFrame (:func:`score_frame`). The job reads and scores with the same functions
(:mod:`anomaly.job.metric`)."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from anomaly.config import Config, MetricConfig
from anomaly.frame import Frame
from anomaly.io.prometheus import PrometheusSource
from anomaly.job.metric import read_frame
from anomaly.models.scoring import AnomalyModel, ScoreResult


def fetch_frame(
    config: Config,
    metric: str | MetricConfig,
    *,
    now: float | None = None,
    source: PrometheusSource | None = None,
    tenants: Collection[str] | None = None,
) -> Frame:
    """Query one configured metric (by name) over the lookback and align it on the run's grid.

    ``now`` defaults to the current time; ``source`` to a connection to ``config.prometheus``.
    With ``tenants``, only their series (see :func:`anomaly.job.metric.read_frame`).
    """
    mc = config.metric(metric) if isinstance(metric, str) else metric
    if source is not None:
        return read_frame(config, mc, now=now, source=source, tenants=tenants)
    with PrometheusSource(config.prometheus) as own:
        return read_frame(config, mc, now=now, source=own, tenants=tenants)


def detect(
    frame: Frame,
    model: AnomalyModel | None = None,
    *,
    threshold: float = 0.5,
    n_eval: int = 1,
    random_state: int = 0,
    bucketed: bool = False,
) -> tuple[AnomalyModel, ScoreResult]:
    """Fit a model on ``frame`` unless one is given, and score the newest ``n_eval`` rows.

    ``bucketed``: the frame is a quantile read off histogram buckets; the job sets it for a
    metric whose query does (:func:`anomaly.io.promql.reads_bucket_quantile`)."""
    if model is None:
        model = AnomalyModel(
            step_seconds=frame.step_seconds,
            threshold=threshold,
            random_state=random_state,
            bucketed=bucketed,
        ).fit(frame.times, frame.values)
    return model, model.score(frame.times, frame.values, n_eval=n_eval)


def score_frame(
    frame: Frame,
    model: AnomalyModel | None = None,
    *,
    threshold: float = 0.5,
    bucketed: bool = False,
) -> pd.DataFrame:
    """Fit (unless ``model`` is given) and score every row of ``frame``.

    Returns a long DataFrame with columns ``time, series, tenant, value, expected, lower,
    upper, score, is_anomaly``: one row per (time, series). The model is fitted on the whole
    frame, so this is an in-sample view for exploring; ``anomaly score-csv`` gives an honest
    walk-forward backtest. ``bucketed`` as in :func:`detect`.
    """
    if model is None:
        model = AnomalyModel(
            step_seconds=frame.step_seconds, threshold=threshold, bucketed=bucketed
        ).fit(frame.times, frame.values)
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
