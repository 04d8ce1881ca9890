// Command loadgen drives the benchmark's WebSocket workloads (HTTP workloads use wrk).
//
//	loadgen ws-echo -url ws://127.0.0.1:8000/ws -c 64 -size 1024 -warmup 2s -d 10s
//	loadgen ws-idle -url ws://127.0.0.1:8000/ws -n 10000
//
// ws-echo keeps one 1 KB binary message in flight on each of -c connections and times
// each round trip. ws-idle opens -n connections (from several loopback source addresses,
// so that TIME_WAIT left by earlier runs cannot exhaust the ephemeral ports), then waits
// for a line on stdin (the harness samples the server's memory meanwhile), then checks that
// every connection still echoes and closes them all.
//
// Lines on stdout, for bench/run.py:
//
//	MEASURE_START, MEASURE_END   (ws-echo) the edges of the measured window
//	OPENED {json}                (ws-idle) every connection attempted; now waiting on stdin
//	RESULT {json}                the outcome, always the last line ("error" set on failure)
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen ws-echo|ws-idle [flags]")
		os.Exit(2)
	}
	var res map[string]any
	switch os.Args[1] {
	case "ws-echo":
		res = wsEcho(os.Args[2:])
	case "ws-idle":
		res = wsIdle(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
	out, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", out)
	if e, ok := res["error"].(string); ok && e != "" {
		os.Exit(1)
	}
}

func say(line string) {
	fmt.Println(line)
	os.Stdout.Sync()
}

// percentiles returns p50, p99, mean and max of the samples (microseconds).
func percentiles(us []uint32) (p50, p99, mean, top float64) {
	if len(us) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(us)
	at := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(us)))) - 1
		return float64(us[max(i, 0)])
	}
	var sum float64
	for _, v := range us {
		sum += float64(v)
	}
	return at(50), at(99), sum / float64(len(us)), float64(us[len(us)-1])
}

func micros(d time.Duration) uint32 {
	us := d.Microseconds()
	if us > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(us)
}

func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "ws" {
		return nil, fmt.Errorf("only ws:// URLs are supported, got %q", s)
	}
	return u, nil
}

func wsEcho(args []string) map[string]any {
	fs := flag.NewFlagSet("ws-echo", flag.ExitOnError)
	rawURL := fs.String("url", "ws://127.0.0.1:8000/ws", "server URL")
	conns := fs.Int("c", 64, "connections")
	size := fs.Int("size", 1024, "message size in bytes")
	warmup := fs.Duration("warmup", 2*time.Second, "warm-up, not measured")
	dur := fs.Duration("d", 10*time.Second, "measured duration")
	fs.Parse(args)
	res := map[string]any{"mode": "ws-echo", "conns": *conns, "size": *size}
	u, err := parseURL(*rawURL)
	if err != nil {
		res["error"] = err.Error()
		return res
	}

	ws := make([]*wsConn, *conns)
	for i := range ws {
		c, err := dialWS(u, nil, 10*time.Second)
		if err != nil {
			for _, c := range ws[:i] {
				c.close()
			}
			res["error"] = fmt.Sprintf("connection %d: %v", i, err)
			return res
		}
		ws[i] = c
	}

	var phase atomic.Int32 // 0 warm-up, 1 measured, 2 stop
	var errCount atomic.Int64
	var firstErr atomic.Value
	lat := make([][]uint32, *conns)
	counts := make([]int64, *conns)
	payload := bytes.Repeat([]byte("m"), *size)
	var wg sync.WaitGroup
	for i, c := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			samples := make([]uint32, 0, 1<<14)
			var n int64
			defer func() { lat[i], counts[i] = samples, n }()
			c.c.SetDeadline(time.Now().Add(*warmup + *dur + 30*time.Second))
			for phase.Load() < 2 {
				t0 := time.Now()
				if err := c.writeMessage(payload); err != nil {
					errCount.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("write: %v", err))
					return
				}
				msg, err := c.readMessage()
				if err != nil {
					errCount.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("read: %v", err))
					return
				}
				if len(msg) != len(payload) {
					errCount.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("echo of %d bytes, sent %d", len(msg), len(payload)))
					return
				}
				if phase.Load() == 1 {
					samples = append(samples, micros(time.Since(t0)))
					n++
				}
			}
		}()
	}
	time.Sleep(*warmup)
	phase.Store(1)
	say("MEASURE_START")
	t1 := time.Now()
	time.Sleep(*dur)
	phase.Store(2)
	elapsed := time.Since(t1)
	say("MEASURE_END")

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		for _, c := range ws {
			c.c.Close() // unblock a stuck reader
		}
		<-done
	}
	for _, c := range ws {
		c.close()
	}

	var all []uint32
	var total int64
	for i := range lat {
		all = append(all, lat[i]...)
		total += counts[i]
	}
	p50, p99, mean, mx := percentiles(all)
	res["messages"] = total
	res["seconds"] = elapsed.Seconds()
	res["rate"] = float64(total) / elapsed.Seconds()
	res["p50_us"], res["p99_us"], res["mean_us"], res["max_us"] = p50, p99, mean, mx
	res["errors"] = errCount.Load()
	if e := firstErr.Load(); e != nil {
		res["first_error"] = e
	}
	if total == 0 {
		res["error"] = fmt.Sprintf("no message echoed in the measured window (%v)", firstErr.Load())
	}
	return res
}

