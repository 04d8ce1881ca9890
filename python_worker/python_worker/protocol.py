"""The worker protocol's wire format (protocol/SPEC.md, version 1): constants and frame codec.

This module owns the bytes: frame type numbers, flags, END outcomes, the length-prefixed framing and
the canonical msgpack encoding of every frame (the way ``msgpack.packb(obj, use_bin_type=True)`` writes
it, SPEC §2), and strict decoding of incoming payloads: a payload that is not exactly one array of the
right arity and field types raises :class:`ProtocolError`. It knows nothing about asyncio or ASGI.

Decoded frames are tuples (msgpack arrays are unpacked with ``use_list=False``): headers arrive as a
tuple of ``(bytes, bytes)`` tuples, ``client``/``server`` as ``(host, port)`` tuples or ``None``. An
HTTP_REQUEST or WS_CONNECT with flag TLS has one more item at the end, the tls item
``(tls_version, cipher_suite, client_cert_chain, client_cert_name, client_cert_error)``.

The hot-path frames (HTTP_REQUEST without the tls item, REQUEST_BODY, REQUEST_BODY_RING, CREDIT and
WS_RECEIVE) are decoded by the optional C module :mod:`python_worker._speedups` when it was built
(``decode_fast``: the same tuples, the same checks; anything else it leaves to the Python code here),
which also packs a response's plain header pairs (``pack_headers``), the head of a WS_SEND
(``ws_send_parts``) and a RESPONSE_BODY_RING (``response_body_ring``).
``PYTHON_WORKER_PURE=1`` in the environment makes the worker use the Python code only.

The encoders used on the hot path (``*_parts``) return the frame as a few ``bytes`` pieces, so that a
large body is never copied into a msgpack buffer: the caller joins them (once, when it writes). The
plain ``encode_*`` functions return the whole frame (4-byte length prefix and payload).
"""

from __future__ import annotations

import functools
import os
import struct
from typing import Any, Callable, Iterable, Sequence

import msgpack

__all__ = [
    "PROTOCOL_VERSION",
    "DEFAULT_MAX_FRAME",
    "DEFAULT_WINDOW",
    "FRAME_OVERHEAD",
    "HELLO",
    "HTTP_REQUEST",
    "REQUEST_BODY",
    "DISCONNECT",
    "CREDIT",
    "PING",
    "W_HELLO",
    "RESPONSE_START",
    "RESPONSE_BODY",
    "W_CREDIT",
    "END",
    "PONG",
    "WS_CONNECT",
    "WS_RECEIVE",
    "WS_DISCONNECT",
    "SHUTDOWN",
    "CANCEL",
    "REQUEST_BODY_RING",
    "WS_ACCEPT",
    "WS_SEND",
    "WS_CLOSE",
    "RESPONSE_TRAILERS",
    "RESPONSE_PATHSEND",
    "EARLY_HINT",
    "RESPONSE_BODY_RING",
    "FLAG_EXPECT_CONTINUE",
    "FLAG_TRAILERS_ALLOWED",
    "FLAG_PATHSEND",
    "FLAG_EARLY_HINTS",
    "FLAG_TLS",
    "FLAG_TRAILERS",
    "FLAG_NO_BODY_YET",
    "OUTCOME_OK",
    "OUTCOME_APP_ERROR",
    "OUTCOME_NO_RESPONSE",
    "ProtocolError",
    "decode",
    "decode_fast",
    "speedups",
    "pack_headers",
    "decode_py",
    "encode",
    "frame",
    "read_length",
    "bin_header",
    "pack_uint",
    "encode_hello_worker",
    "encode_hello_error",
    "encode_response_start",
    "response_start_head",
    "response_start_parts",
    "encode_response_body",
    "response_body_parts",
    "encode_credit",
    "encode_end",
    "encode_pong",
    "encode_ws_accept",
    "ws_send_parts",
    "encode_ws_send",
    "encode_ws_close",
    "encode_response_trailers",
    "encode_response_pathsend",
    "encode_early_hint",
    "encode_response_body_ring",
    "response_body_ring",
]

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB, SPEC §1
DEFAULT_WINDOW = 262144  # SPEC §3, HELLO map
FRAME_OVERHEAD = 64  # a body piece is at most min(window, max_frame - FRAME_OVERHEAD), SPEC §4

