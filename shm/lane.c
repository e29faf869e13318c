/*
 * lane.c - a worker's request and completion rings, and how its threads sleep.
 *
 * Sleeping is a Dekker handshake over two words on the lane's second cache
 * line. A consumer reads the bell, registers in req_sleepers, issues a full
 * fence and tries the ring once more before it sleeps on the bell; a producer
 * publishes, issues a full fence, and rings (bumps the bell, FUTEX_WAKE) only
 * if it sees a waiter. Either the consumer's last try sees the item, or the
 * producer sees the waiter; and because the consumer sleeps only while the
 * bell still holds the value it read before registering, a ring that lands
 * between its check and its FUTEX_WAIT makes the wait return at once.
 */
#include "ringmaster/lane.h"

#include "ringmaster/futex.h"

#include <errno.h>
#include <limits.h>
#include <time.h>

static_assert(sizeof(rm_req_desc_t) <= RM_RING_MAX_PAYLOAD, "request fits a cell");
static_assert(sizeof(rm_done_desc_t) <= RM_RING_MAX_PAYLOAD, "completion fits a cell");
static_assert(sizeof(rm_lane_shared_t) == 3 * RM_CACHELINE, "lane header is three lines");

size_t rm_lane_shared_size(uint32_t capacity)
{
    return sizeof(rm_lane_shared_t) + 2 * rm_ring_shared_size(capacity);
}

static unsigned char *done_ring_mem(rm_lane_shared_t *shared, uint32_t capacity)
{
    return shared->rings + rm_ring_shared_size(capacity);
}

void rm_lane_shared_reset(void *mem, uint32_t capacity)
{
    rm_lane_shared_t *shared = mem;
    /* Payload sizes are compile-time constants that fit; only capacity can be
     * wrong, and the region checked it. */
    (void)rm_ring_shared_init(shared->rings, capacity, sizeof(rm_req_desc_t));
    (void)rm_ring_shared_init(done_ring_mem(shared, capacity), capacity, sizeof(rm_done_desc_t));
    atomic_store_explicit(&shared->state, RM_LANE_IDLE, memory_order_relaxed);
    atomic_store_explicit(&shared->worker_pid, 0, memory_order_relaxed);
    atomic_store_explicit(&shared->req_sleepers, 0, memory_order_relaxed);
    rm_doorbell_cancel_sleep(&shared->loop_bell);
    /* The bell keeps counting: a sleeper left over from the previous worker
     * must never see its old value come back. */
    atomic_fetch_add_explicit(&shared->req_bell, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&shared->generation, 1, memory_order_release);
}

void rm_lane_bind(rm_lane_t *lane, void *mem, uint32_t capacity, uint32_t index)
{
    rm_lane_shared_t *shared = mem;
    lane->shared = shared;
    rm_ring_bind(&lane->req, shared->rings, capacity, sizeof(rm_req_desc_t));
    rm_ring_bind(&lane->done, done_ring_mem(shared, capacity), capacity, sizeof(rm_done_desc_t));
    lane->index = index;
    /* Differ from the current count, so a consumer already asleep is rung. */
    lane->woken_sleeps =
        RM_LANE_SLEEPS(atomic_load_explicit(&shared->req_sleepers, memory_order_relaxed)) - 1;
    lane->loop_fd = -1;
}

void rm_lane_set_loop_fd(rm_lane_t *lane, int fd)
{
    lane->loop_fd = fd;
}

