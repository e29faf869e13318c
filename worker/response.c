/*
 * response.c - an app's return value -> HTTP/1.1 response bytes in chunks.
 *
 * Two phases. prepare() turns the Python value into a plain rm_reply_t of
 * pointers and makes every check that can fail (status range, header syntax,
 * body type, JSON encoding). write_reply() is C only: the head in one pass,
 * then the body, into chunks this lane owns, pushing each chunk that fills up.
 * Nothing is written unless prepare() succeeded, so a bad value becomes a 500
 * and never half a response or a split one.
 *
 * The head is, in order: status line, Server, Date, Content-Length,
 * Content-Type, the app's headers, Connection, blank line. Header rules:
 *   - Content-Length is ours (the body's length) for a body of known length;
 *     an app's is dropped. For a streamed body the app's Content-Length is
 *     kept and enforced (exactly that many bytes, or the stream is cut).
 *   - Transfer-Encoding from the app is dropped: framing is the server's.
 *   - Connection is ours: "close" when the request was not keep-alive or the
 *     app's Connection header lists "close" (the app's header itself is dropped);
 *     "keep-alive" for a keep-alive HTTP/1.0 request.
 *   - A Content-Type, Server or Date header from the app replaces ours.
 *   - 1xx, 204 and 304 responses carry no body, no Content-Length and no
 *     default Content-Type. HEAD responses keep Content-Length, drop the body.
 *
 * Streamed bodies: an iterable (a generator, an iterator, any iterable
 * Response.body that is not str or bytes-like) goes out piece by piece, each
 * piece pushed before the next is asked for, within the send window
 * (stream.h). Framing: the app's Content-Length when it gave one, else
 * Transfer-Encoding: chunked for HTTP/1.1 and a close-delimited body for
 * HTTP/1.0; a list or tuple of bytes is complete when returned and gets its
 * total as Content-Length. HEAD and bodyless statuses never iterate it.
 * Pieces must be bytes-like. Whatever goes wrong (the iterator raises, yields
 * a str, breaks its Content-Length) is a 500 while nothing was pushed, and
 * afterwards a closed connection without the chunked terminator, so the
 * client sees the body truncated, never a wrong framing. close() of the
 * iterable always runs before the final completion (PEP 3333's rule, kept for
 * native apps too).
 */
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define CT_TEXT "text/plain; charset=utf-8"
#define CT_OCTET "application/octet-stream"
#define CT_JSON "application/json"

typedef struct rm_hdr {
    const char *name, *value; /* valid while the reply's `keep` references live */
    size_t name_len, value_len;
} rm_hdr_t;

#define INLINE_HEADERS 16
#define INLINE_KEEP 40

typedef struct rm_reply {
    int status;
    const char *body; /* NULL with body_len 0 for none */
    size_t body_len;
    const char *ctype; /* Content-Type we add, NULL for none */
    size_t ctype_len;
    bool ctype_default; /* ctype is our guess, not the app's */
    bool app_ctype, app_server, app_date, app_close;
    rm_hdr_t *hdrs; /* hdr_inline, or PyMem when more were needed */
    size_t nhdrs, hdr_cap;
    PyObject **keep; /* strong references that keep every pointer above valid */
    size_t nkeep, keep_cap;
    Py_buffer view; /* the body's buffer when has_view */
    bool has_view;
    /* A streamed body: both NULL otherwise. Strong references. */
    PyObject *iterable; /* what the app gave; its close() is called */
    PyObject *iter;     /* iter(iterable) */
    /* The app's Content-Length header (enforced for a streamed body only). */
    const char *app_length_text; /* NULL when the app gave none */
    size_t app_length_len;
    unsigned app_lengths; /* how many it gave */
    rm_hdr_t hdr_inline[INLINE_HEADERS];
    PyObject *keep_inline[INLINE_KEEP];
} rm_reply_t;

static void reply_init(rm_reply_t *r)
{
    r->status = 200;
    r->body = NULL;
    r->body_len = 0;
    r->ctype = NULL;
    r->ctype_len = 0;
    r->ctype_default = false;
    r->app_ctype = r->app_server = r->app_date = r->app_close = false;
    r->hdrs = r->hdr_inline;
    r->nhdrs = 0;
    r->hdr_cap = INLINE_HEADERS;
    r->keep = r->keep_inline;
    r->nkeep = 0;
    r->keep_cap = INLINE_KEEP;
    r->has_view = false;
    r->iterable = r->iter = NULL;
    r->app_length_text = NULL;
    r->app_length_len = 0;
    r->app_lengths = 0;
}

