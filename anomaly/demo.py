"""``make demo``: a week of generated ProcessAudit metrics through the real stack, one cycle.

Generates multi-tenant data with a few live and past incidents, backfills it into a real
Prometheus with promtool, starts Pushgateway (and Alertmanager) on loopback, runs one job
cycle with the repository's ``config.yaml`` pointed at them, prints what a person wants to see,
and stops everything it started.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

import yaml

from anomaly import devstack, synth
from anomaly.config import load_config
from anomaly.pipeline import format_summary, run_once

ROOT = Path(__file__).resolve().parents[1]


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


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)-7s %(name)s: %(message)s")
    for noisy in ("anomaly.devstack", "urllib3"):
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
    with (
        tempfile.TemporaryDirectory(prefix="anomaly-demo-") as tmp,
        devstack.run_stack(dataset=dataset, with_alertmanager=False) as stack,
    ):
        backfill = stack.backfill
        if backfill is not None:
            print(
                f"backfilled {backfill.samples} samples into Prometheus in {backfill.seconds:.1f}s"
            )
        print(f"Prometheus {stack.prometheus_url}, Pushgateway {stack.pushgateway_url}")
        config = load_config(_config_for(stack, Path(tmp)))
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
    print(f"demo finished in {time.perf_counter() - t0:.0f}s; servers stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
