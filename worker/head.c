/*
 * head.c - status, headers and body pieces framed for HTTP/1.1 (head.h).
 */
#include "head.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <strings.h>

int rm_buf_add(rm_buf_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *more = PyMem_Realloc(b->p, cap);
        if (more == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->p = more;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

bool rm_framed_complete(const rm_framed_t *r)
{
    return r->head_sent &&
           (r->bodyless || (r->length >= 0 && r->body_written >= (uint64_t)r->length));
}

/* Write the head, announcing `total` body bytes when known (>= 0); the app's
 * Content-Length wins. */
int rm_framed_head(rm_framed_t *r, int64_t total)
{
    rm_out_t *out = r->out;
    int st = r->status;

    r->length = r->app_length >= 0 ? r->app_length : total;
    /* RFC 9110 8.6: a HEAD response's Content-Length can only be the GET
     * body's. An empty body for HEAD (Werkzeug returns [] for every HEAD)
     * says nothing about it: announce none. */
    if ((r->req_flags & RM_REQ_HEAD) && r->app_length < 0 && total == 0)
        r->length = -1;
    r->bodyless = st < 200 || st == 204 || st == 304 || (r->req_flags & RM_REQ_HEAD);
    rm_out_put(r->out, r->head.p, r->status_len);
    if (!r->app_server)
        RM_OUT_LIT(r->out, "Server: ringmaster\r\n");
    if (!r->app_date) {
        RM_OUT_LIT(r->out, "Date: ");
        rm_out_put(r->out, rm_http_date_get(&out->t->date), RM_HTTP_DATE_LEN);
        RM_OUT_LIT(r->out, "\r\n");
    }
    bool close = !(r->req_flags & RM_REQ_KEEP_ALIVE) || r->app_close;
    if (st < 200 || st == 204) {
        /* RFC 9110 8.6: no Content-Length at all. */
    } else if (st == 304) {
        if (r->app_length >= 0)
            rm_out_put_length(r->out, (uint64_t)r->app_length);
    } else if (r->length >= 0) {
        rm_out_put_length(r->out, (uint64_t)r->length);
    } else if (r->req_flags & RM_REQ_HEAD) {
        /* Unknown, and nothing follows anyway. */
    } else if (r->http_major == 1 && r->http_minor >= 1) {
        RM_OUT_LIT(r->out, "Transfer-Encoding: chunked\r\n");
        r->chunked = true;
    } else {
        close = true; /* HTTP/1.0: the end of the body is the end of the connection */
    }
    rm_out_put(r->out, r->head.p + r->status_len, r->head.len - r->status_len);
    if (close) {
        RM_OUT_LIT(r->out, "Connection: close\r\n");
        out->flags |= RM_DONE_CLOSE;
    } else if (r->http_minor == 0) {
        RM_OUT_LIT(r->out, "Connection: keep-alive\r\n");
    }
    RM_OUT_LIT(r->out, "\r\n");
    r->head_sent = true;
    return r->out->err;
}

/* A piece of body: framed, cut at the announced length, pushed per `mode`. */
int rm_framed_piece(rm_framed_t *r, const char *p, size_t n, rm_flush_mode_t mode)
{
    if (n == 0 || r->out->err)
        return r->out->err;
    if (!r->head_sent && rm_framed_head(r, -1) < 0)
        return r->out->err;
    if (r->bodyless)
        return 0;
    if (r->length >= 0) {
        uint64_t room = (uint64_t)r->length - r->body_written;
        if (n > room)
            n = (size_t)room; /* PEP 3333: never more than Content-Length */
        if (n == 0)
            return 0;
    }
    if (r->chunked)
        rm_out_put_chunk(r->out, p, n);
    else
        rm_out_put(r->out, p, n);
    r->body_written += n;
    if (mode == RM_FLUSH_ALWAYS || (mode == RM_FLUSH_UNLESS_DONE && !rm_framed_complete(r)))
        rm_out_flush(r->out);
    return r->out->err;
}

/* The body is over: the head if it is still due, the chunked terminator, and
 * a closed connection if the app produced less than it announced. */
int rm_framed_finish(rm_framed_t *r)
{
    if (!r->head_sent && rm_framed_head(r, 0) < 0)
        return r->out->err;
    if (r->chunked)
        RM_OUT_LIT(r->out, RM_OUT_LAST_CHUNK);
    if (!r->bodyless && r->length >= 0 && r->body_written < (uint64_t)r->length) {
        RM_WARN("the app announced Content-Length %" PRId64 " but produced %" PRIu64
                " bytes; closing the connection",
                r->length, r->body_written);
        r->out->flags |= RM_DONE_CLOSE;
    }
    return r->out->err;
}

static bool name_is(const char *p, size_t n, const char *lower)
{
    return n == strlen(lower) && strncasecmp(p, lower, n) == 0;
}

/* Raise ValueError: fmt has one %R, for the name as text. */
static int bad_header(const char *fmt, const char *name, size_t nlen)
{
    PyObject *text = PyUnicode_DecodeLatin1(name, (Py_ssize_t)(nlen < 100 ? nlen : 100), NULL);
    if (text != NULL) {
        PyErr_Format(PyExc_ValueError, fmt, text);
        Py_DECREF(text);
    }
    return -1;
}

int rm_head_add(rm_head_t *a, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (!rm_response_token_ok(name, nlen))
        return bad_header("response header name %R is not a token", name, nlen);
    if (!rm_response_value_ok(value, vlen))
        return bad_header("response header %R: the value holds CR, LF or NUL", name, nlen);
    if (name_is(name, nlen, "content-length")) {
        int64_t v = rm_out_parse_length(value, vlen);
        if (v < 0 || (a->app_length >= 0 && a->app_length != v))
            return bad_header(v < 0 ? "response header Content-Length: %R is not a byte count"
                                    : "response header Content-Length: %R is not the one given "
                                      "before",
                              value, vlen);
        a->app_length = v;
        return 0;
    }
    /* Hop-by-hop: the framing is ours (PEP 3333 forbids apps these). */
    if (name_is(name, nlen, "transfer-encoding") || name_is(name, nlen, "keep-alive"))
        return 0;
    if (name_is(name, nlen, "connection")) {
        a->app_close = a->app_close || rm_header_has_token(value, vlen, "close");
        return 0;
    }
    a->app_server = a->app_server || name_is(name, nlen, "server");
    a->app_date = a->app_date || name_is(name, nlen, "date");
    if (rm_buf_add(&a->head, name, nlen) < 0 || rm_buf_add(&a->head, ": ", 2) < 0 ||
        rm_buf_add(&a->head, value, vlen) < 0 || rm_buf_add(&a->head, "\r\n", 2) < 0)
        return -1;
    return 0;
}
