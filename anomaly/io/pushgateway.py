"""Results → ``CollectorRegistry`` per group → Pushgateway, replacing the previous run's push.

Groups
------
The Pushgateway stores metrics in *groups*, addressed by ``job`` plus a grouping key. This
sink uses, under the configured ``job``:

* one group per tenant, grouping key ``{<tenant_label>: <tenant>}``, for every sample that
  carries a non-empty tenant label; or, when :meth:`PushgatewaySink.put` is given a ``group``,
  one group ``{tenant_group: <group>}`` for all of that call's tenant samples (a batch of
  tenants: the Pushgateway re-checks every stored group on each PUT, so 2,000 per-tenant groups
  take minutes to push where 4 batch groups take a second);
* one *job group* with an empty grouping key (URL ``/metrics/job/<job>``) for samples without
  a tenant (the job's own health series, global scores, or everything when ``tenant_label``
  is ``None``).

With a ``shard`` every grouping key also gets ``shard=<shard>`` (the job group becomes
``{shard: <shard>}``), so several job instances can split the tenants between them.

Replace semantics
-----------------
:meth:`PushgatewaySink.push` PUTs every current group (PUT replaces a group's metrics
wholesale), then lists the Pushgateway's groups (``GET /api/v1/metrics``) and DELETEs every group
of our ``job`` (and our ``shard``, or with no shard key when unsharded) that this push did not
include. So series that disappeared from the source, and tenants that disappeared entirely,
disappear from the Pushgateway too. If any PUT fails nothing is deleted: a failed run leaves the
previous results in place (``push_time_seconds`` shows their age). Pushing no samples at all
therefore deletes all of the job's groups.

A run pushed batch by batch (:meth:`PushgatewaySink.start_run`, then
:meth:`~PushgatewaySink.put` per batch) lists the groups once, after its first batch's PUTs,
with the tenants each holds, and reuses that listing for the stale groups at the end. When the previous
run grouped its tenants differently (by tenant, by batch, or in other batches), a listed group
this run does not replace is deleted by the put after which all of its tenants have been put
anew: a tenant is exported under two grouping keys only until the last tenant of its old
group has been put (one PUT when moving into batch groups; when moving out of them, the
batches that hold the old group's tenants). These are the only deletions before the end of a
run, and they never leave a tenant without results.

The Pushgateway has no transaction across groups, so "no mixed state" means, precisely:

* each group is replaced whole by one PUT, so every group holds one run's results only;
* the tenant groups go first, then stale groups are deleted, and the job group, which holds
  ``anomaly_job_last_success_timestamp_seconds``, goes last. A push that fails part-way
  therefore leaves some tenants with the new run's results and the rest with the previous
  run's, deletes nothing (but the old groups retired above), and does not advance the
  success timestamp: the run exits non-zero and the job's staleness alerts see it. The next
  successful run replaces every group.

Labels
------
The Pushgateway overwrites labels named like a grouping-key label (``job``, the tenant label,
``shard``) with the group's values. A sample's own ``job`` label (e.g. from a source series)
is therefore exported as ``exported_job`` (likewise ``exported_shard``), following
Prometheus' convention; a sample's tenant label always equals its group's. Empty label values
are dropped (Prometheus treats them as absent). Values may contain anything; grouping key values
with ``/`` are base64-encoded in the URL by prometheus_client (``<label>@base64``).

Values
------
NaN is never pushed, nor ±Inf, except ``+Inf`` for ``anomaly_forecast_breach_seconds`` (defined
as +Inf when no breach is within the horizon). Dropped samples are counted in the report.

HTTP
----
prometheus_client's ``push_to_gateway``/``delete_from_gateway`` build each request (the group's
URL, the text format); their ``handler=`` hands the call to :class:`anomaly.io.http.Endpoint`,
the HTTP layer the source uses too: auth, TLS, timeout, bounded retries on connection errors and
429/5xx, and one-line :class:`~anomaly.errors.SinkError` messages naming the URL.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests
from prometheus_client import CollectorRegistry, delete_from_gateway, push_to_gateway
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from anomaly.config import PushgatewayConfig
from anomaly.errors import SinkError
from anomaly.io.http import Endpoint, answer_text

__all__ = ["PushReport", "PushgatewaySink", "Sample", "grouping_key_for"]

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

GroupingKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    """One gauge value: metric ``name``, ``labels`` (without ``job``/``instance`` semantics)."""

    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class PushReport:
    """What one :meth:`PushgatewaySink.push` did.

    ``groups_pushed``/``groups_deleted`` hold grouping keys without ``job`` (``{}`` is the job
    group).
    """

    groups_pushed: tuple[dict[str, str], ...] = ()
    groups_deleted: tuple[dict[str, str], ...] = ()
    samples_pushed: int = 0
    samples_dropped: int = 0
    duplicates: int = 0


#: The grouping-key label of a group that holds a batch of tenants.
TENANT_GROUP = "tenant_group"
#: Groups PUT at once (:meth:`PushgatewaySink._put_all`).
PUT_CONNECTIONS = 4


def grouping_key_for(
    labels: Mapping[str, str],
    tenant_label: str | None,
    shard: str | None = None,
    group: str | None = None,
) -> dict[str, str]:
    """The grouping key (without ``job``) of a sample with ``labels``; ``group`` puts tenant
    samples in the batch group ``{tenant_group: group}`` instead of their tenant's."""
    key: dict[str, str] = {}
    if tenant_label is not None and labels.get(tenant_label):
        if group is None:
            key[tenant_label] = labels[tenant_label]
        else:
            key[TENANT_GROUP] = group
    if shard is not None:
        key["shard"] = shard
    return key


