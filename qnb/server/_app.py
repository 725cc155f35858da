"""The queue server behind ``qnb serve``: one device's queue over HTTP, shared by users.

The layers, outside in: ASGI middleware (request log, the two hot paths, the body
limit), FastAPI routers per resource (``_routes.py``), the queue service
(``_service.py``, plain Python), and below it the same
:class:`~qnb._api.JobManager`, lifecycle table and SQLite store a kernel uses.
Every error is a :class:`~qnb._errors.QnbError` answered as ``{"detail", "code"}``
with the class's HTTP status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._errors import (
    DeviceValidationError,
    InvalidCircuitError,
    InvalidOptionError,
    PayloadTooLargeError,
    QnbError,
)
from .._api import JobManager
from .._records import JobRecord
from ._auth import Users, caller
from ._cpu import worker
from ._events import FEED_BYTES, EventFeed
from ._intake import Limits
from ._routes import ROUTERS, SubmitBody, off_loop
from ._service import QueueService

API_VERSION = "v1"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: The code of FastAPI's own request validation errors (a list of fields in ``detail``).
VALIDATION_CODE = InvalidOptionError.code

log = logging.getLogger("qnb.server")


def create_app(
    manager: JobManager,
    *,
    device: str = "emulator",
    users: Users | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    limits: Limits | None = None,
    feed_bytes: int = FEED_BYTES,
) -> FastAPI:
    """The queue server of ``device`` (a target of ``manager``'s registry).

    ``users=None`` is open mode (every caller is the admin ``local``, and only requests
    addressed to a loopback name are answered): ``qnb serve`` allows it on loopback
    only. ``limits``: what one request and one user may ask (see :class:`Limits`).
    ``feed_bytes``: what the event feed keeps (older events: clients re-read their jobs).
    """
    svc = QueueService(manager, device=device, limits=limits)
    feed = EventFeed(manager, max_bytes=feed_bytes)
    transitions = _TransitionLog(manager)
    app = FastAPI(
        title="qnb queue server",
        version=API_VERSION,
        description=f"The shared queue of device {device!r}. Errors answer "
        '`{"detail": ..., "code": ...}`; the code names a class of `qnb._errors`.',
    )
    app.state.manager = manager
    app.state.service = svc
    app.state.feed = feed
    app.state.users = users
    app.state.private = private = Private(manager)

    def close() -> None:
        """Stop listening to the manager and end the long-polls (before manager.close())."""
        feed.close()
        svc.close()
        transitions.close()

    app.state.close = close
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(QnbError, _qnb_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # One worker imports Cirq now, so the first OpenQASM submit finds it ready; the others
    # start with that first request (an idle server holds one worker, not four).
    worker.warm(1)
    # Added innermost first: the request log sees every answer, the fast paths skip
    # FastAPI's routing and dependency solving (several times the cost of a status read).
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(_FastPaths, service=svc, users=users, feed=feed, max_body_bytes=max_body_bytes,
                       private=private)
    app.add_middleware(_RequestLog)
    return app


# -- errors -----------------------------------------------------------------------------------

#: Where a field of the service's errors is in a request.
_PLACES = {"items": "query", "header": None}


class Private:
    """What no answer tells a caller: where the server keeps its files (the core's
    messages name the store for a notebook user, whose own it is)."""

    def __init__(self, manager: JobManager):
        store = Path(manager.store.path)
        names: dict[str, str] = {}
        for path, name in ((store, "(the server's store)"), (store.parent, "(the server's folder)"),
                           (Path(manager.home), "(the server's folder)")):
            for variant in (path, path.absolute(), path.resolve()):
                if len(variant.parts) >= 3:  # never "/" or "/tmp" alone: they are in other words
                    names.setdefault(os.fspath(variant), name)
        # Longest first: the store's path before its folder's.
        self._names = sorted(names.items(), key=lambda pair: -len(pair[0]))

    def hide(self, text: str) -> str:
        for path, name in self._names:
            if path in text:
                text = text.replace(path, name)
        return text


def _same(text: str) -> str:
    return text


def error_body(exc: QnbError, private: Private | None = None) -> tuple[int, dict]:
    """The status and JSON of a QnbError's answer: ``{"detail", "code"}``, without the
    server's paths (``private``).

    Errors about one field of a request (the service marks them, see
    ``_intake.field``) keep FastAPI's list form, which names the field."""
    hide = private.hide if private is not None else _same
    where = getattr(exc, "field", None)
    if where is None and isinstance(exc, (InvalidCircuitError, DeviceValidationError)):
        where = ("circuits",)
    if where is not None:
        place = _PLACES.get(where[0], "body")
        loc = [*([place] if place else []), *where]
        detail: object = [{"loc": loc, "msg": hide(str(exc)), "type": "value_error"}]
    else:
        detail = hide(str(exc))
    return exc.http_status, {"detail": detail, "code": exc.code}


def _headers_for(status: int) -> dict[str, str] | None:
    return {"WWW-Authenticate": "Bearer"} if status == 401 else None


async def _qnb_error(request: Request, exc: QnbError) -> JSONResponse:
    status, body = error_body(exc, request.app.state.private)
    return JSONResponse(body, status_code=status, headers=_headers_for(status))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(
        {"detail": jsonable_encoder(exc.errors()), "code": VALIDATION_CODE}, status_code=422
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(
        {"detail": exc.detail, "code": QnbError.code}, status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def _validation_body(exc: ValidationError) -> bytes:
    """FastAPI's answer to an invalid body, for the fast path (its shape, without the
    ``input`` echo: that may be bytes that are not text)."""
    errors = [
        {"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    return json.dumps({"detail": errors, "code": VALIDATION_CODE}).encode()


# -- logging ----------------------------------------------------------------------------------


#: Control characters (C0, DEL, C1) and Unicode line breaks as escapes: text from a request
#: (a path with %0A, a job's name) cannot start a log line of its own.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029", 0x5C: "\\\\"})  # and "\\" itself: unambiguous


def printable(text: object) -> str:
    """``text`` safe to log: one line, no terminal control sequences."""
    return str(text).translate(_ESCAPES)


class _TransitionLog:
    """Job status changes at INFO on ``qnb.server`` (never a token: jobs carry none)."""

    def __init__(self, manager: JobManager):
        self._last: dict[str, str] = {}
        self._remove = manager.add_listener(self._note)

    def close(self) -> None:
        self._remove()

    def _note(self, rec: JobRecord) -> None:
        status = rec.status.value
        if self._last.get(rec.id) == status:
            return
        if rec.status.is_terminal:
            self._last.pop(rec.id, None)
        else:
            self._last[rec.id] = status
        if log.isEnabledFor(logging.INFO):
            done, total = rec.progress
            log.info("job %s %s (%s, user %s, %d/%d items)", printable(rec.id[:8]), status,
                     printable(rec.name), printable(rec.user), done, total)


class _RequestLog:
    """Each request at INFO: method, path, status, milliseconds (never headers)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 0

        async def noting_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        finally:
            log.info("%s %s %d %.1f ms", printable(scope["method"]), printable(scope["path"]),
                     status, (time.perf_counter() - start) * 1000)


# -- the fast paths -----------------------------------------------------------------------------


class _FastPaths:
    """``GET /v1/jobs/{id}`` of a job in memory and ``POST /v1/jobs``, answered without
    FastAPI's routing (the routes still exist, document both, and answer what these
    pass on: finished jobs read from the store, bodies without a Content-Length).

    Both use the routes' own pieces: the caller from ``_auth.caller``, the body from
    ``SubmitBody``, the answer from the service, errors from :func:`error_body`.
    A submit's body is read and checked once, here; it is not parsed again."""

    JOBS = "/v1/jobs"

    def __init__(self, app, *, service: QueueService, users: Users | None, feed: EventFeed,
                 max_body_bytes: int, private: Private):
        self.app = app
        self.private = private
        self.service = service
        self.users = users
        self.feed = feed
        self.max_body_bytes = max_body_bytes
        self._bound = False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not self._bound:  # the feed publishes on the loop serving requests
            self.feed.bind(asyncio.get_running_loop())
            self._bound = True
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "GET" and path.startswith(self.JOBS + "/"):
            job_id = path[len(self.JOBS) + 1 :]
            if job_id and "/" not in job_id:
                try:
                    user = caller(self.users, scope["headers"])
                except QnbError as exc:
                    return await _send_error(send, exc, self.private)
                view = self.service.live_view(user, job_id)
                if view is not None:
                    return await _send_json(send, 200, json.dumps(view).encode())
        elif method == "POST" and path == self.JOBS:
            length = _header(scope, b"content-length") or b""
            if length.isdigit() and int(length) <= self.max_body_bytes:
                return await self._submit(scope, receive, send)
        await self.app(scope, receive, send)

    async def _submit(self, scope, receive, send):
        # Who it is first: a caller without a login is not read up to max_body_bytes.
        try:
            user = caller(self.users, scope["headers"])
        except QnbError as exc:
            return await _send_error(send, exc, self.private)
        raw = await _read_body(receive)
        key = _header(scope, b"idempotency-key")
        # Decoding a body of up to max_body_bytes is CPU work too: all of it off the loop.
        status, body = await off_loop(
            self._accept, user, raw, None if key is None else key.decode("latin-1")
        )
        await _send_json(send, status, body, _headers_for_raw(status))

    def _accept(self, user, raw: bytes, key: str | None) -> tuple[int, bytes]:
        try:
            submission = SubmitBody.model_validate_json(raw).submission()
        except ValidationError as exc:
            return 422, _validation_body(exc)
        try:
            return 201, json.dumps(self.service.accept(user, submission, idempotency_key=key)).encode()
        except QnbError as exc:
            status, body = error_body(exc, self.private)
            return status, json.dumps(body).encode()


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _headers_for_raw(status: int) -> list[tuple[bytes, bytes]]:
    return [(b"www-authenticate", b"Bearer")] if status == 401 else []


async def _send_error(send, exc: QnbError, private: Private | None = None) -> None:
    status, body = error_body(exc, private)
    await _send_json(send, status, json.dumps(body).encode(), _headers_for_raw(status))


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(raw: bytes, receive):
    """A ``receive`` that gives the body read already, then listens to the client."""
    sent = False

    async def replaying_receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replaying_receive


async def _send_json(send, status: int, body: bytes, extra: list | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(BaseException):
    """Not an Exception: FastAPI turns errors while reading a body into 400."""


class _BodyLimit:
    """413 for request bodies above ``max_bytes``, counted as they arrive (a missing or
    false Content-Length does not get a larger body through)."""

    def __init__(self, app, *, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send)
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._too_large(send)

    async def _too_large(self, send):
        await _send_error(send, PayloadTooLargeError(
            f"request body above the server's limit of {self.max_bytes} bytes; "
            "split the batch into several jobs"
        ))
