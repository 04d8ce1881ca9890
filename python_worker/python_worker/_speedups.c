/* python_worker._speedups: hot-path pieces of python_worker.protocol's codec, in C.
 *
 * decode_fast(payload), or decode_fast(buffer, start, end) for buffer[start:end] without a copy, unpacks one
 * frame payload (a msgpack array, SPEC §2) and returns the tuple
 * python_worker.protocol.decode would return, for the frames of the per-request and per-message
 * path that pass decode's fast-path checks: HTTP_REQUEST without the tls item, REQUEST_BODY,
 * REQUEST_BODY_RING, CREDIT and WS_RECEIVE. For anything else (another frame type, a type or value
 * that is not the one expected, a map, a float, an extension type, bytes after the array, a str
 * that is not UTF-8), it returns None and the caller decodes with the Python code, which accepts
 * or refuses it with its message. So this module changes no result, only the cost of the common
 * ones: the objects built are those of msgpack.unpackb(raw=False, use_list=False) (arrays as tuples,
 * str as str, bin as bytes), and the checks are decode's.
 *
 * pack_headers(headers, head, tail) encodes a response's headers (a list or tuple of (bytes, bytes)
 * tuples or lists) as msgpack.packb(headers, use_bin_type=True) does, between head and tail, and
 * returns None when the headers are anything else, or when a name is not a token or a value has a
 * control character (but HTAB): the Python code then checks, normalizes or refuses them.
 *
 * ws_send_parts(sid_enc, data) is python_worker.protocol.ws_send_parts (a WS_SEND frame's head, the
 * message as bytes, its size), for exact bytes and str.
 *
 * http_scope(frame, state, extensions) builds the http scope of a decoded HTTP_REQUEST as
 * python_worker.cycle.RequestCycle._make_scope does: new dicts and a new headers list per call.
 *
 * new_cycle, start_app, fast_send and end_ok are python_worker.cycle.RequestCycle's per-request steps
 * (its construction, the app's call, send() for the two messages of most responses, the END after
 * a complete response), on the slots of the classes given to bind_cycle, for the common cases: for
 * anything else they do nothing and say so, and the Python code runs.
 *
 * weakset_hooks(wset) makes WeakSet.add and WeakSet's _remove callback, in C, for asyncio's task
 * registry (python_worker.worker installs them on that one set).
 *
 * Optional: the package works without it (pure Python), and PYTHON_WORKER_PURE=1 disables it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------
 * Decoding
 */

/* The frame types handled here (SPEC §3). */
#define T_HTTP_REQUEST 0x02
#define T_REQUEST_BODY 0x03
#define T_CREDIT 0x05
#define T_WS_RECEIVE 0x08
#define T_REQUEST_BODY_RING 0x0C

#define FLAG_TLS 16
#define MAX_U32 0xFFFFFFFFULL
#define MAX_DEPTH 4 /* frame, headers, header: deeper nesting is not one of the frames handled */

typedef struct {
    const unsigned char *p;
    Py_ssize_t n;
    Py_ssize_t pos;
} reader;

static int need(reader *r, Py_ssize_t k) { return r->n - r->pos >= k; }

static uint64_t be(const unsigned char *p, int k) {
    uint64_t v = 0;
    for (int i = 0; i < k; i++) v = (v << 8) | p[i];
    return v;
}

/* read_obj returns a new reference, or NULL with no exception set when the input is not handled
 * here (the caller returns None), or NULL with an exception set (memory). */
static PyObject *read_obj(reader *r, int depth);

static PyObject *read_array(reader *r, Py_ssize_t count, int depth) {
    if (depth >= MAX_DEPTH || count > r->n - r->pos) /* (each item is at least one byte) */
        return NULL;
    PyObject *t = PyTuple_New(count);
    if (t == NULL) return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = read_obj(r, depth + 1);
        if (item == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, item);
    }
    return t;
}

static PyObject *read_str(reader *r, Py_ssize_t len) {
    if (!need(r, len)) return NULL;
    const char *s = (const char *)r->p + r->pos;
    r->pos += len;
    PyObject *o = PyUnicode_DecodeUTF8(s, len, NULL); /* strict, as msgpack's raw=False */
    if (o == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) PyErr_Clear();
    return o;
}

static PyObject *read_bin(reader *r, Py_ssize_t len) {
    if (!need(r, len)) return NULL;
    PyObject *o = PyBytes_FromStringAndSize((const char *)r->p + r->pos, len);
    r->pos += len;
    return o;
}

static PyObject *read_obj(reader *r, int depth) {
    if (!need(r, 1)) return NULL;
    unsigned char c = r->p[r->pos++];
    if (c <= 0x7f) return PyLong_FromLong(c);
    if (c >= 0xe0) return PyLong_FromLong((long)(signed char)c);
    if ((c & 0xe0) == 0xa0) return read_str(r, c & 0x1f);
    if ((c & 0xf0) == 0x90) return read_array(r, c & 0x0f, depth);
    const unsigned char *p = r->p + r->pos;
    switch (c) {
    case 0xc0: Py_RETURN_NONE;
    case 0xc2: Py_RETURN_FALSE;
    case 0xc3: Py_RETURN_TRUE;
    case 0xc4: if (!need(r, 1)) return NULL; r->pos += 1; return read_bin(r, (Py_ssize_t)be(p, 1));
    case 0xc5: if (!need(r, 2)) return NULL; r->pos += 2; return read_bin(r, (Py_ssize_t)be(p, 2));
    case 0xc6: if (!need(r, 4)) return NULL; r->pos += 4; return read_bin(r, (Py_ssize_t)be(p, 4));
    case 0xcc: if (!need(r, 1)) return NULL; r->pos += 1; return PyLong_FromUnsignedLongLong(be(p, 1));
    case 0xcd: if (!need(r, 2)) return NULL; r->pos += 2; return PyLong_FromUnsignedLongLong(be(p, 2));
    case 0xce: if (!need(r, 4)) return NULL; r->pos += 4; return PyLong_FromUnsignedLongLong(be(p, 4));
    case 0xcf: if (!need(r, 8)) return NULL; r->pos += 8; return PyLong_FromUnsignedLongLong(be(p, 8));
    case 0xd0: if (!need(r, 1)) return NULL; r->pos += 1; return PyLong_FromLongLong((int8_t)be(p, 1));
    case 0xd1: if (!need(r, 2)) return NULL; r->pos += 2; return PyLong_FromLongLong((int16_t)be(p, 2));
    case 0xd2: if (!need(r, 4)) return NULL; r->pos += 4; return PyLong_FromLongLong((int32_t)be(p, 4));
    case 0xd3: if (!need(r, 8)) return NULL; r->pos += 8; return PyLong_FromLongLong((int64_t)be(p, 8));
    case 0xd9: if (!need(r, 1)) return NULL; r->pos += 1; return read_str(r, (Py_ssize_t)be(p, 1));
    case 0xda: if (!need(r, 2)) return NULL; r->pos += 2; return read_str(r, (Py_ssize_t)be(p, 2));
    case 0xdb: if (!need(r, 4)) return NULL; r->pos += 4; return read_str(r, (Py_ssize_t)be(p, 4));
    case 0xdc: if (!need(r, 2)) return NULL; r->pos += 2; return read_array(r, (Py_ssize_t)be(p, 2), depth);
    case 0xdd: if (!need(r, 4)) return NULL; r->pos += 4; return read_array(r, (Py_ssize_t)be(p, 4), depth);
    default: return NULL; /* maps, floats, extension types, 0xc1: the Python decoder's */
    }
}

/* An int (not bool) in lo..hi. */
static int int_in(PyObject *o, long long lo, unsigned long long hi) {
    if (!PyLong_CheckExact(o)) return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow != 0) return overflow > 0 && hi > (unsigned long long)LLONG_MAX; /* > 2**63 */
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return v >= lo && (v < 0 || (unsigned long long)v <= hi);
}

static int is_sid(PyObject *o) { return int_in(o, 1, MAX_U32); }
static int is_uint(PyObject *o) { return int_in(o, 0, UINT64_MAX); }

/* None, or [str, uint] (client) / [str, uint | nil] (server). */
static int is_addr(PyObject *o, int port_may_be_nil) {
    if (o == Py_None) return 1;
    if (!PyTuple_CheckExact(o) || PyTuple_GET_SIZE(o) != 2) return 0;
    PyObject *port = PyTuple_GET_ITEM(o, 1);
    return PyUnicode_CheckExact(PyTuple_GET_ITEM(o, 0)) && ((port_may_be_nil && port == Py_None) || is_uint(port));
}

