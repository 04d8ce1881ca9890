"""A fourth conformance pass over the real binary: HTTP/2 requests that RFC 9113 section 8 makes
malformed, and that x/net's server lets through or answers with the wrong error. "Malformed requests
or responses that are detected MUST be treated as a stream error of type PROTOCOL_ERROR" (RFC 9113
section 8.1.1); for a bad field "an implementation SHOULD generate a 400 (Bad Request)" instead
(section 8.2.1). Either way the app never gets the request as a complete, valid one.

* A field value may not start or end with SP or HTAB (section 8.2.1).
* "A request ... is also malformed if the value of a content-length header field does not equal the
  sum of the DATA frame payload lengths" (section 8.1.1): fewer bytes than declared, content-length
  on a request whose HEADERS end the stream, and content-length values that disagree or are not a
  number (RFC 9110 section 8.6).
* ":path" is "*" only for an OPTIONS request (section 8.3.1).
* Connection-specific fields make a message malformed (section 8.2.2), its trailers included.

Request trailers have no place in ASGI: well-formed ones end the body and are otherwise ignored.

The same rule of section 8.2.1 binds the server's own fields: an app's header, trailer or early-hint
link with whitespace around it (HTTP/1.1's optional whitespace) goes out over HTTP/2 without it, or a
client that checks what it receives (the h2 library does) fails the whole connection.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

from gateway_harness import APPS_DIR, TESTAPP_HEADERS, GatewayServer, app_count

PROTOCOL_ERROR = h2.errors.ErrorCodes.PROTOCOL_ERROR


@pytest.fixture(scope="module")
def h2c_server(module_servers: Any) -> GatewayServer:
    # faulty_app counts the requests it sees (/_/count) and hands the rest to testapp.
    return module_servers.start("faulty_app:app", app_dir=APPS_DIR, workers=1, extra_args=["--http2-cleartext"])


def request_headers(method: str, path: str, *fields: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    pseudo = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "localhost")]
    return [(name.encode(), value.encode()) for name, value in (*pseudo, *fields)]


def h2_request(
    server: GatewayServer,
    headers: list[tuple[bytes, bytes]],
    body: bytes | None = None,
    trailers: list[tuple[bytes, bytes]] | None = None,
) -> dict[str, Any]:
    """One request on stream 1 of a fresh h2c connection, sent as given (the h2 library's own checks
    off): {"status": ..., "body": ..., "reset": error code or None, "headers": the response's fields, "trailers": trailer fields or None}."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    config = h2.config.H2Configuration(
        client_side=True, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False
    )
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    conn.send_headers(1, headers, end_stream=body is None and trailers is None)
    if body is not None:
        conn.send_data(1, body, end_stream=trailers is None)
    if trailers is not None:
        conn.send_headers(1, trailers, end_stream=True)
    sock.sendall(conn.data_to_send())
    got: dict[str, Any] = {"status": None, "body": b"", "reset": None, "trailers": None, "headers": None}
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                raise AssertionError(f"connection closed before the stream ended: {got}")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    got["status"] = dict(event.headers)[b":status"].decode()
                    got["headers"] = event.headers
                elif isinstance(event, h2.events.DataReceived):
                    got["body"] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.TrailersReceived):
                    got["trailers"] = event.headers
                elif isinstance(event, h2.events.StreamReset):
                    got["reset"] = event.error_code
                    return got
                elif isinstance(event, h2.events.StreamEnded):
                    return got
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise AssertionError(f"connection error {event.error_code!r} for a malformed request: {got}")
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


def assert_malformed(got: dict[str, Any]) -> None:
    """A stream error PROTOCOL_ERROR, or a 400 (RFC 9113 sections 8.1.1 and 8.2.1)."""
    assert got["reset"] == PROTOCOL_ERROR or (got["reset"] is None and got["status"] == "400"), got


