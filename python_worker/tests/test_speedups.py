"""The C decoder (python_worker._speedups.decode_fast) against the Python one (protocol.decode_py).

decode_fast must return exactly what decode_py returns (the same values of the same types, nested)
for every payload it accepts, and None for every other, so that the Python code decides (and words
its errors). Checked on the shared vectors, on the hot-path frames built field by field, and on
many thousand mutations of them (bytes changed, cut, added; fields given other msgpack types and
encodings). The worker's build (``make venv``) compiles the module: its absence is a failure here.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import random
import subprocess
import sys
from typing import Any, List, Optional, Tuple

import msgpack
import pytest

from python_worker import protocol as P
from python_worker.cycle import RequestCycle

try:
    from python_worker._speedups import decode_fast
except ImportError:  # pragma: no cover - reported by test_module_is_built
    decode_fast = None

VECTORS = json.loads(
    (pathlib.Path(__file__).resolve().parents[2] / "protocol" / "testdata" / "vectors.json").read_text())

needs_module = pytest.mark.skipif(decode_fast is None or P.speedups is None,
                                  reason="python_worker._speedups is not built, or PYTHON_WORKER_PURE turns it off")


@pytest.mark.skipif(P.speedups is None and decode_fast is not None, reason="PYTHON_WORKER_PURE turns the module off")
def test_module_is_built() -> None:
    assert decode_fast is not None, (
        "python_worker._speedups was not compiled (make venv builds it with the C compiler; "
        "pip prints why it failed)")
    assert P.decode_fast is decode_fast


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def same(a: Any, b: Any) -> bool:
    """Equal values of identical types, all the way down (1 == True, but not here)."""
    if type(a) is not type(b):
        return False
    if type(a) is tuple:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def py_result(payload: bytes) -> Optional[tuple]:
    try:
        return P.decode_py(payload)
    except P.ProtocolError:
        return None


def check(payload: bytes) -> Optional[tuple]:
    """decode_fast(payload) agrees with decode_py; returns decode_fast's result."""
    assert decode_fast is not None
    fast = decode_fast(payload)
    if fast is not None:
        expected = py_result(payload)
        assert expected is not None, f"decode_fast accepted {payload.hex()}, which decode_py refuses"
        assert same(fast, expected), (payload.hex(), fast, expected)
        assert same(decode_fast(memoryview(payload)), fast)
        padded = b"\xc1" * 3 + payload + b"\x00" * 2  # the same payload inside a larger buffer
        assert same(decode_fast(padded, 3, 3 + len(payload)), fast)
    return fast


HEADERS = [[b"host", b"example.com"], [b"accept", b"*/*"]]


def http_request(**over: Any) -> List[Any]:
    fields = dict(sid=7, hv="1.1", method="GET", scheme="http", path="/a b", raw_path=b"/a%20b", qs=b"x=1",
                  root_path="", headers=HEADERS, client=["127.0.0.1", 50000], server=["127.0.0.1", 8000],
                  flags=0, body=b"", more=False)
    fields.update(over)
    return [P.HTTP_REQUEST, *fields.values()]


# One of each hot-path frame, as the gateway sends them.
HOT = [
    http_request(),
    http_request(sid=0xFFFFFFFF, method="POST", body=b"x" * 300, more=True, flags=1 | 2 | 4 | 8 | 32),
    http_request(client=None, server=None, headers=[]),
    http_request(server=["/tmp/s.sock", None], path="/é", headers=[[b"a", b""]] * 20),
    [P.REQUEST_BODY, 1, b"chunk", True],
    [P.REQUEST_BODY, 2, b"y" * 70000, False],
    [P.REQUEST_BODY_RING, 3, 0, 65536, True],
    [P.REQUEST_BODY_RING, 3, 2**64 - 1, 0, False],
    [P.WS_RECEIVE, 4, b"\x00\xff" * 600],
    [P.WS_RECEIVE, 4, "text ✓"],
    [P.CREDIT, 5, 262144],
    [P.CREDIT, 5, 2**64 - 1],
]


@needs_module
@pytest.mark.parametrize("frame", HOT, ids=[f"{P.FRAME_NAMES[f[0]]}-{i}" for i, f in enumerate(HOT)])
def test_hot_frames_take_the_fast_path(frame: List[Any]) -> None:
    fast = check(pack(frame))
    assert fast is not None, "a hot-path frame was left to the Python decoder"


@needs_module
@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vectors_agree(vector: dict) -> None:
    payload = bytes.fromhex(vector["hex"])[4:]
    fast = check(payload)
    if "malformed" in vector:
        assert fast is None
    elif vector["value"][0] in (P.HTTP_REQUEST, P.REQUEST_BODY, P.REQUEST_BODY_RING, P.WS_RECEIVE, P.CREDIT) and not (
        vector["value"][0] == P.HTTP_REQUEST and len(vector["value"]) == 16
    ):
        assert fast is not None, "a hot-path vector was left to the Python decoder"


