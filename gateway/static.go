package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/asgi-gateway/asgi-gateway/gateway/http1"
)

// staticAllow is the Allow field of a static mount's 405 (RFC 9110 15.5.6).
var staticAllow = [2]string{"allow", "GET, HEAD"}

// StaticMount is one --static PREFIX=DIR: requests whose path starts with Prefix are answered by
// the gateway from files under Dir, without a worker.
type StaticMount struct {
	Prefix string // "/static"
	Dir    string // absolute, symlinks resolved
}

// ParseStaticMount parses "PREFIX=DIR".
func ParseStaticMount(spec string) (StaticMount, error) {
	prefix, dir, ok := strings.Cut(spec, "=")
	if !ok || !strings.HasPrefix(prefix, "/") || dir == "" {
		return StaticMount{}, fmt.Errorf("--static %q: expected /PREFIX=DIRECTORY", spec)
	}
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return StaticMount{}, fmt.Errorf("--static %q: %w", spec, err)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return StaticMount{}, fmt.Errorf("--static %q: %s is not a directory", spec, abs)
	}
	return StaticMount{Prefix: strings.TrimRight(prefix, "/"), Dir: abs}, nil
}

// match returns the file a request path names under the mount, or "" when the path is not the
// mount's. The path is the decoded one; ".." segments cannot climb out (path.Clean of a rooted
// path), and symlinks are checked by resolve.
func (m *StaticMount) match(decoded []byte) (string, bool) {
	p := string(decoded)
	if p != m.Prefix && !strings.HasPrefix(p, m.Prefix+"/") {
		return "", false
	}
	rel := path.Clean("/" + strings.TrimPrefix(p, m.Prefix))
	if strings.ContainsRune(rel, 0) {
		return "", true
	}
	name := filepath.Join(m.Dir, filepath.FromSlash(rel))
	if strings.HasSuffix(p, "/") && rel != "/" {
		name += string(filepath.Separator) // a directory's name: a file of that name is not found
	}
	return name, true
}

// resolve follows symlinks and refuses anything that ends outside the mount's directory.
func (m *StaticMount) resolve(name string) (string, bool) {
	real, err := filepath.EvalSymlinks(name)
	if err != nil {
		return "", false
	}
	if real != m.Dir && !strings.HasPrefix(real, m.Dir+string(filepath.Separator)) {
		return "", false
	}
	return real, true
}

// open opens the file name (from match) for a client that accepts the content codings in accept:
// the file itself, or its precompressed name.br / name.gz sibling when the client takes it and it
// is not older, with that coding. Only regular files are served (a directory, a FIFO that would
// block the open, a device: 404); status is 0, or 404 / 403 with nothing opened. varies: there is a
// sibling, so the reply depends on Accept-Encoding.
func (m *StaticMount) open(name string, accept []byte) (f *os.File, fi os.FileInfo, encoding string, varies bool, status int) {
	real, ok := m.resolve(name)
	if !ok {
		return nil, nil, "", false, 404
	}
	// Opened first, then described (fstat): the headers (ETag, Last-Modified, Content-Length) are
	// those of the bytes sent, even when the file is replaced (renamed over) meanwhile.
	f, fi, status = openRegular(real)
	if status != 0 {
		return nil, nil, "", false, status
	}
	for _, enc := range [...]struct{ token, ext string }{{"br", ".br"}, {"gzip", ".gz"}} {
		alt, ok := m.resolve(real + enc.ext)
		if !ok {
			continue
		}
		af, afi, st := openRegular(alt)
		if st != 0 {
			continue
		}
		if afi.ModTime().Before(fi.ModTime()) { // an older sibling is stale: not a version of this file
			af.Close()
			continue
		}
		varies = true // the response depends on Accept-Encoding (Vary, RFC 9110 §12.5.5)
		if encoding != "" || !acceptsCoding(accept, enc.token) {
			af.Close()
			continue
		}
		f.Close()
		f, fi, encoding = af, afi, enc.token
	}
	return f, fi, encoding, varies, 0
}

