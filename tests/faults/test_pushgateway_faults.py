"""The Pushgateway unreachable or rejecting, through ``anomaly run --once`` against a real
Prometheus and a real Pushgateway behind :class:`~tests.faults.proxy.FaultProxy`: bounded
retries with backoff, the timeout holds, one line naming the URL, exit 1, and no mixed state
(see :mod:`anomaly.io.pushgateway`, "Replace semantics").

The refused-connection case with default settings is also in tests/e2e/test_failures.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from anomaly_lab import devstack

from tests.faults.conftest import Result, samples, snapshot
from tests.faults.proxy import Fault, FaultProxy
from tests.faults.world import NORMAL_METRIC, TENANT, World, config_for

pytestmark = pytest.mark.e2e

FAST = {"timeout_seconds": 1, "retries": 2, "retry_backoff_seconds": 0.1}


def _puts(proxy: FaultProxy) -> list[float]:
    return [s.at for s in proxy.seen if s.method == "PUT"]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (None, "connection refused (after 3 attempts)"),
        (Fault.status(500), "(HTTP 500)"),
        (Fault.status(503), "(HTTP 503)"),
        (Fault.hang(), "no answer within 1s (timed out) (after 3 attempts)"),
        (Fault.drop(), "(after 3 attempts)"),
    ],
    ids=["refused", "500", "503", "hang", "drop"],
)
def test_failing_pushgateway_fails_the_run_in_one_line(
    world: World,
    tmp_path: Path,
    anomaly: Callable[..., Result],
    fault: Fault | None,
    message: str,
) -> None:
    job = f"faults_pg_down_{fault.kind if fault else 'refused'}"
    with FaultProxy(world.stack.pushgateway_url) as proxy:
        proxy.fault = lambda seen, n: fault
        url = proxy.url if fault else f"http://127.0.0.1:{devstack.free_port()}"
        config = config_for(tmp_path / "c.yaml", world, job=job, pushgateway={"url": url, **FAST})
        result = anomaly("run", "--once", "--config", str(config), "--at", str(world.end))
        line = result.assert_fails_in_one_line(f"Pushgateway at {url}", message)
        puts = _puts(proxy)
    assert line.startswith(("anomaly: cannot reach Pushgateway", "anomaly: Pushgateway at"))
    assert snapshot(world.stack.pushgateway_url, job) == {}
    if fault is not None:
        # Bounded: the first group's PUT is tried 1 + retries times, with 0.1 s, 0.2 s backoff,
        # and the run stops there.
        assert len(puts) == 3, puts
        gaps = [b - a for a, b in zip(puts, puts[1:], strict=False)]
        timeout = 1.0 if fault.kind == "hang" else 0.0
        slack = 0.05  # clocks and the client's timer are not exact
        assert gaps[0] >= timeout + 0.1 - slack and gaps[1] >= timeout + 0.2 - slack, gaps
        assert gaps[1] > gaps[0], gaps  # the backoff grows
        assert gaps[1] < timeout + 1.5, gaps
    # Timeout per request holds: 3 attempts of at most 1 s plus 0.3 s of backoff, plus the run.
    assert result.seconds < 15, result.seconds


def test_transient_503s_are_retried_to_success(
    world: World, tmp_path: Path, anomaly: Callable[..., Result]
) -> None:
    job = "faults_pg_transient"
    with FaultProxy(world.stack.pushgateway_url) as proxy:
        proxy.fault = lambda seen, n: Fault.status(503) if n < 2 else None
        config = config_for(
            tmp_path / "c.yaml", world, job=job, pushgateway={"url": proxy.url, **FAST}
        )
        result = anomaly("run", "--once", "--config", str(config), "--at", str(world.end))
    assert result.code == 0, result.err[-3000:]
    assert "answered HTTP 503" in result.err and "retrying (2/2)" in result.err
    tenants = {
        lab[TENANT]
        for lab, _ in samples(snapshot(world.stack.pushgateway_url, job), "anomaly_score")
    }
    assert tenants == set(world.normal.tenants)


def test_a_push_failing_part_way_leaves_no_mixed_state(
    world: World, tmp_path: Path, anomaly: Callable[..., Result]
) -> None:
    """Run 1 pushes org-01..03. Run 2 (org-03 gone from the source) has org-02's PUT rejected:
    org-01 holds run 2's results, org-02 and the vanished org-03 keep run 1's, the job group
    (with the success timestamp) keeps run 1's, nothing is deleted. Run 3 completes the
    picture: org-01 is exactly what run 2 had pushed, every other group is replaced."""
    job = "faults_pg_mixed"
    pg = world.stack.pushgateway_url
    all_three = dict(NORMAL_METRIC)
    two = {
        **NORMAL_METRIC,
        "query": f'{NORMAL_METRIC["query"]} unless on (organization_id) processaudit_latency_p95_seconds{{organization_id="org-03"}}',
    }
    with FaultProxy(pg) as proxy:

        def config(metric: dict) -> str:
            path = config_for(
                tmp_path / "c.yaml",
                world,
                job=job,
                metrics=[metric],
                pushgateway={"url": proxy.url, "retries": 0},
            )
            return str(path)

        run1 = anomaly(
            "run", "--once", "--config", config(all_three), "--at", str(world.end - 3600)
        )
        assert run1.code == 0, run1.err[-3000:]
        s1 = snapshot(pg, job)
        group = {k: frozenset({("job", job), (TENANT, k)}) for k in ("org-01", "org-02", "org-03")}
        group["job"] = frozenset({("job", job)})
        assert set(s1) == set(group.values())

        proxy.fault = lambda seen, n: (
            Fault.status(400, b"injected rejection")
            if seen.method == "PUT" and seen.path.endswith("/organization_id/org-02")
            else None
        )
        run2 = anomaly("run", "--once", "--config", config(two), "--at", str(world.end))
        run2.assert_fails_in_one_line(
            f'Pushgateway at {proxy.url} rejected push group {{{TENANT}="org-02"}} (HTTP 400)'
        )
        s2 = snapshot(pg, job)
        assert set(s2) == set(s1)  # nothing deleted, org-03 included
        assert s2[group["org-01"]] != s1[group["org-01"]]
        for k in ("org-02", "org-03", "job"):
            assert s2[group[k]] == s1[group[k]], k

        proxy.fault = lambda seen, n: None
        run3 = anomaly("run", "--once", "--config", config(two), "--at", str(world.end))
        assert run3.code == 0, run3.err[-3000:]
    s3 = snapshot(pg, job)
    assert set(s3) == {group["org-01"], group["org-02"], group["job"]}  # org-03 now deleted
    assert s3[group["org-01"]] == s2[group["org-01"]]  # run 2 had pushed org-01 completely
    assert s3[group["org-02"]] != s1[group["org-02"]]
    last = "anomaly_job_last_success_timestamp_seconds"
    assert samples({0: s3[group["job"]]}, last)[0][1] > samples({0: s1[group["job"]]}, last)[0][1]
