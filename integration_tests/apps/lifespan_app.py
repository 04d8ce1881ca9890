"""Raw ASGI apps for the lifecycle tests (test_lifecycle.py): lifespan handling, slow requests, pids.

Every app appends one line per event to the file named by ``$LIFESPAN_LOG`` (when set): the event,
the worker pid and a monotonic-clock time, tab-separated, written with a single ``O_APPEND`` write so
that lines of concurrent workers never interleave. The tests read that file to check the order of
events across the worker's life (startup, requests, shutdown).

Attributes, one per behaviour (``lifespan_app:<name>``):

``app``
    A well-behaved app: lifespan startup puts values in ``scope["state"]``, shutdown is recorded.
``failing_app``
    Answers ``lifespan.startup`` with ``lifespan.startup.failed`` and a message.
``raising_app``
    Raises an exception while handling ``lifespan.startup`` (after receiving it).
``unsupported_app``
    Raises at once on a ``lifespan`` scope, as Django's ASGIHandler does; serves HTTP normally.
``hanging_app``
    Receives ``lifespan.startup`` and never answers it.
``slow_shutdown_app``
    Answers ``lifespan.shutdown`` only after two minutes.
``cleanup_app``
    Takes 7 s over its ``lifespan.shutdown`` (a pool that drains), then logs ``shutdown-complete``.

HTTP endpoints (all apps): ``/pid`` (the worker pid), ``/slow?seconds=S`` (records its start and
end), ``/state`` (the request's ``scope["state"]`` as JSON, then mutates it), anything else: "ok".
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any, Awaitable, Callable, Dict
from urllib.parse import parse_qs

Scope = Dict[str, Any]
Receive = Callable[[], Awaitable[Dict[str, Any]]]
Send = Callable[[Dict[str, Any]], Awaitable[None]]

STARTUP_FAILURE_MESSAGE = "lifespan_app: the database at db.invalid:5432 is unreachable"
STARTUP_EXCEPTION_MESSAGE = "lifespan_app: startup raised on purpose"


def log_event(event: str, detail: str = "") -> None:
    path = os.environ.get("LIFESPAN_LOG")
    if not path:
        return
    line = f"{event}\t{os.getpid()}\t{time.monotonic():.6f}\t{detail}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _query(scope: Scope) -> Dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return {key: values[-1] for key, values in parsed.items()}


async def _respond(send: Send, body: bytes, content_type: bytes = b"text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _drain_body(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    await _drain_body(receive)
    path = scope["path"]
    if path == "/pid":
        await _respond(send, str(os.getpid()).encode())
    elif path == "/slow":
        seconds = float(_query(scope).get("seconds", "1"))
        tag = _query(scope).get("tag", "")
        log_event("request-start", tag)
        await asyncio.sleep(seconds)
        log_event("request-end", tag)
        await _respond(send, str(os.getpid()).encode())
    elif path == "/state":
        state = scope.get("state")
        if state is None:
            body = json.dumps({"has_state": False}).encode()
        else:
            body = json.dumps({"has_state": True, "state": state, "pid": os.getpid()}).encode()
        log_event("request", path)
        await _respond(send, body, b"application/json")
        if state is not None:
            # A new top-level key: the next request's shallow copy must not have it. An append to
            # the list that startup put there: the same list object, so the next request sees it.
            state["set_by_request"] = True
            state["counter"] = state.get("counter", 0) + 1
            state.setdefault("shared_list", []).append("appended")
    else:
        log_event("request", path)
        await _respond(send, b"ok")


async def _lifespan(scope: Scope, receive: Receive, send: Send, behaviour: str) -> None:
    log_event("lifespan-scope", behaviour)
    if behaviour == "unsupported":
        raise ValueError("lifespan_app: this app can only handle ASGI/HTTP connections, not lifespan.")
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            log_event("startup", behaviour)
            if behaviour == "fail":
                await send({"type": "lifespan.startup.failed", "message": STARTUP_FAILURE_MESSAGE})
                return
            if behaviour == "raise":
                raise RuntimeError(STARTUP_EXCEPTION_MESSAGE)
            if behaviour == "hang":
                await asyncio.Event().wait()
            state = scope.get("state")
            if state is not None:
                state["db"] = f"connection-of-{os.getpid()}"
                state["counter"] = 0
                state["shared_list"] = []
            log_event("startup-complete", behaviour)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            log_event("shutdown", behaviour)
            if behaviour == "slow-shutdown":
                await asyncio.sleep(120)  # (a shutdown handler that waits on something gone)
            if behaviour == "cleanup":
                await asyncio.sleep(7)
                log_event("shutdown-complete", behaviour)
            await send({"type": "lifespan.shutdown.complete"})
            return


def _make(behaviour: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(scope, receive, send, behaviour)
        elif scope["type"] == "http":
            await http(scope, receive, send)
        else:
            raise RuntimeError(f"unexpected scope type {scope['type']!r}")

    return application


app = _make("normal")
failing_app = _make("fail")
raising_app = _make("raise")
unsupported_app = _make("unsupported")
hanging_app = _make("hang")
slow_shutdown_app = _make("slow-shutdown")
cleanup_app = _make("cleanup")
