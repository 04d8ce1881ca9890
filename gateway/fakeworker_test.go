package gateway

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// The gateway tests run this test binary as the "Python" interpreter: with FAKE_WORKER set, TestMain
// turns it into a worker that speaks the protocol in Go, so that the tests control exactly what a
// worker sends (including what a broken one would).
const fakeWorkerEnv = "ASGI_GATEWAY_FAKE_WORKER"

// fakeWorkerMain serves HTTP_REQUEST frames: the body is "pid=<pid> path=<path> body=<n>". Modes (the
// env var's value) make it misbehave on a request whose path is "/misbehave".
func fakeWorkerMain(mode string) {
	fs := flag.NewFlagSet("fake", flag.ContinueOnError)
	fs.Bool("m", false, "")
	sock := fs.String("socket", "", "")
	fs.String("app", "", "")
	fs.String("worker-id", "", "")
	fs.String("log-level", "", "")
	fs.String("app-dir", "", "")
	fs.Bool("factory", false, "")
	fs.Int("ring-fd", -1, "") // a body ring it does not use (its HELLO has no "ring" feature)
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "-m" {
		args = args[2:] // "-m python_worker"
	}
	if err := fs.Parse(args); err != nil {
		fmt.Fprintln(os.Stderr, "fake worker:", err)
		os.Exit(2)
	}
	nc, err := net.Dial("unix", *sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake worker:", err)
		os.Exit(3)
	}
	hello := &protocol.WorkerHello{Protocol: protocol.Version, PID: uint64(os.Getpid()), Python: "fake", Features: []string{"small-window"}}
	if mode == "hello-error" {
		hello = &protocol.WorkerHello{Protocol: protocol.Version, PID: uint64(os.Getpid()), Error: "ImportError: fake failure"}
	}
	nc.Write(protocol.AppendWorkerHello(nil, hello))
	if mode == "hello-error" {
		os.Exit(3)
	}
	r := protocol.NewReader(nc, protocol.DefaultMaxFrame)
	var f protocol.Frame
	serverCert := "" // from the gateway's HELLO
	bodies := map[uint32]int{}
	paths := map[uint32]string{}
	clients = map[uint32]string{}
	windows := map[uint32]*windowStream{}
	var window int64 // the HELLO window W
	for {
		payload, err := r.Next()
		if err != nil {
			os.Exit(0)
		}
		if err := f.Decode(payload); err != nil {
			fmt.Fprintln(os.Stderr, "fake worker: bad frame:", err)
			os.Exit(1)
		}
		var out []byte
		switch f.Type {
		case protocol.TypeHello:
			serverCert = f.GatewayHello.ServerCert
			window = int64(f.GatewayHello.Window)
		case protocol.TypeCreditG2W:
			if ws := windows[f.Stream]; ws != nil {
				out = ws.credit(out, f.Stream, int64(f.Increment))
				if ws.left < 0 {
					delete(windows, f.Stream)
				}
			}
		case protocol.TypeWSConnect:
			// Denied with an HTTP response (websocket.http.response) that shows the scope's TLS data.
			body := tlsReport(f.WS.Scheme, f.WS.Flags, f.WS.TLS, serverCert)
			out = protocol.AppendResponseStart(out, f.Stream, 403, []protocol.Header{{Name: []byte("content-type"), Value: []byte("application/json")}}, 0, body, false)
			out = protocol.AppendEnd(out, f.Stream, protocol.OutcomeOK, "")
		case protocol.TypeHTTPRequest:
			path := string(f.Request.Path)
			if path == "/misbehave" {
				switch mode {
				case "garbage":
					nc.Write([]byte("\x00\x00\x00\x05garbage!"))
					continue
				case "unknown-stream":
					nc.Write(protocol.AppendResponseStart(nil, f.Stream+1000, 200, nil, 0, nil, false))
					continue
				case "oversize":
					nc.Write([]byte{0x7f, 0xff, 0xff, 0xff})
					continue
				case "exit":
					os.Exit(1)
				case "hang":
					select {} // a blocked event loop: no PONG, no response

				}
			}
			switch path {
			case "/slow": // never answers; CANCEL ends it
				continue
			case "/window": // a response of ?N bytes, sent as fast as the window allows
				n, _ := strconv.Atoi(string(f.Request.QueryString))
				w := window
				if f.Request.Flags&protocol.FlagSmallWindow != 0 {
					w = min(w, protocol.SmallWindow) // (SPEC §3)
				}
				ws := &windowStream{left: n, window: w, first: -1, max: w}
				windows[f.Stream] = ws
				out = protocol.AppendResponseStart(out, f.Stream, 200, nil, 0, nil, true)
				out = ws.pump(out, f.Stream)
				nc.Write(out)
				continue
			case "/pathsend":
				out = protocol.AppendResponseStart(out, f.Stream, 200, []protocol.Header{{Name: []byte("content-type"), Value: []byte("text/plain")}}, 0, nil, true)
				out = protocol.AppendResponsePathsend(out, f.Stream, string(f.Request.QueryString))
				out = protocol.AppendEnd(out, f.Stream, protocol.OutcomeOK, "")
				nc.Write(out)
				continue
			case "/trailers":
				out = protocol.AppendResponseStart(out, f.Stream, 200, nil, protocol.FlagTrailers, []byte("abc"), false)
				out = protocol.AppendResponseTrailers(out, f.Stream, []protocol.Header{{Name: []byte("x-checksum"), Value: []byte("42")}}, false)
				out = protocol.AppendEnd(out, f.Stream, protocol.OutcomeOK, "")
				nc.Write(out)
				continue
			case "/trailers-invalid": // fields the worker refuses (send() raises): the gateway's own guard
				out = protocol.AppendResponseStart(out, f.Stream, 200, nil, protocol.FlagTrailers, []byte("abc"), false)
				out = protocol.AppendResponseTrailers(out, f.Stream, []protocol.Header{
					{Name: []byte("x-t"), Value: []byte("1\r\nx-injected: 1")},
					{Name: []byte("bad name"), Value: []byte("2")},
					{Name: []byte("x-ok"), Value: []byte("3")},
				}, false)
				out = protocol.AppendEnd(out, f.Stream, protocol.OutcomeOK, "")
				nc.Write(out)
				continue
			case "/header-invalid": // a response header the worker refuses: the gateway answers 500
				out = protocol.AppendResponseStart(out, f.Stream, 200, []protocol.Header{
					{Name: []byte("x-bad"), Value: []byte("a\r\nx-injected: 1")}}, 0, []byte("abc"), false)
				out = protocol.AppendEnd(out, f.Stream, protocol.OutcomeOK, "")
				nc.Write(out)
				continue
			case "/hint":
				out = protocol.AppendEarlyHint(out, f.Stream, [][]byte{[]byte("</style.css>; rel=preload; as=style")})
			case "/tls":
				body := tlsReport(f.Request.Scheme, f.Request.Flags, f.Request.TLS, serverCert)
				out = protocol.AppendResponseStart(out, f.Stream, 200, []protocol.Header{{Name: []byte("content-type"), Value: []byte("application/json")}}, 0, body, false)
				out = protocol.AppendEnd(out, f.Stream, protocol.OutcomeOK, "")
				nc.Write(out)
				continue
			case "/flags":
				out = protocol.AppendResponseStart(out, f.Stream, 200, nil, 0, []byte(fmt.Sprintf("flags=%d", f.Request.Flags)), false)
				out = protocol.AppendEnd(out, f.Stream, protocol.OutcomeOK, "")
				nc.Write(out)
				continue
			}
			if path == "/raise" {
				nc.Write(protocol.AppendEnd(nil, f.Stream, protocol.OutcomeAppError, "RuntimeError: boom"))
				continue
			}
			bodies[f.Stream] = len(f.Request.Body)
			paths[f.Stream] = path
			if cl := f.Request.Client; cl != nil {
				clients[f.Stream] = fmt.Sprintf("client=%s:%d scheme=%s", cl.Host, cl.Port, f.Request.Scheme)
			}
			if !f.Request.MoreBody {
				out = reply(out, f.Stream, paths, bodies)
			}
		case protocol.TypeRequestBody:
			bodies[f.Stream] += len(f.Body)
			out = protocol.AppendCredit(out, protocol.TypeCreditW2G, f.Stream, uint64(len(f.Body)))
			if !f.MoreBody {
				out = reply(out, f.Stream, paths, bodies)
			}
		case protocol.TypeShutdown:
			os.Exit(0) // nothing in flight worth finishing in these tests
		case protocol.TypeCancel:
			out = protocol.AppendEnd(out, f.Stream, protocol.OutcomeAppError, "cancelled")
		case protocol.TypeDisconnect: // as an app that returns when its client has gone
			out = protocol.AppendEnd(out, f.Stream, protocol.OutcomeOK, "")
		case protocol.TypePing:
			out = protocol.AppendPing(out, protocol.TypePong, f.Token)
		}
		if len(out) > 0 {
			nc.Write(out)
		}
	}
}

