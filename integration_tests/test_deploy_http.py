"""Deployment surface: HTTP options.

--timeout-keep-alive, --limit-request-body, --header, --no-server-header / --no-date-header,
--h11-max-incomplete-event-size and --static (ETag, conditional requests, Range and If-Range, path traversal).
"""

from __future__ import annotations

import email.utils
import gzip
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_harness import APPS_DIR, REPO_ROOT, GatewayServer, RawResponse, gateway_command


def client() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=10)


def raw_exchange(server: GatewayServer, request: bytes, method: str = "GET") -> RawResponse:
    with server.raw() as conn:
        conn.send(request)
        return conn.read_response(method)


# --- --timeout-keep-alive ---------------------------------------------------------------------


def idle_close_after(server: GatewayServer, wait: float) -> float | None:
    """Seconds from the end of a response until the server closes the idle connection (None: not
    within `wait`)."""
    with server.raw() as conn:
        conn.send(b"GET /keep-alive HTTP/1.1\r\nHost: test\r\n\r\n")
        response = conn.read_response()
        assert response.status == 200
        assert "close" not in response.connection_tokens()
        started = time.monotonic()
        if conn.peer_closed(timeout=wait):
            return time.monotonic() - started
        return None


def test_timeout_keep_alive_closes_an_idle_connection(servers: Any) -> None:
    server = servers.start("testapp:app", app_dir=APPS_DIR, extra_args=["--timeout-keep-alive", "1"])
    elapsed = idle_close_after(server, wait=4.0)
    assert elapsed is not None, "idle connection still open 4 s after the response (--timeout-keep-alive 1)"
    assert 0.7 <= elapsed <= 2.0, elapsed


def test_timeout_keep_alive_counts_from_the_last_response(servers: Any) -> None:
    # Requests every 0.4 s for 2.4 s on one connection with --timeout-keep-alive 1: the period
    # restarts at each response (the connection outlives the first request's deadline), and the
    # connection is closed about 1 s after the last response.
    server = servers.start("testapp:app", app_dir=APPS_DIR, extra_args=["--timeout-keep-alive", "1"])
    with server.raw() as conn:
        for _ in range(7):
            conn.send(b"GET /keep-alive HTTP/1.1\r\nHost: test\r\n\r\n")
            response = conn.read_response()
            assert response.status == 200
            assert "close" not in response.connection_tokens()
            last = time.monotonic()
            time.sleep(0.4)
        assert not conn.peer_closed(timeout=0.3), "closed within 0.7 s of the last response"
        assert conn.peer_closed(timeout=2.0), "still open 2.7 s after the last response"
        assert 0.7 <= time.monotonic() - last <= 2.0, time.monotonic() - last


def test_timeout_keep_alive_default_keeps_the_connection(servers: Any) -> None:
    server = servers.start("testapp:app", app_dir=APPS_DIR)  # default 5 s
    assert idle_close_after(server, wait=1.5) is None


def test_timeout_keep_alive_fraction(servers: Any) -> None:
    server = servers.start("testapp:app", app_dir=APPS_DIR, extra_args=["--timeout-keep-alive", "0.5"])
    elapsed = idle_close_after(server, wait=3.0)
    assert elapsed is not None and 0.3 <= elapsed <= 1.5, elapsed


# --- --limit-request-body ---------------------------------------------------------------------

LIMIT = 100


@pytest.fixture(scope="module")
def limited(module_servers: Any) -> GatewayServer:
    return module_servers.start(
        "deploy_app:app", app_dir=APPS_DIR, workers=1, extra_args=["--limit-request-body", str(LIMIT)]
    )


def seen(server: GatewayServer) -> list[str]:
    with client() as c:
        return c.get(f"{server.url}/_/seen").json()


def test_limit_request_body_at_the_limit_is_served(limited: GatewayServer) -> None:
    with client() as c:
        response = c.post(f"{limited.url}/_/echo", content=b"x" * LIMIT)
    assert response.status_code == 200
    assert response.content == b"x" * LIMIT


