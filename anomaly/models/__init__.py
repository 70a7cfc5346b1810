"""The models: the seasonal baseline, the detectors on its features (threshold rules, isolation
forest; their protocol in :mod:`anomaly.models.base`), their combined score, and forecasts."""
