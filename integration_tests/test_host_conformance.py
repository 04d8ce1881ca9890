"""The Host header and the absolute-form authority, on a raw socket against the real binary.

RFC 9112 §3.2: a server MUST respond 400 to a request with "a Host header field with an invalid
field value". The value is Host = uri-host [ ":" port ] (RFC 9110 §7.2), with uri-host and port as
RFC 3986 §3.2.2-3.2.3 define them: an IP-literal in brackets, or a reg-name (which holds IPv4
addresses too, and may be empty), then an optional ':' and digits. The gateway also refuses ports
above 65535. The same syntax holds for the authority of an absolute-form target (RFC 9112 §3.2.2),
where the host must not be empty (RFC 9110 §4.2.1).

A refused request gets 400, the connection is closed with nothing after the response, and the app
(``apps/faulty_app.py``, which counts the requests it sees) never sees it. An accepted one reaches
the app, whose scope shows the host header.
"""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from gateway_harness import APPS_DIR, GatewayServer, IncompleteResponse, RawResponse, app_count


@pytest.fixture(scope="module")
def server(module_servers: Any) -> GatewayServer:
    """faulty_app (counts requests; everything else is testapp), one worker so the count is exact."""
    return module_servers.start("faulty_app:app", app_dir=APPS_DIR, workers=1)


def exchange(server: GatewayServer, data: bytes) -> tuple[RawResponse, bool]:
    """Sends data on a new connection; returns the response and whether the server then closed the
    connection with nothing more sent."""
    with server.raw(timeout=10) as conn:
        conn.send(data)
        try:
            response = conn.read_response()
        except IncompleteResponse as exc:
            raise AssertionError(f"no complete response to {data!r}; got {exc.partial!r}") from None
        return response, conn.peer_closed(timeout=5)


def scope_of(response: RawResponse) -> dict[str, Any]:
    assert response.status == 200, f"{response.status} {response.reason}: {response.body[:300]!r}"
    return json.loads(response.body)["scope"]


def mark() -> str:
    return f"/host-{uuid.uuid4().hex[:12]}"


# --- refused: 400 before the app -------------------------------------------------------------------

BAD_HOSTS = {
    "port-not-digits": b"a:xx",
    "two-colons": b"a:1:2",
    "bare-ipv6": b"::1",
    "unclosed-bracket": b"[::1",
    "after-bracket": b"[::1]x",
    "bracket-port-not-digits": b"[::1]:x",
    "bracket-not-ipv6": b"[example.com]",
    "bracket-empty": b"[]",
    "ipv6-too-many-groups": b"[1:2:3:4:5:6:7:8:9]",
    "ipv6-two-ellipses": b"[1::2::3]",
    "ipv6-zone": b"[fe80::1%25eth0]",
    "bracket-inside": b"a[::1]",
    "port-above-65535": b"a:65536",
    "port-huge": b"a:99999999999",
    "port-thousands-of-digits": b"a:" + b"9" * 4000,
    "bad-percent": b"a%zz.example",
    # Kept from before: not host bytes at all.
    "userinfo": b"user@a",
    "space": b"a b",
    "slash": b"a/b",
}


@pytest.mark.parametrize("host", list(BAD_HOSTS.values()), ids=list(BAD_HOSTS))
def test_invalid_host_header_gets_400(server: GatewayServer, host: bytes) -> None:
    before = app_count(server)
    path = mark()
    response, closed = exchange(server, b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(), host))
    assert response.status == 400, f"Host: {host[:60]!r} got {response.status} {response.reason}"
    assert closed, "the connection stayed open after 400"
    assert app_count(server) == before, "the refused request reached the app"


BAD_AUTHORITIES = {
    "port-not-digits": b"a:xx",
    "two-colons": b"a:1:2",
    "unclosed-bracket": b"[::1",
    "port-above-65535": b"a:65536",
    "empty-host-with-port": b":80",
    "bad-percent": b"a%zz",
}


