/*
 * stats.h - the counters behind /metrics, kept in the shared region so that
 * the supervisor and the workers update them without messages.
 *
 *   rm_supervisor_stats_t   written by the supervisor only
 *   rm_lane_stats_t[lanes]  one cache line per lane, written by the worker on it
 *
 * Every party writes its own counters with relaxed atomics: the supervisor is
 * the single writer of its block (a load and a store suffice), a worker's
 * threads share their lane's line (atomic adds). A worker can write anything
 * anywhere in the region, so the supervisor uses none of these values for
 * decisions: they are read back only to be displayed.
 */
#ifndef RINGMASTER_STATS_H
#define RINGMASTER_STATS_H

#include "ringmaster/ring.h"

#include <assert.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Why a worker left while the server kept running (restart counter labels). */
enum rm_restart_cause {
    RM_RESTART_CRASH = 0,    /* died unasked: a signal from outside, a crash, an exit */
    RM_RESTART_TIMEOUT,      /* killed for --timeout */
    RM_RESTART_HEARTBEAT,    /* killed: its control thread stopped beating */
    RM_RESTART_PROTOCOL,     /* killed: a malformed control frame or completion */
    RM_RESTART_MAX_REQUESTS, /* recycled by --max-requests */
    RM_RESTART_MAX_RSS,      /* recycled by --max-rss */
    RM_RESTART_RELOAD,       /* replaced by SIGHUP */
    RM_RESTART_SCALE_DOWN,   /* the pool shrank (SIGTTOU, --idle-timeout) */
    RM_RESTART_CAUSES,
};

/* Label value of a cause ("crash", "max_requests", ...); "unknown" if out of range. */
const char *rm_restart_cause_name(unsigned cause);

/* Why the server answered 503 (or, at --max-connections, refused a
 * connection) although nothing was wrong with the request: it was busy. */
enum rm_overload_cause {
    RM_OVERLOAD_NO_MEMORY = 0,   /* no chunk for the request's input (the response
                                    reserve is not the requests' to take) */
    RM_OVERLOAD_QUEUE_FULL,      /* --max-queued requests already waited */
    RM_OVERLOAD_QUEUE_TIMEOUT,   /* waited past --queue-timeout without a thread */
    RM_OVERLOAD_MAX_CONNECTIONS, /* a connection over --max-connections */
    RM_OVERLOAD_CAUSES,
};

/* Label value of a cause ("no_memory", ...); "unknown" if out of range. */
const char *rm_overload_cause_name(unsigned cause);

/* Request latency buckets' upper bounds in microseconds; +Inf follows. */
#define RM_LATENCY_BUCKETS 15
extern const uint64_t rm_latency_bounds_us[RM_LATENCY_BUCKETS];

typedef struct rm_supervisor_stats {
    /* Responses by status class: [0] 1xx .. [4] 5xx. */
    _Atomic uint64_t responses[5];
    /* Request latency: arrival of the request's first byte to its last response
     * byte queued for sending. Non-cumulative counts; [RM_LATENCY_BUCKETS] is
     * above the last bound. */
    _Atomic uint64_t latency[RM_LATENCY_BUCKETS + 1];
    _Atomic uint64_t latency_sum_us;
    _Atomic uint64_t restarts[RM_RESTART_CAUSES];
    _Atomic uint64_t bytes_received; /* from clients */
    _Atomic uint64_t bytes_sent;     /* to clients */
    _Atomic uint64_t connections_accepted;
    _Atomic uint64_t access_log_lines;
    _Atomic uint64_t access_log_dropped;           /* lines lost because the writer fell behind */
    _Atomic uint64_t overload[RM_OVERLOAD_CAUSES]; /* busy answers, by cause */
    _Atomic uint64_t requests_moved; /* taken back from a busy worker's lane, given to another */
} rm_supervisor_stats_t;

/* One lane's counters, written by the threads of the worker serving it
 * (rm_lane_stat_add) and zeroed by the supervisor before it starts a worker
 * on the lane: they count since that worker started. */
typedef struct rm_lane_stats {
    alignas(RM_CACHELINE) _Atomic uint64_t requests; /* requests the app was run for */
    _Atomic uint64_t exceptions;                     /* of which the app raised */
    _Atomic uint64_t in_flight;                      /* requests in the app right now */
    _Atomic uint64_t chunk_waits;   /* times a thread found no response chunk and backed off */
    _Atomic uint64_t chunk_wait_ns; /* time spent so, in nanoseconds */
    _Atomic uint64_t parked;        /* streamed responses waiting for a slow client off their
                                       thread now (serve.c) */
    _Atomic uint64_t window_waits;  /* threads held waiting for a slow client's window now */
} rm_lane_stats_t;

static_assert(sizeof(rm_lane_stats_t) == RM_CACHELINE, "lane stats: one line each");
static_assert(offsetof(rm_lane_stats_t, in_flight) == 16, "lane stats layout");

/* Single-writer increment: the writer's load and store, readers see either value. */
static inline void rm_stat_add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Worker: several threads add to their lane's counters. */
static inline void rm_lane_stat_add(_Atomic uint64_t *counter, int64_t n)
{
    atomic_fetch_add_explicit(counter, (uint64_t)n, memory_order_relaxed);
}

static inline uint64_t rm_stat_get(const _Atomic uint64_t *counter)
{
    return atomic_load_explicit((_Atomic uint64_t *)counter, memory_order_relaxed);
}

/* Index of the latency bucket that `us` falls in. */
static inline unsigned rm_latency_bucket(uint64_t us)
{
    unsigned i = 0;
    while (i < RM_LATENCY_BUCKETS && us > rm_latency_bounds_us[i])
        i++;
    return i;
}

/* Count one finished response: its status (100..599; other values count in
 * no class) and its latency. Supervisor only. */
void rm_stats_record_response(rm_supervisor_stats_t *stats, int status, uint64_t latency_us);

#endif