def test_limit_request_body_content_length_over_the_limit(limited: GatewayServer) -> None:
    body = b"y" * (LIMIT + 1)
    response = raw_exchange(
        limited,
        b"POST /too-big-cl HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body,
    )
    assert response.status == 413
    assert "/too-big-cl" not in seen(limited), "the app was given the request"


def test_limit_request_body_answered_before_the_body_is_sent(limited: GatewayServer) -> None:
    # Only the head: the gateway knows from Content-Length, and answers without waiting for the body
    # (and without 100 Continue).
    with limited.raw(timeout=5) as conn:
        conn.send(
            b"POST /too-big-expect HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
            b"Content-Length: 1000000\r\n\r\n"
        )
        response = conn.read_response(allow_informational=True)
    assert response.status == 413
    assert "/too-big-expect" not in seen(limited)


def test_limit_request_body_chunked_over_the_limit(limited: GatewayServer) -> None:
    # No Content-Length to go by: the gateway counts the chunks (README: "413 for larger request bodies").
    chunk = b"z" * 60
    request = b"POST /_/echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    request += (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 3 + b"0\r\n\r\n"
    with limited.raw(timeout=5) as conn:
        conn.send(request)
        response = conn.read_response()
    assert response.status == 413


# --- --header, --no-server-header, --no-date-header ----------------------------------------------


@pytest.fixture(scope="module")
def static_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("static-root")
    directory = root / "static"
    directory.mkdir()
    (directory / "hello.txt").write_bytes(b"0123456789abcdefghij\n")
    (directory / "page.html").write_bytes(b"<!doctype html><title>page</title>\n")
    text = b"compress me " * 200
    (directory / "big.txt").write_bytes(text)
    (directory / "big.txt.gz").write_bytes(gzip.compress(text))
    (directory / "sub").mkdir()
    (directory / "sub" / "nested.txt").write_bytes(b"nested\n")
    (root / "secret").write_bytes(b"TOP-SECRET-CONTENT\n")
    os.symlink(root / "secret", directory / "link-to-secret")
    return directory


@pytest.fixture(scope="module")
def header_server(module_servers: Any, static_dir: Path) -> GatewayServer:
    return module_servers.start(
        "testapp:app",
        app_dir=APPS_DIR,
        extra_args=[
            "--header", "X-A:1", "--header", "X-Deploy: two words",
            "--static", f"/static={static_dir}", "--limit-request-body", "10",
        ],
    )


HEADER_CASES = {
    "app-200": b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n",
    "app-204": b"GET /_/status?code=204 HTTP/1.1\r\nHost: t\r\n\r\n",
    "app-error-500": b"GET /_/error/before-start HTTP/1.1\r\nHost: t\r\n\r\n",
    "static-200": b"GET /static/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    "static-404": b"GET /static/missing.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    "gateway-413": b"POST /plain HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n01234567890",
}


@pytest.mark.parametrize("case", list(HEADER_CASES))
def test_header_on_every_response(header_server: GatewayServer, case: str) -> None:
    response = raw_exchange(header_server, HEADER_CASES[case])
    assert response.header_list("x-a") == ["1"], response.head_bytes
    assert response.header_list("x-deploy") == ["two words"], response.head_bytes


def test_header_with_commas_and_a_server_of_its_own(servers: Any, static_dir: Path) -> None:
    # A --header value with commas is one header (repeatable options are not split on commas), and a
    # --header server takes the place of the gateway's (one server field line: RFC 9110 5.3).
    server = servers.start(
        "testapp:app",
        app_dir=APPS_DIR,
        extra_args=[
            "--header", "Cache-Control: no-cache, no-store", "--header", "Server: my-proxy",
            "--static", f"/static={static_dir}", "--limit-request-body", "10",
        ],
    )
    for case, request in HEADER_CASES.items():
        response = raw_exchange(server, request)
        assert response.header_list("cache-control") == ["no-cache, no-store"], (case, response.head_bytes)
        assert response.header_list("server") == ["my-proxy"], (case, response.head_bytes)
        assert len(response.header_list("date")) == 1, (case, response.head_bytes)


