"""What the worker lets an app put on the WebSocket wire, with a fake gateway: close codes (RFC 6455
section 7.4) and the accepted subprotocol (section 4.2.2). An app message that breaks them raises the
app a ValueError, and the END says so (after accept the gateway then closes with 1011; before it,
answers 500)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import pytest

from gateway_fake import FakeGateway, run
from python_worker import protocol as P

UNSENDABLE = [0, 999, 1004, 1006, 1015, 1016, 2000, 2999, 5000, 65535]
SENDABLE = [1000, 1001, 1002, 1003, 1007, 1008, 1011, 1012, 1014, 3000, 4000, 4999]


def frames_for(loop_name: str, messages: List[Dict[str, Any]], subprotocols: Sequence[str] = ()) -> List[tuple]:
    """The frames the worker sends for an app that sends messages after websocket.connect."""
    out: List[tuple] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        for m in messages:
            await send(m)

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.ws_connect(1, subprotocols=subprotocols)
            out.extend((await gw.response(1)).frames)

    run(loop_name, main())
    return out


def app_error(message: str) -> tuple:
    return (P.END, 1, P.OUTCOME_APP_ERROR, message)


ACCEPT = {"type": "websocket.accept"}
ACCEPTED = (P.WS_ACCEPT, 1, None, ())


@pytest.mark.parametrize("code", UNSENDABLE)
def test_close_with_an_unsendable_code_is_an_app_error(loop_name: str, code: int) -> None:
    frames = frames_for(loop_name, [ACCEPT, {"type": "websocket.close", "code": code, "reason": "bye"}])
    assert frames == [ACCEPTED, app_error(
        f"ValueError: websocket.close 'code' {code} may not be sent in a close frame (RFC 6455 section 7.4): "
        "use 1000-1003, 1007-1014 or 3000-4999, or 1005 for a close frame without a code")]


@pytest.mark.parametrize("code", SENDABLE)
def test_close_with_a_sendable_code(loop_name: str, code: int) -> None:
    frames = frames_for(loop_name, [ACCEPT, {"type": "websocket.close", "code": code, "reason": "bye"}])
    assert frames == [ACCEPTED, (P.WS_CLOSE, 1, code, "bye"), (P.END, 1, P.OUTCOME_OK, "")]


def test_close_1005_is_a_close_without_a_code(loop_name: str) -> None:
    for reason in ("", None):
        frames = frames_for(loop_name, [ACCEPT, {"type": "websocket.close", "code": 1005, "reason": reason}])
        assert frames == [ACCEPTED, (P.WS_CLOSE, 1, 1005, ""), (P.END, 1, P.OUTCOME_OK, "")]
    frames = frames_for(loop_name, [ACCEPT, {"type": "websocket.close", "code": 1005, "reason": "bye"}])
    assert frames == [ACCEPTED, app_error(
        "ValueError: websocket.close with code 1005 (a close frame without a code) cannot have a reason")]


def test_app_disconnect_event_after_close_1005(loop_name: str) -> None:
    seen: List[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(ACCEPT)
        await send({"type": "websocket.close", "code": 1005})
        seen.append(await receive())

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.ws_connect(1)
            await gw.response(1)

    run(loop_name, main())
    assert seen == [{"type": "websocket.disconnect", "code": 1005, "reason": ""}]


@pytest.mark.parametrize("code", [1006, 4000])
def test_close_code_before_accept_is_not_checked(loop_name: str, code: int) -> None:
    # Before accept the close is a 403 from the gateway: no code goes on the wire.
    frames = frames_for(loop_name, [{"type": "websocket.close", "code": code}])
    assert frames == [(P.WS_CLOSE, 1, code, ""), (P.END, 1, P.OUTCOME_OK, "")]


@pytest.mark.parametrize(
    ("offered", "subprotocol"),
    [([], "chat"), (["chat"], "evil"), (["chat", "superchat"], "Chat"), (["chat"], "chat, evil")],
)
def test_accept_with_a_subprotocol_not_offered_is_an_app_error(
    loop_name: str, offered: List[str], subprotocol: str
) -> None:
    frames = frames_for(loop_name, [{"type": "websocket.accept", "subprotocol": subprotocol}], offered)
    assert frames == [app_error(
        f"ValueError: websocket.accept 'subprotocol' {subprotocol!r} was not offered by the client "
        f"(scope['subprotocols'] is {offered!r})")]


@pytest.mark.parametrize(
    ("offered", "subprotocol"),
    [(["chat"], "chat"), (["chat", "superchat"], "superchat"), ([], None), (["chat"], None), ([], "")],
)
def test_accept_with_an_offered_subprotocol_or_none(
    loop_name: str, offered: List[str], subprotocol: Optional[str]
) -> None:
    frames = frames_for(loop_name, [{"type": "websocket.accept", "subprotocol": subprotocol}], offered)
    assert frames == [(P.WS_ACCEPT, 1, subprotocol, ()), (P.END, 1, P.OUTCOME_OK, "")]


def test_accept_checks_the_offer_not_the_scope_the_app_changed(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        scope["subprotocols"].append("evil")
        await send({"type": "websocket.accept", "subprotocol": "evil"})

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.ws_connect(1, subprotocols=["chat"])
            r = await gw.response(1)
            assert [f[0] for f in r.frames] == [P.END] and r.frames[0][2] == P.OUTCOME_APP_ERROR

    run(loop_name, main())
