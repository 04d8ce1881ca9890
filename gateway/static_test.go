package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/asgi-gateway/asgi-gateway/gateway/http1"
)

func staticGateway(t *testing.T) (string, string) {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "public")
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("0123456789"), 0o644)
	os.WriteFile(filepath.Join(dir, "app.js"), []byte("console.log(1)"), 0o644)
	os.WriteFile(filepath.Join(dir, "app.js.gz"), []byte("GZIPPED"), 0o644)
	os.WriteFile(filepath.Join(root, "secret.txt"), []byte("secret"), 0o644)
	os.Symlink(filepath.Join(root, "secret.txt"), filepath.Join(dir, "escape.txt"))
	_, addr := startGatewayCfg(t, "ok", func(c *Config) {
		m, err := ParseStaticMount("/static=" + dir)
		if err != nil {
			t.Fatal(err)
		}
		c.Static = []StaticMount{m}
	})
	return addr, dir
}

func rawDo(t *testing.T, addr, method, target string, headers ...string) (*http.Response, string) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	req := method + " " + target + " HTTP/1.1\r\nHost: x\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	io.WriteString(nc, req+"\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(nc), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestStaticFiles(t *testing.T) {
	addr, _ := staticGateway(t)
	resp, body := rawDo(t, addr, "GET", "/static/hello.txt")
	if resp.StatusCode != 200 || body != "0123456789" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	etag := resp.Header.Get("Etag")
	if etag == "" || resp.Header.Get("Last-Modified") == "" {
		t.Fatalf("no validators: %v", resp.Header)
	}
	if resp, _ := rawDo(t, addr, "GET", "/static/hello.txt", "If-None-Match: "+etag); resp.StatusCode != 304 {
		t.Fatalf("If-None-Match: %d", resp.StatusCode)
	}
	if resp, body := rawDo(t, addr, "GET", "/static/hello.txt", "Range: bytes=2-4"); resp.StatusCode != 206 || body != "234" || resp.Header.Get("Content-Range") != "bytes 2-4/10" {
		t.Fatalf("Range: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if resp, body := rawDo(t, addr, "GET", "/static/hello.txt", "Range: bytes=-3"); resp.StatusCode != 206 || body != "789" {
		t.Fatalf("suffix Range: %d %q", resp.StatusCode, body)
	}
	if resp, _ := rawDo(t, addr, "GET", "/static/hello.txt", "Range: bytes=20-"); resp.StatusCode != 416 {
		t.Fatalf("unsatisfiable Range: %d", resp.StatusCode)
	}
	if resp, body := rawDo(t, addr, "HEAD", "/static/hello.txt"); resp.StatusCode != 200 || body != "" || resp.ContentLength != 10 {
		t.Fatalf("HEAD: %d %q %d", resp.StatusCode, body, resp.ContentLength)
	}
	if resp, body := rawDo(t, addr, "GET", "/static/app.js", "Accept-Encoding: gzip, br"); body != "GZIPPED" || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("precompressed: %q %v", body, resp.Header)
	}
	if _, body := rawDo(t, addr, "GET", "/static/app.js"); body != "console.log(1)" {
		t.Fatalf("without Accept-Encoding: %q", body)
	}
	for _, target := range []string{"/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/escape.txt", "/static/sub", "/static/missing"} {
		if resp, body := rawDo(t, addr, "GET", target); resp.StatusCode != 404 || strings.Contains(body, "secret") {
			t.Fatalf("%s: %d %q, want 404", target, resp.StatusCode, body)
		}
	}
	if resp, _ := rawDo(t, addr, "DELETE", "/static/hello.txt"); resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("DELETE: %d, Allow %q; want 405 with Allow: GET, HEAD (RFC 9110 15.5.6)", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// Other paths still go to the app.
	if _, body := rawDo(t, addr, "GET", "/staticx"); !strings.Contains(body, "path=/staticx") {
		t.Fatalf("a non-mount path: %q", body)
	}
	// Accept-Encoding weights (RFC 9110 12.5.3); the identity reply varies too (12.5.5).
	if resp, body := rawDo(t, addr, "GET", "/static/app.js", "Accept-Encoding: gzip;q=0.8, identity;q=0.2"); body != "GZIPPED" || resp.Header.Get("Vary") != "accept-encoding" {
		t.Fatalf("gzip;q=0.8: %q %v", body, resp.Header)
	}
	if resp, body := rawDo(t, addr, "GET", "/static/app.js", "Accept-Encoding: gzip;q=0"); body != "console.log(1)" || resp.Header.Get("Vary") != "accept-encoding" {
		t.Fatalf("gzip;q=0: %q %v", body, resp.Header)
	}
	// A file asked for as x.gz is gzip data, not its inner type (RFC 9110 8.3, 8.4).
	if resp, _ := rawDo(t, addr, "GET", "/static/app.js.gz"); resp.Header.Get("Content-Encoding") != "" || strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
		t.Fatalf("app.js.gz asked for: %v", resp.Header)
	}
	// A list field over several lines is one list (RFC 9110 5.3).
	if resp, _ := rawDo(t, addr, "GET", "/static/hello.txt", `If-None-Match: "other"`, "If-None-Match: "+etag); resp.StatusCode != 304 {
		t.Fatalf("If-None-Match over two lines: %d", resp.StatusCode)
	}
}

