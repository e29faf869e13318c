/*
 * serve.c - serving threads, the control thread, and stopping.
 *
 * A serving thread waits for a request without the GIL (rm_lane_pop_request
 * spins, then sleeps on the lane's futex with a timeout so it notices a stop),
 * takes the GIL to build the Request, call the app and write the response,
 * pushes the final completion and rings the doorbell (a syscall only when the
 * supervisor sleeps), and keeps the GIL for the next request while the ring
 * has one: it gives the GIL back only to wait. ("The GIL" is its
 * interpreter's: the main one's in gil mode, the thread's own in
 * subinterpreters mode; in free-threaded mode taking it only attaches the
 * thread state, and the threads run in parallel.)
 *
 * In subinterpreters mode each thread first creates its interpreter and
 * imports the app (rm_host_interp_start, rm_host_load_app), reports to the
 * start gate, and serves only once every thread has succeeded; it ends its
 * interpreter itself when it stops.
 *
 * Every way to stop ends in rm_worker_request_stop, which sets `stop`, wakes
 * the lane's sleepers and the control thread:
 *   - {"t": "stop"} or end of stream on the control socket (supervisor gone),
 *   - SIGTERM or SIGINT (the handler only writes the wake eventfd),
 *   - the lane's state turning RM_LANE_STOPPING,
 *   - a corrupt ring.
 * A serving thread finishes the request it holds and returns. Requests still
 * queued on the lane are left where they are: the supervisor answers them.
 */
#include "worker.h"
#include "wsgi.h"
#include "asgi.h"

#include "ringmaster/control.h"
#include "ringmaster/doorbell.h"
#include "ringmaster/futex.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define HEARTBEAT_MS 1000 /* control-channel heartbeat period */
#define POP_SPIN 200 /* empty polls before sleeping: a few microseconds of spinning */
/* Bound on noticing our own stop: rm_lane_wake_all ends a futex wait early only
 * once the supervisor set RM_LANE_STOPPING, so a stop from a signal or the
 * control socket waits out the current sleep. Idle cost: 10 wakeups/s/thread. */
#define POP_SLEEP_MS 100
/* Streamed responses one thread may park (stream.h): each holds up to
 * RM_OUT_WINDOW + 1 chunks of the region, so the cap bounds what slow clients
 * take from it; past the cap a stream waits on its thread as before. */
#define PARK_MAX 64
#define PARK_POLL_MAX_MS 16 /* an idle thread with parked streams looks this often at least */
#define BACKOFF_SPINS 64 /* rounds of pure spinning before sleeping */
#define BACKOFF_MAX_NS 1000000L

/* A thread without a response chunk sleeps this long at most between tries. */
#define CHUNK_WAIT_MAX_NS 10000000L
#define CHUNK_WAIT_WARN_NS 10000000000ull /* one log line per process per 10 s */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The signal handler's only state: where to write. Set by rm_worker_init. */
static int signal_wake_fd = -1;

static void on_stop_signal(int signo)
{
    (void)signo;
    int saved = errno;
    const uint64_t one = 1;
    if (write(signal_wake_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is saturated, the control thread wakes anyway. */
    }
    errno = saved;
}

int rm_worker_init(rm_worker_t *w, const rm_worker_conf_t *conf)
{
    struct sigaction sa;

    memset(w, 0, sizeof(*w));
    w->conf = conf;
    atomic_init(&w->stop, false);
    atomic_init(&w->served, 0);
    int err = pthread_mutex_init(&w->gate.lock, NULL);
    if (err == 0 && (err = pthread_cond_init(&w->gate.cond, NULL)) != 0)
        pthread_mutex_destroy(&w->gate.lock);
    if (err != 0)
        return -err;
    w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->wake_fd < 0) {
        err = errno;
        pthread_cond_destroy(&w->gate.cond);
        pthread_mutex_destroy(&w->gate.lock);
        return -err;
    }
    signal_wake_fd = w->wake_fd;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_stop_signal;
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
        goto fail;
    /* A write to a vanished supervisor or client must be an error, not death. */
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &sa, NULL) < 0)
        goto fail;
    return 0;

fail:
    rm_worker_deinit(w);
    return -errno;
}

void rm_worker_deinit(rm_worker_t *w)
{
    int saved = errno;
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal_wake_fd = -1;
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    w->wake_fd = -1;
    pthread_cond_destroy(&w->gate.cond);
    pthread_mutex_destroy(&w->gate.lock);
    errno = saved;
}

