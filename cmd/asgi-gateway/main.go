// Command asgi-gateway serves an ASGI app through the Go gateway and a pool of Python workers:
//
//	asgi-gateway run myproject.asgi:application --workers 4 --port 8000
package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/asgi-gateway/asgi-gateway/gateway"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// jsonLogs is set once --log-format json is known, so that even fatal errors are JSON lines.
var jsonLogs bool

// env returns the environment variables an option is read from: ASGI_GATEWAY_<NAME>, and
// UVICORN_<NAME> for drop-in use.
func env(name string) []string {
	n := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	return []string{"ASGI_GATEWAY_" + n, "UVICORN_" + n}
}

func runFlags() []cli.Flag {
	d := gateway.DefaultConfig()
	return []cli.Flag{
		// uvicorn's engine choices: accepted so that a uvicorn command line runs unchanged.
		&cli.StringFlag{Name: "loop", Hidden: true},
		&cli.StringFlag{Name: "http", Hidden: true},
		&cli.StringFlag{Name: "ws", Hidden: true},
		// uvicorn options for what the gateway does its own way: accepted, and ignored with a message.
		&cli.StringFlag{Name: "ssl-version", Hidden: true},
		&cli.StringFlag{Name: "ws-max-queue", Hidden: true},
		&cli.StringFlag{Name: "config", Usage: "read options from this TOML file (keys are option names: port = 8000); precedence: option > environment > file > default", EnvVars: env("config"), Category: "Application"},
		&cli.StringFlag{Name: "host", Value: d.Host, Usage: "bind to this address", EnvVars: env("host"), Category: "Listening"},
		&cli.IntFlag{Name: "port", Value: d.Port, Usage: "bind to this port (0: any free port, printed)", EnvVars: env("port"), Category: "Listening"},
		&cli.StringFlag{Name: "uds", Usage: "bind to this Unix domain socket instead", EnvVars: env("uds"), Category: "Listening"},
		&cli.IntFlag{Name: "fd", Value: -1, Usage: "bind to a socket from this inherited file descriptor", EnvVars: env("fd"), Category: "Listening"},
		&cli.IntFlag{Name: "backlog", Value: d.Backlog, Usage: "maximum number of connections waiting to be accepted", EnvVars: env("backlog"), Category: "Listening"},
		&cli.BoolFlag{Name: "proxy-headers", Value: true, Usage: "take client address and scheme from X-Forwarded-For/-Proto (or Forwarded) of trusted proxies", EnvVars: env("proxy-headers"), Category: "Listening"},
		&cli.BoolFlag{Name: "no-proxy-headers", Usage: "ignore proxy headers", EnvVars: env("no-proxy-headers"), Category: "Listening"},
		&cli.StringFlag{Name: "forwarded-allow-ips", Value: "127.0.0.1,::1", Usage: "comma-separated IPs, networks (CIDR) or \"*\" trusted to send proxy headers", EnvVars: append(env("forwarded-allow-ips"), "FORWARDED_ALLOW_IPS"), Category: "Listening"},
		&cli.IntFlag{Name: "workers", Value: d.Workers, Usage: "number of Python worker processes", EnvVars: append(env("workers"), "WEB_CONCURRENCY"), Category: "Workers"},
		&cli.StringFlag{Name: "worker-user", Usage: "run the Python workers as this user (the gateway keeps its privileges, e.g. to bind port 80)", EnvVars: env("worker-user"), Category: "Workers"},
		&cli.StringFlag{Name: "python", Usage: "Python interpreter for the workers (default: $VIRTUAL_ENV/bin/python, else python3)", EnvVars: env("python"), Category: "Workers"},
		&cli.StringFlag{Name: "app-dir", Usage: "look for APP in this directory (added to sys.path; default: the current directory)", EnvVars: env("app-dir"), Category: "Application"},
		&cli.StringFlag{Name: "interface", Value: "auto", Usage: "how APP is called: asgi3 app(scope, receive, send), asgi2 app(scope)(receive, send), or auto (asgi2 for a class, or a plain function or object's __call__ taking only scope)", EnvVars: env("interface"), Category: "Application"},
		&cli.BoolFlag{Name: "factory", Usage: "treat APP as a factory: call it with no arguments to get the ASGI app", EnvVars: env("factory"), Category: "Application"},
		&cli.StringFlag{Name: "env-file", Usage: "load KEY=VALUE lines from this file into the workers' environment (the app's, not the gateway's settings)", EnvVars: env("env-file"), Category: "Application"},
		&cli.BoolFlag{Name: "http2-cleartext", Usage: "also serve HTTP/2 with prior knowledge (h2c) on the plain listener, e.g. behind a proxy", EnvVars: env("http2-cleartext"), Category: "HTTP"},
		&cli.StringSliceFlag{Name: "static", Usage: "serve files under DIR at URL PREFIX from the gateway: PREFIX=DIR (repeatable)", EnvVars: env("static"), Category: "HTTP"},
		&cli.StringFlag{Name: "root-path", Usage: "the ASGI root_path, for an app mounted below a URL prefix", EnvVars: env("root-path"), Category: "Application"},
		&cli.StringFlag{Name: "log-level", Value: d.LogLevel, Usage: "critical, error, warning, info, debug or trace", EnvVars: env("log-level"), Category: "Logging"},
		&cli.StringFlag{Name: "log-format", Value: "console", Usage: "console (for people) or json (for log shippers)", EnvVars: env("log-format"), Category: "Logging"},
		&cli.BoolFlag{Name: "use-colors", Usage: "colour the console log", DefaultText: "when stderr is a terminal", EnvVars: env("use-colors"), Category: "Logging"},
		&cli.BoolFlag{Name: "no-use-colors", Usage: "never colour the console log", EnvVars: env("no-use-colors"), Category: "Logging"},
		&cli.BoolFlag{Name: "access-log", Value: true, Usage: "log one line per request", EnvVars: env("access-log"), Category: "Logging"},
		&cli.StringFlag{Name: "log-config", Usage: "a Python logging config file the workers apply after their own, as uvicorn's --log-config (.json or .yaml/.yml: dictConfig; other: fileConfig INI); the gateway's own log keeps --log-level and --log-format", EnvVars: env("log-config"), Category: "Logging"},
		&cli.StringFlag{Name: "access-log-format", Usage: "access-log line with %(name)s fields: client, client_addr, method, path, request_line, http_version, status, bytes, duration, duration_ms, worker", EnvVars: env("access-log-format"), Category: "Logging"},
		&cli.BoolFlag{Name: "no-access-log", Usage: "do not log requests", EnvVars: env("no-access-log"), Category: "Logging"},
		&cli.Float64Flag{Name: "timeout-keep-alive", Value: d.KeepAlive.Seconds(), Usage: "close keep-alive connections idle this many seconds (0: no keep-alive, one request per connection)", EnvVars: env("timeout-keep-alive"), Category: "Timeouts"},
		&cli.Float64Flag{Name: "timeout-request-header", Value: d.HeadTimeout.Seconds(), Usage: "a request head must arrive within this many seconds of its first byte", EnvVars: env("timeout-request-header"), Category: "Timeouts"},
		&cli.Float64Flag{Name: "timeout-request-body", Value: d.BodyReadTimeout.Seconds(), Usage: "close a connection whose request body stalls this many seconds", EnvVars: env("timeout-request-body"), Category: "Timeouts"},
		&cli.Float64Flag{Name: "timeout-request", Usage: "answer 504 (or cut a started response) and cancel the app after this many seconds (0: never)", EnvVars: env("timeout-request"), Category: "Timeouts"},
		&cli.Float64Flag{Name: "timeout-graceful-shutdown", Value: d.GracefulTimeout.Seconds(), Usage: "on shutdown, wait this many seconds for requests in flight", EnvVars: env("timeout-graceful-shutdown"), Category: "Timeouts"},
		&cli.IntFlag{Name: "limit-concurrency", Usage: "answer 503 at once above this many requests in flight (0: no limit)", EnvVars: env("limit-concurrency"), Category: "Workers"},
		&cli.Float64Flag{Name: "timeout-lifespan-shutdown", Value: d.LifespanTimeout.Seconds(), Usage: "on shutdown or replacement, a worker's lifespan shutdown may run this many seconds (from when its requests are done) before it is killed (0: no limit)", EnvVars: env("timeout-lifespan-shutdown"), Category: "Timeouts"},
		&cli.Float64Flag{Name: "timeout-worker-startup", Value: d.StartupTimeout.Seconds(), Usage: "a worker must import the app and finish the lifespan startup within this many seconds", EnvVars: env("timeout-worker-startup"), Category: "Workers"},
		&cli.Float64Flag{Name: "timeout-worker-acquire", Value: d.AcquireTimeout.Seconds(), Usage: "how long a request waits for a ready worker (while one is replaced) before 503", EnvVars: env("timeout-worker-acquire"), Category: "Workers"},
		&cli.Float64Flag{Name: "timeout-worker-healthcheck", Value: d.HealthTimeout.Seconds(), Usage: "kill and replace a worker whose event loop does not answer a ping within this many seconds (0: off)", EnvVars: env("timeout-worker-healthcheck"), Category: "Workers"},
		&cli.IntFlag{Name: "limit-max-requests", Usage: "replace a worker after it has served this many requests (0: never); it serves on only while no other worker is ready, until its replacement is", EnvVars: env("limit-max-requests"), Category: "Workers"},
		&cli.IntFlag{Name: "limit-max-requests-jitter", Usage: "add a random 0..N to --limit-max-requests per worker, so they do not all recycle at once", EnvVars: env("limit-max-requests-jitter"), Category: "Workers"},
		&cli.IntFlag{Name: "workers-max-rss", Usage: "replace a worker whose resident memory exceeds this many MiB (0: never)", EnvVars: env("workers-max-rss"), Category: "Workers"},
		&cli.IntFlag{Name: "body-ring-size", Value: d.BodyRing >> 10, Usage: "KiB of shared memory per worker and direction that carries large request and response bodies past the worker socket (a multiple of 4, at least 64; 0: none)", EnvVars: env("body-ring-size"), Category: "Workers"},
		&cli.Float64Flag{Name: "workers-lifetime", Usage: "replace a worker after this many seconds (0: never)", EnvVars: env("workers-lifetime"), Category: "Workers"},
		&cli.StringFlag{Name: "lifespan", Value: "auto", Usage: "ASGI lifespan protocol: auto, on or off", EnvVars: env("lifespan"), Category: "Application"},
		&cli.IntFlag{Name: "ws-max-size", Value: d.WSMaxSize, Usage: "largest WebSocket message in bytes, inflated if it came compressed (larger: close 1009)", EnvVars: env("ws-max-size"), Category: "WebSocket"},
		&cli.Float64Flag{Name: "ws-ping-interval", Value: d.WSPingInterval.Seconds(), Usage: "ping WebSocket clients every this many seconds (0: never)", EnvVars: env("ws-ping-interval"), Category: "WebSocket"},
		&cli.Float64Flag{Name: "ws-ping-timeout", Value: d.WSPingTimeout.Seconds(), Usage: "close a WebSocket whose pong is this many seconds late (0: never)", EnvVars: env("ws-ping-timeout"), Category: "WebSocket"},
		&cli.BoolFlag{Name: "ws-per-message-deflate", Value: d.WSPerMessageDeflate, Usage: "negotiate permessage-deflate compression (--ws-per-message-deflate=false to turn off)", EnvVars: env("ws-per-message-deflate"), Category: "WebSocket"},
		&cli.StringFlag{Name: "metrics-address", Usage: "serve Prometheus /metrics, /healthz and /readyz on HOST:PORT (apart from the app's listener)", EnvVars: env("metrics-address"), Category: "Operations"},
		&cli.BoolFlag{Name: "reload", Usage: "replace the workers when watched files change (development)", EnvVars: env("reload"), Category: "Operations"},
		&cli.StringSliceFlag{Name: "reload-dir", Usage: "directory to watch (repeatable; default: the current directory)", EnvVars: env("reload-dir"), Category: "Operations"},
		&cli.StringSliceFlag{Name: "reload-include", Usage: "glob of files to watch (repeatable; default *.py)", EnvVars: env("reload-include"), Category: "Operations"},
		&cli.StringSliceFlag{Name: "reload-exclude", Usage: "glob of files or directories to ignore (repeatable; default .*, .py[cod], .sw.*, ~*)", EnvVars: env("reload-exclude"), Category: "Operations"},
		&cli.Float64Flag{Name: "reload-delay", Value: 0.25, Usage: "seconds to gather changes before a reload", EnvVars: env("reload-delay"), Category: "Operations"},
		&cli.StringSliceFlag{Name: "header", Usage: "add a default response header NAME:VALUE (repeatable)", EnvVars: env("header"), Category: "HTTP"},
		&cli.BoolFlag{Name: "server-header", Value: true, Usage: "send a server header", EnvVars: env("server-header"), Category: "HTTP"},
		&cli.BoolFlag{Name: "no-server-header", Usage: "do not send a server header", EnvVars: env("no-server-header"), Category: "HTTP"},
		&cli.BoolFlag{Name: "date-header", Value: true, Usage: "send a date header", EnvVars: env("date-header"), Category: "HTTP"},
		&cli.BoolFlag{Name: "no-date-header", Usage: "do not send a date header", EnvVars: env("no-date-header"), Category: "HTTP"},
		&cli.Int64Flag{Name: "limit-request-body", Usage: "answer 413 to request bodies larger than this many bytes (0: no limit)", EnvVars: env("limit-request-body"), Category: "HTTP"},
		&cli.IntFlag{Name: "h11-max-incomplete-event-size", Value: d.Limits.MaxHeaderBytes, Usage: "largest request head in bytes (larger: 431; a request line longer than that: 414)", EnvVars: env("h11-max-incomplete-event-size"), Category: "HTTP"},
		&cli.StringFlag{Name: "ssl-certfile", Usage: "serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain", EnvVars: env("ssl-certfile"), Category: "TLS"},
		&cli.StringFlag{Name: "ssl-keyfile", Usage: "PEM private key (default: in --ssl-certfile)", EnvVars: env("ssl-keyfile"), Category: "TLS"},
		&cli.StringFlag{Name: "ssl-keyfile-password", Usage: "password of an encrypted --ssl-keyfile (PKCS#8 with PBES2, as OpenSSL 3 writes, or legacy PEM)", EnvVars: env("ssl-keyfile-password"), Category: "TLS"},
		&cli.StringFlag{Name: "ssl-ca-certs", Usage: "PEM CA bundle that client certificates are verified against", EnvVars: env("ssl-ca-certs"), Category: "TLS"},
		&cli.IntFlag{Name: "ssl-cert-reqs", Usage: "client certificates: 0 not asked, 1 optional, 2 required", EnvVars: env("ssl-cert-reqs"), Category: "TLS"},
		&cli.StringFlag{Name: "ssl-ciphers", Value: "TLSv1", Usage: "TLS 1.2 cipher suites, colon-separated names (TLSv1: Go's defaults)", EnvVars: env("ssl-ciphers"), Category: "TLS"},
	}
}

