/*
 * server.c - the supervisor's io_uring event loop.
 *
 * Kernel features: multishot accept (5.19), multishot recv and provided
 * buffer rings (6.0), SINGLE_ISSUER (6.0) and DEFER_TASKRUN (6.1); the last two
 * are dropped if the kernel refuses them. liburing 2.3 has no
 * io_uring_setup_buf_ring(), so the buffer ring is mapped and registered here.
 *
 * One loop iteration: take completions from every lane, dispatch queued
 * requests, then either peek at the CQ (work was found) or announce sleep on
 * the doorbell, look at the lanes once more, and block in io_uring until a
 * CQE, the doorbell eventfd, or the tick.
 */
#include "ringmaster/listen_fds.h"
#include "ringmaster/log.h"
#include "ringmaster/privileges.h"
#include "ringmaster/server.h"
#include "ringmaster/wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BUF_GROUP 1
#define SIG_BATCH 8
#define RING_ENTRIES 4096

uint64_t rm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct io_uring_sqe *rm_server_sqe(rm_server_t *s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    if (!sqe) {
        /* SQ full: hand what we have to the kernel and try again. */
        io_uring_submit(&s->ring);
        sqe = io_uring_get_sqe(&s->ring);
    }
    if (!sqe) {
        RM_ERROR("submission queue stays full");
        abort();
    }
    return sqe;
}

/* ---- connections ---- */

void rm_server_arm_recv(rm_server_t *s, rm_conn_t *c)
{
    struct io_uring_sqe *sqe = rm_server_sqe(s);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data64(sqe, rm_user_data(RM_OP_RECV, c->gen, (uint32_t)(c - s->conns)));
    c->recv_armed = true;
    c->cancel_sent = false;
    c->wants_buffers = false;
}

void rm_server_cancel_recv(rm_server_t *s, rm_conn_t *c)
{
    if (!c->recv_armed || c->cancel_sent)
        return;
    struct io_uring_sqe *sqe = rm_server_sqe(s);
    io_uring_prep_cancel64(sqe, rm_user_data(RM_OP_RECV, c->gen, (uint32_t)(c - s->conns)), 0);
    io_uring_sqe_set_data64(sqe, rm_user_data(RM_OP_CANCEL, 0, 0));
    c->cancel_sent = true;
}

void rm_server_close_conn(rm_server_t *s, rm_conn_t *c)
{
    if (c->state == RM_CONN_FREE || c->lingering)
        return; /* a lingering connection closes on EOF or its timer */
    if (c->linger && c->close_after && !c->closing && c->out_head == RM_CHUNK_NONE &&
        !c->send_busy && c->state == RM_CONN_READING) {
        /* Our answer is out: send FIN, drop what the client still sends
         * until it closes too (or the linger timer ends it). */
        c->lingering = true;
        shutdown(c->fd, SHUT_WR);
        if (!c->recv_armed && !c->recv_paused)
            rm_server_arm_recv(s, c);
        rm_deadline_update(s, c, false);
        return;
    }
    if (!c->closing) {
        c->closing = true;
        /* No more reads; what is in flight to us is still delivered. */
        shutdown(c->fd, SHUT_RD);
        if (c->state == RM_CONN_DISPATCHED && c->meta_chunk != RM_CHUNK_NONE)
            /* A worker streaming to this client can stop now. */
            rm_wire_set_gone((rm_req_meta_t *)rm_chunk_pool_ptr(&s->region.pool, c->meta_chunk));
    }
    if (c->recv_armed) {
        rm_server_cancel_recv(s, c);
        return;
    }
    if (c->send_busy || c->spill_pending || c->state == RM_CONN_DISPATCHED ||
        c->state == RM_CONN_QUEUED)
        return; /* the send, a spill write or the worker's completion calls us again */
    close(c->fd);
    rm_conn_release(s, c);
}

void rm_server_flush_output(rm_server_t *s, rm_conn_t *c)
{
    if (c->send_busy)
        return;
    if (c->out_head == RM_CHUNK_NONE) {
        if (c->close_after && c->state != RM_CONN_DISPATCHED)
            rm_server_close_conn(s, c);
        return;
    }
    if (c->closing && !c->close_after) {
        return;
    }
    uint32_t ch = c->out_head;
    struct io_uring_sqe *sqe = rm_server_sqe(s);
    io_uring_prep_send(sqe, c->fd, rm_chunk_pool_ptr(&s->region.pool, ch) + s->chunk_off[ch],
                       s->chunk_len[ch], MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, rm_user_data(RM_OP_SEND, c->gen, (uint32_t)(c - s->conns)));
    c->send_busy = true;
}

