"""Tests for anomaly.io.prometheus: parsing, chunking, retries, errors, auth, label values."""

from __future__ import annotations

import http.server
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import requests
from anomaly_lab import devstack

from anomaly.config import AuthConfig, PrometheusConfig
from anomaly.errors import AnswerError, QueryError, SourceError
from anomaly.io.prometheus import PrometheusSource, RawSeries
from anomaly.io.promql import escape_label_value, regex_escape_label_value
from tests.io.fake_http import FakeAdapter, session_with
from tests.io.test_promql import HOSTILE

URL = "http://prom.test:9090"


# --------------------------------------------------------------------------- fakes


def params_of(req: requests.PreparedRequest) -> dict[str, str]:
    raw = req.body if req.method == "POST" else urlsplit(req.url or "").query
    if isinstance(raw, bytes):
        raw = raw.decode()
    return {k: v[0] for k, v in parse_qs(raw or "", keep_blank_values=True).items()}


def make_source(
    answer: Callable[..., tuple[int, Any]], **cfg: Any
) -> tuple[PrometheusSource, FakeAdapter, list[float]]:
    adapter = FakeAdapter(answer)
    sleeps: list[float] = []
    config = PrometheusConfig(url=cfg.pop("url", URL), **cfg)
    source = PrometheusSource(config, session=session_with(adapter), sleep=sleeps.append)
    return source, adapter, sleeps


def ok(data: Any) -> tuple[int, Any]:
    return 200, {"status": "success", "data": data}


def error(error_type: str, message: str) -> dict[str, str]:
    """A Prometheus API error body."""
    return {"status": "error", "errorType": error_type, "error": message}


def matrix(*series: tuple[dict[str, str], list[list[Any]]]) -> dict[str, Any]:
    return {"resultType": "matrix", "result": [{"metric": m, "values": v} for m, v in series]}


def grid_answer(
    series_labels: list[dict[str, str]],
) -> Callable[[requests.PreparedRequest], tuple[int, Any]]:
    """Mimic query_range: one point per step from start to end for each series; value = time."""

    def answer(req: requests.PreparedRequest) -> tuple[int, Any]:
        p = params_of(req)
        start, end, step = float(p["start"]), float(p["end"]), float(p["step"])
        n = int(math.floor((end - start) / step + 1e-9)) + 1
        if n > 11000:
            return 400, error("bad_data", "exceeded maximum resolution")
        ts = [start + i * step for i in range(n)]
        return ok(matrix(*[(labels, [[t, str(t)] for t in ts]) for labels in series_labels]))

    return answer


# --------------------------------------------------------------------------- parsing


def test_query_range_parses_values_and_drops_name() -> None:
    src, adapter, _ = make_source(
        lambda r: ok(
            matrix(
                (
                    {"__name__": "up", "organization_id": "a", "job": "x"},
                    [[100, "1.5"], [160, "NaN"], [220, "+Inf"], [280, "-Inf"]],
                ),
                ({"organization_id": "b"}, [[100, "2"]]),
            )
        )
    )
    out = src.query_range("up", 100, 280, 60)
    assert [s.labels for s in out] == [
        {"organization_id": "a", "job": "x"},
        {"organization_id": "b"},
    ]
    a = out[0]
    assert isinstance(a, RawSeries)
    assert a.times.dtype == np.float64 and a.values.dtype == np.float64
    np.testing.assert_array_equal(a.times, [100, 160, 220, 280])
    assert a.values[0] == 1.5 and math.isnan(a.values[1])
    assert a.values[2] == math.inf and a.values[3] == -math.inf
    req = adapter.requests[0]
    assert req.method == "POST" and req.url == URL + "/api/v1/query_range"
    p = params_of(req)
    assert p["query"] == "up" and p["start"] == "100" and p["end"] == "280" and p["step"] == "60"
    assert adapter.timeouts == [30.0]


