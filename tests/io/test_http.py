"""Tests for anomaly.io.http: session set-up, retries, redaction and transport-error text.

The source's and the sink's use of it (which statuses mean what to each) is tested in
tests/io/test_prometheus.py and tests/io/test_pushgateway.py, on the same fake transport.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from pathlib import Path

import pytest
import requests
from urllib3.exceptions import IncompleteRead, NameResolutionError, ProtocolError

from anomaly.config import AuthConfig, PrometheusConfig, PushgatewayConfig, TLSConfig
from anomaly.errors import AnswerError, SinkError, SourceError
from anomaly.io.http import Endpoint, describe_transport_error, one_line, redact_url
from tests.io.fake_http import FakeAdapter, session_with


def test_tls_settings_configure_the_session(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "c.pem", "k.pem"))
    tls = TLSConfig(ca_file=str(ca), cert_file=str(cert), key_file=str(key))
    s = Endpoint(PrometheusConfig(url="https://p", tls=tls), "Prometheus", SourceError).session
    assert s.verify == str(ca) and s.cert == (str(cert), str(key))
    tls = TLSConfig(verify=False)
    s = Endpoint(PushgatewayConfig(url="https://p", tls=tls), "Pushgateway", SinkError).session
    assert s.verify is False
    s = Endpoint(PrometheusConfig(url="https://p"), "Prometheus", SourceError).session
    assert s.verify is True and s.cert is None


@pytest.mark.parametrize(
    ("auth", "header"),
    [
        (AuthConfig(bearer_token="tok"), "Bearer tok"),
        (AuthConfig(username="u", password="pw"), "Basic dTpwdw=="),
        (AuthConfig(), None),
    ],
)
def test_auth_and_headers_reach_every_request(auth: AuthConfig, header: str | None) -> None:
    adapter = FakeAdapter(lambda r: (200, b""))
    config = PushgatewayConfig(url="http://pg", headers={"X-Scope-OrgID": "t1"}, auth=auth)
    endpoint = Endpoint(config, "Pushgateway", SinkError, session=session_with(adapter))
    endpoint.request("PUT", "http://pg/metrics/job/j", data=b"x 1\n")
    endpoint.request("GET", "http://pg/api/v1/metrics")
    for r in adapter.requests:
        assert r.headers["X-Scope-OrgID"] == "t1"
        assert r.headers.get("Authorization") == header
    assert adapter.timeouts == [30.0, 30.0]


def test_a_retry_status_is_returned_once_the_retries_are_spent() -> None:
    adapter = FakeAdapter(lambda r: (503, b"busy"))
    sleeps: list[float] = []
    config = PrometheusConfig(url="http://p", retries=2, retry_backoff_seconds=0.25)
    endpoint = Endpoint(
        config, "Prometheus", SourceError, session=session_with(adapter), sleep=sleeps.append
    )
    assert endpoint.request("GET", "http://p/x").status_code == 503
    assert len(adapter.requests) == 3 and sleeps == [0.25, 0.5]


def test_an_unreachable_server_raises_the_caller_s_error_naming_the_url_without_secrets() -> None:
    exc = requests.ConnectionError(ConnectionRefusedError(111, "refused http://u:pw@pg"))
    adapter = FakeAdapter(lambda r: (0, exc))
    config = PushgatewayConfig(url="http://u:pw@pg:9091/", retries=0)
    endpoint = Endpoint(config, "Pushgateway", SinkError, session=session_with(adapter))
    with pytest.raises(SinkError) as info:
        endpoint.request("GET", "http://u:pw@pg:9091/api/v1/metrics")
    assert str(info.value) == "cannot reach Pushgateway at http://pg:9091: connection refused"
    assert "pw" not in repr(endpoint)


def test_an_answer_that_breaks_off_is_retried_then_raises_the_caller_s_broken_error() -> None:
    cut = requests.exceptions.ChunkedEncodingError(ProtocolError("x", IncompleteRead(10, 5)))
    adapter = FakeAdapter(lambda r: (0, cut))
    config = PrometheusConfig(url="http://p", retries=1, retry_backoff_seconds=0)
    endpoint = Endpoint(config, "Prometheus", SourceError, session=session_with(adapter))
    expected = "Prometheus at http://p broke off its answer: the body ended after 10 bytes, "
    with pytest.raises(AnswerError, match=f"^{expected}5 more expected \\(after 2 attempts\\)$"):
        endpoint.request("POST", "http://p/api/v1/query_range", broken=AnswerError)
    assert len(adapter.requests) == 2
    with pytest.raises(SourceError, match=f"^{expected}") as info:  # no `broken`: the error
        endpoint.request("POST", "http://p/api/v1/query_range")
    assert not isinstance(info.value, AnswerError)


def test_redact_url_and_one_line() -> None:
    assert redact_url("https://user:secret@host:8443/prom/") == "https://host:8443/prom"
    assert redact_url("http://host/") == "http://host"
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line("x" * 10, limit=5) == "xxxx…"


def _wrapped(cause: BaseException) -> requests.ConnectionError:
    """As requests raises it: ConnectionError(ProtocolError('Connection aborted.', cause))."""
    return requests.ConnectionError(ProtocolError("Connection aborted.", cause))


def _cut(cause: BaseException) -> requests.exceptions.ChunkedEncodingError:
    """As requests raises a body that broke off: ChunkedEncodingError(ProtocolError(...))."""
    return requests.exceptions.ChunkedEncodingError(ProtocolError("Connection broken", cause))


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (requests.ConnectTimeout(), "no answer within 2s (timed out)"),
        (requests.ReadTimeout(), "no answer within 2s (timed out)"),
        (requests.exceptions.SSLError(), "TLS handshake or certificate verification failed"),
        (_wrapped(ssl.SSLError()), "TLS handshake or certificate verification failed"),
        (_wrapped(ConnectionRefusedError(111, "x")), "connection refused"),
        (_wrapped(ConnectionResetError(104, "x")), "connection reset by peer"),
        (_wrapped(http.client.RemoteDisconnected("x")), "connection reset by peer"),
        (_wrapped(socket.gaierror(-2, "x")), "host name cannot be resolved"),
        (_wrapped(NameResolutionError("h", None, socket.gaierror())), "host name cannot"),  # type: ignore[arg-type]
        (_wrapped(http.client.BadStatusLine("x")), "malformed HTTP answer (BadStatusLine)"),
        (requests.ConnectionError(), "connection failed"),
        (OSError(101, "Network is unreachable"), "network is unreachable"),
        (requests.TooManyRedirects(), "request failed (TooManyRedirects)"),
        (_cut(IncompleteRead(61_000, 1_500)), "the body ended after 61,000 bytes, 1,500 more"),
        (_cut(http.client.IncompleteRead(b"{}")), "the body ended after 2 bytes"),
        (_cut(ConnectionResetError(104, "x")), "connection reset by peer"),
        (requests.exceptions.ChunkedEncodingError(), "the body broke off"),
        (requests.exceptions.ContentDecodingError(), "the body cannot be decoded"),
    ],
)
def test_transport_errors_are_described_in_a_few_words(exc: OSError, reason: str) -> None:
    assert describe_transport_error(exc, 2.0).startswith(reason)