static void reply_clear(rm_reply_t *r)
{
    if (r->has_view)
        PyBuffer_Release(&r->view);
    r->has_view = false;
    Py_CLEAR(r->iter);
    Py_CLEAR(r->iterable);
    for (size_t i = 0; i < r->nkeep; i++)
        Py_DECREF(r->keep[i]);
    if (r->keep != r->keep_inline)
        PyMem_Free(r->keep);
    if (r->hdrs != r->hdr_inline)
        PyMem_Free(r->hdrs);
    r->nkeep = r->nhdrs = 0;
}

/* Grow an inline array onto the heap, doubling. */
static void *grow(void *items, void *inline_items, size_t *cap, size_t size)
{
    size_t n = *cap * 2;
    void *bigger = PyMem_Malloc(n * size);
    if (bigger == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(bigger, items, *cap * size);
    if (items != inline_items)
        PyMem_Free(items);
    *cap = n;
    return bigger;
}

/* Take a new reference to `obj` for the reply's lifetime. */
static int keep(rm_reply_t *r, PyObject *obj)
{
    if (r->nkeep == r->keep_cap) {
        PyObject **k = grow(r->keep, r->keep_inline, &r->keep_cap, sizeof(*k));
        if (k == NULL)
            return -1;
        r->keep = k;
    }
    r->keep[r->nkeep++] = Py_NewRef(obj);
    return 0;
}

/* ---- checks ---------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int bad(char *why, size_t why_len, const char *fmt,
                                                     ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* A Python exception made the value unusable: print it, say what failed. */
static int bad_exc(char *why, size_t why_len, const char *what)
{
    int n = snprintf(why, why_len, "%s: ", what);
    if (n < 0 || (size_t)n >= why_len)
        n = 0;
    rm_host_take_exception(why + n, why_len - (size_t)n, true);
    return -EINVAL;
}

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)p[i]))
            return false;
    return true;
}

/* CR, LF or NUL in a value would split the response or truncate it. */
static bool value_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0')
            return false;
    return true;
}

static bool name_is(const char *p, size_t n, const char *lower)
{
    return n == strlen(lower) && strncasecmp(p, lower, n) == 0;
}

bool rm_header_has_token(const char *p, size_t n, const char *token)
{
    size_t tlen = strlen(token);
    size_t i = 0;
    while (i < n) {
        while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == ','))
            i++;
        size_t start = i;
        while (i < n && p[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (p[end - 1] == ' ' || p[end - 1] == '\t'))
            end--;
        if (end - start == tlen && strncasecmp(p + start, token, tlen) == 0)
            return true;
    }
    return false;
}

/* A header name or value: str (latin-1) or bytes. The pointer stays valid
 * through the reply's `keep` list. */
static int header_text(rm_reply_t *r, PyObject *obj, const char **p, size_t *n, const char *what,
                       char *why, size_t why_len)
{
    Py_ssize_t len;

    if (PyUnicode_Check(obj)) {
        if (PyUnicode_IS_ASCII(obj)) {
            *p = PyUnicode_DATA(obj); /* compact ASCII: the bytes themselves */
            len = PyUnicode_GET_LENGTH(obj);
        } else {
            PyObject *enc = PyUnicode_AsLatin1String(obj);
            if (enc == NULL)
                return bad_exc(why, why_len, what);
            int rc = keep(r, enc);
            Py_DECREF(enc);
            if (rc < 0)
                return bad_exc(why, why_len, what);
            *p = PyBytes_AS_STRING(enc);
            *n = (size_t)PyBytes_GET_SIZE(enc);
            return 0;
        }
    } else if (PyBytes_Check(obj)) {
        *p = PyBytes_AS_STRING(obj);
        len = PyBytes_GET_SIZE(obj);
    } else {
        return bad(why, why_len, "%s must be str or bytes, not %s", what, Py_TYPE(obj)->tp_name);
    }
    if (keep(r, obj) < 0)
        return bad_exc(why, why_len, what);
    *n = (size_t)len;
    return 0;
}

