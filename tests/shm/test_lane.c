/*
 * test_lane.c - request/completion rings, futex sleep and wake, the doorbell.
 *
 * Lost wakeups show up as a pop or a doorbell wait that times out although
 * the peer published; every blocking call here has a bound well above what
 * the machine needs, so a lost wakeup fails the test instead of hanging it.
 */
#include "ringmaster/doorbell.h"
#include "ringmaster/lane.h"

#include <criterion/criterion.h>

#include "peers.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
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

#define CAP 64

static void make_lane(rm_lane_t *lane, uint32_t index)
{
    void *mem = map_shared(rm_lane_shared_size(CAP));
    rm_lane_shared_reset(mem, CAP);
    rm_lane_bind(lane, mem, CAP, index);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wait_child_ok(pid_t pid, const char *what)
{
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "%s: child died, status %#x", what, status);
    cr_assert_eq(WEXITSTATUS(status), 0, "%s: child failed with %d", what, WEXITSTATUS(status));
}

Test(lane, size_and_reset)
{
    cr_assert_eq(rm_lane_shared_size(CAP), 3 * RM_CACHELINE + 2 * rm_ring_shared_size(CAP));
    cr_assert_eq(rm_lane_shared_size(CAP) % RM_CACHELINE, 0);

    rm_lane_t lane;
    make_lane(&lane, 7);
    cr_assert_eq(lane.index, 7);
    cr_assert_eq(atomic_load(&lane.shared->generation), 1);
    cr_assert_eq(atomic_load(&lane.shared->state), RM_LANE_IDLE);
    /* The two rings do not overlap: the done ring starts after the request ring. */
    cr_assert_eq((unsigned char *)lane.done.shared,
                 (unsigned char *)lane.req.shared + rm_ring_shared_size(CAP));
    rm_lane_shared_reset(lane.shared, CAP);
    cr_assert_eq(atomic_load(&lane.shared->generation), 2);
}

Test(lane, request_round_trip_and_empty_poll)
{
    rm_lane_t lane;
    make_lane(&lane, 0);
    rm_req_desc_t in = {.req_id = 99, .meta_chunk = 3, .meta_len = 200, .enqueued_ns = 12345};
    rm_req_desc_t out;

    cr_assert_eq(rm_lane_pop_request(&lane, &out, 0, 0), -ETIMEDOUT, "empty, no wait");
    cr_assert_eq(rm_lane_push_request(&lane, &in), 0);
    memset(&out, 0, sizeof(out));
    cr_assert_eq(rm_lane_pop_request(&lane, &out, 0, 0), 0);
    cr_assert_eq(memcmp(&in, &out, sizeof(in)), 0);

    for (uint64_t i = 0; i < CAP; i++) {
        in.req_id = i;
        cr_assert_eq(rm_lane_push_request(&lane, &in), 0);
    }
    cr_assert_eq(rm_lane_push_request(&lane, &in), -EAGAIN, "request ring full");
    for (uint64_t i = 0; i < CAP; i++) {
        cr_assert_eq(rm_lane_pop_request(&lane, &out, 0, 0), 0);
        cr_assert_eq(out.req_id, i);
    }
}

Test(lane, completion_path)
{
    rm_lane_t lane;
    make_lane(&lane, 0);
    rm_done_desc_t d = {.chunk = 5, .off = 10, .len = 20, .flags = RM_DONE_LAST};
    rm_done_desc_t out;

    cr_assert_eq(rm_lane_try_pop_done(&lane, &out), -EAGAIN);
    for (uint64_t i = 0; i < CAP; i++) {
        d.req_id = 1000 + i;
        cr_assert_eq(rm_lane_push_done(&lane, &d), 0);
    }
    cr_assert_eq(rm_lane_push_done(&lane, &d), -EAGAIN, "completion ring full");
    cr_assert_eq(rm_ring_count(&lane.req), 0, "completions do not leak into requests");
    for (uint64_t i = 0; i < CAP; i++) {
        cr_assert_eq(rm_lane_try_pop_done(&lane, &out), 0);
        cr_assert_eq(out.req_id, 1000 + i);
        cr_assert_eq(out.chunk, 5);
        cr_assert_eq(out.len, 20);
        cr_assert_eq(out.flags, RM_DONE_LAST);
    }
    cr_assert_eq(rm_lane_try_pop_done(&lane, &out), -EAGAIN);
}

