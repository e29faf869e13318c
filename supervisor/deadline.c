/*
 * deadline.c - timeouts for client connections.
 *
 * Each kind of wait keeps one list ordered by deadline (nearly every timer
 * goes at its list's tail: see the end of this comment), so setting,
 * refreshing and clearing a timer are O(1), and expiry only looks at list
 * heads. Checked once per loop iteration; the loop wakes at least every
 * 500 ms, which is the resolution of every timeout here.
 *
 *   header     from the first byte of a request head to its end; not
 *              restarted by progress, so dribbling bytes does not help
 *   body       between two reads of a request body
 *   keepalive  an idle connection between requests (and a new one's first)
 *   write      queued output that the client does not read
 *   lane       a request on a worker's lane that no thread has taken yet:
 *              at each check, while another worker has a free thread, the
 *              supervisor takes it back and hands it there (its threads are
 *              all busy: a long handler, a slow reader); at its queue
 *              deadline (--queue-timeout from its arrival) it takes it back
 *              and answers 503; the worker is untouched either way (wire.h:
 *              one CAS decides between the two sides)
 *   request    a worker's next completion for a request a thread took
 *              (--timeout): from the moment the thread took it, restarted by
 *              each completion, so a streaming response lives as long as it
 *              makes progress; on expiry the worker is killed and the client
 *              gets 504. Time spent waiting on the lane never counts here.
 *
 * Nobody tells the supervisor when a thread takes a request (that would
 * cost the worker a doorbell per request): the lane timer looks at the
 * request's run state every LANE_CHECK_NS until its queue deadline. The
 * request timer then runs from the start time the worker wrote, which lies
 * up to LANE_CHECK_NS in the past, and the last lane check is the queue
 * deadline itself; so a timer is inserted in order, walking back from its
 * list's tail. The walk is bounded: a timer that would go further back than
 * INSERT_WALK_MAX entries goes at the tail as late as the tail instead,
 * which under that much load costs it at most LANE_CHECK_NS.
 */
#include "ringmaster/log.h"
#include "ringmaster/server.h"

#define NIL UINT32_MAX
#define LANE_CHECK_NS 250000000ull /* how often an unstarted request is looked at */
#define INSERT_WALK_MAX 64

void rm_deadline_init(rm_server_t *s)
{
    const rm_config_t *cfg = s->cfg;
    for (int k = 0; k < RM_TIMER_KINDS; k++)
        s->timer_head[k] = s->timer_tail[k] = NIL;
    s->timer_ns[RM_TIMER_NONE] = 0;
    s->timer_ns[RM_TIMER_HEADER] = (uint64_t)cfg->header_timeout_ms * 1000000ull;
    s->timer_ns[RM_TIMER_BODY] = (uint64_t)cfg->body_timeout_ms * 1000000ull;
    s->timer_ns[RM_TIMER_KEEPALIVE] = (uint64_t)cfg->keepalive_timeout_ms * 1000000ull;
    s->timer_ns[RM_TIMER_WRITE] = (uint64_t)cfg->write_timeout_ms * 1000000ull;
    s->timer_ns[RM_TIMER_REQUEST] = (uint64_t)cfg->request_timeout_ms * 1000000ull;
    /* Long enough for the answer to reach the client and its close to come
     * back; a client still sending after that is cut off. */
    s->timer_ns[RM_TIMER_LINGER] = 2000ull * 1000000ull;
}

void rm_deadline_clear(rm_server_t *s, rm_conn_t *c)
{
    uint8_t k = c->timer_kind;
    if (k == RM_TIMER_NONE)
        return;
    uint32_t idx = (uint32_t)(c - s->conns);
    if (c->timer_prev == NIL)
        s->timer_head[k] = c->timer_next;
    else
        s->conns[c->timer_prev].timer_next = c->timer_next;
    if (c->timer_next == NIL)
        s->timer_tail[k] = c->timer_prev;
    else
        s->conns[c->timer_next].timer_prev = c->timer_prev;
    (void)idx;
    c->timer_kind = RM_TIMER_NONE;
    c->timer_prev = c->timer_next = NIL;
}

