"""End to end on real Prometheus and Pushgateway: two shards split six tenants without
erasing each other, and a run read in many tenant batches pushes what one whole read does."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from anomaly_lab import devstack, synth

from anomaly.config import PushgatewayConfig
from anomaly.io.pushgateway import PushgatewaySink, Sample
from tests.conftest import Servers, write_config

pytestmark = pytest.mark.e2e

TENANT = "organization_id"
# Hostile ids too: the batch matchers must escape them.
TENANTS = ("org-a", "org.b", "org|c", 'org"d', "org(e)", "org-f")
METRICS = [
    {"name": "latency_p95", "query": synth.QUERIES["latency_p95"]},
    {"name": "error_ratio", "query": synth.QUERIES["error_ratio"]},
]


@pytest.fixture(scope="module")
def stack(servers: Servers) -> Iterator[tuple[devstack.Stack, synth.Dataset]]:
    dataset = synth.generate(TENANTS, days=3.0, seed=5)
    with servers.stack(dataset=dataset, with_alertmanager=False) as s:
        yield s, dataset


def run(config: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "anomaly.cli", "run", "--once", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def groups(stack: devstack.Stack, job: str) -> list[dict]:
    data = requests.get(f"{stack.pushgateway_url}/api/v1/metrics", timeout=10).json()["data"]
    return [g for g in data if g["labels"].get("job") == job]


def scores(stack: devstack.Stack, job: str, name: str) -> dict[tuple[str, str], float]:
    return {
        (m["labels"][TENANT], m["labels"]["metric"]): float(m["value"])
        for g in groups(stack, job)
        if name in g
        for m in g[name]["metrics"]
    }


def config_for(
    tmp_path: Path, stack: devstack.Stack, job: str, grouping: str = "auto", **scale: int
) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        stack,
        metrics=METRICS,
        lookback="2d",
        health={"objectives": []},
        pushgateway={"url": stack.pushgateway_url, "job": job, "grouping": grouping},
        scale=scale or {},
    )


def test_two_shards_split_the_tenants_and_never_erase_each_other(
    stack: tuple[devstack.Stack, synth.Dataset], tmp_path: Path
) -> None:
    s, ds = stack
    config = config_for(tmp_path, s, "sharded")
    at = str(ds.end)
    out0 = run(config, "--at", at, "--shard", "0/2")
    assert "(shard 0/2)" in out0
    env = {"JOB_COMPLETION_INDEX": "1", "ANOMALY_SHARDS": "2", "PATH": "/usr/bin:/bin"}
    run(config, "--at", at, env=env)

    by_shard: dict[str, set[str]] = {"0": set(), "1": set()}
    for g in groups(s, "sharded"):
        labels = g["labels"]
        assert labels["shard"] in by_shard
        if TENANT in labels:
            by_shard[labels["shard"]].add(labels[TENANT])
            # Every series in a tenant's group is that tenant's.
            for m in g["anomaly_score"]["metrics"]:
                assert m["labels"][TENANT] == labels[TENANT]
    assert by_shard["0"] and by_shard["1"]
    assert not by_shard["0"] & by_shard["1"]
    assert by_shard["0"] | by_shard["1"] == set(TENANTS)
    job_groups = [g["labels"] for g in groups(s, "sharded") if TENANT not in g["labels"]]
    assert sorted(j["shard"] for j in job_groups) == ["0", "1"]

    before = {(g["labels"]["shard"], g["labels"].get(TENANT)) for g in groups(s, "sharded")}
    run(config, "--at", at, "--shard", "0/2")
    after = {(g["labels"]["shard"], g["labels"].get(TENANT)) for g in groups(s, "sharded")}
    assert after == before  # shard 1's groups survive shard 0's stale-group deletion
    assert len(scores(s, "sharded", "anomaly_score")) == len(TENANTS) * len(METRICS)


def test_batched_read_pushes_what_a_whole_read_does(
    stack: tuple[devstack.Stack, synth.Dataset], tmp_path: Path
) -> None:
    s, ds = stack
    (tmp_path / "whole").mkdir()
    (tmp_path / "batched").mkdir()
    whole = config_for(tmp_path / "whole", s, "whole")
    batched = config_for(tmp_path / "batched", s, "batched", batch_series=1, workers=2)
    run(whole, "--at", str(ds.end))
    out = run(batched, "--at", str(ds.end))
    assert "in 8 batches" in out  # 6 series per metric, one per batch: rounded up to 8
    for name in ("anomaly_actual_value", "anomaly_expected_value"):
        w, b = scores(s, "whole", name), scores(s, "batched", name)
        assert set(w) == {(t, m["name"]) for t in TENANTS for m in METRICS}
        assert b.keys() == w.keys()
        for key in w:
            assert b[key] == pytest.approx(w[key], rel=1e-9), (name, key)
    # Several batches: one Pushgateway group per batch (`tenant_group`), each tenant in one.
    health: dict[str, str] = {}
    for g in groups(s, "batched"):
        if "anomaly_health_score" not in g:
            continue
        assert TENANT not in g["labels"] and g["labels"]["tenant_group"].endswith("-of-8")
        for m in g["anomaly_health_score"]["metrics"]:
            assert m["labels"][TENANT] not in health
            health[m["labels"][TENANT]] = g["labels"]["tenant_group"]
    assert set(health) == set(TENANTS)
    # `grouping: tenant` keeps one group per tenant however many batches.
    (tmp_path / "per-tenant").mkdir()
    per_tenant = config_for(tmp_path / "per-tenant", s, "per-tenant", "tenant", batch_series=1)
    run(per_tenant, "--at", str(ds.end))
    assert not any("tenant_group" in g["labels"] for g in groups(s, "per-tenant"))
    owners = {g["labels"].get(TENANT) for g in groups(s, "per-tenant")}
    assert owners == {*TENANTS, None}  # None: the job's own group
    assert scores(s, "per-tenant", "anomaly_score") == scores(s, "batched", "anomaly_score")
    # A tenant's batch moved away from: the whole run's stale-group deletion still works.
    yaml_raw = yaml.safe_load(batched.read_text())
    yaml_raw["metrics"] = METRICS[:1]
    batched.write_text(yaml.safe_dump(yaml_raw))
    run(batched, "--at", str(ds.end))
    assert {m for _, m in scores(s, "batched", "anomaly_score")} == {"latency_p95"}


def test_one_batch_with_workers_scores_its_metrics_side_by_side_alike(
    stack: tuple[devstack.Stack, synth.Dataset], tmp_path: Path
) -> None:
    """A run of one batch spreads its metrics over the workers; it pushes what one process
    pushes, and its summary still lists every metric."""
    s, ds = stack
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = config_for(tmp_path / "one", s, "one-process", workers=1)
    two = config_for(tmp_path / "two", s, "two-workers", workers=2)
    out_one = run(one, "--at", str(ds.end))
    out_two = run(two, "--at", str(ds.end))
    assert "batches" not in out_two  # one batch
    for name in ("anomaly_score", "anomaly_expected_value"):
        a, b = scores(s, "one-process", name), scores(s, "two-workers", name)
        assert a and a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-12), (name, key)

    def health(job: str) -> dict[str, float]:
        return {
            m["labels"][TENANT]: float(m["value"])
            for g in groups(s, job)
            if "anomaly_health_score" in g
            for m in g["anomaly_health_score"]["metrics"]
        }

    assert health("two-workers") == health("one-process") and len(health("one-process")) == 6
    assert out_one.splitlines()[0].split(" in ")[0] == out_two.splitlines()[0].split(" in ")[0]
    assert len(list((tmp_path / "two" / "models").glob("*.npz"))) == len(METRICS)


def test_a_switch_of_grouping_retires_old_groups_as_their_tenants_are_put_anew(
    stack: tuple[devstack.Stack, synth.Dataset],
) -> None:
    """On the real Pushgateway (its own listing format): moving from batch groups to tenant
    groups deletes each batch group right after its last tenant is put, and back again each
    tenant group right after its batch group is put; the listing is read once per run."""
    s, _ = stack
    sink = PushgatewaySink(PushgatewayConfig(url=s.pushgateway_url, job="switch"), TENANT)

    def batch(tenants: str) -> list[Sample]:
        return [Sample("anomaly_health_score", {TENANT: t}, 90.0) for t in tenants]

    def keys() -> set[tuple[tuple[str, str], ...]]:
        return {tuple(sorted(g["labels"].items())) for g in groups(s, "switch")}

    sink.start_run()
    sink.put(batch("ab"), group="1-of-2")
    sink.put(batch("cd"), group="2-of-2")
    sink.push([], keep=[{"tenant_group": "1-of-2"}, {"tenant_group": "2-of-2"}])

    sink.start_run()
    first = sink.put(batch("ab"))
    assert first.groups_deleted == ({"tenant_group": "1-of-2"},)
    assert (("job", "switch"), ("tenant_group", "2-of-2")) in keys()
    second = sink.put(batch("cd"))
    assert second.groups_deleted == ({"tenant_group": "2-of-2"},)
    sink.push([], keep=[{TENANT: t} for t in "abcd"])
    assert keys() == {(("job", "switch"), (TENANT, t)) for t in "abcd"}

    sink.start_run()
    back = sink.put(batch("abcd"), group="1-of-1")
    assert sorted(k[TENANT] for k in back.groups_deleted) == list("abcd")
    sink.push([], keep=[{"tenant_group": "1-of-1"}])
    assert keys() == {(("job", "switch"), ("tenant_group", "1-of-1"))}
