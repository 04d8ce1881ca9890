"""A raw ASGI 3 app for the WebSocket integration tests (integration_tests/test_ws_protocol.py).

WebSocket behaviour is chosen by the path (below, ``WS_ROUTES``); a ``key`` query parameter names the
list in ``RECORDS`` where the handler writes what it observed (the connect, each message, the
disconnect event, an exception from ``send()``, ...). Tests read the records back over HTTP:

* ``GET /_/records?key=K``  → the JSON list of records for K
* ``GET /_/pid``            → this worker's process id
* ``GET /_/open-gate?key=K`` → sets the gate K that ``/no-receive`` waits on

The app also speaks the lifespan protocol and puts ``{"ws_app": "started"}`` into the lifespan
``state``, so that the tests can check the copy of it in each websocket scope.

State is per worker process: the tests that read records run with ``--workers 1``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

from testapp import render, type_names  # noqa: E402 - same --app-dir; one JSON rendering of scopes

RECORDS: dict[str, list[dict[str, Any]]] = {}
GATES: dict[str, asyncio.Event] = {}


def container_kinds(value: Any) -> Any:
    """The type name of every container, recursively (``render`` hides list vs tuple)."""
    if isinstance(value, (list, tuple)):
        return {"kind": type(value).__name__, "items": [container_kinds(item) for item in value]}
    if isinstance(value, dict):
        return {"kind": type(value).__name__, "items": {str(k): container_kinds(v) for k, v in value.items()}}
    return type(value).__name__


def query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


def record(scope: Scope, **fields: Any) -> None:
    key = query(scope).get("key")
    if key:
        RECORDS.setdefault(key, []).append(fields)


def describe_message(message: Message) -> dict[str, Any]:
    """What a websocket.receive (or any event) looked like: keys, which of text/bytes were set, sizes."""
    text, data = message.get("text"), message.get("bytes")
    payload = text.encode("utf-8") if isinstance(text, str) else data if isinstance(data, bytes) else b""
    return {
        "type": message.get("type"),
        "keys": sorted(message),
        "text_type": type(text).__name__,
        "bytes_type": type(data).__name__,
        "text": text if isinstance(text, str) and len(text) <= 200 else None,
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "code": message.get("code"),
        "reason": message.get("reason"),
    }


async def receive_until_disconnect(scope: Scope, receive: Receive) -> Message:
    """Receives (dropping messages) until websocket.disconnect, which is recorded and returned."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            record(scope, event="disconnect", code=message.get("code"), reason=message.get("reason"),
                   keys=sorted(message))
            # Also in the log, for tests that cannot ask the app any more (the gateway is stopping).
            print(f"ws_app: {scope['path']} key={query(scope).get('key')} disconnect code={message.get('code')}",
                  file=sys.stderr, flush=True)
            return message


# --- HTTP -------------------------------------------------------------------------------------


async def http_app(scope: Scope, receive: Receive, send: Send) -> None:
    while True:  # read the (empty) body
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    path = scope["path"]
    params = query(scope)
    if path == "/_/pid":
        body = str(os.getpid()).encode()
    elif path == "/_/records":
        body = json.dumps(RECORDS.get(params.get("key", ""), [])).encode()
    elif path == "/_/open-gate":
        GATES.setdefault(params["key"], asyncio.Event()).set()
        body = b"open"
    else:
        body = b"ws_app: HTTP " + path.encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# --- WebSocket handlers -----------------------------------------------------------------------
# Each is called after the first receive() returned websocket.connect.


async def ws_scope(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts, sends the scope (values, leaf types, container kinds) as one JSON text message, waits."""
    data = {
        "scope": render(scope),
        "types": type_names(scope),
        "kinds": container_kinds(scope),
        "pid": os.getpid(),
    }
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps(data)})
    await receive_until_disconnect(scope, receive)


async def ws_accept(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts with ?subprotocol= (when given) and ?headers=1 extra headers, after ?delay= seconds;
    sends "accepted"; waits."""
    params = query(scope)
    if "delay" in params:
        await asyncio.sleep(float(params["delay"]))
    message: Message = {"type": "websocket.accept"}
    if "subprotocol" in params:
        message["subprotocol"] = params["subprotocol"]
    if params.get("headers") == "1":
        message["headers"] = [
            (b"x-extra", b"one"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
        ]
    await send(message)
    await send({"type": "websocket.send", "text": "accepted"})
    await receive_until_disconnect(scope, receive)


async def ws_bad_accept(scope: Scope, receive: Receive, send: Send) -> None:
    """websocket.accept with a header value holding a CRLF: if send() raises, accepts without it and
    sends "raised <exception class>"; else sends "accepted"."""
    try:
        await send({"type": "websocket.accept", "headers": [(b"x-bad", b"a\r\nx-injected: 1")]})
    except Exception as exc:  # noqa: BLE001 - reported to the client
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": f"raised {type(exc).__name__}"})
    else:
        await send({"type": "websocket.send", "text": "accepted"})
    await receive_until_disconnect(scope, receive)


async def ws_close_before_accept(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "websocket.close", "code": 1000})


async def ws_http_response(scope: Scope, receive: Receive, send: Send) -> None:
    """The websocket.http.response extension: a 418 with headers and a body in two pieces."""
    await send({
        "type": "websocket.http.response.start",
        "status": 418,
        "headers": [(b"content-type", b"text/plain"), (b"x-denied", b"yes"), (b"content-length", b"8")],
    })
    await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"entry"})


