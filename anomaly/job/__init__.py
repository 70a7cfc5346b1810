"""One run of the job, one module per role, in the order the data flows:

- :mod:`~anomaly.job.plan` — the time window, shards of tenants, batches within a shard;
- :mod:`~anomaly.job.metric` — one metric's step: read → fit or load → score → forecast;
- :mod:`~anomaly.job.export` — THE table of pushed series, and the samples made from it;
- :mod:`~anomaly.job.report` — what a run found (findings, outcomes) and its summary;
- :mod:`~anomaly.job.run` — ``run_once``: batches in worker processes, push, merge;
- :mod:`~anomaly.job.serve` — the scheduled loop of ``anomaly serve``.
"""
