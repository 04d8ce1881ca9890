// Package gateway is the asgi-gateway server: it accepts client connections, speaks HTTP/1.1 to them
// (syntax in gateway/http1), builds the ASGI scope of each request, and bridges each request as one
// protocol stream to a supervised pool of Python worker processes (wire format in package protocol).
//
// The pieces, and who owns what:
//   - Server (server.go) owns the listener, the accept loop, the client connections and shutdown.
//   - h1conn (h1conn.go) owns one client connection: its goroutine reads and parses requests and pumps
//     request bodies; responses are written by whoever has the bytes (the worker reader, without a
//     goroutine hand-off, or a per-connection drain goroutine when the client is slow).
//   - exchange (exchange.go) is one request/response on a connection, with its states written down.
//   - scope building (scope.go) turns a parsed request into a protocol.HTTPRequest and knows nothing
//     of the HTTP engine's I/O, so that other engines (HTTP/2) can reuse it.
//   - Pool (pool.go) spawns worker processes, supervises and respawns them, and picks the least busy.
//   - workerConn (workerconn.go) owns one worker socket: one reader and one writer goroutine, and the
//     table of open streams.
//   - rawio.go does the system calls of client connections (HTTP/1.1 directly; HTTPS and HTTP/2
//     under crypto/tls and x/net through rawNetConn) and of worker sockets without the runtime's
//     system-call bookkeeping, which on a busy core spread one goroutine's work over several threads.
package gateway
