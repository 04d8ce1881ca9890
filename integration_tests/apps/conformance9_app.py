"""An app for test_rfc_conformance9.py: responses whose start comes well before their first body.

* ``/start-then-body?s=S``: ``http.response.start`` (``content-type: text/plain``), then S seconds
  (default 1) of work, then the body ``late``.
* ``/start-flush-then-body``: the start, an empty ``http.response.body`` with ``more_body`` (the head
  may go now), a second of work, then ``late``.
* ``/start-then-raise``, ``/start-then-return``: the start, a moment of work, then the app raises, or
  returns without a body.
* ``/start-then-missing-pathsend``: the start, a moment, then ``http.response.pathsend`` of a file
  that does not exist.
* ``/start-missing-pathsend-at-once``: the start and, in the same step, that pathsend.
* ``/start-then-sleep``: the start, then 30 s of work (for ``--timeout-request``).
* ``/start-wait-flush``: the start, a moment, an empty body with ``more_body`` (the head may go
  now), a second of work, then ``late``.
* ``/start-yield-raise``: the start, one event-loop iteration (the worker flushes the start), then
  the app raises.
* ``/background``: answers ``sent`` at once, then works on for a second and prints
  ``background: done`` (or ``background: cancelled``).
* ``/send-then-block``: a whole response (``sent``), then 1.5 s of work that blocks the event loop;
  ``/chunk-then-block``: a first chunk (``first``), 1.5 s of blocking work, then ``second``.
* ``/raise-long``: raises an exception whose message is 100,000 characters, ending ``THE-END``.
* ``/pid``: the worker's process id; ``/exit``: the worker exits at once with status 7.
* ``/hang``: 30 s of work that never looks at ``receive()``; cancelled, it prints ``hang: cancelled``.
* ``/big``: 8 MiB of body, in 64 KiB pieces; stopped (cancelled, or its send() raising), it prints
  ``big: stopped by <exception class>``.
* WebSocket ``/ws/hold``: accepts, sends ``ready``, and waits for the disconnect, which it prints to
  stderr (``hold: websocket.disconnect CODE``; the worker's output reaches the gateway's log, and
  outlives the worker); with query ``linger``, it returns a second after the disconnect.
* The lifespan shutdown prints ``lifespan shutdown pid PID`` to stderr.
* any other path: answers its path.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from typing import Any
from urllib.parse import parse_qs

MISSING_FILE = os.path.join(tempfile.gettempdir(), "conformance9-no-such-dir", "missing.txt")
START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                print(f"lifespan shutdown pid {os.getpid()}", file=sys.stderr, flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "ready"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                print(f"hold: websocket.disconnect {message.get('code')}", file=sys.stderr, flush=True)
                if scope["query_string"] == b"linger":
                    await asyncio.sleep(1)  # cleanup after the disconnect (tell a room, save state)
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    query = parse_qs(scope["query_string"].decode())
    if path == "/start-then-body":
        await send(START)
        await asyncio.sleep(float(query.get("s", ["1"])[0]))
        await send({"type": "http.response.body", "body": b"late"})
    elif path == "/start-flush-then-body":
        await send(START)
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await asyncio.sleep(1.0)
        await send({"type": "http.response.body", "body": b"late"})
    elif path == "/start-wait-flush":
        await send(START)
        await asyncio.sleep(0.2)
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await asyncio.sleep(1.0)
        await send({"type": "http.response.body", "body": b"late"})
    elif path == "/start-yield-raise":
        await send(START)
        await asyncio.sleep(0)
        raise RuntimeError("failed one iteration after the start")
    elif path == "/background":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"sent"})
        try:
            await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            print("background: cancelled", file=sys.stderr, flush=True)
            raise
        print("background: done", file=sys.stderr, flush=True)
    elif path == "/send-then-block":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"sent"})
        time.sleep(1.5)  # blocking on purpose: what was sent must already be on its way
    elif path == "/chunk-then-block":
        await send(START)
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        time.sleep(1.5)
        await send({"type": "http.response.body", "body": b"second"})
    elif path == "/raise-long":
        raise ValueError("x" * 99993 + " THE-END")
    elif path == "/start-then-raise":
        await send(START)
        await asyncio.sleep(0.2)
        raise RuntimeError("failed after the start, before any body")
    elif path == "/start-then-return":
        await send(START)
        await asyncio.sleep(0.2)
    elif path == "/start-then-missing-pathsend":
        assert "http.response.pathsend" in scope.get("extensions", {}), scope.get("extensions")
        await send(START)
        await asyncio.sleep(0.2)
        await send({"type": "http.response.pathsend", "path": MISSING_FILE})
    elif path == "/start-missing-pathsend-at-once":
        await send(START)
        await send({"type": "http.response.pathsend", "path": MISSING_FILE})
    elif path == "/hang":
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            print("hang: cancelled", file=sys.stderr, flush=True)
            raise
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
    elif path == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(127):
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
            await send({"type": "http.response.body", "body": b"x" * 65536})
        except BaseException as exc:  # cancelled, or told the client is gone
            print(f"big: stopped by {type(exc).__name__}", file=sys.stderr, flush=True)
            raise
    elif path == "/exit":
        os._exit(7)
    elif path == "/pid":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
    elif path == "/start-then-sleep":
        await send(START)
        await asyncio.sleep(30)
        await send({"type": "http.response.body", "body": b"too late"})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": path.encode()})
