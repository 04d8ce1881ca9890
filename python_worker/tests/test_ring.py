"""The body ring (protocol/SPEC.md §6): the worker's HELLO feature, request bodies through
REQUEST_BODY_RING (intact, released), the merge of an empty first ``http.request`` with the next piece,
response bodies through RESPONSE_BODY_RING (threshold, flow control, fallback to inline when the ring is
full, skipping to the next multiple of R), every check on a received piece as a protocol error, the
HELLO combinations, a bad ``--ring-fd``, idle trimming of the W→G area (its pages given back once all
is released and nothing was put since the previous check; never over unreleased bytes or while pieces
keep coming), and a worker process given a real memfd (``pass_fds``)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from gateway_fake import FakeGateway, GatewayRing, Response, run
from python_worker import connection as connection_module
from python_worker import protocol as P
from python_worker.ring import HEADER, MIN_PIECE, Ring, RingError, ring_size
from python_worker.worker import map_ring

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` bytes that differ from piece to piece (so that a misplaced piece shows)."""
    block = random.Random(seed).randbytes(4099)
    return (block * (n // len(block) + 1))[:n]


async def digest_app(scope: Any, receive: Any, send: Any) -> None:
    """Responds with the request body's length, SHA-256 and number of http.request events."""
    h = hashlib.sha256()
    n = events = 0
    while True:
        m = await receive()
        assert m["type"] == "http.request"
        h.update(m["body"])
        n += len(m["body"])
        events += 1
        if not m["more_body"]:
            break
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": b"%d %s %d" % (n, h.hexdigest().encode(), events)})


def response_app(*pieces: bytes) -> Callable[..., Any]:
    """An app that sends ``pieces`` as http.response.body messages (the last one final)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        for i, piece in enumerate(pieces):
            await send({"type": "http.response.body", "body": piece, "more_body": i < len(pieces) - 1})

    return app


def body_len(f: tuple) -> int:
    if f[0] == P.RESPONSE_START:
        return len(f[5])
    if f[0] == P.RESPONSE_BODY:
        return len(f[2])
    if f[0] == P.RESPONSE_BODY_RING:
        return f[3]
    return 0


async def collect(gw: FakeGateway, sid: int) -> Response:
    """All frames of ``sid`` up to its END, crediting each body piece back at once (as the gateway does
    when it has written it)."""
    r = Response(sid)
    while True:
        f = await gw.next_frame(sid)
        r.frames.append(f)
        if f[0] == P.END:
            return r
        n = body_len(f)
        if n:
            gw.credit(sid, n)


def kinds(r: Response) -> List[str]:
    return [P.FRAME_NAMES[f[0]] for f in r.frames]


async def upload(gw: FakeGateway, sid: int, body: bytes, pieces: Callable[[], int]) -> Dict[str, Any]:
    """Send ``body`` as the gateway does: HTTP_REQUEST with an empty body and more_body, then pieces of
    at most the piece limit, as the window allows (waiting for CREDIT); a piece of at least 16 KiB through
    the ring when it has room, else inline. ``pieces()`` proposes the next piece's size."""
    assert gw.ring is not None
    gw.request(sid, method="POST", body=b"", more_body=True)
    sent = 0
    granted = gw.window
    ring_pieces: List[Tuple[int, int]] = []
    inline = 0
    while sent < len(body):
        if granted == sent:
            f = await gw.next_frame(sid)
            assert f[0] == P.W_CREDIT, f
            granted += f[2]
            continue
        n = min(granted - sent, pieces(), len(body) - sent, gw.max_piece)
        chunk = body[sent : sent + n]
        sent += n
        more = sent < len(body)
        position = gw.ring_body(sid, chunk, more) if n >= MIN_PIECE else None
        if position is None:
            gw.body(sid, chunk, more)
            inline += 1
        else:
            ring_pieces.append((position, n))
    return {"ring": ring_pieces, "inline": inline}


# -- HELLO -------------------------------------------------------------------------------------------


def test_worker_hello_features(loop_name: str) -> None:
    async def main() -> None:
        async with FakeGateway(digest_app) as gw:
            assert gw.worker_hello[2]["features"] == ()
            assert gw.conn.ring is None
        async with FakeGateway(digest_app, ring=65536) as gw:
            assert gw.worker_hello[2]["features"] == ("ring",)
            assert gw.conn.ring is not None and gw.conn.ring.size == 65536
        # The worker has a ring, the gateway's HELLO has none: not used (and no error).
        async with FakeGateway(response_app(pattern(100000)), ring=65536, hello_ring=None) as gw:
            assert gw.worker_hello[2]["features"] == ("ring",)
            assert gw.conn.ring is None
            gw.request(1)
            r = await collect(gw, 1)
            assert r.body == pattern(100000) and r.outcome == P.OUTCOME_OK
            assert kinds(r) == ["RESPONSE_START", "END"]
        # The gateway's HELLO has a ring, the worker has none: not used (and no error).
        async with FakeGateway(response_app(pattern(100000)), hello_ring=65536) as gw:
            assert gw.worker_hello[2]["features"] == ()
            gw.request(1)
            r = await collect(gw, 1)
            assert r.body == pattern(100000) and kinds(r) == ["RESPONSE_START", "END"]

    run(loop_name, main())


def test_hello_ring_of_another_size_is_protocol_error(loop_name: str) -> None:
    async def main() -> None:
        async with FakeGateway(digest_app, ring=65536, send_hello=False) as gw:
            gw.send_frame([P.HELLO, 0, {"protocol": 1, "pid": 1, "window": 65536, "ring": 131072}])
            await gw.expect_eof()
            assert gw.conn.error is not None and "HELLO ring 131072" in gw.conn.error

    run(loop_name, main())


# -- request bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16384, 16385, 3 * 65536 + 1, 1 << 20, 5 << 20])
@pytest.mark.parametrize("pieces", ["largest", "random"])
def test_request_body_through_ring(loop_name: str, size: int, pieces: str) -> None:
    body = pattern(size, seed=size)
    rng = random.Random(size)

    def next_piece() -> int:
        return 1 << 30 if pieces == "largest" else rng.choice([MIN_PIECE, 20000, 65536, 99999, 1 << 30])

    async def main() -> None:
        # R = 1 MiB > window: the ring always has room for what the window lets through.
        async with FakeGateway(digest_app, ring=1 << 20) as gw:
            sent = await upload(gw, 1, body, next_piece)
            r = await gw.response(1)
            n, digest, _ = r.body.split()
            assert int(n) == size and digest.decode() == hashlib.sha256(body).hexdigest()
            assert r.outcome == P.OUTCOME_OK
            ring_pieces = sent["ring"]
            assert ring_pieces and all(n >= MIN_PIECE for _, n in ring_pieces)
            if pieces == "largest":
                assert sent["inline"] == (1 if size % gw.max_piece and size % gw.max_piece < MIN_PIECE else 0)
            position, n = ring_pieces[-1]
            assert gw.ring.g2w_released == position + n  # released up to the end of the last piece
            assert gw.conn.ring is not None and gw.conn.ring.g2w_released == position + n

    run(loop_name, main())


def test_request_body_through_small_ring_with_skips_and_fallback(loop_name: str) -> None:
    # R = 65536 = the window: pieces skip to the next multiple of R, and the gateway falls back to
    # inline when the worker has not yet released enough.
    body = pattern(2 << 20, seed=7)
    rng = random.Random(3)

    async def main() -> None:
        async with FakeGateway(digest_app, ring=65536, window=65536) as gw:
            sent = await upload(gw, 1, body, lambda: rng.choice([MIN_PIECE, 30000, 40000, 65536]))
            r = await gw.response(1)
            n, digest, _ = r.body.split()
            assert int(n) == len(body) and digest.decode() == hashlib.sha256(body).hexdigest()
            positions = [p for p, _ in sent["ring"]]
            assert positions == sorted(positions) and len(positions) > 4
            assert any(p % 65536 == 0 and p > 0 for p in positions)  # a skip happened
            assert gw.ring.g2w_released == sent["ring"][-1][0] + sent["ring"][-1][1]

    run(loop_name, main())


def test_request_ring_skip_to_next_multiple_of_r(loop_name: str) -> None:
    a, b = pattern(40000, 1), pattern(40000, 2)

    async def main() -> None:
        async with FakeGateway(digest_app, ring=65536, window=1 << 20) as gw:
            gw.request(1, method="POST", body=b"", more_body=True)
            assert gw.ring_body(1, a, True) == 0
            gw.ping(1)  # the worker has taken the piece once it answers
            assert await gw.read_frame() == (P.PONG, 0, 1)
            assert gw.ring.g2w_released == 40000
            assert gw.ring_body(1, b, False) == 65536  # 40000 + 40000 > R: skipped
            r = await gw.response(1)
            n, digest, events = r.body.split()
            assert int(n) == 80000 and digest.decode() == hashlib.sha256(a + b).hexdigest()
            assert events == b"2"  # the first piece took the place of the empty first http.request
            assert gw.ring.g2w_released == 65536 + 40000

    run(loop_name, main())


def test_first_piece_merged_into_first_http_request(loop_name: str) -> None:
    events: Dict[int, List[dict]] = {}
    window = 65536

    async def app(scope: Any, receive: Any, send: Any) -> None:
        sid = int(scope["path"][1:])
        await asyncio.sleep(0.05)  # the pieces arrive before the first receive()
        got = events.setdefault(sid, [])
        while True:
            m = await receive()
            got.append(m)
            if not m["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body"})

    piece = pattern(40000, 9)

    async def main() -> None:
        async with FakeGateway(app, ring=1 << 20, window=window) as gw:
            # A ring piece, final.
            gw.request(1, path="/1", method="POST", body=b"", more_body=True)
            gw.ring_body(1, piece, False)
            assert (await gw.response(1)).outcome == P.OUTCOME_OK
            # A ring piece with more to come: merged, and credited when received (40000 >= W/2).
            gw.request(2, path="/2", method="POST", body=b"", more_body=True)
            gw.ring_body(2, piece, True)
            assert await gw.next_frame(2) == (P.W_CREDIT, 2, 40000)
            gw.body(2, b"tail", False)
            r = await gw.response(2)
            assert r.outcome == P.OUTCOME_OK and r.credits == []
            # Inline pieces merge the same way; an empty piece with more to come leaves it empty.
            gw.request(3, path="/3", method="POST", body=b"", more_body=True)
            gw.body(3, b"", True)
            gw.body(3, b"abc", True)
            gw.body(3, b"def", False)
            assert (await gw.response(3)).outcome == P.OUTCOME_OK
            # A non-empty first body is not replaced.
            gw.request(4, path="/4", method="POST", body=b"x", more_body=True)
            gw.ring_body(4, piece, False)
            assert (await gw.response(4)).outcome == P.OUTCOME_OK

    run(loop_name, main())
    assert events[1] == [{"type": "http.request", "body": piece, "more_body": False}]
    assert events[2] == [
        {"type": "http.request", "body": piece, "more_body": True},
        {"type": "http.request", "body": b"tail", "more_body": False},
    ]
    assert events[3] == [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"def", "more_body": False},
    ]
    assert events[4] == [
        {"type": "http.request", "body": b"x", "more_body": True},
        {"type": "http.request", "body": piece, "more_body": False},
    ]


