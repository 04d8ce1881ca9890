package websocket

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asgi-gateway/asgi-gateway/gateway/http1"
)

// interopClient is run by the project's Python with the websockets package
// as the client, against the echo server below.
const interopClient = `
import random, sys
from websockets.sync.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

base = sys.argv[1]
rnd = random.Random(1)
vocab = "the quick brown fox jumps over the lazy dog websocket ☺ é".split()

def text(n):
    out, size = [], 0
    while size < n:
        w = rnd.choice(vocab) + " "
        out.append(w)
        size += len(w.encode())
    return "".join(out)

modes = {
    "none": dict(compression=None),
    "deflate": dict(compression="deflate"),
    "nctx": dict(compression=None, extensions=[ClientPerMessageDeflateFactory(
        client_no_context_takeover=True, server_max_window_bits=10)]),
}
for name, kw in modes.items():
    with connect(base + "/" + name, max_size=None, subprotocols=["other", "echo"],
                 ping_interval=None, open_timeout=10, close_timeout=10, **kw) as ws:
        assert ws.subprotocol == "echo", ws.subprotocol
        print(name, "extensions:", ws.response.headers.get("Sec-WebSocket-Extensions"))
        msgs = ["hello", "héllo ☺", "", text(5000), b"\x00\x01\x02", bytes(range(256)) * 4,
                text(1 << 20), rnd.randbytes(1 << 20), b"z" * (1 << 20)]
        for i in range(20):  # similar messages: context takeover refers back
            msgs.append(("repeat after me " * 20) + str(i))
        for m in msgs:
            ws.send(m)
            got = ws.recv(timeout=10)
            assert got == m, (name, len(got), len(m))
        ws.send(["frag1 ", "frag2 ", "frag3 ☺"])
        assert ws.recv(timeout=10) == "frag1 frag2 frag3 ☺"
        assert ws.ping(b"are you there").wait(10), "no pong"
        ws.close(4000, "bye now ☺")
        assert (ws.close_code, ws.close_reason) == (4000, "bye now ☺"), (ws.close_code, ws.close_reason)
print("OK")
`

type interopResult struct {
	path     string
	deflate  bool
	params   DeflateParams
	messages int
	sentRsv1 int // messages we sent compressed
	code     int
	reason   string
	err      error
}

// serveEcho is a minimal server built on this package: handshake, then echo
// messages, answer pings and echo the close frame. It reads through a 4 KiB
// buffer, so that big messages arrive in many pieces.
func serveEcho(c net.Conn) (res interopResult) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	base := make([]byte, 4096)
	r, w := 0, 0
	var req http1.Request
	for {
		n, err := c.Read(base[w:])
		w += n
		hn, perr := http1.ParseHead(base[:w], &req, nil)
		if perr == nil {
			r = hn
			break
		}
		if perr != http1.ErrNeedMore || err != nil {
			res.err = errors.Join(perr, err)
			return
		}
	}
	res.path = string(req.Path)
	offer, err := CheckHandshake(&req, true)
	if err != nil {
		res.err = err
		return
	}
	sub := ""
	if offer.HasSubprotocol("echo") {
		sub = "echo"
	}
	out := AppendAccept(nil, &offer, sub, [][2][]byte{{[]byte("server"), []byte("asgi-gateway-test")}})
	var d Decoder
	var comp *Compressor
	if offer.Deflate {
		res.deflate, res.params = true, offer.DeflateParams
		d.SetDeflate(&offer.DeflateParams)
		comp = NewCompressor(&offer.DeflateParams)
	}
	if _, err := c.Write(out); err != nil {
		res.err = err
		return
	}
	for {
		n, ev, err := d.Next(base[r:w])
		r += n
		if err != nil {
			res.err = err
			var pe *ProtocolError
			errors.As(err, &pe)
			c.Write(AppendClose(nil, pe.Code, pe.Reason))
			return
		}
		out = out[:0]
		switch ev.Kind {
		case EventNone:
			w = copy(base, base[r:w])
			r = 0
			if w == len(base) {
				res.err = errors.New("buffer full")
				return
			}
			n, err := c.Read(base[w:])
			w += n
			if n == 0 && err != nil {
				res.err = err
				return
			}
			continue
		case EventText, EventBinary:
			res.messages++
			out = AppendMessage(out, ev.Kind == EventText, ev.Data, comp)
			if out[0]&bitRsv1 != 0 {
				res.sentRsv1++
			}
		case EventPing:
			out = AppendPong(out, ev.Data)
		case EventPong:
			continue
		case EventClose:
			res.code, res.reason = ev.Code, string(ev.Data)
			code := ev.Code
			if code == CloseNoStatus {
				code = 0
			}
			c.Write(AppendClose(out, code, string(ev.Data)))
			return
		}
		if _, err := c.Write(out); err != nil {
			res.err = err
			return
		}
		if d.Retained() > 64<<10 {
			d.Release()
		}
	}
}

func TestInteropPython(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	py, err := filepath.Abs(filepath.Join("..", "..", ".venv", "bin", "python"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(py); err != nil {
		t.Skipf("no Python at %s", py)
	}
	if out, err := exec.Command(py, "-c", "import websockets.sync.client").CombinedOutput(); err != nil {
		t.Skipf("Python websockets package not available: %v %s", err, out)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		results []interopResult
		wg      sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := serveEcho(c)
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
			}()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", interopClient, "ws://"+ln.Addr().String()).CombinedOutput()
	ln.Close()
	wg.Wait()
	t.Logf("client output:\n%s", out)
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "OK") {
		t.Fatalf("client failed: %v", err)
	}

	want := map[string]interopResult{
		"/none":    {},
		"/deflate": {deflate: true, params: DeflateParams{ServerNoContextTakeover: true}},
		"/nctx":    {deflate: true, params: DeflateParams{ServerNoContextTakeover: true, ClientNoContextTakeover: true, ServerMaxWindowBits: 10}},
	}
	if len(results) != len(want) {
		t.Fatalf("%d connections; want %d", len(results), len(want))
	}
	for _, res := range results {
		w, ok := want[res.path]
		if !ok {
			t.Errorf("unexpected path %q", res.path)
			continue
		}
		if res.err != nil || res.deflate != w.deflate || res.params != w.params || res.messages != 30 || res.code != 4000 || res.reason != "bye now ☺" {
			t.Errorf("%s: %+v", res.path, res)
		}
		// Both compressed modes compress most messages (nctx only those of
		// up to 1 KiB); the random 1 MiB message stays uncompressed.
		if res.deflate != (res.sentRsv1 > 20) || !res.deflate && res.sentRsv1 != 0 {
			t.Errorf("%s: %d messages sent compressed", res.path, res.sentRsv1)
		}
	}
}
