"""Hostile clients: slowloris heads, slow bodies, idle connections, clients that vanish mid-response.

What the server does (gateway/h1conn.go): a connection that has sent nothing gets
--timeout-keep-alive (default 5 s) to start a request; once a request head has started it must be
complete within --timeout-request-header (default 30 s) of its first byte, however slowly it
trickles; a request body only has a per-read stall timeout, --timeout-request-body (default 60 s),
reset by every byte, so a body trickled one byte at a time is not bounded in total (not asserted:
no RFC asks for it, there is no setting to check it against). These tests use short timeouts and
check that other clients are served normally meanwhile, and that the deadlines hold.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from typing import Any

import pytest

from gateway_harness import APPS_DIR, GatewayServer, RawConnection

HEAD_TIMEOUT = 3.0  # --timeout-request-header of the slowloris test
BODY_TIMEOUT = 2.0  # --timeout-request-body of the slow-body tests


@pytest.fixture(scope="module")
def target(module_servers: Any) -> GatewayServer:
    return module_servers.start("testapp:app", app_dir=APPS_DIR, workers=1)


def normal_request(server: GatewayServer, path: str = "/_/pid", timeout: float = 10.0) -> tuple[int, float, bytes]:
    """GET on a new connection: (status, seconds, body)."""
    started = time.monotonic()
    with RawConnection.tcp(server.host, server.port, timeout) as conn:
        response = conn.request("GET", path)
    return response.status, time.monotonic() - started, response.body


def serve_normally_for(server: GatewayServer, seconds: float, interval: float = 0.2) -> list[tuple[int, float, bytes]]:
    results = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        results.append(normal_request(server))
        time.sleep(interval)
    return results


def assert_all_fast_and_ok(results: list[tuple[int, float, bytes]], limit: float = 1.0) -> None:
    assert results
    statuses = [status for status, _, _ in results]
    assert all(status == 200 for status in statuses), statuses
    slowest = max(duration for _, duration, _ in results)
    assert slowest < limit, f"a normal request took {slowest:.2f} s"


def closed_by_peer(sock: socket.socket) -> bool:
    """True if the peer has closed (EOF or reset), without blocking."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(65536, socket.MSG_PEEK) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except BlockingIOError:
        return False


class Trickler(threading.Thread):
    """Sends one byte of `payload` per `interval` on each of `count` connections (after `preamble`
    at once), and records when the server closes each one."""

    def __init__(self, server: GatewayServer, count: int, preamble: bytes, payload: bytes, interval: float = 0.5):
        super().__init__(daemon=True)
        self.interval = interval
        self.preamble = preamble
        self.payload = payload
        self.socks = [socket.create_connection((server.host, server.port), timeout=5) for _ in range(count)]
        self.first_byte: list[float | None] = [None] * count
        self.closed_at: list[float | None] = [None] * count
        self.sent = [0] * count
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for index, sock in enumerate(self.socks):
                if self.preamble:
                    sock.sendall(self.preamble)
                self.first_byte[index] = time.monotonic()
            while not self.stop.is_set():
                for index, sock in enumerate(self.socks):
                    if self.closed_at[index] is not None:
                        continue
                    if closed_by_peer(sock):
                        self.closed_at[index] = time.monotonic()
                        continue
                    byte = self.payload[self.sent[index] % len(self.payload) : self.sent[index] % len(self.payload) + 1]
                    try:
                        sock.sendall(byte)
                        if self.first_byte[index] is None:
                            self.first_byte[index] = time.monotonic()
                        self.sent[index] += 1
                    except OSError:
                        self.closed_at[index] = time.monotonic()
                if all(closed is not None for closed in self.closed_at):
                    return
                self.stop.wait(self.interval)
        except BaseException as exc:  # noqa: BLE001
            self.error = exc

    def open_count(self) -> int:
        return sum(1 for closed in self.closed_at if closed is None)

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        for sock in self.socks:
            sock.close()


# --- slowloris ------------------------------------------------------------------------------------