# Gateway -> worker
HELLO = 0x01
HTTP_REQUEST = 0x02
REQUEST_BODY = 0x03
DISCONNECT = 0x04
CREDIT = 0x05
PING = 0x06
WS_CONNECT = 0x07
WS_RECEIVE = 0x08
WS_DISCONNECT = 0x09
SHUTDOWN = 0x0A
CANCEL = 0x0B
REQUEST_BODY_RING = 0x0C  # REQUEST_BODY with the body in the body ring, SPEC §6
# Worker -> gateway
W_HELLO = 0x11
RESPONSE_START = 0x12
RESPONSE_BODY = 0x13
W_CREDIT = 0x14
END = 0x15
PONG = 0x16
WS_ACCEPT = 0x17
WS_SEND = 0x18
WS_CLOSE = 0x19
RESPONSE_TRAILERS = 0x1A
RESPONSE_PATHSEND = 0x1B
EARLY_HINT = 0x1C
RESPONSE_BODY_RING = 0x1D  # RESPONSE_BODY with the body in the body ring, SPEC §6

FRAME_NAMES = {
    HELLO: "HELLO",
    HTTP_REQUEST: "HTTP_REQUEST",
    REQUEST_BODY: "REQUEST_BODY",
    DISCONNECT: "DISCONNECT",
    CREDIT: "CREDIT",
    PING: "PING",
    W_HELLO: "HELLO",
    RESPONSE_START: "RESPONSE_START",
    RESPONSE_BODY: "RESPONSE_BODY",
    W_CREDIT: "CREDIT",
    END: "END",
    PONG: "PONG",
    WS_CONNECT: "WS_CONNECT",
    WS_RECEIVE: "WS_RECEIVE",
    WS_DISCONNECT: "WS_DISCONNECT",
    SHUTDOWN: "SHUTDOWN",
    WS_ACCEPT: "WS_ACCEPT",
    WS_SEND: "WS_SEND",
    WS_CLOSE: "WS_CLOSE",
    CANCEL: "CANCEL",
    RESPONSE_TRAILERS: "RESPONSE_TRAILERS",
    RESPONSE_PATHSEND: "RESPONSE_PATHSEND",
    EARLY_HINT: "EARLY_HINT",
    REQUEST_BODY_RING: "REQUEST_BODY_RING",
    RESPONSE_BODY_RING: "RESPONSE_BODY_RING",
}

# HTTP_REQUEST flags
FLAG_EXPECT_CONTINUE = 1
FLAG_TRAILERS_ALLOWED = 2  # advertise http.response.trailers
FLAG_PATHSEND = 4  # advertise http.response.pathsend
FLAG_EARLY_HINTS = 8  # advertise http.response.early_hint
FLAG_TLS = 16  # HTTP_REQUEST and WS_CONNECT: a TLS connection; the frame ends with the tls item
FLAG_SMALL_WINDOW = 32  # HTTP_REQUEST: the response-body window starts at min(W, SMALL_WINDOW)
SMALL_WINDOW = 32 << 10
# RESPONSE_START flags
FLAG_TRAILERS = 1
FLAG_NO_BODY_YET = 2  # a start alone, before the app's first http.response.body: the gateway holds the head

# END outcomes
OUTCOME_OK = 0
OUTCOME_APP_ERROR = 1
OUTCOME_NO_RESPONSE = 2

_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_pack_u32 = _U32.pack
_unpack_u32_from = _U32.unpack_from

MAX_U32 = 0xFFFFFFFF
MAX_U64 = 0xFFFFFFFFFFFFFFFF


class ProtocolError(Exception):
    """The peer broke SPEC.md: the connection must be closed."""


# ---------------------------------------------------------------------------------------------------
# Framing


def frame(payload: bytes) -> bytes:
    """The frame for an encoded payload: 4-byte big-endian length, then the payload."""
    return _pack_u32(len(payload)) + payload


