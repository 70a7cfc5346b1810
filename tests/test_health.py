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


def test_more_breaches_and_anomalies_always_score_lower() -> None:
    """The count of breaches outranks their size; one more anomalous metric always lowers."""
    one_big = tenant_health(CFG, "a", {**HEALTHY, "error_ratio": [0.05]}, {}).score
    two_mild = tenant_health(
        CFG, "b", {**HEALTHY, "error_ratio": [0.0051], "latency_p95": [2.01]}, {}
    ).score
    assert two_mild < one_big
    scores = [
        tenant_health(CFG, "c", HEALTHY, dict.fromkeys(metrics, 1.0)).score
        for metrics in ([], ["a"], ["a", "b"], ["a", "b", "c"], ["a", "b", "c", "d", "e"])
    ]
    assert all(x > y for x, y in zip(scores, scores[1:], strict=False))
    assert scores[-1] > 0.0


values = st.floats(-10.0, 10.0)
trouble = st.sampled_from(["anomaly", "higher_score", "latency_up", "completion_down"])


@given(
    lat=values,
    err=values,
    comp=values,
    scores=st.dictionaries(st.sampled_from(["latency_p95", "error_ratio", "x"]), st.floats(0, 1)),
    change=trouble,
    amount=st.floats(0.0, 5.0),
)
def test_adding_trouble_never_raises_the_score(
    lat: float, err: float, comp: float, scores: dict[str, float], change: str, amount: float
) -> None:
    current = {"latency_p95": [lat], "error_ratio": [err], "completion": [comp]}
    before = tenant_health(CFG, "t", current, scores)
    worse_current = {k: list(v) for k, v in current.items()}
    worse_scores = dict(scores)
    if change == "anomaly":
        worse_scores["new_metric"] = min(1.0, amount / 5.0)
    elif change == "higher_score":
        for k in worse_scores:
            worse_scores[k] = min(1.0, worse_scores[k] + amount / 5.0)
    elif change == "latency_up":
        worse_current["latency_p95"] = [lat + amount]
    else:
        worse_current["completion"] = [comp - amount]
    after = tenant_health(CFG, "t", worse_current, worse_scores)
    assert after.score <= before.score + 1e-9
    for name in ("objectives", "anomalies"):
        assert after.components[name] <= before.components[name] + 1e-9


def test_graded_trouble_orders_tenants_through_the_real_scoring_path() -> None:
    """The benchmark's scenario, one seed: detectors on synth data, then the shipped objectives."""
    from bench.health_bench import pair_accuracy, score_seed

    health = HealthConfig(
        objectives=(
            Objective("latency_p95", max=2.0),
            Objective("error_ratio", max=0.005),
            Objective("completion", min=0.8),
            Objective("ai_spend_24h", max=100.0),
        )
    )
    results = score_seed(3, 18, health)
    rows = [(h.score, breached, anomalous) for h, breached, anomalous, _, _ in results]
    good, total = pair_accuracy(rows, lexicographic=False)
    assert total > 50
    assert good / total >= 0.9
    healthy = [h.score for h, b, a, _, _ in results if (b, a) == (0, 0)]
    troubled = [h.score for h, b, a, _, _ in results if b >= 1]
    assert healthy and troubled and max(troubled) < min(healthy) - 20


def test_an_outage_of_an_objective_metric_breaches_it_whatever_its_direction() -> None:
    healthy = tenant_health(CFG, "a", HEALTHY, {}).score
    # During an outage the latency and the error ratio read 0, which "meets" their maximum.
    silent = {**HEALTHY, "latency_p95": [0.0], "error_ratio": [0.0]}
    assert tenant_health(CFG, "b", silent, {}).score == healthy
    out = tenant_health(CFG, "c", silent, {}, outages={"latency_p95", "error_ratio"})
    assert out.components["objective:latency_p95"] == out.components["objective:error_ratio"]
    assert out.score < tenant_health(CFG, "d", {**HEALTHY, "latency_p95": [3.0]}, {}).score
    # An objective whose metric has no value now (absent) counts when it is out, too.
    absent = {k: v for k, v in HEALTHY.items() if k != "completion"}
    assert tenant_health(CFG, "e", absent, {}, outages={"completion"}).score < healthy


def test_is_out_reads_zeros_and_silence_where_values_were() -> None:
    import numpy as np

    from anomaly.job.run import is_out

    normal = np.full(100, 0.4)
    assert not is_out(normal)
    assert is_out(np.r_[normal[:-3], 0.0, 0.0, 0.0])
    assert is_out(np.r_[normal[:-3], np.nan, np.nan, np.nan])
    assert not is_out(np.r_[normal[:-3], 0.4, np.nan, 0.0])  # one zero is no outage
    assert not is_out(np.zeros(100))  # a series that is normally 0 is not out at 0
    # A failure counter that is 0 in a tenth of its hours, in runs, is not out at 0; a
    # request rate with one 2-hour outage in its week is out at the next.
    rng = np.random.default_rng(7)
    hours = np.repeat(rng.poisson(4.0, 24 * 7).astype(float), 12)
    hours[rng.random(hours.size) < 0.1] = 0.0
    sparse = np.where(np.repeat(rng.random(24 * 7) < 0.1, 12), 0.0, hours)
    assert 0.05 < np.mean(sparse == 0) < 0.3 and np.median(sparse) > 0
    assert not is_out(np.r_[sparse, 0.0, 0.0, 0.0])
    rate = 50.0 + rng.normal(0, 2, 12 * 24 * 7)
    rate[1000:1024] = 0.0
    assert is_out(np.r_[rate, 0.0, 0.0, 0.0])
    assert is_out(np.r_[rate, np.nan, np.nan, np.nan])
    # Silence before a series' first value is no history of outages.
    assert is_out(np.r_[np.full(5000, np.nan), normal, 0.0, 0.0, 0.0])
