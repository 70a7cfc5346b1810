"""The live soak (:mod:`bench.soak_bench`): the product deployed as a user deploys it, watched.

- :mod:`bench.soak.world`: the tenants, their metrics as one function of time (history and
  live exporter alike) and the incidents bent into them;
- :mod:`bench.soak.watch`: what the bench sees happen (the job's pushes, Prometheus' alerts,
  Alertmanager's notifications), with the time it happened;
- :mod:`bench.soak.report`: who each event belongs to (an incident or nothing), the figures,
  the table and the JSON.
"""
