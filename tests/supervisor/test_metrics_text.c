/*
 * test_metrics_text.c - supervisor/metrics_text.c through ringmaster/metrics.h:
 * probe requests and the Prometheus text rendering.
 */
#include "ringmaster/metrics.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static long parse(const char *text, rm_metrics_request_t *req)
{
    return rm_metrics_parse_request(text, strlen(text), req);
}

Test(metrics_request, routes_the_three_paths)
{
    rm_metrics_request_t req;
    const char *r = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(parse(r, &req), (long)strlen(r));
    cr_assert_eq(req.status, 0);
    cr_assert_eq(req.path, RM_METRICS_PATH_METRICS);
    cr_assert(!req.head);
    parse("GET /healthz HTTP/1.0\r\n\r\n", &req);
    cr_assert_eq(req.path, RM_METRICS_PATH_HEALTHZ);
    parse("HEAD /readyz?x=1 HTTP/1.1\r\n\r\n", &req);
    cr_assert_eq(req.path, RM_METRICS_PATH_READYZ);
    cr_assert(req.head);
    parse("GET /metricsx HTTP/1.1\r\n\r\n", &req);
    cr_assert_eq(req.path, RM_METRICS_PATH_OTHER);
    cr_assert_eq(req.status, 0);
    parse("GET / HTTP/1.1\r\n\r\n", &req);
    cr_assert_eq(req.path, RM_METRICS_PATH_OTHER);
}

Test(metrics_request, waits_for_the_whole_head)
{
    rm_metrics_request_t req;
    cr_assert_eq(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n", &req), 0);
    cr_assert_eq(parse("", &req), 0);
}

Test(metrics_request, refuses_bad_requests)
{
    rm_metrics_request_t req;
    cr_assert_gt(parse("garbage\r\n\r\n", &req), 0);
    cr_assert_eq(req.status, 400);
    parse("GET /metrics HTTP/2.0\r\n\r\n", &req);
    cr_assert_eq(req.status, 400);
    parse("GET  HTTP/1.1\r\n\r\n", &req);
    cr_assert_eq(req.status, 400);
    parse("POST /metrics HTTP/1.1\r\n\r\n", &req);
    cr_assert_eq(req.status, 405);
}

Test(metrics_request, bounds_the_head)
{
    static char big[RM_METRICS_MAX_REQUEST + 10];
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    rm_metrics_request_t req;
    cr_assert_eq(rm_metrics_parse_request(big, sizeof(big), &req), -EMSGSIZE);
    cr_assert_eq(req.status, 431);
    /* A head that ends right at the limit is still read. */
    memcpy(big + RM_METRICS_MAX_REQUEST - 4, "\r\n\r\n", 4);
    cr_assert_eq(rm_metrics_parse_request(big, RM_METRICS_MAX_REQUEST, &req),
                 (long)RM_METRICS_MAX_REQUEST);
    cr_assert_eq(req.status, 0);
}

Test(metrics_response, head_has_no_body_but_its_length)
{
    rm_textbuf_t b;
    rm_textbuf_init(&b);
    rm_metrics_response(&b, 200, "text/plain", "ok\n", 3, true);
    cr_assert(strstr(b.data, "HTTP/1.1 200 OK\r\n") == b.data);
    cr_assert(strstr(b.data, "Content-Length: 3\r\n"));
    cr_assert(strstr(b.data, "Connection: close\r\n"));
    cr_assert_eq(strcmp(b.data + b.len - 4, "\r\n\r\n"), 0);
    rm_textbuf_deinit(&b);
    rm_textbuf_init(&b);
    rm_metrics_response(&b, 503, "text/plain", "no\n", 3, false);
    cr_assert(strstr(b.data, "HTTP/1.1 503 Service Unavailable\r\n") == b.data);
    cr_assert_eq(strcmp(b.data + b.len - 7, "\r\n\r\nno\n"), 0);
    rm_textbuf_deinit(&b);
}

static const char *line_of(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, prefix, n) == 0)
            return p + n;
    return NULL;
}

static unsigned long long value_of(const char *text, const char *series)
{
    char prefix[256];
    snprintf(prefix, sizeof(prefix), "%s ", series);
    const char *v = line_of(text, prefix);
    cr_assert_not_null(v, "no sample %s in:\n%s", series, text);
    return strtoull(v, NULL, 10);
}

