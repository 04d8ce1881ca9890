"""The worker's C module (python_worker._speedups) against its pure-Python code, end to end.

Two gateways serve the same apps, one with the module and one with ``PYTHON_WORKER_PURE=1``; the same
requests and WebSocket messages go to both, and what the apps saw (the scope, with each value's
type) and what the clients got back (status, headers, body, messages) must be the same. The requests
are the shapes the C code handles and their edges: many, repeated, long and odd header fields,
non-ASCII paths, query strings, bodies of the sizes that change the frame encodings, response
headers given as lists and tuples, WebSocket text and binary messages at each size boundary.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from gateway_harness import GatewayServer, RawConnection


@pytest.fixture(scope="module")
def pair(module_servers: Any) -> tuple[GatewayServer, GatewayServer]:
    fast = module_servers.start("testapp:app")
    pure = module_servers.start("testapp:app", env={**os.environ, "PYTHON_WORKER_PURE": "1"})
    assert httpx.get(f"{fast.url}/_/speedups").json() == {
        "speedups": True, "task_registry_hooked": True, "listed": True}, "the C module is not in use"
    assert httpx.get(f"{pure.url}/_/speedups").json() == {
        "speedups": False, "task_registry_hooked": False, "listed": True}
    return fast, pure


@pytest.fixture(scope="module")
def ws_pair(module_servers: Any) -> tuple[GatewayServer, GatewayServer]:
    fast = module_servers.start("ws_app:app")
    pure = module_servers.start("ws_app:app", env={**os.environ, "PYTHON_WORKER_PURE": "1"})
    return fast, pure


def exchange(server: GatewayServer, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Any:
    with RawConnection.tcp(server.host, server.port) as conn:
        response = conn.request(method, target, headers=headers, body=body)
    body = response.body
    if response.header("content-type") == "application/json" and body:
        # A scope: the ports (in client, server and the host field) differ between the two servers,
        # and how the body was cut into http.request messages is up to timing.
        kept = [(name.lower(), value) for name, value in response.headers if name.lower() not in ("date", "content-length")]
        return response.status, kept, comparable(json.loads(body))
    # /_/echo counts the http.request messages the body came in: that too is up to timing.
    timing = ("date", "x-messages", "x-more-body-true")
    kept = [(name.lower(), value) for name, value in response.headers if name.lower() not in timing]
    return response.status, kept, body


def comparable(data: dict) -> dict:
    """A scope dump (testapp's describe_scope, ws_app's scope) without what differs by server or
    connection: the pid, the ports (client, server, the host field), the WebSocket key."""
    for key in ("pid", "messages"):
        data.pop(key, None)
    keep = [name not in ("host", "sec-websocket-key") for name, _ in data.get("scope", {}).get("headers", [])]
    for dump in (data.get("scope", {}), data.get("types", {})):
        for key in ("client", "server"):
            dump.pop(key, None)
        dump["headers"] = [h for h, kept in zip(dump.get("headers", []), keep) if kept]
    return data


LONG = "v" * 70000
REQUESTS: list[tuple[str, str, list[tuple[str, str]], bytes]] = [
    ("GET", "/", [], b""),
    ("GET", "/a/b%20c/%C3%A9t%C3%A9?x=1&y=%FF&z", [("Accept", "*/*")], b""),
    ("GET", "/path?" + "q" * 300, [("X-Many", str(i)) for i in range(40)], b""),
    ("GET", "/dup", [("X-Dup", "1"), ("x-dup", "2"), ("X-DUP", "")], b""),
    ("GET", "/long", [("X-Long", "w" * 255), ("X-Longer", "w" * 256), ("X-Longest", LONG)], b""),
    ("POST", "/", [("Content-Type", "application/octet-stream")], b"x" * 200),
    ("POST", "/", [], b"\x00\xff" * 40000),
    ("POST", "/_/echo", [], bytes(range(256)) * 300),
    ("POST", "/_/echo", [("Transfer-Encoding", "chunked")], b""),
    ("GET", "/_/headers?status=201", [], b""),
    ("GET", "/_/headers?status=599", [], b""),
    ("GET", "/_/length", [], b""),
    ("HEAD", "/", [], b""),
    ("OPTIONS", "*", [], b""),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=[f"{r[0]} {r[1][:30]}" for r in REQUESTS])
def test_http_same_with_and_without_the_module(pair: tuple[GatewayServer, GatewayServer], request_: Any) -> None:
    method, target, headers, body = request_
    if headers and headers[0] == ("Transfer-Encoding", "chunked"):
        body = b"5\r\nhello\r\n0\r\n\r\n"
    fast, pure = (exchange(server, method, target, headers, body) for server in pair)
    assert fast == pure


WS_SIZES = [0, 1, 31, 32, 255, 256, 65535, 65536, 200_000]


def test_websocket_same_with_and_without_the_module(ws_pair: tuple[GatewayServer, GatewayServer]) -> None:
    messages: list[str | bytes] = []
    for n in WS_SIZES:
        messages += [b"\x01" * n, "t" * n]
    messages += ["é" * 16, "€" * 86, "\U0001f600" * 20000]
    echoes = []
    for server in ws_pair:
        with connect(f"ws://{server.host}:{server.port}/echo", max_size=None) as ws:
            got = []
            for message in messages:
                ws.send(message)
                got.append(ws.recv(timeout=10))
        echoes.append(got)
        assert got == messages
    scopes = []
    for server in ws_pair:
        with connect(f"ws://{server.host}:{server.port}/scope?x=1", additional_headers={"X-Odd": "é"}) as ws:
            scope = json.loads(ws.recv(timeout=10))
        scopes.append(scope)
    fast, pure = (comparable(scope) for scope in scopes)
    assert fast == pure
