package gateway

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// workerView maps the ring's file a second time, as the worker does, so that tests see what the
// worker would see and can act as the worker.
func workerView(t *testing.T, r *bodyRing) []byte {
	t.Helper()
	mem, err := unix.Mmap(int(r.file.Fd()), 0, ringHeader+2*int(r.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	return mem
}

func newTestRing(t *testing.T, size int) *bodyRing {
	t.Helper()
	r, err := newBodyRing(size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	return r
}

func TestBodyRingSizes(t *testing.T) {
	for _, size := range []int{0, 4096, 60 << 10, 64<<10 + 1, 66 << 10, 2 << 30} {
		if _, err := newBodyRing(size); err == nil {
			t.Errorf("size %d accepted", size)
		}
		if CheckBodyRing(size) == nil {
			t.Errorf("CheckBodyRing(%d) = nil", size)
		}
	}
	for _, size := range []int{64 << 10, 68 << 10, 1 << 20} {
		r, err := newBodyRing(size)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(r.file.Fd()), &st); err != nil || st.Size != int64(ringHeader+2*size) {
			t.Errorf("size %d: file of %d bytes (%v), want %d", size, st.Size, err, ringHeader+2*size)
		}
		r.close()
		r.close() // idempotent
	}
}

// The gateway's G→W pieces land in the shared file at 4096 + position mod R, they never wrap, and
// the ring refuses a piece that would overwrite what the worker has not released.
func TestBodyRingPut(t *testing.T) {
	const R = 64 << 10
	r := newTestRing(t, R)
	peer := workerView(t, r)
	area := peer[ringHeader : ringHeader+R]
	release := func(end uint64) { binary.NativeEndian.PutUint64(peer[ringMarkG2W:], end) }

	a := bytes.Repeat([]byte("a"), 40<<10)
	pos, ok := r.put(a)
	if !ok || pos != 0 || !bytes.Equal(area[:len(a)], a) {
		t.Fatalf("first piece: pos %d ok %v", pos, ok)
	}
	// 40 KiB more does not fit while the first is not released.
	b := bytes.Repeat([]byte("b"), 40<<10)
	if _, ok := r.put(b); ok {
		t.Fatal("a piece that overwrites unreleased bytes was accepted")
	}
	// 24 KiB fits exactly at the end.
	c := bytes.Repeat([]byte("c"), 24<<10)
	if pos, ok := r.put(c); !ok || pos != 40<<10 || !bytes.Equal(area[40<<10:], c) {
		t.Fatalf("end piece: pos %d ok %v", pos, ok)
	}
	// Released up to 40 KiB (a): b goes on the next lap, over a's bytes, not c's.
	release(40 << 10)
	if pos, ok := r.put(b); !ok || pos != R || !bytes.Equal(area[:len(b)], b) || !bytes.Equal(area[40<<10:], c) {
		t.Fatalf("second lap: pos %d ok %v", pos, ok)
	}
	// 30 KiB after b (which ends at 104 KiB) would wrap: it is skipped to 128 KiB, which needs the
	// worker to have released up to 128 + 30 - 64 = 94 KiB.
	d := bytes.Repeat([]byte("d"), 30<<10)
	release(R + 29<<10)
	if _, ok := r.put(d); ok {
		t.Fatal("accepted a piece more than R ahead of the release mark")
	}
	release(R + 40<<10)
	if pos, ok := r.put(d); !ok || pos != 2*R || !bytes.Equal(area[:len(d)], d) {
		t.Fatalf("skip to the next lap: pos %d ok %v", pos, ok)
	}
	if r.head != 2*R+30<<10 {
		t.Fatalf("head %d", r.head)
	}
	// A piece that fits follows the last one, even when the worker has released everything: a skip
	// would cost the ring the skipped bytes until the worker's mark passes them.
	e := bytes.Repeat([]byte("e"), 16<<10)
	release(r.head)
	if pos, ok := r.put(e); !ok || pos != 2*R+30<<10 || !bytes.Equal(area[30<<10:46<<10], e) {
		t.Fatalf("after everything was released: pos %d ok %v", pos, ok)
	}
	// Larger than the ring: never fits.
	release(r.head)
	if _, ok := r.put(make([]byte, R+1)); ok {
		t.Fatal("a piece larger than the ring was accepted")
	}
}

// Every check of SPEC §6 on a RESPONSE_BODY_RING, and the release mark the worker sees.
func TestBodyRingTake(t *testing.T) {
	const R = 64 << 10
	r := newTestRing(t, R)
	peer := workerView(t, r)
	area := peer[ringHeader+R : ringHeader+2*R]
	copy(area[100:], "hello")

	body, err := r.take(100, 5, 1<<20)
	if err != nil || string(body) != "hello" {
		t.Fatalf("take: %q %v", body, err)
	}
	r.release(105)
	if got := binary.NativeEndian.Uint64(peer[ringMarkW2G:]); got != 105 {
		t.Fatalf("the worker sees w2g_released %d, want 105", got)
	}
	if got := binary.NativeEndian.Uint64(peer[ringMarkG2W:]); got != 0 {
		t.Fatalf("g2w_released moved: %d", got)
	}
	for _, tc := range []struct {
		name      string
		pos, n    uint64
		limit     uint64
		errSubstr string
	}{
		{"empty", 200, 0, 1 << 20, "outside 1.."},
		{"over the piece limit", 200, 1001, 1000, "outside 1..1000"},
		{"before the previous piece's end", 104, 10, 1 << 20, "before the end of the previous piece"},
		{"wraps", R - 10, 20, 1 << 20, "wraps"},
		{"more than R ahead", 105 + R, 10, 1 << 20, "ahead of what was released"},
		{"overflows", math.MaxUint64 - 5, 10, 1 << 20, "ahead of what was released"},
	} {
		if _, err := r.take(tc.pos, tc.n, tc.limit); err == nil || !strings.Contains(err.Error(), tc.errSubstr) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.errSubstr)
		}
	}
	// A piece may start later than the previous end (the worker skipped to the next lap).
	copy(area[0:], "lap2")
	if body, err := r.take(R, 4, 1<<20); err != nil || string(body) != "lap2" {
		t.Fatalf("next lap: %q %v", body, err)
	}
	r.release(R + 4)
	if body, err := r.take(2*R+4-10, 10, 1<<20); err == nil {
		t.Fatalf("a piece that wraps was taken: %q", body)
	}
}