static int is_headers(PyObject *o) {
    if (!PyTuple_CheckExact(o)) return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(o);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *h = PyTuple_GET_ITEM(o, i);
        if (!PyTuple_CheckExact(h) || PyTuple_GET_SIZE(h) != 2 || !PyBytes_CheckExact(PyTuple_GET_ITEM(h, 0)) ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(h, 1)))
            return 0;
    }
    return 1;
}

/* decode's fast-path checks, on the unpacked frame f (a tuple of n >= 1 items). */
static int fast_path_ok(PyObject *f) {
    Py_ssize_t n = PyTuple_GET_SIZE(f);
    PyObject *t = PyTuple_GET_ITEM(f, 0);
    if (n < 2 || !int_in(t, 0, 0x7f) || !is_sid(PyTuple_GET_ITEM(f, 1))) return 0;
    PyObject *const *it = &PyTuple_GET_ITEM(f, 0);
    switch (PyLong_AsLong(t)) {
    case T_HTTP_REQUEST: {
        if (n != 15) return 0; /* (16: the tls item, checked by the Python code) */
        PyObject *flags = it[12];
        return PyUnicode_CheckExact(it[2]) && PyUnicode_CheckExact(it[3]) && PyUnicode_CheckExact(it[4]) &&
               PyUnicode_CheckExact(it[5]) && PyBytes_CheckExact(it[6]) && PyBytes_CheckExact(it[7]) &&
               PyUnicode_CheckExact(it[8]) && is_uint(flags) && !(PyLong_AsUnsignedLongLongMask(flags) & FLAG_TLS) &&
               PyBytes_CheckExact(it[13]) && PyBool_Check(it[14]) && is_addr(it[10], 0) && is_addr(it[11], 1) &&
               is_headers(it[9]);
    }
    case T_REQUEST_BODY:
        return n == 4 && PyBytes_CheckExact(it[2]) && PyBool_Check(it[3]);
    case T_REQUEST_BODY_RING:
        return n == 5 && is_uint(it[2]) && is_uint(it[3]) && PyBool_Check(it[4]);
    case T_WS_RECEIVE:
        return n == 3 && (PyBytes_CheckExact(it[2]) || PyUnicode_CheckExact(it[2]));
    case T_CREDIT:
        return n == 3 && is_uint(it[2]);
    default:
        return 0;
    }
}

/* decode_fast on the payload p[0:n]: the frame tuple, or NULL (with an error set, or none: not a
 * hot-path frame that passes the checks). */
static PyObject *decode_range(const unsigned char *p, Py_ssize_t n) {
    reader r = {p, n, 0};
    PyObject *f = NULL;
    unsigned char c = r.n > 0 ? r.p[0] : 0;
    if ((c & 0xf0) == 0x90 || c == 0xdc || c == 0xdd) f = read_obj(&r, 0);
    if (f == NULL) return NULL;
    if (r.pos != r.n || PyTuple_GET_SIZE(f) == 0 || !fast_path_ok(f)) {
        Py_DECREF(f);
        return NULL;
    }
    return f;
}

static PyObject *decode_fast(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 1 && nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "decode_fast(payload) or decode_fast(buffer, start, end)");
        return NULL;
    }
    Py_ssize_t start = 0, end = PY_SSIZE_T_MAX;
    if (nargs == 3) {
        start = PyLong_AsSsize_t(args[1]);
        if (start == -1 && PyErr_Occurred()) return NULL;
        end = PyLong_AsSsize_t(args[2]);
        if (end == -1 && PyErr_Occurred()) return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    if (end > view.len) end = view.len;
    if (start < 0 || start > end) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "decode_fast: start and end are not a range of the buffer");
        return NULL;
    }
    PyObject *f = decode_range((const unsigned char *)view.buf + start, end - start);
    PyBuffer_Release(&view);
    if (f == NULL && !PyErr_Occurred()) Py_RETURN_NONE;
    return f;
}

/* ------------------------------------------------------------------------------------------------
 * Encoding: headers
 */

/* The items of a list or tuple of headers as (name, value) bytes, or 0 when one is not a list or
 * tuple of exactly two bytes objects (of the exact type). */
static int header_pair(PyObject *item, PyObject **name, PyObject **value) {
    if (PyTuple_CheckExact(item)) {
        if (PyTuple_GET_SIZE(item) != 2) return 0;
        *name = PyTuple_GET_ITEM(item, 0);
        *value = PyTuple_GET_ITEM(item, 1);
    } else if (PyList_CheckExact(item)) {
        if (PyList_GET_SIZE(item) != 2) return 0;
        *name = PyList_GET_ITEM(item, 0);
        *value = PyList_GET_ITEM(item, 1);
    } else {
        return 0;
    }
    return PyBytes_CheckExact(*name) && PyBytes_CheckExact(*value) && PyBytes_GET_SIZE(*name) <= 0xFFFFFFFF &&
           PyBytes_GET_SIZE(*value) <= 0xFFFFFFFF;
}

static Py_ssize_t bin_header_size(Py_ssize_t n) { return n < 0x100 ? 2 : n < 0x10000 ? 3 : 5; }

static unsigned char *put_be(unsigned char *w, uint64_t v, int k) {
    for (int i = k - 1; i >= 0; i--) {
        w[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
    return w + k;
}

static unsigned char *put_bin(unsigned char *w, PyObject *b) {
    Py_ssize_t n = PyBytes_GET_SIZE(b);
    if (n < 0x100) {
        *w++ = 0xc4;
        w = put_be(w, (uint64_t)n, 1);
    } else if (n < 0x10000) {
        *w++ = 0xc5;
        w = put_be(w, (uint64_t)n, 2);
    } else {
        *w++ = 0xc6;
        w = put_be(w, (uint64_t)n, 4);
    }
    memcpy(w, PyBytes_AS_STRING(b), (size_t)n);
    return w + n;
}

/* Field syntax, as the gateway checks it (gateway/http1/chars.go): a name is a token (RFC 9110 §5.6.2);
 * a value has no control character but HTAB (field-vchar, SP, HTAB, obs-text). */
static unsigned char tchar[256], vchar[256];

static void init_field_tables(void) {
    const char *t = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (; *t; t++) tchar[(unsigned char)*t] = 1;
    for (int c = 0; c < 256; c++) vchar[c] = c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int valid_field(PyObject *name, PyObject *value) {
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(name);
    Py_ssize_t n = PyBytes_GET_SIZE(name);
    if (n == 0) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!tchar[p[i]]) return 0;
    p = (const unsigned char *)PyBytes_AS_STRING(value);
    n = PyBytes_GET_SIZE(value);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!vchar[p[i]]) return 0;
    return 1;
}

/* head + headers + tail (pack_headers), from raw head and tail bytes; None (a new reference) when the
 * headers are not plain pairs. */
static PyObject *pack_headers_between(PyObject *headers, const char *head, Py_ssize_t head_len, const char *tail,
                                      Py_ssize_t tail_len) {
    PyObject *const *items;
    Py_ssize_t count;
    if (PyList_CheckExact(headers)) {
        items = (PyObject *const *)((PyListObject *)headers)->ob_item;
        count = PyList_GET_SIZE(headers);
    } else if (PyTuple_CheckExact(headers)) {
        items = &PyTuple_GET_ITEM(headers, 0);
        count = PyTuple_GET_SIZE(headers);
    } else {
        Py_RETURN_NONE;
    }
    if (count > 0xFFFFFFFF) Py_RETURN_NONE;
    Py_ssize_t size = head_len + tail_len + (count < 16 ? 1 : count < 0x10000 ? 3 : 5);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name, *value;
        if (!header_pair(items[i], &name, &value) || !valid_field(name, value)) Py_RETURN_NONE;
        size += 1 + bin_header_size(PyBytes_GET_SIZE(name)) + PyBytes_GET_SIZE(name) +
                bin_header_size(PyBytes_GET_SIZE(value)) + PyBytes_GET_SIZE(value);
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL) return NULL;
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(out);
    memcpy(w, head, (size_t)head_len);
    w += head_len;
    if (count < 16) {
        *w++ = (unsigned char)(0x90 | count);
    } else if (count < 0x10000) {
        *w++ = 0xdc;
        w = put_be(w, (uint64_t)count, 2);
    } else {
        *w++ = 0xdd;
        w = put_be(w, (uint64_t)count, 4);
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name = NULL, *value = NULL;
        header_pair(items[i], &name, &value);
        *w++ = 0x92;
        w = put_bin(w, name);
        w = put_bin(w, value);
    }
    memcpy(w, tail, (size_t)tail_len);
    return out;
}

static PyObject *pack_headers(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_CheckExact(args[1]) || !PyBytes_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "pack_headers(headers, head: bytes, tail: bytes)");
        return NULL;
    }
    return pack_headers_between(args[0], PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1]),
                                PyBytes_AS_STRING(args[2]), PyBytes_GET_SIZE(args[2]));
}

