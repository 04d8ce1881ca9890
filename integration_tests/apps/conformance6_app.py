"""An app for test_asgi_conformance6.py: numbers the ASGI spec types as ``int`` given as int
subclasses (``http.HTTPStatus``, an ``IntEnum`` of close codes), as frameworks pass them on."""

from __future__ import annotations

import enum
import http
from typing import Any


class CloseCode(enum.IntEnum):
    GOING_AWAY = 1001
    APP_DEFINED = 4001


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        if path == "/ws/close-enum":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": CloseCode.APP_DEFINED, "reason": "enum"})
        elif path == "/ws/deny-enum":
            await send({"type": "websocket.http.response.start", "status": http.HTTPStatus.UNAUTHORIZED,
                        "headers": [(b"content-length", b"6")]})
            await send({"type": "websocket.http.response.body", "body": b"denied"})
        return
    if path == "/status-enum":
        await send({"type": "http.response.start", "status": http.HTTPStatus.CREATED,
                    "headers": [(b"content-length", b"7")]})
        await send({"type": "http.response.body", "body": b"created"})
    elif path == "/status-bool":
        await send({"type": "http.response.start", "status": True})
        await send({"type": "http.response.body", "body": b"never"})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body"})
