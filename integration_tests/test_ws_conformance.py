"""WebSocket conformance of what the gateway puts on the wire: the real binary, real clients.

* Close codes (RFC 6455 section 7.4): an endpoint may send 1000-1003, 1007-1014 and 3000-4999 in a
  close frame; 1005 asks for a close frame without a code. The worker raises the app an error for
  any other code (after accept: the client gets 1011), and the gateway maps one from a buggy worker
  to 1011 (1005: an empty close frame). The reason fits a control frame and stays UTF-8 (section 5.5).
* Subprotocols (RFC 6455 section 4.2.2): the server selects one the client offered, or none. The
  worker raises the app an error for another one, and the gateway never sends it in a 101: it
  answers 500, as for an app that fails before accepting.
* The gateway's own handshake refusals (426, 400) carry Date and Server like its other responses
  (RFC 9110 section 6.6.1: Date in every 2xx, 3xx and 4xx response of a server with a clock).

A buggy worker is played by ``apps/ws_buggy_worker_app.py``, which writes the frames past the
worker's checks.
"""

from __future__ import annotations

import re
import struct
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from gateway_harness import APPS_DIR, GatewayServer, RawConnection
from test_ws_protocol import (
    OP_CLOSE,
    encode_frame,
    expected_accept,
    raw_open,
    read_close,
    read_data_frame,
    upgrade_request,
    ws_connect,
)

# Codes an endpoint must not send (RFC 6455 sections 7.4.1 and 7.4.2 and the IANA registry).
UNSENDABLE_CODES = [0, 999, 1004, 1006, 1015, 1016, 2999, 5000, 65535]
SENDABLE_CODES = [1000, 1003, 1007, 1011, 1014, 3000, 4999]

IMF_FIXDATE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT")


@pytest.fixture(scope="module")
def ws_server(module_servers: Any) -> GatewayServer:
    return module_servers.start("ws_app:app", app_dir=APPS_DIR, workers=1)


@pytest.fixture(scope="module")
def buggy_server(module_servers: Any) -> GatewayServer:
    return module_servers.start(
        "ws_buggy_worker_app:app", app_dir=APPS_DIR, workers=1, extra_args=["--lifespan", "off", "--log-level", "debug"]
    )


