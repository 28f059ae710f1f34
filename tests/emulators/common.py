"""Pieces every HTTP emulator shares: switchable faults, a request log, a multipart parser
(starlette's form parsing needs python-multipart, which the project does not depend on), and a
connection dropped without an answer."""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

RAW_SEND = "emulator.raw_send"


class KeepsRawSend:
    """ASGI wrapper that keeps the server's own `send` in the scope, so a DroppedConnection deep in the
    app can reach the socket it belongs to (starlette wraps `send` on the way down)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[RAW_SEND] = send
        await self.app(scope, receive, send)


class DroppedConnection(Response):
    """No answer at all: the connection is reset after the request was read, as when a server (or a
    proxy) takes a request and dies before it answers. The client sees a transport error, not a status.

    Under uvicorn the socket is aborted (its `send` is a bound method of the request cycle, which holds
    the transport); under another server an answer is started and never finished.
    """

    def __init__(self) -> None:
        super().__init__(status_code=599)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = getattr(getattr(scope.get(RAW_SEND), "__self__", None), "transport", None)
        if transport is not None:
            transport.abort()
            for _ in range(3):  # let the server see the connection go, so it reports no unfinished answer
                await asyncio.sleep(0)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]})
        raise ConnectionAbortedError("answer dropped on purpose by the emulator")


@dataclass
class RecordedCall:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Faults:
    """Per-test switches. `fail_next` answers the next `times` requests with `status`; `outage` answers
    every request 503; `delay_seconds` sleeps before answering (for client timeouts)."""

    outage: bool = False
    delay_seconds: float = 0.0
    _status: int | None = None
    _remaining: int = 0
    _body: Any = None
    _headers: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, status: int, times: int = 1, body: Any = None, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._status, self._remaining, self._body, self._headers = status, times, body, dict(headers or {})

    def reset(self) -> None:
        with self._lock:
            self.outage, self.delay_seconds, self._status, self._remaining = False, 0.0, None, 0

    def _take(self) -> tuple[int, Any, dict[str, str]] | None:
        with self._lock:
            if self._remaining <= 0 or self._status is None:
                return None
            self._remaining -= 1
            return self._status, self._body, self._headers

    async def answer(self) -> Response | None:
        """The fault response for this request, or None to serve it normally."""
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.outage:
            return PlainTextResponse("upstream unavailable", status_code=503)
        taken = self._take()
        if taken is None:
            return None
        status, body, headers = taken
        if body is None:
            return PlainTextResponse(f"injected fault {status}", status_code=status, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers)


async def record(calls: list[RecordedCall], request: Request) -> bytes:
    body = await request.body()
    calls.append(RecordedCall(request.method, request.url.path, request.url.query,
                              {k.lower(): v for k, v in request.headers.items()}, body))
    return body


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?')
_DISPOSITION_PARAM = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_multipart(body: bytes, content_type: str) -> dict[str, Part]:
    """multipart/form-data as {field name: Part}, enough for what httpx and requests send."""
    match = _BOUNDARY.search(content_type or "")
    if not match:
        raise ValueError("not a multipart body")
    delimiter = b"--" + match.group(1).encode()
    parts: dict[str, Part] = {}
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        params = dict(_DISPOSITION_PARAM.findall(headers.get("content-disposition", "")))
        if "name" in params:
            parts[params["name"]] = Part(params["name"], params.get("filename"), headers.get("content-type"),
                                         data.removesuffix(b"\r\n"))
    return parts
