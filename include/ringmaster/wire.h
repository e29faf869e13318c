/*
 * wire.h - what a request descriptor's meta chunk holds.
 *
 * The supervisor parses a request in place and writes this block (and the
 * arrays after it) into a chunk it owns; the worker reads it and the bytes it
 * points at, and never writes either. Everything is an offset or a chunk index.
 *
 *   rm_req_meta_t
 *   rm_wire_header_t headers[header_count]   offsets into head_chunk
 *   rm_slice_t       body[body_slice_count]  pieces of the (decoded) body, in order
 *
 * or, for a body spilled to a file (RM_REQ_BODY_FILE, above --body-spill-size),
 * no slices and in their place the file's absolute path, NUL-terminated, to
 * the end of the block. The file holds exactly body_len bytes; the supervisor
 * removes it when the request ends (a worker that opened it keeps reading).
 *
 * The worker checks every offset against the chunk size before reading
 * (rm_wire_meta_check), so a bug in one side cannot make the other read
 * outside the region.
 *
 * The one exception to "the worker never writes": the run state at the end of
 * rm_req_meta_t. A request sits on its lane until a worker thread takes it;
 * the thread claims it (QUEUED -> STARTED, with the time it started) and the
 * supervisor, at the queue deadline, takes back one nobody claimed (QUEUED ->
 * CANCELLED) and answers 503 itself. One CAS decides, so a request is either
 * run or answered 503 by the supervisor, never both. --timeout runs from
 * started_ns, which the supervisor clamps to [dispatch, now]: a worker can
 * write anything there and gains nothing by it.
 */
#ifndef RINGMASTER_WIRE_H
#define RINGMASTER_WIRE_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A piece of bytes somewhere in the pool. */
typedef struct rm_slice {
    uint32_t chunk;
    uint32_t off;
    uint32_t len;
} rm_slice_t;

/* A header line; name and value are offsets into the head chunk. The value has
 * no leading or trailing whitespace. Names keep the case the client sent. */
typedef struct rm_wire_header {
    uint32_t name_off;
    uint32_t value_off;
    uint16_t name_len;
    uint16_t reserved;
    uint32_t value_len;
} rm_wire_header_t;

/* Request flags. */
#define RM_REQ_KEEP_ALIVE 0x1u /* the connection stays open after this response */
#define RM_REQ_HEAD 0x2u       /* method is HEAD: send headers, no body */
#define RM_REQ_CHUNKED 0x4u    /* the body came chunked (already decoded in `body`) */
#define RM_REQ_BODY_FILE 0x8u  /* the body is in a file: rm_wire_body_path() */

typedef struct rm_req_meta {
    uint32_t head_chunk;  /* chunk holding method, target and header bytes */
    uint32_t flags;       /* RM_REQ_* */
    uint32_t method_off;  /* in head_chunk */
    uint32_t method_len;
    uint32_t target_off;  /* request-target as sent (origin or absolute form) */
    uint32_t target_len;
    uint32_t path_off;    /* path part of the target, not percent-decoded */
    uint32_t path_len;
    uint32_t query_off;   /* after '?', empty when there is none */
    uint32_t query_len;
    uint8_t http_major;
    uint8_t http_minor;
    uint16_t header_count;
    uint32_t body_slice_count;
    uint64_t body_len;    /* sum of the body slices */
    uint8_t client_addr[16]; /* IPv4 in the first 4 bytes, or IPv6 */
    uint16_t client_port;    /* host order */
    uint8_t client_family;   /* 4, 6, or 0 for a Unix socket */
    uint8_t server_family;
    uint16_t server_port;
    uint16_t reserved;
    uint8_t server_addr[16];
    /* Live fields, written by the supervisor while the request is served and
     * read by the worker from the chunk itself (never from a copy), through
     * rm_wire_sent() and rm_wire_client_gone(). */
    uint64_t sent;     /* response bytes the client has taken so far */
    uint32_t gone;     /* RM_WIRE_GONE once the client has disconnected, RM_WIRE_EOF
                          once it closed its sending side (it may still read) */
    uint32_t reserved2;
    /* Run state, the only fields a worker writes (see the top of this file):
     * through rm_wire_try_start() and rm_wire_try_cancel(). */
    uint64_t started_ns; /* CLOCK_MONOTONIC when a worker thread took it */
    uint32_t run;        /* RM_WIRE_QUEUED, RM_WIRE_STARTED or RM_WIRE_CANCELLED */
    uint32_t reserved3;
} rm_req_meta_t;

static_assert(sizeof(rm_req_meta_t) == 128, "meta layout");
static_assert(offsetof(rm_req_meta_t, started_ns) == 112, "meta layout: run state after live");
static_assert(offsetof(rm_req_meta_t, sent) == 96, "meta layout: live fields last");
static_assert(offsetof(rm_req_meta_t, body_len) == 48, "meta layout: body_len aligned");
static_assert(offsetof(rm_req_meta_t, server_addr) == 80, "meta layout: addresses last");
static_assert(sizeof(rm_wire_header_t) == 16, "header ref layout");
static_assert(sizeof(rm_slice_t) == 12, "slice layout");

