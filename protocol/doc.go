// Package protocol owns the wire format of the asgi-gateway worker protocol, as SPEC.md in this
// directory defines it: length-prefixed frames whose payloads are canonical msgpack arrays of
// [type, stream, fields...]. It provides the frame types and constants, appenders that build
// complete frames into caller buffers without allocating, a strict decoder that turns one payload
// into a reusable Frame, and a Reader that splits a byte stream into payloads under a frame limit.
// What the frames mean to either side, beyond their types and fields, belongs to its users.
package protocol
