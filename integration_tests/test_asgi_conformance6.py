"""ASGI application-interface conformance of the real binary (asgiref ``specs/www.rst`` 2.5).

* ``http.response.start`` ``status`` is an ``int`` (www.rst, Response Start), and the
  ``websocket.close`` ``code`` an ``int`` (Close - send event): an int subclass is an int, so
  ``http.HTTPStatus.CREATED`` (which Starlette and FastAPI pass on as a route's ``status_code``
  unchanged) is a 201 and an ``IntEnum`` close code goes out as its value, as with uvicorn 0.54.
  ``bool`` is still no status (an app error, 500).
* ``websocket.accept`` ``headers`` "must not include a header named sec-websocket-protocol; use
  the subprotocol key instead" (www.rst, Accept - send event). Passed on, such a header selects a
  subprotocol past the check that the client offered it (RFC 6455 section 4.2.2), or repeats the
  one ``subprotocol`` selected; a client fails the connection either way (section 4.1). It is an
  app error (500 for the handshake, as for a subprotocol not offered; hypercorn raises too), and the
  gateway, which owns the wire, refuses it from a buggy worker as well.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway_harness import APPS_DIR, GatewayServer
from test_ws_conformance import handshake_answer, wait_stderr
from test_ws_protocol import OP_CLOSE, encode_frame, read_data_frame, ws_connect


@pytest.fixture(scope="module")
def app_server(module_servers: Any) -> GatewayServer:
    return module_servers.start("conformance6_app:app", app_dir=APPS_DIR, workers=1)


def test_status_given_as_http_status_enum_is_sent(app_server: GatewayServer) -> None:
    response = httpx.get(f"{app_server.url}/status-enum", timeout=10)
    assert response.status_code == 201, response.text
    assert response.text == "created"


def test_status_given_as_bool_is_an_app_error(app_server: GatewayServer) -> None:
    response = httpx.get(f"{app_server.url}/status-bool", timeout=10)
    assert response.status_code == 500
    assert "never" not in response.text


def test_websocket_denial_status_given_as_http_status_enum_is_sent(app_server: GatewayServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        with ws_connect(app_server, "/ws/deny-enum"):
            pass
    assert info.value.response.status_code == 401
    assert info.value.response.body == b"denied"


def test_websocket_close_code_given_as_int_enum_is_sent(app_server: GatewayServer) -> None:
    with ws_connect(app_server, "/ws/close-enum") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "enum")


@pytest.mark.parametrize(
    ("query", "offered"),
    [
        ("name=sec-websocket-protocol", "chat"),
        ("name=Sec-WebSocket-Protocol", "chat"),
        ("name=sec-websocket-protocol&subprotocol=chat", "chat"),
        ("name=sec-websocket-protocol", None),
    ],
    ids=["lowercase", "mixed-case", "with-subprotocol-key", "none-offered"],
)
def test_websocket_accept_with_a_sec_websocket_protocol_header_is_an_app_error_500(
    app_server: GatewayServer, query: str, offered: str | None
) -> None:
    conn, (response, _) = handshake_answer(app_server, f"/ws/accept-header?{query}", offered)
    with conn:
        assert response.status == 500, response
        assert response.header("sec-websocket-protocol") is None
        assert response.header("sec-websocket-accept") is None
    wait_stderr(app_server, "websocket.accept headers must not include sec-websocket-protocol")


def test_websocket_accept_with_other_headers_and_the_subprotocol_key(app_server: GatewayServer) -> None:
    conn, (response, _) = handshake_answer(app_server, "/ws/accept-header?name=x-app&subprotocol=chat", "chat")
    with conn:
        assert response.status == 101, response
        assert response.header_list("sec-websocket-protocol") == ["chat"]
        assert response.header("x-app") == "chat"
        assert read_data_frame(conn).payload == b"accepted"
        conn.send(encode_frame(OP_CLOSE, b"\x03\xe8"))


def test_gateway_refuses_a_sec_websocket_protocol_header_from_a_buggy_worker(app_server: GatewayServer) -> None:
    for offered in ("chat", None):
        conn, (response, _) = handshake_answer(app_server, "/ws/buggy-accept-header", offered)
        with conn:
            assert response.status == 500, response
            assert response.header("sec-websocket-protocol") is None
            assert response.header("sec-websocket-accept") is None