static inline rm_wire_header_t *rm_wire_headers(rm_req_meta_t *meta)
{
    return (rm_wire_header_t *)(meta + 1);
}

static inline rm_slice_t *rm_wire_body(rm_req_meta_t *meta)
{
    return (rm_slice_t *)(rm_wire_headers(meta) + meta->header_count);
}

/* The spilled body's path (RM_REQ_BODY_FILE; checked by rm_wire_meta_check). */
static inline const char *rm_wire_body_path(const rm_req_meta_t *meta)
{
    return (const char *)((const rm_wire_header_t *)(meta + 1) + meta->header_count);
}

/* Response bytes of this request the client has read: a worker streaming a
 * body keeps what it has pushed within a window of this (backpressure). */
static inline uint64_t rm_wire_sent(const rm_req_meta_t *live)
{
    return __atomic_load_n(&live->sent, __ATOMIC_ACQUIRE);
}

#define RM_WIRE_GONE 0x1u /* the connection is closed: nothing more reaches the client */
#define RM_WIRE_EOF 0x2u  /* the client sent FIN: a half-close, or gone for good */

static inline bool rm_wire_client_gone(const rm_req_meta_t *live)
{
    return (__atomic_load_n(&live->gone, __ATOMIC_ACQUIRE) & RM_WIRE_GONE) != 0;
}

/* The client will send nothing more: gone, or its side closed. ASGI reports
 * this as http.disconnect (as uvicorn does); a streamed response goes on
 * until the connection itself fails, for clients that half-close. */
static inline bool rm_wire_client_done(const rm_req_meta_t *live)
{
    return __atomic_load_n(&live->gone, __ATOMIC_ACQUIRE) != 0;
}

/* Supervisor side. */
static inline void rm_wire_set_sent(rm_req_meta_t *live, uint64_t sent)
{
    __atomic_store_n(&live->sent, sent, __ATOMIC_RELEASE);
}

static inline void rm_wire_set_gone(rm_req_meta_t *live)
{
    __atomic_fetch_or(&live->gone, RM_WIRE_GONE, __ATOMIC_RELEASE);
}

static inline void rm_wire_set_eof(rm_req_meta_t *live)
{
    __atomic_fetch_or(&live->gone, RM_WIRE_EOF, __ATOMIC_RELEASE);
}

#define RM_WIRE_QUEUED 0u    /* on its lane, no thread took it yet */
#define RM_WIRE_STARTED 1u   /* a worker thread took it at started_ns */
#define RM_WIRE_CANCELLED 2u /* the supervisor answered it 503: never run */

/* Worker: a thread takes the request. False when the supervisor cancelled it
 * first: do not run it (post RM_DONE_RELEASE so its chunks go back). */
static inline bool rm_wire_try_start(rm_req_meta_t *live, uint64_t now_ns)
{
    __atomic_store_n(&live->started_ns, now_ns, __ATOMIC_RELAXED);
    uint32_t expected = RM_WIRE_QUEUED;
    /* Release: started_ns is visible to whoever reads STARTED. */
    return __atomic_compare_exchange_n(&live->run, &expected, RM_WIRE_STARTED, false,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* Supervisor: take back a request no thread has taken. False once one has. */
static inline bool rm_wire_try_cancel(rm_req_meta_t *live)
{
    uint32_t expected = RM_WIRE_QUEUED;
    return __atomic_compare_exchange_n(&live->run, &expected, RM_WIRE_CANCELLED, false,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static inline uint32_t rm_wire_run_state(const rm_req_meta_t *live)
{
    return __atomic_load_n(&live->run, __ATOMIC_ACQUIRE);
}

/* When the request started, as the worker wrote it: untrusted, clamp it. */
static inline uint64_t rm_wire_started_ns(const rm_req_meta_t *live)
{
    return __atomic_load_n(&live->started_ns, __ATOMIC_RELAXED);
}

/* Bytes a meta block with these counts needs. */
static inline size_t rm_wire_meta_size(uint32_t header_count, uint32_t body_slice_count)
{
    return sizeof(rm_req_meta_t) + (size_t)header_count * sizeof(rm_wire_header_t) +
           (size_t)body_slice_count * sizeof(rm_slice_t);
}

/* Check that a meta block of `meta_len` bytes is self-consistent: its arrays fit
 * in meta_len, every head offset lies in [0, chunk_size), every body slice names
 * a chunk < chunk_count and stays inside it, and body_len is their sum; or,
 * with RM_REQ_BODY_FILE, there are no slices and an absolute path of at most
 * PATH_MAX bytes ends with a NUL before meta_len.
 * Returns 0 or -EBADMSG. Pure; reads only `meta`. */
int rm_wire_meta_check(const rm_req_meta_t *meta, size_t meta_len, uint32_t chunk_size,
                       uint32_t chunk_count);

#endif
