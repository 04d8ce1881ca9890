"""A raw ASGI 3 app for the integration tests: one module, many small endpoints.

Every path under ``/_/`` is a special endpoint (below); any other path answers the
request's scope as JSON (see ``describe_scope``). Paths are matched after the
``root_path`` prefix, so the same app works behind ``--root-path``.

State that tests read back (disconnects, gates) is kept per worker process, so
tests that rely on it run with ``--workers 1``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sys
import time
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Records of what long-poll style endpoints observed, read back with /_/records?key=...
RECORDS: dict[str, list[dict[str, Any]]] = {}
# asyncio.Events that /_/gated waits on and /_/open-gate sets.
GATES: dict[str, asyncio.Event] = {}
LIFESPAN: dict[str, Any] = {"startup": False}


def render(value: Any) -> Any:
    """JSON-friendly copy: bytes become latin-1 strings, tuples become lists."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [render(item) for item in value]
    if isinstance(value, dict):
        return {str(key): render(item) for key, item in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def type_names(value: Any) -> Any:
    """The same shape as ``render(value)``, with the type name of each leaf."""
    if isinstance(value, (list, tuple)):
        return [type_names(item) for item in value]
    if isinstance(value, dict):
        return {str(key): type_names(item) for key, item in value.items()}
    return type(value).__name__


def describe_scope(scope: Scope) -> dict[str, Any]:
    return {
        "scope": render(scope),
        "types": type_names(scope),
        # The container types too (a dict for state/extensions, list-likes elsewhere).
        "kinds": {key: type(value).__name__ for key, value in scope.items()},
    }


def query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


def record(key: str, **fields: Any) -> None:
    RECORDS.setdefault(key, []).append(fields)


async def read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    """The whole request body, and the messages it came in (bodies replaced by sizes)."""
    parts: list[bytes] = []
    messages: list[Message] = []
    while True:
        message = await receive()
        body = message.get("body", b"")
        messages.append(
            {
                "type": message["type"],
                "size": len(body),
                "body_type": type(body).__name__,
                "more_body": message.get("more_body", "missing"),
            }
        )
        if message["type"] != "http.request":
            break
        parts.append(body)
        if not message.get("more_body", False):
            break
    return b"".join(parts), messages


async def respond(
    send: Send,
    body: bytes,
    status: int = 200,
    content_type: bytes = b"text/plain; charset=utf-8",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    all_headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    all_headers += headers or []
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, data: Any, status: int = 200) -> None:
    await respond(send, json.dumps(data).encode(), status, b"application/json")


# --- endpoints ------------------------------------------------------------------------------


async def scope_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    body, messages = await read_body(receive)
    data = describe_scope(scope)
    data["body_size"] = len(body)
    data["messages"] = messages
    data["pid"] = os.getpid()
    await respond_json(send, data)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body, then answers it back with what the app saw in headers."""
    body, messages = await read_body(receive)
    more = [m["more_body"] for m in messages]
    headers = [
        (b"x-messages", str(len(messages)).encode()),
        (b"x-more-body-true", str(sum(1 for m in more if m is True)).encode()),
        (b"x-last-more-body", str(more[-1]).encode()),
        (b"x-types", ",".join(sorted({m["type"] for m in messages})).encode()),
        (b"x-body-types", ",".join(sorted({m["body_type"] for m in messages})).encode()),
        (b"x-sha256", hashlib.sha256(body).hexdigest().encode()),
    ]
    await respond(send, body, content_type=b"application/octet-stream", headers=headers)


async def pid(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send, str(os.getpid()).encode())


async def python(scope: Scope, receive: Receive, send: Send) -> None:
    await respond_json(send, {"executable": sys.executable, "prefix": sys.prefix, "pid": os.getpid()})


async def speedups(scope: Scope, receive: Receive, send: Send) -> None:
    """Whether the worker serving this runs its C module (python_worker._speedups), and whether
    asyncio's task registry has the module's hooks (worker.speed_up_task_registry): is this very
    task listed by asyncio.all_tasks()?"""
    from python_worker import protocol

    registry = asyncio.tasks._all_tasks  # type: ignore[attr-defined] (3.11)
    await respond_json(send, {
        "speedups": protocol.speedups is not None,
        "task_registry_hooked": "add" in vars(registry),
        "listed": asyncio.current_task() in asyncio.all_tasks(),
    })


#: /_/field cases: a header (name, value) for http.response.start, by ?case=
FIELDS: dict[str, tuple[bytes, bytes]] = {
    "crlf-value": (b"x-bad", b"a\r\nx-injected: 1"),
    "lf-value": (b"x-bad", b"a\nb"),
    "cr-value": (b"x-bad", b"a\rb"),
    "nul-value": (b"x-bad", b"a\x00b"),
    "del-value": (b"x-bad", b"a\x7fb"),
    "esc-value": (b"x-bad", b"\x1b[31m"),
    "space-name": (b"x bad", b"1"),
    "colon-name": (b"x-bad:", b"1"),
    "empty-name": (b"", b"1"),
    "crlf-name": (b"x-bad\r\nx-injected", b"1"),
    "non-ascii-name": (b"x-\xc3\xa9", b"1"),
    # valid: HTAB, SP and obs-text in a value, every tchar in a name
    "tab-value": (b"x-ok", b"a\tb c"),
    "obs-text-value": (b"x-ok", b"caf\xc3\xa9"),
    "tchar-name": (b"x!#$%&'*+-.^_`|~09az", b"1"),
}


async def field(scope: Scope, receive: Receive, send: Send) -> None:
    """Sends http.response.start with the header FIELDS[?case] (as a list pair with ?as=list); if
    send() raises, answers 200 with what it raised (x-raised, x-message) instead."""
    params = query(scope)
    name, value = FIELDS[params["case"]]
    pair: Any = [name, value] if params.get("as") == "list" else (name, value)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-first", b"1"), pair]})
    except Exception as exc:  # noqa: BLE001 - reported to the client
        message = str(exc).encode("ascii", "backslashreplace")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-raised", type(exc).__name__.encode()), (b"x-message", message)]})
    await send({"type": "http.response.body", "body": b"done"})


async def hint_field(scope: Scope, receive: Receive, send: Send) -> None:
    """An early hint whose link has a CRLF in it: reports (x-raised) what send() raised, if anything."""
    headers = []
    try:
        await send({"type": "http.response.early_hint", "links": [b"</a.css>; rel=preload\r\nx-injected: 1"]})
    except Exception as exc:  # noqa: BLE001 - reported to the client
        headers.append((b"x-raised", type(exc).__name__.encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"done"})


async def slow(scope: Scope, receive: Receive, send: Send) -> None:
    seconds = float(query(scope).get("seconds", "1"))
    await asyncio.sleep(seconds)
    await respond(send, str(os.getpid()).encode())


async def headers_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """A status and headers in a given order, with duplicates and a header given twice."""
    status = int(query(scope).get("status", "200"))
    body = b"headers"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"x-first", b"1"),
                (b"set-cookie", b"a=1; Path=/"),
                (b"content-type", b"text/plain"),
                (b"x-dup", b"one"),
                (b"set-cookie", b"b=2; Path=/; HttpOnly"),
                (b"x-dup", b"two"),
                (b"content-length", str(len(body)).encode()),
                (b"x-last", b"z"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def length(scope: Scope, receive: Receive, send: Send) -> None:
    """A body with a content-length, sent in several messages."""
    pieces = [b"hello", b" ", b"", b"world"]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"11")],
        }
    )
    for piece in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        await asyncio.sleep(0.01)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def blob(scope: Scope, receive: Receive, send: Send) -> None:
    """``size`` seeded pseudo-random bytes (``seed``) in body messages of ``piece`` bytes, with a
    content-length (``chunked=1``: without) and their SHA-256 in ``x-sha256``."""
    params = query(scope)
    size = int(params.get("size", "0"))
    piece = max(int(params.get("piece", "65536")), 1)
    data = random.Random(int(params.get("seed", "0"))).randbytes(size)
    headers = [(b"content-type", b"application/octet-stream"), (b"x-sha256", hashlib.sha256(data).hexdigest().encode())]
    if params.get("chunked") != "1":
        headers.append((b"content-length", str(size).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for start in range(0, size, piece):
        await send({"type": "http.response.body", "body": data[start : start + piece], "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def stream(scope: Scope, receive: Receive, send: Send) -> None:
    """No content-length: ``n`` pieces ``delay`` seconds apart, with empty messages between."""
    params = query(scope)
    count = int(params.get("n", "3"))
    delay = float(params.get("delay", "0.05"))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for index in range(count):
        await send({"type": "http.response.body", "body": f"piece {index}\n".encode(), "more_body": True})
        # An empty body message must not end the response (no premature 0-size chunk).
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await asyncio.sleep(delay)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def app_transfer_encoding(scope: Scope, receive: Receive, send: Send) -> None:
    """The app sends a Transfer-Encoding header, which the server must ignore (spec 2.5)."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"transfer-encoding", b"chunked")],
        }
    )
    await send({"type": "http.response.body", "body": b"plain bytes", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def gated(scope: Scope, receive: Receive, send: Send) -> None:
    """Sends "first", waits until /_/open-gate?key=K is requested, then sends "second"."""
    key = query(scope).get("key", "")
    gate = GATES.setdefault(key, asyncio.Event())
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
    try:
        await asyncio.wait_for(gate.wait(), timeout=15)
        second = b"second\n"
    except asyncio.TimeoutError:
        second = b"timeout\n"
    GATES.pop(key, None)
    await send({"type": "http.response.body", "body": second, "more_body": False})


async def open_gate(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("key", "")
    GATES.setdefault(key, asyncio.Event()).set()
    await respond(send, b"opened")


async def status(scope: Scope, receive: Receive, send: Send) -> None:
    """A given status (``code``, default 204), by default with no body; ``etag=1`` adds an ETag,
    ``length=N`` a content-length header, ``connection=V`` a connection header, ``body=B`` a body."""
    params = query(scope)
    headers = [(b"x-status", params.get("code", "204").encode())]
    if "etag" in params:
        headers.append((b"etag", b'"v1"'))
    for name in ("length", "connection"):
        if name in params:
            headers.append((b"content-length" if name == "length" else name.encode(), params[name].encode()))
    await send({"type": "http.response.start", "status": int(params.get("code", "204")), "headers": headers})
    await send({"type": "http.response.body", "body": params.get("body", "").encode()})


async def head_body(scope: Scope, receive: Receive, send: Send) -> None:
    """Sends a body whatever the method: the server drops it for HEAD."""
    await respond(send, b"this body is not sent for HEAD")


async def no_read(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers without reading the request body."""
    await respond(send, b"did not read the body")


async def error_before_start(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("failing before http.response.start, on purpose")


async def error_after_start(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    await asyncio.sleep(0.05)
    raise RuntimeError("failing after http.response.start, on purpose")


async def error_after_start_length(scope: Scope, receive: Receive, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"100")],
        }
    )
    await send({"type": "http.response.body", "body": b"only ten b", "more_body": True})
    await asyncio.sleep(0.05)
    raise RuntimeError("failing in the middle of a content-length body, on purpose")


async def short_body(scope: Scope, receive: Receive, send: Send) -> None:
    """Completes its response with fewer bytes than its content-length."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"100")],
        }
    )
    await send({"type": "http.response.body", "body": b"ten bytes!", "more_body": False})


async def no_response(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()


async def incomplete_response(scope: Scope, receive: Receive, send: Send) -> None:
    """Starts a response and returns without finishing it."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})


async def long_poll(scope: Scope, receive: Receive, send: Send) -> None:
    """Never answers on its own: waits for http.disconnect and records it, then tries send()."""
    key = query(scope).get("key", "")
    _, messages = await read_body(receive)
    record(key, event="request", messages=messages)
    started = time.monotonic()
    message = await receive()
    record(key, event=message["type"], waited=time.monotonic() - started)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"too late"})
    except Exception as exc:  # noqa: BLE001 - the test reads what was raised
        record(key, event="send-raised", exception=type(exc).__name__, is_oserror=isinstance(exc, OSError))
    else:
        record(key, event="send-returned")


async def receive_after_response(scope: Scope, receive: Receive, send: Send) -> None:
    """Completes its response, then calls receive(): the spec says http.disconnect follows."""
    key = query(scope).get("key", "")
    await read_body(receive)
    await respond(send, b"done")
    try:
        message = await asyncio.wait_for(receive(), timeout=10)
        record(key, event=message["type"])
    except asyncio.TimeoutError:
        record(key, event="receive-timeout")


async def records(scope: Scope, receive: Receive, send: Send) -> None:
    key = query(scope).get("key", "")
    await respond_json(send, RECORDS.get(key, []))


async def lifespan_info(scope: Scope, receive: Receive, send: Send) -> None:
    await respond_json(send, {"lifespan": LIFESPAN, "state": render(scope.get("state"))})


ROUTES: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {
    "/_/echo": echo,
    "/_/pid": pid,
    "/_/python": python,
    "/_/speedups": speedups,
    "/_/slow": slow,
    "/_/field": field,
    "/_/hint-field": hint_field,
    "/_/headers": headers_endpoint,
    "/_/length": length,
    "/_/stream": stream,
    "/_/blob": blob,
    "/_/app-transfer-encoding": app_transfer_encoding,
    "/_/gated": gated,
    "/_/open-gate": open_gate,
    "/_/status": status,
    "/_/head-body": head_body,
    "/_/no-read": no_read,
    "/_/error/before-start": error_before_start,
    "/_/error/after-start": error_after_start,
    "/_/error/after-start-length": error_after_start_length,
    "/_/error/no-response": no_response,
    "/_/error/short-body": short_body,
    "/_/error/incomplete-response": incomplete_response,
    "/_/long-poll": long_poll,
    "/_/receive-after-response": receive_after_response,
    "/_/records": records,
    "/_/lifespan": lifespan_info,
}


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            LIFESPAN["startup"] = True
            if isinstance(scope.get("state"), dict):
                scope["state"]["from_lifespan"] = "yes"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
        return
    assert scope["type"] == "http", scope["type"]
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    handler = ROUTES.get(path, scope_endpoint)
    await handler(scope, receive, send)


def create_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """For ``--factory``: returns the app."""
    return app
