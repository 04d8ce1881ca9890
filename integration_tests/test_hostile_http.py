"""Hostile HTTP/1.1 requests on a raw socket: smuggling shapes, malformed syntax, limits.

Each refused request is checked three ways:

1. the exact status the gateway answers (RFC 9110 / RFC 9112; the rule is named next to each case);
2. the connection is then closed, with nothing after the error response (a request hidden in the
   refused one's body is never answered);
3. the same server answers a normal request afterwards, and the app (``apps/faulty_app.py``, which
   counts every request it sees and remembers its target) saw only that normal request: the refused
   one never reached Python. Requests whose head is valid but whose chunked body is broken do reach
   the app (the body streams after the head), so for those only (1), (2) and "the server goes on"
   are checked.
"""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import pytest

from gateway_harness import APPS_DIR, GatewayServer, IncompleteResponse, RawResponse

# --- helpers --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile(module_servers: Any) -> GatewayServer:
    """faulty_app (counts requests; everything else is testapp), one worker so the count is exact."""
    return module_servers.start("faulty_app:app", app_dir=APPS_DIR, workers=1)


@pytest.fixture(scope="module")
def small_head(module_servers: Any) -> GatewayServer:
    return module_servers.start(
        "faulty_app:app", app_dir=APPS_DIR, workers=1, extra_args=["--h11-max-incomplete-event-size", "1024"]
    )


def app_record(server: GatewayServer) -> dict[str, Any]:
    """What the app has seen so far: {"count": N, "seen": [targets...], "pid": PID}."""
    with server.raw() as conn:
        response = conn.request("GET", "/_/count", headers=[("Connection", "close")])
    assert response.status == 200, response
    return json.loads(response.body)


def send_raw(server: GatewayServer, data: bytes) -> tuple[RawResponse, bytes, bool]:
    """Sends data on a new connection; returns the first response, whatever came after it, and
    whether the server closed the connection (EOF within 5 s)."""
    with server.raw(timeout=10) as conn:
        conn.send(data)
        try:
            response = conn.read_response()
        except IncompleteResponse as exc:
            raise AssertionError(f"no complete response to {data[:200]!r}; got {exc.partial!r}") from None
        rest = conn.buffer
        conn.buffer = b""
        closed = False
        if not rest:
            closed = conn.peer_closed(timeout=5)
        if not closed:
            conn.sock.settimeout(2)
            try:
                rest += conn.read_to_close()
                closed = True
            except OSError:  # timeout: the server kept the connection open
                rest += conn.buffer
    return response, rest, closed


def assert_served_normally(server: GatewayServer) -> str:
    """A normal request on a new connection gets its 200; returns its (unique) path."""
    path = f"/after-{uuid.uuid4().hex}"
    with server.raw() as conn:
        response = conn.request("GET", path)
        assert response.status == 200, f"the server did not serve a normal request afterwards: {response}"
        assert json.loads(response.body)["scope"]["path"] == path
    return path


def check_refused(
    server: GatewayServer,
    data: bytes,
    status: int,
    *,
    marker: str,
    reaches_app: bool = False,
) -> RawResponse:
    """Sends data, expects `status` then a close with nothing else, then a normal exchange; unless
    reaches_app, checks that the app saw only the normal request."""
    before = app_record(server)
    response, rest, closed = send_raw(server, data)
    assert response.status == status, (
        f"expected {status}, got {response.status} {response.reason} for {data[:300]!r}\nbody: {response.body[:300]!r}"
    )
    assert rest == b"", f"bytes after the {status} response (a second response?): {rest[:300]!r}"
    assert closed, f"the connection stayed open after {status} to {data[:300]!r}"
    normal = assert_served_normally(server)
    after = app_record(server)
    assert after["pid"] == before["pid"], "the worker changed"
    seen_now = after["count"] - before["count"]
    new_targets = after["seen"][-seen_now:] if seen_now > 0 else []
    if reaches_app:
        assert normal in new_targets
        hidden = [t for t in new_targets if marker in t and "hidden" in t]
        assert not hidden, f"a request hidden in the body reached the app: {hidden}"
    else:
        assert after["count"] == before["count"] + 1, (
            f"the app saw {after['count'] - before['count']} requests, expected only the normal one: {new_targets}"
        )
        assert new_targets == [normal], new_targets
        assert not any(marker in t for t in new_targets)
    return response


