/*
 * head.h - a response whose app gives its status and headers first and its
 * body in pieces after (WSGI's start_response and iterable, ASGI's
 * http.response.start and http.response.body), framed for HTTP/1.1 into an
 * rm_out_t (stream.h).
 *
 * The interface renders the status line and the app's headers into an
 * rm_head_t (rm_head_add checks and classifies each header), copies it into
 * an rm_framed_t, and hands over body pieces. The head is written with the
 * first non-empty piece or at the end: Server and Date unless the app gave
 * them, Content-Length when known (the app's, or the whole body's when it is
 * all there), else chunked on HTTP/1.1 and a close-delimited body on 1.0,
 * Connection as the request and the app ask. Pieces are cut at an announced
 * length; HEAD and 1xx/204/304 get none. The GIL is held throughout.
 */
#ifndef RINGMASTER_WORKER_HEAD_H
#define RINGMASTER_WORKER_HEAD_H

#include "stream.h"
#include "worker.h"

/* A growable byte buffer (PyMem). */
typedef struct {
    char *p;
    size_t len, cap;
} rm_buf_t;

/* The status line and the app's headers, rendered and classified. */
typedef struct rm_head {
    int status;
    rm_buf_t head;      /* "HTTP/1.1 NNN Reason\r\n", then the app's header lines */
    size_t status_len;  /* bytes of the status line in `head` */
    int64_t app_length; /* the app's Content-Length, -1 for none */
    bool app_server, app_date, app_close;
} rm_head_t;

/* One response being framed. */
typedef struct rm_framed {
    rm_out_t *out; /* failures stick in out->err (stream.h) */
    uint32_t req_flags;
    uint8_t http_major, http_minor;
    /* What start_response said (status 0 until it succeeded). */
    int status;
    rm_buf_t head;      /* status line, then the app's headers, rendered */
    size_t status_len;  /* bytes of the status line in `head` */
    int64_t app_length; /* the app's Content-Length, -1 for none */
    bool app_server, app_date, app_close;
    /* Progress. */
    bool head_sent; /* the head is written (pushed, or about to be) */
    bool chunked, bodyless;
    int64_t length; /* body bytes the head announced, -1 unknown */
    uint64_t body_written;
} rm_framed_t;

typedef enum rm_flush_mode {
    RM_FLUSH_NEVER,       /* keep filling the chunk */
    RM_FLUSH_UNLESS_DONE, /* push it unless the body is complete (it rides on the last) */
    RM_FLUSH_ALWAYS,      /* push it now */
} rm_flush_mode_t;

/* Append n bytes; -1 with MemoryError set. */
int rm_buf_add(rm_buf_t *b, const void *p, size_t n);

/* Add one response header of the app to `a`: the name must be a token, the
 * value free of CR, LF and NUL (else ValueError naming the header).
 * Content-Length is checked and kept in app_length (the framing writes it),
 * Transfer-Encoding and Keep-Alive are dropped (the framing is ours),
 * Connection only says whether to close; Server and Date are noted so that
 * none of ours is added. Returns 0, or -1 with an exception set. */
int rm_head_add(rm_head_t *a, const char *name, size_t nlen, const char *value, size_t vlen);

/* The head is out and the announced body is complete (or there is none). */
bool rm_framed_complete(const rm_framed_t *r);

/* Write the head, announcing `total` body bytes when known (>= 0); the app's
 * Content-Length wins. Returns r->out->err. */
int rm_framed_head(rm_framed_t *r, int64_t total);

/* A piece of body (the head first if still due): framed, cut at the
 * announced length, pushed per `mode`. Returns r->out->err. */
int rm_framed_piece(rm_framed_t *r, const char *p, size_t n, rm_flush_mode_t mode);

/* The body is over: the head if it is still due, the chunked terminator, and
 * RM_DONE_CLOSE if the app produced less than it announced. Returns
 * r->out->err. */
int rm_framed_finish(rm_framed_t *r);

#endif