func main() {
	app := &cli.App{
		Name:     "asgi-gateway",
		Usage:    "serve ASGI apps through a Go front end and Python workers",
		Version:  version,
		Commands: []*cli.Command{runCommand()},
	}
	app.ExitErrHandler = func(*cli.Context, error) {} // main reports errors, in the log's format
	// Repeatable options are repeated, never split on commas: a --header value such as
	// "Cache-Control: no-cache, no-store" is one header (as in uvicorn).
	app.DisableSliceFlagSeparator = true
	normalizeEnv(runFlags())
	commandLine = interspersed(os.Args, runFlags())
	if err := app.Run(commandLine); err != nil {
		code := 2 // a usage error (an unknown option, a value that does not parse), as click's
		var exit cli.ExitCoder
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		}
		if msg := err.Error(); msg != "" {
			if jsonLogs {
				fmt.Fprintf(os.Stderr, "{\"level\":\"fatal\",\"message\":%s}\n", strconv.Quote(msg))
			} else {
				fmt.Fprintln(os.Stderr, "asgi-gateway:", msg)
			}
		}
		os.Exit(code)
	}
}

// runCommand is "run", whose options may also come from a --config TOML file: each option is
// wrapped as an altsrc flag, which reads the file only for options not given on the command line or
// in the environment.
func runCommand() *cli.Command {
	var flags []cli.Flag
	for _, f := range runFlags() {
		switch f := f.(type) {
		case *cli.StringFlag:
			if f.Name == "config" {
				flags = append(flags, f)
			} else {
				flags = append(flags, altsrc.NewStringFlag(f))
			}
		case *cli.IntFlag:
			flags = append(flags, altsrc.NewIntFlag(f))
		case *cli.Int64Flag:
			flags = append(flags, altsrc.NewInt64Flag(f))
		case *cli.BoolFlag:
			flags = append(flags, altsrc.NewBoolFlag(f))
		case *cli.Float64Flag:
			flags = append(flags, altsrc.NewFloat64Flag(f))
		case *cli.StringSliceFlag:
			flags = append(flags, altsrc.NewStringSliceFlag(f))
		default:
			flags = append(flags, f)
		}
	}
	fromFile := altsrc.InitInputSourceWithContext(flags, func(ctx *cli.Context) (altsrc.InputSourceContext, error) {
		return configSource(ctx.String("config"), flags)
	})
	return &cli.Command{
		Name:      "run",
		Usage:     "serve APP (module:attribute)",
		ArgsUsage: "APP",
		Flags:     flags,
		Before: func(ctx *cli.Context) error {
			var fileKeys map[string]bool
			if path := ctx.String("config"); path != "" {
				var err error
				if fileKeys, err = checkConfigKeys(path, flags); err != nil {
					return cli.Exit(err.Error(), 2)
				}
			}
			noteOptionSources(commandLine, flags, fileKeys)
			return fromFile(ctx)
		},
		Action: run,
	}
}

