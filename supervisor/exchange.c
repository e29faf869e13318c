/*
 * exchange.c - each request/response exchange, counted in the region's
 * stats and written to the access log.
 *
 * An exchange begins when the supervisor starts parsing a request and ends
 * when the last byte of its response is queued for sending: the worker's last
 * completion, or an error the supervisor answers itself. Its status and body
 * size come from watching the queued bytes (rm_resp_scan); its request fields,
 * only when an access log is kept, are copied from the head when it is
 * complete (or from the raw first line of a request that was refused before
 * it was), because the request's chunks are released before the end.
 */
#include "ringmaster/server.h"
#include "ringmaster/wire.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Fields are cut to these in the log, so that a line stays bounded (and a JSON
 * line whole) however large the limits on heads are. */
#define FIELD_MAX 2048u  /* Referer, User-Agent */
#define TARGET_MAX 8192u /* request-target */
#define METHOD_MAX 64u
#define RAW_LINE_MAX 8192u

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void rm_exchange_begin(rm_server_t *s, rm_conn_t *c)
{
    rm_exchange_t *ex = &c->ex;
    free(ex->req);
    memset(ex, 0, sizeof(*ex));
    ex->active = true;
    ex->start_ns = rm_now_ns();
    if (s->access_log.started)
        ex->start_wall_ns = wall_ns();
}

void rm_exchange_output(rm_conn_t *c, const unsigned char *data, uint32_t len)
{
    rm_exchange_t *ex = &c->ex;
    if (!ex->active)
        return;
    if (ex->scan.head_done)
        ex->body_bytes += len;
    else
        ex->body_bytes += rm_resp_scan_feed(&ex->scan, (const char *)data, len);
}

static const rm_wire_header_t *find_header(rm_req_meta_t *m, const char *head, const char *name)
{
    size_t n = strlen(name);
    rm_wire_header_t *h = rm_wire_headers(m);
    for (uint16_t i = 0; i < m->header_count; i++)
        if (h[i].name_len == n && strncasecmp(head + h[i].name_off, name, n) == 0)
            return &h[i];
    return NULL;
}

static uint32_t cut(uint32_t len, uint32_t max)
{
    return len < max ? len : max;
}

void rm_exchange_capture_head(rm_server_t *s, rm_conn_t *c)
{
    rm_exchange_t *ex = &c->ex;
    if (!s->access_log.started || !ex->active || ex->req)
        return;
    rm_chunk_pool_t *pool = &s->region.pool;
    rm_req_meta_t *m = (rm_req_meta_t *)rm_chunk_pool_ptr(pool, c->meta_chunk);
    const char *head = (const char *)rm_chunk_pool_ptr(pool, m->head_chunk);
    const rm_wire_header_t *ref = find_header(m, head, "referer");
    const rm_wire_header_t *ua = find_header(m, head, "user-agent");
    char proto[16];
    int plen = snprintf(proto, sizeof(proto), "HTTP/%u.%u", m->http_major, m->http_minor);
    uint32_t rlen = ref ? cut(ref->value_len, FIELD_MAX) : 0;
    uint32_t alen = ua ? cut(ua->value_len, FIELD_MAX) : 0;
    uint32_t mlen = cut(m->method_len, METHOD_MAX), tlen = cut(m->target_len, TARGET_MAX);
    if (!s->cfg->access_log_query) /* query strings carry tokens: not logged by default */
        tlen = (uint32_t)rm_access_log_target_len(head + m->target_off, tlen);
    uint32_t line = mlen + 1 + tlen + 1 + (uint32_t)plen;
    char *p = malloc(line + rlen + alen);
    if (!p)
        return; /* logged without its request fields */
    ex->req = p;
    memcpy(p, head + m->method_off, mlen);
    p += mlen;
    *p++ = ' ';
    memcpy(p, head + m->target_off, tlen);
    p += tlen;
    *p++ = ' ';
    memcpy(p, proto, (size_t)plen);
    p += plen;
    if (ref)
        memcpy(p, head + ref->value_off, rlen);
    if (ua)
        memcpy(p + rlen, head + ua->value_off, alen);
    ex->parsed = true;
    ex->line_len = line;
    ex->method_len = mlen;
    ex->target_len = tlen;
    ex->proto_len = (uint32_t)plen;
    /* A header sent empty still counts as sent: keep one past the length. */
    ex->referer_len = ref ? (uint16_t)(rlen + 1) : 0;
    ex->agent_len = ua ? (uint16_t)(alen + 1) : 0;
}