// openRegular opens a regular file for a static reply (a FIFO or device is no file to serve, and
// O_NONBLOCK keeps its open from blocking): 404, or 403 when not permitted.
func openRegular(path string) (*os.File, os.FileInfo, int) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, nil, 403
		}
		return nil, nil, 404
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, 404
	}
	return f, fi, 0
}

// acceptsCoding reports whether an Accept-Encoding value accepts coding: listed (any case), with no
// weight or a weight other than 0 (RFC 9110 §12.5.3: "gzip;q=0.8"; q=0 means not acceptable).
func acceptsCoding(accept []byte, coding string) bool {
	for list, more := accept, len(accept) > 0; more; {
		var e []byte
		e, list, more = http1.NextElement(list)
		token, params, _ := bytes.Cut(e, []byte(";"))
		if !http1.EqualFold(bytes.TrimSpace(token), coding) {
			continue
		}
		q := bytes.TrimSpace(params)
		if v, ok := bytes.CutPrefix(bytes.ToLower(q), []byte("q=")); ok {
			if w, err := strconv.ParseFloat(string(bytes.TrimSpace(v)), 64); err == nil && w == 0 {
				return false
			}
		}
		return true
	}
	return false
}

// serveStatic answers a GET or HEAD for a static mount in the serve goroutine (the caller answers
// other methods, 405 with staticAllow, and requests with content, 400): ETag and Last-Modified
// with the conditional fields (preconditions: 304, 412); a single byte Range for GET, with If-Range
// (206, 416 when unsatisfiable); precompressed name.br / name.gz when the client accepts them; the
// body goes from the file to the socket with sendfile. It returns false when the connection must
// end.
func (c *h1conn) serveStatic(m *StaticMount, ex *exchange) bool {
	req := &c.req
	name, _ := m.match(c.hr.Path[len(c.hr.RootPath):])
	method := string(req.Method)
	f, fi, encoding, varies, status := m.open(name, headerValues(req.Headers, "accept-encoding"))
	if status != 0 {
		ex.status, ex.bytesOut = status, simpleBodyLen(status, method == "HEAD")
		c.mu.Lock()
		c.out = c.srv.appendSimpleResponse(c.out, req.Minor, status, method == "HEAD", req.Close)
		if req.Close {
			c.closing = true
		}
		c.flushLocked()
		c.mu.Unlock()
		c.srv.accessLog(ex)
		return !req.Close
	}
	defer f.Close()

	reply := planStatic(func(name string) []byte { return headerValues(req.Headers, name) }, method, name, fi, encoding, varies, time.Now())
	status, start, length := reply.status, reply.start, reply.length
	out := c.srv.appendOwnHeaders(http1.AppendStatusLine(nil, status))
	for _, h := range reply.headers {
		out = append(append(append(append(out, h[0]...), ": "...), h[1]...), "\r\n"...)
	}
	if req.Close {
		out = append(out, "connection: close\r\n"...)
	} else if req.Minor == 0 {
		out = append(out, "connection: keep-alive\r\n"...) // (an HTTP/1.0 client closes otherwise)
	}
	out = append(out, "\r\n"...)
	ex.status = status
	ex.bytesOut = 0 // (the body bytes sent: none for HEAD, what the client took of a GET's)

	// The write side is ours: no exchange is running (waitIdle), and we wait out a drain.
	c.mu.Lock()
	for c.draining && !c.closed {
		c.mu.Unlock()
		time.Sleep(time.Millisecond)
		c.mu.Lock()
	}
	c.out = append(c.out, out...)
	c.flushLocked()
	closed := c.closed
	for c.draining && !c.closed {
		c.mu.Unlock()
		time.Sleep(time.Millisecond)
		c.mu.Lock()
	}
	c.mu.Unlock()
	if closed {
		return false
	}
	if method == "GET" && length > 0 {
		if _, err := f.Seek(start, io.SeekStart); err != nil {
			return false
		}
		// In flight for a graceful shutdown too: closeIfIdle lets it finish (closing).
		c.mu.Lock()
		c.staticBody = true
		c.mu.Unlock()
		c.nc.SetWriteDeadline(time.Now().Add(writeTimeout + time.Duration(length/(64<<10))*time.Second))
		n, err := io.CopyN(c.nc, f, length) // sendfile(2) for TCP and Unix sockets
		c.nc.SetWriteDeadline(time.Time{})
		ex.bytesOut = n
		c.mu.Lock()
		c.staticBody = false
		closing := c.closing
		c.mu.Unlock()
		if err != nil {
			c.srv.accessLog(ex) // (a cut download is a request too, with what was sent)
			return false
		}
		if closing {
			c.srv.accessLog(ex)
			c.mu.Lock()
			c.closeLocked()
			c.mu.Unlock()
			return false
		}
	}
	c.srv.accessLog(ex)
	if req.Close {
		c.mu.Lock()
		c.closeLocked()
		c.mu.Unlock()
		return false
	}
	c.mu.Lock()
	c.idleDeadline()
	c.mu.Unlock()
	return true
}

