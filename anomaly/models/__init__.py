"""The models: seasonal baseline, isolation forest, their combined score, and forecasts."""
