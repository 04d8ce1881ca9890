"""Request bodies: sizes, content-length and chunked framing, as the app receives them."""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Iterator

import httpx
import pytest

from gateway_harness import GatewayServer, chunked

MIB = 1024 * 1024


def check_echo(response: httpx.Response, body: bytes) -> None:
    """The echo endpoint answered body back, and saw http.request events ending with more_body False."""
    assert response.status_code == 200, response.text[:500]
    assert len(response.content) == len(body)
    assert hashlib.sha256(response.content).hexdigest() == hashlib.sha256(body).hexdigest()
    assert response.headers["x-sha256"] == hashlib.sha256(body).hexdigest()
    messages = int(response.headers["x-messages"])
    assert messages >= 1
    assert response.headers["x-types"] == "http.request"
    assert response.headers["x-body-types"] == "bytes"
    assert response.headers["x-last-more-body"] == "False"
    assert int(response.headers["x-more-body-true"]) == messages - 1


@pytest.mark.parametrize("size", [0, 1, 10 * MIB], ids=["0B", "1B", "10MiB"])
def test_body_with_content_length(server: GatewayServer, size: int) -> None:
    body = os.urandom(size)
    response = httpx.post(f"{server.url}/_/echo", content=body, timeout=30)
    check_echo(response, body)
    if size == 0:
        assert response.headers["x-messages"] == "1"
    elif size > MIB:
        # The body streams in pieces (more_body True, ..., False), not as one 10 MiB event.
        assert int(response.headers["x-messages"]) > 1


@pytest.mark.parametrize("size", [0, 1, 10 * MIB], ids=["0B", "1B", "10MiB"])
def test_body_chunked_from_httpx_generator(server: GatewayServer, size: int) -> None:
    body = os.urandom(size)

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), MIB):
            yield body[start : start + MIB]

    response = httpx.post(f"{server.url}/_/echo", content=pieces(), timeout=30)
    check_echo(response, body)


def test_body_chunked_raw_several_chunks(server: GatewayServer) -> None:
    pieces = [b"hello", b" ", b"x" * 1000, os.urandom(70_000), b"end"]
    with server.raw() as conn:
        conn.send(b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n")
        for frame in chunked(pieces):
            conn.send(frame)
            time.sleep(0.02)  # separate arrivals
        response = conn.read_response()
    body = b"".join(pieces)
    assert response.status == 200
    assert response.body == body
    assert response.header("x-sha256") == hashlib.sha256(body).hexdigest()
    assert response.header("x-last-more-body") == "False"
    messages = int(response.header("x-messages") or 0)
    assert int(response.header("x-more-body-true") or -1) == messages - 1


def test_tiny_chunks_read_together_reach_the_app_together(server: GatewayServer) -> None:
    """A body of 1-byte chunks (probe 50: 6 bytes on the wire made the worker wake a task for one
    http.request each, and 24 such uploads stalled everything else on the worker) reaches the app
    in as few messages as were read together, each chunk's data in order."""
    body = os.urandom(6000)
    wire = b"".join(b"1\r\n" + body[i : i + 1] + b"\r\n" for i in range(len(body))) + b"0\r\n\r\n"
    with server.raw() as conn:
        conn.send(b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n" + wire)
        response = conn.read_response()
    assert response.status == 200
    assert response.body == body
    messages = int(response.header("x-messages") or 0)
    assert 1 <= messages <= 20, f"{messages} http.request messages for {len(body)} one-byte chunks sent at once"


def test_body_chunked_raw_uppercase_hex_extensions_and_trailers(server: GatewayServer) -> None:
    payload = b"y" * 0x3E8
    request = (
        b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b"3E8\r\n" + payload + b"\r\n"
        b"0\r\nX-Trailer: ignored\r\n\r\n"
    )
    with server.raw() as conn:
        conn.send(request)
        response = conn.read_response()
        assert response.status == 200
        assert response.body == b"hello" + payload
        # The connection is still in sync: a second request on it works.
        again = conn.request("GET", "/_/pid")
        assert again.status == 200


def test_body_split_across_writes_with_content_length(server: GatewayServer) -> None:
    body = b"0123456789" * 1000
    with server.raw() as conn:
        conn.send(b"POST /_/echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: %d\r\n\r\n" % len(body))
        for start in range(0, len(body), 3000):
            conn.send(body[start : start + 3000])
            time.sleep(0.02)
        response = conn.read_response()
    assert response.status == 200
    assert response.body == body
    assert response.header("x-last-more-body") == "False"


def test_app_sees_body_of_post_to_scope_endpoint(server: GatewayServer) -> None:
    response = httpx.post(f"{server.url}/form", data={"a": "1", "b": "2"})
    assert response.status_code == 200
    data = response.json()
    assert data["body_size"] == len(b"a=1&b=2")
    assert ["content-type", "application/x-www-form-urlencoded"] in data["scope"]["headers"]
    assert data["messages"][-1]["more_body"] is False
    assert json.dumps(data["messages"])  # plain data
