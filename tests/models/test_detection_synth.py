"""End-to-end quality on the project's own synthetic tenants (:mod:`anomaly_lab.synth`)."""

from __future__ import annotations

import numpy as np
import pytest
from anomaly_lab import synth

from anomaly.models.scoring import AnomalyModel


def _as_queried(data: synth.Dataset, metric: str) -> np.ndarray:
    """The matrix the job reads: counters through ``rate(...[15m]) * 3600``."""
    values = data.matrix(metric)
    if synth.METRICS[metric].type != "counter":
        return values
    rate = np.full_like(values, np.nan)
    rate[3:] = (values[3:] - values[:-3]) / (3 * data.step_seconds) * 3600
    return rate


@pytest.mark.parametrize("seed", [0, 1])
def test_evaluation_scenario_precision_and_recall(seed: int) -> None:
    end = 1767571200.0 + 28 * 86400 + (seed * 5003 % 2016) * 300
    data, truth = synth.evaluation_scenario(seed=seed, end=end)
    found: set[tuple[str, str]] = set()
    for metric in synth.METRICS:
        values = _as_queried(data, metric)
        result = AnomalyModel().fit(data.timestamps, values).score(data.timestamps, values)
        found |= {
            (t, metric) for t, hit in zip(data.tenants, result.is_anomaly[-1], strict=True) if hit
        }
    precision = len(found & truth) / max(len(found), 1)
    recall = len(found & truth) / len(truth)
    assert precision >= 0.9, sorted(found - truth)
    assert recall >= 0.85, sorted(truth - found)


def test_stuck_counter_rate_is_flagged() -> None:
    # A stalled spend rate reaches us as a rate of a counter: equal up to float rounding.
    end = 1767571200.0 + 30 * 86400 + 13 * 3600
    tenants = synth.tenant_names(8)
    injections = [
        synth.ending_injection(t, "ai_cost", "flatline", end=end, duration_seconds=5400)
        for t in tenants[:4]
    ]
    data = synth.generate(tenants, days=8.0, seed=3, end=end, injections=injections)
    values = _as_queried(data, "ai_cost")
    result = AnomalyModel().fit(data.timestamps, values).score(data.timestamps, values)
    assert result.is_anomaly[-1].tolist() == [True] * 4 + [False] * 4