static int add_header(rm_reply_t *r, PyObject *name_obj, PyObject *value_obj, char *why,
                      size_t why_len)
{
    rm_hdr_t h;

    if (header_text(r, name_obj, &h.name, &h.name_len, "header name", why, why_len) < 0 ||
        header_text(r, value_obj, &h.value, &h.value_len, "header value", why, why_len) < 0)
        return -EINVAL;
    if (!is_token(h.name, h.name_len))
        return bad(why, why_len, "header name '%.*s' is not a token", (int)h.name_len, h.name);
    if (!value_ok(h.value, h.value_len))
        return bad(why, why_len, "header %.*s: value holds CR, LF or NUL", (int)h.name_len, h.name);

    if (name_is(h.name, h.name_len, "content-length")) {
        r->app_length_text = h.value;
        r->app_length_len = h.value_len;
        r->app_lengths++;
        return 0;
    }
    if (name_is(h.name, h.name_len, "transfer-encoding"))
        return 0;
    if (name_is(h.name, h.name_len, "connection")) {
        r->app_close = r->app_close || rm_header_has_token(h.value, h.value_len, "close");
        return 0;
    }
    if (name_is(h.name, h.name_len, "content-type"))
        r->app_ctype = true;
    else if (name_is(h.name, h.name_len, "server"))
        r->app_server = true;
    else if (name_is(h.name, h.name_len, "date"))
        r->app_date = true;

    if (r->nhdrs == r->hdr_cap) {
        rm_hdr_t *more = grow(r->hdrs, r->hdr_inline, &r->hdr_cap, sizeof(*more));
        if (more == NULL)
            return bad_exc(why, why_len, "headers");
        r->hdrs = more;
    }
    r->hdrs[r->nhdrs++] = h;
    return 0;
}

/* headers: a dict, a list or tuple of (name, value) pairs, or another mapping.
 * Without a GIL another thread of the app could change the container while we
 * read it: the dict or list is read inside a critical section on it (each
 * name and value is kept by add_header before the section ends), a list
 * pair is copied into a tuple first. */
static int add_headers(rm_reply_t *r, PyObject *headers, char *why, size_t why_len)
{
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    int rc = 0;

    if (headers == Py_None)
        return 0;
    if (PyDict_Check(headers)) {
        RM_BEGIN_CRITICAL_SECTION(headers);
        while (rc == 0 && PyDict_Next(headers, &pos, &name, &value))
            if (add_header(r, name, value, why, why_len) < 0)
                rc = -EINVAL;
        RM_END_CRITICAL_SECTION();
        return rc;
    }
    if (!PyList_Check(headers) && !PyTuple_Check(headers)) {
        if (!PyMapping_Check(headers))
            return bad(why, why_len,
                       "Response.headers must be a dict or a list of (name, value) pairs, not %s",
                       Py_TYPE(headers)->tp_name);
        PyObject *items = PyMapping_Items(headers);
        if (items == NULL)
            return bad_exc(why, why_len, "Response.headers");
        rc = keep(r, items);
        Py_DECREF(items);
        if (rc < 0)
            return bad_exc(why, why_len, "Response.headers");
        headers = items;
    }
    PyObject *seq = headers;
    RM_BEGIN_CRITICAL_SECTION(seq);
    for (Py_ssize_t i = 0, n = PySequence_Fast_GET_SIZE(seq); rc == 0 && i < n; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *tuple = PyTuple_Check(pair)  ? Py_NewRef(pair)
                          : PyList_Check(pair) ? PyList_AsTuple(pair)
                                               : NULL;
        if (tuple == NULL && PyErr_Occurred())
            rc = bad_exc(why, why_len, "Response.headers");
        else if (tuple == NULL || PyTuple_GET_SIZE(tuple) != 2)
            rc = bad(why, why_len, "Response.headers[%zd] is not a (name, value) pair", i);
        else if (add_header(r, PyTuple_GET_ITEM(tuple, 0), PyTuple_GET_ITEM(tuple, 1), why,
                            why_len) < 0)
            rc = -EINVAL;
        Py_XDECREF(tuple);
    }
    RM_END_CRITICAL_SECTION();
    return rc;
}

static int body_str(rm_reply_t *r, PyObject *obj, char *why, size_t why_len)
{
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(obj, &n); /* cached in the str */
    if (p == NULL || keep(r, obj) < 0)
        return bad_exc(why, why_len, "response body");
    r->body = p;
    r->body_len = (size_t)n;
    return 0;
}

static int body_buffer(rm_reply_t *r, PyObject *obj, char *why, size_t why_len)
{
    if (PyObject_GetBuffer(obj, &r->view, PyBUF_SIMPLE) < 0)
        return bad_exc(why, why_len, "response body");
    r->has_view = true;
    r->body = r->view.buf;
    r->body_len = (size_t)r->view.len;
    return 0;
}

/* A streamed body: keep the iterable (for close()) and its iterator. */
static int body_iter(rm_reply_t *r, PyObject *obj, char *why, size_t why_len)
{
    r->iterable = Py_NewRef(obj);
    r->iter = PyObject_GetIter(obj);
    if (r->iter == NULL)
        return bad_exc(why, why_len, "iter() of the response body");
    return 0;
}

