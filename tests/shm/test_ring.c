/*
 * test_ring.c - the bounded MPMC ring, through ring.h only.
 *
 * Single-thread semantics, corruption detection, then exactly-once delivery
 * under contention: across forked processes (the real deployment) and across
 * threads (which ThreadSanitizer can check; it cannot follow fork).
 */
#include "ringmaster/futex.h"
#include "ringmaster/ring.h"

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

/* A ring of `capacity` cells carrying uint64_t items, in fresh shared memory. */
static void *make_ring(rm_ring_t *ring, uint32_t capacity, uint32_t payload)
{
    void *mem = map_shared(rm_ring_shared_size(capacity));
    cr_assert_eq(rm_ring_shared_init(mem, capacity, payload), 0);
    rm_ring_bind(ring, mem, capacity, payload);
    return mem;
}

static unsigned long env_count(const char *name, unsigned long dflt)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return dflt;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    return *end == '\0' && v > 0 ? v : dflt;
}

Test(ring, shared_size)
{
    cr_assert_eq(rm_ring_shared_size(2), 3 * RM_CACHELINE + 2 * RM_CACHELINE);
    cr_assert_eq(rm_ring_shared_size(1024), 3 * RM_CACHELINE + 1024 * RM_CACHELINE);
}

Test(ring, init_rejects_bad_geometry)
{
    void *mem = map_shared(rm_ring_shared_size(8));
    uint32_t bad_caps[] = {0, 1, 3, 6, 12, 1000};
    for (size_t i = 0; i < sizeof(bad_caps) / sizeof(bad_caps[0]); i++)
        cr_expect_eq(rm_ring_shared_init(mem, bad_caps[i], 8), -EINVAL, "capacity %u", bad_caps[i]);
    cr_expect_eq(rm_ring_shared_init(mem, 8, RM_RING_MAX_PAYLOAD + 1), -EINVAL);
    cr_expect_eq(rm_ring_shared_init(mem, 8, RM_RING_MAX_PAYLOAD), 0);
    cr_expect_eq(rm_ring_shared_init(mem, 2, 8), 0);
}

Test(ring, empty_pop_fails_with_eagain)
{
    rm_ring_t ring;
    make_ring(&ring, 8, sizeof(uint64_t));
    uint64_t v = 42;
    cr_assert_eq(rm_ring_try_pop(&ring, &v), -EAGAIN);
    cr_assert_eq(v, 42, "a failed pop must not touch the output");
    cr_assert_eq(rm_ring_count(&ring), 0);
}

Test(ring, fill_to_capacity_then_full_then_fifo)
{
    rm_ring_t ring;
    const uint32_t cap = 16;
    make_ring(&ring, cap, sizeof(uint64_t));

    for (uint64_t i = 0; i < cap; i++) {
        cr_assert_eq(rm_ring_try_push(&ring, &i), 0, "push %lu", (unsigned long)i);
        cr_assert_eq(rm_ring_count(&ring), i + 1);
    }
    uint64_t extra = 999;
    cr_assert_eq(rm_ring_try_push(&ring, &extra), -EAGAIN, "push into a full ring");
    cr_assert_eq(rm_ring_count(&ring), cap);

    for (uint64_t i = 0; i < cap; i++) {
        uint64_t v;
        cr_assert_eq(rm_ring_try_pop(&ring, &v), 0);
        cr_assert_eq(v, i, "FIFO: popped %lu, expected %lu", (unsigned long)v, (unsigned long)i);
    }
    uint64_t v;
    cr_assert_eq(rm_ring_try_pop(&ring, &v), -EAGAIN);
    cr_assert_eq(rm_ring_count(&ring), 0);
}

Test(ring, wraps_around_many_laps)
{
    rm_ring_t ring;
    const uint32_t cap = 4;
    make_ring(&ring, cap, sizeof(uint64_t));
    uint64_t next_in = 0, next_out = 0;

    /* Uneven batches so the head and tail cross the wrap point at every
     * offset, 25k laps of the four cells. */
    for (int round = 0; round < 40000; round++) {
        unsigned batch = 1 + (unsigned)round % cap;
        for (unsigned i = 0; i < batch; i++) {
            cr_assert_eq(rm_ring_try_push(&ring, &next_in), 0);
            next_in++;
        }
        cr_assert_eq(rm_ring_count(&ring), batch);
        for (unsigned i = 0; i < batch; i++) {
            uint64_t v;
            cr_assert_eq(rm_ring_try_pop(&ring, &v), 0);
            cr_assert_eq(v, next_out, "round %d: got %lu want %lu", round, (unsigned long)v,
                         (unsigned long)next_out);
            next_out++;
        }
    }
    cr_assert_eq(next_in, next_out);
}

