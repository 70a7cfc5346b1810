"""Scale benchmark: the shipped config's metrics for N/6 tenants in a real Prometheus.

Each tenant has the shipped ``config.yaml``'s workload: six detected metrics (7 days at 5 m; N
counts these series) and the rolling 24 h AI spend forecast against its budget from the AI
cost rate (10 days at 5 m), so a run's cost includes its forecasts.

    python -m bench.scale_bench [--sizes 1000,5000,10000] [--seed 0] [--workers 2]

For each N it measures, each in a fresh subprocess:

* the **floor**: fetching and decoding every range query through the job's own source and
  batching code path, and nothing else, with as many processes as the run's workers (the
  ratios use it); ``floor1`` is the same read by one process;
* the **cold run**: ``run_once`` with an empty model directory (every series fitted);
* the **warm run**: ``run_once`` again on the stored models (scoring only);

and prints seconds, peak memory, cold/floor and warm/floor and how each grows with N. Peak
memory is the largest summed PSS of the phase's process tree, sampled every 50 ms (forked
workers share the parent's pages; PSS counts them once), next to the ``ru_maxrss`` bound
(parent + workers x the largest worker's RSS). It also
times a plain per-series loop (statsmodels MSTL + scikit-learn IsolationForest per series) on
a sample of series and reports the per-series speed-up of the cold run.

The TSDB of each N is backfilled once with promtool (minutes at 10k series) and cached under
``bench/.cache/tsdb-n<N>-seed<seed>/`` (gitignored); later runs copy it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from anomaly_lab import devstack, synth

CACHE = Path(__file__).resolve().parent / ".cache"
#: The detected metrics of a tenant, as in the shipped config.
METRICS = ("request_rate", "latency_p95", "error_ratio", "ai_cost", "completion", "queue_depth")
#: History in the TSDB: the forecast's 10-day lookback plus its 1-day window and a margin.
DAYS = 11.5
#: The forecast metric of the shipped config, forecast from ``ai_cost`` (its rate in $/hour),
#: read from that config so that the two cannot drift apart.
SPEND = next(
    m
    for m in yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text())["metrics"]
    if m["name"] == "ai_spend_24h"
)


def dataset_for(n_series: int, seed: int, end: float) -> synth.Dataset:
    """N/6 tenants x the six :data:`METRICS`, ``DAYS`` at 5 m ending at ``end``."""
    ds = synth.generate(n_series // len(METRICS), days=DAYS, end=end, seed=seed)
    keep = tuple(s for s in ds.series if s.metric in METRICS)
    return dataclasses.replace(ds, series=keep)


def prepare(n_series: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """The cached TSDB directory for ``n_series`` and its description; backfills when missing."""
    root = CACHE / f"tsdb-v2-n{n_series}-seed{seed}"
    meta_path = root / "dataset.json"
    if meta_path.is_file():
        return root / "data", json.loads(meta_path.read_text())
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    end = math.floor(time.time() / 86400) * 86400 - 86400.0  # yesterday 00:00 UTC
    t0 = time.perf_counter()
    ds = dataset_for(n_series, seed, end)
    gen_s = time.perf_counter() - t0
    report = devstack.backfill(ds, root / "data", timeout_seconds=3600)
    meta = {
        "n_series": len(ds.series),
        "n_tenants": len(ds.tenants),
        "n_points": int(ds.timestamps.size),
        "end": end,
        "seed": seed,
        "generate_seconds": gen_s,
        "backfill_seconds": report.seconds,
        "samples": report.samples,
    }
    meta_path.write_text(json.dumps(meta, indent=1))
    print(
        f"  backfilled N={n_series}: {report.samples} samples in {report.seconds:.0f}s "
        f"(generate {gen_s:.1f}s), cached in {root}",
        flush=True,
    )
    return root / "data", meta


def write_config(path: Path, prometheus_url: str, pushgateway_url: str, **scale: Any) -> Path:
    raw = {
        "prometheus": {"url": prometheus_url, "timeout_seconds": 300, "retries": 1},
        "pushgateway": {"url": pushgateway_url, "timeout_seconds": 120},
        "model_dir": str(path.parent / "models"),
        "lookback": "7d",  # as shipped; the forecast metric reads 10d
        "step": "5m",
        "metrics": [{"name": m, "query": synth.QUERIES[m]} for m in METRICS] + [SPEND],
        "scale": scale,
        "log_level": "WARNING",
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# --------------------------------------------------------------------------- one phase, in a child


_FLOOR: dict[str, Any] = {}


def _read_batch(index: int) -> int:
    """Fetch and decode every metric of one batch (the floor's unit of work)."""
    from anomaly.io.prometheus import PrometheusSource
    from anomaly.job.metric import read_frame

    config, plan, now = _FLOOR["config"], _FLOOR["plan"], _FLOOR["now"]
    tenants = None if plan.batches is None else plan.batches[index]
    with PrometheusSource(config.prometheus) as source:
        return sum(
            read_frame(config, mc, now=now, source=source, tenants=tenants).n_series
            for mc in config.metrics
        )


def _child(phase: str, config_path: str, now: float, workers: int) -> dict[str, Any]:
    """Run one phase in this (fresh) process; return its figures."""
    from anomaly.config import load_config
    from anomaly.io.prometheus import PrometheusSource
    from anomaly.job.plan import plan_batches
    from anomaly.job.run import run_once

    config = load_config(config_path)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"phase": phase}
    if phase in ("floor", "floor1"):
        with PrometheusSource(config.prometheus) as source:
            plan = plan_batches(config, source, now)
        n_procs = 1 if phase == "floor1" else min(workers, plan.n_batches)
        _FLOOR.update(config=config, plan=plan, now=now)  # inherited by the forked readers
        if n_procs > 1:  # the batches read side by side, as the run's workers read them
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=n_procs, mp_context=ctx) as pool:
                n = sum(pool.map(_read_batch, range(plan.n_batches)))
        else:
            n = sum(_read_batch(i) for i in range(plan.n_batches))
        out.update(series=n, batches=plan.n_batches)
    else:
        report = run_once(config, now=now, workers=workers)
        out.update(
            series=report.series_scored,
            batches=report.batches,
            refitted=sum(o.refitted for o in report.outcomes),
            failed=report.series_failed,
            fetch=sum(o.fetch_seconds for o in report.outcomes),
            models=sum(o.model_seconds for o in report.outcomes),
            score=sum(o.score_seconds for o in report.outcomes),
            forecast=sum(o.forecast_seconds for o in report.outcomes),
            forecasts=sum(o.n_series for o in report.outcomes if o.metric.forecast is not None),
            push=report.push_seconds,
        )
    out["seconds"] = time.perf_counter() - t0
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out["children_peak_mib"] = child
    # Workers run side by side: count each at the largest one's peak (an upper bound).
    n_workers = min(workers, out["batches"]) if child else 0
    out["total_peak_mib"] = out["peak_mib"] + n_workers * child
    return out


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _pss_kib(pid: int) -> int:
    """Proportional set size of ``pid`` (shared pages split between their users), KiB."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class _PssSampler(threading.Thread):
    """Samples the summed PSS of a process tree every ``interval`` seconds; keeps the peak.

    Forked workers share the parent's pages (the imported libraries), so adding up RSS counts
    them once per process; PSS counts each page once, as the kernel's memory accounting does.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_kib = pid, interval, 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak_kib = max(self.peak_kib, sum(_pss_kib(p) for p in _tree(self.pid)))
            self._done.wait(self.interval)

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak_kib / 1024


