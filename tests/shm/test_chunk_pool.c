/*
 * test_chunk_pool.c - owner-tagged chunk allocation, through chunk_pool.h.
 */
#include "ringmaster/chunk_pool.h"

#include <criterion/criterion.h>

#include "peers.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

#define CHUNK 256 /* the pool does not care; small keeps the tests light */

/* A pool of `count` chunks in shared memory (bookkeeping, then the chunks). */
static void make_pool(rm_chunk_pool_t *pool, uint32_t count)
{
    size_t meta = rm_chunk_pool_shared_size(count);
    unsigned char *mem = map_shared(meta + (size_t)count * CHUNK);
    rm_chunk_pool_shared_init(mem, count);
    rm_chunk_pool_bind(pool, mem, mem + meta, count, CHUNK, 0);
}

Test(chunk_pool, shared_size_covers_bitmap_and_owners)
{
    /* bitmap words plus one owner word per chunk, whatever the header */
    cr_assert_geq(rm_chunk_pool_shared_size(1), sizeof(uint64_t) + sizeof(uint32_t));
    cr_assert_geq(rm_chunk_pool_shared_size(1000), 16 * sizeof(uint64_t) + 1000 * sizeof(uint32_t));
    cr_assert_eq(rm_chunk_pool_shared_size(1000) % 64, 0);
}

Test(chunk_pool, alloc_until_exhausted_gives_distinct_indices)
{
    /* 130 is not a multiple of 64: the padding bits must never be handed out. */
    const uint32_t count = 130;
    rm_chunk_pool_t pool;
    make_pool(&pool, count);
    bool taken[130] = {false};

    for (uint32_t i = 0; i < count; i++) {
        uint32_t idx = rm_chunk_pool_alloc(&pool, RM_OWNER_SUPERVISOR);
        cr_assert_lt(idx, count, "alloc %u returned %u", i, idx);
        cr_assert(!taken[idx], "chunk %u handed out twice", idx);
        taken[idx] = true;
        cr_assert_eq(rm_chunk_pool_owner(&pool, idx), RM_OWNER_SUPERVISOR);
        cr_assert_eq(rm_chunk_pool_in_use(&pool), i + 1);
    }
    cr_assert_eq(rm_chunk_pool_alloc(&pool, RM_OWNER_SUPERVISOR), RM_CHUNK_NONE);
    cr_assert_eq(rm_chunk_pool_alloc(&pool, RM_OWNER_LANE(0)), RM_CHUNK_NONE);
    cr_assert_eq(rm_chunk_pool_in_use(&pool), count);
}

Test(chunk_pool, free_then_realloc_reuses_the_chunk)
{
    rm_chunk_pool_t pool;
    make_pool(&pool, 64);
    uint32_t all[64];
    for (int i = 0; i < 64; i++)
        all[i] = rm_chunk_pool_alloc(&pool, RM_OWNER_LANE(1));
    cr_assert_eq(rm_chunk_pool_alloc(&pool, RM_OWNER_LANE(1)), RM_CHUNK_NONE);

    cr_assert_eq(rm_chunk_pool_free(&pool, all[17], RM_OWNER_LANE(1)), 0);
    cr_assert_eq(rm_chunk_pool_owner(&pool, all[17]), RM_OWNER_FREE);
    cr_assert_eq(rm_chunk_pool_in_use(&pool), 63);
    cr_assert_eq(rm_chunk_pool_alloc(&pool, RM_OWNER_SUPERVISOR), all[17],
                 "the only free chunk must be found");
    cr_assert_eq(rm_chunk_pool_owner(&pool, all[17]), RM_OWNER_SUPERVISOR);

    for (int i = 0; i < 64; i++) {
        uint32_t o = i == 17 ? RM_OWNER_SUPERVISOR : RM_OWNER_LANE(1);
        cr_assert_eq(rm_chunk_pool_free(&pool, all[i], o), 0, "free %u", all[i]);
    }
    cr_assert_eq(rm_chunk_pool_in_use(&pool), 0);
}

