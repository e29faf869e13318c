/*
 * bench_ring.c - the lock-free ring against a mutex + condvar bounded queue.
 *
 *   bench_ring [items]
 *
 * Four cases, each run first with rm_ring and then with a pthread mutex and two
 * condition variables around a circular buffer (PTHREAD_PROCESS_SHARED where
 * processes share it), same capacity, same 32-byte items, same item count:
 *
 *   (a) one thread pushes one item and pops it again
 *   (b) one producer thread, one consumer thread
 *   (c) one producer process, one consumer process (fork, MAP_SHARED)
 *   (d) two producer processes, two consumer processes
 *
 * Reported: wall-clock ns per item (one push plus one pop), CLOCK_MONOTONIC,
 * the median of three runs that alternate ring and mutex, and mutex/ring. A ring producer that
 * finds the ring full (or a consumer that finds it empty) spins briefly, then yields; the mutex
 * queue sleeps on its condition variable. Every consumed item is counted and summed, and a run
 * whose sum is wrong is reported as an error rather than a time.
 */
#include "ringmaster/futex.h"
#include "ringmaster/ring.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CAPACITY 1024u
#define DEFAULT_ITEMS 4000000ull
#define REPEATS 3       /* runs per case and queue; the median is printed */
#define STOP UINT64_MAX /* sentinel seq: a consumer stops when it pops one */

typedef struct item {
    uint64_t seq;
    uint32_t producer;
    uint32_t pad;
    uint64_t payload[2];
} item_t;

_Static_assert(sizeof(item_t) == 32, "the size of a request descriptor");

/* ---- the mutex + condvar queue -------------------------------------------- */

typedef struct mq {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    uint32_t head, count, cap;
    item_t items[];
} mq_t;

static void mq_init(mq_t *q, uint32_t cap)
{
    pthread_mutexattr_t ma;
    pthread_condattr_t ca;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_condattr_init(&ca);
    pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&q->mu, &ma);
    pthread_cond_init(&q->not_empty, &ca);
    pthread_cond_init(&q->not_full, &ca);
    pthread_mutexattr_destroy(&ma);
    pthread_condattr_destroy(&ca);
    q->head = q->count = 0;
    q->cap = cap;
}

static void mq_push(mq_t *q, const item_t *it)
{
    pthread_mutex_lock(&q->mu);
    while (q->count == q->cap)
        pthread_cond_wait(&q->not_full, &q->mu);
    q->items[(q->head + q->count) % q->cap] = *it;
    q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

static void mq_pop(mq_t *q, item_t *it)
{
    pthread_mutex_lock(&q->mu);
    while (q->count == 0)
        pthread_cond_wait(&q->not_empty, &q->mu);
    *it = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->mu);
}

/* ---- one queue of either kind --------------------------------------------- */

enum kind { RING, MUTEX };

typedef struct queue {
    enum kind kind;
    rm_ring_t ring; /* RING */
    mq_t *mq;       /* MUTEX */
    void *mem;
    size_t mem_size;
} queue_t;

static void *map_shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("bench_ring: mmap");
        exit(1);
    }
    return p;
}

static void queue_init(queue_t *q, enum kind kind)
{
    q->kind = kind;
    if (kind == RING) {
        q->mem_size = rm_ring_shared_size(CAPACITY);
        q->mem = map_shared(q->mem_size);
        if (rm_ring_shared_init(q->mem, CAPACITY, sizeof(item_t)) != 0) {
            fprintf(stderr, "bench_ring: ring init failed\n");
            exit(1);
        }
        rm_ring_bind(&q->ring, q->mem, CAPACITY, sizeof(item_t));
    } else {
        q->mem_size = sizeof(mq_t) + CAPACITY * sizeof(item_t);
        q->mem = map_shared(q->mem_size);
        q->mq = q->mem;
        mq_init(q->mq, CAPACITY);
    }
}

static void queue_deinit(queue_t *q)
{
    if (q->kind == MUTEX) {
        pthread_cond_destroy(&q->mq->not_empty);
        pthread_cond_destroy(&q->mq->not_full);
        pthread_mutex_destroy(&q->mq->mu);
    }
    munmap(q->mem, q->mem_size);
}

