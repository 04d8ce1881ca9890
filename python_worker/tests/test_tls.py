"""The TLS extension (asgiref ``specs/tls.rst``) over the fake gateway: ``scope["extensions"]["tls"]``
from the tls item of HTTP_REQUEST / WS_CONNECT (flag TLS) and the ``server_cert`` of the gateway's
HELLO; absent without the flag; a flag/item mismatch is a protocol error."""

from __future__ import annotations

import asyncio
import os
from typing import Any, Dict, List

import pytest

from gateway_fake import FakeGateway, run
from python_worker import protocol as P

SERVER_PEM = "-----BEGIN CERTIFICATE-----\nU0VSVkVS\n-----END CERTIFICATE-----\n"
CLIENT_PEM = "-----BEGIN CERTIFICATE-----\nQ0xJRU5U\n-----END CERTIFICATE-----\n"
CA_PEM = "-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n"

TLS13 = (0x0304, 0x1301, (), None, None)
WITH_CLIENT = (0x0303, 0xC02F, (CLIENT_PEM, CA_PEM), "CN=client,O=Example", None)

START = {"type": "http.response.start", "status": 200, "headers": []}


def hello(server_cert: str | None = SERVER_PEM) -> Dict[str, Any]:
    m: Dict[str, Any] = {"protocol": 1, "pid": os.getpid(), "max_frame": P.DEFAULT_MAX_FRAME,
                         "window": P.DEFAULT_WINDOW, "worker_id": 0}
    if server_cert is not None:
        m["server_cert"] = server_cert
    return m


def http_scopes(loop_name: str, requests: List[Dict[str, Any]], server_cert: str | None = SERVER_PEM) -> List[dict]:
    seen: List[dict] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await send(START)
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> None:
        async with FakeGateway(app, hello_map=hello(server_cert)) as gw:
            for sid, request in enumerate(requests, 1):
                gw.request(sid, **request)
                r = await gw.response(sid)
                assert r.outcome == P.OUTCOME_OK and r.body == b"ok"

    run(loop_name, main())
    return seen


def test_http_scope_carries_tls(loop_name: str) -> None:
    plain, tls, client = http_scopes(loop_name, [
        {},
        {"scheme": "https", "tls": TLS13, "flags": P.FLAG_PATHSEND},
        {"scheme": "https", "http_version": "2", "tls": WITH_CLIENT},
    ])
    assert "tls" not in plain["extensions"]
    assert tls["extensions"] == {
        "http.response.pathsend": {},
        "tls": {
            "server_cert": SERVER_PEM,
            "client_cert_chain": [],
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": 0x0304,
            "cipher_suite": 0x1301,
        },
    }
    ext = client["extensions"]["tls"]
    assert ext == {
        "server_cert": SERVER_PEM,
        "client_cert_chain": [CLIENT_PEM, CA_PEM],
        "client_cert_name": "CN=client,O=Example",
        "client_cert_error": None,
        "tls_version": 0x0303,
        "cipher_suite": 0xC02F,
    }
    assert type(ext["client_cert_chain"]) is list
    # Each scope has its own dict and list: an app's writes stay in its scope.
    assert tls["extensions"]["tls"] is not ext
    assert tls["extensions"]["tls"]["client_cert_chain"] is not ext["client_cert_chain"]


def test_http_scope_without_server_cert_in_hello(loop_name: str) -> None:
    (scope,) = http_scopes(loop_name, [{"scheme": "https", "tls": TLS13}], server_cert=None)
    assert scope["extensions"]["tls"]["server_cert"] is None
    assert scope["extensions"]["tls"]["tls_version"] == 0x0304


def test_server_cert_in_hello_alone_adds_nothing(loop_name: str) -> None:
    (scope,) = http_scopes(loop_name, [{"scheme": "https"}])
    assert scope["extensions"] == {}


def test_websocket_scope_carries_tls(loop_name: str) -> None:
    seen: List[dict] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await receive()
        await send({"type": "websocket.close"})

    async def main() -> None:
        async with FakeGateway(app, hello_map=hello()) as gw:
            gw.ws_connect(1, scheme="wss", tls=WITH_CLIENT)
            assert (await gw.response(1)).outcome == P.OUTCOME_OK
            gw.ws_connect(2, scheme="ws")
            assert (await gw.response(2)).outcome == P.OUTCOME_OK

    run(loop_name, main())
    tls, plain = seen
    assert tls["extensions"] == {
        "websocket.http.response": {},
        "tls": {
            "server_cert": SERVER_PEM,
            "client_cert_chain": [CLIENT_PEM, CA_PEM],
            "client_cert_name": "CN=client,O=Example",
            "client_cert_error": None,
            "tls_version": 0x0303,
            "cipher_suite": 0xC02F,
        },
    }
    assert plain["extensions"] == {"websocket.http.response": {}}


REQUEST = [P.HTTP_REQUEST, 1, "1.1", "GET", "https", "/", b"/", b"", "", [], None, None]
WS = [P.WS_CONNECT, 1, "1.1", "wss", "/", b"/", b"", "", [], None, None, []]


@pytest.mark.parametrize(
    "frame",
    [
        REQUEST + [P.FLAG_TLS, b"", False],
        REQUEST + [0, b"", False, list(TLS13)],
        REQUEST + [P.FLAG_TLS, b"", False, [0x0304, 0x1301, [b"pem"], None, None]],
        WS + [P.FLAG_TLS],
        WS + [0, list(TLS13)],
    ],
    ids=["request-flag-without-item", "request-item-without-flag", "request-bad-item", "ws-flag-without-item",
         "ws-item-without-flag"],
)
def test_tls_mismatch_is_a_protocol_error(loop_name: str, frame: list, caplog: pytest.LogCaptureFixture) -> None:
    called: List[dict] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never called
        called.append(scope)

    async def main() -> None:
        async with FakeGateway(app, hello_map=hello()) as gw:
            gw.send_frame(frame)
            await gw.expect_eof()
            assert gw.conn.error and "tls" in gw.conn.error.lower()
            await asyncio.wait_for(asyncio.shield(gw.conn.closed), 5)

    run(loop_name, main())
    assert called == []
    assert "protocol error" in caplog.text
