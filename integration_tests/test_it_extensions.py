"""ASGI extensions (asgiref docs/extensions.rst) through the real gateway and worker:
http.response.pathsend (Starlette's FileResponse uses it when advertised), http.response.early_hint
(103 before the final response) and http.response.trailers (only when the client sent TE: trailers)."""

from __future__ import annotations

import hashlib
import json
import os
import socket

import h2.config
import h2.connection
import h2.events
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
    got = httpx.get(f"{server.url}/_/extensions", headers={"TE": "trailers"}).json()
    assert {"http.response.pathsend", "http.response.early_hint", "http.response.trailers"} <= set(got)
    without_te = httpx.get(f"{server.url}/_/extensions").json()
    assert {"http.response.pathsend", "http.response.early_hint"} <= set(without_te)
    assert "http.response.trailers" not in without_te  # as on HTTP/2: only when the client takes them


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


def test_pathsend_file_survives_the_end_that_comes_while_it_is_written(ext_server) -> None:
    """The worker writes a response's frames as the app sends them and END after, so END often
    arrives while the gateway is still writing a 5 MiB file: the response must complete, not be cut
    (the drain goroutine had taken the file, and END took the response for unfinished)."""
    server, data = ext_server
    want = hashlib.sha256(data).hexdigest()
    with httpx.Client(timeout=30) as client:
        for _ in range(20):
            response = client.get(f"{server.url}/file")
            assert response.status_code == 200
            assert hashlib.sha256(response.content).hexdigest() == want


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


# --- The same over HTTP/2 (h2c with prior knowledge; the HTTP/2 engine is the same over TLS) ------


@pytest.fixture(scope="module")
def ext_h2_server(module_servers, tmp_path_factory) -> tuple[GatewayServer, bytes]:
    data = os.urandom(3 * 1024 * 1024)
    path = tmp_path_factory.mktemp("ext-h2") / "file.bin"
    path.write_bytes(data)
    os.environ["EXT_APP_FILE"] = str(path)
    try:
        server = module_servers.start("ext_app:app", extra_args=["--http2-cleartext"])
    finally:
        del os.environ["EXT_APP_FILE"]
    return server, data


def h2_exchange(server: GatewayServer, path: str, extra: list[tuple[str, str]] = ()) -> dict:
    """One GET over a fresh h2c connection, with the h2 library: what came back, event by event."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", path), *extra]
    conn.send_headers(1, headers, end_stream=True)
    sock.sendall(conn.data_to_send())
    got: dict = {"informational": [], "headers": None, "body": b"", "trailers": None, "reset": None}
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                raise AssertionError(f"connection closed early: {got}")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.InformationalResponseReceived):
                    got["informational"].append(dict((k.decode(), v.decode()) for k, v in event.headers))
                elif isinstance(event, h2.events.ResponseReceived):
                    got["headers"] = [(k.decode(), v.decode()) for k, v in event.headers]
                elif isinstance(event, h2.events.DataReceived):
                    got["body"] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.TrailersReceived):
                    got["trailers"] = [(k.decode(), v.decode()) for k, v in event.headers]
                elif isinstance(event, h2.events.StreamReset):
                    got["reset"] = event.error_code
                    return got
                elif isinstance(event, h2.events.StreamEnded):
                    return got
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


def test_h2_extensions_are_advertised(ext_h2_server) -> None:
    server, _ = ext_h2_server
    advertised = set(json.loads(h2_exchange(server, "/_/extensions", [("te", "trailers")])["body"]))
    assert {"http.response.pathsend", "http.response.early_hint", "http.response.trailers"} <= advertised
    without_te = set(json.loads(h2_exchange(server, "/_/extensions")["body"]))
    assert "http.response.trailers" not in without_te
    assert {"http.response.pathsend", "http.response.early_hint"} <= without_te


def test_h2_file_response_goes_through_pathsend(ext_h2_server) -> None:
    server, data = ext_h2_server
    got = h2_exchange(server, "/file")
    headers = dict(got["headers"])
    assert headers[":status"] == "200" and headers["content-length"] == str(len(data)), headers
    assert hashlib.sha256(got["body"]).hexdigest() == hashlib.sha256(data).hexdigest()
    sent = httpx.get(f"{server.url}/_/sent").json()
    assert "http.response.pathsend" in [m["type"] for m in sent], sent
    assert sum(m["body_bytes"] for m in sent) == 0, f"file bytes went through the app: {sent}"


def test_h2_early_hint_comes_before_the_response(ext_h2_server) -> None:
    server, _ = ext_h2_server
    got = h2_exchange(server, "/hint")
    assert got["informational"] == [{":status": "103", "link": "</style.css>; rel=preload; as=style"}], got
    assert dict(got["headers"])[":status"] == "200" and "link" not in dict(got["headers"])
    assert got["body"] == b"ok"


def test_h2_trailers_only_when_the_client_accepts_them(ext_h2_server) -> None:
    server, _ = ext_h2_server
    got = h2_exchange(server, "/trailers", [("te", "trailers")])
    assert got["body"] == b"part1part2" and got["trailers"] == [("x-checksum", "abc123")], got
    got = h2_exchange(server, "/trailers")
    assert got["body"] == b"part1part2" and got["trailers"] is None, got
