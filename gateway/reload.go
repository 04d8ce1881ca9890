package gateway

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// ReloadConfig configures Watch (--reload and its options), with uvicorn's semantics.
type ReloadConfig struct {
	Dirs    []string      // watched recursively, new subdirectories included; default: the current directory
	Include []string      // glob patterns a changed file must match; added to the default "*.py"
	Exclude []string      // glob patterns of files and directories to ignore; added to the defaults
	Delay   time.Duration // debounce: changes within this window trigger one reload (default 250ms)
}

// The defaults, as uvicorn's: a default pattern given in the other list is dropped (--reload-exclude
// '*.py' drops "*.py" from the includes; --reload-include '.*' drops ".*" from the excludes).
var (
	defaultReloadIncludes = []string{"*.py"}
	defaultReloadExcludes = []string{".*", ".py[cod]", ".sw.*", "~*"}
)

const defaultReloadDelay = 250 * time.Millisecond

// reloadFilter decides which paths count as changes. Patterns are filepath.Match globs matched, as
// Python's PurePath.match does, against the last components of a path relative to its watched
// root: "*.py" against the base name, "tests/*.py" against the last two components.
type reloadFilter struct {
	includes    []string
	excludes    []string
	excludeDirs []string // absolute paths of existing directories given as exclude patterns
}

func newReloadFilter(cfg ReloadConfig) (*reloadFilter, error) {
	f := &reloadFilter{}
	for _, p := range defaultReloadIncludes {
		if !slices.Contains(cfg.Exclude, p) {
			f.includes = append(f.includes, p)
		}
	}
	f.includes = appendNew(f.includes, cfg.Include...)
	for _, p := range defaultReloadExcludes {
		if !slices.Contains(cfg.Include, p) {
			f.excludes = append(f.excludes, p)
		}
	}
	for _, p := range cfg.Exclude {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			if abs, err := filepath.Abs(p); err == nil {
				f.excludeDirs = append(f.excludeDirs, abs)
			}
		}
		f.excludes = appendNew(f.excludes, p)
	}
	for _, p := range slices.Concat(f.includes, f.excludes) {
		if _, err := filepath.Match(filepath.FromSlash(p), ""); err != nil {
			return nil, fmt.Errorf("reload pattern %q: %w", p, err)
		}
	}
	return f, nil
}

func appendNew(dst []string, items ...string) []string {
	for _, s := range items {
		if !slices.Contains(dst, s) {
			dst = append(dst, s)
		}
	}
	return dst
}

// matchTail reports whether pattern matches the last components of the relative path rel.
func matchTail(pattern, rel string) bool {
	pp := strings.Split(filepath.ToSlash(pattern), "/")
	rp := strings.Split(filepath.ToSlash(rel), "/")
	if len(pp) > len(rp) {
		return false
	}
	rp = rp[len(rp)-len(pp):]
	for i := range pp {
		if ok, _ := filepath.Match(pp[i], rp[i]); !ok {
			return false
		}
	}
	return true
}

// file reports whether a change to the file at rel (relative to its root) counts. As in uvicorn, an
// include pattern naming the path itself (no wildcard) wins over the excludes.
func (f *reloadFilter) file(rel string) bool {
	for _, inc := range f.includes {
		if !matchTail(inc, rel) {
			continue
		}
		if strings.HasSuffix(filepath.ToSlash(rel), filepath.ToSlash(inc)) {
			return true
		}
		for _, exc := range f.excludes {
			if matchTail(exc, rel) {
				return false
			}
		}
		return true
	}
	return false
}

// dir reports whether the directory at rel (relative to its root; abs: absolute) is to be skipped.
// Python writes only bytecode to __pycache__, so it is always skipped.
func (f *reloadFilter) dir(rel, abs string) bool {
	if filepath.Base(rel) == "__pycache__" {
		return true
	}
	if slices.Contains(f.excludeDirs, abs) {
		return true
	}
	for _, exc := range f.excludes {
		if matchTail(exc, rel) {
			return true
		}
	}
	return false
}

// Check reports what would make Watch fail at once: a directory that is missing or not one, or a
// malformed pattern. For checking the command line before starting anything.
func (cfg ReloadConfig) Check() error {
	if _, err := newReloadFilter(cfg); err != nil {
		return err
	}
	for _, r := range cfg.Dirs {
		fi, err := os.Stat(r)
		if err != nil {
			return fmt.Errorf("reload dir: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("reload dir %s: not a directory", r)
		}
	}
	return nil
}

// watcher is Watch's state; only Watch's goroutine touches it.
type watcher struct {
	fsw    *fsnotify.Watcher
	filter *reloadFilter
	log    zerolog.Logger
	dirs   map[string]string // watched directory -> its root (as given in ReloadConfig.Dirs, cleaned)
}

// addTree watches dir and the directories below it that are not excluded. When found is not nil,
// the matching files already there are passed to it (they may have been written before the watch
// was in place: "mkdir -p pkg/sub && touch pkg/sub/x.py").
func (w *watcher) addTree(root, dir string, found func(string)) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir {
				return err
			}
			w.log.Warn().Err(err).Str("path", path).Msg("reload: cannot read; not watching it")
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		if !d.IsDir() {
			if found != nil && w.filter.file(rel) {
				found(path)
			}
			return nil
		}
		if path != root {
			abs, _ := filepath.Abs(path)
			if w.filter.dir(rel, abs) {
				return filepath.SkipDir
			}
		}
		if _, ok := w.dirs[path]; ok {
			return nil
		}
		if err := w.fsw.Add(path); err != nil {
			if path == dir {
				return fmt.Errorf("watch %s: %w", path, err)
			}
			w.log.Warn().Err(err).Str("path", path).Msg("reload: cannot watch directory")
			return filepath.SkipDir
		}
		w.dirs[path] = root
		return nil
	})
}

