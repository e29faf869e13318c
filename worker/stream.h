/*
 * stream.h - a response's bytes on their way out: chunks, completions and the
 * send window. Shared by the native interface (response.c) and WSGI (wsgi.c).
 *
 * A response is written into chunks this lane owns. A chunk that fills up is
 * pushed as a completion that is not the last, once more bytes follow; the
 * last chunk stays in the rm_out_t for serve.c to push with RM_DONE_LAST. A
 * streamed body pushes each piece the app produced before asking for the next
 * (rm_out_flush), so a slow generator's bytes reach the client as they come.
 *
 * Backpressure: at most RM_OUT_WINDOW pushed chunks of one response may be
 * not yet sent to the client. The supervisor publishes how many response
 * bytes the client has taken (rm_wire_sent in the live meta) and sets `gone`
 * when the client disconnects or its --write-timeout expires; rm_out_push
 * waits (sleeping 20 us doubling to 2 ms, the GIL released) while the window
 * is full, and fails with -ECONNRESET once the client is gone. So a client
 * that never reads holds at most RM_OUT_WINDOW + 1 chunks of the region and
 * nothing in the supervisor's heap, and the serving thread is free again when
 * the write timeout closes the connection.
 *
 * A streamed body (a generator) need not hold its thread meanwhile: when half
 * the window is unsent before the next piece, the response is parked (serve.c),
 * the thread serves other requests, and the body is resumed once the client
 * has read enough. Only a single piece larger than the window, and WSGI's
 * write(), still wait on the thread.
 */
#ifndef RINGMASTER_WORKER_STREAM_H
#define RINGMASTER_WORKER_STREAM_H

/* Python.h first: it may set feature macros the C library headers look at. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "ringmaster/chunk_pool.h"
#include "ringmaster/wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Pushed response chunks not yet sent to the client, per response, at most. A
 * streamed piece takes a chunk of its own however small, so the window counts
 * chunks, not bytes: 16 x --chunk-size (256 KiB by default). */
#define RM_OUT_WINDOW 16

struct rm_serve_thread;

/* Where a response is being written: the current chunk is ours until pushed. */
typedef struct rm_out {
    struct rm_serve_thread *t; /* borrowed: the serving thread (its pool and worker) */
    const rm_req_meta_t *live; /* the request's meta in the region (sent, gone), or NULL
                                  when there is none to watch (a malformed request) */
    uint64_t req_id;
    uint32_t chunk;        /* current chunk, RM_CHUNK_NONE before the first byte */
    unsigned char *base;   /* its first byte */
    uint32_t used;         /* bytes written into it */
    uint32_t cap;          /* the chunk size */
    uint32_t flags;        /* RM_DONE_CLOSE when the connection must close */
    unsigned pushed;       /* chunks already handed to the supervisor */
    int err;               /* sticky: -ECANCELED (stop), -ECONNRESET (client gone), or 0 */
    bool app_failed;       /* the app raised or returned what cannot be sent (stats) */
    uint64_t pushed_bytes; /* bytes in completions already pushed */
    /* The pushed chunks the client may not have taken yet, oldest first: where
     * each ends, in pushed_bytes. Only window_count entries are meaningful. */
    unsigned window_first, window_count;
    uint64_t window_end[RM_OUT_WINDOW];
    /* Parking (serve.c): with park_ok, a streamed body whose window is busy
     * (rm_out_window_busy) is not waited for on the thread: the interface saves what iterating it
     * again needs in `parked` and returns RM_OUT_PARKED. */
    bool park_ok;
    void *parked; /* the interface's state while parked, NULL otherwise */
} rm_out_t;

/* A streamed response waits for its client's window off the thread. */
#define RM_OUT_PARKED 1

/* Start a response to request `req_id` on thread `t`; `live` as in rm_out_t.
 * Takes no chunk yet. */
void rm_out_init(rm_out_t *out, struct rm_serve_thread *t, uint64_t req_id,
                 const rm_req_meta_t *live);

/* Free the chunk not yet pushed (after a stop or a disconnect cut a response
 * short); what was pushed is the supervisor's. */
void rm_out_abandon(rm_out_t *out);

/* Push the current chunk as a completion that is not the last, first waiting
 * for the window (GIL released meanwhile; the caller holds it). Returns 0, or
 * the sticky out->err: -ECONNRESET when the client is gone, -ECANCELED when the
 * worker stops (the chunk stays in `out` for rm_out_abandon). */
int rm_out_push(rm_out_t *out);

/* Whether a parked stream should wait longer, or one about to ask its app for
 * the next piece should park: half of the window or more is still unsent.
 * Parking at half leaves room for the next piece (up to 8 chunks, 128 KiB by
 * default) to be pushed without waiting on the thread. */
bool rm_out_window_busy(rm_out_t *out);

/* Bytes that can be written and pushed now without waiting for the client:
 * the chunks left in the window, less what the current chunk holds and room
 * for framing (a chunk-size line, the body's terminator). 0 when the window
 * is full or nearly; no bound without a live meta. For callers that must not
 * wait (an ASGI event loop writes a large body message in such parts). */
size_t rm_out_window_room(rm_out_t *out);

/* Push the current chunk if it holds bytes; returns out->err. */
int rm_out_flush(rm_out_t *out);

/* rm_out_put's way when the bytes do not fit the current chunk. */
int rm_out_put_slow(rm_out_t *out, const void *p, size_t n);

/* Append bytes, taking chunks and pushing full ones as needed. A failure sticks
 * in out->err and turns later puts into no-ops, so a writer checks once at the
 * end. Returns out->err. The caller holds the GIL. */
static inline int rm_out_put(rm_out_t *out, const void *p, size_t n)
{
    if (out->chunk != RM_CHUNK_NONE && out->err == 0 && n <= out->cap - out->used) {
        memcpy(out->base + out->used, p, n);
        out->used += (uint32_t)n;
        return 0;
    }
    return rm_out_put_slow(out, p, n);
}

#define RM_OUT_LIT(out, lit) rm_out_put((out), (lit), sizeof(lit) - 1)

/* "Content-Length: N\r\n". Returns out->err. */
int rm_out_put_length(rm_out_t *out, uint64_t n);

/* One piece of a chunked body: its size in hex, CRLF, the bytes, CRLF; `n` > 0
 * (an empty chunk would end the body). Returns out->err. */
int rm_out_put_chunk(rm_out_t *out, const void *p, size_t n);

/* The end of a chunked body (no trailers). */
#define RM_OUT_LAST_CHUNK "0\r\n\r\n"

/* Has the supervisor said that the client left? False without a live meta. */
static inline bool rm_out_client_gone(const rm_out_t *out)
{
    return out->live != NULL && rm_wire_client_gone(out->live);
}

/* An app's Content-Length value: digits only (at most 18), spaces and tabs
 * around them ignored. Returns it, or -1 when it is not one. Pure. */
int64_t rm_out_parse_length(const char *p, size_t n);

/* PEP 3333's rule, for every streamed body: call iterable.close() if it has
 * one. `name` is an interned "close" or NULL. Returns 0, or -EINVAL when
 * close() raised: the traceback went to stderr, "Type: message" is in `why`,
 * the exception is cleared. The caller holds the GIL. */
int rm_out_close_iterable(PyObject *iterable, PyObject *name, char *why, size_t why_len);

#endif