/* Spin a little, then give the CPU away: on two cores a peer may need ours. */
static void backoff(unsigned *n)
{
    if (++*n % 128)
        rm_cpu_relax();
    else
        sched_yield();
}

static void queue_push(queue_t *q, const item_t *it)
{
    if (q->kind == MUTEX) {
        mq_push(q->mq, it);
        return;
    }
    unsigned n = 0;
    int r;
    while ((r = rm_ring_try_push(&q->ring, it)) == -EAGAIN)
        backoff(&n);
    if (r != 0) {
        fprintf(stderr, "bench_ring: push failed: %s\n", strerror(-r));
        abort();
    }
}

static void queue_pop(queue_t *q, item_t *it)
{
    if (q->kind == MUTEX) {
        mq_pop(q->mq, it);
        return;
    }
    unsigned n = 0;
    int r;
    while ((r = rm_ring_try_pop(&q->ring, it)) == -EAGAIN)
        backoff(&n);
    if (r != 0) {
        fprintf(stderr, "bench_ring: pop failed: %s\n", strerror(-r));
        abort();
    }
}

/* ---- the runs -------------------------------------------------------------- */

/* Shared by all parties of one run. */
typedef struct run {
    queue_t q;
    uint64_t per_producer;
    uint32_t producers, consumers;
    _Atomic uint32_t ready, go, producers_done;
    _Atomic uint64_t popped, sum;
} run_t;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void wait_for_go(run_t *r)
{
    atomic_fetch_add(&r->ready, 1);
    while (!atomic_load(&r->go))
        sched_yield();
}

static void producer(run_t *r, uint32_t id)
{
    wait_for_go(r);
    item_t it = {.producer = id};
    for (uint64_t s = 0; s < r->per_producer; s++) {
        it.seq = s;
        queue_push(&r->q, &it);
    }
    /* The last producer tells every consumer to stop. */
    if (atomic_fetch_add(&r->producers_done, 1) + 1 == r->producers) {
        it.seq = STOP;
        for (uint32_t i = 0; i < r->consumers; i++)
            queue_push(&r->q, &it);
    }
}

static void consumer(run_t *r)
{
    wait_for_go(r);
    uint64_t n = 0, sum = 0;
    item_t it;
    for (;;) {
        queue_pop(&r->q, &it);
        if (it.seq == STOP)
            break;
        n++;
        sum += it.seq;
    }
    atomic_fetch_add(&r->popped, n);
    atomic_fetch_add(&r->sum, sum);
}

typedef struct peer {
    run_t *r;
    uint32_t id;
} peer_t;

static void *peer_main(void *arg)
{
    peer_t *p = arg;
    if (p->id < p->r->producers)
        producer(p->r, p->id);
    else
        consumer(p->r);
    return NULL;
}

/* Release the peers together once all are ready; returns elapsed ns. */
static double start_and_time(run_t *r, uint32_t peers, pthread_t *threads, pid_t *pids)
{
    while (atomic_load(&r->ready) < peers)
        sched_yield();
    double t0 = now_ns();
    atomic_store(&r->go, 1);
    for (uint32_t i = 0; i < peers; i++) {
        if (threads) {
            pthread_join(threads[i], NULL);
        } else {
            int status;
            if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
                WEXITSTATUS(status) != 0) {
                fprintf(stderr, "bench_ring: a peer process failed\n");
                exit(1);
            }
        }
    }
    return now_ns() - t0;
}