Test(chunk_pool, alloc_above_leaves_the_reserve_to_plain_alloc)
{
    /* Request input (alloc_above) stops with 8 chunks free; responses (plain
     * alloc) can still take those 8, and input gets chunks again once enough
     * come back. */
    rm_chunk_pool_t pool;
    make_pool(&pool, 64);
    uint32_t got[64];
    uint32_t n = 0;
    uint32_t idx;
    while ((idx = rm_chunk_pool_try_alloc_above(&pool, RM_OWNER_SUPERVISOR, 8)) != RM_CHUNK_NONE)
        got[n++] = idx;
    cr_assert_eq(n, 56, "input took %u chunks of 64 with a reserve of 8; expected 56", n);
    cr_assert_eq(rm_chunk_pool_in_use(&pool), 56);
    for (int i = 0; i < 8; i++) {
        idx = rm_chunk_pool_alloc(&pool, RM_OWNER_LANE(0));
        cr_assert_neq(idx, RM_CHUNK_NONE, "reserve chunk %d refused to a response", i);
        got[n++] = idx;
    }
    cr_assert_eq(rm_chunk_pool_alloc(&pool, RM_OWNER_LANE(0)), RM_CHUNK_NONE);
    /* Freeing one response chunk does not reopen the pool to input. */
    cr_assert_eq(rm_chunk_pool_free(&pool, got[63], RM_OWNER_LANE(0)), 0);
    cr_assert_eq(rm_chunk_pool_try_alloc_above(&pool, RM_OWNER_SUPERVISOR, 8), RM_CHUNK_NONE);
    for (int i = 56; i < 63; i++)
        cr_assert_eq(rm_chunk_pool_free(&pool, got[i], RM_OWNER_LANE(0)), 0);
    cr_assert_eq(rm_chunk_pool_try_alloc_above(&pool, RM_OWNER_SUPERVISOR, 8), RM_CHUNK_NONE,
                 "exactly the reserve free: input must still be refused");
    cr_assert_eq(rm_chunk_pool_free(&pool, got[0], RM_OWNER_SUPERVISOR), 0);
    cr_assert_neq(rm_chunk_pool_try_alloc_above(&pool, RM_OWNER_SUPERVISOR, 8), RM_CHUNK_NONE,
                  "one over the reserve free: input gets it");
    cr_assert_eq(rm_chunk_pool_try_alloc_above(&pool, RM_OWNER_SUPERVISOR, 64), RM_CHUNK_NONE);
}

Test(chunk_pool, wrong_owner_free_is_eperm_and_leaves_chunk_alone)
{
    rm_chunk_pool_t pool;
    make_pool(&pool, 8);
    uint32_t idx = rm_chunk_pool_alloc(&pool, RM_OWNER_LANE(2));
    cr_assert_neq(idx, RM_CHUNK_NONE);
    memset(rm_chunk_pool_ptr(&pool, idx), 0x3C, CHUNK);

    cr_assert_eq(rm_chunk_pool_free(&pool, idx, RM_OWNER_LANE(3)), -EPERM);
    cr_assert_eq(rm_chunk_pool_free(&pool, idx, RM_OWNER_SUPERVISOR), -EPERM);
    cr_assert_eq(rm_chunk_pool_free(&pool, idx, RM_OWNER_FREE), -EPERM);
    cr_assert_eq(rm_chunk_pool_owner(&pool, idx), RM_OWNER_LANE(2));
    cr_assert_eq(rm_chunk_pool_in_use(&pool), 1);
    const unsigned char *p = rm_chunk_pool_ptr(&pool, idx);
    for (int i = 0; i < CHUNK; i++)
        cr_assert_eq(p[i], 0x3C, "byte %d changed by a refused free", i);

    cr_assert_eq(rm_chunk_pool_free(&pool, idx, RM_OWNER_LANE(2)), 0);
    cr_assert_eq(rm_chunk_pool_free(&pool, idx, RM_OWNER_LANE(2)), -EPERM, "double free");
    cr_assert_eq(rm_chunk_pool_in_use(&pool), 0);
}

Test(chunk_pool, out_of_range_is_einval)
{
    rm_chunk_pool_t pool;
    make_pool(&pool, 8);
    cr_assert_eq(rm_chunk_pool_free(&pool, 8, RM_OWNER_SUPERVISOR), -EINVAL);
    cr_assert_eq(rm_chunk_pool_free(&pool, RM_CHUNK_NONE, RM_OWNER_SUPERVISOR), -EINVAL);
    cr_assert_eq(rm_chunk_pool_transfer(&pool, 8, RM_OWNER_SUPERVISOR, RM_OWNER_LANE(0)), -EINVAL);
    cr_assert_eq(rm_chunk_pool_owner(&pool, 8), RM_OWNER_FREE);
    cr_assert_eq(rm_chunk_pool_owner(&pool, RM_CHUNK_NONE), RM_OWNER_FREE);
}

Test(chunk_pool, alloc_refuses_the_free_tag)
{
    rm_chunk_pool_t pool;
    make_pool(&pool, 8);
    cr_assert_eq(rm_chunk_pool_alloc(&pool, RM_OWNER_FREE), RM_CHUNK_NONE);
    cr_assert_eq(rm_chunk_pool_in_use(&pool), 0);
}