func wsIdle(args []string) map[string]any {
	fs := flag.NewFlagSet("ws-idle", flag.ExitOnError)
	rawURL := fs.String("url", "ws://127.0.0.1:8000/ws", "server URL")
	n := fs.Int("n", 10000, "connections to open and hold")
	concurrency := fs.Int("concurrency", 64, "handshakes in flight at once")
	srcIPs := fs.Int("src-ips", 8, "loopback source addresses to spread connections over (127.0.0.2...)")
	hold := fs.Duration("hold", 0, "hold this long instead of waiting for a line on stdin")
	fs.Parse(args)
	res := map[string]any{"mode": "ws-idle", "requested": *n}
	u, err := parseURL(*rawURL)
	if err != nil {
		res["error"] = err.Error()
		return res
	}

	var laddrs []net.Addr
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() && ip.To4() != nil {
		for i := 0; i < *srcIPs; i++ {
			laddrs = append(laddrs, &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))})
		}
	}

	ws := make([]*wsConn, *n)
	lat := make([]uint32, *n)
	var failed atomic.Int64
	var firstErr atomic.Value
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var la net.Addr
				if len(laddrs) > 0 {
					la = laddrs[i%len(laddrs)]
				}
				t0 := time.Now()
				c, err := dialWS(u, la, 15*time.Second)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				lat[i] = micros(time.Since(t0))
				ws[i] = c
			}
		}()
	}
	for i := 0; i < *n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	openSeconds := time.Since(start).Seconds()

	var open []*wsConn
	var hs []uint32
	for i, c := range ws {
		if c != nil {
			open = append(open, c)
			hs = append(hs, lat[i])
		}
	}
	p50, p99, _, mx := percentiles(hs)
	res["opened"] = len(open)
	res["failed"] = failed.Load()
	res["open_seconds"] = openSeconds
	res["open_rate"] = float64(len(open)) / openSeconds
	res["p50_us"], res["p99_us"], res["max_us"] = p50, p99, mx
	if e := firstErr.Load(); e != nil {
		res["first_error"] = e
	}
	opened, _ := json.Marshal(res)
	say("OPENED " + string(opened))

	if *hold > 0 {
		time.Sleep(*hold)
	} else {
		bufio.NewReader(os.Stdin).ReadString('\n')
	}

	// Every held connection must still echo.
	var alive atomic.Int64
	var checkErr atomic.Value
	idx := make(chan *wsConn)
	probe := []byte("still-there?")
	var cw sync.WaitGroup
	for w := 0; w < *concurrency; w++ {
		cw.Add(1)
		go func() {
			defer cw.Done()
			for c := range idx {
				c.c.SetDeadline(time.Now().Add(15 * time.Second))
				err := c.writeMessage(probe)
				var msg []byte
				if err == nil {
					msg, err = c.readMessage()
				}
				if err == nil && !bytes.Equal(msg, probe) {
					err = fmt.Errorf("echo %q, sent %q", msg, probe)
				}
				if err != nil {
					checkErr.CompareAndSwap(nil, err.Error())
				} else {
					alive.Add(1)
				}
				c.close()
			}
		}()
	}
	for _, c := range open {
		idx <- c
	}
	close(idx)
	cw.Wait()
	res["alive"] = alive.Load()
	if e := checkErr.Load(); e != nil {
		res["check_error"] = e
	}
	if len(open) == 0 {
		res["error"] = fmt.Sprintf("no connection opened (%v)", firstErr.Load())
	}
	return res
}