# Values of other types and other encodings of the same value, for any field.
def other_values(rng: random.Random) -> Any:
    return rng.choice([
        None, True, False, 0, 1, -1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, 2**64 - 1, -(2**63),
        1.5, "", "x", "ab", b"", b"ab", b"\xc4", [], ["a", 1], ["a", None], [b"a", b"b"], [[b"a", b"b"]],
        [[b"a", "b"]], [[b"a"]], {"a": 1}, {}, [[[b"a", b"b"]]], "\u00e9",
    ])


# Other encodings of integers the packer would write in the shortest form (all are valid msgpack).
def int_encodings(v: int) -> List[bytes]:
    out = [pack(v)]
    if 0 <= v <= 0xFF:
        out.append(b"\xcc" + v.to_bytes(1, "big"))
    if 0 <= v <= 0xFFFF:
        out.append(b"\xcd" + v.to_bytes(2, "big"))
    if 0 <= v <= 0xFFFFFFFF:
        out.append(b"\xce" + v.to_bytes(4, "big"))
    if 0 <= v < 2**64:
        out.append(b"\xcf" + v.to_bytes(8, "big"))
    if -(2**7) <= v < 2**7:
        out.append(b"\xd0" + v.to_bytes(1, "big", signed=True))
    if -(2**63) <= v < 2**63:
        out.append(b"\xd3" + v.to_bytes(8, "big", signed=True))
    return out


def mutations(rng: random.Random, frame: List[Any]) -> List[bytes]:
    payload = pack(frame)
    out: List[bytes] = []
    for _ in range(40):  # a field replaced
        f = list(frame)
        f[rng.randrange(len(f))] = other_values(rng)
        out.append(pack(f))
    for _ in range(40):  # bytes changed, cut off, added
        b = bytearray(payload)
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        out.append(bytes(b))
        out.append(payload[: rng.randrange(len(payload))])
        out.append(payload + bytes([rng.randrange(256)]))
    out.append(pack(frame[:-1]))
    out.append(pack(frame + [None]))
    # the array header as array16 and array32 (valid, not canonical)
    n = len(frame)
    body = payload[1:] if n < 16 else payload[3:]
    out.append(b"\xdc" + n.to_bytes(2, "big") + body)
    out.append(b"\xdd" + n.to_bytes(4, "big") + body)
    # the type and the stream id in every integer encoding
    rest = b"".join(pack(x) for x in frame[2:])
    for t in int_encodings(frame[0]):
        for sid in int_encodings(frame[1]):
            out.append(payload[:1] + t + sid + rest)
    # str as str8/str16, bin as bin16/bin32 for the third field
    third = frame[2]
    head = payload[:1] + pack(frame[0]) + pack(frame[1])
    tail = b"".join(pack(x) for x in frame[3:])
    if isinstance(third, str):
        raw = third.encode()
        out.append(head + b"\xd9" + len(raw).to_bytes(1, "big") + raw + tail)
        out.append(head + b"\xda" + len(raw).to_bytes(2, "big") + raw + tail)
        out.append(head + b"\xa2\xed\xa0" + tail)  # a lone surrogate: not UTF-8
    elif isinstance(third, bytes) and len(third) < 256:
        out.append(head + b"\xc5" + len(third).to_bytes(2, "big") + third + tail)
        out.append(head + b"\xc6" + len(third).to_bytes(4, "big") + third + tail)
    return out


@needs_module
def test_mutations_agree() -> None:
    rng = random.Random(20261207)
    accepted = refused = 0
    for frame in HOT:
        for payload in mutations(rng, frame):
            if check(payload) is None:
                refused += 1
            else:
                accepted += 1
    # Both outcomes happened (the test would prove nothing if either never did).
    assert accepted > 100 and refused > 1000, (accepted, refused)


@needs_module
def test_random_bytes_never_crash() -> None:
    rng = random.Random(7)
    for _ in range(20000):
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(24)))
        check(payload)
    for prefix in (b"\x9f", b"\xdc\xff\xff", b"\xdd\xff\xff\xff\xff", b"\x93\x08\x01\xc6\xff\xff\xff\xff"):
        assert decode_fast(prefix) is None  # counts and lengths beyond the buffer


@needs_module
def test_range_arguments() -> None:
    assert decode_fast is not None
    payload = pack([P.CREDIT, 1, 10])
    assert decode_fast(payload, 0, len(payload)) == (5, 1, 10)
    assert decode_fast(payload + b"\x00", 0, len(payload)) == (5, 1, 10)
    assert decode_fast(payload, 0, len(payload) - 1) is None
    assert decode_fast(b"", 0, 0) is None
    for bad in ((-1, 2), (3, 2), (len(payload) + 1, len(payload) + 1)):
        with pytest.raises(ValueError):
            decode_fast(payload, *bad)
    with pytest.raises(TypeError):
        decode_fast(payload, 0)
    with pytest.raises(TypeError):
        decode_fast("not a buffer")


