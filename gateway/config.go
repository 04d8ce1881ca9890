package gateway

import (
	"time"

	"github.com/asgi-gateway/asgi-gateway/gateway/http1"
	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// Config is everything the server needs; the command line fills it.
type Config struct {
	App        string      // "module:attr"
	AppDir     string      // prepended to the worker's sys.path
	Factory    bool        // call App with no arguments to get the ASGI app
	Interface  string      // "auto" (or ""), "asgi3" or "asgi2": how the workers call the app
	Python     string      // interpreter; empty = discover (see FindPython)
	WorkerUser *WorkerUser // run the workers as this user (nil: as the gateway's user)
	Workers    int
	LogLevel   string // passed to the workers
	LogConfig  string // a Python logging config file the workers apply (--log-config), or ""

	Host           string
	Port           int
	UDS            string // listen on this Unix socket path instead of Host:Port
	RootPath       string
	HTTP2Cleartext bool          // serve HTTP/2 with prior knowledge (h2c) on the plain listener
	Static         []StaticMount // --static PREFIX=DIR, served by the gateway
	TLS            TLSOptions    // --ssl-*: HTTPS, with HTTP/2 and HTTP/1.1 by ALPN, when TLS.CertFile is set

	ProxyHeaders      bool   // honour X-Forwarded-* / Forwarded from ForwardedAllowIPs
	ForwardedAllowIPs string // comma-separated IPs, CIDRs, literals or "*"

	AccessLog       bool
	AccessFormat    *AccessFormat // nil: the structured access-log line
	ServerHeader    bool
	DateHeader      bool
	Limits          http1.Limits
	KeepAlive       time.Duration // idle time allowed between requests (0: one request per connection)
	BodyReadTimeout time.Duration // longest wait for the next bytes of a request body the app wants
	HeadTimeout     time.Duration // a started request head must be complete within this
	RequestTimeout  time.Duration // answer 504 and cancel the app when a response takes longer (0: never)
	MaxBodySize     int64         // larger request bodies get 413 (0: no limit)
	FD              int           // listen on this inherited file descriptor (-1: no)
	Backlog         int           // listen backlog
	WorkerEnv       []string      // KEY=VALUE pairs added to the workers' environment (--env-file)
	ExtraHeaders    [][2]string   // default response headers (--header NAME:VALUE)
	GracefulTimeout time.Duration // how long shutdown waits for in-flight requests
	// LifespanTimeout: how long a stopping worker's lifespan shutdown may run, after its requests'
	// grace, before the worker is killed (0: no limit)
	LifespanTimeout  time.Duration
	StartupTimeout   time.Duration // how long a worker may take to import the app and say hello
	HealthTimeout    time.Duration // a worker not answering a PING within this is killed (0: no checks)
	AcquireTimeout   time.Duration // how long a request waits for a ready worker before 503
	LimitConcurrency int           // above this many requests in flight, answer 503 at once (0: no limit)

	MaxRequests       int           // recycle a worker after this many requests (0: never)
	MaxRequestsJitter int           // ... plus a random 0..jitter, so workers do not recycle together
	MaxRSS            int64         // recycle a worker whose RSS exceeds this many bytes (0: never)
	Lifetime          time.Duration // recycle a worker after this long (0: never)
	Lifespan          string        // auto, on or off: the worker runs the ASGI lifespan protocol

	WSMaxSize           int           // largest WebSocket message (larger: close 1009)
	WSPingInterval      time.Duration // ping idle WebSockets this often (0: never)
	WSPingTimeout       time.Duration // close a WebSocket whose pong is this late (0: never)
	WSPerMessageDeflate bool          // negotiate permessage-deflate when the client offers it

	Metrics *Metrics // nil: no metrics

	MaxFrame int // protocol frame limit
	Window   int // protocol per-stream window
	BodyRing int // bytes per direction of each worker's body ring (protocol SPEC §6); 0: none
}

// DefaultConfig returns the defaults the command line starts from (uvicorn's where they exist).
func DefaultConfig() Config {
	return Config{
		Workers:             1,
		LogLevel:            "info",
		Host:                "127.0.0.1",
		Port:                8000,
		AccessLog:           true,
		ProxyHeaders:        true,
		ForwardedAllowIPs:   "127.0.0.1",
		ServerHeader:        true,
		DateHeader:          true,
		Limits:              http1.DefaultLimits(),
		KeepAlive:           5 * time.Second,
		BodyReadTimeout:     60 * time.Second,
		HeadTimeout:         30 * time.Second,
		FD:                  -1,
		Backlog:             2048,
		GracefulTimeout:     30 * time.Second,
		LifespanTimeout:     10 * time.Second,
		StartupTimeout:      60 * time.Second,
		HealthTimeout:       30 * time.Second, // gunicorn's worker timeout: seconds of sync work in a handler are not a hang
		AcquireTimeout:      5 * time.Second,
		WSMaxSize:           16 << 20,
		WSPingInterval:      20 * time.Second,
		WSPingTimeout:       20 * time.Second,
		WSPerMessageDeflate: true,
		MaxFrame:            protocol.DefaultMaxFrame,
		Window:              protocol.DefaultWindow,
		BodyRing:            defaultRingLen,
	}
}

// BodyTimeout is BodyReadTimeout with its default.
func (c *Config) BodyTimeout() time.Duration {
	if c.BodyReadTimeout <= 0 {
		return 60 * time.Second
	}
	return c.BodyReadTimeout
}

// idleTimeout is how long an HTTP/1.1 connection may wait for its next request: KeepAlive, or, with
// keep-alive off (0, as uvicorn's --timeout-keep-alive 0: each connection closes after its
// response), HeadTimeout for its one request.
func (c *Config) idleTimeout() time.Duration {
	if c.KeepAlive <= 0 {
		return c.HeadTimeout
	}
	return c.KeepAlive
}

// frameLimit is the protocol frame limit: large enough for the biggest WebSocket message.
func (c *Config) frameLimit() int {
	return max(c.MaxFrame, c.WSMaxSize+4096)
}