def run_phase(phase: str, config: Path, now: float, workers: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.scale_bench", "--child", phase, str(config), str(now)]
    cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    sampler = _PssSampler(proc.pid)
    sampler.start()
    stdout, stderr = proc.communicate()
    pss_peak = sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{phase} failed:\n{stderr[-3000:]}")
    out = dict(json.loads(stdout.strip().splitlines()[-1]))
    out["pss_peak_mib"] = pss_peak
    return out


# --------------------------------------------------------------------------- the plain loop


def plain_loop_seconds(ds_values: np.ndarray, step_seconds: float) -> float:
    """Seconds per series of the plain approach: statsmodels MSTL (daily + weekly) and a
    scikit-learn IsolationForest on the residual features, one series at a time."""
    import warnings

    from sklearn.ensemble import IsolationForest
    from statsmodels.tsa.seasonal import MSTL

    per_day = int(86400 / step_seconds)
    t0 = time.perf_counter()
    for j in range(ds_values.shape[1]):
        y = ds_values[:, j]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = MSTL(
                y, periods=(per_day, 7 * per_day) if y.size >= 14 * per_day else per_day
            ).fit()
        resid = np.asarray(res.resid)
        feats = np.column_stack([resid, np.gradient(y), np.arange(y.size) % per_day])
        forest = IsolationForest(n_estimators=100, random_state=0).fit(feats)
        forest.score_samples(feats[-1:])
    return (time.perf_counter() - t0) / ds_values.shape[1]


# --------------------------------------------------------------------------- main


def bench_size(n_series: int, seed: int, workers: int, workdir: Path) -> dict[str, Any]:
    data_dir, meta = prepare(n_series, seed)
    now = float(meta["end"])
    row: dict[str, Any] = {"n": meta["n_series"], "tenants": meta["n_tenants"]}
    with (
        devstack.run_pushgateway() as pgw,
        devstack.run_prometheus(
            prebuilt_data_dir=data_dir, retention="100y", scrape_interval_seconds=60
        ) as (prom, _),
    ):
        run_dir = workdir / f"n{n_series}"
        run_dir.mkdir()
        config = write_config(run_dir / "config.yaml", prom.url, pgw.url)
        for phase in ("floor1", "floor", "cold", "warm"):
            row[phase] = run_phase(phase, config, now, workers)
            r = row[phase]
            print(
                f"    {phase:<6} {r['seconds']:7.1f}s  {r['series']} series in "
                f"{r['batches']} batches  peak PSS {r['pss_peak_mib']:.0f} MiB "
                f"(RSS bound {r['total_peak_mib']:.0f})"
                + (
                    f"  (fetch {r['fetch']:.1f}s, models {r['models']:.1f}s, "
                    f"score {r['score']:.1f}s, {r['forecasts']} forecasts {r['forecast']:.1f}s "
                    f"summed over workers; push {r['push']:.1f}s)"
                    if "fetch" in r
                    else ""
                ),
                flush=True,
            )
        shutil.rmtree(run_dir / "models", ignore_errors=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.scale_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--sizes", default="1000,5000,10000", help="series counts (default 1000,5000,10000)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="batches in parallel (default 2)")
    p.add_argument("--sample", type=int, default=20, help="series timed in the plain loop")
    p.add_argument("--prepare-only", action="store_true", help="only build the cached TSDBs")
    p.add_argument("--child", nargs=3, metavar=("PHASE", "CONFIG", "NOW"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        phase, config, now = args.child
        print(json.dumps(_child(phase, config, float(now), args.workers)))
        return 0
    sizes = [int(x) for x in args.sizes.split(",")]
    if args.prepare_only:
        for n in sizes:
            prepare(n, args.seed)
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="anomaly-scale-") as tmp:
        for n in sizes:
            print(f"  N={n} (workers={args.workers})", flush=True)
            rows.append(bench_size(n, args.seed, args.workers, Path(tmp)))
    sample = synth.generate(max(1, args.sample), days=7.0, seed=args.seed)  # the 7d lookback
    values = sample.matrix("latency_p95")[:, : args.sample]
    plain = plain_loop_seconds(values, sample.step_seconds)

    print()
    print(
        f"{'N':>6} {'floor1 s':>8} {'floor s':>8} {'cold s':>8} {'warm s':>8} {'cold/floor':>10} "
        f"{'warm/floor':>10} {'peak PSS MiB (floor/cold/warm)':>31} {'cold ms/series':>15}"
    )
    for r in rows:
        peaks = "/".join(f"{r[ph]['pss_peak_mib']:.0f}" for ph in ("floor", "cold", "warm"))
        print(
            f"{r['n']:>6} {r['floor1']['seconds']:>8.1f} {r['floor']['seconds']:>8.1f} "
            f"{r['cold']['seconds']:>8.1f} "
            f"{r['warm']['seconds']:>8.1f} {r['cold']['seconds'] / r['floor']['seconds']:>10.2f} "
            f"{r['warm']['seconds'] / r['floor']['seconds']:>10.2f} {peaks:>31} "
            f"{1000 * r['cold']['seconds'] / r['n']:>15.2f}"
        )
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        k = b["n"] / a["n"]
        growth = ", ".join(
            f"{ph} x{b[ph]['seconds'] / a[ph]['seconds']:.1f}" for ph in ("floor", "cold", "warm")
        )
        print(f"time growth from N={a['n']} to N={b['n']} (x{k:g} series): {growth}")
    last = rows[-1]
    cold_per_series = last["cold"]["seconds"] / last["n"]
    print(
        f"plain per-series loop (MSTL + IsolationForest, {values.shape[1]} series): "
        f"{plain:.3f} s/series; cold run at N={last['n']}: {1000 * cold_per_series:.1f} ms/series "
        f"end to end, speed-up x{plain / cold_per_series:.0f}"
    )
    ok = [
        f"cold <= 3x floor: {last['cold']['seconds'] <= 3 * last['floor']['seconds']}",
        f"warm <= 1.5x floor: {last['warm']['seconds'] <= 1.5 * last['floor']['seconds']}",
        "peak PSS < 1 GiB: "
        + str(all(last[ph]["pss_peak_mib"] < 1024 for ph in ("floor", "cold", "warm"))),
    ]
    print(f"targets at N={last['n']}: " + "; ".join(ok))
    return 0


if __name__ == "__main__":
    sys.exit(main())