def test_non_matrix_result_is_a_query_error() -> None:
    src, _, _ = make_source(lambda r: ok({"resultType": "string", "result": [1, "x"]}))
    with pytest.raises(QueryError, match="matrix"):
        src.query_range('"x"', 0, 60, 60)


def test_bad_start_end_step_are_value_errors() -> None:
    src, _, _ = make_source(lambda r: ok(matrix()))
    with pytest.raises(ValueError, match="step_seconds"):
        src.query_range("up", 0, 60, 0)
    with pytest.raises(ValueError, match="end"):
        src.query_range("up", 60, 0, 15)


# --------------------------------------------------------------------------- chunking


@pytest.mark.parametrize("n_points,max_points", [(1, 5), (5, 5), (6, 5), (23, 5), (25000, 11000)])
def test_long_ranges_are_chunked_and_stitched_without_duplicates(
    n_points: int, max_points: int
) -> None:
    labels = [{"organization_id": "a"}, {"organization_id": "b"}]
    src, adapter, _ = make_source(grid_answer(labels), max_points_per_query=max_points)
    start, step = 1_700_000_000.0, 300.0
    end = start + (n_points - 1) * step + 100  # end off-grid: the last point is still on the grid
    out = src.query_range("q", start, end, step)
    assert len(adapter.requests) == math.ceil(n_points / max_points)
    for req in adapter.requests:
        p = params_of(req)
        assert (float(p["end"]) - float(p["start"])) / step + 1 <= max_points
    expected = start + step * np.arange(n_points)
    assert [s.labels for s in out] == labels
    for s in out:
        np.testing.assert_array_equal(s.times, expected)
        np.testing.assert_array_equal(s.values, expected)


def test_stitching_drops_a_point_returned_twice_and_series_only_in_later_chunks() -> None:
    def answer(req: requests.PreparedRequest) -> tuple[int, Any]:
        p = params_of(req)
        if float(p["start"]) == 0:
            return ok(matrix(({"k": "a"}, [[0, "0"], [60, "1"]])))
        return ok(matrix(({"k": "a"}, [[60, "1"], [120, "2"]]), ({"k": "late"}, [[120, "9"]])))

    src, _, _ = make_source(answer, max_points_per_query=2)
    a, late = src.query_range("q", 0, 180, 60)
    np.testing.assert_array_equal(a.times, [0, 60, 120])
    np.testing.assert_array_equal(a.values, [0, 1, 2])
    assert late.labels == {"k": "late"} and late.times.tolist() == [120]


# --------------------------------------------------------------------------- errors and retries


def test_bad_query_is_not_retried_and_names_query_and_message() -> None:
    body = error("bad_data", '1:5: parse error: unexpected "}" in label matching')
    src, adapter, sleeps = make_source(lambda r: (400, body), retries=3)
    with pytest.raises(QueryError) as info:
        src.query_range("rate(up}[5m])", 0, 60, 15)
    msg = str(info.value)
    assert "rate(up}[5m])" in msg and "parse error" in msg and URL in msg and "\n" not in msg
    assert len(adapter.requests) == 1 and sleeps == []


def test_execution_error_422_is_a_query_error() -> None:
    body = error("execution", "many-to-many matching not allowed")
    src, _, _ = make_source(lambda r: (422, body))
    with pytest.raises(QueryError, match="many-to-many"):
        src.query_range("a / b", 0, 60, 15)


def test_5xx_is_retried_with_exponential_backoff_then_succeeds() -> None:
    answers = iter(
        [(503, b"unavailable"), (502, b"bad gateway"), ok(matrix(({"k": "v"}, [[0, "1"]])))]
    )
    src, adapter, sleeps = make_source(
        lambda r: next(answers), retries=3, retry_backoff_seconds=0.5
    )
    (s,) = src.query_range("up", 0, 0, 15)
    assert s.values.tolist() == [1.0]
    assert len(adapter.requests) == 3 and sleeps == [0.5, 1.0]