Test(chunk_pool, transfer_moves_ownership)
{
    rm_chunk_pool_t pool;
    make_pool(&pool, 8);
    uint32_t idx = rm_chunk_pool_alloc(&pool, RM_OWNER_LANE(4));

    cr_assert_eq(rm_chunk_pool_transfer(&pool, idx, RM_OWNER_LANE(5), RM_OWNER_SUPERVISOR), -EPERM,
                 "only the owner may hand a chunk on");
    cr_assert_eq(rm_chunk_pool_owner(&pool, idx), RM_OWNER_LANE(4));
    cr_assert_eq(rm_chunk_pool_transfer(&pool, idx, RM_OWNER_LANE(4), RM_OWNER_FREE), -EINVAL,
                 "transfer to nobody would leak the bit");

    cr_assert_eq(rm_chunk_pool_transfer(&pool, idx, RM_OWNER_LANE(4), RM_OWNER_SUPERVISOR), 0);
    cr_assert_eq(rm_chunk_pool_owner(&pool, idx), RM_OWNER_SUPERVISOR);
    cr_assert_eq(rm_chunk_pool_in_use(&pool), 1, "a transfer is not an alloc");
    cr_assert_eq(rm_chunk_pool_free(&pool, idx, RM_OWNER_LANE(4)), -EPERM);
    cr_assert_eq(rm_chunk_pool_free(&pool, idx, RM_OWNER_SUPERVISOR), 0);
    cr_assert_eq(rm_chunk_pool_in_use(&pool), 0);
}

Test(chunk_pool, free_poisons_in_debug_builds)
{
#ifndef RM_DEBUG_POISON
    cr_skip("poisoning is compiled in only with RM_DEBUG_POISON (the sanitizer build)");
#else
    rm_chunk_pool_t pool;
    make_pool(&pool, 4);
    uint32_t idx = rm_chunk_pool_alloc(&pool, RM_OWNER_SUPERVISOR);
    memset(rm_chunk_pool_ptr(&pool, idx), 'x', CHUNK);
    cr_assert_eq(rm_chunk_pool_free(&pool, idx, RM_OWNER_SUPERVISOR), 0);
    const unsigned char *p = rm_chunk_pool_ptr(&pool, idx);
    for (int i = 0; i < CHUNK; i++)
        cr_assert_eq(p[i], 0xA5, "byte %d not poisoned", i);
#endif
}

