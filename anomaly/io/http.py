"""One HTTP layer under the source and the sink: session, auth, TLS, retries and error text.

An :class:`Endpoint` speaks to one configured server, a Prometheus
(:mod:`anomaly.io.prometheus`) or a Pushgateway (:mod:`anomaly.io.pushgateway`), through a
:class:`requests.Session` set up from that server's config section the way
``prometheus_api_client.PrometheusConnect`` sets up its own: the extra ``headers``, a bearer
token or a basic-auth ``auth`` tuple (secrets already resolved by :mod:`anomaly.config`),
``verify`` and ``cert`` from ``tls``, and a timeout on every request. It owns what both
servers need alike:

* bounded retries with exponential backoff (``retry_backoff_seconds * 2**attempt``) on
  connection errors and on :data:`RETRY_STATUSES`; the session mounts no urllib3 ``Retry`` of
  its own, so nothing multiplies them;
* error text that is one line, names the URL without credentials (:func:`redact_url`), gives
  a short reason for a transport error (:func:`describe_transport_error`) and never a secret.

What an answer means is the caller's: :meth:`Endpoint.request` returns the last answer
whatever its status, and raises the caller's error class (:class:`~anomaly.errors.SourceError`,
:class:`~anomaly.errors.SinkError`) only when the server cannot be reached, or when its
answers kept breaking off mid-body (:data:`BROKEN_OFF`; the caller may name another class for
that: the server was reached, only this request failed).

Tests stub this layer, for the source and the sink alike, by passing a ``session`` with a fake
transport adapter mounted (``session.mount("http://", adapter)``): the session is configured as
usual, so the adapter sees the requests a server would.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeAlias
from urllib.parse import urlsplit, urlunsplit

import requests

from anomaly.config import PrometheusConfig, PushgatewayConfig
from anomaly.errors import AnomalyError

__all__ = [
    "BROKEN_OFF",
    "RETRY_STATUSES",
    "Endpoint",
    "EndpointConfig",
    "answer_text",
    "configure_session",
    "describe_transport_error",
    "one_line",
    "redact_url",
]

log = logging.getLogger(__name__)

#: Statuses worth another attempt: the server or a proxy in front of it is unwell or throttling.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

#: Transport errors raised after an answer's head arrived: its body broke off (a cut or reset
#: connection, a short Content-Length, a broken chunk) or cannot be decoded (corrupt gzip).
BROKEN_OFF = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)

#: A config section that describes an HTTP endpoint.
EndpointConfig: TypeAlias = PrometheusConfig | PushgatewayConfig


def redact_url(url: str) -> str:
    """``url`` without user:password and a trailing slash, for messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url.rstrip("/")
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc)).rstrip("/")


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with its white space folded, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def answer_text(resp: requests.Response, limit: int = 300) -> str:
    """The body of ``resp`` as one line (its reason phrase when the body is empty)."""
    return one_line(resp.content.decode("utf-8", "replace"), limit) or (resp.reason or "")