def test_persistent_5xx_is_a_source_error_after_bounded_retries() -> None:
    src, adapter, sleeps = make_source(lambda r: (500, error("internal", "boom")), retries=2)
    with pytest.raises(SourceError, match="HTTP 500 internal.*boom") as info:
        src.query_range("up", 0, 60, 15)
    assert not isinstance(info.value, QueryError)
    assert len(adapter.requests) == 3 and sleeps == [0.5, 1.0]


def test_server_side_query_timeout_is_a_query_error() -> None:
    body = error("timeout", "query timed out in expression evaluation")
    src, adapter, _ = make_source(lambda r: (503, body), retries=1)
    with pytest.raises(QueryError, match="timed out"):
        src.query_range("heavy", 0, 60, 15)
    assert len(adapter.requests) == 2


def test_429_is_retried() -> None:
    answers = iter([(429, b"slow down"), ok(matrix())])
    src, adapter, _ = make_source(lambda r: next(answers))
    assert src.query_range("up", 0, 60, 15) == []
    assert len(adapter.requests) == 2


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_source_errors_without_retry(status: int) -> None:
    src, adapter, _ = make_source(lambda r: (status, b"no"), retries=3)
    with pytest.raises(SourceError, match="credentials") as info:
        src.query_range("up", 0, 60, 15)
    assert not isinstance(info.value, QueryError)
    assert len(adapter.requests) == 1


def test_non_json_answer_is_a_source_error() -> None:
    src, _, _ = make_source(lambda r: (200, b"<html>login</html>"))
    with pytest.raises(SourceError, match="Prometheus API JSON"):
        src.check()


def test_connection_errors_are_retried_then_one_line_source_error() -> None:
    exc = requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    src, adapter, sleeps = make_source(lambda r: (0, exc), retries=2, retry_backoff_seconds=1.0)
    with pytest.raises(SourceError) as info:
        src.query_range("up", 0, 60, 15)
    assert (
        str(info.value)
        == f"cannot reach Prometheus at {URL}: connection refused (after 3 attempts)"
    )
    assert sleeps == [1.0, 2.0]


# --------------------------------------------------------------------------- auth, headers, TLS


def test_headers_and_bearer_token_are_sent_but_never_shown() -> None:
    token = "s3cr3t-token"
    src, adapter, _ = make_source(
        lambda r: (500, b"nope"),
        headers={"X-Scope-OrgID": "tenant-1"},
        auth=AuthConfig(bearer_token=token),
        retries=0,
    )
    with pytest.raises(SourceError) as info:
        src.query_range("up", 0, 60, 15)
    req = adapter.requests[0]
    assert req.headers["X-Scope-OrgID"] == "tenant-1"
    assert req.headers["Authorization"] == f"Bearer {token}"
    assert token not in str(info.value) and token not in repr(src) and token not in repr(src.config)


def test_basic_auth_is_sent() -> None:
    src, adapter, _ = make_source(lambda r: ok([]), auth=AuthConfig(username="u", password="pw"))
    src.label_values("job")
    assert adapter.requests[0].headers["Authorization"] == "Basic dTpwdw=="


def test_password_in_url_is_redacted_from_errors() -> None:
    exc = requests.ConnectTimeout("timed out http://user:hunter2@prom.test/")
    src, _, _ = make_source(
        lambda r: (0, exc), url="http://user:hunter2@prom.test:9090/", retries=0
    )
    with pytest.raises(SourceError) as info:
        src.check()
    assert "hunter2" not in str(info.value)
    assert str(info.value).startswith("cannot reach Prometheus at http://prom.test:9090: ")
    assert "timed out" in str(info.value)


# --------------------------------------------------------------------------- label values, check


