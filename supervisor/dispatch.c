/*
 * dispatch.c - requests onto lanes, completions off them.
 *
 * A complete request goes to the ready worker with the fewest requests
 * outstanding (ties broken round-robin), or waits in a FIFO when every lane is
 * full or no worker is ready. Every completion a worker posts is checked
 * before use: the request id must be outstanding on that lane, the chunk must
 * belong to that worker and the span must lie inside it. A worker that posts
 * anything else is killed; its clients get 502 (dispatch_lane_lost).
 */
#include "ringmaster/log.h"
#include "ringmaster/server.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define REQ_CONN_BITS 24
#define REQ_CONN_MASK ((1u << REQ_CONN_BITS) - 1)

static rm_worker_t *pick_worker(rm_server_t *s)
{
    rm_worker_t *best = NULL;
    for (uint32_t k = 0; k < s->worker_count; k++) {
        uint32_t i = (s->rr_next + k) % s->worker_count;
        rm_worker_t *w = &s->workers[i];
        if (w->state != RM_WORKER_READY || w->outstanding >= s->cfg->worker_queue)
            continue;
        if (!best || w->outstanding < best->outstanding)
            best = w;
    }
    if (best)
        s->rr_next = (uint32_t)(best - s->workers) + 1;
    return best;
}

static void queue_conn(rm_server_t *s, rm_conn_t *c)
{
    uint32_t idx = (uint32_t)(c - s->conns);
    c->state = RM_CONN_QUEUED;
    c->queue_next = UINT32_MAX;
    if (s->queue_tail == UINT32_MAX)
        s->queue_head = idx;
    else
        s->conns[s->queue_tail].queue_next = idx;
    s->queue_tail = idx;
    s->queued++;
}

void rm_dispatch_unqueue_head(rm_server_t *s)
{
    rm_conn_t *c = &s->conns[s->queue_head];
    s->queue_head = c->queue_next;
    if (s->queue_head == UINT32_MAX)
        s->queue_tail = UINT32_MAX;
    c->queue_next = UINT32_MAX;
    s->queued--;
}

/* A worker that has a thread free now, other than `busy`: ready, and fewer
 * requests handed to it than it has threads (each request it runs holds one
 * thread). The one with the fewest; NULL when none. */
static rm_worker_t *pick_idle_worker(rm_server_t *s, const rm_worker_t *busy)
{
    rm_worker_t *best = NULL;
    for (uint32_t i = 0; i < s->worker_count; i++) {
        rm_worker_t *w = &s->workers[i];
        if (w == busy || w->state != RM_WORKER_READY || w->cut_off ||
            w->outstanding >= s->cfg->threads)
            continue;
        if (!best || w->outstanding < best->outstanding)
            best = w;
    }
    return best;
}

/* Push the connection's complete request onto w's lane. */
static bool push_to(rm_server_t *s, rm_conn_t *c, rm_worker_t *w)
{
    uint32_t idx = (uint32_t)(c - s->conns);
    uint64_t req_id = (++s->next_req_seq << REQ_CONN_BITS) | idx;
    rm_req_desc_t d = {.req_id = req_id,
                       .meta_chunk = c->meta_chunk,
                       .meta_len = c->meta_len,
                       .enqueued_ns = c->enqueued_ns,
                       .deadline_ns = c->enqueued_ns +
                                      (uint64_t)s->cfg->queue_timeout_ms * 1000000ull};
    int rc = rm_lane_push_request(&w->lane, &d);
    if (rc) {
        if (rc == -EBADMSG) {
            RM_ERROR("worker %d: request ring corrupt; stopping it", (int)w->pid);
            rm_worker_kill(w);
        }
        return false;
    }
    c->req_id = req_id;
    c->resp_sent = 0;
    c->started = false; /* until a thread takes it: the queue's time, not --timeout's */
    c->dispatched_ns = rm_now_ns();
    c->lane = w->lane.index;
    c->state = RM_CONN_DISPATCHED;
    w->outstanding++;
    if (c->upgrade_asked && !w->upgrade_noted) {
        /* Once per worker: the app sees a plain request (a WebSocket route
         * answers 404 or 400), and the reason belongs in the log. */
        w->upgrade_noted = true;
        RM_INFO("worker %u: a request asked to switch protocols (Upgrade); ringmaster does "
                "not support upgrades yet (WebSocket included) and serves such requests as "
                "plain HTTP/1.1",
                w->lane.index);
    }
    return true;
}

/* Push the connection's complete request; false when no lane can take it. */
static bool try_push(rm_server_t *s, rm_conn_t *c)
{
    rm_worker_t *w = pick_worker(s);
    return w && push_to(s, c, w);
}