Test(metrics_render, counters_buckets_and_lanes)
{
    static rm_supervisor_stats_t stats;
    memset(&stats, 0, sizeof(stats));
    rm_stats_record_response(&stats, 200, 100);      /* 0.0001 s */
    rm_stats_record_response(&stats, 204, 3000);     /* 0.003 s */
    rm_stats_record_response(&stats, 404, 3000000);  /* 3 s */
    rm_stats_record_response(&stats, 503, 60000000); /* 60 s: +Inf */
    rm_stats_record_response(&stats, 0, 10);         /* unknown status: no class */
    rm_stat_add(&stats.restarts[RM_RESTART_CRASH], 2);
    rm_stat_add(&stats.bytes_sent, 12345);

    rm_metrics_lane_sample_t lanes[2] = {{.lane = 0, .pid = 10, .queue_depth = 3},
                                         {.lane = 5, .pid = 11, .outstanding = 4}};
    atomic_store(&lanes[1].stats.requests, 99);
    atomic_store(&lanes[1].stats.exceptions, 2);
    rm_metrics_sample_t m = {.stats = &stats,
                             .open_connections = 7,
                             .in_flight = 4,
                             .chunks_in_use = 10,
                             .chunks_total = 4096,
                             .workers_ready = 2,
                             .target_workers = 2,
                             .lane_count = 2,
                             .lanes = lanes};
    rm_textbuf_t b;
    rm_textbuf_init(&b);
    rm_metrics_render(&m, &b);
    cr_assert(!b.failed);
    const char *t = b.data;
    cr_assert_eq(value_of(t, "ringmaster_requests_total{status_class=\"2xx\"}"), 2);
    cr_assert_eq(value_of(t, "ringmaster_requests_total{status_class=\"4xx\"}"), 1);
    cr_assert_eq(value_of(t, "ringmaster_requests_total{status_class=\"5xx\"}"), 1);
    cr_assert_eq(value_of(t, "ringmaster_requests_total{status_class=\"1xx\"}"), 0);
    /* Cumulative buckets; +Inf equals the count. */
    cr_assert_eq(value_of(t, "ringmaster_request_duration_seconds_bucket{le=\"0.0005\"}"), 2);
    cr_assert_eq(value_of(t, "ringmaster_request_duration_seconds_bucket{le=\"0.005\"}"), 3);
    cr_assert_eq(value_of(t, "ringmaster_request_duration_seconds_bucket{le=\"2.5\"}"), 3);
    cr_assert_eq(value_of(t, "ringmaster_request_duration_seconds_bucket{le=\"5\"}"), 4);
    cr_assert_eq(value_of(t, "ringmaster_request_duration_seconds_bucket{le=\"30\"}"), 4);
    cr_assert_eq(value_of(t, "ringmaster_request_duration_seconds_bucket{le=\"+Inf\"}"), 5);
    cr_assert_eq(value_of(t, "ringmaster_request_duration_seconds_count"), 5);
    cr_assert(line_of(t, "ringmaster_request_duration_seconds_sum 63.003110\n"), "%s", t);
    cr_assert_eq(value_of(t, "ringmaster_worker_restarts_total{cause=\"crash\"}"), 2);
    cr_assert_eq(value_of(t, "ringmaster_worker_restarts_total{cause=\"max_requests\"}"), 0);
    cr_assert_eq(value_of(t, "ringmaster_sent_bytes_total"), 12345);
    cr_assert_eq(value_of(t, "ringmaster_open_connections"), 7);
    cr_assert_eq(value_of(t, "ringmaster_chunks_in_use"), 10);
    cr_assert_eq(value_of(t, "ringmaster_chunks_total"), 4096);
    cr_assert_eq(value_of(t, "ringmaster_lane_queue_depth{lane=\"0\",pid=\"10\"}"), 3);
    cr_assert_eq(value_of(t, "ringmaster_lane_outstanding{lane=\"5\",pid=\"11\"}"), 4);
    cr_assert_eq(value_of(t, "ringmaster_worker_requests_total{lane=\"5\",pid=\"11\"}"), 99);
    cr_assert_eq(value_of(t, "ringmaster_worker_app_exceptions_total{lane=\"5\",pid=\"11\"}"), 2);
    cr_assert_eq(value_of(t, "ringmaster_workers{state=\"ready\"}"), 2);
    /* Every family is announced once, before its samples. */
    cr_assert(line_of(t, "# TYPE ringmaster_request_duration_seconds histogram\n"));
    cr_assert(line_of(t, "# TYPE ringmaster_requests_total counter\n"));
    const char *first = strstr(t, "# TYPE ringmaster_lane_queue_depth");
    cr_assert(first && !strstr(first + 1, "# TYPE ringmaster_lane_queue_depth"));
    cr_assert_eq(t[b.len - 1], '\n');
    rm_textbuf_deinit(&b);
}

Test(metrics_textbuf, grows)
{
    rm_textbuf_t b;
    rm_textbuf_init(&b);
    for (int i = 0; i < 10000; i++)
        rm_textbuf_printf(&b, "%05d\n", i);
    cr_assert(!b.failed);
    cr_assert_eq(b.len, 60000);
    cr_assert_eq(strncmp(b.data + 6 * 9999, "09999\n", 6), 0);
    rm_textbuf_deinit(&b);
}
