"""An ASGI app that makes its worker misbehave, for integration_tests/test_ws_conformance.py.

The worker refuses what an app may not send (a close code RFC 6455 forbids on the wire, a
subprotocol the client did not offer), and the gateway, which owns the wire, checks again. To test
the gateway's own checks, this app writes the frames a buggy worker would send: it queues them
through the worker's stream object (the ``__self__`` of the ``send`` it is given), past the checks
of ``send``. It depends on the worker's private names on purpose; it is a test double, not an
example.

* ``/close?code=C&reason=R``: accepts, then WS_CLOSE with code C and reason R, unchecked.
* ``/accept?subprotocol=S``: WS_ACCEPT with subprotocol S, unchecked; then sends "accepted".
* HTTP ``GET /pid``: this worker's process id (run it with ``--lifespan off``).
"""

from __future__ import annotations

import os
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

from python_worker import websocket as stream
from python_worker.protocol import encode_ws_accept, encode_ws_close

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        body = str(os.getpid()).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
        return
    assert (await receive())["type"] == "websocket.connect"
    cycle = send.__self__  # type: ignore[attr-defined] - the worker's WebSocketCycle
    params = query(scope)
    if scope["path"] == "/close":
        await send({"type": "websocket.accept"})
        cycle._ws = stream._CLOSED
        cycle._queue(encode_ws_close(cycle.sid, int(params["code"]), params.get("reason", "")))
    elif scope["path"] == "/accept":
        cycle._ws = stream._ACCEPTED
        cycle._queue(encode_ws_accept(cycle.sid, params["subprotocol"], []))
        try:
            await send({"type": "websocket.send", "text": "accepted"})
        except OSError:
            return  # the gateway refused the accept and said the client is gone
    while (await receive())["type"] != "websocket.disconnect":
        pass
