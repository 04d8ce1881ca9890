package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// consoleEvents logs a set of events through zerolog and returns each one's JSON line.
func consoleEvents() []string {
	var out bytes.Buffer
	lines := []string{}
	log := zerolog.New(&out).Level(zerolog.TraceLevel).With().Timestamp().Logger()
	emit := func(f func()) {
		out.Reset()
		f()
		lines = append(lines, out.String())
	}
	emit(func() { // the access-log line
		log.Info().Str("client", "127.0.0.1").Int("port", 51234).Bytes("method", []byte("GET")).
			Bytes("path", []byte("/a/b?x=1&y=2")).Int("status", 200).Int64("bytes", 13).
			Dur("duration", 1234*time.Microsecond).Msg("request")
	})
	emit(func() { log.Info().Str("client", "").Int("port", 0).Str("path", "/with space").Msg("request") })
	emit(func() { log.Info().Str("path", "/caf\u00e9/\u65e5\u672c").Float64("x", -1.5e-9).Msg("unicode") })
	emit(func() { log.Warn().Err(errors.New("boom: it broke")).Int("worker", 1).Msg("worker exited") })
	emit(func() {
		log.Error().Str("a", "1").Str("error", "text error").Str("z", "last").Msg("error field as a string")
	})
	emit(func() { log.Debug().Str("k", "v").Msg("debug is not bold") })
	emit(func() { log.Trace().Msg("trace") })
	emit(func() { log.Info().Msg("") })
	emit(func() { log.Info().Str("only", "fields").Send() })
	emit(func() { log.Log().Str("no", "level").Msg("no level") })
	emit(func() { log.WithLevel(zerolog.FatalLevel).Msg("fatal") })
	emit(func() { log.WithLevel(zerolog.PanicLevel).Msg("panic") })
	// Fallbacks: arrays, booleans, escapes, objects, repeated keys, a caller, invalid UTF-8.
	emit(func() { log.Info().Ints("pids", []int{1, 2, 3}).Msg("listening on http://127.0.0.1:8000") })
	emit(func() { log.Info().Bool("tls", true).Msg("bool") })
	emit(func() { log.Info().Str("path", `/a"b\c`).Msg("escaped \"message\"") })
	emit(func() { log.Info().Str("nl", "a\nb").Msg("control") })
	emit(func() { log.Info().Dict("d", zerolog.Dict().Str("x", "y")).Msg("object") })
	emit(func() { log.Info().Str("k", "1").Str("k", "2").Msg("repeated") })
	emit(func() { log.Info().Caller().Msg("caller") })
	emit(func() { log.Info().Bytes("raw", []byte{0xff, 'a'}).Msg("invalid utf-8") })
	emit(func() { log.Info().RawJSON("n", []byte("01")).Msg("bad number") })
	emit(func() { log.Info().RawJSON("s", []byte(`"x\u0041"`)).Msg("escaped unicode") })
	lines = append(lines, "not json\n", "{}\n", `{"level":"info","time":"","message":"empty time"}`+"\n",
		`{"level":"info","time":"yesterday","message":"unparsed time"}`+"\n",
		`{"level":"info","time":1700000000,"message":"number time"}`+"\n",
		`{"level":"nope","time":"2026-12-07T04:04:38Z","message":"unknown level"}`+"\n",
		`{"level":"info","time":"2026-12-07T04:04:38Z","message":"n","a":-0,"b":1.25e+3,"c":2E-2,"d":10.5}`+"\n",
		`{"level":"info","time":"2026-12-07T04:04:38Z","message":"n","a":1.}`+"\n",
		`{"level":"info","time":"2026-12-07T04:04:38Z","message":"n","a":1e+}`+"\n",
		`{"level":"info","time":"2026-12-07T04:04:38Z","message":"n","a":-}`+"\n",
		`{"level":"info","time":"2026-12-07T04:04:38Z","message":"n",}`+"\n")
	return lines
}

// The console writer's output is ConsoleWriter's, byte for byte, with and without colors, on the
// fast path and the fallback.
func TestConsoleWriterMatchesZerolog(t *testing.T) {
	for _, noColor := range []bool{true, false} {
		for _, envNoColor := range []string{"", "1"} {
			t.Setenv("NO_COLOR", envNoColor)
			for _, line := range consoleEvents() {
				var want, got bytes.Buffer
				_, werr := zerolog.ConsoleWriter{Out: &want, NoColor: noColor, TimeFormat: "15:04:05"}.Write([]byte(line))
				_, gerr := newConsoleWriter(&got, noColor, "15:04:05").Write([]byte(line))
				if (werr == nil) != (gerr == nil) || want.String() != got.String() {
					t.Errorf("noColor %v NO_COLOR %q, event %s\n got %q (%v)\nwant %q (%v)", noColor, envNoColor,
						strings.TrimSpace(line), got.String(), gerr, want.String(), werr)
				}
			}
		}
	}
}

// The events this program logs per request take the fast path (no fallback to ConsoleWriter).
func TestConsoleWriterFastPath(t *testing.T) {
	lines := consoleEvents()
	for i, line := range lines[:12] {
		if i == 9 { // no level: ConsoleWriter's "???", left to it
			continue
		}
		fields, ok := parseFlatJSON(line, nil)
		if !ok {
			t.Fatalf("not parsed: %s", line)
		}
		if _, ok := newConsoleWriter(&bytes.Buffer{}, false, "15:04:05").format1(nil, fields); !ok {
			t.Errorf("not formatted on the fast path: %s", line)
		}
	}
	access := []byte(lines[0])
	allocs := testing.AllocsPerRun(200, func() { consoleBench.Write(access) })
	if allocs != 0 {
		t.Errorf("%.1f allocations per access-log line, want none", allocs)
	}
}

var consoleBench = newConsoleWriter(discard{}, false, "15:04:05")

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func BenchmarkConsoleAccessLine(b *testing.B) {
	line := []byte(consoleEvents()[0])
	b.Run("zerolog.ConsoleWriter", func(b *testing.B) {
		w := zerolog.ConsoleWriter{Out: discard{}, TimeFormat: "15:04:05"}
		for i := 0; i < b.N; i++ {
			w.Write(line)
		}
	})
	b.Run("consoleWriter", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			consoleBench.Write(line)
		}
	})
}