def _causes(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and what it wraps (``__cause__``/``__context__``, urllib3's ``reason``, args)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        nxt = [cur.__cause__, cur.__context__, getattr(cur, "reason", None)]
        nxt += [a for a in cur.args if isinstance(a, BaseException)]
        todo.extend(n for n in nxt if isinstance(n, BaseException))


def describe_transport_error(exc: BaseException, timeout_seconds: float) -> str:
    """A short reason such as 'connection refused', never the exception's full text (which
    may hold the URL with its credentials)."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout_seconds:g}s (timed out)"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake or certificate verification failed"
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by peer"
        if isinstance(cause, socket.gaierror) or type(cause).__name__ == "NameResolutionError":
            return "host name cannot be resolved"
        if isinstance(cause, ssl.SSLError):
            return "TLS handshake or certificate verification failed"
        if isinstance(cause, http.client.IncompleteRead):
            # urllib3's counts the bytes read, http.client's holds them.
            got = cause.partial if isinstance(cause.partial, int) else len(cause.partial)
            more = f", {cause.expected:,} more expected" if cause.expected else ""
            return f"the body ended after {got:,} bytes{more}"
        if isinstance(cause, http.client.HTTPException):
            return f"malformed HTTP answer ({type(cause).__name__})"
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return "the body cannot be decoded (Content-Encoding)"
    if isinstance(exc, BROKEN_OFF):
        return "the body broke off"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return f"request failed ({type(exc).__name__})"


def configure_session(session: requests.Session, config: EndpointConfig) -> requests.Session:
    """Set ``session`` up for ``config``: headers, auth, TLS verification and client cert."""
    session.headers.update(dict(config.headers))
    auth = config.auth
    if auth.bearer_token:
        session.headers["Authorization"] = f"Bearer {auth.bearer_token}"
    elif auth.username is not None:
        session.auth = (auth.username, auth.password or "")
    tls = config.tls
    if not tls.verify:
        session.verify = False
    elif tls.ca_file:
        session.verify = tls.ca_file
    if tls.cert_file:
        session.cert = (tls.cert_file, tls.key_file) if tls.key_file else tls.cert_file
    return session


class Endpoint:
    """Requests to one configured server, with bounded retries and one-line errors.

    Parameters
    ----------
    config : PrometheusConfig or PushgatewayConfig
        URL, headers, auth, TLS, ``timeout_seconds``, ``retries``, ``retry_backoff_seconds``.
    service : str
        Names the server in messages: ``"<service> at <url>"``.
    error : type of AnomalyError
        Raised when the server cannot be reached after all attempts.
    session : requests.Session, optional
        Injected for tests (with a fake adapter mounted); configured like the default one.
    sleep : callable, optional
        Used between retries (``time.sleep`` by default).
    """

    def __init__(
        self,
        config: EndpointConfig,
        service: str,
        error: type[AnomalyError],
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.url = config.url.rstrip("/")
        self.display_url = redact_url(self.url)
        self.where = f"{service} at {self.display_url}"
        """``"<service> at <url without credentials>"``, the subject of every message."""
        self.session = configure_session(session or requests.Session(), config)
        self._error = error
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"Endpoint({self.where!r})"

    def close(self) -> None:
        """Release pooled connections."""
        self.session.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        data: Mapping[str, str] | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        what: str | None = None,
        broken: type[AnomalyError] | None = None,
    ) -> requests.Response:
        """Send one request, retrying connection errors, answers that broke off and
        :data:`RETRY_STATUSES`.

        ``what`` (e.g. ``"push group {...}"``) is named in the retry warnings. Returns the last
        answer, whatever its status (a retry status once the retries are spent); raises the
        endpoint's ``error`` if no answer came, or ``broken`` (default: ``error``) if the last
        answer broke off (:data:`BROKEN_OFF`).
        """
        cfg = self.config
        attempts = max(int(cfg.retries), 0) + 1
        for attempt in range(1, attempts + 1):
            try:
                # `verify` per request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override
                # a session's `verify` (psf/requests#3829), which would drop `tls.ca_file` and
                # `tls.verify: false` wherever those variables are set.
                resp = self.session.request(
                    method,
                    url,
                    params=params,
                    data=data,
                    headers=headers,
                    timeout=cfg.timeout_seconds,
                    verify=self.session.verify,
                )
            except OSError as e:  # requests.RequestException included
                reason = describe_transport_error(e, cfg.timeout_seconds)
                if attempt == attempts:
                    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
                    if isinstance(e, BROKEN_OFF):
                        raise (broken or self._error)(
                            f"{self.where} broke off its answer: {reason}{tries}"
                        ) from None
                    raise self._error(f"cannot reach {self.where}: {reason}{tries}") from None
                log.warning("%s: %s; retrying (%d/%d)", self.where, reason, attempt, attempts - 1)
            else:
                if resp.status_code not in RETRY_STATUSES or attempt == attempts:
                    return resp
                log.warning(
                    "%s answered HTTP %d%s; retrying (%d/%d)",
                    self.where,
                    resp.status_code,
                    f" to {what}" if what else "",
                    attempt,
                    attempts - 1,
                )
            delay = cfg.retry_backoff_seconds * 2 ** (attempt - 1)
            if delay > 0:
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - the last attempt returns/raises
