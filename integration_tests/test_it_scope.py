"""The http connection scope, key by key (asgiref specs/www.rst, spec version 2.5)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_harness import APPS_DIR, GatewayServer

SCOPE_KEYS = {
    "type",
    "asgi",
    "http_version",
    "method",
    "scheme",
    "path",
    "raw_path",
    "query_string",
    "root_path",
    "headers",
    "client",
    "server",
    "state",
    "extensions",
}


def raw_scope(server: GatewayServer, request: bytes) -> dict[str, Any]:
    """Sends one raw request to the scope endpoint and returns the app's description of the scope."""
    with server.raw() as conn:
        conn.send(request)
        response = conn.read_response()
    assert response.status == 200, response
    return json.loads(response.body)


def get_scope(server: GatewayServer, target: str) -> dict[str, Any]:
    return raw_scope(server, f"GET {target} HTTP/1.1\r\nHost: test.local\r\n\r\n".encode())


def test_scope_keys_and_types(server: GatewayServer) -> None:
    response = httpx.get(f"{server.url}/some/path?x=1")
    assert response.status_code == 200
    data = response.json()
    scope, types, kinds = data["scope"], data["types"], data["kinds"]

    assert set(scope) == SCOPE_KEYS
    assert scope["type"] == "http" and types["type"] == "str"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert types["asgi"] == {"version": "str", "spec_version": "str"}
    assert scope["http_version"] == "1.1" and types["http_version"] == "str"
    assert scope["method"] == "GET" and types["method"] == "str"
    assert scope["scheme"] == "http" and types["scheme"] == "str"
    assert scope["path"] == "/some/path" and types["path"] == "str"
    assert scope["raw_path"] == "/some/path" and types["raw_path"] == "bytes"
    assert scope["query_string"] == "x=1" and types["query_string"] == "bytes"
    assert scope["root_path"] == "" and types["root_path"] == "str"

    assert kinds["headers"] in ("list", "tuple")
    assert scope["headers"], "no request headers"
    for pair, pair_types in zip(scope["headers"], types["headers"]):
        assert pair_types == ["bytes", "bytes"], pair
        assert pair[0] == pair[0].lower(), f"header name not lower-cased: {pair[0]!r}"
    assert ["host", f"127.0.0.1:{server.port}"] in scope["headers"]

    assert scope["client"][0] == "127.0.0.1" and types["client"] == ["str", "int"]
    assert isinstance(scope["client"][1], int) and scope["client"][1] > 0
    assert scope["server"] == ["127.0.0.1", server.port] and types["server"] == ["str", "int"]
    assert kinds["state"] == "dict"
    assert kinds["extensions"] == "dict"
    assert "tls" not in scope["extensions"]  # the TLS extension is for TLS connections only

    # The first and only http.request event of a bodiless GET.
    assert data["messages"] == [{"type": "http.request", "size": 0, "body_type": "bytes", "more_body": False}]


def test_http_10_request_has_http_version_10(server: GatewayServer) -> None:
    data = raw_scope(server, b"GET /ten HTTP/1.0\r\n\r\n")
    assert data["scope"]["http_version"] == "1.0"
    assert data["scope"]["path"] == "/ten"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_method(server: GatewayServer, method: str) -> None:
    response = httpx.request(method, f"{server.url}/method")
    assert response.status_code == 200
    assert response.json()["scope"]["method"] == method


def test_extension_method(server: GatewayServer) -> None:
    data = raw_scope(server, b"PURGE /cache HTTP/1.1\r\nHost: test.local\r\n\r\n")
    assert data["scope"]["method"] == "PURGE"


