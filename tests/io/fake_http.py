"""A fake transport under :mod:`anomaly.io.http`, shared by the source and sink tests.

Mounted on the ``requests.Session`` handed to ``PrometheusSource(session=...)`` or
``PushgatewaySink(session=...)``, a :class:`FakeAdapter` answers from Python and records every
request as the HTTP layer prepared it (headers, auth, body), so no socket is opened.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import BaseAdapter

#: ``request -> (status, body)``; a body that is an exception is raised instead of answered,
#: bytes are sent as they are, anything else as JSON.
Answer = Callable[[requests.PreparedRequest], tuple[int, Any]]


class FakeAdapter(BaseAdapter):
    """A requests transport that answers with ``answer`` (or an overriding method)."""

    def __init__(self, answer: Answer | None = None) -> None:
        super().__init__()
        self._answer = answer
        self.requests: list[requests.PreparedRequest] = []
        self.timeouts: list[Any] = []

    def answer(self, request: requests.PreparedRequest) -> tuple[int, Any]:
        if self._answer is None:
            raise NotImplementedError("pass `answer` or override this method")
        return self._answer(request)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):  # type: ignore[no-untyped-def, override]
        self.requests.append(request)
        self.timeouts.append(timeout)
        status, body = self.answer(request)
        if isinstance(body, BaseException):
            raise body
        resp = requests.Response()
        resp.status_code = status
        resp._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        resp.url = request.url or ""
        resp.request = request
        return resp

    def close(self) -> None:
        pass


def session_with(adapter: BaseAdapter) -> requests.Session:
    """A session that sends every http:// and https:// request to ``adapter``."""
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