def test_header_bad_value_is_refused(gateway_binary: None) -> None:
    command = gateway_command("testapp:app", "--app-dir", str(APPS_DIR), "--port", "0", "--header", "no-colon")
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=15)
    assert result.returncode == 2
    assert "no-colon" in result.stderr


@pytest.mark.parametrize(
    "flags, server_header, date_header",
    [
        ([], True, True),
        (["--no-server-header"], False, True),
        (["--no-date-header"], True, False),
        (["--no-server-header", "--no-date-header"], False, False),
        (["--server-header=false", "--date-header=false"], False, False),
    ],
)
def test_server_and_date_headers(
    servers: Any, static_dir: Path, flags: list[str], server_header: bool, date_header: bool
) -> None:
    server = servers.start("testapp:app", app_dir=APPS_DIR, extra_args=[*flags, "--static", f"/static={static_dir}"])
    for target in (b"/plain", b"/static/hello.txt", b"/_/error/before-start"):
        response = raw_exchange(server, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        servers_ = response.header_list("server")
        dates = response.header_list("date")
        assert servers_ == (["asgi-gateway"] if server_header else []), (target, response.head_bytes)
        assert len(dates) == (1 if date_header else 0), (target, response.head_bytes)
        if dates:
            parsed = email.utils.parsedate_to_datetime(dates[0])
            assert dates[0].endswith(" GMT") and abs(parsed.timestamp() - time.time()) < 5, dates[0]


# --- --h11-max-incomplete-event-size ----------------------------------------------------------


def head_of_size(size: int) -> bytes:
    start = b"GET /head-size HTTP/1.1\r\nHost: t\r\nX-Pad: "
    end = b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


@pytest.fixture(scope="module")
def head_limit_servers(module_servers: Any) -> dict[str, GatewayServer]:
    return {
        "1024": module_servers.start(
            "testapp:app", app_dir=APPS_DIR, extra_args=["--h11-max-incomplete-event-size", "1024"]
        ),
        "default": module_servers.start("testapp:app", app_dir=APPS_DIR),  # 16384
    }


@pytest.mark.parametrize(
    "limit, size, status",
    [("1024", 1000, 200), ("1024", 1100, 431), ("1024", 4000, 431), ("default", 16000, 200), ("default", 17000, 431)],
)
def test_h11_max_incomplete_event_size(
    head_limit_servers: dict[str, GatewayServer], limit: str, size: int, status: int
) -> None:
    response = raw_exchange(head_limit_servers[limit], head_of_size(size))
    assert response.status == status


# --- --static ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def static_server(module_servers: Any, static_dir: Path) -> GatewayServer:
    return module_servers.start("testapp:app", app_dir=APPS_DIR, extra_args=["--static", f"/static={static_dir}"])


def get_raw(server: GatewayServer, target: str, *headers: str, method: str = "GET") -> RawResponse:
    head = f"{method} {target} HTTP/1.1\r\nHost: t\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n"
    return raw_exchange(server, head.encode(), method)


def test_static_file(static_server: GatewayServer, static_dir: Path) -> None:
    response = get_raw(static_server, "/static/hello.txt")
    assert response.status == 200
    assert response.body == (static_dir / "hello.txt").read_bytes()
    assert response.header("content-type").startswith("text/plain")
    assert response.header("etag")
    assert response.header("last-modified")
    assert response.header("accept-ranges") == "bytes"
    nested = get_raw(static_server, "/static/sub/nested.txt")
    assert (nested.status, nested.body) == (200, b"nested\n")
    html = get_raw(static_server, "/static/page.html")
    assert html.header("content-type").startswith("text/html")


def test_static_head(static_server: GatewayServer, static_dir: Path) -> None:
    response = get_raw(static_server, "/static/hello.txt", method="HEAD")
    assert response.status == 200
    assert response.header("content-length") == str((static_dir / "hello.txt").stat().st_size)


def test_static_other_paths_go_to_the_app(static_server: GatewayServer) -> None:
    for target in ("/staticx/hello.txt", "/other"):
        response = get_raw(static_server, target)
        assert response.status == 200
        assert b'"scope"' in response.body


@pytest.mark.parametrize(
    "range_header, status, body, content_range",
    [
        ("bytes=0-9", 206, b"0123456789", "bytes 0-9/21"),
        ("bytes=10-", 206, b"abcdefghij\n", "bytes 10-20/21"),
        ("bytes=-3", 206, b"ij\n", "bytes 18-20/21"),
        ("bytes=5-5", 206, b"5", "bytes 5-5/21"),
        ("bytes=100-200", 416, None, "bytes */21"),
    ],
)
def test_static_range(
    static_server: GatewayServer, range_header: str, status: int, body: bytes | None, content_range: str
) -> None:
    response = get_raw(static_server, "/static/hello.txt", f"Range: {range_header}")
    assert response.status == status
    assert response.header("content-range") == content_range
    if body is not None:
        assert response.body == body
        assert response.header("content-length") == str(len(body))


def test_static_if_none_match(static_server: GatewayServer) -> None:
    etag = get_raw(static_server, "/static/hello.txt").header("etag")
    assert etag
    response = get_raw(static_server, "/static/hello.txt", f"If-None-Match: {etag}")
    assert response.status == 304
    assert response.body == b""
    assert response.header("etag") == etag
    listed = get_raw(static_server, "/static/hello.txt", f'If-None-Match: "other", {etag}')
    assert listed.status == 304
    other = get_raw(static_server, "/static/hello.txt", 'If-None-Match: "not-it"')
    assert other.status == 200


def test_static_if_range(static_server: GatewayServer) -> None:
    # RFC 9110 13.1.5: a Range with If-Range is honoured only while the validator still names the
    # file (its strong ETag, or exactly its Last-Modified); otherwise the whole file comes back
    # (200), never a part of another version.
    full = get_raw(static_server, "/static/hello.txt")
    etag, modified = full.header("etag"), full.header("last-modified")
    for validator in (etag, modified):
        part = get_raw(static_server, "/static/hello.txt", "Range: bytes=0-9", f"If-Range: {validator}")
        assert (part.status, part.body, part.header("content-range")) == (206, b"0123456789", "bytes 0-9/21")
    older = email.utils.formatdate(time.time() - 86400 * 400, usegmt=True)
    for validator in ('"another-version"', f"W/{etag}", older):
        whole = get_raw(static_server, "/static/hello.txt", "Range: bytes=0-9", f"If-Range: {validator}")
        assert (whole.status, whole.body) == (200, full.body), validator
        assert whole.header("content-range") is None


def test_static_if_match_and_if_unmodified_since(static_server: GatewayServer) -> None:
    # RFC 9110 13.1.1 (strong comparison: a weak tag never matches) and 13.1.4; 412 when they fail.
    full = get_raw(static_server, "/static/hello.txt")
    etag, modified = full.header("etag"), full.header("last-modified")
    for value, status in ((etag, 200), ("*", 200), (f'"other", {etag}', 200), ('"other"', 412), (f"W/{etag}", 412)):
        response = get_raw(static_server, "/static/hello.txt", f"If-Match: {value}")
        assert response.status == status, value
        assert response.body == (full.body if status == 200 else b"")
    older = email.utils.formatdate(time.time() - 86400 * 400, usegmt=True)
    assert get_raw(static_server, "/static/hello.txt", f"If-Unmodified-Since: {older}").status == 412
    assert get_raw(static_server, "/static/hello.txt", f"If-Unmodified-Since: {modified}").status == 200
    # If-Match, when present, is what decides (13.2.2): a failing If-Unmodified-Since is not evaluated.
    assert get_raw(static_server, "/static/hello.txt", f"If-Match: {etag}", f"If-Unmodified-Since: {older}").status == 200


def test_static_range_is_for_get_only(static_server: GatewayServer) -> None:
    # RFC 9110 14.2: GET is the only method with range handling: HEAD gets the whole file's head.
    response = get_raw(static_server, "/static/hello.txt", "Range: bytes=0-9", method="HEAD")
    assert response.status == 200
    assert response.header("content-range") is None
    assert response.header("content-length") == "21"


def test_static_if_none_match_is_weak(static_server: GatewayServer) -> None:
    etag = get_raw(static_server, "/static/hello.txt").header("etag")
    assert get_raw(static_server, "/static/hello.txt", f"If-None-Match: W/{etag}").status == 304


def test_static_other_methods_and_content(static_server: GatewayServer) -> None:
    # RFC 9110 15.5.6: a 405 lists the methods the resource has (Allow). A GET with content is
    # refused (9.3.1: it has no meaning; nothing would read it), not answered 405 (GET is allowed).
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        response = raw_exchange(static_server, f"{method} /static/hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".encode())
        assert response.status == 405, method
        assert response.header("allow") == "GET, HEAD", method
    with_content = raw_exchange(static_server, b"GET /static/hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
    assert with_content.status == 400


def test_static_serves_regular_files_only(static_server: GatewayServer, static_dir: Path) -> None:
    # A name with a trailing slash names a directory: a file of that name is not it (as nginx and
    # most servers answer). A FIFO (or device) is not a file to send: opening it would block.
    assert get_raw(static_server, "/static/hello.txt/").status == 404
    assert get_raw(static_server, "/static/hello.txt%2f").status == 404
    fifo = static_dir / "a-fifo"
    os.mkfifo(fifo)
    try:
        started = time.monotonic()
        assert get_raw(static_server, "/static/a-fifo").status == 404
        assert time.monotonic() - started < 2
    finally:
        fifo.unlink()
    assert get_raw(static_server, "/static/hello.txt").status == 200


def test_static_precompressed_gzip(static_server: GatewayServer, static_dir: Path) -> None:
    response = get_raw(static_server, "/static/big.txt", "Accept-Encoding: gzip")
    assert response.status == 200
    assert response.header("content-encoding") == "gzip"
    assert gzip.decompress(response.body) == (static_dir / "big.txt").read_bytes()
    assert "accept-encoding" in (response.header("vary") or "").lower()
    plain = get_raw(static_server, "/static/big.txt")
    assert plain.header("content-encoding") is None
    assert plain.body == (static_dir / "big.txt").read_bytes()


TRAVERSALS = [
    "/static/../secret",
    "/static/%2e%2e/secret",
    "/static/..%2fsecret",
    "/static/%2e%2e%2fsecret",
    "/static/..%2Fsecret",
    "/static/..%5csecret",
    "/static/sub/../../secret",
    "/static/./../secret",
    "/static//../secret",
    "/static/%2E%2E/%2E%2E/secret",
    "/static/link-to-secret",  # a symlink out of the directory
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_static_traversal_is_404_without_leaking(static_server: GatewayServer, target: str) -> None:
    response = get_raw(static_server, target)
    assert response.status == 404, (target, response.status, response.body[:200])
    assert b"TOP-SECRET" not in response.body


def test_static_bad_mount_is_refused(gateway_binary: None, tmp_path: Path) -> None:
    for spec in (f"static={tmp_path}", f"/static={tmp_path / 'missing'}"):
        command = gateway_command("testapp:app", "--app-dir", str(APPS_DIR), "--port", "0", "--static", spec)
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=15)
        assert result.returncode == 2, spec
        assert spec in result.stderr