def test_label_values_uses_match_and_sorts() -> None:
    src, adapter, _ = make_source(lambda r: ok(["b", "a"]))
    assert src.label_values("organization_id", match="up{job='x'}") == ["a", "b"]
    req = adapter.requests[0]
    assert urlsplit(req.url or "").path == "/api/v1/label/organization_id/values"
    assert params_of(req) == {"match[]": "up{job='x'}"}


def test_label_values_rejects_a_bad_label_name() -> None:
    src, adapter, _ = make_source(lambda r: ok([]))
    with pytest.raises(ValueError, match="label name"):
        src.label_values("../../admin")
    assert adapter.requests == []


def test_check_is_an_instant_query() -> None:
    src, adapter, _ = make_source(lambda r: ok({"resultType": "scalar", "result": [0, "1"]}))
    src.check()
    assert urlsplit(adapter.requests[0].url or "").path == "/api/v1/query"


# --------------------------------------------------------------------------- real sockets


class _Handler(http.server.BaseHTTPRequestHandler):
    script: list[tuple[float, int]] = []  # (delay seconds, status) per request
    calls = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        cls = type(self)
        delay, status = cls.script[min(cls.calls, len(cls.script) - 1)]
        cls.calls += 1
        time.sleep(delay)
        body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}})
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())
        except OSError:
            pass

    do_GET = do_POST  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"script": [(0.0, 200)], "calls": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_connection_refused_is_one_line_naming_the_url() -> None:
    url = f"http://127.0.0.1:{devstack.free_port()}"
    src = PrometheusSource(PrometheusConfig(url=url, retries=1, retry_backoff_seconds=0))
    with pytest.raises(SourceError) as info:
        src.query_range("up", 0, 60, 15)
    assert (
        str(info.value)
        == f"cannot reach Prometheus at {url}: connection refused (after 2 attempts)"
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_read_timeout_is_retried_and_reported(http_server: tuple[str, type[_Handler]]) -> None:
    url, handler = http_server
    handler.script = [(1.0, 200), (1.0, 200)]
    src = PrometheusSource(
        PrometheusConfig(url=url, timeout_seconds=0.2, retries=1, retry_backoff_seconds=0)
    )
    t0 = time.monotonic()
    with pytest.raises(SourceError, match=r"^cannot reach Prometheus at .*: no answer within 0.2s"):
        src.query_range("up", 0, 60, 15)
    assert handler.calls == 2
    assert time.monotonic() - t0 < 1.5


def test_a_5xx_then_success_over_real_http(http_server: tuple[str, type[_Handler]]) -> None:
    url, handler = http_server
    handler.script = [(0.0, 502), (0.0, 200)]
    src = PrometheusSource(PrometheusConfig(url=url, retries=2, retry_backoff_seconds=0.01))
    assert src.query_range("up", 0, 60, 15) == []
    assert handler.calls == 2


# --------------------------------------------------------------------------- e2e: real Prometheus


# ``prometheus`` (tests/conftest.py): the URL of a bare Prometheus shared by the session.


@pytest.mark.e2e
def test_e2e_chunked_range_query_matches_one_big_query(prometheus: str) -> None:
    start, step = 1_700_000_000.0, 60.0
    end = start + 49 * step
    query = 'label_replace(vector(time()), "organization_id", "a", "", "")'
    small = PrometheusSource(PrometheusConfig(url=prometheus, max_points_per_query=7))
    big = PrometheusSource(PrometheusConfig(url=prometheus))
    (chunked,) = small.query_range(query, start, end, step)
    (whole,) = big.query_range(query, start, end, step)
    assert chunked.labels == whole.labels == {"organization_id": "a"}
    np.testing.assert_array_equal(chunked.times, start + step * np.arange(50))
    np.testing.assert_array_equal(chunked.times, whole.times)
    np.testing.assert_array_equal(chunked.values, chunked.times)


@pytest.mark.e2e
def test_e2e_special_values_and_bad_query(prometheus: str) -> None:
    src = PrometheusSource(PrometheusConfig(url=prometheus))
    series = src.query_range(
        'label_replace(vector(0/0), "k", "nan", "", "") or label_replace(vector(1/0), "k", "inf", "", "") or label_replace(vector(-1/0), "k", "minf", "", "")',
        0,
        60,
        60,
    )
    got = {s.labels["k"]: s.values[0] for s in series}
    assert math.isnan(got["nan"]) and got["inf"] == math.inf and got["minf"] == -math.inf
    with pytest.raises(QueryError, match=r"parse error") as info:
        src.query_range("sum(up", 0, 60, 60)
    assert "sum(up" in str(info.value)
    src.check()
    assert isinstance(src.label_values("__name__"), list)


@pytest.mark.e2e
@pytest.mark.parametrize("value", HOSTILE)
def test_e2e_prometheus_reads_escaped_values_back_exactly(prometheus: str, value: str) -> None:
    src = PrometheusSource(PrometheusConfig(url=prometheus))
    # label_replace expands $1-style references in the replacement; "$$" is a literal "$".
    lit = escape_label_value(value.replace("$", "$$"))
    rx = regex_escape_label_value(value)
    # x gets the literal's value; y is set only if x fully matches the escaped regex.
    q = (
        f'label_replace(label_replace(vector(1), "x", "{lit}", "", ""), '
        f'"y", "matched", "x", "{rx}")'
    )
    (s,) = src.query_range(q, 0, 0, 60)
    assert s.labels.get("x", "") == value
    assert s.labels.get("y") == "matched"
    # A regex built for a different value does not match this one.
    other = regex_escape_label_value(value + "z")
    q2 = f'label_replace(label_replace(vector(1), "x", "{lit}", "", ""), "y", "matched", "x", "{other}")'
    (s2,) = src.query_range(q2, 0, 0, 60)
    assert "y" not in s2.labels


# --------------------------------------------------------------------------- malformed answers

_GOOD_RANGE = json.dumps(
    {"status": "success", "data": matrix(({"k": "v"}, [[0, "1"], [60, "2"]]))}
).encode()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            error("execution", "expanding series: boom"),
            "answered HTTP 200 with an error body (execution): expanding series: boom",
        ),
        (_GOOD_RANGE[:61], "answered HTTP 200 with truncated JSON (61 bytes)"),
        (_GOOD_RANGE[:-1], f"answered HTTP 200 with truncated JSON ({len(_GOOD_RANGE) - 1} bytes)"),
        (b'{"status": tru', "answered HTTP 200 with truncated JSON (14 bytes)"),
        (b'{"status": "success",, }', "answered HTTP 200 with malformed JSON (Expecting"),
        (b"", "answered HTTP 200 with an empty body"),
        (b"<html><body>502 Proxy Error</body></html>", "not JSON: <html><body>502 Proxy Error"),
        ([1, 2], "answered HTTP 200 with JSON that is not a Prometheus API answer: [1, 2]"),
        ({"status": "success"}, "returned no data from"),
        (
            {"status": "success", "data": {"resultType": "vector", "result": []}},
            "returned 'vector' from",
        ),
        (
            {"status": "success", "data": {"resultType": "matrix", "result": {"a": 1}}},
            "malformed matrix from",
        ),
        (
            {"status": "success", "data": {"resultType": "matrix", "result": [[1, 2]]}},
            "malformed matrix from",
        ),
        (
            {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": 3}]}},
            "malformed matrix from",
        ),
        (
            {"status": "success", "data": matrix(({"k": "v"}, [[0, "x"]]))},
            "malformed samples from",
        ),
    ],
    ids=[
        "error-body",
        "truncated",
        "truncated-at-the-end",
        "truncated-literal",
        "malformed-json",
        "empty",
        "html",
        "not-an-api-answer",
        "no-data",
        "vector",
        "result-not-a-list",
        "series-not-an-object",
        "labels-not-an-object",
        "bad-sample",
    ],
)
def test_a_malformed_range_answer_fails_its_query_not_the_source(body: Any, problem: str) -> None:
    src, adapter, sleeps = make_source(lambda r: (200, body), retries=3)
    with pytest.raises(AnswerError) as info:
        src.query_range("rate(up[5m])", 0, 60, 60)
    msg = str(info.value)
    assert isinstance(info.value, QueryError)  # the run fails that metric, not itself
    assert problem in msg, msg
    assert "'rate(up[5m])'" in msg and URL in msg and "\n" not in msg
    assert len(adapter.requests) == 1 and sleeps == []  # the whole answer came: not retried


