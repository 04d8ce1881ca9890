"""ASGI conformance of the real binary, ninth round: the response head waits for the first body.

www.rst, Response Start: "The protocol server must not start sending the response to the client
until it has received at least one Response Body event." An app that starts its response and then
works a while before its first body message has its head held (over HTTP/1.1 and HTTP/2) until that
body comes; an empty body message with ``more_body`` lets the head go at once (the app asks for it).
Since nothing of a held response has reached the client, an app that fails (or returns) before its
first body, a pathsend whose file is missing, or a request timeout, still get the gateway's own
response (500, 504) rather than a head and a cut connection.

And pipelining (RFC 9112 §9.3.2): requests pipelined in one write are all answered at once, none
of them left waiting for the keep-alive timer. And --timeout-request bounds the app's work also
when the client left first (its task is cancelled) and over HTTP/2 when the client's flow control
holds the response back; HTTP/2 requests count in the in-flight metric.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import pytest

from gateway_harness import APPS_DIR, GatewayServer, RawConnection
from test_lifecycle import free_port, metric
from test_rfc_conformance4 import h2_request, request_headers

APP = "conformance9_app:app"


@pytest.fixture(scope="module")
def app_server(module_servers: Any) -> GatewayServer:
    return module_servers.start(APP, app_dir=APPS_DIR, workers=1, extra_args=["--http2-cleartext"])


def readable_within(sock: socket.socket, seconds: float) -> bool:
    return bool(select.select([sock], [], [], seconds)[0])


def test_head_waits_for_the_first_body(app_server: GatewayServer) -> None:
    with app_server.raw() as conn:
        conn.send(b"GET /start-then-body?s=1.0 HTTP/1.1\r\nHost: t\r\n\r\n")
        sent = time.monotonic()
        assert not readable_within(conn.sock, 0.6), "the head went out before any body message"
        response = conn.read_response()
        took = time.monotonic() - sent
    assert (response.status, response.header("content-type"), response.body) == (200, "text/plain", b"late")
    assert took >= 0.9, took


def test_empty_body_message_lets_the_head_go(app_server: GatewayServer) -> None:
    with app_server.raw() as conn:
        conn.send(b"GET /start-flush-then-body HTTP/1.1\r\nHost: t\r\n\r\n")
        sent = time.monotonic()
        head = conn.read_head()
        early = time.monotonic() - sent
        assert head.status == 200
        assert head.header("transfer-encoding") == "chunked"
        assert conn.read_chunked(head) == b"late"
    assert early < 0.8, f"the head came after {early:.2f} s, with the body, not at the empty body message"


@pytest.mark.parametrize("path", ["/start-then-raise", "/start-then-return", "/start-then-missing-pathsend",
                                  "/start-missing-pathsend-at-once"])
def test_failure_before_the_first_body_is_a_500(app_server: GatewayServer, path: str) -> None:
    with app_server.raw() as conn:
        conn.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        response = conn.read_response()
        assert response.status == 500, (response.status, response.body)
        assert response.body == b"Internal Server Error"
        # Nothing of the app's response went out, so the connection is still in step.
        conn.send(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.read_response().body == b"/next"


def test_timeout_before_the_first_body_is_a_504(module_servers: Any) -> None:
    server = module_servers.start(APP, app_dir=APPS_DIR, workers=1, extra_args=["--timeout-request", "0.5"])
    with server.raw() as conn:
        conn.send(b"GET /start-then-sleep HTTP/1.1\r\nHost: t\r\n\r\n")
        response = conn.read_response()
    assert response.status == 504, (response.status, response.body)


def h2_stream_events(server: GatewayServer, path: str, quiet: float) -> tuple[bool, dict[str, Any]]:
    """GET path on an h2c connection: whether the response's HEADERS came within ``quiet`` seconds,
    then the whole response."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    conn.send_headers(1, request_headers("GET", path), end_stream=True)
    sock.sendall(conn.data_to_send())
    got: dict[str, Any] = {"status": None, "body": b""}
    early = False
    deadline = time.monotonic() + quiet
    with sock:
        while True:
            if time.monotonic() < deadline and not readable_within(sock, max(0.0, deadline - time.monotonic())):
                continue
            data = sock.recv(65536)
            assert data, f"connection closed before the stream ended: {got}"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    got["status"] = dict(event.headers)[b":status"].decode()
                    early = time.monotonic() < deadline
                elif isinstance(event, h2.events.DataReceived):
                    got["body"] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError(f"stream reset: {event.error_code}")
                elif isinstance(event, h2.events.StreamEnded):
                    return early, got
            sock.sendall(conn.data_to_send())