// checkConfigKeys refuses a config file with keys that are not options (a typo would otherwise be
// silently ignored), and returns its keys.
func checkConfigKeys(path string, flags []cli.Flag) (map[string]bool, error) {
	var m map[string]any
	if _, err := toml.DecodeFile(path, &m); err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	known := map[string]bool{"app": true}
	for _, f := range flags {
		for _, n := range f.Names() {
			known[n] = true
		}
	}
	keys := map[string]bool{}
	for k := range m {
		if !known[k] {
			return nil, fmt.Errorf("--config %s: unknown option %q", path, k)
		}
		keys[k] = true
	}
	return keys, nil
}

// configSource reads the --config TOML file for altsrc, with the values TOML types apart that an
// option takes alike: an integer for a float option (timeout-keep-alive = 2), and click's words or
// 0 and 1 for a boolean one (access-log = "no", server-header = 0).
func configSource(path string, flags []cli.Flag) (altsrc.InputSourceContext, error) {
	if path == "" {
		return &altsrc.MapInputSource{}, nil
	}
	var m map[string]any
	if _, err := toml.DecodeFile(path, &m); err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	kind := map[string]string{}
	for _, f := range flags {
		for _, n := range f.Names() {
			switch f.(type) {
			case *altsrc.Float64Flag:
				kind[n] = "float"
			case *altsrc.BoolFlag:
				kind[n] = "bool"
			}
		}
	}
	values := make(map[any]any, len(m))
	for k, v := range m {
		switch kind[k] {
		case "float":
			if i, ok := v.(int64); ok {
				v = float64(i)
			}
		case "bool":
			switch w := v.(type) {
			case string:
				if b, ok := boolWord(w); ok {
					v = b
				}
			case int64:
				if w == 0 || w == 1 {
					v = w == 1 // (server-header = 0)
				}
			}
		default:
			if i, ok := v.(int64); ok {
				v = int(i) // (altsrc's int options take an int, as its own TOML reader makes them)
			}
		}
		values[k] = v
	}
	return altsrc.NewMapInputSource(path, values), nil
}