void rm_worker_request_stop(rm_worker_t *w)
{
    if (atomic_exchange(&w->stop, true))
        return;
    if (w->lane.shared != NULL)
        rm_lane_wake_all(&w->lane);
    const uint64_t one = 1;
    if (write(w->wake_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN only: the control thread is woken already. */
    }
}

/* Stop when told to, or when the supervisor marked the lane as stopping. */
static bool should_stop(rm_worker_t *w)
{
    if (rm_worker_stopping(w))
        return true;
    if (atomic_load_explicit(&w->lane.shared->state, memory_order_relaxed) == RM_LANE_STOPPING) {
        RM_INFO("the supervisor marked lane %u as stopping", w->conf->lane);
        rm_worker_request_stop(w);
        return true;
    }
    return false;
}

/* One more round of waiting for ring or pool space: spin first, then sleep
 * from 1 us doubling to 1 ms, with the GIL released if `release_gil`. Returns
 * -ECANCELED once a stop was requested. */
static int backoff(rm_worker_t *w, unsigned *round, bool release_gil)
{
    if (rm_worker_stopping(w))
        return -ECANCELED;
    unsigned r = (*round)++;
    if (r < BACKOFF_SPINS) {
        for (int i = 0; i < 32; i++)
            rm_cpu_relax();
        return 0;
    }
    unsigned shift = r - BACKOFF_SPINS < 10 ? r - BACKOFF_SPINS : 10;
    long ns = 1000L << shift;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = ns < BACKOFF_MAX_NS ? ns : BACKOFF_MAX_NS};
    PyThreadState *ts_saved = release_gil ? PyEval_SaveThread() : NULL;
    nanosleep(&ts, NULL);
    if (ts_saved != NULL)
        PyEval_RestoreThread(ts_saved);
    return 0;
}

void rm_serve_ring(rm_worker_t *w)
{
    int rc = rm_doorbell_ring(&w->region.header->doorbell, w->conf->doorbell_fd);
    if (rc < 0)
        RM_ERROR("cannot ring the supervisor's doorbell: %s", strerror(-rc));
}

/* Push `desc`, waiting while the completion ring is full. With an `exporter`,
 * RM_DONE_HOLD is decided at each attempt (under the GIL), so a body view
 * released while we waited does not leave a hold nobody will release. */
static int push(rm_worker_t *w, rm_done_desc_t *desc, bool release_gil, PyObject *exporter,
                bool *held)
{
    uint32_t flags = desc->flags;
    unsigned round = 0;

    for (;;) {
        bool hold = exporter != NULL && rm_body_exported(exporter);
        desc->flags = flags | (hold ? RM_DONE_HOLD : 0);
        int rc = rm_lane_push_done(&w->lane, desc);
        if (rc == 0) {
            if (held != NULL)
                *held = hold;
            return 0;
        }
        if (rc != -EAGAIN) {
            RM_ERROR("the completion ring of lane %u is corrupt; stopping", w->conf->lane);
            rm_worker_request_stop(w);
            return rc;
        }
        rc = backoff(w, &round, release_gil);
        if (rc < 0)
            return rc;
    }
}

int rm_worker_push_done(rm_worker_t *w, const rm_done_desc_t *desc, bool gil_held, bool ring)
{
    rm_done_desc_t d = *desc;
    int rc = push(w, &d, gil_held, NULL, NULL);
    if (rc == 0 && ring)
        rm_serve_ring(w);
    return rc;
}

