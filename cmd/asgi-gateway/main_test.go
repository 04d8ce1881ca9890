package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestReadEnvFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".env")
	os.WriteFile(path, []byte("# comment\nA=1\nexport B = two words \nC=\"x\\ny\"\nD='$not'\nE=v # note\n\n"), 0o600)
	got, err := readEnvFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "B=two words", "C=x\ny", "D=$not", "E=v"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	os.WriteFile(path, []byte("JUSTAKEY\n"), 0o600)
	if _, err := readEnvFile(path); err == nil {
		t.Fatal("a line without = was accepted")
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