def test_no_merge_once_the_app_has_received(loop_name: str) -> None:
    got: List[dict] = []

    async def main() -> None:
        first = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            got.append(await receive())
            first.set()
            got.append(await receive())
            await send({"type": "http.response.start", "status": 204})
            await send({"type": "http.response.body"})

        async with FakeGateway(app, ring=1 << 20) as gw:
            gw.request(1, method="POST", body=b"", more_body=True)
            await asyncio.wait_for(first.wait(), 5)
            gw.ring_body(1, pattern(MIN_PIECE), False)
            assert (await gw.response(1)).status == 204

    run(loop_name, main())
    assert got == [
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": pattern(MIN_PIECE), "more_body": False},
    ]


def test_expect_continue_then_ring_piece(loop_name: str) -> None:
    # EXPECT_CONTINUE: the first receive() returns the empty body and sends the first CREDIT (the
    # gateway's 100 Continue); only then does the body come, here through the ring.
    window = 65536
    got: List[dict] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            got.append(await receive())
            if not got[-1]["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body"})

    async def main() -> None:
        async with FakeGateway(app, ring=1 << 20, window=window) as gw:
            gw.request(1, method="PUT", body=b"", more_body=True, flags=P.FLAG_EXPECT_CONTINUE)
            assert await gw.next_frame(1) == (P.W_CREDIT, 1, window)
            assert gw.ring_body(1, pattern(window), False) == 0
            r = await gw.response(1)
            assert r.outcome == P.OUTCOME_OK and r.credits == []

    run(loop_name, main())
    assert got == [
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": pattern(65536), "more_body": False},
    ]


def test_ring_piece_for_closed_stream_is_released_and_dropped(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"early"})

    async def main() -> None:
        async with FakeGateway(app, ring=65536) as gw:
            gw.request(1, method="POST", body=b"", more_body=True)
            r = await gw.response(1)
            assert r.body == b"early"
            assert gw.ring_body(1, pattern(30000), False) == 0  # sent before it read the END
            gw.ping(5)
            assert await gw.read_frame() == (P.PONG, 0, 5)
            assert gw.ring.g2w_released == 30000
            # The ring goes on from there.
            gw.request(1, method="POST", body=b"", more_body=True)
            assert gw.ring_body(1, pattern(30000), False) == 30000
            assert (await gw.response(1)).body == b"early"
            assert gw.conn.error is None

    run(loop_name, main())


# -- checks on a received piece: protocol errors -----------------------------------------------------