def test_slowloris_heads_do_not_block_others_and_are_cut_at_the_head_timeout(servers: Any) -> None:
    """50 connections trickle a request head one byte every 0.5 s. Others are served normally
    meanwhile, and no trickler holds its connection past --timeout-request-header (+ slack)."""
    server = servers.start(
        "testapp:app", app_dir=APPS_DIR, workers=1, extra_args=["--timeout-request-header", str(HEAD_TIMEOUT)]
    )
    trickler = Trickler(
        server,
        50,
        preamble=b"",
        payload=b"GET /slowloris HTTP/1.1\r\nHost: test.local\r\nX-Slow: " + b"s" * 4000,
    )
    trickler.start()
    try:
        time.sleep(0.5)
        assert trickler.open_count() == 50
        assert_all_fast_and_ok(serve_normally_for(server, HEAD_TIMEOUT - 1.5))
        assert trickler.open_count() == 50, "tricklers were cut before the head deadline"
        deadline = time.monotonic() + HEAD_TIMEOUT + 10
        while time.monotonic() < deadline and trickler.open_count():
            time.sleep(0.2)
        assert trickler.error is None, trickler.error
        still_open = trickler.open_count()
        assert still_open == 0, f"{still_open} of 50 trickling clients still hold their connection"
        held = [closed - first for closed, first in zip(trickler.closed_at, trickler.first_byte) if closed and first]
        assert min(held) > HEAD_TIMEOUT - 0.5, f"cut after {min(held):.1f} s"
        assert max(held) < HEAD_TIMEOUT + 2, f"held for {max(held):.1f} s"
        assert min(trickler.sent) >= 4  # they did trickle: several bytes each, no head completed
        assert_all_fast_and_ok([normal_request(server) for _ in range(5)])
    finally:
        trickler.close()


def test_slow_bodies_do_not_block_others(servers: Any) -> None:
    """50 connections send a request head with Content-Length: 100000, then one body byte every
    0.5 s to /_/echo (the app waits in receive()). Others are served normally meanwhile.

    With --timeout-request-body 2 these are never cut: each byte resets the stall timer (what the
    server does today; the total time of a body is not bounded)."""
    server = servers.start(
        "testapp:app", app_dir=APPS_DIR, workers=1, extra_args=["--timeout-request-body", str(BODY_TIMEOUT)]
    )
    trickler = Trickler(
        server,
        50,
        preamble=b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: 100000\r\n\r\n",
        payload=b"b",
    )
    trickler.start()
    try:
        time.sleep(0.5)
        assert trickler.open_count() == 50
        assert_all_fast_and_ok(serve_normally_for(server, 3.0))
        assert trickler.error is None, trickler.error
        assert min(trickler.sent) >= 5
    finally:
        trickler.close()
    assert_all_fast_and_ok([normal_request(server) for _ in range(5)])


STALLED = {
    "content-length": b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10,
    "chunked": b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\na\r\n" + b"x" * 10 + b"\r\n",
}


@pytest.mark.parametrize("framing", list(STALLED), ids=list(STALLED))
def test_stalled_bodies_are_cut_at_the_body_timeout(servers: Any, framing: str) -> None:
    """20 connections send a request head and 10 body bytes, then nothing: each is closed about
    --timeout-request-body later (the app is reading the body, so no response is owed; it gets
    http.disconnect), while others are served normally."""
    server = servers.start(
        "testapp:app", app_dir=APPS_DIR, workers=1, extra_args=["--timeout-request-body", str(BODY_TIMEOUT)]
    )
    socks = []
    try:
        for _ in range(20):
            sock = socket.create_connection((server.host, server.port), timeout=5)
            sock.sendall(STALLED[framing])
            socks.append(sock)
        sent = time.monotonic()
        assert_all_fast_and_ok(serve_normally_for(server, BODY_TIMEOUT - 0.8))
        assert not any(closed_by_peer(sock) for sock in socks), "a stalled body was cut before the timeout"
        closed_at: dict[int, float] = {}
        deadline = sent + BODY_TIMEOUT + 5
        while time.monotonic() < deadline and len(closed_at) < len(socks):
            for index, sock in enumerate(socks):
                if index not in closed_at and closed_by_peer(sock):
                    closed_at[index] = time.monotonic() - sent
            time.sleep(0.1)
        assert len(closed_at) == len(socks), f"{len(socks) - len(closed_at)} stalled bodies still open"
        assert max(closed_at.values()) < BODY_TIMEOUT + 2, closed_at
        assert_all_fast_and_ok([normal_request(server) for _ in range(5)])
    finally:
        for sock in socks:
            sock.close()


# --- idle connections -------------------------------------------------------------------------------


def test_500_idle_connections_do_not_stop_new_requests(servers: Any) -> None:
    server = servers.start("testapp:app", app_dir=APPS_DIR, workers=1, extra_args=["--timeout-keep-alive", "2"])
    idle = []
    try:
        for _ in range(500):
            idle.append(socket.create_connection((server.host, server.port), timeout=5))
        results = [normal_request(server) for _ in range(20)]
        assert_all_fast_and_ok(results)
        # The idle connections were all held open while those requests were served ...
        closed_early = sum(1 for sock in idle if closed_by_peer(sock))
        assert closed_early == 0, f"{closed_early} idle connections were closed before the keep-alive timeout"
        # ... and an idle connection gets --timeout-keep-alive to start a request, then it is closed.
        time.sleep(3.0)
        still_open = [sock for sock in idle if not closed_by_peer(sock)]
        assert not still_open, f"{len(still_open)} of 500 idle connections still open after 3 s (keep-alive 2 s)"
        assert_all_fast_and_ok([normal_request(server) for _ in range(5)])
    finally:
        for sock in idle:
            sock.close()