static void on_send(rm_server_t *s, rm_conn_t *c, int res)
{
    c->send_busy = false;
    uint32_t ch = c->out_head;
    if (res < 0 || ch == RM_CHUNK_NONE) {
        if (res != -EPIPE && res != -ECONNRESET)
            RM_DEBUG("send: %s", strerror(-res));
        c->close_after = false;
        rm_server_close_conn(s, c);
        return;
    }
    s->chunk_off[ch] += (uint32_t)res;
    s->chunk_len[ch] -= (uint32_t)res;
    c->resp_sent += (uint64_t)res;
    rm_stat_add(&s->region.stats->bytes_sent, (uint64_t)res);
    if (c->state == RM_CONN_DISPATCHED && c->meta_chunk != RM_CHUNK_NONE)
        /* Opens the window of a worker streaming this response. */
        rm_wire_set_sent((rm_req_meta_t *)rm_chunk_pool_ptr(&s->region.pool, c->meta_chunk),
                         c->resp_sent);
    if (s->chunk_len[ch] == 0) {
        c->out_head = s->chunk_next[ch];
        if (c->out_head == RM_CHUNK_NONE)
            c->out_tail = RM_CHUNK_NONE;
        rm_chunk_unref(s, ch);
    }
    if (c->closing && !c->close_after) {
        rm_server_close_conn(s, c);
        return;
    }
    rm_server_flush_output(s, c);
}

/* ---- provided buffers ---- */

static void buf_ring_put(rm_server_t *s, uint16_t bid, uint32_t chunk)
{
    s->buf_chunk[bid] = chunk;
    io_uring_buf_ring_add(s->buf_ring, rm_chunk_pool_ptr(&s->region.pool, chunk),
                          s->region.pool.chunk_size, bid, io_uring_buf_ring_mask(s->buf_count),
                          0);
    io_uring_buf_ring_advance(s->buf_ring, 1);
}

/* Give the kernel a fresh chunk for buffer slot `bid`, or remember the gap. */
static void buf_refill(rm_server_t *s, uint16_t bid)
{
    uint32_t ch = rm_chunk_alloc_input(s);
    if (ch == RM_CHUNK_NONE) {
        s->buf_chunk[bid] = RM_CHUNK_NONE;
        if (s->bufs_missing++ == 0)
            rm_spill_relieve(s); /* bodies waiting in the pool may be what holds it */
        return;
    }
    buf_ring_put(s, bid, ch);
}

/* Buffers are back: resume the connections whose recv ran dry. */
static void rearm_dry(rm_server_t *s)
{
    s->dry_conns = false;
    for (uint32_t i = 0; i < s->conn_cap; i++) {
        rm_conn_t *c = &s->conns[i];
        if (c->state != RM_CONN_FREE && c->wants_buffers && !c->closing && !c->recv_armed &&
            !c->recv_paused && !c->peer_eof)
            rm_server_arm_recv(s, c);
    }
}

static void buf_refill_missing(rm_server_t *s)
{
    for (uint32_t bid = 0; bid < s->buf_count && s->bufs_missing; bid++) {
        if (s->buf_chunk[bid] != RM_CHUNK_NONE)
            continue;
        uint32_t ch = rm_chunk_alloc_input(s);
        if (ch == RM_CHUNK_NONE)
            return;
        s->bufs_missing--;
        buf_ring_put(s, (uint16_t)bid, ch);
    }
    if (s->bufs_missing)
        return;
    rearm_dry(s);
}

