"""Tests for anomaly.io.pushgateway: grouping, replace semantics, value filtering, labels, auth, errors."""

from __future__ import annotations

import base64
import http.client
import json
import math
import threading
import time
import urllib.request
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import pytest
import requests
from anomaly_lab import devstack
from prometheus_client.parser import text_string_to_metric_families
from urllib3.exceptions import ProtocolError

from anomaly.config import AuthConfig, PushgatewayConfig
from anomaly.errors import SinkError
from anomaly.io.pushgateway import PUT_CONNECTIONS, PushgatewaySink, Sample, grouping_key_for
from anomaly.job.export import HELP, POS_INF
from tests.io.fake_http import FakeAdapter, session_with

URL = "http://pushgw.test:9091"
ORG = "organization_id"


# --------------------------------------------------------------------------- an in-memory Pushgateway


def decode_grouping(path: str) -> dict[str, str]:
    """``/metrics/job/<j>/<k>[@base64]/<v>...`` → labels, like the Pushgateway does."""
    parts = path.split("/")[2:]
    out = {}
    for k, v in zip(parts[::2], parts[1::2], strict=True):
        if k.endswith("@base64"):
            k, v = k[: -len("@base64")], base64.urlsafe_b64decode(v + "=" * (-len(v) % 4)).decode()
        else:
            v = unquote_plus(v)
        out[k] = v
    return out


