"""One HTTP request/response cycle: a stream of the worker protocol seen as one ASGI ``http`` call.

This module owns what happens between one HTTP_REQUEST frame and the END frame of its stream: the
scope, the app's task, the ASGI ``receive``/``send`` callables (asgiref ``specs/www.rst``, spec version
2.5), both body windows of the stream (SPEC §4) and the END outcome. It does not read or write the
socket: it appends frames to its connection's output list (``conn._out``) and asks the connection to
flush (``Connection.flush_sent`` after data for the client: at once, or batched at the end of the
event-loop iteration; the split of uvicorn's ``httptools_impl``: ``connection.py`` is
the protocol, this is the per-request cycle).

Coalescing: ``http.response.start`` does not produce a frame at once. It puts the cycle itself into the
connection's output list as a placeholder; if the app's first ``http.response.body`` comes before the
flush, the placeholder becomes one RESPONSE_START frame carrying the body, otherwise the flush turns it
into a RESPONSE_START with ``body=b""`` and ``more_body=True`` (SPEC §3). The placeholder keeps the
frame's place, so the frames of a stream always go out in order.

Body ring (SPEC §6): when the connection uses one, a response-body piece of at least
:data:`~python_worker.ring.MIN_PIECE` bytes is copied into it and goes out as RESPONSE_BODY_RING,
after a RESPONSE_START without body, if the ring has room. A piece that finds it full waits (the
app's ``send()`` with it) until the gateway, which releases pieces once it has read their frames, has
made room for it (seen when a frame comes, or at a look every
:data:`~python_worker.connection.RING_POLL`), or :data:`~python_worker.connection.RING_WAIT` has
passed without a frame, and goes inline if there is still no room. Request-body pieces reach :meth:`RequestCycle.on_body` the same whichever path they took. An
empty first ``http.request`` that the app has not yet received, with more to come, is replaced by the
next piece (the gateway sends a large first piece as an empty HTTP_REQUEST body and a ring piece).

Extensions (asgiref ``extensions.rst``), each advertised in ``scope["extensions"]`` only when the
HTTP_REQUEST flags say that the gateway can do it: ``http.response.trailers`` (``trailers: True`` in the
start sets RESPONSE_START flag bit 0; after the final body the response is complete only after
``http.response.trailers`` with ``more_trailers`` false, each one a RESPONSE_TRAILERS frame),
``http.response.pathsend`` (after the start, instead of any body: RESPONSE_PATHSEND, the gateway sends
the file) and ``http.response.early_hint`` (EARLY_HINT, put before a RESPONSE_START that is still held
for coalescing, since the gateway can send 103 only before the final head). A CANCEL frame (the
gateway's request timeout) cancels the app's task; its END is ``APP_ERROR`` "cancelled". On a TLS
connection (flag TLS) the scope carries ``tls`` (asgiref ``tls.rst``): the frame's tls item, with the
``server_cert`` of the gateway's HELLO.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import stat
import struct
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Dict, Optional, Tuple

from .protocol import (
    FLAG_EARLY_HINTS,
    FLAG_EXPECT_CONTINUE,
    FLAG_NO_BODY_YET,
    FLAG_PATHSEND,
    FLAG_SMALL_WINDOW,
    FLAG_TLS,
    FLAG_TRAILERS,
    FLAG_TRAILERS_ALLOWED,
    OUTCOME_APP_ERROR,
    OUTCOME_NO_RESPONSE,
    OUTCOME_OK,
    SMALL_WINDOW,
    ProtocolError,
    _pack,
    encode_credit,
    encode_early_hint,
    encode_end,
    encode_response_pathsend,
    encode_response_trailers,
    pack_headers as _pack_headers,
    pack_uint,
    speedups,
    response_body_parts,
    response_body_ring,
    response_start_parts,
)
from .ring import MIN_PIECE as RING_MIN_PIECE

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection
    from .types import TLSExtension

__all__ = ["ClientDisconnected", "RequestCycle"]

logger = logging.getLogger("python_worker.app")

_CancelledError = asyncio.CancelledError
_http_scope = speedups.http_scope if speedups is not None else None
# The per-request steps in C, for the common cases (None or False: not done, go on in Python):
# Connection.data_received's loop over HTTP_REQUEST frames (their RequestCycles and tasks), the
# app's call, send()'s two messages of most responses, and END OK.
# They work on the classes' slots, given by bind_cycle once Connection exists.
open_requests_fast = speedups.open_requests if speedups is not None else None
_start_app = speedups.start_app if speedups is not None else None
_fast_send = speedups.fast_send if speedups is not None else None
_end_ok = speedups.end_ok if speedups is not None else None
_pack_u32 = struct.Struct(">I").pack
_BIN8 = [b"\xc4" + bytes((i,)) for i in range(256)]

# The canonical encodings of RESPONSE_START's status (200..999), by status, and of its flags (0 or
# FLAG_TRAILERS), by flags.
_STATUS_ENC = [pack_uint(status) for status in range(1000)]
_START_FLAGS_ENC = (pack_uint(0), pack_uint(FLAG_TRAILERS))

# Field syntax, as the gateway checks it (and _speedups.pack_headers): a name is a token (RFC 9110
# §5.6.2), a value has no control character but HTAB (field-vchar, SP, HTAB, obs-text: §5.5).
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# A RESPONSE_START head is followed by a bin header (at most 5 bytes) and more_body (1 byte).
_START_SLACK = 6

# Response states.
_NOT_STARTED = 0
_STARTED = 1
_COMPLETE = 2  # the final body was sent, or the stream has ended: later send()s are ignored
_TRAILERS = 3  # the final body was sent, the trailers (announced in the start) are not complete

# The HTTP_REQUEST flags that advertise extensions, and the extension names of each flag value.
_EXT_FLAGS = FLAG_TRAILERS_ALLOWED | FLAG_PATHSEND | FLAG_EARLY_HINTS
_EXT_NAMES = (
    (FLAG_TRAILERS_ALLOWED, "http.response.trailers"),
    (FLAG_PATHSEND, "http.response.pathsend"),
    (FLAG_EARLY_HINTS, "http.response.early_hint"),
)
_EXT_KEYS = [tuple(name for flag, name in _EXT_NAMES if bits & flag) for bits in range(_EXT_FLAGS + 1)]
# The extension of each extension message type (a message of an extension that was not advertised
# is an error).
_EXT_OF_TYPE = {name: flag for flag, name in _EXT_NAMES}

CANCELLED = "cancelled"  # the END message after a CANCEL frame (SPEC §3)


class _Cancelled(Exception):
    """Marks a cycle whose task the gateway cancelled (stored as its ``_error``)."""


_CANCELLED = _Cancelled(CANCELLED)

# END with outcome OK and message "": prefix (length, array, type) by the length of the encoded sid.
_END_OK_PREFIX = {k: _pack_u32(4 + k) + b"\x94\x15" for k in (1, 2, 3, 5)}


def tls_extension(conn: "Connection", tls: tuple) -> "TLSExtension":
    """``scope["extensions"]["tls"]`` from a validated tls item (protocol.decode): a new dict per scope."""
    tls_version, cipher_suite, client_cert_chain, client_cert_name, client_cert_error = tls
    return {
        "server_cert": conn.server_cert,
        "client_cert_chain": list(client_cert_chain),
        "client_cert_name": client_cert_name,
        "client_cert_error": client_cert_error,
        "tls_version": tls_version,
        "cipher_suite": cipher_suite,
    }


def _open_regular(path: str) -> Any:
    """Opens a regular file for reading (what the gateway's pathsend sends), else raises OSError."""
    file = open(path, "rb")  # noqa: SIM115 - closed by the caller
    if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
        file.close()
        raise OSError(errno.EINVAL, "not a regular file")
    return file


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
        "scope",  # built when the task starts
        "_frame",  # the HTTP_REQUEST (WS_CONNECT) frame, until then
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
        "_final",  # the state after the final body: _COMPLETE, or _TRAILERS (set by _start)
        "_body_sent",  # a body piece has been queued (set by _start)
        "_head_held",  # the start went out with flag NO_BODY_YET and no body piece since (set by _start)
        "_in_ring",  # a body piece went into the ring: the next ones go before waiting pieces (set by _start)
        "_cut",  # the stream ended with its response incomplete: a later send() raises ClientDisconnected
        # both
        "disconnected",
        "_error",
        "_cancel_reason",
    )

    def __init__(self, conn: "Connection", f: tuple) -> None:
        # f: a validated HTTP_REQUEST frame (protocol.decode), with the tls item as a 16th under flag TLS.
        # Only what the connection needs before the task runs is taken from it here; the scope is
        # built when the task starts (_make_scope, in run). (Built here, the scopes of a whole batch of
        # requests, six dicts and a list each, would all be alive before the first app runs: enough
        # allocations to set off the garbage collector in nearly every batch of a busy connection.)
        self.conn = conn
        self._frame: Optional[tuple] = f
        self.sid = sid = f[1]
        self.sid_enc = _pack(sid)  # canonical msgpack, as protocol.pack_uint
        self.flags = flags = f[12]
        body = f[13]
        window = 0 if flags & FLAG_EXPECT_CONTINUE else conn.window
        if body:
            window -= len(body)
            if window < 0:
                raise ProtocolError(f"HTTP_REQUEST for stream {sid} carries more body than the window allows")
        self._req_window = window
        self._body: Optional[bytes] = body  # the first http.request, until the app receives it
        self._more_body = more_body = f[14]
        # (body, more_body) pieces; a WebSocketCycle's hold (message, its size in the window)
        self._chunks: Optional[Deque[Tuple[Any, Any]]] = None
        self._req_done = not more_body
        self.scope: Optional[Dict[str, Any]] = None
        self.task: Optional[asyncio.Task] = None
        self._init_stream_state(conn)
        if flags & FLAG_SMALL_WINDOW:
            self._send_window = min(conn.window, SMALL_WINDOW)  # (SPEC §3: the gateway's CREDITs grow it)

    def _make_scope(self) -> Dict[str, Any]:
        """The ``http`` scope, from the HTTP_REQUEST frame: new dicts (and lists) per request, since
        apps may write to them."""
        f = self._frame
        assert f is not None  # (called once, by run)
        self._frame = None  # (it holds the first body piece, which receive() hands over)
        flags = f[12]
        extensions: Dict[str, Any] = {}
        ext = flags & _EXT_FLAGS
        if ext:
            for name in _EXT_KEYS[ext]:
                extensions[name] = {}
        if flags & FLAG_TLS:
            extensions["tls"] = tls_extension(self.conn, f[15])
        if _http_scope is not None:  # the same dict, built in C
            scope = self.scope = _http_scope(f, self.conn.state, extensions)
            return scope
        (_, _, http_version, method, scheme, path, raw_path, query_string, root_path, headers,
         client, server, _, _, _) = f if len(f) == 15 else f[:15]
        scope = self.scope = {
            "type": "http",
            # 2.3, as uvicorn, though send() raises OSError once the client has gone (2.4): Starlette
            # (1.x) streams a response without watching receive() for http.disconnect under 2.4+,
            # so a generator waiting for events would never learn that its client left.
            "asgi": {"version": "3.0", "spec_version": "2.3"},
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
            "state": self.conn.state.copy(),
            "extensions": extensions,
        }
        return scope

    def _init_stream_state(self, conn: "Connection") -> None:
        """The state every stream starts with, HTTP or WebSocket (flow control, response, errors)."""
        self._ungranted = 0
        self._waiter: Optional[asyncio.Future] = None
        self._state = _NOT_STARTED
        self._cut = False
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
            if _start_app is not None:
                result = await _start_app(self)  # (the same call, in C)
            else:
                result = await self.conn.app(self._make_scope(), self.receive, self.send)
        except BaseException as exc:  # noqa: B036 - the worker survives whatever the app raises
            outcome, message = self._raised(exc)
        else:
            if result is not None:
                logger.warning("ASGI callable returned a value other than None (%s); it is ignored", type(result).__name__)
            if _end_ok is not None and _end_ok(self):
                return  # END OK after a complete response, in C (as below)
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
        if self._error is _CANCELLED:  # CANCEL from the gateway
            if not isinstance(exc, _CancelledError):
                logger.error("Exception in ASGI application (after its request was cancelled)", exc_info=exc)
            return OUTCOME_APP_ERROR, CANCELLED
        if self._cancel_reason is not None and isinstance(exc, _CancelledError):
            return OUTCOME_APP_ERROR, self._cancel_reason
        if self.disconnected and _caused_by_disconnect(exc):
            logger.debug("stream %d: client disconnected: %s: %s", self.sid, type(exc).__name__, exc)
            return OUTCOME_OK, ""
        logger.error("Exception in ASGI application", exc_info=exc)
        return OUTCOME_APP_ERROR, _describe(exc)

    def _returned(self) -> Tuple[int, str]:
        if self._error is not None:
            if self._error is _CANCELLED:  # CANCEL from the gateway (the app swallowed the cancellation)
                return OUTCOME_APP_ERROR, CANCELLED
            # an invalid message that the app swallowed
            logger.error("ASGI callable sent an invalid message: %s", _describe(self._error))
            return OUTCOME_APP_ERROR, _describe(self._error)
        if self._state == _COMPLETE or self.disconnected:
            return OUTCOME_OK, ""
        if self._state == _STARTED or self._state == _TRAILERS:
            msg = "ASGI callable returned without completing response."
        else:
            msg = "ASGI callable returned without starting response."
        logger.error(msg)
        return OUTCOME_NO_RESPONSE, msg

    def _end(self, outcome: int, message: str) -> None:
        conn = self.conn
        conn.streams.pop(self.sid, None)
        # After END nothing more may go out for the sid: receive()s return http.disconnect (a task
        # the app left behind), and send()s are ignored after a complete response; after an
        # incomplete one, which the gateway cuts (or answers 500), they raise ClientDisconnected
        # (www.rst 2.4: send() "on a closed connection").
        self._cut = self._state != _COMPLETE
        self._state = _COMPLETE
        index = self._start_index
        if index is not None and outcome != OUTCOME_OK:
            # The app failed after its start, before any body: the start has not gone out (www.rst:
            # the server "must not start sending the response ... until it has received at least
            # one Response Body event"), and now never does: the gateway answers 500.
            self._start_index = None
            conn._out[index] = b""
            conn._placeholders -= 1
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
        """A REQUEST_BODY frame for this stream (or REQUEST_BODY_RING, with its piece)."""
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
        first = self._body
        if first is not None and not first and self._more_body and not self.flags & FLAG_EXPECT_CONTINUE:
            # The first http.request (HTTP_REQUEST's body) is empty, with more to come, and the app has
            # not received it yet: this piece takes its place (SPEC §6). (Under EXPECT_CONTINUE the
            # gateway sends no body before the first CREDIT, which the first receive() sends.)
            self._body = body
            self._more_body = more_body
            return
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

    def on_cancel(self) -> None:
        """A CANCEL frame: the request timed out at the gateway. Cancel the app's task; the END says
        "cancelled" (APP_ERROR), whatever the app does after."""
        if self._error is _CANCELLED:
            return
        scope = self.scope  # None if the task has not started
        logger.warning(
            "request cancelled (timeout): stream %d, %s", self.sid, scope["path"] if scope is not None else "")
        self._error = _CANCELLED
        # Cancel in a callback rather than now: a task created in this same data_received has not
        # run its first step yet, and a task cancelled before it starts never runs ``run()`` (no END).
        self.conn.loop.call_soon(self._cancel_task)

    def _cancel_task(self) -> None:
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

    def start_only_frame(self, no_body_yet: bool = False) -> bytes:
        """The pending RESPONSE_START placeholder as a start without body; ``no_body_yet`` (at a flush
        before the app's first ``http.response.body``) sets flag bit 1: the gateway holds the head."""
        self._start_index = None
        head = self._start_head
        if no_body_yet:
            head = head[:-1] + bytes((head[-1] | FLAG_NO_BODY_YET,))  # (flags: the head's last byte)
            self._head_held = True
        payload = head + b"\xc4\x00\xc3"  # body b"", more_body true
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
        if _fast_send is not None and _fast_send(self, message):
            return  # a plain start, or a final body that goes with it: done as below, in C
        state = self._state
        if state == _STARTED:
            if self.disconnected:
                raise ClientDisconnected(f"the client of stream {self.sid} has disconnected")
            if message["type"] != "http.response.body":
                if message["type"] == "http.response.pathsend" and self._final == _TRAILERS:
                    await self._pathsend_as_body(message)
                    return
                self._other(message)  # an extension message, or an error
                return
            body = message.get("body", b"")
            if type(body) is not bytes:
                body = self._check_body(body)
            n = len(body)
            conn = self.conn
            if n > self._send_window or n > conn.max_piece or conn._write_paused:
                await self._send_slow(body, bool(message.get("more_body", False)))
                return
            more = message.get("more_body", False)
            if n >= RING_MIN_PIECE and conn.ring is not None:
                # Into the body ring now if it has room (and no waiting piece is there for this
                # response's first to pass), else after a wait for room (or inline: _emit).
                if (self._in_ring or not conn._ring_waiters) and self._ring_piece(body, bool(more)):
                    self._send_window -= n
                    self._queued(more)
                    return
                await self._wait_ring_room(n)
            index = self._start_index
            if more:
                if n:
                    self._send_window -= n
                    self._emit(body, True)
                elif index is not None or self._head_held:
                    self._release_head(index)
                else:
                    return
                conn.flush_sent(self)
                return
            self._state = self._final
            self._send_window -= n
            if index is not None and n < 256 and len(self._start_head) + 258 <= conn.max_frame:
                # The common case, inlined: one RESPONSE_START carrying the whole (small) body.
                self._start_index = None
                conn._placeholders -= 1
                head = self._start_head
                conn._out[index] = b"".join((_pack_u32(len(head) + n + 3), head, _BIN8[n], body, b"\xc2"))
            else:
                self._emit(body, False)
            conn.flush_sent(self)
            w = self._waiter
            if w is not None and not w.done():
                w.set_result(None)
        elif state == _NOT_STARTED:
            if self.disconnected:
                raise ClientDisconnected(f"the client of stream {self.sid} has disconnected")
            if message["type"] != "http.response.start":
                self._other(message)  # an extension message, or an error
                return
            self._start(message)
        elif state == _TRAILERS:
            self._trailers(message)
        elif self._cut:
            raise ClientDisconnected(f"stream {self.sid} has ended with its response incomplete; the connection was closed")
        # _COMPLETE: after the final body (or after END of a complete response) messages are ignored

    def _start(self, message: Any) -> None:
        status = message["status"]
        # RFC 9110 §15: "Values outside the range 100..599 are invalid" (a client would take one as a
        # 5xx); 1xx are interim responses, which http.response.start cannot send (extensions.rst:
        # http.response.early_hint sends 103).
        if status.__class__ is not int or not 200 <= status <= 599:
            if not isinstance(status, int) or isinstance(status, bool):
                self._invalid(TypeError(
                    f"http.response.start 'status' must be an int, got {type(status).__name__} {status!r}"))
            status = int(status)  # an int subclass, such as http.HTTPStatus (Starlette passes it on)
            if not 200 <= status <= 599:
                self._invalid(ValueError(f"http.response.start 'status' must be 200..599, got {status}"))
        headers = message.get("headers", ())
        cls = headers.__class__
        if cls is not list and cls is not tuple:
            headers = list(headers)  # any iterable
        # Trailers only when advertised (else the key is ignored, as uvicorn does).
        if self.flags & FLAG_TRAILERS_ALLOWED and message.get("trailers", False):
            flags = FLAG_TRAILERS
            self._final = _TRAILERS
        else:
            flags = 0
            self._final = _COMPLETE
        # RESPONSE_START up to its body: 97 12 sid status headers flags (only the headers packed here:
        # status and flags from tables). Plain (bytes, bytes) pairs are packed in C when it is built.
        prefix = b"\x97\x12" + self.sid_enc + _STATUS_ENC[status]
        head = _pack_headers(headers, prefix, _START_FLAGS_ENC[flags]) if _pack_headers is not None else None
        if head is None:
            head = prefix + _pack(self._plain_headers(headers)) + _START_FLAGS_ENC[flags]
        self._body_sent = self._in_ring = self._head_held = False
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
            self._release_head(self._start_index)  # (as in send)
            conn.flush_sent(self)
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
            if piece >= RING_MIN_PIECE and self._ring_wait_needed(piece):
                await self._wait_ring_room(piece)
            chunk = view if (pos == 0 and final) else view[pos:end]
            self._send_window -= piece
            pos = end
            if final:
                self._emit(chunk, more_body)
                self._queued(more_body)
                return
            self._emit(chunk, True)

    def _queued(self, more_body: bool) -> None:
        """The app's body message is queued: out now (flush_sent); the final one completes the
        response (its state, and run()'s wait for it). (send()'s common paths do the same inline.)"""
        if not more_body:
            self._state = self._final
        self.conn.flush_sent(self)
        if not more_body:
            w = self._waiter
            if w is not None and not w.done():
                w.set_result(None)

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

    def _ring_wait_needed(self, length: int) -> bool:
        """Whether a ring-sized piece waits for room before it is put: the ring is full for it, or
        other pieces wait and this response has none in the ring yet (Connection.wait_ring_room)."""
        conn = self.conn
        ring = conn.ring
        return ring is not None and (not ring.fits(length) or (bool(conn._ring_waiters) and not self._in_ring))

    async def _wait_ring_room(self, length: int) -> None:
        """Let the gateway release room in the full body ring (Connection.wait_ring_room)."""
        await self.conn.wait_ring_room(length)
        if self.disconnected:
            raise ClientDisconnected(f"the client of stream {self.sid} has disconnected")

    def _release_head(self, index: Optional[int]) -> None:
        """An empty body event with more to come: the app wants its head out now (www.rst lets it
        go). A start still held here goes out without flag; one that went out flagged (the gateway
        holds it) is released by an empty RESPONSE_BODY."""
        conn = self.conn
        if index is not None:
            conn._out[index] = self.start_only_frame()
            conn._placeholders -= 1
        elif self._head_held:
            self._head_held = False
            conn._out += response_body_parts(self.sid_enc, b"", True)
            if not conn._flush_scheduled:
                conn._schedule_flush()

    def _ring_piece(self, body: Any, more_body: bool) -> bool:
        """Put one body piece into the ring and queue its RESPONSE_BODY_RING; False (nothing done)
        if the ring has no room for it."""
        conn = self.conn
        ring = conn.ring
        if ring is None:
            return False
        position = ring.put(body)
        if position < 0:
            return False
        self._body_sent = self._in_ring = True
        self._head_held = False  # (the gateway sends the head with this piece)
        # The frame goes into the output list now, as the piece was put: the ring's positions follow
        # the frames' order on the socket. A held start goes before it, without body.
        out = conn._out
        index = self._start_index
        if index is not None:
            conn._placeholders -= 1
            out[index] = self.start_only_frame()
        out.append(response_body_ring(self.sid_enc, position, len(body), more_body))
        if not conn._flush_scheduled:
            conn._schedule_flush()
        return True

    def _emit(self, body: Any, more_body: bool) -> None:
        """Queue one body piece: a RESPONSE_BODY_RING if it is large and the ring has room, else into
        the pending RESPONSE_START if there is one, else a RESPONSE_BODY."""
        if len(body) >= RING_MIN_PIECE and self._ring_piece(body, more_body):
            return
        conn = self.conn
        self._body_sent = True
        self._head_held = False  # (the gateway sends the head with this piece)
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

    # -----------------------------------------------------------------------------------------------
    # Extension messages (asgiref extensions.rst)

    def _other(self, message: Any) -> None:
        """A message other than the one expected next (start, then body): an extension message, or
        an error."""
        mtype = message["type"]
        flag = _EXT_OF_TYPE.get(mtype) if mtype.__class__ is str else None
        state = self._state
        if flag is not None:
            if not self.flags & flag:
                self._invalid(RuntimeError(
                    f"unsupported message type '{mtype}': the server did not advertise the extension "
                    "in scope['extensions']"))
            if flag == FLAG_EARLY_HINTS:  # before or after the start, before the final body
                self._early_hint(message)
                return
            if flag == FLAG_PATHSEND and state == _STARTED:
                self._pathsend(message)
                return
        expected = "http.response.body" if state == _STARTED else "http.response.start"
        self._invalid(RuntimeError(f"Expected ASGI message '{expected}', but got '{mtype}'."))

    def _queue(self, frame: bytes) -> None:
        """Queue a frame with something for the client (a hint, trailers, a WebSocket message)."""
        conn = self.conn
        conn._out.append(frame)
        conn.flush_sent(self)

    def _check_frame(self, frame: bytes, what: str) -> None:
        if len(frame) - 4 > self.conn.max_frame:
            self._invalid(ValueError(
                f"{what} is too large: {len(frame) - 4} bytes encoded, the frame limit is {self.conn.max_frame}"))

    def _early_hint(self, message: Any) -> None:
        """``http.response.early_hint``: an EARLY_HINT frame, before the RESPONSE_START if it is held."""
        links = message.get("links")
        if links is None or isinstance(links, (str, bytes, bytearray, memoryview)):
            self._invalid(TypeError(
                f"http.response.early_hint 'links' must be an iterable of bytes, got {type(links).__name__}"))
        try:
            items = list(links)
        except TypeError:
            self._invalid(TypeError(
                f"http.response.early_hint 'links' must be an iterable of bytes, got {type(links).__name__}"))
        for i, link in enumerate(items):
            if link.__class__ is not bytes:
                if not isinstance(link, (bytes, bytearray, memoryview)):
                    self._invalid(TypeError(
                        f"http.response.early_hint links must be bytes, got {type(link).__name__} {link!r}"))
                items[i] = bytes(link)
            if _BAD_VALUE.search(items[i]):
                self._invalid(ValueError(
                    f"http.response.early_hint link {items[i]!r} has a CR, LF, NUL or other control character"))
        if not items:
            return  # nothing to hint
        frame = encode_early_hint(self.sid_enc, items)
        self._check_frame(frame, "http.response.early_hint")
        index = self._start_index
        if index is not None:
            # The start is still held: the hint takes its place and the start moves after it (the
            # gateway sends 103 only before the final head). Nothing else of this stream is queued
            # after the placeholder (a body would have consumed it), so the order stays right.
            out = self.conn._out
            out[index] = frame
            self._start_index = len(out)
            out.append(self)
        else:  # not started, or the start went out already (then the gateway drops it)
            self._queue(frame)

    def _pathsend_path(self, message: Any) -> str:
        """The checked ``path`` of an ``http.response.pathsend``."""
        if not self.flags & FLAG_PATHSEND:
            self._invalid(RuntimeError(
                "unsupported message type 'http.response.pathsend': the server did not advertise the "
                "extension in scope['extensions']"))
        if self._body_sent:
            self._invalid(RuntimeError(
                "http.response.pathsend after http.response.body: the file must be the whole body"))
        path = message.get("path")
        if type(path) is not str:
            self._invalid(TypeError(f"http.response.pathsend 'path' must be a str, got {type(path).__name__}"))
        if not os.path.isabs(path):
            self._invalid(ValueError(f"http.response.pathsend 'path' must be absolute, got {path!r}"))
        if "\x00" in path:
            self._invalid(ValueError(f"http.response.pathsend 'path' contains a NUL character: {path!r}"))
        return path

    async def _pathsend_as_body(self, message: Any) -> None:
        """``http.response.pathsend`` of a response whose start announced trailers. The gateway's
        pathsend ends the response with the file (SPEC, RESPONSE_PATHSEND), so the worker sends the
        file's contents as body pieces itself, read off the event loop, and the trailers follow as
        after any body (extensions.rst: pathsend "should behave the same as ordinary
        http.response.body")."""
        path = self._pathsend_path(message)
        loop = self.conn.loop
        try:
            file = await loop.run_in_executor(None, _open_regular, path)
        except OSError as exc:
            self._invalid(OSError(exc.errno, f"http.response.pathsend cannot open {path!r}: {exc.strerror}"))
        try:
            while True:
                chunk = await loop.run_in_executor(None, file.read, 256 << 10)
                if not chunk:
                    break
                await self.send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            file.close()
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    def _pathsend(self, message: Any) -> None:
        """``http.response.pathsend``: a RESPONSE_PATHSEND frame after a RESPONSE_START without body;
        the response is complete."""
        path = self._pathsend_path(message)
        try:
            frame = encode_response_pathsend(self.sid_enc, path)
        except UnicodeEncodeError:
            self._invalid(ValueError(
                f"http.response.pathsend 'path' is not valid UTF-8 (it cannot be sent to the gateway): {path!r}"))
        self._check_frame(frame, "http.response.pathsend path")
        conn = self.conn
        index = self._start_index
        if index is not None:
            # The start goes out alone, flagged: the gateway holds the head until the file is open
            # (a file it cannot open is a 500, as any failure before the first body).
            conn._out[index] = self.start_only_frame(True)
            conn._placeholders -= 1
        self._state = _COMPLETE
        self._queue(frame)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _trailers(self, message: Any) -> None:
        """The state after a final body whose start announced trailers: ``http.response.trailers``."""
        if self.disconnected:
            raise ClientDisconnected(f"the client of stream {self.sid} has disconnected")
        mtype = message["type"]
        if mtype != "http.response.trailers":
            if mtype == "http.response.early_hint" and self.flags & FLAG_EARLY_HINTS:
                return  # after the final body: too late, ignored (the server may ignore hints)
            self._invalid(RuntimeError(f"Expected ASGI message 'http.response.trailers', but got '{mtype}'."))
        headers = self._normalize_headers(message.get("headers", ()), "http.response.trailers")
        more = bool(message.get("more_trailers", False))
        frame = encode_response_trailers(self.sid_enc, headers, more)
        self._check_frame(frame, "http.response.trailers headers")
        if not more:
            self._state = _COMPLETE
            w = self._waiter
            if w is not None and not w.done():
                w.set_result(None)
        self._queue(frame)

    def _plain_headers(self, headers: Any) -> Any:
        """``headers`` (a list or tuple) as they are when every item is a plain (bytes, bytes) pair, a
        tuple or a list, which the packer takes as it is; else checked and made plain
        (:meth:`_normalize_headers`). (An item of another length does not unpack into two;
        ``x.__class__`` is cheaper than ``type(x)``, and an object lying about its class would only
        make the packer raise TypeError.)"""
        token, bad_value = _TOKEN.fullmatch, _BAD_VALUE.search
        try:
            for item in headers:
                cls = item.__class__
                if cls is tuple or cls is list:
                    name, value = item
                    if name.__class__ is bytes and value.__class__ is bytes and token(name) and not bad_value(value):
                        continue
                break
            else:
                return headers
        except ValueError:  # an item that does not unpack into two
            pass
        # (outside the try: the error it raises for the app is not caught and raised a second time)
        return self._normalize_headers(headers)

    def _normalize_headers(self, headers: Any, what: str = "http.response.start") -> list:
        """Headers that are not all plain ``(bytes, bytes)`` pairs, or not all valid: check them (raise
        for the first that is not a pair of bytes, or whose name or value is not valid field syntax,
        as the gateway would refuse them), return plain pairs."""
        if isinstance(headers, (str, bytes, bytearray, memoryview)):
            self._invalid(TypeError(f"{what} headers must be an iterable of [name, value] pairs, got {headers!r}"))
        try:
            items = iter(headers)
        except TypeError:
            self._invalid(TypeError(
                f"{what} headers must be an iterable of [name, value] pairs, got {type(headers).__name__}"))
        out = []
        for item in items:
            try:
                name, value = item
            except (TypeError, ValueError):
                pair = False
            else:
                pair = True
            if not pair:  # (raised here, not in the except: the app's error is not chained to the unpacking's)
                self._invalid(TypeError(f"{what} headers must be [name, value] pairs, got {item!r}"))
            for kind, x in (("name", name), ("value", value)):
                if not isinstance(x, bytes):
                    self._invalid(TypeError(f"{what} header {kind}s must be bytes, got {type(x).__name__} {x!r}"))
            if not _TOKEN.fullmatch(name):
                self._invalid(ValueError(
                    f"{what} header name {bytes(name)!r} is not a valid field name (RFC 9110 5.1: a token)"))
            if _BAD_VALUE.search(value):
                self._invalid(ValueError(
                    f"{what} header {bytes(name)!r} has an invalid value {bytes(value)!r} "
                    "(RFC 9110 5.5: no CR, LF, NUL or other control character but HTAB)"))
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


def bind_cycle(connection_class: type) -> None:
    """Let the C module's request-cycle steps work on :class:`RequestCycle`'s and
    ``connection_class``'s slots (connection.py calls this once its class exists)."""
    if speedups is not None:
        speedups.bind_cycle(RequestCycle, connection_class, {
            "NOT_STARTED": _NOT_STARTED,
            "STARTED": _STARTED,
            "COMPLETE": _COMPLETE,
            "FLAG_TRAILERS_ALLOWED": FLAG_TRAILERS_ALLOWED,
            "RING_MIN_PIECE": RING_MIN_PIECE,
            "FLAG_EXPECT_CONTINUE": FLAG_EXPECT_CONTINUE,
            "FLAG_SMALL_WINDOW": FLAG_SMALL_WINDOW,
            "SMALL_WINDOW": SMALL_WINDOW,
            "EXT_FLAGS": _EXT_FLAGS,
            "EXT_KEYS": _EXT_KEYS,
            "FLAG_TLS": FLAG_TLS,
        })


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    message = f"{name}: {text}" if text else name
    if len(message) > 4000:
        message = message[:3997] + "..."
    return message