/* ------------------------------------------------------------------------------------------------
 * Encoding: WS_SEND
 */

static PyObject *ws_send_parts(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "ws_send_parts(sid_enc: bytes, data: bytes | str)");
        return NULL;
    }
    PyObject *sid_enc = args[0], *data = args[1], *payload;
    int text = PyUnicode_CheckExact(data);
    if (text) {
        payload = PyUnicode_AsUTF8String(data); /* (UnicodeEncodeError for a lone surrogate, as str.encode) */
        if (payload == NULL) return NULL;
    } else if (PyBytes_CheckExact(data)) {
        Py_INCREF(data);
        payload = data;
    } else {
        PyErr_Format(PyExc_TypeError, "ws_send_parts: data must be bytes or str, got %.100s", Py_TYPE(data)->tp_name);
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(payload), sid_len = PyBytes_GET_SIZE(sid_enc);
    if ((uint64_t)size > 0xFFFFFFFFULL) {
        Py_DECREF(payload);
        PyErr_SetString(PyExc_ValueError, "ws_send_parts: the message is larger than 4 GiB");
        return NULL;
    }
    unsigned char mhead[5];
    int mlen;
    if (text && size < 32) {
        mhead[0] = (unsigned char)(0xa0 | size);
        mlen = 1;
    } else if (size < 0x100) {
        mhead[0] = text ? 0xd9 : 0xc4;
        put_be(mhead + 1, (uint64_t)size, 1);
        mlen = 2;
    } else if (size < 0x10000) {
        mhead[0] = text ? 0xda : 0xc5;
        put_be(mhead + 1, (uint64_t)size, 2);
        mlen = 3;
    } else {
        mhead[0] = text ? 0xdb : 0xc6;
        put_be(mhead + 1, (uint64_t)size, 4);
        mlen = 5;
    }
    /* length prefix, 93 18 (array of 3, WS_SEND), sid, the message's str or bin header */
    uint64_t frame_len = (uint64_t)sid_len + (uint64_t)mlen + (uint64_t)size + 2;
    PyObject *head = NULL, *result = NULL;
    if (frame_len > 0xFFFFFFFFULL) {
        PyErr_SetString(PyExc_ValueError, "ws_send_parts: the frame is larger than 4 GiB");
        goto done;
    }
    head = PyBytes_FromStringAndSize(NULL, 4 + 2 + sid_len + mlen);
    if (head == NULL) goto done;
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(head);
    w = put_be(w, frame_len, 4);
    *w++ = 0x93;
    *w++ = 0x18;
    memcpy(w, PyBytes_AS_STRING(sid_enc), (size_t)sid_len);
    memcpy(w + sid_len, mhead, (size_t)mlen);
    result = Py_BuildValue("(OOn)", head, payload, size);
done:
    Py_XDECREF(head);
    Py_DECREF(payload);
    return result;
}

/* ------------------------------------------------------------------------------------------------
 * Encoding: RESPONSE_BODY_RING
 */

/* Canonical msgpack of an unsigned integer (the shortest form), at w; returns the end. */
static unsigned char *put_uint(unsigned char *w, uint64_t v) {
    if (v < 0x80) {
        *w++ = (unsigned char)v;
        return w;
    }
    if (v < 0x100) {
        *w++ = 0xcc;
        return put_be(w, v, 1);
    }
    if (v < 0x10000) {
        *w++ = 0xcd;
        return put_be(w, v, 2);
    }
    if (v <= 0xFFFFFFFFULL) {
        *w++ = 0xce;
        return put_be(w, v, 4);
    }
    *w++ = 0xcf;
    return put_be(w, v, 8);
}

static PyObject *response_body_ring(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyBytes_CheckExact(args[0]) || !PyLong_CheckExact(args[1]) || !PyLong_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "response_body_ring(sid_enc: bytes, position: int, length: int, more_body: bool)");
        return NULL;
    }
    uint64_t position = PyLong_AsUnsignedLongLong(args[1]);
    if (position == (uint64_t)-1 && PyErr_Occurred()) return NULL;
    uint64_t length = PyLong_AsUnsignedLongLong(args[2]);
    if (length == (uint64_t)-1 && PyErr_Occurred()) return NULL;
    int more = PyObject_IsTrue(args[3]);
    if (more < 0) return NULL;
    Py_ssize_t sid_len = PyBytes_GET_SIZE(args[0]);
    if (sid_len > 9) {
        PyErr_SetString(PyExc_ValueError, "response_body_ring: sid_enc is not an encoded stream id");
        return NULL;
    }
    /* length prefix, 95 1d (array of 5, RESPONSE_BODY_RING), sid, position, length, more_body */
    unsigned char buf[4 + 2 + 9 + 9 + 9 + 1], *w = buf + 4;
    *w++ = 0x95;
    *w++ = 0x1d;
    memcpy(w, PyBytes_AS_STRING(args[0]), (size_t)sid_len);
    w = put_uint(w + sid_len, position);
    w = put_uint(w, length);
    *w++ = more ? 0xc3 : 0xc2;
    put_be(buf, (uint64_t)(w - buf - 4), 4);
    return PyBytes_FromStringAndSize((const char *)buf, w - buf);
}

/* ------------------------------------------------------------------------------------------------
 * The http scope
 */

/* Interned keys and constant values of the scope, made once (PyInit__speedups). */
static PyObject *k_type, *k_asgi, *k_http_version, *k_server, *k_client, *k_scheme, *k_method, *k_root_path,
    *k_path, *k_raw_path, *k_query_string, *k_headers, *k_state, *k_extensions, *k_version, *k_spec_version,
    *v_http, *v_asgi_version, *v_spec_version;

static int set_item(PyObject *d, PyObject *k, PyObject *v) {
    if (v == NULL) return -1;
    int r = PyDict_SetItem(d, k, v);
    Py_DECREF(v);
    return r;
}

static PyObject *build_http_scope(PyObject *frame, PyObject *state, PyObject *extensions);

static PyObject *http_scope(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyTuple_CheckExact(args[0]) || PyTuple_GET_SIZE(args[0]) < 15 || !PyDict_Check(args[1]) ||
        !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "http_scope(frame: HTTP_REQUEST tuple, state: dict, extensions: dict)");
        return NULL;
    }
    return build_http_scope(args[0], args[1], args[2]);
}

/* http_scope's dict from a checked frame (an HTTP_REQUEST tuple), state and extensions dicts. */
static PyObject *build_http_scope(PyObject *frame, PyObject *state, PyObject *extensions) {
    PyObject *const *f = &PyTuple_GET_ITEM(frame, 0);
    PyObject *scope = PyDict_New();
    if (scope == NULL) return NULL;
    PyObject *asgi = PyDict_New();
    if (asgi == NULL || PyDict_SetItem(asgi, k_version, v_asgi_version) < 0 ||
        PyDict_SetItem(asgi, k_spec_version, v_spec_version) < 0) {
        Py_XDECREF(asgi);
        Py_DECREF(scope);
        return NULL;
    }
    /* The keys in the order of RequestCycle._make_scope's dict. */
    if (PyDict_SetItem(scope, k_type, v_http) < 0 || set_item(scope, k_asgi, asgi) < 0 ||
        PyDict_SetItem(scope, k_http_version, f[2]) < 0 || PyDict_SetItem(scope, k_server, f[11]) < 0 ||
        PyDict_SetItem(scope, k_client, f[10]) < 0 || PyDict_SetItem(scope, k_scheme, f[4]) < 0 ||
        PyDict_SetItem(scope, k_method, f[3]) < 0 || PyDict_SetItem(scope, k_root_path, f[8]) < 0 ||
        PyDict_SetItem(scope, k_path, f[5]) < 0 || PyDict_SetItem(scope, k_raw_path, f[6]) < 0 ||
        PyDict_SetItem(scope, k_query_string, f[7]) < 0 || set_item(scope, k_headers, PySequence_List(f[9])) < 0 ||
        set_item(scope, k_state, PyDict_Copy(state)) < 0 || PyDict_SetItem(scope, k_extensions, extensions) < 0) {
        Py_DECREF(scope);
        return NULL;
    }
    return scope;
}

