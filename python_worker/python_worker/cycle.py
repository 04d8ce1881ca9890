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
import struct
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Optional, Tuple

from .protocol import (
    FLAG_EXPECT_CONTINUE,
    FLAG_TRAILERS,
    OUTCOME_APP_ERROR,
    OUTCOME_NO_RESPONSE,
    OUTCOME_OK,
    ProtocolError,
    _pack,
    encode_credit,
    encode_end,
    pack_uint,
    response_body_parts,
    response_start_parts,
)

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection

__all__ = ["ClientDisconnected", "RequestCycle"]

logger = logging.getLogger("python_worker.app")

_CancelledError = asyncio.CancelledError
_pack_u32 = struct.Struct(">I").pack
_BIN8 = [b"\xc4" + bytes((i,)) for i in range(256)]

# A RESPONSE_START head is followed by a bin header (at most 5 bytes) and more_body (1 byte).
_START_SLACK = 6

# Response states.
_NOT_STARTED = 0
_STARTED = 1
_COMPLETE = 2  # the final body was sent, or the stream has ended: later send()s are ignored

# END with outcome OK and message "": prefix (length, array, type) by the length of the encoded sid.
_END_OK_PREFIX = {k: _pack_u32(4 + k) + b"\x94\x15" for k in (1, 2, 3, 5)}


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
        "_chunks",
        "_req_done",
        "_req_window",
        "_ungranted",
        "_waiter",
        # response
        "_state",
        "_send_window",
        "_start_head",
        "_start_index",
        "_credit_waiter",
        # both
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
        window = 0 if flags & FLAG_EXPECT_CONTINUE else conn.window
        if body:
            window -= len(body)
            if window < 0:
                raise ProtocolError(f"HTTP_REQUEST for stream {sid} carries more body than the window allows")
        self._req_window = window
        self._body: Optional[bytes] = body  # the first http.request, until the app receives it
        self._more_body = more_body
        self._chunks: Optional[Deque[Tuple[bytes, bool]]] = None
        self._req_done = not more_body
        self._ungranted = 0
        self._waiter: Optional[asyncio.Future] = None
        self._state = _NOT_STARTED
        self._send_window = conn.window
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
            if self._state == _COMPLETE and self._error is None:
                # The common case, inlined: END OK.
                conn = self.conn
                conn.streams.pop(self.sid, None)
                self.disconnected = True
                if not conn._closed:
                    sid_enc = self.sid_enc
                    conn._out.append(_END_OK_PREFIX[len(sid_enc)] + sid_enc + b"\x00\xa0")
                    if not conn._flush_scheduled:
                        conn._schedule_flush()
                return
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
        if self._state == _COMPLETE or self.disconnected:
            return OUTCOME_OK, ""
        if self._state == _STARTED:
            msg = "ASGI callable returned without completing response."
        else:
            msg = "ASGI callable returned without starting response."
        logger.error(msg)
        return OUTCOME_NO_RESPONSE, msg

    def _end(self, outcome: int, message: str) -> None:
        conn = self.conn
        conn.streams.pop(self.sid, None)
        # After END nothing more may go out for the sid: later send()s are ignored, receive()s
        # return http.disconnect (a task the app left behind).
        self._state = _COMPLETE
        self.disconnected = True
        self._wake()
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
        if self._state == _COMPLETE:
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
        payload = self._start_head + b"\xc4\x00\xc3"  # body b"", more_body true
        return _pack_u32(len(payload)) + payload

    # -----------------------------------------------------------------------------------------------
    # ASGI receive

    async def receive(self) -> dict:
        body = self._body
        if body is not None:  # the first http.request, from the HTTP_REQUEST frame
            self._body = None
            if not self.disconnected and self._state != _COMPLETE:
                more_body = self._more_body
                if more_body:
                    if self.flags & FLAG_EXPECT_CONTINUE:
                        self._grant(self.conn.window)  # the gateway sends 100 Continue on it
                    elif body:
                        self._consumed(len(body))
                return {"type": "http.request", "body": body, "more_body": more_body}
        while True:
            if self.disconnected or self._state == _COMPLETE:
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
        conn = self.conn
        if self._req_done or self.disconnected or conn._closed:
            return
        self._req_window += n
        conn._out.append(encode_credit(self.sid, n))
        if not conn._flush_scheduled:
            conn._schedule_flush()

    # -----------------------------------------------------------------------------------------------
    # ASGI send

    async def send(self, message: Any) -> None:
        state = self._state
        if state == _STARTED:
            if self.disconnected:
                raise ClientDisconnected(f"the client of stream {self.sid} has disconnected")
            if message["type"] != "http.response.body":
                self._invalid(RuntimeError(
                    f"Expected ASGI message 'http.response.body', but got '{message['type']}'."))
            body = message.get("body", b"")
            if type(body) is not bytes:
                body = self._check_body(body)
            n = len(body)
            conn = self.conn
            if n > self._send_window or n > conn.max_piece or conn._write_paused:
                await self._send_slow(body, bool(message.get("more_body", False)))
                return
            index = self._start_index
            if message.get("more_body", False):
                if n:
                    self._send_window -= n
                    self._emit(body, True)
                return
            self._state = _COMPLETE
            self._send_window -= n
            if index is not None and n < 256 and len(self._start_head) + 258 <= conn.max_frame:
                # The common case, inlined: one RESPONSE_START carrying the whole (small) body.
                self._start_index = None
                conn._placeholders -= 1
                head = self._start_head
                conn._out[index] = b"".join((_pack_u32(len(head) + n + 3), head, _BIN8[n], body, b"\xc2"))
            else:
                self._emit(body, False)
            w = self._waiter
            if w is not None and not w.done():
                w.set_result(None)
        elif state == _NOT_STARTED:
            if self.disconnected:
                raise ClientDisconnected(f"the client of stream {self.sid} has disconnected")
            if message["type"] != "http.response.start":
                self._invalid(RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{message['type']}'."))
            self._start(message)
        # _COMPLETE: after the final body (or after END) messages are ignored

    def _start(self, message: Any) -> None:
        status = message["status"]
        if type(status) is not int:
            self._invalid(TypeError(f"http.response.start 'status' must be an int, got {type(status).__name__} {status!r}"))
        if not 200 <= status <= 999:
            self._invalid(ValueError(f"http.response.start 'status' must be 200..999, got {status}"))
        headers = message.get("headers", ())
        if type(headers) is not list and type(headers) is not tuple:
            headers = list(headers)  # any iterable
        for item in headers:
            # (``x.__class__`` is cheaper than ``type(x)``; an object lying about its class would
            # only make the packer raise TypeError below.)
            cls = item.__class__
            if (cls is tuple or cls is list) and len(item) == 2 and item[0].__class__ is bytes \
                    and item[1].__class__ is bytes:
                continue
            headers = self._normalize_headers(headers)
            break
        # RESPONSE_START up to its body: 97 12 sid status headers flags. Packing a 3-array gives
        # 0x93 and the three items.
        items = _pack((status, headers, FLAG_TRAILERS if message.get("trailers", False) else 0))
        head = b"\x97\x12" + self.sid_enc + items[1:]
        conn = self.conn
        if len(head) + 3 > conn.max_frame:
            self._invalid(ValueError(
                f"http.response.start headers are too large: {len(head)} bytes encoded, "
                f"the frame limit is {conn.max_frame}"))
        self._state = _STARTED
        self._start_head = head
        out = conn._out
        self._start_index = len(out)
        out.append(self)
        conn._placeholders += 1
        if not conn._flush_scheduled:
            conn._schedule_flush()

    async def _send_slow(self, body: bytes, more_body: bool) -> None:
        """A body that must wait (window, paused transport) or be split into pieces."""
        conn = self.conn
        total = len(body)
        if total == 0 and more_body:
            return
        if self._start_index is not None and (
            len(self._start_head) + min(total, conn.max_piece) + _START_SLACK > conn.max_frame
        ):
            # The headers leave no room for a body piece in RESPONSE_START: send the start alone.
            index = self._start_index
            conn._out[index] = self.start_only_frame()
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
                    self._state = _COMPLETE
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
            conn._placeholders -= 1
            if len(self._start_head) + len(body) + _START_SLACK <= conn.max_frame:
                self._start_index = None
                conn._out[index] = b"".join(response_start_parts(self._start_head, body, more_body))
                return
            conn._out[index] = self.start_only_frame()  # no room for the body next to the headers
        parts = response_body_parts(self.sid_enc, body, more_body)
        if len(parts) > 1:
            conn._big_parts = True
        conn._out += parts
        if not conn._flush_scheduled:
            conn._schedule_flush()

    def _normalize_headers(self, headers: Any) -> list:
        """Headers that are not all plain ``(bytes, bytes)`` pairs: validate, return plain pairs."""
        out = []
        for item in headers:
            try:
                name, value = item
            except (TypeError, ValueError):
                self._invalid(TypeError(f"http.response.start headers must be [name, value] pairs, got {item!r}"))
            for what, x in (("name", name), ("value", value)):
                if not isinstance(x, bytes):
                    self._invalid(TypeError(
                        f"http.response.start header {what}s must be bytes, got {type(x).__name__} {x!r}"))
            out.append((bytes(name), bytes(value)))
        return out

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