Test(ring, copies_exactly_payload_size)
{
    rm_ring_t ring;
    make_ring(&ring, 4, 5);
    unsigned char in[RM_RING_MAX_PAYLOAD], out[RM_RING_MAX_PAYLOAD];
    memset(in, 0x11, sizeof(in));
    memset(out, 0xEE, sizeof(out));
    cr_assert_eq(rm_ring_try_push(&ring, in), 0);
    cr_assert_eq(rm_ring_try_pop(&ring, out), 0);
    for (size_t i = 0; i < sizeof(out); i++)
        cr_assert_eq(out[i], i < 5 ? 0x11 : 0xEE, "byte %zu", i);
}

Test(ring, max_payload_round_trips)
{
    rm_ring_t ring;
    make_ring(&ring, 2, RM_RING_MAX_PAYLOAD);
    unsigned char in[RM_RING_MAX_PAYLOAD], out[RM_RING_MAX_PAYLOAD];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (unsigned char)(i * 7 + 1);
    for (int lap = 0; lap < 5; lap++) {
        cr_assert_eq(rm_ring_try_push(&ring, in), 0);
        memset(out, 0, sizeof(out));
        cr_assert_eq(rm_ring_try_pop(&ring, out), 0);
        cr_assert_arr_eq(in, out, sizeof(in));
    }
}

/* The first cell's sequence word: cells follow the three-line header. */
static _Atomic uint64_t *cell_seq(void *mem, uint32_t idx)
{
    return (_Atomic uint64_t *)((unsigned char *)mem + sizeof(rm_ring_shared_t) +
                                (size_t)idx * RM_CACHELINE);
}

Test(ring, corrupt_sequence_on_push_is_ebadmsg, .timeout = 10)
{
    rm_ring_t ring;
    void *mem = make_ring(&ring, 8, sizeof(uint64_t));
    /* Cell 0 claims to have been published already, yet head never moved. */
    atomic_store(cell_seq(mem, 0), 5);
    uint64_t v = 1;
    cr_assert_eq(rm_ring_try_push(&ring, &v), -EBADMSG);
}

Test(ring, corrupt_sequence_on_pop_is_ebadmsg, .timeout = 10)
{
    rm_ring_t ring;
    void *mem = make_ring(&ring, 8, sizeof(uint64_t));
    uint64_t v = 1;
    cr_assert_eq(rm_ring_try_push(&ring, &v), 0);
    /* Cell 0 claims a lap that no consumer has started. */
    atomic_store(cell_seq(mem, 0), 1000);
    cr_assert_eq(rm_ring_try_pop(&ring, &v), -EBADMSG);
}

Test(ring, corrupt_head_behind_cells_is_ebadmsg, .timeout = 10)
{
    rm_ring_t ring;
    void *mem = make_ring(&ring, 4, sizeof(uint64_t));
    uint64_t v = 7;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(rm_ring_try_push(&ring, &v), 0);
    /* Someone rewinds head: the cells it points at are already published. */
    atomic_store(&((rm_ring_shared_t *)mem)->head, 0);
    cr_assert_eq(rm_ring_try_push(&ring, &v), -EBADMSG);
}

Test(ring, count_clamps_garbage_indices)
{
    rm_ring_t ring;
    void *mem = make_ring(&ring, 8, sizeof(uint64_t));
    rm_ring_shared_t *s = mem;
    atomic_store(&s->head, 1000);
    cr_assert_eq(rm_ring_count(&ring), 8);
    atomic_store(&s->tail, 2000);
    cr_assert_eq(rm_ring_count(&ring), 0);
}

/* ---- contention ----------------------------------------------------------- */

typedef struct item {
    uint32_t producer;
    uint32_t pad;
    uint64_t seq;
} item_t;

/* Shared bookkeeping for the stress tests: seen[p * per + s] counts how often
 * item (p, s) was consumed; it must end at exactly one everywhere. */
