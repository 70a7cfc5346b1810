"""Why one (tenant, metric) of a zoo scenario was or was not flagged: the case the detection
bench lists as a miss or a false positive, looked at from inside.

Replays the job once at one of the bench's runs (a fresh model store: the fit that run would
make on its own) against a real Prometheus holding the cached scenario, then prints for the
series: the run's finding, the calendar the model read, each rule's calibration, each
detector's evidence on the newest rows (:meth:`~anomaly.models.scoring.AnomalyModel.explain`,
1 = at its threshold) and, with ``--days``, each day's 95th percentile of the features in the
window (a past incident or a misread day shows as a day far above the others).

Only tune seeds: a measure seed is refused, so that its cases stay unseen.

    python -m bench.explain_case calendars 14 org-17 queue_depth --run 4 --rows 6 --days
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from anomaly_lab import devstack

from anomaly.config import load_config
from anomaly.io.prometheus import PrometheusSource
from anomaly.io.store import ModelStore
from anomaly.job.metric import read_frame
from anomaly.job.run import run_once
from anomaly.models.rules import RULE_NAMES
from anomaly.models.scoring import AnomalyModel
from bench.detection_bench import N_RUNS, available_generators, prepare, write_config
from bench.tune_side import tune_side
from bench.zoo import RUN_EVERY_SECONDS


def _utc(t: float, fmt: str = "%a %m-%d %H:%M") -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime(fmt)


def explain_case(
    generator: str, seed: int, tenant: str, metric: str, *, run: int, rows: int, days: bool
) -> int:
    """Print the case; returns the exit status (2 for a case that cannot be shown)."""
    gen = tune_side("generator", generator, {g.name: g for g in available_generators()}, seed)
    if gen is None:
        return 2
    if not 0 <= run < N_RUNS:
        print(f"`--run` must be within [0, {N_RUNS - 1}], got {run}")
        return 2
    if rows < 1:
        print(f"`--rows` must be at least 1, got {rows}")
        return 2
    scenario, tsdb, _ = prepare(gen, seed)
    at = scenario.end - (N_RUNS - 1 - run) * RUN_EVERY_SECONDS
    with (
        tempfile.TemporaryDirectory(prefix="anomaly-explain-") as tmp,
        devstack.run_pushgateway() as pgw,
        devstack.run_prometheus(prebuilt_data_dir=tsdb, retention="100y") as (prom, _),
    ):
        config = load_config(write_config(scenario, Path(tmp) / "config.yaml", prom.url, pgw.url))
        metrics = {m.name: m for m in config.metrics if m.detect}
        if metric not in metrics:
            print(f"unknown metric {metric!r}; detected metrics: {', '.join(sorted(metrics))}")
            return 2
        report = run_once(config, now=at)
        found = [f for f in report.findings if str(f.key.tenant) == tenant and f.metric == metric]
        if not found:
            print(f"run {run} ({_utc(at)}) scored no series {tenant}/{metric}")
            return 2
        f = found[0]
        print(
            f"run {run} at {_utc(at)} UTC: score {f.score:.2f}, flagged {f.is_anomaly}, actual "
            f"{f.actual:.4g} vs expected {f.expected:.4g} [{f.lower:.4g}, {f.upper:.4g}]"
        )
        loaded = ModelStore(config.model_dir).load(metric)
        if loaded is None:
            print(f"no stored model for {metric}")
            return 2
        arrays, meta = loaded
        keys = [str(k) for k in meta["keys"]]
        with PrometheusSource(config.prometheus) as source:
            frame = read_frame(config, metrics[metric], now=at, source=source)
    # The stored ids are JSON `[tenant, labels]`; match the tenant exactly (org-1 is not org-17).
    j = next(i for i, k in enumerate(keys) if json.loads(k)[0] == tenant)
    col = next(i for i, k in enumerate(frame.keys) if str(k.tenant) == tenant)
    model = AnomalyModel.from_state(arrays).select(np.array([j]))
    times, values = frame.times, frame.values[:, [col]]
    print(f"calendar: {model.seasonal_.calendar_[0]}")
    cal = model.rules_.calibration_[: len(RULE_NAMES), 0]
    print("calibration: " + ", ".join(f"{n} {c:.2f}" for n, c in zip(RULE_NAMES, cal, strict=True)))
    n = min(rows, times.shape[0])
    parts = model.explain(times, values, n_eval=n)
    result = model.score(times, values, n_eval=n)
    names = list(parts)
    print(
        f"{'row (UTC)':<16} {'value':>10} {'expected':>10}  score  "
        + " ".join(f"{k:>8}" for k in names)
    )
    for i in range(n):
        t = times[-n + i]
        print(
            f"{_utc(t):<16} {values[-n + i, 0]:>10.4g} {result.expected[i, 0]:>10.4g}  "
            f"{result.score[i, 0]:5.2f}  " + " ".join(f"{parts[k][i, 0]:8.2f}" for k in names)
        )
    if days:
        feats = np.abs(model.seasonal_.features(times, values)[:, : len(RULE_NAMES) - 1, 0])
        day = np.floor((times - times[-1]) / 86400.0).astype(np.int64)
        print("each day's 95th percentile of |feature| (z, mean_6, mean_12, mean_36, var_12):")
        for d in np.unique(day):
            on = day == d
            q = np.nanquantile(feats[on], 0.95, axis=0)
            print(f"  from {_utc(times[on][0])}  " + " ".join(f"{x:6.1f}" for x in q))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.explain_case", description=__doc__)
    p.add_argument("generator")
    p.add_argument("seed", type=int)
    p.add_argument("tenant")
    p.add_argument("metric")
    p.add_argument("--run", type=int, default=N_RUNS - 1, help="which run (default the last)")
    p.add_argument("--rows", type=int, default=6, help="newest rows shown (default 6)")
    p.add_argument("--days", action="store_true", help="each day's feature tails")
    a = p.parse_args(argv)
    return explain_case(
        a.generator, a.seed, a.tenant, a.metric, run=a.run, rows=a.rows, days=a.days
    )


if __name__ == "__main__":
    sys.exit(main())
