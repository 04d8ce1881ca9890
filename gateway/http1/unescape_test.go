package http1

import "testing"

// unescapeCases were computed with CPython 3.11's urllib.parse:
//
//	unquote(raw, errors="replace").encode("utf-8")
//
// (equal to unquote_to_bytes(raw).decode("utf-8", "replace") for ASCII raw).
// The decoder was also checked against all 346,200 sequences of one to four
// bytes drawn from 24 UTF-8 boundary values.
var unescapeCases = []struct{ raw, want string }{
	{"", ""},
	{"/", "/"},
	{"/abc", "/abc"},
	{"/a%20b", "/a b"},
	{"%2F", "/"},
	{"%2f", "/"},
	{"%41%42c", "ABc"},
	{"/caf%C3%A9", "/caf\xc3\xa9"},
	{"/caf%c3%a9", "/caf\xc3\xa9"},
	{"%E2%82%AC", "\xe2\x82\xac"},
	{"%e2%82%ac/x", "\xe2\x82\xac/x"},
	{"%E2%82", "\xef\xbf\xbd"},
	{"%E2%82x", "\xef\xbf\xbdx"},
	{"%E2x", "\xef\xbf\xbdx"},
	{"%E2", "\xef\xbf\xbd"},
	{"%FF", "\xef\xbf\xbd"},
	{"%80", "\xef\xbf\xbd"},
	{"%80%80", "\xef\xbf\xbd\xef\xbf\xbd"},
	{"%BF", "\xef\xbf\xbd"},
	{"%C0%80", "\xef\xbf\xbd\xef\xbf\xbd"},
	{"%C1%BF", "\xef\xbf\xbd\xef\xbf\xbd"},
	{"%C2%80", "\xc2\x80"},
	{"%C2", "\xef\xbf\xbd"},
	{"%C2%C2%80", "\xef\xbf\xbd\xc2\x80"},
	{"%DF%BF", "\xdf\xbf"},
	{"%E0%80%80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
	{"%E0%9F%BF", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
	{"%E0%A0%80", "\xe0\xa0\x80"},
	{"%ED%A0%80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
	{"%ED%9F%BF", "\xed\x9f\xbf"},
	{"%ED%BF%BF", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
	{"%EE%80%80", "\xee\x80\x80"},
	{"%EF%BF%BF", "\xef\xbf\xbf"},
	{"%F0%80%80%80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
	{"%F0%8F%BF%BF", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
	{"%F0%90%80%80", "\xf0\x90\x80\x80"},
	{"%F0%9F%98%80", "\xf0\x9f\x98\x80"},
	{"%F4%90%80%80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
	{"%F4%8F%BF%BF", "\xf4\x8f\xbf\xbf"},
	{"%F5%80%80%80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
	{"%F8%88%80%80%80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
	{"%FC%84%80%80%80%80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
	{"%FE", "\xef\xbf\xbd"},
	{"%FE%FF", "\xef\xbf\xbd\xef\xbf\xbd"},
	{"%F0%9F%98", "\xef\xbf\xbd"},
	{"%F0%9F%98%41", "\xef\xbf\xbdA"},
	{"%F0%9Fx", "\xef\xbf\xbdx"},
	{"%F0%9F%98%2F", "\xef\xbf\xbd/"},
	{"%C3%A9%C3", "\xc3\xa9\xef\xbf\xbd"},
	{"%C3%28", "\xef\xbf\xbd("},
	{"%E2%28%A1", "\xef\xbf\xbd(\xef\xbf\xbd"},
	{"%E2%82%28", "\xef\xbf\xbd("},
	{"%F0%28%8C%BC", "\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd"},
	{"%F0%90%28%BC", "\xef\xbf\xbd(\xef\xbf\xbd"},
	{"%F0%28%8C%28", "\xef\xbf\xbd(\xef\xbf\xbd("},
	{"%F1%80%80", "\xef\xbf\xbd"},
	{"%F3%BF%BF%BF", "\xf3\xbf\xbf\xbf"},
	{"%F3%BF%BF%C0", "\xef\xbf\xbd\xef\xbf\xbd"},
	{"a%E2%82%ACb%E2%82c%80d", "a\xe2\x82\xacb\xef\xbf\xbdc\xef\xbf\xbdd"},
	{"%25", "%"},
	{"%2525", "%25"},
	{"%00", "\x00"},
	{"%0A%0D", "\x0a\x0d"},
	{"%7F", "\x7f"},
	{"/a+b", "/a+b"},
	{"/%e2%82%ac%e2%82%ac%e2%82", "/\xe2\x82\xac\xe2\x82\xac\xef\xbf\xbd"},
	{"%ED%80", "\xef\xbf\xbd"},
	{"%ED%A0", "\xef\xbf\xbd\xef\xbf\xbd"},
	{"%E0%A0", "\xef\xbf\xbd"},
	{"%E0%9F", "\xef\xbf\xbd\xef\xbf\xbd"},
	{"%F4%8F", "\xef\xbf\xbd"},
	{"%F4%90", "\xef\xbf\xbd\xef\xbf\xbd"},
	{"%C2%41", "\xef\xbf\xbdA"},
	{"%E1%80%41", "\xef\xbf\xbdA"},
	{"%F1%80%80%41", "\xef\xbf\xbdA"},
	// Raw bytes >= 0x80 (never in a parsed request-target) count as
	// themselves: unquote_to_bytes(raw).decode("utf-8", "replace").
	{"caf\xc3\xa9", "caf\xc3\xa9"},
	{"%C3\xa9", "\xc3\xa9"},
	{"\xff/\xc3", "\xef\xbf\xbd/\xef\xbf\xbd"},
}

var badEscapes = []string{
	"%",
	"%4",
	"%4g",
	"a%",
	"%zz",
	"/a%2",
	"%%",
	"%G0",
	"%0G",
	"%-1",
	"% 1",
	"%E2%82%A",
}

func TestAppendUnescapedPath(t *testing.T) {
	for _, tt := range unescapeCases {
		got, ok := AppendUnescapedPath([]byte("pre"), []byte(tt.raw))
		if !ok || string(got) != "pre"+tt.want {
			t.Errorf("AppendUnescapedPath(%q) = %q, %v; want %q", tt.raw, got, ok, "pre"+tt.want)
		}
	}
	for _, raw := range badEscapes {
		got, ok := AppendUnescapedPath([]byte("pre"), []byte(raw))
		if ok || string(got) != "pre" {
			t.Errorf("AppendUnescapedPath(%q) = %q, %v; want \"pre\", false", raw, got, ok)
		}
	}
}

func TestAppendUnescapedPathAllocs(t *testing.T) {
	raw := []byte("/caf%C3%A9/%E2%82%AC%FF/a%20b")
	dst := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(1000, func() {
		dst, _ = AppendUnescapedPath(dst[:0], raw)
	})
	if allocs != 0 {
		t.Errorf("AppendUnescapedPath allocates %v times; want 0", allocs)
	}
}

func BenchmarkAppendUnescapedPath(b *testing.B) {
	for _, bm := range []struct{ name, raw string }{
		{"plain", "/api/v1/users/12345/profile"},
		{"escaped", "/caf%C3%A9/%E2%82%AC/a%20b/%F0%9F%98%80"},
	} {
		b.Run(bm.name, func(b *testing.B) {
			raw := []byte(bm.raw)
			dst := make([]byte, 0, 64)
			b.ReportAllocs()
			for b.Loop() {
				dst, _ = AppendUnescapedPath(dst[:0], raw)
			}
		})
	}
}
