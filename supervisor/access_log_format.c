/*
 * access_log_format.c - one access log line from one exchange (pure).
 */
#include "ringmaster/access_log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int rm_access_log_parse_format(const char *text, rm_access_log_format_t *out)
{
    if (strcmp(text, "combined") == 0)
        *out = RM_ACCESS_LOG_COMBINED;
    else if (strcmp(text, "json") == 0)
        *out = RM_ACCESS_LOG_JSON;
    else
        return -EINVAL;
    return 0;
}

/* A bounded writer: bytes past the end are dropped (one byte is kept for the
 * final newline). */
typedef struct out {
    char *p;
    size_t len, cap;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    size_t room = o->cap - 1 - o->len;
    if (n > room)
        n = room;
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

static void putf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void putf(out_t *o, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        put(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Printable ASCII as is, '"' and '\' backslash-escaped, every other byte
 * through `hex_fmt`: "\\x%02x" for combined, "\\u%04x" for JSON (bytes >= 0x80
 * taken as Latin-1: headers are bytes). */
static void put_escaped_bytes(out_t *o, rm_text_t t, const char *hex_fmt)
{
    for (size_t i = 0; i < t.len; i++) {
        unsigned char ch = (unsigned char)t.ptr[i];
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            put(o, esc, 2);
        } else if (ch < 0x20 || ch >= 0x7f) {
            putf(o, hex_fmt, ch);
        } else {
            put(o, (const char *)&ch, 1);
        }
    }
}

/* Combined: a missing or empty field is "-". */
static void put_escaped(out_t *o, rm_text_t t)
{
    if (!t.ptr || t.len == 0) {
        puts_(o, "-");
        return;
    }
    put_escaped_bytes(o, t, "\\x%02x");
}

/* JSON string, or null for a missing field. */
static void put_json(out_t *o, rm_text_t t)
{
    if (!t.ptr) {
        puts_(o, "null");
        return;
    }
    put(o, "\"", 1);
    put_escaped_bytes(o, t, "\\u%04x");
    put(o, "\"", 1);
}

static void format_combined(out_t *o, const rm_access_entry_t *e)
{
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t secs = (time_t)(e->time_unix_ns / 1000000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    puts_(o, e->remote ? e->remote : "-");
    putf(o, " - - [%02d/%s/%04d:%02d:%02d:%02d +0000] \"", tm.tm_mday, months[tm.tm_mon],
         tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    put_escaped(o, e->line);
    if (e->status)
        putf(o, "\" %d ", e->status);
    else
        puts_(o, "\" - ");
    if (e->body_bytes)
        putf(o, "%" PRIu64 " \"", e->body_bytes);
    else
        puts_(o, "- \"");
    put_escaped(o, e->referer);
    puts_(o, "\" \"");
    put_escaped(o, e->user_agent);
    puts_(o, "\"");
}

static void format_json(out_t *o, const rm_access_entry_t *e)
{
    time_t secs = (time_t)(e->time_unix_ns / 1000000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    putf(o, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"remote_addr\":", tm.tm_year + 1900,
         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
         (int)(e->time_unix_ns / 1000000 % 1000));
    rm_text_t remote = {e->remote, e->remote ? strlen(e->remote) : 0};
    put_json(o, remote);
    puts_(o, ",\"request\":");
    put_json(o, e->line);
    puts_(o, ",\"method\":");
    put_json(o, e->method);
    puts_(o, ",\"path\":");
    put_json(o, e->target);
    puts_(o, ",\"protocol\":");
    put_json(o, e->protocol);
    if (e->status)
        putf(o, ",\"status\":%d", e->status);
    else
        puts_(o, ",\"status\":null");
    putf(o, ",\"bytes\":%" PRIu64 ",\"duration_ms\":%" PRIu64 ".%03u", e->body_bytes,
         e->duration_us / 1000, (unsigned)(e->duration_us % 1000));
    puts_(o, ",\"referer\":");
    put_json(o, e->referer);
    puts_(o, ",\"user_agent\":");
    put_json(o, e->user_agent);
    puts_(o, "}");
}

size_t rm_access_log_format_line(rm_access_log_format_t fmt, const rm_access_entry_t *e, char *buf,
                                 size_t cap)
{
    out_t o = {buf, 0, cap};
    if (fmt == RM_ACCESS_LOG_JSON)
        format_json(&o, e);
    else
        format_combined(&o, e);
    buf[o.len++] = '\n';
    return o.len;
}

size_t rm_access_log_target_len(const char *target, size_t len)
{
    const char *q = memchr(target, '?', len);
    return q ? (size_t)(q - target) : len;
}

size_t rm_access_log_strip_query(char *line, size_t len)
{
    size_t out = 0;
    bool in_query = false;
    for (size_t i = 0; i < len; i++) {
        char ch = line[i];
        if (ch == '?')
            in_query = true;
        else if (ch == ' ')
            in_query = false;
        if (!in_query)
            line[out++] = ch;
    }
    return out;
}
