package main

import (
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/rs/zerolog"
)

// consoleWriter writes zerolog's events as zerolog.ConsoleWriter does, byte for byte, without its
// cost: ConsoleWriter decodes each event's JSON into a map through encoding/json (reflection, an
// allocation per field) and took 43 % of the gateway's CPU with the access log on. Events of the
// shape this program logs (a flat object of strings without escapes and numbers: every access-log
// line) are formatted here from the JSON as it is; anything else (arrays, objects, booleans,
// escaped strings, repeated keys) goes to the ConsoleWriter itself. console_test.go compares the
// two on both paths.
type consoleWriter struct {
	slow    zerolog.ConsoleWriter
	out     io.Writer
	color   bool // colors on (and NO_COLOR, read once, empty)
	format  string
	lastTS  atomic.Pointer[[2]string] // the last timestamp seen and its formatted part
	scratch sync.Pool                 // *consoleScratch
}

type consoleScratch struct {
	buf    []byte
	fields []jsonField
}

type jsonField struct {
	key, value string
	number     bool
}

func newConsoleWriter(out io.Writer, noColor bool, timeFormat string) *consoleWriter {
	w := &consoleWriter{
		slow:   zerolog.ConsoleWriter{Out: out, NoColor: noColor, TimeFormat: timeFormat},
		out:    out,
		color:  !noColor && os.Getenv("NO_COLOR") == "",
		format: timeFormat,
	}
	w.scratch.New = func() any { return &consoleScratch{buf: make([]byte, 0, 256)} }
	return w
}

func (w *consoleWriter) Write(p []byte) (int, error) {
	s := w.scratch.Get().(*consoleScratch)
	defer w.scratch.Put(s)
	// The fields alias p (no copy): nothing keeps them past this call (timestamp clones its key).
	fields, ok := parseFlatJSON(unsafe.String(unsafe.SliceData(p), len(p)), s.fields[:0])
	defer clear(fields) // (no reference to p stays in the pool)
	s.fields = fields[:0]
	if !ok {
		return w.slow.Write(p)
	}
	line, ok := w.format1(s.buf[:0], fields)
	if cap(line) <= 64<<10 {
		s.buf = line[:0]
	}
	if !ok {
		return w.slow.Write(p)
	}
	_, err := w.out.Write(line)
	return len(p), err
}

// format1 appends the console line of an event's fields (ConsoleWriter's parts: time, level,
// caller, message; then the other fields sorted by name, "error" first). False: a part this writer
// does not format as ConsoleWriter would.
func (w *consoleWriter) format1(dst []byte, fields []jsonField) ([]byte, bool) {
	var level, ts, msg jsonField // (copies: the fields are sorted below)
	for _, f := range fields {
		switch f.key {
		case zerolog.LevelFieldName:
			level = f
		case zerolog.TimestampFieldName:
			ts = f
		case zerolog.MessageFieldName:
			msg = f
		case zerolog.CallerFieldName:
			return dst, false
		}
	}
	if level.key == "" || level.number || ts.key == "" || ts.number || ts.value == "" || msg.number {
		return dst, false
	}
	lvl, err := zerolog.ParseLevel(level.value)
	formatted, known := zerolog.FormattedLevels[lvl]
	if err != nil || !known {
		return dst, false
	}
	dst = append(dst, w.timestamp(ts.value)...)
	dst = append(dst, ' ')
	dst = w.colorize(dst, formatted, zerolog.LevelColors[lvl], 0)
	if msg.value != "" {
		dst = append(dst, ' ')
		switch level.value {
		case zerolog.LevelInfoValue, zerolog.LevelWarnValue, zerolog.LevelErrorValue, zerolog.LevelFatalValue, zerolog.LevelPanicValue:
			dst = w.colorize(dst, msg.value, colorBold, 0)
		default:
			dst = append(dst, msg.value...)
		}
	}
	slices.SortFunc(fields, func(a, b jsonField) int {
		switch { // "error" first, then by name
		case a.key == zerolog.ErrorFieldName:
			return -1
		case b.key == zerolog.ErrorFieldName:
			return 1
		}
		return strings.Compare(a.key, b.key)
	})
	for _, f := range fields {
		switch f.key {
		case zerolog.LevelFieldName, zerolog.TimestampFieldName, zerolog.MessageFieldName:
			continue
		}
		dst = append(dst, ' ')
		dst = w.colorize(dst, f.key, colorCyan, '=')
		value := f.value
		if !f.number && needsQuote(value) {
			value = strconv.Quote(value)
		}
		if f.key == zerolog.ErrorFieldName {
			if w.color {
				dst = append(dst, "\x1b[31m\x1b[1m"...)
				dst = append(dst, value...)
				dst = append(dst, "\x1b[0m\x1b[0m"...)
			} else {
				dst = append(dst, value...)
			}
		} else {
			dst = append(dst, value...)
		}
	}
	return append(dst, '\n'), true
}

