"""A local Alertmanager webhook receiver, for tests and the demo.

Alertmanager's ``webhook_configs`` POST one JSON document per notification (a group of alerts:
``status``, ``receiver``, ``groupLabels``, ``commonLabels``, ``alerts[]`` with ``labels``,
``annotations``, ``status``...). :func:`run_webhook_receiver` listens on a free ``127.0.0.1``
port in a background thread, keeps every document it receives, and lets the caller wait for
one that matches::

    with run_webhook_receiver() as hook:
        # point a webhook_configs receiver at hook.url, make an alert fire ...
        note = hook.wait_for(has_alert(alertname="AnomalyDetected", organization_id="org-07"))

Nothing here runs at import time; the server stops when the context manager exits.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Notification", "WebhookReceiver", "has_alert", "run_webhook_receiver"]

Notification = dict[str, Any]
"""One Alertmanager webhook payload, as decoded JSON."""

_MAX_BODY_BYTES = 10 * 1024 * 1024


class WebhookReceiver:
    """The notifications received so far, and a way to wait for one.

    Parameters
    ----------
    url : str
        Where Alertmanager should POST (``http://127.0.0.1:<port>/``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._notifications: list[Notification] = []
        self._received_at: list[float] = []
        self._changed = threading.Condition()

    @property
    def notifications(self) -> list[Notification]:
        """A copy of every notification received, oldest first."""
        with self._changed:
            return list(self._notifications)

    @property
    def receipts(self) -> list[tuple[float, Notification]]:
        """Every notification received with the epoch seconds it arrived at, oldest first."""
        with self._changed:
            return list(zip(self._received_at, self._notifications, strict=True))

    def wait_for(
        self,
        predicate: Callable[[Notification], bool] | None = None,
        timeout: float = 30.0,
    ) -> Notification:
        """The first notification (already received or arriving within `timeout` seconds)
        for which `predicate` is true; any notification when `predicate` is None.

        Raises
        ------
        TimeoutError
            Nothing matched in time; the message summarises what did arrive.
        """
        if timeout < 0:
            raise ValueError(f"`timeout` must be >= 0, got {timeout}")
        match = predicate or (lambda _n: True)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for note in self._notifications[seen:]:
                    if match(note):
                        return note
                seen = len(self._notifications)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no matching notification at {self.url} within {timeout:g}s; "
                        f"received {len(self._notifications)}: {_summarise(self._notifications)}"
                    )
                self._changed.wait(remaining)

    def _add(self, note: Notification) -> None:
        with self._changed:
            self._received_at.append(time.time())
            self._notifications.append(note)
            self._changed.notify_all()


def has_alert(status: str | None = "firing", **labels: str) -> Callable[[Notification], bool]:
    """A predicate: the notification holds an alert with these `labels` (and `status`, unless
    None: ``firing`` or ``resolved``)."""

    def predicate(note: Notification) -> bool:
        for alert in note.get("alerts") or []:
            if not isinstance(alert, Mapping):
                continue
            if status is not None and alert.get("status") != status:
                continue
            have = alert.get("labels") or {}
            if all(have.get(k) == v for k, v in labels.items()):
                return True
        return False

    return predicate


def _summarise(notes: list[Notification], limit: int = 10) -> str:
    parts = []
    for note in notes[-limit:]:
        for alert in note.get("alerts") or []:
            if not isinstance(alert, Mapping):
                continue
            labels = alert.get("labels") or {}
            parts.append(
                f"{alert.get('status')}:{labels.get('alertname')}"
                f"{{organization_id={labels.get('organization_id')!r}}}"
            )
    return ", ".join(parts) or "nothing"


def _handler_for(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= _MAX_BODY_BYTES:
                self._reply(HTTPStatus.BAD_REQUEST, "bad Content-Length")
                return
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                self._reply(HTTPStatus.BAD_REQUEST, f"body is not JSON: {e}")
                return
            if not isinstance(body, dict):
                self._reply(HTTPStatus.BAD_REQUEST, "body is not a JSON object")
                return
            receiver._add(body)
            self._reply(HTTPStatus.OK, "ok")

        def _reply(self, status: HTTPStatus, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet: tests read the notifications, not the access log."""

    return Handler


@contextlib.contextmanager
def run_webhook_receiver(host: str = "127.0.0.1", port: int = 0) -> Iterator[WebhookReceiver]:
    """Serve a :class:`WebhookReceiver` on `host`:`port` (0: a free port) until exit."""
    server = ThreadingHTTPServer((host, port), BaseHTTPRequestHandler)
    server.daemon_threads = True
    raw_host, bound_port = server.server_address[:2]
    bound_host = raw_host.decode() if isinstance(raw_host, bytes) else str(raw_host)
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    receiver = WebhookReceiver(f"http://{url_host}:{bound_port}/")
    server.RequestHandlerClass = _handler_for(receiver)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.name = f"webhook-receiver-{bound_port}"
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