def run_python(code: str, **env: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                          check=True)
    return proc.stdout.strip()


def test_pure_switch() -> None:
    code = "from python_worker import protocol as P; print(P.decode_fast is None, P.decode(b'\\x93\\x05\\x01\\x0a'))"
    assert run_python(code, PYTHON_WORKER_PURE="1") == "True (5, 1, 10)"
    if decode_fast is not None:
        assert run_python(code, PYTHON_WORKER_PURE="0") == "False (5, 1, 10)"


class BytesSub(bytes):
    pass


class TupleSub(tuple):
    pass


TCHAR = set(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def valid_field(name: bytes, value: bytes) -> bool:
    """RFC 9110: the name a token, the value without control characters but HTAB (written out here,
    not taken from cycle's regular expressions)."""
    return bool(name) and all(c in TCHAR for c in name) and all(c == 9 or (c >= 32 and c != 127) for c in value)


def plain(headers: Any) -> bool:
    """What cycle._plain_headers passes as it is (by the real types: the C code's rule), and valid."""
    return all(
        type(h) in (tuple, list) and len(h) == 2 and type(h[0]) is bytes and type(h[1]) is bytes
        and valid_field(h[0], h[1]) for h in headers)


def header_lists(rng: random.Random) -> List[Any]:
    sizes = [0, 1, 2, 255, 256, 65535, 65536]
    out: List[Any] = [[], (), [(b"content-type", b"text/plain")], [[b"a", b"b"]] * 15, [[b"a", b"b"]] * 16,
                      [(b"x", b"y")] * 65535, [(b"x", b"y")] * 65536, [(b"n", b"v" * n) for n in sizes],
                      tuple((b"n" * n, b"") for n in sizes)]
    odd: List[Any] = [(b"a", "b"), ("a", b"b"), (b"a", b"b", b"c"), (b"a",), [b"a", bytearray(b"b")],
                      (BytesSub(b"a"), b"b"), TupleSub((b"a", b"b")), b"ab", None, {b"a": b"b"}, memoryview(b"ab"),
                      (b"", b"v"), (b"a b", b"v"), (b"a:", b"v"), (b"\xc3\xa9", b"v"), (b"a", b"x\r\ny"),
                      (b"a", b"\x00"), (b"a", b"x\x7f"), (b"a", b"\x1f"), (b"a", b"\n"),
                      (b"a", b"\t obs-text \x80\xff"), (b"!#$%&'*+-.^_`|~09azAZ", b"")]
    for _ in range(300):
        items = [(b"k%d" % i, b"v" * rng.randrange(300)) for i in range(rng.randrange(20))]
        if rng.random() < 0.5 and items:
            items[rng.randrange(len(items))] = rng.choice(odd)
        out.append(items if rng.random() < 0.7 else tuple(items))
    return out


@needs_module
def test_pack_headers_agrees_with_the_packer() -> None:
    pack_headers = P.pack_headers
    assert pack_headers is not None
    rng = random.Random(11)
    packed = refused = 0
    for headers in header_lists(rng):
        head, tail = bytes(rng.randrange(256) for _ in range(rng.randrange(8))), b"\x00"
        got = pack_headers(headers, head, tail)
        if plain(headers):
            assert got == head + msgpack.packb(headers, use_bin_type=True) + tail
            packed += 1
        else:
            assert got is None, headers
            refused += 1
    assert packed > 100 and refused > 50, (packed, refused)
    for c in range(256):  # every byte in a name and in a value
        for headers in ([(b"a" + bytes([c]), b"v")], [(b"a", b"v" + bytes([c]) + b"w")]):
            got = pack_headers(headers, b"", b"")
            assert (got is not None) == plain(headers), headers
            if got is not None:
                assert got == msgpack.packb(headers, use_bin_type=True)
    for not_a_list in ({}, iter([(b"a", b"b")]), b"", "ab", None):
        assert pack_headers(not_a_list, b"", b"") is None
    with pytest.raises(TypeError):
        pack_headers([], "head", b"")
    with pytest.raises(TypeError):
        pack_headers([])  # type: ignore[call-overload]


@needs_module
def test_ws_send_parts_agrees() -> None:
    assert P.speedups is not None
    c_parts, py_parts = P.speedups.ws_send_parts, P._ws_send_parts_py
    assert P.ws_send_parts is c_parts
    lengths = [0, 1, 31, 32, 255, 256, 65535, 65536, 70000]
    messages: List[Any] = [b"\x00" * n for n in lengths] + ["a" * n for n in lengths]
    messages += ["é" * 15, "é" * 16, "€" * 85, "€" * 86, "✓ mixed text", "\U0001f600" * 64]
    for sid in (1, 127, 128, 65536, 2**32 - 1):
        sid_enc = P.pack_uint(sid)
        for data in messages:
            got, want = c_parts(sid_enc, data), py_parts(sid_enc, data)
            assert same(got, want), (sid, data[:10])
            assert type(got[1]) is bytes
            head, payload, _ = got
            assert P.decode_py((head + payload)[4:]) == (P.WS_SEND, sid, data)
    with pytest.raises(UnicodeEncodeError) as c_error:
        c_parts(b"\x01", "lone \ud800")
    with pytest.raises(UnicodeEncodeError) as py_error:
        py_parts(b"\x01", "lone \ud800")
    assert str(c_error.value) == str(py_error.value)
    for bad in ((b"\x01", bytearray(b"x")), ("1", b"x"), (b"\x01",)):
        with pytest.raises(TypeError):
            c_parts(*bad)


@needs_module
def test_response_body_ring_agrees() -> None:
    assert P.speedups is not None
    c_ring = P.speedups.response_body_ring
    assert P.response_body_ring is c_ring
    edges = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]
    for sid in (1, 127, 128, 65536, 2**32 - 1):
        sid_enc = P.pack_uint(sid)
        for position in edges:
            for length in edges[1:]:
                for more in (True, False):
                    got = c_ring(sid_enc, position, length, more)
                    assert got == P.encode_response_body_ring(sid_enc, position, length, more), (sid, position, length)
                    assert P.decode_py(got[4:]) == (P.RESPONSE_BODY_RING, sid, position, length, more)
    assert c_ring(b"\x01", 5, 7, 1) == c_ring(b"\x01", 5, 7, True)  # (any truth value, as the Python one)
    for bad in ((1, 0, 1, True), (b"\x01", 1.0, 1, True), (b"\x01", 0, "1", True), (b"\x01", 0, 1)):
        with pytest.raises(TypeError):
            c_ring(*bad)
    for bad in ((b"\x01", -1, 1, True), (b"\x01", 0, 2**64, True)):
        with pytest.raises(OverflowError):
            c_ring(*bad)