static bool is_iterable(PyObject *obj)
{
    return Py_TYPE(obj)->tp_iter != NULL || PySequence_Check(obj);
}

static void default_ctype(rm_reply_t *r, const char *ctype)
{
    r->ctype = ctype;
    r->ctype_len = strlen(ctype);
    r->ctype_default = true;
}

/* ringmaster.Response: body, status, headers, content_type. */
static int prepare_response(rm_reply_t *r, rm_pymod_state_t *st, PyObject *resp, char *why,
                            size_t why_len)
{
    PyObject *names[4] = {st->str_body, st->str_status, st->str_headers, st->str_content_type};
    PyObject *attrs[4];
    int overflow;

    for (int i = 0; i < 4; i++) {
        PyObject *a = PyObject_GetAttr(resp, names[i]);
        if (a == NULL || keep(r, a) < 0) {
            Py_XDECREF(a);
            return bad_exc(why, why_len, "Response");
        }
        attrs[i] = a;
        Py_DECREF(a); /* `keep` holds it */
    }
    PyObject *body = attrs[0], *status = attrs[1], *headers = attrs[2], *ctype = attrs[3];

    /* The body first: a streamed one is then closed whatever else is wrong. */
    if (body == Py_None) {
        default_ctype(r, CT_OCTET);
    } else if (PyUnicode_Check(body)) {
        if (body_str(r, body, why, why_len) < 0)
            return -EINVAL;
        default_ctype(r, CT_TEXT);
    } else if (PyObject_CheckBuffer(body)) {
        if (body_buffer(r, body, why, why_len) < 0)
            return -EINVAL;
        default_ctype(r, CT_OCTET);
    } else if (is_iterable(body)) {
        if (body_iter(r, body, why, why_len) < 0)
            return -EINVAL;
        default_ctype(r, CT_OCTET);
    } else {
        return bad(why, why_len,
                   "Response.body must be str, bytes-like or an iterable of bytes, not %s",
                   Py_TYPE(body)->tp_name);
    }

    if (!PyLong_Check(status))
        return bad(why, why_len, "Response.status must be an int, not %s",
                   Py_TYPE(status)->tp_name);
    long code = PyLong_AsLongAndOverflow(status, &overflow);
    if (code == -1 && PyErr_Occurred())
        return bad_exc(why, why_len, "Response.status");
    if (overflow || code < 100 || code > 999)
        return bad(why, why_len, "Response.status %ld is not in 100..999",
                   overflow ? (long)overflow * 1000 : code);
    r->status = (int)code;

    if (ctype != Py_None) {
        const char *p;
        size_t n;
        if (header_text(r, ctype, &p, &n, "Response.content_type", why, why_len) < 0)
            return -EINVAL;
        if (!value_ok(p, n))
            return bad(why, why_len, "Response.content_type holds CR, LF or NUL");
        r->ctype = p;
        r->ctype_len = n;
        r->ctype_default = false;
    }
    if (add_headers(r, headers, why, why_len) < 0)
        return -EINVAL;
    if (r->app_ctype)
        r->ctype = NULL;
    return 0;
}

/* json.dumps(obj, separators=(",", ":")); see setup_json in host.c. */
static PyObject *json_text(rm_pymod_state_t *st, PyObject *obj)
{
    if (st->json_chunks == NULL)
        return PyObject_CallOneArg(st->json_encode, obj);
    PyObject *zero = PyLong_FromLong(0); /* a cached small int */
    PyObject *args[2] = {obj, zero};
    PyObject *chunks = zero != NULL ? PyObject_Vectorcall(st->json_chunks, args, 2, NULL) : NULL;
    Py_XDECREF(zero);
    if (chunks == NULL)
        return NULL;
    PyObject *text = PyUnicode_Join(st->str_empty, chunks);
    Py_DECREF(chunks);
    return text;
}

