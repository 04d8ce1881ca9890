"""The connection against an in-memory transport: at most two writes per event-loop iteration (the
first send's data at once, the rest batched), batching of many streams, pause_writing/resume_writing
backpressure, input split anywhere."""

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


def test_two_writes_for_a_batch_of_requests(loop_name: str) -> None:
    """50 requests in one read: the first response is written as its send() returns (www.rst), the
    other 49 responses and all 50 ENDs in one write at the end of the iteration."""
    async def main() -> None:
        conn, t = connect(hello_app)
        conn.data_received(b"".join(request(sid) for sid in range(1, 51)))
        await settle(conn)
        assert len(t.writes) == 2
        assert frames_of(t.writes[0]) == [(P.RESPONSE_START, 1, 200, ((b"a", b"b"),), 0, b"hi", False)]
        frames = frames_of(b"".join(t.writes))
        assert len(frames) == 100
        for sid in range(1, 51):
            mine = [f for f in frames if f[1] == sid]
            assert mine == [(P.RESPONSE_START, sid, 200, ((b"a", b"b"),), 0, b"hi", False), (P.END, sid, 0, "")]

    run(loop_name, main())


def test_send_writes_before_it_returns(loop_name: str) -> None:
    """www.rst: "Protocol servers must flush any data passed to them into the send buffer before
    returning from a send call." What the app sees right after each send() returns, without
    letting the loop run (as an app that blocks after it: CPU work, a blocking call): a streamed
    chunk, then the final body, each already written."""
    seen: List[List[tuple]] = []
    t_box: List[Transport] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        t = t_box[0]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        seen.append(frames_of(b"".join(t.writes)))
        await asyncio.sleep(0)  # a new event-loop iteration
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"two"})
        seen.append(frames_of(b"".join(t.writes)))

    async def main() -> None:
        conn, t = connect(app)
        t_box.append(t)
        conn.data_received(request(1))
        await settle(conn)
        assert seen[0] == [(P.RESPONSE_START, 1, 200, (), 0, b"one", True)]
        assert seen[1][-1] == (P.RESPONSE_BODY, 1, b"two", False)
        assert frames_of(b"".join(t.writes))[-1] == (P.END, 1, 0, "")

    run(loop_name, main())


def test_websocket_send_writes_before_it_returns(loop_name: str) -> None:
    seen: List[tuple] = []
    t_box: List[Transport] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        seen.append(frames_of(b"".join(t_box[0].writes))[-1])
        await send({"type": "websocket.send", "text": "hello"})
        seen.append(frames_of(b"".join(t_box[0].writes))[-1])
        await send({"type": "websocket.close", "code": 1000})
        seen.append(frames_of(b"".join(t_box[0].writes))[-1])

    async def main() -> None:
        conn, t = connect(app)
        t_box.append(t)
        conn.data_received(P.encode([P.WS_CONNECT, 7, "1.1", "ws", "/", b"/", b"", "", [], None, None, [], 0]))
        await settle(conn)
        assert [f[0] for f in seen] == [P.WS_ACCEPT, P.WS_SEND, P.WS_CLOSE], seen

    run(loop_name, main())


def test_hot_path_bytes_are_canonical(loop_name: str) -> None:
    """The inlined encoders of the common case write exactly the protocol module's bytes."""
    async def main() -> None:
        conn, t = connect(hello_app)
        conn.data_received(request(1) + request(300) + request(70000))
        await settle(conn)
        expected = b"".join(
            P.encode_response_start(sid, 200, [(b"a", b"b")], 0, b"hi", False) + P.encode_end(sid, 0, "")
            for sid in (1, 300, 70000)
        )
        assert b"".join(t.writes) == expected

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