@needs_module
def test_http_scope_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    """RequestCycle._make_scope with the C builder and without it: equal scopes, keys in the same
    order, values of the same types, and new dicts and lists per call."""
    from python_worker import cycle as C

    assert C._http_scope is not None

    class Conn:
        window = 65536
        state = {"db": object(), "n": 1}
        server_cert = "PEM"

    def scopes(frame: tuple) -> tuple:
        built = C.RequestCycle(Conn(), frame)._make_scope()  # type: ignore[arg-type]
        with monkeypatch.context() as m:
            m.setattr(C, "_http_scope", None)
            python = C.RequestCycle(Conn(), frame)._make_scope()  # type: ignore[arg-type]
        return built, python

    tls = [0x0304, 0x1301, ["-----BEGIN CERTIFICATE-----\n"], "CN=client", None]
    frames = [
        http_request(),
        http_request(flags=1 | 2 | 4, client=None, server=["/tmp/s.sock", None], headers=[]),
        http_request(flags=16) + [tls],
    ]
    for frame in frames:
        f = P.decode(pack(frame))
        built, python = scopes(f)
        assert list(built) == list(python)
        for key in python:
            assert same(built[key], python[key]), key
        assert built["state"] == Conn.state and built["state"] is not Conn.state
        assert built["headers"] == [tuple(h) for h in f[9]]
        again = C.RequestCycle(Conn(), f)._make_scope()  # type: ignore[arg-type]
        for key in ("asgi", "headers", "state", "extensions"):
            assert again[key] == built[key] and again[key] is not built[key], key
    with pytest.raises(TypeError):
        C._http_scope((1, 2), {}, {})
    with pytest.raises(TypeError):
        C._http_scope(P.decode(pack(http_request())), None, {})


