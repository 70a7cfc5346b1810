"""What the soak sees happen, and when: the job's pushes, Prometheus' alerts, the notifications.

:class:`Watcher` polls, every couple of seconds,

- the Pushgateway (``/api/v1/metrics``): every group's ``push_time_seconds`` dates what it
  holds, so a flag (``anomaly_detected == 1``) is dated to the push that carried it, not to the
  poll that saw it; the job's own group gives each run (``anomaly_job_last_success_timestamp_
  seconds``, ``anomaly_job_duration_seconds``);
- Prometheus (``/api/v1/alerts``): each alert's firing spells, dated to the poll that first
  (and last) saw it firing; once the soak is over, :meth:`Watcher.date_alerts` dates them
  exactly, to the evaluations that fired them (``ALERTS`` samples).

Notifications need no polling: each receiver's webhook server stamps what it receives
(:attr:`anomaly_lab.webhook.WebhookReceiver.receipts`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger(__name__)

AlertKey = tuple[tuple[str, str], ...]
"""An alert's identity: its sorted labels."""


@dataclass(frozen=True)
class Flag:
    """A series the job pushed as anomalous (``anomaly_detected == 1``)."""

    pushed_at: float
    """Epoch seconds of the push (the group's ``push_time_seconds``)."""
    tenant: str
    metric: str
    score: float


@dataclass(frozen=True)
class Run:
    """One run of the job, from its own group."""

    finished_at: float
    duration_seconds: float
    series: float
    anomalies: float


def flags_of(run: Run, flags: Sequence[Flag], slack_seconds: float = 5.0) -> list[Flag]:
    """The flags `run` pushed: those pushed while it ran (its pushes precede its own group's,
    which carries ``finished_at``), give or take `slack_seconds` of clock between the job and
    the Pushgateway. A run a minute after another does not show the other's flags."""
    took = run.duration_seconds if math.isfinite(run.duration_seconds) else 30.0
    start = run.finished_at - max(took, 0.0) - slack_seconds
    return [f for f in flags if start <= f.pushed_at <= run.finished_at + slack_seconds]


@dataclass
class AlertSpells:
    """When an alert was seen firing: ``(first, last)`` poll times of each firing spell."""

    labels: dict[str, str]
    spells: list[list[float]] = field(default_factory=list)
    firing: bool = False


def _value(family: Mapping[str, Any] | None) -> float | None:
    metrics = (family or {}).get("metrics") or []
    return float(metrics[0]["value"]) if metrics else None