def wait_stderr(server: GatewayServer, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.stderr():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the server's log within {timeout} s:\n{server.stderr()[-3000:]}")
        time.sleep(0.05)


def handshake_answer(server: GatewayServer, path: str, offered: str | None) -> tuple[RawConnection, Any]:
    conn = server.raw(timeout=10)
    headers = [] if offered is None else [("Sec-WebSocket-Protocol", offered)]
    request, key = upgrade_request(path, headers=headers)
    conn.send(request)
    return conn, (conn.read_head(), key)


def buggy_pid(server: GatewayServer) -> int:
    response = httpx.get(f"{server.url}/pid", timeout=10)
    assert response.status_code == 200, response.text
    return int(response.text)


# === close codes ==================================================================================


@pytest.mark.parametrize("code", UNSENDABLE_CODES)
def test_app_close_with_an_unsendable_code_is_an_app_error_closing_1011(ws_server: GatewayServer, code: int) -> None:
    conn, _ = raw_open(ws_server, f"/close?code={code}&reason=bye")
    with conn:
        close = read_close(conn)
        assert close.payload == struct.pack("!H", 1011)  # the app failed after accept; no reason
        assert conn.peer_closed(5)
    wait_stderr(ws_server, f"ValueError: websocket.close 'code' {code} may not be sent")


@pytest.mark.parametrize("code", SENDABLE_CODES)
def test_app_close_with_a_sendable_code_reaches_the_client(ws_server: GatewayServer, code: int) -> None:
    with ws_connect(ws_server, f"/close?code={code}&reason=ok") as ws:
        with pytest.raises(ConnectionClosed) as excinfo:
            ws.recv(timeout=10)
    assert excinfo.value.rcvd is not None
    assert (excinfo.value.rcvd.code, excinfo.value.rcvd.reason) == (code, "ok")


def test_app_close_1005_sends_a_close_frame_without_a_code(ws_server: GatewayServer) -> None:
    conn, _ = raw_open(ws_server, "/close?code=1005")
    with conn:
        close = read_close(conn)
        assert close.payload == b""
        assert conn.peer_closed(5)
    with ws_connect(ws_server, "/close?code=1005") as ws:
        with pytest.raises(ConnectionClosed) as excinfo:
            ws.recv(timeout=10)
    assert excinfo.value.rcvd is not None
    assert excinfo.value.rcvd.code == 1005  # how websockets reports "no status code received"


def test_app_close_1005_with_a_reason_is_an_app_error(ws_server: GatewayServer) -> None:
    conn, _ = raw_open(ws_server, "/close?code=1005&reason=bye")
    with conn:
        assert read_close(conn).payload == struct.pack("!H", 1011)
    wait_stderr(ws_server, "ValueError: websocket.close with code 1005")


def test_app_close_reason_cut_at_a_character_boundary(ws_server: GatewayServer) -> None:
    # 1 + 4 * 40 bytes: 123 bytes would end inside the 31st emoji.
    reason = "a" + "\N{GRINNING FACE}" * 40
    conn, _ = raw_open(ws_server, "/close?code=4000&reason=a" + "%F0%9F%98%80" * 40)
    with conn:
        close = read_close(conn)
        assert close.close_code == 4000
        assert close.close_reason == reason[:31]  # 121 bytes; close_reason decodes strictly


@pytest.mark.parametrize(
    ("code", "payload"),
    [
        (1006, struct.pack("!H", 1011)),
        (1015, struct.pack("!H", 1011)),
        (999, struct.pack("!H", 1011)),
        (5000, struct.pack("!H", 1011)),
        (1005, b""),
        (4000, struct.pack("!H", 4000) + b"reason"),  # a valid code passes as it is
    ],
)
def test_gateway_never_sends_an_unsendable_code_from_a_buggy_worker(
    buggy_server: GatewayServer, code: int, payload: bytes
) -> None:
    conn, _ = raw_open(buggy_server, f"/close?code={code}&reason=reason")
    with conn:
        close = read_close(conn)
        assert close.payload == payload
        assert conn.peer_closed(5)
    if payload == struct.pack("!H", 1011):  # logged at debug level
        wait_stderr(buggy_server, f"the app's close code may not be sent in a close frame; sending 1011 code={code}")


# === subprotocols =================================================================================


@pytest.mark.parametrize("offered", ["chat", None], ids=["other-offered", "none-offered"])
def test_accept_with_a_subprotocol_not_offered_is_an_app_error_500(ws_server: GatewayServer, offered: str | None) -> None:
    conn, (response, _) = handshake_answer(ws_server, "/accept?subprotocol=evil", offered)
    with conn:
        assert response.status == 500
        assert response.header("sec-websocket-protocol") is None
        assert response.header("sec-websocket-accept") is None
    wait_stderr(ws_server, "ValueError: websocket.accept 'subprotocol' 'evil' was not offered by the client")
    with pytest.raises(InvalidStatus) as excinfo:
        ws_connect(ws_server, "/accept?subprotocol=evil", subprotocols=["chat"])
    assert excinfo.value.response.status_code == 500


def test_accept_with_an_offered_subprotocol_with_websockets_client(ws_server: GatewayServer) -> None:
    with ws_connect(ws_server, "/accept?subprotocol=chat", subprotocols=["superchat", "chat"]) as ws:
        assert ws.subprotocol == "chat"
        assert ws.recv(timeout=5) == "accepted"


def test_gateway_refuses_an_unoffered_subprotocol_from_a_buggy_worker(buggy_server: GatewayServer) -> None:
    pid = buggy_pid(buggy_server)
    for _ in range(5):  # the worker's next WS_SEND races the gateway's DISCONNECT: it is dropped
        conn, (response, _) = handshake_answer(buggy_server, "/accept?subprotocol=evil", "chat")
        with conn:
            assert response.status == 500, response
            assert response.header("sec-websocket-protocol") is None
    with pytest.raises(InvalidHandshake):
        ws_connect(buggy_server, "/accept?subprotocol=evil", subprotocols=["chat"])
    # An offered one is accepted as usual, and the worker was never treated as broken.
    conn, (response, key) = handshake_answer(buggy_server, "/accept?subprotocol=chat", "chat")
    with conn:
        assert response.status == 101
        assert response.header("sec-websocket-accept") == expected_accept(key or "")
        assert response.header_list("sec-websocket-protocol") == ["chat"]
        assert read_data_frame(conn).payload == b"accepted"
        conn.send(encode_frame(OP_CLOSE, struct.pack("!H", 1000)))
    assert buggy_pid(buggy_server) == pid


# === the gateway's own refusals ===================================================================


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"version": "8"}, 426),
        ({"key": None}, 400),
        ({"headers": [("Sec-WebSocket-Protocol", "chat, bad token")]}, 400),
        ({"method": "POST"}, None),  # RFC 6455 section 4.2.1: GET required; some 4xx
    ],
    ids=["version-426", "no-key-400", "bad-subprotocol-400", "post-400"],
)
def test_handshake_refusal_has_date_and_server(ws_server: GatewayServer, kwargs: dict, status: int | None) -> None:
    with ws_server.raw(timeout=10) as conn:
        request, _ = upgrade_request("/hold", **kwargs)
        conn.send(request)
        response = conn.read_response(kwargs.get("method", "GET"))
    if status is None:
        assert 400 <= response.status < 500, response.status
    else:
        assert response.status == status
    assert response.header_list("server") == ["asgi-gateway"]
    dates = response.header_list("date")
    assert len(dates) == 1 and IMF_FIXDATE.fullmatch(dates[0]), dates
    assert abs(parsedate_to_datetime(dates[0]).timestamp() - time.time()) < 60
    if status == 426:
        assert response.header_list("sec-websocket-version") == ["13"]


def test_handshake_refusal_follows_the_header_options(module_servers: Any) -> None:
    server = module_servers.start(
        "ws_app:app", app_dir=APPS_DIR, workers=1,
        extra_args=["--no-server-header", "--no-date-header", "--header", "x-default:yes"],
    )
    with server.raw(timeout=10) as conn:
        request, _ = upgrade_request("/hold", version="8")
        conn.send(request)
        response = conn.read_response()
    assert response.status == 426
    assert response.header("server") is None and response.header("date") is None
    assert response.header_list("x-default") == ["yes"]
