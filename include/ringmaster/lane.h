/*
 * lane.h - one worker's pair of rings: requests in, completions out.
 *
 * The supervisor pushes rm_req_desc_t onto a lane's request ring; the worker's
 * threads pop them, run the app, and push rm_done_desc_t onto the completion
 * ring, which the supervisor drains.
 *
 * Waking: a consumer that finds its ring empty spins briefly, then announces
 * itself in `req_sleepers` and sleeps on the `req_bell` futex. A producer pays a
 * syscall only when a consumer said it sleeps (checked after publishing, with a
 * full fence on both sides, so no wakeup is lost), and only once per sleep: a
 * burst of pushes to a sleeping worker costs one futex_wake, not one each. The supervisor sleeps in
 * io_uring, so completions ring the region's rm_doorbell instead (doorbell.h).
 *
 * A consumer that runs an event loop (ASGI) cannot sleep on a futex: its loop
 * sleeps in epoll. It watches the lane's loop bell instead, an eventfd the
 * supervisor made for the lane, with the doorbell's handshake: the loop arms
 * the bell when it finds the ring empty, and the next push writes the eventfd
 * once. One hop from the supervisor to the loop, and a loop that keeps finding
 * requests costs the supervisor no syscall.
 */
#ifndef RINGMASTER_LANE_H
#define RINGMASTER_LANE_H

#include "ringmaster/doorbell.h"
#include "ringmaster/ring.h"

#include <stdbool.h>
#include <stdint.h>

/* Request descriptor, supervisor -> worker. */
typedef struct rm_req_desc {
    uint64_t req_id;      /* opaque to the worker; echoed in every completion */
    uint32_t meta_chunk;  /* chunk holding the rm_req_meta_t (wire.h) */
    uint32_t meta_len;    /* bytes of meta in that chunk */
    uint64_t enqueued_ns; /* CLOCK_MONOTONIC when queued */
    uint64_t deadline_ns; /* CLOCK_MONOTONIC after which it is answered 503 unrun; 0: none */
} rm_req_desc_t;

/* Completion flags. */
#define RM_DONE_LAST 0x1u  /* last piece of this response */
#define RM_DONE_CLOSE 0x2u /* close the connection after sending */
/* RM_DONE_HOLD rides on the completion that carries RM_DONE_LAST: the app kept
 * a view of the request body, so the supervisor must not reuse the request's
 * meta, head and body chunks yet. Exactly one {req_id, chunk RM_CHUNK_NONE,
 * flags RM_DONE_RELEASE} follows when the last view is gone, or never, if the
 * worker exits first (its exit releases every hold). */
#define RM_DONE_HOLD 0x4u    /* worker still reads this request's chunks; RM_DONE_RELEASE follows */
#define RM_DONE_RELEASE 0x8u /* the held request's chunks may be reused */

/* Completion descriptor, worker -> supervisor. Every field is checked by the
 * supervisor before use: chunk owned by this lane, span inside the chunk,
 * req_id outstanding on this lane. */
typedef struct rm_done_desc {
    uint64_t req_id; /* the request this answers */
    uint32_t chunk;  /* response bytes, or RM_CHUNK_NONE for none */
    uint32_t off;    /* first byte inside the chunk */
    uint32_t len;    /* bytes to send */
    uint32_t flags;  /* RM_DONE_* */
    uint64_t reserved;
} rm_done_desc_t;

static_assert(sizeof(rm_req_desc_t) == 32, "request descriptor layout");
static_assert(sizeof(rm_done_desc_t) == 32, "completion descriptor layout");

/* Lane state word, written by the supervisor. */
enum rm_lane_state {
    RM_LANE_IDLE = 0,    /* no worker */
    RM_LANE_ACTIVE = 1,  /* a worker serves it */
    RM_LANE_STOPPING = 2 /* worker asked to finish what it has and exit */
};