static void on_recv(rm_server_t *s, rm_conn_t *c, struct io_uring_cqe *cqe)
{
    int res = cqe->res;
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        uint32_t ch = s->buf_chunk[bid];
        buf_refill(s, bid);
        if (res > 0)
            rm_stat_add(&s->region.stats->bytes_received, (uint64_t)res);
        if (res > 0 && !c->closing && !c->lingering && ch != RM_CHUNK_NONE) {
            rm_conn_input(s, c, ch, (uint32_t)res); /* the queue takes the reference */
        } else if (ch != RM_CHUNK_NONE) {
            rm_chunk_unref(s, ch);
        }
    }
    if (!more)
        c->recv_armed = false;
    if (c->lingering) {
        /* ECANCELED: a read paused before the answer (spill.c) ended. */
        if (res > 0 || res == -ENOBUFS || res == -ECANCELED) {
            if (!more)
                rm_server_arm_recv(s, c);
            return;
        }
        /* The client closed (or reset): now close for good. */
        c->lingering = false;
        c->linger = false;
        c->close_after = false;
        rm_server_close_conn(s, c);
        return;
    }
    if (c->closing) {
        if (!more)
            rm_server_close_conn(s, c);
        return;
    }
    if (res == 0) {
        /* The client closed its side (RFC 9112 9.6: that ends its sending,
         * not the exchange). Every request that arrived whole before the FIN
         * is answered, in order; then the connection closes. */
        c->peer_eof = true;
        if (c->state == RM_CONN_DISPATCHED && c->meta_chunk != RM_CHUNK_NONE)
            /* An ASGI app waiting in receive() hears http.disconnect. */
            rm_wire_set_eof((rm_req_meta_t *)rm_chunk_pool_ptr(&s->region.pool, c->meta_chunk));
        /* Paused for a lagging spill, the input still holds unparsed bytes
         * (maybe a whole request): rm_spill_on_write goes on with them, and
         * rm_conn_process closes once they run out. */
        if (c->state == RM_CONN_READING && !c->spill_waiting && !c->recv_paused) {
            /* The input is parsed already: at most a request cut short is
             * left, which can never complete. */
            c->close_after = true;
            if (c->parsing || c->out_head == RM_CHUNK_NONE)
                rm_server_close_conn(s, c);
            else
                rm_server_flush_output(s, c); /* closes once the answers are out */
        }
        /* Dispatched or queued: request_finished goes on with the requests
         * queued behind it (rm_conn_process closes when they run out). */
        return;
    }
    if (res < 0) {
        if (res == -ENOBUFS) {
            /* Re-armed when chunks come back; or, when the pool has them and
             * the kernel only took every buffer of the ring before this
             * batch of completions refilled it, after the batch. */
            c->wants_buffers = true;
            s->dry_conns = true;
            return;
        }
        if (res == -ECANCELED) {
            /* We paused reading (spill.c); it may have resumed meanwhile. */
            if (!c->recv_paused && !c->recv_armed && !c->close_after && !c->peer_eof)
                rm_server_arm_recv(s, c);
            return;
        }
        if (res != -ECONNRESET)
            RM_DEBUG("recv: %s", strerror(-res));
        rm_server_close_conn(s, c);
        return;
    }
    if (c->state == RM_CONN_READING)
        rm_conn_process(s, c);
    if (!more && !c->recv_armed && !c->closing && !c->close_after && !c->recv_paused &&
        !c->peer_eof)
        rm_server_arm_recv(s, c);
}

/* ---- accept, signals, doorbell ---- */

static void arm_accept(rm_server_t *s)
{
    struct io_uring_sqe *sqe = rm_server_sqe(s);
    io_uring_prep_multishot_accept(sqe, s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, rm_user_data(RM_OP_ACCEPT, 0, 0));
    s->accept_armed = true;
}

/* A connection over --max-connections: answer 503 at once and close, on the
 * accepted socket itself, without a slot, a chunk or a ring entry (none is to
 * be had, and a client told "busy" can retry elsewhere, where one left in the
 * backlog would wait blind). Whatever the client already sent is read and
 * dropped first, and our side is shut before the close, so the kernel has no
 * unread bytes to answer with a reset that could destroy the 503. All of it
 * is non-blocking: a client that is not ready loses the answer, never the
 * loop's time. */
