"""One HTTP request/response cycle: a stream of the worker protocol seen as one ASGI ``http`` call.

This module owns what happens between one HTTP_REQUEST frame and the END frame of its stream: the
scope, the app's task, the ASGI ``receive``/``send`` callables (asgiref ``specs/www.rst``, spec version
2.5), both body windows of the stream (SPEC §4) and the END outcome. It does not read or write the
socket: it appends frames to its connection's output list (``conn._out``) and asks the connection to
flush once per event-loop iteration (the split of uvicorn's ``httptools_impl``: ``connection.py`` is
the protocol, this is the per-request cycle).

Coalescing: ``http.response.start`` does not produce a frame at once. It puts the cycle itself into the
connection's output list as a placeholder; if the app's first ``http.response.body`` comes before the
flush, the placeholder becomes one RESPONSE_START frame carrying the body, otherwise the flush turns it
into a RESPONSE_START with ``body=b""`` and ``more_body=True`` (SPEC §3). The placeholder keeps the
frame's place, so the frames of a stream always go out in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Optional, Tuple

from .protocol import (
    FLAG_EXPECT_CONTINUE,
    FLAG_TRAILERS,
    OUTCOME_APP_ERROR,
    OUTCOME_NO_RESPONSE,
    OUTCOME_OK,
    ProtocolError,
    encode_credit,
    encode_end,
    pack_uint,
    response_body_parts,
    response_start_head,
    response_start_parts,
)

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection
    from .types import ASGI3Application

__all__ = ["ClientDisconnected", "RequestCycle"]

logger = logging.getLogger("python_worker.app")

_CancelledError = asyncio.CancelledError

# Largest body piece (in bytes) emitted without going through the slow, splitting path.
_START_SLACK = 6  # bin32 header (5) + more_body (1) after a RESPONSE_START head


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the client has gone away (ASGI spec 2.4: an ``OSError`` subclass)."""


def _caused_by_disconnect(exc: BaseException) -> bool:
    """True if ``exc`` is, or was raised while handling, our :class:`ClientDisconnected`."""
    seen = 0
    e: Optional[BaseException] = exc
    while e is not None and seen < 16:
        if isinstance(e, ClientDisconnected):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False


