"""One run of the job: plan the batches, score each metric, export the series, report."""
