/*
 * conn.c - client connections: input queue, parsing in place, request meta.
 *
 * Received chunks queue on the connection in arrival order. Requests are
 * served one at a time per connection, so pipelined requests are answered in
 * order: the bytes of the next one wait in the queue (still in the chunk the
 * kernel wrote them to) until the current response has been queued.
 *
 * A head is parsed where it landed. Only when a head is split across reads is
 * it copied, once per read, into a buffer of the supervisor's own memory and
 * parsed again from its start; once it is whole it is copied into one region
 * chunk (heads are bounded by --chunk-size) and parsed there, so that the
 * worker finds it in shared memory. A client dribbling a head thus holds a
 * few hundred bytes of private memory, never a 16 KiB chunk of the region
 * (all partial heads together are bounded by partial_head_budget).
 */
#include "ringmaster/log.h"
#include "ringmaster/server.h"
#include "ringmaster/wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Body slices are written here first (the head's field count is not known
 * while the first body bytes may already be arriving) and moved down after the
 * header references when the request is complete. */
#define SLICE_SCRATCH_OFF (sizeof(rm_req_meta_t) + RM_HTTP_MAX_HEADERS * sizeof(rm_wire_header_t))

uint32_t rm_chunk_alloc(rm_server_t *s)
{
    uint32_t idx = rm_chunk_pool_alloc(&s->region.pool, RM_OWNER_SUPERVISOR);
    if (idx != RM_CHUNK_NONE) {
        s->chunk_refs[idx] = 1;
        s->chunk_next[idx] = RM_CHUNK_NONE;
    }
    return idx;
}

uint32_t rm_chunk_alloc_input(rm_server_t *s)
{
    /* Request input stops short of the response reserve: a response must
     * always find a chunk, or the requests waiting for it never free theirs. */
    uint32_t idx =
        rm_chunk_pool_try_alloc_above(&s->region.pool, RM_OWNER_SUPERVISOR, s->chunk_reserve);
    if (idx != RM_CHUNK_NONE) {
        s->chunk_refs[idx] = 1;
        s->chunk_next[idx] = RM_CHUNK_NONE;
    }
    return idx;
}

void rm_chunk_ref(rm_server_t *s, uint32_t chunk)
{
    s->chunk_refs[chunk]++;
}

void rm_chunk_unref(rm_server_t *s, uint32_t chunk)
{
    if (s->chunk_refs[chunk] == 0) {
        RM_ERROR("chunk %u released more often than referenced", chunk);
        return;
    }
    if (--s->chunk_refs[chunk] == 0) {
        int rc = rm_chunk_pool_free(&s->region.pool, chunk, RM_OWNER_SUPERVISOR);
        if (rc)
            RM_ERROR("freeing chunk %u: %s", chunk, strerror(-rc));
    }
}

rm_conn_t *rm_conn_alloc(rm_server_t *s, int fd)
{
    if (s->conn_free_top == 0)
        return NULL;
    uint32_t idx = s->conn_free[--s->conn_free_top];
    rm_conn_t *c = &s->conns[idx];
    uint32_t gen = c->gen;
    memset(c, 0, offsetof(rm_conn_t, parser));
    c->gen = gen;
    c->fd = fd;
    c->state = RM_CONN_READING;
    c->in_head = c->in_tail = RM_CHUNK_NONE;
    c->out_head = c->out_tail = RM_CHUNK_NONE;
    c->head_buf = NULL;
    c->head_buf_len = c->head_buf_cap = 0;
    c->meta_chunk = RM_CHUNK_NONE;
    c->body_pack = RM_CHUNK_NONE;
    c->body_pack_len = 0;
    c->spill_fd = -1;
    c->spill_pack = RM_CHUNK_NONE;
    c->queue_next = UINT32_MAX;
    c->timer_kind = RM_TIMER_NONE;
    c->timer_prev = c->timer_next = UINT32_MAX;
    c->req_nchunks = 0;
    c->req_cap = RM_REQ_INLINE_CHUNKS;
    c->req_chunks = c->req_inline;
    c->req_id = 0;
    rm_http_limits_t limits = {s->cfg->max_head, s->cfg->max_target, s->cfg->max_body};
    rm_http_parser_init(&c->parser, &limits);
    s->conn_count++;
    return c;
}

