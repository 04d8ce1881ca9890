package main

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestReadEnvFile(t *testing.T) {
	// python-dotenv's format, as load_dotenv reads it (expected values checked with python-dotenv 1.2).
	path := filepath.Join(t.TempDir(), ".env")
	text := "# comment\nexport A=1\nB = 2 \nC=\"dq ${A} \\n x\" # comment\nD='sq ${A} \\n'\n" +
		"E=unq ${A}#kept ${NOPE:-dflt} # comment\nF=\"multi\nline\"\nG\nH=\nI=${HOME}/x\nJ=\"a\\\"b\\\\c\"\n" +
		"K='it\\'s'\nL=${B:-x}${Z:-}\nM=$A\n N=lead\nO=\"x\" junk\nP==eq\nQ='unterminated\nR=ok\nSET=file\n"
	os.WriteFile(path, []byte(text), 0o600)
	environ := map[string]string{"HOME": "/root", "SET": "env"}
	lookup := func(k string) (string, bool) { v, ok := environ[k]; return v, ok }
	got, warnings, err := readEnvFile(path, lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "B=2", "C=dq 1 \n x", "D=sq 1 \\n", "E=unq 1#kept dflt", "F=multi\nline", "H=",
		"I=/root/x", `J=a"b\c`, "K=it's", "L=2", "M=$A", "N=lead", "P==eq", "R=ok"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	if len(warnings) != 2 || !strings.Contains(warnings[0], "line 17") || !strings.Contains(warnings[1], "line 19") {
		t.Fatalf("warnings %q", warnings)
	}
	if _, _, err := readEnvFile(path+".missing", lookup); err == nil {
		t.Fatal("a missing file was accepted")
	}
}

func TestWSPerMessageDeflateTakesUvicornsBooleanArgument(t *testing.T) {
	args := interspersed([]string{"asgi-gateway", "run", "app:app", "--ws-per-message-deflate", "false", "--port", "1"}, runFlags())
	want := []string{"asgi-gateway", "run", "--ws-per-message-deflate=false", "--port", "1", "app:app"}
	if !reflect.DeepEqual(args, want) {
		t.Fatalf("got %q, want %q", args, want)
	}
}

func TestOptionsMayFollowAPP(t *testing.T) {
	args := interspersed([]string{"asgi-gateway", "run", "app:app", "--port", "9000", "--factory", "--workers=2"}, runFlags())
	want := []string{"asgi-gateway", "run", "--port", "9000", "--factory", "--workers=2", "app:app"}
	if !reflect.DeepEqual(args, want) {
		t.Fatalf("got %q, want %q", args, want)
	}
	var _ cli.Flag = runFlags()[0]
}

func TestBooleanWordsAsClickReadsThem(t *testing.T) {
	args := interspersed([]string{"asgi-gateway", "run", "app:app", "--ws-per-message-deflate", "False", "--access-log=no", "--factory"}, runFlags())
	want := []string{"asgi-gateway", "run", "--ws-per-message-deflate=false", "--access-log=false", "--factory", "app:app"}
	if !reflect.DeepEqual(args, want) {
		t.Fatalf("got %q, want %q", args, want)
	}
	for word, want := range map[string]bool{"1": true, "YES": true, "y": true, "On": true, "t": true, "0": false, "no": false, "OFF": false, "n": false, "F": false} {
		if got, ok := boolWord(word); !ok || got != want {
			t.Errorf("%q: %v %v", word, got, ok)
		}
	}
	if _, ok := boolWord("maybe"); ok {
		t.Error("maybe is not a boolean")
	}
}

func TestConfigSourceTypes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(path, []byte("timeout-keep-alive = 2\nworkers = 3\naccess-log = \"off\"\nheader = [\"a: 1\"]\nserver-header = 0\ndate-header = 1\n"), 0o600)
	var flags []cli.Flag
	for _, f := range runCommand().Flags {
		flags = append(flags, f)
	}
	src, err := configSource(path, flags)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := src.Float64("timeout-keep-alive"); err != nil || v != 2 {
		t.Errorf("timeout-keep-alive: %v %v", v, err)
	}
	if v, err := src.Int("workers"); err != nil || v != 3 {
		t.Errorf("workers: %v %v", v, err)
	}
	if v, err := src.Bool("access-log"); err != nil || v {
		t.Errorf("access-log: %v %v", v, err)
	}
	if v, err := src.Bool("server-header"); err != nil || v {
		t.Errorf("server-header: %v %v", v, err)
	}
	if v, err := src.Bool("date-header"); err != nil || !v {
		t.Errorf("date-header: %v %v", v, err)
	}
	if v, err := src.StringSlice("header"); err != nil || !reflect.DeepEqual(v, []string{"a: 1"}) {
		t.Errorf("header: %v %v", v, err)
	}
}

func TestOptionSourcesSkipValues(t *testing.T) {
	defer func() { optionSource = map[string]int{} }()
	var flags []cli.Flag
	flags = append(flags, runCommand().Flags...)
	t.Setenv("ASGI_GATEWAY_NO_DATE_HEADER", "1")
	noteOptionSources([]string{"asgi-gateway", "run", "--root-path", "--no-server-header", "--access-log=false", "app:app"},
		flags, map[string]bool{"proxy-headers": true})
	for name, want := range map[string]int{
		"root-path": fromCommandLine, "no-server-header": fromDefault, "access-log": fromCommandLine,
		"no-date-header": fromEnv, "proxy-headers": fromFile, "server-header": fromDefault,
	} {
		if got := optionSource[name]; got != want {
			t.Errorf("%s: %d, want %d", name, got, want)
		}
	}
}

// checkNumbers reads its options by name: a name that is no option of run would read as 0 and
// pass unchecked.
func TestCheckedNumbersAreOptionsOfRun(t *testing.T) {
	kinds := map[string]string{}
	for _, f := range runFlags() {
		switch f.(type) {
		case *cli.Float64Flag:
			kinds[f.Names()[0]] = "seconds"
		case *cli.IntFlag, *cli.Int64Flag:
			kinds[f.Names()[0]] = "count"
		}
	}
	for _, name := range secondsOptions {
		if kinds[name] != "seconds" {
			t.Errorf("--%s is checked as seconds but is no number-of-seconds option of run", name)
		}
	}
	for _, o := range countOptions {
		if kinds[o.name] != "count" {
			t.Errorf("--%s is checked as a count but is no integer option of run", o.name)
		}
	}
	for name, kind := range kinds {
		if kind == "seconds" && !slices.Contains(secondsOptions, name) {
			t.Errorf("--%s (seconds) is not checked", name)
		}
	}
}
