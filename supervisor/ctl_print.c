/*
 * ctl_print.c - how `ringmaster ctl` shows a response: aligned tables for
 * people, one JSON object (the schema's field names) for programs.
 */
#include "ringmaster/ctl.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* "1h02m03s", "4m05s", "12s". */
static void duration(char *buf, size_t len, uint64_t ms)
{
    uint64_t s = ms / 1000;
    if (s >= 3600)
        snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m%02" PRIu64 "s", s / 3600, s / 60 % 60,
                 s % 60);
    else if (s >= 60)
        snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
    else
        snprintf(buf, len, "%" PRIu64 "s", s);
}

/* "512K", "25.3M", "1.2G". */
static void bytes(char *buf, size_t len, uint64_t n)
{
    if (n == 0)
        snprintf(buf, len, "-");
    else if (n < (1u << 20))
        snprintf(buf, len, "%" PRIu64 "K", n >> 10);
    else if (n < (1ull << 30))
        snprintf(buf, len, "%.1fM", (double)n / (1 << 20));
    else
        snprintf(buf, len, "%.1fG", (double)n / (1ull << 30));
}

static void print_stats(FILE *out, const rm_ctlp_stats_t *st)
{
    char up[32];
    duration(up, sizeof(up), st->uptime_ms);
    fprintf(out, "pid           %d\n", st->pid);
    fprintf(out, "version       %s\n", st->version);
    fprintf(out, "uptime        %s\n", up);
    fprintf(out, "state         %s\n", st->stopping ? "stopping" : "serving");
    fprintf(out, "workers       %u target%s, %u ready, %u attached\n", st->workers_target,
            st->attach_only ? " (--attach-only)" : "", st->workers_ready, st->workers_attached);
    fprintf(out, "connections   %u\n", st->connections);
    fprintf(out, "queued        %u\n", st->queued);
    fprintf(out, "in flight     %u\n", st->in_flight);
    fprintf(out, "requests      %" PRIu64 "\n", st->requests);
    fprintf(out, "chunks        %u of %u in use\n", st->chunks_used, st->chunks_total);
    fprintf(out, "reloads       %u\n", st->reloads);
}

static void print_workers(FILE *out, const rm_ctlp_worker_t *w, uint32_t n)
{
    fprintf(out, "%-5s %-8s %-9s %-16s %-8s %-8s %10s %9s %8s %9s\n", "LANE", "PID", "STATE",
            "MODE", "PYTHON", "KIND", "REQUESTS", "IN-FLIGHT", "RSS", "UPTIME");
    for (uint32_t i = 0; i < n; i++) {
        char rss[16], up[32];
        bytes(rss, sizeof(rss), w[i].rss_bytes);
        duration(up, sizeof(up), w[i].uptime_ms);
        fprintf(out, "%-5u %-8d %-9s %-16s %-8s %-8s %10" PRIu64 " %9u %8s %9s\n", w[i].lane,
                w[i].pid, w[i].state, w[i].mode[0] ? w[i].mode : "-",
                w[i].python[0] ? w[i].python : "-", w[i].attached ? "attached" : "embedded",
                w[i].requests, w[i].in_flight, rss, up);
    }
}

void rm_ctl_print_human(FILE *out, const rm_ctlp_response_t *resp)
{
    if (resp->has_stats)
        print_stats(out, &resp->stats);
    if (resp->has_workers)
        print_workers(out, resp->workers, resp->nworkers);
    switch (resp->cmd) {
    case RM_CTLP_SCALE:
        fprintf(out, "scaling to %u worker(s)\n", resp->target);
        break;
    case RM_CTLP_RELOAD:
        fprintf(out, "reloading: fresh workers start, the old ones drain once they are ready\n");
        break;
    case RM_CTLP_STOP:
        fprintf(out, "stopping: in-flight requests finish first (--graceful-timeout)\n");
        break;
    default:
        break;
    }
}

/* ---- JSON ---------------------------------------------------------------- */

static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static void json_stats(FILE *out, const rm_ctlp_stats_t *st)
{
    fprintf(out, "{\"pid\":%d,\"version\":", st->pid);
    json_str(out, st->version);
    fprintf(out,
            ",\"uptime_ms\":%" PRIu64 ",\"workers_target\":%u,\"workers_ready\":%u,"
            "\"workers_attached\":%u,\"connections\":%u,\"queued\":%u,\"in_flight\":%u,"
            "\"requests\":%" PRIu64 ",\"chunks_used\":%u,\"chunks_total\":%u,\"reloads\":%u,"
            "\"stopping\":%s,\"attach_only\":%s}",
            st->uptime_ms, st->workers_target, st->workers_ready, st->workers_attached,
            st->connections, st->queued, st->in_flight, st->requests, st->chunks_used,
            st->chunks_total, st->reloads, st->stopping ? "true" : "false",
            st->attach_only ? "true" : "false");
}

static void json_worker(FILE *out, const rm_ctlp_worker_t *w)
{
    fprintf(out, "{\"lane\":%u,\"pid\":%d,\"state\":", w->lane, w->pid);
    json_str(out, w->state);
    fputs(",\"mode\":", out);
    json_str(out, w->mode);
    fputs(",\"python\":", out);
    json_str(out, w->python);
    fprintf(out,
            ",\"attached\":%s,\"requests\":%" PRIu64 ",\"in_flight\":%u,\"rss_bytes\":%" PRIu64
            ",\"uptime_ms\":%" PRIu64 "}",
            w->attached ? "true" : "false", w->requests, w->in_flight, w->rss_bytes, w->uptime_ms);
}

void rm_ctl_print_json(FILE *out, const rm_ctlp_response_t *resp)
{
    fprintf(out, "{\"v\":%u,\"cmd\":", resp->version);
    json_str(out, rm_ctlp_cmd_name(resp->cmd));
    fprintf(out, ",\"ok\":%s", resp->ok ? "true" : "false");
    if (!resp->ok) {
        fputs(",\"error\":", out);
        json_str(out, resp->error);
    }
    if (resp->has_stats) {
        fputs(",\"stats\":", out);
        json_stats(out, &resp->stats);
    }
    if (resp->has_workers) {
        fputs(",\"workers\":[", out);
        for (uint32_t i = 0; i < resp->nworkers; i++) {
            if (i)
                fputc(',', out);
            json_worker(out, &resp->workers[i]);
        }
        fputc(']', out);
    }
    if (resp->ok && resp->cmd == RM_CTLP_SCALE)
        fprintf(out, ",\"target\":%u", resp->target);
    if (resp->has_lane)
        fprintf(out, ",\"lane\":%u", resp->lane);
    fputs("}\n", out);
}
