"""Tooling beside the product: local servers, a webhook receiver, the demo, data generators, plots.

Not part of the installed ``anomaly`` package: it serves the tests, the demo, the benchmarks and
the notebooks from a checkout (``pip install -e ./lab``).
"""
