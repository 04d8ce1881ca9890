"""An app for test_asgi_conformance6.py.

* ``/status-enum``, ``/ws/close-enum``, ``/ws/deny-enum``: numbers the ASGI spec types as ``int``
  given as int subclasses (``http.HTTPStatus``, an ``IntEnum`` of close codes), as frameworks pass
  them on.
* ``/ws/accept-header?name=N``: ``websocket.accept`` with a header N: ``protocol`` (N given in the
  query string); with ``subprotocol`` in the query, also that ``subprotocol`` key.
* ``/ws/buggy-accept-header``: a buggy worker: WS_ACCEPT with a ``sec-websocket-protocol`` header,
  queued past the worker's checks (through its private names, as ``ws_buggy_worker_app.py``).
"""

from __future__ import annotations

import enum
import http
from typing import Any
from urllib.parse import parse_qs

from python_worker import websocket as stream
from python_worker.protocol import encode_ws_accept


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
        elif path == "/ws/accept-header":
            query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
            await send({"type": "websocket.accept", "subprotocol": query.get("subprotocol"),
                        "headers": [(query["name"].encode(), b"chat"), (b"x-other", b"1")]})
            await send({"type": "websocket.send", "text": "accepted"})
            while (await receive())["type"] != "websocket.disconnect":
                pass
        elif path == "/ws/buggy-accept-header":
            cycle = send.__self__  # the worker's WebSocketCycle
            cycle._ws = stream._ACCEPTED
            cycle._queue(encode_ws_accept(cycle.sid, None, [(b"Sec-WebSocket-Protocol", b"chat")]))
            try:
                await send({"type": "websocket.send", "text": "accepted"})
            except OSError:
                return  # the gateway refused the accept and said the client is gone
            while (await receive())["type"] != "websocket.disconnect":
                pass
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