static void drop_list(rm_server_t *s, uint32_t *head, uint32_t *tail)
{
    uint32_t ch = *head;
    while (ch != RM_CHUNK_NONE) {
        uint32_t next = s->chunk_next[ch];
        rm_chunk_unref(s, ch);
        ch = next;
    }
    *head = *tail = RM_CHUNK_NONE;
}

void rm_conn_drop_request(rm_server_t *s, rm_conn_t *c)
{
    for (uint32_t i = 0; i < c->req_nchunks; i++)
        rm_chunk_unref(s, c->req_chunks[i]);
    c->req_nchunks = 0;
    if (c->req_chunks != c->req_inline) {
        free(c->req_chunks);
        c->req_chunks = c->req_inline;
        c->req_cap = RM_REQ_INLINE_CHUNKS;
    }
    if (c->meta_chunk != RM_CHUNK_NONE) {
        rm_chunk_unref(s, c->meta_chunk);
        c->meta_chunk = RM_CHUNK_NONE;
    }
    rm_spill_drop(s, c);
    c->slice_count = 0;
    c->body_pack = RM_CHUNK_NONE;
    c->body_pack_len = 0;
    c->body_expected = 0;
    c->sink_status = 0;
    c->spill_failed = false;
    c->started = false;
    c->req_id = 0;
    c->parsing = false;
    c->head_continue = false;
    c->response_begun = false;
}

static void head_buf_free(rm_server_t *s, rm_conn_t *c)
{
    s->partial_head_bytes -= c->head_buf_cap;
    free(c->head_buf);
    c->head_buf = NULL;
    c->head_buf_len = c->head_buf_cap = 0;
}

/* Append n bytes of a head still arriving. The buffer doubles from 256 bytes
 * (a typical head fits 1 KiB) up to the chunk size. False when the budget for
 * partial heads, or memory, runs out. */
static bool head_buf_append(rm_server_t *s, rm_conn_t *c, const char *data, uint32_t n)
{
    uint32_t need = c->head_buf_len + n;
    if (need > c->head_buf_cap) {
        uint32_t cap = c->head_buf_cap ? c->head_buf_cap : 256;
        while (cap < need)
            cap *= 2;
        if (s->partial_head_bytes + (cap - c->head_buf_cap) > s->partial_head_budget)
            return false;
        char *grown = realloc(c->head_buf, cap);
        if (!grown)
            return false;
        s->partial_head_bytes += cap - c->head_buf_cap;
        c->head_buf = grown;
        c->head_buf_cap = cap;
    }
    memcpy(c->head_buf + c->head_buf_len, data, n);
    c->head_buf_len = need;
    return true;
}

void rm_conn_drop_body_refs(rm_server_t *s, rm_conn_t *c)
{
    uint32_t head = RM_CHUNK_NONE, kept = 0;
    if (c->meta_chunk != RM_CHUNK_NONE)
        head = ((const rm_req_meta_t *)rm_chunk_pool_ptr(&s->region.pool, c->meta_chunk))
                   ->head_chunk;
    for (uint32_t i = 0; i < c->req_nchunks; i++) {
        if (c->req_chunks[i] == head)
            c->req_chunks[kept++] = head;
        else
            rm_chunk_unref(s, c->req_chunks[i]);
    }
    c->req_nchunks = kept;
    c->body_pack = RM_CHUNK_NONE;
    c->body_pack_len = 0;
}

void rm_conn_release(rm_server_t *s, rm_conn_t *c)
{
    if (c->ex.active && c->ex.scan.prefix_len > 0)
        rm_exchange_end(s, c); /* a response cut short still happened */
    rm_exchange_discard(c);
    rm_deadline_clear(s, c);
    rm_conn_drop_request(s, c);
    drop_list(s, &c->in_head, &c->in_tail);
    drop_list(s, &c->out_head, &c->out_tail);
    head_buf_free(s, c);
    c->state = RM_CONN_FREE;
    c->fd = -1;
    c->gen = (c->gen + 1) & 0xffffff;
    s->conn_free[s->conn_free_top++] = (uint32_t)(c - s->conns);
    s->conn_count--;
}