static void refuse_busy(rm_server_t *s, int fd)
{
    char busy[256];
    int len = rm_conn_format_error(s, busy, sizeof(busy), 503, true);
    char sink[4096];
    for (int i = 0; i < 16 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
        ;
    ssize_t n = send(fd, busy, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0)
        rm_stat_add(&s->region.stats->bytes_sent, (uint64_t)n);
    shutdown(fd, SHUT_WR);
    for (int i = 0; i < 16 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
        ;
    close(fd);
    rm_stat_add(&s->region.stats->overload[RM_OVERLOAD_MAX_CONNECTIONS], 1);
    uint64_t now = rm_now_ns();
    if (now >= s->accept_warned_ns + 1000000000ull) {
        RM_WARN("--max-connections (%u) reached: new clients are answered 503", s->conn_cap);
        s->accept_warned_ns = now;
    }
}

static void on_accept(rm_server_t *s, struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        s->accept_armed = false;
    if (cqe->res == -EMFILE || cqe->res == -ENFILE || cqe->res == -ENOBUFS ||
        cqe->res == -ENOMEM) {
        /* Out of descriptors or memory: retrying at once would spin. Back off
         * for 100 ms (pending connections wait in the backlog) and say so at
         * most once a second. */
        uint64_t now = rm_now_ns();
        if (now >= s->accept_warned_ns + 1000000000ull) {
            RM_WARN("accept: %s; pausing accepts (%u connections open)", strerror(-cqe->res),
                    s->conn_count);
            s->accept_warned_ns = now;
        }
        s->accept_paused_until_ns = now + 100000000ull;
        if (s->accept_armed) {
            struct io_uring_sqe *sqe = rm_server_sqe(s);
            io_uring_prep_cancel64(sqe, rm_user_data(RM_OP_ACCEPT, 0, 0), 0);
            io_uring_sqe_set_data64(sqe, rm_user_data(RM_OP_CANCEL, 0, 0));
            s->accept_armed = false;
        }
        return;
    }
    if (cqe->res < 0) {
        if (cqe->res != -ECANCELED)
            RM_WARN("accept: %s", strerror(-cqe->res));
    } else {
        int fd = cqe->res;
        rm_conn_t *c = s->stopping ? NULL : rm_conn_alloc(s, fd);
        if (!c && !s->stopping) {
            refuse_busy(s, fd);
        } else if (!c) {
            close(fd); /* stopping: the listening socket closes next */
        } else {
            rm_stat_add(&s->region.stats->connections_accepted, 1);
            socklen_t len = sizeof(c->peer);
            if (getpeername(fd, (struct sockaddr *)&c->peer, &len) < 0)
                memset(&c->peer, 0, sizeof(c->peer));
            len = sizeof(c->local);
            if (!s->listen_wildcard)
                c->local = s->listen_addr; /* saves a syscall per connection */
            else if (getsockname(fd, (struct sockaddr *)&c->local, &len) < 0)
                memset(&c->local, 0, sizeof(c->local));
            rm_server_arm_recv(s, c);
            rm_deadline_update(s, c, false);
        }
    }
    if (!s->accept_armed && !s->stopping && s->listen_fd >= 0 && !s->accept_paused_until_ns)
        arm_accept(s);
}

static void arm_signal(rm_server_t *s)
{
    struct io_uring_sqe *sqe = rm_server_sqe(s);
    io_uring_prep_read(sqe, s->signal_fd, s->sig_buf, sizeof(struct signalfd_siginfo) * SIG_BATCH,
                       0);
    io_uring_sqe_set_data64(sqe, rm_user_data(RM_OP_SIGNAL, 0, 0));
}

void rm_server_begin_stop(rm_server_t *s, bool fast, const char *why)
{
    if (!s->stopping || (fast && !s->fast_stop))
        RM_INFO("%s: %s shutdown", why, fast ? "fast" : "graceful");
    if (!s->stopping)
        s->stop_deadline_ns = rm_now_ns() + (uint64_t)s->cfg->graceful_timeout_ms * 1000000ull;
    s->stopping = true;
    if (fast)
        s->fast_stop = true;
}

static void on_signal(rm_server_t *s, int res)
{
    if (res > 0) {
        for (int i = 0; i < res / (int)sizeof(struct signalfd_siginfo); i++) {
            switch (s->sig_buf[i].ssi_signo) {
            case SIGCHLD:
                rm_workers_reap(s);
                break;
            case SIGTERM:
                rm_server_begin_stop(s, false, "SIGTERM");
                break;
            case SIGINT:
                rm_server_begin_stop(s, true, "SIGINT");
                break;
            case SIGQUIT:
                rm_server_begin_stop(s, true, "SIGQUIT");
                break;
            case SIGHUP:
                if (!s->stopping)
                    rm_workers_reload(s);
                break;
            case SIGTTIN:
            case SIGTTOU:
                if (!s->stopping)
                    rm_workers_scale(s, s->sig_buf[i].ssi_signo == SIGTTIN ? 1 : -1);
                break;
            default:
                break;
            }
        }
    }
    arm_signal(s);
}

static void arm_doorbell(rm_server_t *s)
{
    struct io_uring_sqe *sqe = rm_server_sqe(s);
    io_uring_prep_read(sqe, s->doorbell_fd, &s->doorbell_value, sizeof(s->doorbell_value), 0);
    io_uring_sqe_set_data64(sqe, rm_user_data(RM_OP_DOORBELL, 0, 0));
}

static void handle_cqe(rm_server_t *s, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    enum rm_op op = (enum rm_op)(ud >> 56);
    uint32_t gen = (uint32_t)(ud >> 32) & 0xffffff;
    uint32_t idx = (uint32_t)ud;
    rm_conn_t *c = NULL;
    if (op == RM_OP_SPILL_WRITE) {
        rm_spill_on_write(s, gen, idx, cqe->res);
        return;
    }
    if (op == RM_OP_RECV || op == RM_OP_SEND) {
        c = idx < s->conn_cap ? &s->conns[idx] : NULL;
        if (!c || c->gen != gen || c->state == RM_CONN_FREE) {
            /* Stale: a buffer it carries still has to go back. */
            if (op == RM_OP_RECV && (cqe->flags & IORING_CQE_F_BUFFER)) {
                uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
                uint32_t ch = s->buf_chunk[bid];
                buf_refill(s, bid);
                if (ch != RM_CHUNK_NONE)
                    rm_chunk_unref(s, ch);
            }
            return;
        }
    }
    switch (op) {
    case RM_OP_ACCEPT:
        on_accept(s, cqe);
        break;
    case RM_OP_RECV:
        on_recv(s, c, cqe);
        if (c->state != RM_CONN_FREE && c->gen == gen)
            rm_deadline_update(s, c, cqe->res > 0);
        break;
    case RM_OP_SEND:
        on_send(s, c, cqe->res);
        if (c->state != RM_CONN_FREE && c->gen == gen)
            rm_deadline_update(s, c, cqe->res > 0);
        break;
    case RM_OP_SIGNAL:
        on_signal(s, cqe->res);
        break;
    case RM_OP_DOORBELL:
        arm_doorbell(s);
        break;
    case RM_OP_CTL_RECV:
        rm_workers_on_ctl(s, idx, gen, cqe->res);
        break;
    case RM_OP_METRICS_ACCEPT:
    case RM_OP_METRICS_RECV:
    case RM_OP_METRICS_SEND:
        rm_metrics_on_cqe(s, op, gen, idx, cqe);
        break;
    case RM_OP_CONTROL_ACCEPT:
    case RM_OP_CONTROL_RECV:
    case RM_OP_CONTROL_SEND:
        rm_control_on_cqe(s, op, gen, idx, cqe);
        break;
    case RM_OP_PIDFD:
        rm_workers_on_pidfd(s, idx, gen, cqe->res);
        break;
    case RM_OP_CANCEL:
    case RM_OP_TIMEOUT:
    case RM_OP_SPILL_WRITE: /* handled above */
        break;
    }
}

/* ---- shutdown ---- */

static bool conn_idle(const rm_conn_t *c)
{
    return c->state == RM_CONN_READING && !c->parsing && c->out_head == RM_CHUNK_NONE &&
           !c->send_busy;
}

/* Advance a stop in progress; true when the loop may end. */
static bool stop_step(rm_server_t *s, uint64_t now)
{
    if (s->listen_fd >= 0) {
        if (s->accept_armed) {
            struct io_uring_sqe *sqe = rm_server_sqe(s);
            io_uring_prep_cancel64(sqe, rm_user_data(RM_OP_ACCEPT, 0, 0), 0);
            io_uring_sqe_set_data64(sqe, rm_user_data(RM_OP_CANCEL, 0, 0));
            s->accept_armed = false;
        }
        close(s->listen_fd);
        s->listen_fd = -1;
    }
    bool past_deadline = now >= s->stop_deadline_ns;
    for (uint32_t i = 0; i < s->conn_cap; i++) {
        rm_conn_t *c = &s->conns[i];
        if (c->state == RM_CONN_FREE || c->closing)
            continue;
        if (s->fast_stop || past_deadline || conn_idle(c)) {
            c->lingering = c->linger = false;
            rm_server_close_conn(s, c);
        }
        else
            c->close_after = true; /* finish this exchange, then close */
    }
    if (!s->workers_told && (s->conn_count == 0 || s->fast_stop || past_deadline)) {
        rm_workers_stop_all(s, s->fast_stop || past_deadline);
        s->workers_told = true;
        s->kill_deadline_ns = now + (s->fast_stop ? 2000000000ull : 10000000000ull);
    }
    if (s->workers_told && now >= s->kill_deadline_ns && !rm_workers_all_exited(s)) {
        RM_WARN("workers did not exit in time; killing them");
        rm_workers_kill_all(s);
        s->kill_deadline_ns = now + 1000000000ull;
    }
    return s->workers_told && rm_workers_all_exited(s) && s->conn_count == 0;
}

/* ---- set-up ---- */

int rm_server_listen(const char *host, uint16_t port_num, int backlog, const char *flag,
                     const char *label, struct sockaddr_storage *bound)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", port_num);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) {
        fprintf(stderr, "ringmaster: error: %s: cannot resolve %s: %s\n", flag, host,
                gai_strerror(rc));
        return -EINVAL;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* Accepted sockets inherit TCP_NODELAY from the listener on Linux. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, backlog) < 0)
        goto fail;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char name[NI_MAXHOST], serv[NI_MAXSERV];
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (bound)
            *bound = ss;
        if (getnameinfo((struct sockaddr *)&ss, len, name, sizeof(name), serv, sizeof(serv),
                        NI_NUMERICHOST | NI_NUMERICSERV) == 0)
            RM_INFO("%s http://%s%s%s:%s", label, ss.ss_family == AF_INET6 ? "[" : "", name,
                    ss.ss_family == AF_INET6 ? "]" : "", serv);
    }
    freeaddrinfo(res);
    return fd;