uint32_t rm_serve_alloc_chunk(rm_serve_thread_t *t)
{
    static _Atomic uint64_t warned_ns;
    uint32_t idx = rm_chunk_pool_alloc(&t->pool, t->w->owner);
    if (idx != RM_CHUNK_NONE)
        return idx;
    /* The pool is empty although request input leaves a reserve to
     * responses: more responses are in flight than the reserve covers. They
     * free chunks as the clients read them, so wait for one, asleep with the
     * GIL released (never spinning), and count the wait where /metrics sees
     * it (ringmaster_worker_chunk_waits_total). */
    rm_lane_stats_t *stats = &t->w->region.lane_stats[t->w->lane.index];
    uint64_t t0 = now_ns();
    uint64_t last = atomic_load_explicit(&warned_ns, memory_order_relaxed);
    if ((last == 0 || t0 - last >= CHUNK_WAIT_WARN_NS) &&
        atomic_compare_exchange_strong_explicit(&warned_ns, &last, t0, memory_order_relaxed,
                                                memory_order_relaxed))
        RM_WARN("lane %u: no free chunk for a response; waiting for one (the pool, --chunks, "
                "is short for the responses in flight)",
                t->w->conf->lane);
    rm_lane_stat_add(&stats->chunk_waits, 1);
    long ns = 50000;
    while (idx == RM_CHUNK_NONE && !rm_worker_stopping(t->w)) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = ns};
        PyThreadState *saved = PyEval_SaveThread();
        nanosleep(&ts, NULL);
        PyEval_RestoreThread(saved);
        ns = ns * 2 < CHUNK_WAIT_MAX_NS ? ns * 2 : CHUNK_WAIT_MAX_NS;
        idx = rm_chunk_pool_alloc(&t->pool, t->w->owner);
    }
    rm_lane_stat_add(&stats->chunk_wait_ns, (int64_t)(now_ns() - t0));
    return idx;
}

void rm_worker_release_hold(rm_worker_t *w, uint64_t req_id)
{
    rm_done_desc_t d = {.req_id = req_id, .chunk = RM_CHUNK_NONE, .flags = RM_DONE_RELEASE};
    /* Called from bf_releasebuffer, possibly during finalization: keep the GIL. */
    if (push(w, &d, false, NULL, NULL) == 0)
        rm_serve_ring(w);
    else
        RM_WARN("request %" PRIu64 ": body hold not released (stopping); it ends with this worker",
                req_id);
}

/* Check a descriptor and its meta block, claim the request for this thread
 * (wire.h), then take a copy of the meta. -ESTALE: the supervisor took it
 * back first. */
static int view_open(const rm_serve_thread_t *t, const rm_req_desc_t *desc, rm_req_view_t *view)
{
    const rm_chunk_pool_t *pool = &t->pool;

    if (desc->meta_chunk >= pool->count || desc->meta_len < sizeof(rm_req_meta_t) ||
        desc->meta_len > pool->chunk_size)
        return -EBADMSG;
    rm_req_meta_t *meta = (rm_req_meta_t *)rm_chunk_pool_ptr(pool, desc->meta_chunk);
    /* Take it for this thread, before anything else decides its answer; the
     * supervisor may have taken it back at its queue deadline (and answered
     * 503): then it must not run, and its file (if any) is already gone. */
    if (!rm_wire_try_start(meta, now_ns()))
        return -ESTALE;
    if (rm_wire_meta_check(meta, desc->meta_len, pool->chunk_size, pool->count) < 0 ||
        meta->head_chunk >= pool->count)
        return -EBADMSG;
    view->req_id = desc->req_id;
    view->meta = *meta;
    view->headers = rm_wire_headers(meta);
    view->body = rm_wire_body(meta);
    view->head = rm_chunk_pool_ptr(pool, meta->head_chunk);
    view->pool = pool;
    view->body_fd = -1;
    if (view->meta.flags & RM_REQ_BODY_FILE) {
        /* Opened now, while the supervisor keeps the file: it removes it once
         * the request ends, and our descriptor reads on. */
        const char *path = rm_wire_body_path(meta);
        struct stat st;
        view->body_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (view->body_fd < 0) {
            RM_ERROR("request %" PRIu64 ": cannot open its spilled body %s: %s", desc->req_id,
                     path, strerror(errno));
            return -EIO;
        }
        if (fstat(view->body_fd, &st) < 0 || !S_ISREG(st.st_mode) ||
            (uint64_t)st.st_size < view->meta.body_len) {
            RM_ERROR("request %" PRIu64 ": spilled body %s is not the %" PRIu64 " bytes announced",
                     desc->req_id, path, view->meta.body_len);
            close(view->body_fd);
            view->body_fd = -1;
            return -EIO;
        }
    }
    return 0;
}

/* Run the app on a valid request and write what it returned, or a 500. The
 * GIL is held. Sets *exporter when a view of the body outlived the handler. */