class Watcher:
    """Polls the Pushgateway and Prometheus and keeps what it saw (see the module docstring).

    Parameters
    ----------
    pushgateway_url, prometheus_url : str
    tenant_label : str
        The label naming a tenant on the pushed series.
    timeout_seconds : float
        Per HTTP request; a failed poll is logged and skipped, never fatal.
    """

    def __init__(
        self,
        pushgateway_url: str,
        prometheus_url: str,
        *,
        tenant_label: str = "organization_id",
        timeout_seconds: float = 10.0,
    ) -> None:
        self.pushgateway_url = pushgateway_url.rstrip("/")
        self.prometheus_url = prometheus_url.rstrip("/")
        self.tenant_label = tenant_label
        self.timeout_seconds = timeout_seconds
        self.flags: list[Flag] = []
        self.runs: dict[float, Run] = {}
        self.alerts: dict[AlertKey, AlertSpells] = {}
        self._seen_pushes: set[tuple[tuple[tuple[str, str], ...], float]] = set()

    # ------------------------------------------------------------------ polling

    def poll(self) -> None:
        """Read both servers once; a server that does not answer is skipped this time."""
        try:
            self._poll_pushgateway()
        except (requests.RequestException, ValueError, KeyError) as e:
            log.warning("pushgateway poll failed: %s", e)
        try:
            self._poll_alerts(time.time())
        except (requests.RequestException, ValueError, KeyError) as e:
            log.warning("prometheus alerts poll failed: %s", e)

    def _poll_pushgateway(self) -> None:
        response = requests.get(
            f"{self.pushgateway_url}/api/v1/metrics", timeout=self.timeout_seconds
        )
        response.raise_for_status()
        for group in response.json()["data"]:
            pushed_at = _value(group.get("push_time_seconds"))
            if pushed_at is None:
                continue
            key = (tuple(sorted(group.get("labels", {}).items())), pushed_at)
            if key in self._seen_pushes:
                continue
            self._seen_pushes.add(key)
            finished = _value(group.get("anomaly_job_last_success_timestamp_seconds"))
            if finished is not None:
                self.runs[finished] = Run(
                    finished,
                    _value(group.get("anomaly_job_duration_seconds")) or float("nan"),
                    _value(group.get("anomaly_job_series")) or float("nan"),
                    _value(group.get("anomaly_job_anomalies")) or float("nan"),
                )
            scores = {
                (m["labels"].get(self.tenant_label), m["labels"].get("metric")): float(m["value"])
                for m in (group.get("anomaly_score") or {}).get("metrics", [])
            }
            for m in (group.get("anomaly_detected") or {}).get("metrics", []):
                if float(m["value"]) != 1.0:
                    continue
                pair = (m["labels"].get(self.tenant_label), m["labels"].get("metric"))
                if pair[0] and pair[1]:
                    self.flags.append(
                        Flag(pushed_at, pair[0], pair[1], scores.get(pair, float("nan")))
                    )

    def _poll_alerts(self, now: float) -> None:
        response = requests.get(
            f"{self.prometheus_url}/api/v1/alerts", timeout=self.timeout_seconds
        )
        response.raise_for_status()
        firing: set[AlertKey] = set()
        for alert in response.json()["data"]["alerts"]:
            if alert.get("state") != "firing":
                continue
            labels = {str(k): str(v) for k, v in alert["labels"].items()}
            key = tuple(sorted(labels.items()))
            firing.add(key)
            spells = self.alerts.setdefault(key, AlertSpells(labels))
            if not spells.firing:
                spells.spells.append([now, now])
                spells.firing = True
            spells.spells[-1][1] = now
        for key, spells in self.alerts.items():
            if key not in firing:
                spells.firing = False

    def date_alerts(self, since: float, until: float, evaluation_interval_seconds: float) -> None:
        """Replace the polled firing spells by the evaluations that fired them: the samples of
        Prometheus' ``ALERTS{alertstate="firing"}`` between `since` and `until`, read raw
        (a range selector), so an alert is dated to the evaluation that fired it rather than
        to the poll that saw it. Samples further apart than two evaluations end a spell. If
        Prometheus does not answer, the polled spells stay."""
        query = f'ALERTS{{alertstate="firing"}}[{max(1, math.ceil(until - since))}s]'
        try:
            response = requests.get(
                f"{self.prometheus_url}/api/v1/query",
                params={"query": query, "time": str(until)},
                timeout=self.timeout_seconds,
            )
            response.raise_for_status()
            series = response.json()["data"]["result"]
        except (requests.RequestException, ValueError, KeyError) as e:
            log.warning("could not read ALERTS, keeping the polled firing times: %s", e)
            return
        dated: dict[AlertKey, AlertSpells] = {}
        for s in series:
            labels = {
                str(k): str(v)
                for k, v in s["metric"].items()
                if k not in ("__name__", "alertstate")
            }
            spells = dated.setdefault(tuple(sorted(labels.items())), AlertSpells(labels))
            for t, _value in s["values"]:
                t = float(t)
                if spells.spells and t - spells.spells[-1][1] <= 2 * evaluation_interval_seconds:
                    spells.spells[-1][1] = t
                else:
                    spells.spells.append([t, t])
        self.alerts = dated

    def job_has_pushed(self) -> bool:
        """Whether a run of the job has finished and pushed."""
        return bool(self.runs)