class FakePushgateway(FakeAdapter):
    """Implements PUT/DELETE of groups and GET /api/v1/metrics; records every request."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: dict[frozenset[tuple[str, str]], str] = {}
        # Answered (a (status, body) pair) or raised (an exception), in order, before handling
        # requests.
        self.fail: list[tuple[int, bytes] | BaseException] = []

    def answer(self, request: requests.PreparedRequest) -> tuple[int, Any]:
        if self.fail:
            failure = self.fail.pop(0)
            return failure if isinstance(failure, tuple) else (0, failure)
        path = urlsplit(request.url or "").path
        if request.method == "GET" and path == "/api/v1/metrics":
            return 200, {"status": "success", "data": self.listing()}
        key = frozenset(decode_grouping(path).items())
        if request.method == "PUT":
            body = request.body or b""
            self.groups[key] = body.decode() if isinstance(body, bytes) else body
        elif request.method == "DELETE":
            self.groups.pop(key, None)
        return 200, b""

    def group(self, **labels: str) -> dict[str, Any]:
        """Parsed families of one group: name → (type, help, [(labels, value)])."""
        text = self.groups[frozenset(labels.items())]
        return {
            f.name: (f.type, f.documentation, [(s.labels, s.value) for s in f.samples])
            for f in text_string_to_metric_families(text)
        }

    def keys(self) -> set[frozenset[tuple[str, str]]]:
        return set(self.groups)

    def listing(self) -> list[dict[str, Any]]:
        """GET /api/v1/metrics as the Pushgateway answers it: per group its labels, then each
        family with its series (labels include the grouping key's)."""
        out = []
        for key, text in self.groups.items():
            item: dict[str, Any] = {"labels": dict(key)}
            for f in text_string_to_metric_families(text):
                item[f.name] = {
                    "type": f.type.upper(),
                    "help": f.documentation,
                    "metrics": [
                        {"labels": {**s.labels, **dict(key)}, "value": str(s.value)}
                        for s in f.samples
                    ],
                }
            out.append(item)
        return out


def make_sink(
    tenant_label: str | None = ORG,
    shard: str | None = None,
    *,
    gw: FakePushgateway | None = None,
    **cfg: Any,
) -> tuple[PushgatewaySink, FakePushgateway, list[float]]:
    gw = gw or FakePushgateway()
    sleeps: list[float] = []
    config = PushgatewayConfig(url=URL, job=cfg.pop("job", "anomaly_detector"), **cfg)
    sink = PushgatewaySink(
        config,
        tenant_label,
        shard=shard,
        session=session_with(gw),
        sleep=sleeps.append,
        help_text=HELP,
        pos_inf={"anomaly_forecast_breach_seconds"},
    )
    return sink, gw, sleeps


def K(**labels: str) -> frozenset[tuple[str, str]]:  # noqa: N802 - reads like a type
    return frozenset({"job": "anomaly_detector", **labels}.items())


def cycle(tenants: list[str]) -> list[Sample]:
    out = [Sample("anomaly_job_series", {}, float(len(tenants)))]
    for t in tenants:
        labels = {ORG: t, "metric": "error_ratio"}
        out += [
            Sample("anomaly_score", labels, 0.25),
            Sample("anomaly_health_score", {ORG: t}, 90.0),
        ]
    return out


# --------------------------------------------------------------------------- grouping and payload


def test_one_group_per_tenant_and_one_for_the_job() -> None:
    sink, gw, _ = make_sink()
    report = sink.push(cycle(["a", "b/c", "d e"]))
    assert gw.keys() == {K(), K(**{ORG: "a"}), K(**{ORG: "b/c"}), K(**{ORG: "d e"})}
    assert sorted(map(str, report.groups_pushed)) == sorted(
        map(str, [{}, {ORG: "a"}, {ORG: "b/c"}, {ORG: "d e"}])
    )
    assert report.samples_pushed == 7 and report.groups_deleted == ()
    a = gw.group(job="anomaly_detector", **{ORG: "a"})
    assert a["anomaly_score"] == (
        "gauge",
        HELP["anomaly_score"],
        [({ORG: "a", "metric": "error_ratio"}, 0.25)],
    )
    assert a["anomaly_health_score"][2] == [({ORG: "a"}, 90.0)]
    assert gw.group(job="anomaly_detector")["anomaly_job_series"][2] == [({}, 3.0)]
    put_urls = [r.url or "" for r in gw.requests if r.method == "PUT"]
    assert f"{URL}/metrics/job/anomaly_detector" in put_urls
    assert any("/organization_id@base64/" in u for u in put_urls)  # the value with a slash


def test_a_batch_group_holds_all_of_a_put_s_tenants_and_is_replaced_whole() -> None:
    sink, gw, _ = make_sink()
    own = Sample("anomaly_score", {ORG: "a", "metric": "m", "tenant_group": "x"}, 0.5)
    report = sink.put([*cycle(["a", "b"])[1:], own], group="1-of-2")  # [1:]: tenants only
    assert report.groups_pushed == ({"tenant_group": "1-of-2"},)
    assert gw.keys() == {K(tenant_group="1-of-2")}
    scores = gw.group(job="anomaly_detector", tenant_group="1-of-2")["anomaly_score"][2]
    assert {(labels[ORG], labels.get("exported_tenant_group")) for labels, _ in scores} == {
        ("a", None),
        ("b", None),
        ("a", "x"),  # a series' own `tenant_group` label does not become the grouping key
    }
    sink.put(cycle(["c"])[1:], group="1-of-2")
    scores = gw.group(job="anomaly_detector", tenant_group="1-of-2")["anomaly_score"][2]
    assert [labels[ORG] for labels, _ in scores] == ["c"]
    sink.push(cycle(["c"]), keep=[{"tenant_group": "1-of-2"}])
    assert K(tenant_group="1-of-2") in set(gw.keys())  # kept, not deleted as stale


def test_a_run_into_batch_groups_retires_each_tenant_s_own_group_as_its_batch_lands() -> None:
    """Switching from tenant to batch groups: right after a batch group is put, its tenants'
    old groups go, so no tenant is exported twice while later batches run; one listing serves
    the whole run, and the stale-group deletion at its end."""
    sink, gw, _ = make_sink(shard="0")
    sink.push(cycle(["a", "b", "c"]))  # a run grouped by tenant
    other, _, _ = make_sink(shard="1", gw=gw)
    other.push(cycle(["a"]))  # another shard's tenant group: never ours to delete
    before = len(gw.requests)

    sink.start_run()
    first = sink.put(cycle(["a", "b"])[1:], group="1-of-2")
    assert first.groups_deleted == ({ORG: "a", "shard": "0"}, {ORG: "b", "shard": "0"})
    assert K(**{ORG: "a"}, shard="0") not in gw.groups
    assert K(**{ORG: "c"}, shard="0") in gw.groups  # its batch has not landed yet
    assert K(**{ORG: "a"}, shard="1") in gw.groups
    sink.put(cycle(["c"])[1:], group="2-of-2")
    assert K(**{ORG: "c"}, shard="0") not in gw.groups
    sink.push(cycle([])[:1], keep=[{"tenant_group": g} for g in ("1-of-2", "2-of-2")])
    assert gw.keys() == {
        K(shard="0"),
        K(tenant_group="1-of-2", shard="0"),
        K(tenant_group="2-of-2", shard="0"),
        K(shard="1"),
        K(**{ORG: "a"}, shard="1"),
    }
    gets = [r for r in gw.requests[before:] if r.method == "GET"]
    assert len(gets) == 1  # listed once, at the first batch

    # Outside a run, a put deletes nothing, and the next push lists afresh.
    sink.push(cycle(["d"]))
    sink.put(cycle(["d"])[1:], group="1-of-1")
    assert K(**{ORG: "d"}, shard="0") in gw.groups


def test_a_run_out_of_batch_groups_deletes_each_once_all_its_tenants_are_put_anew() -> None:
    """Switching from batch groups back to tenant groups (or to other batches): an old batch
    group goes right after the put that leaves none of its tenants unput, not at the end of
    the run; one that still holds a tenant this run never puts goes at the end, as stale."""
    sink, gw, _ = make_sink()
    sink.start_run()
    sink.put(cycle(["a", "b"])[1:], group="1-of-3")
    sink.put(cycle(["c", "d"])[1:], group="2-of-3")
    sink.put(cycle(["e"])[1:], group="3-of-3")
    sink.push(cycle([])[:1], keep=[{"tenant_group": f"{i}-of-3"} for i in (1, 2, 3)])
    before = len(gw.requests)

    sink.start_run()
    first = sink.put(cycle(["a", "c"])[1:])  # new batches, grouped by tenant
    assert first.groups_deleted == ()  # 1-of-3 still holds b, 2-of-3 still holds d
    second = sink.put(cycle(["b", "d"])[1:])
    assert second.groups_deleted == ({"tenant_group": "1-of-3"}, {"tenant_group": "2-of-3"})
    assert K(tenant_group="3-of-3") in gw.groups  # e is gone: its group waits for the end
    report = sink.push(cycle([])[:1], keep=[{ORG: t} for t in "abcd"])
    assert report.groups_deleted == ({"tenant_group": "3-of-3"},)
    assert gw.keys() == {K()} | {K(**{ORG: t}) for t in "abcd"}
    gets = [r for r in gw.requests[before:] if r.method == "GET"]
    assert len(gets) == 1  # one listing for the run, its first put


def test_every_contract_series_has_help_text() -> None:
    sink, gw, _ = make_sink(tenant_label=None)
    sink.push([Sample("my_extra_series", {}, 1.0)])
    assert gw.group(job="anomaly_detector")["my_extra_series"][1]  # a generic help text


def test_no_tenant_label_puts_everything_in_the_job_group() -> None:
    sink, gw, _ = make_sink(tenant_label=None)
    sink.push(cycle(["a", "b"]))
    assert gw.keys() == {K()}
    assert len(gw.group(job="anomaly_detector")["anomaly_score"][2]) == 2


def test_grouping_key_for() -> None:
    assert grouping_key_for({ORG: "a", "x": "y"}, ORG) == {ORG: "a"}
    assert grouping_key_for({ORG: ""}, ORG) == {}
    assert grouping_key_for({"x": "y"}, ORG, shard="2") == {"shard": "2"}
    assert grouping_key_for({ORG: "a"}, None) == {}


# --------------------------------------------------------------------------- replace semantics


def test_each_push_replaces_the_previous_one() -> None:
    sink, gw, _ = make_sink()
    sink.push(cycle(["a", "b", "c"]))
    report = sink.push(cycle(["a"]))
    assert gw.keys() == {K(), K(**{ORG: "a"})}
    assert sorted(d[ORG] for d in report.groups_deleted) == ["b", "c"]
    # A series that vanished within a surviving group vanishes too (PUT replaces the group).
    sink.push([Sample("anomaly_score", {ORG: "a", "metric": "other"}, 0.5)])
    assert gw.keys() == {K(**{ORG: "a"})}
    assert gw.group(job="anomaly_detector", **{ORG: "a"}).keys() == {"anomaly_score"}
    report = sink.push([])
    assert gw.keys() == set() and report.groups_deleted == ({ORG: "a"},)


def test_other_jobs_and_other_shards_are_left_alone() -> None:
    sink, gw, _ = make_sink(shard="1")
    gw.groups[frozenset({"job": "someone_else", ORG: "a"}.items())] = ""
    gw.groups[K(**{ORG: "a", "shard": "2"})] = ""
    gw.groups[K(**{ORG: "old", "shard": "1"})] = ""
    report = sink.push(cycle(["a"]))
    assert report.groups_deleted == ({ORG: "old", "shard": "1"},)
    assert gw.keys() == {
        frozenset({"job": "someone_else", ORG: "a"}.items()),
        K(**{ORG: "a", "shard": "2"}),
        K(**{ORG: "a", "shard": "1"}),
        K(shard="1"),
    }
    unsharded, gw2, _ = make_sink()
    gw2.groups[K(**{ORG: "x", "shard": "1"})] = ""
    assert unsharded.push(cycle(["a"])).groups_deleted == ()


def test_a_failed_push_deletes_nothing() -> None:
    sink, gw, _ = make_sink(retries=0)
    sink.push(cycle(["a", "b"]))
    gw.fail = [(400, b"pushed metrics are invalid or inconsistent")]
    with pytest.raises(SinkError):
        sink.push(cycle(["a"]))
    assert gw.keys() == {K(), K(**{ORG: "a"}), K(**{ORG: "b"})}
    assert not any(r.method == "DELETE" for r in gw.requests)


# --------------------------------------------------------------------------- values and labels


def test_non_finite_values_are_dropped_except_inf_breach_seconds() -> None:
    sink, gw, _ = make_sink(tenant_label=None)
    inf, nan = math.inf, math.nan
    report = sink.push(
        [
            Sample("anomaly_score", {"s": "nan"}, nan),
            Sample("anomaly_score", {"s": "inf"}, inf),
            Sample("anomaly_expected_value", {"s": "-inf"}, -inf),
            Sample("anomaly_score", {"s": "ok"}, 0.5),
            Sample("anomaly_forecast_breach_seconds", {"s": "never"}, inf),
            Sample("anomaly_forecast_breach_seconds", {"s": "nan"}, nan),
            Sample("anomaly_forecast_breach_seconds", {"s": "-inf"}, -inf),
        ]
    )
    g = gw.group(job="anomaly_detector")
    assert g["anomaly_score"][2] == [({"s": "ok"}, 0.5)]
    assert g["anomaly_forecast_breach_seconds"][2] == [({"s": "never"}, inf)]
    assert "anomaly_expected_value" not in g
    assert report.samples_pushed == 2 and report.samples_dropped == 5


def test_reserved_empty_invalid_and_duplicate_labels() -> None:
    sink, gw, _ = make_sink()
    report = sink.push(
        [
            Sample("anomaly_score", {ORG: "a", "job": "node", "instance": "h:9100", "x": ""}, 0.1),
            Sample("anomaly_score", {ORG: "a", "bad-name": "v"}, 0.2),
            Sample("bad name", {ORG: "a"}, 0.3),
            Sample("anomaly_detected", {ORG: "a", "k": "v"}, 0.0),
            Sample("anomaly_detected", {"k": "v", ORG: "a"}, 1.0),
        ]
    )
    g = gw.group(job="anomaly_detector", **{ORG: "a"})
    assert g["anomaly_score"][2] == [
        ({ORG: "a", "exported_job": "node", "instance": "h:9100"}, 0.1)
    ]
    assert g["anomaly_detected"][2] == [({ORG: "a", "k": "v"}, 1.0)]
    assert report.samples_dropped == 2 and report.duplicates == 1


HOSTILE = ['x"} or vector(1) #', "back\\slash", "new\nline", "ünï €", "a/b", "p+q%41?&=#", " lead"]


def test_hostile_label_values_survive_the_text_format() -> None:
    sink, gw, _ = make_sink()
    sink.push([Sample("anomaly_score", {ORG: v, "other": v}, 1.0) for v in HOSTILE])
    for v in HOSTILE:
        g = gw.group(job="anomaly_detector", **{ORG: v})
        assert g["anomaly_score"][2] == [({ORG: v, "other": v}, 1.0)]


# --------------------------------------------------------------------------- HTTP: auth, retries, errors


def test_headers_and_bearer_token() -> None:
    sink, gw, _ = make_sink(headers={"X-Scope-OrgID": "t1"}, auth=AuthConfig(bearer_token="tok"))
    sink.push(cycle(["a"]))
    for r in gw.requests:
        assert r.headers["X-Scope-OrgID"] == "t1"
        assert r.headers["Authorization"] == "Bearer tok"
    put = next(r for r in gw.requests if r.method == "PUT")
    assert put.headers["Content-Type"].startswith("text/plain")
    assert gw.timeouts == [30.0] * len(gw.requests)


def test_basic_auth() -> None:
    sink, gw, _ = make_sink(auth=AuthConfig(username="u", password="pw"))
    sink.push(cycle(["a"]))
    assert {r.headers["Authorization"] for r in gw.requests} == {"Basic dTpwdw=="}


def test_rejection_is_a_one_line_sink_error_without_retry_or_secrets() -> None:
    sink, gw, sleeps = make_sink(auth=AuthConfig(bearer_token="s3cret"), retries=3)
    gw.fail = [(400, b"pushed metrics are invalid\nor inconsistent")]
    with pytest.raises(SinkError) as info:
        sink.push(cycle(["a"]))
    msg = str(info.value)
    assert msg.startswith(f"Pushgateway at {URL} rejected push group ")
    assert "HTTP 400" in msg and "invalid or inconsistent" in msg and "\n" not in msg
    assert "s3cret" not in msg and "s3cret" not in repr(sink)
    assert len(gw.requests) == 1 and sleeps == []


def test_5xx_and_connection_errors_are_retried_with_backoff() -> None:
    sink, gw, sleeps = make_sink(retries=3, retry_backoff_seconds=0.5)
    gw.fail = [(503, b"busy"), requests.ConnectionError(ConnectionResetError())]
    sink.push(cycle(["a"]))
    assert sleeps == [0.5, 1.0]
    assert gw.keys() == {K(), K(**{ORG: "a"})}


def test_unreachable_after_retries() -> None:
    sink, gw, sleeps = make_sink(retries=2)
    gw.fail = [requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))] * 3
    with pytest.raises(SinkError) as info:
        sink.push(cycle([]))
    assert (
        str(info.value)
        == f"cannot reach Pushgateway at {URL}: connection refused (after 3 attempts)"
    )


