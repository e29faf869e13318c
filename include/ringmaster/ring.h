/*
 * ring.h - bounded lock-free MPMC queue that works across processes.
 *
 * Dmitry Vyukov's bounded queue: every cell carries a sequence number, producers
 * claim a position with a CAS on `head`, consumers on `tail`, and a cell's
 * sequence says whose turn it is. The queue lives in shared memory and holds
 * only plain bytes (descriptors of offsets), never pointers.
 *
 * Two halves:
 *  - rm_ring_shared_t lives in the region (indices, cells). Any party may write
 *    it, so nothing in it is trusted for bounds.
 *  - rm_ring_t is a process-local handle with the geometry copied at bind time,
 *    the way liburing copies ring_mask out of the kernel's mmap.
 *
 * Thread/process safety: any number of producers and consumers, in any number
 * of processes, may use the same shared ring concurrently.
 */
#ifndef RINGMASTER_RING_H
#define RINGMASTER_RING_H

#include <assert.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RM_CACHELINE 64
/* Largest payload a cell carries: one cache line per cell minus its sequence. */
#define RM_RING_MAX_PAYLOAD 56

typedef struct rm_ring_shared {
    alignas(RM_CACHELINE) _Atomic uint64_t head; /* next position producers claim */
    alignas(RM_CACHELINE) _Atomic uint64_t tail; /* next position consumers claim */
    /* Written once by the creator, for debugging only; never trusted. */
    alignas(RM_CACHELINE) uint32_t capacity;
    uint32_t payload_size;
    /* cells follow at offset sizeof(rm_ring_shared_t), RM_CACHELINE bytes each */
} rm_ring_shared_t;

static_assert(offsetof(rm_ring_shared_t, tail) == RM_CACHELINE, "tail on its own line");
static_assert(sizeof(rm_ring_shared_t) == 3 * RM_CACHELINE, "ring header is three lines");
static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free across processes");

typedef struct rm_ring {
    rm_ring_shared_t *shared; /* borrowed: valid while the region stays mapped */
    unsigned char *cells;     /* first cell, derived from shared */
    uint32_t mask;            /* capacity - 1, local copy */
    uint32_t payload_size;    /* bytes copied per push/pop, local copy */
} rm_ring_t;

/* Bytes a shared ring of `capacity` cells needs (capacity: power of two >= 2). */
size_t rm_ring_shared_size(uint32_t capacity);

/* Initialise a shared ring in `mem` (RM_CACHELINE aligned, rm_ring_shared_size()
 * bytes). Only the creator calls this, before any other party binds.
 * Returns 0, or -EINVAL for a capacity that is not a power of two or a payload
 * larger than RM_RING_MAX_PAYLOAD. */
int rm_ring_shared_init(void *mem, uint32_t capacity, uint32_t payload_size);

/* Bind a local handle to a shared ring whose geometry the caller knows from its
 * own configuration (not from the shared memory). */
void rm_ring_bind(rm_ring_t *ring, void *mem, uint32_t capacity, uint32_t payload_size);

/* Copy `payload_size` bytes from `item` into the ring.
 * Returns 0, -EAGAIN when full, or -EBADMSG when the shared state is corrupt
 * (a cell sequence no honest party could have written). Never blocks. */
int rm_ring_try_push(rm_ring_t *ring, const void *item);

/* Copy the oldest item into `item`.
 * Returns 0, -EAGAIN when empty, or -EBADMSG when the shared state is corrupt. */
int rm_ring_try_pop(rm_ring_t *ring, void *item);

/* Whether the next item is published, without taking it: a hint (another
 * consumer may take it first), for a thread that only wakes a consumer. */
bool rm_ring_ready(const rm_ring_t *ring);

/* Items published and not yet claimed; exact only when the ring is quiescent. */
uint32_t rm_ring_count(const rm_ring_t *ring);

#endif