static int init_scope_constants(void) {
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return -1
    INTERN(k_type, "type");
    INTERN(k_asgi, "asgi");
    INTERN(k_http_version, "http_version");
    INTERN(k_server, "server");
    INTERN(k_client, "client");
    INTERN(k_scheme, "scheme");
    INTERN(k_method, "method");
    INTERN(k_root_path, "root_path");
    INTERN(k_path, "path");
    INTERN(k_raw_path, "raw_path");
    INTERN(k_query_string, "query_string");
    INTERN(k_headers, "headers");
    INTERN(k_state, "state");
    INTERN(k_extensions, "extensions");
    INTERN(k_version, "version");
    INTERN(k_spec_version, "spec_version");
    INTERN(v_http, "http");
    INTERN(v_asgi_version, "3.0");
    INTERN(v_spec_version, "2.3");
#undef INTERN
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * asyncio's task registry
 *
 * Python 3.9 to 3.13's _asyncio registers each Task it creates in a weakref.WeakSet (asyncio.all_tasks()
 * iterates it) by calling the set's add() method, and the weak reference's callback, the set's _remove
 * closure, takes the task out when it dies: two calls of Python code per task, about a twentieth of the
 * worker's CPU per request. weakset_hooks(wset) returns (add, remove): callables doing exactly what
 * WeakSet.add and WeakSet's _remove do (Lib/_weakrefset.py), in C, for python_worker.worker to set as
 * that one set's instance attributes "add" and "_remove" (an instance attribute comes before the
 * class's method in the method lookup _asyncio makes). Both hold the set by a weak reference, as the
 * closure does.
 */

static PyObject *s_data, *s_pending_removals, *s_iterating, *s_commit_removals;

typedef struct {
    PyObject_HEAD
    PyObject *setref; /* weakref to the WeakSet */
    PyObject *remove; /* add only: the callback of the references it makes (a "remove" hook) */
} WeakSetHook;

static void hook_dealloc(WeakSetHook *self) {
    Py_XDECREF(self->setref);
    Py_XDECREF(self->remove);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The one positional argument of a hook's call, in *item; 0 (an exception set) otherwise. */
static int one_arg(const char *name, PyObject *args, PyObject *kwargs, PyObject **item) {
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments", name);
        return 0;
    }
    return PyArg_UnpackTuple(args, name, 1, 1, item);
}

/* WeakSet.add(item): if self._pending_removals: self._commit_removals(); self.data.add(ref(item, self._remove)) */
static PyObject *hook_add(WeakSetHook *self, PyObject *args, PyObject *kwargs) {
    PyObject *item;
    if (!one_arg("add", args, kwargs, &item)) return NULL;
    PyObject *wset = PyWeakref_GetObject(self->setref);
    if (wset == NULL) return NULL;
    if (wset == Py_None) {
        PyErr_SetString(PyExc_ReferenceError, "the WeakSet of this add() no longer exists");
        return NULL;
    }
    Py_INCREF(wset);
    PyObject *pending = PyObject_GetAttr(wset, s_pending_removals);
    int has_pending = pending == NULL ? -1 : PyObject_IsTrue(pending);
    Py_XDECREF(pending);
    if (has_pending > 0) {
        PyObject *r = PyObject_CallMethodNoArgs(wset, s_commit_removals);
        if (r == NULL) has_pending = -1;
        Py_XDECREF(r);
    }
    PyObject *data = has_pending < 0 ? NULL : PyObject_GetAttr(wset, s_data);
    Py_DECREF(wset);
    if (data == NULL) return NULL;
    PyObject *ref = PyWeakref_NewRef(item, self->remove);
    int r = ref == NULL ? -1 : PySet_Add(data, ref);
    Py_XDECREF(ref);
    Py_DECREF(data);
    if (r < 0) return NULL;
    Py_RETURN_NONE;
}

/* WeakSet's _remove(item): if self._iterating: self._pending_removals.append(item) else: self.data.discard(item) */
static PyObject *hook_remove(WeakSetHook *self, PyObject *args, PyObject *kwargs) {
    PyObject *item;
    if (!one_arg("_remove", args, kwargs, &item)) return NULL;
    PyObject *wset = PyWeakref_GetObject(self->setref);
    if (wset == NULL) return NULL;
    if (wset == Py_None) Py_RETURN_NONE;
    Py_INCREF(wset);
    PyObject *iterating = PyObject_GetAttr(wset, s_iterating);
    int busy = iterating == NULL ? -1 : PyObject_IsTrue(iterating);
    Py_XDECREF(iterating);
    int r = -1;
    if (busy > 0) {
        PyObject *pending = PyObject_GetAttr(wset, s_pending_removals);
        if (pending != NULL) {
            PyObject *res = PyObject_CallMethod(pending, "append", "O", item);
            r = res == NULL ? -1 : 0;
            Py_XDECREF(res);
            Py_DECREF(pending);
        }
    } else if (busy == 0) {
        PyObject *data = PyObject_GetAttr(wset, s_data);
        if (data != NULL) {
            if (PySet_Check(data)) {
                r = PySet_Discard(data, item) < 0 ? -1 : 0;
            } else {
                PyObject *res = PyObject_CallMethod(data, "discard", "O", item);
                r = res == NULL ? -1 : 0;
                Py_XDECREF(res);
            }
            Py_DECREF(data);
        }
    }
    Py_DECREF(wset);
    if (r < 0) return NULL;
    Py_RETURN_NONE;
}

static PyTypeObject WeakSetAddType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "python_worker._speedups.WeakSetAdd",
    .tp_basicsize = sizeof(WeakSetHook),
    .tp_dealloc = (destructor)hook_dealloc,
    .tp_call = (ternaryfunc)hook_add,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "WeakSet.add of one set, in C (weakset_hooks).",
};

static PyTypeObject WeakSetRemoveType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "python_worker._speedups.WeakSetRemove",
    .tp_basicsize = sizeof(WeakSetHook),
    .tp_dealloc = (destructor)hook_dealloc,
    .tp_call = (ternaryfunc)hook_remove,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The _remove callback of one WeakSet, in C (weakset_hooks).",
};

static PyObject *new_hook(PyTypeObject *type, PyObject *setref, PyObject *remove) {
    WeakSetHook *h = PyObject_New(WeakSetHook, type);
    if (h == NULL) return NULL;
    Py_INCREF(setref);
    h->setref = setref;
    Py_XINCREF(remove);
    h->remove = remove;
    return (PyObject *)h;
}

static PyObject *weakset_hooks(PyObject *module, PyObject *wset) {
    PyObject *setref = PyWeakref_NewRef(wset, NULL);
    if (setref == NULL) return NULL;
    PyObject *remove = new_hook(&WeakSetRemoveType, setref, NULL);
    PyObject *add = remove == NULL ? NULL : new_hook(&WeakSetAddType, setref, remove);
    Py_DECREF(setref);
    if (add == NULL) {
        Py_XDECREF(remove);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, add, remove);
    Py_DECREF(add);
    Py_DECREF(remove);
    return pair;
}

