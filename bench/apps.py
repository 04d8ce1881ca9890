"""The benchmark's ASGI apps: raw ASGI 3 callables, one per workload (see bench/run.py).

Each app ignores the request path (the wrk URLs carry one only for the Go floor server).
Every app answers the lifespan protocol, so that all servers start it the same way. The
Starlette JSON workload lives in json_app.py, so that Starlette is imported only there.
"""

import asyncio

HELLO = b"Hello, World!"
BODY_10K = b"x" * 10240
CHUNK_64K = b"x" * 65536
STREAM_CHUNKS = 16  # 16 x 64 KiB = 1 MiB

TEXT = b"text/plain"
OCTETS = b"application/octet-stream"


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send, body, content_type):
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def plaintext(scope, receive, send):
    """GET: 'Hello, World!'."""
    if scope["type"] == "http":
        await _respond(send, HELLO, TEXT)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def get_10k(scope, receive, send):
    """GET: a 10 KB body (10,240 bytes) with Content-Length."""
    if scope["type"] == "http":
        await _respond(send, BODY_10K, OCTETS)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def echo(scope, receive, send):
    """POST: reads the whole body, answers it back with Content-Length."""
    if scope["type"] == "http":
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        await _respond(send, b"".join(chunks), OCTETS)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def stream(scope, receive, send):
    """GET: 1 MiB sent as 16 body messages of 64 KiB, no Content-Length (chunked)."""
    if scope["type"] == "http":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", OCTETS)],
            }
        )
        for _ in range(STREAM_CHUNKS - 1):
            await send({"type": "http.response.body", "body": CHUNK_64K, "more_body": True})
        await send({"type": "http.response.body", "body": CHUNK_64K, "more_body": False})
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def longpoll(scope, receive, send):
    """GET: waits 100 ms (a long-poll standing in for I/O), then 'Hello, World!'."""
    if scope["type"] == "http":
        await asyncio.sleep(0.1)
        await _respond(send, HELLO, TEXT)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def ws_echo(scope, receive, send):
    """WebSocket: accepts, echoes every message (bytes as bytes, text as text).

    Used by both WebSocket workloads (echo, and idle connections whose liveness is checked
    with one echo at the end). Plain HTTP requests get 'ok', for the harness's readiness probe.
    """
    if scope["type"] == "websocket":
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.receive":
                data = message.get("bytes")
                if data is not None:
                    await send({"type": "websocket.send", "bytes": data})
                else:
                    await send({"type": "websocket.send", "text": message.get("text") or ""})
            elif message["type"] == "websocket.disconnect":
                return
    elif scope["type"] == "http":
        await _respond(send, b"ok", TEXT)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)