static int run_app(rm_serve_thread_t *t, const rm_req_view_t *view, rm_out_t *out,
                   PyObject **exporter)
{
    rm_pymod_state_t *st = t->st;
    const rm_req_meta_t *m = &view->meta;
    rm_req_name_t n = rm_req_name(view);
    PyObject *result = NULL;
    char why[768];
    int rc;

    if (st->wsgi != NULL)
        return rm_wsgi_run(st, view, out);
    PyObject *req = rm_request_open(st, &t->spare, view);
    if (req != NULL)
        result = PyObject_CallOneArg(st->app, req);
    if (result == NULL) {
        out->app_failed = true;
        rm_host_take_exception(why, sizeof(why), true);
        RM_ERROR("%.*s %.*s: the app raised %s; answered 500", n.method_len, n.method, n.path_len,
                 n.path, why);
        rc = rm_response_write_error(out, 500, m->flags, m->http_minor);
    } else {
        rc = rm_response_write(out, st, result, view, why, sizeof(why));
        Py_DECREF(result);
        if (rc == -EINVAL) {
            out->app_failed = true;
            RM_ERROR("%.*s %.*s: %s; answered 500", n.method_len, n.method, n.path_len, n.path,
                     why);
            rc = rm_response_write_error(out, 500, m->flags, m->http_minor);
        }
    }
    /* After the result is gone, so a returned body view does not count as kept. */
    if (req != NULL)
        *exporter = rm_request_close(req, &t->spare);
    return rc;
}

/* Push the final completion of what `out` holds; on failure (a stop) its
 * chunk is freed. The GIL is held. */
static int push_final(rm_serve_thread_t *t, rm_out_t *out, PyObject *exporter, bool *held)
{
    rm_done_desc_t d = {
        .req_id = out->req_id,
        .chunk = out->chunk,
        .off = 0,
        .len = out->used,
        .flags = RM_DONE_LAST | out->flags,
    };
    int rc = push(t->w, &d, true, exporter, held);
    if (rc == 0) {
        out->chunk = RM_CHUNK_NONE; /* the supervisor's now */
        atomic_fetch_add_explicit(&t->w->served, 1, memory_order_relaxed);
    } else {
        rm_out_abandon(out); /* stopping: the supervisor fails the request */
    }
    return rc;
}

int rm_serve_finish(rm_serve_thread_t *t, rm_out_t *out)
{
    return push_final(t, out, NULL, NULL);
}

int rm_serve_admit(rm_serve_thread_t *t, const rm_req_desc_t *desc, rm_req_view_t *view)
{
    rm_out_t out;
    int rc;

    int vrc = view_open(t, desc, view);
    if (vrc == 0 && (desc->deadline_ns == 0 || now_ns() <= desc->deadline_ns))
        return 0;
    if (vrc == -ESTALE) {
        /* Answered by the supervisor: only its chunks are to be given back. */
        rm_done_desc_t d = {
            .req_id = desc->req_id, .chunk = RM_CHUNK_NONE, .flags = RM_DONE_RELEASE};
        return push(t->w, &d, true, NULL, NULL) < 0 ? -ECANCELED : 1;
    }
    rm_out_init(&out, t, desc->req_id, vrc == 0 ? rm_req_live(view) : NULL);
    if (vrc == 0) {
        /* It waited in the lane past --queue-timeout: the client has likely
         * given up, so do not spend the app's time on it. */
        RM_WARN("request %" PRIu64 " waited past its deadline; answered 503 without running",
                desc->req_id);
        if (view->body_fd >= 0)
            close(view->body_fd);
        rc = rm_response_write_error(&out, 503, view->meta.flags, view->meta.http_minor);
    } else {
        if (vrc == -EBADMSG) /* else view_open said what */
            RM_ERROR("request %" PRIu64 ": malformed meta block (chunk %u, %u bytes); answered 500",
                     desc->req_id, desc->meta_chunk, desc->meta_len);
        rc = rm_response_write_error(&out, 500, 0, 1); /* flags 0: close the connection */
    }
    if (rc == 0)
        rc = push_final(t, &out, NULL, NULL);
    else
        rm_out_abandon(&out);
    return rc < 0 ? -ECANCELED : 1;
}

/* A response parked off its thread: a streamed body whose client has not
 * read the send window yet (stream.h). The thread serves other requests and
 * goes on with it once the window opens (resume_parked). */
typedef struct rm_parked {
    struct rm_parked *next;
    rm_out_t out;       /* out.parked: the interface's state */
    rm_req_view_t view; /* the request: its chunks stay until the final completion */
    PyObject *exporter; /* a body view the app kept, for the final completion */
    bool wsgi;          /* whose state: wsgi.c's or response.c's */
} rm_parked_t;

