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
 *   - Content-Length is always ours (the body's length); an app's is dropped.
 *   - Transfer-Encoding from the app is dropped too: the body is always sent
 *     whole with a Content-Length, and both at once would be a framing lie.
 *   - Connection is ours: "close" when the request was not keep-alive or the
 *     app's Connection header lists "close" (the app's header itself is dropped);
 *     "keep-alive" for a keep-alive HTTP/1.0 request.
 *   - A Content-Type, Server or Date header from the app replaces ours.
 *   - 1xx, 204 and 304 responses carry no body, no Content-Length and no
 *     default Content-Type. HEAD responses keep Content-Length, drop the body.
 */
#include "worker.h"

#include <errno.h>
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
}

static void reply_clear(rm_reply_t *r)
{
    if (r->has_view)
        PyBuffer_Release(&r->view);
    r->has_view = false;
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

    if (name_is(h.name, h.name_len, "content-length") ||
        name_is(h.name, h.name_len, "transfer-encoding"))
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
    } else {
        return bad(why, why_len, "Response.body must be str or bytes-like, not %s",
                   Py_TYPE(body)->tp_name);
    }

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
    return bad(why, why_len,
               "the app returned %s; expected ringmaster.Response, bytes, str, dict or list",
               result == Py_None ? "None" : Py_TYPE(result)->tp_name);
}

/* ---- writing ----------------------------------------------------------------- */

void rm_out_init(rm_out_t *out, rm_serve_thread_t *t, uint64_t req_id)
{
    *out = (rm_out_t){.t = t, .req_id = req_id, .chunk = RM_CHUNK_NONE};
}

void rm_out_abandon(rm_out_t *out)
{
    if (out->chunk != RM_CHUNK_NONE)
        rm_chunk_pool_free(&out->t->pool, out->chunk, out->t->w->owner);
    out->chunk = RM_CHUNK_NONE;
    out->base = NULL;
    out->used = 0;
}

static int out_next_chunk(rm_out_t *out)
{
    out->chunk = rm_serve_alloc_chunk(out->t);
    if (out->chunk == RM_CHUNK_NONE)
        return -ECANCELED;
    out->base = rm_chunk_pool_ptr(&out->t->pool, out->chunk);
    out->used = 0;
    return 0;
}

/* The current chunk is full: hand it over and start another. */
static int out_spill(rm_out_t *out)
{
    rm_done_desc_t d = {
        .req_id = out->req_id,
        .chunk = out->chunk,
        .off = 0,
        .len = out->used,
        .flags = 0,
    };
    int rc = rm_worker_push_done(out->t->w, &d, true, true);
    if (rc < 0)
        return rc;
    out->pushed++;
    out->chunk = RM_CHUNK_NONE; /* the supervisor's now: never touch it again */
    return out_next_chunk(out);
}

static void put_slow(rm_out_t *out, const char *p, size_t n)
{
    uint32_t cap = out->t->pool.chunk_size;

    if (out->err)
        return;
    while (n > 0) {
        if (out->used == cap && (out->err = out_spill(out)) < 0)
            return;
        size_t take = n < cap - out->used ? n : cap - out->used;
        memcpy(out->base + out->used, p, take);
        out->used += (uint32_t)take;
        p += take;
        n -= take;
    }
}

/* Append bytes; a failure (a stop while waiting for space) sticks in out->err
 * and turns later puts into no-ops, so a caller checks once at the end. */
static inline void put(rm_out_t *out, const char *p, size_t n)
{
    if (out->err == 0 && n <= out->t->pool.chunk_size - out->used) {
        memcpy(out->base + out->used, p, n);
        out->used += (uint32_t)n;
        return;
    }
    put_slow(out, p, n);
}

#define PUT_LIT(out, lit) put((out), (lit), sizeof(lit) - 1)

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

/* Decimal digits of v into buf (at least 20 bytes); returns their count. */
static size_t fmt_u64(char *buf, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

static int write_reply(rm_out_t *out, const rm_reply_t *r, uint32_t req_flags, uint8_t http_minor)
{
    bool bodyless = r->status < 200 || r->status == 204 || r->status == 304;
    bool close = !(req_flags & RM_REQ_KEEP_ALIVE) || r->app_close;
    const char *reason = reason_phrase(r->status);
    char line[64];
    size_t n;

    if (out->chunk == RM_CHUNK_NONE && (out->err = out_next_chunk(out)) < 0)
        return out->err;

    /* "HTTP/1.1 ddd Reason\r\n": status is 100..999, so three digits. */
    memcpy(line, "HTTP/1.1 ", 9);
    line[9] = (char)('0' + r->status / 100);
    line[10] = (char)('0' + r->status / 10 % 10);
    line[11] = (char)('0' + r->status % 10);
    line[12] = ' ';
    put(out, line, 13);
    put(out, reason, strlen(reason));
    PUT_LIT(out, "\r\n");
    if (!r->app_server)
        PUT_LIT(out, "Server: ringmaster\r\n");
    if (!r->app_date) {
        PUT_LIT(out, "Date: ");
        put(out, rm_date_get(&out->t->date), 29);
        PUT_LIT(out, "\r\n");
    }
    if (!bodyless) {
        memcpy(line, "Content-Length: ", 16);
        n = 16 + fmt_u64(line + 16, r->body_len);
        line[n++] = '\r';
        line[n++] = '\n';
        put(out, line, n);
    }
    if (r->ctype != NULL && !(bodyless && r->ctype_default)) {
        PUT_LIT(out, "Content-Type: ");
        put(out, r->ctype, r->ctype_len);
        PUT_LIT(out, "\r\n");
    }
    for (size_t i = 0; i < r->nhdrs; i++) {
        put(out, r->hdrs[i].name, r->hdrs[i].name_len);
        PUT_LIT(out, ": ");
        put(out, r->hdrs[i].value, r->hdrs[i].value_len);
        PUT_LIT(out, "\r\n");
    }
    if (close) {
        PUT_LIT(out, "Connection: close\r\n");
        out->flags |= RM_DONE_CLOSE;
    } else if (http_minor == 0) {
        PUT_LIT(out, "Connection: keep-alive\r\n");
    }
    PUT_LIT(out, "\r\n");
    if (!bodyless && !(req_flags & RM_REQ_HEAD) && r->body_len > 0)
        put(out, r->body, r->body_len);
    return out->err;
}

int rm_response_write(rm_out_t *out, rm_pymod_state_t *st, PyObject *result, uint32_t req_flags,
                      uint8_t http_minor, char *why, size_t why_len)
{
    rm_reply_t r;

    reply_init(&r);
    int rc = prepare(&r, st, result, why, why_len);
    if (rc == 0)
        rc = write_reply(out, &r, req_flags, http_minor);
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

const char *rm_date_get(rm_date_cache_t *cache)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL); /* vDSO: no syscall */
    struct tm tm;

    if (now != cache->sec && gmtime_r(&now, &tm) != NULL) {
        snprintf(cache->text, sizeof(cache->text), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
                 tm.tm_min, tm.tm_sec);
        cache->sec = now;
    }
    return cache->text;
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