Test(lane, pop_times_out_when_nothing_comes, .timeout = 10)
{
    rm_lane_t lane;
    make_lane(&lane, 0);
    rm_req_desc_t out;
    int64_t t0 = now_ms();
    cr_assert_eq(rm_lane_pop_request(&lane, &out, 100, 150), -ETIMEDOUT);
    int64_t took = now_ms() - t0;
    cr_assert_geq(took, 150, "returned after %ld ms, before the timeout", (long)took);
    cr_assert_lt(took, 1500, "returned after %ld ms", (long)took);
    cr_assert_eq(RM_LANE_WAITERS(atomic_load(&lane.shared->req_sleepers)), 0,
                 "a waiter must deregister");
}

Test(lane, producer_rings_only_when_a_consumer_waits)
{
    rm_lane_t lane;
    make_lane(&lane, 0);
    rm_req_desc_t d = {.req_id = 1};
    uint32_t bell = atomic_load(&lane.shared->req_bell);
    cr_assert_eq(rm_lane_push_request(&lane, &d), 0);
    cr_assert_eq(atomic_load(&lane.shared->req_bell), bell, "no waiter, no ring");

    atomic_store(&lane.shared->req_sleepers, (1ull << 32) | 1u); /* as a consumer about to sleep */
    cr_assert_eq(rm_lane_push_request(&lane, &d), 0);
    cr_assert_eq(atomic_load(&lane.shared->req_bell), bell + 1, "a waiter gets a ring");

    /* The same sleeper is already woken: a burst costs one ring, not one each. */
    cr_assert_eq(rm_lane_push_request(&lane, &d), 0);
    cr_assert_eq(atomic_load(&lane.shared->req_bell), bell + 1, "the same sleeper rung twice");

    /* A consumer that goes to sleep again is rung again. */
    atomic_fetch_add(&lane.shared->req_sleepers, 1ull << 32);
    cr_assert_eq(rm_lane_push_request(&lane, &d), 0);
    cr_assert_eq(atomic_load(&lane.shared->req_bell), bell + 2, "a new sleep must be rung");
}

/* A consumer in another process goes to sleep on the futex; the producer
 * pushes only once it sees it registered, so the wakeup must come from the
 * bell. */
Test(lane, sleeping_consumer_in_another_process_is_woken, .timeout = 20)
{
    rm_lane_t lane;
    make_lane(&lane, 0);
    _Atomic int64_t *woke_after = map_shared(sizeof(*woke_after));

    pid_t pid = fork_peer();
    if (pid == 0) {
        rm_req_desc_t out;
        int64_t t0 = now_ms();
        int r = rm_lane_pop_request(&lane, &out, 0, 10000);
        atomic_store(woke_after, now_ms() - t0);
        _exit(r == 0 && out.req_id == 4242 ? 0 : 1);
    }

    int64_t t0 = now_ms();
    while (RM_LANE_WAITERS(atomic_load(&lane.shared->req_sleepers)) == 0) {
        cr_assert_lt(now_ms() - t0, 5000, "the consumer never went to sleep");
        usleep(1000);
    }
    usleep(50000); /* let it reach FUTEX_WAIT */
    uint32_t bell = atomic_load(&lane.shared->req_bell);
    rm_req_desc_t d = {.req_id = 4242};
    cr_assert_eq(rm_lane_push_request(&lane, &d), 0);
    cr_assert_eq(atomic_load(&lane.shared->req_bell), bell + 1, "the push must ring");
    wait_child_ok(pid, "sleeping consumer");
    cr_assert_lt(atomic_load(woke_after), 5000, "woken by the timeout, not the bell");
    cr_assert_eq(RM_LANE_WAITERS(atomic_load(&lane.shared->req_sleepers)), 0);
}

/* Two processes bounce a counter through two lanes, each side sleeping with
 * no spin at all, so nearly every hand-over goes through the sleep path. A
 * lost wakeup would leave both asleep until the 5 s timeout. */