func TestParseByteRange(t *testing.T) {
	cases := []struct {
		v        string
		start, n int64
		ok       bool
	}{
		{"bytes=0-0", 0, 1, true}, {"bytes=5-", 5, 5, true}, {"bytes=-20", 0, 10, true},
		{"bytes=9-100", 9, 1, true}, {"bytes=10-", 0, 0, false}, {"bytes=0-1,3-4", 0, -1, true},
		{"items=0-1", 0, -1, true}, {"bytes=4-2", 0, -1, true}, {"bytes=-0", 0, 0, false},
		// A suffix longer than any int64 is still longer than the file: the whole of it (14.1.3).
		{"bytes=-99999999999999999999", 0, 10, true},
		// RFC 9110 §14.1: range unit names are case-insensitive.
		{"Bytes=0-1", 0, 2, true}, {"BYTES=5-", 5, 5, true}, {"bYtEs=-3", 7, 3, true}, {"bytes", 0, -1, true},
	}
	for _, c := range cases {
		s, n, ok := parseByteRange(c.v, 10)
		if s != c.start || n != c.n || ok != c.ok {
			t.Errorf("%q: got (%d, %d, %v), want (%d, %d, %v)", c.v, s, n, ok, c.start, c.n, c.ok)
		}
	}
	// An empty file: a suffix range is ignored (no 206 can carry it), any other is unsatisfiable.
	for v, want := range map[string]bool{"bytes=-5": true, "bytes=0-": false, "bytes=-0": false} {
		if s, n, ok := parseByteRange(v, 0); ok != want || (ok && (s != 0 || n != -1)) {
			t.Errorf("%q of an empty file: got (%d, %d, %v)", v, s, n, ok)
		}
	}
}

// A file dated in the future is sent with the time of the response (RFC 9110 8.8.2.1), and a Range
// of a HEAD is ignored (14.2).
func TestPlanStatic(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	dir := t.TempDir()
	name := filepath.Join(dir, "f.txt")
	os.WriteFile(name, []byte("0123456789"), 0o644)
	os.Chtimes(name, now.Add(time.Hour), now.Add(time.Hour))
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{"range": "bytes=0-1"}
	get := func(n string) []byte {
		if v, ok := fields[n]; ok {
			return []byte(v)
		}
		return nil
	}
	field := func(r staticReply, n string) string {
		for _, h := range r.headers {
			if h[0] == n {
				return h[1]
			}
		}
		return ""
	}
	if r := planStatic(get, "GET", "/f.txt", fi, "", false, now); r.status != 206 || field(r, "last-modified") != "Fri, 02 Jan 2026 03:04:05 GMT" {
		t.Errorf("GET: %d %v", r.status, r.headers)
	}
	if r := planStatic(get, "HEAD", "/f.txt", fi, "", false, now); r.status != 200 || field(r, "content-length") != "10" || field(r, "content-range") != "" {
		t.Errorf("HEAD: %d %v", r.status, r.headers)
	}
}

// RFC 9110 13.2.2's order and comparisons, for a file with the strong tag "t" modified at mod.
func TestStaticPreconditions(t *testing.T) {
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	before, at, after := mod.Add(-time.Hour).Format(http.TimeFormat), mod.Format(http.TimeFormat), mod.Add(time.Hour).Format(http.TimeFormat)
	cases := []struct {
		fields [][2]string
		want   int
	}{
		{nil, 200},
		{[][2]string{{"if-match", `"t"`}}, 200},
		{[][2]string{{"if-match", `"x", "t"`}}, 200},
		{[][2]string{{"if-match", "*"}}, 200},
		{[][2]string{{"if-match", `W/"t"`}}, 412}, // strong comparison
		{[][2]string{{"if-match", `"x"`}}, 412},
		{[][2]string{{"if-unmodified-since", before}}, 412},
		{[][2]string{{"if-unmodified-since", at}}, 200},
		{[][2]string{{"if-unmodified-since", "not a date"}}, 200},
		{[][2]string{{"if-match", `"t"`}, {"if-unmodified-since", before}}, 200},   // If-Match decides
		{[][2]string{{"if-none-match", `W/"t"`}}, 304},                             // weak comparison
		{[][2]string{{"if-none-match", `"x"`}, {"if-modified-since", after}}, 200}, // If-None-Match decides
		{[][2]string{{"if-modified-since", at}}, 304},
		{[][2]string{{"if-modified-since", before}}, 200},
		{[][2]string{{"if-match", `"x"`}, {"if-none-match", `"t"`}}, 412},
	}
	for _, c := range cases {
		var hs []http1.Header
		for _, f := range c.fields {
			hs = append(hs, http1.Header{Name: []byte(f[0]), Value: []byte(f[1])})
		}
		get := func(name string) []byte { return headerValues(hs, name) }
		if got := preconditions(get, `"t"`, mod); got != c.want {
			t.Errorf("%v: %d, want %d", c.fields, got, c.want)
		}
	}
	for v, want := range map[string]bool{`"t"`: true, `W/"t"`: false, `"x"`: false, at: true, before: false, "garbage": false} {
		if got := ifRangeMatches(v, `"t"`, mod); got != want {
			t.Errorf("If-Range %q: %v, want %v", v, got, want)
		}
	}
}