def read_length(data: bytes | bytearray | memoryview, offset: int, max_frame: int) -> int:
    """The payload length of the frame whose prefix starts at ``offset``, checked against the limit."""
    (length,) = _unpack_u32_from(data, offset)
    if length == 0 or length > max_frame:
        raise ProtocolError(f"frame length {length} is outside 1..{max_frame}")
    return length


# ---------------------------------------------------------------------------------------------------
# Encoding

_packer = msgpack.Packer(use_bin_type=True)
_pack = _packer.pack


def encode(value: Sequence[Any]) -> bytes:
    """Canonical frame (length prefix + msgpack payload) for any frame given as a list/tuple."""
    return frame(_pack(value))


def pack_uint(n: int) -> bytes:
    """Canonical msgpack encoding of a non-negative integer."""
    if n < 128:
        return _SMALL_INTS[n]
    return _pack(n)


_SMALL_INTS = [bytes((i,)) for i in range(128)]
_BIN8 = [b"\xc4" + bytes((i,)) for i in range(256)]


def bin_header(n: int) -> bytes:
    """Canonical msgpack ``bin`` header for ``n`` bytes (bin8, bin16 or bin32, SPEC §2)."""
    if n < 256:
        return _BIN8[n]
    if n < 65536:
        return b"\xc5" + _U16.pack(n)
    return b"\xc6" + _pack_u32(n)


_TRUE = b"\xc3"
_FALSE = b"\xc2"


def encode_hello_worker(pid: int, python: str, features: Iterable[str] = ()) -> bytes:
    """The worker's HELLO: ``[17, 0, {protocol, pid, python, features}]`` in SPEC key order."""
    return encode(
        [W_HELLO, 0, {"protocol": PROTOCOL_VERSION, "pid": pid, "python": python, "features": list(features)}]
    )


def encode_hello_error(pid: int, error: str) -> bytes:
    """The worker's HELLO when the app could not be loaded: ``{protocol, pid, error}``."""
    return encode([W_HELLO, 0, {"protocol": PROTOCOL_VERSION, "pid": pid, "error": _valid_text(error)}])


def response_start_head(sid_enc: bytes, status: int, headers: list, flags: int) -> bytes:
    """RESPONSE_START payload up to (not including) ``body``: ``97 12 sid status headers flags``.

    ``sid_enc`` is ``pack_uint(sid)``. Raises TypeError/ValueError (from msgpack) for values it
    cannot encode; the caller validates types first for readable messages.
    """
    # Packing a 3-array gives 0x93 + the items; the frame array has 7 items (0x97).
    items = _pack((status, headers, flags))
    return b"\x97\x12" + sid_enc + items[1:]


def response_start_parts(head: bytes, body: bytes, more_body: bool) -> list[bytes]:
    """Frame pieces of a RESPONSE_START whose head came from :func:`response_start_head`."""
    n = len(body)
    tail = _TRUE if more_body else _FALSE
    hdr = bin_header(n)
    if n < 4096:
        payload = head + hdr + body + tail
        return [_pack_u32(len(payload)) + payload]
    return [_pack_u32(len(head) + len(hdr) + n + 1) + head + hdr, body, tail]


def encode_response_start(
    sid: int, status: int, headers: list, flags: int = 0, body: bytes = b"", more_body: bool = True
) -> bytes:
    """Whole RESPONSE_START frame."""
    return b"".join(response_start_parts(response_start_head(pack_uint(sid), status, headers, flags), body, more_body))


def response_body_parts(sid_enc: bytes, body: bytes, more_body: bool) -> list[bytes]:
    """Frame pieces of ``[19, sid, body, more_body]``; a large body is its own piece (not copied)."""
    n = len(body)
    hdr = bin_header(n)
    tail = _TRUE if more_body else _FALSE
    if n < 4096:
        payload = b"\x94\x13" + sid_enc + hdr + body + tail
        return [_pack_u32(len(payload)) + payload]
    return [_pack_u32(2 + len(sid_enc) + len(hdr) + n + 1) + b"\x94\x13" + sid_enc + hdr, body, tail]


def encode_response_body(sid: int, body: bytes, more_body: bool) -> bytes:
    """Whole RESPONSE_BODY frame."""
    return b"".join(response_body_parts(pack_uint(sid), body, more_body))


