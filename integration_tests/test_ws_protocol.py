"""WebSockets end to end: the real binary, real workers, and integration_tests/apps/ws_app.py.

The expectations come from the ASGI WebSocket spec (asgiref ``specs/www.rst``, spec version 2.5) and
RFC 6455 (RFC 7692 for permessage-deflate); each test names the rule it checks where that is not
obvious. Handshake and frame-level checks use raw sockets (``RawConnection`` from gateway_harness
plus the small masked-frame client below); the rest uses the ``websockets`` client (sync API).

The app records what it observed (connect, messages, disconnect, exceptions) per ``?key=``; tests
read that back with ``GET /_/records?key=...`` — so every server here runs ``--workers 1``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import signal
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import ClientConnection, connect

from gateway_harness import APPS_DIR, GatewayServer, IncompleteResponse, RawConnection, RawResponse

APP = "ws_app:app"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

MiB = 1024 * 1024


# --- a small RFC 6455 client over RawConnection --------------------------------------------------


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def expected_accept(key: str) -> str:
    """Sec-WebSocket-Accept for key (RFC 6455 section 4.2.2, item 5.4)."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def mask_bytes(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    n = len(data)
    repeated = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, masked: bool = True, rsv: int = 0) -> bytes:
    """One frame as a client sends it: masked (RFC 6455 section 5.3) unless masked=False."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if masked:
        mask = os.urandom(4)
        return head + mask + mask_bytes(payload, mask)
    return head + payload


def close_payload(code: int | None, reason: str = "") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason.encode()


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes

    @property
    def close_code(self) -> int | None:
        assert self.opcode == OP_CLOSE, self
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        assert self.opcode == OP_CLOSE, self
        return self.payload[2:].decode("utf-8")


def read_frame(conn: RawConnection) -> Frame:
    b0, b1 = conn.read_exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", conn.read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", conn.read_exact(8))[0]
    masked = bool(b1 & 0x80)
    mask = conn.read_exact(4) if masked else b""
    payload = conn.read_exact(n)
    if masked:
        payload = mask_bytes(payload, mask)
    return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, masked, payload)


def read_data_frame(conn: RawConnection, seen: list[Frame] | None = None) -> Frame:
    """The next whole text/binary message as one Frame (fragments joined); control frames that come
    before or between its fragments go to seen."""
    first: Frame | None = None
    parts: list[bytes] = []
    while True:
        frame = read_frame(conn)
        assert not frame.masked, "a server must not mask its frames (RFC 6455 section 5.1)"
        if frame.opcode >= 0x8:
            assert frame.opcode != OP_CLOSE, f"closed: {frame.close_code} {frame.payload[2:]!r}"
            if seen is not None:
                seen.append(frame)
            continue
        if first is None:
            assert frame.opcode in (OP_TEXT, OP_BINARY), f"continuation frame without a message: {frame}"
            first = frame
        else:
            assert frame.opcode == OP_CONT, f"new message inside a fragmented one: {frame}"
        parts.append(frame.payload)
        if frame.fin:
            return Frame(True, first.rsv, first.opcode, False, b"".join(parts))


def read_close(conn: RawConnection, *, reply: bool = True) -> Frame:
    """Reads frames up to the server's close frame (data frames skipped); replies with a close frame
    as RFC 6455 section 5.5.1 requires (echoing the code) unless reply=False."""
    while True:
        frame = read_frame(conn)
        if frame.opcode == OP_CLOSE:
            assert not frame.masked
            if reply:
                try:
                    conn.send(encode_frame(OP_CLOSE, frame.payload[:2]))
                except OSError:
                    pass
            return frame


def upgrade_request(
    path: str,
    *,
    key: str | None = "auto",
    version: str | None = "13",
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
) -> tuple[bytes, str | None]:
    if key == "auto":
        key = new_key()
    lines = [f"{method} {path} HTTP/1.1", "Host: test.local", "Upgrade: websocket", "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    lines += [f"{name}: {value}" for name, value in headers]
    if method != "GET":
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key


def raw_open(
    server: GatewayServer, path: str, headers: Sequence[tuple[str, str]] = (), timeout: float = 10.0
) -> tuple[RawConnection, RawResponse]:
    """Connects, sends an upgrade request, reads the response head; asserts a correct 101."""
    conn = server.raw(timeout)
    request, key = upgrade_request(path, headers=headers)
    conn.send(request)
    response = conn.read_head()
    assert response.status == 101, (response.status, response.head_bytes, conn.buffer)
    assert response.header("sec-websocket-accept") == expected_accept(key or "")
    return conn, response


def ws_url(server: GatewayServer, path: str) -> str:
    return f"ws://{server.host}:{server.port}{path}"


def ws_connect(server: GatewayServer, path: str, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("open_timeout", 10)
    kwargs.setdefault("close_timeout", 5)
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("proxy", None)
    return connect(ws_url(server, path), **kwargs)


def get_records(server: GatewayServer, key: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/_/records", params={"key": key}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_record(server: GatewayServer, key: str, event: str, timeout: float = 10.0) -> dict[str, Any]:
    """The first record of the event for key, waiting for it up to timeout."""
    deadline = time.monotonic() + timeout
    while True:
        records = get_records(server, key)
        found = [r for r in records if r.get("event") == event]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {event!r} record for {key} within {timeout} s: {records}\n{server.stderr()[-3000:]}")
        time.sleep(0.05)


def new_key_name() -> str:
    return uuid.uuid4().hex[:12]


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def worker_pid(server: GatewayServer) -> int:
    response = httpx.get(f"{server.url}/_/pid", timeout=10)
    assert response.status_code == 200, response.text
    return int(response.text)


# --- servers ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws_server(module_servers: Any) -> GatewayServer:
    """ws_app with the defaults (16 MiB max size, permessage-deflate on, pings every 20 s)."""
    return module_servers.start(APP, app_dir=APPS_DIR, workers=1)


@pytest.fixture(scope="module")
def small_server(module_servers: Any) -> GatewayServer:
    """--ws-max-size 65536, permessage-deflate off."""
    return module_servers.start(
        APP, app_dir=APPS_DIR, workers=1, extra_args=["--ws-max-size", "65536", "--ws-per-message-deflate=false"]
    )


@pytest.fixture(scope="module")
def small_deflate_server(module_servers: Any) -> GatewayServer:
    """--ws-max-size 65536, permessage-deflate on."""
    return module_servers.start(APP, app_dir=APPS_DIR, workers=1, extra_args=["--ws-max-size", "65536"])


@pytest.fixture(scope="module")
def ping_server(module_servers: Any) -> GatewayServer:
    return module_servers.start(
        APP, app_dir=APPS_DIR, workers=1, extra_args=["--ws-ping-interval", "0.5", "--ws-ping-timeout", "0.5"]
    )


# === handshake ====================================================================================


def test_handshake_101_with_accept_key(ws_server: GatewayServer) -> None:
    conn = ws_server.raw()
    with conn:
        key = "dGhlIHNhbXBsZSBub25jZQ=="  # the RFC 6455 section 1.3 example
        request, _ = upgrade_request("/hold", key=key)
        conn.send(request)
        response = conn.read_head()
        assert response.status == 101
        assert response.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert response.header("upgrade").lower() == "websocket"
        assert "upgrade" in response.connection_tokens()
        # Nothing offered, nothing selected: no subprotocol, no extension (RFC 6455 section 4.2.2).
        assert response.header("sec-websocket-protocol") is None
        assert response.header("sec-websocket-extensions") is None
        assert response.header("content-length") is None and response.header("transfer-encoding") is None
        frame = read_data_frame(conn)
        assert (frame.opcode, frame.payload) == (OP_TEXT, b"ready")



def test_accept_key_survives_other_connections_meanwhile(ws_server: GatewayServer) -> None:
    """The 101's Sec-WebSocket-Accept comes from the request's key even when the app accepts late and
    other connections have sent their requests meanwhile (the gateway reads them into the read
    buffers that idle connections give back: none may still hold the waiting request's key)."""
    slow = []
    for _ in range(4):
        conn = ws_server.raw()
        request, key = upgrade_request("/accept?delay=0.5")
        conn.send(request)
        slow.append((conn, key))
    try:
        time.sleep(0.2)  # (the slow handshakes have reached the app, which waits)
        for _ in range(8):  # other clients, whose heads the gateway reads meanwhile
            conn, _ = raw_open(ws_server, "/accept")
            assert read_data_frame(conn).payload == b"accepted"
            conn.close()
        for conn, key in slow:
            response = conn.read_head()
            assert response.status == 101
            assert response.header("sec-websocket-accept") == expected_accept(key or "")
            assert read_data_frame(conn).payload == b"accepted"
    finally:
        for conn, _ in slow:
            conn.close()


def test_handshake_tokens_are_case_insensitive_lists(ws_server: GatewayServer) -> None:
    # RFC 6455 section 4.2.1: Upgrade "includes" websocket and Connection "includes" Upgrade, both
    # case-insensitively (browsers send "Connection: keep-alive, Upgrade").
    key = new_key()
    with ws_server.raw() as conn:
        conn.send(
            (
                "GET /hold HTTP/1.1\r\nHost: test.local\r\nUpgrade: WebSocket\r\n"
                "Connection: keep-alive, upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        response = conn.read_head()
        assert response.status == 101
        assert response.header("sec-websocket-accept") == expected_accept(key)
        assert read_data_frame(conn).payload == b"ready"


def test_frame_sent_with_the_upgrade_request_is_not_lost(ws_server: GatewayServer) -> None:
    # A client may send its first frames right after the request, in the same packet.
    with ws_server.raw() as conn:
        request, key = upgrade_request("/report")
        conn.send(request + encode_frame(OP_TEXT, b"early") + encode_frame(OP_BINARY, b"bird"))
        response = conn.read_head()
        assert response.status == 101
        assert json.loads(read_data_frame(conn).payload)["text"] == "early"
        report = json.loads(read_data_frame(conn).payload)
        assert (report["bytes_type"], report["size"]) == ("bytes", 4)


def test_upgrade_after_a_keep_alive_request(ws_server: GatewayServer) -> None:
    with ws_server.raw() as conn:
        response = conn.request("GET", "/_/pid")
        assert response.status == 200 and int(response.body) > 0
        request, key = upgrade_request("/report")
        conn.send(request)
        response = conn.read_head()
        assert response.status == 101
        assert response.header("sec-websocket-accept") == expected_accept(key or "")
        conn.send(encode_frame(OP_TEXT, b"upgraded"))
        assert json.loads(read_data_frame(conn).payload)["text"] == "upgraded"


def test_websocket_scope(ws_server: GatewayServer) -> None:
    key = new_key_name()
    target = f"/scope/caf%C3%A9%20x?key={key}&q=1&q=%20"
    extra = [
        ("X-Dup", "a"),
        ("X-Mixed-CASE", "Value Kept"),
        ("Sec-WebSocket-Protocol", "chat, superchat"),
        ("X-Dup", "b"),
        ("Sec-WebSocket-Protocol", "v3"),
    ]
    conn = ws_server.raw()
    with conn:
        request, ws_key = upgrade_request(target, headers=extra)
        conn.send(request)
        response = conn.read_head()
        assert response.status == 101
        assert response.header("sec-websocket-accept") == expected_accept(ws_key or "")
        # The app accepted without a subprotocol: the 101 must not carry one (RFC 6455 section 4.2.2).
        assert response.header("sec-websocket-protocol") is None
        data = json.loads(read_data_frame(conn).payload)
        scope, types, kinds = data["scope"], data["types"], data["kinds"]
        local_port = conn.local_port

    assert set(scope) >= {
        "type", "asgi", "http_version", "scheme", "path", "raw_path", "query_string", "root_path",
        "headers", "client", "server", "subprotocols", "state", "extensions",
    }
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope/café x" and types["path"] == "str"
    assert scope["raw_path"] == "/scope/caf%C3%A9%20x" and types["raw_path"] == "bytes"
    assert scope["query_string"] == f"key={key}&q=1&q=%20" and types["query_string"] == "bytes"
    assert scope["root_path"] == "" and types["root_path"] == "str"
    # Headers: every field, in order, names lower-cased, values as sent, duplicates kept, as bytes.
    assert scope["headers"] == [
        ["host", "test.local"],
        ["upgrade", "websocket"],
        ["connection", "Upgrade"],
        ["sec-websocket-key", ws_key],
        ["sec-websocket-version", "13"],
        ["x-dup", "a"],
        ["x-mixed-case", "Value Kept"],
        ["sec-websocket-protocol", "chat, superchat"],
        ["x-dup", "b"],
        ["sec-websocket-protocol", "v3"],
    ]
    assert kinds["items"]["headers"]["kind"] in ("list", "tuple")
    for pair in kinds["items"]["headers"]["items"]:
        assert pair["kind"] in ("list", "tuple") and pair["items"] == ["bytes", "bytes"]
    assert scope["client"] == ["127.0.0.1", local_port] and types["client"] == ["str", "int"]
    assert scope["server"] == ["127.0.0.1", ws_server.port] and types["server"] == ["str", "int"]
    assert scope["subprotocols"] == ["chat", "superchat", "v3"]
    assert types["subprotocols"] == ["str", "str", "str"]
    # state: a copy of the lifespan state the app filled in at startup.
    assert kinds["items"]["state"]["kind"] == "dict"
    assert scope["state"] == {"ws_app": "started"}
    assert kinds["items"]["extensions"]["kind"] == "dict"
    assert "websocket.http.response" in scope["extensions"]
    assert scope["extensions"]["websocket.http.response"] == {}
    assert "tls" not in scope["extensions"]  # ws, not wss
    # The app's first receive() was websocket.connect.
    connect_record = wait_record(ws_server, key, "connect")
    assert connect_record == {"event": "connect", "type": "websocket.connect", "keys": ["type"]}


def test_websocket_scope_with_root_path(module_servers: Any) -> None:
    server = module_servers.start(APP, app_dir=APPS_DIR, workers=1, extra_args=["--root-path", "/api"])
    with ws_connect(server, "/items/caf%C3%A9?x=1") as ws:
        scope = json.loads(ws.recv(timeout=5))["scope"]
    # As for http scopes (test_it_scope.py): path and raw_path are the full paths, root_path in front.
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/items/café"
    assert scope["raw_path"] == "/api/items/caf%C3%A9"
    assert scope["query_string"] == "x=1"


def test_websocket_over_unix_socket(servers: Any, short_tmp: Any) -> None:
    from websockets.sync.client import unix_connect

    path = str(short_tmp / "gw.sock")
    server = servers.start(APP, app_dir=APPS_DIR, workers=1, uds=path)
    with unix_connect(path, "ws://localhost/scope", open_timeout=10, proxy=None) as ws:
        scope = json.loads(ws.recv(timeout=5))["scope"]
        assert scope["server"] == [path, None]
        assert scope["client"] is None  # no peer address on a Unix socket (SPEC: nil)
        ws.send("x")
    assert scope["type"] == "websocket" and scope["scheme"] == "ws" and scope["path"] == "/scope"
    assert server.uds == path


def test_accept_with_subprotocol_echoes_it(ws_server: GatewayServer) -> None:
    conn, response = raw_open(
        ws_server, "/accept?subprotocol=superchat", headers=[("Sec-WebSocket-Protocol", "chat, superchat")]
    )
    with conn:
        assert response.header_list("sec-websocket-protocol") == ["superchat"]
        assert read_data_frame(conn).payload == b"accepted"
    with ws_connect(ws_server, "/accept?subprotocol=superchat", subprotocols=["chat", "superchat"]) as ws:
        assert ws.subprotocol == "superchat"
        assert ws.recv(timeout=5) == "accepted"


def test_accept_with_extra_headers(ws_server: GatewayServer) -> None:
    conn, response = raw_open(ws_server, "/accept?headers=1")
    with conn:
        extra = [(name.lower(), value) for name, value in response.headers if name.lower() in ("x-extra", "set-cookie")]
        assert extra == [("x-extra", "one"), ("set-cookie", "a=1"), ("set-cookie", "b=2")]
        assert response.header("upgrade").lower() == "websocket"
        assert read_data_frame(conn).payload == b"accepted"


def test_close_before_accept_is_403(ws_server: GatewayServer) -> None:
    # ASGI www.rst, websocket.close: "If this is sent before the socket is accepted, the server must
    # close the connection with a HTTP 403 error code (Forbidden), and not complete the handshake".
    with ws_server.raw(timeout=10) as conn:
        request, _ = upgrade_request("/close-before-accept")
        conn.send(request)
        response = conn.read_response()
        assert response.status == 403
        assert response.header("sec-websocket-accept") is None
    with pytest.raises(InvalidStatus) as excinfo:
        ws_connect(ws_server, "/close-before-accept")
    assert excinfo.value.response.status_code == 403


def test_http_response_extension_before_accept(ws_server: GatewayServer) -> None:
    with ws_server.raw(timeout=10) as conn:
        request, _ = upgrade_request("/http-response")
        conn.send(request)
        response = conn.read_response()
        assert response.status == 418
        assert response.header("x-denied") == "yes"
        assert response.header("content-type") == "text/plain"
        assert response.header("sec-websocket-accept") is None
        assert response.body == b"no entry"


@pytest.mark.parametrize("path", ["/raise-before-accept", "/return-before-accept"], ids=["raise", "return"])
def test_no_handshake_answer_is_500(ws_server: GatewayServer, path: str) -> None:
    started = time.monotonic()
    with ws_server.raw(timeout=10) as conn:
        request, _ = upgrade_request(path)
        conn.send(request)
        response = conn.read_response()
        assert response.status == 500
        assert response.header("sec-websocket-accept") is None
    assert time.monotonic() - started < 5  # answered, never a hang
    assert worker_pid(ws_server) > 0  # and the worker serves on


@pytest.mark.parametrize(
    ("case", "kwargs", "status"),
    [
        ("version-8", {"version": "8"}, 426),
        ("version-14", {"version": "14"}, 426),
        ("no-key", {"key": None}, 400),
        ("short-key", {"key": base64.b64encode(b"x" * 15).decode()}, 400),
        ("not-base64-key", {"key": "not a base64 key!!!!!!=="}, 400),
        ("post", {"method": "POST"}, None),
    ],
    ids=["version-8", "version-14", "no-key", "short-key", "not-base64-key", "post"],
)
def test_bad_upgrade_answered_by_the_gateway(ws_server: GatewayServer, case: str, kwargs: dict, status: int | None) -> None:
    key = new_key_name()
    with ws_server.raw(timeout=10) as conn:
        request, _ = upgrade_request(f"/hold?key={key}", **kwargs)
        conn.send(request)
        response = conn.read_response(kwargs.get("method", "GET"))
    if status is None:  # RFC 6455 section 4.2.1: GET required, "an appropriate error code"
        assert 400 <= response.status < 500, response.status
    else:
        assert response.status == status
    if status == 426:  # RFC 6455 section 4.2.2: the versions the server speaks
        assert response.header_list("sec-websocket-version") == ["13"]
    assert response.header("sec-websocket-accept") is None
    # The gateway answered: the app never saw these requests.
    assert get_records(ws_server, key) == []


# === messages =====================================================================================


def test_text_and_bytes_round_trip(ws_server: GatewayServer) -> None:
    key = new_key_name()
    messages: list[str | bytes] = ["héllo ✓", b"\x00\x01\xfe\xff", "", b"", "x" * 70000, bytes(range(256)) * 300]
    with ws_connect(ws_server, f"/echo?key={key}") as ws:
        for message in messages:
            ws.send(message)
            answer = ws.recv(timeout=10)
            assert type(answer) is type(message) and answer == message
    # websocket.receive: exactly one of text (str) / bytes (bytes) is set (ASGI www.rst).
    received = [r for r in get_records(ws_server, key) if r["event"] == "receive"]
    assert len(received) == len(messages)
    for rec, message in zip(received, messages):
        assert rec["type"] == "websocket.receive"
        if isinstance(message, str):
            assert (rec["text_type"], rec["bytes_type"]) == ("str", "NoneType"), rec
            assert rec["size"] == len(message.encode())
        else:
            assert (rec["text_type"], rec["bytes_type"]) == ("NoneType", "bytes"), rec
            assert rec["size"] == len(message)


def test_report_app_sees_exactly_one_of_text_and_bytes(ws_server: GatewayServer) -> None:
    conn, _ = raw_open(ws_server, "/report")
    with conn:
        conn.send(encode_frame(OP_TEXT, "ünïcode".encode()))
        report = json.loads(read_data_frame(conn).payload)
        assert report["type"] == "websocket.receive"
        assert (report["text_type"], report["bytes_type"], report["text"]) == ("str", "NoneType", "ünïcode")
        conn.send(encode_frame(OP_BINARY, b"\xff\x00"))
        report = json.loads(read_data_frame(conn).payload)
        assert (report["text_type"], report["bytes_type"], report["size"]) == ("NoneType", "bytes", 2)


def test_fragmented_messages_are_reassembled(ws_server: GatewayServer) -> None:
    text = "Hello wörld".encode()
    split = text.index("ö".encode()) + 1  # split inside the two-byte UTF-8 sequence of ö
    conn, _ = raw_open(ws_server, "/report")
    with conn:
        conn.send(
            encode_frame(OP_TEXT, text[:3], fin=False)
            + encode_frame(OP_CONT, text[3:split], fin=False)
            + encode_frame(OP_PING, b"mid-message")  # control frames may come between fragments (5.4)
            + encode_frame(OP_CONT, text[split:], fin=True)
        )
        controls: list[Frame] = []
        report = json.loads(read_data_frame(conn, controls).payload)
        assert (report["text_type"], report["bytes_type"], report["text"]) == ("str", "NoneType", "Hello wörld")
        assert [(f.opcode, f.payload) for f in controls] == [(OP_PONG, b"mid-message")]

        data = os.urandom(200_000)
        conn.send(
            encode_frame(OP_BINARY, data[:1], fin=False)
            + encode_frame(OP_CONT, data[1:100_000], fin=False)
            + encode_frame(OP_CONT, b"", fin=False)
            + encode_frame(OP_CONT, data[100_000:], fin=True)
        )
        report = json.loads(read_data_frame(conn).payload)
        assert (report["text_type"], report["bytes_type"]) == ("NoneType", "bytes")
        assert (report["size"], report["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize(
    "frames",
    [
        [encode_frame(OP_TEXT, b"caf\xc3")],  # truncated sequence
        [encode_frame(OP_TEXT, b"\xff\xfeabc")],
        [encode_frame(OP_TEXT, b"ok ", fin=False), encode_frame(OP_CONT, b"\xed\xa0\x80", fin=True)],  # surrogate
    ],
    ids=["truncated", "invalid-byte", "surrogate-in-fragment"],
)
def test_invalid_utf8_text_closes_1007(ws_server: GatewayServer, frames: list[bytes]) -> None:
    key = new_key_name()
    conn, _ = raw_open(ws_server, f"/hold?key={key}")
    with conn:
        assert read_data_frame(conn).payload == b"ready"
        conn.send(b"".join(frames))
        close = read_close(conn)
        assert close.close_code == 1007  # RFC 6455 sections 8.1 and 7.4.1
        assert conn.peer_closed(5)
    disconnect = wait_record(ws_server, key, "disconnect")
    assert disconnect["code"] == 1007


def test_unmasked_client_frame_closes_1002(ws_server: GatewayServer) -> None:
    key = new_key_name()
    conn, _ = raw_open(ws_server, f"/hold?key={key}")
    with conn:
        assert read_data_frame(conn).payload == b"ready"
        conn.send(encode_frame(OP_TEXT, b"not masked", masked=False))
        close = read_close(conn)
        assert close.close_code == 1002  # RFC 6455 section 5.1
        assert conn.peer_closed(5)
    wait_record(ws_server, key, "disconnect")
    assert [r for r in get_records(ws_server, key) if r["event"] == "receive"] == []



@pytest.mark.parametrize(
    ("data", "code"),
    [
        (encode_frame(OP_TEXT, b"x", rsv=4), 1002),  # RSV1 without a negotiated extension (5.2)
        (encode_frame(OP_TEXT, b"x", rsv=1), 1002),  # RSV3
        (encode_frame(0x3, b"x"), 1002),  # reserved non-control opcode
        (encode_frame(0xB, b"x"), 1002),  # reserved control opcode
        (encode_frame(OP_PING, b"x", fin=False), 1002),  # fragmented control frame (5.5)
        (encode_frame(OP_PING, b"p" * 126), 1002),  # control frame payload over 125 bytes (5.5)
        (encode_frame(OP_CONT, b"x"), 1002),  # continuation with nothing to continue (5.4)
        (encode_frame(OP_TEXT, b"a", fin=False) + encode_frame(OP_TEXT, b"b"), 1002),  # interleaved (5.4)
        (encode_frame(OP_CLOSE, b"\x03"), 1002),  # a one-byte close payload (5.5.1)
        (encode_frame(OP_CLOSE, close_payload(999)), 1002),  # close codes 0-999 are not used (7.4.2)
        (encode_frame(OP_CLOSE, close_payload(1005)), 1002),  # 1005/1006/1015 must not be sent (7.4.1)
        (encode_frame(OP_CLOSE, close_payload(1006)), 1002),
        (encode_frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),  # reason not UTF-8 (5.5.1)
        (bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 63) + os.urandom(4), 1002),  # 64-bit length MSB set (5.2)
    ],
    ids=[
        "rsv1", "rsv3", "opcode-3", "opcode-11", "fragmented-ping", "ping-126", "lone-continuation",
        "interleaved-data", "close-1-byte", "close-999", "close-1005", "close-1006", "close-reason-utf8",
        "length-msb",
    ],
)
def test_protocol_errors_close_with_the_rfc_code(ws_server: GatewayServer, data: bytes, code: int) -> None:
    key = new_key_name()
    conn, _ = raw_open(ws_server, f"/hold?key={key}")
    with conn:
        assert read_data_frame(conn).payload == b"ready"
        conn.send(data)
        close = read_close(conn)
        assert close.close_code == code
        assert conn.peer_closed(5)
    wait_record(ws_server, key, "disconnect")


def test_max_size_exceeded_closes_1009(small_server: GatewayServer) -> None:
    key = new_key_name()
    with ws_connect(small_server, f"/echo?key={key}", compression=None, max_size=None) as ws:
        ws.send(b"a" * 65536)  # exactly --ws-max-size: allowed
        assert ws.recv(timeout=10) == b"a" * 65536
        ws.send(b"b" * 65537)
        with pytest.raises(ConnectionClosed) as excinfo:
            ws.recv(timeout=10)
        assert excinfo.value.rcvd is not None and excinfo.value.rcvd.code == 1009
    assert wait_record(small_server, key, "disconnect")["code"] == 1009
    # The limit is on the message, not the frame: two fragments adding up to too much.
    conn, _ = raw_open(small_server, "/echo")
    with conn:
        conn.send(encode_frame(OP_BINARY, b"c" * 40000, fin=False) + encode_frame(OP_CONT, b"c" * 40000))
        assert read_close(conn).close_code == 1009


def test_max_size_applies_to_the_inflated_message(small_deflate_server: GatewayServer) -> None:
    # A compressed message is limited by its size after inflation: 1 MiB of zeros is about 1 KiB on
    # the wire.
    key = new_key_name()
    with ws_connect(small_deflate_server, f"/echo?key={key}", max_size=None) as ws:
        assert ws.protocol.extensions, "permessage-deflate was not negotiated"
        ws.send(bytes(65536))
        assert ws.recv(timeout=10) == bytes(65536)
        ws.send(bytes(MiB))
        with pytest.raises(ConnectionClosed) as excinfo:
            ws.recv(timeout=10)
        assert excinfo.value.rcvd is not None and excinfo.value.rcvd.code == 1009
    received = [r for r in get_records(small_deflate_server, key) if r["event"] == "receive"]
    assert [r["size"] for r in received] == [65536]


def test_many_messages_in_order(ws_server: GatewayServer) -> None:
    messages = [f"message {i}" if i % 3 else f"message {i}".encode() for i in range(2000)]
    with ws_connect(ws_server, "/echo", max_queue=None) as ws:
        for message in messages:
            ws.send(message)
        answers = [ws.recv(timeout=10) for _ in messages]
    assert answers == messages


def test_ping_is_answered_by_the_gateway_not_the_app(ws_server: GatewayServer) -> None:
    key = new_key_name()
    conn, _ = raw_open(ws_server, f"/report?key={key}")
    with conn:
        conn.send(encode_frame(OP_PING, b"are you there?"))
        pong = read_frame(conn)
        assert (pong.opcode, pong.payload, pong.masked) == (OP_PONG, b"are you there?", False)
        conn.send(encode_frame(OP_PING, b"") + encode_frame(OP_TEXT, b"after"))
        controls: list[Frame] = []
        report = json.loads(read_data_frame(conn, controls).payload)
        assert [(f.opcode, f.payload) for f in controls] == [(OP_PONG, b"")]
        assert report["text"] == "after"
    received = [r for r in get_records(ws_server, key) if r["event"] == "receive"]
    assert [r["text"] for r in received] == ["after"]


def test_large_message_both_ways(ws_server: GatewayServer) -> None:
    data = os.urandom(5 * MiB)
    text = ("é" * 1000 + "abc") * (5 * MiB // 2003)
    with ws_connect(ws_server, "/echo", max_size=None) as ws:
        ws.send(data)
        answer = ws.recv(timeout=30)
        assert isinstance(answer, bytes) and len(answer) == len(data) and answer == data
        ws.send(text)
        answer = ws.recv(timeout=30)
        assert isinstance(answer, str) and answer == text


def test_large_message_uncompressed(ws_server: GatewayServer) -> None:
    data = os.urandom(5 * MiB)
    with ws_connect(ws_server, "/echo", max_size=None, compression=None) as ws:
        ws.send(data)
        assert ws.recv(timeout=30) == data


def test_permessage_deflate_negotiated_by_default(ws_server: GatewayServer) -> None:
    conn, response = raw_open(
        ws_server, "/hold", headers=[("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]
    )
    with conn:
        extensions = response.header_list("sec-websocket-extensions")
        assert len(extensions) == 1 and extensions[0].split(";")[0].strip() == "permessage-deflate"
    text = "compress me " * 100_000
    with ws_connect(ws_server, "/echo", max_size=None) as ws:
        assert [type(e).__name__ for e in ws.protocol.extensions] == ["PerMessageDeflate"]
        ws.send(text)
        assert ws.recv(timeout=10) == text
        ws.send(text.encode())
        assert ws.recv(timeout=10) == text.encode()



@pytest.mark.parametrize(
    "factory_kwargs",
    [
        {},
        {"client_no_context_takeover": True},
        {"server_no_context_takeover": True},
        {"server_max_window_bits": 10},
        {"server_max_window_bits": 9, "client_max_window_bits": 9},
        {"client_max_window_bits": None},
    ],
    ids=["default", "client-no-context", "server-no-context", "server-window-10", "windows-9", "no-client-bits"],
)
def test_permessage_deflate_parameters(ws_server: GatewayServer, factory_kwargs: dict) -> None:
    # RFC 7692: whatever the server answers must be valid for the offer (websockets checks it), and
    # messages must inflate on both sides with the negotiated windows and context takeover.
    block = os.urandom(700).hex()  # repeats at distances over 1 KiB: far back-references
    messages: list[str | bytes] = [block * 20, block * 20, ("abc" * 50 + block) * 4, (block * 3).encode(), "z" * 100]
    with ws_connect(
        ws_server, "/echo", max_size=None, compression=None,
        extensions=[ClientPerMessageDeflateFactory(**factory_kwargs)],
    ) as ws:
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert negotiated is not None and negotiated.startswith("permessage-deflate")
        for message in messages:
            ws.send(message)
            assert ws.recv(timeout=10) == message
        ws.send(iter([block * 5, "-", block * 5]))  # one message in three compressed fragments
        assert ws.recv(timeout=10) == block * 5 + "-" + block * 5


def test_permessage_deflate_off(small_server: GatewayServer) -> None:
    conn, response = raw_open(
        small_server, "/hold", headers=[("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]
    )
    with conn:
        assert response.header("sec-websocket-extensions") is None
        frame = read_data_frame(conn)
        assert (frame.rsv, frame.payload) == (0, b"ready")
    with ws_connect(small_server, "/echo") as ws:
        assert ws.protocol.extensions == []
        ws.send("plain")
        assert ws.recv(timeout=10) == "plain"


# === closing ======================================================================================


@pytest.mark.parametrize(
    ("query", "payload"),
    [
        ("code=4001&reason=bye", struct.pack("!H", 4001) + b"bye"),
        ("code=1000", struct.pack("!H", 1000)),
        ("code=3000&reason=%C3%A9t%C3%A9", struct.pack("!H", 3000) + "été".encode()),
        ("", struct.pack("!H", 1000)),  # ASGI: code defaults to 1000, reason to ""
        ("code=4002&reason=none", struct.pack("!H", 4002)),  # reason None is ""
    ],
    ids=["4001-bye", "1000-no-reason", "3000-utf8-reason", "defaults", "reason-none"],
)
def test_app_close_reaches_the_client_exactly(ws_server: GatewayServer, query: str, payload: bytes) -> None:
    conn, _ = raw_open(ws_server, f"/close?{query}")
    with conn:
        close = read_close(conn)
        assert close.payload == payload
        assert conn.peer_closed(5)  # the server closes TCP after the closing handshake


def test_app_close_with_websockets_client(ws_server: GatewayServer) -> None:
    with ws_connect(ws_server, "/close?code=4001&reason=bye") as ws:
        with pytest.raises(ConnectionClosed) as excinfo:
            ws.recv(timeout=10)
    assert excinfo.value.rcvd is not None
    assert (excinfo.value.rcvd.code, excinfo.value.rcvd.reason) == (4001, "bye")



def test_app_close_reason_is_cut_to_fit_a_control_frame(ws_server: GatewayServer) -> None:
    # RFC 6455 section 5.5: a control frame's payload is at most 125 bytes; the reason must stay UTF-8.
    reason = "é" * 100  # 200 bytes
    conn, _ = raw_open(ws_server, f"/close?code=4000&reason={'%C3%A9' * 100}")
    with conn:
        close = read_close(conn)
        assert len(close.payload) <= 125
        assert close.close_code == 4000
        assert reason.startswith(close.close_reason)  # valid UTF-8 (close_reason decodes strictly)


def test_client_close_reaches_the_app(ws_server: GatewayServer) -> None:
    key = new_key_name()
    with ws_connect(ws_server, f"/hold?key={key}") as ws:
        assert ws.recv(timeout=5) == "ready"
        ws.close(code=4003, reason="client bye")
        assert ws.close_code == 4003  # the server echoed the code (RFC 6455 section 5.5.1)
    record = wait_record(ws_server, key, "disconnect")
    assert (record["code"], record["reason"]) == (4003, "client bye")
    assert record["keys"] == ["code", "reason", "type"]


def test_client_close_without_code_reaches_the_app_as_1005(ws_server: GatewayServer) -> None:
    key = new_key_name()
    conn, _ = raw_open(ws_server, f"/hold?key={key}")
    with conn:
        assert read_data_frame(conn).payload == b"ready"
        conn.send(encode_frame(OP_CLOSE, b""))
        close = read_close(conn, reply=False)
        assert close.close_code in (None, 1000)  # an empty close echoed (or a normal one)
        assert conn.peer_closed(5)
    record = wait_record(ws_server, key, "disconnect")
    assert record["code"] == 1005  # RFC 6455 section 7.1.5: no status code received


def test_abrupt_tcp_loss_is_1006_for_the_app(ws_server: GatewayServer) -> None:
    key = new_key_name()
    conn, _ = raw_open(ws_server, f"/hold?key={key}")
    assert read_data_frame(conn).payload == b"ready"
    conn.close()  # no close frame
    record = wait_record(ws_server, key, "disconnect")
    assert record["code"] == 1006  # RFC 6455 section 7.1.5: closed without a close frame


def test_app_returning_after_accept_closes_1000(ws_server: GatewayServer) -> None:
    conn, _ = raw_open(ws_server, "/return-after-accept")
    with conn:
        assert read_close(conn).close_code == 1000
        assert conn.peer_closed(5)


def test_app_raising_after_accept_closes_1011(ws_server: GatewayServer) -> None:
    conn, _ = raw_open(ws_server, "/raise-after-accept")
    with conn:
        assert read_close(conn).close_code == 1011
        assert conn.peer_closed(5)
    with ws_connect(ws_server, "/echo") as ws:  # the worker serves on
        ws.send("still alive")
        assert ws.recv(timeout=5) == "still alive"


def test_send_after_disconnect_raises_oserror(ws_server: GatewayServer) -> None:
    # ASGI www.rst (spec 2.4): send() after the connection closed raises an OSError subclass.
    key = new_key_name()
    with ws_connect(ws_server, f"/send-after-disconnect?key={key}") as ws:
        assert ws.recv(timeout=5) == "ready"
    record = wait_record(ws_server, key, "send-error")
    assert record["is_oserror"] is True, record
    assert wait_record(ws_server, key, "disconnect")["code"] == 1000


def test_worker_killed_closes_1011_and_service_resumes(servers: Any) -> None:
    server = servers.start(APP, app_dir=APPS_DIR, workers=1)
    old_pid = worker_pid(server)
    conn, _ = raw_open(server, "/hold")
    with conn:
        assert read_data_frame(conn).payload == b"ready"
        os.kill(old_pid, signal.SIGKILL)
        assert read_close(conn).close_code == 1011
        assert conn.peer_closed(5)
    deadline = time.monotonic() + 15
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with ws_connect(server, "/echo", open_timeout=5) as ws:
                ws.send("after the crash")
                assert ws.recv(timeout=5) == "after the crash"
            break
        except (OSError, InvalidStatus, ConnectionClosed) as exc:
            last_error = exc
            time.sleep(0.2)
    else:
        raise AssertionError(f"no WebSocket served after the worker died: {last_error!r}\n{server.stderr()[-3000:]}")
    assert worker_pid(server) != old_pid


def test_gateway_sigterm_closes_open_websockets_1012(servers: Any) -> None:
    server = servers.start(APP, app_dir=APPS_DIR, workers=1)
    key = new_key_name()
    conns = [raw_open(server, f"/hold?key={key}")[0] for _ in range(2)]
    try:
        for conn in conns:
            assert read_data_frame(conn).payload == b"ready"
        server.process.send_signal(signal.SIGTERM)
        for conn in conns:
            assert read_close(conn).close_code == 1012
            assert conn.peer_closed(5)
    finally:
        for conn in conns:
            conn.close()
    server.process.wait(15)
    # The apps got websocket.disconnect with 1012 too (SPEC WS_DISCONNECT; they log it).
    assert server.stderr().count(f"ws_app: /hold key={key} disconnect code=1012") == 2, server.stderr()[-3000:]



def test_many_concurrent_websockets_on_one_worker(ws_server: GatewayServer) -> None:
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            with ws_connect(ws_server, "/echo", max_size=None) as ws:
                for i in range(20):
                    message: str | bytes = f"client {n} message {i} " * (i + 1)
                    if i % 2:
                        message = message.encode()
                    ws.send(message)
                    assert ws.recv(timeout=10) == message
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []


# === backpressure =================================================================================


class Pump:
    """Sends count copies of one frame without blocking, tracking the exact number of bytes sent."""

    def __init__(self, sock: socket.socket, frame: bytes, count: int) -> None:
        self.sock, self.frame, self.count = sock, memoryview(frame), count
        self.total = len(frame) * count
        self.sent = 0

    def run(self, stall: float, deadline: float) -> bool:
        """Sends until done (True) or until the socket has not been writable for stall seconds (False)."""
        self.sock.setblocking(False)
        size = len(self.frame)
        while self.sent < self.total:
            if time.monotonic() > deadline:
                raise AssertionError(f"pump deadline: {self.sent} of {self.total} bytes sent")
            _, writable, _ = select.select([], [self.sock], [], stall)
            if not writable:
                return False
            offset = self.sent % size
            try:
                self.sent += self.sock.send(self.frame[offset:])
            except BlockingIOError:
                continue
        return True


def test_app_not_receiving_stalls_the_client_not_the_gateway_memory(ws_server: GatewayServer) -> None:
    key = new_key_name()
    conn, _ = raw_open(ws_server, f"/no-receive?key={key}")
    gateway_pid = ws_server.process.pid
    with conn:
        assert read_data_frame(conn).payload == b"ready"
        rss_before = vm_rss_kib(gateway_pid)
        pump = Pump(conn.sock, encode_frame(OP_BINARY, b"m" * MiB), 50)  # 50 MiB in 1 MiB messages
        started = time.monotonic()
        finished = pump.run(stall=2.0, deadline=started + 30)
        rss_stalled = vm_rss_kib(gateway_pid)
        assert not finished, "the client sent all 50 MiB to an app that never receives"
        assert pump.sent < 25 * MiB, f"{pump.sent / MiB:.1f} MiB went out before the client stalled"
        growth_mib = (rss_stalled - rss_before) / 1024
        assert growth_mib < 64, f"gateway RSS grew by {growth_mib:.1f} MiB"
        # It was backpressure, not a dead connection: once the app receives, the rest goes through.
        assert httpx.get(f"{ws_server.url}/_/open-gate", params={"key": key}).status_code == 200
        assert pump.run(stall=10.0, deadline=time.monotonic() + 30)
        conn.sock.setblocking(True)
        conn.sock.settimeout(10)
        conn.send(encode_frame(OP_CLOSE, close_payload(1000)))
        assert read_close(conn, reply=False).close_code == 1000
    record = wait_record(ws_server, key, "disconnect")
    assert (record["code"], record["messages"], record["size"]) == (1000, 50, 50 * MiB)


def test_client_not_reading_blocks_the_app_send(ws_server: GatewayServer) -> None:
    key = new_key_name()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.settimeout(10)
    sock.connect((ws_server.host, ws_server.port))
    conn = RawConnection(sock)
    with conn:
        request, ws_key = upgrade_request(f"/flood?key={key}&count=100&size={MiB}&seconds=3")
        conn.send(request)
        response = conn.read_head()
        assert response.status == 101
        # ... and never read again: after 3 s the app reports how many send() calls returned.
        record = wait_record(ws_server, key, "flood", timeout=15)
        assert record["finished"] is False
        assert record["sent_within"] < 20, record  # of 100 tried; the kernel buffers hold a few MiB
    # The client going away wakes the blocked send() with the OSError subclass.
    assert wait_record(ws_server, key, "flood-error")["cls"]


# === pings ========================================================================================


def test_unanswered_pings_disconnect_the_client(ping_server: GatewayServer) -> None:
    key = new_key_name()
    conn, _ = raw_open(ping_server, f"/hold?key={key}")
    started = time.monotonic()
    pings = 0
    with conn:
        assert read_data_frame(conn).payload == b"ready"
        try:
            while time.monotonic() - started < 10:
                frame = read_frame(conn)  # read, never answer
                if frame.opcode == OP_PING:
                    pings += 1
                elif frame.opcode == OP_CLOSE:
                    break
        except IncompleteResponse:
            pass
        elapsed = time.monotonic() - started
    assert pings >= 1
    assert elapsed < 4, f"still connected {elapsed:.1f} s after the pings went unanswered"
    record = wait_record(ping_server, key, "disconnect")
    assert record["code"] == 1006


def test_websockets_client_answering_pings_stays_connected(ping_server: GatewayServer) -> None:
    key = new_key_name()
    with ws_connect(ping_server, f"/echo?key={key}") as ws:
        time.sleep(3)  # six ping intervals
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
    assert wait_record(ping_server, key, "disconnect")["code"] == 1000


def test_backpressure_does_not_make_a_healthy_client_look_dead(ping_server: GatewayServer) -> None:
    # While the app does not receive, the gateway stops reading the client (backpressure), so it cannot
    # see the client's pongs either: that must not count as a dead peer (pings pause meanwhile).
    key = new_key_name()
    with ws_connect(ping_server, f"/no-receive?key={key}") as ws:
        assert ws.recv(timeout=5) == b"ready" or True  # the app's greeting, whatever its type
        sender = threading.Thread(target=lambda: [ws.send(b"m" * MiB) for _ in range(8)], daemon=True)
        sender.start()
        time.sleep(3)  # six ping intervals with reads paused
        assert httpx.get(f"{ping_server.url}/_/open-gate", params={"key": key}).status_code == 200
        sender.join(timeout=20)
        assert not sender.is_alive(), "the sends never completed after the app started receiving"
    records = get_records(ping_server, key)
    assert not any(r.get("event") == "disconnect" and r.get("code") == 1006 for r in records), records
