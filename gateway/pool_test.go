package gateway

import (
	"testing"

	"github.com/rs/zerolog"
)

func TestStderrLevels(t *testing.T) {
	E, I, W := zerolog.ErrorLevel, zerolog.InfoLevel, zerolog.WarnLevel
	lines := []struct {
		line string
		want zerolog.Level
	}{
		{"INFO [app] started", I},
		{"WARNING [app] careful", W},
		{"ERROR [python_worker.cycle] Exception in ASGI application\rTraceback (most recent call last):\r  File \"x.py\", line 1\rRuntimeError: boom", E},
		{"INFO [app] a record after a whole one", I},
		// A traceback printed outside logging: every line of it, and of the one chained to it.
		{"Traceback (most recent call last):", E},
		{"  File \"/app/main.py\", line 3, in handler", E},
		{"    raise KeyError(key)", E},
		{"KeyError: 'x'", E},
		{"", E},
		{"During handling of the above exception, another exception occurred:", E},
		{"", E},
		{"Traceback (most recent call last):", E},
		{"  File \"/app/main.py\", line 5, in handler", E},
		{"ValueError: y", E},
		{"plain print() output", I},
		{"", I},
		{"DEBUG [app] after", zerolog.DebugLevel},
	}
	var s stderrLevels
	for i, l := range lines {
		if got := s.of(l.line); got != l.want {
			t.Errorf("line %d %q: %v, want %v", i, l.line, got, l.want)
		}
	}
}
