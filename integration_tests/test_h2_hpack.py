"""HTTP/2 response header compression through the real binary (h2c): the gateway's HPACK encoder
keeps a dynamic table (a repeated response head costs a few bytes), and follows the client's
SETTINGS_HEADER_TABLE_SIZE (RFC 9113 §6.5.2; RFC 7541 §4.2: a smaller table is announced by a size
update at the start of the next header block). Raw frames (hyperframe) and a strict HPACK decoder
(hpack) stand for the client, so that the header blocks' bytes are what is checked."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, List, Tuple

import hpack
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame, SettingsFrame

APPS_DIR = Path(__file__).resolve().parent / "apps"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _frames(sock: socket.socket, streams: int) -> List[Frame]:
    """Frames from the server until `streams` responses have ended (END_STREAM)."""
    buf, frames, ended = b"", [], 0
    while ended < streams:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            data = sock.recv(65536)
            assert data, "the connection closed before the responses ended"
            buf += data
        frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
        frame.parse_body(memoryview(buf[9 : 9 + length]))
        buf = buf[9 + length :]
        frames.append(frame)
        if isinstance(frame, (HeadersFrame, DataFrame)) and "END_STREAM" in frame.flags:
            ended += 1
    return frames


def _header_blocks(server: Any, settings: dict, requests: int) -> List[Tuple[int, bytes]]:
    """(stream, header block) of each response to `requests` GETs of /_/headers on one connection."""
    encoder = hpack.Encoder()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        out = PREFACE + SettingsFrame(0, settings=settings).serialize()
        for i in range(requests):
            block = encoder.encode([(":method", "GET"), (":scheme", "http"), (":authority", "test.local"),
                                    (":path", "/_/headers")])
            out += HeadersFrame(1 + 2 * i, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize()
        sock.sendall(out)
        blocks: List[Tuple[int, bytes]] = []
        for frame in _frames(sock, requests):
            if isinstance(frame, HeadersFrame):
                blocks.append((frame.stream_id, frame.data))
            elif isinstance(frame, ContinuationFrame):
                sid, block = blocks[-1]
                blocks[-1] = (sid, block + frame.data)
        return blocks
    finally:
        sock.close()


def test_repeated_response_heads_use_the_dynamic_table(servers: Any) -> None:
    server = servers.start("testapp:app", app_dir=APPS_DIR, extra_args=["--http2-cleartext"])
    blocks = _header_blocks(server, {}, 6)
    assert sorted(sid for sid, _ in blocks) == [1, 3, 5, 7, 9, 11]  # (in any order: decoded in wire order)
    decoder = hpack.Decoder()
    heads = [[(n, v) for n, v in decoder.decode(block, raw=True) if n != b"date"] for _, block in blocks]
    assert all(head == heads[0] for head in heads), heads
    assert dict(heads[0])[b":status"] == b"200" and len(heads[0]) >= 4
    sizes = [len(block) for _, block in blocks]
    # The head's fields are in the table after the first response: later ones are a few bytes each,
    # a quarter of the first's at most; date may change once meanwhile (one block a literal more).
    assert sum(size * 4 <= sizes[0] for size in sizes[1:]) >= len(sizes) - 2, sizes


def test_a_client_table_size_of_zero_is_followed(servers: Any) -> None:
    server = servers.start("testapp:app", app_dir=APPS_DIR, extra_args=["--http2-cleartext"])
    blocks = _header_blocks(server, {SettingsFrame.HEADER_TABLE_SIZE: 0}, 4)
    assert len(blocks) == 4
    # The first block after the client's SETTINGS opens with a size update to 0 (the encoder's
    # table starts at 4,096, RFC 9113 §6.5.2), and nothing is indexed from then on.
    assert blocks[0][1][0] == 0x20, blocks[0][1][:4].hex()
    decoder = hpack.Decoder()
    decoder.max_allowed_table_size = 0
    heads = []
    for _, block in blocks:
        heads.append([(n, v) for n, v in decoder.decode(block, raw=True) if n != b"date"])
        assert decoder.header_table.maxsize == 0 and len(decoder.header_table.dynamic_entries) == 0
    assert all(head == heads[0] for head in heads)
    sizes = [len(block) for _, block in blocks]
    assert min(sizes[1:]) * 2 > sizes[0], sizes  # no table: as large as the first (less its update)
