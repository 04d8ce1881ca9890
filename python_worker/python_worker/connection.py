"""The worker's side of the gateway connection: an ``asyncio.Protocol`` on the Unix stream socket.

This module owns the connection (stream 0 and the stream table), not the ASGI calls: it cuts the byte
stream into length-prefixed frames (SPEC §1, with the hard frame limit checked before a payload is
buffered), decodes and dispatches them (the HELLO handshake; HTTP_REQUEST opens a
:class:`~python_worker.cycle.RequestCycle` and WS_CONNECT a
:class:`~python_worker.websocket.WebSocketCycle`; REQUEST_BODY, CREDIT, DISCONNECT, WS_RECEIVE and
WS_DISCONNECT and CANCEL go to their stream; a REQUEST_BODY_RING piece is taken out of the body ring
and released, then goes to its stream as a REQUEST_BODY would; PING is answered with PONG at once;
SHUTDOWN drains), batches the outgoing frames of one event-loop iteration into one
``transport.write`` (the cycles append to ``_out``; one ``loop.call_soon`` flush) but for the first
stream to send data in the iteration, whose send()s write at once (``flush_sent``: www.rst has a
send() flush before it returns), honours the
transport's ``pause_writing``/``resume_writing``, closes on a protocol error and drains on shutdown
(SIGTERM or SHUTDOWN).

The body ring (SPEC §6, :mod:`python_worker.ring`) is in use when the worker mapped one (and said so
in its HELLO's ``features``) and the gateway's HELLO has ``ring`` of the same size: ``ring`` is then
the :class:`~python_worker.ring.Ring`, which the cycles use for large response-body pieces. While it
is, a timer (``loop.call_later``, every :data:`RING_TRIM_INTERVAL` seconds: one callback, no task)
calls :meth:`~python_worker.ring.Ring.trim_if_idle`, so that an idle ring gives the pages of its W→G
area back to the system; the timer goes when the ring does (connection lost, or the gateway has none).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from typing import Any, Awaitable, Callable, Deque, Dict, List, Optional, Tuple, Union

from .cycle import RequestCycle, bind_cycle, open_requests_fast
from .protocol import (
    CANCEL,
    SHUTDOWN,
    WS_CONNECT,
    WS_DISCONNECT,
    WS_RECEIVE,
    CREDIT,
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
    DISCONNECT,
    FRAME_NAMES,
    FRAME_OVERHEAD,
    HELLO,
    HTTP_REQUEST,
    OUTCOME_APP_ERROR,
    PING,
    PROTOCOL_VERSION,
    REQUEST_BODY,
    REQUEST_BODY_RING,
    ProtocolError,
    decode_fast,
    decode_py,
    encode_end,
    encode_pong,
)
from .ring import Ring
from .websocket import WebSocketCycle

__all__ = ["Connection", "RING_TRIM_INTERVAL"]

logger = logging.getLogger("python_worker.connection")

_unpack_u32_from = struct.Struct(">I").unpack_from
_Task = asyncio.Task

# Payloads at least this big are decoded from a memoryview of the read buffer instead of a copy.
_VIEW_THRESHOLD = 2048

SHUTDOWN_MESSAGE = "the worker is shutting down"

#: seconds between two idle checks of the body ring (Ring.trim_if_idle): an idle ring's response area
#: is given back between one and two intervals after its last piece was released
RING_TRIM_INTERVAL = 1.0

#: seconds without a frame from the gateway after which the response-body pieces waiting for room
#: in a full body ring give up and go inline. The gateway releases pieces as soon as it has read
#: their frames and written their bytes, so waits normally end much sooner (on one core, the
#: worker's whole loop iteration of pieces may not fit in the ring, and the gateway runs when the
#: worker's time slice ends); each frame that comes starts the period again. Giving up is for a
#: gateway that stopped releasing: a piece sent inline costs both processes a copy more.
RING_WAIT = 0.1

#: seconds between two looks at the gateway's release mark while pieces wait for room: the gateway
#: sends no frame when it releases (SPEC §6), so a wait that no frame ends is ended by a look.
RING_POLL = 0.005


class Connection(asyncio.Protocol):
    """One worker's connection to the gateway, multiplexing many request streams."""

    __slots__ = (
        "app",
        "loop",
        "state",
        "transport",
        "streams",
        "max_frame",
        "window",
        "half_window",
        "max_piece",
        "worker_id",
        "server_cert",
        "ring",
        "_mapped_ring",
        "_ring_trim_interval",
        "_ring_trim_timer",
        "_ring_waiters",
        "_ring_tickets",
        "_ring_wait_timer",
        "_ring_deadline",
        "error",
        "closed",
        "handshake",
        "_hello",
        "_hello_received",
        "_out",
        "_placeholders",
        "_big_parts",
        "_flush_scheduled",
        "_wrote_early",
        "_rbuf",
        "_rbuf_len",
        "_need",
        "_write_paused",
        "_drain_waiter",
        "_closed",
        "_shutting_down",
        "before_close",
    )

    def __init__(
        self,
        app: Any,
        hello: bytes,
        *,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        state: Optional[Dict[str, Any]] = None,
        ring: Optional[Ring] = None,
        ring_trim_interval: Optional[float] = None,
    ) -> None:
        """``ring``: the body ring the worker mapped; ``ring_trim_interval``: seconds between its idle
        checks (default :data:`RING_TRIM_INTERVAL`; 0: never trimmed)."""
        self.app = app
        self.loop = loop or asyncio.get_event_loop()
        self.state: Dict[str, Any] = state if state is not None else {}
        self.transport: Optional[asyncio.Transport] = None
        self.streams: Dict[int, RequestCycle] = {}
        self.max_frame = DEFAULT_MAX_FRAME
        self.window = DEFAULT_WINDOW
        self.half_window = (DEFAULT_WINDOW + 1) // 2
        self.max_piece = min(DEFAULT_WINDOW, DEFAULT_MAX_FRAME - FRAME_OVERHEAD)
        self.worker_id: Optional[int] = None
        #: PEM of the gateway's TLS certificate (HELLO ``server_cert``), for the scopes' TLS extension
        self.server_cert: Optional[str] = None
        #: the body ring, once both HELLOs said so (SPEC §6); None: every body goes inline
        self.ring: Optional[Ring] = None
        # the ring the worker mapped (its HELLO has the feature "ring"), in use or not
        self._mapped_ring = ring
        self._ring_trim_interval = RING_TRIM_INTERVAL if ring_trim_interval is None else ring_trim_interval
        self._ring_trim_timer: Optional[asyncio.TimerHandle] = None
        # Pieces waiting for room in the full ring (wait_ring_room), first come first served, in
        # order: (ticket, future, length); tickets count up. While there are any, a timer looks at
        # the release mark every RING_POLL, and they give up at the deadline (loop time: RING_WAIT
        # after the last frame from the gateway, or after the first of them began to wait).
        self._ring_waiters: Deque[Tuple[int, asyncio.Future, int]] = deque()
        self._ring_tickets = 0
        self._ring_wait_timer: Optional[asyncio.TimerHandle] = None
        self._ring_deadline = 0.0
        #: why the connection was closed by us (a protocol error), or None
        self.error: Optional[str] = None
        #: resolved when the connection is lost (result: the exception or None)
        self.closed: asyncio.Future = self.loop.create_future()
        #: resolved with the gateway's HELLO map
        self.handshake: asyncio.Future = self.loop.create_future()
        self._hello = hello
        self._hello_received = False
        self._out: List[Union[bytes, memoryview, RequestCycle]] = []
        self._placeholders = 0
        self._big_parts = False
        self._flush_scheduled = False
        #: the stream whose send()s write at once in this event-loop iteration (flush_sent)
        self._wrote_early: Optional[object] = None
        self._rbuf: List[bytes] = []
        self._rbuf_len = 0
        self._need = 4
        self._write_paused = False
        self._drain_waiter: Optional[asyncio.Future] = None
        self._closed = False
        self._shutting_down = False
        #: awaited by :meth:`shutdown` after the streams and before closing (the lifespan shutdown)
        self.before_close: Optional[Callable[[], Awaitable[None]]] = None

    # -----------------------------------------------------------------------------------------------
    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._hello)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        if self._rbuf:
            self._rbuf.append(data)
            self._rbuf_len += len(data)
            if self._rbuf_len < self._need:
                return
            data = b"".join(self._rbuf)
            self._rbuf.clear()
            self._rbuf_len = 0
        n = len(data)
        pos = 0
        max_frame = self.max_frame
        streams = self.streams
        view: Optional[memoryview] = None
        loop = self.loop
        # With no task factory set, loop.create_task(coro) is Task(coro, loop=loop): called directly,
        # without the loop method's own layer (about 0.2 µs a request).
        plain_tasks = loop.get_task_factory() is None
        fast = decode_fast
        open_requests = open_requests_fast
        task_type = _Task if plain_tasks else None
        opened = False
        try:
            while True:
                if open_requests is not None:
                    # A run of HTTP_REQUEST frames is opened in C, as below; it stops at the first frame
                    # that is another or needs the Python code.
                    at = open_requests(self, data, pos, task_type)
                    if at != pos:
                        pos = at
                        opened = True
                        continue
                if n - pos < 4:
                    self._need = 4
                    break
                (length,) = _unpack_u32_from(data, pos)
                if length == 0 or length > max_frame:
                    raise ProtocolError(f"frame length {length} is outside 1..{max_frame}")
                end = pos + 4 + length
                if end > n:
                    self._need = end - pos
                    break
                # The C decoder reads the payload in place; what it leaves (None) is decoded in Python.
                f = fast(data, pos + 4, end) if fast is not None else None
                if f is None:
                    if length < _VIEW_THRESHOLD:
                        f = decode_py(data[pos + 4 : end])
                    else:
                        if view is None:
                            view = memoryview(data)
                        f = decode_py(view[pos + 4 : end])
                pos = end
                t = f[0]
                if not self._hello_received and t != HELLO:
                    raise ProtocolError(f"{FRAME_NAMES[t]} before the gateway's HELLO")
                if t == HTTP_REQUEST or t == WS_CONNECT:  # a new stream
                    sid = f[1]
                    if sid in streams:
                        raise ProtocolError(f"{FRAME_NAMES[t]} for stream {sid}, which is open")
                    if self._shutting_down:
                        self._refuse(sid)
                        continue
                    new = RequestCycle(self, f) if t == HTTP_REQUEST else WebSocketCycle(self, f)
                    streams[sid] = new
                    coro = new.run()
                    new.task = _Task(coro, loop=loop) if plain_tasks else loop.create_task(coro)
                    opened = True
                elif t == WS_RECEIVE:
                    cycle = streams.get(f[1])
                    if cycle is not None:
                        if type(cycle) is not WebSocketCycle:
                            raise ProtocolError(f"WS_RECEIVE for stream {f[1]}, which is not a WebSocket")
                        cycle.on_ws_receive(f[2])
                elif t == REQUEST_BODY:
                    cycle = streams.get(f[1])
                    if cycle is not None:  # else: the stream has ended; the body is dropped
                        cycle.on_body(f[2], f[3])
                elif t == REQUEST_BODY_RING:
                    ring = self.ring
                    if ring is None:
                        raise ProtocolError("REQUEST_BODY_RING, but the connection does not use a body ring")
                    # Taken and released even if the stream has ended (the body is dropped then).
                    body = ring.take(f[2], f[3], self.max_piece)
                    cycle = streams.get(f[1])
                    if cycle is not None:
                        cycle.on_body(body, f[4])
                elif t == CREDIT:
                    cycle = streams.get(f[1])
                    if cycle is not None:
                        cycle.on_credit(f[2])
                elif t == DISCONNECT:
                    cycle = streams.get(f[1])
                    if cycle is not None:
                        cycle.on_disconnect()
                elif t == PING:
                    self.transport.write(encode_pong(f[2]))  # type: ignore[union-attr]
                elif t == WS_DISCONNECT:
                    cycle = streams.get(f[1])
                    if cycle is not None:
                        if type(cycle) is not WebSocketCycle:
                            raise ProtocolError(f"WS_DISCONNECT for stream {f[1]}, which is not a WebSocket")
                        cycle.on_ws_disconnect(f[2], f[3])
                elif t == CANCEL:
                    cycle = streams.get(f[1])
                    if cycle is not None:  # else: the stream has ended; CANCEL is dropped (SPEC)
                        cycle.on_cancel()
                elif t == SHUTDOWN:
                    self._on_shutdown_frame(f[2])
                elif t == HELLO:
                    self._on_hello(f[2])
                    max_frame = self.max_frame
                else:
                    raise ProtocolError(
                        f"received {FRAME_NAMES[t]} (0x{t:02x}), a frame that goes from the worker to the gateway"
                    )
        except ProtocolError as exc:
            self._protocol_error(str(exc))
            return
        finally:
            if view is not None:
                view.release()
        if pos < n:
            rest = data[pos:]
            self._rbuf.append(rest)
            self._rbuf_len = len(rest)
        if self._ring_waiters:
            self._ring_progress()  # the gateway may have released room
        if opened:
            # A flush scheduled after the new tasks' first steps (even if an earlier one is pending,
            # which would run before them): what they send in that step, often the whole response
            # and END, goes out in the same event-loop iteration, in one write (after the first
            # stream's, written at once: flush_sent).
            self._schedule_flush()

    def eof_received(self) -> Optional[bool]:
        logger.debug("the gateway closed the connection")
        return None  # close the transport

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._closed = True
        self._out.clear()
        self._placeholders = 0
        self._close_ring()
        self._write_paused = False
        w = self._drain_waiter
        if w is not None:
            self._drain_waiter = None
            if not w.done():
                w.set_result(None)
        for cycle in list(self.streams.values()):
            cycle.abort("the connection to the gateway was lost", disconnected=True)
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError("the gateway closed the connection before its HELLO"))
            self.handshake.exception()  # retrieved: no "never retrieved" warning when nobody waits
        if not self.closed.done():
            self.closed.set_result(exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        w = self._drain_waiter
        if w is not None:
            self._drain_waiter = None
            if not w.done():
                w.set_result(None)

    # -----------------------------------------------------------------------------------------------
    # Output

    def _schedule_flush(self) -> None:
        self._flush_scheduled = True
        self.loop.call_soon(self._flush)

    def flush_sent(self, stream: object) -> None:
        """A send() of ``stream`` has queued data for the client. www.rst: "Protocol servers must
        flush any data passed to them into the send buffer before returning from a send call": an
        app that blocks its event loop after a send (CPU work, a blocking call, a background task)
        must not hold back what it sent. The first stream to send in an event-loop iteration writes
        at once, with whatever else is queued, and so do its further sends in that iteration; the
        other streams' sends of the iteration go with the flush at its end, so that a busy
        connection still writes about twice per iteration, not once per send."""
        early = self._wrote_early
        if early is not None and early is not stream:
            if not self._flush_scheduled:
                self._schedule_flush()
            return
        self._wrote_early = stream
        self._write_out()
        if not self._flush_scheduled:
            self._schedule_flush()  # (which ends the iteration's early writes)

    def _flush(self) -> None:
        """Write everything queued in this event-loop iteration with one ``transport.write``."""
        self._flush_scheduled = False
        self._wrote_early = None
        self._write_out()

    def _write_out(self) -> None:
        out = self._out
        if not out:
            return
        if self._placeholders:
            for i, item in enumerate(out):
                if isinstance(item, RequestCycle):
                    out[i] = item.start_only_frame(True)  # (before the app's first body)
            self._placeholders = 0
        if self._closed:
            out.clear()
            return
        if self._big_parts:
            # Large bodies are separate items: let the transport gather them (uvloop: writev)
            # instead of copying them into one buffer here.
            self._big_parts = False
            # (the placeholders are all frames now)
            self.transport.writelines(out)  # type: ignore[union-attr, arg-type]
            out.clear()
            return
        data = out[0] if len(out) == 1 else b"".join(out)  # type: ignore[arg-type]
        out.clear()
        self.transport.write(data)  # type: ignore[union-attr, arg-type]

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark."""
        if not self._write_paused or self._closed:
            return
        w = self._drain_waiter
        if w is None:
            w = self._drain_waiter = self.loop.create_future()
        await asyncio.shield(w)

    def _refuse(self, sid: int) -> None:
        self._out.append(encode_end(sid, OUTCOME_APP_ERROR, SHUTDOWN_MESSAGE))
        if not self._flush_scheduled:
            self._schedule_flush()

    # -----------------------------------------------------------------------------------------------
    # Connection frames, errors, shutdown

    def _on_hello(self, hello: Dict[str, Any]) -> None:
        if self._hello_received:
            raise ProtocolError("a second HELLO")
        protocol = hello["protocol"]
        if protocol != PROTOCOL_VERSION:
            raise ProtocolError(
                f"the gateway speaks protocol version {protocol}, this worker speaks version {PROTOCOL_VERSION}"
            )
        max_frame = hello.get("max_frame", DEFAULT_MAX_FRAME)
        window = hello.get("window", DEFAULT_WINDOW)
        if max_frame <= FRAME_OVERHEAD or max_frame > 0xFFFFFFFF:
            raise ProtocolError(f"HELLO max_frame {max_frame} is outside {FRAME_OVERHEAD + 1}..{0xFFFFFFFF}")
        if window < 1:
            raise ProtocolError("HELLO window is 0")
        self.max_frame = max_frame
        self.window = window
        self.half_window = (window + 1) // 2
        self.max_piece = min(window, max_frame - FRAME_OVERHEAD)
        ring_size = hello.get("ring")
        mapped = self._mapped_ring
        if mapped is not None:
            if ring_size is None:
                logger.info("the gateway's HELLO has no body ring: bodies go inline")
                self._close_ring()
            elif ring_size != mapped.size:
                raise ProtocolError(
                    f"HELLO ring {ring_size} is not the size of the body ring this worker was given "
                    f"({mapped.size} bytes per direction)")
            else:
                self.ring = mapped
                if self._ring_trim_interval > 0 and mapped.can_trim:
                    self._ring_trim_timer = self.loop.call_later(self._ring_trim_interval, self._ring_trim_tick)
        self.worker_id = hello.get("worker_id")
        self.server_cert = hello.get("server_cert")
        self._hello_received = True
        if not self.handshake.done():
            self.handshake.set_result(hello)

    def _ring_trim_tick(self) -> None:
        """The body ring's idle check (a ``call_later`` callback), then the next one."""
        ring = self.ring
        if ring is None or self._closed:
            self._ring_trim_timer = None
            return
        if ring.trim_if_idle():
            logger.debug("body ring idle: the response area's pages were given back")
        if ring.can_trim:
            self._ring_trim_timer = self.loop.call_later(self._ring_trim_interval, self._ring_trim_tick)
        else:  # madvise failed (logged by the ring): no more checks
            self._ring_trim_timer = None

    async def wait_ring_room(self, length: int) -> None:
        """Wait for room in the body ring for a response piece of ``length`` bytes: until the
        gateway (which releases pieces once it has read their frames) has made room for it, as seen
        when a frame comes from it or at a look every RING_POLL, or RING_WAIT has passed without a
        frame. The caller then puts the piece, or sends it inline if there is still no room. The
        frames queued so far go out first.

        Waiting pieces are woken in order, as many as the released room holds. A cycle that has put
        a piece of its response in the ring puts its next pieces without waiting when they fit: a
        stream's consecutive pieces then reach the gateway together, which writes them to the client
        in one call. A woken piece whose room was taken that way waits again, in its place (before
        every piece that began to wait after it). A response's first ring piece waits behind the waiting ones even if it would fit: new
        responses do not starve the waiting ones."""
        ring = self.ring
        if ring is None or length > ring.size:
            return  # it never fits: inline
        ticket = self._ring_tickets
        self._ring_tickets = ticket + 1
        again = False
        while True:
            w = self.loop.create_future()
            waiters = self._ring_waiters
            if again:  # back in its place: before every piece that began to wait after it
                i = 0
                for i, (t, _, _) in enumerate(waiters):
                    if t > ticket:
                        break
                else:
                    i = len(waiters)
                waiters.insert(i, (ticket, w, length))
            else:
                waiters.append((ticket, w, length))
            if self._ring_wait_timer is None:  # the first waiting piece
                self._ring_deadline = self.loop.time() + RING_WAIT
                self._ring_wait_timer = self.loop.call_later(min(RING_POLL, RING_WAIT), self._ring_look)
            if self._out and not self._flush_scheduled:
                self._schedule_flush()
            if not await w or self.ring is None or self.ring.fits(length):
                return  # given up, the ring is closed, or there is room
            again = True

    def _ring_progress(self) -> None:
        """Frames came from the gateway: wake the waiting pieces, in order, that the room it has
        released so far holds, and give the others RING_WAIT again."""
        self._ring_deadline = self.loop.time() + RING_WAIT
        self._wake_fitting()

    def _ring_look(self) -> None:
        """RING_POLL has passed with pieces waiting: wake those the released room holds now, or all
        of them (to go inline) once RING_WAIT has passed without a frame."""
        self._ring_wait_timer = None
        if self.loop.time() >= self._ring_deadline:
            self._wake_ring_waiters()
        else:
            self._wake_fitting()

    def _wake_fitting(self) -> None:
        """Wake the waiting pieces, in order, that the room released so far holds; keep the timer
        of the others' looks (RING_POLL, or to their deadline if sooner) going."""
        ring = self.ring
        if ring is None:
            self._wake_ring_waiters()
            return
        waiters = self._ring_waiters
        head = ring.w2g_head
        while waiters:
            _, w, length = waiters[0]
            if not w.done():  # (a cancelled cycle's piece takes no room)
                position = ring.place_after(head, length)
                if position < 0:
                    break
                head = position + length
                w.set_result(True)
            waiters.popleft()
        timer = self._ring_wait_timer
        if not waiters:
            if timer is not None:
                self._ring_wait_timer = None
                timer.cancel()
        elif timer is None:
            delay = min(RING_POLL, self._ring_deadline - self.loop.time())
            self._ring_wait_timer = self.loop.call_later(max(delay, 0.0), self._ring_look)

    def _wake_ring_waiters(self) -> None:
        """Wake every waiting piece (RING_WAIT passed without a frame, or the ring is closed): each
        goes into the ring if it fits by then, else inline."""
        timer = self._ring_wait_timer
        if timer is not None:
            self._ring_wait_timer = None
            timer.cancel()
        waiters = self._ring_waiters
        self._ring_waiters = deque()
        for _, w, _ in waiters:
            if not w.done():
                w.set_result(False)

    def _close_ring(self) -> None:
        """Stop using the body ring and unmap it (the connection has ended, or the gateway has no ring)."""
        self._wake_ring_waiters()
        timer = self._ring_trim_timer
        if timer is not None:
            self._ring_trim_timer = None
            timer.cancel()
        ring = self._mapped_ring
        self.ring = self._mapped_ring = None
        if ring is not None:
            ring.close()

    def _protocol_error(self, message: str) -> None:
        if self._closed:
            return
        logger.error("protocol error: %s; closing the connection to the gateway", message)
        self.error = message
        self._flush()
        self._closed = True  # no more input handled; connection_lost follows
        transport = self.transport
        if transport is not None:
            transport.close()

    def _on_shutdown_frame(self, grace_ms: int) -> None:
        logger.info("SHUTDOWN from the gateway: finishing running requests (up to %gs)", grace_ms / 1000)
        self.loop.create_task(self.shutdown(grace_ms / 1000))

    async def shutdown(self, timeout: float = 10.0) -> None:
        """SIGTERM or SHUTDOWN: open no new streams, give the running ones ``timeout`` seconds, run
        the ``before_close`` hook (the lifespan shutdown), then close."""
        if self._shutting_down:
            return
        self._shutting_down = True
        tasks = [c.task for c in self.streams.values() if c.task is not None]
        if tasks:
            logger.info("shutting down: waiting for %d running request(s)", len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                logger.warning("shutting down: cancelling %d request(s) still running after %gs", len(pending), timeout)
                for cycle in list(self.streams.values()):
                    cycle.abort("the worker shut down before the app finished", disconnected=False)
                await asyncio.wait(pending, timeout=1.0)
        if self.before_close is not None:
            try:
                await self.before_close()
            except Exception:  # pragma: no cover - the hook logs its own errors
                logger.exception("error while shutting down")
        self.close()
        await self.closed

    def close(self) -> None:
        """Flush what is queued and close the connection."""
        if self.transport is None:
            if not self.closed.done():
                self.closed.set_result(None)
            return
        if not self._closed:
            self._flush()
            self.transport.close()


bind_cycle(Connection)