class GarbageListing(FakePushgateway):
    def answer(self, request: requests.PreparedRequest) -> tuple[int, Any]:
        return (200, b"<html>") if request.method == "GET" else super().answer(request)


def test_garbage_group_listing_is_a_sink_error() -> None:
    sink, _, _ = make_sink(gw=GarbageListing())
    with pytest.raises(SinkError, match="api/v1/metrics"):
        sink.push(cycle(["a"]))


def test_real_socket_connection_refused_names_the_url() -> None:
    url = f"http://127.0.0.1:{devstack.free_port()}"
    sink = PushgatewaySink(PushgatewayConfig(url=url, retries=0, timeout_seconds=2), ORG)
    with pytest.raises(SinkError) as info:
        sink.push(cycle(["a"]))
    assert str(info.value) == f"cannot reach Pushgateway at {url}: connection refused"


# --------------------------------------------------------------------------- e2e: real Pushgateway


# ``pushgateway`` (tests/conftest.py): the URL of an empty Pushgateway of each test's own.


def read_back(
    url: str, job: str
) -> dict[tuple[tuple[str, str], ...], dict[str, list[tuple[dict[str, str], str]]]]:
    """group key (without job) → metric name → [(labels, value)] from /api/v1/metrics."""
    with urllib.request.urlopen(url + "/api/v1/metrics", timeout=5) as r:
        doc = json.load(r)
    out = {}
    for g in doc["data"]:
        labels = dict(g["labels"])
        if labels.pop("job") != job:
            continue
        metrics = {
            name: [(m["labels"], m["value"]) for m in fam["metrics"]]
            for name, fam in g.items()
            if isinstance(fam, dict)
            and "metrics" in fam
            and name not in ("push_time_seconds", "push_failure_time_seconds")
        }
        out[tuple(sorted(labels.items()))] = metrics
    return out