typedef struct rm_lane_shared {
    alignas(RM_CACHELINE) _Atomic uint32_t state;    /* enum rm_lane_state */
    _Atomic uint32_t generation;                     /* bumped on every reset */
    _Atomic int32_t worker_pid;                      /* set by the supervisor */
    alignas(RM_CACHELINE) _Atomic uint32_t req_bell; /* futex word consumers sleep on */
    uint32_t reserved;
    /* Low 32 bits: consumers asleep or about to be. High 32 bits: how many
     * times a consumer has gone to sleep. One word, so a producer reads both
     * at once and rings only for a sleeper it has not woken yet. */
    _Atomic uint64_t req_sleepers;
    rm_doorbell_shared_t loop_bell;              /* armed by an event-loop consumer */
    alignas(RM_CACHELINE) unsigned char rings[]; /* request ring, then completion ring */
} rm_lane_shared_t;

static_assert(offsetof(rm_lane_shared_t, req_bell) == RM_CACHELINE, "bell on its own line");
static_assert(offsetof(rm_lane_shared_t, req_sleepers) == RM_CACHELINE + 8, "sleepers by the bell");
static_assert(offsetof(rm_lane_shared_t, loop_bell) == 2 * RM_CACHELINE,
              "loop bell on its own line");
static_assert(offsetof(rm_lane_shared_t, rings) == 3 * RM_CACHELINE, "rings after three lines");

typedef struct rm_lane {
    rm_lane_shared_t *shared; /* borrowed: valid while the region is mapped */
    rm_ring_t req;            /* supervisor -> worker */
    rm_ring_t done;           /* worker -> supervisor */
    uint32_t index;
    uint32_t woken_sleeps; /* producer side: req_sleepers' count at the last ring */
    int loop_fd;           /* producer side: the loop bell's eventfd, or -1 (rm_lane_set_loop_fd) */
} rm_lane_t;

#define RM_LANE_WAITERS(word) ((uint32_t)(word))
#define RM_LANE_SLEEPS(word) ((uint32_t)((word) >> 32))

/* Bytes one lane with rings of `capacity` cells needs (a multiple of RM_CACHELINE). */
size_t rm_lane_shared_size(uint32_t capacity);

/* Creator (or the supervisor, when no worker uses it): initialise both rings
 * empty and bump the generation. */
void rm_lane_shared_reset(void *mem, uint32_t capacity);

/* Bind a process's view of a lane. The loop bell starts unset (-1). */
void rm_lane_bind(rm_lane_t *lane, void *mem, uint32_t capacity, uint32_t index);

/* Supervisor: the eventfd to write when an event-loop consumer armed the loop
 * bell (borrowed; -1: none). */
void rm_lane_set_loop_fd(rm_lane_t *lane, int fd);

/* Supervisor: publish a request and wake a sleeping consumer.
 * Returns 0, -EAGAIN when the ring is full, -EBADMSG when it is corrupt. */
int rm_lane_push_request(rm_lane_t *lane, const rm_req_desc_t *desc);

/* Worker: take a request, spinning `spin` times and then sleeping up to
 * timeout_ms (< 0: forever) when there is none.
 * Returns 0, -ETIMEDOUT, -EINTR (a signal, or the ring is empty and the lane's
 * state is RM_LANE_STOPPING), or -EBADMSG. Requests still queued when the
 * state turns STOPPING are returned first. */
int rm_lane_pop_request(rm_lane_t *lane, rm_req_desc_t *desc, unsigned spin, int timeout_ms);

/* Worker, from an event loop that found the ring empty: arm the loop bell, so
 * that the next push writes its eventfd. Returns true when a request came in
 * meanwhile (the bell is disarmed again): pop it rather than wait. */
bool rm_lane_arm_loop_bell(rm_lane_t *lane);

/* Wake every consumer sleeping on the lane, and write the loop bell's eventfd.
 * Store RM_LANE_STOPPING in `state` first: sleepers then return -EINTR once the
 * ring is empty. */
void rm_lane_wake_all(rm_lane_t *lane);

/* Worker: publish a completion. The caller rings the doorbell afterwards
 * (once per batch). Returns 0, -EAGAIN when full, -EBADMSG when corrupt. */
int rm_lane_push_done(rm_lane_t *lane, const rm_done_desc_t *desc);

/* Supervisor: take a completion. Returns 0, -EAGAIN when empty, -EBADMSG. */
int rm_lane_try_pop_done(rm_lane_t *lane, rm_done_desc_t *desc);

#endif