// staticReply is a static mount's answer to a GET or HEAD of one file, the same over HTTP/1.1 and
// HTTP/2: the status, the fields after the server's own, and the bytes of the file that follow
// (from start, length of them; sent for GET only).
type staticReply struct {
	status        int
	headers       [][2]string // lower-case names
	start, length int64
}

// planStatic evaluates a GET or HEAD of the file fi (served with the content coding encoding, "" for
// none; name is the path asked for, whose extension gives the type) at the time now. get returns a
// request field's value, nil when absent. The preconditions come first (304, 412); then a single
// byte Range, for GET only (RFC 9110 14.2), with If-Range; 206, or 416 when unsatisfiable.
func planStatic(get func(name string) []byte, method, name string, fi os.FileInfo, encoding string, varies bool, now time.Time) staticReply {
	size := fi.Size()
	etag := fmt.Sprintf(`"%x-%x"`, fi.ModTime().UnixNano(), size)
	if encoding != "" {
		etag = fmt.Sprintf(`"%x-%x-%s"`, fi.ModTime().UnixNano(), size, encoding)
	}
	// Never later than the response's Date (RFC 9110 8.8.2.1): a file dated in the future is
	// sent, and compared, with the time of the response.
	modified := fi.ModTime()
	if modified.After(now) {
		modified = now
	}
	modified = modified.UTC().Truncate(time.Second)
	r := staticReply{status: preconditions(get, etag, modified), length: size}
	if r.status == 200 && method == "GET" && encoding == "" {
		// With If-Range, only while the validator still matches (13.1.5), else the whole file,
		// never a part of another version of it.
		rng := get("range")
		if ir := get("if-range"); rng != nil && ir != nil && !ifRangeMatches(string(ir), etag, modified) {
			rng = nil
		}
		if rng != nil {
			s, n, ok := parseByteRange(string(rng), size)
			switch {
			case !ok:
				r.status = 416
			case n >= 0:
				r.status, r.start, r.length = 206, s, n
			}
		}
	}

	r.headers = append(r.headers, [2]string{"etag", etag}, [2]string{"last-modified", modified.Format(http.TimeFormat)}, [2]string{"accept-ranges", "bytes"})
	switch r.status {
	case 304:
		if varies {
			r.headers = append(r.headers, [2]string{"vary", "accept-encoding"}) // (a 304 carries the Vary a 200 would, RFC 9110 15.4.5)
		}
		r.length = 0
		return r
	case 412:
		r.length = 0
		r.headers = append(r.headers, [2]string{"content-length", "0"})
		return r
	}
	// The type of what was asked for: name is the file requested (a precompressed sibling sent for
	// it has the same type, with a Content-Encoding); a file asked for as x.gz is gzip data.
	ctype := mime.TypeByExtension(filepath.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	r.headers = append(r.headers, [2]string{"content-type", ctype})
	if encoding != "" {
		r.headers = append(r.headers, [2]string{"content-encoding", encoding})
	}
	if varies {
		// Also on the identity reply: a cache must not give it to a client that accepts the
		// precompressed one, or the other way round (RFC 9110 §12.5.5).
		r.headers = append(r.headers, [2]string{"vary", "accept-encoding"})
	}
	switch r.status {
	case 206:
		r.headers = append(r.headers, [2]string{"content-range", fmt.Sprintf("bytes %d-%d/%d", r.start, r.start+r.length-1, size)})
	case 416:
		r.headers = append(r.headers, [2]string{"content-range", fmt.Sprintf("bytes */%d", size)})
		r.length = 0
	}
	r.headers = append(r.headers, [2]string{"content-length", strconv.FormatInt(r.length, 10)})
	return r
}

// headerValues is name's field value, its field lines joined as one list (RFC 9110 §5.3: "If-None-
// Match: a" and "If-None-Match: b" are "a, b"); nil when absent.
func headerValues(hs []http1.Header, name string) []byte {
	var v []byte
	n := 0
	for i := range hs {
		if string(hs[i].Name) != name {
			continue
		}
		switch n++; n {
		case 1:
			v = hs[i].Value
		case 2:
			v = append(append(append([]byte(nil), v...), ", "...), hs[i].Value...)
		default:
			v = append(append(v, ", "...), hs[i].Value...)
		}
	}
	return v
}

// preconditions evaluates a GET or HEAD's conditional header fields (get returns one, nil when
// absent) against the file's strong
// etag and modification time, in RFC 9110 13.2.2's order: 412 when If-Match (or, without it,
// If-Unmodified-Since) fails, 304 when If-None-Match (or, without it, If-Modified-Since) says the
// client's copy is current, else 200. A date that does not parse is ignored (13.1.3, 13.1.4).
func preconditions(get func(name string) []byte, etag string, modified time.Time) int {
	if im := get("if-match"); im != nil {
		if !etagMatches(string(im), etag, false) {
			return 412
		}
	} else if ius := get("if-unmodified-since"); ius != nil {
		if t, err := http.ParseTime(string(ius)); err == nil && modified.After(t) {
			return 412
		}
	}
	if inm := get("if-none-match"); inm != nil {
		if etagMatches(string(inm), etag, true) {
			return 304
		}
	} else if ims := get("if-modified-since"); ims != nil {
		if t, err := http.ParseTime(string(ims)); err == nil && !modified.After(t) {
			return 304
		}
	}
	return 200
}

// etagMatches reports whether a list of entity tags (or "*") matches etag, a strong tag: with the
// weak comparison (If-None-Match) a W/ tag matches by its opaque part; with the strong one
// (If-Match) it never does (RFC 9110 8.8.3.2).
func etagMatches(list, etag string, weak bool) bool {
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "*" {
			return true
		}
		if tag, isWeak := strings.CutPrefix(item, "W/"); isWeak {
			if !weak {
				continue
			}
			item = tag
		}
		if item == etag {
			return true
		}
	}
	return false
}