@pytest.mark.parametrize(
    "body",
    [error("execution", "boom"), b'{"status":"succ', b"<html>login</html>", {"status": "success"}],
)
def test_a_malformed_answer_to_the_instant_count_is_an_answer_error(body: Any) -> None:
    src, _, _ = make_source(lambda r: (200, body))
    with pytest.raises(AnswerError, match="'count by"):
        src.query("count by (organization_id) (up)", 1e9)


@pytest.mark.parametrize(
    "body", [error("execution", "boom"), b'["a", "b', {"status": "success", "data": {"a": 1}}]
)
def test_a_malformed_label_values_answer_is_an_answer_error(body: Any) -> None:
    src, _, _ = make_source(lambda r: (200, body))
    with pytest.raises(
        AnswerError, match=r"^label values of organization_id for \"up\{job='x'\}\""
    ):
        src.label_values("organization_id", match="up{job='x'}")


def test_prometheus_warnings_are_logged_with_the_query_and_odd_ones_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = iter([{"warnings": ["too many series"]}, {"warnings": 3}])
    src, _, _ = make_source(
        lambda r: (200, {"status": "success", "data": matrix(), **next(answers)})
    )
    assert src.query_range("up", 0, 60, 60) == []
    assert src.query_range("up", 0, 60, 60) == []  # a warnings field that is no list
    (record,) = [r for r in caplog.records if "warning for" in r.getMessage()]
    assert record.getMessage() == "Prometheus warning for query 'up': too many series"
    src, _, _ = make_source(lambda r: (200, {"status": "success", "data": 1, "warnings": ["w"]}))
    src.check()
    assert "Prometheus warning for the check: w" in caplog.text