static void timer_set_at(rm_server_t *s, rm_conn_t *c, uint8_t kind, uint64_t deadline)
{
    rm_deadline_clear(s, c);
    uint32_t idx = (uint32_t)(c - s->conns);
    c->timer_kind = kind;
    c->deadline_ns = deadline;
    /* After the last timer that is not later than this one. */
    uint32_t prev = s->timer_tail[kind];
    for (int n = 0; prev != NIL && s->conns[prev].deadline_ns > deadline; n++) {
        if (n == INSERT_WALK_MAX) {
            prev = s->timer_tail[kind];
            c->deadline_ns = s->conns[prev].deadline_ns;
            break;
        }
        prev = s->conns[prev].timer_prev;
    }
    c->timer_prev = prev;
    c->timer_next = prev == NIL ? s->timer_head[kind] : s->conns[prev].timer_next;
    if (prev == NIL)
        s->timer_head[kind] = idx;
    else
        s->conns[prev].timer_next = idx;
    if (c->timer_next == NIL)
        s->timer_tail[kind] = idx;
    else
        s->conns[c->timer_next].timer_prev = idx;
}

static void timer_set(rm_server_t *s, rm_conn_t *c, uint8_t kind, uint64_t now)
{
    timer_set_at(s, c, kind, now + s->timer_ns[kind]);
}

static uint64_t queue_deadline(const rm_server_t *s, const rm_conn_t *c)
{
    return c->enqueued_ns + (uint64_t)s->cfg->queue_timeout_ms * 1000000ull;
}

/* When to look at a request on a lane next. */
static uint64_t lane_check_at(const rm_server_t *s, const rm_conn_t *c, uint64_t now)
{
    uint64_t at = queue_deadline(s, c);
    return now + LANE_CHECK_NS < at ? now + LANE_CHECK_NS : at;
}

static uint8_t kind_for(const rm_server_t *s, const rm_conn_t *c)
{
    if (c->state == RM_CONN_FREE)
        return RM_TIMER_NONE;
    if (c->lingering)
        return RM_TIMER_LINGER;
    if (c->state == RM_CONN_DISPATCHED) {
        /* Output waiting on a slow reader: the client's time, not the app's
         * (a streaming worker is held back by the send window meanwhile). */
        if (!c->closing && (c->out_head != RM_CHUNK_NONE || c->send_busy))
            return RM_TIMER_WRITE;
        if (!c->started)
            return RM_TIMER_LANE;
        return s->timer_ns[RM_TIMER_REQUEST] ? RM_TIMER_REQUEST : RM_TIMER_NONE;
    }
    if (c->closing || c->state == RM_CONN_QUEUED)
        return RM_TIMER_NONE; /* the queue has its own deadline */
    if (c->out_head != RM_CHUNK_NONE || c->send_busy)
        return RM_TIMER_WRITE;
    if (c->parsing)
        return rm_http_head_done(&c->parser) ? RM_TIMER_BODY : RM_TIMER_HEADER;
    if (c->in_head != RM_CHUNK_NONE)
        return RM_TIMER_HEADER; /* bytes of a next request wait to be parsed */
    return RM_TIMER_KEEPALIVE;
}

void rm_deadline_update(rm_server_t *s, rm_conn_t *c, bool progress)
{
    uint8_t kind = kind_for(s, c);
    if (kind == RM_TIMER_NONE) {
        rm_deadline_clear(s, c);
        return;
    }
    if (kind == RM_TIMER_LANE) {
        if (c->timer_kind != RM_TIMER_LANE)
            timer_set_at(s, c, kind, lane_check_at(s, c, rm_now_ns()));
        return;
    }
    if (kind != c->timer_kind ||
        (progress && (kind == RM_TIMER_BODY || kind == RM_TIMER_WRITE || kind == RM_TIMER_REQUEST)))
        timer_set(s, c, kind, rm_now_ns());
}

/* A worker thread took the request on `c` at `started_ns`, as the worker
 * says: --timeout runs from then. */
