package gateway

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func scrape(t *testing.T, h http.Handler, path string) (int, string, http.Header) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body), resp.Header
}

func TestMetricsExposition(t *testing.T) {
	m := NewMetrics()
	m.ObserveRequest([]byte("GET"), 200, 0, 100, 2*time.Millisecond)
	m.ObserveRequest([]byte("GET"), 204, 0, 0, 20*time.Millisecond)
	m.ObserveRequest([]byte("POST"), 404, 50, 10, 200*time.Millisecond)
	m.ObserveRequest([]byte("BREW"), 503, 0, 19, 3*time.Second)
	m.ObserveRequest([]byte("get"), 301, 0, 0, 0) // methods are case-sensitive: "other"
	m.ObserveRequest([]byte("GET"), 101, 0, 0, time.Millisecond)
	m.ObserveRequest([]byte("DELETE"), 0, 0, 0, time.Millisecond) // no response written
	m.InflightInc()
	m.InflightInc()
	m.InflightDec()
	m.WSOpened()
	m.WSOpened()
	m.WSClosed()
	m.Overloaded()
	m.WorkerRestarted("died")
	m.WorkerRestarted("reload")
	m.WorkerRestarted("reload")
	m.WorkerRestarted("something-else")
	m.WorkerStartFailed()
	m.WorkerStartFailed()

	h := m.Handler(func() int { return 2 }, func() map[string]int {
		return map[string]int{"ready": 2, "starting": 1}
	})
	status, body, header := scrape(t, h, "/metrics")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content-type %q", ct)
	}
	lines := make(map[string]bool)
	for _, l := range strings.Split(body, "\n") {
		lines[l] = true
	}
	want := []string{
		"# TYPE asgi_gateway_requests_total counter",
		`asgi_gateway_requests_total{method="GET",status="2xx"} 2`,
		`asgi_gateway_requests_total{method="GET",status="1xx"} 1`,
		`asgi_gateway_requests_total{method="POST",status="4xx"} 1`,
		`asgi_gateway_requests_total{method="other",status="5xx"} 1`,
		`asgi_gateway_requests_total{method="other",status="3xx"} 1`,
		`asgi_gateway_requests_total{method="DELETE",status="other"} 1`,
		`asgi_gateway_requests_total{method="PUT",status="2xx"} 0`, // pre-created
		"# TYPE asgi_gateway_request_duration_seconds histogram",
		`asgi_gateway_request_duration_seconds_bucket{le="0.001"} 3`,
		`asgi_gateway_request_duration_seconds_bucket{le="0.0025"} 4`,
		`asgi_gateway_request_duration_seconds_bucket{le="0.025"} 5`,
		`asgi_gateway_request_duration_seconds_bucket{le="0.25"} 6`,
		`asgi_gateway_request_duration_seconds_bucket{le="2.5"} 6`,
		`asgi_gateway_request_duration_seconds_bucket{le="5"} 7`,
		`asgi_gateway_request_duration_seconds_bucket{le="10"} 7`,
		`asgi_gateway_request_duration_seconds_bucket{le="+Inf"} 7`,
		`asgi_gateway_request_duration_seconds_count 7`,
		"# TYPE asgi_gateway_requests_in_flight gauge",
		"asgi_gateway_requests_in_flight 1",
		"# TYPE asgi_gateway_websockets_open gauge",
		"asgi_gateway_websockets_open 1",
		"# TYPE asgi_gateway_overload_rejections_total counter",
		"asgi_gateway_overload_rejections_total 1",
		"# TYPE asgi_gateway_request_bytes_total counter",
		"asgi_gateway_request_bytes_total 50",
		"# TYPE asgi_gateway_response_bytes_total counter",
		"asgi_gateway_response_bytes_total 129",
		"# TYPE asgi_gateway_worker_restarts_total counter",
		`asgi_gateway_worker_restarts_total{reason="died"} 1`,
		`asgi_gateway_worker_restarts_total{reason="reload"} 2`,
		`asgi_gateway_worker_restarts_total{reason="health"} 0`,
		`asgi_gateway_worker_restarts_total{reason="max-requests"} 0`,
		`asgi_gateway_worker_restarts_total{reason="max-rss"} 0`,
		`asgi_gateway_worker_restarts_total{reason="lifetime"} 0`,
		`asgi_gateway_worker_restarts_total{reason="something-else"} 1`,
		"# TYPE asgi_gateway_worker_start_failures_total counter",
		"asgi_gateway_worker_start_failures_total 2",
		"# TYPE asgi_gateway_workers gauge",
		`asgi_gateway_workers{state="ready"} 2`,
		`asgi_gateway_workers{state="starting"} 1`,
	}
	for _, w := range want {
		if !lines[w] {
			t.Errorf("missing line %q", w)
		}
	}
	sum := math.NaN()
	for l := range lines {
		if v, ok := strings.CutPrefix(l, "asgi_gateway_request_duration_seconds_sum "); ok {
			sum, _ = strconv.ParseFloat(v, 64)
		}
	}
	if math.Abs(sum-3.224) > 1e-9 {
		t.Errorf("duration sum %v, want 3.224", sum)
	}
	if n := strings.Count(body, "\nasgi_gateway_requests_total{"); n != len(metricMethods)*len(statusClasses) {
		t.Errorf("%d requests_total series, want %d", n, len(metricMethods)*len(statusClasses))
	}
	if !strings.Contains(body, "\ngo_goroutines ") || !strings.Contains(body, "\nprocess_") {
		t.Error("no go_/process_ metrics")
	}
	if t.Failed() {
		t.Log(body)
	}
}

