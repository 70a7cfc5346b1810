"""A small fault-injecting HTTP(S) proxy for tests: it sits on 127.0.0.1 in front of a real
server, records every request (method, path, headers, body, arrival time) and, per request,
either forwards it or misbehaves as a test's ``fault`` callable says: answer a status (and
body) of its own, hang without answering, drop the connection, or forward and cut the answer.

::

    with FaultProxy(prometheus_url) as proxy:
        proxy.fault = lambda seen, n: Fault.status(503) if n < 2 else None  # two 503s, then pass
        ...
        assert len(proxy.seen) == 3
"""

from __future__ import annotations

import http.client
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "host",
}


@dataclass(frozen=True)
class Seen:
    """One request as the proxy received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """``time.monotonic()`` at arrival."""


@dataclass(frozen=True)
class Fault:
    """What to do instead of forwarding: ``status``, ``hang``, ``drop`` or ``truncate``."""

    kind: str
    status_code: int = 0
    body: bytes = b""
    seconds: float = 0.0
    content_type: str = "text/plain"
    keep: float = 1.0
    honest: bool = True

    @classmethod
    def status(cls, code: int, body: bytes = b"", content_type: str = "text/plain") -> Fault:
        body = body or f"injected HTTP {code}".encode()
        return cls("status", status_code=code, body=body, content_type=content_type)

    @classmethod
    def hang(cls, seconds: float = 60.0) -> Fault:
        return cls("hang", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering."""
        return cls("drop")

    @classmethod
    def truncate(cls, keep: float = 0.5, *, honest: bool = True) -> Fault:
        """Forward, then send only the first ``keep`` of the (uncompressed) answer's body and
        close: ``honest`` declares the cut length (a body that is whole as HTTP goes, but
        truncated JSON); otherwise the full length is declared, so the transfer breaks off."""
        return cls("truncate", keep=keep, honest=honest)


FaultRule = Callable[[Seen, int], "Fault | None"]


@dataclass
class _State:
    upstream: str
    fault: FaultRule
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)
    tls: ssl.SSLContext | None = None


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def setup(self) -> None:
        tls = self.server.state.tls
        if tls is not None:
            self.request = tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _handle(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, dict(self.headers.items()), body, time.monotonic())
        with state.lock:
            index = len(state.seen)
            state.seen.append(seen)
        fault = state.fault(seen, index)
        if fault is None:
            self._forward(seen)
        elif fault.kind == "status":
            self._answer(fault.status_code, fault.body, fault.content_type)
        elif fault.kind == "truncate":
            self._forward(seen, fault)
        elif fault.kind == "hang":
            state.release.wait(fault.seconds)
            self.close_connection = True
        elif fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:  # pragma: no cover - a typo in a test
            raise ValueError(f"unknown fault {fault.kind!r}")

    do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815 - stdlib naming

    def _forward(self, seen: Seen, cut: Fault | None = None) -> None:
        up = urlsplit(self.server.state.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        drop = _HOP_BY_HOP | ({"accept-encoding"} if cut else set())  # cut the plain JSON
        headers = {k: v for k, v in seen.headers.items() if k.lower() not in drop}
        try:
            conn.request(seen.method, seen.path, body=seen.body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            extra = {"Content-Encoding": resp.getheader("Content-Encoding") or ""}
            content_type = resp.getheader("Content-Type") or "text/plain"
            if cut is None:
                self._answer(resp.status, data, content_type, extra)
                return
            head = data[: int(len(data) * cut.keep)]
            extra["Content-Length"] = str(len(head) if cut.honest else len(data))
            self.close_connection = True
            self._answer(resp.status, head, content_type, extra)
        finally:
            conn.close()

    def _answer(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        extra = dict(extra or {})
        extra.setdefault("Content-Length", str(len(body)))
        for k, v in extra.items():
            if v:
                self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    state: _State

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client giving up (timeout, failed TLS handshake) is what the tests provoke


class FaultProxy:
    """Forwards to ``upstream`` unless ``fault(seen, index)`` returns a :class:`Fault`.

    ``index`` counts requests from 0 across the proxy's life. ``tls`` makes it an HTTPS
    endpoint (the upstream is still spoken to over plain HTTP).
    """

    def __init__(self, upstream: str, *, tls: ssl.SSLContext | None = None) -> None:
        self._state = _State(upstream.rstrip("/"), lambda seen, n: None, tls=tls)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self._state
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def fault(self) -> FaultRule:
        return self._state.fault

    @fault.setter
    def fault(self, rule: FaultRule) -> None:
        self._state.fault = rule

    @property
    def seen(self) -> list[Seen]:
        with self._state.lock:
            return list(self._state.seen)

    def clear(self) -> None:
        with self._state.lock:
            self._state.seen.clear()

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state.release.set()  # let hanging handlers go
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