static int init_hooks(void) {
    if (PyType_Ready(&WeakSetAddType) < 0 || PyType_Ready(&WeakSetRemoveType) < 0) return -1;
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return -1
    INTERN(s_data, "data");
    INTERN(s_pending_removals, "_pending_removals");
    INTERN(s_iterating, "_iterating");
    INTERN(s_commit_removals, "_commit_removals");
#undef INTERN
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * The request cycle: python_worker.cycle.RequestCycle's per-request steps, on its slots
 *
 * bind_cycle(RequestCycle, Connection, constants) gives the functions below the offsets of the
 * classes' __slots__ (from their member descriptors) and cycle.py's constants; before it, they do
 * nothing (None, False). Each does what the Python code it stands for does, for the common case
 * only, and otherwise changes nothing and says so: the Python code then runs, and accepts or refuses
 * with its own messages.
 *
 * new_cycle(conn, frame) is RequestCycle(conn, frame) for an HTTP_REQUEST without the tls item.
 *
 * open_requests(conn, data, pos, task_type) is Connection.data_received's loop over the HTTP_REQUEST
 * frames (without the tls item) from data[pos:]: a cycle, its entry in conn.streams, its task. It
 * stops at the first frame that is another, incomplete, or one the Python code must see (a stream
 * that is open, the connection shutting down, a frame decode_fast leaves), and returns its position.
 *
 * start_app(cycle) is conn.app(cycle._make_scope(), cycle.receive, cycle.send): the app's awaitable.
 *
 * fast_send(cycle, message) is RequestCycle.send for the messages of most responses: an
 * http.response.start with an int status and plain headers, and then a final http.response.body
 * that goes in the held RESPONSE_START (under the ring's smallest piece, with room beside the
 * headers). True when it did; False for anything else
 * (another message, state or value, a body with more to come or one for the ring, a window or a
 * paused transport to wait for).
 *
 * end_ok(cycle) is run()'s END OK after a complete response (True), or False when the response is
 * not complete or an error is set.
 */

enum {
    CY_STATE, CY_DISCONNECTED, CY_FLAGS, CY_SID_ENC, CY_CONN, CY_FINAL, CY_BODY_SENT, CY_IN_RING,
    CY_HEAD_HELD, CY_START_HEAD, CY_START_INDEX, CY_SEND_WINDOW, CY_WAITER, CY_FRAME, CY_SID, CY_REQ_WINDOW,
    CY_BODY, CY_MORE_BODY, CY_CHUNKS, CY_REQ_DONE, CY_SCOPE, CY_TASK, CY_UNGRANTED, CY_CUT, CY_CREDIT_WAITER,
    CY_ERROR, CY_CANCEL_REASON, CY_N
};
static const char *const cy_names[CY_N] = {
    "_state", "disconnected", "flags", "sid_enc", "conn", "_final", "_body_sent", "_in_ring",
    "_head_held", "_start_head", "_start_index", "_send_window", "_waiter", "_frame", "sid", "_req_window",
    "_body", "_more_body", "_chunks", "_req_done", "scope", "task", "_ungranted", "_cut", "_credit_waiter",
    "_error", "_cancel_reason",
};
enum {
    CO_MAX_FRAME, CO_MAX_PIECE, CO_OUT, CO_PLACEHOLDERS, CO_FLUSH_SCHEDULED, CO_WRITE_PAUSED, CO_WROTE_EARLY,
    CO_WINDOW, CO_STATE, CO_STREAMS, CO_CLOSED, CO_APP, CO_HELLO_RECEIVED, CO_SHUTTING_DOWN, CO_LOOP, CO_N
};
static const char *const co_names[CO_N] = {
    "max_frame", "max_piece", "_out", "_placeholders", "_flush_scheduled", "_write_paused", "_wrote_early",
    "window", "state", "streams", "_closed", "app", "_hello_received", "_shutting_down", "loop",
};
static Py_ssize_t cy_off[CY_N], co_off[CO_N];
static PyTypeObject *cycle_type, *conn_type; /* NULL until bind_cycle */
/* cycle.py's _NOT_STARTED, _STARTED, _COMPLETE, and _EXT_KEYS (extension names by flag bits) */
static PyObject *st_not_started, *st_started, *st_complete, *ext_keys;
static long long trailers_allowed, ring_min_piece, expect_continue, small_window_flag, small_window, ext_flags;
static PyObject *s_status, *s_headers, *s_trailers, *s_body, *s_more_body, *s_start_type, *s_body_type,
    *s_schedule_flush, *s_write_out, *s_done, *s_set_result, *s_make_scope, *s_receive, *s_send, *s_run,
    *s_create_task, *kw_loop, *empty_bytes, *empty_tuple;

#define SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

/* Replaces a slot's value with v (a new reference); -1 if v is NULL (an error). */
static int set_slot(PyObject *o, Py_ssize_t off, PyObject *v) {
    if (v == NULL) return -1;
    PyObject *old = SLOT(o, off);
    SLOT(o, off) = v;
    Py_XDECREF(old);
    return 0;
}

/* A slot holding an exact int that fits: 1 and its value, else 0. */
static int slot_int(PyObject *o, Py_ssize_t off, long long *out) {
    PyObject *v = SLOT(o, off);
    if (v == NULL || !PyLong_CheckExact(v)) return 0;
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (x == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *out = x;
    return 1;
}

/* A slot holding True (1) or False (0); -1 for anything else. */
static int slot_bool(PyObject *o, Py_ssize_t off) {
    PyObject *v = SLOT(o, off);
    return v == Py_True ? 1 : v == Py_False ? 0 : -1;
}

static int same_str(PyObject *a, PyObject *b) {
    return a == b || (PyUnicode_CheckExact(a) && PyUnicode_Compare(a, b) == 0);
}

/* message[key] (borrowed), or dflt when it has no such key; NULL with an error set. */
static PyObject *get(PyObject *message, PyObject *key, PyObject *dflt) {
    PyObject *v = PyDict_GetItemWithError(message, key);
    return v != NULL ? v : PyErr_Occurred() ? NULL : dflt;
}

/* conn._schedule_flush() unless a flush is scheduled. */
static int schedule_flush(PyObject *conn) {
    if (SLOT(conn, co_off[CO_FLUSH_SCHEDULED]) == Py_True) return 0;
    PyObject *r = PyObject_CallMethodNoArgs(conn, s_schedule_flush);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* RequestCycle._start for a start message with an int status in 200..599 and plain headers, no
 * trailers: 1 done, 0 not this case (nothing changed), -1 error. */
static int fast_start(PyObject *self, PyObject *conn, PyObject *message) {
    PyObject *status = get(message, s_status, NULL);
    if (status == NULL) return PyErr_Occurred() ? -1 : 0;
    if (!PyLong_CheckExact(status)) return 0;
    int overflow;
    long code = PyLong_AsLongAndOverflow(status, &overflow);
    if (overflow || code < 200 || code > 599) return 0;
    PyObject *headers = get(message, s_headers, empty_tuple);
    if (headers == NULL) return -1;
    long long flags, max_frame, placeholders;
    if (!slot_int(self, cy_off[CY_FLAGS], &flags) || !slot_int(conn, co_off[CO_MAX_FRAME], &max_frame) ||
        !slot_int(conn, co_off[CO_PLACEHOLDERS], &placeholders))
        return 0;
    if (flags & trailers_allowed) {
        PyObject *trailers = get(message, s_trailers, Py_False);
        if (trailers != Py_False) return trailers == NULL ? -1 : 0; /* trailers (or not a bool): in Python */
    }
    PyObject *sid_enc = SLOT(self, cy_off[CY_SID_ENC]), *out = SLOT(conn, co_off[CO_OUT]);
    if (sid_enc == NULL || !PyBytes_CheckExact(sid_enc) || PyBytes_GET_SIZE(sid_enc) > 9 || out == NULL ||
        !PyList_CheckExact(out))
        return 0;
    /* RESPONSE_START up to its headers: 97 12 sid status; after them, flags 0 */
    unsigned char prefix[2 + 9 + 3], *w = prefix;
    *w++ = 0x97;
    *w++ = 0x12;
    memcpy(w, PyBytes_AS_STRING(sid_enc), (size_t)PyBytes_GET_SIZE(sid_enc));
    w = put_uint(w + PyBytes_GET_SIZE(sid_enc), (uint64_t)code);
    PyObject *head = pack_headers_between(headers, (const char *)prefix, w - prefix, "\x00", 1);
    if (head == NULL) return -1;
    if (head == Py_None || PyBytes_GET_SIZE(head) + 3 > max_frame) { /* (Python refuses the size) */
        Py_DECREF(head);
        return 0;
    }
    if (set_slot(self, cy_off[CY_START_INDEX], PyLong_FromSsize_t(PyList_GET_SIZE(out))) < 0 ||
        set_slot(conn, co_off[CO_PLACEHOLDERS], PyLong_FromLongLong(placeholders + 1)) < 0) {
        Py_DECREF(head);
        return -1;
    }
    set_slot(self, cy_off[CY_START_HEAD], head);
    set_slot(self, cy_off[CY_FINAL], Py_NewRef(st_complete));
    set_slot(self, cy_off[CY_BODY_SENT], Py_NewRef(Py_False));
    set_slot(self, cy_off[CY_IN_RING], Py_NewRef(Py_False));
    set_slot(self, cy_off[CY_HEAD_HELD], Py_NewRef(Py_False));
    set_slot(self, cy_off[CY_STATE], Py_NewRef(st_started));
    if (PyList_Append(out, self) < 0) return -1;
    return schedule_flush(conn) < 0 ? -1 : 1;
}

/* send()'s common case for a final body: into the held RESPONSE_START, then out
 * (Connection.flush_sent), and run()'s wait for it ended. 1 done, 0 not this case, -1 error. */
static int fast_body(PyObject *self, PyObject *conn, PyObject *message) {
    PyObject *body = get(message, s_body, empty_bytes);
    if (body == NULL) return -1;
    if (!PyBytes_CheckExact(body)) return 0;
    PyObject *more = get(message, s_more_body, Py_False);
    if (more != Py_False) return more == NULL ? -1 : 0; /* more to come (or not a bool): in Python */
    Py_ssize_t n = PyBytes_GET_SIZE(body);
    long long window, max_piece, max_frame, placeholders, index;
    PyObject *head = SLOT(self, cy_off[CY_START_HEAD]), *final = SLOT(self, cy_off[CY_FINAL]),
             *out = SLOT(conn, co_off[CO_OUT]);
    if (!slot_int(self, cy_off[CY_SEND_WINDOW], &window) || !slot_int(conn, co_off[CO_MAX_PIECE], &max_piece) ||
        !slot_int(conn, co_off[CO_MAX_FRAME], &max_frame) || !slot_int(conn, co_off[CO_PLACEHOLDERS], &placeholders) ||
        !slot_int(self, cy_off[CY_START_INDEX], &index) || slot_bool(conn, co_off[CO_WRITE_PAUSED]) != 0 ||
        head == NULL || !PyBytes_CheckExact(head) || final == NULL || out == NULL || !PyList_CheckExact(out))
        return 0;
    Py_ssize_t hn = PyBytes_GET_SIZE(head);
    /* send()'s inlined case (under 256 bytes, with room for any such body), or _emit's (with room
     * for this one beside the head: its slack is 6); else the start goes alone, in Python */
    int inlined = n < 256 && hn + 258 <= max_frame;
    if (n > window || n > max_piece || n >= ring_min_piece || (!inlined && hn + n + 6 > max_frame) || index < 0 ||
        index >= PyList_GET_SIZE(out) || PyList_GET_ITEM(out, index) != self)
        return 0;
    /* the whole RESPONSE_START: length, head, bin body, false */
    Py_ssize_t bin = bin_header_size(n), payload = hn + bin + n + 1;
    PyObject *frame = PyBytes_FromStringAndSize(NULL, 4 + payload);
    if (frame == NULL) return -1;
    unsigned char *w = put_be((unsigned char *)PyBytes_AS_STRING(frame), (uint64_t)payload, 4);
    memcpy(w, PyBytes_AS_STRING(head), (size_t)hn);
    w = put_bin(w + hn, body);
    *w = 0xc2;
    if (!inlined) { /* (_emit's marks) */
        set_slot(self, cy_off[CY_BODY_SENT], Py_NewRef(Py_True));
        set_slot(self, cy_off[CY_HEAD_HELD], Py_NewRef(Py_False));
    }
    if (set_slot(self, cy_off[CY_SEND_WINDOW], PyLong_FromLongLong(window - n)) < 0 ||
        set_slot(conn, co_off[CO_PLACEHOLDERS], PyLong_FromLongLong(placeholders - 1)) < 0) {
        Py_DECREF(frame);
        return -1;
    }
    set_slot(self, cy_off[CY_STATE], Py_NewRef(final));
    set_slot(self, cy_off[CY_START_INDEX], Py_NewRef(Py_None));
    PyList_SetItem(out, index, frame); /* (steals frame; releases the list's reference to self) */
    /* Connection.flush_sent(self) */
    PyObject *early = SLOT(conn, co_off[CO_WROTE_EARLY]);
    if (early != NULL && early != Py_None && early != self) {
        if (schedule_flush(conn) < 0) return -1;
    } else {
        set_slot(conn, co_off[CO_WROTE_EARLY], Py_NewRef(self));
        PyObject *r = PyObject_CallMethodNoArgs(conn, s_write_out);
        if (r == NULL) return -1;
        Py_DECREF(r);
        if (schedule_flush(conn) < 0) return -1;
    }
    /* run()'s wait for the response, if it waits (the app's task receiving while it sends) */
    PyObject *waiter = SLOT(self, cy_off[CY_WAITER]);
    if (waiter != NULL && waiter != Py_None) {
        Py_INCREF(waiter);
        PyObject *done = PyObject_CallMethodNoArgs(waiter, s_done);
        int d = done == NULL ? -1 : PyObject_IsTrue(done);
        Py_XDECREF(done);
        if (d == 0) {
            PyObject *r = PyObject_CallMethodOneArg(waiter, s_set_result, Py_None);
            d = r == NULL ? -1 : 1;
            Py_XDECREF(r);
        }
        Py_DECREF(waiter);
        if (d < 0) return -1;
    }
    return 1;
}

static PyObject *fast_send(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "fast_send(cycle, message)");
        return NULL;
    }
    PyObject *self = args[0], *message = args[1];
    if (cycle_type == NULL || !PyObject_TypeCheck(self, cycle_type) || !PyDict_CheckExact(message))
        Py_RETURN_FALSE;
    PyObject *conn = SLOT(self, cy_off[CY_CONN]), *state = SLOT(self, cy_off[CY_STATE]);
    if (conn == NULL || !PyObject_TypeCheck(conn, conn_type) || state == NULL ||
        slot_bool(self, cy_off[CY_DISCONNECTED]) != 0)
        Py_RETURN_FALSE;
    PyObject *type = get(message, k_type, NULL);
    if (type == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_FALSE;
    }
    int r = 0;
    Py_INCREF(self); /* (the output list's reference to it goes in fast_body) */
    Py_INCREF(conn);
    if (state == st_not_started) {
        if (same_str(type, s_start_type)) r = fast_start(self, conn, message);
    } else if (state == st_started) {
        if (same_str(type, s_body_type)) r = fast_body(self, conn, message);
    }
    Py_DECREF(conn);
    Py_DECREF(self);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

static PyObject *new_cycle(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "new_cycle(conn, frame)");
        return NULL;
    }
    PyObject *conn = args[0], *f = args[1];
    if (cycle_type == NULL || !PyObject_TypeCheck(conn, conn_type) || !PyTuple_CheckExact(f) ||
        PyTuple_GET_SIZE(f) != 15)
        Py_RETURN_NONE;
    PyObject *sid = PyTuple_GET_ITEM(f, 1), *flags = PyTuple_GET_ITEM(f, 12), *body = PyTuple_GET_ITEM(f, 13),
             *more = PyTuple_GET_ITEM(f, 14);
    long long conn_window, fl, sid_value;
    if (!PyLong_CheckExact(sid) || !PyLong_CheckExact(flags) || !PyBytes_CheckExact(body) || !PyBool_Check(more) ||
        !slot_int(conn, co_off[CO_WINDOW], &conn_window))
        Py_RETURN_NONE;
    fl = PyLong_AsLongLong(flags);
    sid_value = PyLong_AsLongLong(sid);
    if ((fl == -1 || sid_value == -1) && PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (sid_value < 0) Py_RETURN_NONE;
    long long window = fl & expect_continue ? 0 : conn_window;
    window -= PyBytes_GET_SIZE(body);
    if (window < 0) Py_RETURN_NONE; /* (Python refuses it) */
    long long send_window = conn_window;
    if (fl & small_window_flag && small_window < send_window) send_window = small_window;
    unsigned char enc[9];
    PyObject *sid_enc = PyBytes_FromStringAndSize((const char *)enc, put_uint(enc, (uint64_t)sid_value) - enc);
    if (sid_enc == NULL) return NULL;
    PyObject *self = cycle_type->tp_alloc(cycle_type, 0);
    if (self == NULL) {
        Py_DECREF(sid_enc);
        return NULL;
    }
    /* In the order of RequestCycle.__init__ and _init_stream_state. */
    const int which[] = {CY_CONN, CY_FRAME, CY_SID, CY_SID_ENC, CY_FLAGS, CY_REQ_WINDOW, CY_BODY, CY_MORE_BODY,
                         CY_CHUNKS, CY_REQ_DONE, CY_SCOPE, CY_TASK, CY_UNGRANTED, CY_WAITER, CY_STATE, CY_CUT,
                         CY_SEND_WINDOW, CY_START_HEAD, CY_START_INDEX, CY_CREDIT_WAITER, CY_DISCONNECTED, CY_ERROR,
                         CY_CANCEL_REASON};
    PyObject *values[] = {
        Py_NewRef(conn), Py_NewRef(f), Py_NewRef(sid), sid_enc, Py_NewRef(flags), PyLong_FromLongLong(window),
        Py_NewRef(body), Py_NewRef(more), Py_NewRef(Py_None), PyBool_FromLong(more == Py_False),
        Py_NewRef(Py_None), Py_NewRef(Py_None), PyLong_FromLong(0), Py_NewRef(Py_None), Py_NewRef(st_not_started),
        Py_NewRef(Py_False), PyLong_FromLongLong(send_window), Py_NewRef(empty_bytes), Py_NewRef(Py_None),
        Py_NewRef(Py_None), Py_NewRef(Py_False), Py_NewRef(Py_None), Py_NewRef(Py_None),
    };
    int n = (int)(sizeof which / sizeof which[0]), failed = 0;
    for (int i = 0; i < n; i++) {
        if (failed || values[i] == NULL) {
            failed = 1;
            Py_XDECREF(values[i]);
        } else {
            set_slot(self, cy_off[which[i]], values[i]);
        }
    }
    if (failed) {
        Py_DECREF(self);
        return NULL;
    }
    return self;
}

static PyObject *open_requests(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyLong_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "open_requests(conn, data, pos: int, task_type)");
        return NULL;
    }
    PyObject *conn = args[0], *task_type = args[3];
    Py_ssize_t pos = PyLong_AsSsize_t(args[2]), start = pos;
    if (pos == -1 && PyErr_Occurred()) return NULL;
    if (cycle_type == NULL || !PyObject_TypeCheck(conn, conn_type)) return Py_NewRef(args[2]);
    PyObject *streams = SLOT(conn, co_off[CO_STREAMS]), *loop = SLOT(conn, co_off[CO_LOOP]);
    long long max_frame;
    if (streams == NULL || !PyDict_CheckExact(streams) || loop == NULL ||
        !slot_int(conn, co_off[CO_MAX_FRAME], &max_frame) || slot_bool(conn, co_off[CO_HELLO_RECEIVED]) != 1)
        return Py_NewRef(args[2]);
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *data = (const unsigned char *)view.buf;
    Py_ssize_t n = view.len;
    Py_INCREF(conn);
    Py_INCREF(streams);
    Py_INCREF(loop);
    int failed = 0;
    while (pos >= 0 && n - pos >= 4 + 2) {
        uint64_t length = be(data + pos, 4);
        Py_ssize_t end = pos + 4 + (Py_ssize_t)length;
        /* HTTP_REQUEST without the tls item: a fixarray of 15, type 2 */
        if (length < 2 || (long long)length > max_frame || end > n || data[pos + 4] != 0x9f || data[pos + 5] != 0x02 ||
            slot_bool(conn, co_off[CO_SHUTTING_DOWN]) != 0)
            break;
        PyObject *f = decode_range(data + pos + 4, (Py_ssize_t)length);
        if (f == NULL) {
            failed = PyErr_Occurred() != NULL;
            break;
        }
        PyObject *sid = PyTuple_GET_ITEM(f, 1);
        int open = PyDict_Contains(streams, sid);
        PyObject *cycle = NULL;
        if (open == 0) {
            PyObject *call[2] = {conn, f};
            cycle = new_cycle(module, call, 2);
        }
        Py_DECREF(f);
        if (cycle == NULL || cycle == Py_None) { /* (an error, or a frame for the Python code) */
            failed = open < 0 || PyErr_Occurred() != NULL;
            Py_XDECREF(cycle);
            break;
        }
        PyObject *coro = NULL, *task = NULL;
        if (PyDict_SetItem(streams, SLOT(cycle, cy_off[CY_SID]), cycle) == 0 &&
            (coro = PyObject_CallMethodNoArgs(cycle, s_run)) != NULL) {
            if (task_type != Py_None) {
                PyObject *call[2] = {coro, loop};
                task = PyObject_Vectorcall(task_type, call, 1, kw_loop);
            } else {
                task = PyObject_CallMethodOneArg(loop, s_create_task, coro);
            }
        }
        Py_XDECREF(coro);
        if (task == NULL) {
            Py_DECREF(cycle);
            failed = 1;
            break;
        }
        set_slot(cycle, cy_off[CY_TASK], task);
        Py_DECREF(cycle);
        pos = end;
    }
    Py_DECREF(loop);
    Py_DECREF(streams);
    Py_DECREF(conn);
    PyBuffer_Release(&view);
    if (failed) return NULL;
    return pos == start ? Py_NewRef(args[2]) : PyLong_FromSsize_t(pos);
}