static void list_append(rm_server_t *s, uint32_t *head, uint32_t *tail, uint32_t chunk)
{
    s->chunk_next[chunk] = RM_CHUNK_NONE;
    if (*tail == RM_CHUNK_NONE)
        *head = chunk;
    else
        s->chunk_next[*tail] = chunk;
    *tail = chunk;
}

void rm_conn_queue_output(rm_server_t *s, rm_conn_t *c, uint32_t chunk, uint32_t off,
                          uint32_t len)
{
    s->chunk_off[chunk] = off;
    s->chunk_len[chunk] = len;
    rm_exchange_output(c, rm_chunk_pool_ptr(&s->region.pool, chunk) + off, len);
    list_append(s, &c->out_head, &c->out_tail, chunk);
    rm_server_flush_output(s, c);
}

void rm_conn_input(rm_server_t *s, rm_conn_t *c, uint32_t chunk, uint32_t len)
{
    s->chunk_off[chunk] = 0;
    s->chunk_len[chunk] = len;
    list_append(s, &c->in_head, &c->in_tail, chunk);
}

static const char *reason_of(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return "Error";
    }
}

int rm_conn_format_error(rm_server_t *s, char *p, size_t cap, int status, bool close)
{
    char body[64];
    int blen = snprintf(body, sizeof(body), "%d %s\n", status, reason_of(status));
    return snprintf(p, cap,
                    "HTTP/1.1 %d %s\r\nServer: ringmaster\r\nDate: %s\r\n"
                    "Content-Type: text/plain\r\nContent-Length: %d\r\n%s%s\r\n%s",
                    status, reason_of(status), rm_http_date_get(&s->date), blen,
                    close ? "Connection: close\r\n" : "",
                    status == 503 ? "Retry-After: 1\r\n" : "", body);
}

/* The pool is empty, reserve included (answers and responses in flight): an
 * error answer must still reach its client, so it goes out directly with a
 * non-blocking send when nothing else is queued on the connection (its order
 * is then safe), and the connection closes after it. False when it cannot. */
static bool respond_without_chunk(rm_server_t *s, rm_conn_t *c, int status)
{
    if (c->out_head != RM_CHUNK_NONE || c->send_busy || c->closing)
        return false;
    char buf[256];
    int n = rm_conn_format_error(s, buf, sizeof(buf), status, true);
    ssize_t sent = send(c->fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent != n)
        return false;
    rm_stat_add(&s->region.stats->bytes_sent, (uint64_t)n);
    c->response_begun = true;
    c->close_after = true;
    rm_exchange_output(c, (const unsigned char *)buf, (uint32_t)n);
    rm_exchange_end(s, c);
    rm_server_close_conn(s, c); /* nothing queued: closes in stages (linger) */
    return true;
}

/* Answer with a short error. With `close` the connection ends after it; the
 * request (if any) is dropped either way. */
void rm_conn_respond_error(rm_server_t *s, rm_conn_t *c, int status, bool close)
{
    uint32_t ch = rm_chunk_alloc(s);
    if (ch == RM_CHUNK_NONE) {
        if (!respond_without_chunk(s, c, status))
            rm_server_close_conn(s, c);
        return;
    }
    char *p = (char *)rm_chunk_pool_ptr(&s->region.pool, ch);
    int n = rm_conn_format_error(s, p, s->region.pool.chunk_size, status, close);
    c->response_begun = true;
    if (close)
        c->close_after = true;
    rm_conn_queue_output(s, c, ch, 0, (uint32_t)n);
    rm_exchange_end(s, c);
}

static void send_continue(rm_server_t *s, rm_conn_t *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uint32_t ch = rm_chunk_alloc(s);
    if (ch == RM_CHUNK_NONE)
        return; /* the client sends the body after its own timeout anyway */
    memcpy(rm_chunk_pool_ptr(&s->region.pool, ch), cont, sizeof(cont) - 1);
    rm_conn_queue_output(s, c, ch, 0, sizeof(cont) - 1);
    c->head_continue = true;
}

/* Append `chunk` to the request's references (the caller accounts for the
 * reference itself). False only when memory for the list runs out. */
