"""RFC 9110/9112 and ASGI conformance of the real binary, seventh round.

* Interim responses come before the final one (RFC 9110 §15.2: 1xx are sent "prior to completing
  the requested action and sending a final response"). With ``Expect: 100-continue``, an app that
  starts its response and only then reads the body must not get ``100 Continue`` written into its
  response (into its content, or where a chunk size belongs): the server omits it (§10.1.1: a
  server "MAY omit sending a 100 (Continue) response") and reads the body as the client sends it.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway_harness import APPS_DIR, GatewayServer


@pytest.fixture(scope="module")
def app_server(module_servers: Any) -> GatewayServer:
    return module_servers.start("conformance7_app:app", app_dir=APPS_DIR, workers=1)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("request_body", ["content-length", "chunked"])
def test_no_100_continue_after_the_response_started(app_server: GatewayServer, framing: str, request_body: str) -> None:
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
        assert first.status == 200, first.status
        conn.send(body)
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