void rm_exchange_capture_raw(rm_server_t *s, rm_conn_t *c)
{
    rm_exchange_t *ex = &c->ex;
    if (!s->access_log.started || !ex->active || ex->req ||
        (c->parsing && rm_http_head_done(&c->parser)))
        return;
    const char *data = NULL;
    uint32_t len = 0;
    if (c->head_buf) {
        data = c->head_buf;
        len = c->head_buf_len;
    } else if (c->in_head != RM_CHUNK_NONE) {
        data =
            (const char *)rm_chunk_pool_ptr(&s->region.pool, c->in_head) + s->chunk_off[c->in_head];
        len = s->chunk_len[c->in_head];
    }
    uint32_t n = 0;
    while (n < len && n < RAW_LINE_MAX && data[n] != '\r' && data[n] != '\n')
        n++;
    if (n == 0 || !(ex->req = malloc(n)))
        return;
    memcpy(ex->req, data, n);
    ex->line_len = n;
    if (!s->cfg->access_log_query)
        ex->line_len = (uint32_t)rm_access_log_strip_query(ex->req, n);
}

static void peer_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    const void *addr = NULL;
    if (ss->ss_family == AF_INET)
        addr = &((const struct sockaddr_in *)ss)->sin_addr;
    else if (ss->ss_family == AF_INET6)
        addr = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (!addr || !inet_ntop(ss->ss_family, addr, buf, (socklen_t)len))
        snprintf(buf, len, "-");
}

static void write_line(rm_server_t *s, rm_conn_t *c, int status, uint64_t latency_us)
{
    const rm_exchange_t *ex = &c->ex;
    char remote[INET6_ADDRSTRLEN];
    peer_text(&c->peer, remote, sizeof(remote));
    rm_access_entry_t e = {.remote = remote,
                           .time_unix_ns = ex->start_wall_ns ? ex->start_wall_ns : wall_ns(),
                           .status = status,
                           .body_bytes = ex->body_bytes,
                           .duration_us = latency_us};
    if (ex->req) {
        const char *p = ex->req;
        e.line = (rm_text_t){p, ex->line_len};
        if (ex->parsed) {
            e.method = (rm_text_t){p, ex->method_len};
            e.target = (rm_text_t){p + ex->method_len + 1, ex->target_len};
            e.protocol = (rm_text_t){p + ex->line_len - ex->proto_len, ex->proto_len};
            const char *after = p + ex->line_len;
            if (ex->referer_len)
                e.referer = (rm_text_t){after, ex->referer_len - 1u};
            if (ex->agent_len)
                e.user_agent = (rm_text_t){after + (ex->referer_len ? ex->referer_len - 1u : 0),
                                           ex->agent_len - 1u};
        }
    }
    size_t n = rm_access_log_format_line(s->access_log_format, &e, s->access_log_line,
                                         RM_ACCESS_LOG_LINE_MAX);
    if (rm_access_log_submit(&s->access_log, s->access_log_line, n))
        rm_stat_add(&s->region.stats->access_log_lines, 1);
    else
        rm_stat_add(&s->region.stats->access_log_dropped, 1);
}

void rm_exchange_end(rm_server_t *s, rm_conn_t *c)
{
    rm_exchange_t *ex = &c->ex;
    if (!ex->active)
        rm_exchange_begin(s, c); /* an answer with no request begun (a timeout) */
    int status = rm_resp_scan_status(&ex->scan);
    uint64_t now = rm_now_ns();
    uint64_t latency_us = now > ex->start_ns ? (now - ex->start_ns) / 1000 : 0;
    /* No response byte at all (the client left first): nothing to count. */
    if (ex->scan.prefix_len > 0) {
        rm_stats_record_response(s->region.stats, status, latency_us);
        if (s->access_log.started)
            write_line(s, c, status, latency_us);
    }
    free(ex->req);
    memset(ex, 0, sizeof(*ex));
}

void rm_exchange_discard(rm_conn_t *c)
{
    free(c->ex.req);
    memset(&c->ex, 0, sizeof(c->ex));
}