async def _sleeping_app(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.sleep(10)


def _no_ring(gw: FakeGateway) -> None:
    gw.request(1, method="POST", body=b"", more_body=True)
    gw.ring_frame(1, 0, MIN_PIECE, False)


def _length_0(gw: FakeGateway) -> None:
    gw.request(1, method="POST", body=b"", more_body=True)
    gw.ring_frame(1, 0, 0, False)


def _length_over_limit(gw: FakeGateway) -> None:
    gw.request(1, method="POST", body=b"", more_body=True)
    gw.ring_frame(1, 0, gw.max_piece + 1, False)


def _wraps(gw: FakeGateway) -> None:
    gw.request(1, method="POST", body=b"", more_body=True)
    assert gw.ring_body(1, pattern(60000), True) == 0
    gw.ring_frame(1, 65536 - 100, 200, False)  # after the previous end, within R of the mark: wraps


def _before_previous_end(gw: FakeGateway) -> None:
    gw.request(1, method="POST", body=b"", more_body=True)
    assert gw.ring_body(1, pattern(20000), True) == 0
    gw.ring_frame(1, 19999, MIN_PIECE, False)


def _ahead_of_mark(gw: FakeGateway) -> None:
    gw.request(1, method="POST", body=b"", more_body=True)
    gw.ring_frame(1, 65536, 16, False)  # does not wrap, after 0, but 65552 - 0 > R


def _ahead_of_mark_later(gw: FakeGateway) -> None:
    gw.request(1, method="POST", body=b"", more_body=True)
    assert gw.ring_body(1, pattern(20000), True) == 0
    gw.ring_frame(1, 20000 + 65536, 1, False)


def _over_stream_window(gw: FakeGateway) -> None:
    gw.request(1, method="POST", body=pattern(60000), more_body=True)
    gw.ring_body(1, pattern(16384), False)  # 60000 + 16384 > the window (65536)


def _after_body_complete(gw: FakeGateway) -> None:
    gw.request(1, method="POST", body=b"x", more_body=False)
    gw.ring_body(1, pattern(MIN_PIECE), False)


def _websocket(gw: FakeGateway) -> None:
    gw.ws_connect(1)
    gw.ring_body(1, pattern(MIN_PIECE), False)


RULES = {
    # name: (FakeGateway options, what the gateway sends, part of the error, the g2w mark after)
    "ring not in use (worker has none)": ({"hello_ring": 65536}, _no_ring, "does not use a body ring", None),
    "ring not in use (gateway HELLO has none)": (
        {"ring": 65536, "hello_ring": None}, _no_ring, "does not use a body ring", 0),
    "length 0": ({"ring": 65536}, _length_0, "of 0 bytes: outside 1..65536", 0),
    "length over the window": ({"ring": 1 << 20, "window": 65536}, _length_over_limit, "outside 1..65536", 0),
    "length over max_frame - 64": (
        {"ring": 1 << 20, "max_frame": 32768}, _length_over_limit, "of 32705 bytes: outside 1..32704", 0),
    "piece wraps": ({"ring": 65536}, _wraps, "wraps around", 60000),
    "position before the previous end": ({"ring": 65536}, _before_previous_end, "before the end", 20000),
    "more than R ahead of the mark": ({"ring": 65536}, _ahead_of_mark, "ahead of the released mark (0)", 0),
    "more than R ahead of the mark, later": (
        {"ring": 65536}, _ahead_of_mark_later, "ahead of the released mark (20000)", 20000),
    "over the stream's window": ({"ring": 1 << 20}, _over_stream_window, "window", 16384),
    "after the body was complete": ({"ring": 1 << 20}, _after_body_complete, "complete", MIN_PIECE),
    "WebSocket stream": ({"ring": 1 << 20}, _websocket, "WebSocket", MIN_PIECE),
}


@pytest.mark.parametrize("rule", list(RULES), ids=list(RULES))
def test_ring_piece_breaking_a_rule_is_protocol_error(
    loop_name: str, rule: str, caplog: pytest.LogCaptureFixture
) -> None:
    options, send, error, mark = RULES[rule]
    options = {"window": 65536, **options}

    async def main() -> None:
        async with FakeGateway(_sleeping_app, **options) as gw:
            send(gw)
            await gw.expect_eof()
            assert gw.conn.error is not None and error in gw.conn.error, gw.conn.error
            if mark is not None:
                assert gw.ring is not None and gw.ring.g2w_released == mark

    run(loop_name, main())
    assert "protocol error" in caplog.text


# -- response bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [MIN_PIECE - 1, MIN_PIECE, 100000])
def test_response_body_threshold(loop_name: str, size: int) -> None:
    body = pattern(size, 5)

    async def main() -> None:
        async with FakeGateway(response_app(body), ring=1 << 20) as gw:
            gw.request(1)
            r = await collect(gw, 1)
            assert r.body == body and r.outcome == P.OUTCOME_OK
            if size < MIN_PIECE:  # inline, in the RESPONSE_START
                assert kinds(r) == ["RESPONSE_START", "END"] and r.frames[0][6] is False
            else:  # a start without body, then the piece in the ring
                assert kinds(r) == ["RESPONSE_START", "RESPONSE_BODY_RING", "END"]
                assert r.frames[0][5:] == (b"", True)
                assert r.frames[1][:5] == (P.RESPONSE_BODY_RING, 1, 0, size, False)
                assert gw.ring.w2g_bytes(0, size) == body

    run(loop_name, main())


def test_response_pieces_ring_and_inline_in_order(loop_name: str) -> None:
    big = pattern((1 << 20) + 5, 11)
    pieces = (pattern(20000, 1), b"small", pattern(MIN_PIECE - 1, 2), big)

    async def main() -> None:
        async with FakeGateway(response_app(*pieces), ring=4 << 20, window=4 << 20) as gw:
            gw.request(1)
            r = await collect(gw, 1)
            assert r.body == b"".join(pieces) and r.outcome == P.OUTCOME_OK
            limit = gw.max_piece  # 1 MiB - 64: the big body is split into a ring piece and 69 bytes
            assert [(f[0], body_len(f)) for f in r.frames] == [
                (P.RESPONSE_START, 0),
                (P.RESPONSE_BODY_RING, 20000),
                (P.RESPONSE_BODY, 5),
                (P.RESPONSE_BODY, MIN_PIECE - 1),
                (P.RESPONSE_BODY_RING, limit),
                (P.RESPONSE_BODY, len(big) - limit),
                (P.END, 0),
            ]
            assert [f[2] for f in r.frames if f[0] == P.RESPONSE_BODY_RING] == [0, 20000]
            assert r.frames[-2][3] is False

    run(loop_name, main())


def test_response_ring_bytes_count_against_the_window(loop_name: str) -> None:
    window = 65536
    body = pattern(200000, 4)

    async def main() -> None:
        async with FakeGateway(response_app(body), ring=1 << 20, window=window) as gw:
            gw.request(1)
            r = Response(1)
            r.frames.append(await gw.next_frame(1))
            assert r.frames[-1][0] == P.RESPONSE_START and r.frames[-1][5:] == (b"", True)
            r.frames.append(await gw.next_frame(1))
            assert r.frames[-1][:5] == (P.RESPONSE_BODY_RING, 1, 0, window, True)
            await gw.expect_silence(0.2)  # the window is used up
            gw.credit(1, 1000)
            r.frames.append(await gw.next_frame(1))
            assert r.frames[-1][0] == P.RESPONSE_BODY and len(r.frames[-1][2]) == 1000  # below 16 KiB: inline
            await gw.expect_silence(0.1)
            gw.credit(1, window)
            r.frames.append(await gw.next_frame(1))
            assert r.frames[-1][:5] == (P.RESPONSE_BODY_RING, 1, window, window, True)
            gw.credit(1, len(body))
            r.frames += (await gw.response(1)).frames
            assert r.body == body and r.outcome == P.OUTCOME_OK

    run(loop_name, main())


def test_response_ring_skips_to_next_multiple_of_r(loop_name: str) -> None:
    # window 100000, R = 196608 (48 pages): each piece is released (and credited) before the next is
    # put, and every piece after the first skips to the next multiple of R.
    size = 196608
    body = pattern(450000, 6)

    async def main() -> None:
        async with FakeGateway(response_app(body), ring=size, window=100000) as gw:
            gw.request(1)
            r = await collect(gw, 1)
            assert r.body == body and r.outcome == P.OUTCOME_OK
            ring = [(f[2], f[3]) for f in r.frames if f[0] == P.RESPONSE_BODY_RING]
            assert ring == [(0, 100000), (size, 100000), (2 * size, 100000), (3 * size, 100000),
                            (3 * size + 100000, 50000)]  # (fits: no skip)
            assert gw.ring.w2g_released == 3 * size + 150000

    run(loop_name, main())


def test_response_falls_back_inline_when_ring_is_full(loop_name: str) -> None:
    # R = 65536 and the gateway releases nothing: three 20000-byte pieces fill the ring (the fourth
    # would skip to 65536, over unreleased bytes), so the next ones go inline, and the ring's bytes stay
    # as they were. Once the gateway releases, the next piece goes to 65536 (area byte 0).
    pieces = [pattern(20000, i) for i in range(7)]

    async def main() -> None:
        released = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200})
            for piece in pieces[:5]:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await released.wait()
            await send({"type": "http.response.body", "body": pieces[5], "more_body": True})
            await send({"type": "http.response.body", "body": pieces[6], "more_body": False})

        async with FakeGateway(app, ring=65536, window=1 << 20, auto_release=False) as gw:
            gw.request(1)
            frames = [await gw.next_frame(1) for _ in range(6)]
            assert [f[0] for f in frames] == [P.RESPONSE_START] + [P.RESPONSE_BODY_RING] * 3 + [P.RESPONSE_BODY] * 2
            assert [f[2] for f in frames[1:4]] == [0, 20000, 40000]
            assert [f[2] for f in frames[4:]] == pieces[3:5]
            await gw.expect_silence(0.1)
            for position, piece in zip((0, 20000, 40000), pieces):
                assert gw.ring.w2g_bytes(position, 20000) == piece  # not overwritten
            gw.ring.release_w2g(60000)
            released.set()
            r = await gw.response(1)
            assert [(f[0], f[2]) for f in r.frames[:2]] == [
                (P.RESPONSE_BODY_RING, 65536), (P.RESPONSE_BODY_RING, 85536)]
            assert r.frames[1][4] is False and r.outcome == P.OUTCOME_OK
            assert [f[5] for f in r.frames[:2]] == pieces[5:]
            assert gw.ring.w2g_bytes(65536, 20000) == pieces[5]
            assert gw.ring.w2g_bytes(40000, 20000) == pieces[2]  # released, but not yet reused

    run(loop_name, main())