async def ws_raise_before_accept(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("ws_app: failing before websocket.accept, on purpose")


async def ws_return_before_accept(scope: Scope, receive: Receive, send: Send) -> None:
    return


async def ws_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts (with the first offered subprotocol, if any) and echoes every message as it came."""
    subprotocols = scope.get("subprotocols") or []
    await send({"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            record(scope, event="disconnect", code=message.get("code"), reason=message.get("reason"),
                   keys=sorted(message))
            return
        record(scope, event="receive", **describe_message(message))
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def ws_report(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts and answers every message with a JSON text describing the websocket.receive event."""
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            record(scope, event="disconnect", code=message.get("code"), reason=message.get("reason"),
                   keys=sorted(message))
            return
        description = describe_message(message)
        record(scope, event="receive", **description)
        await send({"type": "websocket.send", "text": json.dumps(description)})


async def ws_close(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts, then websocket.close with ?code= and ?reason= (each omitted when not given, None
    when given as "none")."""
    params = query(scope)
    await send({"type": "websocket.accept"})
    message: Message = {"type": "websocket.close"}
    for name in ("code", "reason"):
        if name in params:
            value = params[name]
            message[name] = None if value == "none" else int(value) if name == "code" else value
    await send(message)
    # After its own close the app's receive() gives websocket.disconnect (ASGI: the app closed).
    await receive_until_disconnect(scope, receive)


async def ws_return_after_accept(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "websocket.accept"})


async def ws_raise_after_accept(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "websocket.accept"})
    raise RuntimeError("ws_app: failing after websocket.accept, on purpose")


async def ws_hold(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts, sends "ready", then waits for the disconnect (dropping messages) and records it."""
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "ready"})
    await receive_until_disconnect(scope, receive)


async def ws_send_after_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    """After websocket.disconnect, tries send() and records what it raised."""
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "ready"})
    await receive_until_disconnect(scope, receive)
    try:
        await send({"type": "websocket.send", "text": "too late"})
    except BaseException as exc:  # noqa: BLE001 - recorded for the test
        record(scope, event="send-error", cls=type(exc).__name__, module=type(exc).__module__,
               is_oserror=isinstance(exc, OSError))
        return
    record(scope, event="send-ok")


async def ws_no_receive(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts and never calls receive() until the gate ?key= opens (or 30 s pass); then receives
    until the disconnect, which it records with the number of messages and bytes it got."""
    key = query(scope).get("key", "")
    gate = GATES.setdefault(key, asyncio.Event())
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "ready"})
    try:
        await asyncio.wait_for(gate.wait(), 30)
    except asyncio.TimeoutError:
        pass
    messages = size = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            record(scope, event="disconnect", code=message.get("code"), reason=message.get("reason"),
                   keys=sorted(message), messages=messages, size=size)
            return
        messages += 1
        size += len(message.get("bytes") or b"") + len((message.get("text") or "").encode())


async def ws_flood(scope: Scope, receive: Receive, send: Send) -> None:
    """Sends ?count= binary messages of ?size= bytes as fast as send() returns; after ?seconds= (3)
    records how many send() calls had completed, then goes on until it is done or disconnected."""
    params = query(scope)
    count, size, seconds = int(params.get("count", "100")), int(params.get("size", "1048576")), float(params.get("seconds", "3"))
    payload = b"x" * size
    sent = 0
    await send({"type": "websocket.accept"})

    async def sender() -> None:
        nonlocal sent
        for _ in range(count):
            await send({"type": "websocket.send", "bytes": payload})
            sent += 1

    task = asyncio.ensure_future(sender())
    done, _ = await asyncio.wait([task], timeout=seconds)
    record(scope, event="flood", sent_within=sent, tried=count, finished=bool(done), size=size)
    try:
        await task
    except OSError as exc:
        record(scope, event="flood-error", cls=type(exc).__name__)
    else:
        await receive_until_disconnect(scope, receive)


WS_ROUTES: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {
    "/accept": ws_accept,
    "/bad-accept": ws_bad_accept,
    "/close-before-accept": ws_close_before_accept,
    "/http-response": ws_http_response,
    "/raise-before-accept": ws_raise_before_accept,
    "/return-before-accept": ws_return_before_accept,
    "/echo": ws_echo,
    "/report": ws_report,
    "/close": ws_close,
    "/return-after-accept": ws_return_after_accept,
    "/raise-after-accept": ws_raise_after_accept,
    "/hold": ws_hold,
    "/send-after-disconnect": ws_send_after_disconnect,
    "/no-receive": ws_no_receive,
    "/flood": ws_flood,
}


async def websocket_app(scope: Scope, receive: Receive, send: Send) -> None:
    first = await receive()
    record(scope, event="connect", type=first["type"], keys=sorted(first))
    assert first["type"] == "websocket.connect", first
    handler = WS_ROUTES.get(scope["path"], ws_scope)  # any other path: the scope dump
    await handler(scope, receive, send)


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if "state" in scope:
                scope["state"]["ws_app"] = "started"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await websocket_app(scope, receive, send)
    elif scope["type"] == "http":
        await http_app(scope, receive, send)
    elif scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
