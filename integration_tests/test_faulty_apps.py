"""Apps that break the ASGI contract, flood stdout, block their loop or leak memory.

The app is ``apps/faulty_app.py``. What each test expects:

- invalid messages before the response starts → 500, with the error named in the gateway's log
  (the worker's stderr is forwarded there) and the worker process kept;
- an invalid message after a valid ``http.response.start`` → the first response is what the client
  sees (it cannot be taken back), cut if it cannot be completed; the worker lives on;
- a body longer than the app's content-length → the client gets exactly content-length bytes, then
  the connection closes; shorter → an incomplete response;
- output on stdout never mixes with the protocol (that runs on a Unix socket) and is logged with the
  worker id;
- a blocked event loop is caught by the health check (``--timeout-worker-healthcheck``), a leaking
  worker by ``--workers-max-rss``, and both are replaced without a failed request beyond the stuck one.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from gateway_harness import APPS_DIR, GatewayServer, IncompleteResponse


@pytest.fixture(scope="module")
def faulty(module_servers: Any) -> GatewayServer:
    return module_servers.start("faulty_app:app", app_dir=APPS_DIR, workers=1)


def worker_pid(server: GatewayServer) -> int:
    response = httpx.get(f"{server.url}/_/pid", timeout=10)
    assert response.status_code == 200, response.text
    return int(response.text)


def wait_for_log(server: GatewayServer, pattern: str, timeout: float = 5.0) -> str | None:
    """The first log line matching the regex pattern, waiting up to timeout; None if none came."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        for line in server.stderr().splitlines():
            if regex.search(line):
                return line
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


# --- invalid messages -------------------------------------------------------------------------------


def test_start_twice_before_any_body_is_a_500(faulty: GatewayServer) -> None:
    """The second http.response.start raises in the app (uncaught) right after the first: no body
    event came, so nothing of the first response went out (www.rst: the server "must not start
    sending the response to the client until it has received at least one Response Body event"),
    and the client gets 500."""
    pid = worker_pid(faulty)
    with faulty.raw() as conn:
        conn.send(b"GET /faulty/start-twice HTTP/1.1\r\nHost: test.local\r\n\r\n")
        response = conn.read_response()
        assert response.status == 500
        assert response.header_list("x-which") == []
    line = wait_for_log(faulty, r"Expected ASGI message 'http\.response\.body', but got 'http\.response\.start'")
    assert line is not None, faulty.stderr()[-3000:]
    assert worker_pid(faulty) == pid


def test_start_twice_caught_the_client_gets_the_whole_first_response(faulty: GatewayServer) -> None:
    """The app swallows the error of its second start and completes the first response."""
    pid = worker_pid(faulty)
    with faulty.raw() as conn:
        response = conn.request("GET", "/faulty/start-twice-caught")
        assert response.status == 200
        assert response.header_list("x-which") == ["first"]
        assert response.body == b"first"
        # The response was complete and valid: the connection may serve on.
        assert conn.request("GET", "/_/pid").body == str(pid).encode()
    line = wait_for_log(faulty, r"second start raised RuntimeError: Expected ASGI message 'http\.response\.body'")
    assert line is not None, faulty.stderr()[-3000:]
    # The worker reports the invalid message that the app swallowed.
    assert wait_for_log(faulty, r"ASGI callable sent an invalid message") is not None
    assert worker_pid(faulty) == pid


INVALID_BEFORE_START = {
    "unknown-type": (
        "/faulty/unknown-before-start",
        r"Expected ASGI message 'http\.response\.start', but got 'http\.response\.bogus'",
    ),
    "status-str": ("/faulty/status-str", r"'status' must be an int, got str"),
    "header-name-str": ("/faulty/header-str-name", r"header names must be bytes, got str"),
}


@pytest.mark.parametrize("case", list(INVALID_BEFORE_START), ids=list(INVALID_BEFORE_START))
def test_invalid_message_before_start_gives_500_and_a_clear_error(faulty: GatewayServer, case: str) -> None:
    path, error = INVALID_BEFORE_START[case]
    pid = worker_pid(faulty)
    response = httpx.get(f"{faulty.url}{path}", timeout=10)
    assert response.status_code == 500
    line = wait_for_log(faulty, error)
    assert line is not None, f"no log line matching {error!r}:\n{faulty.stderr()[-3000:]}"
    assert "worker=0" in line
    assert worker_pid(faulty) == pid


