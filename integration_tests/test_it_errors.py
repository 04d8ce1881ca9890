"""App errors, worker crashes and client disconnects: what the client sees, and that service goes on."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from gateway_harness import APPS_DIR, GatewayServer, IncompleteResponse


def worker_pid(server: GatewayServer) -> int:
    response = httpx.get(f"{server.url}/_/pid", timeout=10)
    assert response.status_code == 200, response.text
    return int(response.text)


def wait_for_records(server: GatewayServer, key: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = httpx.get(f"{server.url}/_/records?key={key}").json()
        if len(records) >= count:
            break
        time.sleep(0.05)
    return records


@pytest.mark.parametrize("path", ["/_/error/before-start", "/_/error/no-response"], ids=["raise", "return"])
def test_no_response_started_gives_500_and_the_worker_survives(server: GatewayServer, path: str) -> None:
    pid = worker_pid(server)
    response = httpx.get(f"{server.url}{path}")
    assert response.status_code == 500
    assert worker_pid(server) == pid  # the same worker process serves on


def test_app_exception_is_logged(server: GatewayServer) -> None:
    assert httpx.get(f"{server.url}/_/error/before-start").status_code == 500
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and "failing before http.response.start, on purpose" not in server.stderr():
        time.sleep(0.05)
    assert "failing before http.response.start, on purpose" in server.stderr()


@pytest.mark.parametrize(
    "path",
    [
        "/_/error/after-start",
        "/_/error/after-start-length",
        "/_/error/incomplete-response",
        "/_/error/short-body",
    ],
    ids=["raise-chunked", "raise-content-length", "return-incomplete", "shorter-than-content-length"],
)
def test_started_response_then_failure_is_incomplete_for_the_client(server: GatewayServer, path: str) -> None:
    pid = worker_pid(server)
    # A clean close before the end of the body (RemoteProtocolError) or a reset (ReadError):
    # either way the client cannot take the response for a complete one.
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(f"{server.url}{path}")
    assert worker_pid(server) == pid


def test_raise_after_start_cuts_the_chunked_response(server: GatewayServer) -> None:
    with server.raw() as conn:
        conn.send(b"GET /_/error/after-start HTTP/1.1\r\nHost: test.local\r\n\r\n")
        with pytest.raises(IncompleteResponse) as excinfo:
            conn.read_response()
        # What was sent before the error did reach the client; the 0-size last chunk never came.
        assert excinfo.value.partial == b"partial"
    assert httpx.get(f"{server.url}/_/pid").status_code == 200


def long_poll_then_disconnect(server: GatewayServer) -> list[dict[str, Any]]:
    """Starts a long-poll on a raw connection, closes it, and returns what the app recorded."""
    key = uuid.uuid4().hex
    conn = server.raw()
    conn.send(f"GET /_/long-poll?key={key} HTTP/1.1\r\nHost: test.local\r\n\r\n".encode())
    records = wait_for_records(server, key, 1)
    assert records and records[0]["event"] == "request", records
    conn.close()
    return wait_for_records(server, key, 3)


def test_client_disconnect_is_delivered_to_the_app(server: GatewayServer) -> None:
    records = long_poll_then_disconnect(server)
    assert [record["event"] for record in records[:2]] == ["request", "http.disconnect"], records


def test_send_after_client_disconnect_raises_oserror(server: GatewayServer) -> None:
    # Spec 2.4+: "If send() is called on a closed connection the server should raise a
    # server-specific subclass of OSError."
    records = long_poll_then_disconnect(server)
    assert len(records) == 3, records
    assert records[2]["event"] == "send-raised", records
    assert records[2]["is_oserror"] is True, records


def test_worker_killed_mid_request_gives_502_and_a_new_worker(servers: Any) -> None:
    server = servers.start("testapp:app", app_dir=APPS_DIR, workers=1)
    old_pid = worker_pid(server)
    result: dict[str, Any] = {}

    def slow_request() -> None:
        try:
            result["response"] = httpx.get(f"{server.url}/_/slow?seconds=15", timeout=30)
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(1.0)  # the request is in the app's sleep now
    os.kill(old_pid, signal.SIGKILL)
    thread.join(timeout=20)
    assert not thread.is_alive(), "the in-flight request did not finish after its worker was killed"
    assert "error" not in result, f"the client got {result.get('error')!r}, not a 502"
    assert result["response"].status_code == 502

    deadline = time.monotonic() + 10
    new_pid = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{server.url}/_/pid", timeout=5)
            if response.status_code == 200:
                new_pid = int(response.text)
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    assert new_pid is not None, f"no worker served again within 10 s\n{server.stderr()}"
    assert new_pid != old_pid
    # And it keeps serving.
    for _ in range(5):
        assert httpx.get(f"{server.url}/_/pid").text == str(new_pid)
