"""Health scores: bounded, explainable, and lower for tenants in more trouble."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from anomaly.config import HealthConfig, Objective
from anomaly.health import global_health, objective_score, tenant_health

CFG = HealthConfig(
    objectives=(
        Objective("latency_p95", max=2.0),
        Objective("error_ratio", max=0.005),
        Objective("completion", min=0.8),
    )
)
HEALTHY = {"latency_p95": [0.5], "error_ratio": [0.001], "completion": [0.95]}


def test_healthy_tenant_scores_100() -> None:
    h = tenant_health(CFG, "org-a", HEALTHY, {})
    assert h.score == 100.0
    assert h.components["objectives"] == 100.0 and h.components["anomalies"] == 100.0


def test_breach_and_anomalies_lower_the_score_in_order() -> None:
    healthy = tenant_health(CFG, "a", HEALTHY, {}).score
    one_anomaly = tenant_health(CFG, "b", HEALTHY, {"latency_p95": 0.8}).score
    breached = tenant_health(CFG, "c", {**HEALTHY, "latency_p95": [3.0]}, {}).score
    both = tenant_health(
        CFG, "d", {**HEALTHY, "latency_p95": [3.0]}, {"latency_p95": 0.9, "error_ratio": 0.9}
    ).score
    assert healthy > one_anomaly > both
    assert healthy > breached > both
    assert breached <= 70.0


def test_components_explain_the_breach() -> None:
    h = tenant_health(CFG, "a", {**HEALTHY, "completion": [0.5, 0.97]}, {})
    assert h.components["objective:completion"] < 50
    assert h.components["objective:latency_p95"] == 100.0


def test_objective_score_direction() -> None:
    assert objective_score(Objective("x", max=1.0), 0.9) == 100.0
    assert objective_score(Objective("x", max=1.0), 1.5) < 50
    assert objective_score(Objective("x", min=1.0), 0.5) < 50
    assert objective_score(Objective("x", min=1.0), math.nan) == 100.0


finite = st.floats(allow_nan=True, allow_infinity=True)


@given(
    lat=st.lists(finite, max_size=3),
    err=st.lists(finite, max_size=3),
    scores=st.dictionaries(st.sampled_from(["latency_p95", "error_ratio", "x"]), st.floats(0, 1)),
)
def test_health_always_in_range(
    lat: list[float], err: list[float], scores: dict[str, float]
) -> None:
    h = tenant_health(CFG, "t", {"latency_p95": lat, "error_ratio": err}, scores)
    assert 0.0 <= h.score <= 100.0
    assert all(0.0 <= v <= 100.0 for v in h.components.values())
    assert 0.0 <= global_health([h]) <= 100.0
