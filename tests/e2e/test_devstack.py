"""End-to-end tests of the dev stack: real Prometheus, Pushgateway and Alertmanager on loopback."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from anomaly_lab import devstack, synth

from anomaly.io.matrix import decode_matrix
from tests.conftest import Servers

pytestmark = pytest.mark.e2e


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) counts as stopped
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


@pytest.fixture(scope="module")
def dataset() -> synth.Dataset:
    """Three tenants, two days, ending on the 5-minute grid just before now."""
    return synth.generate(3, days=2.0, seed=11)


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yml"
    path.write_text(
        "groups:\n"
        "  - name: devstack-test\n"
        "    rules:\n"
        "      - alert: DevstackAlwaysFiring\n"
        "        expr: vector(1)\n"
        "        labels: {severity: info}\n"
    )
    return path


@pytest.fixture(scope="module")
def stack(servers: Servers, dataset: synth.Dataset, rule_file: Path) -> Iterator[devstack.Stack]:
    with servers.stack(dataset=dataset, rule_files=[rule_file]) as running:
        yield running


def query_range(url: str, query: str, start: float, end: float, step: float) -> list[dict]:
    response = requests.get(
        f"{url}/api/v1/query_range",
        params={"query": query, "start": start, "end": end, "step": step},
        timeout=10,
    )
    response.raise_for_status()
    result: list[dict] = response.json()["data"]["result"]
    return result


def test_backfilled_history_is_queryable_up_to_the_end(
    stack: devstack.Stack, dataset: synth.Dataset
) -> None:
    assert stack.backfill is not None and stack.backfill.blocks >= 1
    start, end = float(dataset.timestamps[0]), dataset.end
    result = query_range(
        stack.prometheus_url, "processaudit_latency_p95_seconds", start, end, dataset.step_seconds
    )
    assert {r["metric"]["organization_id"] for r in result} == set(dataset.tenants)
    for r in result:
        values = r["values"]
        assert len(values) == dataset.timestamps.size
        assert values[0][0] == start and values[-1][0] == end
        expected = dataset.get(r["metric"]["organization_id"], "latency_p95").values
        assert [float(v) for _, v in values] == expected.tolist()


def test_range_answers_take_the_fast_decoder_and_match_json(
    stack: devstack.Stack, dataset: synth.Dataset
) -> None:
    """The real Prometheus' range answers have the layout `decode_matrix` reads (else every
    query would silently take the slow `json` path), and it decodes them like `json`."""
    start, end = float(dataset.timestamps[0]), dataset.end
    form = {"query": "processaudit_latency_p95_seconds", "start": start, "end": end}
    r = requests.post(
        f"{stack.prometheus_url}/api/v1/query_range",
        data={**form, "step": dataset.step_seconds},
        timeout=30,
    )
    r.raise_for_status()
    decoded = decode_matrix(r.content.decode("utf-8"))
    assert decoded is not None
    want = r.json()["data"]["result"]
    assert [labels for labels, _, _ in decoded.series] == [w["metric"] for w in want]
    for (_, times, values), w in zip(decoded.series, want, strict=True):
        assert times.tolist() == [float(t) for t, _ in w["values"]]
        assert values.tolist() == [float(v) for _, v in w["values"]]


def test_newest_points_are_there_at_now(stack: devstack.Stack, dataset: synth.Dataset) -> None:
    now = time.time()
    assert now - dataset.end < 300
    for metric in ("request_rate", "ai_cost"):
        result = query_range(stack.prometheus_url, synth.QUERIES[metric], now - 3600, now, 300)
        assert len(result) == len(dataset.tenants), metric
        for r in result:
            assert r["values"][-1][0] == pytest.approx(now, abs=1)
            assert float(r["values"][-1][1]) > 0, (metric, r["metric"])


def test_pushed_metric_is_scraped_with_its_labels(stack: devstack.Stack) -> None:
    body = 'devstack_probe{organization_id="org-02"} 42\n'
    requests.put(
        f"{stack.pushgateway_url}/metrics/job/devstack_test", data=body, timeout=10
    ).raise_for_status()
    result = devstack.wait_for_query(stack.prometheus_url, "devstack_probe", timeout_seconds=20)
    assert result[0]["metric"]["job"] == "devstack_test"  # honor_labels keeps the pushed job
    assert result[0]["metric"]["organization_id"] == "org-02"
    assert result[0]["value"][1] == "42"


def test_rule_alerts_reach_the_alertmanager(stack: devstack.Stack) -> None:
    assert stack.alertmanager_url is not None
    deadline = time.monotonic() + 20
    names: set[str] = set()
    while time.monotonic() < deadline and "DevstackAlwaysFiring" not in names:
        alerts = requests.get(f"{stack.alertmanager_url}/api/v2/alerts", timeout=10).json()
        names = {a["labels"]["alertname"] for a in alerts}
        time.sleep(0.2)
    assert "DevstackAlwaysFiring" in names


def test_servers_stop_and_clean_up(servers: Servers) -> None:
    with servers.pushgateway() as pushgateway, servers.alertmanager() as alertmanager:
        servers = (pushgateway, alertmanager)
        assert all(is_running(s.pid) and s.workdir.is_dir() for s in servers)
    for server in servers:
        assert not is_running(server.pid)
        assert not server.workdir.exists()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{server.url}/-/ready", timeout=2)


def test_a_server_that_cannot_start_reports_its_log(servers: Servers) -> None:
    with (
        pytest.raises(devstack.DevstackError, match="alertmanager exited") as info,
        servers.alertmanager({"route": {"receiver": "missing"}, "receivers": []}),
    ):
        pass
    assert "missing" in str(info.value)


def test_backfill_refuses_data_from_the_future(tmp_path: Path) -> None:
    future = synth.generate(1, days=0.1, end=time.time() + 3600)
    with pytest.raises(ValueError, match="`dataset`"):
        devstack.backfill(future, tmp_path)


def test_prometheus_config_wiring() -> None:
    config = devstack.prometheus_config(
        pushgateway_url="http://127.0.0.1:9091",
        rule_files=["rules.yml"],
        alertmanager_url="http://127.0.0.1:9093",
        scrape_interval_seconds=2,
        scrape_targets={"exporter": "http://127.0.0.1:8000"},
    )
    job, exporter = config["scrape_configs"]
    assert job["honor_labels"] is True
    assert job["static_configs"] == [{"targets": ["127.0.0.1:9091"]}]
    assert exporter["job_name"] == "exporter" and "honor_labels" not in exporter
    assert exporter["static_configs"] == [{"targets": ["127.0.0.1:8000"]}]
    assert config["global"]["scrape_interval"] == "2s"
    assert Path(config["rule_files"][0]).is_absolute()
    target = config["alerting"]["alertmanagers"][0]["static_configs"]
    assert target == [{"targets": ["127.0.0.1:9093"]}]


@pytest.mark.parametrize(
    ("server", "package"),
    [("pushgateway", "prometheus-pushgateway"), ("promtool", "prometheus")],
)
def test_a_missing_binary_fails_in_one_line_naming_the_package(
    server: str, package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never a skip: a server test without its server would pass without testing anything."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(f"ANOMALY_{server.upper()}_BIN", raising=False)
    with pytest.raises(pytest.fail.Exception) as info:
        Servers().binary(server)
    assert info.value.msg.endswith(
        f"is not installed: apt-get install {package} (make test installs it)"
    )
    assert "\n" not in info.value.msg and not info.value.pytrace


def test_webhook_receivers_rewrite_only_the_receivers() -> None:
    shipped = yaml.safe_load(devstack.ALERTMANAGER_FILE.read_text())
    names = [r["name"] for r in shipped["receivers"]]
    urls = {name: f"http://127.0.0.1:{9000 + i}/" for i, name in enumerate(names)}
    config = devstack.webhook_receivers(devstack.ALERTMANAGER_FILE, urls, send_resolved=True)
    assert {k: v for k, v in config.items() if k != "receivers"} == {
        k: v for k, v in shipped.items() if k != "receivers"
    }
    assert config["receivers"] == [
        {"name": n, "webhook_configs": [{"url": urls[n], "send_resolved": True}]} for n in names
    ]
    with pytest.raises(KeyError):
        devstack.webhook_receivers(devstack.ALERTMANAGER_FILE, {names[0]: urls[names[0]]})
    fast = devstack.webhook_routing(devstack.ALERTMANAGER_FILE, "http://127.0.0.1:9/")
    assert fast["route"]["group_wait"] == "0s" and "global" not in fast
    assert all(r["group_wait"] == "0s" for r in fast["route"]["routes"])
