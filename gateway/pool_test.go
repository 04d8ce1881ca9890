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

// TestPythonLevelOtherFormats: lines an app's --log-config formats its own way take the level one of
// their first words names.
func TestPythonLevelOtherFormats(t *testing.T) {
	E, I, W, D := zerolog.ErrorLevel, zerolog.InfoLevel, zerolog.WarnLevel, zerolog.DebugLevel
	for _, c := range []struct {
		line string
		want zerolog.Level
	}{
		{"ERROR:root:basicConfig's format", E},
		{"2026-12-06 16:37:30,123 - app - WARNING - message", W},
		{"2026-12-06 16:37:30,123 [ERROR] app: message", E},
		{"16:37:30 DEBUG app message", D},
		{"CFG CRITICAL app: message", E},
		{"[INFO] message saying ERROR later", I},
		{"one two three four five six seven ERROR", I}, // past the first six words: a message's
		{"plain print() output", I},
		{"", I},
	} {
		if got := pythonLevel(c.line); got != c.want {
			t.Errorf("%q: %v, want %v", c.line, got, c.want)
		}
	}
}
