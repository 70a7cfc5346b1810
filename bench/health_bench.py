"""Benchmark of the health score: do tenants in more trouble score lower?

Run: ``python -m bench.health_bench [--seeds 1 2 3 4 5] [--tenants 24] [--config config.yaml]``

For every seed, :func:`anomaly_lab.synth.generate` draws ``--tenants`` tenants over eight days
and gives each a graded amount of trouble, live at the newest point: none; one or two anomalous
metrics that break no objective (a traffic spike or outage, a queue backlog, an AI cost spike,
a latency rise); one, two or three breached objectives (error ratio up sevenfold, completion
down 20 points, latency up fivefold, the rolling 24 h AI spend pushed over budget), alone or
with further anomalies. Scores come from the job's real path: one
:class:`~anomaly.models.scoring.AnomalyModel` per metric fitted on the last seven days and scoring the
newest point as the job does; the flagged series' scores and the newest values go through
:func:`anomaly.health.tenant_health` with the ``health`` section of `--config` (objectives
latency_p95 max 2.0, error_ratio max 0.005, completion min 0.8, ai_spend_24h max 100).

A tenant's trouble is ``(breached objectives, anomalous metrics)``, both read from the truth:
the objectives its newest values actually breach, and the metrics with an injection live at
the newest point. Reported:

* pairwise ordering accuracy: over all pairs of tenants of a seed where one has strictly more
  trouble (no fewer breaches and no fewer anomalous metrics, and more of one), the share where
  that tenant scores strictly lower [>= 90 %];
* the same with breaches ranked first (more breaches is more trouble whatever the anomalies;
  equal breaches, more anomalous metrics);
* the score per trouble level (mean, min, max), the detector's misses and false flags.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from anomaly_lab import synth

from anomaly.config import HealthConfig, load_config
from anomaly.health import TenantHealth, tenant_health
from anomaly.job.run import newest_value
from anomaly.models.scoring import AnomalyModel

HOUR = 3600.0
DAY = 86400.0
STEP = 300
LOOKBACK_POINTS = 7 * 288 + 1
DETECTED = ("request_rate", "latency_p95", "error_ratio", "ai_cost", "completion", "queue_depth")
_BASE_END = 1_795_305_600.0  # Sunday 2026-11-22 00:00 UTC

# (metric, kind, magnitude, duration hours): trouble that breaks no objective ...
ANOMALIES = (
    ("request_rate", "spike", None, 0.0),
    ("request_rate", "outage", None, 0.75),
    ("queue_depth", "level_shift", 1.0, 1.5),
    ("ai_cost", "spike", None, 0.0),
    ("latency_p95", "level_shift", 0.6, 2.0),
)
# ... and trouble that breaks one (the spend's magnitude is set per tenant).
BREACHES = (
    ("error_ratio", "level_shift", 6.0, 1.5),
    ("completion", "level_shift", -0.2, 2.5),
    ("latency_p95", "level_shift", 4.0, 2.0),
    ("ai_cost", "level_shift", None, 30.0),
)
# Graded plans: (breach injections, further anomaly injections).
PLANS = ((0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 2), (3, 1))


def rolling_day(counter: np.ndarray) -> np.ndarray:
    """``increase(counter[1d])`` on the grid (NaN for the first day)."""
    lag = round(DAY / STEP)
    out = np.full_like(counter, np.nan)
    out[lag:] = counter[lag:] - counter[:-lag]
    return out


def plan_trouble(
    names: tuple[str, ...], spend_now: np.ndarray, end: float, rng: np.random.Generator
) -> list[synth.Injection]:
    """Injections giving tenant ``i`` the plan ``PLANS[i % len(PLANS)]``, live at `end`."""
    injections = []
    for i, tenant in enumerate(names):
        n_breach, n_anom = PLANS[i % len(PLANS)]
        used: set[str] = set()
        picks = [BREACHES[k] for k in rng.permutation(len(BREACHES))[:n_breach]]
        used |= {p[0] for p in picks}
        free = [a for a in ANOMALIES if a[0] not in used]
        picks += [free[k] for k in rng.permutation(len(free))[:n_anom]]
        for metric, kind, magnitude, hours in picks:
            if metric == "ai_cost" and kind == "level_shift":
                # 30 h at a rate that puts the rolling 24 h spend 20-60 % over the budget.
                magnitude = max(0.3, rng.uniform(120.0, 160.0) / float(spend_now[i]) - 1.0)
            injections.append(
                synth.ending_injection(
                    tenant,
                    metric,
                    kind,
                    end=end,
                    step_seconds=STEP,
                    duration_seconds=hours * HOUR,
                    magnitude=magnitude,
                )
            )
    return injections


def score_seed(
    seed: int, n_tenants: int, health: HealthConfig
) -> list[tuple[TenantHealth, int, int, int, int]]:
    """Per tenant: its health, breached objectives, anomalous metrics (truth), misses, false flags."""
    end = _BASE_END - (seed % 7) * DAY - ((seed * 5) % 24) * HOUR
    rng = np.random.default_rng([seed, 7])
    names = synth.tenant_names(n_tenants)
    clean = synth.generate(names, days=8, step_seconds=STEP, end=end, seed=seed)
    spend_now = rolling_day(clean.matrix("ai_cost"))[-1]
    injections = plan_trouble(names, spend_now, end, rng)
    data = synth.generate(
        names, days=8, step_seconds=STEP, end=end, seed=seed, injections=injections
    )
    truth = data.anomalous_pairs()

    current: dict[str, dict[str, list[float]]] = defaultdict(dict)
    flagged: dict[str, dict[str, float]] = defaultdict(dict)
    for metric in DETECTED:
        df = synth.to_frame(data, metric, as_queried=True).iloc[-LOOKBACK_POINTS:]
        times = np.array([t.timestamp() for t in df.index])
        values = df.to_numpy(dtype=float)
        result = AnomalyModel(step_seconds=STEP).fit(times, values).score(times, values, n_eval=1)
        for j, tenant in enumerate(names):
            current[tenant][metric] = [newest_value(values[:, j])]
            if result.valid[j] and result.is_anomaly[-1, j]:
                flagged[tenant][metric] = float(result.score[-1, j])
    spend = rolling_day(data.matrix("ai_cost"))
    for j, tenant in enumerate(names):
        current[tenant]["ai_spend_24h"] = [newest_value(spend[:, j])]

    out = []
    for tenant in names:
        h = tenant_health(health, tenant, current[tenant], flagged[tenant])
        breached = sum(
            1
            for obj in health.objectives
            if obj.metric in current[tenant]
            and (
                (obj.max is not None and current[tenant][obj.metric][0] > obj.max)
                or (obj.min is not None and current[tenant][obj.metric][0] < obj.min)
            )
        )
        anomalous = {m for t, m in truth if t == tenant}
        misses = len(anomalous - set(flagged[tenant]))
        false = len(set(flagged[tenant]) - anomalous)
        out.append((h, breached, len(anomalous), misses, false))
    return out


def pair_accuracy(rows: list[tuple[float, int, int]], lexicographic: bool) -> tuple[int, int]:
    """Ordered pairs (more trouble, less) and how many of them score strictly lower."""
    good = total = 0
    for s1, b1, a1 in rows:
        for s2, b2, a2 in rows:
            if lexicographic:
                more = (b1, a1) > (b2, a2)
            else:
                more = b1 >= b2 and a1 >= a2 and (b1, a1) != (b2, a2)
            if more:
                total += 1
                good += s1 < s2
    return good, total


def main(argv: list[str] | None = None) -> int:
    """Score the generated tenants over the seeds and print the figures; 0 on success."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--tenants", type=int, default=27)
    parser.add_argument(
        "--config", type=Path, default=Path(__file__).resolve().parent.parent / "config.yaml"
    )
    args = parser.parse_args(argv)
    health = load_config(args.config).health
    started = time.perf_counter()
    dominance = [0, 0]
    lexical = [0, 0]
    by_level: dict[tuple[int, int], list[float]] = defaultdict(list)
    misses = false = n_anomalous = 0
    per_seed = []
    worst_pairs: list[str] = []
    for seed in args.seeds:
        results = score_seed(seed, args.tenants, health)
        rows = [(h.score, b, a) for h, b, a, _, _ in results]
        g, t = pair_accuracy(rows, lexicographic=False)
        dominance[0] += g
        dominance[1] += t
        g2, t2 = pair_accuracy(rows, lexicographic=True)
        lexical[0] += g2
        lexical[1] += t2
        per_seed.append((seed, g, t))
        for h, b, a, m, f in results:
            by_level[(b, a)].append(h.score)
            misses += m
            false += f
            n_anomalous += a
        for h1, b1, a1, _, _ in results:
            for h2, b2, a2, _, _ in results:
                more = b1 >= b2 and a1 >= a2 and (b1, a1) != (b2, a2)
                if more and h1.score >= h2.score and len(worst_pairs) < 8:
                    worst_pairs.append(
                        f"  seed {seed}: {h1.tenant} ({b1} breached, {a1} anomalous) "
                        f"{h1.score:.1f} >= {h2.tenant} ({b2}, {a2}) {h2.score:.1f}"
                    )
    print("Health scores: generated tenants with graded trouble, scored by the job's real path")
    print(f"seeds {' '.join(map(str, args.seeds))}, {args.tenants} tenants each")
    print(
        f"pairwise ordering accuracy (dominance): {dominance[0]}/{dominance[1]} = "
        f"{100 * dominance[0] / max(dominance[1], 1):.1f} %   [target >= 90 %]"
    )
    print(
        f"pairwise ordering accuracy (breaches first): {lexical[0]}/{lexical[1]} = "
        f"{100 * lexical[0] / max(lexical[1], 1):.1f} %"
    )
    print("  per seed: " + ", ".join(f"{s}: {100 * g / max(t, 1):.0f} %" for s, g, t in per_seed))
    print(
        f"detector: {misses} of {n_anomalous} injected anomalous metrics missed, "
        f"{false} false flags"
    )
    print("score by trouble (breached objectives, anomalous metrics): n, mean [min, max]")
    for level in sorted(by_level):
        s = np.array(by_level[level])
        print(f"  {level}: {s.size:3d}, {s.mean():5.1f} [{s.min():5.1f}, {s.max():5.1f}]")
    if worst_pairs:
        print("first misordered pairs:")
        print("\n".join(worst_pairs))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