void rm_dispatch_request(rm_server_t *s, rm_conn_t *c)
{
    c->enqueued_ns = rm_now_ns();
    rm_dispatch_requeue(s, c);
}

/* Dispatch again a request that keeps its enqueue time (its deadline). */
void rm_dispatch_requeue(rm_server_t *s, rm_conn_t *c)
{
    if (!(s->queue_head == UINT32_MAX && try_push(s, c))) {
        if (s->queued >= s->cfg->max_queued) {
            /* Shed load here rather than let the queue, and every wait, grow. */
            rm_stat_add(&s->region.stats->overload[RM_OVERLOAD_QUEUE_FULL], 1);
            rm_conn_abort_request(s, c, 503);
            return;
        }
        queue_conn(s, c);
    }
    rm_deadline_update(s, c, false);
}

void rm_dispatch_pending(rm_server_t *s)
{
    while (s->queue_head != UINT32_MAX) {
        rm_conn_t *c = &s->conns[s->queue_head];
        if (c->closing) {
            /* The client left while its request waited: nothing to run. */
            rm_dispatch_unqueue_head(s);
            c->state = RM_CONN_READING;
            rm_conn_drop_request(s, c);
            rm_server_close_conn(s, c);
            continue;
        }
        if (!try_push(s, c))
            return;
        rm_dispatch_unqueue_head(s);
        rm_deadline_update(s, c, false);
    }
}

static void held_add(rm_server_t *s, rm_worker_t *w, rm_conn_t *c)
{
    uint32_t n = c->req_nchunks + (c->meta_chunk != RM_CHUNK_NONE);
    rm_held_t *h = malloc(sizeof(*h) + n * sizeof(uint32_t));
    if (!h) {
        /* Without memory to remember them, leaking the chunks is the safe
         * choice: the worker may still read them. */
        RM_ERROR("out of memory recording a held request; its chunks stay allocated");
    } else {
        h->req_id = c->req_id;
        h->cancelled = false;
        h->nchunks = 0;
        for (uint32_t i = 0; i < c->req_nchunks; i++)
            h->chunks[h->nchunks++] = c->req_chunks[i];
        if (c->meta_chunk != RM_CHUNK_NONE)
            h->chunks[h->nchunks++] = c->meta_chunk;
        h->next = w->held;
        w->held = h;
    }
    (void)s;
    c->req_nchunks = 0;
    c->meta_chunk = RM_CHUNK_NONE;
}

static void held_free(rm_server_t *s, rm_held_t *h)
{
    for (uint32_t i = 0; i < h->nchunks; i++)
        rm_chunk_unref(s, h->chunks[i]);
    free(h);
}

void rm_held_release_all(rm_server_t *s, rm_worker_t *w)
{
    while (w->held) {
        rm_held_t *h = w->held;
        w->held = h->next;
        held_free(s, h);
    }
}

static bool held_release(rm_server_t *s, rm_worker_t *w, uint64_t req_id)
{
    for (rm_held_t **pp = &w->held; *pp; pp = &(*pp)->next) {
        if ((*pp)->req_id == req_id) {
            rm_held_t *h = *pp;
            *pp = h->next;
            if (h->cancelled && w->outstanding > 0)
                w->outstanding--; /* it has left the lane at last */
            held_free(s, h);
            return true;
        }
    }
    return false;
}

static void violation(rm_server_t *s, rm_worker_t *w, const char *what, uint64_t req_id)
{
    (void)s;
    RM_ERROR("worker %d (lane %u) posted %s (request %llu); killing it", (int)w->pid,
             w->lane.index, what, (unsigned long long)req_id);
    if (w->pid > 0)
        rm_worker_kill(w);
    w->exit_cause = RM_RESTART_PROTOCOL;
    w->state = RM_WORKER_STOPPING; /* dispatch nothing more to it */
    w->cut_off = true;             /* and take nothing more from it */
}

/* The request on `c` is finished (its last completion arrived). */
static void request_finished(rm_server_t *s, rm_worker_t *w, rm_conn_t *c, uint32_t flags)
{
    rm_exchange_end(s, c);
    w->outstanding--;
    w->served++;
    s->requests_total++;
    if (flags & RM_DONE_HOLD)
        held_add(s, w, c);
    rm_conn_drop_request(s, c);
    c->state = RM_CONN_READING;
    if ((flags & RM_DONE_CLOSE) || !c->keep_alive)
        c->close_after = true;
    if (c->closing) {
        rm_server_close_conn(s, c);
        return;
    }
    if (c->close_after)
        rm_server_flush_output(s, c); /* closes once the output is sent */
    else
        rm_conn_process(s, c);        /* the next pipelined request, if any */
    if (c->state != RM_CONN_FREE)
        rm_deadline_update(s, c, false);
}