static void started_at(rm_server_t *s, rm_conn_t *c, uint64_t started_ns, uint64_t now)
{
    /* A worker wrote started_ns: keep it between the dispatch and now. */
    if (started_ns < c->dispatched_ns)
        started_ns = c->dispatched_ns;
    if (started_ns > now)
        started_ns = now;
    c->started = true;
    uint64_t t = s->timer_ns[RM_TIMER_REQUEST];
    if (!t) {
        rm_deadline_clear(s, c);
        return;
    }
    timer_set_at(s, c, RM_TIMER_REQUEST, started_ns + t);
}

/* The lane timer of `c` fired: has a thread taken its request? */
static void lane_expired(rm_server_t *s, rm_conn_t *c, uint64_t now)
{
    if (c->state != RM_CONN_DISPATCHED || c->meta_chunk == RM_CHUNK_NONE)
        return;
    rm_req_meta_t *live = (rm_req_meta_t *)rm_chunk_pool_ptr(&s->region.pool, c->meta_chunk);
    if (rm_wire_run_state(live) == RM_WIRE_STARTED) {
        started_at(s, c, rm_wire_started_ns(live), now);
        return;
    }
    if (now < queue_deadline(s, c)) {
        /* Waiting behind busy threads (a long handler, a slow reader) while
         * another worker idles: move it there. */
        if (rm_dispatch_try_move(s, c))
            return;
        if (rm_wire_run_state(live) == RM_WIRE_STARTED) {
            started_at(s, c, rm_wire_started_ns(live), now);
            return;
        }
        timer_set_at(s, c, RM_TIMER_LANE, lane_check_at(s, c, now));
        return;
    }
    if (rm_dispatch_try_cancel(s, c))
        return;
    if (rm_wire_run_state(live) == RM_WIRE_STARTED)
        started_at(s, c, rm_wire_started_ns(live), now); /* a thread took it just now */
    else
        timer_set_at(s, c, RM_TIMER_LANE, now + LANE_CHECK_NS); /* no memory: later */
}

static void expire_one(rm_server_t *s, rm_conn_t *c, uint8_t kind)
{
    rm_deadline_clear(s, c);
    switch (kind) {
    case RM_TIMER_HEADER:
    case RM_TIMER_BODY:
        RM_DEBUG("connection %u: request %s timed out", (unsigned)(c - s->conns),
                 kind == RM_TIMER_HEADER ? "head" : "body");
        rm_conn_abort_request(s, c, 408);
        break;
    case RM_TIMER_REQUEST:
        rm_dispatch_timed_out(s, c);
        break;
    case RM_TIMER_LANE:
        lane_expired(s, c, rm_now_ns());
        break;
    case RM_TIMER_LINGER:
        c->lingering = false;
        c->linger = false;
        c->close_after = false;
        rm_server_close_conn(s, c);
        break;
    case RM_TIMER_KEEPALIVE:
    case RM_TIMER_WRITE:
    default:
        c->close_after = false;
        rm_server_close_conn(s, c);
        break;
    }
}

void rm_deadline_expire(rm_server_t *s, uint64_t now)
{
    for (uint8_t k = 1; k < RM_TIMER_KINDS; k++) {
        while (s->timer_head[k] != NIL) {
            rm_conn_t *c = &s->conns[s->timer_head[k]];
            if (c->deadline_ns > now)
                break;
            expire_one(s, c, k);
            if (s->timer_head[k] != NIL && &s->conns[s->timer_head[k]] == c &&
                c->deadline_ns <= now)
                rm_deadline_clear(s, c); /* never loop on one connection */
        }
    }
    /* Requests waiting for a lane, oldest first. */
    uint64_t limit = (uint64_t)s->cfg->queue_timeout_ms * 1000000ull;
    while (s->queue_head != NIL) {
        rm_conn_t *c = &s->conns[s->queue_head];
        if (c->enqueued_ns + limit > now)
            break;
        rm_dispatch_unqueue_head(s);
        RM_DEBUG("connection %u: no worker took the request in time; 503",
                 (unsigned)(c - s->conns));
        rm_stat_add(&s->region.stats->overload[RM_OVERLOAD_QUEUE_TIMEOUT], 1);
        rm_conn_abort_request(s, c, 503);
    }
}
