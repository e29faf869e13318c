/*
 * metrics.c - the --metrics endpoint: /metrics, /healthz and /readyz on a
 * listening socket of its own, served by the supervisor's io_uring loop.
 *
 * Kernel features: multishot accept (5.19), plain recv and send.
 *
 * Its clients may be hostile, so everything is bounded: at most
 * METRICS_MAX_CONNS connections (more are closed at once), a request head of
 * RM_METRICS_MAX_REQUEST bytes, one request per connection, 2 s from accept
 * to a complete request and 10 s more to send the answer (then the connection
 * is cancelled and closed): a client that holds slots without sending cannot
 * keep probes out for long. Each connection has at most one operation in
 * flight.
 */
#include "ringmaster/metrics.h"
#include "ringmaster/log.h"
#include "ringmaster/server.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define METRICS_MAX_CONNS 64
#define METRICS_READ_TIMEOUT_NS 2000000000ull  /* accept to a complete request */
#define METRICS_WRITE_TIMEOUT_NS 10000000000ull /* then to the last byte sent */

typedef struct metrics_conn {
    int fd;       /* -1: free slot */
    uint32_t gen; /* bumped per use; part of user_data */
    bool busy;    /* a recv or send is in flight */
    bool cancelled;
    uint64_t deadline_ns;
    size_t in_len;
    char in[RM_METRICS_MAX_REQUEST];
    rm_textbuf_t out; /* the whole response */
    size_t out_sent;
} metrics_conn_t;

struct rm_metrics_endpoint {
    int listen_fd;
    bool accept_armed;
    uint64_t accept_retry_ns; /* accept failed: try again then */
    metrics_conn_t conns[METRICS_MAX_CONNS];
};

int rm_metrics_start(rm_server_t *s)
{
    const rm_config_t *cfg = s->cfg;
    if (!cfg->metrics_enabled)
        return 0;
    rm_metrics_endpoint_t *m = calloc(1, sizeof(*m));
    if (!m) {
        fprintf(stderr, "ringmaster: error: out of memory\n");
        return -ENOMEM;
    }
    m->listen_fd = -1;
    for (int i = 0; i < METRICS_MAX_CONNS; i++)
        m->conns[i].fd = -1;
    s->metrics = m;
    int fd =
        rm_server_listen(cfg->metrics_host, cfg->metrics_port, 64, "--metrics", "metrics on", NULL);
    if (fd < 0)
        return fd;
    m->listen_fd = fd;
    return 0;
}

static void arm_accept(rm_server_t *s, rm_metrics_endpoint_t *m)
{
    struct io_uring_sqe *sqe = rm_server_sqe(s);
    io_uring_prep_multishot_accept(sqe, m->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, rm_user_data(RM_OP_METRICS_ACCEPT, 0, 0));
    m->accept_armed = true;
}

static uint64_t conn_data(rm_metrics_endpoint_t *m, metrics_conn_t *c, enum rm_op op)
{
    return rm_user_data(op, c->gen, (uint32_t)(c - m->conns));
}

static void conn_close(metrics_conn_t *c)
{
    close(c->fd);
    c->fd = -1;
    c->gen = (c->gen + 1) & 0xffffff;
    rm_textbuf_deinit(&c->out);
}

