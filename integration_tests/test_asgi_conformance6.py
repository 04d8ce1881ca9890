"""ASGI application-interface conformance of the real binary (asgiref ``specs/www.rst`` 2.5).

* ``http.response.start`` ``status`` is an ``int`` (www.rst, Response Start), and the
  ``websocket.close`` ``code`` an ``int`` (Close - send event): an int subclass is an int, so
  ``http.HTTPStatus.CREATED`` (which Starlette and FastAPI pass on as a route's ``status_code``
  unchanged) is a 201 and an ``IntEnum`` close code goes out as its value, as with uvicorn 0.54.
  ``bool`` is still no status (an app error, 500).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway_harness import APPS_DIR, GatewayServer
from test_ws_protocol import ws_connect


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
