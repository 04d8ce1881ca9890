"""A third conformance pass over the real binary: rules of RFC 9110, RFC 9112 and RFC 6455 that the
other test files do not check, each test naming the rule it holds the gateway to.

* A WebSocket handshake is a GET; content in it "has no generally defined semantics" and may be
  refused "because of its potential as a request smuggling attack" (RFC 9110 section 9.3.1). Were it
  accepted, the bytes of that content would be read as the client's first WebSocket frames, and a
  proxy that forwards the request with its content would lose track of the connection. The gateway
  answers 400 and closes, and the app never sees the handshake.
* "If a server receives both an Upgrade and an Expect header field with the 100-continue
  expectation, the server MUST send a 100 (Continue) response before sending a 101 (Switching
  Protocols) response" (RFC 9110 section 7.8).
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway_harness import APPS_DIR, GatewayServer, IncompleteResponse
from test_ws_protocol import (
    OP_TEXT,
    encode_frame,
    expected_accept,
    get_records,
    new_key_name,
    read_data_frame,
    upgrade_request,
)


@pytest.fixture(scope="module")
def ws_server(module_servers: Any) -> GatewayServer:
    return module_servers.start("ws_app:app", app_dir=APPS_DIR, workers=1)


# === WebSocket handshakes =========================================================================


@pytest.mark.parametrize(
    ("framing", "content"),
    [
        ("Content-Length: 5", b"hello"),
        # A masked text frame "hi": what a smuggler would hide in the content.
        ("Content-Length: 8", encode_frame(OP_TEXT, b"hi")),
        ("Transfer-Encoding: chunked", b"5\r\nhello\r\n0\r\n\r\n"),
    ],
    ids=["content-length", "content-length-holding-a-frame", "chunked"],
)
def test_websocket_handshake_with_content_is_refused(ws_server: GatewayServer, framing: str, content: bytes) -> None:
    key = new_key_name()
    request, _ = upgrade_request(f"/echo?key={key}", headers=[tuple(framing.split(": ", 1))])  # type: ignore[list-item]
    with ws_server.raw(timeout=10) as conn:
        conn.send(request + content)
        try:
            response = conn.read_response()
        except IncompleteResponse as exc:
            raise AssertionError(f"no complete response; got {exc.partial!r}") from None
        assert response.status == 400, (response.status, response.head_bytes, response.body)
        assert response.header("sec-websocket-accept") is None
        assert conn.peer_closed(timeout=5), "the connection stayed open after the refusal"
    assert get_records(ws_server, key) == [], "the app saw a handshake the gateway refused"


def test_websocket_handshake_with_empty_content_length_is_accepted(ws_server: GatewayServer) -> None:
    """Content-Length: 0 is no content: the handshake goes through."""
    key = new_key_name()
    request, ws_key = upgrade_request(f"/echo?key={key}", headers=[("Content-Length", "0")])
    with ws_server.raw(timeout=10) as conn:
        conn.send(request)
        response = conn.read_head()
        assert response.status == 101, (response.status, response.head_bytes)
        assert response.header("sec-websocket-accept") == expected_accept(ws_key or "")
        conn.send(encode_frame(OP_TEXT, b"still a websocket"))
        assert read_data_frame(conn).payload == b"still a websocket"


def test_websocket_upgrade_with_expect_100_continue_sends_100_before_101(ws_server: GatewayServer) -> None:
    request, ws_key = upgrade_request("/echo", headers=[("Expect", "100-continue")])
    with ws_server.raw(timeout=10) as conn:
        conn.send(request)
        interim = conn.read_head()
        assert interim.status == 100, (interim.status, interim.head_bytes)
        response = conn.read_head()
        assert response.status == 101, (response.status, response.head_bytes)
        assert response.header("sec-websocket-accept") == expected_accept(ws_key or "")
        conn.send(encode_frame(OP_TEXT, b"after the 101"))
        assert read_data_frame(conn).payload == b"after the 101"