def encode_credit(sid: int, increment: int) -> bytes:
    """W->G CREDIT ``[20, sid, increment]``: request-body window."""
    payload = b"\x93\x14" + pack_uint(sid) + pack_uint(increment)
    return _pack_u32(len(payload)) + payload


_END_OK_TAIL = b"\x00\xa0"  # outcome 0, message ""


def encode_end(sid_or_enc: int | bytes, outcome: int = OUTCOME_OK, message: str = "") -> bytes:
    """END ``[21, sid, outcome, message]``; ``sid_or_enc`` is the sid or ``pack_uint(sid)``."""
    sid_enc = sid_or_enc if isinstance(sid_or_enc, bytes) else pack_uint(sid_or_enc)
    if outcome == OUTCOME_OK and not message:
        payload = b"\x94\x15" + sid_enc + _END_OK_TAIL
    else:
        payload = b"\x94\x15" + sid_enc + pack_uint(outcome) + _pack(_valid_text(message))
    return _pack_u32(len(payload)) + payload


def encode_pong(token: int) -> bytes:
    """PONG ``[22, 0, token]``."""
    payload = b"\x93\x16\x00" + pack_uint(token)
    return _pack_u32(len(payload)) + payload


def encode_ws_accept(sid: int, subprotocol: str | None, headers: list) -> bytes:
    """WS_ACCEPT ``[23, sid, subprotocol | nil, headers]``."""
    return encode([WS_ACCEPT, sid, subprotocol, headers])


def _ws_send_parts_py(sid_enc: bytes, data: bytes | str) -> tuple[bytes, bytes, int]:
    """WS_SEND as two pieces to write one after the other: the frame's length prefix and every byte
    up to the message, then the message (``bytes`` as given, ``str`` as UTF-8); and the message's
    size in bytes (UTF-8 for text), which is what counts against the window. The message is not
    copied into a frame of its own: the connection's write joins (or gathers) the pieces once."""
    if type(data) is str:  # (per message: cheaper than isinstance)
        payload = data.encode("utf-8")
        size = len(payload)
        if size < 32:
            head = bytes((0xA0 | size,))
        elif size < 0x100:
            head = bytes((0xD9, size))
        elif size < 0x10000:
            head = b"\xda" + _U16.pack(size)
        else:
            head = b"\xdb" + _pack_u32(size)
    else:
        payload = data  # type: ignore[assignment]  # (bytes: mypy does not narrow by type() is)
        size = len(payload)
        head = bin_header(size)
    return _pack_u32(len(sid_enc) + len(head) + size + 2) + b"\x93\x18" + sid_enc + head, payload, size


def encode_ws_send(sid: int, data: bytes | str) -> bytes:
    """Whole WS_SEND frame."""
    head, payload, _ = ws_send_parts(pack_uint(sid), data)
    return head + payload


def encode_ws_close(sid: int, code: int, reason: str) -> bytes:
    """WS_CLOSE ``[25, sid, code, reason]``."""
    return encode([WS_CLOSE, sid, code, _valid_text(reason)])


def _sid_enc(sid_or_enc: int | bytes) -> bytes:
    return sid_or_enc if isinstance(sid_or_enc, bytes) else pack_uint(sid_or_enc)


def encode_response_trailers(sid_or_enc: int | bytes, headers: list, more_trailers: bool) -> bytes:
    """RESPONSE_TRAILERS ``[26, sid, headers, more_trailers]``; ``headers`` are ``(bytes, bytes)`` pairs."""
    payload = b"\x94\x1a" + _sid_enc(sid_or_enc) + _pack(headers) + (_TRUE if more_trailers else _FALSE)
    return _pack_u32(len(payload)) + payload


def encode_response_pathsend(sid_or_enc: int | bytes, path: str) -> bytes:
    """RESPONSE_PATHSEND ``[27, sid, path]``. ``path`` must be encodable as UTF-8 (the caller checks)."""
    payload = b"\x93\x1b" + _sid_enc(sid_or_enc) + _pack(path)
    return _pack_u32(len(payload)) + payload


