package http1

import (
	"net/netip"
	"strings"
	"testing"
)

// Host field values by verdict (RFC 9110 7.2, RFC 3986 3.2.2-3.2.3).
var (
	validHosts = []string{
		"", // reg-name may be empty
		"a",
		"example.com",
		"example.com.",
		"xn--bcher-kva.example",
		"a-b_c~d.e",
		"a!$&'()*+,;=b",
		"caf%C3%a9.example",
		"127.0.0.1",
		"999.1.1.1", // not an IPv4address, but a reg-name
		"a:",        // port = *DIGIT: empty
		":80",       // empty reg-name with a port
		"a:0",
		"a:80",
		"a:65535",
		"a:0080",
		"a:" + strings.Repeat("0", 4000) + "443",
		"[::]",
		"[::1]",
		"[::1]:",
		"[::1]:8080",
		"[1:2:3:4:5:6:7:8]",
		"[1:2:3:4:5:6:7::]",
		"[::2:3:4:5:6:7:8]",
		"[1::8]",
		"[2001:DB8:0:0:8:800:200C:417A]",
		"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]",
		"[::ffff:192.0.2.1]",
		"[::192.0.2.1]",
		"[1:2:3:4:5:6:1.2.3.4]",
		"[1::255.255.255.255]",
		"[v1.x]",
		"[V1F.a:b!$&'()*+,;=-._~]:443",
	}
	invalidHosts = []string{
		// ':' other than the port separator, and ports that are not *DIGIT.
		"a:xx",
		"a:1:2",
		"a:1a",
		"a: 1",
		"a:+1",
		"a:-1",
		"::1",
		"a::",
		// Ports above 65535, however long.
		"a:65536",
		"a:99999",
		"a:99999999999",
		"a:99999999999999999999999999999999",
		"a:" + strings.Repeat("9", 4000),
		"[::1]:65536",
		// IP-literals: unclosed, followed by anything but a port, or not IPv6 / IPvFuture inside.
		"[",
		"[::1",
		"[]",
		"[]:80",
		"[::1]x",
		"[::1]:x",
		"[::1]]",
		"[::1][::1]",
		"[::1]:8080]",
		"[example.com]",
		"[127.0.0.1]",
		"[1]",
		"[1:2:3:4:5:6:7]",
		"[1:2:3:4:5:6:7:8:9]",
		"[1:2:3:4:5:6:7:8::]",
		"[::1:2:3:4:5:6:7:8]",
		"[1::2::3]",
		"[:::]",
		"[:1]",
		"[1:]",
		"[1:::2]",
		"[12345::1]",
		"[g::1]",
		"[::1 ]",
		"[fe80::1%25eth0]",
		"[fe80::1%eth0]",
		"[::1.2.3]",
		"[::1.2.3.4.5]",
		"[::1.2.3.256]",
		"[::1.2.3.04]",
		"[::1.2.3.4:1]",
		"[1.2.3.4::]",
		"[1:2:3:4:5:6:7:1.2.3.4]",
		"[v]",
		"[v1]",
		"[v1.]",
		"[v.x]",
		"[vg.x]",
		"[v1.x/y]",
		"[v1.x%41]",
		"a[::1]",
		"a]",
		// reg-name bytes and pct-encoded.
		"a%",
		"a%4",
		"a%zz",
		"a%4g.example",
		"a b",
		"a/b",
		"a?b",
		"a#b",
		"u@a",
		"u:p@a",
		"a\"b",
		"a<b",
		"a\\b",
		"a\x00",
		"a\x7f",
		"caf\xc3\xa9",
	}
)

func TestValidHost(t *testing.T) {
	for _, h := range validHosts {
		if !validHost([]byte(h)) {
			t.Errorf("validHost(%.60q) = false; want true", h)
		}
	}
	for _, h := range invalidHosts {
		if validHost([]byte(h)) {
			t.Errorf("validHost(%.60q) = true; want false", h)
		}
	}
}