def test_http2_head_waits_for_the_first_body(app_server: GatewayServer) -> None:
    early, got = h2_stream_events(app_server, "/start-then-body?s=1.0", quiet=0.6)
    assert not early, "HEADERS went out before any body message"
    assert (got["status"], got["body"]) == ("200", b"late")


def test_http2_empty_body_message_lets_the_head_go(app_server: GatewayServer) -> None:
    early, got = h2_stream_events(app_server, "/start-flush-then-body", quiet=0.7)
    assert early, "HEADERS waited for the body, not sent at the empty body message"
    assert (got["status"], got["body"]) == ("200", b"late")


@pytest.mark.parametrize("path", ["/start-then-raise", "/start-then-return", "/start-then-missing-pathsend",
                                  "/start-missing-pathsend-at-once"])
def test_http2_failure_before_the_first_body_is_a_500(app_server: GatewayServer, path: str) -> None:
    got = h2_request(app_server, request_headers("GET", path))
    assert (got["status"], got["reset"]) == ("500", None), got


def test_pipelined_requests_are_answered_without_waiting_for_the_keep_alive_timer(module_servers: Any) -> None:
    # Three GETs in one write, on many connections: the third answered as the first two. (A race
    # between a response's completion and the next pipelined request's wait once left about one
    # connection in a hundred waiting for --timeout-keep-alive.)
    server = module_servers.start(APP, app_dir=APPS_DIR, workers=1, extra_args=["--timeout-keep-alive", "3"])
    request = b"GET /pipelined HTTP/1.1\r\nHost: t\r\n\r\n"
    slow = []
    for i in range(300):
        with server.raw() as conn:
            sent = time.monotonic()
            conn.send(request * 3)
            bodies = [conn.read_response().body for _ in range(3)]
            took = time.monotonic() - sent
        assert bodies == [b"/pipelined"] * 3
        if took > 1.5:
            slow.append((i, round(took, 2)))
    assert not slow, f"connections whose third response waited: {slow}"


