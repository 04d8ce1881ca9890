package gateway

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricMethods are the method label values of requests_total; any other method counts as "other",
// so a client cannot create series at will.
var metricMethods = [...]string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"}

// statusClasses are the status label values of requests_total, indexed by statusClass.
var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"}

// restartReasons are the reason label values of worker_restarts_total known in advance (exported as
// 0 from the start, and counted without a lookup in the registry).
var restartReasons = [...]string{"died", "health", "max-requests", "max-rss", "lifetime", "reload"}

// durationBuckets suit web requests: 1ms to 10s.
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Metrics is the gateway's Prometheus instrumentation, in a registry of its own (not the global
// one), served by Handler. Every method is safe for concurrent use, and a no-op on a nil *Metrics
// (metrics off); ObserveRequest, the per-request call, resolves its series by array index and does
// not allocate.
type Metrics struct {
	reg *prometheus.Registry

	requests [len(metricMethods)][len(statusClasses)]prometheus.Counter
	duration prometheus.Histogram
	bytesIn  prometheus.Counter
	bytesOut prometheus.Counter
	inflight prometheus.Gauge
	wsOpen   prometheus.Gauge
	overload prometheus.Counter

	restarts      *prometheus.CounterVec
	restartsKnown [len(restartReasons)]prometheus.Counter
	startFailures prometheus.Counter

	workers workersCollector
}