@pytest.mark.parametrize("body", [error("execution", "boom"), b"<html>login</html>"])
def test_a_malformed_answer_to_the_reachability_check_fails_the_source(body: Any) -> None:
    src, _, _ = make_source(lambda r: (200, body))
    with pytest.raises(SourceError, match="did not answer with Prometheus API JSON") as info:
        src.check()
    assert not isinstance(info.value, QueryError)


class _CutHandler(http.server.BaseHTTPRequestHandler):
    """Answers 200 with the head of a range answer whose Content-Length promises all of it,
    then closes: the body breaks off mid-transfer."""

    calls = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).calls += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(_GOOD_RANGE)))
        self.end_headers()
        self.wfile.write(_GOOD_RANGE[:60])
        self.close_connection = True

    do_GET = do_POST  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


def test_an_answer_that_breaks_off_is_retried_then_fails_its_query() -> None:
    handler = type("Cut", (_CutHandler,), {"calls": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        src = PrometheusSource(PrometheusConfig(url=url, retries=1, retry_backoff_seconds=0))
        with pytest.raises(AnswerError) as info:
            src.query_range("up", 0, 60, 60)
        assert handler.calls == 2  # retried like any transport error
        missing = len(_GOOD_RANGE) - 60
        assert str(info.value) == (
            f"query 'up': Prometheus at {url} broke off its answer: "
            f"the body ended after 60 bytes, {missing} more expected (after 2 attempts)"
        )
        with pytest.raises(SourceError, match="broke off") as check:
            src.check()  # the reachability check has no metric to fail: the run fails
        assert not isinstance(check.value, QueryError)
    finally:
        server.shutdown()
        server.server_close()
