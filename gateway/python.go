package gateway

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/rs/zerolog"
)

// FindPython returns the interpreter the workers run with: explicit (from --python) if given, else
// $VIRTUAL_ENV/bin/python, else python3 on PATH. A $VIRTUAL_ENV without a usable interpreter (a
// deleted virtualenv, one another user cannot read) is passed over with a warning, since the
// interpreter then chosen may not have the app's packages.
func FindPython(explicit string, log zerolog.Logger) (string, error) {
	if explicit != "" {
		p, err := exec.LookPath(explicit)
		if err != nil {
			return "", fmt.Errorf("python interpreter %q: %w", explicit, err)
		}
		return p, nil
	}
	venv := os.Getenv("VIRTUAL_ENV")
	var venvErr error
	if venv != "" {
		p := filepath.Join(venv, "bin", "python")
		if _, venvErr = os.Stat(p); venvErr == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		return "", errors.New("no Python interpreter: pass --python PATH, activate a virtualenv, or put python3 on PATH")
	}
	if venvErr != nil {
		log.Warn().Err(venvErr).Str("VIRTUAL_ENV", venv).Str("python", p).
			Msg("$VIRTUAL_ENV has no usable bin/python: the workers use python3 on PATH (pass --python to choose)")
	}
	return p, nil
}