// allocatedBytes is how much of the ring's file has pages (a memfd counts its pages in st_blocks).
func allocatedBytes(t *testing.T, r *bodyRing) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(r.file.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// An idle, fully released G→W area gives its pages back; one with unreleased bytes, or still
// being written, keeps them.
func TestBodyRingTrimIfIdle(t *testing.T) {
	const R = 1 << 20
	r := newTestRing(t, R)
	peer := workerView(t, r)
	area := peer[ringHeader : ringHeader+R]
	release := func(end uint64) { binary.NativeEndian.PutUint64(peer[ringMarkG2W:], end) }
	if r.trimIfIdle() || r.trimIfIdle() {
		t.Fatal("trimmed a ring never written")
	}
	piece := bytes.Repeat([]byte("p"), 256<<10)
	for range 3 {
		if _, ok := r.put(piece); !ok {
			t.Fatal("put")
		}
	}
	before := allocatedBytes(t, r)
	if before < 3*256<<10 {
		t.Fatalf("%d bytes allocated after writing 768 KiB", before)
	}
	if r.trimIfIdle() {
		t.Fatal("trimmed right after a put")
	}
	if r.trimIfIdle() {
		t.Fatal("trimmed while the worker has not released the pieces")
	}
	if !bytes.Equal(area[:len(piece)], piece) {
		t.Fatal("unreleased bytes changed")
	}
	release(r.head)
	if !r.trimIfIdle() {
		t.Fatal("an idle, released ring was not trimmed")
	}
	if after := allocatedBytes(t, r); after > before-3*256<<10 {
		t.Fatalf("allocated %d -> %d bytes: the area's pages were not given back", before, after)
	}
	if area[0] != 0 || area[3*256<<10-1] != 0 {
		t.Fatal("the trimmed area still reads the old bytes")
	}
	if r.trimIfIdle() {
		t.Fatal("trimmed twice without a put in between")
	}
	// After a trim the ring goes on from where it was.
	pos, ok := r.put(piece)
	if !ok || pos != 3*256<<10 || !bytes.Equal(area[pos:pos+uint64(len(piece))], piece) {
		t.Fatalf("put after a trim: pos %d ok %v", pos, ok)
	}
}

// ownBorrowedLocked keeps exactly the bytes of out-with-borrowed-pieces from skip on, in order.
func TestOwnBorrowedPieces(t *testing.T) {
	build := func() (*h1conn, []byte) {
		c := &h1conn{}
		var whole []byte
		add := func(s string) { c.out = append(c.out, s...); whole = append(whole, s...) }
		borrow := func(s string) {
			c.borrowed = append(c.borrowed, borrowedPiece{at: len(c.out), data: []byte(s)})
			whole = append(whole, s...)
		}
		add("HTTP/1.1 200 OK\r\n\r\n4\r\n")
		borrow("abcd")
		add("\r\n3\r\n")
		borrow("efg")
		borrow("hij") // two pieces at the same offset
		add("\r\n")
		return c, whole
	}
	_, whole := build()
	for skip := 0; skip <= len(whole); skip++ {
		c, _ := build()
		c.ownBorrowedLocked(skip)
		if string(c.out) != string(whole[skip:]) || len(c.borrowed) != 0 {
			t.Fatalf("skip %d: %q, want %q (borrowed %d)", skip, c.out, whole[skip:], len(c.borrowed))
		}
	}
}

// FuzzBodyRingTake feeds take a worker's positions and lengths, as RESPONSE_BODY_RING frames carry
// them, and checks it against SPEC §6: it accepts exactly the pieces the rules allow, every piece it
// returns lies in the W→G area and is the bytes at position mod R, and a refused piece changes
// nothing.
func FuzzBodyRingTake(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 1})
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\xff\xf0\x00\x00\x00\x20\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x40\x00\x01"))
	const R = 64 << 10
	r, err := newBodyRing(R)
	if err != nil {
		f.Fatal(err)
	}
	defer r.close()
	for i := range r.w2g {
		r.w2g[i] = byte(i * 7)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r.taken, r.released = 0, 0
		limit := uint64(R / 2)
		for len(data) >= 13 {
			pos := binary.BigEndian.Uint64(data)
			n := uint64(binary.BigEndian.Uint32(data[8:]))
			release := data[12]&1 == 1
			data = data[13:]
			taken, released := r.taken, r.released
			ok := n >= 1 && n <= limit && pos >= taken && pos <= math.MaxUint64-n &&
				pos+n-released <= R && pos%R+n <= R
			body, err := r.take(pos, n, limit)
			if (err == nil) != ok {
				t.Fatalf("take(%d, %d) with taken %d released %d: err %v, rules say ok=%v", pos, n, taken, released, err, ok)
			}
			if err != nil {
				if r.taken != taken || r.released != released {
					t.Fatal("a refused piece moved the marks")
				}
				continue
			}
			if uint64(len(body)) != n || uint64(cap(body)) != n {
				t.Fatalf("piece of %d bytes (cap %d), want %d", len(body), cap(body), n)
			}
			off := pos % R
			if &body[0] != &r.w2g[off] {
				t.Fatalf("piece at the wrong place for position %d", pos)
			}
			if r.taken != pos+n {
				t.Fatalf("taken %d, want %d", r.taken, pos+n)
			}
			if release {
				r.release(r.taken)
			}
		}
	})
}
