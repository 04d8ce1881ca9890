"""A fake gateway for the tests: the gateway's end of a real Unix socketpair, speaking SPEC.md frames
to a :class:`python_worker.connection.Connection` on the other end (same event loop).

With ``ring=R`` it gives the worker a body ring (SPEC §6) the way the gateway does: a memfd of
``4096 + 2R`` bytes that both sides map (:class:`GatewayRing` is the gateway's side). A
RESPONSE_BODY_RING frame read from the worker is checked, its piece copied out (and, unless
``auto_release`` is off, released), and returned with the piece as a sixth item:
``(29, sid, position, length, more_body, piece)``."""

from __future__ import annotations

import asyncio
import mmap
import os
import platform
import socket
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple

from python_worker import protocol as P
from python_worker.connection import Connection
from python_worker.ring import HEADER, Ring

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

LOOP_NAMES = ["asyncio"] + (["uvloop"] if uvloop is not None else [])


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    if name == "uvloop":
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(loop_name: str, coro: Awaitable[Any], timeout: float = 20.0) -> Any:
    """Run ``coro`` on a fresh loop of the given kind; cancel what is left afterwards."""
    loop = new_loop(loop_name)
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))
    finally:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks, timeout=2))
        loop.close()


@dataclass
class Response:
    sid: int
    frames: List[tuple] = field(default_factory=list)

    @property
    def start(self) -> Optional[tuple]:
        for f in self.frames:
            if f[0] == P.RESPONSE_START:
                return f
        return None

    @property
    def status(self) -> Optional[int]:
        s = self.start
        return None if s is None else s[2]

    @property
    def headers(self) -> List[Tuple[bytes, bytes]]:
        s = self.start
        return [] if s is None else [tuple(h) for h in s[3]]

    @property
    def body(self) -> bytes:
        out = []
        for f in self.frames:
            if f[0] == P.RESPONSE_START:
                out.append(f[5])
            elif f[0] == P.RESPONSE_BODY:
                out.append(f[2])
            elif f[0] == P.RESPONSE_BODY_RING:
                out.append(f[5])
        return b"".join(out)

    @property
    def complete(self) -> bool:
        for f in self.frames:
            if f[0] == P.RESPONSE_START and f[6] is False:
                return True
            if f[0] == P.RESPONSE_BODY and f[3] is False:
                return True
            if f[0] == P.RESPONSE_BODY_RING and f[4] is False:
                return True
        return False

    @property
    def end(self) -> Optional[tuple]:
        return self.frames[-1] if self.frames and self.frames[-1][0] == P.END else None

    @property
    def outcome(self) -> Optional[int]:
        e = self.end
        return None if e is None else e[2]

    @property
    def message(self) -> Optional[str]:
        e = self.end
        return None if e is None else e[3]

    @property
    def credits(self) -> List[int]:
        return [f[2] for f in self.frames if f[0] == P.W_CREDIT]


class GatewayRing:
    """The gateway's side of a body ring (SPEC §6): the memfd, its mapping, and the gateway's positions."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.fd = os.memfd_create("test-body-ring")
        length = HEADER + 2 * size
        os.ftruncate(self.fd, length)
        self.mm = mmap.mmap(self.fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.marks = memoryview(self.mm)[:HEADER].cast("Q")
        #: the G→W position where the next piece goes (before any skip)
        self.g2w_head = 0
        #: the end of the last W→G piece taken
        self.w2g_next = 0
        #: every W→G piece taken: (position, piece)
        self.taken: List[Tuple[int, bytes]] = []

    def worker_ring(self) -> Ring:
        """The worker's mapping of the same file (through a copy of the descriptor, which it closes)."""
        return Ring.from_fd(os.dup(self.fd))

    @property
    def g2w_released(self) -> int:
        return self.marks[0]

    @property
    def w2g_released(self) -> int:
        return self.marks[8]

    def release_w2g(self, end: int) -> None:
        self.marks[8] = end

    def put(self, body: bytes) -> Optional[int]:
        """Copy a G→W piece into the ring as the gateway does; its position, or None when full."""
        size = self.size
        head = self.g2w_head
        start = head % size
        if start + len(body) > size:
            head += size - start
            start = 0
        if head + len(body) - self.g2w_released > size:
            return None
        self.mm[HEADER + start : HEADER + start + len(body)] = body
        self.g2w_head = head + len(body)
        return head


    def take(self, position: int, length: int, limit: int) -> bytes:
        """A W→G piece, after the gateway's checks of SPEC §6 (AssertionError if one fails)."""
        size = self.size
        assert 1 <= length <= limit, (length, limit)
        assert position % size + length <= size, f"piece at {position} of {length} bytes wraps"
        assert position >= self.w2g_next, f"piece at {position} before the previous end {self.w2g_next}"
        assert position + length - self.w2g_released <= size, "piece over unreleased bytes"
        piece = self.w2g_bytes(position, length)
        self.w2g_next = position + length
        self.taken.append((position, piece))
        return piece

    def allocated(self) -> int:
        """The bytes of memory the ring file holds now (both processes' share of it, once).

        A memfd is a shmem (tmpfs) file: its ``st_blocks`` (512-byte units) counts the pages allocated
        to the file, in RAM or swapped out, whichever process touched them, and drops as soon as a hole
        is punched in it (``MADV_REMOVE``). Unlike a process's RSS (``/proc/<pid>/smaps_rollup``
        RssShmem), it depends neither on which process has touched which page through its mapping nor
        on other shared memory, and it is exact to the page."""
        return os.fstat(self.fd).st_blocks * 512

    def w2g_area(self) -> bytes:
        """The whole W→G area, read from the file (``pread``): reading a hole this way allocates no
        page, while reading it through the mapping would (a shmem read fault fills the hole)."""
        return os.pread(self.fd, self.size, HEADER + self.size)

    def w2g_bytes(self, position: int, length: int) -> bytes:
        start = HEADER + self.size + position % self.size
        return self.mm[start : start + length]

    def close(self) -> None:
        self.marks.release()
        self.mm.close()
        os.close(self.fd)