static bool req_append(rm_conn_t *c, uint32_t chunk)
{
    if (c->req_nchunks == c->req_cap) {
        uint32_t cap = c->req_cap * 2;
        uint32_t *grown = c->req_chunks == c->req_inline ? NULL : c->req_chunks;
        grown = realloc(grown, cap * sizeof(uint32_t));
        if (!grown)
            return false;
        if (c->req_chunks == c->req_inline)
            memcpy(grown, c->req_inline, sizeof(c->req_inline));
        c->req_chunks = grown;
        c->req_cap = cap;
    }
    c->req_chunks[c->req_nchunks++] = chunk;
    return true;
}

/* Record that the current request holds a reference on `chunk`. */
static bool req_hold(rm_server_t *s, rm_conn_t *c, uint32_t chunk)
{
    for (uint32_t i = c->req_nchunks; i > 0; i--)
        if (c->req_chunks[i - 1] == chunk)
            return true;
    if (!req_append(c, chunk))
        return false;
    rm_chunk_ref(s, chunk);
    return true;
}

static bool ensure_meta(rm_server_t *s, rm_conn_t *c)
{
    if (c->meta_chunk != RM_CHUNK_NONE)
        return true;
    c->meta_chunk = rm_chunk_alloc_input(s);
    c->slice_count = 0;
    if (c->meta_chunk == RM_CHUNK_NONE)
        c->meta_short = true; /* the first read of a request may wait (wait_for_chunk) */
    return c->meta_chunk != RM_CHUNK_NONE;
}

/* The request that starts at the front of the input found no chunk for its
 * meta: nothing of the input is taken; the request waits unread, the
 * connection's reads paused, until chunks come back (rm_conn_resume_waiting)
 * or CHUNK_WAIT_NS passes (then 503, as any request that cannot be kept). */
static void wait_for_chunk(rm_server_t *s, rm_conn_t *c)
{
    rm_conn_drop_request(s, c); /* what the parse took: pieces, the meta */
    rm_exchange_discard(c);
    c->meta_short = false;
    if (!c->chunk_wait)
        c->chunk_wait_since = rm_now_ns();
    c->chunk_wait = true;
    c->recv_paused = true;
    s->chunk_waiters = true;
    rm_server_cancel_recv(s, c);
}

/* Copy a small body piece into the request's packing chunk; returns the
 * chunk and offset it now lives at, or false when no chunk is to be had. */
static bool pack_piece(rm_server_t *s, rm_conn_t *c, const char *at, uint32_t len, uint32_t *chunk,
                       uint32_t *off)
{
    rm_chunk_pool_t *pool = &s->region.pool;
    if (c->body_pack == RM_CHUNK_NONE || c->body_pack_len + len > pool->chunk_size) {
        uint32_t ch = rm_chunk_alloc_input(s); /* its one reference is the request's */
        if (ch == RM_CHUNK_NONE)
            return false;
        if (!req_append(c, ch)) {
            rm_chunk_unref(s, ch);
            return false;
        }
        c->body_pack = ch;
        c->body_pack_len = 0;
    }
    *chunk = c->body_pack;
    *off = c->body_pack_len;
    memcpy(rm_chunk_pool_ptr(pool, c->body_pack) + c->body_pack_len, at, len);
    c->body_pack_len += len;
    return true;
}

/* A piece of decoded body. A large piece is referenced where the kernel put
 * it; a small one (a short read, a chunked-coding fragment) is copied into a
 * packing chunk, so that a body arriving in many small reads holds a few full
 * chunks rather than one mostly empty chunk per read. 0, or -1 when it
 * cannot be kept. */
static int body_piece(rm_server_t *s, rm_conn_t *c, const char *at, size_t len);

/* The parser's body sink. A piece it cannot keep is refused with the answer
 * that says why: the parser alone decides what is too large (413); no chunk
 * or no memory is 503, the spill file's own failures are 507 or 500. */
static int on_body_piece(void *ctx, const char *at, size_t len)
{
    rm_server_t *s = ctx;
    rm_conn_t *c = s->feed_conn;
    if (body_piece(s, c, at, len) == 0)
        return 0;
    if (!c->sink_status)
        c->sink_status = 503;
    return -1;
}

