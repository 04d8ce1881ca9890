package gateway

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// FindPython returns the interpreter the workers run with: explicit (from --python) if given, else
// $VIRTUAL_ENV/bin/python, else python3 on PATH.
func FindPython(explicit string) (string, error) {
	if explicit != "" {
		p, err := exec.LookPath(explicit)
		if err != nil {
			return "", fmt.Errorf("python interpreter %q: %w", explicit, err)
		}
		return p, nil
	}
	if venv := os.Getenv("VIRTUAL_ENV"); venv != "" {
		p := filepath.Join(venv, "bin", "python")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		return "", errors.New("no Python interpreter: pass --python PATH, activate a virtualenv, or put python3 on PATH")
	}
	return p, nil
}