def sending(pieces: list) -> Any:
    """An app that answers 200 with ``pieces`` as its body messages, one after the other."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        for i, piece in enumerate(pieces):
            await send({"type": "http.response.body", "body": piece, "more_body": i < len(pieces) - 1})

    return app


def test_response_waits_for_room_the_gateway_releases(loop_name: str, monkeypatch: Any) -> None:
    # R = 65536: five 40000-byte pieces in a row do not fit together. Each piece that finds the ring
    # full waits until frames come from the gateway (here a PING, sent after the gateway read and
    # released the previous piece) instead of going inline; the give-up timer and the looks at the
    # release mark are 5 s apart, so only the gateway's frame can have woken it.
    monkeypatch.setattr(connection_module, "RING_WAIT", 5.0)
    monkeypatch.setattr(connection_module, "RING_POLL", 5.0)  # (only frames wake)
    pieces = [pattern(40000, 20 + i) for i in range(5)]

    app = sending(pieces)

    async def main() -> None:
        async with FakeGateway(app, ring=65536, window=1 << 20) as gw:
            gw.request(1)
            started = asyncio.get_running_loop().time()
            frames = [await gw.next_frame(1) for _ in range(2)]  # the start, the first piece
            for token in range(1, 5):
                gw.ping(token)  # after the gateway released what it read: the worker wakes
                frames.append(await gw.next_frame(1))
            assert [f[0] for f in frames] == [P.RESPONSE_START] + [P.RESPONSE_BODY_RING] * 5
            assert [f[5] for f in frames[1:]] == pieces
            assert asyncio.get_running_loop().time() - started < 2.5  # not the 5 s give-up timer

    run(loop_name, main())


def test_response_waits_on_through_frames_that_release_nothing(loop_name: str, monkeypatch: Any) -> None:
    # R = 65536, nothing auto-released: the second 40000-byte piece finds the ring full. A frame from
    # the gateway that releases nothing (a PING) does not send it inline: it waits on until the
    # release, then goes into the ring.
    monkeypatch.setattr(connection_module, "RING_WAIT", 5.0)
    monkeypatch.setattr(connection_module, "RING_POLL", 5.0)  # (only frames wake)
    pieces = [pattern(40000, 40 + i) for i in range(2)]

    app = sending(pieces)

    async def main() -> None:
        async with FakeGateway(app, ring=65536, window=1 << 20, auto_release=False) as gw:
            gw.request(1)
            frames = [await gw.next_frame(1) for _ in range(2)]  # the start, the first piece
            for token in range(1, 4):
                gw.ping(token)
                assert (await gw.read_frame())[:3] == (P.PONG, 0, token)  # and no piece inline
                await gw.expect_silence(0.05)
            gw.ring.release_w2g(40000)
            gw.ping(4)
            frames.append(await gw.next_frame(1))
            assert [f[0] for f in frames] == [P.RESPONSE_START, P.RESPONSE_BODY_RING, P.RESPONSE_BODY_RING]
            assert [(f[2], f[5]) for f in frames[1:]] == [(0, pieces[0]), (65536, pieces[1])]

    run(loop_name, main())


def first_then_gated(first: bytes, later: dict, go: dict) -> Any:
    """An app for requests to /s/<sid>: stream 1 answers ``first`` at once, every other stream
    answers ``later[sid]`` once ``go[sid]`` is set."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        sid = int(scope["path"].rsplit("/", 1)[1])
        await send({"type": "http.response.start", "status": 200})
        if sid == 1:
            await send({"type": "http.response.body", "body": first})
        else:
            await go[sid].wait()
            await send({"type": "http.response.body", "body": later[sid]})

    return app


async def start_three(gw: FakeGateway) -> None:
    """Requests /s/1, /s/2 and /s/3 (first_then_gated): stream 1 answers with its ring piece, 2 and
    3 start their responses."""
    for sid in (1, 2, 3):
        gw.request(sid, path=f"/s/{sid}")
    r1 = await gw.response(1)
    assert [f[0] for f in r1.frames[:2]] == [P.RESPONSE_START, P.RESPONSE_BODY_RING]
    for sid in (2, 3):
        assert (await gw.next_frame(sid))[0] == P.RESPONSE_START


