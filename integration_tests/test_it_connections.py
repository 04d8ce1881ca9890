"""Connections: persistence, pipelining, close, HTTP/1.0, and malformed requests (RFC 9112)."""

from __future__ import annotations

import json
import socket
import time
import uuid
from typing import Any

import httpx
import pytest

from gateway_harness import GatewayServer


def test_keep_alive_several_requests_on_one_connection(server: GatewayServer) -> None:
    with server.raw() as conn:
        for index in range(5):
            response = conn.request("GET", f"/keep/{index}")
            assert response.status == 200
            assert "close" not in response.connection_tokens()
            scope = json.loads(response.body)["scope"]
            assert scope["path"] == f"/keep/{index}"
            # The same connection, so the same client port each time.
            assert scope["client"] == ["127.0.0.1", conn.local_port]


def test_keep_alive_with_bodies_and_mixed_framing(server: GatewayServer) -> None:
    with server.raw() as conn:
        assert conn.request("POST", "/_/echo", body=b"first").body == b"first"
        assert conn.request("GET", "/_/stream?n=2&delay=0.01").body == b"piece 0\npiece 1\n"
        assert conn.request("POST", "/_/echo", body=b"third" * 1000).body == b"third" * 1000
        assert conn.request("GET", "/_/length").body == b"hello world"


def test_pipelined_requests_are_answered_in_order(server: GatewayServer) -> None:
    with server.raw() as conn:
        conn.send(
            b"GET /pipe/1 HTTP/1.1\r\nHost: test.local\r\n\r\n"
            b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: 4\r\n\r\nbody"
            b"GET /pipe/3 HTTP/1.1\r\nHost: test.local\r\n\r\n"
        )
        first = conn.read_response()
        second = conn.read_response()
        third = conn.read_response()
    assert json.loads(first.body)["scope"]["path"] == "/pipe/1"
    assert second.body == b"body"
    assert json.loads(third.body)["scope"]["path"] == "/pipe/3"


def test_pipelined_request_waiting_behind_a_slow_one_keeps_its_own_head(server: GatewayServer) -> None:
    # The second request's head is parsed while the first runs; whatever arrives meanwhile, on this
    # connection or on others, must not change it (the gateway reads other clients into the read
    # buffers that waiting connections give back).
    with server.raw() as conn, server.raw() as other:
        conn.send(
            b"GET /_/slow?seconds=0.6 HTTP/1.1\r\nHost: test.local\r\n\r\n"
            b"GET /pipe/alice?who=alice HTTP/1.1\r\nHost: test.local\r\nX-User: alice\r\n\r\n"
        )
        time.sleep(0.2)  # (the first request is in the app; the second's head waits, parsed)
        other.send(
            b"GET /pipe/bob?who=bob HTTP/1.1\r\nHost: test.local\r\nX-User: bob\r\nX-Pad: "
            + b"b" * 300
            + b"\r\n\r\n"
        )
        assert json.loads(other.read_response().body)["scope"]["path"] == "/pipe/bob"
        conn.send(b"GET /pipe/third HTTP/1.1\r\nHost: test.local\r\nX-Pad: " + b"3" * 300 + b"\r\n\r\n")
        assert conn.read_response().status == 200
        second = json.loads(conn.read_response().body)["scope"]
        third = json.loads(conn.read_response().body)["scope"]
    assert (second["path"], second["query_string"]) == ("/pipe/alice", "who=alice")
    assert ["x-user", "alice"] in second["headers"]
    assert third["path"] == "/pipe/third"


def test_connection_close_closes_after_the_response(server: GatewayServer) -> None:
    with server.raw() as conn:
        response = conn.request("GET", "/closing", headers=[("Connection", "close")])
        assert response.status == 200
        assert json.loads(response.body)["scope"]["path"] == "/closing"
        assert conn.peer_closed(timeout=5), "the server kept the connection open after Connection: close"


def test_http_10_request_gets_a_response_and_close(server: GatewayServer) -> None:
    with server.raw() as conn:
        conn.send(b"GET /old HTTP/1.0\r\n\r\n")
        response = conn.read_response()
        # RFC 9110 2.5: the highest version the server conforms to, with the request's major version.
        assert response.version == "1.1"
        assert response.status == 200
        assert json.loads(response.body)["scope"]["http_version"] == "1.0"
        assert conn.peer_closed(timeout=5)