static PyObject *start_app(PyObject *module, PyObject *self) {
    if (cycle_type == NULL || !PyObject_TypeCheck(self, cycle_type)) {
        PyErr_SetString(PyExc_TypeError, "start_app(cycle): a RequestCycle (after bind_cycle)");
        return NULL;
    }
    PyObject *conn = SLOT(self, cy_off[CY_CONN]), *f = SLOT(self, cy_off[CY_FRAME]);
    if (conn == NULL || !PyObject_TypeCheck(conn, conn_type)) {
        PyErr_SetString(PyExc_TypeError, "start_app(cycle): the cycle's conn is not a Connection");
        return NULL;
    }
    Py_INCREF(conn);
    PyObject *scope = NULL, *state = SLOT(conn, co_off[CO_STATE]), *extensions = NULL;
    long long flags;
    if (Py_TYPE(self) == cycle_type && f != NULL && PyTuple_CheckExact(f) && PyTuple_GET_SIZE(f) == 15 &&
        state != NULL && PyDict_Check(state) &&
        PyLong_CheckExact(PyTuple_GET_ITEM(f, 12)) && (flags = PyLong_AsLongLong(PyTuple_GET_ITEM(f, 12))) >= 0 &&
        !(flags & FLAG_TLS)) {
        /* RequestCycle._make_scope without the tls extension (a subclass's is its own) */
        PyObject *names = PyList_GET_ITEM(ext_keys, flags & ext_flags);
        extensions = PyDict_New();
        for (Py_ssize_t i = 0; extensions != NULL && i < PyTuple_GET_SIZE(names); i++)
            if (set_item(extensions, PyTuple_GET_ITEM(names, i), PyDict_New()) < 0) Py_CLEAR(extensions);
        if (extensions != NULL) {
            Py_INCREF(f);
            scope = build_http_scope(f, state, extensions);
            Py_DECREF(extensions);
            if (scope != NULL) {
                set_slot(self, cy_off[CY_FRAME], Py_NewRef(Py_None));
                set_slot(self, cy_off[CY_SCOPE], Py_NewRef(scope));
            }
            Py_DECREF(f);
        }
    } else {
        PyErr_Clear(); /* (a flags value that does not fit: the Python code's) */
        scope = PyObject_CallMethodNoArgs(self, s_make_scope);
    }
    PyObject *result = NULL, *receive = NULL, *send = NULL, *app = SLOT(conn, co_off[CO_APP]);
    if (scope != NULL && app != NULL && (receive = PyObject_GetAttr(self, s_receive)) != NULL &&
        (send = PyObject_GetAttr(self, s_send)) != NULL) {
        PyObject *call[3] = {scope, receive, send};
        Py_INCREF(app);
        result = PyObject_Vectorcall(app, call, 3, NULL);
        Py_DECREF(app);
    } else if (scope != NULL && app == NULL) {
        PyErr_SetString(PyExc_AttributeError, "app");
    }
    Py_XDECREF(send);
    Py_XDECREF(receive);
    Py_XDECREF(scope);
    Py_DECREF(conn);
    return result;
}

