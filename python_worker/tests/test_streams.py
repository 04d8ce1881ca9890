"""Behaviour of the worker over a real socketpair with a fake gateway: scope, receive/send, flow
control, coalescing, END outcomes, concurrency, PING, protocol errors."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, List

import pytest

from gateway_fake import FakeGateway, run
from python_worker import protocol as P
from python_worker.cycle import ClientDisconnected


async def hello_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        m = await receive()
        assert m["type"] == "http.request"
        body += m["body"]
        if not m["more_body"]:
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def summary_app(scope: Any, receive: Any, send: Any) -> None:
    """Responds with the length and the first/last bytes of the request body."""
    body = b""
    while True:
        m = await receive()
        body += m["body"]
        if not m["more_body"]:
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"%d %s %s" % (len(body), body[:1], body[-1:])})


# -- scope -------------------------------------------------------------------------------------------


def test_scope_keys_and_types(loop_name: str) -> None:
    seen: List[dict] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await hello_app(scope, receive, send)

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(
                7, method="POST", path="/api/caf\u00e9 x", raw_path=b"/api/caf%C3%A9%20x", query_string=b"a=1&a=2",
                root_path="/api", headers=[(b"host", b"example.com"), (b"x-dup", b"1"), (b"x-dup", b"2")],
                http_version="2", scheme="https", client=("::1", 65535), server=("/tmp/gw.sock", None),
            )
            r = await gw.response(7)
            assert r.outcome == P.OUTCOME_OK
            gw.request(8, client=None, server=None)
            await gw.response(8)

    run(loop_name, main())
    scope = seen[0]
    assert set(scope) == {
        "type", "asgi", "http_version", "server", "client", "scheme", "method", "root_path", "path",
        "raw_path", "query_string", "headers", "state", "extensions",
    }
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert scope["http_version"] == "2"
    assert scope["method"] == "POST"
    assert scope["scheme"] == "https"
    assert scope["path"] == "/api/caf\u00e9 x" and type(scope["path"]) is str
    assert scope["raw_path"] == b"/api/caf%C3%A9%20x" and type(scope["raw_path"]) is bytes
    assert scope["query_string"] == b"a=1&a=2" and type(scope["query_string"]) is bytes
    assert scope["root_path"] == "/api"
    assert type(scope["headers"]) is list
    assert scope["headers"] == [(b"host", b"example.com"), (b"x-dup", b"1"), (b"x-dup", b"2")]
    assert all(type(h) is tuple and type(h[0]) is bytes and type(h[1]) is bytes for h in scope["headers"])
    assert scope["client"] == ("::1", 65535) and type(scope["client"]) is tuple
    assert scope["server"] == ("/tmp/gw.sock", None) and type(scope["server"]) is tuple
    assert scope["state"] == {} and type(scope["state"]) is dict
    assert scope["extensions"] == {}
    assert seen[1]["client"] is None and seen[1]["server"] is None
    assert seen[0]["state"] is not seen[1]["state"]


def test_worker_hello(loop_name: str) -> None:
    async def main() -> None:
        async with FakeGateway(hello_app) as gw:
            import os
            import platform

            assert gw.worker_hello == (
                P.W_HELLO, 0, {"protocol": 1, "pid": os.getpid(), "python": platform.python_version(), "features": ()}
            )

    run(loop_name, main())


# -- receive -----------------------------------------------------------------------------------------


def test_body_chunks_in_order(loop_name: str) -> None:
    messages: List[dict] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            m = await receive()
            messages.append(m)
            if not m.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"".join(m["body"] for m in messages)})

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(1, method="POST", body=b"a", more_body=True)
            gw.body(1, b"bc", True)
            await asyncio.sleep(0.05)
            gw.body(1, b"", True)
            gw.body(1, b"d", False)
            r = await gw.response(1)
            assert r.body == b"abcd"
            assert r.outcome == P.OUTCOME_OK

    run(loop_name, main())
    assert messages == [
        {"type": "http.request", "body": b"a", "more_body": True},
        {"type": "http.request", "body": b"bc", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"d", "more_body": False},
    ]


def test_disconnect_after_response_complete(loop_name: str) -> None:
    events: List[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        events.append(await receive())

        async def listen() -> None:
            events.append(("listener", await receive()))

        listener = asyncio.ensure_future(listen())
        await asyncio.sleep(0.05)
        events.append("before response")  # the listener is still blocked
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})
        await listener
        events.append(await receive())
        events.append(await receive())

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(1)
            r = await gw.response(1)
            assert r.status == 204 and r.complete and r.outcome == P.OUTCOME_OK

    run(loop_name, main())
    assert events == [
        {"type": "http.request", "body": b"", "more_body": False},
        "before response",
        ("listener", {"type": "http.disconnect"}),
        {"type": "http.disconnect"},
        {"type": "http.disconnect"},
    ]


def test_disconnect_wakes_receive_and_send_raises(loop_name: str, caplog: pytest.LogCaptureFixture) -> None:
    events: List[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        events.append(await receive())
        await send({"type": "http.response.start", "status": 200})
        events.append(await receive())  # blocks until DISCONNECT
        try:
            await send({"type": "http.response.body", "body": b"x"})
        except ClientDisconnected as exc:
            events.append(("raised", isinstance(exc, OSError)))
        events.append(await receive())

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(3)
            start = await gw.next_frame(3)
            assert start[0] == P.RESPONSE_START and start[5] == b"" and start[6] is True
            gw.disconnect(3)
            r = await gw.response(3)
            assert r.frames == [(P.END, 3, P.OUTCOME_OK, "")]

    with caplog.at_level(logging.DEBUG):
        run(loop_name, main())
    assert events == [
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
        ("raised", True),
        {"type": "http.disconnect"},
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_client_disconnected_raised_out_of_app_is_not_an_error(loop_name: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        while True:  # a streaming response that never ends by itself
            await send({"type": "http.response.body", "body": b"tick", "more_body": True})
            await asyncio.sleep(0.01)

    async def starlette_style(scope: Any, receive: Any, send: Any) -> None:
        class ClientDisconnect(Exception):
            pass

        try:
            await app(scope, receive, send)
        except OSError:
            raise ClientDisconnect()

    async def main(the_app: Any) -> None:
        async with FakeGateway(the_app) as gw:
            gw.request(1)
            await gw.next_frame(1)
            gw.disconnect(1)
            while True:
                f = await gw.next_frame(1)
                if f[0] == P.END:
                    assert f[2:] == (P.OUTCOME_OK, "")
                    break

    with caplog.at_level(logging.INFO):
        run(loop_name, main(app))
        run(loop_name, main(starlette_style))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- flow control ------------------------------------------------------------------------------------


def test_response_backpressure_waits_for_credit(loop_name: str) -> None:
    window = 65536
    big = bytes(range(256)) * 4096  # 1 MiB
    progress: List[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        progress.append("sending")
        await send({"type": "http.response.body", "body": big})
        progress.append("sent")

    async def main() -> None:
        async with FakeGateway(app, window=window) as gw:
            gw.request(1)
            got = 0
            first = await gw.next_frame(1)
            assert first[0] == P.RESPONSE_START and first[6] is True
            got += len(first[5])
            while got < window:
                f = await gw.next_frame(1)
                assert f[0] == P.RESPONSE_BODY and f[3] is True
                got += len(f[2])
            assert got == window
            await gw.expect_silence(0.3)
            assert progress == ["sending"]  # send() is pending
            body = [first[5]]
            received = window
            credited = 0
            while True:
                if credited < received:
                    gw.credit(1, received - credited)
                    credited = received
                f = await gw.next_frame(1)
                if f[0] == P.END:
                    assert f[2] == P.OUTCOME_OK
                    break
                assert f[0] == P.RESPONSE_BODY
                assert len(f[2]) <= window
                received += len(f[2])
                assert received - credited <= window
                body.append(f[2])
            assert progress == ["sending", "sent"]
            assert received == len(big)

    run(loop_name, main())


def test_response_pieces_respect_max_frame(loop_name: str) -> None:
    max_frame = 4096
    big = b"z" * 50000

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-big", b"h" * 3000)]})
        await send({"type": "http.response.body", "body": big})

    async def main() -> None:
        async with FakeGateway(app, max_frame=max_frame) as gw:
            gw.request(1)
            r = await gw.response(1)
            assert r.body == big and r.outcome == P.OUTCOME_OK
            for f in r.frames:
                assert len(P.encode(f)) - 4 <= max_frame
                if f[0] == P.RESPONSE_BODY:
                    assert len(f[2]) <= max_frame - P.FRAME_OVERHEAD

    run(loop_name, main())


def test_response_headers_too_large_is_app_error(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-big", b"h" * 5000)]})

    async def main() -> None:
        async with FakeGateway(app, max_frame=4096) as gw:
            gw.request(1)
            r = await gw.response(1)
            assert r.frames[0][0] == P.END and r.outcome == P.OUTCOME_APP_ERROR
            assert "too large" in r.message

    run(loop_name, main())


def test_small_window_flag_starts_the_response_window_at_32_kib(loop_name: str) -> None:
    # SPEC §3, flag SMALL_WINDOW (HTTP/2 streams): the response window starts at min(W, 32768);
    # CREDITs grow it from there.
    big = bytes(range(256)) * 1024  # 256 KiB

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": big})

    async def main() -> None:
        async with FakeGateway(app, window=262144) as gw:
            gw.request(1, flags=P.FLAG_SMALL_WINDOW)
            got = []
            f = await gw.next_frame(1)
            assert f[0] == P.RESPONSE_START
            got.append(f[5])
            while sum(map(len, got)) < P.SMALL_WINDOW:
                f = await gw.next_frame(1)
                assert f[0] == P.RESPONSE_BODY
                got.append(f[2])
            assert sum(map(len, got)) == P.SMALL_WINDOW
            await gw.expect_silence(0.3)
            gw.credit(1, len(big))  # (grown: the whole rest at once)
            while True:
                f = await gw.next_frame(1)
                if f[0] == P.END:
                    break
                got.append(f[2])
            assert b"".join(got) == big

    run(loop_name, main())


def test_request_credit_batched_and_not_after_complete(loop_name: str) -> None:
    window = 1000

    async def main() -> None:
        async with FakeGateway(summary_app, window=window) as gw:
            gw.request(1, method="POST", body=b"a" * 400, more_body=True)
            gw.body(1, b"b" * 300, True)
            # 700 consumed >= 500: one CREDIT(700)
            f = await gw.next_frame(1)
            assert f == (P.W_CREDIT, 1, 700)
            gw.body(1, b"c" * 900, True)  # window was 300 + 700 = 1000
            f = await gw.next_frame(1)
            assert f == (P.W_CREDIT, 1, 900)
            gw.body(1, b"d" * 100, True)
            gw.body(1, b"e" * 100, False)  # complete: no more credit
            r = await gw.response(1)
            assert r.credits == []
            assert r.body == b"1800 a e"

    run(loop_name, main())


def test_request_body_over_window_is_protocol_error(loop_name: str) -> None:
    async def main() -> None:
        async with FakeGateway(echo_app, window=100) as gw:
            gw.request(1, method="POST", body=b"a" * 60, more_body=True)
            gw.body(1, b"b" * 41, False)
            await gw.expect_eof()
            assert gw.conn.error and "window" in gw.conn.error

    run(loop_name, main())


def test_expect_continue_credit_on_first_receive(loop_name: str) -> None:
    window = 4096
    received: List[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.1)  # the gateway must not get credit before the app receives
        m = await receive()
        received.append(m)
        body = m["body"]
        while m["more_body"]:
            m = await receive()
            body += m["body"]
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": body})

    async def main() -> None:
        async with FakeGateway(app, window=window) as gw:
            gw.request(5, method="PUT", more_body=True, flags=P.FLAG_EXPECT_CONTINUE)
            await gw.expect_silence(0.05)
            f = await gw.next_frame(5)
            assert f == (P.W_CREDIT, 5, window)
            gw.body(5, b"x" * window, False)
            r = await gw.response(5)
            assert r.body == b"x" * window and r.credits == []

    run(loop_name, main())
    assert received == [{"type": "http.request", "body": b"", "more_body": True}]


def test_expect_continue_no_credit_without_receive(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 417})
        await send({"type": "http.response.body"})

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(5, method="PUT", more_body=True, flags=P.FLAG_EXPECT_CONTINUE)
            r = await gw.response(5)
            assert r.credits == [] and r.status == 417

    run(loop_name, main())


def test_expect_continue_body_before_credit_is_protocol_error(loop_name: str) -> None:
    async def main() -> None:
        async with FakeGateway(echo_app) as gw:
            gw.request(5, method="PUT", body=b"x", more_body=True, flags=P.FLAG_EXPECT_CONTINUE)
            await gw.expect_eof()

    run(loop_name, main())


# -- coalescing and frames ---------------------------------------------------------------------------


def test_coalesced_start_and_body(loop_name: str) -> None:
    async def main() -> None:
        async with FakeGateway(hello_app) as gw:
            gw.request(1)
            r = await gw.response(1)
            assert r.frames == [
                (P.RESPONSE_START, 1, 200, ((b"content-type", b"text/plain"),), 0, b"Hello, world!", False),
                (P.END, 1, P.OUTCOME_OK, ""),
            ]

    run(loop_name, main())


def test_start_alone_then_body(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "trailers": True, "headers": [[b"X-A", b"1"]]})
        await asyncio.sleep(0.02)
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": True})  # nothing to send
        await send({"type": "http.response.body", "body": b"two"})
        # Trailers were not advertised (no TRAILERS flag): the start's key is ignored, the response
        # is complete after the final body, and the trailers after it are ignored.
        await send({"type": "http.response.trailers", "headers": []})
        await send({"type": "http.response.body", "body": b"ignored"})

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(1)
            r = await gw.response(1)
            assert r.frames == [
                (P.RESPONSE_START, 1, 200, ((b"X-A", b"1"),), P.FLAG_NO_BODY_YET, b"", True),
                (P.RESPONSE_BODY, 1, b"one", True),
                (P.RESPONSE_BODY, 1, b"two", False),
                (P.END, 1, P.OUTCOME_OK, ""),
            ]

    run(loop_name, main())


def test_start_alone_is_flagged_until_a_body_event(loop_name: str) -> None:
    """A start the worker flushes before the app's first http.response.body carries flag bit 1 (the
    gateway holds the head: www.rst); an empty body event with more_body lets the head go: no flag,
    or, when the flagged start went out already, an empty RESPONSE_BODY (SPEC §3, RESPONSE_START)."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if scope["path"] == "/flush":
            await send({"type": "http.response.body", "body": b"", "more_body": True})
        await asyncio.sleep(0.02)  # the worker flushes meanwhile
        if scope["path"] == "/wait-then-flush":
            await send({"type": "http.response.body", "body": b"", "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": True})  # (once is enough)
            await asyncio.sleep(0.02)
        await send({"type": "http.response.body", "body": b"late"})

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(1, path="/wait")
            gw.request(3, path="/flush")
            gw.request(5, path="/wait-then-flush")
            waited, flushed, late = await gw.response(1), await gw.response(3), await gw.response(5)
            assert waited.frames[0] == (P.RESPONSE_START, 1, 200, (), P.FLAG_NO_BODY_YET, b"", True)
            assert flushed.frames[0] == (P.RESPONSE_START, 3, 200, (), 0, b"", True)
            assert late.frames == [
                (P.RESPONSE_START, 5, 200, (), P.FLAG_NO_BODY_YET, b"", True),
                (P.RESPONSE_BODY, 5, b"", True),
                (P.RESPONSE_BODY, 5, b"late", False),
                (P.END, 5, P.OUTCOME_OK, ""),
            ]
            for r, sid in ((waited, 1), (flushed, 3)):
                assert r.frames[1:] == [(P.RESPONSE_BODY, sid, b"late", False), (P.END, sid, P.OUTCOME_OK, "")]

    run(loop_name, main())