class RequestCycle:
    """The ASGI side of one stream: scope, app task, ``receive``/``send`` and the stream's windows."""

    __slots__ = (
        "conn",
        "sid",
        "sid_enc",
        "scope",
        "task",
        "flags",
        # request body
        "_body",
        "_more_body",
        "_first_pending",
        "_chunks",
        "_req_done",
        "_req_window",
        "_ungranted",
        "_waiter",
        # response
        "_send_window",
        "_started",
        "_complete",
        "_start_head",
        "_start_index",
        "_credit_waiter",
        # state
        "disconnected",
        "_error",
        "_cancel_reason",
    )

    def __init__(self, conn: "Connection", f: tuple) -> None:
        # f: a validated HTTP_REQUEST frame (protocol.decode).
        (_, sid, http_version, method, scheme, path, raw_path, query_string, root_path, headers,
         client, server, flags, body, more_body) = f
        self.conn = conn
        self.sid = sid
        self.sid_enc = pack_uint(sid)
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.5"},
            "http_version": http_version,
            "server": server,
            "client": client,
            "scheme": scheme,
            "method": method,
            "root_path": root_path,
            "path": path,
            "raw_path": raw_path,
            "query_string": query_string,
            "headers": list(headers),
            "state": conn.state.copy(),
            "extensions": {},
        }
        self.task: Optional[asyncio.Task] = None
        self.flags = flags
        window = conn.window
        if flags & FLAG_EXPECT_CONTINUE:
            window = 0
        window -= len(body)
        if window < 0:
            raise ProtocolError(f"HTTP_REQUEST for stream {sid} carries more body than the window allows")
        self._req_window = window
        self._body = body
        self._more_body = more_body
        self._first_pending = True
        self._chunks: Optional[Deque[Tuple[bytes, bool]]] = None
        self._req_done = not more_body
        self._ungranted = 0
        self._waiter: Optional[asyncio.Future] = None
        self._send_window = conn.window
        self._started = False
        self._complete = False
        self._start_head = b""
        self._start_index: Optional[int] = None
        self._credit_waiter: Optional[asyncio.Future] = None
        self.disconnected = False
        self._error: Optional[BaseException] = None
        self._cancel_reason: Optional[str] = None

    # -----------------------------------------------------------------------------------------------
    # The app's task

    async def run(self) -> None:
        """The stream's task: runs the app, then sends END (always the stream's last frame)."""
        try:
            result = await self.conn.app(self.scope, self.receive, self.send)
        except BaseException as exc:  # noqa: B036 - the worker survives whatever the app raises
            outcome, message = self._raised(exc)
        else:
            if result is not None:
                logger.warning("ASGI callable returned a value other than None (%s); it is ignored", type(result).__name__)
            outcome, message = self._returned()
        self._end(outcome, message)

    def _raised(self, exc: BaseException) -> Tuple[int, str]:
        if self._cancel_reason is not None and isinstance(exc, _CancelledError):
            return OUTCOME_APP_ERROR, self._cancel_reason
        if self.disconnected and _caused_by_disconnect(exc):
            logger.debug("stream %d: client disconnected: %s: %s", self.sid, type(exc).__name__, exc)
            return OUTCOME_OK, ""
        logger.error("Exception in ASGI application", exc_info=exc)
        return OUTCOME_APP_ERROR, _describe(exc)

    def _returned(self) -> Tuple[int, str]:
        if self._error is not None:  # an invalid message that the app swallowed
            logger.error("ASGI callable sent an invalid message: %s", _describe(self._error))
            return OUTCOME_APP_ERROR, _describe(self._error)
        if self._complete or self.disconnected:
            return OUTCOME_OK, ""
        if self._started:
            msg = "ASGI callable returned without completing response."
        else:
            msg = "ASGI callable returned without starting response."
        logger.error(msg)
        return OUTCOME_NO_RESPONSE, msg

    def _end(self, outcome: int, message: str) -> None:
        conn = self.conn
        if conn.streams.get(self.sid) is self:
            del conn.streams[self.sid]
        # After END nothing more may go out for the sid: later send()s are ignored, receive()s
        # return http.disconnect (a task the app left behind).
        self._complete = True
        self.disconnected = True
        if conn._closed:
            return
        conn._out.append(encode_end(self.sid_enc, outcome, message))
        if not conn._flush_scheduled:
            conn._schedule_flush()

    # -----------------------------------------------------------------------------------------------
    # Events from the connection

    def on_body(self, body: bytes, more_body: bool) -> None:
        """A REQUEST_BODY frame for this stream."""
        if self._req_done:
            raise ProtocolError(f"REQUEST_BODY for stream {self.sid} after its body was complete")
        if self.disconnected:
            raise ProtocolError(f"REQUEST_BODY for stream {self.sid} after DISCONNECT")
        window = self._req_window - len(body)
        if window < 0:
            raise ProtocolError(f"REQUEST_BODY for stream {self.sid} exceeds the request-body window")
        self._req_window = window
        if not more_body:
            self._req_done = True
        if self._complete:
            return  # the app's receive() returns http.disconnect from now on: drop the body
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = deque()
        chunks.append((body, more_body))
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def on_credit(self, increment: int) -> None:
        """A G->W CREDIT frame for this stream: more response-body window."""
        self._send_window += increment
        w = self._credit_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def on_disconnect(self) -> None:
        """A DISCONNECT frame: the client went away."""
        self.disconnected = True
        self._wake()

    def abort(self, reason: str, *, disconnected: bool) -> None:
        """Cancel the app's task (connection lost, or the shutdown grace period is over)."""
        self._cancel_reason = reason
        if disconnected:
            self.disconnected = True
        self._wake()
        task = self.task
        if task is not None and not task.done():
            task.cancel()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        w = self._credit_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def start_only_frame(self) -> bytes:
        """At flush: the pending RESPONSE_START placeholder as a start without body."""
        self._start_index = None
        return response_start_parts(self._start_head, b"", True)[0]

    # -----------------------------------------------------------------------------------------------
    # ASGI receive

    async def receive(self) -> dict:
        if self._first_pending:
            self._first_pending = False
            if not (self.disconnected or self._complete):
                body = self._body
                more_body = self._more_body
                self._body = b""
                if more_body:
                    if self.flags & FLAG_EXPECT_CONTINUE:
                        self._grant(self.conn.window)  # the gateway sends 100 Continue on it
                    elif body:
                        self._consumed(len(body))
                return {"type": "http.request", "body": body, "more_body": more_body}
        while True:
            if self.disconnected or self._complete:
                return {"type": "http.disconnect"}
            chunks = self._chunks
            if chunks:
                body, more_body = chunks.popleft()
                if more_body and body:
                    self._consumed(len(body))
                return {"type": "http.request", "body": body, "more_body": more_body}
            w = self._waiter
            if w is None or w.done():
                w = self._waiter = self.conn.loop.create_future()
            await w

    def _consumed(self, n: int) -> None:
        """The app has received ``n`` more request-body bytes: grant them back in batches."""
        n += self._ungranted
        if n >= self.conn.half_window:
            self._grant(n)
        else:
            self._ungranted = n

    def _grant(self, n: int) -> None:
        self._ungranted = 0
        if self._req_done or self.disconnected or self.conn._closed:
            return
        self._req_window += n
        conn = self.conn
        conn._out.append(encode_credit(self.sid, n))
        if not conn._flush_scheduled:
            conn._schedule_flush()

    # -----------------------------------------------------------------------------------------------
    # ASGI send

    async def send(self, message: Any) -> None:
        mtype = message["type"]
        if self._complete:
            return  # after the final body (or after END): ignored
        if self.disconnected:
            raise ClientDisconnected(f"the client of stream {self.sid} has disconnected")
        if not self._started:
            if mtype != "http.response.start":
                self._invalid(RuntimeError(f"Expected ASGI message 'http.response.start', but got '{mtype}'."))
            self._start(message)
            return
        if mtype != "http.response.body":
            self._invalid(RuntimeError(f"Expected ASGI message 'http.response.body', but got '{mtype}'."))
        body = message.get("body", b"")
        if type(body) is not bytes:
            body = self._check_body(body)
        more_body = message.get("more_body", False)
        conn = self.conn
        n = len(body)
        if (
            n <= self._send_window
            and n <= conn.max_piece
            and not conn._write_paused
            and (self._start_index is None or len(self._start_head) + n + _START_SLACK <= conn.max_frame)
        ):
            if more_body:
                if not n:
                    return
                self._send_window -= n
                self._emit(body, True)
                return
            self._send_window -= n
            self._complete = True
            self._emit(body, False)
            w = self._waiter
            if w is not None and not w.done():
                w.set_result(None)
            return
        await self._send_slow(body, bool(more_body))

    async def _send_slow(self, body: bytes, more_body: bool) -> None:
        conn = self.conn
        total = len(body)
        if total == 0 and more_body:
            return
        if self._start_index is not None and (
            len(self._start_head) + min(total, conn.max_piece) + _START_SLACK > conn.max_frame
        ):
            # The headers leave no room for a body piece in RESPONSE_START: send the start alone.
            conn._out[self._start_index] = self.start_only_frame()
            conn._placeholders -= 1
        view = memoryview(body) if total > conn.max_piece or total > self._send_window else body
        pos = 0
        while True:
            if conn._write_paused:
                await conn.drain()
                if self.disconnected:
                    raise ClientDisconnected(f"the client of stream {self.sid} has disconnected")
            remaining = total - pos
            piece = min(remaining, self._send_window, conn.max_piece)
            if piece == 0 and remaining:
                await self._wait_credit()
                continue
            end = pos + piece
            final = end == total
            chunk = view if (pos == 0 and final) else view[pos:end]
            self._send_window -= piece
            pos = end
            if final:
                if not more_body:
                    self._complete = True
                self._emit(chunk, more_body)
                if not more_body:
                    w = self._waiter
                    if w is not None and not w.done():
                        w.set_result(None)
                return
            self._emit(chunk, True)

    async def _wait_credit(self) -> None:
        w = self._credit_waiter
        if w is None or w.done():
            w = self._credit_waiter = self.conn.loop.create_future()
        try:
            await w
        finally:
            if self._credit_waiter is w:
                self._credit_waiter = None
        if self.disconnected:
            raise ClientDisconnected(f"the client of stream {self.sid} has disconnected")

    def _emit(self, body: Any, more_body: bool) -> None:
        """Queue one body piece: into the pending RESPONSE_START if there is one, else a RESPONSE_BODY."""
        conn = self.conn
        index = self._start_index
        if index is not None:
            self._start_index = None
            conn._placeholders -= 1
            parts = response_start_parts(self._start_head, body, more_body)
            conn._out[index] = parts[0] if len(parts) == 1 else b"".join(parts)
            return
        conn._out += response_body_parts(self.sid_enc, body, more_body)
        if not conn._flush_scheduled:
            conn._schedule_flush()

    def _start(self, message: Any) -> None:
        status = message["status"]
        if type(status) is not int:
            self._invalid(TypeError(f"http.response.start 'status' must be an int, got {type(status).__name__} {status!r}"))
        if not 200 <= status <= 999:
            self._invalid(ValueError(f"http.response.start 'status' must be 200..999, got {status}"))
        headers = []
        for item in message.get("headers", ()):
            try:
                name, value = item
            except (TypeError, ValueError):
                self._invalid(TypeError(f"http.response.start headers must be [name, value] pairs, got {item!r}"))
            if type(name) is not bytes or type(value) is not bytes:
                for what, x in (("name", name), ("value", value)):
                    if not isinstance(x, bytes):
                        self._invalid(TypeError(
                            f"http.response.start header {what}s must be bytes, got {type(x).__name__} {x!r}"))
            headers.append((name, value))
        flags = FLAG_TRAILERS if message.get("trailers", False) else 0
        head = response_start_head(self.sid_enc, status, headers, flags)
        conn = self.conn
        if len(head) + 3 > conn.max_frame:
            self._invalid(ValueError(
                f"http.response.start headers are too large: {len(head)} bytes encoded, "
                f"the frame limit is {conn.max_frame}"))
        self._started = True
        self._start_head = head
        out = conn._out
        self._start_index = len(out)
        out.append(self)
        conn._placeholders += 1
        if not conn._flush_scheduled:
            conn._schedule_flush()

    def _check_body(self, body: Any) -> bytes:
        if isinstance(body, (bytes, bytearray, memoryview)):
            return bytes(body)
        self._invalid(TypeError(f"http.response.body 'body' must be bytes, got {type(body).__name__}"))
        raise AssertionError  # pragma: no cover

    def _invalid(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        raise exc


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    message = f"{name}: {text}" if text else name
    if len(message) > 4000:
        message = message[:3997] + "..."
    return message