static int body_piece(rm_server_t *s, rm_conn_t *c, const char *at, size_t len)
{
    rm_chunk_pool_t *pool = &s->region.pool;
    uint32_t chunk, off;
    if (c->spill_fd >= 0)
        return rm_spill_piece(s, c, at, (uint32_t)len) ? 0 : -1;
    if (!ensure_meta(s, c))
        return -1;
    rm_slice_t *slices = (rm_slice_t *)(rm_chunk_pool_ptr(pool, c->meta_chunk) + SLICE_SCRATCH_OFF);
    size_t cap = (pool->chunk_size - SLICE_SCRATCH_OFF) / sizeof(rm_slice_t);
    /* parser.body_seen already counts this piece. */
    if (rm_spill_wanted(s, c, c->parser.body_seen - len, len, c->slice_count >= cap)) {
        if (!rm_spill_begin(s, c, slices, c->slice_count))
            return -1;
        c->slice_count = 0;
        rm_conn_drop_body_refs(s, c); /* the writes hold what they still need */
        return rm_spill_piece(s, c, at, (uint32_t)len) ? 0 : -1;
    }
    /* A small piece is packed; when no chunk is free for packing, it is kept
     * where it lies instead, which costs its receive chunk but fails nothing. */
    if (len < pool->chunk_size / 2 && pack_piece(s, c, at, (uint32_t)len, &chunk, &off)) {
    } else {
        if (!req_hold(s, c, c->feed_chunk))
            return -1;
        chunk = c->feed_chunk;
        off = (uint32_t)((const unsigned char *)at - rm_chunk_pool_ptr(pool, chunk));
    }
    rm_slice_t *last = c->slice_count ? &slices[c->slice_count - 1] : NULL;
    if (last && last->chunk == chunk && last->off + last->len == off) {
        last->len += (uint32_t)len; /* contiguous with the previous piece */
        return 0;
    }
    slices[c->slice_count++] = (rm_slice_t){chunk, off, (uint32_t)len};
    return 0;
}

static void fill_addr(const struct sockaddr_storage *ss, uint8_t addr[16], uint16_t *port,
                      uint8_t *family)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        memcpy(addr, &in->sin_addr, 4);
        *port = ntohs(in->sin_port);
        *family = 4;
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        memcpy(addr, &in6->sin6_addr, 16);
        *port = ntohs(in6->sin6_port);
        *family = 6;
    } else {
        *family = 0;
        *port = 0;
    }
}

/* The head just completed in the buffer starting at `head_base`, which is
 * `head_off` bytes into chunk `head_chunk`. Write the meta's fixed part and the
 * header references now, while the parser's scratch head is still valid. */
static bool write_head_meta(rm_server_t *s, rm_conn_t *c, uint32_t head_chunk, uint32_t head_off)
{
    const rm_http_head_t *h = &s->scratch_head;
    if (!ensure_meta(s, c) || !req_hold(s, c, head_chunk))
        return false;
    rm_req_meta_t *m = (rm_req_meta_t *)rm_chunk_pool_ptr(&s->region.pool, c->meta_chunk);
    memset(m, 0, sizeof(*m));
    m->head_chunk = head_chunk;
    m->method_off = head_off + h->method_off;
    m->method_len = h->method_len;
    m->target_off = head_off + h->target_off;
    m->target_len = h->target_len;
    const char *t = (const char *)rm_chunk_pool_ptr(&s->region.pool, head_chunk) + m->target_off;
    const char *end = t + h->target_len;
    /* Absolute form (RFC 9112 3.2.2), as sent to proxies and allowed to
     * servers: the path starts after "scheme://authority"; an empty one is
     * left empty for the interfaces to read as "/". */
    const char *path = t;
    const char *sep = h->target_len && t[0] != '/' ? memmem(t, h->target_len, "://", 3) : NULL;
    if (sep) {
        path = sep + 3;
        while (path < end && *path != '/' && *path != '?')
            path++;
    }
    const char *q = memchr(path, '?', (size_t)(end - path));
    m->path_off = m->target_off + (uint32_t)(path - t);
    m->path_len = (uint32_t)((q ? q : end) - path);
    m->query_off = q ? (uint32_t)(m->target_off + (q + 1 - t)) : m->target_off + m->target_len;
    m->query_len = q ? (uint32_t)(end - q - 1) : 0;
    m->http_major = h->http_major;
    m->http_minor = h->http_minor;
    m->header_count = h->field_count;
    if (h->flags & RM_HTTP_KEEP_ALIVE)
        m->flags |= RM_REQ_KEEP_ALIVE;
    if (h->flags & RM_HTTP_HEAD)
        m->flags |= RM_REQ_HEAD;
    if (h->flags & RM_HTTP_CHUNKED)
        m->flags |= RM_REQ_CHUNKED;
    fill_addr(&c->peer, m->client_addr, &m->client_port, &m->client_family);
    fill_addr(&c->local, m->server_addr, &m->server_port, &m->server_family);
    rm_wire_header_t *wh = rm_wire_headers(m);
    for (uint16_t i = 0; i < h->field_count; i++) {
        const rm_http_field_t *f = &h->fields[i];
        wh[i] = (rm_wire_header_t){.name_off = head_off + f->name_off,
                                   .value_off = head_off + f->value_off,
                                   .name_len = (uint16_t)f->name_len,
                                   .value_len = f->value_len};
    }
    c->keep_alive = (h->flags & RM_HTTP_KEEP_ALIVE) != 0;
    c->upgrade_asked = (h->flags & RM_HTTP_UPGRADE) != 0;
    c->body_expected = h->flags & RM_HTTP_CHUNKED ? 0 : h->content_length;
    rm_exchange_capture_head(s, c);
    return true;
}

