"""NAB figures on the development part of the benchmark (``python -m bench.nab_bench``).

Runs :func:`anomaly.evaluate.evaluate` over ``../shared/data/nab-dev`` (relative to the
repository; never copied into it) and prints the NAB score of the tuned threshold and of the
shipped decision, overall and per category, with the time taken. Skips with a message when
the data is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from anomaly.evaluate import PROFILES, evaluate, format_table

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nab-dev"
TARGETS = {"tuned": 65.0, "shipped": 60.0}  # issue 4, standard profile


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.nab_bench", description=__doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NAB directory (data/, labels/)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="standard")
    p.add_argument("--jobs", "-j", type=int, help="worker processes (default: CPU count)")
    p.add_argument("--per-file", action="store_true", help="also print every file")
    p.add_argument("--output", "-o", help="write the figures as CSV")
    args = p.parse_args(argv)

    data, labels = args.data / "data", args.data / "labels" / "combined_windows.json"
    if not (data.is_dir() and labels.is_file()):
        print(f"NAB data not found at {args.data} (need data/ and labels/); skipping")
        return 0
    t0 = time.perf_counter()
    ev = evaluate(data, labels, profile=args.profile, jobs=args.jobs)
    elapsed = time.perf_counter() - t0
    print(format_table(ev, per_file=args.per_file))
    tuned, shipped = ev.summary()
    print(
        f"\nNAB {ev.profile.name}: tuned threshold {ev.threshold:.6g} -> "
        f"{tuned.normalised(ev.profile):.1f} (target {TARGETS['tuned']:g}); "
        f"shipped is_anomaly -> {shipped.normalised(ev.profile):.1f} "
        f"(target {TARGETS['shipped']:g}); {len(ev.files)} files, {elapsed:.1f}s"
    )
    if args.output:
        ev.to_frame().to_csv(args.output, index=False, float_format="%.6g")
    return 0


if __name__ == "__main__":
    sys.exit(main())
