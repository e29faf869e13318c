/*
 * futex.h - wait/wake on a 32-bit word in shared memory.
 *
 * Shared (not FUTEX_PRIVATE) futexes, since the word lives in a MAP_SHARED
 * region that several processes map at different addresses.
 */
#ifndef RINGMASTER_FUTEX_H
#define RINGMASTER_FUTEX_H

#include <stdatomic.h>
#include <stdint.h>

/* Sleep while *word == expected, at most timeout_ms (< 0: forever).
 * Returns 0 when woken (or the word already differed), -ETIMEDOUT, or -EINTR. */
int rm_futex_wait(_Atomic uint32_t *word, uint32_t expected, int timeout_ms);

/* Wake up to `count` sleepers on `word`. Returns how many were woken or -errno. */
int rm_futex_wake(_Atomic uint32_t *word, int count);

/* A short pause inside a spin loop (the PAUSE instruction where there is one). */
static inline void rm_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
