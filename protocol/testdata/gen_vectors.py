"""Writes vectors.json: the shared test vectors of the worker protocol (SPEC.md).

Each vector is a frame as a typed JSON value plus its exact bytes (4-byte length prefix and msgpack
payload, hex). In `value`, a msgpack `bin` is written {"bin": "<hex>"}; every other JSON value stands
for itself (str, int, bool, null, array, map). The bytes come from msgpack-python's canonical
encoding, which SPEC.md §2 makes the rule for both sides. A vector with a `malformed` key (why) is
well-formed msgpack that breaks a SPEC rule: both decoders must reject it as a protocol error.
Run: .venv/bin/python gen_vectors.py
"""
from __future__ import annotations

import base64
import json
import pathlib
import struct
from typing import Any

import msgpack


def b(data: bytes) -> dict[str, str]:
    return {"bin": data.hex()}


def to_py(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"bin"}:
            return bytes.fromhex(v["bin"])
        return {k: to_py(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_py(x) for x in v]
    return v


H = lambda n, v: [b(n), b(v)]  # noqa: E731


def pem(seed: int, size: int) -> str:
    """A certificate-shaped PEM text of `size` bytes of DER-like noise (the codec never parses it)."""
    der = bytes((seed * 31 + i * 7) % 256 for i in range(size))
    text = base64.b64encode(der).decode()
    lines = "\n".join(text[i:i + 64] for i in range(0, len(text), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"

VECTORS: list[tuple[str, str, list[Any]]] = [
    ("hello_gateway", "g2w", [1, 0, {"protocol": 1, "pid": 4242, "max_frame": 1048576, "window": 262144, "worker_id": 0}]),
    ("hello_worker", "w2g", [17, 0, {"protocol": 1, "pid": 4243, "python": "3.11.7", "features": []}]),
    ("hello_worker_error", "w2g", [17, 0, {"protocol": 1, "pid": 4243, "error": "ModuleNotFoundError: No module named 'nope'"}]),
    ("http_request_get", "g2w", [2, 1, "1.1", "GET", "http", "/", b(b"/"), b(b""), "",
                                 [H(b"host", b"localhost:8000"), H(b"user-agent", b"curl/8.0")],
                                 ["127.0.0.1", 51234], ["127.0.0.1", 8000], 0, b(b""), False]),
    ("http_request_full", "g2w", [2, 4294967295, "1.0", "POST", "https", "/api/caf\u00e9 x",
                                  b(b"/api/caf%C3%A9%20x"), b(b"a=1&a=2&b=%20"), "/api",
                                  [H(b"host", b"example.com"), H(b"x-dup", b"1"), H(b"x-dup", b"2"),
                                   H(b"content-length", b"5")],
                                  ["::1", 65535], ["/tmp/gw.sock", None], 1, b(b"hello"), True]),
    ("http_request_no_client", "g2w", [2, 300, "2", "GET", "http", "/", b(b"/"), b(b""), "", [], None, None, 0, b(b""), False]),
    ("request_body", "g2w", [3, 7, b(b"\x00\x01\xffbody"), True]),
    ("request_body_last_empty", "g2w", [3, 7, b(b""), False]),
    ("request_body_256", "g2w", [3, 65536, b(bytes(range(256))), False]),
    ("disconnect", "g2w", [4, 9]),
    ("credit_g2w", "g2w", [5, 9, 131072]),
    ("ping", "g2w", [6, 0, 18446744073709551615]),
    ("response_start", "w2g", [18, 1, 200, [H(b"content-type", b"text/plain"), H(b"set-cookie", b"a=1"),
                                            H(b"set-cookie", b"b=2")], 0, b(b""), True]),
    ("response_start_with_body", "w2g", [18, 2, 404, [], 0, b(b"Not Found"), False]),
    ("response_start_trailers", "w2g", [18, 70000, 999, [H(b"X-Mixed-Case", b"v")], 1, b(b""), True]),
    ("response_start_no_body_yet", "w2g", [18, 4, 200, [H(b"content-type", b"text/event-stream")], 2, b(b""), True]),
    ("response_body", "w2g", [19, 1, b(b"Hello, World!"), True]),
    ("response_body_last", "w2g", [19, 1, b(b""), False]),
    ("credit_w2g", "w2g", [20, 3, 262144]),
    ("end_ok", "w2g", [21, 1, 0, ""]),
    ("end_error", "w2g", [21, 2, 1, "ValueError: boom \u2603"]),
    ("pong", "w2g", [22, 0, 5]),
    # Added for the Go codec: the longer encodings (str8/str16, bin16/bin32, array16, uint64).
    ("http_request_str8_path", "g2w", [2, 128, "1.1", "OPTIONS", "http", "/" + "p" * 39, b(b"/" + b"p" * 39),
                                       b(b""), "", [], ["10.0.0.1", 0], None, 0, b(b""), True]),
    ("response_start_16_headers", "w2g", [18, 3, 204, [H(b"x-h%d" % i, b"%d" % i) for i in range(16)], 0,
                                          b(b""), True]),
    ("response_body_bin16", "w2g", [19, 5, b(bytes(range(256)) + b"tail" * 11), True]),
    ("response_body_bin32", "w2g", [19, 5, b(b"x" * 65536), False]),
    ("end_str16", "w2g", [21, 4, 1, "e" * 300]),
    ("hello_worker_features", "w2g", [17, 0, {"protocol": 1, "pid": 4294967296, "python": "3.12.1 (main) [GCC 13.2.0]",
                                              "features": ["x-a", "x-b"]}]),
    ("credit_g2w_uint64", "g2w", [5, 1, 4294967296]),
    # WebSocket streams and SHUTDOWN.
    ("ws_connect", "g2w", [7, 5, "1.1", "ws", "/chat", b(b"/chat"), b(b"room=1"), "",
                           [H(b"host", b"localhost:8000"), H(b"upgrade", b"websocket"),
                            H(b"sec-websocket-protocol", b"chat.v2, chat.v1")],
                           ["127.0.0.1", 51234], ["127.0.0.1", 8000], ["chat.v2", "chat.v1"], 0]),
    ("ws_connect_minimal", "g2w", [7, 4294967295, "2", "wss", "/api/caf\u00e9", b(b"/api/caf%C3%A9"), b(b""),
                                   "/api", [], None, ["/tmp/gw.sock", None], [], 0]),
    ("ws_receive_text", "g2w", [8, 5, "hello \u2603"]),
    ("ws_receive_binary", "g2w", [8, 5, b(b"\x00\x01\xffbin")]),
    ("ws_receive_empty_text", "g2w", [8, 5, ""]),
    ("ws_receive_empty_binary", "g2w", [8, 5, b(b"")]),
    ("ws_receive_text_str16", "g2w", [8, 70000, "\u00e9" * 200]),
    ("ws_disconnect", "g2w", [9, 5, 1001, ""]),
    ("ws_disconnect_reason", "g2w", [9, 5, 1000, "au revoir \u00e9t\u00e9 \u2603"]),
    ("ws_disconnect_no_code", "g2w", [9, 5, 1005, ""]),
    ("shutdown", "g2w", [10, 0, 30000]),
    ("shutdown_zero", "g2w", [10, 0, 0]),
    ("ws_accept", "w2g", [23, 5, "chat.v2", [H(b"x-extra", b"1"), H(b"set-cookie", b"a=1")]]),
    ("ws_accept_no_subprotocol", "w2g", [23, 5, None, []]),
    ("ws_accept_empty_subprotocol", "w2g", [23, 5, "", []]),
    ("ws_send_text", "w2g", [24, 5, "\u00e9change \U0001f600"]),
    ("ws_send_binary", "w2g", [24, 5, b(b"\x89PNG\r\n")]),
    ("ws_send_empty_text", "w2g", [24, 5, ""]),
    ("ws_send_empty_binary", "w2g", [24, 5, b(b"")]),
    ("ws_send_binary_bin16", "w2g", [24, 5, b(bytes(range(256)) * 2)]),
    ("ws_close", "w2g", [25, 5, 1000, ""]),
    ("ws_close_reason", "w2g", [25, 5, 4000, "\u00fcber-closed \u2603"]),
    ("ws_close_code_max", "w2g", [25, 1, 65535, "x"]),
    # Extensions: CANCEL, trailers, pathsend, early hints, and the HTTP_REQUEST flags that advertise them.
    ("http_request_ext_flags", "g2w", [2, 12, "2", "GET", "https", "/static/app.css", b(b"/static/app.css"), b(b""),
                                       "", [H(b"te", b"trailers")], ["10.0.0.2", 40000], ["10.0.0.1", 443], 15,
                                       b(b""), False]),
    ("cancel", "g2w", [11, 9]),
    ("cancel_max_sid", "g2w", [11, 4294967295]),
    ("response_trailers", "w2g", [26, 1, [H(b"grpc-status", b"0"), H(b"grpc-message", b"")], False]),
    ("response_trailers_more", "w2g", [26, 70000, [H(b"x-checksum", b"\x00\xff")], True]),
    ("response_trailers_empty", "w2g", [26, 2, [], False]),
    ("response_pathsend", "w2g", [27, 1, "/srv/static/caf\u00e9.css"]),
    ("response_pathsend_str8", "w2g", [27, 300, "/var/www/" + "a" * 40 + "/index.html"]),
    ("early_hint", "w2g", [28, 1, [b(b"</style.css>; rel=preload; as=style"),
                                   b(b"</app.js>; rel=preload; as=script")]]),
    ("early_hint_empty_link", "w2g", [28, 65536, [b(b"")]]),
    ("early_hint_16_links", "w2g", [28, 3, [b(b"</img%d.png>; rel=preload; as=image" % i) for i in range(16)]]),
    # The TLS extension: server_cert in the gateway's HELLO, the tls item (flags bit 4) of HTTP_REQUEST
    # and WS_CONNECT: [tls_version, cipher_suite, client_cert_chain, client_cert_name, client_cert_error].
    ("hello_gateway_tls", "g2w", [1, 0, {"protocol": 1, "pid": 4242, "max_frame": 1048576, "window": 262144,
                                         "worker_id": 3, "server_cert": pem(1, 400)}]),
    ("http_request_tls", "g2w", [2, 13, "1.1", "GET", "https", "/", b(b"/"), b(b""), "",
                                 [H(b"host", b"localhost:8443")], ["127.0.0.1", 51234], ["127.0.0.1", 8443], 30,
                                 b(b""), False, [0x0304, 0x1301, [], None, None]]),
    ("http_request_tls_client_chain", "g2w", [2, 14, "2", "POST", "https", "/api", b(b"/api"), b(b""), "", [],
                                              ["10.0.0.2", 40000], ["10.0.0.1", 443], 16, b(b"hi"), True,
                                              [0x0303, 0xC02F, [pem(2, 400), pem(3, 150)], "CN=client,O=Example",
                                               None]]),
    ("http_request_tls_client_cert_error", "g2w", [2, 65536, "1.1", "GET", "https", "/", b(b"/"), b(b""), "", [],
                                                   None, None, 17, b(b""), False,
                                                   [0x0304, 0x1302, [pem(4, 16)], "", "certificate not verified"]]),
    ("ws_connect_tls", "g2w", [7, 6, "1.1", "wss", "/chat", b(b"/chat"), b(b""), "", [H(b"host", b"localhost:8443")],
                               ["127.0.0.1", 51234], ["127.0.0.1", 8443], [], 16, [0x0304, 0x1303, [], None, None]]),
    ("ws_connect_tls_client_chain", "g2w", [7, 70000, "1.1", "wss", "/", b(b"/"), b(b"a=1"), "", [], None,
                                            ["/tmp/gw.sock", None], ["chat"], 16,
                                            [0x0304, 0x1301, [pem(5, 400)], "CN=caf\u00e9 \\, x,O=Example", None]]),
    # The body ring (SPEC §6): the gateway's HELLO with `ring`, the worker's with the "ring" feature,
    # and the two ring body frames (positions are running byte counts: uint64 values are legal).
    ("hello_gateway_ring", "g2w", [1, 0, {"protocol": 1, "pid": 4242, "max_frame": 1048576, "window": 262144,
                                          "worker_id": 1, "ring": 4194304}]),
    ("hello_gateway_tls_ring", "g2w", [1, 0, {"protocol": 1, "pid": 4242, "max_frame": 1048576, "window": 262144,
                                              "worker_id": 2, "server_cert": pem(6, 64), "ring": 65536}]),
    ("hello_worker_ring", "w2g", [17, 0, {"protocol": 1, "pid": 4243, "python": "3.11.7", "features": ["ring"]}]),
    ("request_body_ring", "g2w", [12, 7, 0, 65536, True]),
    ("request_body_ring_last", "g2w", [12, 4294967295, 1048576, 1, False]),
    ("request_body_ring_uint64", "g2w", [12, 1, 4294967296, 16384, True]),
    ("response_body_ring", "w2g", [29, 7, 196608, 65536, True]),
    ("response_body_ring_last", "w2g", [29, 70000, 18446744073709486080, 65536, False]),
]

# Well-formed msgpack, malformed frames: (name, direction, value, why).
MALFORMED: list[tuple[str, str, list[Any], str]] = [
    ("http_request_tls_flag_without_item", "g2w", [2, 13, "1.1", "GET", "https", "/", b(b"/"), b(b""), "", [],
                                                   None, None, 16, b(b""), False],
     "flag TLS without the tls item"),
    ("http_request_tls_item_without_flag", "g2w", [2, 13, "1.1", "GET", "https", "/", b(b"/"), b(b""), "", [],
                                                   None, None, 14, b(b""), False, [0x0304, 0x1301, [], None, None]],
     "a tls item without flag TLS"),
    ("http_request_tls_item_4_items", "g2w", [2, 13, "1.1", "GET", "https", "/", b(b"/"), b(b""), "", [], None,
                                              None, 16, b(b""), False, [0x0304, 0x1301, [], None]],
     "a tls item of 4 items"),
    ("http_request_tls_chain_bin", "g2w", [2, 13, "1.1", "GET", "https", "/", b(b"/"), b(b""), "", [], None,
                                           None, 16, b(b""), False, [0x0304, 0x1301, [b(b"pem")], None, None]],
     "a client_cert_chain item that is bin, not str"),
    ("ws_connect_tls_flag_without_item", "g2w", [7, 6, "1.1", "wss", "/", b(b"/"), b(b""), "", [], None, None, [],
                                                 16],
     "flag TLS without the tls item"),
    ("ws_connect_tls_item_without_flag", "g2w", [7, 6, "1.1", "wss", "/", b(b"/"), b(b""), "", [], None, None, [], 0,
                                                 [0x0304, 0x1301, [], None, None]],
     "a tls item without flag TLS"),
    ("request_body_ring_bin_length", "g2w", [12, 7, 0, b(b"\x00\x01"), True], "a length that is bin, not uint"),
    ("request_body_ring_negative", "g2w", [12, 7, -1, 16, True], "a negative position"),
    ("request_body_ring_no_more", "g2w", [12, 7, 0, 16], "REQUEST_BODY_RING of 4 items"),
    ("request_body_ring_sid_0", "g2w", [12, 0, 0, 16, False], "a stream frame on stream 0"),
    ("response_body_ring_body", "w2g", [29, 7, b(b"body"), 4, False], "a position that is bin, not uint"),
    ("response_body_ring_more_int", "w2g", [29, 7, 0, 16, 1], "more_body that is an int, not bool"),
    ("response_body_ring_6_items", "w2g", [29, 7, 0, 16, True, 0], "RESPONSE_BODY_RING of 6 items"),
]


def main() -> None:
    out = []
    for name, direction, value, why in [(*v, None) for v in VECTORS] + MALFORMED:
        payload = msgpack.packb(to_py(value), use_bin_type=True)
        frame = struct.pack(">I", len(payload)) + payload
        vector = {"name": name, "direction": direction, "value": value, "hex": frame.hex()}
        if why is not None:
            vector["malformed"] = why
        out.append(vector)
    path = pathlib.Path(__file__).with_name("vectors.json")
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
