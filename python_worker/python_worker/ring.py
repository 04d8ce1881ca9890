"""The worker's side of the body ring (protocol/SPEC.md §6): shared memory for large body pieces.

This module owns the ring file the gateway passes on the command line (``--ring-fd``): its checks and
mapping, its layout (the two release marks, then the G→W and the W→G area), taking a request-body
piece out of the G→W area after the checks SPEC §6 lists (then releasing it: the worker's mark), and
putting a response-body piece into the W→G area when the gateway has released enough of it (its mark).
It knows nothing of streams, windows or the socket: the connection decides whether the ring is in use
(both HELLOs), and the stream cycle which pieces go through it and writes their frames.

The hot path is :meth:`Ring.take` and :meth:`Ring.put`: one copy each way (a slice of the ``mmap``
object is a new ``bytes``, a slice assignment a ``memcpy``) and one 8-byte store or load of a mark.

Idle trimming (SPEC §6): a ring that cycled through all its pages under load keeps them all, in both
processes' shared memory, until the file goes. :meth:`Ring.trim_if_idle`, called by the connection on
a timer (not per piece), gives the W→G area's pages back to the system (``madvise(MADV_REMOVE)``, a
hole punched in the file) once the gateway has released everything the worker put and nothing was put
since the previous call. The gateway never reads released bytes, so it cannot tell; the next piece
simply faults in fresh (zeroed) pages. Only the W→G area: the worker is its only writer, and the event
loop runs no :meth:`Ring.put` during the call. The G→W area is the gateway's to trim.
"""

from __future__ import annotations

import logging
import mmap
import os
import stat
from typing import Final, Optional, Tuple, Union

from .protocol import ProtocolError

__all__ = ["HEADER", "MIN_SIZE", "PAGE", "MIN_PIECE", "RingError", "Ring", "ring_size"]

HEADER: Final = 4096  # the release marks; the G→W area starts here
MIN_SIZE: Final = 65536  # the least R (bytes per direction)
PAGE: Final = 4096  # R is a multiple of this
#: response pieces at least this large go through the ring when it has room (SPEC §6, "Choice of
#: path"): below it, the frame's copy and the socket's two are cheaper than the ring's bookkeeping
MIN_PIECE: Final = 4096

# Indexes of the marks in the header seen as native u64 ("Q"): g2w_released at byte 0 (written by
# the worker), w2g_released at byte 64 (written by the gateway).
_G2W_RELEASED: Final = 0
_W2G_RELEASED: Final = 8

Buffer = Union[bytes, bytearray, memoryview]

logger = logging.getLogger("python_worker.ring")

# madvise advice that frees a shared file's pages (Linux; None elsewhere: no trimming)
_MADV_REMOVE = getattr(mmap, "MADV_REMOVE", None) if hasattr(mmap.mmap, "madvise") else None


class RingError(Exception):
    """The descriptor given as the ring cannot be used: the worker runs without a ring."""


def ring_size(file_size: int) -> int:
    """R for a ring file of ``file_size`` bytes (``4096 + 2R``); raises :class:`RingError` if there is none."""
    r, odd = divmod(file_size - HEADER, 2)
    if odd or r < MIN_SIZE or r % PAGE:
        raise RingError(
            f"its size, {file_size} bytes, is not {HEADER} + 2R with R a multiple of {PAGE} and at least {MIN_SIZE}")
    return r