Test(lane, ping_pong_across_processes_loses_no_wakeup, .timeout = 60)
{
    if (UNDER_TSAN)
        cr_skip("ThreadSanitizer does not follow forked peers; see lane.many_consumer_threads");
    const uint64_t rounds = UNDER_TSAN ? 1000 : 100000;
    rm_lane_t ping, pong;
    make_lane(&ping, 0);
    make_lane(&pong, 1);

    pid_t pid = fork_peer();
    if (pid == 0) {
        rm_req_desc_t d;
        for (uint64_t i = 0; i < rounds; i++) {
            if (rm_lane_pop_request(&ping, &d, 0, 5000) != 0 || d.req_id != i)
                _exit(1);
            d.req_id = i + 1;
            if (rm_lane_push_request(&pong, &d) != 0)
                _exit(2);
        }
        _exit(0);
    }
    rm_req_desc_t d = {.req_id = 0};
    for (uint64_t i = 0; i < rounds; i++) {
        d.req_id = i;
        cr_assert_eq(rm_lane_push_request(&ping, &d), 0);
        int r = rm_lane_pop_request(&pong, &d, 0, 5000);
        cr_assert_eq(r, 0, "round %lu: pop returned %d", (unsigned long)i, r);
        cr_assert_eq(d.req_id, i + 1);
    }
    wait_child_ok(pid, "ping-pong peer");
}

typedef struct consumers {
    rm_lane_t lane;
    uint64_t total;
    _Atomic uint8_t *seen;
    _Atomic uint64_t got;
    _Atomic int stray; /* errors other than the final -EINTR */
} consumers_t;

static void *consumer_thread(void *arg)
{
    consumers_t *c = arg;
    rm_req_desc_t d;
    for (;;) {
        int r = rm_lane_pop_request(&c->lane, &d, 50, -1);
        if (r == -EINTR)
            return NULL; /* STOPPING and empty */
        if (r != 0 || d.req_id >= c->total) {
            atomic_fetch_add(&c->stray, 1);
            return NULL;
        }
        atomic_fetch_add(&c->seen[d.req_id], 1);
        atomic_fetch_add(&c->got, 1);
    }
}

/* Several threads of one worker consume one lane, sleeping forever when it is
 * empty; STOPPING plus rm_lane_wake_all must get every one of them out. */
Test(lane, many_consumer_threads_then_stop, .timeout = 60)
{
    const uint64_t total = UNDER_TSAN ? 20000 : 200000;
    consumers_t *c = map_shared(sizeof(*c));
    make_lane(&c->lane, 0);
    c->total = total;
    c->seen = map_shared(total);
    atomic_store(&c->lane.shared->state, RM_LANE_ACTIVE);

    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, consumer_thread, c), 0);
    for (uint64_t i = 0; i < total; i++) {
        rm_req_desc_t d = {.req_id = i};
        int r;
        while ((r = rm_lane_push_request(&c->lane, &d)) == -EAGAIN)
            sched_yield();
        cr_assert_eq(r, 0);
        if (i % 1000 == 0)
            usleep(100); /* let the consumers drain and fall asleep */
    }
    int64_t t0 = now_ms();
    while (atomic_load(&c->got) < total && now_ms() - t0 < 10000)
        usleep(1000);
    cr_assert_eq(atomic_load(&c->got), total, "items lost: %lu of %lu",
                 (unsigned long)atomic_load(&c->got), (unsigned long)total);

    atomic_store(&c->lane.shared->state, RM_LANE_STOPPING);
    rm_lane_wake_all(&c->lane);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&c->stray), 0);
    for (uint64_t i = 0; i < total; i++)
        cr_assert_eq(atomic_load(&c->seen[i]), 1, "request %lu seen %u times", (unsigned long)i,
                     atomic_load(&c->seen[i]));
}

Test(lane, stopping_returns_queued_requests_first)
{
    rm_lane_t lane;
    make_lane(&lane, 0);
    rm_req_desc_t d = {.req_id = 5};
    cr_assert_eq(rm_lane_push_request(&lane, &d), 0);
    atomic_store(&lane.shared->state, RM_LANE_STOPPING);
    cr_assert_eq(rm_lane_pop_request(&lane, &d, 0, -1), 0);
    cr_assert_eq(d.req_id, 5);
    cr_assert_eq(rm_lane_pop_request(&lane, &d, 0, -1), -EINTR);
}

/* ---- doorbell ------------------------------------------------------------- */