def test_body_as_str_is_never_a_complete_response_and_the_error_is_clear(faulty: GatewayServer) -> None:
    """start is valid, then the body is a str. The client must not get a response that looks
    complete: a 500 (possible, since the start is still waiting to be coalesced with the first body)
    or the started 200 cut short (what the README documents for an app failing after start, and what
    this server does today: the head goes out, then the connection is reset)."""
    pid = worker_pid(faulty)
    with faulty.raw() as conn:
        conn.send(b"GET /faulty/body-str HTTP/1.1\r\nHost: test.local\r\n\r\n")
        try:
            response = conn.read_response()
        except IncompleteResponse:
            pass  # the 200 that was started, cut: the client cannot take it for complete
        else:
            assert response.status == 500, f"a complete {response.status} response: {response.body[:200]!r}"
    line = wait_for_log(faulty, r"'body' must be bytes, got str")
    assert line is not None, faulty.stderr()[-3000:]
    assert worker_pid(faulty) == pid


# --- content-length mismatches ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/faulty/excess-body-one", "/faulty/excess-body-stream"], ids=["one-message", "streamed"])
def test_body_longer_than_content_length_is_cut_to_it(faulty: GatewayServer, path: str) -> None:
    pid = worker_pid(faulty)
    deaths = faulty.stderr().count("worker died")
    # Another request in flight on the same worker must not suffer from the faulty one.
    other: dict[str, Any] = {}

    def slow_neighbour() -> None:
        try:
            other["response"] = httpx.get(f"{faulty.url}/_/slow?seconds=1", timeout=10)
        except Exception as exc:  # noqa: BLE001
            other["error"] = exc

    thread = threading.Thread(target=slow_neighbour)
    thread.start()
    time.sleep(0.2)
    with faulty.raw() as conn:
        conn.send(f"GET {path} HTTP/1.1\r\nHost: test.local\r\n\r\n".encode())
        response = conn.read_response()
        assert response.status == 200
        assert response.header("content-length") == "5"
        assert response.body == b"hello"
        # Nothing beyond content-length, and the connection closes (the excess must not be read as
        # the next response).
        assert conn.peer_closed(timeout=5), f"the connection stayed open (or sent {conn.buffer[:100]!r})"
    thread.join(15)
    assert "error" not in other, f"a request on the same worker failed: {other.get('error')!r}"
    assert other["response"].status_code == 200
    assert wait_for_log(faulty, r"more body than its content-length") is not None
    assert worker_pid(faulty) == pid, "the worker was replaced"
    assert faulty.stderr().count("worker died") == deaths, faulty.stderr()[-3000:]


def test_body_shorter_than_content_length_is_incomplete(faulty: GatewayServer) -> None:
    pid = worker_pid(faulty)
    with faulty.raw() as conn:
        conn.send(b"GET /faulty/short-body HTTP/1.1\r\nHost: test.local\r\n\r\n")
        with pytest.raises(IncompleteResponse) as excinfo:
            conn.read_response()
        assert excinfo.value.partial == b"ten bytes!"
    assert wait_for_log(faulty, r"shorter than its content-length") is not None
    assert worker_pid(faulty) == pid


# --- stdout -----------------------------------------------------------------------------------------


def test_five_mib_of_stdout_lines_are_logged_and_harmless(faulty: GatewayServer) -> None:
    pid = worker_pid(faulty)
    marker = uuid.uuid4().hex
    started = time.monotonic()
    response = httpx.get(f"{faulty.url}/faulty/print-lines?mib=5&marker={marker}", timeout=30)
    assert response.status_code == 200
    assert time.monotonic() - started < 15
    for _ in range(10):
        assert worker_pid(faulty) == pid
    line = wait_for_log(faulty, f"MARKER {marker}", timeout=15)
    assert line is not None, "the app's stdout did not reach the gateway's log"
    assert "worker=0" in line and "stream=stdout" in line, line
    assert f"pid={pid}" in line


def test_a_five_mib_stdout_line_does_not_silence_later_output(faulty: GatewayServer) -> None:
    """One 5 MiB line (no newline until its end): it may be truncated or dropped, but the worker's
    later output must still be logged."""
    pid = worker_pid(faulty)
    response = httpx.get(f"{faulty.url}/faulty/print-one-line?mib=5", timeout=30)
    assert response.status_code == 200
    for _ in range(5):
        assert worker_pid(faulty) == pid
    marker = uuid.uuid4().hex
    assert httpx.get(f"{faulty.url}/faulty/print-marker?marker={marker}", timeout=10).status_code == 200
    line = wait_for_log(faulty, f"MARKER {marker}", timeout=5)
    assert line is not None, "stdout printed after the long line never reached the gateway's log"
    assert "worker=0" in line and "stream=stdout" in line


