"""Test app for the ASGI extensions the gateway offers: pathsend (through Starlette's FileResponse),
early hints and trailers. It records what each request's app sent, so a test can check that a file's
bytes never went through Python."""

from __future__ import annotations

import json
import os

from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

FILE = os.environ.get("EXT_APP_FILE", "/tmp/ext_app_file.bin")
SENT: list[dict] = []


async def file_endpoint(request):
    return FileResponse(FILE, media_type="application/octet-stream")


starlette_app = Starlette(routes=[Route("/file", file_endpoint)])


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/_/sent":
        body = json.dumps(SENT).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    if path == "/_/extensions":
        body = json.dumps(sorted(scope.get("extensions", {}))).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
        return
    if path == "/hint":
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"trailer", b"x-checksum")], "trailers": True})
        await send({"type": "http.response.body", "body": b"part1", "more_body": True})
        await send({"type": "http.response.body", "body": b"part2"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc123")]})
        return
    if path == "/padded":
        # Field values with whitespace around them: HTTP/1.1 allows it (optional whitespace), HTTP/2
        # does not (RFC 9113 section 8.2.1).
        await send({"type": "http.response.early_hint", "links": [b" </style.css>; rel=preload "]})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-padded", b"  value\t")],
                    "trailers": True})
        await send({"type": "http.response.body", "body": b"body"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"\tabc123 ")]})
        return
    if path == "/trailers-forbidden":
        # Between two allowed fields, fields that may not be sent as trailers (RFC 9110 section 6.5.1).
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"body"})
        await send({"type": "http.response.trailers", "headers": [
            (b"x-checksum", b"abc123"),
            (b"content-length", b"99"),
            (b"transfer-encoding", b"gzip"),
            (b"host", b"elsewhere.example"),
            (b"content-type", b"text/evil"),
            (b"authorization", b"Basic eDp5"),
            (b"trailer", b"x-more"),
            (b"server-timing", b"app;dur=1"),
        ]})
        return

    async def recording_send(message):
        SENT.append({"type": message["type"], "body_bytes": len(message.get("body", b""))})
        await send(message)

    await starlette_app(scope, receive, recording_send)