def test_response_pieces_waiting_for_room_wake_in_order(loop_name: str, monkeypatch: Any) -> None:
    # R = 65536, nothing auto-released. Stream 1 fills the ring with 60000 bytes; streams 2 and 3
    # then wait with 30000-byte pieces, in that order. Room for one of them wakes stream 2 only;
    # room for the other wakes stream 3. Neither goes inline.
    monkeypatch.setattr(connection_module, "RING_WAIT", 5.0)
    monkeypatch.setattr(connection_module, "RING_POLL", 5.0)  # (only frames wake)
    first = pattern(60000, 50)
    later = {2: pattern(30000, 52), 3: pattern(30000, 53)}
    go = {2: asyncio.Event(), 3: asyncio.Event()}
    app = first_then_gated(first, later, go)

    async def main() -> None:
        async with FakeGateway(app, ring=65536, window=1 << 20, auto_release=False) as gw:
            await start_three(gw)
            for sid in (2, 3):
                go[sid].set()
                await asyncio.sleep(0.02)  # stream 2's piece waits first
            await gw.expect_silence(0.05)  # both waiting for room, not inline
            gw.ring.release_w2g(30000)  # room for one piece (at 65536: it does not fit at 60000)
            gw.ping(1)
            assert (await gw.read_frame())[:3] == (P.PONG, 0, 1)
            frame = await gw.next_frame(2)
            assert (frame[0], frame[2], frame[5]) == (P.RESPONSE_BODY_RING, 65536, later[2])
            assert (await gw.next_frame(2))[0] == P.END
            await gw.expect_silence(0.05)  # stream 3 still waits
            gw.ring.release_w2g(60000)  # stream 1's piece: room for the other
            gw.ping(2)
            assert (await gw.read_frame())[:3] == (P.PONG, 0, 2)
            frame = await gw.next_frame(3)
            assert (frame[0], frame[2], frame[5]) == (P.RESPONSE_BODY_RING, 95536, later[3])

    run(loop_name, main())


def test_new_response_waits_behind_waiting_pieces(loop_name: str, monkeypatch: Any) -> None:
    # R = 65536, nothing auto-released. Stream 1 fills the ring with 60000 bytes; stream 2's
    # 30000-byte piece waits. The gateway then releases everything, but sends no frame yet: stream
    # 3's first piece (20000 bytes) would fit, and still waits behind stream 2's (a stream of new
    # responses must not starve the waiting ones). The next frame wakes both, in order.
    monkeypatch.setattr(connection_module, "RING_WAIT", 5.0)
    monkeypatch.setattr(connection_module, "RING_POLL", 5.0)  # (only frames wake)
    first = pattern(60000, 60)
    later = {2: pattern(30000, 62), 3: pattern(20000, 63)}
    go = {2: asyncio.Event(), 3: asyncio.Event()}
    app = first_then_gated(first, later, go)

    async def main() -> None:
        async with FakeGateway(app, ring=65536, window=1 << 20, auto_release=False) as gw:
            await start_three(gw)
            go[2].set()
            await asyncio.sleep(0.02)
            await gw.expect_silence(0.05)  # stream 2 waits for room
            gw.ring.release_w2g(60000)  # room for both pieces, but no frame to say so yet
            go[3].set()
            await gw.expect_silence(0.1)  # stream 3's piece fits, and waits behind stream 2's
            gw.ping(1)
            assert (await gw.read_frame())[:3] == (P.PONG, 0, 1)
            frames = [await gw.read_frame() for _ in range(4)]  # both pieces and both ENDs
            ring = [(f[1], f[2], f[5]) for f in frames if f[0] == P.RESPONSE_BODY_RING]
            assert ring == [(2, 65536, later[2]), (3, 95536, later[3])]

    run(loop_name, main())


def test_woken_pieces_that_lose_their_room_wait_again_in_order(loop_name: str, monkeypatch: Any) -> None:
    # R = 65536, window 20000 (one piece per stream until CREDIT), nothing auto-released. Streams 1-3
    # fill the ring (0, 20000, 40000); streams 4 and 5 wait, in that order. One write from the
    # gateway releases 40000 and gives stream 1 CREDIT for two more pieces: the room it released
    # wakes 4 and 5, but stream 1 (woken first, by its CREDIT, and already in the ring) puts its two
    # pieces into that room. 4 and 5 wait again, still 4 before 5: room for one more piece goes to 4.
    monkeypatch.setattr(connection_module, "RING_WAIT", 5.0)
    monkeypatch.setattr(connection_module, "RING_POLL", 5.0)  # (only frames wake)
    piece = {sid: pattern(20000, 70 + sid) for sid in range(1, 6)}
    go = {sid: asyncio.Event() for sid in range(1, 6)}
    finish = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        sid = int(scope["path"].rsplit("/", 1)[1])
        await send({"type": "http.response.start", "status": 200})
        await go[sid].wait()
        for _ in range(3 if sid == 1 else 1):
            await send({"type": "http.response.body", "body": piece[sid], "more_body": True})
        await finish.wait()
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        async with FakeGateway(app, ring=65536, window=20000, auto_release=False) as gw:
            for sid in range(1, 6):
                gw.request(sid, path=f"/s/{sid}")
                assert (await gw.next_frame(sid))[0] == P.RESPONSE_START
            for sid in range(1, 4):
                go[sid].set()
                frame = await gw.next_frame(sid)
                assert (frame[0], frame[2]) == (P.RESPONSE_BODY_RING, (sid - 1) * 20000)
            for sid in (4, 5):
                go[sid].set()
                await asyncio.sleep(0.02)
            await gw.expect_silence(0.05)  # 4 and 5 wait for room
            gw.ring.release_w2g(40000)
            gw.credit(1, 40000)
            for position in (65536, 85536):
                frame = await gw.next_frame(1)
                assert (frame[0], frame[2]) == (P.RESPONSE_BODY_RING, position)
            await gw.expect_silence(0.05)  # 4 and 5 lost that room, and wait again
            gw.ring.release_w2g(60000)  # room for one more piece
            gw.ping(1)
            assert (await gw.read_frame())[:3] == (P.PONG, 0, 1)
            frame = await gw.read_frame()
            assert (frame[0], frame[1], frame[2]) == (P.RESPONSE_BODY_RING, 4, 105536)
            finish.set()
            gw.ring.release_w2g(125536)
            gw.ping(2)
            r5 = await gw.response(5)
            assert r5.body == piece[5] and r5.outcome == P.OUTCOME_OK

    run(loop_name, main())


def test_response_waiting_piece_sees_a_release_without_a_frame(loop_name: str, monkeypatch: Any) -> None:
    # R = 65536, nothing auto-released: the second 40000-byte piece finds the ring full. The gateway
    # then releases the first piece and sends nothing (it owes no frame for a release): a look at
    # the release mark (every RING_POLL) puts the piece into the ring, long before RING_WAIT would
    # send it inline.
    monkeypatch.setattr(connection_module, "RING_WAIT", 5.0)
    monkeypatch.setattr(connection_module, "RING_POLL", 0.01)
    pieces = [pattern(40000, 90 + i) for i in range(2)]

    app = sending(pieces)

    async def main() -> None:
        async with FakeGateway(app, ring=65536, window=1 << 20, auto_release=False) as gw:
            gw.request(1)
            frames = [await gw.next_frame(1) for _ in range(2)]  # the start, the first piece
            await gw.expect_silence(0.1)  # the second waits through its looks: no room yet
            gw.ring.release_w2g(40000)
            started = asyncio.get_running_loop().time()
            frames.append(await gw.next_frame(1))
            assert asyncio.get_running_loop().time() - started < 2.5  # a look, not the give-up
            assert [f[0] for f in frames] == [P.RESPONSE_START, P.RESPONSE_BODY_RING, P.RESPONSE_BODY_RING]
            assert [(f[2], f[5]) for f in frames[1:]] == [(0, pieces[0]), (65536, pieces[1])]
            assert (await gw.next_frame(1))[:3] == (P.END, 1, P.OUTCOME_OK)

    run(loop_name, main())