fail:
    rc = -errno;
    fprintf(stderr, "ringmaster: error: %s: cannot listen on %s:%u: %s\n", flag, host, port_num,
            strerror(errno));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return rc;
}

/* The listener: inherited from a service manager (listen_fds.h), which then
 * owns its address and backlog, or bound to --bind. */
static int open_listener(rm_server_t *s)
{
    const rm_config_t *cfg = s->cfg;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    char why[256];
    int fd = rm_listen_fds_take(why, sizeof(why));
    if (fd == -EINVAL) {
        fprintf(stderr, "ringmaster: error: %s\n", why);
        return fd;
    }
    if (fd >= 0) {
        int one = 1;
        socklen_t len = sizeof(ss);
        /* Accepted sockets inherit TCP_NODELAY from the listener on Linux. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        getsockname(fd, (struct sockaddr *)&ss, &len);
        RM_INFO("serving the listening socket passed as fd %d in LISTEN_FDS (--bind is not used)",
                fd);
    } else if ((fd = rm_server_listen(cfg->bind_host, cfg->bind_port, cfg->backlog, "--bind",
                                      "listening on", &ss)) < 0) {
        return fd;
    }
    s->listen_addr = ss;
    s->listen_wildcard =
        (ss.ss_family == AF_INET &&
         ((struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_ANY)) ||
        (ss.ss_family == AF_INET6 &&
         IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr));
    s->listen_fd = fd;
    return 0;
}

static int setup_ring(rm_server_t *s)
{
    struct io_uring_params p = {0};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN;
    int rc = io_uring_queue_init_params(RING_ENTRIES, &s->ring, &p);
    if (rc == -EINVAL) {
        memset(&p, 0, sizeof(p));
        rc = io_uring_queue_init_params(RING_ENTRIES, &s->ring, &p);
    }
    if (rc) {
        fprintf(stderr,
                "ringmaster: error: io_uring is not available (%s)%s\n", strerror(-rc),
                rc == -EPERM || rc == -ENOSYS
                    ? "; a seccomp profile blocks it (Docker 25+, containerd 2 and Podman do "
                      "by default: allow io_uring_setup, io_uring_enter and io_uring_register, "
                      "see docs/deploy.md), or the sysctl kernel.io_uring_disabled is set"
                    : "");
        return rc;
    }
    s->ring_ready = true;

    s->buf_count = s->cfg->recv_buffers;
    s->buf_ring_size = s->buf_count * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, s->buf_ring_size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE,
                     -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    s->buf_ring = mem;
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)mem,
                                   .ring_entries = s->buf_count,
                                   .bgid = BUF_GROUP};
    rc = io_uring_register_buf_ring(&s->ring, &reg, 0);
    if (rc) {
        fprintf(stderr, "ringmaster: error: cannot register the provided-buffer ring: %s\n",
                strerror(-rc));
        return rc;
    }
    io_uring_buf_ring_init(s->buf_ring);
    s->buf_chunk = malloc(s->buf_count * sizeof(uint32_t));
    if (!s->buf_chunk)
        return -ENOMEM;
    for (uint32_t bid = 0; bid < s->buf_count; bid++)
        buf_refill(s, (uint16_t)bid);
    return 0;
}

/* Every connection is a descriptor: raise the soft limit to the hard one, and
 * warn when even that is below --max-connections. */
static void raise_fd_limit(const rm_config_t *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)cfg->max_connections + 64)
        RM_WARN("the descriptor limit (%llu) is below --max-connections %u: beyond it, accepts "
                "pause until connections close (raise it with ulimit -n)",
                (unsigned long long)rl.rlim_cur, cfg->max_connections);
}