@pytest.mark.e2e
def test_e2e_hostile_values_round_trip_through_a_real_pushgateway(pushgateway: str) -> None:
    sink = PushgatewaySink(
        PushgatewayConfig(url=pushgateway, job="anomaly_e2e"), ORG, pos_inf=POS_INF
    )
    values = [*HOSTILE, "ünï/cøde with space", "tab\there", "=", "@base64"]
    report = sink.push(
        [
            Sample("anomaly_score", {ORG: v, "metric": "m", "extra": v + '\\"\n'}, 0.5)
            for v in values
        ]
        + [Sample("anomaly_forecast_breach_seconds", {"metric": "m"}, math.inf)]
    )
    assert len(report.groups_pushed) == len(values) + 1
    got = read_back(pushgateway, "anomaly_e2e")
    assert set(got) == {((ORG, v),) for v in values} | {()}
    for v in values:
        ((labels, value),) = got[((ORG, v),)]["anomaly_score"]
        assert labels[ORG] == v and labels["extra"] == v + '\\"\n' and float(value) == 0.5
    ((labels, value),) = got[()]["anomaly_forecast_breach_seconds"]
    assert float(value) == math.inf


@pytest.mark.e2e
def test_e2e_each_run_replaces_the_previous_one(pushgateway: str) -> None:
    cfg = PushgatewayConfig(url=pushgateway, job="anomaly_e2e")
    sink = PushgatewaySink(cfg, ORG)
    other = PushgatewaySink(PushgatewayConfig(url=pushgateway, job="someone_else"), ORG)
    other.push(cycle(["z"]))
    sink.push(cycle(["a", "b/c", "d"]))
    assert set(read_back(pushgateway, "anomaly_e2e")) == {
        (),
        ((ORG, "a"),),
        ((ORG, "b/c"),),
        ((ORG, "d"),),
    }
    report = sink.push(cycle(["a"]))
    assert sorted(k[ORG] for k in report.groups_deleted) == ["b/c", "d"]
    assert set(read_back(pushgateway, "anomaly_e2e")) == {(), ((ORG, "a"),)}
    assert set(read_back(pushgateway, "someone_else")) == {(), ((ORG, "z"),)}
    # The metric-level view that Prometheus scrapes agrees.
    with urllib.request.urlopen(pushgateway + "/metrics", timeout=5) as r:
        text = r.read().decode()
    scores = [
        s.labels
        for f in text_string_to_metric_families(text)
        if f.name == "anomaly_score"
        for s in f.samples
        if s.labels.get("job") == "anomaly_e2e"
    ]
    assert [s[ORG] for s in scores] == ["a"]


