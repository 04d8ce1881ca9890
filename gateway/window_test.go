package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// windowReport reads a /window response (fake worker) from br and returns its body size and the
// first CREDIT increment and largest window the worker saw.
func windowReport(t *testing.T, br *bufio.Reader, req *http.Request, read func(io.Reader) ([]byte, error)) (int, int64, int64) {
	t.Helper()
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("response: %v", err)
	}
	body, err := read(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	i := strings.LastIndex(string(body), "\nfirst=")
	if i < 0 {
		t.Fatalf("no report at the end of a %d-byte body", len(body))
	}
	var first, most int64
	if _, err := fmt.Sscanf(string(body[i:]), "\nfirst=%d max=%d\n", &first, &most); err != nil {
		t.Fatalf("report %q: %v", body[i:], err)
	}
	return i, first, most
}

// A client that takes the response as fast as the gateway writes it gets a response window that
// grows to respWindowGrowth × W, and the connection's next stream starts there. With no budget for
// widening, the window stays at W.
func TestResponseWindowGrowsForAFastClient(t *testing.T) {
	for _, budget := range []int64{wideningBudget, 0} {
		t.Run(fmt.Sprintf("budget=%d", budget), func(t *testing.T) {
			defer func(b int64) { wideningBudget = b }(wideningBudget)
			wideningBudget = budget
			srv, addr := startGateway(t, "", 1)
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			br := bufio.NewReader(nc)
			const size = 4 << 20
			w := int64(protocol.DefaultWindow)
			for i := range 2 {
				req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/window?%d", addr, size), nil)
				if _, err := fmt.Fprintf(nc, "GET /window?%d HTTP/1.1\r\nHost: x\r\n\r\n", size); err != nil {
					t.Fatal(err)
				}
				n, first, most := windowReport(t, br, req, io.ReadAll)
				if n != size {
					t.Fatalf("stream %d: %d filler bytes, want %d", i, n, size)
				}
				// The worker's window after a CREDIT: what it may still send. Above W only if grown.
				switch {
				case budget == 0 && most > w:
					t.Errorf("stream %d: window %d with no budget, want at most W = %d", i, most, w)
				case budget > 0 && (most <= w || most > respWindowGrowth*w):
					t.Errorf("stream %d: largest window %d, want above W = %d, at most %d", i, most, w, respWindowGrowth*w)
				case budget > 0 && i == 1 && first != (respWindowGrowth-1)*w:
					t.Errorf("second stream: first CREDIT %d, want %d (the connection's grown window, at once)", first, (respWindowGrowth-1)*w)
				}
			}
			deadline := time.Now().Add(2 * time.Second)
			for srv.widened.Load() != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond) // (END is read after the last body piece)
			}
			if got := srv.widened.Load(); got != 0 {
				t.Errorf("widening %d still counted after both streams ended", got)
			}
		})
	}
}

// An HTTP/2 stream's response window starts at protocol.SmallWindow (FlagSmallWindow: a client may
// hold 100 streams that take nothing) and grows to W as the client takes the response.
func TestH2ResponseWindowStartsSmallAndGrows(t *testing.T) {
	_, addr := startGatewayCfg(t, "", func(c *Config) { c.HTTP2Cleartext = true })
	const size = 2 << 20
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/window?%d", addr, size), nil)
	resp, body, err := h2cDo(t, h2cClient(), req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	i := strings.LastIndex(body, "\nfirst=")
	var first, most int64
	if i != size {
		t.Fatalf("%d filler bytes, want %d", i, size)
	}
	if _, err := fmt.Sscanf(body[i:], "\nfirst=%d max=%d\n", &first, &most); err != nil {
		t.Fatalf("report %q: %v", body[i:], err)
	}
	w := int64(protocol.DefaultWindow)
	if first <= protocol.SmallWindow/2 || first > protocol.SmallWindow*2 {
		// (the first CREDIT: the half taken, and the growth of one window)
		t.Errorf("first CREDIT %d, want the taken half plus a window's growth", first)
	}
	if most < w/2 || most > w {
		t.Errorf("largest window %d, want grown toward W = %d and never past it", most, w)
	}
}
