package gateway

import (
	"github.com/asgi-gateway/asgi-gateway/gateway/http1"
	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// buildScope fills hr, the ASGI http scope of req, the way uvicorn builds it: path is percent-decoded
// UTF-8 and raw_path the bytes as received, both with root_path in front; headers keep their order
// and duplicates, names lower-cased (by the parser). It reuses the connection's buffers, so the scope
// is valid until the next request. False: the target cannot be decoded.
func (s *Server) buildScope(c *h1conn, req *http1.Request, hr *protocol.HTTPRequest) bool {
	if req.Minor == 0 {
		hr.HTTPVersion = "1.0"
	} else {
		hr.HTTPVersion = "1.1"
	}
	hr.Method = req.Method
	hr.Scheme = c.scheme
	root := s.cfg.RootPath
	hr.RootPath = root
	c.pathBuf = append(c.pathBuf[:0], root...)
	var ok bool
	c.pathBuf, ok = http1.AppendUnescapedPath(c.pathBuf, req.Path)
	if !ok {
		return false
	}
	hr.Path = c.pathBuf
	if root == "" {
		hr.RawPath = req.Path
	} else {
		c.rawBuf = append(append(c.rawBuf[:0], root...), req.Path...)
		hr.RawPath = c.rawBuf
	}
	hr.QueryString = req.Query
	// RFC 9112 §3.2.2: with an absolute-form target the origin server ignores Host and uses the
	// target's authority. The app learns the host from the host header, so that header carries
	// the authority: in place of the received one, or, when there is none (HTTP/1.0), first,
	// where a user agent sends Host (RFC 9110 §7.2).
	absolute := len(req.Target) > 0 && req.Target[0] != '/' && req.Target[0] != '*'
	c.hdrs = c.hdrs[:0]
	if absolute && !hasHost(req.Headers) {
		c.hdrs = append(c.hdrs, protocol.Header{Name: hostName, Value: req.Host})
	}
	for i := range req.Headers {
		h := protocol.Header{Name: req.Headers[i].Name, Value: req.Headers[i].Value}
		if absolute && string(h.Name) == "host" {
			h.Value = req.Host
		}
		c.hdrs = append(c.hdrs, h)
	}
	hr.Headers = c.hdrs
	hr.Client = c.client
	hr.Server = c.server
	hr.TLS = c.tls
	if c.trustedPeer {
		c.applyProxyHeaders(hr, false)
	}
	return true
}

var hostName = []byte("host") // shared by every scope: never written to

// hasHost reports whether hs holds a host header.
func hasHost(hs []http1.Header) bool {
	for i := range hs {
		if string(hs[i].Name) == "host" {
			return true
		}
	}
	return false
}
