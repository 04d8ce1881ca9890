package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// The --env-file format is python-dotenv's, as uvicorn's --env-file loads it (load_dotenv: no
// override, interpolation on). A statement is [export ]KEY[=VALUE][ # comment]: KEY unquoted or in
// single quotes; VALUE in single quotes (\\ and \' understood), in double quotes (may span lines;
// \\ \' \" \a \b \f \n \r \t \v understood), or unquoted to the end of the line, where whitespace
// then # starts a comment. A bare KEY sets nothing. ${NAME} and ${NAME:-default} are replaced in
// every value by the environment's NAME, else the file's earlier NAME, else the default (else
// ""). A variable already in the environment keeps its value. A statement that cannot be parsed is
// skipped with a warning, as python-dotenv does. Values are never logged: they are often secrets.

var (
	dotenvMultilineSpace = regexp.MustCompile(`^\s*`)
	dotenvExport         = regexp.MustCompile(`^(?:export[^\S\r\n]+)?`)
	dotenvSingleKey      = regexp.MustCompile(`^'([^']*)'`)
	dotenvUnquotedKey    = regexp.MustCompile(`^([^=#\s]+)`)
	dotenvSpace          = regexp.MustCompile(`^[^\S\r\n]*`)
	dotenvEqual          = regexp.MustCompile(`^=[^\S\r\n]*`)
	dotenvSingleValue    = regexp.MustCompile(`^'((?:\\'|[^'])*)'`)
	dotenvDoubleValue    = regexp.MustCompile(`^"((?:\\"|[^"])*)"`)
	dotenvUnquotedValue  = regexp.MustCompile(`^[^\r\n]*`)
	dotenvValueComment   = regexp.MustCompile(`\s+#.*`)
	dotenvComment        = regexp.MustCompile(`^(?:[^\S\r\n]*#[^\r\n]*)?`)
	dotenvEndOfLine      = regexp.MustCompile(`^[^\S\r\n]*(?:\r\n|\n|\r|$)`)
	dotenvRestOfLine     = regexp.MustCompile(`^[^\r\n]*(?:\r\n|\n|\r)?`)
	dotenvSingleEscapes  = regexp.MustCompile(`\\[\\']`)
	dotenvDoubleEscapes  = regexp.MustCompile(`\\[\\'"abfnrtv]`)
	dotenvVariable       = regexp.MustCompile(`\$\{([^}:]*)(?::-([^}]*))?\}`)
)

// dotenvBinding is one statement: a KEY with a value, or a bare KEY (set false).
type dotenvBinding struct {
	key, value string
	set        bool
}

// parseDotenv parses a dotenv file's text; bad lists the lines of statements it skipped.
func parseDotenv(text string) (bindings []dotenvBinding, bad []int) {
	pos := 0
	read := func(re *regexp.Regexp) (string, bool) {
		m := re.FindStringSubmatchIndex(text[pos:])
		if m == nil {
			return "", false
		}
		group := text[pos+m[0] : pos+m[1]]
		if len(m) > 2 && m[2] >= 0 {
			group = text[pos+m[2] : pos+m[3]]
		}
		pos += m[1]
		return group, true
	}
	for pos < len(text) {
		read(dotenvMultilineSpace)
		if pos == len(text) {
			break
		}
		line := 1 + strings.Count(text[:pos], "\n")
		b, ok := parseDotenvStatement(text, &pos, read)
		if !ok {
			bad = append(bad, line)
			read(dotenvRestOfLine)
			continue
		}
		if b.key != "" {
			bindings = append(bindings, b)
		}
	}
	return bindings, bad
}

// parseDotenvStatement parses one statement at *pos (a comment line gives an empty key).
func parseDotenvStatement(text string, pos *int, read func(*regexp.Regexp) (string, bool)) (dotenvBinding, bool) {
	var b dotenvBinding
	read(dotenvExport)
	switch rest := text[*pos:]; {
	case strings.HasPrefix(rest, "#"):
		// a comment line: the comment is read below
	case strings.HasPrefix(rest, "'"):
		key, ok := read(dotenvSingleKey)
		if !ok {
			return b, false
		}
		b.key = key
	default:
		key, ok := read(dotenvUnquotedKey)
		if !ok {
			return b, false
		}
		b.key = key
	}
	read(dotenvSpace)
	if b.key != "" && strings.HasPrefix(text[*pos:], "=") {
		read(dotenvEqual)
		b.set = true
		switch rest := text[*pos:]; {
		case strings.HasPrefix(rest, "'"):
			v, ok := read(dotenvSingleValue)
			if !ok {
				return b, false
			}
			b.value = dotenvSingleEscapes.ReplaceAllStringFunc(v, func(e string) string { return e[1:] })
		case strings.HasPrefix(rest, `"`):
			v, ok := read(dotenvDoubleValue)
			if !ok {
				return b, false
			}
			b.value = dotenvDoubleEscapes.ReplaceAllStringFunc(v, decodeDotenvEscape)
		default:
			v, _ := read(dotenvUnquotedValue)
			b.value = strings.TrimRight(dotenvValueComment.ReplaceAllString(v, ""), " \t\r\n\v\f")
		}
	}
	read(dotenvComment)
	if _, ok := read(dotenvEndOfLine); !ok {
		return b, false
	}
	return b, true
}

func decodeDotenvEscape(e string) string {
	switch e[1] {
	case 'a':
		return "\a"
	case 'b':
		return "\b"
	case 'f':
		return "\f"
	case 'n':
		return "\n"
	case 'r':
		return "\r"
	case 't':
		return "\t"
	case 'v':
		return "\v"
	}
	return e[1:] // \\ \' \"
}

// readEnvFile reads a dotenv file and returns the KEY=VALUE pairs to add to the workers'
// environment (none of a variable lookup finds: the environment wins), and a warning per statement
// it skipped.
func readEnvFile(path string, lookup func(string) (string, bool)) (env, warnings []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--env-file: %w", err)
	}
	bindings, bad := parseDotenv(string(data))
	for _, line := range bad {
		warnings = append(warnings, fmt.Sprintf("--env-file %s: could not parse the statement at line %d; skipped", path, line))
	}
	values := make(map[string]*string, len(bindings)) // the file's values so far (nil: a bare KEY)
	for _, b := range bindings {
		var v *string
		if b.set {
			expanded := dotenvVariable.ReplaceAllStringFunc(b.value, func(ref string) string {
				m := dotenvVariable.FindStringSubmatch(ref)
				if value, ok := lookup(m[1]); ok {
					return value
				}
				if fileValue, ok := values[m[1]]; ok {
					if fileValue == nil {
						return ""
					}
					return *fileValue
				}
				return m[2]
			})
			v = &expanded
		}
		values[b.key] = v
		if _, inEnv := lookup(b.key); inEnv || v == nil {
			continue
		}
		env = append(env, b.key+"="+*v)
	}
	return env, warnings, nil
}
