package gateway

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The body ring (protocol/SPEC.md §6): one shared-memory file per worker process, holding large
// body pieces so that they do not cross the worker socket. Its layout:
const (
	ringHeader     = 4096 // the two release marks, then the areas
	ringMarkG2W    = 0    // g2w_released: u64, written by the worker
	ringMarkW2G    = 64   // w2g_released: u64, written by the gateway
	ringMinSize    = 64 << 10
	ringPageSize   = 4096
	ringMinPiece   = 16 << 10 // pieces at least this large go through the ring (when they fit)
	ringWorkerFD   = 3        // the descriptor number the worker gets (the first of cmd.ExtraFiles)
	defaultRingLen = 8 << 20
)

// bodyRing is the gateway's side of one worker's body ring. The G→W half (put) is used under the
// worker connection's write lock; the W→G half (take, release) by its reader goroutine only.
type bodyRing struct {
	size uint64 // R: bytes per direction
	mem  []byte // the whole mapping (unmapped by close)
	file *os.File

	g2w, w2g    []byte         // the two areas
	g2wReleased *atomic.Uint64 // the worker's mark: how far it has consumed the G→W area
	w2gReleased *atomic.Uint64 // ours: how far we have consumed the W→G area
	head        uint64         // G→W: the position after the last piece written
	taken       uint64         // W→G: the end of the last piece taken
	released    uint64         // W→G: our release mark (taken, once the pieces are written or copied)
	mapped      bool

	// Idle trimming of the G→W area (trimIfIdle), under the write lock like put.
	seenHead   uint64 // head at the previous trimIfIdle
	trimmedAt  uint64 // head when the area was last trimmed
	trimFailed bool   // madvise refused: do not try again
}

// CheckBodyRing says why size (bytes per direction) cannot be a body ring's size, or returns nil.
func CheckBodyRing(size int) error {
	if why := validRingSize(size); why != "" {
		return fmt.Errorf("body ring size %d: must be %s", size, why)
	}
	return nil
}

// validRingSize reports why size cannot be a ring size, or "" if it can.
func validRingSize(size int) string {
	switch {
	case size < ringMinSize:
		return fmt.Sprintf("at least %d bytes", ringMinSize)
	case size%ringPageSize != 0:
		return fmt.Sprintf("a multiple of %d", ringPageSize)
	case size > 1<<30:
		return "at most 1 GiB"
	}
	return ""
}

// newBodyRing creates the shared file (an anonymous memfd) for a ring of size bytes per direction,
// and maps it.
func newBodyRing(size int) (*bodyRing, error) {
	if why := validRingSize(size); why != "" {
		return nil, fmt.Errorf("body ring size %d: must be %s", size, why)
	}
	fd, err := unix.MemfdCreate("asgi-gateway-body-ring", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create the body ring (memfd_create): %w", err)
	}
	file := os.NewFile(uintptr(fd), "asgi-gateway-body-ring")
	total := ringHeader + 2*size
	if err := unix.Ftruncate(fd, int64(total)); err != nil {
		file.Close()
		return nil, fmt.Errorf("size the body ring: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, total, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("map the body ring: %w", err)
	}
	r := &bodyRing{size: uint64(size), mem: mem, file: file, mapped: true}
	r.g2w = mem[ringHeader : ringHeader+size : ringHeader+size]
	r.w2g = mem[ringHeader+size : total : total]
	// The mapping is page-aligned, so the marks are 8-byte aligned words.
	r.g2wReleased = (*atomic.Uint64)(unsafe.Pointer(&mem[ringMarkG2W]))
	r.w2gReleased = (*atomic.Uint64)(unsafe.Pointer(&mem[ringMarkW2G]))
	return r, nil
}

// closeFile closes the gateway's descriptor of the file, once the worker process has its own (the
// mapping stays).
func (r *bodyRing) closeFile() {
	if r.file != nil {
		r.file.Close()
		r.file = nil
	}
}

// close unmaps the ring. Nothing may use it after (see workerConn.readLoop).
func (r *bodyRing) close() {
	r.closeFile()
	if r.mapped {
		r.mapped = false
		unix.Munmap(r.mem)
		r.mem, r.g2w, r.w2g = nil, nil, nil
	}
}

// put copies body into the G→W area and returns its position. ok is false when it does not fit
// now: the caller sends the piece inline. The caller holds the connection's write lock and writes
// the frame for the piece before it releases it (positions follow frame order).
func (r *bodyRing) put(body []byte) (pos uint64, ok bool) {
	n := uint64(len(body))
	pos = r.head
	if off := pos % r.size; off+n > r.size { // a piece never wraps: skip to the area's start
		pos += r.size - off
	}
	if pos+n-r.g2wReleased.Load() > r.size {
		return 0, false
	}
	off := pos % r.size
	copy(r.g2w[off:off+n], body)
	r.head = pos + n
	return pos, true
}

// trimIfIdle gives the G→W area's pages back to the system (SPEC §6, trimming) when the worker has
// released everything, nothing was put since the previous call, and something was since the last
// trim: a ring that went through all its pages under load does not keep them resident while idle.
// The worker never reads released bytes, so it cannot tell. The caller holds the connection's
// write lock (no put meanwhile); it is called about once a second.
func (r *bodyRing) trimIfIdle() bool {
	head := r.head
	idle := head == r.seenHead
	r.seenHead = head
	if !idle || head == r.trimmedAt || r.trimFailed || r.g2wReleased.Load() != head {
		return false
	}
	if err := unix.Madvise(r.g2w, unix.MADV_REMOVE); err != nil {
		r.trimFailed = true
		return false
	}
	r.trimmedAt = head
	return true
}

var errRingFrame = errors.New("a RESPONSE_BODY_RING frame")

// take returns the W→G piece of a RESPONSE_BODY_RING frame, after the checks of SPEC §6; limit is
// the largest piece allowed. The caller releases it (release) once it has copied the bytes.
func (r *bodyRing) take(pos, n, limit uint64) ([]byte, error) {
	switch {
	case n == 0 || n > limit:
		return nil, fmt.Errorf("%w of %d bytes: outside 1..%d", errRingFrame, n, limit)
	case pos < r.taken:
		return nil, fmt.Errorf("%w at position %d, before the end of the previous piece (%d)", errRingFrame, pos, r.taken)
	case pos > math.MaxUint64-n || pos+n-r.released > r.size:
		return nil, fmt.Errorf("%w at position %d: more than the ring's %d bytes ahead of what was released (%d)",
			errRingFrame, pos, r.size, r.released)
	}
	off := pos % r.size
	if off+n > r.size {
		return nil, fmt.Errorf("%w at position %d of %d bytes wraps around the ring's end", errRingFrame, pos, n)
	}
	r.taken = pos + n
	return r.w2g[off : off+n : off+n], nil
}

// release tells the worker that the W→G area up to end (at most the end of the last piece taken)
// is free again; nothing may read the pieces before end after this.
func (r *bodyRing) release(end uint64) {
	r.released = end
	r.w2gReleased.Store(end)
}