// tlsScope is what the fake worker reports of a scope's TLS data (the /tls path, and every
// WS_CONNECT).
type tlsScope struct {
	Scheme      string   `json:"scheme"`
	FlagTLS     bool     `json:"flag_tls"`
	HasTLS      bool     `json:"has_tls"`
	ServerCert  string   `json:"server_cert"`
	Version     uint16   `json:"tls_version"`
	CipherSuite uint16   `json:"cipher_suite"`
	Chain       []string `json:"client_cert_chain"`
	Name        *string  `json:"client_cert_name"`
	Error       *string  `json:"client_cert_error"`
}

func tlsReport(scheme string, flags uint64, ti *protocol.TLSInfo, serverCert string) []byte {
	r := tlsScope{Scheme: scheme, FlagTLS: flags&protocol.FlagTLS != 0, HasTLS: ti != nil, ServerCert: serverCert, Chain: []string{}}
	if ti != nil {
		r.Version, r.CipherSuite = ti.Version, ti.CipherSuite
		for _, c := range ti.ClientCertChain {
			r.Chain = append(r.Chain, string(c))
		}
		if ti.HasClientCertName {
			name := string(ti.ClientCertName)
			r.Name = &name
		}
		if ti.HasClientCertError {
			e := string(ti.ClientCertError)
			r.Error = &e
		}
	}
	b, _ := json.Marshal(r)
	return b
}