def encode_early_hint(sid_or_enc: int | bytes, links: list) -> bytes:
    """EARLY_HINT ``[28, sid, links]``; ``links`` is a list of ``bytes`` (one Link header value each)."""
    payload = b"\x93\x1c" + _sid_enc(sid_or_enc) + _pack(links)
    return _pack_u32(len(payload)) + payload


def encode_response_body_ring(sid_or_enc: int | bytes, position: int, length: int, more_body: bool) -> bytes:
    """RESPONSE_BODY_RING ``[29, sid, position, length, more_body]``: a body piece in the ring (SPEC §6)."""
    payload = (b"\x95\x1d" + _sid_enc(sid_or_enc) + pack_uint(position) + pack_uint(length)
               + (_TRUE if more_body else _FALSE))
    return _pack_u32(len(payload)) + payload


def _valid_text(text: str) -> str:
    """``text`` made encodable as valid UTF-8 (lone surrogates escaped), SPEC §2."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


# ---------------------------------------------------------------------------------------------------
# Decoding


class _MapFound(Exception):
    pass


def _no_maps(_: Any) -> Any:
    raise _MapFound


# The classes of HTTP_REQUEST's sid, http_version, method, scheme, path, raw_path, query_string,
# root_path, headers, flags, body and more_body.
_HTTP_REQUEST_CLASSES = (int, str, str, str, str, bytes, bytes, str, tuple, int, bytes, bool)

# Maps are legal only in HELLO: the hot-path unpacker refuses them (so that no map can pass for a
# two-item array below); a payload with a map is unpacked again, and must then be a HELLO.
_unpackb = msgpack.unpackb
_unpack = functools.partial(msgpack.unpackb, raw=False, use_list=False, strict_map_key=True)


def decode_py(payload: bytes | memoryview) -> tuple:
    """Decode and validate one frame payload (without the length prefix), either direction.

    Returns the frame as a tuple ``(type, stream, field...)``. Raises :class:`ProtocolError` if the
    payload is not exactly one msgpack array of a known frame type with fields of the SPEC's types.
    """
    try:
        # (A direct call: through functools.partial it costs 0.15 µs more.)
        f = _unpackb(payload, raw=False, use_list=False, strict_map_key=True, object_hook=_no_maps)
    except _MapFound:
        f = _decode_with_map(payload)
    except Exception as exc:  # ExtraData, FormatError, StackError, UnicodeDecodeError, ValueError...
        raise ProtocolError(f"undecodable payload: {type(exc).__name__}: {exc}") from None
    n = len(f) if f.__class__ is tuple else 0
    if n < 2:
        raise ProtocolError(f"payload is not an array [type, stream, ...]: {_short(f)}")
    t = f[0]
    # Hot path, inlined: HTTP_REQUEST (15 items, 16 with the tls item of flag TLS). Values come from
    # msgpack: ``x.__class__ is T`` is an exact type check (and cheaper than ``type(x) is T``); the
    # fields of one type each are checked as one tuple of classes (one comparison instead of twelve).
    if t == 2 and t.__class__ is int and (n == 15 or n == 16):
        (_, sid, hv, method, scheme, path, raw_path, qs, root_path, headers, client, server, flags, body, more) = (
            f if n == 15 else f[:15]
        )
        if (
            (sid.__class__, hv.__class__, method.__class__, scheme.__class__, path.__class__, raw_path.__class__,
             qs.__class__, root_path.__class__, headers.__class__, flags.__class__, body.__class__, more.__class__)
            == _HTTP_REQUEST_CLASSES
            and 0 < sid <= MAX_U32
            and flags >= 0
            # FLAG_TLS (16) exactly when there is a tls item (a literal: no global lookup here)
            and (not flags & 16 if n == 15 else flags & 16 and _check_tls(f[15]) is None)
        ):
            # client [str, uint] | nil, server [str, uint | nil] | nil, and each header [bin, bin]:
            # anything but a two-item array either does not unpack into two or unpacks into items of
            # other types (no map can be here, see _no_maps; a str or bin of length 2 unpacks into
            # str or int items). ValueError leaves the fast path: the checks below say what is wrong.
            try:
                if client is not None:
                    host, port = client
                    if host.__class__ is not str or port.__class__ is not int or port < 0:
                        raise ValueError
                if server is not None:
                    host, port = server
                    if host.__class__ is not str or (port is not None and (port.__class__ is not int or port < 0)):
                        raise ValueError
                for name, value in headers:
                    if name.__class__ is not bytes or value.__class__ is not bytes:
                        break
                else:
                    return f
            except (TypeError, ValueError):
                pass
    elif t == 3 and t.__class__ is int and n == 4:  # REQUEST_BODY
        sid = f[1]
        if sid.__class__ is int and 0 < sid <= MAX_U32 and f[2].__class__ is bytes and f[3].__class__ is bool:
            return f
    elif t == 12 and t.__class__ is int and n == 5:  # REQUEST_BODY_RING
        sid = f[1]
        position = f[2]
        length = f[3]
        if (
            sid.__class__ is int
            and 0 < sid <= MAX_U32
            and position.__class__ is int
            and position >= 0  # (msgpack has no integer above MAX_U64)
            and length.__class__ is int
            and length >= 0
            and f[4].__class__ is bool
        ):
            return f
    elif t == 8 and t.__class__ is int and n == 3:  # WS_RECEIVE
        sid = f[1]
        data = f[2]
        if sid.__class__ is int and 0 < sid <= MAX_U32 and (data.__class__ is bytes or data.__class__ is str):
            return f
    elif t == 5 and t.__class__ is int and n == 3:  # CREDIT
        sid = f[1]
        increment = f[2]
        if sid.__class__ is int and 0 < sid <= MAX_U32 and increment.__class__ is int and increment >= 0:
            return f
    schema = _SCHEMAS.get(t) if type(t) is int else None
    if schema is None:
        raise ProtocolError(f"unknown frame type {_short(t)}")
    if t == HTTP_REQUEST or t == WS_CONNECT:
        _check_with_tls(f, schema)
    else:
        _check_schema(f, schema)
    return f


def _load_speedups() -> Any:
    """The C module python_worker._speedups, or None: not built, or ``PYTHON_WORKER_PURE`` is set
    (not "" or "0")."""
    if os.environ.get("PYTHON_WORKER_PURE", "") not in ("", "0"):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    return _speedups


#: the C module python_worker._speedups, or None (not built, or PYTHON_WORKER_PURE)
speedups = _load_speedups()

#: the C decoder of the hot-path frames (python_worker._speedups), or None
decode_fast = speedups.decode_fast if speedups is not None else None
#: head + msgpack of (bytes, bytes) header pairs + tail, in C (python_worker._speedups), or None
pack_headers = speedups.pack_headers if speedups is not None else None
#: RESPONSE_BODY_RING for an encoded stream id (:func:`encode_response_body_ring`), in C when it is built
response_body_ring: Callable[[bytes, int, int, bool], bytes] = (
    speedups.response_body_ring if speedups is not None else encode_response_body_ring)
#: WS_SEND as pieces (:func:`_ws_send_parts_py`), in C when it is built
ws_send_parts: Callable[[bytes, "bytes | str"], "tuple[bytes, bytes, int]"] = (
    speedups.ws_send_parts if speedups is not None else _ws_send_parts_py)


def decode(payload: bytes | memoryview) -> tuple:
    """Decode and validate one frame payload (without the length prefix), either direction: as
    :func:`decode_py`, through the C decoder first when there is one."""
    if decode_fast is not None:
        f = decode_fast(payload)
        if f is not None:
            return f
    return decode_py(payload)


def _decode_with_map(payload: bytes | memoryview) -> tuple:
    try:
        f = _unpack(payload)
    except Exception as exc:
        raise ProtocolError(f"undecodable payload: {type(exc).__name__}: {exc}") from None
    if type(f) is not tuple or len(f) < 2 or f[0] not in (HELLO, W_HELLO) or type(f[0]) is not int:
        raise ProtocolError(f"a map in a frame other than HELLO: {_short(f)}")
    return f


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def _is_uint(v: Any, limit: int = MAX_U64) -> bool:
    return type(v) is int and 0 <= v <= limit


def _check_sid(v: Any) -> str | None:
    return None if _is_uint(v, MAX_U32) and v != 0 else "a stream id (uint32, not 0)"


def _check_zero(v: Any) -> str | None:
    return None if type(v) is int and v == 0 else "0 (connection frame)"


def _check_uint(v: Any) -> str | None:
    return None if _is_uint(v) else "uint"


def _check_str(v: Any) -> str | None:
    return None if type(v) is str else "str"


def _check_bin(v: Any) -> str | None:
    return None if type(v) is bytes else "bin"


def _check_bool(v: Any) -> str | None:
    return None if type(v) is bool else "bool"


def _check_headers(v: Any) -> str | None:
    if type(v) is not tuple:
        return "[[bin, bin]...]"
    for h in v:
        if type(h) is not tuple or len(h) != 2 or type(h[0]) is not bytes or type(h[1]) is not bytes:
            return f"[[bin, bin]...] (item {_short(h)})"
    return None


def _check_client(v: Any) -> str | None:
    if v is None:
        return None
    if type(v) is tuple and len(v) == 2 and type(v[0]) is str and _is_uint(v[1]):
        return None
    return "[str, uint] or nil"


def _check_server(v: Any) -> str | None:
    if v is None:
        return None
    if type(v) is tuple and len(v) == 2 and type(v[0]) is str and (v[1] is None or _is_uint(v[1])):
        return None
    return "[str, uint or nil] or nil"


def _check_str_list(v: Any) -> str | None:
    if type(v) is tuple and all(type(x) is str for x in v):
        return None
    return "[str...]"


def _check_str_or_bin(v: Any) -> str | None:
    return None if type(v) is str or type(v) is bytes else "str or bin"


def _check_bin_list(v: Any) -> str | None:
    if type(v) is tuple and all(type(x) is bytes for x in v):
        return None
    return "[bin...]"


def _check_str_or_nil(v: Any) -> str | None:
    return None if v is None or type(v) is str else "str or nil"


def _check_tls(v: Any) -> str | None:
    if (
        v.__class__ is tuple
        and len(v) == 5
        and _is_uint(v[0], 0xFFFF)
        and _is_uint(v[1], 0xFFFF)
        and v[2].__class__ is tuple
        and all(c.__class__ is str for c in v[2])
        and (v[3] is None or v[3].__class__ is str)
        and (v[4] is None or v[4].__class__ is str)
    ):
        return None
    return ("[tls_version: uint16, cipher_suite: uint16, client_cert_chain: [str...], client_cert_name: str or nil, "
            "client_cert_error: str or nil]")


_HELLO_KEYS = {
    "protocol": _check_uint,
    "pid": _check_uint,
    "max_frame": _check_uint,
    "window": _check_uint,
    "worker_id": _check_uint,
    "server_cert": _check_str,
    "ring": _check_uint,
    "python": _check_str,
    "error": _check_str,
}


def _check_hello_map(v: Any) -> str | None:
    if type(v) is not dict:
        return "map"
    for key, value in v.items():
        if type(key) is not str:
            return f"map with str keys (key {_short(key)})"
        check = _HELLO_KEYS.get(key)
        if check is not None and check(value) is not None:
            return f"map whose {key!r} is {check(value)}"
        if key == "features" and not (type(value) is tuple and all(type(x) is str for x in value)):
            return "map whose 'features' is [str]"
    if "protocol" not in v:
        return "map with a 'protocol' key"
    return None


_SCHEMAS: dict[int, tuple[tuple[str, Any], ...]] = {
    HELLO: (("stream", _check_zero), ("hello", _check_hello_map)),
    HTTP_REQUEST: (
        ("stream", _check_sid),
        ("http_version", _check_str),
        ("method", _check_str),
        ("scheme", _check_str),
        ("path", _check_str),
        ("raw_path", _check_bin),
        ("query_string", _check_bin),
        ("root_path", _check_str),
        ("headers", _check_headers),
        ("client", _check_client),
        ("server", _check_server),
        ("flags", _check_uint),
        ("body", _check_bin),
        ("more_body", _check_bool),
    ),
    REQUEST_BODY: (("stream", _check_sid), ("body", _check_bin), ("more_body", _check_bool)),
    DISCONNECT: (("stream", _check_sid),),
    CREDIT: (("stream", _check_sid), ("increment", _check_uint)),
    PING: (("stream", _check_zero), ("token", _check_uint)),
    W_HELLO: (("stream", _check_zero), ("hello", _check_hello_map)),
    RESPONSE_START: (
        ("stream", _check_sid),
        ("status", _check_uint),
        ("headers", _check_headers),
        ("flags", _check_uint),
        ("body", _check_bin),
        ("more_body", _check_bool),
    ),
    RESPONSE_BODY: (("stream", _check_sid), ("body", _check_bin), ("more_body", _check_bool)),
    W_CREDIT: (("stream", _check_sid), ("increment", _check_uint)),
    END: (("stream", _check_sid), ("outcome", _check_uint), ("message", _check_str)),
    PONG: (("stream", _check_zero), ("token", _check_uint)),
    WS_CONNECT: (
        ("stream", _check_sid),
        ("http_version", _check_str),
        ("scheme", _check_str),
        ("path", _check_str),
        ("raw_path", _check_bin),
        ("query_string", _check_bin),
        ("root_path", _check_str),
        ("headers", _check_headers),
        ("client", _check_client),
        ("server", _check_server),
        ("subprotocols", _check_str_list),
        ("flags", _check_uint),
    ),
    WS_RECEIVE: (("stream", _check_sid), ("data", _check_str_or_bin)),
    WS_DISCONNECT: (("stream", _check_sid), ("code", _check_uint), ("reason", _check_str)),
    SHUTDOWN: (("stream", _check_zero), ("grace_ms", _check_uint)),
    WS_ACCEPT: (("stream", _check_sid), ("subprotocol", _check_str_or_nil), ("headers", _check_headers)),
    WS_SEND: (("stream", _check_sid), ("data", _check_str_or_bin)),
    WS_CLOSE: (("stream", _check_sid), ("code", _check_uint), ("reason", _check_str)),
    CANCEL: (("stream", _check_sid),),
    RESPONSE_TRAILERS: (("stream", _check_sid), ("headers", _check_headers), ("more_trailers", _check_bool)),
    RESPONSE_PATHSEND: (("stream", _check_sid), ("path", _check_str)),
    EARLY_HINT: (("stream", _check_sid), ("links", _check_bin_list)),
    REQUEST_BODY_RING: (
        ("stream", _check_sid), ("position", _check_uint), ("length", _check_uint), ("more_body", _check_bool)
    ),
    RESPONSE_BODY_RING: (
        ("stream", _check_sid), ("position", _check_uint), ("length", _check_uint), ("more_body", _check_bool)
    ),
}


# The index of ``flags`` in HTTP_REQUEST and WS_CONNECT (the same in both).
_FLAGS_INDEX = 12


def _check_with_tls(f: tuple, schema: tuple[tuple[str, Any], ...]) -> None:
    """HTTP_REQUEST and WS_CONNECT: the schema's items, then the tls item exactly when flag TLS is set."""
    name = FRAME_NAMES[f[0]]
    items = len(schema) + 1
    if len(f) == items + 1:
        _check_schema(f[:items], schema)
        if not f[_FLAGS_INDEX] & FLAG_TLS:
            raise ProtocolError(f"{name} frame has a tls item without flag TLS")
        expected = _check_tls(f[items])
        if expected is not None:
            raise ProtocolError(f"{name} frame: tls must be {expected}, got {_short(f[items])}")
        return
    if len(f) != items:
        raise ProtocolError(f"{name} frame has {len(f)} items, expected {items} ({items + 1} with flag TLS)")
    _check_schema(f, schema)
    if f[_FLAGS_INDEX] & FLAG_TLS:
        raise ProtocolError(f"{name} frame has flag TLS without the tls item")


def _check_schema(f: tuple, schema: tuple[tuple[str, Any], ...]) -> None:
    name = FRAME_NAMES[f[0]]
    if len(f) != len(schema) + 1:
        raise ProtocolError(f"{name} frame has {len(f)} items, expected {len(schema) + 1}")
    for (field, check), value in zip(schema, f[1:]):
        expected = check(value)
        if expected is not None:
            raise ProtocolError(f"{name} frame: {field} must be {expected}, got {_short(value)}")
