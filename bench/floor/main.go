// Command floor is the benchmark's floor: a raw Go HTTP/1.1 loop with canned responses.
//
// It accepts connections, serves each on its own goroutine, reads a request head (and a
// body, by Content-Length), and writes a canned response. No ASGI, no Python, no routing
// beyond the path, no header map: it is the least work any server in the comparison can do
// on this machine, so it bounds from above what the gateway's Go front end can reach.
//
// Paths (the ASGI apps in bench/apps.py ignore the path; the floor needs it):
//
//	/        "Hello, World!" (any unknown path too)
//	/10k     10,240 bytes
//	/json    {"message":"Hello, World!"}
//	/echo    the request body, echoed
//	/stream  1 MiB as 16 chunks of 64 KiB (Transfer-Encoding: chunked)
//	/sleep   "Hello, World!" after 100 ms
//
// It logs "listening on http://HOST:PORT" on stderr when ready, like asgi-gateway.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"time"
)

func canned(contentType string, body []byte) []byte {
	head := fmt.Sprintf("HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		contentType, len(body))
	return append([]byte(head), body...)
}

var (
	helloResp  = canned("text/plain", []byte("Hello, World!"))
	tenKResp   = canned("application/octet-stream", bytes.Repeat([]byte("x"), 10240))
	jsonResp   = canned("application/json", []byte(`{"message":"Hello, World!"}`))
	badResp    = []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	streamResp = func() []byte {
		var b bytes.Buffer
		b.WriteString("HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for i := 0; i < 16; i++ {
			fmt.Fprintf(&b, "%x\r\n", len(chunk))
			b.Write(chunk)
			b.WriteString("\r\n")
		}
		b.WriteString("0\r\n\r\n")
		return b.Bytes()
	}()
)

const maxBody = 16 << 20

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "listening on http://%s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Print(err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serve(c)
	}
}

// serve handles one connection: keep-alive, one request at a time (pipelined requests are
// answered in order; responses are flushed when no further request is buffered).
func serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 16<<10)
	bw := bufio.NewWriterSize(c, 64<<10)
	var body []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		// "METHOD SP PATH SP VERSION"
		path := ""
		if sp := bytes.IndexByte(line, ' '); sp >= 0 {
			rest := line[sp+1:]
			if sp2 := bytes.IndexByte(rest, ' '); sp2 >= 0 {
				path = string(rest[:sp2])
			}
		}
		contentLength := 0
		closeAfter := bytes.Contains(line, []byte("HTTP/1.0"))
		for {
			h, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(h) <= 2 { // "\r\n": end of head
				break
			}
			colon := bytes.IndexByte(h, ':')
			if colon < 0 {
				continue
			}
			name := h[:colon]
			value := bytes.TrimSpace(h[colon+1:])
			switch {
			case bytes.EqualFold(name, []byte("content-length")):
				n, err := strconv.Atoi(string(value))
				if err != nil || n < 0 || n > maxBody {
					bw.Write(badResp)
					bw.Flush()
					return
				}
				contentLength = n
			case bytes.EqualFold(name, []byte("connection")):
				closeAfter = bytes.EqualFold(value, []byte("close"))
			case bytes.EqualFold(name, []byte("transfer-encoding")):
				bw.Write(badResp) // chunked request bodies are not needed by the workloads
				bw.Flush()
				return
			}
		}
		if contentLength > 0 {
			if cap(body) < contentLength {
				body = make([]byte, contentLength)
			}
			body = body[:contentLength]
			if _, err := io.ReadFull(br, body); err != nil {
				return
			}
		} else {
			body = body[:0]
		}
		switch path {
		case "/10k":
			bw.Write(tenKResp)
		case "/json":
			bw.Write(jsonResp)
		case "/echo":
			fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", len(body))
			bw.Write(body)
		case "/stream":
			bw.Write(streamResp)
		case "/sleep":
			time.Sleep(100 * time.Millisecond)
			bw.Write(helloResp)
		default:
			bw.Write(helloResp)
		}
		if closeAfter {
			bw.Flush()
			return
		}
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
	}
}