/* Move the body slices after the header references (or write the spilled
 * body's path there) and finish the meta. */
static void finish_meta(rm_server_t *s, rm_conn_t *c)
{
    unsigned char *mc = rm_chunk_pool_ptr(&s->region.pool, c->meta_chunk);
    rm_req_meta_t *m = (rm_req_meta_t *)mc;
    if (c->spill_fd >= 0) {
        rm_spill_finish_meta(s, c, m);
        return;
    }
    rm_slice_t *slices = (rm_slice_t *)(mc + SLICE_SCRATCH_OFF);
    rm_slice_t *dest = rm_wire_body(m);
    uint64_t total = 0;
    for (uint32_t i = 0; i < c->slice_count; i++)
        total += slices[i].len;
    memmove(dest, slices, c->slice_count * sizeof(rm_slice_t));
    m->body_slice_count = c->slice_count;
    m->body_len = total;
    c->meta_len = (uint32_t)rm_wire_meta_size(m->header_count, c->slice_count);
}

/* Drop `n` bytes from the front of the input queue. */
static void input_consume(rm_server_t *s, rm_conn_t *c, uint32_t n)
{
    while (n > 0 && c->in_head != RM_CHUNK_NONE) {
        uint32_t ch = c->in_head;
        uint32_t take = n < s->chunk_len[ch] ? n : s->chunk_len[ch];
        s->chunk_off[ch] += take;
        s->chunk_len[ch] -= take;
        n -= take;
        if (s->chunk_len[ch] == 0) {
            c->in_head = s->chunk_next[ch];
            if (c->in_head == RM_CHUNK_NONE)
                c->in_tail = RM_CHUNK_NONE;
            rm_chunk_unref(s, ch);
        }
    }
}

void rm_conn_abort_request(rm_server_t *s, rm_conn_t *c, int status)
{
    if (c->state == RM_CONN_DISPATCHED)
        return; /* a worker has it: it answers */
    rm_exchange_capture_raw(s, c);
    c->state = RM_CONN_READING;
    rm_conn_drop_request(s, c);
    drop_list(s, &c->in_head, &c->in_tail);
    head_buf_free(s, c);
    if (c->closing || c->response_begun) {
        c->close_after = false;
        rm_server_close_conn(s, c);
        return;
    }
    /* The client may still be sending (a body we refused): if we closed with
     * its bytes unread, the kernel would answer them with a reset, which can
     * destroy our answer before the client reads it. Linger instead. */
    c->linger = true;
    rm_conn_respond_error(s, c, status, true);
}

static void parse_error(rm_server_t *s, rm_conn_t *c, int status)
{
    if (status == 413 && c->sink_status)
        status = c->sink_status; /* the body sink failed for another reason */
    if (status == 503)           /* every 503 made while reading: no chunk or no memory */
        rm_stat_add(&s->region.stats->overload[RM_OVERLOAD_NO_MEMORY], 1);
    RM_DEBUG("connection %u: bad request, answering %d", (unsigned)(c - s->conns), status);
    rm_conn_abort_request(s, c, status);
}

