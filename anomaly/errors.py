"""The error tree of the package.

::

    AnomalyError                      base of every error this package raises on purpose
    ├─ ConfigError(ValueError)        bad config: names the key, the value, what is allowed → exit 2
    ├─ SourceError                    Prometheus unreachable / query rejected → the run fails loudly
    │  └─ QueryError                  one metric's query rejected or unusable → that metric skipped
    │     └─ AnswerError              answered unusably (error body, cut JSON) → that metric skipped
    ├─ DataError(ValueError)          one series unusable (too short, all NaN) → skip that series
    ├─ StoreError                     model store unusable as a whole (disk full, no permission)
    └─ SinkError                      Pushgateway rejected or unreachable → the run fails loudly

Only :mod:`anomaly.cli` turns these into exit codes.
"""

from __future__ import annotations


class AnomalyError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(AnomalyError, ValueError):
    """The configuration is invalid; the message names the key, the value and what is allowed."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class SourceError(AnomalyError):
    """Prometheus is unreachable or rejected a request; names the URL."""


class QueryError(SourceError):
    """One metric's query was rejected or returned unusable data."""


class AnswerError(QueryError):
    """Prometheus answered one query, but the answer is unusable (an error body with HTTP 200,
    truncated or malformed JSON, the wrong shape, not JSON, a body that broke off); names the
    query, the URL and what was wrong."""


class DataError(AnomalyError, ValueError):
    """One series cannot be modelled (too short, constant, all NaN)."""


class StoreError(AnomalyError):
    """The model store cannot be written (disk full, no permission)."""


class SinkError(AnomalyError):
    """The Pushgateway is unreachable or rejected a push; names the URL."""
