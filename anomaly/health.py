"""Per-tenant health score (0..100) from SLO objectives and current anomalies.

The score is explainable: each tenant gets components that a person can read off a dashboard.

- ``objective:<metric>``: 100 when the objective is met; when breached, at most 50 and
  falling with the size of the breach towards 35 (``35 + 15 * exp(-relative_excess)``). The
  count of breached objectives matters more than how far one is breached: two mild breaches
  are more trouble than one big one.
- ``objectives``: the product of the objective components as fractions of 100, each raised
  to its objective's weight: every breached objective at least halves it (100 if none apply).
- an outage of an objective's metric (no value, or zeros where there normally are values)
  breaches it fully (35), whatever its direction: a latency of 0 or an error ratio of 0
  during an outage is nothing measured, not an objective met.
- ``anomalies``: the product over the tenant's anomalous metrics of ``1 - score / 2``: every
  anomalous metric takes a quarter to a half away (a flagged score is in [0.5, 1]); 100 with
  none. The score is the highest of the run, or what is left of one flagged in the last
  hour (weighed down linearly with its age), so trouble does not vanish between runs.
  Neither component reaches 0, so one more breach or anomaly always lowers the score.
- the score: the weighted mean of ``objectives`` and ``anomalies`` (``health.weights``).

Adding trouble - a breach, a larger breach, one more anomalous metric, a higher anomaly score -
never raises a component or the score.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from anomaly.config import HealthConfig, Objective

#: An objective's component when its metric is out: the floor of a breach.
OUTAGE_SCORE = 35.0


@dataclass(frozen=True)
class TenantHealth:
    """One tenant's score and the components that explain it."""

    tenant: str
    score: float
    components: Mapping[str, float]
    data_age_seconds: float = math.nan
    """How old the oldest of the newest values the score reads is (NaN: unknown)."""


def objective_score(objective: Objective, value: float) -> float:
    """100 when ``value`` meets the objective; in (35, 50] and falling as the breach grows."""
    if not math.isfinite(value):
        return 100.0
    excess = 0.0
    if objective.max is not None and value > objective.max:
        excess = (value - objective.max) / max(abs(objective.max), 1e-12)
    elif objective.min is not None and value < objective.min:
        excess = (objective.min - value) / max(abs(objective.min), 1e-12)
    else:
        return 100.0
    return 35.0 + 15.0 * math.exp(-excess)


def worst_value(objective: Objective, values: list[float]) -> float:
    """The value that matters for an objective among a tenant's series of that metric."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan
    return max(finite) if objective.max is not None else min(finite)


def tenant_health(
    config: HealthConfig,
    tenant: str,
    current: Mapping[str, list[float]],
    anomaly_scores: Mapping[str, float],
    outages: Collection[str] = (),
    data_age_seconds: float = math.nan,
) -> TenantHealth:
    """Score one tenant.

    Parameters
    ----------
    current : metric name -> newest values of the tenant's series of that metric
    anomaly_scores : metric name -> the tenant's anomaly trouble in that metric: the highest
        score among its flagged series, or what is left of a recent one (metrics without an
        anomaly are absent or 0)
    outages : metrics whose series are out (no value, or zeros where there normally are
        values): an outage breaches the metric's objective fully, whatever its direction (a
        latency of 0 is no latency met)
    data_age_seconds : how old the oldest of the newest values behind ``current`` is, kept
        on the result (a score read off old data says so beside it)
    """
    components: dict[str, float] = {}
    objectives = 1.0
    for obj in config.objectives:
        if obj.metric in outages:
            s = OUTAGE_SCORE
        elif obj.metric not in current:
            continue
        else:
            value = worst_value(obj, current[obj.metric])
            if not math.isfinite(value):
                continue
            s = objective_score(obj, value)
        components[f"objective:{obj.metric}"] = s
        objectives *= (s / 100.0) ** max(obj.weight, 0.0)
    components["objectives"] = 100.0 * objectives
    anomalies = 1.0
    for score in anomaly_scores.values():
        if math.isfinite(score):
            anomalies *= 1.0 - 0.5 * min(max(score, 0.0), 1.0)
    components["anomalies"] = 100.0 * anomalies
    ow, aw = config.objective_weight, config.anomaly_weight
    score = (ow * components["objectives"] + aw * components["anomalies"]) / (ow + aw)
    return TenantHealth(tenant, min(100.0, max(0.0, score)), components, data_age_seconds)


def global_health(tenants: list[TenantHealth]) -> float:
    """Across tenants: the mean, pulled towards the worst tenant (so one sick tenant shows)."""
    if not tenants:
        return 100.0
    scores = [t.score for t in tenants]
    return 0.5 * (sum(scores) / len(scores)) + 0.5 * min(scores)
