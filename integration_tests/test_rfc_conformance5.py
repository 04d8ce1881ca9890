"""A fifth conformance pass over the real binary: static files over HTTP/1.1 and HTTP/2 (h2c), which
give the same answers (the HTTP/2 engine used net/http's ServeContent before, with its own rules),
and an app's response fields.

* Range is defined for GET only: "A server MUST ignore a Range header field received with a request
  method that is unrecognized or for which range handling is not defined" (RFC 9110 section 14.2),
  so a HEAD with Range gets the 200 a HEAD without it would, over either protocol.
* "bytes=-0" asks for no bytes at all: unsatisfiable, a 416 with "Content-Range: bytes */LENGTH"
  (sections 14.1.1, 15.5.17). A 206 would need a Content-Range whose last byte comes before its
  first, which "is invalid" (section 14.4).
* An empty file has no byte a 206 could carry; a suffix range ("bytes=-5") of it is still
  satisfiable (section 14.1.3), so the Range is ignored and the whole, empty file sent (200).
* "An origin server with a clock MUST NOT generate a Last-Modified date that is later than the
  server's time of message origination (Date)"; a file dated in the future is sent with that date
  instead (section 8.8.2.1).
* An HTTP/1.0 request with "Connection: keep-alive" is answered with it, as the app's responses are.

And the framing fields of an app's response:

* Content-Length from the app: two equal field lines are one list value "5, 5", which "does not
  match the ABNF" and may not be forwarded as is; the gateway, which takes the value, sends it once
  (RFC 9110 section 8.6).
"""

from __future__ import annotations

import os
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import httpx
import pytest

from gateway_harness import APPS_DIR, GatewayServer