// ifRangeMatches reports whether an If-Range value still names the file: its strong entity tag,
// or exactly its Last-Modified date (RFC 9110 13.1.5; a weak tag never matches).
func ifRangeMatches(v, etag string, modified time.Time) bool {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, `"`) || strings.HasPrefix(v, "W/") {
		return v == etag
	}
	t, err := http.ParseTime(v)
	return err == nil && t.Equal(modified)
}

// parseByteRange parses a Range header for one byte range. It returns (start, length, true) for a
// satisfiable single range, (0, -1, true) when the header should be ignored (another unit, several
// ranges: the whole file is sent), and ok=false when unsatisfiable (416).
func parseByteRange(v string, size int64) (start, length int64, ok bool) {
	v = strings.TrimSpace(v)
	// RFC 9110 §14.1: "Range unit names are case-insensitive".
	if len(v) < len("bytes=") || !strings.EqualFold(v[:len("bytes=")], "bytes=") {
		return 0, -1, true
	}
	spec := v[len("bytes="):]
	if strings.Contains(spec, ",") {
		return 0, -1, true
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, -1, true
	}
	if first == "" { // suffix: the last N bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if errors.Is(err, strconv.ErrRange) && allDigits(last) {
			n, err = math.MaxInt64, nil // longer than any file: the whole of it (RFC 9110 §14.1.3)
		}
		if err != nil || n <= 0 {
			return 0, 0, false
		}
		if size == 0 {
			// Satisfiable (RFC 9110 14.1.3), but no 206 can carry an empty part: the Range is
			// ignored and the whole, empty file sent.
			return 0, -1, true
		}
		n = min(n, size)
		return size - n, n, true
	}
	s, err := strconv.ParseInt(first, 10, 64)
	if err != nil || s < 0 {
		return 0, -1, true
	}
	if s >= size {
		return 0, 0, false
	}
	e := size - 1
	if last != "" {
		if e, err = strconv.ParseInt(last, 10, 64); err != nil || e < s {
			return 0, -1, true
		}
		e = min(e, size-1)
	}
	return s, e - s + 1, true
}

