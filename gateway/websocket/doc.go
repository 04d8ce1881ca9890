// Package websocket owns the server side of the WebSocket protocol in the
// gateway's front end: the opening handshake (RFC 6455 section 4.2: checking
// an upgrade request, negotiating subprotocols and the permessage-deflate
// extension of RFC 7692, writing the 101 response head), decoding client
// frames into messages and control events (unmasking, reassembling fragments,
// validating UTF-8, inflating compressed messages within a size limit), and
// encoding server frames (data, close, ping, pong; optionally compressed). It
// performs no I/O and starts no goroutines: the connection loop in package
// gateway reads bytes into its own buffer and hands them to a Decoder, and
// appends the frames built here to its own output buffer. We write this codec
// ourselves rather than use gorilla/websocket or coder/websocket because their
// APIs hijack a net/http connection and own its reads and writes, while the
// gateway owns its I/O loop and must keep idle connections tiny: an idle
// Decoder holds no buffers after Release (only the 32 KiB inflate dictionary
// when the client keeps its compression context), and the large flate
// compressors and decompressors are pooled and borrowed per message. Decoding
// an uncompressed frame that is wholly in the caller's buffer copies nothing
// and allocates nothing; protocol violations are returned as *ProtocolError
// values carrying the close code to fail the connection with, and refused
// handshakes as *HandshakeError values carrying the HTTP status.
package websocket