def test_request_timeout_cancels_the_app_also_after_the_client_left(module_servers: Any) -> None:
    address = f"127.0.0.1:{free_port()}"
    server = module_servers.start(APP, app_dir=APPS_DIR, workers=1, extra_args=[
        "--timeout-request", "2", "--http2-cleartext", "--metrics-address", address])

    def in_flight() -> float | None:
        return metric(httpx.get(f"http://{address}/metrics", timeout=5).text, "asgi_gateway_requests_in_flight")

    h1 = server.raw()
    h1.send(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    h2conn.initiate_connection()
    h2conn.send_headers(1, request_headers("GET", "/hang"), end_stream=True)
    sock.sendall(h2conn.data_to_send())
    assert wait_until(lambda: in_flight() == 2, 5), in_flight()  # HTTP/1.1 and HTTP/2 both count
    h1.close()
    sock.close()
    left = time.monotonic()
    assert wait_until(lambda: server.stderr().count("hang: cancelled") == 2, 8), server.stderr()[-3000:]
    assert time.monotonic() - left < 4
    assert wait_until(lambda: in_flight() == 0, 5), in_flight()


@pytest.mark.parametrize("path, window", [("/big", None), ("/small", 0)], ids=["8MiB", "small-zero-window"])
def test_request_timeout_ends_an_http2_response_the_client_holds_back(module_servers: Any, path: str, window: int | None) -> None:
    # The client reads but grants no window beyond the initial 64 KiB (or none at all, for a
    # response of a few bytes): the response cannot progress; --timeout-request resets the stream
    # (and cancels the app), as over HTTP/1.1.
    server = module_servers.start(APP, app_dir=APPS_DIR, workers=1, extra_args=["--timeout-request", "2", "--http2-cleartext"])
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    if window is not None:
        conn.local_settings = h2.settings.Settings(client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    conn.initiate_connection()
    conn.send_headers(1, request_headers("GET", path), end_stream=True)
    sock.sendall(conn.data_to_send())
    sent = time.monotonic()
    reset = None
    with sock:
        while reset is None and time.monotonic() - sent < 10:
            if not readable_within(sock, 0.5):
                continue
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):  # (never acknowledged: no WINDOW_UPDATE)
                if isinstance(event, h2.events.StreamReset):
                    reset = time.monotonic() - sent
            sock.sendall(conn.data_to_send())
    assert reset is not None and reset < 5, reset
    if path == "/big":
        assert wait_until(lambda: "big: stopped by" in server.stderr(), 5), server.stderr()[-3000:]


def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


@pytest.mark.parametrize("h2c", [False, True], ids=["http1", "h2c"])
def test_empty_body_message_after_a_pause_lets_the_held_head_go(app_server: GatewayServer, h2c: bool) -> None:
    # The worker flushed the start (held by the gateway) before the app's empty body message: that
    # message still releases the head, a second before the body.
    if h2c:
        early, got = h2_stream_events(app_server, "/start-wait-flush", quiet=0.9)
        assert early, "HEADERS waited for the body"
        assert (got["status"], got["body"]) == ("200", b"late")
        return
    with app_server.raw() as conn:
        conn.send(b"GET /start-wait-flush HTTP/1.1\r\nHost: t\r\n\r\n")
        sent = time.monotonic()
        head = conn.read_head()
        took = time.monotonic() - sent
        assert conn.read_chunked(head) == b"late"
    assert head.status == 200 and took < 0.9, took


def test_http2_failure_right_after_a_flushed_start_is_a_500(app_server: GatewayServer) -> None:
    # The held start and the END can arrive in one batch: still a 500, never a reset.
    for _ in range(20):
        got = h2_request(app_server, request_headers("GET", "/start-yield-raise"))
        assert (got["status"], got["reset"]) == ("500", None), got


@pytest.mark.parametrize("h2c", [False, True], ids=["http1", "h2c"])
def test_request_timeout_with_a_held_head_is_a_504(module_servers: Any, h2c: bool) -> None:
    server = module_servers.start(APP, app_dir=APPS_DIR, workers=1, extra_args=["--timeout-request", "0.5", "--http2-cleartext"])
    for _ in range(5):
        if h2c:
            got = h2_request(server, request_headers("GET", "/start-then-sleep"))
            assert (got["status"], got["reset"]) == ("504", None), got
        else:
            with server.raw() as conn:
                conn.send(b"GET /start-then-sleep HTTP/1.1\r\nHost: t\r\n\r\n")
                assert conn.read_response().status == 504


@pytest.mark.parametrize("h2c", [False, True], ids=["http1", "h2c"])
def test_request_timeout_leaves_work_after_a_complete_response_alone(module_servers: Any, h2c: bool) -> None:
    # A background task (the app runs on after its complete response) is not the request's: the
    # timeout does not cancel it.
    server = module_servers.start(APP, app_dir=APPS_DIR, workers=1, extra_args=["--timeout-request", "0.5", "--http2-cleartext"])
    if h2c:
        got = h2_request(server, request_headers("GET", "/background"))
        assert (got["status"], got["body"]) == ("200", b"sent")
    else:
        assert httpx.get(f"{server.url}/background", timeout=5).text == "sent"
    assert wait_until(lambda: "background: done" in server.stderr(), 5), server.stderr()[-2000:]
    assert "background: cancelled" not in server.stderr()


# --- send() flushes before it returns ------------------------------------------------------------


@pytest.mark.parametrize(("path", "first"), [("/send-then-block", b"sent"), ("/chunk-then-block", b"first")])
def test_send_flushes_before_returning(app_server: GatewayServer, path: str, first: bytes) -> None:
    """www.rst: "Protocol servers must flush any data passed to them into the send buffer before
    returning from a send call." The app blocks its event loop for 1.5 s right after a send(): what
    it sent reaches the client without waiting for that (the worker used to write at the end of the
    loop iteration, after the block)."""
    with socket.create_connection(("127.0.0.1", app_server.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        data = b""
        while first not in data:
            assert readable_within(sock, 5), data
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        elapsed = time.monotonic() - started
    time.sleep(max(0.0, 1.7 - elapsed))  # the block ends before the next test's request
    assert data.startswith(b"HTTP/1.1 200 "), data
    assert elapsed < 1.0, f"{first!r} arrived after {elapsed:.2f} s, behind the app's 1.5 s block"
