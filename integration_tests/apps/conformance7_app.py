"""An app for test_rfc_conformance7.py.

* ``/respond-then-read``: starts its response (``content-length: N`` when the query has ``cl=N``,
  else chunked with a first piece ``first;``), and only then reads the request body, which it
  answers as ``got=<body>``: a streaming handler that answers before it reads.
* ``/slow?s=S``: reads its body, then waits S seconds (default 30) for an event, as a long-poll: told
  of a disconnect, it records ``slow: http.disconnect`` and returns; else it records
  ``slow: answered`` and answers ``slow``.
* ``/events``: what the app recorded since the last call, one line each.
* ``/trailers-invalid``, ``/trailers-missing``: announce trailers and send ``data``, then an
  ``http.response.trailers`` with a field value that is not one (CR LF in it), or none at all.
* ``/pathsend-trailers``: announces trailers, sends ``PATHSEND_FILE`` (written at import) with
  ``http.response.pathsend``, then the trailer ``x-checksum: abc``.
* ``/abandon``: starts a response, sends part of its body, and returns, leaving a task that sends
  more after a moment and records what its send() did (``abandon: <exception class>``).
* ``/raise-after-start``: sends ``http.response.start``, then raises before any body.
* ``/trailer-header``: a response with an ordinary ``trailer: x-foo`` header and ``x-foo``, and no
  trailers (``trailers`` not set).
* ``/method``: answers ``scope["method"]``; ``/pid``: the worker's process id.
* WebSocket ``/ws/close-and-linger``: accepts, sends ``websocket.close``, then does a second of
  cleanup before it records ``linger: cleanup done`` and returns (frameworks' apps run on after
  their close).
* WebSocket ``/ws/hold``: accepts, then waits for the disconnect, which it records.
* WebSocket ``/ws/accept-framing``: accepts with fields that frame a response or carry the
  handshake (content-length, transfer-encoding, connection, upgrade, sec-websocket-accept,
  sec-websocket-extensions) and ``x-app: kept``, then waits for the disconnect.
* WebSocket ``/ws/delayed-accept``: accepts after half a second, then echoes text messages.
* WebSocket ``/ws/slow-accept``: records ``slow-accept: connect``, then waits up to 30 s for a
  second event, which it records (``slow-accept: websocket.disconnect 1006``) before it returns.
* any other path: records ``served PATH`` and answers its path.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import Any
from urllib.parse import parse_qs


_events: list[str] = []
_tasks: set[asyncio.Future[None]] = set()  # the tasks /abandon leaves behind

PATHSEND_CONTENT = b"pathsend file contents\n" * 1000
PATHSEND_FILE = os.path.join(tempfile.mkdtemp(prefix="conformance7-"), "file.txt")
with open(PATHSEND_FILE, "wb") as _f:
    _f.write(PATHSEND_CONTENT)


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client left")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if path == "/respond-then-read":
        if "cl" in query:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", query["cl"].encode())]})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first;", "more_body": True})
        body = await _body(receive)
        await send({"type": "http.response.body", "body": b"got=" + body})
        return
    if path == "/slow":
        await _body(receive)
        waiter = asyncio.ensure_future(receive())
        done, _ = await asyncio.wait({waiter}, timeout=float(query.get("s", "30")))
        if done and waiter.result()["type"] == "http.disconnect":
            _events.append("slow: http.disconnect")
            return
        waiter.cancel()
        _events.append("slow: answered")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"slow"})
        return
    if path in ("/trailers-invalid", "/trailers-missing"):
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"data"})
        if path == "/trailers-invalid":
            try:  # (asgi.rst, Error Handling: the server raises out of send for an invalid event)
                await send({"type": "http.response.trailers", "headers": [(b"x-t", b"1\r\nx-injected: 1")]})
            except ValueError as exc:
                _events.append(f"trailers-invalid: {type(exc).__name__}")
                await send({"type": "http.response.trailers", "headers": [(b"x-t", b"1")]})
        return
    if path == "/pathsend-trailers":
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"trailer", b"x-checksum")]})
        await send({"type": "http.response.pathsend", "path": PATHSEND_FILE})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})
        return
    if path == "/abandon":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})

        async def later() -> None:
            await asyncio.sleep(0.3)
            try:
                await send({"type": "http.response.body", "body": b"more", "more_body": True})
            except Exception as exc:  # what send() raises is the point
                _events.append(f"abandon: {type(exc).__name__} {isinstance(exc, OSError)}")
            else:
                _events.append("abandon: returned")

        _tasks.add(asyncio.ensure_future(later()))
        return
    if path == "/raise-after-start":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("failed before any body")
    if path == "/trailer-header":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"trailer", b"x-foo"), (b"x-foo", b"from-header")]})
        await send({"type": "http.response.body", "body": b"hello"})
        return
    if path in ("/method", "/pid"):
        body = scope["method"].encode() if path == "/method" else str(os.getpid()).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    if path == "/events":
        body = "".join(line + "\n" for line in _events).encode()
        _events.clear()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    _events.append(f"served {path}")
    body = path.encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope["path"]
    await receive()  # websocket.connect
    if path == "/ws/slow-accept":
        _events.append("slow-accept: connect")
        try:
            message = await asyncio.wait_for(receive(), 30)
        except asyncio.TimeoutError:
            _events.append("slow-accept: nothing")
            return
        _events.append(f"slow-accept: {message['type']} {message.get('code')}")
        return
    if path == "/ws/delayed-accept":
        await asyncio.sleep(0.5)
    if path == "/ws/accept-framing":
        await send({"type": "websocket.accept", "headers": [
            (b"content-length", b"5"), (b"transfer-encoding", b"chunked"), (b"connection", b"close"),
            (b"upgrade", b"h2c"), (b"sec-websocket-accept", b"bogus"),
            (b"sec-websocket-extensions", b"permessage-deflate"), (b"x-app", b"kept")]})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    await send({"type": "websocket.accept"})
    if path == "/ws/delayed-accept":
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or ""})
    elif path == "/ws/close-and-linger":
        await send({"type": "websocket.close", "code": 1000})
        await asyncio.sleep(1)
        _events.append("linger: cleanup done")
    elif path == "/ws/hold":
        while (await receive())["type"] != "websocket.disconnect":
            pass
        _events.append("hold: disconnect")
