"""One WebSocket stream: the ASGI ``websocket`` scope over WS_CONNECT ... END (SPEC §3, WebSocket frames).

This module owns the WebSocket side of a stream: the scope, ``receive`` (``websocket.connect``, then
``websocket.receive`` for each WS_RECEIVE, then ``websocket.disconnect``), ``send``
(``websocket.accept`` → WS_ACCEPT, ``websocket.send`` → WS_SEND, ``websocket.close`` → WS_CLOSE, and
the ``websocket.http.response`` extension before accept → RESPONSE_START/RESPONSE_BODY), the message
windows (SPEC: a message is sent while the window is positive and may take it below zero) and the END
outcome. The gateway does the handshake, framing, fragments, pings and permessage-deflate.

It reuses :class:`~python_worker.cycle.RequestCycle` for what the two share: the task and END, the
credit bookkeeping and the HTTP response path of the denial extension.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

from .cycle import (
    _CANCELLED,
    _COMPLETE,
    _EXT_FLAGS,
    _NOT_STARTED,
    CANCELLED,
    ClientDisconnected,
    RequestCycle,
    _describe,
    logger,
    tls_extension,
)
from .protocol import (
    FLAG_TLS,
    OUTCOME_APP_ERROR,
    OUTCOME_NO_RESPONSE,
    OUTCOME_OK,
    ProtocolError,
    encode_ws_accept,
    encode_ws_close,
    pack_uint,
    ws_send_parts,
)

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection

__all__ = ["WebSocketClosed", "WebSocketCycle"]

# WebSocket states
_CONNECTING = 0  # the handshake is not answered yet
_ACCEPTED = 1
_CLOSED = 2  # the app sent websocket.close (after accept, or before: a rejection)
_RESPONSE = 3  # the app answers the handshake with its own HTTP response (denial extension)

_ABNORMAL = 1006
_NO_STATUS = 1005  # websocket.close with this code: a close frame without a code (SPEC, WS_CLOSE)


class WebSocketClosed(ClientDisconnected, RuntimeError):
    """``send()`` after the app's own ``websocket.close``: the connection is closed, so an
    ``OSError`` (www.rst: a send on a closed connection raises "a server-specific subclass of
    OSError"), and the ``RuntimeError`` uvicorn raises for it, for apps that catch that."""


def _sendable(code: int) -> bool:
    """Whether an endpoint may send ``code`` in a close frame (RFC 6455 section 7.4 and the IANA
    registry): 1000-1003, 1007-1014 and 3000-4999."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class WebSocketCycle(RequestCycle):
    """The ASGI side of one WebSocket stream."""

    __slots__ = ("_ws", "_connect_pending", "_close_code", "_close_reason", "_offered")

    def __init__(self, conn: "Connection", f: tuple) -> None:  # noqa: PLW0231 - fields set here
        # f: a validated WS_CONNECT frame, with the tls item as a 14th under flag TLS; the scope is
        # built from it when the task starts (_make_scope).
        self.conn = conn
        self._frame: Optional[tuple] = f
        self.sid = sid = f[1]
        self.sid_enc = pack_uint(sid)
        self.scope = None
        self.task: Optional[asyncio.Task] = None
        self.flags = f[12] & ~_EXT_FLAGS  # the HTTP response extensions do not apply here
        self._req_window = conn.window
        self._body = None
        self._more_body = False
        self._chunks = None
        self._req_done = False
        self._init_stream_state(conn)
        self._ws = _CONNECTING
        self._connect_pending = True
        self._close_code = _ABNORMAL
        self._close_reason = ""
        self._offered: Sequence[str] = f[11]  # the client's subprotocols (the app may change the scope's copy)

    def _make_scope(self) -> Dict[str, Any]:
        """The ``websocket`` scope, from the WS_CONNECT frame (new dicts and lists per stream)."""
        f = self._frame
        assert f is not None  # (called once, by run)
        self._frame = None
        (_, _, http_version, scheme, path, raw_path, query_string, root_path, headers, client, server,
         subprotocols, flags) = f if len(f) == 13 else f[:13]
        extensions: Dict[str, Any] = {"websocket.http.response": {}}
        if flags & FLAG_TLS:
            extensions["tls"] = tls_extension(self.conn, f[13])
        scope = self.scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.5"},
            "http_version": http_version,
            "scheme": scheme,
            "server": server,
            "client": client,
            "root_path": root_path,
            "path": path,
            "raw_path": raw_path,
            "query_string": query_string,
            "headers": list(headers),
            "subprotocols": list(subprotocols),
            "state": self.conn.state.copy(),
            "extensions": extensions,
        }
        return scope

    # -----------------------------------------------------------------------------------------------
    # Events from the connection

    def on_ws_receive(self, data: Any) -> None:
        """A WS_RECEIVE frame: one whole message (``str`` text or ``bytes`` binary)."""
        if self.disconnected:
            raise ProtocolError(f"WS_RECEIVE for stream {self.sid} after WS_DISCONNECT")
        if self._req_window <= 0:
            raise ProtocolError(f"WS_RECEIVE for stream {self.sid} while its window is {self._req_window}")
        size = len(data) if type(data) is bytes or data.isascii() else len(data.encode("utf-8"))
        self._req_window -= size
        if self._ws != _ACCEPTED:
            return  # the app closed (or never accepted): nobody will receive it
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = deque()
        chunks.append((data, size))
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def on_ws_disconnect(self, code: int, reason: str) -> None:
        """A WS_DISCONNECT frame: the client closed or went away, or the gateway goes away."""
        if not self.disconnected:
            self._close_code = code
            self._close_reason = reason
        self.disconnected = True
        self._wake()

    def on_disconnect(self) -> None:
        self.on_ws_disconnect(_ABNORMAL, "")

    def on_body(self, body: bytes, more_body: bool) -> None:
        raise ProtocolError(f"REQUEST_BODY for stream {self.sid}, a WebSocket")

    # -----------------------------------------------------------------------------------------------
    # ASGI receive

    async def receive(self) -> dict:
        if self._connect_pending:
            self._connect_pending = False
            return {"type": "websocket.connect"}
        while True:
            chunks = self._chunks
            if chunks:
                data, size = chunks.popleft()
                self._consumed(size)
                if type(data) is bytes:
                    return {"type": "websocket.receive", "bytes": data}
                return {"type": "websocket.receive", "text": data}
            ws = self._ws
            if self.disconnected or ws == _CLOSED or (ws == _RESPONSE and self._state == _COMPLETE):
                return {"type": "websocket.disconnect", "code": self._close_code, "reason": self._close_reason}
            w = self._waiter
            if w is None or w.done():
                w = self._waiter = self.conn.loop.create_future()
            await w

    # -----------------------------------------------------------------------------------------------
    # ASGI send

    async def send(self, message: Any) -> None:
        mtype = message["type"]
        ws = self._ws
        if ws == _RESPONSE:
            if self._state == _COMPLETE:
                return  # after the denial response's final body: ignored
            if mtype != "websocket.http.response.body":
                self._invalid(RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body', but got '{mtype}'."))
            await RequestCycle.send(self, {
                "type": "http.response.body",
                "body": message.get("body", b""),
                "more_body": message.get("more_body", False),
            })
            return
        if self.disconnected:
            raise ClientDisconnected(f"the client of WebSocket stream {self.sid} has disconnected")
        if ws == _ACCEPTED:
            if mtype == "websocket.send":
                head, payload, size = self._message_parts(message)
                conn = self.conn
                if self._send_window <= 0 or conn._write_paused:
                    await self._wait_send_room()
                self._send_window -= size
                out = conn._out
                out.append(head)
                out.append(payload)
                if size >= 4096:
                    conn._big_parts = True  # written as its own piece, not copied (Connection._flush)
                conn.flush_sent(self)
            elif mtype == "websocket.close":
                self._close(message)
            else:
                self._invalid(RuntimeError(
                    f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{mtype}'."))
        elif ws == _CONNECTING:
            if mtype == "websocket.accept":
                self._accept(message)
            elif mtype == "websocket.close":
                self._close(message)
            elif mtype == "websocket.http.response.start":
                self._ws = _RESPONSE
                self._start(message)
            else:
                self._invalid(RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                    f"'websocket.http.response.start', but got '{mtype}'."))
        else:  # _CLOSED
            raise WebSocketClosed(f"Unexpected ASGI message '{mtype}', after sending 'websocket.close'.")

    def _accept(self, message: Any) -> None:
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and type(subprotocol) is not str:
            if not isinstance(subprotocol, str):
                self._invalid(TypeError(
                    f"websocket.accept 'subprotocol' must be a str or None, got {type(subprotocol).__name__}"))
            subprotocol = str.__str__(subprotocol)  # a str subclass (Django's SafeString) as a str
        if subprotocol and subprotocol not in self._offered:  # "" is none, as None
            # RFC 6455 section 4.2.2: the server selects one of the client's subprotocols, or none.
            self._invalid(ValueError(
                f"websocket.accept 'subprotocol' {subprotocol!r} was not offered by the client "
                f"(scope['subprotocols'] is {list(self._offered)!r})"))
        headers = self._normalize_headers(message.get("headers") or (), "websocket.accept")
        for name, _ in headers:
            if name.lower() == b"sec-websocket-protocol":
                # ASGI websocket.accept: "Must not include a header named sec-websocket-protocol; use
                # the subprotocol key instead." (It would bypass the offer check above, or repeat it.)
                self._invalid(ValueError(
                    "websocket.accept headers must not include sec-websocket-protocol: "
                    "use the 'subprotocol' key instead"))
        frame = encode_ws_accept(self.sid, subprotocol, headers)
        if len(frame) - 4 > self.conn.max_frame:
            self._invalid(ValueError("websocket.accept headers are too large for the frame limit"))
        self._ws = _ACCEPTED
        self._queue(frame)

    def _close(self, message: Any) -> None:
        code = message.get("code", 1000)
        if code is None:
            code = 1000
        reason = message.get("reason") or ""
        if type(code) is not int:
            if not isinstance(code, int) or isinstance(code, bool):
                self._invalid(TypeError(f"websocket.close 'code' must be an int 0..65535, got {code!r}"))
            code = int(code)  # an int subclass, such as an IntEnum of close codes
        if not 0 <= code <= 65535:
            self._invalid(TypeError(f"websocket.close 'code' must be an int 0..65535, got {code!r}"))
        if type(reason) is not str:
            if not isinstance(reason, str):
                self._invalid(TypeError(f"websocket.close 'reason' must be a str, got {type(reason).__name__}"))
            reason = str.__str__(reason)
        if reason and not reason.isascii():
            try:
                reason.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate: no UTF-8 for the close frame
                self._invalid(ValueError(f"websocket.close 'reason' is not valid Unicode text: {exc}"))
        if self._ws == _ACCEPTED:  # (before accept the code is not sent: the handshake gets a 403)
            if code == _NO_STATUS:
                if reason:
                    self._invalid(ValueError(
                        "websocket.close with code 1005 (a close frame without a code) cannot have a reason"))
            elif not _sendable(code):
                self._invalid(ValueError(
                    f"websocket.close 'code' {code} may not be sent in a close frame (RFC 6455 section 7.4): "
                    "use 1000-1003, 1007-1014 or 3000-4999, or 1005 for a close frame without a code"))
            self._close_code, self._close_reason = code, reason
        self._ws = _CLOSED
        self._queue(encode_ws_close(self.sid, code, reason[:2000]))
        self._wake()  # receive() gives websocket.disconnect; a send() waiting for room raises

    def _message_parts(self, message: Any) -> Tuple[bytes, bytes, int]:
        """A websocket.send message's WS_SEND frame, as ws_send_parts gives it, checked."""
        data = message.get("bytes")
        if data is None:
            data = message.get("text")
            if type(data) is not str:
                if not isinstance(data, str):
                    self._invalid(TypeError(
                        "websocket.send needs 'bytes' (bytes) or 'text' (str), got "
                        f"{type(data).__name__ if data is not None else 'neither'}"))
                data = str.__str__(data)  # a str subclass (Django's SafeString, whose str() is itself)
        elif type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                self._invalid(TypeError(f"websocket.send 'bytes' must be bytes, got {type(data).__name__}"))
            data = bytes(data)
        head, payload, size = ws_send_parts(self.sid_enc, data)
        if len(head) + size - 4 > self.conn.max_frame:
            self._invalid(ValueError(
                f"websocket.send message of {size} bytes does not fit the frame limit ({self.conn.max_frame})"))
        return head, payload, size

    async def _wait_send_room(self) -> None:
        """Wait until the message window is positive and the socket takes more (SPEC: a message is
        sent while the window is positive, and may take it below zero)."""
        conn = self.conn
        while self._send_window <= 0 or conn._write_paused:
            if conn._write_paused:
                await conn.drain()
            else:
                await self._wait_credit()  # raises ClientDisconnected
            if self.disconnected:
                raise ClientDisconnected(f"the client of WebSocket stream {self.sid} has disconnected")
            if self._ws != _ACCEPTED:
                # The app closed meanwhile (another task): the message cannot go out (www.rst: send()
                # on a closed connection raises an OSError subclass).
                raise ClientDisconnected(f"WebSocket stream {self.sid} was closed by the app")

    # -----------------------------------------------------------------------------------------------
    # END

    def _returned(self) -> Tuple[int, str]:
        if self._error is not None:
            if self._error is _CANCELLED:
                return OUTCOME_APP_ERROR, CANCELLED
            logger.error("ASGI callable sent an invalid message: %s", _describe(self._error))
            return OUTCOME_APP_ERROR, _describe(self._error)
        ws = self._ws
        if ws == _ACCEPTED or ws == _CLOSED or self.disconnected:
            return OUTCOME_OK, ""
        if ws == _RESPONSE:
            if self._state == _COMPLETE:
                return OUTCOME_OK, ""
            msg = "ASGI callable returned without completing response."
        else:
            msg = "ASGI callable returned without sending handshake."
        logger.error(msg)
        return OUTCOME_NO_RESPONSE, msg