@pytest.mark.parametrize(
    "target, path, raw_path, query_string",
    [
        ("/caf%C3%A9/a%20b", "/café/a b", "/caf%C3%A9/a%20b", ""),
        ("/a%2Fb", "/a/b", "/a%2Fb", ""),
        ("/a+b", "/a+b", "/a+b", ""),
        ("/%7Euser/%41", "/~user/A", "/%7Euser/%41", ""),
        ("/bad%FF", "/bad\ufffd", "/bad%FF", ""),
        ("/q?a=1&a=2&sp=%20x+y&empty&caf%C3%A9", "/q", "/q", "a=1&a=2&sp=%20x+y&empty&caf%C3%A9"),
        ("/q?", "/q", "/q", ""),
        ("/q?a=%2F?b", "/q", "/q", "a=%2F?b"),
        ("/", "/", "/", ""),
    ],
)
def test_path_raw_path_query_string(
    server: GatewayServer, target: str, path: str, raw_path: str, query_string: str
) -> None:
    data = get_scope(server, target)
    scope = data["scope"]
    assert scope["path"] == path
    assert scope["raw_path"] == raw_path
    assert scope["query_string"] == query_string
    assert data["types"]["raw_path"] == "bytes"
    assert data["types"]["query_string"] == "bytes"


def test_request_headers_lowercased_in_order_with_duplicates(server: GatewayServer) -> None:
    request = (
        b"GET /headers HTTP/1.1\r\n"
        b"Host: example.test\r\n"
        b"X-Dup: 1\r\n"
        b"X-MiXeD-CaSe: Value With  Inner  Spaces\r\n"
        b"x-dup: 2\r\n"
        b"X-Pad:    padded value \t \r\n"
        b"X-Empty:\r\n"
        b"X-Latin1: caf\xe9\r\n"
        b"X-DUP: 3\r\n"
        b"\r\n"
    )
    data = raw_scope(server, request)
    assert data["scope"]["headers"] == [
        ["host", "example.test"],
        ["x-dup", "1"],
        ["x-mixed-case", "Value With  Inner  Spaces"],
        ["x-dup", "2"],
        ["x-pad", "padded value"],
        ["x-empty", ""],
        ["x-latin1", "caf\xe9"],  # the byte 0xE9, kept as a byte
        ["x-dup", "3"],
    ]
    assert all(pair == ["bytes", "bytes"] for pair in data["types"]["headers"])


def test_client_is_the_real_peer_address(server: GatewayServer) -> None:
    with server.raw() as conn:
        conn.send(b"GET /client HTTP/1.1\r\nHost: test.local\r\n\r\n")
        response = conn.read_response()
        assert response.status == 200
        scope = json.loads(response.body)["scope"]
        assert scope["client"] == ["127.0.0.1", conn.local_port]
        assert scope["server"] == ["127.0.0.1", server.port]


@pytest.fixture(scope="module")
def root_path_server(module_servers: Any) -> GatewayServer:
    return module_servers.start("testapp:app", app_dir=APPS_DIR, extra_args=["--root-path", "/api"])


def test_root_path_prefixes_path_and_raw_path(root_path_server: GatewayServer) -> None:
    # uvicorn's behaviour: path and raw_path are the full paths, root_path in front.
    data = get_scope(root_path_server, "/items/caf%C3%A9?x=1")
    scope = data["scope"]
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/items/café"
    assert scope["raw_path"] == "/api/items/caf%C3%A9"
    assert scope["query_string"] == "x=1"
    assert data["types"]["root_path"] == "str"


def test_root_path_app_routes_still_work(root_path_server: GatewayServer) -> None:
    response = httpx.get(f"{root_path_server.url}/_/pid")
    assert response.status_code == 200
    assert int(response.text) > 0


def test_unix_socket(servers: Any, short_tmp: Path) -> None:
    path = str(short_tmp / "gw.sock")
    server = servers.start("testapp:app", app_dir=APPS_DIR, uds=path)
    assert server.url == f"unix:{path}"
    # As uvicorn: any user may connect (a proxy running as another user).
    assert os.stat(path).st_mode & 0o777 == 0o666
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://gateway.local") as client:
        response = client.get("/over/unix?u=1")
        assert response.status_code == 200
        data = response.json()
        scope = data["scope"]
        assert scope["server"] == [path, None]
        assert data["types"]["server"] == ["str", "NoneType"]
        assert scope.get("client") is None
        assert scope["path"] == "/over/unix"
        assert scope["query_string"] == "u=1"
        assert ["host", "gateway.local"] in scope["headers"]
        # A body over the unix socket too.
        response = client.post("/_/echo", content=b"x" * 100_000)
        assert response.status_code == 200
        assert response.content == b"x" * 100_000