int rm_lane_push_request(rm_lane_t *lane, const rm_req_desc_t *desc)
{
    int r = rm_ring_try_push(&lane->req, desc);
    if (r < 0)
        return r;
    atomic_thread_fence(memory_order_seq_cst);
    uint64_t word = atomic_load_explicit(&lane->shared->req_sleepers, memory_order_relaxed);
    /* Ring only for a sleeper that went to sleep after our last ring: the ones
     * we woke are already on their way and will see this item too. All of them
     * are woken, so several worker threads share a burst. */
    if (RM_LANE_WAITERS(word) > 0 && RM_LANE_SLEEPS(word) != lane->woken_sleeps) {
        lane->woken_sleeps = RM_LANE_SLEEPS(word);
        atomic_fetch_add_explicit(&lane->shared->req_bell, 1, memory_order_release);
        (void)rm_futex_wake(&lane->shared->req_bell, (int)RM_LANE_WAITERS(word));
    }
    /* An event loop that armed the bell is woken once; one that is busy (the
     * bell disarmed) costs a load. A failed write leaves the loop to its
     * periodic look at the lane. */
    if (lane->loop_fd >= 0)
        (void)rm_doorbell_ring(&lane->shared->loop_bell, lane->loop_fd);
    return 0;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool rm_lane_arm_loop_bell(rm_lane_t *lane)
{
    /* The doorbell's handshake (doorbell.c): arm with a full fence, then look
     * once more; either we see the request or the producer sees us armed. */
    rm_doorbell_prepare_sleep(&lane->shared->loop_bell);
    if (!rm_ring_ready(&lane->req))
        return false;
    rm_doorbell_cancel_sleep(&lane->shared->loop_bell);
    return true;
}

int rm_lane_pop_request(rm_lane_t *lane, rm_req_desc_t *desc, unsigned spin, int timeout_ms)
{
    rm_lane_shared_t *shared = lane->shared;
    int64_t deadline = timeout_ms > 0 ? now_ns() + (int64_t)timeout_ms * 1000000 : 0;

    for (;;) {
        for (unsigned i = 0;; i++) {
            int r = rm_ring_try_pop(&lane->req, desc);
            if (r != -EAGAIN)
                return r;
            if (i >= spin)
                break;
            rm_cpu_relax();
        }
        /* Bell before state: the supervisor stores STOPPING before
         * rm_lane_wake_all bumps the bell, so either we see STOPPING here or
         * the bell has moved past `bell` and the wait below returns at once. */
        uint32_t bell = atomic_load_explicit(&shared->req_bell, memory_order_acquire);
        if (atomic_load_explicit(&shared->state, memory_order_acquire) == RM_LANE_STOPPING)
            return -EINTR;
        if (timeout_ms == 0)
            return -ETIMEDOUT;

        int wait_ms = -1;
        if (timeout_ms > 0) {
            int64_t left = deadline - now_ns();
            if (left <= 0)
                return -ETIMEDOUT;
            /* Round up, so that we never wake a little early and spin. */
            wait_ms = (int)((left + 999999) / 1000000);
        }

        atomic_fetch_add_explicit(&shared->req_sleepers, (1ull << 32) | 1u, memory_order_seq_cst);
        atomic_thread_fence(memory_order_seq_cst);
        int r = rm_ring_try_pop(&lane->req, desc);
        if (r != -EAGAIN) {
            atomic_fetch_sub_explicit(&shared->req_sleepers, 1, memory_order_relaxed);
            return r;
        }
        int w = rm_futex_wait(&shared->req_bell, bell, wait_ms);
        atomic_fetch_sub_explicit(&shared->req_sleepers, 1, memory_order_relaxed);
        if (w < 0 && w != -ETIMEDOUT)
            return w; /* -EINTR: a signal */
        /* Woken, timed out or the bell moved: try again; the deadline check
         * above decides when to give up. */
    }
}

void rm_lane_wake_all(rm_lane_t *lane)
{
    atomic_fetch_add_explicit(&lane->shared->req_bell, 1, memory_order_seq_cst);
    (void)rm_futex_wake(&lane->shared->req_bell, INT_MAX);
    if (lane->loop_fd >= 0)
        (void)rm_eventfd_signal(lane->loop_fd); /* armed or not: a busy loop sees the stop too */
}

int rm_lane_push_done(rm_lane_t *lane, const rm_done_desc_t *desc)
{
    return rm_ring_try_push(&lane->done, desc);
}

int rm_lane_try_pop_done(rm_lane_t *lane, rm_done_desc_t *desc)
{
    return rm_ring_try_pop(&lane->done, desc);
}