func TestMetricsWorkersGaugeAtScrapeTime(t *testing.T) {
	m := NewMetrics()
	var n atomic.Int64
	h := m.Handler(nil, func() map[string]int { return map[string]int{"ready": int(n.Load())} })
	for _, want := range []string{"0", "3"} {
		_, body, _ := scrape(t, h, "/metrics")
		if !strings.Contains(body, "\nasgi_gateway_workers{state=\"ready\"} "+want+"\n") {
			t.Errorf("want ready workers %s in\n%s", want, body)
		}
		n.Store(3)
	}
}

func TestMetricsHealthzAndReadyz(t *testing.T) {
	m := NewMetrics()
	var ready atomic.Int64
	h := m.Handler(func() int { return int(ready.Load()) }, nil)
	if status, body, _ := scrape(t, h, "/healthz"); status != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", status, body)
	}
	if status, body, _ := scrape(t, h, "/readyz"); status != 503 {
		t.Errorf("/readyz with no worker: %d %q", status, body)
	}
	ready.Store(2)
	if status, body, _ := scrape(t, h, "/readyz"); status != 200 {
		t.Errorf("/readyz with workers: %d %q", status, body)
	}
	if status, _, _ := scrape(t, h, "/nothing"); status != 404 {
		t.Errorf("/nothing: %d", status)
	}
	// With no workers function the gauge is absent, not an error.
	if status, body, _ := scrape(t, h, "/metrics"); status != 200 || strings.Contains(body, "asgi_gateway_workers{") {
		t.Errorf("/metrics without workers(): %d", status)
	}
}

func TestMetricsObserveRequestDoesNotAllocate(t *testing.T) {
	m := NewMetrics()
	methods := [][]byte{[]byte("GET"), []byte("POST"), []byte("OPTIONS"), []byte("PROPFIND")}
	statuses := []int{200, 302, 404, 503, 101, 0}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		m.ObserveRequest(methods[i%len(methods)], statuses[i%len(statuses)], 10, 1000, time.Duration(i)*time.Microsecond)
		m.InflightInc()
		m.InflightDec()
		i++
	})
	if allocs != 0 {
		t.Errorf("ObserveRequest: %v allocs/op, want 0", allocs)
	}
}

func BenchmarkMetricsObserveRequest(b *testing.B) {
	m := NewMetrics()
	method := []byte("GET")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.ObserveRequest(method, 200, 0, 1234, time.Duration(i&1023)*time.Microsecond)
	}
}

func BenchmarkMetricsObserveRequestParallel(b *testing.B) {
	m := NewMetrics()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		method := []byte("POST")
		i := 0
		for pb.Next() {
			m.ObserveRequest(method, 201, 100, 1234, time.Duration(i&1023)*time.Microsecond)
			i++
		}
	})
}

func TestMetricsNilIsOff(t *testing.T) {
	var m *Metrics // metrics off: every call is a no-op
	m.ObserveRequest([]byte("GET"), 200, 1, 2, time.Millisecond)
	m.InflightInc()
	m.InflightDec()
	m.Overloaded()
	m.WSOpened()
	m.WSClosed()
	m.WorkerRestarted("died")
	m.WorkerStartFailed()
}

func TestMetricsInternMethod(t *testing.T) {
	buf := []byte("GET")
	got := internMethod(buf)
	buf[0] = 'X'
	if string(got) != "GET" {
		t.Errorf("interned %q", got)
	}
	if allocs := testing.AllocsPerRun(100, func() { internMethod(got) }); allocs != 0 {
		t.Errorf("internMethod(GET): %v allocs", allocs)
	}
	other := internMethod([]byte("PROPFIND"))
	if string(other) != "PROPFIND" {
		t.Errorf("interned %q", other)
	}
}
