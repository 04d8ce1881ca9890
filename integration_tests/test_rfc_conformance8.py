"""RFC 6455 and ASGI conformance of the real binary, eighth round.

* The closing handshake the server starts ends: a client that never answers the server's close
  frame is disconnected after the gateway's close timeout (5 s), also when the app closed while the
  gateway was still waiting for its answer to the handshake (RFC 6455 §7.1.1: the server closes the
  TCP connection; §5.5.1: an endpoint that sent a close frame waits for the answer, not forever).
* A ping that arrives after the server's close frame is answered (§5.5.2: "an endpoint MUST send a
  Pong frame in response, unless it already received a Close frame").
* Keepalive as uvicorn's (the websockets library's): a ping every ``--ws-ping-interval``; a pong
  later than ``--ws-ping-timeout`` fails the connection, whichever of the two is longer, with a
  close frame 1011 before TCP closes (§7.1.7: an endpoint may send a close frame before failing).
  ``--ws-ping-timeout 0`` never fails it.
* HTTP/1.1 pipelining: the next request runs once the response before it is written to the socket,
  so a client that pipelines and does not read cannot make the gateway hold its responses without
  bound (RFC 9112 §9.3.2: a server may process pipelined requests in parallel, which does not
  oblige it to buffer their responses).
"""

from __future__ import annotations

import hashlib
import random
import select
import socket
import subprocess
import threading
import time
import uuid
from typing import Any

import h2.settings
import httpx
import pytest

from gateway_harness import APPS_DIR, GatewayServer, RawConnection, gateway_command
from test_ws_protocol import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    encode_frame,
    new_key_name,
    raw_open,
    read_close,
    read_data_frame,
    read_frame,
    upgrade_request,
    vm_rss_kib,
    wait_record,
)

APP = "ws_app:app"


@pytest.fixture(scope="module")
def ws_server(module_servers: Any) -> GatewayServer:
    return module_servers.start(APP, app_dir=APPS_DIR, workers=1)


def keepalive_server(module_servers: Any, interval: str, timeout: str) -> GatewayServer:
    return module_servers.start(
        APP, app_dir=APPS_DIR, workers=1, extra_args=["--ws-ping-interval", interval, "--ws-ping-timeout", timeout]
    )


def open_held(server: GatewayServer, key: str | None = None) -> RawConnection:
    """A WebSocket on ws_app's /hold (recording its disconnect under key), its "ready" read."""
    conn, _ = raw_open(server, "/hold" if key is None else f"/hold?key={key}", timeout=10)
    assert read_data_frame(conn).payload == b"ready"
    return conn


@pytest.mark.parametrize("path", ["/close?code=1000", "/return-after-accept", "/raise-after-accept"])
def test_unanswered_server_close_times_out(ws_server: GatewayServer, path: str) -> None:
    # The app accepts and at once closes (or returns: 1000, or raises: 1011), while the gateway may
    # still be watching the client for the handshake's answer: the close timeout holds either way.
    conn, _ = raw_open(ws_server, path, timeout=15)
    with conn:
        close = read_close(conn, reply=False)
        assert close.opcode == OP_CLOSE
        started = time.monotonic()
        assert conn.peer_closed(timeout=12), "the server never closed the TCP connection"
        elapsed = time.monotonic() - started
    assert 3.5 < elapsed < 8, f"closed {elapsed:.1f} s after the close frame (the timeout is 5 s)"


