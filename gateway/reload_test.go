package gateway

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

const testReloadDelay = 100 * time.Millisecond

// readyWriter is a log sink that closes ready once Watch logs that it is watching.
type readyWriter struct {
	once  sync.Once
	ready chan struct{}
}

func (w *readyWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("watching for changes")) {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

// startWatch runs Watch on cfg and returns the channel of its batches, once it is watching.
func startWatch(t *testing.T, cfg ReloadConfig) <-chan []string {
	t.Helper()
	if cfg.Delay == 0 {
		cfg.Delay = testReloadDelay
	}
	rw := &readyWriter{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	batches := make(chan []string, 16)
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, cfg, zerolog.New(rw), func(p []string) { batches <- p }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	select {
	case <-rw.ready:
	case err := <-done:
		t.Fatalf("Watch returned early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not start")
	}
	return batches
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// nextBatch waits for one batch.
func nextBatch(t *testing.T, batches <-chan []string) []string {
	t.Helper()
	select {
	case b := <-batches:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no change reported")
		return nil
	}
}

// noBatch checks that nothing is reported for a while.
func noBatch(t *testing.T, batches <-chan []string) {
	t.Helper()
	select {
	case b := <-batches:
		t.Fatalf("unexpected change reported: %v", b)
	case <-time.After(4 * testReloadDelay):
	}
}

func TestWatchDebouncesQuickWrites(t *testing.T) {
	// A longer delay than the other tests: the writes must all land within it even on a busy machine.
	const delay = 400 * time.Millisecond
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "app.py"), "x = 0\n")
	batches := startWatch(t, ReloadConfig{Dirs: []string{dir}, Delay: delay})
	start := time.Now()
	for i := range 5 {
		writeFile(t, filepath.Join(dir, "app.py"), "x = "+string(rune('1'+i))+"\n")
		time.Sleep(5 * time.Millisecond)
	}
	if took := time.Since(start); took > delay/2 {
		t.Skipf("the writes took %s; too slow a machine to test a %s debounce", took, delay)
	}
	got := nextBatch(t, batches)
	if want := []string{filepath.Join(dir, "app.py")}; !slices.Equal(got, want) {
		t.Errorf("batch %v, want %v", got, want)
	}
	select {
	case b := <-batches:
		t.Fatalf("a second batch: %v", b)
	case <-time.After(2 * delay):
	}
}

func TestWatchIgnoresOtherFiles(t *testing.T) {
	dir := t.TempDir()
	batches := startWatch(t, ReloadConfig{Dirs: []string{dir}})
	writeFile(t, filepath.Join(dir, "notes.txt"), "hello\n")
	noBatch(t, batches)
	// A matching change in the same window is reported alone.
	writeFile(t, filepath.Join(dir, "notes.txt"), "again\n")
	writeFile(t, filepath.Join(dir, "mod.py"), "\n")
	if got, want := nextBatch(t, batches), []string{filepath.Join(dir, "mod.py")}; !slices.Equal(got, want) {
		t.Errorf("batch %v, want %v", got, want)
	}
}

func TestWatchNewSubdirectory(t *testing.T) {
	dir := t.TempDir()
	batches := startWatch(t, ReloadConfig{Dirs: []string{dir}})
	// Created together with its file: the file may exist before the watch on the directory does.
	path := filepath.Join(dir, "pkg", "sub", "views.py")
	writeFile(t, path, "a = 1\n")
	if got := nextBatch(t, batches); !slices.Contains(got, path) {
		t.Errorf("batch %v, want %s in it", got, path)
	}
	// The new directories are watched from now on.
	time.Sleep(testReloadDelay)
	writeFile(t, path, "a = 2\n")
	if got := nextBatch(t, batches); !slices.Equal(got, []string{path}) {
		t.Errorf("batch %v, want [%s]", got, path)
	}
	// Removing a watched directory counts too (it may have held modules).
	if err := os.RemoveAll(filepath.Join(dir, "pkg")); err != nil {
		t.Fatal(err)
	}
	if got := nextBatch(t, batches); !slices.Contains(got, path) {
		t.Errorf("batch %v, want %s in it", got, path)
	}
}

func TestWatchExcludedPatterns(t *testing.T) {
	dir := t.TempDir()
	batches := startWatch(t, ReloadConfig{Dirs: []string{dir}, Exclude: []string{"test_*.py"}})
	writeFile(t, filepath.Join(dir, "test_views.py"), "\n") // the given pattern
	writeFile(t, filepath.Join(dir, ".#app.py"), "\n")      // a default one (".*")
	writeFile(t, filepath.Join(dir, "~app.py"), "\n")       // a default one ("~*")
	noBatch(t, batches)
	writeFile(t, filepath.Join(dir, "views.py"), "\n")
	if got, want := nextBatch(t, batches), []string{filepath.Join(dir, "views.py")}; !slices.Equal(got, want) {
		t.Errorf("batch %v, want %v", got, want)
	}
}

func TestWatchExcludedDirectories(t *testing.T) {
	dir := t.TempDir()
	venv := filepath.Join(dir, ".venv", "lib", "site.py")
	writeFile(t, venv, "\n")
	writeFile(t, filepath.Join(dir, "vendor", "lib.py"), "\n")
	batches := startWatch(t, ReloadConfig{Dirs: []string{dir}, Exclude: []string{"vendor"}})
	writeFile(t, venv, "changed\n")                                   // under an existing excluded directory
	writeFile(t, filepath.Join(dir, ".git", "hooks", "x.py"), "\n")   // under a new one
	writeFile(t, filepath.Join(dir, "__pycache__", "app.py"), "\n")   // always skipped
	writeFile(t, filepath.Join(dir, "vendor", "lib.py"), "changed\n") // excluded by name
	writeFile(t, filepath.Join(dir, "src", "vendor", "lib.py"), "\n") // ... at any depth
	noBatch(t, batches)
	writeFile(t, filepath.Join(dir, "src", "main.py"), "\n")
	if got, want := nextBatch(t, batches), []string{filepath.Join(dir, "src", "main.py")}; !slices.Equal(got, want) {
		t.Errorf("batch %v, want %v", got, want)
	}
}

func TestWatchIncludePattern(t *testing.T) {
	dir := t.TempDir()
	batches := startWatch(t, ReloadConfig{Dirs: []string{dir}, Include: []string{"*.html", "templates/*.txt"}})
	writeFile(t, filepath.Join(dir, "other", "a.txt"), "\n") // not under templates/
	noBatch(t, batches)
	writeFile(t, filepath.Join(dir, "index.html"), "\n")
	writeFile(t, filepath.Join(dir, "templates", "b.txt"), "\n")
	writeFile(t, filepath.Join(dir, "app.py"), "\n") // still included by default
	time.Sleep(testReloadDelay / 2)
	var got []string
	for len(got) < 3 {
		got = append(got, nextBatch(t, batches)...)
	}
	slices.Sort(got)
	want := []string{filepath.Join(dir, "app.py"), filepath.Join(dir, "index.html"), filepath.Join(dir, "templates", "b.txt")}
	if !slices.Equal(got, want) {
		t.Errorf("changes %v, want %v", got, want)
	}
}

func TestReloadFilter(t *testing.T) {
	f, err := newReloadFilter(ReloadConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]bool{
		"app.py": true, "pkg/mod.py": true, "app.pyc": false, ".app.py.swp": false, ".#app.py": false,
		"~app.py": false, "notes.txt": false, "app.py~": false,
	} {
		if got := f.file(rel); got != want {
			t.Errorf("file(%q) = %v, want %v", rel, got, want)
		}
	}
	for rel, want := range map[string]bool{".git": true, "a/.venv": true, "__pycache__": true, "src": false, "venv": false} {
		if got := f.dir(rel, "/nowhere/"+rel); got != want {
			t.Errorf("dir(%q) = %v, want %v", rel, got, want)
		}
	}
	// uvicorn: a default given in the other list is dropped.
	f, _ = newReloadFilter(ReloadConfig{Include: []string{".*"}, Exclude: []string{"*.py"}})
	if f.file("app.py") || !f.file(".env") {
		t.Errorf("overridden defaults: includes %v, excludes %v", f.includes, f.excludes)
	}
	if _, err := newReloadFilter(ReloadConfig{Include: []string{"[a-"}}); err == nil {
		t.Error("a bad pattern is accepted")
	}
}

func TestWatchSetupErrors(t *testing.T) {
	ctx := context.Background()
	nop := func([]string) {}
	if err := Watch(ctx, ReloadConfig{Dirs: []string{filepath.Join(t.TempDir(), "missing")}}, zerolog.Nop(), nop); err == nil {
		t.Error("a missing directory is accepted")
	}
	if err := Watch(ctx, ReloadConfig{Include: []string{"[z-"}}, zerolog.Nop(), nop); err == nil {
		t.Error("a bad pattern is accepted")
	}
	file := filepath.Join(t.TempDir(), "app.py")
	writeFile(t, file, "\n")
	if err := (ReloadConfig{Dirs: []string{file}}).Check(); err == nil {
		t.Error("a file is accepted as a directory")
	}
	if err := (ReloadConfig{Dirs: []string{filepath.Dir(file)}, Exclude: []string{".venv"}}).Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestWatchEndsOnCancel(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a", "b", "c.py"), "\n")
	before := runtime.NumGoroutine()
	for range 3 {
		rw := &readyWriter{ready: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Watch(ctx, ReloadConfig{Dirs: []string{dir}}, zerolog.New(rw), func([]string) {}) }()
		<-rw.ready
		writeFile(t, filepath.Join(dir, "a", "b", "c.py"), "changed\n") // a batch pending at cancel
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Watch did not end on cancel")
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before+1 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
