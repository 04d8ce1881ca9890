package http1

import (
	"errors"
	"strconv"
)

// Error is a request the server must refuse. Status is the status code to
// answer with (400, 414, 417, 431, 501 or 505) and Reason a short human
// readable message for the log or the response body.
//
// The parser returns a small set of fixed *Error values; callers must not
// modify them.
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string {
	return "http1: " + strconv.Itoa(e.Status) + " " + e.Reason
}

// ErrNeedMore is returned by ParseHead when buf does not yet hold a complete
// request head and no limit has been exceeded yet.
var ErrNeedMore = errors.New("http1: incomplete request head")

func badRequest(reason string) *Error { return &Error{Status: 400, Reason: reason} }

// Request head errors.
var (
	errBareCR           = badRequest("bare CR in request head")
	errEmptyLines       = badRequest("too many empty lines before request-line")
	errRequestLine      = badRequest("malformed request-line")
	errMethod           = badRequest("invalid method")
	errVersion          = badRequest("malformed HTTP version")
	errTarget           = badRequest("invalid request-target")
	errPercent          = badRequest("invalid percent-encoding in path")
	errAsterisk         = badRequest("asterisk-form request-target is only allowed with OPTIONS")
	errAuthorityForm    = badRequest("authority-form request-target is only allowed with CONNECT")
	errAuthority        = badRequest("invalid authority in request-target")
	errHeaderName       = badRequest("invalid header field name")
	errHeaderValue      = badRequest("invalid header field value")
	errObsFold          = badRequest("obsolete line folding in header field")
	errMissingHost      = badRequest("missing Host header")
	errDuplicateHost    = badRequest("duplicate Host header")
	errHost             = badRequest("invalid Host header")
	errContentLength    = badRequest("invalid Content-Length")
	errDupContentLength = badRequest("duplicate Content-Length")
	errTransferEncoding = badRequest("invalid Transfer-Encoding")
	errChunkedNotLast   = badRequest("chunked must be the final and only-once transfer coding")
	errTEAndCL          = badRequest("both Transfer-Encoding and Content-Length")
	errTEOnHTTP10       = badRequest("Transfer-Encoding in an HTTP/1.0 request")

	errURITooLong    = &Error{Status: 414, Reason: "request-line too long"}
	errExpectation   = &Error{Status: 417, Reason: "unsupported expectation"}
	errHeadTooLarge  = &Error{Status: 431, Reason: "request head too large"}
	errTooManyFields = &Error{Status: 431, Reason: "too many header fields"}
	errConnect       = &Error{Status: 501, Reason: "CONNECT is not supported"}
	errMethodCase    = &Error{Status: 501, Reason: "method names are case-sensitive: a method with lowercase letters is not implemented"}
	errTECoding      = &Error{Status: 501, Reason: "unsupported transfer coding"}
	errHTTPVersion   = &Error{Status: 505, Reason: "HTTP version not supported"}
)

// Chunked body errors.
var (
	errChunkSize     = badRequest("invalid chunk size")
	errChunkOverflow = badRequest("chunk size too large")
	errChunkExt      = badRequest("invalid chunk extension")
	errChunkLineLen  = badRequest("chunk line too long")
	errChunkLineEnd  = badRequest("chunk line not terminated by CRLF")
	errChunkDataEnd  = badRequest("chunk data not followed by CRLF")
	errTrailer       = badRequest("invalid trailer field")
	errTrailerLen    = badRequest("trailer section too large")
)
