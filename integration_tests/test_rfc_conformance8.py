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
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway_harness import APPS_DIR, GatewayServer
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


def test_ping_timeout_longer_than_the_interval(module_servers: Any) -> None:
    # Pings every 0.5 s, pongs may be 3 s late: a client answering each ping 1.2 s late stays.
    server = keepalive_server(module_servers, "0.5", "3")
    key = new_key_name()
    conn, _ = raw_open(server, f"/hold?key={key}", timeout=10)
    with conn:
        assert read_data_frame(conn).payload == b"ready"
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
    conn, _ = raw_open(server, "/hold", timeout=10)
    with conn:
        assert read_data_frame(conn).payload == b"ready"
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
    conn, _ = raw_open(server, f"/hold?key={key}", timeout=10)
    with conn:
        assert read_data_frame(conn).payload == b"ready"
        started = time.monotonic()
        assert read_frame(conn).opcode == OP_PING  # never answered
        close = read_close(conn, reply=False)
        assert close.close_code == 1011 and close.payload[2:] == b"keepalive ping timeout"
        assert conn.peer_closed(timeout=5)
        assert time.monotonic() - started < 3
    assert wait_record(server, key, "disconnect")["code"] == 1006


def test_ping_timeout_zero_never_fails(module_servers: Any) -> None:
    server = keepalive_server(module_servers, "0.3", "0")
    conn, _ = raw_open(server, "/hold", timeout=10)
    with conn:
        assert read_data_frame(conn).payload == b"ready"
        pings = 0
        started = time.monotonic()
        while time.monotonic() - started < 2:
            frame = read_frame(conn)  # never answered
            assert frame.opcode == OP_PING, frame
            pings += 1
        assert pings >= 4
