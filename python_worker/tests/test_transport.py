"""The connection against an in-memory transport: one write per event-loop iteration, batching of
many streams, pause_writing/resume_writing backpressure, input split anywhere."""

from __future__ import annotations

import asyncio
import os
from typing import Any, List

from gateway_fake import run
from python_worker import protocol as P
from python_worker.connection import Connection


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: List[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def frames_of(data: bytes) -> List[tuple]:
    out = []
    pos = 0
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        out.append(P.decode(data[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    return out


def connect(app: Any, window: int = P.DEFAULT_WINDOW) -> tuple:
    loop = asyncio.get_running_loop()
    conn = Connection(app, P.encode_hello_worker(os.getpid(), "x"), loop=loop)
    t = Transport()
    conn.connection_made(t)
    assert frames_of(t.writes.pop(0))[0][0] == P.W_HELLO
    conn.data_received(P.encode([P.HELLO, 0, {"protocol": 1, "pid": 1, "max_frame": 1 << 20, "window": window}]))
    return conn, t


def request(sid: int, body: bytes = b"", more_body: bool = False) -> bytes:
    return P.encode([P.HTTP_REQUEST, sid, "1.1", "GET", "http", "/", b"/", b"", "", [], None, None, 0, body, more_body])


async def hello_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"b")]})
    await send({"type": "http.response.body", "body": b"hi"})


async def settle(conn: Connection) -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_one_write_for_a_batch_of_requests(loop_name: str) -> None:
    async def main() -> None:
        conn, t = connect(hello_app)
        conn.data_received(b"".join(request(sid) for sid in range(1, 51)))
        await settle(conn)
        assert len(t.writes) == 1
        frames = frames_of(t.writes[0])
        assert len(frames) == 100
        for sid in range(1, 51):
            mine = [f for f in frames if f[1] == sid]
            assert mine == [(P.RESPONSE_START, sid, 200, ((b"a", b"b"),), 0, b"hi", False), (P.END, sid, 0, "")]

    run(loop_name, main())


def test_hot_path_bytes_are_canonical(loop_name: str) -> None:
    """The inlined encoders of the common case write exactly the protocol module's bytes."""
    async def main() -> None:
        conn, t = connect(hello_app)
        conn.data_received(request(1) + request(300) + request(70000))
        await settle(conn)
        assert len(t.writes) == 1
        expected = b"".join(
            P.encode_response_start(sid, 200, [(b"a", b"b")], 0, b"hi", False) + P.encode_end(sid, 0, "")
            for sid in (1, 300, 70000)
        )
        assert t.writes[0] == expected

    run(loop_name, main())


def test_input_split_at_every_offset(loop_name: str) -> None:
    async def main() -> None:
        data = request(1, b"x" * 3000, True) + P.encode([P.REQUEST_BODY, 1, b"y" * 10, False]) + request(2)
        for cut in range(1, len(data)):
            conn, t = connect(hello_app)
            conn.data_received(data[:cut])
            conn.data_received(data[cut:])
            await settle(conn)
            frames = frames_of(b"".join(t.writes))
            assert sorted(f[1] for f in frames if f[0] == P.END) == [1, 2], cut
            assert conn.error is None

    run(loop_name, main())


def test_ping_answered_inside_data_received(loop_name: str) -> None:
    async def main() -> None:
        conn, t = connect(hello_app)
        conn.data_received(P.encode([P.PING, 0, 77]))
        assert frames_of(t.writes[-1]) == [(P.PONG, 0, 77)]  # before the loop ran again

    run(loop_name, main())


def test_pause_writing_blocks_send_until_resume(loop_name: str) -> None:
    progress: List[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"%d" % i, "more_body": True})
            progress.append(i)
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        conn, t = connect(app)
        conn.pause_writing()
        conn.data_received(request(1))
        await settle(conn)
        assert progress == []  # the body send waits for resume_writing
        conn.resume_writing()
        await settle(conn)
        assert progress == [0, 1, 2]
        frames = frames_of(b"".join(t.writes))
        assert frames[-1] == (P.END, 1, 0, "")

    run(loop_name, main())


def test_connection_lost_while_paused_wakes_senders(loop_name: str) -> None:
    result: List[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        try:
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            await send({"type": "http.response.body", "body": b"y", "more_body": True})
        except asyncio.CancelledError:
            result.append("cancelled")
            raise
        except OSError:
            result.append("disconnected")

    async def main() -> None:
        conn, t = connect(app)
        conn.pause_writing()
        conn.data_received(request(1))
        await settle(conn)
        conn.connection_lost(None)
        await settle(conn)
        assert conn.streams == {}
        assert conn.closed.done()

    run(loop_name, main())
    assert result in (["cancelled"], ["disconnected"])