void rm_conn_request_complete(rm_server_t *s, rm_conn_t *c)
{
    if (!ensure_meta(s, c)) {
        parse_error(s, c, 503);
        return;
    }
    finish_meta(s, c);
    rm_dispatch_request(s, c);
}

static void process_input(rm_server_t *s, rm_conn_t *c);
static void parse_error(rm_server_t *s, rm_conn_t *c, int status);

/* How long a new request waits for a chunk for its meta before 503. */
#define CHUNK_WAIT_NS 1000000000ull

void rm_conn_resume_waiting(rm_server_t *s)
{
    const rm_chunk_pool_t *pool = &s->region.pool;
    uint64_t now = rm_now_ns();
    s->chunk_waiters = false;
    for (uint32_t i = 0; i < s->conn_cap; i++) {
        rm_conn_t *c = &s->conns[i];
        if (c->state == RM_CONN_FREE || !c->chunk_wait)
            continue;
        if (rm_chunk_pool_in_use(pool) + s->chunk_reserve + 8 >= pool->count) {
            s->chunk_waiters = true; /* still short */
            if (now - c->chunk_wait_since < CHUNK_WAIT_NS)
                continue;
            /* The shortage lasts: say busy, as for a request that cannot be kept. */
            c->chunk_wait = false;
            c->recv_paused = false;
            rm_exchange_begin(s, c);
            parse_error(s, c, 503);
            continue;
        }
        c->chunk_wait = false;
        c->recv_paused = false;
        rm_conn_process(s, c);
        if (c->state != RM_CONN_FREE && !c->recv_armed && !c->closing && !c->close_after &&
            !c->recv_paused && !c->peer_eof)
            rm_server_arm_recv(s, c);
    }
}

/* Feed the front of the input queue to the parser until a request is complete
 * (then dispatch it) or the input runs out. */
void rm_conn_process(rm_server_t *s, rm_conn_t *c)
{
    process_input(s, c);
    if (c->state == RM_CONN_READING && c->peer_eof && !c->close_after && !c->closing &&
        !c->spill_waiting && !c->recv_paused) {
        /* The client sent FIN and every whole request before it is answered
         * (or queued for sending): what is left, if anything, is a request
         * cut short. Close once the answers are out. */
        c->close_after = true;
        rm_server_flush_output(s, c);
    }
}