static rm_lane_stats_t *lane_stats(rm_serve_thread_t *t)
{
    return &t->w->region.lane_stats[t->w->lane.index];
}

/* The end of a response: its last completion, or nothing when the worker
 * stops (the supervisor fails the request). Consumes `exporter`. Returns
 * true when a final completion went out (the caller rings the doorbell). */
static bool finish_response(rm_serve_thread_t *t, rm_out_t *out, PyObject *exporter, int rc)
{
    bool held = false;

    if (rc == -ECONNRESET) {
        /* The client left mid-response: drop what is left, end the request. */
        rm_out_abandon(out);
        out->flags |= RM_DONE_CLOSE;
        rc = 0;
    }
    if (rc == 0)
        rc = push_final(t, out, exporter, &held);
    else
        rm_out_abandon(out); /* stopping: the supervisor fails the request */
    rm_body_settle(exporter, held);
    return rc == 0;
}

static int resume_stream(rm_out_t *out, const rm_req_view_t *view, bool wsgi)
{
    int rc = wsgi ? rm_wsgi_resume(out, view) : rm_response_resume(out, view);
    /* As after run_app: a traceback taken for no record must not ride on
     * this thread's next, unrelated error. */
    rm_log_drop_detail();
    return rc;
}

/* Keep a parked response; false without memory (the caller then waits for
 * the client on this thread after all). */
static bool park(rm_serve_thread_t *t, const rm_out_t *out, const rm_req_view_t *view,
                 PyObject *exporter)
{
    rm_parked_t *p = PyMem_Malloc(sizeof(*p));
    if (p == NULL)
        return false;
    p->out = *out; /* the interface's state points at no copy of `out` */
    p->view = *view;
    p->exporter = exporter;
    p->wsgi = t->st->wsgi != NULL;
    p->next = t->parked;
    t->parked = p;
    t->nparked++;
    t->park_poll_ms = 1;
    rm_lane_stat_add(&lane_stats(t)->parked, 1);
    return true;
}

/* Go on with the parked responses whose client has read (or left), or with
 * all of them to end them when the worker stops. The GIL is held. Returns
 * true when a final completion went out. */
static bool resume_parked(rm_serve_thread_t *t)
{
    bool stopping = rm_worker_stopping(t->w), pushed = false, progress = false;

    for (rm_parked_t **pp = &t->parked; *pp != NULL;) {
        rm_parked_t *p = *pp;
        if (stopping) {
            if (p->out.err == 0)
                p->out.err = -ECANCELED;
        } else if (!rm_out_client_gone(&p->out) && rm_out_window_busy(&p->out)) {
            pp = &p->next;
            continue;
        }
        progress = true;
        int rc = resume_stream(&p->out, &p->view, p->wsgi);
        if (rc == RM_OUT_PARKED) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        t->nparked--;
        rm_lane_stat_add(&lane_stats(t)->parked, -1);
        pushed |= finish_response(t, &p->out, p->exporter, rc);
        PyMem_Free(p);
    }
    /* A client that reads nothing costs an idle thread a wake-up every
     * PARK_POLL_MAX_MS at most; one that reads is served within a
     * millisecond or two. */
    if (progress)
        t->park_poll_ms = 1;
    else if (t->park_poll_ms < PARK_POLL_MAX_MS)
        t->park_poll_ms *= 2;
    return pushed;
}

/* Serve one request; the GIL is held. Returns true when a final completion
 * went out (the caller rings the doorbell). */