// windowStream is a /window response: it sends body pieces while its response window allows, and
// ends with a line saying the first CREDIT increment it got (-1: none) and the largest window it
// had after a CREDIT.
type windowStream struct {
	left               int // filler bytes still to send; -1 once the report and END are out
	window, first, max int64
}

func (ws *windowStream) credit(out []byte, sid uint32, n int64) []byte {
	if ws.first < 0 {
		ws.first = n
	}
	ws.window += n
	ws.max = max(ws.max, ws.window)
	return ws.pump(out, sid)
}

var filler = make([]byte, 64<<10)

func (ws *windowStream) pump(out []byte, sid uint32) []byte {
	for ws.left > 0 && ws.window > 0 {
		piece := int(min(int64(ws.left), int64(len(filler)), ws.window))
		out = protocol.AppendResponseBody(out, sid, filler[:piece], true)
		ws.left -= piece
		ws.window -= int64(piece)
	}
	if report := fmt.Sprintf("\nfirst=%d max=%d\n", ws.first, ws.max); ws.left == 0 && ws.window >= int64(len(report)) {
		out = protocol.AppendResponseBody(out, sid, []byte(report), false)
		out = protocol.AppendEnd(out, sid, protocol.OutcomeOK, "")
		ws.left = -1
	}
	return out
}

// clients records each stream's scope client and scheme for the answer.
var clients map[uint32]string

func reply(out []byte, sid uint32, paths map[uint32]string, bodies map[uint32]int) []byte {
	body := fmt.Sprintf("%d pid=%d path=%s body=%d %s", os.Getpid(), os.Getpid(), paths[sid], bodies[sid], clients[sid])
	delete(clients, sid)
	delete(paths, sid)
	delete(bodies, sid)
	hs := []protocol.Header{{Name: []byte("content-type"), Value: []byte("text/plain")},
		{Name: []byte("set-cookie"), Value: []byte("a=1")}, {Name: []byte("set-cookie"), Value: []byte("b=2")}}
	if strings.HasPrefix(paths[sid], "/chunked") {
		hs = hs[:1]
	}
	out = protocol.AppendResponseStart(out, sid, 200, hs, 0, []byte(body), false)
	return protocol.AppendEnd(out, sid, protocol.OutcomeOK, "")
}