Test(chunk_pool, reclaim_frees_what_a_killed_worker_held, .timeout = 20)
{
    const uint32_t count = 200, held_by_child = 37;
    const uint32_t dead = RM_OWNER_LANE(3);
    rm_chunk_pool_t pool;
    make_pool(&pool, count);

    /* The supervisor holds a few chunks that reclaim must not touch. */
    uint32_t mine[5];
    for (int i = 0; i < 5; i++)
        mine[i] = rm_chunk_pool_alloc(&pool, RM_OWNER_SUPERVISOR);
    uint32_t before = rm_chunk_pool_in_use(&pool);

    pid_t pid = fork_peer();
    if (pid == 0) {
        /* A worker with its own handle, as after rm_region_attach. */
        rm_chunk_pool_t w;
        rm_chunk_pool_bind(&w, pool.shared, pool.chunks, count, CHUNK, 3);
        for (uint32_t i = 0; i < held_by_child; i++) {
            uint32_t idx = rm_chunk_pool_alloc(&w, dead);
            if (idx == RM_CHUNK_NONE)
                _exit(1);
            memset(rm_chunk_pool_ptr(&w, idx), 'w', CHUNK);
        }
        raise(SIGKILL);
        _exit(2);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %#x", status);

    cr_assert_eq(rm_chunk_pool_in_use(&pool), before + held_by_child);
    uint32_t tagged = 0;
    for (uint32_t i = 0; i < count; i++)
        tagged += rm_chunk_pool_owner(&pool, i) == dead;
    cr_assert_eq(tagged, held_by_child);

    cr_assert_eq(rm_chunk_pool_reclaim(&pool, dead), held_by_child);
    cr_assert_eq(rm_chunk_pool_in_use(&pool), before);
    cr_assert_eq(rm_chunk_pool_reclaim(&pool, dead), 0, "nothing left to reclaim");
    for (int i = 0; i < 5; i++)
        cr_assert_eq(rm_chunk_pool_owner(&pool, mine[i]), RM_OWNER_SUPERVISOR);

    /* Every other chunk can be allocated again. */
    uint32_t got = 0;
    while (rm_chunk_pool_alloc(&pool, RM_OWNER_LANE(0)) != RM_CHUNK_NONE)
        got++;
    cr_assert_eq(got, count - before);
}

/* ---- contention ----------------------------------------------------------- */

#define HOLD 6 /* chunks each allocator holds at once */

/* Allocate, stamp, yield, verify, free, over and over. A chunk handed to two
 * allocators at once shows up as a stamp that changed under its holder.
 * Returns the number of violations. */
static unsigned churn(rm_chunk_pool_t *pool, uint32_t id, unsigned rounds, _Atomic uint32_t *ready,
                      uint32_t peers)
{
    /* Start together: the interesting part is the overlap. */
    atomic_fetch_add(ready, 1);
    while (atomic_load(ready) < peers)
        sched_yield();

    uint32_t owner = RM_OWNER_LANE(id);
    uint32_t held[HOLD];
    unsigned bad = 0, misses = 0;
    for (int i = 0; i < HOLD; i++)
        held[i] = RM_CHUNK_NONE;

    for (unsigned r = 0; r < rounds; r++) {
        int slot = (int)(r % HOLD);
        uint32_t idx = held[slot];
        if (idx != RM_CHUNK_NONE) {
            uint32_t *p = (uint32_t *)rm_chunk_pool_ptr(pool, idx);
            if (p[0] != id || p[1] != idx || p[CHUNK / 4 - 1] != id)
                bad++;
            if (rm_chunk_pool_owner(pool, idx) != owner)
                bad++;
            if (rm_chunk_pool_free(pool, idx, owner) != 0)
                bad++;
            held[slot] = RM_CHUNK_NONE;
        }
        idx = rm_chunk_pool_alloc(pool, owner);
        if (idx == RM_CHUNK_NONE) {
            /* Exhausted: stay on the CPU a little, so that peers keep racing. */
            if (++misses % 64 == 0)
                sched_yield();
            continue;
        }
        uint32_t *p = (uint32_t *)rm_chunk_pool_ptr(pool, idx);
        p[0] = id;
        p[1] = idx;
        p[CHUNK / 4 - 1] = id;
        held[slot] = idx;
    }
    for (int i = 0; i < HOLD; i++)
        if (held[i] != RM_CHUNK_NONE && rm_chunk_pool_free(pool, held[i], owner) != 0)
            bad++;
    return bad;
}

Test(chunk_pool, concurrent_processes_never_share_a_chunk, .timeout = 60)
{
    if (UNDER_TSAN)
        cr_skip("ThreadSanitizer does not follow forked peers; see the threads variant");
    /* Fewer chunks than 4 x HOLD: allocators run into exhaustion too. */
    const uint32_t count = 20, procs = 4;
    const unsigned rounds = 200000;
    rm_chunk_pool_t pool;
    make_pool(&pool, count);
    _Atomic uint32_t *ready = map_shared(sizeof(*ready));

    pid_t pids[4];
    for (uint32_t i = 0; i < procs; i++) {
        pid_t pid = fork_peer();
        if (pid == 0) {
            rm_chunk_pool_t mine;
            rm_chunk_pool_bind(&mine, pool.shared, pool.chunks, count, CHUNK, i);
            _exit(churn(&mine, i, rounds, ready, procs) ? 1 : 0);
        }
        pids[i] = pid;
    }
    for (uint32_t i = 0; i < procs; i++) {
        int status;
        cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "allocator %u saw a chunk it held change hands (status %#x)", i, status);
    }
    cr_assert_eq(rm_chunk_pool_in_use(&pool), 0);
    for (uint32_t i = 0; i < count; i++)
        cr_assert_eq(rm_chunk_pool_owner(&pool, i), RM_OWNER_FREE, "chunk %u", i);
}

typedef struct churn_arg {
    rm_chunk_pool_t pool; /* each thread its own handle (own hint) */
    uint32_t id;
    unsigned bad;
    _Atomic uint32_t *ready;
} churn_arg_t;

static void *churn_thread(void *arg)
{
    churn_arg_t *a = arg;
    a->bad = churn(&a->pool, a->id, UNDER_TSAN ? 20000 : 200000, a->ready, 3);
    return NULL;
}

Test(chunk_pool, concurrent_threads_never_share_a_chunk, .timeout = 60)
{
    const uint32_t count = 20;
    rm_chunk_pool_t pool;
    make_pool(&pool, count);
    pthread_t t[3];
    churn_arg_t args[3];
    _Atomic uint32_t ready = 0;
    for (uint32_t i = 0; i < 3; i++) {
        args[i] = (churn_arg_t){.id = i, .ready = &ready};
        rm_chunk_pool_bind(&args[i].pool, pool.shared, pool.chunks, count, CHUNK, i);
        cr_assert_eq(pthread_create(&t[i], NULL, churn_thread, &args[i]), 0);
    }
    for (uint32_t i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(args[i].bad, 0, "thread %u saw a chunk change hands", i);
    }
    cr_assert_eq(rm_chunk_pool_in_use(&pool), 0);
}