def test_ping_after_server_close_gets_a_pong(ws_server: GatewayServer) -> None:
    conn, _ = raw_open(ws_server, "/close?code=1000")
    with conn:
        assert read_close(conn, reply=False).close_code == 1000
        conn.send(encode_frame(OP_PING, b"are-you-there"))
        frame = read_frame(conn)
        assert (frame.opcode, frame.payload) == (OP_PONG, b"are-you-there")
        conn.send(encode_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
        assert conn.peer_closed(timeout=5)


def test_close_timeout_holds_against_a_client_that_pings_and_does_not_read(ws_server: GatewayServer) -> None:
    # After the server's close frame a client floods pings and reads nothing: the gateway's pongs
    # must not stop it reading (it would never see its close deadline), nor pile up.
    sock = socket.create_connection((ws_server.host, ws_server.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn = RawConnection(sock)
    with conn:
        request, _ = upgrade_request("/close?code=1000")
        conn.send(request)
        assert conn.read_head().status == 101
        assert read_close(conn, reply=False).close_code == 1000
        sock.setblocking(False)
        poller = select.poll()
        poller.register(sock, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        ping = encode_frame(OP_PING, b"p" * 125)
        started = time.monotonic()
        closed_after = None
        while time.monotonic() - started < 15:
            try:
                sock.send(ping)
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                closed_after = time.monotonic() - started
                break
            if poller.poll(0):
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None and closed_after < 10, f"still open after {closed_after or 15:.1f} s"


def test_ping_timeout_longer_than_the_interval(module_servers: Any) -> None:
    # Pings every 0.5 s, pongs may be 3 s late: a client answering each ping 1.2 s late stays.
    server = keepalive_server(module_servers, "0.5", "3")
    key = new_key_name()
    with open_held(server, key) as conn:
        started = time.monotonic()
        pings = 0
        while time.monotonic() - started < 4.5:
            frame = read_frame(conn)
            assert frame.opcode != OP_CLOSE, f"closed: {frame.close_code} {frame.payload[2:]!r}"
            if frame.opcode == OP_PING:
                pings += 1
                time.sleep(1.2)
                conn.send(encode_frame(OP_PONG, frame.payload))
        assert pings >= 2
        conn.send(encode_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
        assert read_close(conn, reply=False).close_code == 1000
    assert wait_record(server, key, "disconnect")["code"] == 1000


def test_ping_interval_longer_than_the_timeout(module_servers: Any) -> None:
    # Pings every 1.5 s with a 0.3 s timeout: pings come an interval apart, not a timeout apart.
    server = keepalive_server(module_servers, "1.5", "0.3")
    with open_held(server) as conn:
        times = []
        while len(times) < 3:
            frame = read_frame(conn)
            assert frame.opcode == OP_PING, frame
            times.append(time.monotonic())
            conn.send(encode_frame(OP_PONG, frame.payload))
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(1.2 < gap < 2.5 for gap in gaps), gaps


def test_ping_timeout_fails_the_connection_with_1011(module_servers: Any) -> None:
    server = keepalive_server(module_servers, "0.5", "0.5")
    key = new_key_name()
    with open_held(server, key) as conn:
        started = time.monotonic()
        assert read_frame(conn).opcode == OP_PING  # never answered
        close = read_close(conn, reply=False)
        assert close.close_code == 1011 and close.payload[2:] == b"keepalive ping timeout"
        assert conn.peer_closed(timeout=5)
        assert time.monotonic() - started < 3
    assert wait_record(server, key, "disconnect")["code"] == 1006


def test_ping_timeout_zero_never_fails(module_servers: Any) -> None:
    server = keepalive_server(module_servers, "0.3", "0")
    with open_held(server) as conn:
        pings = 0
        started = time.monotonic()
        while time.monotonic() - started < 2:
            frame = read_frame(conn)  # never answered
            assert frame.opcode == OP_PING, frame
            pings += 1
        assert pings >= 4


# === HTTP/1.1 pipelining against a client that does not read =======================================


def test_pipelined_requests_wait_for_the_client_to_read(module_servers: Any) -> None:
    # A client pipelines 600 requests for 100 KB each and reads nothing for two seconds: the gateway
    # must not run them all and hold their 60 MB of responses (one client could exhaust its memory);
    # the next request runs once the response before it is written. Then every response arrives,
    # whole and in order.
    server = module_servers.start("testapp:app", app_dir=APPS_DIR, workers=1)
    count, size = 600, 100_000
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        base = vm_rss_kib(server.process.pid)
        requests = b"".join(
            f"GET /_/blob?size={size}&seed={i} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for i in range(count)
        )
        sender = threading.Thread(target=sock.sendall, args=(requests,), daemon=True)
        sender.start()
        time.sleep(2)
        grown = vm_rss_kib(server.process.pid) - base
        assert grown < 24 * 1024, f"the gateway grew by {grown} KiB for a client that reads nothing"
        reader = sock.makefile("rb")
        for i in range(count):
            status = reader.readline()
            assert status.startswith(b"HTTP/1.1 200"), (i, status)
            headers = {}
            while (line := reader.readline()) != b"\r\n":
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = reader.read(int(headers["content-length"]))
            assert len(body) == size and hashlib.sha256(body).hexdigest() == headers["x-sha256"], i
            assert body == random.Random(i).randbytes(size), i
        sender.join(timeout=10)
        assert not sender.is_alive()


def log_lines(server: GatewayServer, text: str, count: int = 1, within: float = 5.0) -> list[str]:
    """The gateway's log lines holding text, once there are count of them (within seconds)."""
    deadline = time.monotonic() + within
    while len(lines := [x for x in server.stderr().splitlines() if text in x]) < count:
        assert time.monotonic() < deadline, server.stderr()[-2000:]
        time.sleep(0.05)
    return lines


def requests_counted(address: str, status_class: str, method: str = "GET") -> float | None:
    """asgi_gateway_requests_total{method, status} from the metrics endpoint at address."""
    from test_lifecycle import metric

    return metric(httpx.get(f"http://{address}/metrics", timeout=5).text, "asgi_gateway_requests_total",
                  method=method, status=status_class)


def logged_server(module_servers: Any, app: str = "testapp:app", *args: str) -> tuple[GatewayServer, str]:
    """A one-worker server whose access-log lines read ``ACCESS status [request line]``, with its
    metrics at the address returned."""
    from test_lifecycle import free_port

    address = f"127.0.0.1:{free_port()}"
    server = module_servers.start(app, app_dir=APPS_DIR, workers=1, extra_args=[
        *args, "--metrics-address", address, "--access-log-format", "ACCESS %(status)s [%(request_line)s]"])
    return server, address


# === requests the gateway answers itself ===========================================================


@pytest.mark.parametrize(
    "request_bytes, status, line",
    [
        (b"GET /no-host HTTP/1.1\r\n\r\n", 400, "GET /no-host HTTP/1.1"),
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, None),
        (b"GET /fat HTTP/1.1\r\nHost: t\r\nX-Fat: " + b"f" * 20000 + b"\r\n\r\n", 431, "GET /fat HTTP/1.1"),
        (b"GET /two HTTP/2.0\r\nHost: t\r\n\r\n", 505, None),
        # A refused request-line with control bytes: none of them reaches the log.
        (b"GET /x\x1b]0;pwned\x07 HTTP/1.1\r\nHost: t\r\n\r\n", 400, None),
    ],
)
def test_refused_requests_are_logged_and_counted(
    module_servers: Any, request_bytes: bytes, status: int, line: str | None
) -> None:
    # The access log has "one line per request" (README), the gateway's own refusals too, and the
    # request counter counts them (as it does a 413).
    from test_lifecycle import metric

    server, address = logged_server(module_servers)
    with server.raw() as conn:
        conn.send(request_bytes)
        assert conn.read_head().status == status
    lines = log_lines(server, f"ACCESS {status} ")
    assert len(lines) == 1, lines
    assert not any(ch < " " for ch in lines[0]), lines[0]
    if line is not None:
        assert f"[{line}]" in lines[0]
    text = httpx.get(f"http://{address}/metrics", timeout=5).text
    counted = sum(
        metric(text, "asgi_gateway_requests_total", method=m, status=f"{status // 100}xx") or 0
        for m in ("GET", "other", "")
    )
    assert counted == 1, [x for x in text.splitlines() if "requests_total" in x]


@pytest.mark.parametrize(
    "target, started, status",
    [("/_/slow?seconds=30", False, 499), ("/_/stream?n=2&delay=30", True, 200)],
    ids=["before-the-response", "during-the-response"],
)
def test_a_request_whose_client_left_is_logged_and_counted_when_it_leaves(
    module_servers: Any, target: str, started: bool, status: int
) -> None:
    # "One line per request" (README), also for a client that leaves before its response is
    # complete, and at once: the app may run on for long (here 30 s; a stream waiting for events,
    # forever). Its status is the response's if it started (as uvicorn, which logs at the start),
    # else 499, nginx's "client closed request"; the request counter counts it.
    server, address = logged_server(module_servers)
    marker = uuid.uuid4().hex
    target = f"{target}&m={marker}"
    with server.raw() as conn:
        conn.send(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        if started:
            assert conn.read_head().status == 200
        else:
            time.sleep(0.3)
    lines = log_lines(server, marker)  # (within 5 s of the client's leaving)
    assert lines == [lines[0]] and f"ACCESS {status} [GET {target} HTTP/1.1]" in lines[0], lines
    assert requests_counted(address, f"{status // 100}xx") == 1
    time.sleep(0.5)
    assert sum(marker in x for x in server.stderr().splitlines()) == 1, server.stderr()[-2000:]


def test_the_gateways_own_answers_log_their_body_bytes(module_servers: Any) -> None:
    # A 413 the gateway answers itself has a 24-byte body ("Request Entity Too Large"): the access
    # log's bytes said 0 over HTTP/1.1 and 24 over HTTP/2 (probe 44); 24 now.
    server = module_servers.start(
        "testapp:app", app_dir=APPS_DIR, workers=1,
        extra_args=["--limit-request-body", "10", "--access-log-format", "ACCESS %(status)s %(bytes)s [%(request_line)s]"],
    )
    marker = uuid.uuid4().hex
    with server.raw() as conn:
        conn.send(f"POST /big-{marker} HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n".encode())
        response = conn.read_response()
    assert response.status == 413 and len(response.body) == 24, response
    lines = log_lines(server, marker)
    assert f"ACCESS 413 24 [POST /big-{marker} HTTP/1.1]" in lines[0], lines


def test_a_websocket_handshake_whose_client_left_before_the_accept_is_logged_as_499(module_servers: Any) -> None:
    # The same for a WebSocket upgrade the app had not accepted yet when its client left (probe
    # 44): a line with 499, counted (an accepted one is logged with its 101).
    server, address = logged_server(module_servers, "ws_app:app")
    marker = uuid.uuid4().hex
    target = f"/accept?delay=2&m={marker}"
    with server.raw() as conn:
        conn.send(f"GET {target} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        time.sleep(0.3)
    lines = log_lines(server, marker)
    assert lines == [lines[0]] and f"ACCESS 499 [GET {target} HTTP/1.1]" in lines[0], lines
    assert requests_counted(address, "4xx") == 1
    time.sleep(2.5)  # (the app's accept, after its delay, must not log the request again)
    assert sum(marker in x for x in server.stderr().splitlines()) == 1, server.stderr()[-2000:]


def test_websocket_handshakes_count_toward_limit_concurrency_and_refusals_are_logged(module_servers: Any) -> None:
    # --limit-concurrency refused requests past the limit but not WebSocket handshakes (uvicorn
    # refuses both; an open WebSocket counts toward it); and a handshake the gateway refused as
    # malformed (400) had no access-log line (probe 44).
    server = module_servers.start(
        "ws_app:app", app_dir=APPS_DIR, workers=1,
        extra_args=["--limit-concurrency", "1", "--access-log-format", "ACCESS %(status)s [%(request_line)s]"],
    )
    handshake = ("GET {} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    marker = uuid.uuid4().hex
    with server.raw() as first:
        first.send(handshake.format(f"/accept?m={marker}").encode())
        assert first.read_head().status == 101
        with server.raw() as second:
            second.send(handshake.format(f"/accept?m={marker}-2").encode())
            assert second.read_head().status == 503
    with server.raw() as bad:
        bad.send(f"GET /accept?m={marker}-3 HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())  # no key
        assert bad.read_head().status == 400
    lines = log_lines(server, marker, count=3)
    assert any(f"ACCESS 503 [GET /accept?m={marker}-2 HTTP/1.1]" in x for x in lines), lines
    assert any(f"ACCESS 400 [GET /accept?m={marker}-3 HTTP/1.1]" in x for x in lines), lines


def test_an_http2_stream_reset_before_its_response_is_logged_as_499(module_servers: Any) -> None:
    # The same over HTTP/2: a stream the client resets (CANCEL) before the response started is
    # logged and counted with 499 (it was status 0, counted as "other").
    import h2.config
    import h2.connection
    import h2.errors

    server, address = logged_server(module_servers, "testapp:app", "--http2-cleartext")
    marker = uuid.uuid4().hex
    path = f"/_/slow?seconds=30&m={marker}"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"t"), (b":path", path.encode())],
                          end_stream=True)
        sock.sendall(conn.data_to_send())
        time.sleep(0.3)
        conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
        sock.sendall(conn.data_to_send())
        lines = log_lines(server, marker)
    assert lines == [lines[0]] and f"ACCESS 499 [GET {path} HTTP/2]" in lines[0], lines
    assert requests_counted(address, "4xx") == 1


def test_an_http2_request_refused_for_overload_is_counted(module_servers: Any) -> None:
    # asgi_gateway_overload_rejections_total counted the 503s of --limit-concurrency over HTTP/1.1
    # only (probe 44).
    from test_lifecycle import free_port, metric

    address = f"127.0.0.1:{free_port()}"
    server = module_servers.start(
        "testapp:app", app_dir=APPS_DIR, workers=1,
        extra_args=["--http2-cleartext", "--limit-concurrency", "1", "--metrics-address", address],
    )
    busy = threading.Thread(target=lambda: httpx.get(f"{server.url}/_/slow?seconds=2", timeout=10))
    busy.start()
    try:
        time.sleep(0.5)
        results = h2_streams(server, [[(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"t"), (b":path", b"/")]])
        assert results[1]["status"] == 503, results
    finally:
        busy.join(10)
    text = httpx.get(f"http://{address}/metrics", timeout=5).text
    assert metric(text, "asgi_gateway_overload_rejections_total") == 1, [x for x in text.splitlines() if "overload" in x]


# === statuses =====================================================================================


@pytest.mark.parametrize("code", [599, 600, 999])
def test_statuses_outside_100_599_are_a_server_error(module_servers: Any, code: int) -> None:
    # RFC 9110 §15: "Values outside the range 100..599 are invalid"; the app's invalid status is a
    # 500 from the server, as any other invalid http.response.start.
    server = module_servers.start("testapp:app", app_dir=APPS_DIR, workers=1)
    response = httpx.get(f"{server.url}/_/status", params={"code": str(code), "body": "1"})
    assert response.status_code == (code if code == 599 else 500)


# === HTTP/2 header sections over the limit ==========================================================


def h2_streams(server: GatewayServer, requests: list[list[tuple[bytes, bytes]]]) -> dict[int, dict[str, Any]]:
    """The requests on streams 1, 3, ... of one h2c connection, one after the other: per stream its
    status, body and reset code; "goaway" when the connection ends."""
    import h2.config
    import h2.connection
    import h2.events

    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    config = h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False)
    conn = h2.connection.H2Connection(config)
    conn.local_settings = h2.settings.Settings(client=True, initial_values={h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 20})
    conn.initiate_connection()
    results: dict[int, dict[str, Any]] = {}
    with sock:
        for i, headers in enumerate(requests):
            sid = 2 * i + 1
            results[sid] = {"status": None, "body": b"", "reset": None}
            conn.send_headers(sid, headers, end_stream=True)
            sock.sendall(conn.data_to_send())
            while True:
                data = sock.recv(65536)
                if not data:
                    results[sid]["goaway"] = True
                    return results
                done = False
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                        results[sid]["status"] = int(dict(event.headers)[b":status"])
                    elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                        results[sid]["body"] += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, sid)
                    elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                        done = True
                    elif isinstance(event, h2.events.StreamReset) and event.stream_id == sid:
                        results[sid]["reset"] = event.error_code
                        done = True
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        results[sid]["goaway"] = event.error_code
                        return results
                sock.sendall(conn.data_to_send())
                if done:
                    break
    return results


@pytest.mark.parametrize("fields", [[("cookie", "s=" + "c" * 17000)], [("x-a", "a" * 9000), ("x-b", "b" * 9000)]])
def test_h2_header_section_over_the_limit_is_431_for_its_stream_alone(
    module_servers: Any, fields: list[tuple[str, str]]
) -> None:
    # RFC 9113 §10.5.1: a server "can send an HTTP 431"; one field over x/net's string limit used to
    # end the whole connection (GOAWAY COMPRESSION_ERROR), the other streams with it.
    server = module_servers.start("testapp:app", app_dir=APPS_DIR, workers=1, extra_args=["--http2-cleartext"])

    def request(*extra: tuple[str, str]) -> list[tuple[bytes, bytes]]:
        pseudo = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "localhost")]
        return [(n.encode(), v.encode()) for n, v in (*pseudo, *extra)]

    results = h2_streams(server, [request(*fields), request()])
    assert results[1]["status"] == 431 and "goaway" not in results[1], results[1]
    assert results[3]["status"] == 200 and "goaway" not in results[3], results[3]


# === shutdown ======================================================================================


def test_a_worker_killed_at_shutdown_is_logged(module_servers: Any) -> None:
    # A lifespan shutdown that does not end is cut after --timeout-lifespan-shutdown (2 s here),
    # counted from when the worker's requests are done (none here: at once, not after the 30 s
    # --timeout-graceful-shutdown the requests could have had); the log says so, rather than the
    # app's shutdown silently not finishing.
    server = module_servers.start(
        "lifespan_app:slow_shutdown_app", app_dir=APPS_DIR, workers=1, extra_args=["--timeout-lifespan-shutdown", "2"],
    )
    assert httpx.get(f"{server.url}/pid").status_code == 200
    started = time.monotonic()
    assert server.stop(timeout=40) == 0
    took = time.monotonic() - started
    assert 1.8 < took < 10, took
    assert "ran past --timeout-lifespan-shutdown; killed" in server.stderr(), server.stderr()


# === ASGI 2 (legacy, double-callable) applications =================================================

ASGI2_APP = '''
class ClassApp:
    """ASGI 2: the class is called with the scope; its instance with receive and send."""

    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        if self.scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = ("class " + self.scope["path"] + " " + self.scope["asgi"]["version"]).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


def function_app(scope):
    async def instance(receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": ("function " + scope["path"] + " " + scope["asgi"]["version"]).encode()})
    return instance


class ObjectApp:
    """ASGI 2 as an object: its plain __call__ takes the scope (uvicorn's --interface auto serves it)."""

    def __call__(self, scope):
        return function_app(scope)


object_app = ObjectApp()


async def asgi3_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": ("asgi3 " + scope["path"] + " " + scope["asgi"]["version"]).encode()})
'''


@pytest.mark.parametrize("attr, prefix", [("ClassApp", "class"), ("function_app", "function"), ("object_app", "function")])
def test_asgi2_applications_are_served(module_servers: Any, tmp_path: Any, attr: str, prefix: str) -> None:
    # asgi.rst, Legacy Applications: servers "are encouraged to support both types" (uvicorn's
    # --interface auto does); the scope's asgi version is the interface's, "2.0" (as uvicorn's).
    (tmp_path / "asgi2_app.py").write_text(ASGI2_APP)
    server = module_servers.start(f"asgi2_app:{attr}", app_dir=tmp_path, workers=1)
    response = httpx.get(f"{server.url}/x")
    assert (response.status_code, response.text) == (200, f"{prefix} /x 2.0")


def test_interface_option_is_honoured(module_servers: Any, tmp_path: Any) -> None:
    # uvicorn's --interface asgi2 / asgi3: the app is called that way, whatever its shape.
    (tmp_path / "asgi2_app.py").write_text(ASGI2_APP + (
        "\nclass AnyArgs:\n    def __call__(self, *args):\n        return function_app(*args)\n\n\nany_args = AnyArgs()\n"))
    for attr, interface, expected in [
        ("any_args", "auto", (500, None)),  # taken for ASGI 3: function_app(scope, receive, send) fails
        ("any_args", "asgi2", (200, "function /x 2.0")),
        ("object_app", "asgi3", (500, None)),  # ASGI 2 by its shape, called as ASGI 3
    ]:
        server = module_servers.start(f"asgi2_app:{attr}", app_dir=tmp_path, workers=1, extra_args=["--interface", interface])
        response = httpx.get(f"{server.url}/x")
        assert response.status_code == expected[0], (attr, interface, response.text)
        if expected[1] is not None:
            assert response.text == expected[1]
        server.stop()


@pytest.mark.parametrize("value, message", [
    ("wsgi", "--interface wsgi: WSGI apps are not served"),
    ("asgi4", "must be auto, asgi3 or asgi2"),
])
def test_interface_values_that_cannot_be_served_are_usage_errors(gateway_binary: None, tmp_path: Any, value: str, message: str) -> None:
    (tmp_path / "asgi2_app.py").write_text(ASGI2_APP)
    result = subprocess.run(gateway_command("asgi2_app:asgi3_app", "--app-dir", str(tmp_path), "--interface", value),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


# === empty list elements ===========================================================================


@pytest.mark.parametrize("value", ["chunked,", ", chunked", "chunked, ,"])
def test_transfer_encoding_empty_list_elements_are_ignored(module_servers: Any, value: str) -> None:
    # RFC 9110 §5.6.1.2: "a recipient MUST parse and ignore a reasonable number of empty list
    # elements": "chunked," is chunked.
    server = module_servers.start("testapp:app", app_dir=APPS_DIR, workers=1)
    with server.raw() as conn:
        conn.send(
            f"POST /_/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: {value}\r\n\r\n5\r\nhello\r\n0\r\n\r\n".encode()
        )
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"hello")


@pytest.mark.parametrize("value", ["100-continue,", ", 100-continue"])
def test_expect_empty_list_elements_are_ignored(module_servers: Any, value: str) -> None:
    server = module_servers.start("testapp:app", app_dir=APPS_DIR, workers=1)
    with server.raw() as conn:
        conn.send(f"POST /_/echo HTTP/1.1\r\nHost: t\r\nExpect: {value}\r\nContent-Length: 5\r\n\r\n".encode())
        assert conn.read_head().status == 100
        conn.send(b"hello")
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"hello")