static int prepare(rm_reply_t *r, rm_pymod_state_t *st, PyObject *result, char *why, size_t why_len)
{
    if (PyObject_TypeCheck(result, (PyTypeObject *)st->response_type))
        return prepare_response(r, st, result, why, why_len);
    if (PyBytes_Check(result) || PyByteArray_Check(result) || PyMemoryView_Check(result)) {
        default_ctype(r, CT_OCTET);
        return body_buffer(r, result, why, why_len);
    }
    if (PyUnicode_Check(result)) {
        default_ctype(r, CT_TEXT);
        return body_str(r, result, why, why_len);
    }
    if (PyDict_Check(result) || PyList_Check(result)) {
        PyObject *text = json_text(st, result);
        if (text == NULL)
            return bad_exc(why, why_len, "cannot encode the returned value as JSON");
        int rc = body_str(r, text, why, why_len);
        Py_DECREF(text);
        default_ctype(r, CT_JSON);
        return rc;
    }
    /* A tuple stays an error: it looks too much like (body, status). */
    if (!PyTuple_Check(result) && is_iterable(result)) {
        default_ctype(r, CT_OCTET);
        return body_iter(r, result, why, why_len);
    }
    return bad(why, why_len,
               "the app returned %s; expected ringmaster.Response, bytes, str, dict, list or an "
               "iterable of bytes",
               result == Py_None ? "None" : Py_TYPE(result)->tp_name);
}

/* ---- writing ----------------------------------------------------------------- */

/* Reason phrases of the registered codes a server sends (RFC 9110 and friends). */
static const char *const reasons[512] = {
    [100] = "Continue",
    [101] = "Switching Protocols",
    [103] = "Early Hints",
    [200] = "OK",
    [201] = "Created",
    [202] = "Accepted",
    [203] = "Non-Authoritative Information",
    [204] = "No Content",
    [205] = "Reset Content",
    [206] = "Partial Content",
    [207] = "Multi-Status",
    [300] = "Multiple Choices",
    [301] = "Moved Permanently",
    [302] = "Found",
    [303] = "See Other",
    [304] = "Not Modified",
    [307] = "Temporary Redirect",
    [308] = "Permanent Redirect",
    [400] = "Bad Request",
    [401] = "Unauthorized",
    [402] = "Payment Required",
    [403] = "Forbidden",
    [404] = "Not Found",
    [405] = "Method Not Allowed",
    [406] = "Not Acceptable",
    [407] = "Proxy Authentication Required",
    [408] = "Request Timeout",
    [409] = "Conflict",
    [410] = "Gone",
    [411] = "Length Required",
    [412] = "Precondition Failed",
    [413] = "Content Too Large",
    [414] = "URI Too Long",
    [415] = "Unsupported Media Type",
    [416] = "Range Not Satisfiable",
    [417] = "Expectation Failed",
    [418] = "I'm a teapot",
    [421] = "Misdirected Request",
    [422] = "Unprocessable Content",
    [423] = "Locked",
    [424] = "Failed Dependency",
    [425] = "Too Early",
    [426] = "Upgrade Required",
    [428] = "Precondition Required",
    [429] = "Too Many Requests",
    [431] = "Request Header Fields Too Large",
    [451] = "Unavailable For Legal Reasons",
    [500] = "Internal Server Error",
    [501] = "Not Implemented",
    [502] = "Bad Gateway",
    [503] = "Service Unavailable",
    [504] = "Gateway Timeout",
    [505] = "HTTP Version Not Supported",
    [507] = "Insufficient Storage",
    [508] = "Loop Detected",
    [511] = "Network Authentication Required",
};

static const char *reason_phrase(int status)
{
    const char *r = status >= 0 && status < 512 ? reasons[status] : NULL;
    return r != NULL ? r : "Unknown";
}

static bool status_bodyless(int status)
{
    return status < 200 || status == 204 || status == 304;
}

/* How the head frames the body that follows. */
typedef struct framing {
    int64_t length;       /* Content-Length to announce, -1 for none */
    bool chunked;         /* Transfer-Encoding: chunked */
    bool close_delimited; /* the body ends with the connection */
    bool packed;          /* pieces never wait on the app: fill chunks, push only full ones */
} framing_t;