typedef struct stress {
    _Atomic uint64_t consumed;
    _Atomic uint32_t ready; /* start barrier for the race tests */
    _Atomic uint32_t producers_done;
    _Atomic uint32_t errors;
    uint32_t producers, consumers;
    uint64_t per_producer;
    rm_ring_t ring;
    _Atomic uint8_t *seen;
} stress_t;

/* Wait a little without leaving the CPU, then yield: peers that stay on their
 * cores collide far more often than peers that yield at once. */
static void backoff(unsigned *n)
{
    if (++*n % 64)
        rm_cpu_relax();
    else
        sched_yield();
}

static void produce(stress_t *st, uint32_t id)
{
    item_t it = {.producer = id};
    unsigned n = 0;
    for (uint64_t s = 0; s < st->per_producer; s++) {
        it.seq = s;
        int r;
        while ((r = rm_ring_try_push(&st->ring, &it)) == -EAGAIN)
            backoff(&n);
        if (r != 0) {
            atomic_fetch_add(&st->errors, 1);
            break;
        }
    }
    atomic_fetch_add(&st->producers_done, 1);
}

static void consume(stress_t *st)
{
    /* Per producer, the next sequence must be above the last one this
     * consumer saw: positions are claimed in order on both sides. */
    int64_t last[16];
    for (int i = 0; i < 16; i++)
        last[i] = -1;
    item_t it;
    unsigned n = 0;
    for (;;) {
        /* Read before popping: once every producer is done, an empty ring
         * stays empty, so a lost item ends the test instead of hanging it. */
        bool done = atomic_load(&st->producers_done) == st->producers;
        int r = rm_ring_try_pop(&st->ring, &it);
        if (r == -EAGAIN) {
            if (done)
                return;
            backoff(&n);
            continue;
        }
        if (r != 0 || it.producer >= st->producers || it.seq >= st->per_producer ||
            (int64_t)it.seq <= last[it.producer]) {
            atomic_fetch_add(&st->errors, 1);
            return;
        }
        last[it.producer] = (int64_t)it.seq;
        atomic_fetch_add_explicit(&st->seen[it.producer * st->per_producer + it.seq], 1,
                                  memory_order_relaxed);
        atomic_fetch_add(&st->consumed, 1);
    }
}

static void check_exactly_once(const stress_t *st)
{
    cr_assert_eq(atomic_load(&st->errors), 0, "a consumer saw an out-of-order or bad item");
    uint64_t total = (uint64_t)st->producers * st->per_producer;
    cr_assert_eq(atomic_load(&st->consumed), total, "consumed %lu of %lu items",
                 (unsigned long)atomic_load(&st->consumed), (unsigned long)total);
    for (uint64_t i = 0; i < total; i++) {
        uint8_t n = atomic_load_explicit(&st->seen[i], memory_order_relaxed);
        cr_assert_eq(n, 1, "item (producer %lu, seq %lu) consumed %u times",
                     (unsigned long)(i / st->per_producer), (unsigned long)(i % st->per_producer),
                     n);
    }
    cr_assert_eq(rm_ring_count(&st->ring), 0);
}

static stress_t *stress_new(uint32_t producers, uint32_t consumers, uint64_t per, uint32_t capacity)
{
    stress_t *st = map_shared(sizeof(*st));
    st->producers = producers;
    st->consumers = consumers;
    st->per_producer = per;
    st->seen = map_shared(producers * per);
    void *mem = map_shared(rm_ring_shared_size(capacity));
    cr_assert_eq(rm_ring_shared_init(mem, capacity, sizeof(item_t)), 0);
    rm_ring_bind(&st->ring, mem, capacity, sizeof(item_t));
    return st;
}

static void stress_free(stress_t *st, uint32_t capacity)
{
    munmap(st->ring.shared, rm_ring_shared_size(capacity));
    munmap((void *)st->seen, st->producers * st->per_producer);
    munmap(st, sizeof(*st));
}

typedef void peer_fn(stress_t *st, uint32_t id);

typedef struct thread_arg {
    stress_t *st;
    uint32_t id;
    peer_fn *fn;
} thread_arg_t;

static void *thread_main(void *arg)
{
    thread_arg_t *a = arg;
    a->fn(a->st, a->id);
    return NULL;
}

