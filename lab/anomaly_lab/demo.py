"""``make demo``: a week of generated ProcessAudit metrics through the real stack, one cycle.

Generates multi-tenant data with a few live and past incidents, backfills it into a real
Prometheus with promtool, starts Pushgateway (and Alertmanager) on loopback, runs one job
cycle with the repository's ``config.yaml`` pointed at them, prints what a person wants to see,
and stops everything it started.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import requests
import yaml

from anomaly.config import load_config
from anomaly.job.report import format_summary
from anomaly.job.run import run_once
from anomaly_lab import devstack, synth
from anomaly_lab.webhook import WebhookReceiver, run_webhook_receiver

ROOT = Path(__file__).resolve().parents[2]


def _config_for(stack: devstack.Stack, workdir: Path) -> Path:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["prometheus"]["url"] = stack.prometheus_url
    raw["pushgateway"]["url"] = stack.pushgateway_url
    raw["model_dir"] = str(workdir / "models")
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _describe(inj: synth.Injection, end: float) -> str:
    when = "now" if inj.active(end) else f"{(end - (inj.end or end)) / 86400:.1f} days ago"
    return f"{inj.tenant:<8} {inj.metric:<14} {inj.kind:<15} ({when})"


def _print_alerts(stack: devstack.Stack, hook: WebhookReceiver, wait_seconds: float = 25.0) -> None:
    """Wait for Prometheus to scrape the push and fire the shipped rules (their ``for:`` cut from
    minutes to seconds for the demo), then show what Alertmanager delivered, per receiver."""
    print(f"\nwaiting {wait_seconds:.0f}s for Prometheus to fire the shipped alert rules ...")
    time.sleep(wait_seconds)
    alerts = requests.get(f"{stack.prometheus_url}/api/v1/alerts", timeout=10).json()["data"]
    firing = [a["labels"] for a in alerts["alerts"] if a["state"] == "firing"]
    print(f"alerts firing in Prometheus: {len(firing)}")
    for lab in sorted(firing, key=lambda x: (x["alertname"], x.get("organization_id", ""))):
        print(
            f"  {lab['alertname']:<28} {lab.get('organization_id', '-'):<8} "
            f"{lab.get('metric', '-'):<14} {lab.get('severity', '-'):<8} team={lab.get('team', '-')}"
        )
    delivered: dict[str, set[str]] = defaultdict(set)
    for note in hook.notifications:
        for a in note["alerts"]:
            lab = a["labels"]
            metric = f", {lab['metric']}" if "metric" in lab else ""
            delivered[note["receiver"]].add(
                f"{lab['alertname']}({lab.get('organization_id', '-')}{metric})"
            )
    print("notifications delivered by Alertmanager (shipped routing; inhibited alerts absent):")
    for receiver in sorted(delivered):
        print(f"  {receiver:<18} {', '.join(sorted(delivered[receiver]))}")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)-7s %(name)s: %(message)s")
    for noisy in ("anomaly_lab.devstack", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    t0 = time.perf_counter()
    dataset = synth.demo_scenario(days=10.0)
    print(
        f"generated {len(dataset.tenants)} organizations x {len(dataset.metrics)} metrics, "
        f"{len(dataset.timestamps)} points each ({dataset.step_seconds}s step)"
    )
    print("injected incidents (the answer key):")
    for inj in dataset.injections:
        print("  " + _describe(inj, dataset.end))
    with contextlib.ExitStack() as resources:
        tmp = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="anomaly-demo-")))
        hook = resources.enter_context(run_webhook_receiver())
        stack = resources.enter_context(
            devstack.run_stack(
                dataset=dataset,
                rule_files=[devstack.fast_rules(devstack.RULES_FILE, tmp)],
                alertmanager_config=devstack.webhook_routing(devstack.ALERTMANAGER_FILE, hook.url),
            )
        )
        backfill = stack.backfill
        if backfill is not None:
            print(
                f"backfilled {backfill.samples} samples into Prometheus in {backfill.seconds:.1f}s"
            )
        print(
            f"Prometheus {stack.prometheus_url}, Pushgateway {stack.pushgateway_url}, "
            f"Alertmanager {stack.alertmanager_url}"
        )
        config = load_config(_config_for(stack, tmp))
        report = run_once(config, now=dataset.end)
        print()
        print(format_summary(report))
        truth = dataset.anomalous_pairs()
        found = {(f.key.tenant, f.metric) for f in report.anomalies}
        print()
        print(
            f"against the answer key: {len(found & truth)}/{len(truth)} live incidents found, "
            f"{len(found - truth)} other series flagged"
        )
        _print_alerts(stack, hook)
    print(f"demo finished in {time.perf_counter() - t0:.0f}s; servers stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