static void arm_recv(rm_server_t *s, rm_metrics_endpoint_t *m, metrics_conn_t *c)
{
    struct io_uring_sqe *sqe = rm_server_sqe(s);
    io_uring_prep_recv(sqe, c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
    io_uring_sqe_set_data64(sqe, conn_data(m, c, RM_OP_METRICS_RECV));
    c->busy = true;
}

static void arm_send(rm_server_t *s, rm_metrics_endpoint_t *m, metrics_conn_t *c)
{
    struct io_uring_sqe *sqe = rm_server_sqe(s);
    io_uring_prep_send(sqe, c->fd, c->out.data + c->out_sent, c->out.len - c->out_sent,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, conn_data(m, c, RM_OP_METRICS_SEND));
    c->busy = true;
}

/* What the supervisor knows now, for rendering. */
static void render_metrics(rm_server_t *s, rm_textbuf_t *body)
{
    rm_metrics_lane_sample_t *lanes = calloc(s->worker_count, sizeof(*lanes));
    rm_metrics_sample_t sample = {.stats = s->region.stats,
                                  .open_connections = s->conn_count,
                                  .queued = s->queued,
                                  .chunks_total = s->region.conf.chunk_count,
                                  .target_workers = s->target_workers,
                                  .lanes = lanes};
    uint32_t in_use = rm_chunk_pool_in_use(&s->region.pool);
    sample.chunks_in_use = in_use < sample.chunks_total ? in_use : sample.chunks_total;
    for (uint32_t i = 0; i < s->worker_count; i++) {
        rm_worker_t *w = &s->workers[i];
        if (w->state == RM_WORKER_NONE)
            continue;
        sample.in_flight += w->outstanding;
        sample.workers_starting += w->state == RM_WORKER_STARTING;
        sample.workers_ready += w->state == RM_WORKER_READY;
        sample.workers_stopping += w->state == RM_WORKER_STOPPING;
        if (!lanes)
            continue;
        rm_metrics_lane_sample_t *l = &lanes[sample.lane_count++];
        l->lane = i;
        l->pid = (int32_t)w->pid;
        l->state = w->state;
        uint32_t depth = rm_ring_count(&w->lane.req);
        /* Shared indices: a worker could make them say anything. */
        l->queue_depth = depth <= s->region.conf.lane_capacity ? depth : 0;
        l->outstanding = w->outstanding;
        const rm_lane_stats_t *ls = &s->region.lane_stats[i];
        atomic_store_explicit(&l->stats.requests, rm_stat_get(&ls->requests), memory_order_relaxed);
        atomic_store_explicit(&l->stats.exceptions, rm_stat_get(&ls->exceptions),
                              memory_order_relaxed);
        atomic_store_explicit(&l->stats.in_flight, rm_stat_get(&ls->in_flight),
                              memory_order_relaxed);
        atomic_store_explicit(&l->stats.chunk_waits, rm_stat_get(&ls->chunk_waits),
                              memory_order_relaxed);
        atomic_store_explicit(&l->stats.parked, rm_stat_get(&ls->parked), memory_order_relaxed);
        atomic_store_explicit(&l->stats.window_waits, rm_stat_get(&ls->window_waits),
                              memory_order_relaxed);
    }
    rm_metrics_render(&sample, body);
    free(lanes);
}

static bool any_worker_ready(const rm_server_t *s)
{
    for (uint32_t i = 0; i < s->worker_count; i++)
        if (s->workers[i].state == RM_WORKER_READY)
            return true;
    return false;
}

/* Build the whole response into c->out. */
static void answer(rm_server_t *s, metrics_conn_t *c, const rm_metrics_request_t *req)
{
    static const char text[] = "text/plain; charset=utf-8";
    if (req->status) {
        char msg[64];
        int n = snprintf(msg, sizeof(msg), "error %d\n", req->status);
        rm_metrics_response(&c->out, req->status, text, msg, (size_t)n, false);
        return;
    }
    switch (req->path) {
    case RM_METRICS_PATH_HEALTHZ:
        /* We are running this loop, so the loop runs. */
        rm_metrics_response(&c->out, 200, text, "ok\n", 3, req->head);
        break;
    case RM_METRICS_PATH_READYZ:
        if (!s->stopping && any_worker_ready(s))
            rm_metrics_response(&c->out, 200, text, "ready\n", 6, req->head);
        else
            rm_metrics_response(&c->out, 503, text,
                                s->stopping ? "stopping\n" : "no worker ready\n",
                                s->stopping ? 9 : 16, req->head);
        break;
    case RM_METRICS_PATH_METRICS: {
        rm_textbuf_t body;
        rm_textbuf_init(&body);
        render_metrics(s, &body);
        if (body.failed)
            rm_metrics_response(&c->out, 500, text, "out of memory\n", 14, req->head);
        else
            rm_metrics_response(&c->out, 200, "text/plain; version=0.0.4; charset=utf-8", body.data,
                                body.len, req->head);
        rm_textbuf_deinit(&body);
        break;
    }
    default:
        rm_metrics_response(&c->out, 404, text, "not found\n", 10, req->head);
        break;
    }
}

static void on_accept(rm_server_t *s, rm_metrics_endpoint_t *m, int res, bool more)
{
    if (!more)
        m->accept_armed = false;
    if (res < 0) {
        if (res != -ECANCELED) {
            RM_DEBUG("metrics accept: %s", strerror(-res));
            m->accept_retry_ns = rm_now_ns() + 100000000ull; /* e.g. out of descriptors */
        }
        return;
    }
    metrics_conn_t *c = NULL;
    for (int i = 0; i < METRICS_MAX_CONNS && !c; i++)
        if (m->conns[i].fd < 0)
            c = &m->conns[i];
    if (!c || s->region.stats == NULL) {
        close(res); /* full: a probe retries */
        return;
    }
    c->fd = res;
    c->busy = c->cancelled = false;
    c->in_len = c->out_sent = 0;
    rm_textbuf_init(&c->out);
    c->deadline_ns = rm_now_ns() + METRICS_READ_TIMEOUT_NS;
    arm_recv(s, m, c);
}

static void on_recv(rm_server_t *s, rm_metrics_endpoint_t *m, metrics_conn_t *c, int res)
{
    if (res <= 0 || c->cancelled) {
        conn_close(c);
        return;
    }
    c->in_len += (size_t)res;
    rm_metrics_request_t req;
    long used = rm_metrics_parse_request(c->in, c->in_len, &req);
    if (used == 0) {
        arm_recv(s, m, c);
        return;
    }
    answer(s, c, &req);
    if (c->out.failed) {
        conn_close(c);
        return;
    }
    shutdown(c->fd, SHUT_RD); /* one request per connection */
    c->deadline_ns = rm_now_ns() + METRICS_WRITE_TIMEOUT_NS;
    arm_send(s, m, c);
}

static void on_send(rm_server_t *s, rm_metrics_endpoint_t *m, metrics_conn_t *c, int res)
{
    if (res <= 0 || c->cancelled) {
        conn_close(c);
        return;
    }
    c->out_sent += (size_t)res;
    if (c->out_sent < c->out.len) {
        arm_send(s, m, c);
        return;
    }
    conn_close(c);
}

void rm_metrics_on_cqe(rm_server_t *s, enum rm_op op, uint32_t gen, uint32_t idx,
                       const struct io_uring_cqe *cqe)
{
    rm_metrics_endpoint_t *m = s->metrics;
    if (!m)
        return;
    if (op == RM_OP_METRICS_ACCEPT) {
        on_accept(s, m, cqe->res, cqe->flags & IORING_CQE_F_MORE);
        return;
    }
    if (idx >= METRICS_MAX_CONNS)
        return;
    metrics_conn_t *c = &m->conns[idx];
    if (c->fd < 0 || c->gen != gen)
        return;
    c->busy = false;
    if (op == RM_OP_METRICS_RECV)
        on_recv(s, m, c, cqe->res);
    else
        on_send(s, m, c, cqe->res);
}

void rm_metrics_tick(rm_server_t *s, uint64_t now)
{
    rm_metrics_endpoint_t *m = s->metrics;
    if (!m || m->listen_fd < 0)
        return;
    if (!m->accept_armed && now >= m->accept_retry_ns)
        arm_accept(s, m);
    for (int i = 0; i < METRICS_MAX_CONNS; i++) {
        metrics_conn_t *c = &m->conns[i];
        if (c->fd < 0 || c->cancelled || now < c->deadline_ns)
            continue;
        /* Too slow: cancel what is in flight; its completion closes. */
        c->cancelled = true;
        if (!c->busy) {
            conn_close(c);
            continue;
        }
        struct io_uring_sqe *sqe = rm_server_sqe(s);
        uint64_t target = conn_data(m, c, RM_OP_METRICS_RECV);
        if (c->out.len)
            target = conn_data(m, c, RM_OP_METRICS_SEND);
        io_uring_prep_cancel64(sqe, target, 0);
        io_uring_sqe_set_data64(sqe, rm_user_data(RM_OP_CANCEL, 0, 0));
    }
}

void rm_metrics_stop(rm_server_t *s)
{
    rm_metrics_endpoint_t *m = s->metrics;
    if (!m)
        return;
    /* Called after the ring is gone: nothing is in flight any more. */
    for (int i = 0; i < METRICS_MAX_CONNS; i++)
        if (m->conns[i].fd >= 0)
            conn_close(&m->conns[i]);
    if (m->listen_fd >= 0)
        close(m->listen_fd);
    free(m);
    s->metrics = NULL;
}
