"""The WebSocket examples of examples/, served by the real binary: the Starlette chat room
(examples/ws_chat.py) and the Django Channels echo project (examples/channels_project)."""

from __future__ import annotations

import importlib.util
import os
import socket
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from gateway_harness import EXAMPLES_DIR, GatewayServer


def ws_connect(server: GatewayServer, path: str, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("open_timeout", 10)
    kwargs.setdefault("close_timeout", 5)
    kwargs.setdefault("proxy", None)
    return connect(f"ws://{server.host}:{server.port}{path}", **kwargs)


# --- Starlette chat ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat(module_servers: Any) -> GatewayServer:
    # One worker: the room is in the app's memory (see the module docstring of ws_chat.py).
    return module_servers.start("ws_chat:app", app_dir=EXAMPLES_DIR, workers=1)


def test_chat_page(chat: GatewayServer) -> None:
    response = httpx.get(f"{chat.url}/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "new WebSocket(" in response.text


def test_chat_broadcasts_between_two_clients(chat: GatewayServer) -> None:
    with ws_connect(chat, "/ws?name=alice") as alice:
        assert alice.recv(timeout=5) == "* alice joined"
        with ws_connect(chat, "/ws?name=bob") as bob:
            assert bob.recv(timeout=5) == "* bob joined"
            assert alice.recv(timeout=5) == "* bob joined"
            assert httpx.get(f"{chat.url}/members").json() == {"members": ["alice", "bob"]}

            alice.send("hi bob")
            assert bob.recv(timeout=5) == "alice: hi bob"
            assert alice.recv(timeout=5) == "alice: hi bob"  # the sender gets its own message too

            bob.send("héllo ✓")
            assert alice.recv(timeout=5) == "bob: héllo ✓"
            assert bob.recv(timeout=5) == "bob: héllo ✓"
        # bob closed: alice hears it
        assert alice.recv(timeout=5) == "* bob left"
        assert httpx.get(f"{chat.url}/members").json() == {"members": ["alice"]}


def test_chat_member_lost_without_close_leaves_the_room(chat: GatewayServer) -> None:
    with ws_connect(chat, "/ws?name=carol") as carol:
        assert carol.recv(timeout=5) == "* carol joined"
        with ws_connect(chat, "/ws?name=dave") as dave:
            assert dave.recv(timeout=5) == "* dave joined"
            assert carol.recv(timeout=5) == "* dave joined"
            dave.socket.shutdown(socket.SHUT_RDWR)  # the TCP connection drops, no close frame
            assert carol.recv(timeout=5) == "* dave left"
        carol.send("anyone?")
        assert carol.recv(timeout=5) == "carol: anyone?"
        assert httpx.get(f"{chat.url}/members").json() == {"members": ["carol"]}


# --- Django Channels ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def channels_site(module_servers: Any) -> GatewayServer:
    if importlib.util.find_spec("channels") is None:
        pytest.fail(
            "Django Channels is not installed: make venv (channels is pinned in examples/requirements.txt)",
            pytrace=False,
        )
    return module_servers.start(
        "echosite.asgi:application", app_dir=EXAMPLES_DIR / "channels_project", workers=1
    )


def test_channels_http_view(channels_site: GatewayServer) -> None:
    response = httpx.get(f"{channels_site.url}/")
    assert response.status_code == 200
    assert response.json() == {"echo": f"ws://{channels_site.host}:{channels_site.port}/ws/echo/"}


def test_channels_consumer_echoes(channels_site: GatewayServer) -> None:
    data = os.urandom(100_000)
    with ws_connect(channels_site, "/ws/echo/", max_size=None) as ws:
        for message in ["hello", "héllo ✓", "x" * 200_000, b"\x00\xff", data]:
            ws.send(message)
            answer = ws.recv(timeout=10)
            assert type(answer) is type(message) and answer == message


def test_channels_unknown_route_is_refused(channels_site: GatewayServer) -> None:
    # URLRouter raises for a path it has no route for, before accepting: the handshake fails.
    with pytest.raises(InvalidStatus) as excinfo:
        ws_connect(channels_site, "/ws/nowhere/")
    assert excinfo.value.response.status_code == 500