const (
	colorBold     = 1
	colorCyan     = 36
	colorDarkGray = 90
)

// colorize appends s (and then suffix, unless 0) in color c, as ConsoleWriter's colorize.
func (w *consoleWriter) colorize(dst []byte, s string, c int, suffix byte) []byte {
	if w.color && c != 0 {
		dst = append(dst, "\x1b["...)
		dst = strconv.AppendInt(dst, int64(c), 10)
		dst = append(dst, 'm')
	}
	dst = append(dst, s...)
	if suffix != 0 {
		dst = append(dst, suffix)
	}
	if w.color && c != 0 {
		dst = append(dst, "\x1b[0m"...)
	}
	return dst
}

// timestamp is ConsoleWriter's time part of raw (the event's "time" string), cached for the
// second it names.
func (w *consoleWriter) timestamp(raw string) string {
	if last := w.lastTS.Load(); last != nil && last[0] == raw {
		return last[1]
	}
	t := raw
	if ts, err := time.ParseInLocation(zerolog.TimeFieldFormat, raw, time.Local); err == nil {
		t = ts.In(time.Local).Format(w.format)
	}
	part := string(w.colorize(nil, t, colorDarkGray, 0))
	w.lastTS.Store(&[2]string{strings.Clone(raw), part})
	return part
}

// needsQuote is ConsoleWriter's: control characters, non-ASCII, space, backslash and quote.
func needsQuote(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == ' ' || c == '\\' || c == '"' {
			return true
		}
	}
	return false
}

// parseFlatJSON parses one JSON object whose values are strings without escapes or numbers (and
// an optional trailing newline), appending its fields to dst. False for anything else, and for a
// key given twice (which the map ConsoleWriter decodes into would keep once).
func parseFlatJSON(s string, dst []jsonField) ([]jsonField, bool) {
	if n := len(s); n > 0 && s[n-1] == '\n' {
		s = s[:n-1]
	}
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return dst, false
	}
	s = s[1 : len(s)-1]
	for len(s) > 0 {
		key, rest, ok := jsonString(s)
		if !ok || len(rest) == 0 || rest[0] != ':' {
			return dst, false
		}
		rest = rest[1:]
		var f jsonField
		if len(rest) > 0 && rest[0] == '"' {
			f.value, rest, ok = jsonString(rest)
		} else {
			f.value, rest, ok = jsonNumber(rest)
			f.number = true
		}
		if !ok {
			return dst, false
		}
		for _, g := range dst {
			if g.key == key {
				return dst, false
			}
		}
		f.key = key
		dst = append(dst, f)
		if len(rest) == 0 {
			break
		}
		if rest[0] != ',' || len(rest) == 1 {
			return dst, false
		}
		s = rest[1:]
	}
	return dst, true
}

// jsonString reads a JSON string of valid UTF-8 without escapes or control characters at the
// start of s (encoding/json would decode invalid UTF-8 into U+FFFD).
func jsonString(s string) (value, rest string, ok bool) {
	if len(s) == 0 || s[0] != '"' {
		return "", s, false
	}
	ascii := true
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			if !ascii && !utf8.ValidString(s[1:i]) {
				return "", s, false
			}
			return s[1:i], s[i+1:], true
		case c == '\\' || c < 0x20:
			return "", s, false
		case c >= 0x80:
			ascii = false
		}
	}
	return "", s, false
}

// jsonNumber reads a JSON number at the start of s (as ConsoleWriter's json.Number keeps it).
func jsonNumber(s string) (value, rest string, ok bool) {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	start := i
	if i = digits(s, i); i == start || (s[start] == '0' && i-start > 1) {
		return "", s, false
	}
	if i < len(s) && s[i] == '.' {
		if d := digits(s, i+1); d > i+1 {
			i = d
		} else {
			return "", s, false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if d := digits(s, i); d > i {
			i = d
		} else {
			return "", s, false
		}
	}
	return s[:i], s[i:], true
}

// digits returns the index after the decimal digits of s from i.
func digits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}
