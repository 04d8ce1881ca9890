"""Micro-benchmark of the worker's per-request (or per-message) cost, without a socket or a gateway.

Drives :class:`python_worker.connection.Connection` with an in-memory fake transport, and counts and
checks the frames the worker writes.

* ``hello``: HTTP_REQUEST frames go into ``data_received`` in batches of B requests (as the gateway
  batches them under load) and a raw ASGI hello-world app answers. Measured per request: frame
  decode, scope, task, app, send, frame encode, END, the batched write, and the event loop.
* ``ws-echo``: B WebSockets are opened and accepted first; then each round sends one 1 KiB binary
  WS_RECEIVE (and a CREDIT for the previous echo) to each of them, and an echo app answers with
  WS_SEND. Measured per message: decode, the app's receive and send, encode, the windows' credit,
  the batched write, and the event loop.

Run: ``.venv/bin/python python_worker/bench_worker.py [--workload hello|ws-echo] [--requests N]
[--batch B ...] [--loop uvloop|asyncio]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from typing import Any, List

try:
    import python_worker  # noqa: F401
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from python_worker import protocol as P
from python_worker.connection import Connection
from python_worker.worker import speed_up_task_registry

HEADERS = [
    (b"host", b"localhost:8000"),
    (b"user-agent", b"wrk/4.2.0"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
]

RESPONSE_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
WS_MESSAGE = bytes(range(256)) * 4  # 1 KiB


async def hello_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": RESPONSE_HEADERS})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def ws_echo_app(scope: Any, receive: Any, send: Any) -> None:
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        await send({"type": "websocket.send", "bytes": message["bytes"]})


class FakeTransport(asyncio.Transport):
    """Counts what the worker writes, and keeps the writes since :meth:`reset`; never blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.nbytes = 0
        self.kept: List[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes += 1
        self.nbytes += len(data)
        self.kept.append(bytes(data))

    def reset(self) -> bytes:
        """The bytes written since the previous call."""
        data = b"".join(self.kept)
        self.kept.clear()
        return data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def request_frame(sid: int) -> bytes:
    return P.encode(
        [P.HTTP_REQUEST, sid, "1.1", "GET", "http", "/", b"/", b"", "", HEADERS,
         ["127.0.0.1", 51234], ["127.0.0.1", 8000], 0, b"", False]
    )


def connect(app: Any) -> tuple:
    """A Connection past the HELLOs, with its fake transport."""
    conn = Connection(app, P.encode_hello_worker(os.getpid(), "bench"), loop=asyncio.get_running_loop())
    transport = FakeTransport()
    conn.connection_made(transport)
    conn.data_received(P.encode([P.HELLO, 0, {"protocol": 1, "pid": 1, "max_frame": 1 << 20,
                                              "window": 262144, "worker_id": 0}]))
    transport.reset()  # (the worker's HELLO)
    return conn, transport


async def bench(requests: int, batch: int) -> tuple:
    """Per request: CPU µs, wall µs, and the worker's writes (one batch's responses go in one or two
    writes: the first stream's send writes at once, the iteration's end flushes the rest)."""
    conn, transport = connect(hello_app)
    data = b"".join(request_frame(sid) for sid in range(1, batch + 1))
    rounds = max(1, requests // batch)
    writes = transport.writes
    streams = conn.streams
    sleep0 = asyncio.sleep
    gc.collect()
    t0 = time.perf_counter()
    c0 = time.process_time()
    for _ in range(rounds):
        transport.kept.clear()
        conn.data_received(data)
        while streams or conn._flush_scheduled:
            await sleep0(0)
    c1 = time.process_time()
    t1 = time.perf_counter()
    writes = transport.writes - writes
    assert rounds <= writes <= 2 * rounds, (writes, rounds)
    check_responses(transport.reset(), batch)
    n = rounds * batch
    return (c1 - c0) / n * 1e6, (t1 - t0) / n * 1e6, writes / n


def ws_connect_frame(sid: int) -> bytes:
    return P.encode(
        [P.WS_CONNECT, sid, "1.1", "ws", "/ws", b"/ws", b"", "", HEADERS,
         ["127.0.0.1", 51234], ["127.0.0.1", 8000], [], 0]
    )


async def bench_ws(messages: int, batch: int) -> tuple:
    conn, transport = connect(ws_echo_app)
    sleep0 = asyncio.sleep
    conn.data_received(b"".join(ws_connect_frame(sid) for sid in range(1, batch + 1)))
    for _ in range(10):
        await sleep0(0)
    accepted = frames(transport.reset())
    assert [f[0] for f in accepted] == [P.WS_ACCEPT] * batch, accepted
    # Each round also gives back the window of the previous round's echoes (as the gateway does once
    # it has written them to the clients).
    data = b"".join(
        P.encode([P.CREDIT, sid, len(WS_MESSAGE)]) + P.encode([P.WS_RECEIVE, sid, WS_MESSAGE])
        for sid in range(1, batch + 1)
    )
    rounds = max(1, messages // batch)
    writes = transport.writes
    gc.collect()
    t0 = time.perf_counter()
    c0 = time.process_time()
    for _ in range(rounds):
        transport.kept.clear()
        before = transport.writes
        conn.data_received(data)
        while transport.writes == before or conn._flush_scheduled:
            await sleep0(0)
    c1 = time.process_time()
    t1 = time.perf_counter()
    writes = transport.writes - writes
    assert rounds <= writes <= 2 * rounds, (writes, rounds)
    sends = [f for f in frames(transport.reset()) if f[0] == P.WS_SEND]
    assert [(f[1], f[2]) for f in sends] == [(sid, WS_MESSAGE) for sid in range(1, batch + 1)], sends[:2]
    conn.data_received(b"".join(P.encode([P.WS_DISCONNECT, sid, 1000, ""]) for sid in range(1, batch + 1)))
    while conn.streams or conn._flush_scheduled:
        await sleep0(0)
    n = rounds * batch
    return (c1 - c0) / n * 1e6, (t1 - t0) / n * 1e6, writes / n


def frames(data: bytes) -> list:
    """The frames of one write."""
    out = []
    pos = 0
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        out.append(P.decode(data[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    return out


def check_responses(data: bytes, batch: int) -> None:
    """The last round's writes hold a RESPONSE_START with the body and an END for each stream of the batch."""
    pos = 0
    starts = ends = 0
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        f = P.decode(data[pos + 4 : pos + 4 + length])
        pos += 4 + length
        if f[0] == P.RESPONSE_START:
            assert f[2] == 200 and f[5] == b"Hello, world!" and f[6] is False, f
            starts += 1
        elif f[0] == P.END:
            assert f[2] == P.OUTCOME_OK, f
            ends += 1
    assert starts == ends == batch, (starts, ends, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=["hello", "ws-echo"], default="hello")
    parser.add_argument("--requests", type=int, default=200_000, help="requests, or messages for ws-echo")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--loop", choices=["uvloop", "asyncio", "both"], default="both")
    args = parser.parse_args()
    # As the worker process does (run); PYTHON_WORKER_PURE=1 measures without the C module.
    if os.environ.get("BENCH_NO_REGISTRY_HOOK", "") in ("", "0"):
        speed_up_task_registry()
    loops = ["uvloop", "asyncio"] if args.loop == "both" else [args.loop]
    for name in loops:
        if name == "uvloop":
            try:
                import uvloop
            except ImportError:
                print("uvloop: not installed")
                continue
            factory = uvloop.new_event_loop
        else:
            factory = asyncio.new_event_loop
        run, unit = (bench, "request") if args.workload == "hello" else (bench_ws, "message")
        for batch in args.batch:
            loop = factory()
            try:
                loop.run_until_complete(run(min(args.requests, 20_000), batch))  # warm-up
                cpu, wall, writes = loop.run_until_complete(run(args.requests, batch))
            finally:
                loop.close()
            print(f"{name:8s} {args.workload} batch {batch:3d}: {cpu:6.2f} µs CPU/{unit} ({wall:6.2f} µs wall, "
                  f"{writes:.3f} writes/{unit})")


if __name__ == "__main__":
    main()