# --- a blocked event loop ---------------------------------------------------------------------------


def test_a_loop_blocked_for_seconds_is_not_killed_by_default(servers: Any) -> None:
    # A sync call of some seconds in a handler (a report, a model) only delays the worker's other
    # requests, as under uvicorn; the default health check (30 s, gunicorn's worker timeout) does
    # not kill the worker and answer them all 502 (it did at 5 s).
    server = servers.start("faulty_app:app", app_dir=APPS_DIR, workers=1)
    pid = worker_pid(server)
    outcomes: list[Any] = []

    def request(path: str) -> None:
        try:
            outcomes.append(httpx.get(f"{server.url}{path}", timeout=30).status_code)
        except Exception as exc:  # noqa: BLE001
            outcomes.append(exc)

    threads = [threading.Thread(target=request, args=("/faulty/block?seconds=7",))]
    threads[0].start()
    time.sleep(0.5)
    for _ in range(3):
        threads.append(threading.Thread(target=request, args=("/_/pid",)))
        threads[-1].start()
    for thread in threads:
        thread.join(30)
    assert outcomes == [200] * 4, (outcomes, server.stderr()[-2000:])
    assert worker_pid(server) == pid
    assert "health check" not in server.stderr()


def test_blocked_loop_is_killed_by_the_health_check_and_replaced(servers: Any) -> None:
    server = servers.start(
        "faulty_app:app", app_dir=APPS_DIR, workers=1, extra_args=["--timeout-worker-healthcheck", "1"]
    )
    old_pid = worker_pid(server)
    result: dict[str, Any] = {}

    def blocked_request() -> None:
        started = time.monotonic()
        try:
            result["response"] = httpx.get(f"{server.url}/faulty/block?seconds=30", timeout=40)
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc
        result["duration"] = time.monotonic() - started

    thread = threading.Thread(target=blocked_request)
    started = time.monotonic()
    thread.start()
    new_pid = None
    while time.monotonic() - started < 10:
        time.sleep(0.2)
        try:
            response = httpx.get(f"{server.url}/_/pid", timeout=10)
        except httpx.HTTPError:
            continue
        if response.status_code == 200 and int(response.text) != old_pid:
            new_pid = int(response.text)
            break
    replaced_after = time.monotonic() - started
    assert new_pid is not None, f"the blocked worker was not replaced within 10 s\n{server.stderr()[-3000:]}"
    assert replaced_after < 6, f"replacement took {replaced_after:.1f} s"
    thread.join(15)
    assert not thread.is_alive()
    # The stuck request ends when its worker is killed (502), not when the sleep would have ended.
    assert "error" not in result, f"the blocked request failed with {result.get('error')!r}"
    assert result["response"].status_code == 502
    assert result["duration"] < 8
    assert not os.path.exists(f"/proc/{old_pid}") or _is_zombie(old_pid), "the blocked worker still runs"
    line = wait_for_log(server, r"did not answer its health check")
    assert line is not None, server.stderr()[-3000:]
    assert f"pid={old_pid}" in line
    for _ in range(10):
        assert worker_pid(server) == new_pid


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# --- a memory leak ----------------------------------------------------------------------------------


def test_leaking_worker_is_recycled_by_max_rss(servers: Any) -> None:
    server = servers.start("faulty_app:app", app_dir=APPS_DIR, workers=1, extra_args=["--workers-max-rss", "120"])
    first_pid = worker_pid(server)
    pids = []
    statuses = []
    for _ in range(30):
        response = httpx.get(f"{server.url}/faulty/leak?mib=50", timeout=20)
        statuses.append(response.status_code)
        assert response.status_code == 200, f"request {len(statuses)} failed: {response.status_code} {response.text}"
        pids.append(json.loads(response.text)["pid"])
        if pids[-1] != first_pid:
            break
        time.sleep(0.4)
    assert pids[-1] != first_pid, f"the worker was never recycled after {len(pids)} x 50 MiB: pids {pids}"
    assert len(pids) <= 10, f"recycled only after {len(pids)} requests"
    line = wait_for_log(server, r"worker replaced")
    assert line is not None and "max-rss" in line, server.stderr()[-3000:]
    # The old worker is drained and stops; the new one serves on.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and os.path.exists(f"/proc/{first_pid}") and not _is_zombie(first_pid):
        time.sleep(0.2)
    assert not os.path.exists(f"/proc/{first_pid}") or _is_zombie(first_pid), "the leaking worker still runs"
    for _ in range(5):
        assert worker_pid(server) == pids[-1]
