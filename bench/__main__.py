"""``make bench``: every benchmark in turn; each prints its own figures."""

from __future__ import annotations

import sys

from bench import detection_bench, forecast_bench, health_bench, nab_bench


def main() -> int:
    print("== detection quality on generated scenarios (python -m bench.detection_bench)")
    detection_bench.main([])
    print("\n== forecasts and budget breaches (python -m bench.forecast_bench)")
    forecast_bench.main([])
    print("\n== health scores: more trouble, lower score (python -m bench.health_bench)")
    health_bench.main([])
    print("\n== NAB (nab-dev) standard profile (python -m bench.nab_bench)")
    nab_bench.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
