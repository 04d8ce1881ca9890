"""WebSocket streams (WS_CONNECT ... END) and the SHUTDOWN frame, with a fake gateway."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, List

import pytest

from gateway_fake import FakeGateway, run
from python_worker import protocol as P
from python_worker.cycle import ClientDisconnected


async def echo_ws(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "websocket"
    assert (await receive()) == {"type": "websocket.connect"}
    await send({"type": "websocket.accept", "subprotocol": (scope["subprotocols"] or [None])[0],
                "headers": [(b"x-ws", b"1")]})
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            return
        if m.get("text") == "close":
            await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
            return
        if "text" in m:
            await send({"type": "websocket.send", "text": m["text"].upper()})
        else:
            await send({"type": "websocket.send", "bytes": m["bytes"][::-1]})


def test_scope(loop_name: str) -> None:
    seen: List[dict] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await receive()
        await send({"type": "websocket.close"})

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.ws_connect(3, path="/chat", query_string=b"room=1", headers=[(b"host", b"x")],
                          subprotocols=["chat.v2", "chat"], scheme="wss")
            r = await gw.response(3)
            assert r.frames == [(P.WS_CLOSE, 3, 1000, ""), (P.END, 3, P.OUTCOME_OK, "")]

    run(loop_name, main())
    scope = seen[0]
    assert set(scope) == {
        "type", "asgi", "http_version", "scheme", "server", "client", "root_path", "path", "raw_path",
        "query_string", "headers", "subprotocols", "state", "extensions",
    }
    assert scope["type"] == "websocket" and scope["scheme"] == "wss" and scope["path"] == "/chat"
    assert scope["raw_path"] == b"/chat" and scope["query_string"] == b"room=1"
    assert scope["headers"] == [(b"host", b"x")] and scope["subprotocols"] == ["chat.v2", "chat"]
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}


def test_echo_text_and_binary(loop_name: str) -> None:
    async def main() -> None:
        async with FakeGateway(echo_ws) as gw:
            gw.ws_connect(1, subprotocols=["chat.v2"])
            assert await gw.next_frame(1) == (P.WS_ACCEPT, 1, "chat.v2", ((b"x-ws", b"1"),))
            gw.ws_receive(1, "h\u00e9llo")
            assert await gw.next_frame(1) == (P.WS_SEND, 1, "H\u00c9LLO")
            gw.ws_receive(1, b"\x00\x01\x02")
            assert await gw.next_frame(1) == (P.WS_SEND, 1, b"\x02\x01\x00")
            gw.ws_receive(1, "")
            assert await gw.next_frame(1) == (P.WS_SEND, 1, "")
            gw.ws_receive(1, "close")
            r = await gw.response(1)
            assert r.frames == [(P.WS_CLOSE, 1, 4000, "bye"), (P.END, 1, P.OUTCOME_OK, "")]

    run(loop_name, main())


def test_client_disconnect(loop_name: str, caplog: pytest.LogCaptureFixture) -> None:
    events: List[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        events.append(await receive())
        try:
            await send({"type": "websocket.send", "text": "late"})
        except ClientDisconnected:
            events.append("raised")
        events.append(await receive())

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.ws_connect(1)
            assert (await gw.next_frame(1))[0] == P.WS_ACCEPT
            gw.ws_disconnect(1, 1001, "going away")
            r = await gw.response(1)
            assert r.frames == [(P.END, 1, P.OUTCOME_OK, "")]

    with caplog.at_level(logging.INFO):
        run(loop_name, main())
    d = {"type": "websocket.disconnect", "code": 1001, "reason": "going away"}
    assert events == [d, "raised", d]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_messages_before_disconnect_are_delivered(loop_name: str) -> None:
    got: List[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(0.05)
        while True:
            m = await receive()
            got.append(m)
            if m["type"] == "websocket.disconnect":
                return

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.ws_connect(1)
            await gw.next_frame(1)
            gw.ws_receive(1, "a")
            gw.ws_receive(1, b"b")
            gw.ws_disconnect(1, 1005, "")
            assert (await gw.response(1)).outcome == P.OUTCOME_OK

    run(loop_name, main())
    assert got == [
        {"type": "websocket.receive", "text": "a"},
        {"type": "websocket.receive", "bytes": b"b"},
        {"type": "websocket.disconnect", "code": 1005, "reason": ""},
    ]


def test_reject_with_close_and_denial_response(loop_name: str) -> None:
    async def reject(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 1008})
        assert (await receive()) == {"type": "websocket.disconnect", "code": 1006, "reason": ""}

    async def deny(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-a", b"b")]})
        await send({"type": "websocket.http.response.body", "body": b"nope"})
        assert (await receive())["type"] == "websocket.disconnect"

    async def main(app: Any, expected: List[tuple]) -> None:
        async with FakeGateway(app) as gw:
            gw.ws_connect(1)
            r = await gw.response(1)
            assert r.frames == expected

    run(loop_name, main(reject, [(P.WS_CLOSE, 1, 1008, ""), (P.END, 1, P.OUTCOME_OK, "")]))
    run(loop_name, main(deny, [(P.RESPONSE_START, 1, 401, ((b"x-a", b"b"),), 0, b"nope", False),
                               (P.END, 1, P.OUTCOME_OK, "")]))


@pytest.mark.parametrize(
    "messages, outcome, message",
    [
        ([], P.OUTCOME_NO_RESPONSE, "ASGI callable returned without sending handshake."),
        ([{"type": "websocket.send", "text": "x"}], P.OUTCOME_APP_ERROR,
         "RuntimeError: Expected ASGI message 'websocket.accept', 'websocket.close' or "
         "'websocket.http.response.start', but got 'websocket.send'."),
        ([{"type": "websocket.accept"}, {"type": "websocket.accept"}], P.OUTCOME_APP_ERROR,
         "RuntimeError: Expected ASGI message 'websocket.send' or 'websocket.close', but got 'websocket.accept'."),
        ([{"type": "websocket.accept"}, {"type": "websocket.send", "text": b"x"}], P.OUTCOME_APP_ERROR,
         "TypeError: websocket.send needs 'bytes' (bytes) or 'text' (str), got bytes"),
        ([{"type": "websocket.accept"}, {"type": "websocket.close"}, {"type": "websocket.send", "text": "x"}],
         P.OUTCOME_APP_ERROR, "WebSocketClosed: Unexpected ASGI message 'websocket.send', after sending 'websocket.close'."),
        ([{"type": "websocket.accept", "subprotocol": b"x"}], P.OUTCOME_APP_ERROR,
         "TypeError: websocket.accept 'subprotocol' must be a str or None, got bytes"),
        ([{"type": "websocket.http.response.start", "status": 200}], P.OUTCOME_NO_RESPONSE,
         "ASGI callable returned without completing response."),
        ([{"type": "websocket.accept"}], P.OUTCOME_OK, ""),
    ],
)
def test_outcomes(loop_name: str, messages: List[dict], outcome: int, message: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        for m in messages:
            await send(m)

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.ws_connect(1)
            r = await gw.response(1)
            assert r.end == (P.END, 1, outcome, message)

    run(loop_name, main())


def test_send_window_and_credit(loop_name: str) -> None:
    window = 1000
    sent: List[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for i in range(4):
            await send({"type": "websocket.send", "bytes": b"x" * 600})
            sent.append(i)
        await send({"type": "websocket.close"})

    async def main() -> None:
        async with FakeGateway(app, window=window) as gw:
            gw.ws_connect(1)
            assert (await gw.next_frame(1))[0] == P.WS_ACCEPT
            # 600 fits; the second goes while the window is positive (400) and takes it to -200
            assert len((await gw.next_frame(1))[2]) == 600
            assert len((await gw.next_frame(1))[2]) == 600
            await gw.expect_silence(0.2)
            assert sent == [0, 1]
            gw.credit(1, 600)  # window 400: one more
            assert len((await gw.next_frame(1))[2]) == 600
            await gw.expect_silence(0.2)
            gw.credit(1, 1200)
            r = await gw.response(1)
            assert [f[0] for f in r.frames] == [P.WS_SEND, P.WS_CLOSE, P.END]

    run(loop_name, main())


def test_receive_credit_and_window_enforced(loop_name: str) -> None:
    window = 1000

    async def main() -> None:
        async with FakeGateway(echo_ws, window=window) as gw:
            gw.ws_connect(1)
            await gw.next_frame(1)
            gw.ws_receive(1, b"a" * 300)
            assert (await gw.next_frame(1))[0] == P.WS_SEND
            gw.ws_receive(1, "\u00e9" * 150)  # 300 bytes of UTF-8: 600 consumed >= 500
            f1 = await gw.next_frame(1)
            f2 = await gw.next_frame(1)
            assert {f1[0], f2[0]} == {P.WS_SEND, P.W_CREDIT}
            assert [f for f in (f1, f2) if f[0] == P.W_CREDIT] == [(P.W_CREDIT, 1, 600)]
            gw.ws_receive(1, b"b" * 5000)  # window 1000 > 0: allowed, window goes to -4000
            f1 = await gw.next_frame(1)
            f2 = await gw.next_frame(1)
            assert sorted([f1[0], f2[0]]) == [P.W_CREDIT, P.WS_SEND]
            assert (P.W_CREDIT, 1, 5000) in (f1, f2)
            gw.ws_receive(1, b"c" * 10)  # fine: the window is back to 1000
            await gw.expect_silence(0.1)  # the echo waits: its send window is -4000
            gw.credit(1, 5300)
            assert await gw.next_frame(1) == (P.WS_SEND, 1, b"c" * 10)

    run(loop_name, main())


def test_receive_without_window_is_protocol_error(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(10)  # never receives: no credit

    async def main() -> None:
        async with FakeGateway(app, window=100) as gw:
            gw.ws_connect(1)
            await gw.next_frame(1)
            gw.ws_receive(1, b"x" * 150)
            gw.ws_receive(1, b"y")
            await gw.expect_eof()
            assert "window" in gw.conn.error

    run(loop_name, main())


def test_ws_frames_for_http_stream_are_protocol_errors(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(1)
            gw.ws_receive(1, "x")
            await gw.expect_eof()

    run(loop_name, main())


def test_starlette_websocket(loop_name: str) -> None:
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def ws_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_json({"echo": text})
        except WebSocketDisconnect as exc:
            closed.append(exc.code)

    closed: List[int] = []
    app = Starlette(routes=[WebSocketRoute("/ws", ws_endpoint)])

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.ws_connect(1, path="/ws")
            assert (await gw.next_frame(1))[0] == P.WS_ACCEPT
            gw.ws_receive(1, "hi")
            assert await gw.next_frame(1) == (P.WS_SEND, 1, '{"echo":"hi"}')
            gw.ws_disconnect(1, 1000)
            assert (await gw.response(1)).outcome == P.OUTCOME_OK
            gw.ws_connect(2, path="/nope")  # Starlette closes unknown websocket routes
            r = await gw.response(2)
            assert r.frames[0] == (P.WS_CLOSE, 2, 1000, "")

    run(loop_name, main())
    assert closed == [1000]


# -- SHUTDOWN ----------------------------------------------------------------------------------------


def test_shutdown_frame(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await asyncio.sleep(0.1)
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    hooks: List[str] = []

    async def main() -> None:
        async with FakeGateway(app) as gw:

            async def before_close() -> None:
                hooks.append("lifespan shutdown")

            gw.conn.before_close = before_close
            gw.request(1, path="/slow")
            gw.shutdown(5000)
            r = await gw.response(1)
            assert r.body == b"/slow" and r.outcome == P.OUTCOME_OK
            await gw.expect_eof()

    run(loop_name, main())
    assert hooks == ["lifespan shutdown"]


def test_send_waiting_for_room_raises_when_the_app_closes(loop_name: str) -> None:
    # A producer task waits for window; the app's other task closes: the producer's send() raises
    # an OSError subclass (www.rst: send() on a closed connection), and the app can then return.
    outcome: List[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})

        async def producer() -> None:
            try:
                while True:
                    await send({"type": "websocket.send", "bytes": b"x" * 600})
            except ClientDisconnected as exc:
                outcome.append(f"{type(exc).__name__} {isinstance(exc, OSError)}")

        task = asyncio.ensure_future(producer())
        await asyncio.sleep(0.1)  # the producer now waits for window
        await send({"type": "websocket.close", "code": 1000})
        await asyncio.wait_for(task, 2)

    async def main() -> None:
        async with FakeGateway(app, window=1000) as gw:
            gw.ws_connect(1)
            r = await gw.response(1)
            assert [f[0] for f in r.frames] == [P.WS_ACCEPT, P.WS_SEND, P.WS_SEND, P.WS_CLOSE, P.END]
            assert r.frames[-1][2] == P.OUTCOME_OK

    run(loop_name, main())
    assert outcome == ["ClientDisconnected True"]


def test_str_subclasses_are_sent_as_str(loop_name: str) -> None:
    # Django's SafeString (what render_to_string returns) is a str subclass: as text, as a close
    # reason and as the selected subprotocol it goes out as the str it is.
    class SafeString(str):
        def __str__(self) -> "SafeString":
            return self  # as Django's: str() of it is itself, not a plain str

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": SafeString("chat")})
        await send({"type": "websocket.send", "text": SafeString("<p>héllo</p>")})
        await send({"type": "websocket.close", "code": 1000, "reason": SafeString("done")})

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.ws_connect(1, subprotocols=["chat"])
            r = await gw.response(1)
            assert [f[0] for f in r.frames] == [P.WS_ACCEPT, P.WS_SEND, P.WS_CLOSE, P.END]
            assert r.frames[0][2] == "chat"
            assert r.frames[1][2] == "<p>héllo</p>" and type(r.frames[1][2]) is str
            assert r.frames[2][2:] == (1000, "done")
            assert r.frames[3][2] == P.OUTCOME_OK

    run(loop_name, main())


def test_close_reason_that_is_no_unicode_text_raises(loop_name: str) -> None:
    """A close reason with a lone surrogate has no UTF-8 form for the close frame: send() raises
    (asgi.rst, Error Handling), as uvicorn's encode raises; the app then closes with a valid one.
    Non-ASCII reasons that are text go out as they are."""
    seen: List[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send({"type": "websocket.close", "code": 4000, "reason": "bad \ud800 reason"})
        except ValueError as exc:
            seen.append(exc)
        await send({"type": "websocket.close", "code": 4001, "reason": "fin \u00e9\U0001f600"})

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.ws_connect(1)
            r = await gw.response(1)
            assert [f[0] for f in r.frames] == [P.WS_ACCEPT, P.WS_CLOSE, P.END]
            assert r.frames[1][2:] == (4001, "fin \u00e9\U0001f600")

    run(loop_name, main())
    assert len(seen) == 1 and "not valid Unicode text" in str(seen[0])


def test_send_after_own_close_raises_an_oserror_and_a_runtimeerror(loop_name: str) -> None:
    """www.rst 2.4: send() on a closed connection raises "a server-specific subclass of OSError";
    after its own websocket.close (and the websocket.disconnect it then receives) the app's
    connection is closed. uvicorn raises RuntimeError there: the exception is both."""
    seen: List[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})
        seen.append(await receive())
        try:
            await send({"type": "websocket.send", "text": "after close"})
        except BaseException as exc:  # noqa: BLE001 (what it is, is the test)
            seen.append(exc)

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.ws_connect(1)
            r = await gw.response(1)
            assert r.end == (P.END, 1, P.OUTCOME_OK, "")  # (the app caught it and returned)

    run(loop_name, main())
    assert seen[0]["type"] == "websocket.disconnect"
    assert isinstance(seen[1], OSError) and isinstance(seen[1], RuntimeError), seen