class _Transport(asyncio.Transport):
    """Keeps each write (and writelines) of the worker, separately."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: List[bytes] = []

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        self.writes.append(b"".join(bytes(p) for p in parts))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Status(int):
    pass


def _start(status: Any = 200, headers: Any = ((b"content-type", b"text/plain"),), **more: Any) -> dict:
    return {"type": "http.response.start", "status": status, "headers": headers, **more}


def _body(body: Any = b"Hello, world!", **more: Any) -> dict:
    return {"type": "http.response.body", "body": body, **more}


def _send_scenarios() -> List[Tuple[int, List[Any]]]:
    """(HTTP_REQUEST flags, the app's messages): each a dict for send(), or "receive" (a task that
    calls receive() twice while the app sends on). New objects per call (one is an iterator)."""
    return [
        (0, [_start(), _body()]),
        (0, [_start(headers=[[b"a", b"1"], (b"b", b"")] * 9), _body(b"")]),
        (0, [{"type": "http.response.start", "status": 599}, {"type": "http.response.body"}]),
        (0, [_start(204, headers=()), _body(b"x" * 255)]),
        (0, [_start(), _body(b"x" * 256)]),
        (0, [_start(), _body(b"x" * 20000)]),  # ring-sized: in Python
        (0, [_start(), _body(b"a", more_body=True), _body(b"b", more_body=False)]),
        (0, [_start(), _body(b"", more_body=True), _body(b"end")]),
        (0, [_start(), _body(b"a", more_body=1), _body(b"b", more_body=0)]),
        (0, [_start(), _body(bytearray(b"ba")), _body(b"after")]),
        (0, [_start(), _body(memoryview(b"mv"))]),
        (0, [_start(), _body("text")]),
        (0, [_start(), _body(), _body(b"ignored"), _start()]),
        (0, [_start(_Status(201)), _body()]),
        (0, [_start(True), _body()]),
        (0, [_start(199), _body()]),
        (0, [_start(600), _body()]),
        (0, [_start(2**70), _body()]),
        (0, [_start("200"), _body()]),
        (0, [_start(headers=[(b"bad name", b"v")]), _body()]),
        (0, [_start(headers=[(b"x", b"a\nb")]), _body()]),
        (0, [_start(headers=[(b"x", "str")]), _body()]),
        (0, [_start(headers=iter([(b"x", b"y")])), _body()]),
        (0, [_start(headers=[(b"x", b"y" * 5000)]), _body()]),  # over the frame limit
        (0, [_start(headers=[(b"x", b"y" * 3900)]), _body(b"z" * 200)]),  # the body does not fit beside them
        (0, [_body()]),
        (0, [_start(), _start()]),
        (0, [{"status": 200}]),
        (0, [{"type": "http.response.start", "status": 200, "headers": [], "extra": 1}, _body()]),
        (P.FLAG_TRAILERS_ALLOWED, [_start(trailers=False), _body()]),
        (P.FLAG_TRAILERS_ALLOWED, [_start(trailers=True), _body(),
                                   {"type": "http.response.trailers", "headers": [(b"t", b"1")]}]),
        (P.FLAG_TRAILERS_ALLOWED, [_start(trailers=1), _body(),
                                   {"type": "http.response.trailers", "headers": []}]),
        (0, [_start(trailers=True), _body()]),  # not advertised: the key is ignored
        (P.FLAG_SMALL_WINDOW, [_start(), _body(b"w" * 200)]),
        (0, ["receive", _start(), _body()]),
        (P.FLAG_PATHSEND | P.FLAG_EARLY_HINTS, [_start(), _body()]),
        (P.FLAG_TRAILERS_ALLOWED | P.FLAG_PATHSEND | P.FLAG_EARLY_HINTS | P.FLAG_SMALL_WINDOW, [_start(), _body()]),
        (P.FLAG_EXPECT_CONTINUE, ["receive", _start(), _body()]),
        (0, [_start()]),  # returns without the body
        (0, [_start(), _body(b"a", more_body=True)]),  # returns before the end
        (0, ["raise"]),
        (0, [_start(), "raise"]),
        (0, [_start(), _body(), "raise"]),
        (0, [_start(), _body(b"k" * 4000)]),
        (0, [_start(), _body(b"k" * 4096)]),  # (no room beside the headers under the 4096-byte frame limit)
        (0, [_start(), _body(b"k" * 16383)]),
        (0, [_start(headers=[(b"x", b"y" * 3900)]), _body(b"z" * 100)]),  # room for this body, not any
    ]


async def _drive(scenarios: List[Tuple[int, List[Any]]], one_batch: bool,
                 finish: bool = True, max_frame: int = 4096) -> Tuple[List[bytes], dict]:
    """Run each scenario as a request of one Connection; the worker's writes and each step's outcome.
    ``finish``: every app must have ended; else the connection is then lost (which ends the rest)."""
    from python_worker.connection import Connection

    outcomes: dict = {}

    async def receiver(res: List[Any], receive: Any) -> None:
        for _ in range(2):
            res.append((await receive())["type"])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        i = int(scope["path"][1:])
        res = outcomes[i] = [repr(scope)]  # (keys in order; types shown)
        task = None
        for m in scenarios[i][1]:
            if m == "raise":
                raise RuntimeError("the app fails")
            if m == "receive":
                task = asyncio.ensure_future(receiver(res, receive))
                await asyncio.sleep(0)
                continue
            try:
                await send(m)
                res.append("ok")
            except Exception as exc:
                res.append((type(exc).__name__, str(exc)))
        if task is not None:
            await asyncio.wait_for(task, 5)

    conn = Connection(app, P.encode_hello_worker(1, "t"), loop=asyncio.get_running_loop())
    transport = _Transport()
    conn.connection_made(transport)
    conn.data_received(P.encode([P.HELLO, 0, {"protocol": 1, "pid": 1, "max_frame": max_frame, "window": 65536,
                                              "worker_id": 0}]))
    transport.writes.clear()
    requests = [
        P.encode(http_request(sid=(i + 1) * 37, path=f"/{i}", flags=flags, more=steps[0] == "receive",
                              body=b"" if flags & P.FLAG_EXPECT_CONTINUE else b"first" * (i % 3)))
        for i, (flags, steps) in enumerate(scenarios)
    ]
    for data in [b"".join(requests)] if one_batch else requests:
        conn.data_received(data)
        for _ in range(5):
            await asyncio.sleep(0)
    for _ in range(50):
        await asyncio.sleep(0)
    if not finish:
        writes = list(transport.writes)
        conn.connection_lost(None)
        for _ in range(50):
            await asyncio.sleep(0)
        transport.writes[:] = writes + [b"lost"] + transport.writes[len(writes):]
    assert not conn.streams
    return transport.writes, outcomes


@needs_module
@pytest.mark.parametrize("one_batch", [True, False], ids=["one-batch", "one-by-one"])
def test_cycle_steps_agree(monkeypatch: pytest.MonkeyPatch, one_batch: bool) -> None:
    """A request's steps in C (new_cycle, start_app, fast_send, end_ok) and in Python: the same
    scopes, the same writes, byte for byte and write for write (the first stream's early write
    included), and the same outcome of every send(); and the C steps did take the common cases."""
    from python_worker import connection as N
    from python_worker import cycle as C

    steps = {"open_requests": (N, "open_requests_fast"), "start_app": (C, "_start_app"),
             "fast_send": (C, "_fast_send"), "end_ok": (C, "_end_ok")}
    taken: dict = {name: [] for name in steps}

    def counting(name: str, fn: Any) -> Any:
        def step(*args: Any) -> Any:
            if name == "open_requests":  # (what it did: the streams it opened)
                before = len(args[0].streams)
                result = fn(*args)
                taken[name] += [None] * (len(args[0].streams) - before)
                return result
            result = fn(*args)
            if result is not None and result is not False:
                taken[name].append(args[-1])
            return result
        return step

    scenarios = _send_scenarios()
    with monkeypatch.context() as m:
        for name, (module, attr) in steps.items():
            assert getattr(module, attr) is not None
            m.setattr(module, attr, counting(name, getattr(module, attr)))
        with_c = asyncio.run(_drive(scenarios, one_batch))
    with monkeypatch.context() as m:
        for module, attr in steps.values():
            m.setattr(module, attr, None)
        python = asyncio.run(_drive(_send_scenarios(), one_batch))
    assert with_c[1] == python[1]
    assert with_c[0] == python[0]
    assert len(with_c[0]) >= 2  # (the early write, then the flush)
    # Every request's cycle and app call (none has the tls item); END OK where the response was complete.
    assert len(taken["open_requests"]) == len(taken["start_app"]) == len(scenarios)
    assert 20 <= len(taken["end_ok"]) < len(scenarios) - 5
    # send(): the plain starts (not HTTPStatus, bool, out-of-range or non-plain headers, not trailers)
    # and the final bodies under 256 bytes that ride in them.
    sent = taken["fast_send"]
    firsts = [steps[0] for _, steps in scenarios]
    assert firsts[0] in sent and scenarios[0][1][1] in sent
    assert scenarios[3][1][1] in sent and scenarios[2][1][1] in sent
    assert all(not any(m is t for t in sent) for m in scenarios[13][1][:1] + scenarios[14][1][:1])
    assert scenarios[4][1][1] in sent  # 256 bytes
    assert not any(t is scenarios[5][1][1] for t in sent)  # ring-sized: in Python
    assert scenarios[-4][1][1] in sent and scenarios[-1][1][1] in sent
    assert not any(t is scenarios[-3][1][1] or t is scenarios[-2][1][1] for t in sent)  # no room
    assert not any(t is scenarios[30][1][0] for t in sent)  # trailers: in Python
    assert sum(1 for t in sent if t["type"] == "http.response.start") >= 20


def _random_message(rng: random.Random) -> Any:
    """A message an app might send, valid or not, mostly near the fast path's edges."""
    kind = rng.choice(["start", "start", "body", "body", "body", "other"])
    if kind == "other":
        return rng.choice([
            {"type": "http.response.trailers", "headers": [], "more_trailers": rng.random() < 0.5},
            {"type": "http.response.early_hint", "links": [b"</a>; rel=preload"]},
            {"type": "http.response.pathsend", "path": "/nonexistent"},
            {"type": "websocket.send", "bytes": b"x"},
            {"status": 200},
            "receive",
            "raise",
        ])
    if kind == "start":
        message: dict = {"type": "http.response.start"}
        message["status"] = rng.choice([200, 204, 255, 256, 404, 599, 199, 600, True, _Status(200), "200", 2**64])
        headers: Any = rng.choice([
            [], (), [(b"content-type", b"text/plain")], [[b"a", b"b"]] * rng.randrange(1, 20),
            [(b"x", b"v" * rng.choice([10, 300, 70000]))], [(b"bad name", b"v")], [(b"x", "str")],
            [(b"x", b"a\r\nb")], [(b"x", b"y", b"z")], None,
        ])
        if headers is not None:
            message["headers"] = headers
        if rng.random() < 0.3:
            message["trailers"] = rng.choice([True, False, 0, 1, None])
        return message
    message = {"type": "http.response.body"}
    if rng.random() < 0.9:
        message["body"] = rng.choice([b"", b"x" * rng.randrange(0, 300), b"y" * rng.choice([255, 256, 16384, 40000]),
                                      b"z" * rng.randrange(300, 17000),
                                      bytearray(b"ba"), "str", None])
    if rng.random() < 0.6:
        message["more_body"] = rng.choice([True, False, False, 0, 1, None, "yes"])
    return message


