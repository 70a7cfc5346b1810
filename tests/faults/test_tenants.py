"""Tenants through the whole job, Prometheus → ``anomaly run --once`` → Pushgateway →
Prometheus again: hostile tenant ids round-trip exactly and never reach a query; two tenants
sharing metric names never share labels, data or groups, and a vanished tenant's group is the
only one deleted.

Escaping for matchers built from label values (``escape_label_value``,
``regex_escape_label_value``) is property-tested against a real Prometheus in
tests/test_source.py; the job itself builds no matcher from a tenant id, which
:func:`test_hostile_tenant_ids_round_trip_exactly_and_never_reach_a_query` checks on the wire.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from anomaly.config import load_config
from anomaly.io.promql import count_series_query
from anomaly.job.plan import COUNT_REACH_STEPS
from tests.faults.conftest import Result, samples, snapshot
from tests.faults.proxy import FaultProxy
from tests.faults.world import (
    HOSTILE_METRIC,
    HOSTILE_TENANTS,
    ISOLATION,
    ISOLATION_METRICS,
    TENANT,
    World,
    config_for,
)

pytestmark = pytest.mark.e2e


def _queries(proxy: FaultProxy) -> list[str]:
    out = []
    for s in proxy.seen:
        form = parse_qs(urlsplit(s.path).query) | parse_qs(s.body.decode())
        out += form.get("query", [])
    return out


def _scraped(prometheus_url: str, query: str, n: int) -> list[dict[str, str]]:
    """The label sets of ``query`` once Prometheus has scraped ``n`` of them."""
    deadline = time.monotonic() + 20
    while True:
        r = requests.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=10)
        result = r.json()["data"]["result"]
        if len(result) >= n or time.monotonic() > deadline:
            return [item["metric"] for item in result]
        time.sleep(0.2)


def test_hostile_tenant_ids_round_trip_exactly_and_never_reach_a_query(
    world: World, tmp_path: Path, anomaly: Callable[..., Result]
) -> None:
    job = "faults_hostile"
    with FaultProxy(world.stack.prometheus_url) as proxy:
        config = config_for(
            tmp_path / "c.yaml",
            world,
            job=job,
            metrics=[HOSTILE_METRIC],
            prometheus={"url": proxy.url},
        )
        result = anomaly("run", "--once", "--config", str(config), "--at", str(world.end))
        queries = _queries(proxy)
    assert result.code == 0, result.err[-3000:]
    # The job sent only the configured query, its series count over the window's newest hour
    # (to plan batches) and its reachability check: nothing built from the tenant ids it read
    # (the batch is one batch).
    step = load_config(config).step_seconds
    reach = COUNT_REACH_STEPS[0] * step
    count = count_series_query(HOSTILE_METRIC["query"], "organization_id", reach, step)
    assert set(queries) == {HOSTILE_METRIC["query"], count, "1"}, queries

    snap = snapshot(world.stack.pushgateway_url, job)
    expected = set(HOSTILE_TENANTS)
    for name in ("anomaly_score", "anomaly_detected", "anomaly_expected_value"):
        assert sorted(lab[TENANT] for lab, _ in samples(snap, name)) == sorted(expected), name
    assert sorted(lab[TENANT] for lab, _ in samples(snap, "anomaly_health_score")) == sorted(
        expected
    )
    # One group per tenant, keyed by the exact id (a '/' travels base64-encoded in the URL).
    tenant_groups = {dict(g).get(TENANT) for g in snap} - {None}
    assert tenant_groups == expected

    # ... and back into Prometheus, which scrapes the Pushgateway.
    scraped = _scraped(
        world.stack.prometheus_url, f'anomaly_score{{job="{job}"}}', len(HOSTILE_TENANTS)
    )
    assert sorted(m[TENANT] for m in scraped) == sorted(expected)


def test_two_tenants_sharing_metric_names_stay_apart(
    world: World, tmp_path: Path, anomaly: Callable[..., Result]
) -> None:
    job = "faults_isolation"
    pg = world.stack.pushgateway_url
    # Another job's group for tenant beta: no run of ours may touch it.
    sentinel = "# TYPE other_series gauge\nother_series 42\n"
    requests.put(
        f"{pg}/metrics/job/someone_else/{TENANT}/beta", data=sentinel, timeout=10
    ).raise_for_status()

    config = config_for(tmp_path / "c.yaml", world, job=job, metrics=ISOLATION_METRICS)
    run1 = anomaly("run", "--once", "--config", str(config), "--at", str(world.end))
    assert run1.code == 0, run1.err[-3000:]
    snap = snapshot(pg, job)
    levels = {"iso_requests": 1.0, "iso_latency": 1e-3}
    seen_tenants = set()
    for group, series in snap.items():
        owner = dict(group).get(TENANT)
        for (name, labels), value in series.items():
            lab = dict(labels)
            tenant = lab.get(TENANT)
            assert tenant == owner, (group, name, lab)  # a group holds only its tenant's series
            if tenant is None:
                continue
            seen_tenants.add(tenant)
            own, level = ISOLATION[tenant]
            for other, (other_labels, _) in ISOLATION.items():
                if other != tenant:  # no label (name or value) of the other tenant
                    leaked = {(k, v) for k, v in other_labels.items() if (k, v) not in own.items()}
                    assert not leaked & set(lab.items()), (tenant, name, lab)
                    assert not set(other_labels) - set(own) & set(lab), (tenant, name, lab)
            if name == "anomaly_expected_value":
                # The expectation is the tenant's own level (within ±40 %), not a mix.
                scale = level * levels[lab["metric"]]
                assert 0.6 * scale < value < 1.4 * scale, (tenant, lab["metric"], value)
                for k, v in own.items():
                    assert lab[k] == v
    assert seen_tenants == set(ISOLATION)

    # Beta vanishes from the source: only beta's group goes; alpha's and the job's are replaced.
    gone = [{**m, "query": f'{m["query"]}{{{TENANT}!="beta"}}'} for m in ISOLATION_METRICS]
    config = config_for(tmp_path / "c.yaml", world, job=job, metrics=gone)
    run2 = anomaly("run", "--once", "--config", str(config), "--at", str(world.end))
    assert run2.code == 0, run2.err[-3000:]
    after = snapshot(pg, job)
    assert {dict(g).get(TENANT) for g in after} == {"alpha", None}
    alpha = frozenset({("job", job), (TENANT, "alpha")})
    # Same data, same stored models: alpha's results are alpha's alone. (Equal up to float
    # rounding: vectorised reductions over one column instead of two may round differently.)
    assert after[alpha] == pytest.approx(snap[alpha], rel=1e-9, abs=1e-12)
    assert snapshot(pg, "someone_else") == {
        frozenset({("job", "someone_else"), (TENANT, "beta")}): {
            (
                "other_series",
                frozenset({("job", "someone_else"), (TENANT, "beta"), ("instance", "")}),
            ): 42.0
        }
    }