def body_messages(server: GatewayServer, key: str) -> list[dict[str, Any]]:
    """The receive() messages testapp's /_/long-poll got for its request body."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(f"GET /_/records?key={key} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        sock.close()
    records = json.loads(data.split(b"\r\n\r\n", 1)[1])
    return records[0]["messages"] if records else []


@pytest.mark.parametrize("value", [" leading", "trailing ", "trailing-tab\t", "\tleading-tab"])
def test_field_value_with_surrounding_whitespace_is_malformed(h2c_server: GatewayServer, value: str) -> None:
    before = app_count(h2c_server)
    got = h2_request(h2c_server, request_headers("GET", "/seen", ("x-padded", value)))
    assert_malformed(got)
    assert app_count(h2c_server) == before, "the app got a malformed request"


def test_field_value_with_inner_whitespace_is_served(h2c_server: GatewayServer) -> None:
    got = h2_request(h2c_server, request_headers("GET", "/seen", ("x-inner", "a b\tc")))
    assert got["status"] == "200" and got["reset"] is None, got
    assert ["x-inner", "a b\tc"] in json.loads(got["body"])["scope"]["headers"]


def test_content_length_above_the_data_is_a_protocol_error(h2c_server: GatewayServer) -> None:
    # The body ends (END_STREAM) 4 bytes short of content-length: malformed, a stream error
    # PROTOCOL_ERROR, and the app never sees the body complete.
    key = "cl-short"
    got = h2_request(h2c_server, request_headers("POST", f"/_/long-poll?key={key}", ("content-length", "10")), b"abcdef")
    assert got["reset"] == PROTOCOL_ERROR, got
    messages = body_messages(h2c_server, key)
    assert not any(m["type"] == "http.request" and m["more_body"] is False for m in messages), messages


def test_content_length_above_the_data_in_trailers_is_a_protocol_error(h2c_server: GatewayServer) -> None:
    key = "cl-short-trailers"
    headers = request_headers("POST", f"/_/long-poll?key={key}", ("content-length", "10"))
    got = h2_request(h2c_server, headers, b"abcdef", trailers=[(b"x-checksum", b"1")])
    assert got["reset"] == PROTOCOL_ERROR, got
    messages = body_messages(h2c_server, key)
    assert not any(m["type"] == "http.request" and m["more_body"] is False for m in messages), messages


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        ([("content-length", "5")], None),  # HEADERS end the stream: no content, yet 5 declared
        ([("content-length", "1"), ("content-length", "2")], b"x"),
        ([("content-length", "1"), ("content-length", "2")], None),
        ([("content-length", "abc")], None),
        ([("content-length", "+1")], b"x"),
    ],
    ids=["declared-without-data", "two-values", "two-values-no-data", "not-a-number", "signed"],
)
def test_bad_content_length_never_reaches_the_app(
    h2c_server: GatewayServer, fields: list[tuple[str, str]], body: bytes | None
) -> None:
    before = app_count(h2c_server)
    got = h2_request(h2c_server, request_headers("POST", "/seen", *fields), body)
    assert_malformed(got)
    assert app_count(h2c_server) == before, "the app got a malformed request"


def test_matching_content_length_is_served(h2c_server: GatewayServer) -> None:
    got = h2_request(h2c_server, request_headers("POST", "/_/echo", ("content-length", "6")), b"abcdef")
    assert (got["status"], got["body"], got["reset"]) == ("200", b"abcdef", None)
    got = h2_request(h2c_server, request_headers("GET", "/seen", ("content-length", "0")))
    assert (got["status"], got["reset"]) == ("200", None)


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_asterisk_path_outside_options_is_malformed(h2c_server: GatewayServer, method: str) -> None:
    before = app_count(h2c_server)
    assert_malformed(h2_request(h2c_server, request_headers(method, "*")))
    assert app_count(h2c_server) == before, "the app got a malformed request"


def test_asterisk_path_of_options_is_served(h2c_server: GatewayServer) -> None:
    got = h2_request(h2c_server, request_headers("OPTIONS", "*"))
    assert got["status"] == "200" and got["reset"] is None, got
    scope = json.loads(got["body"])["scope"]
    assert (scope["method"], scope["path"], scope["raw_path"]) == ("OPTIONS", "*", "*")


def test_request_trailers_end_the_body_and_are_ignored(h2c_server: GatewayServer) -> None:
    # ASGI has no request trailers: the body is complete when they come, and they are not headers.
    headers = request_headers("POST", "/seen")
    got = h2_request(h2c_server, headers, b"abc", trailers=[(b"x-checksum", b"1")])
    assert got["status"] == "200" and got["reset"] is None, got
    seen = json.loads(got["body"])
    assert seen["body_size"] == 3 and seen["messages"][-1]["more_body"] is False, seen["messages"]
    assert not any(name == "x-checksum" for name, _ in seen["scope"]["headers"])


@pytest.mark.parametrize(
    "trailer",
    [(b"connection", b"close"), (b"transfer-encoding", b"chunked"), (b"x-padded", b" value")],
    ids=["connection", "transfer-encoding", "padded-value"],
)
def test_malformed_request_trailers_are_a_protocol_error(h2c_server: GatewayServer, trailer: tuple[bytes, bytes]) -> None:
    key = "bad-trailer-" + trailer[0].decode()
    got = h2_request(h2c_server, request_headers("POST", f"/_/long-poll?key={key}"), b"abc", trailers=[trailer])
    assert got["reset"] == PROTOCOL_ERROR, got
    messages = body_messages(h2c_server, key)
    assert not any(m["type"] == "http.request" and m["more_body"] is False for m in messages), messages


def test_response_field_values_go_out_without_surrounding_whitespace(module_servers: Any) -> None:
    server = module_servers.start("ext_app:app", app_dir=APPS_DIR, workers=1, extra_args=["--http2-cleartext"])
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    # The h2 library's default: received fields are validated (RFC 9113 section 8.2.1).
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", "/padded"), (":scheme", "http"), (":authority", "t"),
                          ("te", "trailers")], end_stream=True)
    sock.sendall(conn.data_to_send())
    got: dict[str, Any] = {"hints": [], "headers": None, "body": b"", "trailers": None}
    try:
        done = False
        while not done:
            data = sock.recv(65536)
            assert data, f"connection closed early: {got}"
            for event in conn.receive_data(data):  # raises ProtocolError on a padded value
                if isinstance(event, h2.events.InformationalResponseReceived):
                    got["hints"].append(dict(event.headers))
                elif isinstance(event, h2.events.ResponseReceived):
                    got["headers"] = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    got["body"] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.TrailersReceived):
                    got["trailers"] = dict(event.headers)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    assert isinstance(event, h2.events.StreamEnded), (event, got)
                    done = True
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    assert [h.get("link") for h in got["hints"]] == ["</style.css>; rel=preload"], got
    assert got["headers"][":status"] == "200" and got["headers"]["x-padded"] == "value", got
    assert got["body"] == b"body"
    assert got["trailers"] == {"x-checksum": "abc123"}, got


def test_connect_is_501_as_over_http11(h2c_server: GatewayServer) -> None:
    # RFC 9110 9.3.6: CONNECT asks for a tunnel, a proxy's job; an origin server may answer 501
    # (HTTP/1.1 does). A 405 would need an Allow field (15.5.6) listing methods only the app knows.
    before = app_count(h2c_server)
    headers = [(b":method", b"CONNECT"), (b":authority", b"example.com:443")]
    got = h2_request(h2c_server, headers)
    assert got["status"] == "501", got
    assert app_count(h2c_server) == before  # never reached the app


APP_ORDER = TESTAPP_HEADERS


@pytest.mark.parametrize("status", ["200", "418"])
def test_response_fields_keep_the_apps_order(h2c_server: GatewayServer, status: str) -> None:
    """www.rst, Response Start, headers: "Order must be preserved in the HTTP response." Over HTTP/2
    too, though x/net's server writes a header map sorted by name: the gateway's guard puts the
    fields back in the app's order (testapp's /_/headers: names out of order, set-cookie and x-dup
    twice, apart), and its order field never reaches the client."""
    got = h2_request(h2c_server, request_headers("GET", f"/_/headers?status={status}"))
    assert (got["status"], got["body"], got["reset"]) == (status, b"headers", None)
    names = {name for name, _ in APP_ORDER}
    assert [(n, v) for n, v in got["headers"] if n in names] == APP_ORDER
    assert got["headers"][0] == (b":status", status.encode())
    assert not any(n.startswith(b"asgi-gateway") for n, _ in got["headers"])


def test_header_option_fields_of_the_apps_names_keep_the_order(module_servers: Any) -> None:
    """A --header field of a name the app sends too (set-cookie, twice in testapp's /_/headers) goes
    where HTTP/1.1 puts it, after the gateway's server and date and before the app's fields, which
    keep their order (probe 57: the default took the app's first place)."""
    server = module_servers.start("faulty_app:app", app_dir=APPS_DIR, workers=1,
                                  extra_args=["--http2-cleartext", "--header", "set-cookie: default=1"])
    got = h2_request(server, request_headers("GET", "/_/headers"))
    assert (got["status"], got["body"], got["reset"]) == ("200", b"headers", None)
    fields = [(n, v) for n, v in got["headers"] if n != b"date"]
    assert fields == [(b":status", b"200"), (b"server", b"asgi-gateway"), (b"set-cookie", b"default=1")] + APP_ORDER
    assert [n for n, _ in got["headers"]][:4] == [b":status", b"server", b"date", b"set-cookie"]
