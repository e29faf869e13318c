/*
 * doorbell.c - the eventfd a worker writes only when the supervisor sleeps.
 *
 * The two sides form a Dekker pair: the supervisor stores `sleeping`, fences,
 * then reads the completion rings; a worker publishes a completion, fences,
 * then reads `sleeping`. With a full fence on both sides at least one of them
 * sees the other's store, so either the supervisor finds the completion or the
 * worker finds it asleep and writes the eventfd.
 */
#include "ringmaster/doorbell.h"

#include <errno.h>
#include <unistd.h>

int rm_eventfd_signal(int eventfd)
{
    const uint64_t one = 1;
    ssize_t n;
    do {
        n = write(eventfd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
    /* EAGAIN: the counter is saturated, so the reader is woken anyway. */
    return n < 0 && errno != EAGAIN ? -errno : 0;
}

bool rm_doorbell_asleep(rm_doorbell_shared_t *bell)
{
    atomic_thread_fence(memory_order_seq_cst);
    return atomic_load_explicit(&bell->sleeping, memory_order_relaxed) != 0;
}

int rm_doorbell_ring(rm_doorbell_shared_t *bell, int eventfd)
{
    atomic_thread_fence(memory_order_seq_cst);
    /* The cheap load keeps a busy supervisor's line shared; only a worker that
     * sees it asleep pays for the exchange, and only the one that clears the
     * flag pays for the write. */
    if (!atomic_load_explicit(&bell->sleeping, memory_order_relaxed))
        return 0;
    if (atomic_exchange_explicit(&bell->sleeping, 0, memory_order_acq_rel) != 1)
        return 0;

    int rc = rm_eventfd_signal(eventfd);
    if (rc < 0)
        return rc;
    atomic_fetch_add_explicit(&bell->rings, 1, memory_order_relaxed);
    return 1;
}

void rm_doorbell_prepare_sleep(rm_doorbell_shared_t *bell)
{
    atomic_store_explicit(&bell->sleeping, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
}

void rm_doorbell_cancel_sleep(rm_doorbell_shared_t *bell)
{
    atomic_store_explicit(&bell->sleeping, 0, memory_order_relaxed);
}
