package gateway

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"unicode/utf8"

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
// leftmost when all are), with its port when the hop carries one ("1.2.3.4:5555",
// "[2001:db8::1]:4711"), else 0. Without X-Forwarded-* headers, RFC 7239 Forwarded is read the same
// way: the client from the for= of the element chosen so, the scheme from that element's proto=.
// Several field lines of X-Forwarded-For or Forwarded make one list, in order (RFC 9110 §5.3, RFC
// 7239 §4); of X-Forwarded-Proto, the last line counts.
func (c *h1conn) applyProxyHeaders(hr *protocol.HTTPRequest, websocket bool) {
	c.srv.applyProxyHeaders(hr, websocket, &c.proxyClient)
}

// applyProxyHeaders is the engine-independent part; client holds the proxy-named client address.
func (s *Server) applyProxyHeaders(hr *protocol.HTTPRequest, websocket bool, client *protocol.Addr) {
	var xfp []byte
	var xff, fwd []string // the field lines
	for i := range hr.Headers {
		switch string(hr.Headers[i].Name) {
		case "x-forwarded-proto":
			xfp = hr.Headers[i].Value
		case "x-forwarded-for":
			xff = append(xff, string(hr.Headers[i].Value))
		case "forwarded":
			fwd = append(fwd, string(hr.Headers[i].Value))
		}
	}
	var hops []forwardedHop
	if xff != nil {
		for _, node := range strings.Split(strings.Join(xff, ","), ",") {
			hops = append(hops, forwardedHop{node: strings.TrimSpace(node)})
		}
	} else if xfp == nil && fwd != nil {
		hops = parseForwarded(strings.Join(fwd, ","))
	}
	chosen := -1 // the rightmost hop that is not a trusted proxy, or the leftmost when all are
	for i := len(hops) - 1; i >= 0; i-- {
		if host, _ := splitNode(hops[i].node); !s.trusted.Trusts(host) {
			chosen = i
			break
		}
	}
	if chosen < 0 && len(hops) > 0 {
		chosen = 0
	}
	if xff == nil && chosen >= 0 {
		xfp = hops[chosen].proto // Forwarded: the proto of the chosen element (nil: none)
	}
	if xfp != nil {
		switch proto := strings.ToLower(string(bytes.TrimSpace(xfp))); proto {
		case "http", "https", "ws", "wss":
			if websocket {
				proto = strings.Replace(proto, "http", "ws", 1)
			}
			hr.Scheme = proto
		}
	}
	if chosen >= 0 {
		// A Forwarded node that is no address ("unknown", an obfuscated "_name": RFC 7239 §6) does
		// not name the client: the peer stays (as uvicorn, X-Forwarded-For passes any text on).
		if host, port := splitNode(hops[chosen].node); host != "" && (xff != nil || net.ParseIP(host) != nil) {
			if !utf8.ValidString(host) {
				// Bytes a field value may carry (obs-text) that are no UTF-8: read as Latin-1, as
				// uvicorn does (the scope's host is a str, and the frame carries UTF-8).
				host = latin1(host)
			}
			*client = protocol.Addr{Host: host, Port: port, HasPort: true}
			hr.Client = client
		}
	}
}

// forwardedHop is one hop of X-Forwarded-For, or one element of Forwarded (its for= and proto=).
type forwardedHop struct {
	node  string // an address, with or without a port; Forwarded's other node forms as they came
	proto []byte
}

// splitNode splits a hop's node into host and port: "1.2.3.4:5555", "[2001:db8::1]:4711",
// "2001:db8::1", "1.2.3.4", or a Forwarded literal ("unknown", "_hidden"), whose port is 0.
func splitNode(node string) (string, int) {
	if strings.HasPrefix(node, "[") {
		end := strings.IndexByte(node, ']')
		if end < 0 {
			return node, 0
		}
		host, rest := node[1:end], node[end+1:]
		if port, ok := nodePort(strings.TrimPrefix(rest, ":")); ok && strings.HasPrefix(rest, ":") {
			return host, port
		}
		return host, 0
	}
	if i := strings.IndexByte(node, ':'); i >= 0 && strings.IndexByte(node[i+1:], ':') < 0 {
		if port, ok := nodePort(node[i+1:]); ok { // one colon: host:port (IPv6 has several)
			return node[:i], port
		}
	}
	return node, 0
}

// nodePort parses a decimal port of 1 to 5 digits, at most 65535.
func nodePort(s string) (int, bool) {
	if len(s) == 0 || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n <= 65535
}

// parseForwarded reads an RFC 7239 Forwarded value (elements separated by commas, parameters by
// semicolons) into hops: each element's for= node (quotes removed) and proto=.
func parseForwarded(v string) []forwardedHop {
	var hops []forwardedHop
	for _, element := range strings.Split(v, ",") {
		var hop forwardedHop
		hasFor := false
		for _, pair := range strings.Split(element, ";") {
			name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok {
				continue
			}
			value = strings.Trim(strings.TrimSpace(value), `"`)
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "for":
				hop.node, hasFor = value, true
			case "proto":
				hop.proto = []byte(strings.ToLower(value))
			}
		}
		if hasFor {
			hops = append(hops, hop)
		}
	}
	return hops
}

// latin1 reads s's bytes as ISO-8859-1 characters.
func latin1(s string) string {
	r := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		r[i] = rune(s[i])
	}
	return string(r)
}
