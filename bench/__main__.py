"""``make bench``: every benchmark in turn; each prints its own figures."""

from __future__ import annotations

import sys
import time

from bench import detection_bench, forecast_bench, health_bench, nab_bench, soak_bench


def main() -> int:
    t0 = time.perf_counter()
    print("== detection quality on generated scenarios (python -m bench.detection_bench)")
    status = detection_bench.main([])
    print("\n== forecasts: budget breaches, then the forecast zoo (python -m bench.forecast_bench)")
    forecast_bench.main([])
    print("\n== health scores: more trouble, lower score (python -m bench.health_bench)")
    health_bench.main([])
    print("\n== NAB (nab-dev) standard profile (python -m bench.nab_bench)")
    nab_bench.main([])
    print("\n== live soak, shipped rules and routing: onset → page (python -m bench.soak_bench)")
    soak_bench.main([])
    print(f"\nmake bench: {time.perf_counter() - t0:.0f}s")
    return status


if __name__ == "__main__":
    sys.exit(main())
