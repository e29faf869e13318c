/*
 * exchange.h - what the supervisor notes about one request/response exchange
 * for the metrics and the access log.
 *
 * The supervisor does not parse responses: a worker writes the whole head.
 * It only watches the bytes it queues for sending, with rm_resp_scan, to learn
 * the final status code and where the head ends (so the body's size is known).
 * A worker decides those bytes, so the status is only displayed and logged,
 * never acted on.
 */
#ifndef RINGMASTER_EXCHANGE_H
#define RINGMASTER_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A response head being watched. Zero-initialised = at the start of a head. */
typedef struct rm_resp_scan {
    char prefix[12]; /* "HTTP/1.1 200": the first bytes of the current head */
    uint8_t prefix_len;
    uint8_t crlf;    /* how much of "\r\n\r\n" was just seen (0..3) */
    bool head_done;  /* the final (non-1xx) head ended: the rest is body */
    uint16_t status; /* of the current head; 0 until known or if malformed */
} rm_resp_scan_t;

/* Look at `len` more response bytes. Returns how many of them are body bytes
 * (after the final head). Interim 1xx heads (100 Continue) are skipped: the
 * status is that of the head that follows them. Pure. */
size_t rm_resp_scan_feed(rm_resp_scan_t *scan, const char *data, size_t len);

/* The final status, once its head has ended; 0 before, or if the head did
 * not start "HTTP/x.y NNN" with NNN in 100..599. */
static inline int rm_resp_scan_status(const rm_resp_scan_t *scan)
{
    return scan->head_done ? scan->status : 0;
}

/* One exchange on a connection (rm_conn_t.ex). */
typedef struct rm_exchange {
    bool active;           /* a request began and is not recorded yet */
    bool parsed;           /* `req` holds method, target and protocol apart */
    uint64_t start_ns;     /* CLOCK_MONOTONIC when its first byte was parsed */
    int64_t start_wall_ns; /* CLOCK_REALTIME then (only kept for an access log) */
    rm_resp_scan_t scan;
    uint64_t body_bytes; /* response body bytes queued */
    /* Access log only: owned copy of the request's fields, NULL when none.
     * Layout: the request line (method SP target SP protocol, or the raw first
     * line of a malformed request), then the Referer, then the User-Agent. */
    char *req;
    uint32_t line_len, target_len, method_len, proto_len;
    uint16_t referer_len, agent_len; /* length + 1, 0 when not sent */
} rm_exchange_t;

#endif