def test_http_10_keep_alive_through_the_gateways_own_response(server: GatewayServer) -> None:
    # An HTTP/1.0 client keeps the connection only when told: the gateway's own responses (here a
    # 500 for an app that fails before starting) say so as the app's do.
    with server.raw() as conn:
        for path in ("/_/error/before-start", "/_/pid"):
            conn.send(f"GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
            response = conn.read_response()
            assert response.version == "1.1"
            assert response.header_list("connection") == ["keep-alive"], response
        assert response.status == 200 and response.body.isdigit()


@pytest.mark.parametrize("version", ["1.0", "1.1"])
@pytest.mark.parametrize("path", ["/_/pid", "/_/slow?seconds=0.2"], ids=["fast", "slow"])
def test_half_closed_client_still_gets_its_response(server: GatewayServer, version: str, path: str) -> None:
    # A client may shut down its sending side once its request is out (HTTP/1.0-style clients,
    # `printf ... | nc -N`): a clean EOF after a complete request is not a client that left. The
    # response is written in full, then the connection closes.
    for _ in range(5):  # the EOF and the request arrive together: a race, before this was handled
        with server.raw() as conn:
            conn.send(f"GET {path} HTTP/{version}\r\nHost: test.local\r\n\r\n".encode())
            conn.sock.shutdown(socket.SHUT_WR)
            response = conn.read_response()
            assert response.status == 200
            assert response.body.isdigit()
            assert conn.peer_closed(timeout=5)


def test_half_closed_client_of_a_long_poll_is_told_it_left(server: GatewayServer) -> None:
    # Past the grace a half-closed (or closed) client gets for its response, the app sees
    # http.disconnect, as for any client that left.
    key = uuid.uuid4().hex
    with server.raw() as conn:
        conn.send(f"GET /_/long-poll?key={key} HTTP/1.1\r\nHost: test.local\r\n\r\n".encode())
        conn.sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 10
        records: list = []
        while time.monotonic() < deadline:
            records = httpx.get(f"{server.url}/_/records?key={key}").json()
            if len(records) >= 2:
                break
            time.sleep(0.05)
        assert [record["event"] for record in records[:2]] == ["request", "http.disconnect"], records


def test_http_10_streaming_response_is_not_chunked(server: GatewayServer) -> None:
    # RFC 9112 6.1: no Transfer-Encoding unless the request is HTTP/1.1 or later.
    with server.raw() as conn:
        conn.send(b"GET /_/stream?n=3&delay=0.02 HTTP/1.0\r\n\r\n")
        response = conn.read_response()
        assert response.status == 200
        assert response.header("transfer-encoding") is None
        assert response.body == b"piece 0\npiece 1\npiece 2\n"
        assert conn.peer_closed(timeout=5)


MALFORMED = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost: test.local\r\nX-Bad : value\r\n\r\n",
    "header without colon": b"GET / HTTP/1.1\r\nHost: test.local\r\nNoColonHere\r\n\r\n",
    "duplicate content-length": (
        b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    ),
    "invalid content-length": b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: abc\r\n\r\nhello",
    "invalid chunk size": (
        b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nhello\r\n0\r\n\r\n"
    ),
    "missing host": b"GET / HTTP/1.1\r\n\r\n",
    "two hosts": b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_request_gets_400_and_the_server_keeps_serving(
    server: GatewayServer, request_bytes: bytes
) -> None:
    with server.raw() as conn:
        conn.send(request_bytes)
        response = conn.read_response()
        assert response.status == 400
        if b"Host: a.test" not in request_bytes and b"HTTP/1.1\r\n\r\n" not in request_bytes:
            # A message whose framing cannot be trusted: the server closes (RFC 9112 6.3).
            assert conn.peer_closed(timeout=5), "the connection stayed open after a malformed request"
    follow_up = httpx.get(f"{server.url}/_/pid")
    assert follow_up.status_code == 200


def test_too_large_request_head_gets_431(server: GatewayServer) -> None:
    with server.raw() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: test.local\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        response = conn.read_response()
        assert response.status == 431
    assert httpx.get(f"{server.url}/_/pid").status_code == 200


def test_h2c_connection_outlives_the_keep_alive_timeout_while_in_use(servers: Any) -> None:
    # --timeout-keep-alive is the idle time between requests (RFC 9113 9.1: a connection with an
    # open stream is not idle). An h2c connection (prior knowledge) served a 2.5 s stream and a
    # request every 0.4 s for 2.5 s with a 1 s keep-alive, on one connection.
    server = servers.start("testapp:app", extra_args=["--http2-cleartext", "--timeout-keep-alive", "1"])
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as client:
        streamed = client.get(f"{server.url}/_/stream", params={"n": "25", "delay": "0.1"})
        assert streamed.http_version == "HTTP/2" and streamed.status_code == 200
        assert streamed.text.count("piece") == 25
        ports = set()
        for _ in range(6):
            response = client.get(f"{server.url}/", headers={"x-probe": "1"})
            assert response.status_code == 200
            ports.add(json.loads(response.text)["scope"]["client"][1])
            time.sleep(0.4)
        assert len(ports) == 1, f"the connection was replaced: client ports {ports}"