@pytest.mark.e2e
def test_e2e_rejection_names_the_url(pushgateway: str) -> None:
    # A name pushed as a counter elsewhere makes the Pushgateway reject our gauge (type clash).
    body = b"# TYPE anomaly_score counter\nanomaly_score 1\n"
    req = urllib.request.Request(pushgateway + "/metrics/job/other", data=body, method="PUT")
    urllib.request.urlopen(req, timeout=5).close()
    sink = PushgatewaySink(PushgatewayConfig(url=pushgateway, job="anomaly_e2e", retries=0), ORG)
    with pytest.raises(
        SinkError, match=rf"^Pushgateway at {pushgateway} rejected push group .*HTTP 400"
    ):
        sink.push(cycle(["a"]))


def test_a_malformed_http_answer_is_a_sink_error() -> None:
    sink, gw, _ = make_sink(retries=1)
    garbage = ProtocolError("Connection aborted.", http.client.BadStatusLine("garbage"))
    gw.fail = [requests.ConnectionError(garbage)] * 2
    with pytest.raises(SinkError, match="malformed HTTP answer"):
        sink.push(cycle(["a"]))
    assert len(gw.requests) == 2


class SlowPushgateway(FakePushgateway):
    """Each PUT takes 50 ms; records how many were in flight at once; one tenant's group is
    refused."""

    def __init__(self, refuse: str | None = None) -> None:
        super().__init__()
        self.refuse = refuse
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()

    def answer(self, request: requests.PreparedRequest) -> tuple[int, Any]:
        if request.method != "PUT":
            return super().answer(request)
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.refuse is not None and f"/{ORG}/{self.refuse}" in (request.url or ""):
                return 400, b"pushed metrics are invalid or inconsistent"
            time.sleep(0.05)
            return super().answer(request)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_groups_are_put_side_by_side_over_a_few_connections() -> None:
    tenants = [f"t{i:02d}" for i in range(20)]
    sink, gw, _ = make_sink(gw=SlowPushgateway())
    sink.push(cycle(tenants))
    assert gw.keys() == {K()} | {K(**{ORG: t}) for t in tenants}
    assert isinstance(gw, SlowPushgateway)
    assert 2 <= gw.most_in_flight <= PUT_CONNECTIONS


def test_a_refused_group_stops_the_push_within_the_groups_in_flight() -> None:
    """The second group is refused: the push fails naming it, and of the twenty groups
    after it only those already in flight were sent."""
    tenants = [f"t{i:02d}" for i in range(22)]
    sink, gw, _ = make_sink(gw=SlowPushgateway(refuse="t01"), retries=0)
    with pytest.raises(SinkError, match="t01"):
        sink.push(cycle(tenants))
    puts = [r for r in gw.requests if r.method == "PUT"]
    assert len(puts) <= 2 + 2 * PUT_CONNECTIONS
    assert not any(r.method == "DELETE" for r in gw.requests)
