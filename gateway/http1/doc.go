// Package http1 owns the HTTP/1.1 message syntax of the gateway's front end
// (RFC 9112 and the parts of RFC 9110 it relies on): it parses request heads
// and chunked request bodies out of bytes the connection loop has already
// read, and serializes status lines, header fields and chunks into byte slices
// the connection loop will write. It performs no I/O and starts no goroutines.
// Parsing is strict wherever leniency would let two parsers disagree about
// message boundaries (request smuggling), returns refusals as *Error values
// carrying the status code to answer with, and allocates nothing on the hot
// path: parsed fields are sub-slices of the caller's buffer, and header names
// are lower-cased in place in that buffer.
package http1
