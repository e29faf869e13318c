/*
 * metrics.h - the metrics endpoint's pure parts: reading a probe request and
 * rendering the Prometheus text exposition format (0.0.4).
 *
 * The endpoint itself (a listening socket served by the supervisor's io_uring
 * loop) lives in supervisor/metrics.c; its hooks are declared in server.h.
 * Nothing here allocates except rm_textbuf_t, which grows on the heap.
 */
#ifndef RINGMASTER_METRICS_H
#define RINGMASTER_METRICS_H

#include "ringmaster/stats.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest probe request head accepted (request line and headers); more is 431. */
#define RM_METRICS_MAX_REQUEST 4096

/* A growable text buffer. `data` is owned (free with rm_textbuf_deinit); once
 * an allocation fails `failed` is set and further appends are ignored. */
typedef struct rm_textbuf {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
} rm_textbuf_t;

void rm_textbuf_init(rm_textbuf_t *b);
void rm_textbuf_deinit(rm_textbuf_t *b);
void rm_textbuf_printf(rm_textbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rm_textbuf_append(rm_textbuf_t *b, const char *data, size_t len);

enum rm_metrics_path {
    RM_METRICS_PATH_OTHER = 0, /* 404 */
    RM_METRICS_PATH_METRICS,   /* /metrics */
    RM_METRICS_PATH_HEALTHZ,   /* /healthz */
    RM_METRICS_PATH_READYZ,    /* /readyz */
};

typedef struct rm_metrics_request {
    enum rm_metrics_path path; /* the query string, if any, is ignored */
    bool head;                 /* HEAD: answer without a body */
    int status;                /* 0 when it may be served; else the error to answer
                                  (400 malformed, 405 not GET/HEAD, 431 too large) */
} rm_metrics_request_t;

/* Look at the first `len` bytes received on a probe connection. Returns the
 * bytes of the complete head (through the blank line) with `out` filled, 0
 * when more bytes are needed, or -EMSGSIZE when `len` already reaches
 * RM_METRICS_MAX_REQUEST without a complete head (out->status = 431). A
 * malformed request line gives a positive return with out->status = 400. */
long rm_metrics_parse_request(const char *buf, size_t len, rm_metrics_request_t *out);

/* Gauges the supervisor samples at scrape time (its own bookkeeping). */
typedef struct rm_metrics_lane_sample {
    uint32_t lane;
    int32_t pid;
    uint32_t queue_depth;  /* requests on its ring the worker has not taken */
    uint32_t outstanding;  /* dispatched by the supervisor and not finished */
    uint8_t state;         /* enum rm_worker_state */
    rm_lane_stats_t stats; /* the worker's own counters: display only */
} rm_metrics_lane_sample_t;

typedef struct rm_metrics_sample {
    const rm_supervisor_stats_t *stats; /* borrowed: counters */
    uint32_t open_connections;
    uint32_t queued;    /* waiting in the supervisor for a lane */
    uint32_t in_flight; /* dispatched to a worker and not finished */
    uint32_t chunks_in_use;
    uint32_t chunks_total;
    uint32_t workers_starting, workers_ready, workers_stopping;
    uint32_t target_workers;
    uint32_t lane_count;                   /* entries in lanes */
    const rm_metrics_lane_sample_t *lanes; /* borrowed: one per lane with a worker */
} rm_metrics_sample_t;

/* Append every metric, in the text exposition format, to `out`. */
void rm_metrics_render(const rm_metrics_sample_t *sample, rm_textbuf_t *out);

/* Append a complete HTTP/1.1 response with `body` (not sent for HEAD) and
 * Connection: close. */
void rm_metrics_response(rm_textbuf_t *out, int status, const char *content_type, const char *body,
                         size_t body_len, bool head);

#endif
