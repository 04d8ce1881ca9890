"""RFC 9110/9112 and ASGI conformance of the real binary, seventh round.

* Interim responses come before the final one (RFC 9110 §15.2: 1xx are sent "prior to completing
  the requested action and sending a final response"). With ``Expect: 100-continue``, an app that
  starts its response and only then reads the body must not get ``100 Continue`` written into its
  response (into its content, or where a chunk size belongs): the server omits it (§10.1.1: a
  server "MAY omit sending a 100 (Continue) response") and reads the body as the client sends it.
* A client that leaves while a request it pipelined waits behind one in flight is noticed: the app
  in flight gets ``http.disconnect`` (ASGI www.rst, Disconnect: "after the HTTP connection has been
  closed ... mainly useful for long-polling"), as it does without the pipelined request, and the
  queued request is not run. A half-close after pipelined requests still gets every response.
* ``--timeout-keep-alive 0`` (uvicorn's option): one request per connection, not none.
* ``--host 0.0.0.0`` listens on IPv4 only and ``--host ::`` on IPv6 only, as uvicorn does.
* Methods are case-sensitive (RFC 9110 §9.1): an uppercase method reaches the app as sent (www.rst:
  "the HTTP method name, uppercased"), and one with lowercase letters is refused with 501, never
  folded into another (a ``head`` framed as HEAD would desync a proxy that takes it for an unknown
  method), over HTTP/1.1 and HTTP/2.
* WebSocket (RFC 6455 §5.5.1, §5.5.3): the client's messages after the app's close are dropped by
  the gateway, never sent to the worker past the stream's window; a client that sends pings and
  reads no pongs is no longer read (its pongs would queue without bound). A client that leaves
  before the app answered the handshake is noticed (websocket.disconnect 1006). The 101 keeps its
  framing and handshake fields whatever websocket.accept's headers say; a 426 names the Upgrade
  (RFC 9110 §15.5.22); "websocket" on a second Upgrade line is a handshake (§5.3).
* Trailers (extensions.rst): an app's invalid trailer field is dropped and the chunked message still
  ends; trailers announced and never sent leave the response incomplete (the connection is cut);
  trailers after an http.response.pathsend follow the file (HTTP/1.1 and HTTP/2).
* www.rst 2.4: a task that sends after its app returned with the response incomplete (the
  connection cut) gets an OSError (ClientDisconnected), not a silent return. An app that fails after
  its start and before any body event (with no await between) gets a 500: its head never went out.
* HTTP/2: a :path that is not absolute-path ["?" query] (a fragment, a space, a raw non-ASCII byte)
  is refused as over HTTP/1.1 (RFC 9113 §8.3.1); an app's ordinary trailer header makes no trailer
  section; at most 100 concurrent streams (each may hold a worker window a stalled client did not
  take); with --timeout-keep-alive 0 an idle connection still closes.
* A graceful shutdown lets a static download in flight finish, as an app's response. Static
  replies over HTTP/2 carry the gateway's own fields (Server, --header, Date as configured).
* Command line, as uvicorn's: usage errors exit 2, a port in use exits 3 (a startup failure), and
  --ssl-version and --ws-max-queue are accepted and said to be ignored; a --root-path
  that is no UTF-8 is a usage error.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import httpx
import pytest

from gateway_harness import APPS_DIR, REPO_ROOT, GatewayServer, IncompleteResponse, RawConnection, gateway_command
from test_rfc_conformance4 import h2_request, request_headers
from test_ws_protocol import (
    OP_BINARY,
    OP_PING,
    OP_TEXT,
    encode_frame,
    expected_accept,
    raw_open,
    read_close,
    read_data_frame,
    upgrade_request,
    vm_rss_kib,
)


@pytest.fixture(scope="module")
def app_server(module_servers: Any) -> GatewayServer:
    return module_servers.start("conformance7_app:app", app_dir=APPS_DIR, workers=1)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("request_body", ["content-length", "chunked"])
def test_no_100_continue_after_the_response_started(app_server: GatewayServer, framing: str, request_body: str) -> None:
    """Interim responses come before the final one (RFC 9110 §15.2). With a first body piece the
    head goes out before the app reads, and no 100 follows it; with a start alone the head waits for
    the app's first body (www.rst), so the app's read sends 100 Continue before it."""
    target = "/respond-then-read?cl=15" if framing == "content-length" else "/respond-then-read"
    if request_body == "content-length":
        head = f"POST {target} HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n"
        body = b"hello world"
    else:
        head = f"POST {target} HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
        body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    with app_server.raw() as conn:
        conn.send(head.encode())
        first = conn.read_head()  # the client waits for 100 or a final status before its body
        if framing == "content-length":
            assert first.status == 100, first.status
            conn.send(body)
            first = conn.read_head()
        else:
            conn.send(body)
        assert first.status == 200, first.status
        if framing == "content-length":
            assert first.header("content-length") == "15"
            content = conn.read_exact(15)
        else:
            assert first.header("transfer-encoding") == "chunked"
            content = conn.read_chunked(first)
        rest = conn.read_to_close()
    assert content == (b"got=hello world" if framing == "content-length" else b"first;got=hello world")
    assert b"100 Continue" not in content + rest
    assert rest == b""  # answered before its body was read: the connection closes after it


def events(server: GatewayServer) -> list[str]:
    return httpx.get(f"{server.url}/events", timeout=10).text.splitlines()


def wait_events(server: GatewayServer, count: int, timeout: float = 10.0) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        seen += events(server)
        time.sleep(0.05)
    return seen


def test_client_leaving_behind_a_pipelined_request_is_noticed(app_server: GatewayServer) -> None:
    """ASGI http.disconnect: "Sent to the application if receive is called ... after the HTTP
    connection has been closed", as for a long-poll; with a request pipelined behind it too. The
    queued request is not run for a client that left."""
    events(app_server)
    with app_server.raw() as conn:
        conn.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)
    assert wait_events(app_server, 1) == ["slow: http.disconnect"]
    time.sleep(0.3)
    assert events(app_server) == []  # /second was not served


def test_pipelined_requests_then_half_close_are_all_answered(app_server: GatewayServer) -> None:
    """A client may send its requests and shut down its sending side (RFC 9112 §9.6): a response
    that completes within the half-close grace is followed by the next one."""
    events(app_server)
    with app_server.raw() as conn:
        conn.send(b"GET /slow?s=0.2 HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\n\r\n")
        conn.sock.shutdown(socket.SHUT_WR)
        first, second = conn.read_response(), conn.read_response()
        assert (first.status, first.body, second.status, second.body) == (200, b"slow", 200, b"/second")
        assert conn.peer_closed()
    assert wait_events(app_server, 2) == ["slow: answered", "served /second"]


def test_pipelined_requests_behind_a_slow_one_keep_the_connection(app_server: GatewayServer) -> None:
    """Requests pipelined while one is in flight, some of them sent later, are answered in order,
    and the connection stays usable (keep-alive) after them."""
    with app_server.raw() as conn:
        conn.send(b"GET /slow?s=0.5 HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.2)
        conn.send(b"GET /third HTTP/1.1\r\nHost: t\r\n\r\n")
        bodies = [conn.read_response().body for _ in range(3)]
        assert bodies == [b"slow", b"/second", b"/third"]
        time.sleep(0.3)
        response = conn.request("GET", "/fourth", [("Host", "t")])
        assert (response.status, response.body) == (200, b"/fourth")


def test_keep_alive_zero_serves_one_request_per_connection(servers: Any) -> None:
    """--timeout-keep-alive 0, as with uvicorn: every request is served, and its connection closes
    after the response (no keep-alive); HTTP/2 (h2c) connections are served too."""
    server = servers.start("conformance7_app:app", app_dir=APPS_DIR, extra_args=["--timeout-keep-alive", "0", "--http2-cleartext"])
    for _ in range(2):
        with server.raw() as conn:
            conn.send(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\n\r\n")
            response = conn.read_response()
            assert (response.status, response.body) == (200, b"/one")
            assert "close" in response.connection_tokens()
            assert conn.read_to_close() == b""  # the pipelined second request is not served
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        response = client.get(f"{server.url}/h2")
    assert (response.http_version, response.status_code, response.text) == ("HTTP/2", 200, "/h2")


def _connects(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        return sock.connect_ex((host, port)) == 0


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
@pytest.mark.parametrize("host, served, refused", [("0.0.0.0", "127.0.0.1", "::1"), ("::", "::1", "127.0.0.1")])
def test_wildcard_host_listens_on_its_own_family(servers: Any, host: str, served: str, refused: str) -> None:
    """--host 0.0.0.0 is IPv4 only and --host :: IPv6 only, as with uvicorn (a dual-stack socket
    would serve the app on the other family's addresses too, past firewall rules for the one asked
    for); the log says the address asked for."""
    server = servers.start("conformance7_app:app", app_dir=APPS_DIR, extra_args=["--host", host])
    shown = "[::]" if host == "::" else host
    assert server.url.startswith(f"http://{shown}:"), server.url
    assert _connects(served, server.port)
    assert not _connects(refused, server.port)


@pytest.mark.parametrize("method", ["GET", "POST", "PURGE", "M-SEARCH", "X_1"])
def test_uppercase_method_reaches_the_app_as_sent(app_server: GatewayServer, method: str) -> None:
    with app_server.raw() as conn:
        response = conn.request(method, "/method", [("Host", "t"), ("Content-Length", "0")])
    assert (response.status, response.body) == (200, method.encode())


@pytest.mark.parametrize("method", ["get", "Post", "purge", "hEAD", "delete"])
def test_method_with_lowercase_letters_is_not_implemented(app_server: GatewayServer, method: str) -> None:
    """RFC 9110 §9.1: "The method token is case-sensitive", and an origin server answers a method it
    does not implement with 501 (nginx and uvicorn's default httptools refuse these too). Folding
    "post" into POST would let it past a middleware that compares with "POST"; passing it on as
    "post" would break the scope's "uppercased" (www.rst)."""
    with app_server.raw() as conn:
        response = conn.request(method, "/method", [("Host", "t"), ("Content-Length", "0")])
    assert (response.status, response.body) == (501, b"Not Implemented")  # (not the app's answer)


def test_lowercase_head_is_not_framed_as_head(app_server: GatewayServer) -> None:
    """A "head" request is not a HEAD request: it is refused, and the connection closes after the
    501, so nothing pipelined behind it is read as the answer to something else."""
    with app_server.raw() as conn:
        conn.send(b"head /method HTTP/1.1\r\nHost: t\r\n\r\nGET /method HTTP/1.1\r\nHost: t\r\n\r\n")
        refused = conn.read_response()
        assert (refused.status, refused.header("connection")) == (501, "close")
        assert conn.read_to_close() == b""


@pytest.fixture(scope="module")
def h2c_app_server(module_servers: Any) -> GatewayServer:
    return module_servers.start("conformance7_app:app", app_dir=APPS_DIR, workers=1, extra_args=["--http2-cleartext"])


@pytest.mark.parametrize("sent, status, body", [("get", "501", None), ("Post", "501", None), ("PURGE", "200", b"PURGE")])
def test_method_case_over_http2(h2c_app_server: GatewayServer, sent: str, status: str, body: Any) -> None:
    got = h2_request(h2c_app_server, request_headers(sent, "/method"))
    assert (got["status"], got["reset"]) == (status, None)
    if body is not None:
        assert got["body"] == body


# --- WebSocket -------------------------------------------------------------------------------------


def worker_pid(server: GatewayServer) -> int:
    return int(httpx.get(f"{server.url}/pid", timeout=10).text)


def test_messages_after_the_apps_close_are_dropped_not_sent_past_the_window(app_server: GatewayServer) -> None:
    """RFC 6455 §5.5.1 binds the side that sent a close: the client may go on sending until it reads
    ours. Its messages after the app's websocket.close are read (to reach its close frame) and
    dropped by the gateway; sent to the worker past the stream's window (SPEC §4), they made the
    worker fail its whole connection: every stream on it lost, the closing app's cleanup never run."""
    events(app_server)
    pid = worker_pid(app_server)
    conn, _ = raw_open(app_server, "/ws/close-and-linger")
    with conn:
        message = encode_frame(OP_BINARY, b"x" * 65536)
        for _ in range(12):  # 768 KiB: three times the 256 KiB window
            conn.send(message)
        close = read_close(conn)
        assert close.close_code == 1000
    assert wait_events(app_server, 1) == ["linger: cleanup done"]
    assert worker_pid(app_server) == pid
    assert "protocol error" not in app_server.stderr()


def test_pings_of_a_client_that_does_not_read_its_pongs_are_not_queued_without_bound(app_server: GatewayServer) -> None:
    """RFC 6455 §5.5.3 does not ask for a pong per ping; a client that sends pings and reads
    nothing must not make the gateway queue pongs without bound: it stops reading that client."""
    gateway = app_server.process.pid
    before = vm_rss_kib(gateway)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", app_server.port))
    conn = RawConnection(sock)
    with conn:
        request, _ = upgrade_request("/ws/hold")
        conn.send(request)
        assert conn.read_head().status == 101
        ping = encode_frame(OP_PING, b"p" * 125)
        batch = ping * 1000  # 131 KB
        sent = 0
        sock.settimeout(2)
        try:
            while sent < 40 << 20:
                sock.sendall(batch)
                sent += len(batch)
        except socket.timeout:
            pass  # the gateway stopped reading: the pongs back up
        grown = vm_rss_kib(gateway) - before
    assert sent < 40 << 20, "the gateway read 40 MB of pings from a client that takes no pongs"
    assert grown < 16 << 10, f"gateway RSS grew by {grown} KiB"


def test_client_leaving_before_the_handshake_is_answered_is_noticed(app_server: GatewayServer) -> None:
    """ASGI websocket.disconnect: "Sent to the application when either connection to the client is
    lost": also before the app answered websocket.connect (an app that calls receive() again while
    it decides, e.g. to authenticate, learns that the client left: 1006, RFC 6455 §7.1.5)."""
    events(app_server)
    with app_server.raw() as conn:
        request, _ = upgrade_request("/ws/slow-accept")
        conn.send(request)
        assert wait_events(app_server, 1) == ["slow-accept: connect"]
    assert wait_events(app_server, 1) == ["slow-accept: websocket.disconnect 1006"]


def test_frames_sent_while_the_handshake_waits_for_the_app_are_kept(app_server: GatewayServer) -> None:
    with app_server.raw() as conn:
        request, _ = upgrade_request("/ws/delayed-accept")
        conn.send(request)
        for i in range(3):  # read by the gateway while it waits for the app's accept
            time.sleep(0.1)
            conn.send(encode_frame(OP_TEXT, f"m{i}".encode()))
        assert conn.read_head().status == 101
        assert [read_data_frame(conn).payload for _ in range(3)] == [b"m0", b"m1", b"m2"]


def test_accept_fields_that_frame_or_carry_the_handshake_are_the_gateways(app_server: GatewayServer) -> None:
    """A 101 has no content (RFC 9110 §8.6, RFC 9112 §6.1: no Content-Length or Transfer-Encoding
    on a 1xx); a second Sec-WebSocket-Accept, or extensions the client did not offer, fail its
    handshake (RFC 6455 §4.1). Those of websocket.accept's headers are dropped; the app's own stay."""
    conn, response = raw_open(app_server, "/ws/accept-framing")
    with conn:
        assert response.header("x-app") == "kept"
        for name in ("content-length", "transfer-encoding", "sec-websocket-extensions"):
            assert response.header_list(name) == [], (name, response.head_bytes)
        assert len(response.header_list("sec-websocket-accept")) == 1
        assert response.header_list("upgrade") == ["websocket"]
        assert response.connection_tokens() == {"upgrade"}


def test_426_names_the_upgrade(app_server: GatewayServer) -> None:
    """RFC 9110 §15.5.22: "The server MUST send an Upgrade header field in a 426 response", with
    the upgrade connection option (§7.8); RFC 6455 §4.4: Sec-WebSocket-Version lists 13."""
    with app_server.raw() as conn:
        request, _ = upgrade_request("/ws/hold", version="8")
        conn.send(request)
        response = conn.read_response()
    assert response.status == 426
    assert response.header("sec-websocket-version") == "13"
    assert response.header("upgrade") == "websocket"
    assert "upgrade" in response.connection_tokens()


def test_websocket_listed_on_a_second_upgrade_line_is_a_handshake(app_server: GatewayServer) -> None:
    """Several field lines are one list (RFC 9110 §5.3): "Upgrade: foo" then "Upgrade: websocket"
    asks for websocket (RFC 6455 §4.2.1), as "Upgrade: foo, websocket" does."""
    request, key = upgrade_request("/ws/hold")
    request = request.replace(b"Upgrade: websocket\r\n", b"Upgrade: foo\r\n", 1).replace(
        b"\r\n\r\n", b"\r\nUpgrade: websocket\r\n\r\n", 1)
    with app_server.raw() as conn:
        conn.send(request)
        response = conn.read_head()
    assert response.status == 101, response.head_bytes
    assert response.header("sec-websocket-accept") == expected_accept(key or "")


# --- command line (uvicorn parity) ---------------------------------------------------------------


def run_gateway(*args: str) -> subprocess.CompletedProcess[str]:
    command = gateway_command("conformance7_app:app", "--app-dir", str(APPS_DIR), "--host", "127.0.0.1", *args)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


@pytest.mark.parametrize("args", [["--no-such-option"], ["--port", "abc"]], ids=["unknown-option", "bad-value"])
def test_usage_errors_exit_2(gateway_binary: None, args: list[str]) -> None:
    """As uvicorn's (click's) usage errors, and the gateway's own checks of option values."""
    result = run_gateway(*args)
    assert result.returncode == 2, result.stderr


def test_port_in_use_is_a_startup_failure_exit_3(gateway_binary: None) -> None:
    """uvicorn: "address already in use", exit 3 (STARTUP_FAILURE), as a bad APP here."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_gateway("--port", str(taken.getsockname()[1]))
    assert result.returncode == 3, result.stderr
    assert "address already in use" in result.stderr


def _marker_app(directory: Path) -> Path:
    """An app module that leaves a file behind when it is imported; returns that file's path."""
    marker = directory / "imported"
    (directory / "marker_app.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n\nasync def app(scope, receive, send):\n    pass\n")
    return marker


def test_an_address_that_cannot_be_listened_on_fails_before_the_app_is_imported(
        gateway_binary: None, tmp_path: Path) -> None:
    """A port in use, or a Unix socket in a missing directory, is found before the workers import
    the app and run its lifespan startup (which may be slow, or act on the world): exit 3 at once."""
    marker = _marker_app(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = subprocess.run(
            gateway_command("marker_app:app", "--app-dir", str(tmp_path), "--host", "127.0.0.1",
                            "--port", str(taken.getsockname()[1])),
            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 3, result.stderr
    assert "address already in use" in result.stderr
    assert not marker.exists(), "the app was imported before the port was found taken"

    long_uds = tmp_path / ("x" * (119 - len(str(tmp_path))))  # 120 bytes with the separator
    result = subprocess.run(
        gateway_command("marker_app:app", "--app-dir", str(tmp_path), "--uds", str(long_uds)),
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 3, result.stderr
    assert "the path is 120 bytes long; a Unix socket's path may have at most 107" in result.stderr, result.stderr
    assert not marker.exists()

    uds = tmp_path / "missing" / "gw.sock"
    result = subprocess.run(
        gateway_command("marker_app:app", "--app-dir", str(tmp_path), "--uds", str(uds)),
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 3, result.stderr
    assert str(uds) in result.stderr
    assert not marker.exists(), "the app was imported before the socket was found impossible"


def test_a_descriptor_that_is_not_a_socket_fails_before_the_app_is_imported(
        gateway_binary: None, tmp_path: Path) -> None:
    marker = _marker_app(tmp_path)
    read_end, write_end = os.pipe()
    try:
        result = subprocess.run(
            gateway_command("marker_app:app", "--app-dir", str(tmp_path), "--fd", str(read_end)),
            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, pass_fds=(read_end,))
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.returncode == 3, result.stderr
    assert not marker.exists(), "the app was imported before the descriptor was found not a socket"
    assert f"file descriptor {read_end}: not a socket" in result.stderr


def test_a_worker_killed_during_its_startup_is_said_to_be(gateway_binary: None, tmp_path: Path) -> None:
    """A worker killed while it starts (the OOM killer while a model loads) is described by its
    signal, as a worker that dies later is, not as "exit status -1"."""
    (tmp_path / "killed_app.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    result = subprocess.run(gateway_command("killed_app:app", "--app-dir", str(tmp_path)),
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 3, result.stderr
    assert "the worker exited before it was ready (killed by SIGKILL" in result.stderr, result.stderr
    assert "exit status -1" not in result.stderr


def test_an_app_exiting_4_at_import_is_not_said_to_lack_msgpack(gateway_binary: None, tmp_path: Path) -> None:
    """Exit status 4 is also the worker's own for a missing msgpack; only its message says which."""
    (tmp_path / "exit4_app.py").write_text("import os\nos._exit(4)\n")
    result = subprocess.run(gateway_command("exit4_app:app", "--app-dir", str(tmp_path)),
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 3, result.stderr
    assert "msgpack" not in result.stderr, result.stderr
    assert "the worker exited before it was ready (exit status 4)" in result.stderr, result.stderr


def test_a_python_without_msgpack_is_said_to_lack_it(gateway_binary: None, tmp_path: Path) -> None:
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "python_worker"))  # the worker, but not msgpack
    result = subprocess.run(gateway_command("exit4_app:app", "--app-dir", str(tmp_path), python=str(venv / "bin" / "python")),
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=env)
    assert result.returncode == 3, result.stderr
    assert "the Python package msgpack is not installed in" in result.stderr, result.stderr


def test_an_app_dir_that_is_not_a_directory_is_a_usage_error(gateway_binary: None, tmp_path: Path) -> None:
    """A mistyped --app-dir would leave the current directory's modules importable instead: refused."""
    marker = _marker_app(tmp_path)
    result = subprocess.run(
        gateway_command("marker_app:app", "--app-dir", str(tmp_path / "missing")),
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"--app-dir {tmp_path / 'missing'}: not a directory" in result.stderr
    assert not marker.exists()


def test_uvicorn_options_done_another_way_are_accepted_with_a_message(servers: Any) -> None:
    """A uvicorn command line with --ssl-version or --ws-max-queue starts; each is
    said to be ignored, and why."""
    server = servers.start("conformance7_app:app", app_dir=APPS_DIR, extra_args=[
        "--ssl-version", "17", "--ws-max-queue", "32"])
    assert httpx.get(f"{server.url}/method", timeout=10).text == "GET"
    for name in ("ssl-version", "ws-max-queue"):
        assert re.search(rf"--{name} \S+ ignored: ", server.stderr()), server.stderr()


# --- trailers (asgiref extensions.rst, HTTP Trailers) --------------------------------------------


def test_invalid_trailers_raise_in_the_app_and_the_chunked_message_ends(app_server: GatewayServer) -> None:
    """An app's trailer field with a CRLF in its value: send() raises (asgi.rst, Error Handling: "the
    server should raise an exception out of the send awaitable"), the app sends valid trailers
    instead, and the trailer section ends (RFC 9112 §7.1: chunked-body = *chunk last-chunk
    trailer-section CRLF): nothing injected, and the next response on the connection does not run
    into it. (The gateway's own guard, for a worker that let such a field through, is
    gateway/extensions_test.go's TestInvalidFieldsFromTheWorkerNeverReachTheClient.)"""
    with app_server.raw() as conn:
        conn.send(b"GET /trailers-invalid HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\nGET /method HTTP/1.1\r\nHost: t\r\n\r\n")
        first = conn.read_response()
        second = conn.read_response()
    assert (first.status, first.body, first.trailers) == (200, b"data", [("x-t", "1")])
    assert (second.status, second.body) == (200, b"GET")
    seen: list[str] = []
    deadline = time.monotonic() + 10
    while "trailers-invalid: ValueError" not in seen and time.monotonic() < deadline:
        seen += events(app_server)
        time.sleep(0.05)
    assert "trailers-invalid: ValueError" in seen


def test_announced_trailers_that_never_come_leave_the_response_incomplete(app_server: GatewayServer) -> None:
    """www.rst, Response Start, trailers: "If True, the server must wait until it receives a
    http.response.trailers message". An app that ends without them did not complete its response:
    the connection is cut before the end of the chunked message, as HTTP/2 resets the stream."""
    with app_server.raw() as conn:
        conn.send(b"GET /trailers-missing HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\n")
        with pytest.raises(IncompleteResponse):
            conn.read_response()


PATHSEND_CONTENT = b"pathsend file contents\n" * 1000


def test_trailers_after_a_pathsend_are_sent(app_server: GatewayServer) -> None:
    """extensions.rst, Path Send: "it should behave the same as ordinary http.response.body"; the
    trailers the start announced follow the file."""
    with app_server.raw() as conn:
        response = conn.request("GET", "/pathsend-trailers", [("Host", "t"), ("TE", "trailers")])
    assert (response.status, response.body, response.trailers) == (200, PATHSEND_CONTENT, [("x-checksum", "abc")])


def test_trailers_after_a_pathsend_over_http2(h2c_app_server: GatewayServer) -> None:
    got = h2_request(h2c_app_server, request_headers("GET", "/pathsend-trailers", ("te", "trailers")))
    assert (got["status"], got["body"], got["reset"]) == ("200", PATHSEND_CONTENT, None)


def test_send_after_an_incomplete_response_ended_raises_an_oserror(app_server: GatewayServer) -> None:
    """www.rst 2.4, Disconnected Client: "If send() is called on a closed connection the server
    should raise a server-specific subclass of OSError". A task left behind by an app that returned
    without completing its response (the gateway cut the connection) is told so."""
    events(app_server)
    with app_server.raw() as conn:
        conn.send(b"GET /abandon HTTP/1.1\r\nHost: t\r\n\r\n")
        with pytest.raises(IncompleteResponse):
            conn.read_response()
    assert wait_events(app_server, 1) == ["abandon: ClientDisconnected True"]


@pytest.mark.parametrize("h2", [False, True], ids=["http1", "h2c"])
def test_app_failing_after_start_before_any_body_gets_a_500(app_server: GatewayServer, h2c_app_server: GatewayServer, h2: bool) -> None:
    """www.rst, Response Start: "The protocol server must not start sending the response to the
    client until it has received at least one Response Body event": an app that fails before any
    is answered as one that never started (500), not with its head and a cut."""
    if h2:
        got = h2_request(h2c_app_server, request_headers("GET", "/raise-after-start"))
        assert (got["status"], got["reset"]) == ("500", None)
        return
    with app_server.raw() as conn:
        response = conn.request("GET", "/raise-after-start", [("Host", "t")])
    assert response.status == 500


# --- HTTP/2 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/a#frag", "/a?x=1#frag", "/a b", "/a?q=a b", "/a?q=\u00e9", "/a/\u00ff"])
def test_http2_path_that_is_not_absolute_path_and_query_is_refused(h2c_app_server: GatewayServer, path: str) -> None:
    """RFC 9113 §8.3.1: :path is "the absolute-path production and optionally a '?' character
    followed by the query production"; a fragment is the client's (RFC 9110 §7.1); no space or raw
    non-ASCII byte. Refused as HTTP/1.1 refuses such a request-target (400), never in the scope."""
    headers = [(b":method", b"GET"), (b":path", path.encode("utf-8")), (b":scheme", b"http"), (b":authority", b"localhost")]
    got = h2_request(h2c_app_server, headers)
    assert got["reset"] == h2.errors.ErrorCodes.PROTOCOL_ERROR or (got["reset"] is None and got["status"] == "400"), got


def test_http2_app_trailer_header_sends_no_trailer_section(h2c_app_server: GatewayServer) -> None:
    """An app's ordinary trailer header does not make an unsolicited trailer section repeating
    header fields (RFC 9110 §6.5.1); trailers go out only as http.response.trailers. The field itself
    is sent, as over HTTP/1.1 (RFC 9110 §6.6.2: a sender SHOULD)."""
    got = h2_request(h2c_app_server, request_headers("GET", "/trailer-header"))
    assert (got["status"], got["body"], got["trailers"]) == ("200", b"hello", None)
    assert (b"trailer", b"x-foo") in got["headers"], got["headers"]


def test_http2_advertises_at_most_100_concurrent_streams(h2c_app_server: GatewayServer) -> None:
    """Each stream may hold up to the worker window of response a stalled client did not take: the
    number of streams bounds that per connection (RFC 9113 §10.5: "strictly bounded")."""
    sock = socket.create_connection(("127.0.0.1", h2c_app_server.port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    try:
        while True:
            events = conn.receive_data(sock.recv(65536))
            changed = [e for e in events if isinstance(e, h2.events.RemoteSettingsChanged)]
            if changed:
                setting = changed[0].changed_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS]
                assert setting.new_value <= 100
                return
    finally:
        sock.close()


def test_http2_idle_connection_closes_with_keep_alive_zero(servers: Any) -> None:
    """--timeout-keep-alive 0 is no keep-alive: an HTTP/2 connection, which cannot be limited to one
    request, is closed once idle for the bound its first request has (--timeout-request-header), not
    kept forever (x/net reads an idle timeout of 0 as none)."""
    server = servers.start("conformance7_app:app", app_dir=APPS_DIR, extra_args=[
        "--timeout-keep-alive", "0", "--timeout-request-header", "1", "--http2-cleartext"])
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, request_headers("GET", "/method"), end_stream=True)
    sock.sendall(conn.data_to_send())
    closed_at = None
    start = time.monotonic()
    try:
        while time.monotonic() - start < 10:
            data = sock.recv(65536)
            if not data:
                closed_at = time.monotonic() - start
                break
            events = conn.receive_data(data)
            if any(isinstance(e, h2.events.ConnectionTerminated) for e in events):
                closed_at = time.monotonic() - start
                break
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    assert closed_at is not None and closed_at < 5, closed_at


def test_graceful_shutdown_lets_a_static_download_finish(servers: Any, tmp_path: Path) -> None:
    """--timeout-graceful-shutdown: "wait this many seconds for requests in flight" (uvicorn finishes
    every response in flight): a static file being sent counts, as an app's response does."""
    static_dir = tmp_path / "www"
    static_dir.mkdir()
    size = 6_000_000
    (static_dir / "big.bin").write_bytes(b"x" * size)
    server = servers.start("conformance7_app:app", app_dir=APPS_DIR, extra_args=["--static", f"/static={static_dir}"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect(("127.0.0.1", server.port))
    sock.settimeout(10)
    sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    got = sock.recv(65536)
    server.process.send_signal(signal.SIGTERM)  # while most of the file is still to come
    while True:
        time.sleep(0.002)  # a slow reader: about 30 MB/s at most
        data = sock.recv(65536)
        if not data:
            break
        got += data
    sock.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert len(body) == size
    assert server.process.wait(timeout=30) == 0


@pytest.mark.parametrize("target, status", [("/static/a.txt", "200"), ("/static/missing.txt", "404")])
def test_http2_static_replies_carry_the_gateways_fields(servers: Any, tmp_path: Path, target: str, status: str) -> None:
    """Server, --no-date-header and --header apply to static replies over HTTP/2 as over HTTP/1.1
    and as to the app's responses (the 404 too)."""
    static_dir = tmp_path / "www"
    static_dir.mkdir()
    (static_dir / "a.txt").write_bytes(b"hello")
    server = servers.start("conformance7_app:app", app_dir=APPS_DIR, extra_args=[
        "--static", f"/static={static_dir}", "--http2-cleartext", "--no-date-header", "--header", "X-A: 1"])
    got = h2_request(server, request_headers("GET", target))
    fields = [(name.decode(), value.decode()) for name, value in got["headers"]]
    assert got["status"] == status
    assert ("server", "asgi-gateway") in fields and ("x-a", "1") in fields, fields
    assert not [name for name, _ in fields if name == "date"], fields


def test_root_path_that_is_no_utf8_is_a_usage_error(gateway_binary: None) -> None:
    """The scope's root_path (and the path it starts) is a str: a --root-path of other bytes would
    make every request unencodable for the worker."""
    result = run_gateway("--root-path", os.fsdecode(b"/\xff"))
    assert result.returncode == 2, result.stderr
    assert "--root-path" in result.stderr and "UTF-8" in result.stderr