@needs_module
def test_cycle_steps_agree_on_random_apps(monkeypatch: pytest.MonkeyPatch) -> None:
    """As test_cycle_steps_agree, on 640 random sequences of messages (valid and invalid, near the
    fast path's edges), in batches of 40 requests with random flags, under frame limits of 4 KiB
    and 1 MiB."""
    from python_worker import connection as N
    from python_worker import cycle as C

    rng = random.Random(20261207)
    flag_choices = [0, 0, P.FLAG_TRAILERS_ALLOWED, P.FLAG_SMALL_WINDOW, P.FLAG_EARLY_HINTS | P.FLAG_PATHSEND,
                    P.FLAG_EXPECT_CONTINUE]
    for round in range(16):
        seed = rng.random()
        max_frame = 4096 if round % 2 else 1 << 20

        def scenarios() -> List[Tuple[int, List[Any]]]:
            r = random.Random(seed)  # (the same messages, new objects, for each run)
            return [(r.choice(flag_choices), [_random_message(r) for _ in range(r.randrange(1, 5))])
                    for _ in range(40)]

        with_c = asyncio.run(_drive(scenarios(), True, finish=False, max_frame=max_frame))
        with monkeypatch.context() as m:
            for module, attr in [(N, "open_requests_fast"), (C, "_start_app"), (C, "_fast_send"), (C, "_end_ok")]:
                m.setattr(module, attr, None)
            python = asyncio.run(_drive(scenarios(), True, finish=False, max_frame=max_frame))
        assert with_c[1] == python[1], seed
        assert with_c[0] == python[0], seed


