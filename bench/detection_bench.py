"""Detection quality of the shipped decision rule on generated scenarios, as the job sees them.

For each seed: the evaluation scenario (24 tenants × 6 metrics, every anomaly kind live at the
newest point, healed past incidents in some clean series), cut to the job's default 7-day
lookback, one model per metric fitted and the newest point scored — exactly what
``anomaly run --once`` does, without the servers (``tests/e2e/test_run_once.py`` does it with
them). Prints TP/FP/FN, F1 and recall per anomaly kind.

    python -m bench.detection_bench [SEED ...]
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import numpy as np
from anomaly_lab import synth

from anomaly.models.scoring import AnomalyModel

LOOKBACK_POINTS = 7 * 288 + 1


def scenario_end(seed: int) -> float:
    """A fixed end time per seed, walking through the days of the week and the hours of the day,
    so that weekends and Monday mornings are part of every benchmark."""
    base = 1795305600.0  # Sunday 2026-11-22 00:00 UTC
    return base - (seed % 7) * 86400 - ((seed * 5) % 24) * 3600


def evaluate(seed: int) -> tuple[set, set, dict]:
    dataset, truth = synth.evaluation_scenario(n_tenants=24, seed=seed, end=scenario_end(seed))
    flagged: set[tuple[str, str]] = set()
    for metric in dataset.metrics:
        df = synth.to_frame(dataset, metric, as_queried=True).iloc[-LOOKBACK_POINTS:]
        times = np.array([t.timestamp() for t in df.index])
        values = df.to_numpy(dtype=float)
        model = AnomalyModel(step_seconds=dataset.step_seconds).fit(times, values)
        result = model.score(times, values, n_eval=1)
        for j, tenant in enumerate(df.columns):
            if result.is_anomaly[-1, j]:
                flagged.add((str(tenant), metric))
    kinds = {(i.tenant, i.metric): i.kind for i in dataset.injections if i.active(dataset.end)}
    return flagged, truth, kinds


def main(argv: list[str] | None = None) -> int:
    seeds = [int(s) for s in (argv if argv is not None else sys.argv[1:])] or list(range(40, 50))
    tp = fp = fn = 0
    caught: Counter[str] = Counter()
    total: Counter[str] = Counter()
    t0 = time.perf_counter()
    print(f"{'seed':>5} {'TP':>4} {'FP':>4} {'FN':>4}  false positives / misses")
    for seed in seeds:
        flagged, truth, kinds = evaluate(seed)
        s_tp, s_fp, s_fn = flagged & truth, flagged - truth, truth - flagged
        tp, fp, fn = tp + len(s_tp), fp + len(s_fp), fn + len(s_fn)
        for pair in truth:
            total[kinds.get(pair, "?")] += 1
            caught[kinds.get(pair, "?")] += pair in flagged
        detail = ", ".join(
            [f"FP {t}/{m}" for t, m in sorted(s_fp)]
            + [f"FN {t}/{m} ({kinds.get((t, m))})" for t, m in sorted(s_fn)]
        )
        print(f"{seed:>5} {len(s_tp):>4} {len(s_fp):>4} {len(s_fn):>4}  {detail}")
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    print(
        f"\n{len(seeds)} scenarios, 144 series each: precision {precision:.3f}, recall {recall:.3f}, "
        f"F1 {f1:.3f}, false positives {fp} ({fp / len(seeds):.2f} per scenario), "
        f"{time.perf_counter() - t0:.1f}s"
    )
    print("recall per kind: " + ", ".join(f"{k} {caught[k]}/{total[k]}" for k in sorted(total)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