class _Families(Collector):
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self._families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families)


@dataclass
class _Group:
    key: dict[str, str]
    samples: dict[tuple[str, GroupingKey], float] = field(default_factory=dict)


class PushgatewaySink:
    """Pushes samples to a Pushgateway so that each push replaces the previous one.

    Parameters
    ----------
    config : PushgatewayConfig
        URL, ``job``, timeout, retries, headers, auth and TLS.
    tenant_label : str or None
        Samples carrying this label go to their tenant's group; ``None`` puts everything in the
        job group.
    shard : str, optional
        Adds ``shard=<shard>`` to every grouping key; deletion then only touches this shard.
    session : requests.Session, optional
        Injected for tests (e.g. with a mounted fake adapter); configured like the default one
        (see :mod:`anomaly.io.http`).
    sleep : callable, optional
        Used between retries (``time.sleep`` by default).
    help_text : mapping, optional
        ``# HELP`` text by series name (the job passes :data:`anomaly.job.export.HELP`); other
        names get a generic one.
    pos_inf : collection of str, optional
        Series names whose value may be +Inf; every other non-finite value is dropped.
    """

    def __init__(
        self,
        config: PushgatewayConfig,
        tenant_label: str | None,
        *,
        shard: str | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        help_text: Mapping[str, str] | None = None,
        pos_inf: Collection[str] = (),
    ) -> None:
        if shard is not None and not shard:
            raise ValueError("`shard` must be a non-empty string or None")
        self.config = config
        self.tenant_label = tenant_label
        self.shard = shard
        self._http = Endpoint(config, "Pushgateway", SinkError, session=session, sleep=sleep)
        self.url = self._http.url
        self._help: Mapping[str, str] = help_text or {}
        self._pos_inf = frozenset(pos_inf)
        self._reserved = {"job"} | ({"shard"} if shard is not None else set())
        self._in_run = False
        self._listing: list[dict[str, str]] | None = None
        """The job's groups as listed at the run's first put (see :meth:`start_run`)."""
        self._pending: dict[GroupingKey, set[str]] = {}
        """Per listed group of our shard holding tenants: those this run has not put yet."""
        self._put_keys: set[GroupingKey] = set()
        """The groups this run has put."""

    def __repr__(self) -> str:
        return f"PushgatewaySink(url={self._http.display_url!r}, job={self.config.job!r})"

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

    # ----------------------------------------------------------------------- public API

    def start_run(self) -> None:
        """Begin a run pushed batch by batch (:meth:`put`, then :meth:`push`).

        Within a run, the first :meth:`put` lists the job's groups once, after its PUTs, with
        the tenants each holds. A listed group that the run does not replace (one of a run that
        grouped otherwise: by tenant, by batch, or in other batches) is deleted by the put
        that leaves none of its tenants unput, so no tenant is exported twice, under two
        grouping keys, while the rest of the run goes on. :meth:`push` deletes the other stale
        groups from the same listing and ends the run.
        """
        self._in_run, self._listing, self._pending, self._put_keys = True, None, {}, set()

    def put(self, samples: Iterable[Sample], *, group: str | None = None) -> PushReport:
        """Replace the groups ``samples`` fall into; delete nothing else, except, in a run
        (:meth:`start_run`), the old groups whose tenants have all been put anew.

        For pushing batch by batch: each batch's groups are whole, :meth:`push` with
        ``keep=`` the groups already put then deletes the stale ones and pushes the job group.
        ``group`` puts all tenant samples in one group ``{tenant_group: group}``.
        """
        samples = list(samples)
        groups, dropped, dups = self._group(samples, group)
        self._put_all([groups[k] for k in sorted(groups)])
        if self._in_run:
            self._put_keys |= set(groups)
            if self._listing is None:  # after the first PUT: a dead Pushgateway fails there
                self._listing = self._list_run_groups()
        retired: list[dict[str, str]] = []
        if self._in_run and self._pending and self.tenant_label is not None:
            retired = self._retire(
                {s.labels[self.tenant_label] for s in samples if s.labels.get(self.tenant_label)}
            )
        n_pushed = sum(len(g.samples) for g in groups.values())
        pushed = tuple(groups[k].key for k in sorted(groups))
        log.debug(
            "put %d samples in %d groups to %s, deleted %d old groups",
            n_pushed,
            len(pushed),
            self._http.display_url,
            len(retired),
        )
        return PushReport(pushed, tuple(retired), n_pushed, dropped, dups)

    def _list_run_groups(self) -> list[dict[str, str]]:
        """The run's listing (:meth:`start_run`); fills ``_pending`` with the tenants of each
        tenant or batch group of our shard."""
        self._pending = {}
        listing = []
        for key, tenants in self._groups_with_tenants():
            listing.append(key)
            hkey = tuple(sorted(key.items()))
            if key.get("shard") == self.shard and tenants and hkey not in self._put_keys:
                self._pending[hkey] = tenants
        return listing

    def _retire(self, tenants: set[str]) -> list[dict[str, str]]:
        """After a put of `tenants`: delete and unlist the listed groups (not put by this run)
        whose tenants have all been put in this run."""
        assert self._listing is not None
        retired, kept = [], []
        for key in self._listing:
            hkey = tuple(sorted(key.items()))
            left = self._pending.get(hkey)
            if left is None or hkey in self._put_keys:
                kept.append(key)
                continue
            left -= tenants
            if left:
                kept.append(key)
                continue
            del self._pending[hkey]
            self._delete(key, "delete group whose tenants this run has put elsewhere")
            retired.append(key)
        self._listing = kept
        return retired

    def push(
        self, samples: Iterable[Sample], *, keep: Iterable[Mapping[str, str]] = ()
    ) -> PushReport:
        """Replace everything this job (and shard) pushed before with ``samples``.

        ``keep``: grouping keys (without ``job``) already put by this run through :meth:`put`;
        they are not deleted as stale.

        Raises
        ------
        SinkError
            The Pushgateway is unreachable or rejected a request; names the URL.
        """
        groups, dropped, dups = self._group(samples)
        # Tenant groups first, then stale groups go, and the job group (the run's own health,
        # `anomaly_job_last_success_timestamp_seconds`) last: see "Replace semantics".
        tenant_keys = sorted(k for k in groups if not self._is_job_group(k))
        job_keys = sorted(k for k in groups if self._is_job_group(k))
        self._put_all([groups[k] for k in tenant_keys])
        kept = {tuple(sorted(k.items())) for k in keep}
        kept |= self._put_keys  # whatever `keep` says, this run's groups are not stale
        listing, self._listing, self._pending, self._put_keys = self._listing, None, {}, set()
        self._in_run = False
        deleted = self._delete_stale(set(groups) | kept, listing)
        for gkey in job_keys:
            self._put(groups[gkey])
        pushed = [groups[k].key for k in [*tenant_keys, *job_keys]]
        n_pushed = sum(len(g.samples) for g in groups.values())
        log.info(
            "pushed %d samples in %d groups to %s, deleted %d stale groups, dropped %d samples",
            n_pushed,
            len(pushed),
            self._http.display_url,
            len(deleted),
            dropped,
        )
        return PushReport(tuple(pushed), tuple(deleted), n_pushed, dropped, dups)

    def _put_all(self, groups: list[_Group]) -> None:
        """PUT ``groups`` in order over :data:`PUT_CONNECTIONS` connections at once (a PUT
        mostly waits on the Pushgateway: one tenant group after another was a third of a warm
        run at 1,000 series); the first error ends the push, so a failing Pushgateway sees a
        bounded number of requests: the first group is PUT alone (a Pushgateway that is down
        sees only its tries), then those in flight finish and no later group is started."""
        if not groups:
            return
        self._put(groups[0])
        if len(groups) == 1 or PUT_CONNECTIONS <= 1:
            for g in groups[1:]:
                self._put(g)
            return
        with ThreadPoolExecutor(max_workers=PUT_CONNECTIONS) as pool:
            futures = [pool.submit(self._put, g) for g in groups[1:]]
            try:
                for f in futures:
                    f.result()
            finally:
                for f in futures:
                    f.cancel()

    def _put(self, group: _Group) -> None:
        """Replace one group on the Pushgateway (PUT) with ``group``'s samples."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(self._families(group)))
        push_to_gateway(
            self.url,
            job=self.config.job,
            registry=registry,
            grouping_key=group.key,
            timeout=self.config.timeout_seconds,
            handler=self._handler(f"push group {self._describe(group.key)}"),
        )

    def existing_groups(self) -> list[dict[str, str]]:
        """Grouping keys (without ``job``) of every group of our job on the Pushgateway."""
        return [key for key, _ in self._groups_with_tenants()]

    def _groups_with_tenants(self) -> list[tuple[dict[str, str], set[str]]]:
        """:meth:`existing_groups`, each with the tenants it holds: the tenant label's value in
        its key, else the values on its series (a batch group)."""
        body = self._request("GET", self.url + "/api/v1/metrics", "list groups")
        tl = self.tenant_label
        try:
            doc = json.loads(body)
            items = doc["data"]
            out = []
            for item in items:
                labels = dict(item["labels"])
                if labels.pop("job", None) != self.config.job:
                    continue
                key = {str(k): str(v) for k, v in labels.items()}
                tenants: set[str] = set()
                if tl is not None and tl in key:
                    tenants = {key[tl]}
                elif tl is not None and TENANT_GROUP in key:
                    for family in item.values():
                        if isinstance(family, dict):
                            for m in family.get("metrics") or ():
                                value = (m.get("labels") or {}).get(tl)
                                if value:
                                    tenants.add(str(value))
                out.append((key, tenants))
            return out
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise SinkError(
                f"{self._http.where} answered GET /api/v1/metrics with "
                f"something unexpected ({type(e).__name__}); is it a Pushgateway >= 0.10?"
            ) from None

    # ----------------------------------------------------------------------- grouping

    def _is_job_group(self, key: GroupingKey) -> bool:
        return self.tenant_label is None or all(
            k not in (self.tenant_label, TENANT_GROUP) for k, _ in key
        )

    def _group(
        self, samples: Iterable[Sample], group: str | None = None
    ) -> tuple[dict[GroupingKey, _Group], int, int]:
        groups: dict[GroupingKey, _Group] = {}
        dropped = dups = 0
        reserved = self._reserved | ({TENANT_GROUP} if group is not None else set())
        for s in samples:
            value = float(s.value)
            if math.isnan(value) or (
                math.isinf(value) and not (value > 0 and s.name in self._pos_inf)
            ):
                dropped += 1
                continue
            if not _NAME_RE.match(s.name) or s.name.startswith("__"):
                log.warning("not pushing sample with invalid metric name %r", s.name)
                dropped += 1
                continue
            labels = self._labels(s, reserved)
            if labels is None:
                dropped += 1
                continue
            gkey = grouping_key_for(s.labels, self.tenant_label, self.shard, group)
            hkey: GroupingKey = tuple(sorted(gkey.items()))
            target = groups.setdefault(hkey, _Group(gkey))
            skey = (s.name, tuple(sorted(labels.items())))
            if skey in target.samples:
                dups += 1
            target.samples[skey] = value
        if dups:
            log.warning("%d samples had the same name and labels as another; kept the last", dups)
        return groups, dropped, dups

    def _labels(self, s: Sample, reserved: set[str]) -> dict[str, str] | None:
        out: dict[str, str] = {}
        for k, v in s.labels.items():
            if not _LABEL_RE.match(k) or k.startswith("__"):
                log.warning("not pushing %s: invalid label name %r", s.name, k)
                return None
            if not isinstance(v, str):
                v = str(v)
            if v == "":
                continue
            out[f"exported_{k}" if k in reserved else k] = v
        return out

    def _families(self, group: _Group) -> list[GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        for (name, labels), value in group.samples.items():
            fam = families.get(name)
            if fam is None:
                help_text = self._help.get(name) or f"{name} (pushed by the anomaly job)"
                fam = families[name] = GaugeMetricFamily(name, help_text)
            fam.add_sample(name, dict(labels), value)
        return [families[n] for n in sorted(families)]

    def _describe(self, key: Mapping[str, str]) -> str:
        inner = ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(key.items()))
        return "{" + inner + "}"

    # ----------------------------------------------------------------------- deletion

    def _delete_stale(
        self, current: set[GroupingKey], listing: list[dict[str, str]] | None = None
    ) -> list[dict[str, str]]:
        """Delete our shard's groups not in `current`: of `listing` (the run's, taken at its
        first put), else of a fresh listing."""
        deleted = []
        for key in self.existing_groups() if listing is None else listing:
            if key.get("shard") != self.shard:
                continue  # another shard's (or an unsharded) group: not ours to delete
            if tuple(sorted(key.items())) in current:
                continue
            self._delete(key, "delete stale group")
            deleted.append(key)
        return deleted

    def _delete(self, key: dict[str, str], what: str) -> None:
        delete_from_gateway(
            self.url,
            job=self.config.job,
            grouping_key=key,
            timeout=self.config.timeout_seconds,
            handler=self._handler(f"{what} {self._describe(key)}"),
        )

    # ----------------------------------------------------------------------- HTTP

    def _handler(self, what: str) -> Callable[..., Callable[[], None]]:
        """A prometheus_client push handler that sends through :meth:`_request`."""

        def handler(
            url: str,
            method: str,
            timeout: float | None,
            headers: Sequence[tuple[str, str]],
            data: bytes,
        ) -> Callable[[], None]:
            def send() -> None:
                self._request(method, url, what, data=data, headers=headers)

            return send

        return handler

    def _request(
        self,
        method: str,
        url: str,
        what: str,
        *,
        data: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
    ) -> bytes:
        """One request with bounded retries; the answer's body, or SinkError naming ``what``."""
        resp = self._http.request(method, url, data=data or None, headers=dict(headers), what=what)
        if resp.status_code >= 400:
            raise SinkError(
                f"{self._http.where} rejected {what} (HTTP {resp.status_code}): {answer_text(resp)}"
            )
        return resp.content
