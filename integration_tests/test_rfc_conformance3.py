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
* Trailers (the http.response.trailers extension) never carry fields that must be processed before
  the content, such as content-length or host (RFC 9110 section 6.5.1), over HTTP/1.1 as over HTTP/2.
* The authority-form of request-target is for CONNECT only (RFC 9112 section 3.2.3): in a GET it is
  an invalid request-line, answered 400.
* No content in a response to HEAD (RFC 9110 section 9.3.2), the gateway's own refusals included.
"""

from __future__ import annotations

import socket
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from gateway_harness import APPS_DIR, GatewayServer, IncompleteResponse, app_count
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


# === response trailers ============================================================================


@pytest.fixture(scope="module")
def ext_server(module_servers: Any) -> GatewayServer:
    return module_servers.start("ext_app:app", app_dir=APPS_DIR, workers=1, extra_args=["--http2-cleartext"])


# RFC 9110 section 6.5.1: "A sender MUST NOT generate a trailer field unless the sender knows the
# corresponding header field name's definition permits the field to be sent in trailers" - no
# framing (content-length, transfer-encoding), routing (host), content format (content-type),
# authentication or control fields. The app's http.response.trailers (asgiref extensions.rst) may
# hold them; the gateway, the sender on the wire, leaves them out over HTTP/1.1 as over HTTP/2.
ALLOWED_TRAILERS = [("x-checksum", "abc123"), ("server-timing", "app;dur=1")]


def test_forbidden_trailer_fields_are_not_sent_over_http1(ext_server: GatewayServer) -> None:
    with ext_server.raw(timeout=10) as conn:
        conn.send(b"GET /trailers-forbidden HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\n")
        head = conn.read_head()
        assert head.status == 200 and head.header("transfer-encoding") == "chunked", head.head_bytes
        rest = conn.read_until(b"\r\n0\r\n") + conn.read_until(b"\r\n\r\n")
        assert rest.startswith(b"4\r\nbody\r\n0\r\n"), rest
        trailer_lines = rest[len(b"4\r\nbody\r\n0\r\n"):-4].split(b"\r\n")
        trailers = [tuple(line.decode().split(": ", 1)) for line in trailer_lines if line]
        assert trailers == ALLOWED_TRAILERS, rest
        assert conn.request("GET", "/_/extensions").status == 200  # the connection is in sync


def test_forbidden_trailer_fields_are_not_sent_over_http2(ext_server: GatewayServer) -> None:
    """The same response over h2c: the two protocols agree, in the fields and their order."""
    sock = socket.create_connection((ext_server.host, ext_server.port), timeout=10)
    h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    h2c.initiate_connection()
    h2c.send_headers(1, [(":method", "GET"), (":path", "/trailers-forbidden"), (":scheme", "http"),
                         (":authority", "t"), ("te", "trailers")], end_stream=True)
    sock.sendall(h2c.data_to_send())
    trailers: list[tuple[str, str]] | None = None
    body = b""
    ended = False
    try:
        while not ended:
            data = sock.recv(65536)
            assert data, "the connection closed before the stream ended"
            for event in h2c.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    body += event.data
                    h2c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.TrailersReceived):
                    trailers = [(k, v) for k, v in event.headers]
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError(f"stream reset: {event}")
            sock.sendall(h2c.data_to_send())
    finally:
        sock.close()
    assert body == b"body"
    assert trailers == ALLOWED_TRAILERS  # (in the app's order: extensions.rst, as for headers)


# === request-line =================================================================================


@pytest.fixture(scope="module")
def counting_server(module_servers: Any) -> GatewayServer:
    """faulty_app (counts the requests it sees; everything else is testapp), one worker."""
    return module_servers.start("faulty_app:app", app_dir=APPS_DIR, workers=1)


@pytest.mark.parametrize("target", ["example.com:80", "127.0.0.1:8000", "[::1]:443"])
def test_authority_form_outside_connect_is_a_bad_request(counting_server: GatewayServer, target: str) -> None:
    """RFC 9112 section 3.2.3: "The authority-form of request-target is only used for CONNECT
    requests"; in a GET it makes an invalid request-line, and "recipients of an invalid
    request-line SHOULD respond with either a 400 (Bad Request) error or a 301 (Moved
    Permanently) redirect" (section 3). 501 would say the server lacks a feature the request needs."""
    before = app_count(counting_server)
    with counting_server.raw(timeout=10) as conn:
        conn.send(f"GET {target} HTTP/1.1\r\nHost: example.com\r\n\r\n".encode())
        response = conn.read_response()
        assert response.status == 400, (response.status, response.head_bytes)
        assert conn.peer_closed(timeout=5)
    assert app_count(counting_server) == before  # the app never saw it (/_/count counts not itself)


# === HEAD =========================================================================================


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"HEAD /x HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"HEAD /x HTTP/1.1\r\nHost: t\r\nX-Bad : 1\r\n\r\n", 400),  # whitespace before the colon
        (b"HEAD /x HTTP/1.1\r\nHost: t\r\nExpect: something-else\r\n\r\n", 417),
        (b"HEAD example.com:80 HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        # A WebSocket upgrade must be a GET: the refusal is a response to a HEAD all the same.
        (b"HEAD /hold HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
    ],
    ids=["no-host", "space-before-colon", "unknown-expectation", "authority-form", "websocket-upgrade"],
)
def test_refused_head_request_gets_no_content(ws_server: GatewayServer, request_head: bytes, status: int) -> None:
    """RFC 9110 section 9.3.2: "the server MUST NOT send content in the response" to HEAD, and RFC
    9112 section 6.3: a response to HEAD ends with its header section, whatever its fields say. So
    the gateway's own refusals of a HEAD request end there too: bytes after them would be read by a
    client as the start of the next response."""
    with ws_server.raw(timeout=10) as conn:
        conn.send(request_head)
        response = conn.read_response("HEAD")
        assert response.status == status, (response.status, response.head_bytes)
        assert conn.peer_closed(timeout=5), f"content after the head of a response to HEAD: {conn.buffer!r}"