def mark() -> str:
    return f"h{uuid.uuid4().hex[:12]}"


def build(template: bytes, m: str) -> bytes:
    return template.replace(b"{m}", m.encode())


# --- refused before the app: (request, status, rule) ------------------------------------------------

HOST = b"Host: test.local\r\n"
POST = b"POST /{m} HTTP/1.1\r\n" + HOST
GET = b"GET /{m} HTTP/1.1\r\n" + HOST

REFUSED: dict[str, tuple[bytes, int]] = {
    # RFC 9112 6.1: CL with TE "ought to be handled as an error"; 6.3: the server MUST close after.
    "cl-then-te": (POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    "te-then-cl": (POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    "cl-and-te-identity": (POST + b"Content-Length: 5\r\nTransfer-Encoding: identity\r\n\r\nhello", 400),
    # RFC 9112 6.3 item 5 / RFC 9110 8.6: differing or repeated Content-Length values are invalid.
    "duplicate-cl-different": (POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    "duplicate-cl-equal": (POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
    "cl-list": (POST + b"Content-Length: 5, 5\r\n\r\nhello", 400),
    "cl-negative": (POST + b"Content-Length: -5\r\n\r\nhello", 400),
    "cl-plus-sign": (POST + b"Content-Length: +5\r\n\r\nhello", 400),
    "cl-hex": (POST + b"Content-Length: 0x5\r\n\r\nhello", 400),
    "cl-decimal-point": (POST + b"Content-Length: 5.0\r\n\r\nhello", 400),
    "cl-letters": (POST + b"Content-Length: five\r\n\r\nhello", 400),
    "cl-empty": (POST + b"Content-Length: \r\n\r\nhello", 400),
    "cl-inner-space": (POST + b"Content-Length: 1 0\r\n\r\nhello", 400),
    # RFC 9112 5.2: obs-fold in a request: reject with 400 (or replace by SP: this server rejects).
    "obs-fold": (GET + b"X-Folded: first\r\n second\r\n\r\n", 400),
    "obs-fold-tab": (GET + b"X-Folded: first\r\n\tsecond\r\n\r\n", 400),
    "obs-fold-transfer-encoding": (POST + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400),
    # RFC 9112 2.2: whitespace between the start-line and the first field: reject (or skip the line).
    "space-before-first-field": (b"GET /{m} HTTP/1.1\r\n X-Skip: 1\r\n" + HOST + b"\r\n", 400),
    # RFC 9112 5.1: whitespace between field name and colon: MUST respond with 400.
    "space-before-colon": (POST + b"Content-Length : 5\r\n\r\nhello", 400),
    "tab-before-colon": (POST + b"Content-Length\t: 5\r\n\r\nhello", 400),
    "space-before-colon-te": (POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    # RFC 9112 6.1: chunked MUST NOT be applied more than once; 6.3: chunked not final → 400 + close.
    "te-chunked-chunked": (POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    "te-chunked-in-two-fields": (
        POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-chunked-gzip": (POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    # RFC 9112 6.3 item 4: "If a Transfer-Encoding header field is present in a request and the chunked
    # transfer coding is not the final encoding, the message body length cannot be determined reliably;
    # the server MUST respond with the 400 (Bad Request) status code and then close the connection."
    # "xchunked" is not chunked, so chunked is not the final coding: 400 (the MUST of 6.3 applies even
    # though 6.1 also suggests 501 for an unknown coding).
    "te-xchunked": (POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    # chunked is final but gzip is a coding the server does not implement: RFC 9112 6.1 → 501.
    "te-gzip-chunked": (POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    # chunked takes no parameters (RFC 9112 7.1): not the chunked coding the server can decode.
    "te-chunked-with-parameter": (POST + b"Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", 400),
    # Empty list elements are ignored (RFC 9110 5.6.1.2; ",chunked" is chunked: test_rfc_conformance8),
    # which leaves no coding here: the body's length cannot be determined.
    "te-only-empty-elements": (POST + b"Transfer-Encoding: , ,\r\n\r\n0\r\n\r\n", 400),
    # RFC 9112 6.1: TE in an HTTP/1.0 request: the framing is faulty.
    "te-on-http-1.0": (
        b"POST /{m} HTTP/1.0\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    # RFC 9110 5.6.2 / 9.1: a method is a token.
    "bad-method-paren": (b"GE(T /{m} HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "bad-method-at": (b"G@T /{m} HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "bad-method-nul": (b"G\x00T /{m} HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "bad-method-non-ascii": (b"G\xc3\x89T /{m} HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    # RFC 9110 15.6.6: 505 for a major version the server does not support (HTTP/1.2, a minor version
    # above 1.1, is served as HTTP/1.1: test_higher_minor_version_is_served_as_http_1_1).
    "http-0.9": (b"GET /{m} HTTP/0.9\r\n" + HOST + b"\r\n", 505),
    "http-2.0": (b"GET /{m} HTTP/2.0\r\n" + HOST + b"\r\n", 505),
    "http2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    "http-3.0": (b"GET /{m} HTTP/3.0\r\n" + HOST + b"\r\n", 505),
    # RFC 9112 2.3: HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive.
    "garbage-version": (b"GET /{m} HTTQ/1.1\r\n" + HOST + b"\r\n", 400),
    "lowercase-version": (b"GET /{m} http/1.1\r\n" + HOST + b"\r\n", 400),
    "version-no-minor": (b"GET /{m} HTTP/1\r\n" + HOST + b"\r\n", 400),
    "version-two-digit-minor": (b"GET /{m} HTTP/1.10\r\n" + HOST + b"\r\n", 400),
    "no-version": (b"GET /{m}\r\n" + HOST + b"\r\n", 400),
    "double-space": (b"GET  /{m} HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    # RFC 9112 3.2 / RFC 3986: the request-target has no CTLs, no SP, no non-ASCII, no fragment.
    "nul-in-target": (b"GET /{m}/a\x00b HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "ctl-in-target": (b"GET /{m}/a\x01b HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "del-in-target": (b"GET /{m}/a\x7fb HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "tab-in-target": (b"GET /{m}/a\tb HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "esc-in-query": (b"GET /{m}?q=\x1b[31m HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "non-ascii-target-utf8": (b"GET /{m}/caf\xc3\xa9 HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "non-ascii-target-latin1": (b"GET /{m}/\xff HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "fragment-in-target": (b"GET /{m}#frag HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "fragment-after-query": (b"GET /{m}?a=1#frag HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    # RFC 9112 3: an invalid request-line SHOULD get 400; in the path, the characters outside
    # RFC 3986's pchar that every common client percent-encodes there (test_invalid_path_characters).
    "lt-gt-in-path": (b"GET /{m}/<script> HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "quote-in-path": (b'GET /{m}/a"b HTTP/1.1\r\n' + HOST + b"\r\n", 400),
    "brace-in-path": (b"GET /{m}/a}b HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "backtick-in-path": (b"GET /{m}/a`b HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    # RFC 3986 2.1: pct-encoded = "%" HEXDIG HEXDIG.
    "bad-percent-letters": (b"GET /{m}/%zz HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "bad-percent-one-digit": (b"GET /{m}/%4 HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "bad-percent-at-end": (b"GET /{m}/% HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "bad-percent-half": (b"GET /{m}/%4g HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    # RFC 9110 5.5: field values have no CTL other than HTAB (NUL, CR, LF MUST be rejected or replaced).
    "nul-in-header-value": (GET + b"X-Evil: a\x00b\r\n\r\n", 400),
    "ctl-in-header-value": (GET + b"X-Evil: a\x01b\r\n\r\n", 400),
    "esc-in-header-value": (GET + b"X-Evil: \x1b[2J\r\n\r\n", 400),
    "del-in-header-value": (GET + b"X-Evil: a\x7fb\r\n\r\n", 400),
    "nul-in-header-name": (GET + b"X-E\x00vil: a\r\n\r\n", 400),
    "non-token-header-name": (GET + b"X(Evil): a\r\n\r\n", 400),
    "empty-header-name": (GET + b": a\r\n\r\n", 400),
    "header-without-colon": (GET + b"X-No-Colon\r\n\r\n", 400),
    # RFC 9112 2.2: a bare CR anywhere but in content MUST be rejected (or replaced by SP).
    "bare-cr-in-header-value": (GET + b"X-Evil: a\rb\r\n\r\n", 400),
    "bare-cr-as-line-end": (b"GET /{m} HTTP/1.1\rHost: test.local\r\n\r\n", 400),
    "bare-cr-before-crlf": (GET + b"X-Evil: a\r\r\n\r\n", 400),
    "bare-cr-in-request-line": (b"GET /{m}\r HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "bare-cr-final-line": (GET + b"\r\r\n", 400),
    # RFC 9112 3.2: an HTTP/1.1 request without Host, or with more than one, MUST get 400.
    "missing-host": (b"GET /{m} HTTP/1.1\r\n\r\n", 400),
    "missing-host-other-headers": (b"GET /{m} HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    "duplicate-host-different": (GET + b"Host: evil.example\r\n\r\n", 400),
    "duplicate-host-equal": (GET + HOST + b"\r\n", 400),
    "host-with-userinfo": (b"GET /{m} HTTP/1.1\r\nHost: user@test.local\r\n\r\n", 400),
    "host-with-space": (b"GET /{m} HTTP/1.1\r\nHost: test local\r\n\r\n", 400),
    "host-with-slash": (b"GET /{m} HTTP/1.1\r\nHost: test.local/x\r\n\r\n", 400),
    # RFC 9110 10.1.1: an expectation other than 100-continue MAY get 417.
    "expect-other": (GET + b"Expect: something-else\r\n\r\n", 417),
    "expect-other-post": (POST + b"Expect: 200-ok\r\nContent-Length: 5\r\n\r\nhello", 417),
    # asterisk-form is only for OPTIONS (RFC 9112 3.2.4).
    "asterisk-form-get": (b"GET * HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    # A request-target that is neither origin- nor absolute-form.
    "relative-target": (b"GET {m}/x HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "absolute-form-userinfo": (b"GET http://user@test.local/{m} HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "absolute-form-empty-host": (b"GET http:///{m} HTTP/1.1\r\n" + HOST + b"\r\n", 400),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_refused_before_the_app(hostile: GatewayServer, case: str) -> None:
    template, status = REFUSED[case]
    m = mark()
    check_refused(hostile, build(template, m), status, marker=m)


@pytest.mark.parametrize("target", ["/raw-query?q={%22a%22:1}&b=<x>", '/raw-query?q={"a":1}', "/a|b^c\\d"])
def test_raw_characters_clients_do_send_are_served(hostile: GatewayServer, target: str) -> None:
    """The other side of the path check above: a query with raw '{', '}', '"', '<' or '>' (curl -g
    sends JSON in a query as typed; browsers leave '{', '}' raw there), and '|', '^' and '\\' in a
    path (browsers send '|' and '^' raw) are served, as uvicorn, h11 and nginx serve them."""
    with hostile.raw() as conn:
        conn.send(f"GET {target} HTTP/1.1\r\n".encode() + HOST + b"Connection: close\r\n\r\n")
        response = conn.read_response()
    assert response.status == 200, response.status
    scope = json.loads(response.body)["scope"]
    path, _, query = target.partition("?")
    assert (scope["raw_path"], scope["query_string"]) == (path, query), scope


# --- limits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [b"HTTP/1.2", b"HTTP/1.9"])
def test_higher_minor_version_is_served_as_http_1_1(hostile: GatewayServer, version: bytes) -> None:
    """RFC 9110 2.5: a message with a higher minor version than the server implements is processed
    as the highest minor version of that major version the server conforms to: HTTP/1.1."""
    with hostile.raw() as conn:
        conn.send(b"GET /minor-version HTTP/1.x\r\n".replace(b"HTTP/1.x", version) + HOST + b"Connection: close\r\n\r\n")
        responses, rest = read_all_responses(conn)
    assert [r.status for r in responses] == [200], (responses, rest[:200])
    assert responses[0].head_bytes.startswith(b"HTTP/1.1 200 "), responses[0].head_bytes[:100]
    assert json.loads(responses[0].body)["scope"]["http_version"] == "1.1"
    assert_served_normally(hostile)


def test_request_line_too_long_gets_414(hostile: GatewayServer) -> None:
    # RFC 9112 3: a request-line longer than the server parses → 414 (the limit is the head's,
    # 16384 bytes by default: a longer line cannot fit in a head).
    m = mark()
    data = b"GET /%s/%s HTTP/1.1\r\n" % (m.encode(), b"a" * 17000) + HOST + b"\r\n"
    check_refused(hostile, data, 414, marker=m)


def test_request_line_just_below_the_limit_is_served(hostile: GatewayServer) -> None:
    # RFC 9112 3 recommends at least 8000 octets; uvicorn's parsers take a line as long as its head.
    path = "/below-limit/" + "a" * 16000
    with hostile.raw() as conn:
        response = conn.request("GET", path)
    assert response.status == 200
    assert json.loads(response.body)["scope"]["path"] == path


def test_header_section_too_big_gets_431(hostile: GatewayServer) -> None:
    # RFC 6585 5: 431 Request Header Fields Too Large (the default limit is 16384 bytes of head).
    m = mark()
    check_refused(hostile, build(GET, m) + b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431, marker=m)


def test_header_section_of_many_fields_too_big_gets_431(hostile: GatewayServer) -> None:
    m = mark()
    fields = b"".join(b"X-Field-%02d: %s\r\n" % (i, b"v" * 200) for i in range(90))  # ~19 KB, < 100 fields
    check_refused(hostile, build(GET, m) + fields + b"\r\n", 431, marker=m)


def test_many_small_header_fields_are_served(hostile: GatewayServer) -> None:
    # Only the head's size is bounded (as uvicorn's h11 and httptools parsers): 1,000 small fields
    # (~11 KB) are a request like any other, every field in the scope.
    fields = [(f"X-F{i}", "1") for i in range(1000)]
    with hostile.raw() as conn:
        response = conn.request("GET", "/many-fields", headers=fields)
    assert response.status == 200, response.status
    seen = json.loads(response.body)["scope"]["headers"]
    assert sum(1 for name, _ in seen if name.startswith("x-f")) == 1000


def test_max_incomplete_event_size_changes_the_head_limit(
    small_head: GatewayServer, hostile: GatewayServer
) -> None:
    m = mark()
    padding = b"X-Pad: " + b"p" * 1100 + b"\r\n"  # a ~1.2 KB head
    check_refused(small_head, build(GET, m) + padding + b"\r\n", 431, marker=m)
    # The same head is fine under the default limit...
    with hostile.raw() as conn:
        conn.send(build(GET, mark()) + padding + b"\r\n")
        assert conn.read_response().status == 200
    # ... and a ~900-byte head is fine under the 1024-byte one.
    with small_head.raw() as conn:
        response = conn.request("GET", "/small", headers=[("X-Pad", "p" * 800)])
        assert response.status == 200
    # A request-line longer than the head limit cannot fit: 414 (the line's limit is the head's).
    m = mark()
    check_refused(small_head, b"GET /%s/%s HTTP/1.1\r\n" % (m.encode(), b"a" * 1500) + HOST + b"\r\n", 414, marker=m)


# --- broken chunked bodies: the head was valid, so the app saw the request -------------------------

BAD_CHUNKS = {
    # RFC 9112 7.1: chunk-size = 1*HEXDIG.
    "hex-prefix-0x10": b"0x10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n",
    "negative-size": b"-1\r\na\r\n0\r\n\r\n",
    "overflowing-size": b"fffffffffffffffff1\r\nabc\r\n0\r\n\r\n",
    "size-with-space-inside": b"1 0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n",
    "size-plus-sign": b"+5\r\nhello\r\n0\r\n\r\n",
    "empty-size-line": b"\r\nhello\r\n0\r\n\r\n",
    # RFC 9112 7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF.
    "missing-crlf-after-data": b"5\r\nhelloXX\r\n0\r\n\r\n",
    "lf-only-after-data": b"5\r\nhello\n0\r\n\r\n",
    "lf-only-size-line": b"5\nhello\r\n0\r\n\r\n",
    "data-longer-than-size": b"3\r\nhello\r\n0\r\n\r\n",
    "bare-cr-in-extension": b"5;a=\rb\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", list(BAD_CHUNKS), ids=list(BAD_CHUNKS))
def test_bad_chunked_body_gets_400_and_close(hostile: GatewayServer, case: str) -> None:
    m = mark()
    data = build(b"POST /_/echo?{m} HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n", m) + BAD_CHUNKS[case]
    check_refused(hostile, data, 400, marker=m, reaches_app=True)


# --- accepted forms -------------------------------------------------------------------------------


def scope_of(response: RawResponse) -> dict[str, Any]:
    assert response.status == 200, response
    return json.loads(response.body)["scope"]


def header_values(scope: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in scope["headers"] if key == name]


def test_absolute_form_uses_the_uri_path_and_authority(hostile: GatewayServer) -> None:
    # RFC 9112 3.2.2: a server MUST accept absolute-form; the path is the URI's path. Host agrees here.
    with hostile.raw() as conn:
        conn.send(b"GET http://test.local:8080/abs/p%61th?q=1 HTTP/1.1\r\nHost: test.local:8080\r\n\r\n")
        scope = scope_of(conn.read_response())
    assert scope["path"] == "/abs/path"
    assert scope["raw_path"] == "/abs/p%61th"
    assert scope["query_string"] == "q=1"
    assert header_values(scope, "host") == ["test.local:8080"]


def test_absolute_form_without_path_is_slash(hostile: GatewayServer) -> None:
    with hostile.raw() as conn:
        conn.send(b"GET http://test.local?x=1 HTTP/1.1\r\nHost: test.local\r\n\r\n")
        scope = scope_of(conn.read_response())
    assert scope["path"] == "/"
    assert scope["query_string"] == "x=1"


def test_absolute_form_authority_overrides_the_host_header(hostile: GatewayServer) -> None:
    # RFC 9112 3.2.2: "When an origin server receives a request with an absolute-form of
    # request-target, the origin server MUST ignore the received Host header field (if any) and
    # instead use the host information of the request-target." The app learns the host from the
    # scope's host header, so that header must carry the URI's authority.
    with hostile.raw() as conn:
        conn.send(b"GET http://uri.example:8080/abs HTTP/1.1\r\nHost: header.example\r\n\r\n")
        scope = scope_of(conn.read_response())
    assert scope["path"] == "/abs"
    assert header_values(scope, "host") == ["uri.example:8080"], (
        f"the app sees host {header_values(scope, 'host')}, not the request-target's authority"
    )


def test_connect_is_refused_with_501(hostile: GatewayServer) -> None:
    # RFC 9110 9.3.6: CONNECT is for proxies; an origin server may answer 501 (method not
    # implemented) or 405. This server answers 501 Not Implemented; the check allows either.
    m = mark()
    data = b"CONNECT %s.example:443 HTTP/1.1\r\nHost: %s.example:443\r\n\r\n" % (m.encode(), m.encode())
    before = app_record(hostile)
    response, rest, closed = send_raw(hostile, data)
    assert response.status in (405, 501), response
    assert response.status == 501  # what the server does today
    assert rest == b"" and closed
    assert_served_normally(hostile)
    after = app_record(hostile)
    assert after["count"] == before["count"] + 1
    assert not any(m in t for t in after["seen"])


def test_options_asterisk_is_accepted(hostile: GatewayServer) -> None:
    with hostile.raw() as conn:
        conn.send(b"OPTIONS * HTTP/1.1\r\n" + HOST + b"\r\n")
        response = conn.read_response()
    assert response.status == 200
    assert json.loads(response.body)["scope"]["path"] == "*"


# --- smuggling in a pipeline: nothing after the refused request is answered ------------------------

SMUGGLING = {
    # CL.TE: a front end honouring CL would forward everything; the hidden GET sits in the body.
    "cl-te": POST
    + b"Content-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /{m}-hidden HTTP/1.1\r\n"
    + HOST
    + b"\r\n",
    # TE.CL: honouring CL=4 would leave the hidden request as the next one.
    "te-cl": POST
    + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST /{m}-hidden HTTP/1.1\r\n"
    + HOST
    + b"\r\n0\r\n\r\n",
    "cl-cl": POST + b"Content-Length: 0\r\nContent-Length: 44\r\n\r\nGET /{m}-hidden HTTP/1.1\r\n" + HOST + b"\r\n",
    "te-space-before-colon": POST
    + b"Content-Length: 0\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /{m}-hidden HTTP/1.1\r\n"
    + HOST
    + b"\r\n",
    "te-obs-fold": POST
    + b"Transfer-Encoding: identity\r\n chunked\r\n\r\n0\r\n\r\nGET /{m}-hidden HTTP/1.1\r\n"
    + HOST
    + b"\r\n",
    "te-xchunked-with-cl": POST
    + b"Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /{m}-hidden HTTP/1.1\r\n"
    + HOST
    + b"\r\n",
    "te-http10-with-cl": b"POST /{m} HTTP/1.0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"0\r\n\r\nGET /{m}-hidden HTTP/1.1\r\n"
    + HOST
    + b"\r\n",
    "bare-cr-header": GET + b"X-A: a\rGET /{m}-hidden HTTP/1.1\r\n\r\nGET /{m}-hidden2 HTTP/1.1\r\n" + HOST + b"\r\n",
}


@pytest.mark.parametrize("case", list(SMUGGLING), ids=list(SMUGGLING))
def test_smuggling_attempt_closes_the_connection(hostile: GatewayServer, case: str) -> None:
    m = mark()
    response = check_refused(hostile, build(SMUGGLING[case], m), 400, marker=m)
    assert response.status == 400


def read_all_responses(conn: Any, timeout: float = 5.0) -> tuple[list[RawResponse], bytes]:
    """Reads until the server closes, then parses every response in what came; returns them and any
    bytes left that are not a complete response."""
    conn.sock.settimeout(timeout)
    data = conn.read_to_close()
    conn.buffer, conn.eof = data, True
    responses = []
    while conn.buffer:
        try:
            responses.append(conn.read_response())
        except (IncompleteResponse, AssertionError):
            break
    return responses, conn.buffer


PIPELINED_BAD = {
    "cl-te-hiding-a-request": (
        POST
        + b"Content-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /{m}-hidden HTTP/1.1\r\n"
        + HOST
        + b"\r\n",
        400,
    ),
    "http-2.0": (b"GET /{m}-second HTTP/2.0\r\n" + HOST + b"\r\n", 505),
}


@pytest.mark.parametrize("first", ["/{m}-first", "/_/slow?seconds=0.3&{m}"], ids=["fast-first", "slow-first"])
@pytest.mark.parametrize("case", list(PIPELINED_BAD), ids=list(PIPELINED_BAD))
def test_refused_request_after_a_valid_pipelined_one(hostile: GatewayServer, case: str, first: str) -> None:
    """A valid request, then a refused one in the same pipeline: RFC 9112 9.3.2, responses MUST come in
    request order, so the client gets the first request's 200, then the error, then the close; a
    request hidden in the refused one's body never runs."""
    m = mark()
    first_target = first.replace("{m}", m)
    bad, status = PIPELINED_BAD[case]
    data = b"GET %s HTTP/1.1\r\n" % first_target.encode() + HOST + b"\r\n" + build(bad, m)
    before = app_record(hostile)
    with hostile.raw() as conn:
        conn.send(data)
        responses, rest = read_all_responses(conn)
    statuses = [r.status for r in responses]
    lines = [r.head_bytes.split(b"\r\n", 1)[0] for r in responses]
    assert statuses == [200, status], (
        f"responses in order {statuses} (expected the first request's 200, then {status}): "
        f"status lines {lines}, rest {rest[:200]!r}"
    )
    assert rest == b""
    assert_served_normally(hostile)
    after = app_record(hostile)
    seen = after["seen"][-(after["count"] - before["count"]) :]
    assert first_target in seen
    assert not any("hidden" in t for t in seen), seen
    assert after["count"] == before["count"] + 2


def test_bad_chunk_then_hidden_request_is_not_served(hostile: GatewayServer) -> None:
    m = mark()
    data = build(
        b"POST /_/echo?{m} HTTP/1.1\r\n"
        + HOST
        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\nGET /{m}-hidden HTTP/1.1\r\n"
        + HOST
        + b"\r\n",
        m,
    )
    check_refused(hostile, data, 400, marker=m, reaches_app=True)


@pytest.mark.parametrize(
    "head, body_size",
    [
        (b"POST /_/echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n", 8 << 20),  # 413 at the head
        (b"POST /_/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n", 8 << 20),  # 413 mid-body
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 4 << 20),  # 400, then data the client still sends
    ],
    ids=["413-head", "413-chunked", "400"],
)
def test_error_response_to_a_client_still_sending_is_not_lost(servers: Any, head: bytes, body_size: int) -> None:
    # RFC 9112 9.6: a server that closes at once while the client is still sending resets the
    # connection, and the reset can take the response away from a client still in its send. The
    # gateway shuts its side first and reads what the client still sends: the client finishes its
    # send, then reads the whole error response and the end of the connection.
    server = servers.start("testapp:app", app_dir=APPS_DIR, extra_args=["--limit-request-body", str(1 << 20)])
    if b"chunked" in head:
        chunk = b"x" * 65536
        body = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * (body_size // len(chunk)) + b"0\r\n\r\n"
        data = head + body
    else:
        data = (head % body_size if b"%d" in head else head) + b"x" * body_size
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(data)  # no ConnectionResetError / BrokenPipeError
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    status = int(received.split(b" ", 2)[1])
    assert status == (400 if b"Host: b" in head else 413), received[:200]
    assert received.split(b"\r\n\r\n", 1)[0].lower().count(b"connection: close") == 1


def test_app_response_to_a_client_still_sending_is_not_lost(servers: Any) -> None:
    # The same when the app answers without reading the body (an early 401 or 413 of its own): the
    # response says connection: close, and the gateway reads what the client still sends before
    # closing, so the client's send completes and it reads the response.
    server = servers.start("testapp:app", app_dir=APPS_DIR)
    size = 8 << 20
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"POST /_/no-read HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"connection: close" in head.lower(), head
    assert body == b"did not read the body"

