"""Deployment surface: --proxy-headers / --no-proxy-headers and --forwarded-allow-ips ($FORWARDED_ALLOW_IPS).

README: take client and scheme from X-Forwarded-For/-Proto (or RFC 7239 Forwarded) of these peers (IPs,
CIDRs, `*`); default `$FORWARDED_ALLOW_IPS` or 127.0.0.1. As uvicorn's ProxyHeadersMiddleware: the
client becomes the rightmost X-Forwarded-For address that is not a trusted proxy, with its port when
the hop has one, else 0; several header lines make one list.
The tests connect from 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from gateway_harness import APPS_DIR, GatewayServer

PROXY_ENV = ("FORWARDED_ALLOW_IPS", "ASGI_GATEWAY_FORWARDED_ALLOW_IPS", "UVICORN_FORWARDED_ALLOW_IPS")


def env_without_proxy_settings(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in PROXY_ENV}
    env.update(extra)
    return env


SERVER_ARGS: dict[str, tuple[list[str], dict[str, str]]] = {
    "default": ([], {}),
    "no-proxy-headers": (["--no-proxy-headers"], {}),
    "untrusted-network": (["--forwarded-allow-ips", "10.0.0.0/8"], {}),
    "trust-all": (["--forwarded-allow-ips", "*"], {}),
    "trusted-list": (["--forwarded-allow-ips", "10.1.2.3, 127.0.0.0/8,::1"], {}),
    "env-untrusted": ([], {"FORWARDED_ALLOW_IPS": "10.0.0.0/8"}),
    "env-trust-all": ([], {"FORWARDED_ALLOW_IPS": "*"}),
    "option-beats-env": (["--forwarded-allow-ips", "127.0.0.1"], {"FORWARDED_ALLOW_IPS": "10.0.0.0/8"}),
}


@pytest.fixture(scope="module")
def proxy_servers(module_servers: Any) -> dict[str, GatewayServer]:
    started = {}
    for name, (args, env) in SERVER_ARGS.items():
        started[name] = module_servers.start(
            "testapp:app", app_dir=APPS_DIR, extra_args=args, env=env_without_proxy_settings(**env)
        )
    return started


def scope_for(server: GatewayServer, headers: list[tuple[str, str]], path: str = "/proxied") -> dict[str, Any]:
    with httpx.Client(trust_env=False, timeout=10) as client:
        response = client.get(f"{server.url}{path}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["scope"]


XFF = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]


def assert_applied(scope: dict[str, Any], client: str = "203.0.113.7", scheme: str = "https") -> None:
    assert scope["client"] == [client, 0], scope["client"]
    assert scope["scheme"] == scheme


def assert_ignored(scope: dict[str, Any]) -> None:
    host, port = scope["client"]
    assert host == "127.0.0.1" and port > 0, scope["client"]
    assert scope["scheme"] == "http"


@pytest.mark.parametrize("name", ["default", "trust-all", "trusted-list", "env-trust-all", "option-beats-env"])
def test_trusted_peer_sets_client_and_scheme(proxy_servers: dict[str, GatewayServer], name: str) -> None:
    scope = scope_for(proxy_servers[name], XFF)
    assert_applied(scope)
    # The headers themselves still reach the app.
    assert ["x-forwarded-for", "203.0.113.7"] in scope["headers"]


@pytest.mark.parametrize("name", ["no-proxy-headers", "untrusted-network", "env-untrusted"])
def test_proxy_headers_ignored(proxy_servers: dict[str, GatewayServer], name: str) -> None:
    scope = scope_for(proxy_servers[name], XFF + [("Forwarded", "for=198.51.100.9;proto=https")])
    assert_ignored(scope)
    assert ["x-forwarded-for", "203.0.113.7"] in scope["headers"]


def test_forwarded_for_only_keeps_the_scheme(proxy_servers: dict[str, GatewayServer]) -> None:
    scope = scope_for(proxy_servers["default"], [("X-Forwarded-For", "198.51.100.20")])
    assert_applied(scope, "198.51.100.20", "http")


def test_forwarded_proto_only_keeps_the_client(proxy_servers: dict[str, GatewayServer]) -> None:
    scope = scope_for(proxy_servers["default"], [("X-Forwarded-Proto", "https")])
    host, port = scope["client"]
    assert host == "127.0.0.1" and port > 0
    assert scope["scheme"] == "https"


def test_forwarded_for_chain_takes_the_rightmost_untrusted(proxy_servers: dict[str, GatewayServer]) -> None:
    # Client 198.51.100.1, then proxies 203.0.113.7 (not trusted) and 127.0.0.1 (trusted).
    headers = [("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 127.0.0.1")]
    assert scope_for(proxy_servers["default"], headers)["client"] == ["203.0.113.7", 0]
    # Everything trusted ("*"): the leftmost address, the original client.
    assert scope_for(proxy_servers["trust-all"], headers)["client"] == ["198.51.100.1", 0]


def test_forwarded_for_ipv6(proxy_servers: dict[str, GatewayServer]) -> None:
    scope = scope_for(proxy_servers["default"], [("X-Forwarded-For", "2001:db8::7")])
    assert scope["client"] == ["2001:db8::7", 0]


@pytest.mark.parametrize(
    "forwarded, client, scheme",
    [
        ("for=198.51.100.9;proto=https", "198.51.100.9", "https"),
        ('for="[2001:db8:cafe::17]";proto=https', "2001:db8:cafe::17", "https"),
        ("For=192.0.2.60;Proto=HTTPS", "192.0.2.60", "https"),  # parameter names are case-insensitive
        ("for=192.0.2.43, for=198.51.100.17;proto=https", "198.51.100.17", "https"),
        ("for=192.0.2.43", "192.0.2.43", "http"),
    ],
)
def test_rfc7239_forwarded(proxy_servers: dict[str, GatewayServer], forwarded: str, client: str, scheme: str) -> None:
    scope = scope_for(proxy_servers["default"], [("Forwarded", forwarded)])
    assert_applied(scope, client, scheme)


@pytest.mark.parametrize(
    "headers, client",
    [
        ([("X-Forwarded-For", "198.51.100.9:5555")], ["198.51.100.9", 5555]),
        ([("X-Forwarded-For", "[2001:db8::1]:4711")], ["2001:db8::1", 4711]),
        ([("X-Forwarded-For", "2001:db8::1")], ["2001:db8::1", 0]),
        ([("Forwarded", 'for="198.51.100.9:4711";proto=https;by=203.0.113.43')], ["198.51.100.9", 4711]),
        ([("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https')], ["2001:db8:cafe::17", 4711]),
    ],
)
def test_forwarded_client_port(proxy_servers: dict[str, GatewayServer], headers: list, client: list) -> None:
    # A hop with a port gives the client that port (as uvicorn does for X-Forwarded-For), else 0.
    assert scope_for(proxy_servers["default"], headers)["client"] == client


def test_several_forwarded_for_lines_make_one_list(proxy_servers: dict[str, GatewayServer]) -> None:
    # RFC 9110 5.3: field lines of a list field combine in order; a proxy may add its own line
    # instead of appending (RFC 7239 section 4). 127.0.0.1 and 10.1.2.3 are trusted ("trusted-list").
    server = proxy_servers["trusted-list"]
    lines = [("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "10.1.2.3")]
    assert scope_for(server, lines)["client"] == ["198.51.100.1", 0]
    forwarded = [("Forwarded", "for=198.51.100.2;proto=https"), ("Forwarded", "for=10.1.2.3;proto=http")]
    scope = scope_for(server, forwarded)
    assert (scope["client"], scope["scheme"]) == (["198.51.100.2", 0], "https")


def test_forwarded_proto_of_the_chosen_element(proxy_servers: dict[str, GatewayServer]) -> None:
    # The scheme comes from the element whose for= became the client, not from the last element:
    # the client used https to reach the first proxy, which used http to reach the trusted one.
    headers = [("Forwarded", "for=198.51.100.7;proto=https, for=10.1.2.3;proto=http")]
    scope = scope_for(proxy_servers["trusted-list"], headers)
    assert (scope["client"], scope["scheme"]) == (["198.51.100.7", 0], "https")


def test_unknown_forwarded_proto_is_ignored(proxy_servers: dict[str, GatewayServer]) -> None:
    scope = scope_for(proxy_servers["default"], [("X-Forwarded-Proto", "gopher")])
    assert scope["scheme"] == "http"


def test_websocket_scheme_from_forwarded_proto(module_servers: Any) -> None:
    server = module_servers.start("ws_app:app", app_dir=APPS_DIR, env=env_without_proxy_settings())
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.8"}
    with connect(
        f"ws://127.0.0.1:{server.port}/scope", additional_headers=headers, open_timeout=10, proxy=None
    ) as ws:
        scope = json.loads(ws.recv(timeout=10))["scope"]
    assert scope["scheme"] == "wss"
    assert scope["client"] == ["203.0.113.8", 0]


def test_default_trusts_the_ipv6_loopback_too(module_servers: Any) -> None:
    # uvicorn's default --forwarded-allow-ips is "127.0.0.1,::1": a proxy on the IPv6 loopback (a
    # "localhost" that resolves to ::1) is trusted as one on 127.0.0.1 is.
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    server = module_servers.start(
        "testapp:app", app_dir=APPS_DIR, extra_args=["--host", "::1", "--port", "0"], env=env_without_proxy_settings()
    )
    assert server.url.startswith("http://[::1]:"), server.url
    assert_applied(scope_for(server, XFF))