static PyObject *end_ok(PyObject *module, PyObject *self) {
    if (cycle_type == NULL || !PyObject_TypeCheck(self, cycle_type)) Py_RETURN_FALSE;
    PyObject *conn = SLOT(self, cy_off[CY_CONN]), *sid = SLOT(self, cy_off[CY_SID]),
             *sid_enc = SLOT(self, cy_off[CY_SID_ENC]), *error = SLOT(self, cy_off[CY_ERROR]);
    if (SLOT(self, cy_off[CY_STATE]) != st_complete || error != Py_None || conn == NULL ||
        !PyObject_TypeCheck(conn, conn_type) || sid == NULL || sid_enc == NULL || !PyBytes_CheckExact(sid_enc) ||
        PyBytes_GET_SIZE(sid_enc) > 9)
        Py_RETURN_FALSE;
    PyObject *streams = SLOT(conn, co_off[CO_STREAMS]), *out = SLOT(conn, co_off[CO_OUT]);
    int closed = slot_bool(conn, co_off[CO_CLOSED]);
    if (streams == NULL || !PyDict_CheckExact(streams) || out == NULL || !PyList_CheckExact(out) || closed < 0)
        Py_RETURN_FALSE;
    Py_INCREF(conn);
    int r = 0;
    /* conn.streams.pop(sid, None) */
    int present = PyDict_Contains(streams, sid);
    if (present < 0 || (present && PyDict_DelItem(streams, sid) < 0)) r = -1;
    if (r == 0) set_slot(self, cy_off[CY_DISCONNECTED], Py_NewRef(Py_True));
    if (r == 0 && !closed) {
        /* END: 94 15 sid 00 a0 (outcome OK, message "") */
        Py_ssize_t k = PyBytes_GET_SIZE(sid_enc);
        unsigned char buf[4 + 2 + 9 + 2], *w = put_be(buf, (uint64_t)(4 + k), 4);
        *w++ = 0x94;
        *w++ = 0x15;
        memcpy(w, PyBytes_AS_STRING(sid_enc), (size_t)k);
        w += k;
        *w++ = 0x00;
        *w++ = 0xa0;
        PyObject *frame = PyBytes_FromStringAndSize((const char *)buf, w - buf);
        if (frame == NULL || PyList_Append(out, frame) < 0 || schedule_flush(conn) < 0) r = -1;
        Py_XDECREF(frame);
    }
    Py_DECREF(conn);
    if (r < 0) return NULL;
    Py_RETURN_TRUE;
}

/* The PyMemberDef offset of an object slot of cls (a __slots__ entry), or -1 with an error. */
static Py_ssize_t slot_offset(PyTypeObject *cls, const char *name) {
    PyObject *d = PyObject_GetAttrString((PyObject *)cls, name);
    if (d == NULL) return -1;
    Py_ssize_t off = -1;
    if (Py_IS_TYPE(d, &PyMemberDescr_Type) && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX)
        off = ((PyMemberDescrObject *)d)->d_member->offset;
    else
        PyErr_Format(PyExc_TypeError, "bind_cycle: %s.%s is not a __slots__ entry", cls->tp_name, name);
    Py_DECREF(d);
    return off;
}