// envFileWarnings are configFrom's warnings about --env-file statements it skipped, logged once the
// logger exists.
var envFileWarnings []string

func configFrom(ctx *cli.Context) (gateway.Config, error) {
	cfg := gateway.DefaultConfig()
	cfg.App = ctx.Args().First()
	if cfg.App == "" {
		cfg.App = os.Getenv("ASGI_GATEWAY_APP")
	}
	if cfg.App == "" {
		cfg.App = os.Getenv("UVICORN_APP")
	}
	if cfg.App == "" && ctx.String("config") != "" {
		var file struct {
			App string `toml:"app"`
		}
		if _, err := toml.DecodeFile(ctx.String("config"), &file); err == nil {
			cfg.App = file.App
		}
	}
	if cfg.App == "" {
		return cfg, cli.Exit("missing APP: asgi-gateway run module:attribute", 2)
	}
	if ctx.NArg() > 1 {
		return cfg, cli.Exit(fmt.Sprintf("unexpected arguments after APP: %v (options go before or after APP, as --name value)", ctx.Args().Tail()), 2)
	}
	cfg.Host = ctx.String("host")
	cfg.Port = ctx.Int("port")
	cfg.UDS = ctx.String("uds")
	cfg.Workers = ctx.Int("workers")
	if cfg.Workers < 1 {
		return cfg, cli.Exit("--workers must be at least 1", 2)
	}
	if err := checkNumbers(ctx); err != nil {
		return cfg, err
	}
	cfg.Python = ctx.String("python")
	if name := ctx.String("worker-user"); name != "" {
		u, err := user.Lookup(name)
		if err != nil {
			return cfg, cli.Exit(fmt.Sprintf("--worker-user: %v", err), 2)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cfg.WorkerUser = &gateway.WorkerUser{Name: name, UID: uid, GID: gid}
	}
	cfg.AppDir = ctx.String("app-dir")
	if cfg.AppDir != "" {
		// The workers put it first on sys.path; a mistyped one would leave the current directory's
		// modules to be imported instead, unnoticed.
		if fi, err := os.Stat(cfg.AppDir); err != nil || !fi.IsDir() {
			return cfg, cli.Exit(fmt.Sprintf("--app-dir %s: not a directory", cfg.AppDir), 2)
		}
	}
	cfg.Factory = ctx.Bool("factory")
	switch cfg.Interface = strings.ToLower(ctx.String("interface")); cfg.Interface {
	case "auto", "asgi3", "asgi2":
	case "wsgi":
		return cfg, cli.Exit("--interface wsgi: WSGI apps are not served; wrap the app in an ASGI adapter (a2wsgi's WSGIMiddleware, or asgiref.wsgi.WsgiToAsgi)", 2)
	default:
		return cfg, cli.Exit(fmt.Sprintf("--interface %q: must be auto, asgi3 or asgi2", ctx.String("interface")), 2)
	}
	cfg.RootPath = strings.TrimRight(ctx.String("root-path"), "/")
	if !utf8.ValidString(cfg.RootPath) {
		// The scope's root_path (and path, which starts with it) is a str.
		return cfg, cli.Exit(fmt.Sprintf("--root-path %q is not valid UTF-8", cfg.RootPath), 2)
	}
	cfg.LogLevel = strings.ToLower(ctx.String("log-level"))
	cfg.AccessLog = pairValue(ctx, "access-log", "no-access-log")
	if format := ctx.String("access-log-format"); format != "" {
		f, err := gateway.ParseAccessFormat(format)
		if err != nil {
			return cfg, cli.Exit(err.Error(), 2)
		}
		cfg.AccessFormat = f
	}
	cfg.ServerHeader = pairValue(ctx, "server-header", "no-server-header")
	cfg.DateHeader = pairValue(ctx, "date-header", "no-date-header")
	cfg.KeepAlive = seconds(ctx.Float64("timeout-keep-alive"))
	cfg.GracefulTimeout = seconds(ctx.Float64("timeout-graceful-shutdown"))
	cfg.LifespanTimeout = seconds(ctx.Float64("timeout-lifespan-shutdown"))
	cfg.Limits.MaxHeaderBytes = ctx.Int("h11-max-incomplete-event-size")
	cfg.FD = ctx.Int("fd")
	cfg.Backlog = ctx.Int("backlog")
	cfg.ProxyHeaders = pairValue(ctx, "proxy-headers", "no-proxy-headers")
	cfg.ForwardedAllowIPs = ctx.String("forwarded-allow-ips")
	cfg.HeadTimeout = seconds(ctx.Float64("timeout-request-header"))
	cfg.BodyReadTimeout = seconds(ctx.Float64("timeout-request-body"))
	cfg.RequestTimeout = seconds(ctx.Float64("timeout-request"))
	cfg.MaxBodySize = ctx.Int64("limit-request-body")
	cfg.HTTP2Cleartext = ctx.Bool("http2-cleartext")
	for _, spec := range ctx.StringSlice("static") {
		m, err := gateway.ParseStaticMount(spec)
		if err != nil {
			return cfg, cli.Exit(err.Error(), 2)
		}
		cfg.Static = append(cfg.Static, m)
	}
	if path := ctx.String("env-file"); path != "" {
		env, warnings, err := readEnvFile(path, os.LookupEnv)
		if err != nil {
			return cfg, cli.Exit(err.Error(), 2)
		}
		cfg.WorkerEnv = env
		envFileWarnings = warnings
	}
	if path := ctx.String("log-config"); path != "" {
		abs, err := readableFile(path)
		if err != nil {
			return cfg, cli.Exit(fmt.Sprintf("--log-config: %v", err), 2)
		}
		cfg.LogConfig = abs // the workers' working directory is not ours to assume
	}
	cfg.LimitConcurrency = ctx.Int("limit-concurrency")
	cfg.WSMaxSize = ctx.Int("ws-max-size")
	cfg.WSPingInterval = seconds(ctx.Float64("ws-ping-interval"))
	cfg.WSPingTimeout = seconds(ctx.Float64("ws-ping-timeout"))
	cfg.WSPerMessageDeflate = ctx.Bool("ws-per-message-deflate")
	cfg.MaxRequests = ctx.Int("limit-max-requests")
	cfg.MaxRequestsJitter = ctx.Int("limit-max-requests-jitter")
	cfg.MaxRSS = int64(ctx.Int("workers-max-rss")) << 20
	cfg.Lifetime = seconds(ctx.Float64("workers-lifetime"))
	if kib := ctx.Int("body-ring-size"); kib != 0 {
		if err := gateway.CheckBodyRing(kib << 10); err != nil || kib < 0 {
			return cfg, cli.Exit(fmt.Sprintf("--body-ring-size %d: expected 0 or a multiple of 4 from 64 to 1048576 (KiB)", kib), 2)
		}
	}
	cfg.BodyRing = max(ctx.Int("body-ring-size"), 0) << 10
	cfg.Lifespan = ctx.String("lifespan")
	switch cfg.Lifespan {
	case "auto", "on", "off":
	default:
		return cfg, cli.Exit(fmt.Sprintf("--lifespan %q: expected auto, on or off", cfg.Lifespan), 2)
	}
	cfg.HealthTimeout = seconds(ctx.Float64("timeout-worker-healthcheck"))
	cfg.StartupTimeout = seconds(ctx.Float64("timeout-worker-startup"))
	cfg.AcquireTimeout = seconds(ctx.Float64("timeout-worker-acquire"))
	if cfg.StartupTimeout <= 0 {
		return cfg, cli.Exit("--timeout-worker-startup must be positive", 2)
	}
	for _, h := range ctx.StringSlice("header") {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return cfg, cli.Exit(fmt.Sprintf("--header %q: expected NAME:VALUE", h), 2)
		}
		cfg.ExtraHeaders = append(cfg.ExtraHeaders, [2]string{strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)})
	}
	cfg.TLS = gateway.TLSOptions{
		CertFile: ctx.String("ssl-certfile"), KeyFile: ctx.String("ssl-keyfile"), KeyFilePassword: ctx.String("ssl-keyfile-password"),
		CACerts: ctx.String("ssl-ca-certs"), CertReqs: ctx.Int("ssl-cert-reqs"), Ciphers: ctx.String("ssl-ciphers"),
	}
	return cfg, nil
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// The options in seconds (0 disables the ones that say so) and in counts or sizes, with the least
// and the most each takes: beyond the most, a value would overflow what it goes into (listen's int
// backlog, the protocol's u32 frame limit for a WebSocket message, bytes from MiB) rather than mean
// "more".
var (
	secondsOptions = []string{
		"timeout-keep-alive", "timeout-graceful-shutdown", "timeout-lifespan-shutdown", "timeout-request-header",
		"timeout-request-body", "timeout-request", "timeout-worker-startup", "timeout-worker-acquire",
		"timeout-worker-healthcheck", "ws-ping-interval", "ws-ping-timeout", "workers-lifetime", "reload-delay",
	}
	countOptions = []struct {
		name        string
		least, most int64
	}{
		{"backlog", 0, math.MaxInt32}, {"limit-concurrency", 0, math.MaxInt32}, {"limit-max-requests", 0, math.MaxInt32},
		{"limit-max-requests-jitter", 0, math.MaxInt32}, {"workers-max-rss", 0, 1 << 40}, {"limit-request-body", 0, math.MaxInt64},
		{"ws-max-size", 1, math.MaxUint32 - 4096}, {"h11-max-incomplete-event-size", 1, 1 << 30}, {"fd", -1, math.MaxInt32},
	}
)

