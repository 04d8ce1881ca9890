"""The shared vectors (protocol/testdata/vectors.json): decode each frame to its value, and the
worker's own encoders produce the exact bytes of each worker-to-gateway frame. Plus canonical encoding
at the msgpack size boundaries and strict decoding."""

from __future__ import annotations

import json
import pathlib
import random
import struct
from typing import Any

import msgpack
import pytest

from python_worker import protocol as P

VECTORS_PATH = pathlib.Path(__file__).resolve().parents[2] / "protocol" / "testdata" / "vectors.json"
VECTORS = json.loads(VECTORS_PATH.read_text())


def to_py(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"bin"}:
            return bytes.fromhex(v["bin"])
        return {k: to_py(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_py(x) for x in v]
    return v


def as_lists(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [as_lists(x) for x in v]
    if isinstance(v, dict):
        return {k: as_lists(x) for k, x in v.items()}
    return v


def test_vectors_present() -> None:
    names = {v["name"] for v in VECTORS}
    assert {"hello_gateway", "http_request_get", "response_start", "end_error", "pong"} <= names
    assert {"hello_gateway_tls", "http_request_tls", "ws_connect_tls_client_chain"} <= names
    assert {v["direction"] for v in VECTORS} == {"g2w", "w2g"}
    assert {v["name"] for v in VECTORS if "malformed" in v} >= {
        "http_request_tls_flag_without_item", "http_request_tls_item_without_flag",
        "ws_connect_tls_flag_without_item", "ws_connect_tls_item_without_flag",
        "request_body_ring_sid_0", "response_body_ring_6_items",
    }
    assert {"hello_gateway_ring", "hello_worker_ring", "request_body_ring", "response_body_ring_last"} <= names


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_decode_vector(vector: dict) -> None:
    data = bytes.fromhex(vector["hex"])
    length = P.read_length(data, 0, P.DEFAULT_MAX_FRAME)
    assert length == len(data) - 4
    if "malformed" in vector:  # well-formed msgpack that breaks a SPEC rule
        assert msgpack.unpackb(data[4:], use_list=True) == to_py(vector["value"])
        with pytest.raises(P.ProtocolError):
            P.decode(data[4:])
        return
    f = P.decode(data[4:])
    assert type(f) is tuple
    assert as_lists(f) == to_py(vector["value"])
    # bytes stay bytes, text stays text
    assert type(f[0]) is int


def test_decoded_request_shapes() -> None:
    v = next(v for v in VECTORS if v["name"] == "http_request_full")
    f = P.decode(bytes.fromhex(v["hex"])[4:])
    headers, client, server = f[9], f[10], f[11]
    assert all(type(h) is tuple and len(h) == 2 and all(type(x) is bytes for x in h) for h in headers)
    assert client == ("::1", 65535)
    assert server == ("/tmp/gw.sock", None)
    assert f[5] == "/api/caf\u00e9 x" and f[6] == b"/api/caf%C3%A9%20x"


def encode_with_worker_encoders(value: list) -> bytes:
    """The worker's own encoder for each W->G frame type."""
    t, sid = value[0], value[1]
    if t == P.W_HELLO:
        m = value[2]
        if "error" in m:
            return P.encode_hello_error(m["pid"], m["error"])
        return P.encode_hello_worker(m["pid"], m["python"], m["features"])
    if t == P.RESPONSE_START:
        _, _, status, headers, flags, body, more = value
        return P.encode_response_start(sid, status, [tuple(h) for h in headers], flags, body, more)
    if t == P.RESPONSE_BODY:
        return P.encode_response_body(sid, value[2], value[3])
    if t == P.W_CREDIT:
        return P.encode_credit(sid, value[2])
    if t == P.END:
        return P.encode_end(sid, value[2], value[3])
    if t == P.PONG:
        return P.encode_pong(value[2])
    if t == P.WS_ACCEPT:
        return P.encode_ws_accept(sid, value[2], [tuple(h) for h in value[3]])
    if t == P.WS_SEND:
        return P.encode_ws_send(sid, value[2])
    if t == P.WS_CLOSE:
        return P.encode_ws_close(sid, value[2], value[3])
    if t == P.RESPONSE_TRAILERS:
        return P.encode_response_trailers(sid, [tuple(h) for h in value[2]], value[3])
    if t == P.RESPONSE_PATHSEND:
        return P.encode_response_pathsend(sid, value[2])
    if t == P.EARLY_HINT:
        return P.encode_early_hint(sid, value[2])
    if t == P.RESPONSE_BODY_RING:
        return P.encode_response_body_ring(sid, value[2], value[3], value[4])
    raise AssertionError(f"no worker encoder for type {t}")


# (A malformed vector is a frame no encoder may produce: it is checked by test_decode_vector.)
W2G = [v for v in VECTORS if v["direction"] == "w2g" and "malformed" not in v]


@pytest.mark.parametrize("vector", W2G, ids=[v["name"] for v in W2G])
def test_worker_encoders_match_vector(vector: dict) -> None:
    assert encode_with_worker_encoders(to_py(vector["value"])).hex() == vector["hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_generic_encode_matches_vector(vector: dict) -> None:
    assert P.encode(to_py(vector["value"])).hex() == vector["hex"]


def test_hello_worker_with_this_python() -> None:
    import platform

    data = P.encode_hello_worker(123, platform.python_version())
    f = P.decode(data[4:])
    assert f == (P.W_HELLO, 0, {"protocol": 1, "pid": 123, "python": platform.python_version(), "features": ()})


# -- canonical encoding at the boundaries ------------------------------------------------------------

SIDS = [1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1]
SIZES = [0, 1, 31, 32, 255, 256, 4095, 4096, 65535, 65536, 70000]


def canonical(value: list) -> bytes:
    payload = msgpack.packb(value, use_bin_type=True)
    return struct.pack(">I", len(payload)) + payload


@pytest.mark.parametrize("sid", SIDS)
@pytest.mark.parametrize("size", SIZES)
def test_body_frames_canonical(sid: int, size: int) -> None:
    body = bytes(random.getrandbits(8) for _ in range(min(size, 64))) * (size // 64 + 1)
    body = body[:size]
    for more in (True, False):
        assert P.encode_response_body(sid, body, more) == canonical([19, sid, body, more])
        headers = [(b"content-type", b"text/plain"), (b"x" * size, b"")]
        for status in (200, 404, 999):
            for flags in (0, 1):
                assert P.encode_response_start(sid, status, headers, flags, body, more) == canonical(
                    [18, sid, status, headers, flags, body, more]
                )


@pytest.mark.parametrize("sid", SIDS)
def test_small_frames_canonical(sid: int) -> None:
    for inc in (0, 1, 127, 128, 65536, 2**32, 2**64 - 1):
        assert P.encode_credit(sid, inc) == canonical([20, sid, inc])
        assert P.encode_pong(inc) == canonical([22, 0, inc])
    for outcome in (0, 1, 2):
        for message in ("", "x", "ValueError: boom \u2603", "y" * 40, "z" * 300, "w" * 70000):
            assert P.encode_end(sid, outcome, message) == canonical([21, sid, outcome, message])
            assert P.encode_end(P.pack_uint(sid), outcome, message) == canonical([21, sid, outcome, message])


@pytest.mark.parametrize("sid", SIDS)
def test_extension_frames_canonical(sid: int) -> None:
    for more in (True, False):
        for headers in ([], [(b"grpc-status", b"0")], [(b"x%d" % i, b"v" * i) for i in range(20)],
                        [(b"big", b"b" * 70000)]):
            expected = canonical([26, sid, headers, more])
            assert P.encode_response_trailers(sid, headers, more) == expected
            assert P.encode_response_trailers(P.pack_uint(sid), headers, more) == expected
    for path in ("/", "/srv/caf\u00e9.css", "/" + "p" * 31, "/" + "p" * 300, "/" + "q" * 70000):
        assert P.encode_response_pathsend(sid, path) == canonical([27, sid, path])
        assert P.encode_response_pathsend(P.pack_uint(sid), path) == canonical([27, sid, path])
    for links in ([], [b""], [b"</a.css>; rel=preload"], [b"<%d>" % i for i in range(16)], [b"l" * 300]):
        assert P.encode_early_hint(sid, links) == canonical([28, sid, links])
        assert P.encode_early_hint(P.pack_uint(sid), links) == canonical([28, sid, links])
    assert P.encode([P.CANCEL, sid]) == canonical([11, sid])
    assert P.decode(canonical([11, sid])[4:]) == (P.CANCEL, sid)


def test_end_message_with_surrogates_is_valid_utf8() -> None:
    data = P.encode_end(1, 1, "OSError: bad name \udcff")
    f = P.decode(data[4:])
    assert f[3] == "OSError: bad name \\udcff"


# -- strict decoding ---------------------------------------------------------------------------------


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


GOOD_REQUEST = [2, 1, "1.1", "GET", "http", "/", b"/", b"", "", [[b"a", b"b"]], ["h", 1], ["s", None], 0, b"", False]


def bad_request_value(index: int, value: Any) -> list:
    v = list(GOOD_REQUEST)
    v[index] = value
    return v


def bad_request(index: int, value: Any) -> bytes:
    return pack(bad_request_value(index, value))


BAD_PAYLOADS = {
    "not msgpack": b"\xc1",
    "truncated": pack([4, 1])[:-1],
    "trailing bytes": pack([4, 1]) + b"\x00",
    "two values": pack([4, 1]) + pack([4, 1]),
    "not an array": pack({"type": 4}),
    "one item": pack([4]),
    "unknown type": pack([7, 1]),
    "type is str": pack(["4", 1]),
    "type is bool": pack([True, 1]),
    "sid 0": pack([4, 0]),
    "sid too big": pack([4, 2**32]),
    "sid negative": pack([4, -1]),
    "sid is str": pack([4, "1"]),
    "disconnect arity": pack([4, 1, 2]),
    "credit negative": pack([5, 1, -5]),
    "credit bool": pack([5, 1, True]),
    "credit float": pack([5, 1, 1.0]),
    "ping sid": pack([6, 1, 5]),
    "body str": pack([3, 1, "abc", False]),
    "body more int": pack([3, 1, b"abc", 0]),
    "invalid utf-8": b"\x94\x03\x01\xa2\xff\xfe\xc2",
    "request arity": pack(GOOD_REQUEST[:-1]),
    "request method bin": bad_request(3, b"GET"),
    "request raw_path str": bad_request(6, "/"),
    "request query str": bad_request(7, ""),
    "request headers str": bad_request(9, [["a", "b"]]),
    "request header triple": bad_request(9, [[b"a", b"b", b"c"]]),
    "request header flat": bad_request(9, [b"a", b"b"]),
    "request headers map": bad_request(9, {"a": "b"}),
    "request header is a 2-map": bad_request(9, [{b"a": b"b", b"c": b"d"}]),
    "request header is a 2-str": bad_request(9, ["ab"]),
    "request header is a 2-bin": bad_request(9, [b"ab"]),
    "request header is ext": bad_request(9, [msgpack.ExtType(1, b"ab")]),
    "map in a body frame": pack([3, 1, {"a": 1}, False]),
    "map as a frame": pack({1: 2}),
    "request client port str": bad_request(10, ["h", "1"]),
    "request client port nil": bad_request(10, ["h", None]),
    "request client short": bad_request(10, ["h"]),
    "request server bin": bad_request(11, [b"s", 1]),
    "request flags negative": bad_request(12, -1),
    "request body str": bad_request(13, ""),
    "request more_body nil": bad_request(14, None),
    "hello not map": pack([1, 0, [1]]),
    "hello no protocol": pack([1, 0, {"pid": 1}]),
    "hello protocol str": pack([1, 0, {"protocol": "1"}]),
    "hello window negative": pack([1, 0, {"protocol": 1, "window": -1}]),
    "hello int key": pack([1, 0, {1: 1}]),
    "hello sid": pack([1, 1, {"protocol": 1}]),
    "timestamp ext": pack([5, 1, msgpack.Timestamp(1, 0)]),
    "ws_connect arity": pack([7, 1, "1.1", "ws", "/", b"/", b"", "", [], None, None, []]),
    "ws_connect subprotocol bin": pack([7, 1, "1.1", "ws", "/", b"/", b"", "", [], None, None, [b"x"], 0]),
    "ws_receive int": pack([8, 1, 5]),
    "ws_receive nil": pack([8, 1, None]),
    "ws_disconnect reason bin": pack([9, 1, 1000, b""]),
    "shutdown sid": pack([10, 1, 0]),
    "shutdown negative": pack([10, 0, -1]),
    "cancel sid 0": pack([11, 0]),
    "cancel arity": pack([11, 1, 0]),
    "cancel sid str": pack([11, "1"]),
    "trailers arity": pack([26, 1, []]),
    "trailers str header": pack([26, 1, [["a", "b"]], False]),
    "trailers more int": pack([26, 1, [], 0]),
    "trailers sid 0": pack([26, 0, [], False]),
    "pathsend bin": pack([27, 1, b"/x"]),
    "pathsend nil": pack([27, 1, None]),
    "pathsend arity": pack([27, 1, "/x", False]),
    "pathsend invalid utf-8": b"\x93\x1b\x01\xa2\xff\xfe",
    "early hint str link": pack([28, 1, ["</a>"]]),
    "early hint links bin": pack([28, 1, b"</a>"]),
    "early hint nested": pack([28, 1, [[b"</a>"]]]),
    "early hint arity": pack([28, 1]),
    # The tls item (flag TLS, 16): present exactly with the flag, of the right shape.
    "request tls flag without item": bad_request(12, 16),
    "request tls item without flag": pack(GOOD_REQUEST + [[0x0304, 0x1301, [], None, None]]),
    "request tls item nil": pack(bad_request_value(12, 16) + [None]),
    "request tls item 4 items": pack(bad_request_value(12, 16) + [[0x0304, 0x1301, [], None]]),
    "request tls item 6 items": pack(bad_request_value(12, 16) + [[0x0304, 0x1301, [], None, None, None]]),
    "request tls version 65536": pack(bad_request_value(12, 16) + [[0x10000, 0x1301, [], None, None]]),
    "request tls version negative": pack(bad_request_value(12, 16) + [[-1, 0x1301, [], None, None]]),
    "request tls version str": pack(bad_request_value(12, 16) + [["1.3", 0x1301, [], None, None]]),
    "request tls cipher nil": pack(bad_request_value(12, 16) + [[0x0304, None, [], None, None]]),
    "request tls chain nil": pack(bad_request_value(12, 16) + [[0x0304, 0x1301, None, None, None]]),
    "request tls chain of bin": pack(bad_request_value(12, 16) + [[0x0304, 0x1301, [b"pem"], None, None]]),
    "request tls chain str": pack(bad_request_value(12, 16) + [[0x0304, 0x1301, "pem", None, None]]),
    "request tls name bin": pack(bad_request_value(12, 16) + [[0x0304, 0x1301, [], b"CN=x", None]]),
    "request tls error int": pack(bad_request_value(12, 16) + [[0x0304, 0x1301, [], None, 0]]),
    "request tls item map": pack(bad_request_value(12, 16) + [{"tls_version": 0x0304}]),
    "request 17 items": pack(bad_request_value(12, 16) + [[0x0304, 0x1301, [], None, None], None]),
    "ws_connect tls flag without item": pack([7, 1, "1.1", "wss", "/", b"/", b"", "", [], None, None, [], 16]),
    "ws_connect tls item without flag": pack([7, 1, "1.1", "wss", "/", b"/", b"", "", [], None, None, [], 0,
                                              [0x0304, 0x1301, [], None, None]]),
    "ws_connect tls chain of bin": pack([7, 1, "1.1", "wss", "/", b"/", b"", "", [], None, None, [], 16,
                                         [0x0304, 0x1301, [b"pem"], None, None]]),
    "hello server_cert bin": pack([1, 0, {"protocol": 1, "server_cert": b"pem"}]),
    "hello server_cert nil": pack([1, 0, {"protocol": 1, "server_cert": None}]),
    # REQUEST_BODY_RING [12, sid, position, length, more_body] and RESPONSE_BODY_RING (29), SPEC §6
    "ring arity 2": pack([12, 1]),
    "ring arity 4": pack([12, 1, 0, 16]),
    "ring arity 6": pack([12, 1, 0, 16, True, 0]),
    "ring sid 0": pack([12, 0, 0, 16, True]),
    "ring sid too big": pack([12, 2**32, 0, 16, True]),
    "ring sid bool": pack([12, True, 0, 16, True]),
    "ring position negative": pack([12, 1, -1, 16, True]),
    "ring position bin": pack([12, 1, b"\x00", 16, True]),
    "ring position str": pack([12, 1, "0", 16, True]),
    "ring position bool": pack([12, 1, False, 16, True]),
    "ring position float": pack([12, 1, 0.0, 16, True]),
    "ring position nil": pack([12, 1, None, 16, True]),
    "ring length negative": pack([12, 1, 0, -16, True]),
    "ring length bool": pack([12, 1, 0, True, True]),
    "ring length bin": pack([12, 1, 0, b"\x00\x10", True]),
    "ring more int": pack([12, 1, 0, 16, 1]),
    "ring more nil": pack([12, 1, 0, 16, None]),
    "ring map": pack([12, 1, {"position": 0}, 16, True]),
    "response ring arity 3": pack([29, 1, b""]),
    "response ring body": pack([29, 1, b"body", 4, False]),
    "response ring more int": pack([29, 1, 0, 16, 0]),
    "response ring sid 0": pack([29, 0, 0, 16, False]),
    "response ring length negative": pack([29, 1, 0, -1, False]),
    "hello ring negative": pack([1, 0, {"protocol": 1, "ring": -65536}]),
    "hello ring str": pack([1, 0, {"protocol": 1, "ring": "65536"}]),
    "hello ring bool": pack([1, 0, {"protocol": 1, "ring": True}]),
    "hello ring nil": pack([1, 0, {"protocol": 1, "ring": None}]),
}


@pytest.mark.parametrize("payload", list(BAD_PAYLOADS.values()), ids=list(BAD_PAYLOADS))
def test_decode_rejects(payload: bytes) -> None:
    with pytest.raises(P.ProtocolError):
        P.decode(payload)


def test_decode_accepts_any_integer_encoding() -> None:
    # sid 5 as int8 (d0), int64 (d3), uint64 (cf); increment as int32 (d2).
    assert P.decode(b"\x93\x05\xd0\x05\xd2\x00\x00\x01\x00") == (5, 5, 256)
    assert P.decode(b"\x92\x04\xd3" + (5).to_bytes(8, "big")) == (4, 5)
    assert P.decode(b"\x92\x04\xcf" + (5).to_bytes(8, "big")) == (4, 5)


def test_decode_tls_item() -> None:
    tls = [0x0304, 0x1301, ["-----BEGIN CERTIFICATE-----\n", "x"], "CN=client", None]
    f = P.decode(pack(bad_request_value(12, 16 | P.FLAG_PATHSEND) + [tls]))
    assert len(f) == 16 and f[12] == 16 | P.FLAG_PATHSEND
    assert f[15] == (0x0304, 0x1301, ("-----BEGIN CERTIFICATE-----\n", "x"), "CN=client", None)
    # Integers in any encoding that fits (int16 here); an empty name and error are not nil.
    f = P.decode(b"\xdc\x00\x10" + pack(bad_request_value(12, 16))[1:] + b"\x95\xd1\x03\x04\xd1\x13\x01\x90\xc0\xa0")
    assert f[15] == (0x0304, 0x1301, (), None, "")
    ws = P.decode(pack([7, 1, "1.1", "wss", "/", b"/", b"", "", [], None, None, [], 16, [0x0303, 0xC02F, [], "", "e"]]))
    assert ws[13] == (0x0303, 0xC02F, (), "", "e")
    assert P.decode(pack([1, 0, {"protocol": 1, "server_cert": "PEM"}]))[2]["server_cert"] == "PEM"


def test_decode_accepts_good_request_and_unknown_hello_keys() -> None:
    f = P.decode(pack(GOOD_REQUEST))
    assert f[9] == ((b"a", b"b"),) and f[10] == ("h", 1) and f[11] == ("s", None)
    f = P.decode(pack([1, 0, {"window": 5, "protocol": 1, "future_key": [1, 2]}]))
    assert f[2]["window"] == 5


def test_decode_ring_frames() -> None:
    # Any integer encoding that fits (int8, int64, uint64); uint64 positions are legal.
    assert P.decode(b"\x95\x0c\xd0\x07\xd3" + (5).to_bytes(8, "big") + b"\xcd\x40\x00\xc3") == (12, 7, 5, 16384, True)
    assert P.decode(pack([12, 1, 2**64 - 1, 1, False])) == (P.REQUEST_BODY_RING, 1, 2**64 - 1, 1, False)
    assert P.decode(pack([29, 2**32 - 1, 0, 0, True])) == (P.RESPONSE_BODY_RING, 2**32 - 1, 0, 0, True)
    f = P.decode(pack([1, 0, {"protocol": 1, "ring": 1 << 20}]))
    assert f[2]["ring"] == 1 << 20


@pytest.mark.parametrize("sid", SIDS)
def test_response_body_ring_canonical(sid: int) -> None:
    for position in (0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, 2**64 - 1):
        for length in (1, 16384, 65536, 1048512):
            for more in (True, False):
                expected = canonical([29, sid, position, length, more])
                assert P.encode_response_body_ring(sid, position, length, more) == expected
                assert P.encode_response_body_ring(P.pack_uint(sid), position, length, more) == expected
                assert P.decode(expected[4:]) == (P.RESPONSE_BODY_RING, sid, position, length, more)


def test_read_length_limits() -> None:
    assert P.read_length(b"\x00\x00\x00\x01", 0, 10) == 1
    with pytest.raises(P.ProtocolError):
        P.read_length(b"\x00\x00\x00\x00", 0, 10)
    with pytest.raises(P.ProtocolError):
        P.read_length(b"\x00\x00\x00\x0b", 0, 10)


@pytest.mark.parametrize("data", [
    b"", b"x" * 31, b"x" * 255, b"x" * 256, b"x" * 65535, b"x" * 65536,
    "", "x" * 31, "x" * 32, "\u00e9" * 20, "x" * 255, "x" * 256, "x" * 65535, "\u2603" * 30000,
])
def test_ws_send_parts(data: Any) -> None:
    """The two pieces are the canonical WS_SEND frame; the size is the message's bytes."""
    head, payload, size = P.ws_send_parts(P.pack_uint(9), data)
    assert head + payload == canonical([24, 9, data])
    assert size == (len(data.encode()) if isinstance(data, str) else len(data))
