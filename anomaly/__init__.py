"""anomaly: anomaly detection and predictive alerting for Prometheus, per metric and tenant.

The names below are the notebook API; the CLI and the scheduler call the same functions::

    import anomaly
    config = anomaly.load_config("config.yaml")
    frame = anomaly.fetch_frame(config, "latency_p95")
    table = anomaly.score_frame(frame)          # bands, scores and flags as a DataFrame
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "load_config",
    "fetch_frame",
    "frame_from_dataframe",
    "detect",
    "score_frame",
    "run_once",
    "AnomalyModel",
    "estimate_calendars",
]

_LAZY = {
    "load_config": "anomaly.config",
    "fetch_frame": "anomaly.notebook",
    "detect": "anomaly.notebook",
    "run_once": "anomaly.job.run",
    "score_frame": "anomaly.notebook",
    "frame_from_dataframe": "anomaly.frame",
    "AnomalyModel": "anomaly.models.scoring",
    "estimate_calendars": "anomaly.models.seasonal",
}

if TYPE_CHECKING:
    from anomaly.config import load_config
    from anomaly.frame import frame_from_dataframe
    from anomaly.job.run import run_once
    from anomaly.models.scoring import AnomalyModel
    from anomaly.models.seasonal import estimate_calendars
    from anomaly.notebook import detect, fetch_frame, score_frame


def __getattr__(name: str) -> Any:
    # Lazy imports keep `anomaly check-config` fast and free of heavy imports.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'anomaly' has no attribute {name!r}")