// maxSeconds: the longest time an option takes (about 31 years; a time.Duration holds 292).
const maxSeconds = 1e9

// checkNumbers refuses a negative, NaN or endless number of seconds, and a count out of its range.
func checkNumbers(ctx *cli.Context) error {
	for _, name := range secondsOptions {
		if v := ctx.Float64(name); !(v >= 0 && v <= maxSeconds) {
			return cli.Exit(fmt.Sprintf("--%s %v: expected a number of seconds from 0 to %g", name, v, maxSeconds), 2)
		}
	}
	for _, o := range countOptions {
		var v int64
		if o.name == "limit-request-body" {
			v = ctx.Int64(o.name)
		} else {
			v = int64(ctx.Int(o.name))
		}
		if v < o.least || v > o.most {
			return cli.Exit(fmt.Sprintf("--%s %d: expected %d to %d", o.name, v, o.least, o.most), 2)
		}
	}
	return nil
}

func newLogger(level, format string, colors *bool) (zerolog.Logger, error) {
	lvl := map[string]zerolog.Level{
		"critical": zerolog.FatalLevel, "error": zerolog.ErrorLevel, "warning": zerolog.WarnLevel,
		"info": zerolog.InfoLevel, "debug": zerolog.DebugLevel, "trace": zerolog.TraceLevel,
	}
	l, ok := lvl[level]
	if !ok {
		return zerolog.Logger{}, cli.Exit(fmt.Sprintf("--log-level %q: expected critical, error, warning, info, debug or trace", level), 2)
	}
	// Durations in seconds, as the options that set them (--timeout-request 30: timeout=30) and the
	// access-log format's %(duration)s; zerolog's default unit is the millisecond.
	zerolog.DurationFieldUnit = time.Second
	var logger zerolog.Logger
	switch format {
	case "json":
		logger = zerolog.New(os.Stderr)
	case "console":
		color := isatty.IsTerminal(os.Stderr.Fd())
		if colors != nil {
			color = *colors
		}
		logger = zerolog.New(newConsoleWriter(os.Stderr, !color, "15:04:05")) // (zerolog.ConsoleWriter's output, faster)
	default:
		return zerolog.Logger{}, cli.Exit(fmt.Sprintf("--log-format %q: expected console or json", format), 2)
	}
	return logger.Level(l).With().Timestamp().Logger(), nil
}