CONTENT = b"0123456789abcdefghij"  # 20 bytes
PROTOCOLS = ["http/1.1", "h2c"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("conformance5-static")
    (directory / "file.txt").write_bytes(CONTENT)
    (directory / "empty.txt").write_bytes(b"")
    future = directory / "future.txt"
    future.write_bytes(b"from the future\n")
    later = time.time() + 10 * 365 * 86400
    os.utime(future, (later, later))
    return directory


@pytest.fixture(scope="module")
def static_server(module_servers: Any, files: Path) -> GatewayServer:
    return module_servers.start(
        "testapp:app", app_dir=APPS_DIR, workers=1, extra_args=["--static", f"/static={files}", "--http2-cleartext"]
    )


class Client(httpx.Client):
    """An httpx client that speaks one protocol only, and checks each response came over it."""

    def __init__(self, port: int, protocol: str) -> None:
        http2 = protocol == "h2c"  # prior knowledge: HTTP/2 from the first byte on plain TCP
        super().__init__(base_url=f"http://127.0.0.1:{port}", http1=not http2, http2=http2, timeout=10)
        self.version = "HTTP/2" if http2 else "HTTP/1.1"

    def request(self, *args: Any, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        response = super().request(*args, **kwargs)
        assert response.http_version == self.version
        return response


@pytest.fixture(params=PROTOCOLS)
def client(request: pytest.FixtureRequest, static_server: GatewayServer) -> Iterator[Client]:
    with Client(static_server.port, request.param) as c:
        yield c


def test_range_on_head_is_ignored(client: Client) -> None:
    response = client.head("/static/file.txt", headers={"Range": "bytes=0-4"})
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(CONTENT))
    assert "content-range" not in response.headers
    assert response.content == b""


def test_zero_length_suffix_range_is_unsatisfiable(client: Client) -> None:
    response = client.get("/static/file.txt", headers={"Range": "bytes=-0"})
    assert response.status_code == 416, response.headers
    assert response.headers["content-range"] == f"bytes */{len(CONTENT)}"


def test_suffix_range_of_an_empty_file_sends_the_whole_empty_file(client: Client) -> None:
    response = client.get("/static/empty.txt", headers={"Range": "bytes=-5"})
    assert response.status_code == 200, response.headers
    assert "content-range" not in response.headers
    assert response.headers["content-length"] == "0"
    assert response.content == b""


@pytest.mark.parametrize("spec", ["bytes=0-4", "bytes=-5", "bytes=15-", "bytes=15-100"])
def test_single_ranges_agree_over_both_protocols(client: Client, spec: str) -> None:
    response = client.get("/static/file.txt", headers={"Range": spec})
    assert response.status_code == 206
    first, last = {"bytes=0-4": (0, 4), "bytes=-5": (15, 19), "bytes=15-": (15, 19), "bytes=15-100": (15, 19)}[spec]
    assert response.headers["content-range"] == f"bytes {first}-{last}/{len(CONTENT)}"
    assert response.content == CONTENT[first : last + 1]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_last_modified_is_never_later_than_date(client: Client, method: str) -> None:
    response = client.request(method, "/static/future.txt")
    assert response.status_code == 200
    last_modified = parsedate_to_datetime(response.headers["last-modified"])
    date = parsedate_to_datetime(response.headers["date"])
    assert last_modified <= date, (response.headers["last-modified"], response.headers["date"])
    # The date sent validates: a client that sends it back has the current file.
    again = client.request(method, "/static/future.txt", headers={"If-Modified-Since": response.headers["last-modified"]})
    assert again.status_code == 304


def test_304_carries_the_validators_over_both_protocols(client: Client) -> None:
    first = client.get("/static/file.txt")
    response = client.get("/static/file.txt", headers={"If-None-Match": first.headers["etag"]})
    assert response.status_code == 304
    assert response.headers["etag"] == first.headers["etag"]
    assert response.content == b""


@pytest.mark.parametrize("target", ["/static/file.txt", "/static/missing.txt"])
def test_http10_keep_alive_is_confirmed_on_static_responses(static_server: GatewayServer, target: str) -> None:
    """An HTTP/1.0 client that asks for keep-alive keeps its connection only when the response says
    so (RFC 9112 section 9.3, "keep-alive" connection option; RFC 7230 appendix A.1.2): a static file
    kept the connection open without saying so, and such a client waits for a close that never
    comes."""
    with static_server.raw() as conn:
        for _ in range(2):
            conn.send(f"GET {target} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
            response = conn.read_response()
            assert response.status in (200, 404)
            assert "keep-alive" in response.connection_tokens(), response.headers
            assert not conn.peer_closed(0.2)


# --- the app's framing fields ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fields_server(module_servers: Any) -> GatewayServer:
    return module_servers.start("fields_app:app", app_dir=APPS_DIR, workers=1)


def fields_target(*fields: str, body: str = "") -> str:
    return "/fields?" + "&".join(f"h={quote(f)}" for f in fields) + f"&body={quote(body)}"


def test_equal_content_length_lines_from_the_app_are_sent_once(fields_server: GatewayServer) -> None:
    with fields_server.raw() as conn:
        target = fields_target("content-length:5", "content-length:5", body="hello")
        conn.send(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        response = conn.read_response()
        assert response.status == 200
        assert response.header_list("content-length") == ["5"]
        assert response.body == b"hello"
        # The connection stays usable: the framing was unambiguous.
        conn.send(f"GET {fields_target('content-length:2', body='ok')} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        assert conn.read_response().body == b"ok"


def test_an_apps_upgrade_field_goes_out_with_the_upgrade_connection_option(fields_server: GatewayServer) -> None:
    # RFC 9110 7.8: "a sender of Upgrade MUST also send an 'upgrade' connection option in the
    # Connection header field". The gateway writes Connection itself (the app's is dropped, its
    # close honoured): it adds the option, beside keep-alive's absence or close.
    with fields_server.raw() as conn:
        conn.send(f"GET {fields_target('upgrade:TLS/1.2', body='x')} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        response = conn.read_response()
        assert response.header("upgrade") == "TLS/1.2"
        assert response.connection_tokens() == {"upgrade"}
        conn.send(f"GET {fields_target('connection:close', 'upgrade:TLS/1.2', body='x')} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        assert conn.read_response().connection_tokens() == {"close", "upgrade"}
    with fields_server.raw() as conn:  # no Upgrade: no Connection field on a keep-alive HTTP/1.1 response
        conn.send(f"GET {fields_target(body='x')} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        assert conn.read_response().connection_tokens() == set()