def test_response_ring_wait_gives_up_inline(loop_name: str, monkeypatch: Any) -> None:
    # The gateway releases nothing and sends nothing: the looks at the release mark find no room,
    # and after RING_WAIT the piece goes inline.
    monkeypatch.setattr(connection_module, "RING_WAIT", 0.05)
    monkeypatch.setattr(connection_module, "RING_POLL", 0.01)
    pieces = [pattern(40000, 30 + i) for i in range(2)]

    app = sending(pieces)

    async def main() -> None:
        async with FakeGateway(app, ring=65536, window=1 << 20, auto_release=False) as gw:
            gw.request(1)
            r = await gw.response(1)
            assert kinds(r)[:3] == ["RESPONSE_START", "RESPONSE_BODY_RING", "RESPONSE_BODY"]
            assert r.body == b"".join(pieces) and r.outcome == P.OUTCOME_OK

    run(loop_name, main())


def test_response_ring_with_early_hint_and_trailers(loop_name: str) -> None:
    body = pattern(50000, 8)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.early_hint", "links": [b"</a.css>; rel=preload"]})
        await send({"type": "http.response.body", "body": body})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]})

    async def main() -> None:
        async with FakeGateway(app, ring=65536) as gw:
            gw.request(1, flags=P.FLAG_EARLY_HINTS | P.FLAG_TRAILERS_ALLOWED)
            r = await collect(gw, 1)
            assert kinds(r) == ["EARLY_HINT", "RESPONSE_START", "RESPONSE_BODY_RING", "RESPONSE_TRAILERS", "END"]
            assert r.frames[1][4:] == (P.FLAG_TRAILERS, b"", True)
            assert r.body == body and r.outcome == P.OUTCOME_OK

    run(loop_name, main())


def test_concurrent_streams_share_the_ring(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        i = int(scope["path"][1:])
        await send({"type": "http.response.start", "status": 200})
        for k in range(4):
            await asyncio.sleep(0)
            await send({"type": "http.response.body", "body": pattern(30000 + i, i * 10 + k), "more_body": k < 3})

    async def main() -> None:
        async with FakeGateway(app, ring=1 << 20, window=1 << 20) as gw:
            for i in range(1, 9):
                gw.request(i, path=f"/{i}")
            for i in range(1, 9):
                r = await gw.response(i)
                assert r.body == b"".join(pattern(30000 + i, i * 10 + k) for k in range(4))
            positions = [p for p, _ in gw.ring.taken]
            assert positions == sorted(positions) and len(positions) == 32

    run(loop_name, main())


def test_websocket_messages_stay_inline_denial_body_may_use_ring(loop_name: str) -> None:
    message = pattern(100000, 3)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/deny":
            await send({"type": "websocket.http.response.start", "status": 403})
            await send({"type": "websocket.http.response.body", "body": message})
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "bytes": message})
        await send({"type": "websocket.close"})

    async def main() -> None:
        async with FakeGateway(app, ring=1 << 20) as gw:
            gw.ws_connect(1)
            r = await gw.response(1)
            assert kinds(r) == ["WS_ACCEPT", "WS_SEND", "WS_CLOSE", "END"] and r.frames[1][2] == message
            gw.ws_connect(2, path="/deny")
            r = await gw.response(2)
            assert kinds(r) == ["RESPONSE_START", "RESPONSE_BODY_RING", "END"] and r.body == message

    run(loop_name, main())


# -- the ring file -----------------------------------------------------------------------------------


def memfd(size: int) -> int:
    """A memfd of ``size`` bytes (not mapped)."""
    fd = os.memfd_create("test-bad-ring")
    os.ftruncate(fd, size)
    return fd


@pytest.mark.parametrize("size", [65536, 65536 + 4096, 1 << 20])
def test_ring_sizes_accepted(size: int) -> None:
    assert ring_size(HEADER + 2 * size) == size
    g = GatewayRing(size)
    try:
        ring = g.worker_ring()
        assert ring.size == size
        # The worker's descriptor was closed after mapping: only the test's own remains.
        ring.close()
    finally:
        g.close()


@pytest.mark.parametrize("file_size", [
    0, 4096, 2 * 65536, HEADER + 2 * 61440, HEADER + 2 * 65536 + 1, HEADER + 2 * (65536 + 1024), HEADER + 2 * 65536 - 2,
])
def test_bad_ring_file_runs_without_ring(file_size: int, caplog: pytest.LogCaptureFixture) -> None:
    fd = memfd(file_size)
    try:
        with pytest.raises(RingError, match="size"):
            Ring.from_fd(fd)
        with caplog.at_level(logging.WARNING):
            assert map_ring(fd) is None
        assert f"cannot use the body ring (--ring-fd {fd})" in caplog.text and "running without it" in caplog.text
    finally:
        os.close(fd)  # (left open by the worker: it is not a ring)


def test_ring_fd_not_open_or_not_a_file(caplog: pytest.LogCaptureFixture) -> None:
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(RingError, match="not a regular file"):
        Ring.from_fd(r)
    os.close(r)
    with pytest.raises(RingError, match="Bad file descriptor"):
        Ring.from_fd(r)
    with caplog.at_level(logging.WARNING):
        assert map_ring(r) is None
    assert f"cannot use the body ring (--ring-fd {r}): descriptor {r}: Bad file descriptor" in caplog.text


def test_ring_put_take_marks() -> None:
    g = GatewayRing(65536)
    ring = g.worker_ring()
    try:
        # W→G: positions, skips, the gateway's mark.
        assert ring.put(pattern(40000, 1)) == 0
        assert ring.put(pattern(20000, 2)) == 40000
        assert ring.put(pattern(10000, 3)) == -1  # would skip to 65536: 75536 - 0 > R
        g.release_w2g(40000)
        assert ring.w2g_released == 40000
        assert ring.put(pattern(10000, 3)) == 65536
        assert g.w2g_bytes(65536, 10000) == pattern(10000, 3) and g.w2g_bytes(40000, 20000) == pattern(20000, 2)
        assert ring.put(pattern(65536 - 10000 + 1, 4)) == -1  # would skip to 131072: over unreleased bytes
        # G→W: bytes and the worker's mark.
        assert g.put(pattern(30000, 5)) == 0
        assert ring.take(0, 30000, 65536) == pattern(30000, 5)
        assert g.g2w_released == ring.g2w_released == 30000
        with pytest.raises(P.ProtocolError):
            ring.take(0, 30000, 65536)  # before the previous end
        assert g.g2w_released == 30000
    finally:
        ring.close()
        g.close()


# -- idle trimming of the W→G area -------------------------------------------------------------------
#
# What is measured: the pages the ring file holds (GatewayRing.allocated: the memfd's st_blocks, exact
# to the page for a shmem file, whoever touched the pages, and it drops as soon as MADV_REMOVE punches a
# hole), and the area's bytes read from the file with pread (which, unlike a read through a mapping,
# does not fill a hole with a fresh page). The header's page holds the marks: HEADER bytes whenever the
# gateway has released something.


def area_after(pieces: List[Tuple[int, bytes]], size: int) -> bytes:
    """The W→G area's bytes after ``pieces`` ((position, bytes)) were written in this order."""
    area = bytearray(size)
    for position, piece in pieces:
        start = position % size
        area[start : start + len(piece)] = piece
    return bytes(area)