static int write_head(rm_out_t *out, const rm_reply_t *r, uint32_t req_flags, uint8_t http_minor,
                      framing_t f)
{
    bool close = !(req_flags & RM_REQ_KEEP_ALIVE) || r->app_close || f.close_delimited;
    const char *reason = reason_phrase(r->status);
    char line[16];

    /* "HTTP/1.1 ddd Reason\r\n": status is 100..999, so three digits. */
    memcpy(line, "HTTP/1.1 ", 9);
    line[9] = (char)('0' + r->status / 100);
    line[10] = (char)('0' + r->status / 10 % 10);
    line[11] = (char)('0' + r->status % 10);
    line[12] = ' ';
    rm_out_put(out, line, 13);
    rm_out_put(out, reason, strlen(reason));
    RM_OUT_LIT(out, "\r\n");
    if (!r->app_server)
        RM_OUT_LIT(out, "Server: ringmaster\r\n");
    if (!r->app_date) {
        RM_OUT_LIT(out, "Date: ");
        rm_out_put(out, rm_http_date_get(&out->t->date), RM_HTTP_DATE_LEN);
        RM_OUT_LIT(out, "\r\n");
    }
    if (f.length >= 0)
        rm_out_put_length(out, (uint64_t)f.length);
    else if (f.chunked)
        RM_OUT_LIT(out, "Transfer-Encoding: chunked\r\n");
    if (r->ctype != NULL && !(status_bodyless(r->status) && r->ctype_default)) {
        RM_OUT_LIT(out, "Content-Type: ");
        rm_out_put(out, r->ctype, r->ctype_len);
        RM_OUT_LIT(out, "\r\n");
    }
    for (size_t i = 0; i < r->nhdrs; i++) {
        rm_out_put(out, r->hdrs[i].name, r->hdrs[i].name_len);
        RM_OUT_LIT(out, ": ");
        rm_out_put(out, r->hdrs[i].value, r->hdrs[i].value_len);
        RM_OUT_LIT(out, "\r\n");
    }
    if (close) {
        RM_OUT_LIT(out, "Connection: close\r\n");
        out->flags |= RM_DONE_CLOSE;
    } else if (http_minor == 0) {
        RM_OUT_LIT(out, "Connection: keep-alive\r\n");
    }
    return RM_OUT_LIT(out, "\r\n");
}

/* The Content-Length of a HEAD response whose app produced `total` bytes.
 * RFC 9110 8.6: it may only be what the GET would send. A non-empty body is
 * that (the app made the GET's body; we drop it); an empty one says nothing
 * (Werkzeug and many apps return [] for every HEAD), so the app's own
 * Content-Length, or none at all. */
static int64_t head_length(const rm_reply_t *r, int64_t total)
{
    if (total != 0)
        return total;
    if (r->app_length_text == NULL || r->app_lengths != 1)
        return -1;
    return rm_out_parse_length(r->app_length_text, r->app_length_len);
}

/* A body of known length: the head and the body in one pass. */
static int write_reply(rm_out_t *out, const rm_reply_t *r, uint32_t req_flags, uint8_t http_minor)
{
    bool bodyless = status_bodyless(r->status);
    framing_t f = {.length = bodyless ? -1 : (int64_t)r->body_len};
    if (!bodyless && (req_flags & RM_REQ_HEAD))
        f.length = head_length(r, f.length);

    write_head(out, r, req_flags, http_minor, f);
    if (!bodyless && !(req_flags & RM_REQ_HEAD) && r->body_len > 0)
        rm_out_put(out, r->body, r->body_len);
    return out->err;
}

/* One piece the body's iterator yielded: framed, appended, pushed (except
 * the piece that completes an announced length: it rides on the final
 * completion). */
static int stream_piece(rm_out_t *out, PyObject *item, framing_t f, uint64_t *written, char *why,
                        size_t why_len)
{
    Py_buffer view;
    int rc = 0;

    if (PyUnicode_Check(item) || !PyObject_CheckBuffer(item))
        return bad(why, why_len, "the response body yielded %s, not bytes", Py_TYPE(item)->tp_name);
    if (PyObject_GetBuffer(item, &view, PyBUF_SIMPLE) < 0)
        return bad_exc(why, why_len, "a piece of the response body");
    size_t n = (size_t)view.len;
    if (f.length >= 0 && n > (uint64_t)f.length - *written) {
        rc = bad(why, why_len,
                 "the response body produced more than the %" PRId64
                 " bytes its Content-Length announced",
                 f.length);
    } else if (n > 0) {
        if (f.chunked)
            rm_out_put_chunk(out, view.buf, n);
        else
            rm_out_put(out, view.buf, n);
        *written += n;
        if (!f.packed && (f.length < 0 || *written < (uint64_t)f.length))
            rm_out_flush(out);
    }
    PyBuffer_Release(&view);
    return rc;
}

#define SEQ_UNKNOWN (-1)   /* a piece of another bytes-like type: streamed, length unknown */
#define SEQ_NOT_BYTES (-2) /* a piece that is not bytes-like at all */

/* A list or tuple body is complete when returned: the sum of its pieces when
 * they are bytes or bytearray, else SEQ_*; *bad_type names the first piece
 * that is not bytes-like. Nothing here runs Python code; a list another thread
 * changes meanwhile (free-threaded) breaks the length, which the stream then
 * reports as the app's error. */
