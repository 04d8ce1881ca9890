package gateway

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/asgi-gateway/asgi-gateway/gateway/http1"
	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// The ASGI extensions the HTTP/1.1 engine carries out (SPEC §3): http.response.trailers,
// http.response.pathsend, http.response.early_hint; and the request timeout (CANCEL).

var (
	errNotAdvertised = errors.New("frame for an extension the stream did not advertise")
	errTrailersOrder = errors.New("RESPONSE_TRAILERS out of order")
	errPathsendOrder = errors.New("RESPONSE_PATHSEND out of order")
)

// extensionFlags are the HTTP_REQUEST flags for what this request's response may use: trailers
// only when the client accepts them (TE: trailers), as on HTTP/2.
func extensionFlags(req *http1.Request) uint64 {
	flags := protocol.FlagPathsend
	if req.Minor >= 1 {
		flags |= protocol.FlagEarlyHints
		if http1.HasToken(headerValues(req.Headers, "te"), "trailers") {
			flags |= protocol.FlagTrailersAllowed
		}
	}
	return flags
}

// fileSend is a response body sent from a file by the drain goroutine with sendfile(2).
type fileSend struct {
	f      *os.File
	n      int64  // bytes to send
	suffix []byte // chunk end and last chunk, for chunked framing
	ex     *exchange
}

func (ex *exchange) trailers(f *protocol.Frame) error {
	c := ex.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if ex.discard || ex.lost || ex.failed {
		return nil
	}
	if !ex.trailersExpected || !ex.bodyDone || ex.complete {
		return errTrailersOrder
	}
	if ex.sendTrailers && !ex.trailersDropped {
		if !validHeaders(f.Headers) {
			// The rest of the trailer section is dropped; the section still ends (below): the
			// last chunk is out, and the connection's next response must not run into it.
			c.srv.log.Error().Uint32("stream", ex.sid).Msg("invalid trailer from the app; trailers dropped")
			ex.trailersDropped = true
		} else {
			for _, h := range f.Headers {
				// RFC 9110 section 6.5.1: a sender must not put a field in trailers that has to
				// be processed before the content (framing, routing, authentication, content
				// format, ...). The app's are dropped, as the HTTP/2 server drops them.
				if httpguts.ValidTrailerHeader(string(h.Name)) {
					c.out = http1.AppendHeader(c.out, h.Name, h.Value)
				}
			}
		}
	}
	if !f.MoreBody {
		if ex.chunked && ex.sendTrailers {
			c.out = append(c.out, "\r\n"...)
		}
		ex.completeLocked()
		ex.markDirty()
		if ex.takeLog() {
			defer c.srv.accessLog(ex)
		}
	}
	return nil
}

func (ex *exchange) pathsend(f *protocol.Frame) error {
	c := ex.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if ex.discard || ex.lost || ex.failed {
		return nil
	}
	if !ex.started || ex.complete || ex.bodyDone || ex.bytesOut > 0 {
		return errPathsendOrder
	}
	path := string(f.Message)
	fail := func(err error) error {
		if ex.unstartLocked() {
			c.srv.log.Error().Err(err).Uint32("stream", ex.sid).Msg("http.response.pathsend: cannot send the file; answering 500")
			ex.gatewayResponseLocked(500)
		} else {
			c.srv.log.Error().Err(err).Uint32("stream", ex.sid).Msg("http.response.pathsend: cannot send the file; cutting the connection")
			ex.cutLocked()
		}
		ex.markDirty()
		return nil
	}
	file, n, err := openPathsend(path)
	if err != nil {
		return fail(err)
	}
	ex.bodyDone = true
	if !ex.bodyAllowed {
		file.Close()
		ex.completeLocked()
		ex.markDirty()
		return nil
	}
	if ex.remaining >= 0 && n != ex.remaining {
		file.Close()
		return fail(fmt.Errorf("the file has %d bytes, the content-length says %d", n, ex.remaining))
	}
	ex.headHeld = false // (the file is the body: the head goes before it)
	fs := &fileSend{f: file, n: n, ex: ex}
	if ex.chunked {
		if n > 0 {
			c.out = append(strconv.AppendInt(c.out, n, 16), "\r\n"...)
			fs.suffix = []byte("\r\n0\r\n\r\n")
		} else {
			fs.suffix = []byte("0\r\n\r\n")
		}
	}
	ex.remaining = 0
	ex.sendingFile = true
	c.file = fs
	ex.markDirty()
	return nil
}

