"""Pure-ASGI middleware: the request id (header, contextvar, log filter) and HTTP metrics.

`RequestIdMiddleware` echoes a client's `X-Request-Id` when it is 1–128 characters of
`[A-Za-z0-9._:-]`, else makes one (`req_…`). It stores the id in `scope["state"]` (so the
outermost 500 handler can still read it), in a contextvar, and in a log context scope
(`contract.logcontext`), so log lines carry it, also in threadpool workers, which copy the context.
"""

from __future__ import annotations

import re
import time
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contract import logcontext
from contract.protocol import new_id
from service.metrics import HttpMetrics

REQUEST_ID_HEADER = "X-Request-Id"
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

request_id_var: ContextVar[str | None] = ContextVar("factpatch_request_id", default=None)


def incoming_request_id(scope: Scope) -> str | None:
    """The client's `X-Request-Id`, when it is acceptable."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _VALID_ID.fullmatch(text) else None
    return None


def request_id_of(request: Request) -> str:
    """The id of the request being answered (set by the middleware; made up if it did not run)."""
    state = request.scope.get("state") or {}
    return str(state.get("request_id") or request_id_var.get() or new_id("req"))


class RequestIdMiddleware:
    """Gives every HTTP response an `X-Request-Id` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or new_id("req")
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        token = request_id_var.set(request_id)
        try:
            with logcontext.scope(request_id=request_id):
                await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class MetricsMiddleware:
    """Counts requests and times them by route template (`/v1/edits/{edit_id}`, not the raw path)."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            self.metrics.observe(method=scope["method"], route=route, status=status, seconds=elapsed)


def route_template(scope: Scope) -> str:
    """The path template of the matched route, or `unmatched`."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
