"""The HTTP response extensions (asgiref extensions.rst) over the fake gateway: advertisement by the
HTTP_REQUEST flags, ``http.response.trailers`` (RESPONSE_TRAILERS), ``http.response.pathsend``
(RESPONSE_PATHSEND), ``http.response.early_hint`` (EARLY_HINT, before a held RESPONSE_START), and the
gateway's CANCEL (request timeout)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Dict, List

import pytest

from gateway_fake import FakeGateway, run
from python_worker import protocol as P

TRAILERS = P.FLAG_TRAILERS_ALLOWED
PATHSEND = P.FLAG_PATHSEND
HINTS = P.FLAG_EARLY_HINTS
ALL = TRAILERS | PATHSEND | HINTS

START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
START_HEADERS = ((b"content-type", b"text/plain"),)


def one_response(loop_name: str, app: Callable[..., Any], flags: int, **request: Any) -> Any:
    async def main() -> Any:
        async with FakeGateway(app) as gw:
            gw.request(1, flags=flags, **request)
            r = await gw.response(1)
            # The connection is still fine afterwards.
            gw.ping(7)
            assert await gw.read_frame() == (P.PONG, 0, 7)
            return r

    return run(loop_name, main())


# -- advertisement -----------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", range(16))
def test_extensions_advertised_only_with_their_flag(flags: int) -> None:
    seen: List[dict] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["extensions"])
        scope["extensions"]["mine"] = {}  # apps may write to it
        for ext in scope["extensions"].values():
            ext["x"] = 1
        await send(START)
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> None:
        async with FakeGateway(app) as gw:
            for sid in (1, 2):
                gw.request(sid, flags=flags, body=b"", more_body=False)
                r = await gw.response(sid)
                assert r.outcome == P.OUTCOME_OK and r.body == b"ok"

    run("asyncio", main())
    expected = set()
    if flags & TRAILERS:
        expected.add("http.response.trailers")
    if flags & PATHSEND:
        expected.add("http.response.pathsend")
    if flags & HINTS:
        expected.add("http.response.early_hint")
    for ext in seen:
        assert set(ext) == expected | {"mine"}
    # Each request has its own dict of its own dicts: the first app's writes are not in the second's.
    assert seen[0] is not seen[1]
    for name in expected:
        assert seen[0][name] is not seen[1][name]


def test_unknown_flag_bits_are_ignored(loop_name: str) -> None:
    seen: List[dict] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["extensions"])
        await send(START)
        await send({"type": "http.response.body", "body": b"ok"})

    # Bits 5-7 (bit 4 is FLAG_TLS, which comes with the tls item: test_tls.py).
    r = one_response(loop_name, app, 0xE0 | P.FLAG_EXPECT_CONTINUE)
    assert r.outcome == P.OUTCOME_OK and seen == [{}]


# -- trailers ----------------------------------------------------------------------------------------


def test_trailers_flow(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({**START, "trailers": True})
        await send({"type": "http.response.body", "body": b"abc"})
        await send({"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")], "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [[b"grpc-message", b""]]})
        await send({"type": "http.response.body", "body": b"ignored"})  # complete: ignored
        await send({"type": "http.response.trailers", "headers": []})  # ignored too

    r = one_response(loop_name, app, TRAILERS)
    assert r.frames == [
        (P.RESPONSE_START, 1, 200, START_HEADERS, P.FLAG_TRAILERS, b"abc", False),
        (P.RESPONSE_TRAILERS, 1, ((b"grpc-status", b"0"),), True),
        (P.RESPONSE_TRAILERS, 1, ((b"grpc-message", b""),), False),
        (P.END, 1, P.OUTCOME_OK, ""),
    ]


def test_trailers_after_streamed_body(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({**START, "trailers": True})
        await asyncio.sleep(0.02)  # the start goes out alone (flag: no body yet)
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await send({"type": "http.response.body", "body": b"x" * 300_000})  # split, waits for credit
        await send({"type": "http.response.trailers", "headers": (), "more_trailers": False})

    async def main() -> Any:
        async with FakeGateway(app, window=65536) as gw:
            gw.request(1, flags=TRAILERS)
            frames = []
            while True:
                f = await gw.next_frame(1)
                frames.append(f)
                if f[0] == P.RESPONSE_BODY:
                    gw.credit(1, len(f[2]))
                if f[0] == P.END:
                    return frames

    frames = run(loop_name, main())
    assert frames[0] == (P.RESPONSE_START, 1, 200, START_HEADERS, P.FLAG_TRAILERS | P.FLAG_NO_BODY_YET, b"", True)
    assert frames[1] == (P.RESPONSE_BODY, 1, b"one", True)
    bodies = [f for f in frames if f[0] == P.RESPONSE_BODY]
    assert b"".join(f[2] for f in bodies[1:]) == b"x" * 300_000
    assert bodies[-1][3] is False and all(f[3] for f in bodies[:-1])
    assert frames[-2:] == [(P.RESPONSE_TRAILERS, 1, (), False), (P.END, 1, P.OUTCOME_OK, "")]


def test_trailers_not_requested_in_start(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert "http.response.trailers" in scope["extensions"]
        await send(START)  # no "trailers": complete after the final body
        await send({"type": "http.response.body", "body": b"abc"})
        await send({"type": "http.response.trailers", "headers": []})  # ignored

    r = one_response(loop_name, app, TRAILERS)
    assert r.frames == [
        (P.RESPONSE_START, 1, 200, START_HEADERS, 0, b"abc", False),
        (P.END, 1, P.OUTCOME_OK, ""),
    ]


def test_trailers_key_ignored_when_not_advertised(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({**START, "trailers": True})
        await send({"type": "http.response.body", "body": b"abc"})

    r = one_response(loop_name, app, PATHSEND | HINTS)
    assert r.frames == [
        (P.RESPONSE_START, 1, 200, START_HEADERS, 0, b"abc", False),
        (P.END, 1, P.OUTCOME_OK, ""),
    ]


def test_trailers_missing(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({**START, "trailers": True})
        await send({"type": "http.response.body", "body": b"abc"})

    r = one_response(loop_name, app, TRAILERS)
    assert r.frames[0] == (P.RESPONSE_START, 1, 200, START_HEADERS, P.FLAG_TRAILERS, b"abc", False)
    assert r.outcome == P.OUTCOME_NO_RESPONSE
    assert r.message == "ASGI callable returned without completing response."


def test_receive_waits_until_trailers_are_complete(loop_name: str) -> None:
    events: List[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()

        async def watch() -> None:
            m = await receive()
            events.append(m["type"])

        watcher = asyncio.ensure_future(watch())
        await send({**START, "trailers": True})
        await send({"type": "http.response.body", "body": b"abc"})
        await asyncio.sleep(0.02)
        assert events == []  # not complete yet: no http.disconnect
        await send({"type": "http.response.trailers", "headers": []})
        await watcher
        assert events == ["http.disconnect"]

    r = one_response(loop_name, app, TRAILERS)
    assert r.outcome == P.OUTCOME_OK


@pytest.mark.parametrize(
    "message, error",
    [
        ({"type": "http.response.body", "body": b"more"}, "RuntimeError: Expected ASGI message 'http.response.trailers'"),
        ({"type": "http.response.trailers", "headers": [("a", "b")]}, "TypeError: http.response.trailers header names"),
        ({"type": "http.response.trailers", "headers": [(b"a",)]}, "TypeError: http.response.trailers headers must"),
        ({"type": "http.response.trailers", "headers": 5}, "TypeError: http.response.trailers headers must"),
        ({"type": "http.response.trailers", "headers": b"ab"}, "TypeError: http.response.trailers headers must"),
    ],
)
def test_trailers_errors(loop_name: str, message: dict, error: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({**START, "trailers": True})
        await send({"type": "http.response.body", "body": b"abc"})
        await send(message)

    r = one_response(loop_name, app, TRAILERS)
    assert r.outcome == P.OUTCOME_APP_ERROR
    assert r.message.startswith(error), r.message
    assert not [f for f in r.frames if f[0] == P.RESPONSE_TRAILERS]


def test_trailers_before_final_body_is_an_error(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({**START, "trailers": True})
        await send({"type": "http.response.trailers", "headers": []})

    r = one_response(loop_name, app, TRAILERS)
    assert r.outcome == P.OUTCOME_APP_ERROR
    assert r.message == "RuntimeError: Expected ASGI message 'http.response.body', but got 'http.response.trailers'."


def test_trailers_message_not_advertised(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.trailers", "headers": []})

    r = one_response(loop_name, app, 0)
    assert r.outcome == P.OUTCOME_APP_ERROR
    assert r.message.startswith("RuntimeError: unsupported message type 'http.response.trailers'")


def test_trailers_too_large(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({**START, "trailers": True})
        await send({"type": "http.response.body", "body": b"abc"})
        await send({"type": "http.response.trailers", "headers": [(b"x", b"y" * 70000)]})

    async def main() -> Any:
        async with FakeGateway(app, max_frame=65536) as gw:
            gw.request(1, flags=TRAILERS)
            return await gw.response(1)

    r = run(loop_name, main())
    assert r.outcome == P.OUTCOME_APP_ERROR and "too large" in r.message


# -- pathsend ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("pause", [False, True])
def test_pathsend_flow(loop_name: str, pause: bool) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["extensions"] == {"http.response.pathsend": {}}
        await send(START)
        await send({"type": "http.response.body", "body": b"", "more_body": True})  # no body: fine
        if pause:
            await asyncio.sleep(0.02)  # the start goes out alone first
        await send({"type": "http.response.pathsend", "path": "/srv/static/caf\u00e9.css"})
        await send({"type": "http.response.body", "body": b"ignored"})  # complete: ignored

    r = one_response(loop_name, app, PATHSEND)
    assert r.frames == [
        (P.RESPONSE_START, 1, 200, START_HEADERS, 0, b"", True),
        (P.RESPONSE_PATHSEND, 1, "/srv/static/caf\u00e9.css"),
        (P.END, 1, P.OUTCOME_OK, ""),
    ]


def test_pathsend_completes_response_for_receive(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "http.request"
        await send(START)
        await send({"type": "http.response.pathsend", "path": "/f"})
        assert (await receive())["type"] == "http.disconnect"

    r = one_response(loop_name, app, PATHSEND)
    assert [f[0] for f in r.frames] == [P.RESPONSE_START, P.RESPONSE_PATHSEND, P.END]
    assert r.outcome == P.OUTCOME_OK


@pytest.mark.parametrize(
    "flags, before, path, error",
    [
        (0, [START], "/f", "RuntimeError: unsupported message type 'http.response.pathsend'"),
        (TRAILERS | HINTS, [START], "/f", "RuntimeError: unsupported message type 'http.response.pathsend'"),
        (PATHSEND, [], "/f", "RuntimeError: Expected ASGI message 'http.response.start', but got 'http.response.pathsend'."),
        (PATHSEND, [START, {"type": "http.response.body", "body": b"x", "more_body": True}], "/f",
         "RuntimeError: http.response.pathsend after http.response.body"),
        (PATHSEND, [START], "relative/f", "ValueError: http.response.pathsend 'path' must be absolute"),
        (PATHSEND, [START], "", "ValueError: http.response.pathsend 'path' must be absolute"),
        (PATHSEND, [START], b"/f", "TypeError: http.response.pathsend 'path' must be a str, got bytes"),
        (PATHSEND, [START], None, "TypeError: http.response.pathsend 'path' must be a str, got NoneType"),
        (PATHSEND, [START], "/f\x00", "ValueError: http.response.pathsend 'path' contains a NUL"),
        (PATHSEND, [START], "/f\udcff", "ValueError: http.response.pathsend 'path' is not valid UTF-8"),
    ],
)
def test_pathsend_errors(loop_name: str, flags: int, before: List[dict], path: Any, error: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        for m in before:
            await send(m)
        await send({"type": "http.response.pathsend", "path": path})

    r = one_response(loop_name, app, flags)
    assert r.outcome == P.OUTCOME_APP_ERROR
    assert r.message.startswith(error), r.message
    assert not [f for f in r.frames if f[0] == P.RESPONSE_PATHSEND]


def test_pathsend_path_too_large(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.pathsend", "path": "/" + "p" * 70000})

    async def main() -> Any:
        async with FakeGateway(app, max_frame=65536) as gw:
            gw.request(1, flags=PATHSEND)
            return await gw.response(1)

    r = run(loop_name, main())
    assert r.outcome == P.OUTCOME_APP_ERROR and "too large" in r.message


def test_pathsend_does_not_use_the_window(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.pathsend", "path": "/big.iso"})

    async def main() -> Any:
        async with FakeGateway(app, window=1) as gw:
            gw.request(1, flags=PATHSEND)
            return await gw.response(1)

    r = run(loop_name, main())
    assert [f[0] for f in r.frames] == [P.RESPONSE_START, P.RESPONSE_PATHSEND, P.END]


# -- early hints -------------------------------------------------------------------------------------

LINKS = [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]


def test_early_hint_before_coalesced_start(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.early_hint", "links": LINKS})
        await send({"type": "http.response.early_hint", "links": (bytearray(b"</x.png>; rel=preload"),)})
        await send({"type": "http.response.body", "body": b"hi"})

    r = one_response(loop_name, app, HINTS)
    assert r.frames == [
        (P.EARLY_HINT, 1, tuple(LINKS)),
        (P.EARLY_HINT, 1, (b"</x.png>; rel=preload",)),
        (P.RESPONSE_START, 1, 200, START_HEADERS, 0, b"hi", False),
        (P.END, 1, P.OUTCOME_OK, ""),
    ]


def test_early_hint_before_start_alone(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.early_hint", "links": LINKS[:1]})  # before the start: fine
        await send(START)
        await send({"type": "http.response.early_hint", "links": iter(LINKS[1:])})
        await asyncio.sleep(0.02)  # the start goes out alone (after the hints)
        await send({"type": "http.response.early_hint", "links": [b"</late>"]})  # too late: still sent
        await send({"type": "http.response.body", "body": b"hi"})
        await send({"type": "http.response.early_hint", "links": [b"</after>"]})  # complete: ignored

    r = one_response(loop_name, app, ALL)
    assert r.frames == [
        (P.EARLY_HINT, 1, tuple(LINKS[:1])),
        (P.EARLY_HINT, 1, tuple(LINKS[1:])),
        (P.RESPONSE_START, 1, 200, START_HEADERS, P.FLAG_NO_BODY_YET, b"", True),
        (P.EARLY_HINT, 1, (b"</late>",)),
        (P.RESPONSE_BODY, 1, b"hi", False),
        (P.END, 1, P.OUTCOME_OK, ""),
    ]


def test_early_hint_with_trailers_and_pathsend(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({**START, "trailers": True})
        await send({"type": "http.response.early_hint", "links": [b"</a>"]})
        await send({"type": "http.response.body", "body": b"hi"})
        await send({"type": "http.response.early_hint", "links": [b"</b>"]})  # after the final body: ignored
        await send({"type": "http.response.trailers", "headers": [(b"t", b"1")]})

    r = one_response(loop_name, app, ALL)
    assert r.frames == [
        (P.EARLY_HINT, 1, (b"</a>",)),
        (P.RESPONSE_START, 1, 200, START_HEADERS, P.FLAG_TRAILERS, b"hi", False),
        (P.RESPONSE_TRAILERS, 1, ((b"t", b"1"),), False),
        (P.END, 1, P.OUTCOME_OK, ""),
    ]

    async def app2(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.early_hint", "links": [b"</a>"]})
        await send({"type": "http.response.pathsend", "path": "/index.html"})

    r = one_response(loop_name, app2, ALL)
    assert r.frames == [
        (P.EARLY_HINT, 1, (b"</a>",)),
        # flagged NO_BODY_YET: the gateway holds the head until it has opened the file
        (P.RESPONSE_START, 1, 200, START_HEADERS, P.FLAG_NO_BODY_YET, b"", True),
        (P.RESPONSE_PATHSEND, 1, "/index.html"),
        (P.END, 1, P.OUTCOME_OK, ""),
    ]


def test_early_hint_empty_links_send_nothing(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.early_hint", "links": []})
        await send({"type": "http.response.body", "body": b"hi"})

    r = one_response(loop_name, app, HINTS)
    assert [f[0] for f in r.frames] == [P.RESPONSE_START, P.END]


@pytest.mark.parametrize(
    "flags, links, error",
    [
        (TRAILERS | PATHSEND, LINKS, "RuntimeError: unsupported message type 'http.response.early_hint'"),
        (HINTS, None, "TypeError: http.response.early_hint 'links' must be an iterable of bytes"),
        (HINTS, b"</a>", "TypeError: http.response.early_hint 'links' must be an iterable of bytes"),
        (HINTS, "</a>", "TypeError: http.response.early_hint 'links' must be an iterable of bytes"),
        (HINTS, 5, "TypeError: http.response.early_hint 'links' must be an iterable of bytes"),
        (HINTS, ["</a>"], "TypeError: http.response.early_hint links must be bytes, got str"),
        (HINTS, [b"</a>", None], "TypeError: http.response.early_hint links must be bytes, got NoneType"),
    ],
)
def test_early_hint_errors(loop_name: str, flags: int, links: Any, error: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.early_hint", "links": links})

    r = one_response(loop_name, app, flags)
    assert r.outcome == P.OUTCOME_APP_ERROR
    assert r.message.startswith(error), r.message
    assert not [f for f in r.frames if f[0] == P.EARLY_HINT]


def test_early_hints_of_concurrent_streams(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        sid = scope["path"].encode()
        await send(START)
        await send({"type": "http.response.early_hint", "links": [b"<" + sid + b">"]})
        await send({"type": "http.response.body", "body": sid})

    async def main() -> Dict[int, Any]:
        async with FakeGateway(app) as gw:
            gw.send(*(gw.request(sid, path=f"/{sid}", flags=HINTS, send=False) for sid in range(1, 21)))
            return {sid: await gw.response(sid) for sid in range(1, 21)}

    for sid, r in run(loop_name, main()).items():
        assert r.frames == [
            (P.EARLY_HINT, sid, (b"</%d>" % sid,)),
            (P.RESPONSE_START, sid, 200, START_HEADERS, 0, b"/%d" % sid, False),
            (P.END, sid, P.OUTCOME_OK, ""),
        ]


# -- CANCEL ------------------------------------------------------------------------------------------


def test_cancel_sleeping_app(loop_name: str, caplog: pytest.LogCaptureFixture) -> None:
    cancelled: List[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> Any:
        async with FakeGateway(app) as gw:
            gw.request(1)
            assert (await gw.next_frame(1))[0] == P.RESPONSE_START
            gw.send_frame([P.CANCEL, 1])
            r = await gw.response(1)
            gw.send_frame([P.CANCEL, 1])  # for a closed sid: dropped
            gw.send_frame([P.CANCEL, 99])  # never opened: dropped
            gw.ping(3)
            assert await gw.read_frame() == (P.PONG, 0, 3)
            return r

    with caplog.at_level(logging.DEBUG):
        r = run(loop_name, main())
    assert r.frames == [(P.END, 1, P.OUTCOME_APP_ERROR, "cancelled")]
    assert cancelled == [True]
    warnings = [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert len(warnings) == 1, [rec.getMessage() for rec in warnings]
    assert warnings[0].levelno == logging.WARNING
    assert warnings[0].getMessage().startswith("request cancelled (timeout)")
    assert warnings[0].exc_info is None


def test_cancel_in_the_same_write_as_the_request(loop_name: str, caplog: pytest.LogCaptureFixture) -> None:
    started: List[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        started.append(True)
        await asyncio.sleep(30)

    async def main() -> Any:
        async with FakeGateway(app) as gw:
            gw.send(gw.request(1, send=False), P.encode([P.CANCEL, 1]))
            return await gw.response(1)

    with caplog.at_level(logging.WARNING):
        r = run(loop_name, main())
    assert r.frames == [(P.END, 1, P.OUTCOME_APP_ERROR, "cancelled")]
    assert [rec.levelno for rec in caplog.records] == [logging.WARNING]


def test_cancel_app_waiting_in_receive_and_for_credit(loop_name: str) -> None:
    async def receiving(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass

    async def sending(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.body", "body": b"x" * 10})  # the window is 4

    async def main(app: Any, **request: Any) -> Any:
        async with FakeGateway(app, window=4) as gw:
            gw.request(1, **request)
            await asyncio.sleep(0.05)
            gw.send_frame([P.CANCEL, 1])
            return await gw.response(1)

    r = run(loop_name, main(receiving, body=b"ab", more_body=True))
    assert r.end == (P.END, 1, P.OUTCOME_APP_ERROR, "cancelled")
    r = run(loop_name, main(sending))
    assert r.end == (P.END, 1, P.OUTCOME_APP_ERROR, "cancelled")
    assert r.body == b"xxxx"


def test_cancel_swallowed_by_the_app(loop_name: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass
        await send(START)
        await send({"type": "http.response.body", "body": b"late"})

    async def main() -> Any:
        async with FakeGateway(app) as gw:
            gw.request(1)
            await asyncio.sleep(0.02)
            gw.send_frame([P.CANCEL, 1])
            gw.send_frame([P.CANCEL, 1])  # twice: one cancellation, one warning
            return await gw.response(1)

    with caplog.at_level(logging.WARNING):
        r = run(loop_name, main())
    assert r.frames[0] == (P.RESPONSE_START, 1, 200, START_HEADERS, 0, b"late", False)
    assert r.end == (P.END, 1, P.OUTCOME_APP_ERROR, "cancelled")  # whatever the app did after
    assert len(caplog.records) == 1


def test_cancel_then_other_exception_is_logged(loop_name: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise ValueError("cleanup failed")

    async def main() -> Any:
        async with FakeGateway(app) as gw:
            gw.request(1)
            await asyncio.sleep(0.02)
            gw.send_frame([P.CANCEL, 1])
            return await gw.response(1)

    with caplog.at_level(logging.WARNING):
        r = run(loop_name, main())
    assert r.end == (P.END, 1, P.OUTCOME_APP_ERROR, "cancelled")
    assert [rec.levelno for rec in caplog.records] == [logging.WARNING, logging.ERROR]


def test_cancel_websocket_stream(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["extensions"] == {"websocket.http.response": {}}
        await receive()
        await send({"type": "websocket.accept"})
        await receive()  # waits forever

    async def main() -> Any:
        async with FakeGateway(app) as gw:
            gw.ws_connect(1)
            assert (await gw.next_frame(1))[0] == P.WS_ACCEPT
            gw.send_frame([P.CANCEL, 1])
            return await gw.next_frame(1)

    assert run(loop_name, main()) == (P.END, 1, P.OUTCOME_APP_ERROR, "cancelled")


def test_extension_frames_from_the_gateway_are_protocol_errors(loop_name: str) -> None:
    async def main() -> None:
        async with FakeGateway(lambda *a: None) as gw:
            gw.send_frame([P.RESPONSE_PATHSEND, 1, "/x"])
            await gw.expect_eof()
            assert "RESPONSE_PATHSEND" in gw.conn.error

    run(loop_name, main())