/* ns per item, or a negative value if the items did not all arrive. */
static double run_peers(enum kind kind, uint32_t producers, uint32_t consumers, uint64_t items,
                        bool use_threads)
{
    run_t *r = map_shared(sizeof(*r));
    queue_init(&r->q, kind);
    r->producers = producers;
    r->consumers = consumers;
    r->per_producer = items / producers;
    uint32_t peers = producers + consumers;
    pthread_t threads[8];
    pid_t pids[8];
    peer_t args[8];
    pid_t parent = getpid();

    for (uint32_t i = 0; i < peers; i++) {
        args[i] = (peer_t){r, i};
        if (use_threads) {
            pthread_create(&threads[i], NULL, peer_main, &args[i]);
            continue;
        }
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("bench_ring: fork");
            exit(1);
        }
        if (pids[i] == 0) {
            /* Die with the benchmark rather than spin on as an orphan. */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            peer_main(&args[i]);
            _exit(0);
        }
    }
    double ns = start_and_time(r, peers, use_threads ? threads : NULL, pids);

    uint64_t total = r->per_producer * producers;
    uint64_t want_sum = producers * (r->per_producer * (r->per_producer - 1) / 2);
    bool ok = atomic_load(&r->popped) == total && atomic_load(&r->sum) == want_sum;
    queue_deinit(&r->q);
    munmap(r, sizeof(*r));
    return ok ? ns / (double)total : -1;
}

static double run_single(enum kind kind, uint64_t items)
{
    queue_t q;
    queue_init(&q, kind);
    item_t in = {0}, out;
    uint64_t sum = 0;
    double t0 = now_ns();
    for (uint64_t i = 0; i < items; i++) {
        in.seq = i;
        queue_push(&q, &in);
        queue_pop(&q, &out);
        sum += out.seq;
    }
    double ns = now_ns() - t0;
    queue_deinit(&q);
    return sum == items * (items - 1) / 2 ? ns / (double)items : -1;
}

typedef double case_fn(enum kind kind, uint64_t items);

static double case_a(enum kind kind, uint64_t items)
{
    return run_single(kind, items);
}
static double case_b(enum kind kind, uint64_t items)
{
    return run_peers(kind, 1, 1, items, true);
}
static double case_c(enum kind kind, uint64_t items)
{
    return run_peers(kind, 1, 1, items, false);
}
static double case_d(enum kind kind, uint64_t items)
{
    return run_peers(kind, 2, 2, items, false);
}

static double median3(double v[REPEATS])
{
    for (int i = 0; i < REPEATS; i++)
        if (v[i] < 0)
            return -1;
    double a = v[0], b = v[1], c = v[2];
    if ((a <= b && b <= c) || (c <= b && b <= a))
        return b;
    if ((b <= a && a <= c) || (c <= a && a <= b))
        return a;
    return c;
}

/* Ring and mutex alternate, REPEATS times, so that a burst of load on the
 * machine hits both; the median of each is printed. */
static void run_case(const char *name, case_fn *fn, uint64_t items)
{
    double ring[REPEATS], mutex[REPEATS];
    for (int i = 0; i < REPEATS; i++) {
        ring[i] = fn(RING, items);
        mutex[i] = fn(MUTEX, items);
    }
    double r = median3(ring), m = median3(mutex);
    if (r < 0 || m < 0)
        printf("%-30s %12s %12s %11s\n", name, r < 0 ? "ERROR" : "", m < 0 ? "ERROR" : "", "-");
    else
        printf("%-30s %12.1f %12.1f %10.1fx\n", name, r, m, m / r);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    uint64_t items = DEFAULT_ITEMS;
    if (argc > 2 || (argc == 2 && (items = strtoull(argv[1], NULL, 10)) < 4)) {
        fprintf(stderr, "usage: %s [items]   (items >= 4, default %llu)\n", argv[0], DEFAULT_ITEMS);
        return 2;
    }
    /* Even counts split evenly over two producers. */
    items &= ~1ull;

    printf("bench_ring: %llu items per case, capacity %u, %zu-byte items, %ld CPUs, "
           "median of %d\n",
           (unsigned long long)items, CAPACITY, sizeof(item_t), sysconf(_SC_NPROCESSORS_ONLN),
           REPEATS);
    printf("%-30s %12s %12s %11s\n", "ns per item (push+pop)", "ring", "mutex+cond", "mutex/ring");
    run_case("(a) 1 thread, push then pop", case_a, items);
    run_case("(b) SPSC, 2 threads", case_b, items);
    run_case("(c) SPSC, 2 processes", case_c, items);
    run_case("(d) MPMC 2+2, 4 processes", case_d, items);
    return 0;
}