func run(ctx *cli.Context) error {
	jsonLogs = ctx.String("log-format") == "json"
	cfg, err := configFrom(ctx)
	if err != nil {
		return err
	}
	var colors *bool
	if optionSource["use-colors"] > fromDefault || optionSource["no-use-colors"] > fromDefault {
		c := pairValue(ctx, "use-colors", "no-use-colors")
		colors = &c
	}
	log, err := newLogger(cfg.LogLevel, ctx.String("log-format"), colors)
	if err != nil {
		return err
	}
	for _, w := range envFileWarnings {
		log.Warn().Msg(w)
	}
	for _, name := range []string{"loop", "http", "ws"} {
		if ctx.IsSet(name) {
			log.Warn().Msgf("--%s %s ignored: the Go front end speaks HTTP and WebSocket itself, and workers use uvloop when installed", name, ctx.String(name))
		}
	}
	for _, o := range [...]struct{ name, why string }{
		{"ssl-version", "TLS 1.2 and 1.3 are offered (Go's crypto/tls); --ssl-ciphers picks the TLS 1.2 suites"},
		{"ws-max-queue", "a WebSocket's messages queue within the worker's flow-control window (SPEC §4), and --ws-max-size bounds each"},
	} {
		if ctx.IsSet(o.name) {
			log.Warn().Msgf("--%s %s ignored: %s", o.name, ctx.String(o.name), o.why)
		}
	}
	metricsAddr := ctx.String("metrics-address")
	if metricsAddr != "" {
		cfg.Metrics = gateway.NewMetrics()
	}
	reload := gateway.ReloadConfig{
		Dirs: ctx.StringSlice("reload-dir"), Include: ctx.StringSlice("reload-include"),
		Exclude: ctx.StringSlice("reload-exclude"), Delay: seconds(ctx.Float64("reload-delay")),
	}
	if err := reload.Check(); err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if !ctx.Bool("reload") && (ctx.IsSet("reload-dir") || ctx.IsSet("reload-include") || ctx.IsSet("reload-exclude")) {
		log.Warn().Msg("--reload-dir, --reload-include and --reload-exclude have no effect without --reload")
	}
	if t := cfg.TLS; t.CertFile == "" {
		var set []string
		for _, o := range []struct {
			name string
			set  bool
		}{
			{"--ssl-keyfile-password", t.KeyFilePassword != ""}, {"--ssl-ca-certs", t.CACerts != ""},
			{"--ssl-cert-reqs", t.CertReqs != 0}, {"--ssl-ciphers", t.Ciphers != "" && t.Ciphers != "TLSv1"},
		} {
			if o.set {
				set = append(set, o.name)
			}
		}
		if len(set) > 0 {
			// uvicorn says nothing, and a deployment that forgot the certificate serves plain HTTP
			// without the client-certificate check it asked for.
			log.Warn().Msgf("%s: no effect without --ssl-certfile; serving plain HTTP", strings.Join(set, ", "))
		}
	}
	if os.Geteuid() == 0 && (cfg.WorkerUser == nil || cfg.WorkerUser.UID == 0) {
		// Not refused: containers commonly run as root. But the app should not have to.
		log.Warn().Msg("the Python workers run as root: pass --worker-user USER to run the app without root privileges")
	}
	srv, err := gateway.NewServer(cfg, log)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if metricsAddr != "" {
		// Up before the workers, so that /healthz answers (and /readyz says 503) during a slow import.
		host, port, err := net.SplitHostPort(metricsAddr)
		if _, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil {
			return cli.Exit(fmt.Sprintf("--metrics-address %q: expected HOST:PORT", metricsAddr), 2)
		}
		ln, err := net.Listen(gateway.TCPNetwork(host), metricsAddr)
		if err != nil {
			// A port in use, or a host that is not ours: a startup failure, as for the app's port.
			return cli.Exit(fmt.Sprintf("--metrics-address: %v", err), 3)
		}
		ms := &http.Server{Handler: cfg.Metrics.Handler(srv.ReadyWorkers, srv.WorkerStates), ReadHeaderTimeout: 5 * time.Second}
		go ms.Serve(ln)
		defer ms.Close()
		log.Info().Msgf("metrics on http://%s/metrics", ln.Addr())
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	control := make(chan os.Signal, 4)
	signal.Notify(control, syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU)

	if addr := os.Getenv("ASGI_GATEWAY_PPROF"); addr != "" {
		// Profiling for developers (make bench, go tool pprof); off unless asked for.
		go func() { log.Err(http.ListenAndServe(addr, nil)).Msg("pprof listener stopped") }()
	}
	// --reload watches from before the first start: a change saved while a start runs (a slow
	// import or lifespan startup) is not missed. Until the gateway serves, a change is a token in
	// changed (it starts the workers again after a failed start, or replaces them after a good one);
	// from then on it replaces the workers at once.
	var serving atomic.Bool
	changed := make(chan struct{}, 1)
	watchFailed := make(chan struct{})
	if ctx.Bool("reload") {
		watchCtx, stopWatching := context.WithCancel(context.Background())
		defer stopWatching()
		go func() {
			err := gateway.Watch(watchCtx, reload, log, func(paths []string) {
				if serving.Load() {
					log.Warn().Strs("changed", paths).Msg("changes detected; replacing the workers")
					srv.Reload()
					return
				}
				log.Warn().Strs("changed", paths).Msg("changes detected")
				select {
				case changed <- struct{}{}:
				default:
				}
			})
			if err != nil {
				log.Error().Err(err).Msg("--reload: cannot watch the files")
				close(watchFailed)
			}
		}()
	}
	// Start waits for every worker (import and lifespan startup); a signal meanwhile stops it.
	type startResult struct {
		where string
		err   error
	}
	var where string
	for where == "" {
		select {
		case <-changed: // (a change before this start: this start loads it)
		default:
		}
		started := make(chan startResult, 1)
		go func() {
			where, err := srv.Start()
			started <- startResult{where, err}
		}()
		select {
		case r := <-started:
			if r.err == nil {
				where = r.where
				break
			}
			if ctx.Bool("reload") && gateway.IsAppStartFailure(r.err) {
				// As uvicorn's reloader: an app that does not load yet is loaded again after the
				// next change, rather than ending the development server.
				log.Error().Msg(r.err.Error())
				log.Warn().Msg("--reload: waiting for a change to start the workers again")
				select {
				case <-changed: // (perhaps saved while this start ran)
					log.Info().Msg("starting the workers again")
					continue
				case <-watchFailed:
					return cli.Exit("--reload: cannot watch the files, and the app did not start", 3)
				case <-signals:
					log.Info().Msg("stopped")
					return nil
				}
			}
			// A startup failure (the app, the workers, the listener: a port in use) exits 3, as
			// uvicorn's STARTUP_FAILURE.
			var appErr *gateway.AppLoadError
			if errors.As(r.err, &appErr) {
				return cli.Exit(appErr.Error(), 3)
			}
			return cli.Exit(r.err.Error(), 3)
		case sig := <-signals:
			// A stop asked for, as after startup: exit 0 (a service manager's stop is not a failure).
			// The workers still starting are ended without waiting for their lifespan startup, which
			// may never end.
			log.Warn().Str("signal", sig.String()).Msg("stopping before the workers were ready")
			srv.Shutdown()
			<-started
			log.Info().Msg("stopped")
			return nil
		}
	}
	log.Info().Int("workers", cfg.Workers).Ints("pids", srv.WorkerPIDs()).Msgf("listening on %s", where)

	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	serving.Store(true)
	select {
	case <-changed:
		// Saved while the workers started: they may have loaded the code before it.
		log.Warn().Msg("changes detected during the startup; replacing the workers")
		go srv.Reload()
	default:
	}
	go func() {
		// Pool control signals; this goroutine lives as long as the process.
		for sig := range control {
			done := true
			switch sig {
			case syscall.SIGHUP:
				log.Info().Msg("SIGHUP: replacing the workers one at a time")
				if done = srv.Reload(); done {
					log.Info().Ints("pids", srv.WorkerPIDs()).Msg("reload complete")
				}
			case syscall.SIGTTIN:
				log.Info().Msg("SIGTTIN: adding a worker")
				done = srv.AddWorker()
			case syscall.SIGTTOU:
				log.Info().Msg("SIGTTOU: removing a worker")
				done = srv.RemoveWorker()
			}
			if !done {
				log.Info().Str("signal", sig.String()).Msg("shutting down: the signal changes nothing")
			}
		}
	}()
	select {
	case sig := <-signals:
		log.Info().Str("signal", sig.String()).Msg("shutting down")
		done := make(chan struct{})
		go func() {
			srv.Shutdown()
			close(done)
		}()
		select {
		case <-done:
		case <-signals:
			log.Warn().Msg("second signal: exiting now")
			return cli.Exit("", 1)
		}
		<-served
		log.Info().Msg("stopped")
		return nil
	case err := <-served:
		srv.Shutdown()
		return cli.Exit(err.Error(), 1)
	}
}

// interspersed lets options follow APP, as uvicorn's do ("run app:app --port 9000"): urfave/cli stops
// parsing options at the first argument, so the arguments of "run" are reordered options first.
func interspersed(args []string, flags []cli.Flag) []string {
	i := 1
	for i < len(args) && args[i] != "run" {
		if !strings.HasPrefix(args[i], "-") {
			return args // another command, or none
		}
		i++
	}
	if i >= len(args) {
		return args
	}
	takesValue, isBool := map[string]bool{}, map[string]bool{}
	for _, f := range flags {
		_, b := f.(*cli.BoolFlag)
		for _, name := range f.Names() {
			takesValue[name], isBool[name] = !b, b
		}
	}
	var opts, positional []string
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		if a == "--" {
			positional = append(positional, rest[j+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		name := strings.TrimLeft(a, "-")
		if name == "ws-per-message-deflate" && j+1 < len(rest) {
			if b, ok := boolWord(rest[j+1]); ok {
				// uvicorn's form: --ws-per-message-deflate BOOLEAN
				opts = append(opts, a+"="+strconv.FormatBool(b))
				j++
				continue
			}
		}
		if n, v, ok := strings.Cut(name, "="); ok && isBool[n] {
			if b, ok := boolWord(v); ok { // --flag=no, as click takes it
				a = "--" + n + "=" + strconv.FormatBool(b)
			}
		}
		opts = append(opts, a)
		if !strings.Contains(name, "=") && takesValue[name] && j+1 < len(rest) {
			opts = append(opts, rest[j+1])
			j++
		}
	}
	out := append(append([]string{}, args[:i+1]...), opts...)
	return append(out, positional...)
}

// readableFile checks that path names a regular file this process can open, and returns it made
// absolute.
func readableFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return abs, nil
}

// boolWord reads a boolean as click (uvicorn's command line) does: 1/0, true/false, t/f, yes/no,
// y/n, on/off, in any case.
func boolWord(s string) (value, ok bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "t", "yes", "y", "on":
		return true, true
	case "0", "false", "f", "no", "n", "off":
		return false, true
	}
	return false, false
}

// normalizeEnv reads the options' environment variables as click (uvicorn) does: an empty one is
// not set (the option parser would take UVICORN_SERVER_HEADER= for false), and a boolean one may
// hold one of click's words (UVICORN_ACCESS_LOG=no), rewritten as true or false for the parser.
func normalizeEnv(flags []cli.Flag) {
	for _, f := range flags {
		ef, ok := f.(interface{ GetEnvVars() []string })
		if !ok {
			continue
		}
		_, isBool := f.(*cli.BoolFlag)
		for _, name := range ef.GetEnvVars() {
			v, set := os.LookupEnv(name)
			switch {
			case !set:
			case v == "":
				os.Unsetenv(name)
			case isBool:
				if b, ok := boolWord(v); ok {
					os.Setenv(name, strconv.FormatBool(b))
				}
			}
		}
	}
}

// Where each option was given, for the on/off pairs (--server-header/--no-server-header): the
// command line beats the environment, which beats the config file (README: option > environment >
// config file > default). Set by the run command's Before.
const (
	fromDefault = iota
	fromFile
	fromEnv
	fromCommandLine
)

var optionSource = map[string]int{}

// commandLine is the command line main runs (for noteOptionSources).
var commandLine []string

// noteOptionSources fills optionSource: args are the (interspersed) command line, fileKeys the
// config file's keys.
func noteOptionSources(args []string, flags []cli.Flag, fileKeys map[string]bool) {
	takesValue := map[string]bool{}
	for _, f := range flags {
		_, isBool := f.(*altsrc.BoolFlag)
		for _, name := range f.Names() {
			takesValue[name] = !isBool
		}
	}
	onCommandLine := map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "-") {
			name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			onCommandLine[name] = true
			if takesValue[name] && !hasValue {
				i++ // its value, even one that starts with "-" (--root-path -x)
			}
		}
	}
	for _, f := range flags {
		src := fromDefault
		for _, name := range f.Names() {
			if fileKeys[name] {
				src = max(src, fromFile)
			}
			if onCommandLine[name] {
				src = fromCommandLine
			}
		}
		if ef, ok := f.(interface{ GetEnvVars() []string }); ok && src < fromEnv {
			for _, name := range ef.GetEnvVars() {
				if _, set := os.LookupEnv(name); set {
					src = fromEnv
				}
			}
		}
		for _, name := range f.Names() {
			optionSource[name] = src
		}
	}
}

// pairValue is the value of an on/off option pair: the one given at the higher level wins; given
// at the same level, the "no" one if it is true.
func pairValue(ctx *cli.Context, on, off string) bool {
	son, soff := optionSource[on], optionSource[off]
	if soff > son || (soff == son && soff > fromDefault && ctx.Bool(off)) {
		return !ctx.Bool(off)
	}
	return ctx.Bool(on)
}