// NewMetrics creates the metrics and their registry, with every label combination of the request
// counter and the known restart reasons pre-created (they are exported as 0 until counted). The
// registry also holds the standard Go runtime and process collectors (go_*, process_*).
func NewMetrics() *Metrics {
	const ns = "asgi_gateway"
	m := &Metrics{reg: prometheus.NewRegistry()}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "requests_total",
		Help: "HTTP requests answered, by method (other: a method not listed) and status class.",
	}, []string{"method", "status"})
	for i, method := range metricMethods {
		for j, class := range statusClasses {
			m.requests[i][j] = requests.WithLabelValues(method, class)
		}
	}
	m.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Name: "request_duration_seconds",
		Help:    "Time from reading a request to completing its response (for a WebSocket: to the handshake answer).",
		Buckets: durationBuckets,
	})
	m.bytesIn = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Name: "request_bytes_total", Help: "Request body bytes received from clients.",
	})
	m.bytesOut = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Name: "response_bytes_total", Help: "Response body bytes sent to clients.",
	})
	m.inflight = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: ns, Name: "requests_in_flight", Help: "Requests dispatched to a worker and not yet finished.",
	})
	m.wsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: ns, Name: "websockets_open", Help: "WebSocket connections being served.",
	})
	m.overload = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Name: "overload_rejections_total",
		Help: "Requests answered 503 at once: over --limit-concurrency, or no worker ready.",
	})
	m.restarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "worker_restarts_total", Help: "Worker processes replaced, by reason.",
	}, []string{"reason"})
	for i, reason := range restartReasons {
		m.restartsKnown[i] = m.restarts.WithLabelValues(reason)
	}
	m.startFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Name: "worker_start_failures_total",
		Help: "Worker processes that failed to start (the app did not import, or its lifespan startup failed) after the first start: a crash loop, or a replacement that failed.",
	})
	m.workers.desc = prometheus.NewDesc(ns+"_workers", "Worker processes, by state.", []string{"state"}, nil)
	m.reg.MustRegister(requests, m.duration, m.bytesIn, m.bytesOut, m.inflight, m.wsOpen, m.overload,
		m.restarts, m.startFailures, &m.workers,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the metrics' own registry, for tests and for adding collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// methodIndex maps a request method to its index in metricMethods without allocating (a switch on
// string(b) does not copy b).
func methodIndex(method []byte) int {
	switch string(method) {
	case "GET":
		return 0
	case "POST":
		return 1
	case "PUT":
		return 2
	case "PATCH":
		return 3
	case "DELETE":
		return 4
	case "HEAD":
		return 5
	case "OPTIONS":
		return 6
	}
	return 7
}

// staticMethods are shared copies of the common methods, for internMethod.
var staticMethods = func() (b [len(metricMethods) - 1][]byte) {
	for i := range b {
		b[i] = []byte(metricMethods[i])
	}
	return b
}()

// internMethod returns a stable copy of a request method (the parser's bytes are overwritten by the
// next request) for the access log and ObserveRequest: a shared one, not to be modified, for the
// common methods (no allocation), else a new copy.
func internMethod(method []byte) []byte {
	if i := methodIndex(method); i < len(staticMethods) {
		return staticMethods[i]
	}
	return append([]byte(nil), method...)
}

// statusClass maps a status code to its index in statusClasses; a code outside 100..599 (0: no
// response was written) is "other".
func statusClass(status int) int {
	if status < 100 || status > 599 {
		return 5
	}
	return status/100 - 1
}

// ObserveRequest records one answered request: its method, status, body bytes each way and duration.
// It is the hot path: no allocation, no map lookup.
func (m *Metrics) ObserveRequest(method []byte, status int, bytesIn, bytesOut int64, d time.Duration) {
	if m == nil {
		return
	}
	m.requests[methodIndex(method)][statusClass(status)].Inc()
	m.duration.Observe(d.Seconds())
	if bytesIn > 0 {
		m.bytesIn.Add(float64(bytesIn))
	}
	if bytesOut > 0 {
		m.bytesOut.Add(float64(bytesOut))
	}
}

// InflightInc and InflightDec track requests dispatched to a worker whose app task has not ended.
func (m *Metrics) InflightInc() {
	if m != nil {
		m.inflight.Inc()
	}
}

func (m *Metrics) InflightDec() {
	if m != nil {
		m.inflight.Dec()
	}
}

// Overloaded counts a request answered 503 without reaching a worker.
func (m *Metrics) Overloaded() {
	if m != nil {
		m.overload.Inc()
	}
}

// WSOpened and WSClosed track open WebSocket connections.
func (m *Metrics) WSOpened() {
	if m != nil {
		m.wsOpen.Inc()
	}
}

func (m *Metrics) WSClosed() {
	if m != nil {
		m.wsOpen.Dec()
	}
}

// WorkerRestarted counts a worker replacement: "died", "health", "max-requests", "max-rss",
// "lifetime" or "reload" (another reason gets a series of its own).
func (m *Metrics) WorkerRestarted(reason string) {
	if m == nil {
		return
	}
	for i, known := range restartReasons {
		if reason == known {
			m.restartsKnown[i].Inc()
			return
		}
	}
	m.restarts.WithLabelValues(reason).Inc()
}

// WorkerStartFailed counts a worker that failed to start after the pool's first start.
func (m *Metrics) WorkerStartFailed() {
	if m == nil {
		return
	}
	m.startFailures.Inc()
}

// workersCollector exports asgi_gateway_workers{state} from a function called at scrape time.
type workersCollector struct {
	desc *prometheus.Desc
	fn   atomic.Pointer[func() map[string]int]
}

func (c *workersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *workersCollector) Collect(ch chan<- prometheus.Metric) {
	fn := c.fn.Load()
	if fn == nil {
		return
	}
	for state, n := range (*fn)() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), state)
	}
}

// Handler serves /metrics (the Prometheus text format), /healthz (200 "ok" while the process is up)
// and /readyz (200 while ready() > 0, the number of workers taking traffic; else 503). workers()
// returns the number of workers by state for the asgi_gateway_workers gauge, at scrape time; either
// function may be nil (ready: always ready; workers: no gauge).
func (m *Metrics) Handler(ready func() int, workers func() map[string]int) http.Handler {
	if workers != nil {
		m.workers.fn.Store(&workers)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError, // a failing collector must not hide the others
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		plain(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		n := 1
		if ready != nil {
			n = ready()
		}
		if n > 0 {
			plain(w, http.StatusOK, "ready: "+strconv.Itoa(n)+" workers\n")
		} else {
			plain(w, http.StatusServiceUnavailable, "not ready: no worker\n")
		}
	})
	return mux
}

func plain(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write([]byte(body))
}