static void log_sweep(const char *line)
{
    RM_INFO("%s", line);
}

/* The private spill directory (spill_dir.h), after removing what dead
 * instances of the same user left; given to --user's user. */
static int open_spill_dir(rm_server_t *s)
{
    const rm_config_t *cfg = s->cfg;
    uid_t uid = cfg->run_as.enabled ? cfg->run_as.uid : geteuid();
    gid_t gid = cfg->run_as.enabled ? cfg->run_as.gid : getegid();
    char why[1400];
    int rc = rm_spill_dir_sweep(cfg->spill_dir, uid, log_sweep);
    if (rc < 0)
        RM_WARN("--spill-dir %s: cannot look for leftovers: %s", cfg->spill_dir, strerror(-rc));
    if ((rc = rm_spill_dir_open(&s->spill_dir, cfg->spill_dir, uid, gid, why, sizeof(why))) < 0)
        fprintf(stderr, "ringmaster: error: %s\n", why);
    return rc;
}

static int setup(rm_server_t *s, const rm_config_t *cfg)
{
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    srandom((unsigned)getpid() ^ (unsigned)rm_now_ns()); /* --max-requests-jitter */
    s->listen_fd = s->signal_fd = s->doorbell_fd = -1;
    s->region.fd = -1;
    s->queue_head = s->queue_tail = UINT32_MAX;
    s->started_ns = rm_now_ns();
    /* Every connection may hold a head up to the limit: the budget only
     * states the bound (and holds if the limits were ever raised at run
     * time); dribbled heads cost far less in practice. */
    s->partial_head_budget = (uint64_t)cfg->max_connections * cfg->max_head;
    s->control.listen_fd = -1;
    s->spill_dir.fd = -1;
    for (int i = 0; i < RM_CONTROL_CLIENTS; i++)
        s->control.clients[i].fd = -1;

    /* Slots for twice the largest pool: a replacement starts before the
     * worker it replaces leaves (recycling, reload), and SIGTTIN may grow the
     * pool to 2N + 2. An idle lane costs its two rings (128 KiB). */
    uint32_t slots = cfg->workers * 4 + 4;
    if (slots < cfg->workers_max * 2 + 2)
        slots = cfg->workers_max * 2 + 2;
    if (slots > 1024)
        slots = 1024;
    rm_region_conf_t rconf = {.lane_count = slots,
                              .lane_capacity = cfg->lane_capacity,
                              .chunk_size = cfg->chunk_size,
                              .chunk_count = cfg->chunk_count};
    const char *why = NULL;
    if (rm_region_conf_check(&rconf, &why)) {
        fprintf(stderr, "ringmaster: error: bad region geometry: %s\n", why ? why : "?");
        return -EINVAL;
    }
    int rc = rm_region_create(&s->region, &rconf);
    if (rc) {
        fprintf(stderr, "ringmaster: error: cannot create the shared region: %s\n",
                strerror(-rc));
        return rc;
    }
    uint32_t n = cfg->chunk_count;
    /* The response reserve: request input never takes the last chunks, so a
     * worker can always write the response that frees a request's. Two per
     * thread the pool may ever run (a response chunk being written and one
     * being sent), or 1/16 of the pool if more; at most a quarter of it. */
    uint64_t reserve = (uint64_t)cfg->workers_max * cfg->threads * 2;
    if (reserve < n / 16)
        reserve = n / 16;
    if (reserve > n / 4)
        reserve = n / 4;
    s->chunk_reserve = (uint32_t)reserve;
    s->chunk_refs = calloc(n, sizeof(uint16_t));
    s->chunk_next = calloc(n, sizeof(uint32_t));
    s->chunk_off = calloc(n, sizeof(uint32_t));
    s->chunk_len = calloc(n, sizeof(uint32_t));
    s->conn_cap = cfg->max_connections;
    s->conns = calloc(s->conn_cap, sizeof(rm_conn_t));
    s->conn_free = malloc(s->conn_cap * sizeof(uint32_t));
    s->workers = calloc(slots, sizeof(rm_worker_t));
    s->sig_buf = calloc(SIG_BATCH, sizeof(struct signalfd_siginfo));
    if (!s->chunk_refs || !s->chunk_next || !s->chunk_off || !s->chunk_len || !s->conns ||
        !s->conn_free || !s->workers || !s->sig_buf) {
        fprintf(stderr, "ringmaster: error: out of memory\n");
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < s->conn_cap; i++) {
        s->conns[i].fd = -1;
        s->conn_free[i] = s->conn_cap - 1 - i;
    }
    s->conn_free_top = s->conn_cap;
    s->worker_count = slots;
    s->target_workers = cfg->attach_only ? 0 : cfg->workers;
    for (uint32_t i = 0; i < slots; i++) {
        s->workers[i].ctl_fd = -1;
        s->workers[i].pidfd = -1;
        s->workers[i].loop_bell_fd = -1; /* made with the slot's first worker */
        rm_worker_bind_lane(s, i);
    }

    sigset_t mask;
    sigemptyset(&mask);
    int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(&mask, sigs[i]);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    s->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    s->doorbell_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->signal_fd < 0 || s->doorbell_fd < 0) {
        fprintf(stderr, "ringmaster: error: signalfd/eventfd: %s\n", strerror(errno));
        return -errno;
    }
    rm_deadline_init(s);
    raise_fd_limit(cfg);
    /* Everything that may need root first (privileged ports, directories
     * only root may write); then --user takes root away for good, before
     * the ring and the workers exist. */
    if ((rc = open_listener(s)) || (rc = rm_metrics_start(s)) || (rc = rm_control_open(s)) ||
        (rc = open_spill_dir(s)))
        return rc;
    if (cfg->access_log) {
        s->access_log_format = cfg->access_log_format;
        s->access_log_line = malloc(RM_ACCESS_LOG_LINE_MAX);
        if (!s->access_log_line) {
            fprintf(stderr, "ringmaster: error: out of memory\n");
            return -ENOMEM;
        }
        if ((rc = rm_access_log_start(&s->access_log, cfg->access_log)))
            return rc;
    }
    char drop_err[256];
    if ((rc = rm_priv_drop(&cfg->run_as, drop_err, sizeof(drop_err)))) {
        fprintf(stderr, "ringmaster: error: %s\n", drop_err);
        return rc;
    }
    if (cfg->run_as.enabled)
        RM_INFO("running as user %s (uid %u, gid %u); sockets and directories were opened as "
                "root",
                cfg->run_as.name, (unsigned)cfg->run_as.uid, (unsigned)cfg->run_as.gid);
    return setup_ring(s);
}

