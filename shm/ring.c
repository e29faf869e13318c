/*
 * ring.c - Vyukov's bounded MPMC queue, laid out for sharing between processes.
 *
 * Each cell is one cache line: a 64-bit sequence number, then the payload.
 * For position p (a 64-bit counter that never wraps in practice) the cell is
 * cells[p & mask] and its sequence says whose turn it is:
 *
 *   seq == p             free: the producer that claims p may write it
 *   seq == p + 1         full: the consumer that claims p may read it
 *   seq == p + capacity  read: free again for the producer of p + capacity
 *
 * A producer claims p with a CAS on `head`, writes the payload and publishes
 * it with a release store of p + 1; a consumer claims p with a CAS on `tail`,
 * reads and hands the cell back with a release store of p + capacity. The
 * acquire load of `seq` is what orders payload bytes between parties; the
 * positions themselves need only relaxed accesses.
 *
 * Any party can scribble on the shared half, so the geometry used for
 * indexing is the local copy in rm_ring_t, and a sequence that no honest
 * party could have written is reported as -EBADMSG instead of spinning.
 */
#include "ringmaster/ring.h"

#include "ringmaster/futex.h"

#include <errno.h>
#include <string.h>

typedef struct cell {
    _Atomic uint64_t seq;
    unsigned char payload[RM_RING_MAX_PAYLOAD];
} cell_t;

static_assert(sizeof(cell_t) == RM_CACHELINE, "one cell per cache line");
static_assert(offsetof(cell_t, payload) == sizeof(uint64_t), "payload after the sequence");

/*
 * When a cell is ahead of the position we loaded, another party claimed that
 * position and the shared index must already have moved past it: the CAS on
 * the index happens before the release store of the cell, which we read with
 * acquire. Seeing the index unchanged after such a cell is therefore only
 * possible if the memory is corrupt; allow a few retries for safety's sake,
 * then give up.
 */
#define CORRUPT_RETRIES 64

static inline cell_t *cell_at(const rm_ring_t *ring, uint64_t pos)
{
    return (cell_t *)(ring->cells + (size_t)(pos & ring->mask) * RM_CACHELINE);
}

static bool capacity_ok(uint32_t capacity)
{
    return capacity >= 2 && (capacity & (capacity - 1)) == 0;
}

size_t rm_ring_shared_size(uint32_t capacity)
{
    return sizeof(rm_ring_shared_t) + (size_t)capacity * RM_CACHELINE;
}

int rm_ring_shared_init(void *mem, uint32_t capacity, uint32_t payload_size)
{
    if (!capacity_ok(capacity) || payload_size > RM_RING_MAX_PAYLOAD)
        return -EINVAL;

    rm_ring_shared_t *shared = mem;
    atomic_store_explicit(&shared->head, 0, memory_order_relaxed);
    atomic_store_explicit(&shared->tail, 0, memory_order_relaxed);
    shared->capacity = capacity;
    shared->payload_size = payload_size;

    cell_t *cells = (cell_t *)((unsigned char *)mem + sizeof(rm_ring_shared_t));
    for (uint32_t i = 0; i < capacity; i++) {
        memset(cells[i].payload, 0, sizeof(cells[i].payload));
        atomic_store_explicit(&cells[i].seq, i, memory_order_relaxed);
    }
    /* Other parties bind only after they receive the region, through a
     * syscall that orders this; the fence is for threads of this process. */
    atomic_thread_fence(memory_order_release);
    return 0;
}

void rm_ring_bind(rm_ring_t *ring, void *mem, uint32_t capacity, uint32_t payload_size)
{
    ring->shared = mem;
    ring->cells = (unsigned char *)mem + sizeof(rm_ring_shared_t);
    ring->mask = capacity - 1;
    ring->payload_size = payload_size;
}

int rm_ring_try_push(rm_ring_t *ring, const void *item)
{
    _Atomic uint64_t *head = &ring->shared->head;
    uint64_t pos = atomic_load_explicit(head, memory_order_relaxed);
    unsigned stuck = 0;
    cell_t *cell;

    for (;;) {
        cell = cell_at(ring, pos);
        uint64_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
        int64_t dif = (int64_t)(seq - pos);
        if (dif == 0) {
            /* On failure pos is reloaded with the current head. */
            if (atomic_compare_exchange_weak_explicit(head, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
            stuck = 0;
        } else if (dif < 0) {
            /* The cell still holds the item from one lap ago: full. */
            return -EAGAIN;
        } else {
            uint64_t now = atomic_load_explicit(head, memory_order_relaxed);
            if (now == pos) {
                if (++stuck > CORRUPT_RETRIES)
                    return -EBADMSG;
                rm_cpu_relax();
            } else {
                stuck = 0;
            }
            pos = now;
        }
    }

    memcpy(cell->payload, item, ring->payload_size);
    atomic_store_explicit(&cell->seq, pos + 1, memory_order_release);
    return 0;
}

bool rm_ring_ready(const rm_ring_t *ring)
{
    uint64_t pos = atomic_load_explicit(&ring->shared->tail, memory_order_relaxed);
    const cell_t *cell = cell_at(ring, pos);
    return atomic_load_explicit(&cell->seq, memory_order_acquire) == pos + 1;
}

int rm_ring_try_pop(rm_ring_t *ring, void *item)
{
    _Atomic uint64_t *tail = &ring->shared->tail;
    uint64_t pos = atomic_load_explicit(tail, memory_order_relaxed);
    unsigned stuck = 0;
    cell_t *cell;

    for (;;) {
        cell = cell_at(ring, pos);
        uint64_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
        int64_t dif = (int64_t)(seq - (pos + 1));
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(tail, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
            stuck = 0;
        } else if (dif < 0) {
            /* Not yet published for this lap (or never pushed): empty. */
            return -EAGAIN;
        } else {
            uint64_t now = atomic_load_explicit(tail, memory_order_relaxed);
            if (now == pos) {
                if (++stuck > CORRUPT_RETRIES)
                    return -EBADMSG;
                rm_cpu_relax();
            } else {
                stuck = 0;
            }
            pos = now;
        }
    }

    memcpy(item, cell->payload, ring->payload_size);
    atomic_store_explicit(&cell->seq, pos + (uint64_t)ring->mask + 1, memory_order_release);
    return 0;
}

uint32_t rm_ring_count(const rm_ring_t *ring)
{
    /* tail first: consumers never pass head and head only grows, so honest
     * parties cannot make the difference negative; clamp anyway, since the
     * indices are shared memory. */
    uint64_t tail = atomic_load_explicit(&ring->shared->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&ring->shared->head, memory_order_relaxed);
    if (head <= tail)
        return 0;
    uint64_t n = head - tail;
    uint64_t cap = (uint64_t)ring->mask + 1;
    return (uint32_t)(n < cap ? n : cap);
}