@pytest.mark.parametrize("authority", list(BAD_AUTHORITIES.values()), ids=list(BAD_AUTHORITIES))
def test_invalid_absolute_form_authority_gets_400(server: GatewayServer, authority: bytes) -> None:
    before = app_count(server)
    data = b"GET http://%s%s HTTP/1.1\r\nHost: test.local\r\n\r\n" % (authority, mark().encode())
    response, closed = exchange(server, data)
    assert response.status == 400, f"{data!r} got {response.status} {response.reason}"
    assert closed, "the connection stayed open after 400"
    assert app_count(server) == before, "the refused request reached the app"


# --- accepted: the app sees the value as sent -------------------------------------------------------

GOOD_HOSTS = {
    "empty": b"",  # reg-name may be empty
    "name": b"test.local",
    "name-port": b"test.local:8080",
    "empty-port": b"test.local:",  # port = *DIGIT
    "port-65535": b"a:65535",
    "port-leading-zeros": b"a:000080",
    "ipv4": b"127.0.0.1:80",
    "ipv6": b"[::1]",
    "ipv6-port": b"[2001:db8::1]:443",
    "ipv6-ipv4-tail": b"[::ffff:192.0.2.1]",
    "ipvfuture": b"[v1.fe:x]",
    "pct-encoded": b"caf%C3%A9.example",
    "sub-delims": b"a!$&'()*+,;=b",
}


@pytest.mark.parametrize("host", list(GOOD_HOSTS.values()), ids=list(GOOD_HOSTS))
def test_valid_host_header_is_served(server: GatewayServer, host: bytes) -> None:
    response, _ = exchange(server, b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host)
    scope = scope_of(response)
    assert [value for name, value in scope["headers"] if name == "host"] == [host.decode()]


def test_absolute_form_ipv6_authority_replaces_host(server: GatewayServer) -> None:
    response, _ = exchange(server, b"GET http://[::1]:8080/p HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n")
    scope = scope_of(response)
    assert scope["path"] == "/p"
    assert [value for name, value in scope["headers"] if name == "host"] == ["[::1]:8080"]


# --- absolute-form without a Host header (HTTP/1.0) -------------------------------------------------


def test_absolute_form_http_1_0_without_host_gets_the_authority_as_host(server: GatewayServer) -> None:
    # RFC 9112 §3.2.2: the server uses the host information of the request-target. The app learns
    # the host from the scope's host header, so that header is there, first, as a received Host
    # would be, even though the HTTP/1.0 client sent none.
    response, _ = exchange(server, b"GET http://other.example:8080/p HTTP/1.0\r\nX-A: 1\r\n\r\n")
    scope = scope_of(response)
    assert scope["path"] == "/p"
    assert scope["headers"] == [["host", "other.example:8080"], ["x-a", "1"]]


def test_absolute_form_http_1_0_with_host_replaces_it_in_place(server: GatewayServer) -> None:
    response, _ = exchange(server, b"GET http://other.example/p HTTP/1.0\r\nX-A: 1\r\nHost: test.local\r\n\r\n")
    scope = scope_of(response)
    assert scope["headers"] == [["x-a", "1"], ["host", "other.example"]]


@pytest.mark.parametrize("authority", ["a:xx", "a:1:2", "[::1", "a:99999"])
def test_invalid_http2_authority_gets_400(servers: Any, authority: str) -> None:
    # HTTP/2 (h2c): :authority is checked as Host is (RFC 9113 §8.3.1 refers to RFC 9110's
    # authority); the app never sees the request.
    server = servers.start("testapp:app", app_dir=APPS_DIR, extra_args=["--http2-cleartext"])
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", authority), (":path", "/_/pid")],
                      end_stream=True)
    sock.sendall(conn.data_to_send())
    status = None
    while status is None:
        data = sock.recv(65536)
        assert data, "the connection closed without a response"
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers)[":status"]
        sock.sendall(conn.data_to_send())
    sock.close()
    assert status == "400"