def _gateway_hello(max_frame: int = 1 << 20, window: int = 65536) -> bytes:
    return P.encode([P.HELLO, 0, {"protocol": 1, "pid": 1, "max_frame": max_frame, "window": window,
                                  "worker_id": 0}])


def _req(sid: int, **over: Any) -> bytes:
    return P.encode(http_request(sid=sid, path=f"/{sid}", **over))


def _input_sequences() -> List[Tuple[str, List[bytes]]]:
    """What the gateway might write, as the chunks data_received gets (b"": the event loop runs)."""
    hello = _gateway_hello()
    tls = [0x0304, 0x1301, [], None, None]
    run = b"".join(_req(sid) for sid in (1, 2, 3))
    return [
        ("requests", [hello + run + P.encode([P.CREDIT, 1, 100]) + _req(4) + _req(5)]),
        ("split", [(hello + run)[i : i + 7] for i in range(0, len(hello + run), 7)]),
        ("one by one", [hello, _req(1), _req(2), P.encode([P.CREDIT, 2, 5]), _req(3)]),
        ("before HELLO", [_req(1) + hello]),
        ("stream open", [hello + _req(5) + _req(6) + _req(5)]),
        ("shutting down", [hello + _req(1) + P.encode([P.SHUTDOWN, 0, 1000]) + _req(2) + _req(3)]),
        ("shut down", [hello + _req(1) + P.encode([P.SHUTDOWN, 0, 1000]), b"", _req(2) + _req(3)]),
        ("tls", [hello + _req(1) + P.encode(http_request(sid=2, path="/2", flags=P.FLAG_TLS) + [tls]) + _req(3)]),
        ("over the window", [_gateway_hello(window=1024) + _req(1) + _req(2, body=b"x" * 1025, more=True) + _req(3)]),
        ("over the frame limit", [_gateway_hello(max_frame=256) + _req(1) + _req(2, headers=[[b"x", b"y" * 300]])]),
        ("undecodable", [hello + _req(1) + b"\x00\x00\x00\x03\x9f\x02\xc1" + _req(3)]),
        ("zero length", [hello + _req(1) + b"\x00\x00\x00\x00" + _req(3)]),
        ("other types", [hello + _req(1) + P.encode([P.REQUEST_BODY, 9, b"x", False]) + _req(2, body=b"ab", more=True)
                         + P.encode([P.REQUEST_BODY, 2, b"cd", False]) + _req(3)]),
    ]


