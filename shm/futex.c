/*
 * futex.c - wait/wake on a word in shared memory.
 *
 * FUTEX_WAIT/FUTEX_WAKE without FUTEX_PRIVATE_FLAG: the kernel then keys the
 * futex on the backing page rather than on this process's address, which is
 * what lets processes that map the region at different addresses meet.
 * FUTEX_WAIT's timeout is relative (CLOCK_MONOTONIC).
 */
#include "ringmaster/futex.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int rm_futex_wait(_Atomic uint32_t *word, uint32_t expected, int timeout_ms)
{
    struct timespec ts;
    struct timespec *tsp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }

    if (syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, tsp, NULL, 0) == 0)
        return 0;
    switch (errno) {
    case EAGAIN: /* the word had already changed: as good as a wakeup */
        return 0;
    case ETIMEDOUT:
        return -ETIMEDOUT;
    case EINTR:
        return -EINTR;
    default:
        return -errno;
    }
}

int rm_futex_wake(_Atomic uint32_t *word, int count)
{
    long n = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, count, NULL, NULL, 0);
    return n < 0 ? -errno : (int)n;
}
