package gateway

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// TrustedProxies is the parsed --forwarded-allow-ips: IP addresses, CIDR networks, "*" (trust every
// peer), and other literals (a Unix socket path, as uvicorn accepts).
type TrustedProxies struct {
	all      bool
	prefixes []netip.Prefix
	literals map[string]bool
}

// ParseTrustedProxies parses a comma-separated list.
func ParseTrustedProxies(list string) (*TrustedProxies, error) {
	t := &TrustedProxies{literals: map[string]bool{}}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
		case item == "*":
			t.all = true
		case strings.Contains(item, "/") && !strings.HasPrefix(item, "/"):
			p, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, fmt.Errorf("--forwarded-allow-ips: %q is not an IP network: %w", item, err)
			}
			t.prefixes = append(t.prefixes, p.Masked())
		default:
			if a, err := netip.ParseAddr(item); err == nil {
				t.prefixes = append(t.prefixes, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			} else {
				t.literals[item] = true
			}
		}
	}
	return t, nil
}

// Trusts reports whether host (an IP address or a literal) is a trusted proxy.
func (t *TrustedProxies) Trusts(host string) bool {
	if t == nil {
		return false
	}
	if t.all || t.literals[host] {
		return true
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// trustsPeer decides once per connection whether its peer may set proxy headers.
func (t *TrustedProxies) trustsPeer(nc net.Conn) bool {
	if t == nil {
		return false
	}
	if t.all {
		return true
	}
	switch ra := nc.RemoteAddr().(type) {
	case *net.TCPAddr:
		a, ok := netip.AddrFromSlice(ra.IP)
		if !ok {
			return false
		}
		return t.Trusts(a.Unmap().String())
	case *net.UnixAddr:
		return t.literals[ra.Name] || (ra.Name == "" && t.literals["unix"])
	}
	return false
}

// applyProxyHeaders rewrites the scheme and client of a scope from a trusted proxy's headers, as
// uvicorn's ProxyHeadersMiddleware does: X-Forwarded-Proto (http, https, ws, wss) sets the scheme;
// X-Forwarded-For sets the client to the rightmost address that is not a trusted proxy (the
// leftmost when all are), with port 0. Without X-Forwarded-* headers, RFC 7239 Forwarded is read the
// same way (its proto= and for= parameters). For duplicated headers the last one counts.
func (c *h1conn) applyProxyHeaders(hr *protocol.HTTPRequest, websocket bool) {
	c.srv.applyProxyHeaders(hr, websocket, &c.proxyClient)
}

// applyProxyHeaders is the engine-independent part; client holds the proxy-named client address.
func (s *Server) applyProxyHeaders(hr *protocol.HTTPRequest, websocket bool, client *protocol.Addr) {
	var xfp, xff, fwd []byte
	for i := range hr.Headers {
		switch string(hr.Headers[i].Name) {
		case "x-forwarded-proto":
			xfp = hr.Headers[i].Value
		case "x-forwarded-for":
			xff = hr.Headers[i].Value
		case "forwarded":
			fwd = hr.Headers[i].Value
		}
	}
	if xfp == nil && xff == nil && fwd != nil {
		xfp, xff = parseForwarded(fwd)
	}
	if xfp != nil {
		switch proto := string(bytes.TrimSpace(xfp)); proto {
		case "http", "https", "ws", "wss":
			if websocket {
				proto = strings.Replace(proto, "http", "ws", 1)
			}
			hr.Scheme = proto
		}
	}
	if xff != nil {
		hosts := strings.Split(string(xff), ",")
		host := strings.TrimSpace(hosts[0])
		for i := len(hosts) - 1; i >= 0; i-- {
			if h := strings.TrimSpace(hosts[i]); !s.trusted.Trusts(h) {
				host = h
				break
			}
		}
		if host != "" {
			*client = protocol.Addr{Host: host, Port: 0, HasPort: true}
			hr.Client = client
		}
	}
}

// parseForwarded extracts the proto and a for= list (as X-Forwarded-For would carry it) from an RFC
// 7239 Forwarded header: elements separated by commas, parameters by semicolons.
func parseForwarded(v []byte) (proto, forList []byte) {
	var fors []string
	for _, element := range strings.Split(string(v), ",") {
		for _, pair := range strings.Split(element, ";") {
			name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok {
				continue
			}
			value = strings.Trim(strings.TrimSpace(value), `"`)
			switch strings.ToLower(name) {
			case "for":
				// Node forms: IPv4, "[IPv6]:port", "IPv4:port", "unknown", "_obfuscated".
				if strings.HasPrefix(value, "[") {
					if end := strings.IndexByte(value, ']'); end > 0 {
						value = value[1:end]
					}
				} else if host, _, err := net.SplitHostPort(value); err == nil {
					value = host
				}
				fors = append(fors, value)
			case "proto":
				proto = []byte(strings.ToLower(value))
			}
		}
	}
	if len(fors) > 0 {
		forList = []byte(strings.Join(fors, ","))
	}
	return proto, forList
}