// allDigits reports whether s is 1*DIGIT.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// serveStaticH2 answers a static-mount request on the HTTP/2 engine the way serveStatic does over
// HTTP/1.1: the same resolution (no escape from the directory, precompressed siblings), the same
// reply (planStatic), and the gateway's own fields (Server, Date, --header) as on its other
// responses. res gets the status and the body bytes sent, for the access log and the metrics.
func (s *Server) serveStaticH2(w http.ResponseWriter, r *http.Request, res *h2Response, m *StaticMount, name string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.h2SimpleResponse(w, r, res, 405, staticAllow)
		return
	}
	get := func(name string) []byte {
		if v := r.Header[http.CanonicalHeaderKey(name)]; len(v) > 0 {
			return []byte(strings.Join(v, ", ")) // the field lines as one list (RFC 9110 §5.3)
		}
		return nil
	}
	f, fi, encoding, varies, status := m.open(name, get("accept-encoding"))
	if status != 0 {
		s.h2SimpleResponse(w, r, res, status)
		return
	}
	defer f.Close()
	reply := planStatic(get, r.Method, name, fi, encoding, varies, time.Now())
	h := w.Header()
	if s.cfg.ServerHeader {
		h["Server"] = []string{"asgi-gateway"}
	}
	if !s.cfg.DateHeader {
		h["Date"] = nil // suppresses the HTTP/2 server's own date
	}
	for _, x := range s.extraHeaders {
		h.Add(string(x.Name), string(x.Value))
	}
	for _, x := range reply.headers {
		h.Set(x[0], x[1])
	}
	w.WriteHeader(reply.status)
	res.status = reply.status
	if r.Method == http.MethodGet && reply.length > 0 {
		// A client that takes nothing (no window) must not hold the file, and the stream, for
		// ever: the bound HTTP/1.1's static writes have (writeTimeout, and a second per 64 KiB).
		deadline := time.Now().Add(writeTimeout + time.Duration(reply.length/(64<<10))*time.Second)
		http.NewResponseController(w).SetWriteDeadline(deadline)
		if _, err := f.Seek(reply.start, io.SeekStart); err == nil {
			n, _ := io.CopyN(w, f, reply.length) // an error is the client's stream gone
			res.bytes += n
		}
	}
}