/* Run fn(st, 0..n-1) as n forked processes or n threads, and wait for all. */
static void run_peers(stress_t *st, uint32_t n, peer_fn *fn, bool threads)
{
    if (threads) {
        pthread_t t[8];
        thread_arg_t args[8];
        cr_assert_leq(n, 8);
        for (uint32_t i = 0; i < n; i++) {
            args[i] = (thread_arg_t){st, i, fn};
            cr_assert_eq(pthread_create(&t[i], NULL, thread_main, &args[i]), 0);
        }
        for (uint32_t i = 0; i < n; i++)
            pthread_join(t[i], NULL);
        return;
    }
    pid_t pids[8];
    cr_assert_leq(n, 8);
    for (uint32_t i = 0; i < n; i++) {
        pid_t pid = fork_peer();
        if (pid == 0) {
            fn(st, i);
            _exit(0);
        }
        pids[i] = pid;
    }
    for (uint32_t i = 0; i < n; i++) {
        int status;
        cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "peer %u died: status %#x", i,
                  status);
    }
}

/* Peers 0..producers-1 produce, the rest consume. */
static void mpmc_peer(stress_t *st, uint32_t id)
{
    if (id < st->producers)
        produce(st, id);
    else
        consume(st);
}

static void mpmc(bool threads, uint32_t producers, uint32_t consumers, uint64_t per,
                 uint32_t capacity)
{
    stress_t *st = stress_new(producers, consumers, per, capacity);
    run_peers(st, producers + consumers, mpmc_peer, threads);
    check_exactly_once(st);
    stress_free(st, capacity);
}

Test(ring, mpmc_across_processes_exactly_once, .timeout = 90)
{
    if (UNDER_TSAN)
        cr_skip("ThreadSanitizer does not follow forked peers; see ring.mpmc_threads");
    mpmc(false, 3, 3, env_count("RM_TEST_RING_ITEMS", 700000), 256);
}

Test(ring, mpmc_threads_exactly_once, .timeout = 90)
{
    /* A small ring keeps it full and empty often: both edges get exercised. */
    mpmc(true, 2, 2, env_count("RM_TEST_RING_THREAD_ITEMS", UNDER_TSAN ? 50000 : 300000), 64);
}

/*
 * The races themselves: peers released together onto a ring that never fills
 * (pushers) or never runs dry until the end (poppers), so nearly every
 * operation contends for the same index. A claim that is not atomic loses or
 * duplicates items here within a few rounds.
 */
#define RACE_CAP 65536u
#define RACE_ITEMS 30000u
#define RACE_ROUNDS 10

static void barrier(stress_t *st, uint32_t peers)
{
    atomic_fetch_add(&st->ready, 1);
    while (atomic_load(&st->ready) < peers)
        rm_cpu_relax();
}

static void push_racer(stress_t *st, uint32_t id)
{
    barrier(st, st->producers);
    produce(st, id);
}

static void pop_racer(stress_t *st, uint32_t id)
{
    (void)id;
    barrier(st, st->consumers);
    consume(st);
}

static void push_race(bool threads)
{
    for (int round = 0; round < RACE_ROUNDS; round++) {
        stress_t *st = stress_new(2, 1, RACE_ITEMS, RACE_CAP);
        run_peers(st, 2, push_racer, threads);
        consume(st); /* one consumer: sees each producer's items in order */
        check_exactly_once(st);
        stress_free(st, RACE_CAP);
    }
}

static void pop_race(bool threads)
{
    for (int round = 0; round < RACE_ROUNDS; round++) {
        stress_t *st = stress_new(1, 2, 2 * RACE_ITEMS, RACE_CAP);
        produce(st, 0);
        run_peers(st, 2, pop_racer, threads);
        check_exactly_once(st);
        stress_free(st, RACE_CAP);
    }
}

Test(ring, push_race_across_processes, .timeout = 60)
{
    if (UNDER_TSAN)
        cr_skip("ThreadSanitizer does not follow forked peers; see ring.push_race_threads");
    push_race(false);
}

Test(ring, pop_race_across_processes, .timeout = 60)
{
    if (UNDER_TSAN)
        cr_skip("ThreadSanitizer does not follow forked peers; see ring.pop_race_threads");
    pop_race(false);
}

Test(ring, push_race_threads, .timeout = 60)
{
    push_race(true);
}

Test(ring, pop_race_threads, .timeout = 60)
{
    pop_race(true);
}