static void teardown(rm_server_t *s)
{
    if (s->ring_ready)
        io_uring_queue_exit(&s->ring);
    rm_metrics_stop(s);
    rm_access_log_stop(&s->access_log); /* writes what is queued */
    free(s->access_log_line);
    if (s->buf_ring)
        munmap(s->buf_ring, s->buf_ring_size);
    rm_control_close(s); /* after the ring: no operation still uses its buffers */
    rm_spill_dir_close(&s->spill_dir); /* after the ring: no write still targets it */
    for (uint32_t i = 0; s->workers && i < s->worker_count; i++) {
        rm_held_release_all(s, &s->workers[i]);
        if (s->workers[i].ctl_fd >= 0)
            close(s->workers[i].ctl_fd);
        if (s->workers[i].pidfd >= 0)
            close(s->workers[i].pidfd);
        if (s->workers[i].loop_bell_fd >= 0)
            close(s->workers[i].loop_bell_fd);
    }
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->signal_fd >= 0)
        close(s->signal_fd);
    if (s->doorbell_fd >= 0)
        close(s->doorbell_fd);
    rm_region_detach(&s->region);
    free(s->buf_chunk);
    free(s->chunk_refs);
    free(s->chunk_next);
    free(s->chunk_off);
    free(s->chunk_len);
    free(s->conns);
    free(s->conn_free);
    free(s->workers);
    free(s->sig_buf);
}