static bool serve_one(rm_serve_thread_t *t, const rm_req_desc_t *desc)
{
    PyObject *exporter = NULL;
    rm_req_view_t view;
    rm_out_t out;

    int rc = rm_serve_admit(t, desc, &view);
    if (rc != 0)
        return rc > 0;
    rm_out_init(&out, t, desc->req_id, rm_req_live(&view));
    out.park_ok = t->nparked < PARK_MAX;
    /* The lane's counters (stats.h): for /metrics only. */
    rm_lane_stats_t *stats = lane_stats(t);
    rm_lane_stat_add(&stats->in_flight, 1);
    rc = run_app(t, &view, &out, &exporter);
    /* A traceback taken for a record never logged (the client left) must not
     * ride on this thread's next, unrelated error. */
    rm_log_drop_detail();
    rm_lane_stat_add(&stats->in_flight, -1);
    rm_lane_stat_add(&stats->requests, 1);
    if (out.app_failed)
        rm_lane_stat_add(&stats->exceptions, 1);
    if (view.body_fd >= 0) {
        close(view.body_fd); /* readers that live on hold their own */
        view.body_fd = -1;
    }
    if (rc == RM_OUT_PARKED) {
        if (park(t, &out, &view, exporter))
            return false;
        out.park_ok = false; /* no memory to park: wait here */
        rc = resume_stream(&out, &view, t->st->wsgi != NULL);
    }
    return finish_response(t, &out, exporter, rc);
}

/* Wait for requests and serve them until a stop. Entered and left detached:
 * `ts`, the thread's state, is attached only around each request. */
static void serve_loop(rm_serve_thread_t *t, PyThreadState *ts)
{
    rm_worker_t *w = t->w;
    rm_req_desc_t desc;

    while (!should_stop(w)) {
        int rc = rm_lane_pop_request(&w->lane, &desc, POP_SPIN,
                                     t->parked != NULL ? t->park_poll_ms : POP_SLEEP_MS);
        if (rc == -ETIMEDOUT || rc == -EINTR) {
            if (t->parked != NULL) {
                PyEval_RestoreThread(ts);
                if (resume_parked(t))
                    rm_serve_ring(w);
                ts = PyEval_SaveThread();
            }
            continue;
        }
        if (rc < 0)
            break;
        PyEval_RestoreThread(ts);
        /* While requests are queued, take the next one without detaching.
         * Giving the GIL up and taking it back between requests would let this
         * thread, already running, win nearly every race for it: a thread
         * waiting with a popped request in hand would wait for many requests,
         * since CPython asks the holder to switch only when the GIL has not
         * changed hands for a whole switch interval (5 ms). Held across
         * requests, it changes hands at least that often. */
        do {
            bool ring = serve_one(t, &desc);
            if (t->parked != NULL)
                ring |= resume_parked(t);
            if (ring)
                rm_serve_ring(w);
            rc = should_stop(w) ? -EINTR : rm_lane_pop_request(&w->lane, &desc, 0, 0);
        } while (rc == 0);
        ts = PyEval_SaveThread();
        if (rc != -ETIMEDOUT && rc != -EINTR)
            break;
    }
    if (!should_stop(w)) {
        RM_ERROR("the request ring of lane %u is corrupt; stopping", w->conf->lane);
        rm_worker_request_stop(w);
    }
    if (t->parked != NULL) {
        /* Stopping: the parked streams end here, their iterables closed; the
         * supervisor ends their requests. */
        PyEval_RestoreThread(ts);
        resume_parked(t);
        ts = PyEval_SaveThread();
    }
}

static bool gate_report(rm_worker_t *w, int rc, const char *why, bool gil_enabled);

/* An ASGI app's thread, attached: make its event loop and run the lifespan
 * startup, report to the start gate (a failed startup fails the worker's
 * start), serve, and shut down. */
static void serve_asgi(rm_serve_thread_t *t, bool gil_enabled)
{
    char why[1024] = "";
    int rc = rm_asgi_thread_start(t, why, sizeof(why));
    PyThreadState *ts = PyEval_SaveThread();
    bool go = gate_report(t->w, rc, why, gil_enabled);
    PyEval_RestoreThread(ts);
    if (go)
        rm_asgi_thread_serve(t);
    rm_asgi_thread_end(t);
}

/* gil and free-threaded modes: a thread state of the main interpreter. */
static void *serve_main(void *arg)
{
    rm_serve_thread_t *t = arg;
    PyGILState_STATE gil = PyGILState_Ensure();

    if (t->st->asgi != NULL) {
        serve_asgi(t, t->w->gil_enabled);
        PyGILState_Release(gil);
        return NULL;
    }
    PyThreadState *ts = PyEval_SaveThread();

    serve_loop(t, ts);
    PyEval_RestoreThread(ts);
    Py_CLEAR(t->spare);
    PyGILState_Release(gil);
    return NULL;
}

/* ---- subinterpreters start-up ---------------------------------------------- */

/* A serving thread's start-up outcome: rc 0 when its interpreter imported the
 * app. A thread that failed returns at once; the others wait for the main
 * thread's verdict. Returns whether to serve. */
