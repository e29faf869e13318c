/*
 * doorbell.h - waking the supervisor, which sleeps in io_uring_wait_cqe.
 *
 * The supervisor keeps a read armed on an eventfd. Before it sleeps it sets
 * `sleeping`, issues a full fence and looks at every completion ring once more;
 * a worker, after publishing a completion, issues a full fence and writes the
 * eventfd only if it sees `sleeping` set (and is the one to clear it). A busy
 * supervisor therefore costs its workers no syscall at all.
 */
#ifndef RINGMASTER_DOORBELL_H
#define RINGMASTER_DOORBELL_H

#include "ringmaster/ring.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct rm_doorbell_shared {
    alignas(RM_CACHELINE) _Atomic uint32_t sleeping; /* 1 while the supervisor may block */
    _Atomic uint32_t rings;                          /* eventfd writes, statistics */
} rm_doorbell_shared_t;

/* Producer side: call after publishing. Writes `eventfd` when the consumer
 * sleeps. Returns 1 if it wrote, 0 if not needed, -errno if write failed. */
int rm_doorbell_ring(rm_doorbell_shared_t *bell, int eventfd);

/* Producer side, after publishing: whether the consumer sleeps (the ring would
 * write the eventfd). With the full fence rm_doorbell_ring issues, so a
 * producer that sees it awake may rely on it finding what was published. */
bool rm_doorbell_asleep(rm_doorbell_shared_t *bell);

/* Add one to an eventfd's counter, waking whoever polls it. Returns 0 or -errno. */
int rm_eventfd_signal(int eventfd);

/* Consumer side: announce sleep. The caller must then re-check its rings and
 * call rm_doorbell_cancel_sleep() if it found work. */
void rm_doorbell_prepare_sleep(rm_doorbell_shared_t *bell);
void rm_doorbell_cancel_sleep(rm_doorbell_shared_t *bell);

#endif
