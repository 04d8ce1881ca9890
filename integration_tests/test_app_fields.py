"""Invalid header fields from the app raise out of send(), with the worker's C module and without.

asgi.rst, Error Handling: "If the server receives an invalid event dictionary - for example, having an
unknown type, missing keys an event type should have, or with wrong Python types for objects (e.g.
Unicode strings for HTTP headers) - it should raise an exception out of the send awaitable back to
the application." A header whose name is not a token or whose value holds CR, LF, NUL or another
control character but HTAB (RFC 9110 §5.1, §5.5) cannot go out: send() raises ValueError, so the app
can answer otherwise (as uvicorn raises "Invalid HTTP header value"), and nothing of it reaches the
client. Valid odd fields (HTAB, SP and obs-text in a value, every tchar in a name) go out as sent.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from websockets.sync.client import connect

from gateway_harness import GatewayServer, RawConnection

INVALID = ["crlf-value", "lf-value", "cr-value", "nul-value", "del-value", "esc-value", "space-name",
           "colon-name", "empty-name", "crlf-name", "non-ascii-name"]
VALID = {
    "tab-value": (b"x-ok", b"a\tb c"),
    "obs-text-value": (b"x-ok", b"caf\xc3\xa9"),
    "tchar-name": (b"x!#$%&'*+-.^_`|~09az", b"1"),
}


@pytest.fixture(scope="module", params=["c-module", "pure"])
def mode_server(request: pytest.FixtureRequest, module_servers: Any) -> GatewayServer:
    env = {**os.environ, "PYTHON_WORKER_PURE": "1"} if request.param == "pure" else None
    return module_servers.start("testapp:app", env=env)


def raw_get(server: GatewayServer, target: str) -> Any:
    with RawConnection.tcp(server.host, server.port) as conn:
        conn.send(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return conn.read_to_close()


@pytest.mark.parametrize("shape", ["tuple", "list"])
@pytest.mark.parametrize("case", INVALID)
def test_invalid_response_header_raises_in_send(mode_server: GatewayServer, case: str, shape: str) -> None:
    raw = raw_get(mode_server, f"/_/field?case={case}&as={shape}")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), raw[:300]
    assert b"\r\nx-raised: ValueError\r\n" in head, head
    assert b"\nx-injected" not in raw and b"\nx-bad" not in raw and b"\nx-first" not in raw  # (no field of the start)
    assert body == b"4\r\ndone\r\n0\r\n\r\n"  # (chunked)


@pytest.mark.parametrize("case", sorted(VALID))
def test_valid_odd_fields_go_out_as_sent(mode_server: GatewayServer, case: str) -> None:
    raw = raw_get(mode_server, f"/_/field?case={case}")
    head, _, body = raw.partition(b"\r\n\r\n")
    name, value = VALID[case]
    assert head.startswith(b"HTTP/1.1 200 "), raw[:300]
    assert b"\r\n" + name + b": " + value + b"\r\n" in head, head
    assert b"x-raised" not in head and body == b"4\r\ndone\r\n0\r\n\r\n"


def test_early_hint_link_with_crlf_raises_in_send(mode_server: GatewayServer) -> None:
    raw = raw_get(mode_server, "/_/hint-field")
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]  # no 103 went out
    assert b"x-raised: ValueError\r\n" in raw and b"\nx-injected" not in raw


@pytest.fixture(scope="module")
def ws_server(module_servers: Any) -> GatewayServer:
    return module_servers.start("ws_app:app")


def test_websocket_accept_header_with_crlf_raises_in_send(ws_server: GatewayServer) -> None:
    with connect(f"ws://{ws_server.host}:{ws_server.port}/bad-accept") as ws:
        assert ws.recv(timeout=10) == "raised ValueError"
        assert ws.response.headers.get("x-bad") is None and ws.response.headers.get("x-injected") is None