// openPathsend opens the file of an http.response.pathsend: an absolute path to a regular file. It
// returns the file and its size.
func openPathsend(path string) (*os.File, int64, error) {
	if !filepath.IsAbs(path) {
		return nil, 0, fmt.Errorf("path %q is not absolute", path)
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := file.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err != nil {
		file.Close()
		return nil, 0, err
	}
	return file, fi.Size(), nil
}

// sendFile runs in the drain goroutine, with c.mu not held: the file goes to the socket with
// sendfile, then the response is complete.
func (c *h1conn) sendFile(fs *fileSend) error {
	defer fs.f.Close()
	c.nc.SetWriteDeadline(time.Now().Add(writeTimeout + time.Duration(fs.n/(64<<10))*time.Second))
	_, err := io.CopyN(c.nc, fs.f, fs.n)
	if err == nil && len(fs.suffix) > 0 {
		_, err = c.nc.Write(fs.suffix)
	}
	c.nc.SetWriteDeadline(time.Time{})
	return err
}

func (ex *exchange) earlyHint(f *protocol.Frame) error {
	c := ex.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if ex.started || ex.lost || ex.minor == 0 {
		return nil // too late for a 103 (the final head is out), or HTTP/1.0: dropped, as allowed
	}
	for _, l := range f.Links {
		if !http1.ValidHeaderValue(l) {
			c.srv.log.Error().Uint32("stream", ex.sid).Msg("invalid link in http.response.early_hint; dropped")
			return nil
		}
	}
	c.out = append(c.out, "HTTP/1.1 103 Early Hints\r\n"...)
	for _, l := range f.Links {
		c.out = http1.AppendHeader(c.out, []byte("link"), l)
	}
	c.out = append(c.out, "\r\n"...)
	ex.markDirty()
	return nil
}

// timeout is the request timeout (--timeout-request): 504 if the response has not started (cut if
// it has), and the worker cancels the app's task.
func (ex *exchange) timeout() {
	c := ex.c
	c.mu.Lock()
	if ex.complete || ex.ended {
		c.mu.Unlock()
		return
	}
	if ex.lost {
		// The client left, and the app still runs (it may never look at receive()): its task is
		// cancelled all the same; nothing goes to the client.
		c.srv.log.Warn().Uint32("stream", ex.sid).Int("worker", ex.w.id).Dur("timeout", c.srv.cfg.RequestTimeout).
			Msg("request timed out after its client left; cancelling the app's task")
		ex.discard = true
		ex.w.sendCancel(ex.sid)
		c.mu.Unlock()
		return
	}
	c.srv.log.Warn().Uint32("stream", ex.sid).Int("worker", ex.w.id).Dur("timeout", c.srv.cfg.RequestTimeout).
		Msg("request timed out; cancelling the app's task")
	log := ex.abandonLocked(504)
	c.mu.Unlock()
	if log {
		c.srv.accessLog(ex)
	}
}

// abandonLocked gives the exchange up for a reason of the gateway's (--timeout-request, the end of
// the graceful shutdown): the client gets status if the response has not started, else the
// connection is cut; the app's task is cancelled, and what it still sends is dropped until its END.
// It reports whether the access-log line is due.
func (ex *exchange) abandonLocked(status int) bool {
	if !ex.started || ex.unstartLocked() {
		ex.gatewayResponseLocked(status)
	} else {
		ex.cutLocked()
	}
	ex.discard = true
	ex.w.sendCancel(ex.sid)
	ex.c.flushLocked()
	return ex.takeLog()
}
