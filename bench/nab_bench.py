"""NAB figures on the development part of the benchmark (``python -m bench.nab_bench``).

Runs :func:`anomaly.offline.evaluate.evaluate` over ``../shared/data/nab-dev`` (relative to the
repository; never copied into it) and prints the NAB score of the tuned threshold and of the
shipped decision, overall and per category, with the time taken. Skips with a message when
the data is absent.

Then the same over two fixed halves of it, split by file (:data:`TUNE_FILES`,
:data:`MEASURE_FILES`: within each category, files sorted by name, alternately), each judged on
its own (its own tuned threshold, its own normalisation). Tuning looks at the tune half only;
the measure half is the figure that counts, and the gap between the two is printed: a change
that helps the tune half and hurts the measure half is overfitting. ``--no-halves`` skips them.

``--generated`` judges a NAB-style corpus drawn from :mod:`anomaly_lab.synth` instead (written to a
temporary directory): two weeks of 5-minute data per series, one anomaly per series of one of
the generator's kinds (or none, a quarter of them), starting between day 2.5 and day 13, with
NAB's window (a tenth of the file, centred on the anomaly's start). Tuning that helps nab-dev
but hurts this corpus is overfitting.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from anomaly_lab import synth

from anomaly.offline.decision import DECISIONS
from anomaly.offline.evaluate import PROFILES, Evaluation, evaluate, format_table
from anomaly.offline.replay import OfflineOptions

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nab-dev"
TARGETS = {"tuned": 65.0, "shipped": 60.0}  # issue 4, standard profile
MEASURE_TARGET = 68.0  # issue 18: the measure half, shipped decision, standard profile

#: The half of nab-dev that tuning may look at (paths relative to ``data/``): within each
#: category, files sorted by name, the 1st, 3rd, 5th, ... (18 files, 30 windows).
TUNE_FILES: tuple[str, ...] = (
    "artificialNoAnomaly/art_daily_no_noise.csv",
    "artificialNoAnomaly/art_daily_small_noise.csv",
    "artificialNoAnomaly/art_noisy.csv",
    "artificialWithAnomaly/art_daily_flatmiddle.csv",
    "artificialWithAnomaly/art_daily_jumpsup.csv",
    "artificialWithAnomaly/art_increase_spike_density.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv",
    "realAWSCloudwatch/ec2_disk_write_bytes_1ef3de.csv",
    "realAWSCloudwatch/elb_request_count_8c0756.csv",
    "realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv",
    "realAdExchange/exchange-2_cpc_results.csv",
    "realAdExchange/exchange-3_cpc_results.csv",
    "realAdExchange/exchange-4_cpc_results.csv",
    "realKnownCause/ambient_temperature_system_failure.csv",
    "realKnownCause/ec2_request_latency_system_failure.csv",
    "realKnownCause/nyc_taxi.csv",
    "realKnownCause/rogue_agent_key_updown.csv",
)
#: The half only measured from the split on (2026-12-06; sessions before it tuned on all 33
#: files): the 2nd, 4th, ... of each category (15 files, 22 windows). Its figures count.
MEASURE_FILES: tuple[str, ...] = (
    "artificialNoAnomaly/art_daily_perfect_square_wave.csv",
    "artificialNoAnomaly/art_flatline.csv",
    "artificialWithAnomaly/art_daily_jumpsdown.csv",
    "artificialWithAnomaly/art_daily_nojump.csv",
    "artificialWithAnomaly/art_load_balancer_spikes.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_c6585a.csv",
    "realAWSCloudwatch/ec2_network_in_257a54.csv",
    "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv",
    "realAdExchange/exchange-2_cpm_results.csv",
    "realAdExchange/exchange-3_cpm_results.csv",
    "realAdExchange/exchange-4_cpm_results.csv",
    "realKnownCause/cpu_utilization_asg_misconfiguration.csv",
    "realKnownCause/machine_temperature_system_failure.csv",
    "realKnownCause/rogue_agent_key_hold.csv",
)

#: Metrics of the generated corpus (not the ``ai_cost`` counter) and the kinds that suit each.
GENERATED_KINDS: dict[str, tuple[str, ...]] = {
    "request_rate": synth.KINDS,
    "latency_p95": ("spike", "level_shift", "variance_burst", "flatline", "trend_drift"),
    "error_ratio": ("spike", "level_shift", "variance_burst", "flatline", "trend_drift"),
    "completion": ("dip", "level_shift", "outage", "trend_drift"),
    "queue_depth": ("spike", "level_shift", "variance_burst", "flatline", "trend_drift"),
}
#: Duration ranges (hours) of the generated injections; spikes and dips last one or two points,
#: half of the level shifts never end.
_HOURS = {
    "level_shift": (1.0, 6.0),
    "outage": (0.5, 2.0),
    "variance_burst": (1.0, 3.0),
    "flatline": (1.0, 3.0),
    "trend_drift": (12.0, 24.0),
}


def write_generated_corpus(
    root: Path, seeds: Iterable[int] = range(6), *, n_tenants: int = 6, days: float = 14.0
) -> int:
    """Write ``data/<kind or clean>/<file>.csv`` and ``labels/combined_windows.json`` under
    ``root``; return the number of files."""
    step = synth.DEFAULT_STEP_SECONDS
    windows: dict[str, list[list[str]]] = {}
    for seed in seeds:
        rng = np.random.default_rng([seed, 4])
        end = 1795305600.0 - seed * 3 * 86400.0  # walks through the days of the week
        start0 = end - days * 86400.0
        tenants = synth.tenant_names(n_tenants)
        injections: list[synth.Injection] = []
        plan: dict[tuple[str, str], tuple[str, float] | None] = {}
        for tenant in tenants:
            for metric, kinds in GENERATED_KINDS.items():
                if rng.random() < 0.25:
                    plan[tenant, metric] = None
                    continue
                kind = str(rng.choice(kinds))
                start = start0 + round(rng.uniform(2.5, 13.0) * 86400 / step) * step
                stop: float | None
                if kind in ("spike", "dip"):
                    stop = start + int(rng.integers(0, 2)) * step
                elif kind == "level_shift" and rng.random() < 0.5:
                    stop = None
                else:
                    lo, hi = _HOURS[kind]
                    stop = start + round(rng.uniform(lo, hi) * 3600 / step) * step
                injections.append(synth.Injection(tenant, metric, kind, start, stop))
                plan[tenant, metric] = (kind, start)
        ds = synth.generate(
            list(tenants), days=days, step_seconds=step, end=end, seed=seed, injections=injections
        )
        stamps = pd.to_datetime(ds.timestamps, unit="s", utc=True).strftime("%Y-%m-%d %H:%M:%S")
        half = 0.05 * ds.timestamps.size * step
        for (tenant, metric), what in plan.items():
            category = what[0] if what else "clean"
            key = f"{category}/s{seed}_{tenant}_{metric}.csv"
            (root / "data" / category).mkdir(parents=True, exist_ok=True)
            values = ds.get(tenant, metric).values
            pd.DataFrame({"timestamp": stamps, "value": values}).to_csv(
                root / "data" / key, index=False
            )
            windows[key] = (
                [[_iso(what[1] - half), _iso(what[1] + half)]] if what is not None else []
            )
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows, indent=1))
    return len(windows)


def _iso(epoch: float) -> str:
    return pd.Timestamp(epoch, unit="s").strftime("%Y-%m-%d %H:%M:%S.%f")


def report(
    data: Path,
    options: OfflineOptions,
    profile: str,
    jobs: int | None,
    per_file: bool,
    output: str | None,
) -> Evaluation:
    """Evaluate the corpus at ``data`` (``data/``, ``labels/``), print the figures, return them."""
    t0 = time.perf_counter()
    ev = evaluate(
        data / "data",
        data / "labels" / "combined_windows.json",
        profile=profile,
        options=options,
        jobs=jobs,
    )
    elapsed = time.perf_counter() - t0
    print(format_table(ev, per_file=per_file))
    tuned, shipped = ev.summary()
    print(
        f"\nNAB {ev.profile.name}: tuned threshold {ev.threshold:.6g} -> "
        f"{tuned.normalised(ev.profile):.1f} (target {TARGETS['tuned']:g}); "
        f"shipped is_anomaly -> {shipped.normalised(ev.profile):.1f} "
        f"(target {TARGETS['shipped']:g}); {len(ev.files)} files, {elapsed:.1f}s"
    )
    if output:
        ev.to_frame().to_csv(output, index=False, float_format="%.6g")
    return ev


def write_half(data: Path, files: Sequence[str], root: Path) -> Path:
    """A corpus of ``files`` of the corpus at ``data`` only, under ``root``: ``data/`` holds
    symlinks to them, ``labels/combined_windows.json`` their windows. Returns ``root``."""
    windows = json.loads((data / "labels" / "combined_windows.json").read_text())
    for key in files:
        link = root / "data" / key
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((data / "data" / key).resolve())
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "combined_windows.json").write_text(
        json.dumps({key: windows[key] for key in files}, indent=1)
    )
    return root


def report_halves(
    data: Path, options: OfflineOptions, profile: str, jobs: int | None, per_file: bool
) -> tuple[Evaluation, Evaluation]:
    """Evaluate :data:`TUNE_FILES` and :data:`MEASURE_FILES` each on its own; print both and
    the gap. Returns the two evaluations (tune, measure)."""
    present = {p.relative_to(data / "data").as_posix() for p in (data / "data").rglob("*.csv")}
    unlisted = sorted(present - set(TUNE_FILES) - set(MEASURE_FILES))
    if unlisted:
        print(f"warning: in neither half (add them to one): {', '.join(unlisted)}")
    missing = sorted((set(TUNE_FILES) | set(MEASURE_FILES)) - present)
    if missing:
        raise FileNotFoundError(f"listed in a half but not under {data / 'data'}: {missing}")
    halves = []
    with tempfile.TemporaryDirectory(prefix="nab-halves-") as tmp:
        for name, files, role in (
            ("tune", TUNE_FILES, "tuning looks at this half only"),
            ("measure", MEASURE_FILES, "not tuned on since the split: the figure that counts"),
        ):
            print(f"\n-- {name} half ({len(files)} files; {role})")
            root = write_half(data, files, Path(tmp) / name)
            halves.append(report(root, options, profile, jobs, per_file, None))
    tune, measure = halves
    print(f"\nnab-dev halves, {tune.profile.name} profile (TUNE_FILES / MEASURE_FILES):")
    print(f"{'half':<10} {'files':>5} {'windows':>7} {'shipped':>8} {'tuned':>6} {'threshold':>10}")
    rows = []
    for name, ev in (("tune", tune), ("measure", measure)):
        tuned, shipped = ev.summary()
        rows.append((shipped.normalised(ev.profile), tuned.normalised(ev.profile)))
        print(
            f"{name:<10} {len(ev.files):>5} {tuned.n_windows:>7} {rows[-1][0]:>8.1f} "
            f"{rows[-1][1]:>6.1f} {ev.threshold:>10.6g}"
            + ("   <- the figure that counts" if name == "measure" else "   (tuned on)")
        )
    gap = rows[0][0] - rows[1][0]
    window = 100 / max(measure.summary()[0].n_windows, 1)  # a miss turned into an early find
    print(
        f"gap tune - measure: shipped {gap:+.1f}, tuned threshold {rows[0][1] - rows[1][1]:+.1f} "
        f"(one window of the measure half is worth up to {window:.1f})"
    )
    print(
        f"issue 18 target, measure half shipped >= {MEASURE_TARGET:g} and within 3 of the tune "
        f"half: {rows[1][0] >= MEASURE_TARGET and abs(gap) <= 3.0}"
    )
    return tune, measure


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.nab_bench", description=__doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NAB directory (data/, labels/)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="standard")
    p.add_argument("--jobs", "-j", type=int, help="worker processes (default: CPU count)")
    p.add_argument("--per-file", action="store_true", help="also print every file")
    p.add_argument("--output", "-o", help="write the figures as CSV")
    p.add_argument(
        "--no-halves", action="store_true", help="skip the tune and measure halves of nab-dev"
    )
    p.add_argument(
        "--generated",
        type=int,
        metavar="SEEDS",
        nargs="?",
        const=6,
        help="judge a generated NAB-style corpus of SEEDS x 30 series (default 6) instead",
    )
    p.add_argument(
        "--decision",
        choices=DECISIONS,
        default=OfflineOptions.decision,
        help="score-csv's decision: alerts (default) or the job's per-row rule",
    )
    p.add_argument(
        "--lookback-days",
        type=float,
        default=OfflineOptions.lookback_seconds / 86400,
        help="history each walk-forward fit sees",
    )
    args = p.parse_args(argv)
    options = OfflineOptions(decision=args.decision, lookback_seconds=args.lookback_days * 86400)

    if args.generated is not None:
        with tempfile.TemporaryDirectory(prefix="nab-generated-") as tmp:
            n = write_generated_corpus(Path(tmp), range(args.generated))
            print(f"generated corpus: {n} files")
            report(Path(tmp), options, args.profile, args.jobs, args.per_file, args.output)
        return 0
    if not ((args.data / "data").is_dir() and (args.data / "labels").is_dir()):
        print(f"NAB data not found at {args.data} (need data/ and labels/); skipping")
        return 0
    report(args.data, options, args.profile, args.jobs, args.per_file, args.output)
    if not args.no_halves:
        report_halves(args.data, options, args.profile, args.jobs, args.per_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
