"""ASGI extensions (asgiref docs/extensions.rst) through the real gateway and worker:
http.response.pathsend (Starlette's FileResponse uses it when advertised), http.response.early_hint
(103 before the final response) and http.response.trailers (only when the client sent TE: trailers)."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest
from gateway_harness import GatewayServer


@pytest.fixture(scope="module")
def ext_server(module_servers, tmp_path_factory) -> tuple[GatewayServer, bytes]:
    data = os.urandom(5 * 1024 * 1024)
    path = tmp_path_factory.mktemp("ext") / "file.bin"
    path.write_bytes(data)
    os.environ["EXT_APP_FILE"] = str(path)  # inherited by the gateway and its worker
    try:
        server = module_servers.start("ext_app:app")
    finally:
        del os.environ["EXT_APP_FILE"]
    return server, data


def test_extensions_are_advertised(ext_server) -> None:
    server, _ = ext_server
    got = httpx.get(f"{server.url}/_/extensions").json()
    assert {"http.response.pathsend", "http.response.early_hint", "http.response.trailers"} <= set(got)


def test_file_response_goes_through_pathsend_not_python(ext_server) -> None:
    server, data = ext_server
    response = httpx.get(f"{server.url}/file", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["content-type"] == "application/octet-stream"
    assert hashlib.sha256(response.content).hexdigest() == hashlib.sha256(data).hexdigest()
    sent = httpx.get(f"{server.url}/_/sent").json()
    types = [m["type"] for m in sent]
    assert "http.response.pathsend" in types, types
    assert sum(m["body_bytes"] for m in sent) == 0, f"file bytes went through the app: {sent}"


def test_early_hint_comes_before_the_response(ext_server) -> None:
    server, _ = ext_server
    with server.raw() as conn:
        conn.send(b"GET /hint HTTP/1.1\r\nHost: t\r\n\r\n")
        hint = conn.read_head()
        assert hint.status == 103
        assert hint.header("link") == "</style.css>; rel=preload; as=style"
        final = conn.read_response()
        assert (final.status, final.body) == (200, b"ok")


def test_trailers_only_when_the_client_accepts_them(ext_server) -> None:
    server, _ = ext_server
    with server.raw() as conn:
        conn.send(b"GET /trailers HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\n")
        head = conn.read_head()
        assert head.status == 200 and head.header("transfer-encoding") == "chunked"
        rest = conn.read_until(b"\r\n0\r\n") + conn.read_until(b"\r\n\r\n")
        assert b"part1" in rest and b"part2" in rest
        assert rest.endswith(b"0\r\nx-checksum: abc123\r\n\r\n"), rest
    with server.raw() as conn:
        conn.send(b"GET /trailers HTTP/1.1\r\nHost: t\r\n\r\n")
        response = conn.read_response()
        assert response.status == 200 and response.body == b"part1part2"
        assert conn.request("GET", "/_/extensions").status == 200  # the connection is in sync