// forget drops the watches of dir and the directories below it (removed, or renamed: a renamed
// directory reappears as a Create under its new name). It reports whether dir was watched.
func (w *watcher) forget(dir string) bool {
	_, watched := w.dirs[dir]
	prefix := dir + string(filepath.Separator)
	for d := range w.dirs {
		if d == dir || strings.HasPrefix(d, prefix) {
			w.fsw.Remove(d) // fails when inotify already dropped it; nothing to do then
			delete(w.dirs, d)
		}
	}
	return watched
}

// Watch watches cfg.Dirs until ctx is done, calling onChange with the changed paths (sorted, each
// once) once per debounced batch of matching changes: files created, written, renamed or removed,
// and watched directories removed or renamed. A batch ends when no change has come for cfg.Delay
// (or, under a steady stream of changes, 10×Delay after it began). onChange runs on Watch's
// goroutine: changes made while it runs go into the next batch.
//
// Errors setting up the watch are returned; errors while watching are logged and watching goes on.
// Watch returns nil once ctx is done.
func Watch(ctx context.Context, cfg ReloadConfig, log zerolog.Logger, onChange func([]string)) error {
	if err := cfg.Check(); err != nil {
		return err
	}
	filter, _ := newReloadFilter(cfg)
	delay := cfg.Delay
	if delay <= 0 {
		delay = defaultReloadDelay
	}
	roots := cfg.Dirs
	if len(roots) == 0 {
		roots = []string{"."}
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	defer fsw.Close()
	w := &watcher{fsw: fsw, filter: filter, log: log, dirs: make(map[string]string)}
	seen := make(map[string]bool)
	for _, r := range roots {
		r = filepath.Clean(r)
		abs, err := filepath.Abs(r)
		if err != nil {
			return fmt.Errorf("reload dir %s: %w", r, err)
		}
		if seen[abs] {
			continue
		}
		seen[abs] = true
		if err := w.addTree(r, r, nil); err != nil {
			return fmt.Errorf("reload dir %s: %w", r, err)
		}
	}
	log.Info().Strs("dirs", roots).Strs("include", filter.includes).Strs("exclude", filter.excludes).
		Int("directories", len(w.dirs)).Msg("watching for changes")

	var (
		batch   = make(map[string]struct{})
		began   time.Time
		timer   = time.NewTimer(time.Hour)
		pending bool
	)
	timer.Stop()
	defer timer.Stop()
	add := func(path string) {
		batch[path] = struct{}{}
		now := time.Now()
		if !pending {
			pending, began = true, now
		}
		// Wait for a quiet spell of delay, but no longer than 10×delay from the first change.
		timer.Reset(min(delay, max(began.Add(10*delay).Sub(now), 0)))
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-fsw.Errors:
			if !ok {
				return nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Changes were lost; reload to be safe.
				log.Warn().Err(err).Msg("reload: too many file events; some were lost")
				for _, r := range roots {
					add(filepath.Clean(r))
				}
				continue
			}
			log.Error().Err(err).Msg("reload: watch error")
		case ev, ok := <-fsw.Events:
			if !ok {
				return nil
			}
			w.handle(ev, add)
		case <-timer.C:
			pending = false
			if len(batch) == 0 {
				continue
			}
			paths := make([]string, 0, len(batch))
			for p := range batch {
				paths = append(paths, p)
			}
			clear(batch)
			slices.Sort(paths)
			log.Debug().Strs("paths", paths).Msg("reload: changes detected")
			onChange(paths)
		}
	}
}

// handle takes one file event, adding the changes that count to the batch.
func (w *watcher) handle(ev fsnotify.Event, add func(string)) {
	ev.Name = filepath.Clean(ev.Name) // "./app.py" when watching "."
	if !ev.Has(fsnotify.Create | fsnotify.Write | fsnotify.Remove | fsnotify.Rename) {
		return // Chmod only
	}
	if ev.Has(fsnotify.Remove | fsnotify.Rename) {
		if w.forget(ev.Name) {
			add(ev.Name) // a watched directory went away: it may have held Python files
			return
		}
	}
	root, ok := w.dirs[filepath.Dir(ev.Name)]
	if !ok {
		return // an event for a directory no longer watched
	}
	rel, err := filepath.Rel(root, ev.Name)
	if err != nil {
		return
	}
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
			abs, _ := filepath.Abs(ev.Name)
			if w.filter.dir(rel, abs) {
				return
			}
			if err := w.addTree(root, ev.Name, add); err != nil {
				w.log.Warn().Err(err).Str("path", ev.Name).Msg("reload: cannot watch new directory")
			}
			return
		}
	}
	if w.filter.file(rel) {
		add(ev.Name)
	}
}