def test_body_types_accepted(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": ()})
        await send({"type": "http.response.body", "body": bytearray(b"ab"), "more_body": True})
        await send({"type": "http.response.body", "body": memoryview(b"cd")})

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(1)
            r = await gw.response(1)
            assert r.body == b"abcd" and r.outcome == P.OUTCOME_OK

    run(loop_name, main())


# -- END outcomes ------------------------------------------------------------------------------------


def outcome_of(loop_name: str, app: Any) -> Any:
    async def main() -> Any:
        async with FakeGateway(app) as gw:
            gw.request(1)
            return await gw.response(1)

    return run(loop_name, main())


def test_raise_before_start(loop_name: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("boom \u2603")

    r = outcome_of(loop_name, app)
    assert r.frames == [(P.END, 1, P.OUTCOME_APP_ERROR, "ValueError: boom \u2603")]
    errors = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert errors and errors[0].getMessage() == "Exception in ASGI application" and errors[0].exc_info


def test_raise_after_start(loop_name: str) -> None:
    """A start that has not gone out yet (no body event, no flush) never does: the gateway sees END
    alone and answers 500 (www.rst: the response is not sent before a body event)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        raise KeyError("k")

    r = outcome_of(loop_name, app)
    assert r.frames == [(P.END, 1, P.OUTCOME_APP_ERROR, "KeyError: 'k'")]


def test_raise_after_a_start_that_went_out(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await asyncio.sleep(0.01)  # the start is flushed meanwhile
        raise KeyError("k")

    r = outcome_of(loop_name, app)
    assert r.frames[0][0] == P.RESPONSE_START and r.frames[0][6] is True
    assert r.end == (P.END, 1, P.OUTCOME_APP_ERROR, "KeyError: 'k'")


def test_raise_after_response_complete(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await hello_app(scope, receive, send)
        raise RuntimeError("late")

    r = outcome_of(loop_name, app)
    assert r.complete and r.end == (P.END, 1, P.OUTCOME_APP_ERROR, "RuntimeError: late")


def test_return_without_response(loop_name: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    r = outcome_of(loop_name, app)
    assert r.frames == [(P.END, 1, P.OUTCOME_NO_RESPONSE, "ASGI callable returned without starting response.")]
    assert "ASGI callable returned without starting response." in caplog.text


def test_return_without_completing(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})

    r = outcome_of(loop_name, app)
    assert r.frames[0] == (P.RESPONSE_START, 1, 200, (), 0, b"part", True)
    assert r.end == (P.END, 1, P.OUTCOME_NO_RESPONSE, "ASGI callable returned without completing response.")


def test_return_value_warns(loop_name: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> Any:
        await hello_app(scope, receive, send)
        return 42

    r = outcome_of(loop_name, app)
    assert r.outcome == P.OUTCOME_OK
    assert any(rec.levelno == logging.WARNING and "int" in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize(
    "messages, error",
    [
        ([{"type": "http.response.body", "body": b"x"}],
         "RuntimeError: Expected ASGI message 'http.response.start', but got 'http.response.body'."),
        ([{"type": "http.response.start", "status": 200}, {"type": "http.response.start", "status": 200}],
         "RuntimeError: Expected ASGI message 'http.response.body', but got 'http.response.start'."),
        ([{"type": "http.response.start", "status": 200, "headers": [("content-type", b"x")]}],
         "TypeError: http.response.start header names must be bytes, got str 'content-type'"),
        ([{"type": "http.response.start", "status": 200, "headers": [(b"content-type", "x")]}],
         "TypeError: http.response.start header values must be bytes, got str 'x'"),
        ([{"type": "http.response.start", "status": 200, "headers": [(b"a", b"b", b"c")]}],
         "TypeError: http.response.start headers must be [name, value] pairs, got (b'a', b'b', b'c')"),
        ([{"type": "http.response.start", "status": "200"}],
         "TypeError: http.response.start 'status' must be an int, got str '200'"),
        ([{"type": "http.response.start", "status": 99}],
         "ValueError: http.response.start 'status' must be 200..599, got 99"),
        ([{"type": "http.response.start", "status": 600}],
         "ValueError: http.response.start 'status' must be 200..599, got 600"),
        ([{"type": "http.response.start", "status": 999}],
         "ValueError: http.response.start 'status' must be 200..599, got 999"),
        ([{"type": "http.response.start", "status": 200}, {"type": "http.response.body", "body": "text"}],
         "TypeError: http.response.body 'body' must be bytes, got str"),
        ([{"type": "websocket.accept"}],
         "RuntimeError: Expected ASGI message 'http.response.start', but got 'websocket.accept'."),
    ],
)
def test_invalid_messages(loop_name: str, messages: List[dict], error: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        for m in messages:
            await send(m)

    r = outcome_of(loop_name, app)
    assert r.end == (P.END, 1, P.OUTCOME_APP_ERROR, error)


@pytest.mark.parametrize("headers", [[(b"x", b"a\nb")], [(b"bad name", b"v")], [(b"a", b"b", b"c")], [("a", b"b")]])
def test_invalid_headers_raise_once(loop_name: str, headers: list) -> None:
    """send() raises the header error once: not chained to a first raise of the same error (which
    the log's traceback would show twice)."""
    raised: List[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
        except (TypeError, ValueError) as exc:
            raised.append(exc)
            raise

    r = outcome_of(loop_name, app)
    assert r.outcome == P.OUTCOME_APP_ERROR
    assert len(raised) == 1 and raised[0].__context__ is None, repr(raised[0].__context__)


def test_swallowed_invalid_message_is_app_error(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [("a", "b")]})
        except TypeError:
            pass

    r = outcome_of(loop_name, app)
    assert r.outcome == P.OUTCOME_APP_ERROR and r.message.startswith("TypeError: ")


def test_worker_survives_base_exceptions(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/exit":
            raise SystemExit(3)
        if scope["path"] == "/cancel":
            raise asyncio.CancelledError()
        await hello_app(scope, receive, send)

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(1, path="/exit")
            gw.request(2, path="/cancel")
            r1 = await gw.response(1)
            r2 = await gw.response(2)
            assert r1.end == (P.END, 1, P.OUTCOME_APP_ERROR, "SystemExit: 3")
            assert r2.end == (P.END, 2, P.OUTCOME_APP_ERROR, "CancelledError")
            gw.request(3)
            assert (await gw.response(3)).body == b"Hello, world!"

    run(loop_name, main())


# -- concurrency, control frames ---------------------------------------------------------------------


def test_many_concurrent_streams_interleaved(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            m = await receive()
            body += m["body"]
            if not m["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-path", scope["path"].encode())]})
        for i in range(3):
            await asyncio.sleep(random.random() * 0.01)
            await send({"type": "http.response.body", "body": body + b"|%d" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b"."})

    n = 200

    async def main() -> None:
        async with FakeGateway(app, window=64) as gw:
            frames = []
            for sid in range(1, n + 1):
                frames.append(gw.request(sid, path=f"/{sid}", body=b"%d" % sid, more_body=True, send=False))
            gw.send(*frames)
            await asyncio.sleep(0.01)
            gw.send(*[P.encode([P.REQUEST_BODY, sid, b"-", False]) for sid in range(n, 0, -1)])
            seen_order = []
            responses = {}
            done = 0
            while done < n:
                f = await gw.read_frame()
                seen_order.append(f[1])
                responses.setdefault(f[1], []).append(f)
                if f[0] == P.END:
                    done += 1
                elif f[0] in (P.RESPONSE_START, P.RESPONSE_BODY):
                    body = f[5] if f[0] == P.RESPONSE_START else f[2]
                    if body:
                        gw.credit(f[1], len(body))
            for sid in range(1, n + 1):
                fr = responses[sid]
                assert fr[0][0] == P.RESPONSE_START and fr[0][3] == ((b"x-path", b"/%d" % sid),)
                body = fr[0][5] + b"".join(f[2] for f in fr[1:-1])
                b = b"%d-" % sid
                assert body == b + b"|0" + b + b"|1" + b + b"|2" + b".", (sid, body)
                assert fr[-1] == (P.END, sid, P.OUTCOME_OK, "")
            # interleaved: the frames of the streams are not grouped by stream
            switches = sum(1 for a, b in zip(seen_order, seen_order[1:]) if a != b)
            assert switches > n
            assert gw.conn.streams == {}

    run(loop_name, main())


def test_ping_pong(loop_name: str) -> None:
    async def main() -> None:
        async with FakeGateway(hello_app) as gw:
            gw.ping(2**64 - 1)
            assert await gw.read_frame() == (P.PONG, 0, 2**64 - 1)
            gw.ping(0)
            assert await gw.read_frame() == (P.PONG, 0, 0)

    run(loop_name, main())


def test_frames_for_closed_streams_are_ignored(loop_name: str) -> None:
    async def main() -> None:
        async with FakeGateway(hello_app) as gw:
            gw.request(1)
            await gw.response(1)
            gw.credit(1, 100)
            gw.disconnect(1)
            gw.body(1, b"late", False)
            gw.credit(99, 5)
            gw.request(1)  # the sid may be reused after END
            r = await gw.response(1)
            assert r.body == b"Hello, world!"

    run(loop_name, main())


def test_disconnect_after_response_complete_is_accepted(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await hello_app(scope, receive, send)
        await asyncio.sleep(0.1)

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(1)
            f = await gw.next_frame(1)
            assert f[0] == P.RESPONSE_START
            gw.disconnect(1)  # raced with the final body: legal
            r = await gw.response(1)
            assert r.end == (P.END, 1, P.OUTCOME_OK, "")

    run(loop_name, main())


# -- protocol errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        (2**20 + 1).to_bytes(4, "big"),  # larger than max_frame: closed before any payload is read
        b"\x00\x00\x00\x00",  # empty frame
        P.frame(b"\xc1"),  # not msgpack
        P.encode([P.END, 1, 0, ""]),  # wrong direction
        P.encode([P.HELLO, 0, {"protocol": 1}]),  # second HELLO
        P.encode([9, 1]),  # unknown type
    ],
    ids=["oversize", "empty", "garbage", "wrong-direction", "second-hello", "unknown-type"],
)
def test_protocol_error_closes_connection(loop_name: str, data: bytes, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with FakeGateway(hello_app) as gw:
            gw.send(data)
            await gw.expect_eof()
            assert gw.conn.error
            await asyncio.wait_for(asyncio.shield(gw.conn.closed), 5)

    run(loop_name, main())
    assert "protocol error" in caplog.text


def test_oversize_frame_against_gateway_limit(loop_name: str) -> None:
    async def main() -> None:
        async with FakeGateway(echo_app, max_frame=1000) as gw:
            gw.request(1, method="POST", body=b"a" * 100, more_body=True)
            gw.send((1001).to_bytes(4, "big"))
            await gw.expect_eof()
            assert "1001" in gw.conn.error

    run(loop_name, main())


def test_running_streams_cancelled_when_connection_lost(loop_name: str) -> None:
    cancelled = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(scope["path"])
            raise

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(1, path="/a")
            gw.request(2, path="/b")
            await asyncio.sleep(0.05)
            gw.writer.close()
            await asyncio.wait_for(asyncio.shield(gw.conn.closed), 5)
            await asyncio.sleep(0.05)
            assert gw.conn.streams == {}

    run(loop_name, main())
    assert sorted(cancelled) == ["/a", "/b"]


def test_hello_with_other_protocol_version_is_refused(loop_name: str) -> None:
    async def main() -> None:
        async with FakeGateway(hello_app, send_hello=False) as gw:
            gw.send_frame([P.HELLO, 0, {"protocol": 2, "pid": 1}])
            await gw.expect_eof()
            assert "version 2" in gw.conn.error

    run(loop_name, main())


def test_request_before_hello_is_protocol_error(loop_name: str) -> None:
    async def main() -> None:
        async with FakeGateway(hello_app, send_hello=False) as gw:
            gw.request(1)
            await gw.expect_eof()

    run(loop_name, main())


def test_byte_by_byte_input(loop_name: str) -> None:
    async def main() -> None:
        async with FakeGateway(echo_app) as gw:
            data = gw.request(1, method="POST", body=b"hello", more_body=True, send=False)
            data += P.encode([P.REQUEST_BODY, 1, b" world" * 1000, False])
            for i in range(len(data)):
                gw.send(data[i : i + 1])
                if i % 500 == 0:
                    await gw.writer.drain()
                    await asyncio.sleep(0)
            r = await gw.response(1)
            assert r.body == b"hello" + b" world" * 1000

    run(loop_name, main())


def test_headers_any_iterable_of_pairs(loop_name: str) -> None:
    class B(bytes):
        pass

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = ((n, v) for n, v in [(b"a", b"1"), [b"b", b"2"], (B(b"c"), b"3")])
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": b"x"})

    r = outcome_of(loop_name, app)
    assert r.status == 201 and r.headers == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
    assert r.outcome == P.OUTCOME_OK


def test_shutdown_waits_then_cancels(loop_name: str) -> None:
    finished: List[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/quick":
            await asyncio.sleep(0.05)
            finished.append("quick")
            await hello_app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200})
        await asyncio.sleep(30)

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(1, path="/quick")
            gw.request(2, path="/slow")
            await asyncio.sleep(0.01)
            shutdown = asyncio.ensure_future(gw.conn.shutdown(timeout=0.3))
            r1 = await gw.response(1)
            assert r1.outcome == P.OUTCOME_OK and r1.body == b"Hello, world!"
            r2 = await gw.response(2)
            assert r2.end == (P.END, 2, P.OUTCOME_APP_ERROR, "the worker shut down before the app finished")
            await gw.expect_eof()
            await asyncio.wait_for(shutdown, 5)

    run(loop_name, main())
    assert finished == ["quick"]


def test_large_request_body_pieces(loop_name: str) -> None:
    window = 65536

    async def main() -> None:
        async with FakeGateway(summary_app, window=window) as gw:
            total = 1 << 20
            sent = 0
            granted = window
            gw.request(1, method="POST", body=b"", more_body=True)
            while sent < total:
                piece = min(granted - sent, 16384, total - sent)
                if piece == 0:
                    f = await gw.next_frame(1)
                    assert f[0] == P.W_CREDIT
                    granted += f[2]
                    continue
                sent += piece
                gw.body(1, bytes([sent % 251]) * piece, sent < total)
            r = await gw.response(1)
            assert r.body.startswith(b"%d " % total)

    run(loop_name, main())


@pytest.mark.parametrize("more_body", [True, False])
def test_big_headers_and_body_do_not_make_an_oversize_start(loop_name: str, more_body: bool) -> None:
    max_frame = 4096

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-big", b"h" * 3000)]})
        await send({"type": "http.response.body", "body": b"b" * 2000, "more_body": more_body})
        if more_body:
            await send({"type": "http.response.body", "body": b"c" * 300})

    async def main() -> None:
        async with FakeGateway(app, max_frame=max_frame) as gw:
            gw.request(1)
            r = await gw.response(1)
            assert r.body == b"b" * 2000 + (b"c" * 300 if more_body else b"")
            assert r.outcome == P.OUTCOME_OK
            assert r.frames[0][0] == P.RESPONSE_START and r.frames[0][5] == b""
            for f in r.frames:
                assert len(P.encode(f)) - 4 <= max_frame

    run(loop_name, main())