def test_ring_trim_if_idle() -> None:
    size = 4 * 65536
    g = GatewayRing(size)
    ring = g.worker_ring()
    try:
        assert ring.can_trim and ring.trims == 0
        assert not ring.trim_if_idle() and not ring.trim_if_idle()  # never written: nothing to give back
        assert g.allocated() == 0
        # Six 65536-byte pieces (1.5 laps: every page of the area), each released once put; the calls
        # in between see a put since the previous call every time: no trim while puts keep coming.
        written = []
        for i in range(6):
            piece = pattern(65536, i)
            position = ring.put(piece)
            assert position == i * 65536
            written.append((position, piece))
            g.release_w2g(position + len(piece))
            assert ring.w2g_released == position + len(piece)  # everything released...
            assert not ring.trim_if_idle()  # ...but a piece was put since the previous call
        assert g.allocated() == HEADER + size
        # A seventh piece, not released: no trim however long the ring stays idle.
        piece = pattern(30000, 6)
        assert ring.put(piece) == 6 * 65536
        written.append((6 * 65536, piece))
        end = 6 * 65536 + 30000
        for _ in range(3):
            assert not ring.trim_if_idle()
        assert g.allocated() == HEADER + size and ring.trims == 0
        assert g.w2g_area() == area_after(written, size)  # intact
        # Released up to one byte short of the head: still nothing.
        g.release_w2g(end - 1)
        assert not ring.trim_if_idle()
        # Everything released, nothing put since the previous call: the area's pages go.
        g.release_w2g(end)
        assert ring.trim_if_idle() and ring.trims == 1
        assert g.allocated() == HEADER  # only the marks' page is left
        assert g.w2g_area() == bytes(size)  # (released bytes, which the gateway never reads)
        assert g.allocated() == HEADER
        # Idle and already trimmed: no madvise again.
        for _ in range(3):
            assert not ring.trim_if_idle()
        assert ring.trims == 1
        # The positions go on from the head; the new piece lands in fresh pages, intact.
        piece = pattern(50000, 7)
        assert ring.put(piece) == end
        assert g.w2g_bytes(end, 50000) == piece
        assert g.allocated() == HEADER + 13 * 4096  # area bytes 30000..79999: pages 7..19
        g.release_w2g(end + 50000)
        assert not ring.trim_if_idle()  # put since the previous call
        assert ring.trim_if_idle() and ring.trims == 2 and g.allocated() == HEADER
        # The G→W area is not the worker's to trim.
        assert g.put(pattern(70000, 8)) == 0
        assert ring.take(0, 70000, 1 << 20) == pattern(70000, 8)
        assert not ring.trim_if_idle()
        assert g.allocated() == HEADER + 18 * 4096
    finally:
        ring.close()
        g.close()


class _NoMadvise:
    """Stands for a ring's mmap whose madvise fails (as it does where MADV_REMOVE is not supported)."""

    def __init__(self, mm: Any) -> None:
        self.mm = mm
        self.calls = 0

    def __setitem__(self, key: Any, value: Any) -> None:
        self.mm[key] = value

    def madvise(self, *args: Any) -> None:
        self.calls += 1
        raise OSError(22, "Invalid argument")


def test_ring_trim_madvise_failure_logged_once_then_off(caplog: pytest.LogCaptureFixture) -> None:
    g = GatewayRing(65536)
    ring = g.worker_ring()
    mm = ring._mm
    fake = ring._mm = _NoMadvise(mm)
    try:
        with caplog.at_level(logging.DEBUG, logger="python_worker.ring"):
            for i in range(3):
                position = ring.put(pattern(20000, i))
                g.release_w2g(position + 20000)
                assert not ring.trim_if_idle()  # put since the previous call
                assert not ring.trim_if_idle()  # idle: tries (once), then no more
        assert fake.calls == 1 and not ring.can_trim and ring.trims == 0
        records = [r for r in caplog.records if r.name == "python_worker.ring"]
        assert len(records) == 1 and records[0].levelno == logging.DEBUG
        assert "MADV_REMOVE" in records[0].getMessage() and "not trying again" in records[0].getMessage()
        assert g.w2g_bytes(40000, 20000) == pattern(20000, 2)  # the ring itself works on
    finally:
        ring._mm = mm
        ring.close()
        g.close()


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_idle_ring_gives_its_pages_back(loop_name: str) -> None:
    # R = 256 KiB, six 64 KiB pieces (1.5 laps: every page of the area). The gateway releases each
    # piece only once it has read the next one, so the mark stays below the head until the test
    # releases the last piece: no trim can happen before, whatever the timing.
    size = 4 * 65536
    interval = 0.05
    pieces = [pattern(65536, i) for i in range(6)] + [pattern(50000, 6), pattern(20000, 7)]

    async def main() -> None:
        go: asyncio.Queue = asyncio.Queue()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200})
            n = int(scope["path"][1:])
            for i in range(n):
                await send({"type": "http.response.body", "body": await go.get(), "more_body": i < n - 1})

        async with FakeGateway(app, ring=size, window=1 << 20, auto_release=False,
                               ring_trim_interval=interval) as gw:
            g = gw.ring
            assert gw.conn._ring_trim_timer is not None
            gw.request(1, path="/6")
            assert await gw.next_frame(1) == (P.RESPONSE_START, 1, 200, (), P.FLAG_NO_BODY_YET, b"", True)
            written = []
            for piece in pieces[:6]:
                go.put_nowait(piece)
                f = await gw.next_frame(1)
                assert f[:4] == (P.RESPONSE_BODY_RING, 1, len(written) * 65536, 65536) and f[5] == piece
                if written:
                    g.release_w2g(written[-1][0] + 65536)
                written.append((f[2], piece))
            assert (await gw.next_frame(1))[:3] == (P.END, 1, P.OUTCOME_OK)
            end = 6 * 65536
            assert g.allocated() == HEADER + size  # every page of the area, and the marks' page
            # Unreleased bytes remain (the last piece): nothing goes, however long it stays idle.
            await asyncio.sleep(8 * interval)
            assert gw.conn.ring.trims == 0 and g.allocated() == HEADER + size
            assert g.w2g_area() == area_after(written, size)
            # All released: given back within two intervals, once.
            g.release_w2g(end)
            await _until(lambda: g.allocated() == HEADER)
            assert gw.conn.ring.trims == 1 and g.w2g_area() == bytes(size)
            await asyncio.sleep(4 * interval)
            assert gw.conn.ring.trims == 1 and g.allocated() == HEADER
            # The next response: positions go on from the head, the bodies arrive intact.
            gw.request(2, path="/2")
            assert (await gw.next_frame(2))[0] == P.RESPONSE_START
            go.put_nowait(pieces[6])
            f = await gw.next_frame(2)
            assert f[:4] == (P.RESPONSE_BODY_RING, 2, end, 50000) and f[5] == pieces[6]
            g.release_w2g(end + 50000)
            go.put_nowait(pieces[7])
            f = await gw.next_frame(2)
            assert f[:5] == (P.RESPONSE_BODY_RING, 2, end + 50000, 20000, False) and f[5] == pieces[7]
            assert (await gw.next_frame(2))[:3] == (P.END, 2, P.OUTCOME_OK)
            assert g.w2g_bytes(end, 70000) == pieces[6] + pieces[7]
            g.release_w2g(end + 70000)
            await _until(lambda: g.allocated() == HEADER)
            assert gw.conn.ring.trims == 2
        assert gw.conn._ring_trim_timer is None and gw.conn.ring is None  # gone with the connection

    run(loop_name, main())