static unsigned handle_cqes(rm_server_t *s)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&s->ring, head, cqe)
    {
        handle_cqe(s, cqe);
        n++;
    }
    io_uring_cq_advance(&s->ring, n);
    return n;
}

int rm_server_run(const rm_config_t *cfg)
{
    rm_server_t *s = calloc(1, sizeof(*s));
    if (!s) {
        fprintf(stderr, "ringmaster: error: out of memory\n");
        return 1;
    }
    int rc = setup(s, cfg);
    if (rc) {
        teardown(s);
        free(s);
        return 1;
    }
    arm_signal(s);
    arm_doorbell(s);
    arm_accept(s);
    rm_control_start(s);
    if (rm_workers_start(s)) {
        rm_workers_kill_all(s);
        teardown(s);
        free(s);
        return 1;
    }

    for (;;) {
        uint64_t now = rm_now_ns();
        bool busy = rm_dispatch_drain(s);
        rm_dispatch_pending(s);
        if (s->bufs_missing)
            buf_refill_missing(s);
        else if (s->dry_conns)
            rearm_dry(s);
        if (s->chunk_waiters)
            rm_conn_resume_waiting(s);
        rm_deadline_expire(s, now);
        rm_metrics_tick(s, now);
        rm_control_tick(s, now);
        if (s->accept_paused_until_ns && now >= s->accept_paused_until_ns) {
            s->accept_paused_until_ns = 0;
            if (!s->accept_armed && !s->stopping && s->listen_fd >= 0)
                arm_accept(s);
        }
        if (!s->stopping)
            rm_workers_maintain(s, now);
        else if (stop_step(s, now))
            break;

        if (busy) {
            io_uring_submit(&s->ring);
        } else {
            struct __kernel_timespec tick = {.tv_sec = 0,
                                             .tv_nsec = s->stopping ? 50000000 : 500000000};
            struct io_uring_cqe *cqe;
            rm_doorbell_prepare_sleep(&s->region.header->doorbell);
            if (rm_dispatch_drain(s)) {
                rm_doorbell_cancel_sleep(&s->region.header->doorbell);
                io_uring_submit(&s->ring);
            } else {
                rc = io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &tick, NULL);
                rm_doorbell_cancel_sleep(&s->region.header->doorbell);
                if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
                    RM_WARN("io_uring wait: %s", strerror(-rc));
            }
        }
        handle_cqes(s);
    }
    int code = s->exit_code;
    /* Every connection is closed and every worker reaped: only the kernel's
     * receive buffers may still hold chunks. Anything else leaked. */
    for (uint32_t i = 0; i < s->worker_count; i++)
        rm_held_release_all(s, &s->workers[i]);
    uint32_t in_use = rm_chunk_pool_in_use(&s->region.pool);
    uint32_t armed = s->buf_count - s->bufs_missing;
    if (in_use > armed)
        RM_WARN("stopped with %u chunk(s) still in use: a leak", in_use - armed);
    else
        RM_INFO("stopped; chunk pool clean");
    teardown(s);
    free(s);
    return code;
}