static void take_completion(rm_server_t *s, rm_worker_t *w, const rm_done_desc_t *d)
{
    uint32_t owner = RM_OWNER_LANE(w->lane.index);
    if (d->flags & RM_DONE_RELEASE) {
        if (!held_release(s, w, d->req_id))
            RM_WARN("worker %d released request %llu it did not hold", (int)w->pid,
                    (unsigned long long)d->req_id);
        return;
    }
    uint32_t idx = (uint32_t)(d->req_id & REQ_CONN_MASK);
    rm_conn_t *c = idx < s->conn_cap ? &s->conns[idx] : NULL;
    if (!c || c->state != RM_CONN_DISPATCHED || c->req_id != d->req_id ||
        c->lane != w->lane.index) {
        violation(s, w, "a completion for a request it does not have", d->req_id);
        return;
    }
    c->started = true; /* it answers, so a thread has it */
    if (d->chunk != RM_CHUNK_NONE) {
        if (!rm_chunk_pool_span_ok(&s->region.pool, d->chunk, d->off, d->len) ||
            rm_chunk_pool_transfer(&s->region.pool, d->chunk, owner, RM_OWNER_SUPERVISOR) != 0) {
            violation(s, w, "a chunk it does not own or a span outside it", d->req_id);
            return;
        }
        s->chunk_refs[d->chunk] = 1;
        if (c->closing) {
            rm_chunk_unref(s, d->chunk); /* the client is gone */
        } else {
            c->response_begun = true;
            rm_conn_queue_output(s, c, d->chunk, d->off, d->len);
        }
    }
    if (d->flags & RM_DONE_LAST)
        request_finished(s, w, c, d->flags);
    else
        rm_deadline_update(s, c, true); /* the worker is alive and producing */
}

bool rm_dispatch_drain(rm_server_t *s)
{
    bool any = false;
    for (uint32_t i = 0; i < s->worker_count; i++) {
        rm_worker_t *w = &s->workers[i];
        if (w->state == RM_WORKER_NONE || w->cut_off)
            continue;
        rm_done_desc_t d;
        int rc;
        /* Bounded per lane per pass, so one busy worker cannot starve the loop. */
        for (int n = 0; n < 256 && (rc = rm_lane_try_pop_done(&w->lane, &d)) == 0; n++) {
            any = true;
            take_completion(s, w, &d);
            if (w->cut_off)
                break;
        }
        if (rc == -EBADMSG && !w->cut_off)
            violation(s, w, "a corrupt completion ring", 0);
    }
    return any;
}

void rm_dispatch_timed_out(rm_server_t *s, rm_conn_t *c)
{
    if (c->state != RM_CONN_DISPATCHED)
        return;
    rm_worker_t *w = &s->workers[c->lane];
    c->timed_out = true;
    if (w->pid <= 0 || w->state == RM_WORKER_NONE)
        return;
    uint64_t since_beat = (rm_now_ns() - w->last_heartbeat_ns) / 1000000ull;
    RM_WARN("worker %u (pid %d) killed: a request got no answer within --timeout (%u ms); %s",
            w->lane.index, (int)w->pid, s->cfg->request_timeout_ms,
            since_beat < 3000 ? "the process was alive (heartbeats), its handler was busy"
                              : "no recent heartbeat: the process itself was stuck");
    w->state = RM_WORKER_STOPPING; /* hand it nothing more while it dies */
    w->exit_cause = RM_RESTART_TIMEOUT;
    rm_worker_kill(w);
}

/* The request on `c` was taken back from w's lane (its run state is
 * cancelled): w keeps its meta chunk in `h` until it pops the descriptor and
 * posts RELEASE, and counts it outstanding till then; the connection is no
 * longer dispatched (the caller gives it another meta chunk, or none). */
static void hold_taken_back(rm_worker_t *w, rm_held_t *h, rm_conn_t *c)
{
    h->req_id = c->req_id;
    h->cancelled = true;
    h->nchunks = 1;
    h->chunks[0] = c->meta_chunk;
    h->next = w->held;
    w->held = h;
    c->state = RM_CONN_READING;
    c->req_id = 0;
    c->started = false;
}

bool rm_dispatch_try_cancel(rm_server_t *s, rm_conn_t *c)
{
    if (c->state != RM_CONN_DISPATCHED || c->meta_chunk == RM_CHUNK_NONE)
        return false;
    rm_req_meta_t *live = (rm_req_meta_t *)rm_chunk_pool_ptr(&s->region.pool, c->meta_chunk);
    /* The descriptor stays on the lane: the worker pops it and reads the
     * meta's run state, nothing else, so only the meta chunk is kept until it
     * says RELEASE; the head and body go back to the pool now. */
    rm_held_t *h = malloc(sizeof(*h) + sizeof(uint32_t));
    if (!h)
        return false; /* looked at again at the next check */
    if (!rm_wire_try_cancel(live)) {
        free(h);
        return false;
    }
    rm_worker_t *w = &s->workers[c->lane];
    RM_DEBUG("connection %u: no thread of worker %d took the request within --queue-timeout; "
             "503",
             (unsigned)(c - s->conns), (int)w->pid);
    hold_taken_back(w, h, c);
    c->meta_chunk = RM_CHUNK_NONE;
    rm_stat_add(&s->region.stats->overload[RM_OVERLOAD_QUEUE_TIMEOUT], 1);
    rm_conn_abort_request(s, c, 503);
    return true;
}

