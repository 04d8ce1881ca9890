package http1

import (
	"bytes"
	"testing"
)

func FuzzParseHead(f *testing.F) {
	for _, tt := range goodHeads {
		f.Add([]byte(tt.in))
	}
	for _, tt := range badHeads {
		f.Add([]byte(tt.in))
	}
	f.Add([]byte(benchHead))
	f.Fuzz(func(t *testing.T, in []byte) {
		lim := &Limits{MaxRequestLine: 128, MaxHeaderBytes: 512, MaxHeaders: 8}
		buf := bytes.Clone(in)
		var req Request
		n, err := ParseHead(buf, &req, lim)
		if err != nil {
			if n != 0 {
				t.Fatalf("error %v with n = %d", err, n)
			}
			if _, ok := err.(*Error); !ok && err != ErrNeedMore {
				t.Fatalf("unexpected error type %T", err)
			}
			return
		}
		if n <= 0 || n > len(buf) || n > lim.MaxHeaderBytes {
			t.Fatalf("n = %d, len %d", n, len(buf))
		}
		checkAliases(t, buf[:n], &req)
		if req.Minor != 0 && req.Minor != 1 || req.Chunked && req.ContentLength != -1 || len(req.Path) == 0 || len(req.Headers) > lim.MaxHeaders {
			t.Fatalf("inconsistent request %+v", req)
		}
		for _, h := range req.Headers {
			if !ValidHeaderName(h.Name) || !ValidHeaderValue(h.Value) || bytes.ContainsAny(h.Name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
				t.Fatalf("bad header %q: %q", h.Name, h.Value)
			}
		}
		// Every proper prefix of the head is incomplete, and the head alone
		// parses to the same length.
		for _, i := range []int{0, n / 2, n - 1} {
			var r Request
			if _, err := ParseHead(bytes.Clone(buf[:i]), &r, lim); err != ErrNeedMore {
				t.Fatalf("prefix of %d bytes: %v", i, err)
			}
		}
		if m, err := ParseHead(bytes.Clone(buf[:n]), new(Request), lim); m != n || err != nil {
			t.Fatalf("head alone: %d, %v; want %d", m, err, n)
		}
		// Parsing again, now with lower-cased names, gives the same result.
		var again Request
		if m, err := ParseHead(buf, &again, lim); m != n || err != nil {
			t.Fatalf("second parse: %d, %v; want %d", m, err, n)
		}
	})
}

func FuzzChunked(f *testing.F) {
	for _, tt := range goodChunked {
		f.Add([]byte(tt.in))
	}
	for _, tt := range badChunked {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		body1, n1, done1, err1 := decodeAll(in, len(in))
		body2, n2, done2, err2 := decodeAll(in, 1)
		if !bytes.Equal(body1, body2) || n1 != n2 || done1 != done2 || err1 != err2 {
			t.Fatalf("one piece: %q, %d, %v, %v\nbyte by byte: %q, %d, %v, %v",
				body1, n1, done1, err1, body2, n2, done2, err2)
		}
		if err1 != nil && status(err1) != 400 {
			t.Fatalf("error %v", err1)
		}
		if done1 {
			// What was decoded re-encodes to something that decodes the same.
			enc := AppendLastChunk(AppendChunk(nil, body1))
			if body, _, done, err := decodeAll(enc, len(enc)); !done || err != nil || !bytes.Equal(body, body1) {
				t.Fatalf("round trip: %q, %v, %v", body, done, err)
			}
		}
	})
}