_SAME = object()


class FakeGateway:
    """``async with FakeGateway(app) as gw:`` connects a worker Connection for ``app`` and does HELLO."""

    def __init__(
        self,
        app: Callable[..., Any],
        *,
        window: int = P.DEFAULT_WINDOW,
        max_frame: int = P.DEFAULT_MAX_FRAME,
        send_hello: bool = True,
        hello_map: Optional[Dict[str, Any]] = None,
        ring: Optional[int] = None,
        hello_ring: Any = _SAME,
        auto_release: bool = True,
        ring_trim_interval: Optional[float] = None,
    ) -> None:
        """``ring``: give the worker a body ring of that many bytes per direction; ``hello_ring``: the
        HELLO's ``ring`` (default: the same size; None: no ``ring`` key); ``auto_release``: release each
        W→G piece once its frame is read (as the gateway does); ``ring_trim_interval``: the worker's
        idle-trim period (default: the Connection's)."""
        self.app = app
        self.window = window
        self.max_frame = max_frame
        self.send_hello = send_hello
        self.hello_map = hello_map
        self.ring: Optional[GatewayRing] = GatewayRing(ring) if ring is not None else None
        self.hello_ring = ring if hello_ring is _SAME else hello_ring
        self.auto_release = auto_release
        self.ring_trim_interval = ring_trim_interval
        self.pending: Dict[int, List[tuple]] = {}
        self.other: List[tuple] = []

    @property
    def max_piece(self) -> int:
        return min(self.window, self.max_frame - P.FRAME_OVERHEAD)

    async def __aenter__(self) -> "FakeGateway":
        loop = asyncio.get_running_loop()
        gsock, wsock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        worker_ring = self.ring.worker_ring() if self.ring is not None else None
        hello = P.encode_hello_worker(os.getpid(), platform.python_version(), ["ring"] if worker_ring else [])
        self.conn = Connection(self.app, hello, loop=loop, ring=worker_ring, ring_trim_interval=self.ring_trim_interval)
        await loop.connect_accepted_socket(lambda: self.conn, sock=wsock)
        self.reader, self.writer = await asyncio.open_unix_connection(sock=gsock)
        self.worker_hello = await self.read_frame()
        if self.send_hello:
            hello = self.hello_map or {
                "protocol": 1,
                "pid": os.getpid(),
                "max_frame": self.max_frame,
                "window": self.window,
                "worker_id": 0,
            }
            if self.hello_map is None and self.hello_ring is not None:
                hello["ring"] = self.hello_ring
            self.send_frame([P.HELLO, 0, hello])
            await asyncio.wait_for(asyncio.shield(self.conn.handshake), 5)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(asyncio.shield(self.conn.closed), 5)
        except asyncio.TimeoutError:  # pragma: no cover
            pass
        if self.ring is not None:
            self.ring.close()

    # -- sending -------------------------------------------------------------------------------------

    def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(frames))

    def send_frame(self, value: Sequence[Any]) -> None:
        self.send(P.encode(value))

    def request(
        self,
        sid: int,
        *,
        method: str = "GET",
        path: str = "/",
        raw_path: Optional[bytes] = None,
        query_string: bytes = b"",
        root_path: str = "",
        headers: Sequence[Tuple[bytes, bytes]] = (),
        body: bytes = b"",
        more_body: bool = False,
        flags: int = 0,
        client: Optional[Tuple[str, int]] = ("127.0.0.1", 51234),
        server: Optional[Tuple[str, Optional[int]]] = ("127.0.0.1", 8000),
        http_version: str = "1.1",
        scheme: str = "http",
        tls: Optional[Sequence[Any]] = None,
        send: bool = True,
    ) -> bytes:
        """HTTP_REQUEST; with ``tls`` (the tls item), flag TLS is set and the item appended."""
        value = [P.HTTP_REQUEST, sid, http_version, method, scheme, path,
                 raw_path if raw_path is not None else path.encode(), query_string, root_path,
                 [list(h) for h in headers], list(client) if client else None, list(server) if server else None,
                 flags, body, more_body]
        if tls is not None:
            value[12] = flags | P.FLAG_TLS
            value.append(list(tls))
        frame = P.encode(value)
        if send:
            self.send(frame)
        return frame

    def ws_connect(
        self,
        sid: int,
        *,
        path: str = "/ws",
        query_string: bytes = b"",
        headers: Sequence[Tuple[bytes, bytes]] = (),
        subprotocols: Sequence[str] = (),
        client: Optional[Tuple[str, int]] = ("127.0.0.1", 51234),
        server: Optional[Tuple[str, Optional[int]]] = ("127.0.0.1", 8000),
        scheme: str = "ws",
        tls: Optional[Sequence[Any]] = None,
    ) -> None:
        """WS_CONNECT; with ``tls`` (the tls item), flag TLS is set and the item appended."""
        value = [P.WS_CONNECT, sid, "1.1", scheme, path, path.encode(), query_string, "",
                 [list(h) for h in headers], list(client) if client else None,
                 list(server) if server else None, list(subprotocols), 0]
        if tls is not None:
            value[12] = P.FLAG_TLS
            value.append(list(tls))
        self.send_frame(value)

    def ws_receive(self, sid: int, data: Any) -> None:
        self.send_frame([P.WS_RECEIVE, sid, data])

    def ws_disconnect(self, sid: int, code: int = 1000, reason: str = "") -> None:
        self.send_frame([P.WS_DISCONNECT, sid, code, reason])

    def shutdown(self, grace_ms: int) -> None:
        self.send_frame([P.SHUTDOWN, 0, grace_ms])

    def body(self, sid: int, body: bytes, more_body: bool) -> None:
        self.send_frame([P.REQUEST_BODY, sid, body, more_body])

    def ring_body(self, sid: int, body: bytes, more_body: bool) -> Optional[int]:
        """REQUEST_BODY_RING with ``body`` put into the ring; its position, or None (nothing sent) when
        the ring is full."""
        assert self.ring is not None
        position = self.ring.put(body)
        if position is not None:
            self.ring_frame(sid, position, len(body), more_body)
        return position

    def ring_frame(self, sid: int, position: int, length: int, more_body: bool) -> None:
        """A REQUEST_BODY_RING frame as given (no ring write, no checks)."""
        self.send_frame([P.REQUEST_BODY_RING, sid, position, length, more_body])

    def credit(self, sid: int, increment: int) -> None:
        self.send_frame([P.CREDIT, sid, increment])

    def disconnect(self, sid: int) -> None:
        self.send_frame([P.DISCONNECT, sid])

    def ping(self, token: int) -> None:
        self.send_frame([P.PING, 0, token])

    # -- receiving -----------------------------------------------------------------------------------

    async def read_frame(self, timeout: float = 5.0) -> tuple:
        async def read() -> tuple:
            hdr = await self.reader.readexactly(4)
            length = int.from_bytes(hdr, "big")
            assert 1 <= length <= self.max_frame, length
            f = P.decode(await self.reader.readexactly(length))
            if f[0] == P.RESPONSE_BODY_RING:
                ring = self.ring
                assert ring is not None and self.hello_ring == ring.size, "RESPONSE_BODY_RING without a ring"
                piece = ring.take(f[2], f[3], self.max_piece)
                if self.auto_release:
                    ring.release_w2g(f[2] + f[3])
                f = f + (piece,)
            return f

        return await asyncio.wait_for(read(), timeout)

    async def next_frame(self, sid: int, timeout: float = 5.0) -> tuple:
        """The next frame for ``sid`` (frames of other streams are kept for later)."""
        queue = self.pending.setdefault(sid, [])
        while not queue:
            f = await self.read_frame(timeout)
            if f[1] == 0:
                self.other.append(f)
            else:
                self.pending.setdefault(f[1], []).append(f)
        return queue.pop(0)

    async def response(self, sid: int, timeout: float = 5.0) -> Response:
        """All frames of ``sid`` up to and including its END."""
        r = Response(sid)
        while True:
            f = await self.next_frame(sid, timeout)
            r.frames.append(f)
            if f[0] == P.END:
                return r

    async def expect_silence(self, timeout: float = 0.2) -> None:
        """Assert that the worker sends nothing for ``timeout`` seconds."""
        try:
            f = await asyncio.wait_for(self.reader.readexactly(4), timeout)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected frame from the worker: prefix {f!r}")

    async def expect_eof(self, timeout: float = 5.0) -> None:
        data = await asyncio.wait_for(self.reader.read(), timeout)
        assert self.reader.at_eof()
        del data
