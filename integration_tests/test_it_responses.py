"""Responses: status, headers, framing (RFC 9112 section 6), streaming, HEAD, 204/304, 100-continue."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from gateway_harness import TESTAPP_HEADERS, GatewayServer, RawConnection

APP_HEADERS = [(name.decode(), value.decode()) for name, value in TESTAPP_HEADERS]


def assert_connection_usable(conn: RawConnection) -> None:
    """The next request on the same connection gets a well-formed response (no stray bytes)."""
    response = conn.request("GET", "/_/pid")
    assert response.status == 200, response
    assert response.body.isdigit()


@pytest.mark.parametrize("status", [200, 201, 299, 418])
def test_status_and_header_order_and_duplicates(server: GatewayServer, status: int) -> None:
    with server.raw() as conn:
        response = conn.request("GET", f"/_/headers?status={status}")
        assert response.status == status
        app_names = {name for name, _ in APP_HEADERS}
        seen = [(name.lower(), value) for name, value in response.headers if name.lower() in app_names]
        assert seen == APP_HEADERS
        assert response.body == b"headers"
        assert_connection_usable(conn)


def test_two_set_cookie_headers_with_httpx(server: GatewayServer) -> None:
    response = httpx.get(f"{server.url}/_/headers")
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]
    assert response.cookies["a"] == "1" and response.cookies["b"] == "2"


def test_content_length_is_honoured(server: GatewayServer) -> None:
    with server.raw() as conn:
        response = conn.request("GET", "/_/length")
        assert response.status == 200
        assert response.header_list("content-length") == ["11"]
        assert response.header("transfer-encoding") is None
        assert response.framing == "length"
        assert response.body == b"hello world"
        assert_connection_usable(conn)


def test_chunked_when_the_app_gives_no_content_length(server: GatewayServer) -> None:
    with server.raw() as conn:
        response = conn.request("GET", "/_/stream?n=3&delay=0.05")
        assert response.status == 200
        assert response.header("content-length") is None
        assert [value.lower() for value in response.header_list("transfer-encoding")] == ["chunked"]
        assert response.framing == "chunked"
        assert response.body == b"piece 0\npiece 1\npiece 2\n"
        # The app's empty body messages must not produce a premature last chunk.
        assert response.chunk_sizes[-1] == 0
        assert all(size > 0 for size in response.chunk_sizes[:-1]), response.chunk_sizes
        assert_connection_usable(conn)


def test_transfer_encoding_header_from_the_app_is_ignored(server: GatewayServer) -> None:
    # Spec 2.5: "You may send a Transfer-Encoding header ..., but the server must ignore it."
    with server.raw() as conn:
        response = conn.request("GET", "/_/app-transfer-encoding")
        assert response.status == 200
        assert len(response.header_list("transfer-encoding")) <= 1
        assert response.body == b"plain bytes"
        assert_connection_usable(conn)


def test_streaming_is_flushed_per_body_message(server: GatewayServer) -> None:
    key = uuid.uuid4().hex
    with server.raw(timeout=8) as conn:
        conn.send(f"GET /_/gated?key={key} HTTP/1.1\r\nHost: test.local\r\n\r\n".encode())
        head = conn.read_head()
        assert head.status == 200
        # The app sent "first\n" and now waits for /_/open-gate: it must reach us before that.
        try:
            conn.read_until(b"first\n")
        except socket.timeout:
            pytest.fail("the first body message was not flushed to the client while the app waited")
        opened = httpx.get(f"{server.url}/_/open-gate?key={key}")
        assert opened.status_code == 200
        rest = conn.read_until(b"0\r\n\r\n")
        assert b"second\n" in rest, rest


def test_streaming_pieces_arrive_over_time(server: GatewayServer) -> None:
    arrivals: list[tuple[float, bytes]] = []
    started = time.monotonic()
    with httpx.stream("GET", f"{server.url}/_/stream?n=3&delay=0.6") as response:
        assert response.status_code == 200
        for piece in response.iter_raw():
            arrivals.append((time.monotonic() - started, piece))
    body = b"".join(piece for _, piece in arrivals)
    assert body == b"piece 0\npiece 1\npiece 2\n"
    first_time, first_piece = arrivals[0]
    assert first_piece.startswith(b"piece 0\n")
    assert first_time < 0.5, f"first piece came after {first_time:.2f} s, not streamed"
    assert arrivals[-1][0] >= 1.2
    assert len(arrivals) >= 3, arrivals


def test_head_response_has_headers_but_no_body(server: GatewayServer) -> None:
    get = httpx.get(f"{server.url}/_/head-body")
    assert get.content == b"this body is not sent for HEAD"
    with server.raw() as conn:
        response = conn.request("HEAD", "/_/head-body")
        assert response.status == 200
        assert response.header("content-length") == str(len(get.content))
        assert response.header("content-type") == "text/plain; charset=utf-8"
        assert response.body == b""
        # No body bytes came after the head: the next response starts right away.
        assert_connection_usable(conn)


def test_head_response_to_a_streaming_app_has_no_body(server: GatewayServer) -> None:
    with server.raw() as conn:
        response = conn.request("HEAD", "/_/stream?n=2&delay=0.01")
        assert response.status == 200
        assert_connection_usable(conn)


@pytest.mark.parametrize("code", [204, 304])
def test_204_and_304_have_no_body(server: GatewayServer, code: int) -> None:
    with server.raw() as conn:
        response = conn.request("GET", f"/_/status?code={code}&etag=1")
        assert response.status == code
        assert response.header("x-status") == str(code)
        # RFC 9112 6.1 and RFC 9110 8.6: no Transfer-Encoding nor Content-Length in a 204
        # (a 304 may carry them, to describe the 200 response it stands for).
        if code == 204:
            assert response.header("transfer-encoding") is None
            assert response.header("content-length") is None
        # No body and no chunked terminator on the wire: the next response starts right away.
        assert_connection_usable(conn)


def test_204_drops_the_apps_content_length(server: GatewayServer) -> None:
    # RFC 9110 8.6: a server MUST NOT send Content-Length in a 204 (a keep-alive client trusting
    # one would take the next response's first bytes for this one's content).
    with server.raw() as conn:
        response = conn.request("GET", "/_/status?code=204&length=5")
        assert response.status == 204
        assert response.header_list("content-length") == []
        assert response.body == b""
        assert_connection_usable(conn)


def test_205_has_no_content(server: GatewayServer) -> None:
    # RFC 9110 15.3.6: no content in a 205, and the response says so (Content-Length: 0); the app's
    # body and its own length are dropped.
    with server.raw() as conn:
        response = conn.request("GET", "/_/status?code=205&length=5&body=hello")
        assert response.status == 205
        assert response.header_list("content-length") == ["0"]
        assert response.header("transfer-encoding") is None
        assert response.body == b""
        assert_connection_usable(conn)


def test_the_apps_connection_header_is_replaced_by_the_servers(server: GatewayServer) -> None:
    # The connection is the server's: the app's "keep-alive" does not contradict the client's close
    # (one connection field, "close"), and the app's "close" is honoured with the server's own field.
    with server.raw() as conn:
        response = conn.request("GET", "/_/status?code=200&connection=keep-alive", headers=[("Connection", "close")])
        assert response.status == 200
        assert response.header_list("connection") == ["close"]
        assert conn.peer_closed()
    with server.raw() as conn:
        response = conn.request("GET", "/_/status?code=200&connection=close&body=x")
        assert response.header_list("connection") == ["close"]
        assert response.body == b"x"
        assert conn.peer_closed()
    with server.raw() as conn:
        response = conn.request("GET", "/_/status?code=200&connection=keep-alive&body=x")
        assert response.header_list("connection") == []  # HTTP/1.1 persists by default
        assert_connection_usable(conn)


def test_204_and_205_over_http2(servers: Any) -> None:
    # The same rules on HTTP/2 (h2c): no content-length on a 204, "0" and no content on a 205.
    server = servers.start("testapp:app", extra_args=["--http2-cleartext"])
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as client:
        r204 = client.get(f"{server.url}/_/status", params={"code": "204", "length": "5"})
        r205 = client.get(f"{server.url}/_/status", params={"code": "205", "length": "5", "body": "hello"})
    assert r204.http_version == r205.http_version == "HTTP/2"
    assert r204.status_code == 204 and "content-length" not in r204.headers and r204.content == b""
    assert r205.status_code == 205 and r205.headers.get_list("content-length") == ["0"] and r205.content == b""


def test_expect_100_continue(server: GatewayServer) -> None:
    body = b"body after 100 continue"
    with server.raw(timeout=5) as conn:
        conn.send(
            b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        interim = conn.read_head()
        assert (interim.version, interim.status) == ("1.1", 100)
        conn.send(body)
        response = conn.read_response()
        assert response.status == 200
        assert response.body == body
        assert_connection_usable(conn)


def test_expect_100_continue_with_a_chunked_body(server: GatewayServer) -> None:
    with server.raw(timeout=5) as conn:
        conn.send(
            b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nExpect: 100-continue\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        interim = conn.read_head()
        assert (interim.version, interim.status) == ("1.1", 100)
        conn.send(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        response = conn.read_response()
        assert response.status == 200
        assert response.body == b"hello world"
        assert_connection_usable(conn)


def test_expect_100_continue_not_sent_when_the_app_does_not_read(server: GatewayServer) -> None:
    with server.raw() as conn:
        conn.send(
            b"POST /_/no-read HTTP/1.1\r\nHost: test.local\r\nExpect: 100-continue\r\n"
            b"Content-Length: 5\r\n\r\n"
        )
        first = conn.read_head()
        assert first.status == 200, "a 100 Continue came although the app never read the body"
        length = int(first.header("content-length") or 0)
        assert conn.read_exact(length) == b"did not read the body"


def test_answer_before_the_body_says_the_connection_closes(server: GatewayServer) -> None:
    # RFC 9110 10.1.1: a server that answers before reading the whole request content SHOULD say
    # whether it will close the connection. The app answers without reading a body still arriving:
    # the response says "close", and the connection is closed after it.
    with server.raw() as conn:
        conn.send(b"POST /_/no-read HTTP/1.1\r\nHost: test.local\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        response = conn.read_response()
        assert response.status == 200 and response.body == b"did not read the body"
        assert response.header_list("connection") == ["close"]
        assert conn.peer_closed(timeout=5)


def test_receive_after_the_response_returns_http_disconnect(server: GatewayServer) -> None:
    # Spec: http.disconnect is "sent to the application if receive is called after a response
    # has been sent or after the HTTP connection has been closed".
    key = uuid.uuid4().hex
    with server.raw() as conn:  # the connection stays open while we look
        response = conn.request("GET", f"/_/receive-after-response?key={key}")
        assert response.body == b"done"
        deadline = time.monotonic() + 12
        records: list[dict[str, object]] = []
        while time.monotonic() < deadline and not records:
            records = httpx.get(f"{server.url}/_/records?key={key}").json()
            time.sleep(0.1)
    assert records == [{"event": "http.disconnect"}]


def test_head_with_a_body_larger_than_the_window(server: GatewayServer) -> None:
    # The app sends 1 MiB (four times the worker's 256 KiB window) to a HEAD request: the gateway
    # drops it and gives the window back as if written, so the app finishes and the connection
    # serves the next requests (it used to wait for credit forever, and the connection hung).
    params = {"size": 1024 * 1024, "piece": 64 * 1024, "seed": 3}
    with httpx.Client(timeout=10) as client:
        for _ in range(3):
            head = client.head(f"{server.url}/_/blob", params=params)
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-length"] == str(1024 * 1024)
        get = client.get(f"{server.url}/_/blob", params=params)
        assert get.status_code == 200 and len(get.content) == 1024 * 1024



def test_a_starlette_stream_waiting_for_events_ends_when_its_client_leaves(module_servers: Any) -> None:
    """A Starlette StreamingResponse whose generator waits for events (pub/sub, server-sent events)
    is closed when its client leaves, as under uvicorn: Starlette watches receive() for
    http.disconnect while it streams only under an http spec_version below 2.4 (it was 2.5 here, and
    such a generator, its task and what it held stayed until the next event: never)."""
    from gateway_harness import APPS_DIR

    server = module_servers.start("starlette_stream_app:app", app_dir=APPS_DIR, workers=1)
    with server.raw() as conn:
        conn.send(b"GET /events?name=a HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.read_head().status == 200
        deadline = time.monotonic() + 5
        while httpx.get(f"{server.url}/open", timeout=5).json() != ["a"]:
            assert time.monotonic() < deadline, "the stream did not start"
            time.sleep(0.05)
    left = time.monotonic()
    while (still := httpx.get(f"{server.url}/open", timeout=5).json()) != []:
        assert time.monotonic() - left < 3, f"generators still open 3 s after their client left: {still}"
        time.sleep(0.05)


@pytest.mark.parametrize("form", ["close", "close-chunked", "http/1.0"])
def test_large_response_on_a_closing_unix_socket_connection_arrives_whole(
    servers: Any, tmp_path: Any, form: str
) -> None:
    """A response whose last pieces (from the body ring) the socket could not take at once, on a
    connection that closes after it (Connection: close, HTTP/1.0: nginx's default to a backend):
    the rest is written before the close. (A Unix socket's small buffer makes this the common case;
    it was cut at the first partial write, with a clean close, in 15 of 15 tries.)"""
    path = str(tmp_path / "gw.sock")
    server = servers.start("testapp:app", uds=path)
    chunked = "&chunked=1" if form == "close-chunked" else ""
    for seed in range(8):
        target = f"/_/blob?size=1048576&piece=262144&seed={seed}{chunked}"
        with RawConnection.unix(server.uds) as conn:
            if form == "http/1.0":
                conn.send(f"GET {target} HTTP/1.0\r\nHost: test.local\r\n\r\n".encode())
                response = conn.read_response()
            else:
                response = conn.request("GET", target, headers=[("Connection", "close")])
            assert conn.peer_closed()
        assert response.status == 200
        assert len(response.body) == 1048576, f"seed {seed}: {len(response.body)} bytes"
        assert hashlib.sha256(response.body).hexdigest() == response.header("x-sha256")


def test_closing_after_a_response_with_pipelined_input_unread_keeps_the_response(servers: Any) -> None:
    """Request 1 says Connection: close and the client has already pipelined a large second request
    behind it: the gateway closes after response 1 with the second unread. Closed at once, the
    kernel would reset the connection for the unread bytes and the end of response 1 could be lost
    (2.5-3.9 MB of 5 MB arrived, then a reset); with a lingering close (RFC 9112 §9.6) it arrives
    whole."""
    server = servers.start("testapp:app")
    sock = socket.create_connection((server.host, server.port), timeout=20)
    first = b"GET /_/blob?size=5000000&seed=11 HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n"
    second = b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: 2000000\r\n\r\n" + b"y" * 2_000_000

    def send() -> None:
        try:
            sock.sendall(first + second)
        except OSError:
            pass  # (the gateway closes without reading it all)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    conn = RawConnection(sock)
    response = conn.read_response()
    assert response.status == 200
    assert len(response.body) == 5_000_000
    assert hashlib.sha256(response.body).hexdigest() == response.header("x-sha256")
    assert conn.peer_closed()
    conn.close()
    sender.join(5)


def test_a_response_cut_after_a_half_close_ends_with_a_reset(servers: Any) -> None:
    """A client that shuts its write side after the request (HTTP/1.0 style) counts as gone once
    halfCloseGrace has passed without the response complete, and the response is cut: with a reset,
    never a clean close, which would make a close-delimited body look complete."""
    server = servers.start("testapp:app")
    for _ in range(3):
        sock = socket.create_connection((server.host, server.port), timeout=20)
        sock.sendall(b"GET /_/stream?n=20&delay=0.1 HTTP/1.0\r\nHost: test.local\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        reset = False
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            reset = True
        sock.close()
        complete = data.count(b"piece ") == 20
        assert complete or reset, f"cut with a clean close after {data.count(b'piece ')} of 20 pieces"
