"""A raw ASGI app that misbehaves on purpose, for test_faulty_apps.py and test_hostile_*.py.

Every HTTP request is counted (per worker process) and its raw target remembered, so that the
hostile-request tests can check that a refused request never reached Python:

- ``/_/count`` answers ``{"count": N, "seen": [...], "pid": PID}`` (not counted itself);
- ``/faulty/...`` are the faulty endpoints below;
- anything else is passed on to ``testapp.app`` (the scope dump, ``/_/echo``, ``/_/stream``, ...).

State is per worker process: the tests that read it back run with ``--workers 1``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any, Awaitable, Callable

from testapp import app as testapp_app
from testapp import query

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

COUNT = {"n": 0}
SEEN: list[str] = []  # raw targets of the requests seen, latest last (bounded)
LEAK: list[bytes] = []  # /faulty/leak keeps what it allocates here
MIB = 1 << 20


def target_of(scope: Scope) -> str:
    target = scope["raw_path"].decode("latin-1")
    if scope["query_string"]:
        target += "?" + scope["query_string"].decode("latin-1")
    return target


async def drain(receive: Receive) -> None:
    """Reads the request body to its end (or to a disconnect)."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def start(status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> Message:
    return {"type": "http.response.start", "status": status, "headers": headers or []}


def body(data: bytes, more: bool = False) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


# --- faulty endpoints -----------------------------------------------------------------------------


async def start_twice(scope: Scope, receive: Receive, send: Send) -> None:
    """http.response.start twice; the second send() raises (uncaught: the app fails after start)."""
    await drain(receive)
    await send(start(200, [(b"x-which", b"first"), (b"content-length", b"5")]))
    await send(start(404, [(b"x-which", b"second"), (b"content-length", b"6")]))
    await send(body(b"first"))


async def start_twice_caught(scope: Scope, receive: Receive, send: Send) -> None:
    """http.response.start twice, the app swallows the error and completes the first response."""
    await drain(receive)
    await send(start(200, [(b"x-which", b"first"), (b"content-length", b"5")]))
    try:
        await send(start(404, [(b"x-which", b"second"), (b"content-length", b"6")]))
    except Exception as exc:  # noqa: BLE001
        print(f"faulty_app: second start raised {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    await send(body(b"first"))


async def unknown_before_start(scope: Scope, receive: Receive, send: Send) -> None:
    await drain(receive)
    await send({"type": "http.response.bogus", "status": 200})


async def status_str(scope: Scope, receive: Receive, send: Send) -> None:
    await drain(receive)
    await send({"type": "http.response.start", "status": "200", "headers": [(b"content-length", b"2")]})
    await send(body(b"ok"))


async def header_str_name(scope: Scope, receive: Receive, send: Send) -> None:
    await drain(receive)
    await send({"type": "http.response.start", "status": 200, "headers": [("content-length", b"2")]})
    await send(body(b"ok"))


async def body_str(scope: Scope, receive: Receive, send: Send) -> None:
    await drain(receive)
    await send(start(200, [(b"content-type", b"text/plain")]))
    await send({"type": "http.response.body", "body": "a str, not bytes", "more_body": False})


async def excess_body_one(scope: Scope, receive: Receive, send: Send) -> None:
    """content-length 5, then 11 bytes in one final message."""
    await drain(receive)
    await send(start(200, [(b"content-length", b"5")]))
    await send(body(b"hello world"))


async def excess_body_stream(scope: Scope, receive: Receive, send: Send) -> None:
    """content-length 5, then 11 bytes with more_body=True, then the final empty message
    (what a streaming response with a wrong content-length does)."""
    await drain(receive)
    await send(start(200, [(b"content-length", b"5")]))
    await send(body(b"hello world", more=True))
    await asyncio.sleep(0.05)
    await send(body(b"and more", more=True))
    await send(body(b""))


async def short_body(scope: Scope, receive: Receive, send: Send) -> None:
    """content-length 100, 10 bytes, and returns."""
    await drain(receive)
    await send(start(200, [(b"content-length", b"100")]))
    await send(body(b"ten bytes!"))


async def print_lines(scope: Scope, receive: Receive, send: Send) -> None:
    """Prints ``mib`` MiB to stdout in 100-byte lines, then a marker line."""
    await drain(receive)
    params = query(scope)
    mib = float(params.get("mib", "5"))
    marker = params.get("marker", "")
    line = "x" * 99 + "\n"
    block = line * 10_000  # ~1 MB
    total = int(mib * MIB)
    written = 0
    while written < total:
        sys.stdout.write(block)
        written += len(block)
    sys.stdout.write(f"MARKER {marker} pid={os.getpid()}\n")
    sys.stdout.flush()
    await send(start(200, [(b"content-length", b"2")]))
    await send(body(b"ok"))


async def print_one_line(scope: Scope, receive: Receive, send: Send) -> None:
    """Prints ``mib`` MiB to stdout as a single line (no newline until the end)."""
    await drain(receive)
    mib = float(query(scope).get("mib", "5"))
    sys.stdout.write("y" * int(mib * MIB) + "\n")
    sys.stdout.flush()
    await send(start(200, [(b"content-length", b"2")]))
    await send(body(b"ok"))


async def print_marker(scope: Scope, receive: Receive, send: Send) -> None:
    """Prints one short marker line to stdout."""
    await drain(receive)
    print(f"MARKER {query(scope).get('marker', '')} pid={os.getpid()}", flush=True)
    await send(start(200, [(b"content-length", b"2")]))
    await send(body(b"ok"))


async def block(scope: Scope, receive: Receive, send: Send) -> None:
    """Blocks the event loop (a sync call in an async handler)."""
    await drain(receive)
    time.sleep(float(query(scope).get("seconds", "30")))
    await send(start(200, [(b"content-length", b"7")]))
    await send(body(b"blocked"))


async def leak(scope: Scope, receive: Receive, send: Send) -> None:
    """Allocates ``mib`` MiB (touched, so resident) and keeps it forever."""
    await drain(receive)
    mib = int(query(scope).get("mib", "50"))
    LEAK.append(b"L" * (mib * MIB))
    data = json.dumps({"pid": os.getpid(), "kept_mib": len(LEAK) * mib}).encode()
    await send(start(200, [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]))
    await send(body(data))


async def count(scope: Scope, receive: Receive, send: Send) -> None:
    await drain(receive)
    data = json.dumps({"count": COUNT["n"], "seen": SEEN, "pid": os.getpid()}).encode()
    await send(start(200, [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]))
    await send(body(data))


ROUTES: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {
    "/faulty/start-twice": start_twice,
    "/faulty/start-twice-caught": start_twice_caught,
    "/faulty/unknown-before-start": unknown_before_start,
    "/faulty/status-str": status_str,
    "/faulty/header-str-name": header_str_name,
    "/faulty/body-str": body_str,
    "/faulty/excess-body-one": excess_body_one,
    "/faulty/excess-body-stream": excess_body_stream,
    "/faulty/short-body": short_body,
    "/faulty/print-lines": print_lines,
    "/faulty/print-one-line": print_one_line,
    "/faulty/print-marker": print_marker,
    "/faulty/block": block,
    "/faulty/leak": leak,
}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        if scope["path"] == "/_/count":
            await count(scope, receive, send)
            return
        COUNT["n"] += 1
        SEEN.append(target_of(scope))
        del SEEN[:-1000]
        handler = ROUTES.get(scope["path"])
        if handler is not None:
            await handler(scope, receive, send)
            return
    await testapp_app(scope, receive, send)