# --- clients that go away mid-response --------------------------------------------------------------


def quitter(server: GatewayServer, request: bytes, read_bytes: int, reset: bool, errors: list[BaseException]) -> None:
    """Sends request, reads about read_bytes of the response, then closes (with a reset if asked)."""
    try:
        sock = socket.create_connection((server.host, server.port), timeout=10)
        sock.sendall(request)
        got = 0
        while got < read_bytes:
            data = sock.recv(min(65536, read_bytes - got))
            if not data:
                break
            got += len(data)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except BaseException as exc:  # noqa: BLE001
        errors.append(exc)


def test_clients_disconnecting_mid_response_do_not_hurt_others(target: GatewayServer) -> None:
    pid_before = int(normal_request(target)[2])
    deaths = target.stderr().count("worker died")
    big = 4 << 20
    errors: list[BaseException] = []
    threads = []
    for index in range(20):  # streaming responses, abandoned after the first pieces
        request = b"GET /_/stream?n=300&delay=0.01 HTTP/1.1\r\nHost: test.local\r\n\r\n"
        threads.append(threading.Thread(target=quitter, args=(target, request, 300, index % 2 == 0, errors)))
    for index in range(6):  # 4 MiB echoed back, abandoned after 64 KiB
        request = b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: %d\r\n\r\n" % big + b"e" * big
        threads.append(threading.Thread(target=quitter, args=(target, request, 65536, index % 2 == 0, errors)))
    # Clients that ask for 4 MiB and never read it, kept open while the others work.
    stalled = []
    for _ in range(4):
        sock = socket.create_connection((target.host, target.port), timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: %d\r\n\r\n" % big + b"s" * big)
        stalled.append(sock)

    good: dict[str, Any] = {"results": [], "streams": [], "errors": []}

    def good_client() -> None:
        try:
            for _ in range(10):
                good["results"].append(normal_request(target))
                status, duration, body = normal_request(target, "/_/stream?n=20&delay=0.005")
                good["streams"].append((status, duration, body))
        except BaseException as exc:  # noqa: BLE001
            good["errors"].append(exc)

    good_threads = [threading.Thread(target=good_client) for _ in range(3)]
    try:
        for thread in threads + good_threads:
            thread.start()
        for thread in threads + good_threads:
            thread.join(30)
            assert not thread.is_alive()
    finally:
        for sock in stalled:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
    assert not errors, errors
    assert not good["errors"], good["errors"]
    assert_all_fast_and_ok(good["results"], limit=2.0)
    expected = b"".join(b"piece %d\n" % i for i in range(20))
    assert all(status == 200 and body == expected for status, _, body in good["streams"])
    # The same worker serves on; nothing crashed.
    time.sleep(0.5)
    status, _, body = normal_request(target)
    assert status == 200 and int(body) == pid_before
    log = target.stderr()
    assert log.count("worker died") == deaths, log[-3000:]
    assert "panicked" not in log, log[-3000:]


STREAM_ECHO_APP = '''
import asyncio


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/sleep":
        await asyncio.sleep(3)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"slept"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while True:  # each piece of the body back as it comes
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": message.get("more_body", False)})
        if not message.get("more_body"):
            return
'''


def test_clients_resetting_mid_upload_do_not_kill_the_worker(servers: Any, tmp_path: Any) -> None:
    """Clients that reset their connection while uploading to an app that streams the body back:
    the write of the response finds the client gone and the worker is told (DISCONNECT) while the
    connection's goroutine is queueing the next piece of the body. That piece went after the
    DISCONNECT (SPEC §4: nothing follows it), the worker took it as a protocol error and exited,
    and every other request on it got 502 (probe 52: in 7 of 8 runs of 75 resets). The DISCONNECT
    now follows the piece."""
    (tmp_path / "stream_echo_app.py").write_text(STREAM_ECHO_APP)
    server = servers.start("stream_echo_app:app", app_dir=tmp_path, workers=1)
    bystander = socket.create_connection((server.host, server.port), timeout=15)
    bystander.sendall(b"GET /sleep HTTP/1.1\r\nHost: test.local\r\n\r\n")
    chunk = b"u" * (1 << 20)

    def resetter() -> None:
        for _ in range(25):
            try:
                sock = socket.create_connection((server.host, server.port), timeout=10)
                sock.sendall(b"POST /echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: %d\r\n\r\n" % (20 << 20))
                sock.sendall(chunk)
                sock.recv(1000)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            except OSError:
                pass

    threads = [threading.Thread(target=resetter) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    answer = bystander.recv(100)
    bystander.close()
    time.sleep(0.5)
    log = server.stderr()
    assert "after DISCONNECT" not in log, log[-3000:]
    assert "worker died" not in log, log[-3000:]
    assert answer.startswith(b"HTTP/1.1 200"), answer


# --- HTTP/2 rapid reset (CVE-2023-44487) ---------------------------------------------------------

RAPID_RESET_APP = '''
import asyncio


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/tasks":
        body = str(len(asyncio.all_tasks())).encode()
    else:
        await asyncio.sleep(30)  # never looks at receive(): runs on after its client left
        body = b"late"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
'''


def test_http2_rapid_reset_cannot_pile_up_app_tasks(servers: Any, tmp_path: Any) -> None:
    """A client that opens streams and resets them at once (rapid reset, CVE-2023-44487) made the
    worker start a task for each, all running on (3,000 in a few seconds here): the gateway gave
    up a reset stream's handler at once, so x/net's bound on running handlers (MAX_CONCURRENT_STREAMS,
    100) never applied. A reset stream now holds its handler until its task ends."""
    import h2.config
    import h2.connection
    import h2.errors
    import httpx

    (tmp_path / "rapid_app.py").write_text(RAPID_RESET_APP)
    server = servers.start("rapid_app:app", app_dir=tmp_path,
                           extra_args=["--http2-cleartext", "--timeout-graceful-shutdown", "1"])
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    opened = 0
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(conn.data_to_send())
        sock.settimeout(0.01)
        deadline = time.monotonic() + 4
        while opened < 3000 and time.monotonic() < deadline:
            try:
                for _ in range(50):
                    sid = conn.get_next_available_stream_id()
                    conn.send_headers(sid, [(":method", "GET"), (":path", "/slow"), (":scheme", "http"),
                                            (":authority", "t")], end_stream=True)
                    conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                    opened += 1
                sock.sendall(conn.data_to_send())
                data = sock.recv(65536)
                if not data:
                    break  # the server closed the connection (x/net: too many queued streams)
                conn.receive_data(data)
                sock.sendall(conn.data_to_send())
            except socket.timeout:
                continue
            except Exception:  # noqa: BLE001 - the connection was closed on us: the attack is over
                break
    assert opened >= 150, opened  # more than the stream limit was tried
    time.sleep(0.5)
    tasks = int(httpx.get(f"{server.url}/tasks", timeout=10).text)
    assert tasks <= 100 + 5, f"{tasks} tasks running in the worker after {opened} streams opened and reset"


STREAMING_APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    chunk = b"x" * 65536
    for _ in range(160):  # 10 MiB
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
'''


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_http2_clients_that_grant_no_window_cost_little_per_stream(servers: Any, tmp_path: Any) -> None:
    """Probe 50: connections of 100 streams each, from a client whose window is 0, made the gateway
    hold the worker's whole response window per stream (256 KiB: 27 MB per connection, 1 GB for 40).
    An HTTP/2 stream's response window now starts at 32 KiB and grows only as the client takes it."""
    import h2.config
    import h2.connection
    import h2.settings

    (tmp_path / "streaming_app.py").write_text(STREAMING_APP)
    server = servers.start("streaming_app:app", app_dir=tmp_path,
                           extra_args=["--http2-cleartext", "--timeout-graceful-shutdown", "1"])
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    before = _rss_mib(server.process.pid)
    socks = []
    try:
        for _ in range(10):
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
            sock = socket.create_connection((host, int(port)), timeout=5)
            for _ in range(100):
                conn.send_headers(conn.get_next_available_stream_id(),
                                  [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "t")],
                                  end_stream=True)
            sock.sendall(conn.data_to_send())
            socks.append(sock)  # (it reads nothing: the server's SETTINGS ack is not even needed)
        time.sleep(3)
        grown = _rss_mib(server.process.pid) - before
    finally:
        for sock in socks:
            sock.close()
    # 10 × 100 streams: 1,000 × 256 KiB = 250 MiB held before; 1,000 × 32 KiB = 31 MiB now.
    assert grown < 120, f"the gateway grew by {grown:.0f} MiB for 1,000 streams whose client takes nothing"
