"""Prometheus refusing, failing, hanging or dropping, through ``anomaly run --once`` with
:class:`~tests.faults.proxy.FaultProxy` in front of the real Prometheus: bounded retries with
exponential backoff, the configured timeout holds (measured), one line naming the URL, exit 1,
no traceback; transient 503s are retried to success. One metric's malformed answer (HTTP 200
with an error body, truncated, the wrong shape, not JSON, broken off) fails that metric alone.

Unit tests of the same logic on a fake transport are in tests/io/test_prometheus.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from anomaly_lab import devstack, synth

from tests.faults.conftest import Result, samples, snapshot
from tests.faults.proxy import Fault, FaultProxy, Seen
from tests.faults.world import NORMAL_METRIC, TENANT, World, config_for

pytestmark = pytest.mark.e2e

FAST = {"timeout_seconds": 1, "retries": 2, "retry_backoff_seconds": 0.1}


def _config(tmp_path: Path, world: World, job: str, url: str) -> str:
    path = config_for(tmp_path / "c.yaml", world, job=job, prometheus={"url": url, **FAST})
    return str(path)


@pytest.mark.parametrize(
    ("fault", "path", "message"),
    [
        (None, "", "cannot reach Prometheus at {url}: connection refused (after 3 attempts)"),
        (Fault.status(500), "", "Prometheus at {url} failed (HTTP 500)"),
        (Fault.status(502), "/api/v1/query_range", "Prometheus at {url} failed (HTTP 502)"),
        (
            Fault.hang(),
            "",
            "cannot reach Prometheus at {url}: no answer within 1s (timed out) (after 3 attempts)",
        ),
        (
            Fault.hang(),
            "/api/v1/query_range",
            "cannot reach Prometheus at {url}: no answer within 1s (timed out) (after 3 attempts)",
        ),
        # Reset or closed, depending on timing: either way a connection error, retried.
        (Fault.drop(), "", "cannot reach Prometheus at {url}: connection"),
    ],
    ids=["refused", "500", "502-on-range-queries", "hang", "hang-on-range-queries", "drop"],
)
def test_failing_prometheus_fails_the_run_in_one_line(
    world: World,
    tmp_path: Path,
    anomaly: Callable[..., Result],
    fault: Fault | None,
    path: str,
    message: str,
) -> None:
    job = "faults_prom_down"
    with FaultProxy(world.stack.prometheus_url) as proxy:
        proxy.fault = lambda seen, n: fault if seen.path.startswith(path) else None
        url = proxy.url if fault else f"http://127.0.0.1:{devstack.free_port()}"
        result = anomaly(
            "run", "--once", "--config", _config(tmp_path, world, job, url), "--at", str(world.end)
        )
        hit = [s.at for s in proxy.seen if s.path.startswith(path or "/")]
    line = result.assert_fails_in_one_line(message.format(url=url))
    if fault is None or fault.kind != "status":
        assert line.endswith("(after 3 attempts)"), line
    assert snapshot(world.stack.pushgateway_url, job) == {}  # nothing pushed
    if fault is None:
        return
    # Bounded retries with exponential backoff: 1 + 2 attempts, 0.1 s then 0.2 s apart (plus
    # the 1 s timeout when hanging), then the run stops.
    assert len(hit) == 3, hit
    gaps = [b - a for a, b in zip(hit, hit[1:], strict=False)]
    timeout = 1.0 if fault.kind == "hang" else 0.0
    slack = 0.05
    assert gaps[0] >= timeout + 0.1 - slack and gaps[1] >= timeout + 0.2 - slack, gaps
    assert gaps[1] > gaps[0] and gaps[1] < timeout + 1.5, gaps
    # The configured timeout holds: three hangs of 1 s, not one of 60 s.
    assert result.seconds < 3 * (timeout + 0.2) + 5, result.seconds


def test_transient_503s_are_retried_to_success(
    world: World, tmp_path: Path, anomaly: Callable[..., Result]
) -> None:
    job = "faults_prom_transient"
    with FaultProxy(world.stack.prometheus_url) as proxy:
        # Two 503s for the reachability check, then two for the range query.
        failures = {"/api/v1/query?": 2, "/api/v1/query_range": 2}

        def rule(seen: object, n: int) -> Fault | None:
            for prefix, left in failures.items():
                if getattr(seen, "path", "").startswith(prefix) and left > 0:
                    failures[prefix] = left - 1
                    return Fault.status(503)
            return None

        proxy.fault = rule
        config = _config(tmp_path, world, job, proxy.url)
        result = anomaly("run", "--once", "--config", config, "--at", str(world.end))
    assert result.code == 0, result.err[-3000:]
    assert result.err.count("answered HTTP 503; retrying") == 4
    assert failures == {"/api/v1/query?": 0, "/api/v1/query_range": 0}
    scored = samples(snapshot(world.stack.pushgateway_url, job), "anomaly_score")
    assert {lab[TENANT] for lab, _ in scored} == set(world.normal.tenants)


BROKEN = {"name": "error_ratio", "query": synth.QUERIES["error_ratio"]}


def _asks(seen: Seen, path: str, query: str) -> bool:
    """Whether ``seen`` is a POST to ``path`` whose PromQL holds ``query``."""
    form = parse_qs(seen.body.decode()) if seen.method == "POST" else {}
    return urlsplit(seen.path).path == path and any(query in q for q in form.get("query", []))


@pytest.mark.parametrize(
    ("path", "fault", "problem"),
    [
        (
            "/api/v1/query_range",
            Fault.status(
                200,
                b'{"status":"error","errorType":"execution","error":"expanding series: boom"}',
                "application/json",
            ),
            "answered HTTP 200 with an error body (execution): expanding series: boom",
        ),
        ("/api/v1/query_range", Fault.truncate(), "answered HTTP 200 with truncated JSON ("),
        (
            "/api/v1/query_range",
            Fault.truncate(honest=False),
            "broke off its answer: the body ended after",
        ),
        (
            "/api/v1/query_range",
            Fault.status(
                200,
                b'{"status":"success","data":{"resultType":"vector","result":[]}}',
                "application/json",
            ),
            "returned 'vector' from Prometheus at {url}, expected a range vector (matrix)",
        ),
        (
            "/api/v1/query_range",
            Fault.status(200, b"<html><body>Bad gateway</body></html>", "text/html"),
            "answered HTTP 200 with a text/html body that is not JSON: <html><body>Bad gateway",
        ),
        (
            "/api/v1/query",  # the plan's count of the metric's series
            Fault.truncate(),
            "cannot count its series: query 'count by (organization_id)",
        ),
    ],
    ids=["error-body", "truncated", "broken-off", "vector", "html", "truncated-count"],
)
def test_a_malformed_answer_fails_only_its_metric(
    world: World,
    tmp_path: Path,
    anomaly: Callable[..., Result],
    path: str,
    fault: Fault,
    problem: str,
) -> None:
    job = "faults_prom_malformed"
    query = BROKEN["query"]
    with FaultProxy(world.stack.prometheus_url) as proxy:
        proxy.fault = lambda seen, n: fault if _asks(seen, path, query) else None
        config = config_for(
            tmp_path / "c.yaml",
            world,
            job=job,
            metrics=[NORMAL_METRIC, BROKEN],
            prometheus={"url": proxy.url, **FAST},
        )
        result = anomaly("run", "--once", "--config", str(config), "--at", str(world.end))
        hits = [s for s in proxy.seen if _asks(s, path, query)]
    # The run goes on and succeeds (as with a query Prometheus rejects); the metric is named.
    assert result.code == 0, result.err[-3000:]
    assert "Traceback" not in result.err, result.err
    (line,) = [x for x in result.out.splitlines() if "FAILED" in x]
    assert line.startswith("  metric error_ratio FAILED: "), line
    assert problem.format(url=proxy.url) in line, line
    assert "error_ratio" in result.err and problem.format(url=proxy.url) in result.err
    # A broken-off transfer is retried like other transport errors; a whole answer is not.
    assert len(hits) == (3 if fault.kind == "truncate" and not fault.honest else 1), hits
    snap = snapshot(world.stack.pushgateway_url, job)
    scored = {(lab[TENANT], lab["metric"]) for lab, _ in samples(snap, "anomaly_score")}
    assert scored == {(t, "latency_p95") for t in world.normal.tenants}
    failed = {lab["metric"]: v for lab, v in samples(snap, "anomaly_job_metric_failed")}
    assert failed == {"latency_p95": 0, "error_ratio": 1}