class Ring:
    """A mapped body ring of ``size`` (R) bytes per direction, and the worker's positions in it."""

    __slots__ = (
        "size", "_mm", "_view", "_marks", "_w2g_base", "_g2w_end", "_w2g_head",
        "_trim_seen", "_trimmed_at", "_trim_range", "trims",
    )

    def __init__(self, mm: mmap.mmap, size: int) -> None:
        if len(mm) != HEADER + 2 * size:
            raise ValueError(f"a ring of {size} bytes per direction needs a mapping of {HEADER + 2 * size} bytes")
        #: R: the size of each area, in bytes
        self.size = size
        self._mm = mm
        self._view = memoryview(mm)
        marks = self._view[:HEADER].cast("Q")
        if marks.itemsize != 8:  # pragma: no cover - "Q" is 8 bytes wherever CPython runs
            raise RingError("native u64 is not 8 bytes")
        self._marks = marks
        self._w2g_base = HEADER + size
        #: the end of the last G→W piece taken (= the worker's mark, g2w_released)
        self._g2w_end = 0
        #: the W→G position where the next piece goes (or, if it would wrap, the next multiple of R)
        self._w2g_head = 0
        # Idle trimming: the head at the previous trim_if_idle call, the head at the last trim (or 0:
        # the area has never been written), and the (start, length) of the pages to give back — the
        # W→G area, rounded inward to the system's pages (None: trimming is off).
        self._trim_seen = 0
        self._trimmed_at = 0
        self._trim_range = self._w2g_pages() if _MADV_REMOVE is not None else None
        #: how many times the W→G area's pages were given back
        self.trims = 0

    @classmethod
    def from_fd(cls, fd: int) -> "Ring":
        """Map the ring file open at ``fd`` (shared, read-write) and close ``fd``.

        Raises :class:`RingError` when ``fd`` is not open, not a regular file (a memfd), not of a
        ring's size or cannot be mapped; ``fd`` is then left as it is.
        """
        try:
            st = os.fstat(fd)
        except OSError as exc:
            raise RingError(f"descriptor {fd}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(st.st_mode):
            raise RingError(f"descriptor {fd} is not a regular file (a memfd)")
        size = ring_size(st.st_size)
        try:
            mm = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except (OSError, ValueError) as exc:
            raise RingError(f"cannot map descriptor {fd} shared and read-write: {exc}") from None
        os.close(fd)
        return cls(mm, size)

    # -----------------------------------------------------------------------------------------------
    # G→W: request bodies

    def take(self, position: int, length: int, limit: int) -> bytes:
        """The piece of a REQUEST_BODY_RING frame, copied out of the G→W area, and then released.

        ``limit`` is the piece limit, ``min(W, max_frame - 64)``. Raises :class:`ProtocolError` for
        a piece that breaks SPEC §6 (nothing is read or released then).
        """
        size = self.size
        start = position % size
        end = self._g2w_end  # the previous piece's end, and the worker's own mark
        if not 1 <= length <= limit:
            raise ProtocolError(f"REQUEST_BODY_RING of {length} bytes: outside 1..{limit}")
        if start + length > size:
            raise ProtocolError(
                f"REQUEST_BODY_RING at position {position} of {length} bytes wraps around the end of the ring "
                f"({size} bytes)")
        if position < end:
            raise ProtocolError(
                f"REQUEST_BODY_RING at position {position}, before the end of the previous piece ({end})")
        if position + length - end > size:
            raise ProtocolError(
                f"REQUEST_BODY_RING at position {position} of {length} bytes: more than the ring's {size} bytes "
                f"ahead of the released mark ({end})")
        start += HEADER
        data = self._mm[start : start + length]
        end = self._g2w_end = position + length
        self._marks[_G2W_RELEASED] = end
        return data

    @property
    def g2w_released(self) -> int:
        """The worker's release mark of the G→W area."""
        return self._marks[_G2W_RELEASED]

    # -----------------------------------------------------------------------------------------------
    # W→G: response bodies

    def _place(self, length: int) -> int:
        """The position a piece of ``length`` bytes would be put at now, or -1 if it does not fit."""
        return self.place_after(self._w2g_head, length)

    @property
    def w2g_head(self) -> int:
        """The W→G position after the last piece put."""
        return self._w2g_head

    def place_after(self, head: int, length: int) -> int:
        """The position a piece of ``length`` bytes would be put at if the pieces put so far ended
        at ``head`` (at least :attr:`w2g_head`), or -1 if it would not fit with the gateway's release
        mark as it is now."""
        size = self.size
        start = head % size
        if start + length > size:  # a piece never wraps: skip to the next multiple of R
            head += size - start
        if head + length - self._marks[_W2G_RELEASED] > size:
            return -1  # the gateway has not released enough
        return head

    def fits(self, length: int) -> bool:
        """Whether a piece of ``length`` bytes would be put now (see :meth:`put`)."""
        return self._place(length) >= 0

    def put(self, body: Buffer) -> int:
        """Copy ``body`` (1..R bytes) into the W→G area; its position, or -1 when the ring is full
        (the caller sends the piece inline).

        The caller writes the RESPONSE_BODY_RING frame at once, before any other piece is put: the
        positions follow the frames' order on the socket.
        """
        length = len(body)
        head = self._place(length)
        if head < 0:
            return -1
        start = self._w2g_base + head % self.size
        self._mm[start : start + length] = body
        self._w2g_head = head + length
        return head

    @property
    def w2g_released(self) -> int:
        """The gateway's release mark of the W→G area, loaded now."""
        return self._marks[_W2G_RELEASED]

    # -----------------------------------------------------------------------------------------------
    # Idle trimming of the W→G area

    def _w2g_pages(self) -> Optional[Tuple[int, int]]:
        """The whole pages of the W→G area: (start, length) in the mapping, or None if there are none.

        With 4 KiB pages that is the whole area (4096 + R and R are multiples of 4096); with larger
        pages, the part of it in whole pages (never a byte of the header or of the G→W area)."""
        page = mmap.PAGESIZE
        start = -(-self._w2g_base // page) * page
        end = (self._w2g_base + self.size) // page * page
        return (start, end - start) if end > start else None

    @property
    def can_trim(self) -> bool:
        """Whether :meth:`trim_if_idle` may still trim (False without MADV_REMOVE, or once it failed)."""
        return self._trim_range is not None

    def trim_if_idle(self) -> bool:
        """Give the W→G area's pages back to the system if the ring is idle; True if it did.

        It does when the gateway has released everything put (its mark, loaded now, is the head), no
        piece was put since the previous call, and a piece was put since the last trim. Meant to be
        called periodically from the event loop (no :meth:`put` runs during the call). If ``madvise``
        fails (MADV_REMOVE not supported), that is logged once at debug level and trimming stops
        (:attr:`can_trim` is then False).
        """
        head = self._w2g_head
        seen = self._trim_seen
        self._trim_seen = head
        if head != seen or head == self._trimmed_at or self._trim_range is None:
            return False  # pieces were put since the previous call, or none since the last trim
        if self._marks[_W2G_RELEASED] != head:
            return False  # the gateway has not released everything yet
        start, length = self._trim_range
        try:
            self._mm.madvise(_MADV_REMOVE, start, length)  # type: ignore[arg-type]  # (not None: _trim_range is set)
        except (OSError, ValueError) as exc:
            logger.debug("body ring: cannot give the response area's pages back (madvise MADV_REMOVE: %s); "
                         "not trying again", exc)
            self._trim_range = None
            return False
        self._trimmed_at = head
        self.trims += 1
        return True

    # -----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Unmap the ring (nothing may use it after)."""
        self._marks.release()
        self._view.release()
        self._mm.close()