async def _feed(chunks: List[bytes]) -> tuple:
    """data_received on each chunk; what the worker wrote, its error, and the apps' order."""
    from python_worker.connection import Connection

    order: List[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        order.append(scope["path"])
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"n", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    conn = Connection(app, b"", loop=asyncio.get_running_loop())
    transport = _Transport()
    conn.connection_made(transport)
    for chunk in chunks:
        if chunk:
            conn.data_received(chunk)
        else:
            for _ in range(10):
                await asyncio.sleep(0)
    opened = sorted(conn.streams)
    for _ in range(30):
        await asyncio.sleep(0)
    return transport.writes, conn.error, order, opened


@needs_module
@pytest.mark.parametrize("name", [name for name, _ in _input_sequences()])
def test_open_requests_agrees(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Connection.data_received with runs of HTTP_REQUEST frames opened in C (open_requests) and
    without: the same writes, protocol error, streams and apps, whatever the frames around them."""
    from python_worker import connection as N

    chunks = dict(_input_sequences())[name]
    calls: List[int] = []
    fast = N.open_requests_fast

    def counting(conn: Any, data: Any, pos: int, task_type: Any) -> int:
        at = fast(conn, data, pos, task_type)
        calls.append(at - pos)
        return at

    with monkeypatch.context() as m:
        m.setattr(N, "open_requests_fast", counting)
        with_c = asyncio.run(_feed(chunks))
    with monkeypatch.context() as m:
        m.setattr(N, "open_requests_fast", None)
        python = asyncio.run(_feed(chunks))
    assert with_c == python
    if name not in ("before HELLO",):
        assert any(calls), "open_requests opened nothing"
    if name == "stream open":
        assert with_c[1] == "HTTP_REQUEST for stream 5, which is open"


CYCLE_SLOTS = list(RequestCycle.__slots__)


@needs_module
def test_new_cycle_agrees() -> None:
    """new_cycle(conn, frame) sets every slot RequestCycle(conn, frame) sets, to equal values of the
    same types; None (nothing built) for the frames it leaves to Python."""
    from python_worker import _speedups
    from python_worker import cycle as C
    from python_worker.connection import Connection

    async def check() -> None:
        conn = Connection(lambda *a: None, b"", loop=asyncio.get_running_loop())
        conn.window = 65536
        frames = [
            http_request(),
            http_request(sid=1, flags=P.FLAG_EXPECT_CONTINUE, more=True),
            http_request(sid=127, body=b"x" * 100, more=True),
            http_request(sid=128, body=b"x" * 65536, more=False),
            http_request(sid=2**16, flags=P.FLAG_SMALL_WINDOW),
            http_request(sid=2**32 - 1, flags=63 & ~P.FLAG_TLS),
        ]
        for frame in frames:
            f = P.decode(pack(frame))
            built = _speedups.new_cycle(conn, f)
            python = C.RequestCycle(conn, f)
            assert type(built) is C.RequestCycle
            for name in CYCLE_SLOTS:
                a, b = getattr(built, name, KeyError), getattr(python, name, KeyError)
                assert type(a) is type(b) and (a == b or a is b), (name, a, b)
        conn.window = 1024
        too_much = P.decode(pack(http_request(body=b"x" * 1025, more=True)))
        assert _speedups.new_cycle(conn, too_much) is None
        with pytest.raises(P.ProtocolError):
            C.RequestCycle(conn, too_much)
        tls = P.decode(pack(http_request(flags=P.FLAG_TLS) + [[0x0304, 0x1301, [], None, None]]))
        assert _speedups.new_cycle(conn, tls) is None
        assert _speedups.new_cycle(object(), P.decode(pack(http_request()))) is None

    asyncio.run(check())


@needs_module
def test_cycle_steps_refuse_other_objects() -> None:
    """The C steps on objects that are not of the bound classes do nothing and say so (start_app,
    which has no Python fallback, raises); bind_cycle takes only classes with those slots."""
    from python_worker import _speedups
    from python_worker import cycle as C

    class Other:
        _state = 0

    assert _speedups.fast_send(Other(), _start()) is False
    assert _speedups.fast_send(C.RequestCycle.__new__(C.RequestCycle), _start()) is False  # no conn
    with pytest.raises(TypeError):
        _speedups.fast_send(Other())  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _speedups.start_app(Other())
    assert _speedups.end_ok(Other()) is False
    with pytest.raises(AttributeError):
        _speedups.bind_cycle(C.RequestCycle, Other, {})  # no such attributes
    Other.max_frame = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="Other.max_frame is not a __slots__ entry"):
        _speedups.bind_cycle(C.RequestCycle, Other, {})



@needs_module
def test_start_app_uses_a_subclass_scope() -> None:
    """start_app builds the scope in C only for a RequestCycle itself: a subclass (WebSocketCycle
    is one) gets its own _make_scope."""
    from python_worker import _speedups
    from python_worker import cycle as C
    from python_worker.connection import Connection

    class Own(C.RequestCycle):
        __slots__ = ()

        def _make_scope(self) -> dict:
            return {"type": "own"}

    async def check() -> None:
        seen: List[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope)

        conn = Connection(app, b"", loop=asyncio.get_running_loop())
        f = P.decode(pack(http_request()))
        await _speedups.start_app(Own(conn, f))
        await _speedups.start_app(C.RequestCycle(conn, f))
        assert seen[0] == {"type": "own"}
        assert seen[1]["type"] == "http" and seen[1]["path"] == "/a b"

    asyncio.run(check())