static void process_input(rm_server_t *s, rm_conn_t *c)
{
    rm_chunk_pool_t *pool = &s->region.pool;
    s->feed_conn = c;
    while (c->state == RM_CONN_READING && !c->close_after && !c->spill_waiting &&
           c->in_head != RM_CHUNK_NONE) {
        if (rm_spill_throttled(s, c)) {
            c->recv_paused = true; /* rm_spill_on_write resumes */
            rm_server_cancel_recv(s, c);
            return;
        }
        uint32_t ch = c->in_head;
        char *data = (char *)rm_chunk_pool_ptr(pool, ch) + s->chunk_off[ch];
        uint32_t len = s->chunk_len[ch];
        bool head_was_done = c->parsing && rm_http_head_done(&c->parser);
        size_t used;
        int status = 0;
        rm_http_result_t r;

        if (!c->parsing) {
            /* A new request starts here: parse in place. Its meta chunk
             * first, before any byte is taken: with none free (many uploads
             * hold the pool), the request waits unread, its connection's
             * reads paused, until chunks come back (rm_conn_resume_waiting),
             * rather than being refused; the head timeout bounds the wait. */
            c->parsing = true;
            c->meta_short = false;
            rm_exchange_begin(s, c);
            rm_http_begin(&c->parser, &s->scratch_head, data, on_body_piece, s);
            c->feed_chunk = ch;
            r = rm_http_feed(&c->parser, data, len, &used, &status);
            if (r == RM_HTTP_ERROR && c->meta_short) {
                wait_for_chunk(s, c); /* nothing consumed yet: parsed again later */
                return;
            }
            if (r == RM_HTTP_ERROR) {
                parse_error(s, c, status);
                return;
            }
            if (rm_http_head_done(&c->parser)) {
                if (!write_head_meta(s, c, ch, s->chunk_off[ch])) {
                    if (c->meta_short)
                        wait_for_chunk(s, c);
                    else
                        parse_error(s, c, 503);
                    return;
                }
            } else {
                /* Split head: gather it in private memory. */
                if (len > pool->chunk_size || !head_buf_append(s, c, data, len)) {
                    parse_error(s, c, 503);
                    return;
                }
                c->head_lf_seen = memchr(data, '\n', len) != NULL;
                used = len;
            }
        } else if (!head_was_done) {
            /* Continue a split head: append and parse again from its start,
             * without a body sink (nothing is kept from this pass). */
            uint32_t before = c->head_buf_len;
            uint32_t room = pool->chunk_size - before;
            uint32_t add = len < room ? len : room;
            if (!head_buf_append(s, c, data, add)) {
                parse_error(s, c, 503);
                return;
            }
            /* Parsing again from the start costs the whole head each time:
             * only when it can have changed the outcome. A head can only
             * complete, or a field line only fail, at a line end; the
             * request-line fails at its length limit (414) even without one;
             * and the head's limit ends it (431). So a head dribbled a byte
             * at a time costs about 100 parses, not one per byte. */
            bool line_end = memchr(data, '\n', add) != NULL;
            bool line_only = !c->head_lf_seen;
            c->head_lf_seen |= line_end;
            if (!line_end && c->head_buf_len < s->cfg->max_head &&
                !(line_only && c->head_buf_len > s->cfg->max_target)) {
                input_consume(s, c, add);
                continue;
            }
            rm_http_begin(&c->parser, &s->scratch_head, c->head_buf, NULL, NULL);
            r = rm_http_feed(&c->parser, c->head_buf, c->head_buf_len, &used, &status);
            if (r == RM_HTTP_ERROR) {
                parse_error(s, c, status);
                return;
            }
            if (!rm_http_head_done(&c->parser)) {
                if (c->head_buf_len >= s->cfg->max_head) {
                    parse_error(s, c, 431);
                    return;
                }
                used = add;
            } else {
                /* Whole at last: into one chunk of the region, where the
                 * worker will read it, and parsed there for good (the body
                 * bytes that came with it go to the sink this time). */
                uint32_t hc = rm_chunk_alloc_input(s);
                if (hc == RM_CHUNK_NONE) {
                    parse_error(s, c, 503);
                    return;
                }
                char *hbuf = (char *)rm_chunk_pool_ptr(pool, hc);
                uint32_t hlen = c->head_buf_len;
                memcpy(hbuf, c->head_buf, hlen);
                head_buf_free(s, c);
                rm_http_begin(&c->parser, &s->scratch_head, hbuf, on_body_piece, s);
                c->feed_chunk = hc;
                r = rm_http_feed(&c->parser, hbuf, hlen, &used, &status);
                if (r == RM_HTTP_ERROR || !rm_http_head_done(&c->parser) ||
                    !write_head_meta(s, c, hc, 0)) {
                    rm_chunk_unref(s, hc);
                    parse_error(s, c, r == RM_HTTP_ERROR ? status : 503);
                    return;
                }
                rm_chunk_unref(s, hc); /* the request holds its own reference */
                /* Bytes of this read that the request used. */
                used = r == RM_HTTP_COMPLETE ? (used > before ? used - before : 0) : add;
            }
        } else {
            /* Body bytes of a request whose head is done. */
            c->feed_chunk = ch;
            r = rm_http_feed(&c->parser, data, len, &used, &status);
            if (r == RM_HTTP_ERROR) {
                parse_error(s, c, status);
                return;
            }
        }
        input_consume(s, c, (uint32_t)used);

        if (r == RM_HTTP_COMPLETE) {
            if (c->spill_fd >= 0 && !rm_spill_complete(s, c)) {
                c->spill_waiting = true; /* the last write's completion goes on */
                return;
            }
            rm_conn_request_complete(s, c);
            return;
        }
        if (rm_http_head_done(&c->parser) && !head_was_done &&
            (s->scratch_head.flags & RM_HTTP_EXPECT_CONTINUE) && !c->head_continue &&
            s->scratch_head.http_minor >= 1)
            send_continue(s, c);
    }
}
