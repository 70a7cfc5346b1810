"""The notebook API from the README: a DataFrame in, bands and scores out."""

from __future__ import annotations

import numpy as np
from anomaly_lab import synth

import anomaly


def _dataset() -> synth.Dataset:
    end = 1795305600.0 + 14 * 3600  # a Sunday afternoon, UTC
    spike = synth.ending_injection("org-02", "latency_p95", "level_shift", end=end, magnitude=1.0)
    return synth.generate(3, days=8.0, end=end, seed=5, injections=[spike])


def test_score_frame_from_a_dataframe() -> None:
    ds = _dataset()
    frame = anomaly.frame_from_dataframe(synth.to_frame(ds, "latency_p95"), "latency_p95")
    assert frame.values.shape == (len(ds.timestamps), 3)
    table = anomaly.score_frame(frame)
    assert list(table.columns) == [
        "time",
        "series",
        "tenant",
        "value",
        "expected",
        "lower",
        "upper",
        "score",
        "is_anomaly",
    ]
    assert len(table) == len(ds.timestamps) * 3
    assert table["score"].between(0, 1).all()
    newest = table[table["time"] == table["time"].max()].set_index("tenant")
    assert bool(newest.loc["org-02", "is_anomaly"])
    assert not newest.loc[["org-01", "org-03"], "is_anomaly"].any()
    assert newest.loc["org-02", "value"] > newest.loc["org-02", "upper"]


def test_detect_returns_the_model_and_newest_scores() -> None:
    ds = _dataset()
    frame = anomaly.frame_from_dataframe(synth.to_frame(ds, "latency_p95"), "latency_p95")
    model, result = anomaly.detect(frame)
    assert result.score.shape == (1, 3)
    np.testing.assert_array_equal(result.is_anomaly[0], [False, True, False])
    # The fitted model is reusable: scoring again gives the same answer.
    again = model.score(frame.times, frame.values, n_eval=1)
    np.testing.assert_array_equal(again.score, result.score)