def test_no_trim_while_puts_keep_coming(loop_name: str) -> None:
    # A piece every 20 ms, each released as soon as read: the gateway's mark is often the head when the
    # timer fires (every 100 ms), but a piece was always put since the previous check. (Deterministic:
    # the app's sleep is shorter than the interval, so its next step runs between two checks.)
    interval = 0.1
    pieces = [pattern(20000, i) for i in range(40)]
    trims: List[int] = []

    async def main() -> None:
        gateways: List[FakeGateway] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            ring = gateways[0].conn.ring
            await send({"type": "http.response.start", "status": 200})
            for i, piece in enumerate(pieces):
                await asyncio.sleep(0.02)
                trims.append(ring.trims)
                await send({"type": "http.response.body", "body": piece, "more_body": i < len(pieces) - 1})

        async with FakeGateway(app, ring=4 * 65536, window=1 << 20, ring_trim_interval=interval) as gw:
            gateways.append(gw)
            started = time.monotonic()
            gw.request(1)
            r = await collect(gw, 1)
            assert time.monotonic() - started > 5 * interval
            assert r.body == b"".join(pieces) and r.outcome == P.OUTCOME_OK
            assert kinds(r).count("RESPONSE_BODY_RING") == len(pieces)
            assert trims == [0] * len(pieces)
            # Idle now: the timer was alive all along.
            await _until(lambda: gw.ring.allocated() == HEADER)
            assert gw.conn.ring.trims == 1

    run(loop_name, main())


def test_no_trim_timer_without_ring(loop_name: str) -> None:
    async def main() -> None:
        async with FakeGateway(digest_app, ring=65536, hello_ring=None, ring_trim_interval=0.01) as gw:
            assert gw.conn.ring is None and gw.conn._ring_trim_timer is None
        async with FakeGateway(digest_app, ring_trim_interval=0.01) as gw:
            assert gw.conn._ring_trim_timer is None
        async with FakeGateway(digest_app, ring=65536, ring_trim_interval=0) as gw:  # 0: never trimmed
            assert gw.conn.ring is not None and gw.conn._ring_trim_timer is None

    run(loop_name, main())


# -- a worker process given a memfd ------------------------------------------------------------------

ECHO_APP = """
async def app(scope, receive, send):
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": body})
"""


@pytest.fixture
def listener() -> Iterator[Tuple[socket.socket, str]]:
    d = tempfile.mkdtemp(prefix="pwr", dir="/tmp")  # short: AF_UNIX paths are limited to ~107 bytes
    path = os.path.join(d, "gw.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    s.settimeout(20)
    with open(os.path.join(d, "echoapp.py"), "w") as f:
        f.write(textwrap.dedent(ECHO_APP))
    try:
        yield s, path
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)


def spawn(sock_path: str, *args: str, pass_fds: Tuple[int, ...] = ()) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PROJECT_DIR, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "python_worker", "--socket", sock_path, "--app", "echoapp:app", *args],
        cwd=os.path.dirname(sock_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        pass_fds=pass_fds,
    )


def recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def read_frame(conn: socket.socket) -> tuple:
    return P.decode(recv_exact(conn, int.from_bytes(recv_exact(conn, 4), "big")))


def finish(conn: socket.socket, proc: subprocess.Popen) -> str:
    """Close the connection; the worker's stderr after it exits (status 0)."""
    conn.close()
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def test_worker_process_with_ring(listener: Tuple[socket.socket, str]) -> None:
    sock, path = listener
    size = 1 << 20
    g = GatewayRing(size)
    try:
        proc = spawn(path, "--ring-fd", str(g.fd), "--log-level", "debug", pass_fds=(g.fd,))
        conn, _ = sock.accept()
        try:
            hello = read_frame(conn)
            assert hello[0] == P.W_HELLO and hello[2]["features"] == ("ring", "small-window")
            conn.sendall(P.encode([P.HELLO, 0, {"protocol": 1, "pid": os.getpid(), "window": size, "ring": size}]))
            body = pattern(300000, 12)
            position = g.put(body)
            assert position == 0
            conn.sendall(P.encode([P.HTTP_REQUEST, 1, "1.1", "POST", "http", "/", b"/", b"", "", [], None, None,
                                   0, b"", True]) + P.encode([P.REQUEST_BODY_RING, 1, 0, len(body), False]))
            frames = []
            while True:
                f = read_frame(conn)
                frames.append(f)
                if f[0] == P.END:
                    break
            assert [f[0] for f in frames] == [P.RESPONSE_START, P.RESPONSE_BODY_RING, P.END]
            assert frames[1][1:] == (1, 0, len(body), False)
            assert g.w2g_bytes(0, len(body)) == body
            deadline = time.monotonic() + 5
            while g.g2w_released != len(body) and time.monotonic() < deadline:  # (set before the response)
                time.sleep(0.01)
            assert g.g2w_released == len(body)
            # Idle trimming with the default interval (1 s): once the gateway has released the response
            # body, the worker gives the W→G area's pages back within about two seconds. The file then
            # holds the marks' page and the request body's pages (G→W) only.
            pages = -(-len(body) // 4096) * 4096
            assert g.allocated() == HEADER + 2 * pages
            g.release_w2g(len(body))
            deadline = time.monotonic() + 10
            while g.allocated() != HEADER + pages and time.monotonic() < deadline:
                time.sleep(0.02)
            assert g.allocated() == HEADER + pages
            assert g.w2g_area() == bytes(size)
        finally:
            err = finish(conn, proc)
        assert "body ring mapped: 1048576 bytes per direction" in err
        assert "body ring 1048576" in err  # the connection uses it
        assert "body ring idle: the response area's pages were given back" in err
    finally:
        g.close()


@pytest.mark.parametrize("case", ["not open", "wrong size"])
def test_worker_process_with_bad_ring_fd(listener: Tuple[socket.socket, str], case: str) -> None:
    sock, path = listener
    bad = memfd(HEADER + 2 * 65536 + 4096)
    try:
        fd = 987 if case == "not open" else bad
        proc = spawn(path, "--ring-fd", str(fd), pass_fds=(bad,) if case == "wrong size" else ())
        conn, _ = sock.accept()
        try:
            hello = read_frame(conn)
            assert hello[0] == P.W_HELLO and hello[2]["features"] == ("small-window",)
            conn.sendall(P.encode([P.HELLO, 0, {"protocol": 1, "pid": os.getpid(), "ring": 65536}]))
            conn.sendall(P.encode([P.HTTP_REQUEST, 1, "1.1", "POST", "http", "/", b"/", b"", "", [], None, None,
                                   0, pattern(MIN_PIECE), False]))
            frames = [read_frame(conn), read_frame(conn)]
            assert frames[0][0] == P.RESPONSE_START and frames[0][5] == pattern(MIN_PIECE)  # inline
            assert frames[1][0] == P.END
        finally:
            err = finish(conn, proc)
        assert f"WARNING [python_worker.worker] cannot use the body ring (--ring-fd {fd})" in err
        assert "running without it" in err
        assert ("Bad file descriptor" if case == "not open" else "is not 4096 + 2R") in err
    finally:
        os.close(bad)


def test_ring_fd_option_parsed() -> None:
    from python_worker.__main__ import parse_args

    assert parse_args(["--socket", "s", "--app", "a:b"]).ring_fd is None
    assert parse_args(["--socket", "s", "--app", "a:b", "--ring-fd", "3"]).ring_fd == 3