static bool gate_report(rm_worker_t *w, int rc, const char *why, bool gil_enabled)
{
    rm_start_gate_t *g = &w->gate;

    pthread_mutex_lock(&g->lock);
    if (rc < 0 && g->err == 0) {
        g->err = rc;
        snprintf(g->why, sizeof(g->why), "%s", why);
    }
    g->gil_enabled = g->gil_enabled || gil_enabled;
    g->reported++;
    pthread_cond_broadcast(&g->cond);
    while (rc == 0 && g->go == 0)
        pthread_cond_wait(&g->cond, &g->lock);
    bool serve = rc == 0 && g->go > 0;
    pthread_mutex_unlock(&g->lock);
    return serve;
}

/* Main thread: wait until `started` threads reported; the first failure. */
static int gate_wait(rm_worker_t *w, unsigned started, char *why, size_t why_len)
{
    rm_start_gate_t *g = &w->gate;

    pthread_mutex_lock(&g->lock);
    while (g->reported < started)
        pthread_cond_wait(&g->cond, &g->lock);
    int err = g->err;
    if (err < 0)
        snprintf(why, why_len, "%s", g->why);
    w->gil_enabled = g->gil_enabled;
    pthread_mutex_unlock(&g->lock);
    return err;
}

static void gate_open(rm_worker_t *w, int go)
{
    pthread_mutex_lock(&w->gate.lock);
    w->gate.go = go;
    pthread_cond_broadcast(&w->gate.cond);
    pthread_mutex_unlock(&w->gate.lock);
}

/* subinterpreters mode: an interpreter of the thread's own, created, used and
 * ended here, on the one OS thread CPython allows to end it. */
static void *serve_subinterpreter_main(void *arg)
{
    rm_serve_thread_t *t = arg;
    rm_worker_t *w = t->w;
    char why[1024] = "";
    bool gil = false;

    int rc = rm_host_interp_start(&t->interp, &w->host, w, why, sizeof(why));
    if (rc == 0)
        rc = rm_host_load_app(t->interp.st, w->conf->app_spec, why, sizeof(why));
    if (rc == 0)
        gil = rm_host_gil_enabled();
    if (rc == 0 && t->interp.st->asgi != NULL) {
        t->st = t->interp.st;
        serve_asgi(t, gil);
        rm_host_interp_end(&t->interp);
        return NULL;
    }
    PyThreadState *ts = t->interp.ts != NULL ? PyEval_SaveThread() : NULL;
    if (gate_report(w, rc, why, gil)) {
        RM_DEBUG("serving thread %u: own interpreter ready", t->index);
        t->st = t->interp.st;
        serve_loop(t, ts);
    }
    if (ts != NULL) {
        PyEval_RestoreThread(ts);
        Py_CLEAR(t->spare);
    }
    rm_host_interp_end(&t->interp);
    return NULL;
}

static void *control_main(void *arg)
{
    rm_worker_t *w = arg;
    struct pollfd fds[2] = {
        {.fd = w->conf->control_fd, .events = POLLIN},
        {.fd = w->wake_fd, .events = POLLIN},
    };
    rm_ctl_msg_t msg;

    while (!rm_worker_stopping(w)) {
        int ready = poll(fds, 2, HEARTBEAT_MS);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            RM_ERROR("poll on the control socket: %s; stopping", strerror(errno));
            break;
        }
        if (ready == 0) {
            /* Alive, and how far along: with requests outstanding and
             * heartbeats arriving, the supervisor knows a slow request from a
             * wedged process. */
            rm_ctl_msg_t beat = {.type = RM_CTL_HEARTBEAT,
                                 .served = atomic_load_explicit(&w->served,
                                                                memory_order_relaxed)};
            if (rm_ctl_send(w->conf->control_fd, &beat) < 0) {
                RM_WARN("cannot send a heartbeat; the supervisor is gone; stopping");
                break;
            }
            continue;
        }
        if (fds[1].revents) {
            if (!rm_worker_stopping(w))
                RM_INFO("SIGTERM or SIGINT: stopping");
            break;
        }
        if (fds[0].revents == 0)
            continue;
        int rc = rm_ctl_recv_blocking(w->conf->control_fd, &msg);
        if (rc == -ECONNRESET) {
            RM_WARN("the supervisor closed the control socket; stopping");
            break;
        }
        if (rc < 0) {
            RM_ERROR("control socket: %s; stopping", strerror(-rc));
            break;
        }
        if (msg.type == RM_CTL_STOP) {
            RM_INFO("stop requested by the supervisor");
            break;
        }
        RM_DEBUG("ignoring control frame '%s'", rm_ctl_type_name(msg.type));
    }
    rm_worker_request_stop(w);
    return NULL;
}