static uint64_t eventfd_take(int efd)
{
    uint64_t v = 0;
    if (read(efd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        return 0; /* EAGAIN: not written */
    return v;
}

Test(doorbell, writes_the_eventfd_only_when_sleeping)
{
    rm_doorbell_shared_t *bell = map_shared(sizeof(*bell));
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    cr_assert_geq(efd, 0);

    cr_assert_eq(rm_doorbell_ring(bell, efd), 0, "awake: no write");
    cr_assert_eq(eventfd_take(efd), 0);

    rm_doorbell_prepare_sleep(bell);
    cr_assert_eq(atomic_load(&bell->sleeping), 1);
    cr_assert_eq(rm_doorbell_ring(bell, efd), 1);
    cr_assert_eq(atomic_load(&bell->sleeping), 0, "the ringer clears the flag");
    cr_assert_eq(rm_doorbell_ring(bell, efd), 0, "only one ringer per sleep");
    cr_assert_eq(eventfd_take(efd), 1);
    cr_assert_eq(atomic_load(&bell->rings), 1);

    rm_doorbell_prepare_sleep(bell);
    rm_doorbell_cancel_sleep(bell);
    cr_assert_eq(rm_doorbell_ring(bell, efd), 0, "cancelled sleep: no write");
    cr_assert_eq(eventfd_take(efd), 0);
    close(efd);
}

Test(doorbell, saturated_eventfd_still_counts_as_rung)
{
    rm_doorbell_shared_t *bell = map_shared(sizeof(*bell));
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    uint64_t big = UINT64_MAX - 1; /* the largest value an eventfd holds */
    cr_assert_eq(write(efd, &big, sizeof(big)), (ssize_t)sizeof(big));
    rm_doorbell_prepare_sleep(bell);
    cr_assert_eq(rm_doorbell_ring(bell, efd), 1);
    close(efd);

    rm_doorbell_prepare_sleep(bell);
    cr_assert_eq(rm_doorbell_ring(bell, efd), -EBADF, "a real write error is reported");
}

/* A worker process posts completions and rings; this process plays the
 * supervisor: drain, announce sleep, re-check, block on the eventfd. Every
 * completion must arrive without a wait running into its timeout. */
Test(doorbell, supervisor_loop_loses_no_wakeup, .timeout = 60)
{
    if (UNDER_TSAN)
        cr_skip("ThreadSanitizer does not follow forked peers");
    const uint64_t total = 100000;
    rm_lane_t lane;
    make_lane(&lane, 0);
    rm_doorbell_shared_t *bell = map_shared(sizeof(*bell));
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    cr_assert_geq(efd, 0);

    pid_t pid = fork_peer();
    if (pid == 0) {
        for (uint64_t i = 0; i < total; i++) {
            rm_done_desc_t d = {.req_id = i, .chunk = UINT32_MAX};
            while (rm_lane_push_done(&lane, &d) == -EAGAIN)
                sched_yield();
            /* Ring per item or per small batch, as a worker would, and pause
             * now and then so that the supervisor really goes to sleep. */
            if (i % 3 == 0 && rm_doorbell_ring(bell, efd) < 0)
                _exit(1);
            if (i % 50 == 0)
                usleep(20);
        }
        _exit(rm_doorbell_ring(bell, efd) < 0 ? 1 : 0);
    }

    uint64_t next = 0, prepares = 0;
    while (next < total) {
        rm_done_desc_t d;
        while (rm_lane_try_pop_done(&lane, &d) == 0) {
            cr_assert_eq(d.req_id, next, "completion order");
            next++;
        }
        if (next == total)
            break;
        rm_doorbell_prepare_sleep(bell);
        prepares++;
        if (rm_lane_try_pop_done(&lane, &d) == 0) {
            rm_doorbell_cancel_sleep(bell);
            cr_assert_eq(d.req_id, next);
            next++;
            continue;
        }
        struct pollfd p = {.fd = efd, .events = POLLIN};
        int n = poll(&p, 1, 5000);
        cr_assert_eq(n, 1, "slept 5 s with %lu of %lu completions: lost wakeup",
                     (unsigned long)next, (unsigned long)total);
        cr_assert_neq(eventfd_take(efd), 0);
    }
    wait_child_ok(pid, "completion producer");
    /* Each write answered one announced sleep; a busy loop costs no syscall. */
    cr_assert_leq(atomic_load(&bell->rings), prepares, "rang more often than we slept");
    close(efd);
}

/* ---- loop bell ------------------------------------------------------------ */

static rm_lane_t loop_lane(int *efd)
{
    rm_lane_t lane;
    make_lane(&lane, 0);
    *efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    cr_assert_geq(*efd, 0);
    rm_lane_set_loop_fd(&lane, *efd);
    return lane;
}

Test(loop_bell, a_push_writes_once_per_arming)
{
    int efd;
    rm_lane_t lane = loop_lane(&efd);
    rm_req_desc_t d = {.req_id = 1};

    cr_assert_eq(rm_lane_push_request(&lane, &d), 0);
    cr_assert_eq(eventfd_take(efd), 0, "a loop that did not arm is busy: no write");

    rm_req_desc_t got;
    cr_assert_eq(rm_lane_pop_request(&lane, &got, 0, 0), 0);
    cr_assert(!rm_lane_arm_loop_bell(&lane), "empty: armed");
    cr_assert_eq(rm_lane_push_request(&lane, &d), 0);
    cr_assert_eq(rm_lane_push_request(&lane, &d), 0);
    cr_assert_eq(eventfd_take(efd), 1, "one write for two pushes");
    cr_assert_eq(atomic_load(&lane.shared->loop_bell.rings), 1);

    /* Arming over a queued request says so and stays disarmed. */
    cr_assert(rm_lane_arm_loop_bell(&lane), "a request is there: pop it");
    cr_assert_eq(rm_lane_push_request(&lane, &d), 0);
    cr_assert_eq(eventfd_take(efd), 0, "disarmed again: no write");

    /* Unbound (a worker's own view): pushes never write. */
    rm_lane_set_loop_fd(&lane, -1);
    while (rm_lane_pop_request(&lane, &got, 0, 0) == 0)
        ;
    cr_assert(!rm_lane_arm_loop_bell(&lane), "empty: armed");
    cr_assert_eq(rm_lane_push_request(&lane, &d), 0);
    cr_assert_eq(eventfd_take(efd), 0);
    close(efd);
}

Test(loop_bell, wake_all_writes_even_when_not_armed)
{
    int efd;
    rm_lane_t lane = loop_lane(&efd);
    atomic_store(&lane.shared->state, RM_LANE_STOPPING);
    rm_lane_wake_all(&lane);
    cr_assert_eq(eventfd_take(efd), 1, "a busy loop must see the stop too");
    close(efd);
}

Test(loop_bell, reset_disarms)
{
    int efd;
    rm_lane_t lane = loop_lane(&efd);
    cr_assert(!rm_lane_arm_loop_bell(&lane), "empty: armed");
    rm_lane_shared_reset(lane.shared, CAP);
    rm_req_desc_t d = {.req_id = 1};
    cr_assert_eq(rm_lane_push_request(&lane, &d), 0);
    cr_assert_eq(eventfd_take(efd), 0, "the previous worker's arming is gone");
    close(efd);
}

/* This process plays the supervisor pushing requests with pauses; a forked
 * peer plays an event loop: poll the bell, drain, arm, re-check, poll again.
 * Every request must arrive without a poll running into its timeout. */
Test(loop_bell, event_loop_in_another_process_loses_no_wakeup, .timeout = 60)
{
    if (UNDER_TSAN)
        cr_skip("ThreadSanitizer does not follow forked peers");
    const uint64_t total = 100000;
    int efd;
    rm_lane_t lane = loop_lane(&efd);

    pid_t pid = fork_peer();
    if (pid == 0) {
        uint64_t next = 0;
        while (next < total) {
            rm_req_desc_t d;
            while (rm_lane_pop_request(&lane, &d, 0, 0) == 0) {
                if (d.req_id != next)
                    _exit(2); /* out of order */
                next++;
            }
            if (next == total || rm_lane_arm_loop_bell(&lane))
                continue;
            struct pollfd p = {.fd = efd, .events = POLLIN};
            if (poll(&p, 1, 5000) != 1)
                _exit(3); /* slept 5 s with requests owed: a lost wakeup */
            (void)eventfd_take(efd);
        }
        _exit(0);
    }
    for (uint64_t i = 0; i < total; i++) {
        rm_req_desc_t d = {.req_id = i};
        while (rm_lane_push_request(&lane, &d) == -EAGAIN)
            sched_yield();
        if (i % 50 == 0)
            usleep(20); /* so that the loop really goes to sleep now and then */
    }
    wait_child_ok(pid, "event loop");
    uint32_t rings = atomic_load(&lane.shared->loop_bell.rings);
    cr_assert_gt(rings, 0, "the loop never slept: the test did not test the bell");
    cr_assert_lt(rings, total, "a write per push: arming does not batch");
    close(efd);
}
