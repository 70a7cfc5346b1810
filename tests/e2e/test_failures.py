"""End to end, on real servers: a broken query, a dead Pushgateway, and `serve` under SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from anomaly_lab import devstack, synth

from tests.conftest import Servers, write_config

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(servers: Servers) -> Iterator[devstack.Stack]:
    dataset = synth.generate(3, days=8.0, seed=3)
    with servers.stack(dataset=dataset, with_alertmanager=False) as s:
        yield s


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anomaly.cli", *args], capture_output=True, text=True, timeout=300
    )


def groups(stack: devstack.Stack) -> list[dict]:
    return requests.get(f"{stack.pushgateway_url}/api/v1/metrics", timeout=10).json()["data"]


def values(stack: devstack.Stack, name: str) -> list[tuple[dict, float]]:
    return [
        (m["labels"], float(m["value"]))
        for g in groups(stack)
        if name in g
        for m in g[name]["metrics"]
    ]


def test_broken_and_empty_queries_fail_alone(stack: devstack.Stack, tmp_path: Path) -> None:
    raw = yaml.safe_load((Path(__file__).parents[2] / "config.yaml").read_text())
    metrics = [m for m in raw["metrics"] if m["name"] in ("latency_p95", "error_ratio")]
    metrics.append({"name": "broken", "query": "sum by (organization_id) (rate(x[5m]"})
    metrics.append(
        {"name": "nothing", "query": 'processaudit_latency_p95_seconds{organization_id="nobody"}'}
    )
    metrics.append({"name": "untenanted", "query": "sum(processaudit_error_ratio)"})
    config = write_config(
        tmp_path / "config.yaml", stack, metrics=metrics, health={"objectives": []}
    )
    result = cli("run", "--once", "--config", str(config))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "broken" in result.stderr and "parse error" in result.stderr
    assert "metric broken FAILED" in result.stdout
    assert "metric nothing FAILED: query returned no series" in result.stdout
    assert (
        "metric untenanted FAILED: all 1 series skipped (no 'organization_id' label)"
        in result.stdout
    )
    scored = {(lab["organization_id"], lab["metric"]) for lab, _ in values(stack, "anomaly_score")}
    assert {m for _, m in scored} == {"latency_p95", "error_ratio"}
    assert len(scored) == 6
    failed = {lab["metric"]: v for lab, v in values(stack, "anomaly_job_metric_failed")}
    assert failed == {
        "latency_p95": 0,
        "error_ratio": 0,
        "broken": 1,
        "nothing": 1,
        "untenanted": 1,
    }
    (series_failed,) = [v for _, v in values(stack, "anomaly_job_series_failed")]
    assert series_failed == 1  # the untenanted series


def test_unreachable_pushgateway_fails_the_run(stack: devstack.Stack, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", stack)
    raw = yaml.safe_load(config.read_text())
    dead = f"http://127.0.0.1:{devstack.free_port()}"
    raw["pushgateway"].update(url=dead, retries=1, retry_backoff_seconds=0.01)
    config.write_text(yaml.safe_dump(raw))
    result = cli("run", "--once", "--config", str(config))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("anomaly:")]
    assert len(errors) == 1 and dead in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_serve_finishes_its_run_on_sigterm(stack: devstack.Stack, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", stack, schedule="* * * * *")
    requests.put(f"{stack.pushgateway_url}/api/v1/admin/wipe", timeout=10).raise_for_status()
    proc = subprocess.Popen(
        [sys.executable, "-m", "anomaly.cli", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not values(stack, "anomaly_job_duration_seconds"):
            time.sleep(0.2)
        # Signal while a second run may be starting: serve must finish it and exit 0.
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "finishing the current run" in err and "stopped" in err
    assert "Traceback" not in err