func TestParseHeadHost(t *testing.T) {
	// The Host header: 400 for an invalid value, in HTTP/1.1 and HTTP/1.0 alike.
	for _, h := range validHosts {
		in := "GET / HTTP/1.1\r\nHost: " + h + "\r\n\r\n"
		if req, _, _, err := parse(in, nil); err != nil || string(req.Host) != h {
			t.Errorf("ParseHead(%.80q) = Host %.60q, %v; want Host %.60q", in, req.Host, err, h)
		}
	}
	for _, h := range invalidHosts {
		for _, v := range []string{"1.1", "1.0"} {
			in := "GET / HTTP/" + v + "\r\nHost: " + h + "\r\n\r\n"
			if _, _, _, err := parse(in, nil); err != errHost && !strings.ContainsAny(h, "\x00\x7f") {
				t.Errorf("ParseHead(%.80q) = %v; want %v", in, err, errHost)
			} else if status(err) != 400 {
				t.Errorf("ParseHead(%.80q) = %v; want status 400", in, err)
			}
		}
	}
	// The authority of an absolute-form target: the same syntax, and the host must not be empty
	// (RFC 9110 4.2.1), so "http://:80/" is refused although "Host: :80" is not.
	for _, h := range validHosts {
		in := "GET http://" + h + "/p HTTP/1.1\r\nHost: a\r\n\r\n"
		req, _, _, err := parse(in, nil)
		switch {
		case h == "" || h[0] == ':':
			if err != errAuthority {
				t.Errorf("ParseHead(%.80q) = %v; want %v", in, err, errAuthority)
			}
		case err != nil || string(req.Host) != h || string(req.Path) != "/p":
			t.Errorf("ParseHead(%.80q) = Host %.60q, Path %q, %v; want Host %.60q", in, req.Host, req.Path, err, h)
		}
	}
	for _, h := range invalidHosts {
		if strings.ContainsAny(h, "/?") {
			continue // the authority ends there
		}
		in := "GET http://" + h + "/p HTTP/1.1\r\nHost: a\r\n\r\n"
		if _, _, _, err := parse(in, nil); status(err) != 400 {
			t.Errorf("ParseHead(%.80q) = %v; want status 400", in, err)
		}
	}
}

func TestValidPortDoesNotOverflow(t *testing.T) {
	// 18446744073709551696 is 80 modulo 2^64: a port parsed into a wrapping integer would read 80.
	for _, p := range []string{"18446744073709551696", "4294967376", strings.Repeat("9", 100000)} {
		if validPort([]byte(p)) {
			t.Errorf("validPort(%.30q) = true; want false", p)
		}
	}
	if !validPort([]byte("65535")) || validPort([]byte("65536")) {
		t.Error("the limit is not 65535")
	}
}

func TestValidHostAllocs(t *testing.T) {
	for _, h := range []string{"api.example.com:8443", "[2001:db8::1]:443", "[::ffff:192.0.2.1]", "a:xx"} {
		b := []byte(h)
		if n := testing.AllocsPerRun(100, func() { validHost(b) }); n != 0 {
			t.Errorf("validHost(%q) allocates %v times", h, n)
		}
	}
}

// FuzzValidIPv6 checks validIPv6 against net/netip, whose IPv6 syntax is RFC 3986's IPv6address
// plus zones ("%eth0"), which an IP-literal cannot hold.
func FuzzValidIPv6(f *testing.F) {
	for _, h := range append(validHosts, invalidHosts...) {
		if len(h) > 2 && h[0] == '[' {
			f.Add(strings.Trim(h, "[]"))
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := netip.ParseAddr(s)
		want := err == nil && a.Is6() && a.Zone() == "" && !strings.Contains(s, "%")
		if got := validIPv6([]byte(s)); got != want {
			t.Fatalf("validIPv6(%q) = %v; netip.ParseAddr: %v, %v", s, got, a, err)
		}
	})
}