bool rm_dispatch_try_move(rm_server_t *s, rm_conn_t *c)
{
    if (c->state != RM_CONN_DISPATCHED || c->meta_chunk == RM_CHUNK_NONE || c->closing)
        return false;
    rm_worker_t *from = &s->workers[c->lane];
    rm_worker_t *to = pick_idle_worker(s, from);
    if (!to)
        return false;
    /* The descriptor on the busy lane keeps naming the old meta chunk, whose
     * run state is all the worker reads of it once it is cancelled: the
     * request goes on with a copy, and the old chunk is held until the
     * worker pops the descriptor and posts RELEASE (as for a 503 at the
     * queue deadline). The head and body chunks are read-only to workers
     * and stay the connection's. */
    uint32_t fresh = rm_chunk_alloc_input(s);
    if (fresh == RM_CHUNK_NONE)
        return false;
    rm_held_t *h = malloc(sizeof(*h) + sizeof(uint32_t));
    rm_req_meta_t *live = (rm_req_meta_t *)rm_chunk_pool_ptr(&s->region.pool, c->meta_chunk);
    if (!h || !rm_wire_try_cancel(live)) { /* or a thread took it meanwhile */
        free(h);
        rm_chunk_unref(s, fresh);
        return false;
    }
    rm_req_meta_t *m = (rm_req_meta_t *)rm_chunk_pool_ptr(&s->region.pool, fresh);
    memcpy(m, live, c->meta_len);
    m->started_ns = 0;
    m->run = RM_WIRE_QUEUED;
    hold_taken_back(from, h, c);
    c->meta_chunk = fresh;
    if (!push_to(s, c, to)) {
        rm_dispatch_requeue(s, c); /* its lane is full after all: the queue, as any other */
        return true;
    }
    rm_stat_add(&s->region.stats->requests_moved, 1);
    RM_DEBUG("connection %u: no thread of worker %d took its request; moved to worker %d",
             (unsigned)(c - s->conns), (int)from->pid, (int)to->pid);
    rm_deadline_update(s, c, false);
    return true;
}

/* Lane `lane`'s worker is gone (the caller has taken its finished
 * completions). Requests still in its request ring never started: they go to
 * another worker. Whatever it had started is answered 504 if it was killed
 * for --timeout, else 502, or the connection is closed if part of a response
 * already went out. */
void rm_dispatch_lane_lost(rm_server_t *s, uint32_t lane)
{
    rm_worker_t *w = &s->workers[lane];
    w->state = RM_WORKER_STOPPING; /* no new requests for this lane */
    w->outstanding = 0;

    /* Nobody else pops this ring now: what is left in it was never started. */
    rm_req_desc_t d;
    uint32_t requeued = 0;
    while (rm_ring_try_pop(&w->lane.req, &d) == 0) {
        uint32_t idx = (uint32_t)(d.req_id & REQ_CONN_MASK);
        rm_conn_t *c = idx < s->conn_cap ? &s->conns[idx] : NULL;
        if (!c || c->state != RM_CONN_DISPATCHED || c->req_id != d.req_id || c->lane != lane)
            continue;
        if (c->closing) {
            rm_conn_drop_request(s, c);
            c->state = RM_CONN_READING;
            rm_server_close_conn(s, c);
            continue;
        }
        c->state = RM_CONN_READING;
        c->req_id = 0;
        rm_dispatch_requeue(s, c);
        requeued++;
    }
    if (requeued)
        RM_INFO("%u request(s) queued on lane %u moved to other workers", requeued, lane);

    for (uint32_t i = 0; i < s->conn_cap; i++) {
        rm_conn_t *c = &s->conns[i];
        if (c->state != RM_CONN_DISPATCHED || c->lane != lane)
            continue;
        bool begun = c->response_begun;
        int status = c->timed_out ? 504 : 502;
        rm_conn_drop_request(s, c);
        c->state = RM_CONN_READING;
        c->timed_out = false;
        if (c->closing || begun)
            rm_server_close_conn(s, c);
        else
            rm_conn_respond_error(s, c, status, true);
    }
    rm_held_release_all(s, w);
}