static int64_t sequence_length(PyObject *seq, const char **bad_type)
{
    int64_t total = 0;
    bool unknown = false;

    for (Py_ssize_t i = 0, n = PySequence_Fast_GET_SIZE(seq); i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (PyBytes_Check(item)) {
            total += PyBytes_GET_SIZE(item);
        } else if (PyByteArray_Check(item)) {
            total += PyByteArray_GET_SIZE(item);
        } else if (PyUnicode_Check(item) || !PyObject_CheckBuffer(item)) {
            *bad_type = Py_TYPE(item)->tp_name;
            return SEQ_NOT_BYTES;
        } else {
            unknown = true; /* still look for a piece that is not bytes-like */
        }
    }
    return unknown ? SEQ_UNKNOWN : total;
}

/* A streamed body parked off its thread (a slow client's window is full):
 * what iterating it again needs. The references are strong. */
typedef struct native_stream {
    PyObject *iterable; /* its close() runs at the end */
    PyObject *iter;
    framing_t f;
    uint64_t written;
} native_stream_t;

/* Iterate the body until it ends (0), fails (< 0, the reason in `why`), or,
 * with out->park_ok, the client's window is full before the next piece
 * (RM_OUT_PARKED: nothing is waited for on this thread). */
static int stream_pieces(rm_out_t *out, PyObject *iter, framing_t f, uint64_t *written, char *why,
                         size_t why_len)
{
    int rc = 0;

    for (;;) {
        if (rm_out_client_gone(out)) {
            out->err = -ECONNRESET;
            break;
        }
        if (out->park_ok && rm_out_window_busy(out))
            return RM_OUT_PARKED;
        PyObject *item = PyIter_Next(iter);
        if (item == NULL) {
            if (PyErr_Occurred())
                rc = bad_exc(why, why_len, "the response body raised");
            break;
        }
        rc = stream_piece(out, item, f, written, why, why_len);
        Py_DECREF(item);
        if (rc < 0 || out->err < 0)
            break;
    }
    return out->err < 0 ? out->err : rc;
}

/* The body ended (rc 0) or failed: its terminator, or the failure's answer. */
static int stream_end(rm_out_t *out, framing_t f, uint64_t written, int rc, const rm_req_view_t *v,
                      char *why, size_t why_len)
{
    if (out->err < 0)
        return out->err; /* the client left, or a stop */
    if (rc == 0 && f.length >= 0 && written < (uint64_t)f.length)
        rc = bad(why, why_len,
                 "the response body produced %" PRIu64 " of the %" PRId64
                 " bytes its Content-Length announced",
                 written, f.length);
    if (rc == 0) {
        if (f.chunked)
            RM_OUT_LIT(out, RM_OUT_LAST_CHUNK);
        return out->err;
    }
    if (out->pushed == 0) {
        /* Nothing left this process: the caller answers 500 instead. */
        out->used = 0;
        out->flags = 0;
        return rc;
    }
    out->app_failed = true;
    rm_req_name_t n = rm_req_name(v);
    RM_ERROR("%.*s %.*s: %s after the response began; closing the connection", n.method_len,
             n.method, n.path_len, n.path, why);
    out->flags |= RM_DONE_CLOSE; /* no terminator: the client sees the body cut */
    return 0;
}

/* Park the stream: its state moves to the heap (out->parked), the
 * references leave `r` so that nobody closes the iterable yet. */
static int stream_park(rm_out_t *out, rm_reply_t *r, framing_t f, uint64_t written)
{
    native_stream_t *ns = PyMem_Malloc(sizeof(*ns));
    if (ns == NULL) {
        out->park_ok = false; /* wait on this thread after all */
        return 0;
    }
    ns->iterable = r->iterable;
    ns->iter = r->iter;
    ns->f = f;
    ns->written = written;
    r->iterable = r->iter = NULL;
    out->parked = ns;
    return RM_OUT_PARKED;
}

/* A streamed body: the head, then each piece as the iterator yields it, until
 * it ends, fails, the client leaves, or (out->park_ok) its window is full. */
