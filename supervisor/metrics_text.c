/*
 * metrics_text.c - probe requests in, Prometheus text exposition format out.
 *
 * Format 0.0.4: "# HELP" and "# TYPE" once per family, then one sample per
 * line; histogram buckets are cumulative and end with le="+Inf", which equals
 * _count.
 */
#include "ringmaster/http_date.h"
#include "ringmaster/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rm_textbuf_init(rm_textbuf_t *b)
{
    memset(b, 0, sizeof(*b));
}

void rm_textbuf_deinit(rm_textbuf_t *b)
{
    free(b->data);
    rm_textbuf_init(b);
}

static bool reserve(rm_textbuf_t *b, size_t more)
{
    if (b->failed)
        return false;
    if (b->len + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) {
        b->failed = true;
        return false;
    }
    b->data = data;
    b->cap = cap;
    return true;
}

void rm_textbuf_append(rm_textbuf_t *b, const char *data, size_t len)
{
    if (!reserve(b, len))
        return;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void rm_textbuf_printf(rm_textbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* ---- requests ---- */

static const char *find_head_end(const char *buf, size_t len)
{
    for (size_t i = 0; i + 3 < len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n')
            return buf + i + 4;
    return NULL;
}

long rm_metrics_parse_request(const char *buf, size_t len, rm_metrics_request_t *out)
{
    memset(out, 0, sizeof(*out));
    const char *end =
        find_head_end(buf, len < RM_METRICS_MAX_REQUEST ? len : RM_METRICS_MAX_REQUEST);
    if (!end) {
        if (len >= RM_METRICS_MAX_REQUEST) {
            out->status = 431;
            return -EMSGSIZE;
        }
        return 0;
    }
    long used = (long)(end - buf);
    /* Request line: METHOD SP TARGET SP HTTP/1.x CRLF */
    const char *line_end = memchr(buf, '\r', (size_t)used);
    const char *sp1 = memchr(buf, ' ', (size_t)(line_end - buf));
    const char *target = sp1 ? sp1 + 1 : NULL;
    const char *sp2 = target ? memchr(target, ' ', (size_t)(line_end - target)) : NULL;
    if (!sp1 || !sp2 || sp2 == target || (size_t)(line_end - sp2 - 1) != 8 ||
        memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1')) {
        out->status = 400;
        return used;
    }
    size_t mlen = (size_t)(sp1 - buf);
    if (mlen == 4 && memcmp(buf, "HEAD", 4) == 0)
        out->head = true;
    else if (!(mlen == 3 && memcmp(buf, "GET", 3) == 0)) {
        out->status = 405;
        return used;
    }
    const char *q = memchr(target, '?', (size_t)(sp2 - target));
    size_t plen = (size_t)((q ? q : sp2) - target);
    static const struct {
        const char *path;
        enum rm_metrics_path which;
    } routes[] = {
        {"/metrics", RM_METRICS_PATH_METRICS},
        {"/healthz", RM_METRICS_PATH_HEALTHZ},
        {"/readyz", RM_METRICS_PATH_READYZ},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (plen == strlen(routes[i].path) && memcmp(target, routes[i].path, plen) == 0)
            out->path = routes[i].which;
    return used;
}

static const char *reason_of(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

void rm_metrics_response(rm_textbuf_t *out, int status, const char *content_type, const char *body,
                         size_t body_len, bool head)
{
    rm_http_date_t date = {0}; /* not a hot path: made afresh */
    rm_textbuf_printf(out,
                      "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                      status, reason_of(status), rm_http_date_get(&date), content_type, body_len,
                      status == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (!head)
        rm_textbuf_append(out, body, body_len);
}

/* ---- rendering ---- */

static void family(rm_textbuf_t *b, const char *name, const char *type, const char *help)
{
    rm_textbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(rm_textbuf_t *b, const char *name, const char *type, const char *help,
                   uint64_t value)
{
    family(b, name, type, help);
    rm_textbuf_printf(b, "%s %llu\n", name, (unsigned long long)value);
}

static void render_requests(const rm_metrics_sample_t *m, rm_textbuf_t *b)
{
    const rm_supervisor_stats_t *st = m->stats;
    family(b, "ringmaster_requests_total", "counter",
           "Responses finished, by status class (the supervisor's own answers included).");
    for (int i = 0; i < 5; i++)
        rm_textbuf_printf(b, "ringmaster_requests_total{status_class=\"%dxx\"} %llu\n", i + 1,
                          (unsigned long long)rm_stat_get(&st->responses[i]));

    family(b, "ringmaster_request_duration_seconds", "histogram",
           "From a request's first byte received to its last response byte queued for "
           "sending.");
    uint64_t cumulative = 0;
    for (unsigned i = 0; i <= RM_LATENCY_BUCKETS; i++) {
        cumulative += rm_stat_get(&st->latency[i]);
        if (i < RM_LATENCY_BUCKETS)
            rm_textbuf_printf(b, "ringmaster_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                              (double)rm_latency_bounds_us[i] / 1e6,
                              (unsigned long long)cumulative);
        else
            rm_textbuf_printf(b, "ringmaster_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                              (unsigned long long)cumulative);
    }
    rm_textbuf_printf(b, "ringmaster_request_duration_seconds_sum %.6f\n",
                      (double)rm_stat_get(&st->latency_sum_us) / 1e6);
    rm_textbuf_printf(b, "ringmaster_request_duration_seconds_count %llu\n",
                      (unsigned long long)cumulative);

    scalar(b, "ringmaster_requests_in_flight", "gauge",
           "Requests handed to a worker whose response is not finished.", m->in_flight);
    scalar(b, "ringmaster_requests_queued", "gauge",
           "Complete requests waiting in the supervisor for a worker with room.", m->queued);
}

static void render_lanes(const rm_metrics_sample_t *m, rm_textbuf_t *b)
{
    static const struct {
        const char *name, *type, *help;
    } lane_families[] = {
        {"ringmaster_lane_queue_depth", "gauge",
         "Requests on a worker's lane that the worker has not taken yet."},
        {"ringmaster_lane_outstanding", "gauge",
         "Requests dispatched to a worker's lane and not finished (supervisor's count)."},
        {"ringmaster_worker_requests_total", "counter",
         "Requests the worker on this lane ran the app for, since it started (reported by the "
         "worker)."},
        {"ringmaster_worker_app_exceptions_total", "counter",
         "Requests where the app raised, since the worker started (reported by the worker)."},
        {"ringmaster_worker_requests_active", "gauge",
         "Requests inside the app on this worker now (reported by the worker)."},
        {"ringmaster_worker_chunk_waits_total", "counter",
         "Times a thread of the worker found no free chunk for a response and backed off "
         "(reported by the worker)."},
        {"ringmaster_worker_responses_parked", "gauge",
         "Streamed responses waiting for a slow client without holding a thread (reported by "
         "the worker)."},
        {"ringmaster_worker_threads_waiting_on_clients", "gauge",
         "Threads of the worker held waiting for a slow client to read (a WSGI write(), a "
         "piece larger than the send window, or more parked responses than allowed; reported "
         "by the worker)."},
    };
    for (size_t f = 0; f < sizeof(lane_families) / sizeof(lane_families[0]); f++) {
        family(b, lane_families[f].name, lane_families[f].type, lane_families[f].help);
        for (uint32_t i = 0; i < m->lane_count; i++) {
            const rm_metrics_lane_sample_t *l = &m->lanes[i];
            uint64_t v = f == 0   ? l->queue_depth
                         : f == 1 ? l->outstanding
                         : f == 2 ? rm_stat_get(&l->stats.requests)
                         : f == 3 ? rm_stat_get(&l->stats.exceptions)
                         : f == 4 ? rm_stat_get(&l->stats.in_flight)
                         : f == 5 ? rm_stat_get(&l->stats.chunk_waits)
                         : f == 6 ? rm_stat_get(&l->stats.parked)
                                  : rm_stat_get(&l->stats.window_waits);
            rm_textbuf_printf(b, "%s{lane=\"%u\",pid=\"%d\"} %llu\n", lane_families[f].name,
                              l->lane, (int)l->pid, (unsigned long long)v);
        }
    }
}

void rm_metrics_render(const rm_metrics_sample_t *m, rm_textbuf_t *b)
{
    const rm_supervisor_stats_t *st = m->stats;
    render_requests(m, b);
    render_lanes(m, b);

    family(b, "ringmaster_workers", "gauge", "Worker processes by state.");
    rm_textbuf_printf(b, "ringmaster_workers{state=\"starting\"} %u\n", m->workers_starting);
    rm_textbuf_printf(b, "ringmaster_workers{state=\"ready\"} %u\n", m->workers_ready);
    rm_textbuf_printf(b, "ringmaster_workers{state=\"stopping\"} %u\n", m->workers_stopping);
    scalar(b, "ringmaster_workers_target", "gauge",
           "Workers the pool aims for (--workers, SIGTTIN/SIGTTOU, autoscaling).",
           m->target_workers);
    family(b, "ringmaster_worker_restarts_total", "counter",
           "Workers that left while the server kept running, by cause.");
    for (unsigned i = 0; i < RM_RESTART_CAUSES; i++)
        rm_textbuf_printf(b, "ringmaster_worker_restarts_total{cause=\"%s\"} %llu\n",
                          rm_restart_cause_name(i),
                          (unsigned long long)rm_stat_get(&st->restarts[i]));

    family(b, "ringmaster_overload_total", "counter",
           "Requests answered 503 (connections refused at --max-connections) because the "
           "server was busy, by cause.");
    for (unsigned i = 0; i < RM_OVERLOAD_CAUSES; i++)
        rm_textbuf_printf(b, "ringmaster_overload_total{cause=\"%s\"} %llu\n",
                          rm_overload_cause_name(i),
                          (unsigned long long)rm_stat_get(&st->overload[i]));

    family(b, "ringmaster_requests_moved_total", "counter",
           "Requests no thread of their worker had taken, moved to a worker with a free thread.");
    rm_textbuf_printf(b, "ringmaster_requests_moved_total %llu\n",
                      (unsigned long long)rm_stat_get(&st->requests_moved));

    scalar(b, "ringmaster_chunks_in_use", "gauge",
           "Shared-memory chunks allocated (requests, responses, receive buffers).",
           m->chunks_in_use);
    scalar(b, "ringmaster_chunks_total", "gauge", "Shared-memory chunks in the pool (--chunks).",
           m->chunks_total);
    scalar(b, "ringmaster_open_connections", "gauge", "Client connections open now.",
           m->open_connections);
    scalar(b, "ringmaster_connections_accepted_total", "counter", "Client connections accepted.",
           rm_stat_get(&st->connections_accepted));
    scalar(b, "ringmaster_received_bytes_total", "counter", "Bytes received from clients.",
           rm_stat_get(&st->bytes_received));
    scalar(b, "ringmaster_sent_bytes_total", "counter", "Bytes sent to clients.",
           rm_stat_get(&st->bytes_sent));
    scalar(b, "ringmaster_access_log_lines_total", "counter", "Access log lines written.",
           rm_stat_get(&st->access_log_lines));
    scalar(b, "ringmaster_access_log_dropped_total", "counter",
           "Access log lines dropped because the log could not keep up.",
           rm_stat_get(&st->access_log_dropped));
}
