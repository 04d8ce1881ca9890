package gateway

import (
	"testing"

	"github.com/asgi-gateway/asgi-gateway/protocol"
)

func TestSplitNode(t *testing.T) {
	for _, tt := range []struct {
		node string
		host string
		port int
	}{
		{"1.2.3.4", "1.2.3.4", 0},
		{"1.2.3.4:5555", "1.2.3.4", 5555},
		{"1.2.3.4:65535", "1.2.3.4", 65535},
		{"1.2.3.4:65536", "1.2.3.4:65536", 0}, // not a port: left as it came
		{"1.2.3.4:x", "1.2.3.4:x", 0},
		{"2001:db8::1", "2001:db8::1", 0},
		{"[2001:db8::1]", "2001:db8::1", 0},
		{"[2001:db8::1]:4711", "2001:db8::1", 4711},
		{"[2001:db8::1]:", "2001:db8::1", 0},
		{"[2001:db8::1", "[2001:db8::1", 0},
		{"unknown", "unknown", 0},
		{"_hidden", "_hidden", 0},
		{"", "", 0},
	} {
		if host, port := splitNode(tt.node); host != tt.host || port != tt.port {
			t.Errorf("splitNode(%q) = %q, %d; want %q, %d", tt.node, host, port, tt.host, tt.port)
		}
	}
}

func TestParseForwarded(t *testing.T) {
	hops := parseForwarded(`for=192.0.2.43;Proto=HTTPS, by=203.0.113.1, For="[2001:db8::17]:4711";proto=http`)
	if len(hops) != 2 || hops[0].node != "192.0.2.43" || string(hops[0].proto) != "https" ||
		hops[1].node != "[2001:db8::17]:4711" || string(hops[1].proto) != "http" {
		t.Fatalf("hops %+v", hops)
	}
}

// proxied applies the proxy headers of one field line, from a trusted peer (127.0.0.1:40000), to
// a plain HTTP request's scope.
func proxied(t *testing.T, name, value string) protocol.HTTPRequest {
	t.Helper()
	trusted, err := ParseTrustedProxies("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{trusted: trusted}
	hr := protocol.HTTPRequest{Scheme: "http", Client: &protocol.Addr{Host: "127.0.0.1", Port: 40000, HasPort: true},
		Headers: []protocol.Header{{Name: []byte(name), Value: []byte(value)}}}
	var named protocol.Addr
	s.applyProxyHeaders(&hr, false, &named)
	return hr
}

func TestForwardedNodeThatIsNoAddressKeepsThePeer(t *testing.T) {
	for _, tt := range []struct {
		header, value string
		host          string
		scheme        string
	}{
		{"forwarded", "for=unknown", "127.0.0.1", "http"},
		{"forwarded", `for="_hidden";proto=https`, "127.0.0.1", "https"},
		{"forwarded", "for=192.0.2.60, for=unknown", "127.0.0.1", "http"},
		{"forwarded", `for="[2001:db8::17]:4711"`, "2001:db8::17", "http"},
		{"forwarded", "for=192.0.2.60;proto=https", "192.0.2.60", "https"},
		{"x-forwarded-for", "unknown", "unknown", "http"}, // as uvicorn: X-Forwarded-For is passed on
	} {
		if hr := proxied(t, tt.header, tt.value); hr.Client.Host != tt.host || hr.Scheme != tt.scheme {
			t.Errorf("%s: %s: client %q scheme %q; want %q %q", tt.header, tt.value, hr.Client.Host, hr.Scheme, tt.host, tt.scheme)
		}
	}
}

func TestForwardedForThatIsNoUTF8IsReadAsLatin1(t *testing.T) {
	hr := proxied(t, "x-forwarded-for", "1.2.3.4\xff")
	if hr.Client.Host != "1.2.3.4\u00ff" {
		t.Fatalf("client %q", hr.Client.Host)
	}
	if _, err := protocol.AppendHTTPRequest(nil, 1, &hr); err != nil {
		t.Fatalf("the scope cannot be encoded: %v", err)
	}
}