static int write_streamed(rm_out_t *out, rm_reply_t *r, const rm_req_view_t *v, char *why,
                          size_t why_len)
{
    const rm_req_meta_t *m = &v->meta;
    bool bodyless = status_bodyless(r->status);
    bool no_body = bodyless || (m->flags & RM_REQ_HEAD);
    framing_t f = {.length = -1};
    uint64_t written = 0;

    if (r->app_length_text != NULL && !bodyless) {
        f.length = rm_out_parse_length(r->app_length_text, r->app_length_len);
        if (f.length < 0 || r->app_lengths > 1)
            return bad(why, why_len,
                       "Content-Length '%.*s' of a streamed response is not one number",
                       (int)r->app_length_len, r->app_length_text);
    }
    if (f.length < 0 && (PyList_CheckExact(r->iterable) || PyTuple_CheckExact(r->iterable))) {
        const char *bad_type = NULL;
        int64_t n;
        RM_BEGIN_CRITICAL_SECTION(r->iterable);
        n = sequence_length(r->iterable, &bad_type);
        RM_END_CRITICAL_SECTION();
        if (n == SEQ_NOT_BYTES)
            return bad(why, why_len, "the response body holds %s, not bytes", bad_type);
        f.length = bodyless ? -1 : n;
        f.packed = n >= 0;
        if (!bodyless && (m->flags & RM_REQ_HEAD))
            f.length = head_length(r, n);
    }
    if (f.length < 0 && !no_body) {
        f.chunked = m->http_minor >= 1;
        f.close_delimited = !f.chunked; /* HTTP/1.0 */
    }
    if (write_head(out, r, m->flags, m->http_minor, f) < 0 || no_body)
        return out->err;
    /* A list or tuple never waits on the app: it stays on the thread. */
    if (f.packed)
        out->park_ok = false;
    int rc = stream_pieces(out, r->iter, f, &written, why, why_len);
    if (rc == RM_OUT_PARKED && (rc = stream_park(out, r, f, written)) == 0)
        rc = stream_pieces(out, r->iter, f, &written, why, why_len);
    if (rc == RM_OUT_PARKED)
        return rc;
    return stream_end(out, f, written, rc, v, why, why_len);
}

/* close() of the body iterable; its failure is logged, and a traceback held
 * for the caller's record stays held. */
static void close_body(PyObject *iterable, const rm_req_view_t *view)
{
    char close_why[512];
    char *held = rm_log_take_detail();
    if (rm_out_close_iterable(iterable, NULL, close_why, sizeof(close_why)) < 0) {
        rm_req_name_t n = rm_req_name(view);
        RM_ERROR("%.*s %.*s: close() of the response body raised %s", n.method_len, n.method,
                 n.path_len, n.path, close_why);
    }
    rm_log_hold_detail(held);
}

int rm_response_resume(rm_out_t *out, const rm_req_view_t *view)
{
    native_stream_t *ns = out->parked;
    char why[768];
    int rc = out->err;

    out->parked = NULL;
    if (rc == 0)
        rc = stream_pieces(out, ns->iter, ns->f, &ns->written, why, sizeof(why));
    if (rc == RM_OUT_PARKED) {
        out->parked = ns;
        return rc;
    }
    rc = stream_end(out, ns->f, ns->written, rc, view, why, sizeof(why));
    if (rc == -EINVAL) {
        /* Unreachable in practice (the window was full, so bytes went out),
         * but never leave a response without its end. */
        out->flags |= RM_DONE_CLOSE;
        rc = 0;
    }
    close_body(ns->iterable, view);
    Py_DECREF(ns->iter);
    Py_DECREF(ns->iterable);
    PyMem_Free(ns);
    return rc;
}

int rm_response_write(rm_out_t *out, rm_pymod_state_t *st, PyObject *result,
                      const rm_req_view_t *view, char *why, size_t why_len)
{
    rm_reply_t r;

    reply_init(&r);
    int rc = prepare(&r, st, result, why, why_len);
    if (rc == 0 && r.iter == NULL)
        rc = write_reply(out, &r, view->meta.flags, view->meta.http_minor);
    else if (rc == 0)
        rc = write_streamed(out, &r, view, why, why_len);
    /* The body's own traceback, held for the caller's "answered 500" record,
     * must not go to close()'s. A parked body is closed when it ends. */
    if (r.iterable != NULL)
        close_body(r.iterable, view);
    reply_clear(&r);
    return rc;
}

int rm_response_write_error(rm_out_t *out, int status, uint32_t req_flags, uint8_t http_minor)
{
    char body[64];
    rm_reply_t r;

    reply_init(&r);
    r.status = status;
    r.body = body;
    r.body_len = (size_t)snprintf(body, sizeof(body), "%s\n", reason_phrase(status));
    default_ctype(&r, CT_TEXT);
    if (status == 503) {
        /* Overload is temporary: tell clients when to come back. */
        r.hdrs[0] = (rm_hdr_t){"Retry-After", "1", 11, 1};
        r.nhdrs = 1;
    }
    int rc = write_reply(out, &r, req_flags, http_minor);
    reply_clear(&r);
    return rc;
}

bool rm_response_token_ok(const char *p, size_t n)
{
    return is_token(p, n);
}

bool rm_response_value_ok(const char *p, size_t n)
{
    return value_ok(p, n);
}

const char *rm_response_reason(int status)
{
    return reason_phrase(status);
}