/* Join the serving threads started so far and free them. */
static void join_serving(rm_worker_t *w)
{
    for (unsigned i = 0; i < w->conf->threads; i++)
        if (w->threads[i].started)
            pthread_join(w->threads[i].tid, NULL);
    free(w->threads);
    w->threads = NULL;
}

/* Start the serving threads; returns how many run, with -errno in *err when
 * one could not be created (the ones before it run). */
static unsigned start_serving(rm_worker_t *w, int *err)
{
    unsigned n = w->conf->threads;
    uint32_t words = (w->region.pool.count + 63) / 64;
    void *(*main_fn)(void *) =
        w->mode == RM_WORKER_MODE_SUBINTERPRETERS ? serve_subinterpreter_main : serve_main;

    *err = 0;
    for (unsigned i = 0; i < n; i++) {
        rm_serve_thread_t *t = &w->threads[i];
        t->w = w;
        t->st = w->host.st; /* a subinterpreter's thread replaces it with its own */
        t->index = i;
        t->pool = w->region.pool;
        /* Start each thread's chunk search in its own part of the bitmap. */
        if (words > 0)
            t->pool.hint = (uint32_t)((t->pool.hint + (uint64_t)i * words / n) % words);
        int rc = pthread_create(&t->tid, NULL, main_fn, t);
        if (rc != 0) {
            RM_ERROR("cannot start serving thread %u: %s", i, strerror(rc));
            *err = -rc;
            return i;
        }
        t->started = true;
    }
    return n;
}

int rm_worker_start(rm_worker_t *w, char *why, size_t why_len)
{
    /* Subinterpreters import the app on their threads, and ASGI threads run
     * the lifespan startup on theirs: the start waits for their verdict. */
    bool sub = w->mode == RM_WORKER_MODE_SUBINTERPRETERS ||
               (w->host.st != NULL && w->host.st->asgi != NULL);
    unsigned started = 0;
    int rc = 0;

    w->threads = calloc(w->conf->threads, sizeof(*w->threads));
    if (w->threads == NULL) {
        snprintf(why, why_len, "cannot start the serving threads: %s", strerror(ENOMEM));
        return -ENOMEM;
    }
    w->gate.reported = 0;
    w->gate.err = 0;
    w->gate.go = 0;
    w->gate.gil_enabled = false;
    rm_host_release_main(&w->host);

    /* Subinterpreters import the app first; the control thread, which would
     * turn a failure into a stop for good, starts once they all have. A
     * SIGTERM meanwhile waits in the wake eventfd. */
    if (sub) {
        started = start_serving(w, &rc);
        int err = gate_wait(w, started, why, why_len);
        if (rc < 0)
            snprintf(why, why_len, "cannot start serving thread %u: %s", started, strerror(-rc));
        else
            rc = err;
        if (rc < 0) {
            gate_open(w, -1);
            join_serving(w);
            return rc;
        }
    }

    rc = -pthread_create(&w->control, NULL, control_main, w);
    if (rc < 0) {
        snprintf(why, why_len, "cannot start the control thread: %s", strerror(-rc));
        rm_worker_request_stop(w);
        if (sub)
            gate_open(w, 1); /* they see the stop and end their interpreters */
        join_serving(w);
        return rc;
    }
    w->control_started = true;

    if (sub) {
        gate_open(w, 1);
        return 0;
    }
    started = start_serving(w, &rc);
    if (rc < 0) {
        snprintf(why, why_len, "cannot start serving thread %u: %s", started, strerror(-rc));
        rm_worker_request_stop(w);
        rm_worker_wait(w);
        return rc;
    }
    return 0;
}

void rm_worker_wait(rm_worker_t *w)
{
    if (w->threads != NULL)
        join_serving(w);
    rm_worker_request_stop(w); /* wakes the control thread if nothing else did */
    if (w->control_started)
        pthread_join(w->control, NULL);
    w->control_started = false;
}