/* constants[name] as an exact int; -1 with an error set if it is missing or not one. */
static int const_int(PyObject *constants, const char *name, long long *out) {
    PyObject *v = PyDict_GetItemString(constants, name);
    if (v == NULL || !PyLong_CheckExact(v)) {
        PyErr_Format(PyExc_TypeError, "bind_cycle: constants['%s'] must be an int", name);
        return -1;
    }
    *out = PyLong_AsLongLong(v);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *bind_cycle(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyType_Check(args[0]) || !PyType_Check(args[1]) || !PyDict_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "bind_cycle(RequestCycle, Connection, constants: dict)");
        return NULL;
    }
    PyObject *constants = args[2];
    Py_ssize_t cy[CY_N], co[CO_N];
    for (int i = 0; i < CY_N; i++)
        if ((cy[i] = slot_offset((PyTypeObject *)args[0], cy_names[i])) < 0) return NULL;
    for (int i = 0; i < CO_N; i++)
        if ((co[i] = slot_offset((PyTypeObject *)args[1], co_names[i])) < 0) return NULL;
    long long c[7], unused;
    const char *names[7] = {"FLAG_TRAILERS_ALLOWED", "RING_MIN_PIECE", "FLAG_EXPECT_CONTINUE", "FLAG_SMALL_WINDOW",
                            "SMALL_WINDOW", "EXT_FLAGS", "FLAG_TLS"};
    for (int i = 0; i < 7; i++)
        if (const_int(constants, names[i], &c[i]) < 0) return NULL;
    PyObject *states[3], *keys = PyDict_GetItemString(constants, "EXT_KEYS");
    const char *state_names[3] = {"NOT_STARTED", "STARTED", "COMPLETE"};
    for (int i = 0; i < 3; i++) {
        if (const_int(constants, state_names[i], &unused) < 0) return NULL;
        states[i] = PyDict_GetItemString(constants, state_names[i]);
    }
    if (keys == NULL || !PyList_CheckExact(keys) || PyList_GET_SIZE(keys) != c[5] + 1 || c[6] != FLAG_TLS) {
        PyErr_SetString(PyExc_TypeError, "bind_cycle: constants['EXT_KEYS'] must be a list of EXT_FLAGS + 1 tuples");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++)
        if (!PyTuple_CheckExact(PyList_GET_ITEM(keys, i))) {
            PyErr_SetString(PyExc_TypeError, "bind_cycle: constants['EXT_KEYS'] must be a list of tuples");
            return NULL;
        }
    memcpy(cy_off, cy, sizeof cy);
    memcpy(co_off, co, sizeof co);
    trailers_allowed = c[0];
    ring_min_piece = c[1];
    expect_continue = c[2];
    small_window_flag = c[3];
    small_window = c[4];
    ext_flags = c[5];
    Py_XSETREF(st_not_started, Py_NewRef(states[0]));
    Py_XSETREF(st_started, Py_NewRef(states[1]));
    Py_XSETREF(st_complete, Py_NewRef(states[2]));
    Py_XSETREF(ext_keys, Py_NewRef(keys));
    Py_XSETREF(conn_type, (PyTypeObject *)Py_NewRef(args[1]));
    Py_XSETREF(cycle_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_RETURN_NONE;
}

static int init_send_constants(void) {
#define INTERN(var, text) \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return -1
    INTERN(s_status, "status");
    INTERN(s_headers, "headers");
    INTERN(s_trailers, "trailers");
    INTERN(s_body, "body");
    INTERN(s_more_body, "more_body");
    INTERN(s_start_type, "http.response.start");
    INTERN(s_body_type, "http.response.body");
    INTERN(s_schedule_flush, "_schedule_flush");
    INTERN(s_write_out, "_write_out");
    INTERN(s_done, "done");
    INTERN(s_set_result, "set_result");
    INTERN(s_make_scope, "_make_scope");
    INTERN(s_receive, "receive");
    INTERN(s_send, "send");
    INTERN(s_run, "run");
    INTERN(s_create_task, "create_task");
#undef INTERN
    if ((kw_loop = Py_BuildValue("(s)", "loop")) == NULL) return -1;
    if ((empty_bytes = PyBytes_FromStringAndSize(NULL, 0)) == NULL) return -1;
    if ((empty_tuple = PyTuple_New(0)) == NULL) return -1;
    return 0;
}

static PyMethodDef methods[] = {
    {"decode_fast", (PyCFunction)(void (*)(void))decode_fast, METH_FASTCALL,
     "decode_fast(payload) or decode_fast(buffer, start, end) -> tuple | None: the frame payload (or\n"
     "buffer[start:end], not copied) as python_worker.protocol.decode returns it, for the hot-path frames\n"
     "that pass its checks; None for anything else (decode it with the Python code)."},
    {"pack_headers", (PyCFunction)(void (*)(void))pack_headers, METH_FASTCALL,
     "pack_headers(headers, head, tail) -> bytes | None: head + the canonical msgpack of headers (a list or\n"
     "tuple of (name, value) tuples or lists of two bytes) + tail, as head + msgpack.packb(headers,\n"
     "use_bin_type=True) + tail; None when headers are not all such pairs, with a token for a name and no\n"
     "control character but HTAB in a value (check them in Python)."},
    {"ws_send_parts", (PyCFunction)(void (*)(void))ws_send_parts, METH_FASTCALL,
     "ws_send_parts(sid_enc, data) -> (head, payload, size): python_worker.protocol.ws_send_parts in C."},
    {"response_body_ring", (PyCFunction)(void (*)(void))response_body_ring, METH_FASTCALL,
     "response_body_ring(sid_enc, position, length, more_body) -> bytes:\n"
     "python_worker.protocol.encode_response_body_ring in C (sid_enc: the stream id's encoding)."},
    {"http_scope", (PyCFunction)(void (*)(void))http_scope, METH_FASTCALL,
     "http_scope(frame, state, extensions) -> dict: RequestCycle._make_scope's scope, from a decoded\n"
     "HTTP_REQUEST tuple, with a copy of state and the extensions dict as given."},
    {"weakset_hooks", (PyCFunction)weakset_hooks, METH_O,
     "weakset_hooks(wset) -> (add, remove): WeakSet.add and WeakSet's _remove callback for this set, in C, to\n"
     "set as its instance attributes (python_worker.worker speeds up asyncio's task registry with them)."},
    {"fast_send", (PyCFunction)(void (*)(void))fast_send, METH_FASTCALL,
     "fast_send(cycle, message) -> bool: RequestCycle.send for a plain http.response.start, or a final\n"
     "http.response.body that goes with the held start; False, with nothing done, for anything else."},
    {"new_cycle", (PyCFunction)(void (*)(void))new_cycle, METH_FASTCALL,
     "new_cycle(conn, frame) -> RequestCycle | None: RequestCycle(conn, frame) for an HTTP_REQUEST without\n"
     "the tls item; None, with nothing done, for anything else."},
    {"open_requests", (PyCFunction)(void (*)(void))open_requests, METH_FASTCALL,
     "open_requests(conn, data, pos, task_type) -> int: opens the streams of the HTTP_REQUEST frames (without\n"
     "the tls item) at data[pos:] as Connection.data_received does (task_type(coro, loop=conn.loop), or\n"
     "conn.loop.create_task(coro) if None) and returns the position of the first frame it leaves."},
    {"start_app", (PyCFunction)start_app, METH_O,
     "start_app(cycle) -> awaitable: conn.app(cycle._make_scope(), cycle.receive, cycle.send)."},
    {"end_ok", (PyCFunction)end_ok, METH_O,
     "end_ok(cycle) -> bool: run()'s END OK after a complete response; False, with nothing done, otherwise."},
    {"bind_cycle", (PyCFunction)(void (*)(void))bind_cycle, METH_FASTCALL,
     "bind_cycle(RequestCycle, Connection, constants): the classes whose slots new_cycle, start_app, fast_send\n"
     "and end_ok use, and cycle.py's constants (NOT_STARTED, STARTED, COMPLETE, FLAG_TRAILERS_ALLOWED,\n"
     "RING_MIN_PIECE, FLAG_EXPECT_CONTINUE, FLAG_SMALL_WINDOW, SMALL_WINDOW, EXT_FLAGS, EXT_KEYS, FLAG_TLS)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "python_worker._speedups",
    "Hot-path pieces of python_worker.protocol's codec, in C (optional).", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    init_field_tables();
    if (init_scope_constants() < 0 || init_hooks() < 0 || init_send_constants() < 0) return NULL;
    return PyModule_Create(&module);
}
