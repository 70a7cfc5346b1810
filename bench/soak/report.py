"""Whose is each event of the soak, and what the figures are.

An event (a flag, a firing alert, a notification) belongs to an incident when it is about the
incident's tenant, is not about another metric (its ``metric`` label, if any, is among the
kind's :attr:`~bench.soak.world.Kind.related` metrics) and happened at or after the onset.
Everything else is false: a quiet tenant, a metric without an incident, a job-wide alert, or
anything before the onset. A notification is one webhook POST (one Alertmanager group); it
belongs to an incident when one of its firing alerts does.

Per incident: onset → first flag (the push that carried it) → first firing alert → first
notification, its receiver beside the one the escalation matrix names, and every notification
after the first (a duplicate: a second rule, a group that changed, a flap). Summary: critical
onset → page (the first notification at the expected receiver) p95 by nearest rank (an
incident never paged counts as infinite), warnings' onset → notification, notifications, false
ones, duplicates, and the job's runs and false flags.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.soak.watch import AlertSpells, Flag, Run
from bench.soak.world import Incident

TENANT_LABEL = "organization_id"


@dataclass(frozen=True)
class Notification:
    """One webhook POST, as a receiver got it."""

    received_at: float
    receiver: str
    """The receiver whose webhook server got it."""
    status: str
    """``firing`` or ``resolved`` (the group's status)."""
    alerts: tuple[Mapping[str, str], ...]
    """Labels of its firing alerts (of all its alerts when the group is resolved)."""

    @classmethod
    def from_payload(
        cls, received_at: float, receiver: str, payload: Mapping[str, Any]
    ) -> Notification:
        status = str(payload.get("status", ""))
        alerts = [a for a in payload.get("alerts") or [] if isinstance(a, Mapping)]
        firing = [a for a in alerts if a.get("status") == "firing"]
        chosen = firing if status == "firing" else alerts
        return cls(
            received_at, receiver, status, tuple(dict(a.get("labels") or {}) for a in chosen)
        )

    def describe(self) -> str:
        """``AlertName tenant/metric`` for each alert."""
        return ", ".join(
            f"{a.get('alertname')} {a.get(TENANT_LABEL, '-')}"
            + (f"/{a['metric']}" if a.get("metric") else "")
            for a in self.alerts
        )


def owner(labels: Mapping[str, str], at: float, incidents: Sequence[Incident]) -> Incident | None:
    """The incident an event with `labels` at epoch seconds `at` belongs to, if any."""
    tenant, metric = labels.get(TENANT_LABEL), labels.get("metric")
    for incident in incidents:
        if (
            incident.tenant == tenant
            and at >= incident.onset
            and (metric is None or metric in incident.kind.related)
        ):
            return incident
    return None


def _percentile_nearest_rank(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


@dataclass
class Outcome:
    """What happened to one incident (times in epoch seconds)."""

    incident: Incident
    expected_receiver: str
    flag: Flag | None = None
    firing_at: float | None = None
    firing_alert: str | None = None
    notifications: list[Notification] = field(default_factory=list)

    @property
    def first(self) -> Notification | None:
        return self.notifications[0] if self.notifications else None

    @property
    def page(self) -> Notification | None:
        """The first notification at the receiver the escalation matrix names."""
        return next((n for n in self.notifications if n.receiver == self.expected_receiver), None)

    def since_onset(self, at: float | None) -> float | None:
        return None if at is None else at - self.incident.onset

    def to_json(self) -> dict[str, Any]:
        inc = self.incident
        return {
            "kind": inc.kind.description,
            "tenant": inc.tenant,
            "metric": inc.metric,
            "team": inc.kind.team,
            "severity": inc.kind.severity,
            "onset": inc.onset,
            "expected_receiver": self.expected_receiver,
            "flag_seconds": self.since_onset(self.flag.pushed_at if self.flag else None),
            "flag_score": self.flag.score if self.flag else None,
            "flag_metric": self.flag.metric if self.flag else None,
            "firing_seconds": self.since_onset(self.firing_at),
            "firing_alert": self.firing_alert,
            "notification_seconds": self.since_onset(
                self.first.received_at if self.first else None
            ),
            "receiver": self.first.receiver if self.first else None,
            "page_seconds": self.since_onset(self.page.received_at if self.page else None),
            "notifications": [
                {
                    "seconds": n.received_at - inc.onset,
                    "receiver": n.receiver,
                    "alerts": n.describe(),
                }
                for n in self.notifications
            ],
            "duplicates": max(0, len(self.notifications) - 1),
        }


@dataclass
class SoakResult:
    """Every outcome and false event of one soak, and its summary."""

    started_at: float
    ended_at: float
    outcomes: list[Outcome]
    notifications: list[Notification]
    false_notifications: list[Notification]
    resolved_notifications: list[Notification]
    false_flags: list[Flag]
    false_alerts: list[tuple[float, Mapping[str, str]]]
    runs: list[Run]

    def summary(self) -> dict[str, Any]:
        """The figures: critical onset → page, warnings onset → notification, counts."""
        critical = [o for o in self.outcomes if o.incident.kind.severity == "critical"]
        others = [o for o in self.outcomes if o.incident.kind.severity != "critical"]
        pages = [o.page.received_at - o.incident.onset if o.page else math.inf for o in critical]
        notes = [o.first.received_at - o.incident.onset if o.first else math.inf for o in others]
        firing = len(self.notifications)
        durations = [r.duration_seconds for r in self.runs]
        return {
            "critical_incidents": len(critical),
            "critical_paged": sum(o.page is not None for o in critical),
            "critical_page_p95_seconds": _percentile_nearest_rank(pages, 95),
            "critical_page_seconds": pages,
            "warning_incidents": len(others),
            "warning_notified": sum(o.first is not None for o in others),
            "warning_notification_max_seconds": max(notes, default=math.nan),
            "warning_notification_seconds": notes,
            "wrong_receiver": sum(
                o.first is not None and o.first.receiver != o.expected_receiver
                for o in self.outcomes
            ),
            "notifications": firing,
            "false_notifications": len(self.false_notifications),
            "false_share": len(self.false_notifications) / firing if firing else 0.0,
            "duplicate_notifications": sum(max(0, len(o.notifications) - 1) for o in self.outcomes),
            "resolved_notifications": len(self.resolved_notifications),
            "runs": len(self.runs),
            "run_seconds_max": max(durations, default=math.nan),
            "false_flags": len(self.false_flags),
            "false_flag_series": len({(f.tenant, f.metric) for f in self.false_flags}),
            "false_alerts": len(self.false_alerts),
        }

    def to_json(self) -> dict[str, Any]:
        t0 = self.started_at
        return {
            "started_at": t0,
            "ended_at": self.ended_at,
            "incidents": [o.to_json() for o in self.outcomes],
            "false_notifications": [
                {"seconds": n.received_at - t0, "receiver": n.receiver, "alerts": n.describe()}
                for n in self.false_notifications
            ],
            "resolved_notifications": [
                {"seconds": n.received_at - t0, "receiver": n.receiver, "alerts": n.describe()}
                for n in self.resolved_notifications
            ],
            "false_flags": [
                {"seconds": f.pushed_at - t0, **dataclasses.asdict(f)} for f in self.false_flags
            ],
            "false_alerts": [
                {"seconds": at - t0, "labels": dict(labels)} for at, labels in self.false_alerts
            ],
            "runs": [{"seconds": r.finished_at - t0, **dataclasses.asdict(r)} for r in self.runs],
            "summary": self.summary(),
        }


def judge(
    *,
    started_at: float,
    ended_at: float,
    incidents: Sequence[Incident],
    expected_receivers: Mapping[Incident, str],
    flags: Sequence[Flag],
    alerts: Mapping[Any, AlertSpells],
    notifications: Sequence[Notification],
    runs: Sequence[Run],
) -> SoakResult:
    """Give every event to its incident or call it false (see the module docstring)."""
    outcomes = {inc: Outcome(inc, expected_receivers[inc]) for inc in incidents}
    false_flags = []
    for flag in sorted(flags, key=lambda f: f.pushed_at):
        inc = owner({TENANT_LABEL: flag.tenant, "metric": flag.metric}, flag.pushed_at, incidents)
        if inc is None:
            false_flags.append(flag)
        elif outcomes[inc].flag is None:
            outcomes[inc].flag = flag
    false_alerts = []
    for spells in alerts.values():
        for start, _end in spells.spells:
            inc = owner(spells.labels, start, incidents)
            if inc is None:
                false_alerts.append((start, spells.labels))
            elif (current := outcomes[inc].firing_at) is None or start < current:
                outcomes[inc].firing_at = start
                outcomes[inc].firing_alert = spells.labels.get("alertname")
    firing, false_notes, resolved = [], [], []
    for note in sorted(notifications, key=lambda n: n.received_at):
        if note.status != "firing":
            resolved.append(note)
            continue
        firing.append(note)
        owners = {owner(a, note.received_at, incidents) for a in note.alerts} - {None}
        if not owners:
            false_notes.append(note)
        for inc in owners:
            if inc is not None:
                outcomes[inc].notifications.append(note)
    return SoakResult(
        started_at=started_at,
        ended_at=ended_at,
        outcomes=list(outcomes.values()),
        notifications=firing,
        false_notifications=false_notes,
        resolved_notifications=resolved,
        false_flags=false_flags,
        false_alerts=sorted(false_alerts, key=lambda x: x[0]),
        runs=sorted(runs, key=lambda r: r.finished_at),
    )


# ---------------------------------------------------------------------------- the table


def _seconds(value: float | None) -> str:
    if value is None or math.isinf(value):
        return "-"
    return f"{value:.0f} s" if value < 120 else f"{value:.0f} s ({value / 60:.1f} min)"


def format_result(result: SoakResult) -> str:
    """The per-incident table, the false and duplicate notifications, and the summary."""
    rows = [
        (
            "incident (team, severity)",
            "tenant",
            "job flagged",
            "alert firing",
            "first notification",
            "receiver (expected)",
            "notes",
        )
    ]
    for o in result.outcomes:
        kind = o.incident.kind
        first = o.first
        receiver = "-"
        if first is not None:
            mark = (
                "ok" if first.receiver == o.expected_receiver else f"expected {o.expected_receiver}"
            )
            receiver = f"{first.receiver} ({mark})"
        else:
            receiver = f"- (expected {o.expected_receiver})"
        notes = []
        if o.flag is not None:
            notes.append(f"score {o.flag.score:.2f}")
        if o.firing_alert:
            notes.append(o.firing_alert)
        if len(o.notifications) > 1:
            notes.append(f"{len(o.notifications)} notifications")
        rows.append(
            (
                f"{kind.description} ({kind.team}, {kind.severity})",
                o.incident.tenant,
                _seconds(o.since_onset(o.flag.pushed_at if o.flag else None)),
                _seconds(o.since_onset(o.firing_at)),
                _seconds(o.since_onset(first.received_at if first else None)),
                receiver,
                ", ".join(notes),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    t0 = result.started_at

    lines.append("")
    lines.append(f"false notifications: {len(result.false_notifications)}")
    lines += [
        f"  +{n.received_at - t0:.0f} s  {n.receiver}: {n.describe()}"
        for n in result.false_notifications
    ]
    duplicates = [(o, n) for o in result.outcomes for n in o.notifications[1:]]
    lines.append(f"duplicate notifications: {len(duplicates)}")
    lines += [
        f"  {o.incident.kind.description} ({o.incident.tenant}): onset +"
        f"{n.received_at - o.incident.onset:.0f} s  {n.receiver}: {n.describe()}"
        for o, n in duplicates
    ]
    if result.resolved_notifications:
        lines.append(f"resolved notifications: {len(result.resolved_notifications)}")
        lines += [
            f"  +{n.received_at - t0:.0f} s  {n.receiver}: {n.describe()}"
            for n in result.resolved_notifications
        ]
    if result.false_alerts:
        lines.append(f"alerts firing without an incident: {len(result.false_alerts)}")
        lines += [
            f"  +{at - t0:.0f} s  {labels.get('alertname')} {labels.get(TENANT_LABEL, '-')}"
            + (f"/{labels['metric']}" if labels.get("metric") else "")
            for at, labels in result.false_alerts
        ]
    flagged = Counter((f.tenant, f.metric) for f in result.false_flags)
    lines.append(
        f"job flags without an incident: {len(result.false_flags)} in {len(result.runs)} runs"
        + (
            ": " + ", ".join(f"{t}/{m} ×{c}" for (t, m), c in sorted(flagged.items()))
            if flagged
            else ""
        )
    )

    s = result.summary()
    lines.append("")
    lines.append(
        f"critical incidents paged: {s['critical_paged']} of {s['critical_incidents']}, "
        f"onset → page p95 {_seconds(s['critical_page_p95_seconds'])}"
    )
    lines.append(
        f"warnings notified: {s['warning_notified']} of {s['warning_incidents']}, "
        f"onset → notification max {_seconds(s['warning_notification_max_seconds'])}"
    )
    lines.append(
        f"notifications: {s['notifications']}, false {s['false_notifications']} "
        f"({100 * s['false_share']:.0f} %), duplicates {s['duplicate_notifications']}, "
        f"at an unexpected receiver {s['wrong_receiver']}"
    )
    lines.append(f"job: {s['runs']} runs, the longest {s['run_seconds_max']:.1f} s")
    return "\n".join(lines)
