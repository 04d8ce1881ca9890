"""The soak test's app (bench/soak.py): a raw ASGI 3 app whose every answer carries its worker's pid.

- ``GET /plain``: ``Hello, World!``
- ``POST /upload``: reads the whole body, answers its size and SHA-256
- ``GET /stream?n=N&size=S&delay=D``: N pieces of S bytes, D seconds apart, no content-length
- WebSocket ``/ws``: accepts, sends ``pid <PID>``, then echoes every message until the client closes

HTTP responses carry the pid in ``x-worker-pid``, so that the soak can tell which worker served (or
failed) a request.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from urllib.parse import parse_qs

PID = str(os.getpid()).encode()
HELLO = b"Hello, World!"


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _headers(content_type: bytes, length: int | None = None) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", content_type), (b"x-worker-pid", PID)]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return headers


async def _respond(send, body: bytes, content_type: bytes = b"text/plain", status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _headers(content_type, len(body))})
    await send({"type": "http.response.body", "body": body})


async def _upload(receive, send) -> None:
    digest = hashlib.sha256()
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        chunk = message.get("body", b"")
        size += len(chunk)
        digest.update(chunk)
        if not message.get("more_body", False):
            break
    await _respond(send, f"{size} {digest.hexdigest()}".encode())


async def _stream(scope, receive, send) -> None:
    params = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
    count = int(params.get("n", "16"))
    size = int(params.get("size", "16384"))
    delay = float(params.get("delay", "0"))
    piece = b"s" * size
    await send({"type": "http.response.start", "status": 200, "headers": _headers(b"application/octet-stream")})
    for _ in range(count):
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        if delay:
            await asyncio.sleep(delay)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _websocket(scope, receive, send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": f"pid {os.getpid()}"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            await send({"type": "websocket.send", "text": message.get("text") or ""})


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        await _lifespan(receive, send)
    elif kind == "websocket":
        await _websocket(scope, receive, send)
    elif scope["path"] == "/plain":
        await _respond(send, HELLO)
    elif scope["path"] == "/upload":
        await _upload(receive, send)
    elif scope["path"] == "/stream":
        await _stream(scope, receive, send)
    else:
        await _respond(send, b"not found", status=404)
