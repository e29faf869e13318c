/*
 * log.c - one record per call on stderr, plain or JSON.
 *
 * Each record is built whole, then written with a single write(2) (looping
 * only on a partial write), so records from several threads or processes
 * sharing stderr do not interleave: a traceback stays under its error line.
 * The line is formatted into a stack buffer; a record with a detail (a
 * traceback) is assembled in one heap buffer. Long messages are cut, never
 * split over two writes.
 */
#include "ringmaster/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MSG_MAX 2048  /* message text after formatting */
#define LINE_CAP 4096 /* whole line: room for the prefix, or for JSON escapes */

static const rm_log_conf_t defaults = {RM_LOG_INFO, RM_LOG_PLAIN, "ringmaster"};

rm_log_conf_t rm_log_conf = {RM_LOG_INFO, RM_LOG_PLAIN, "ringmaster"};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void rm_log_reset(void)
{
    rm_log_conf = defaults;
}

int rm_log_parse_level(const char *text, rm_log_level_t *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (text && strcasecmp(text, level_names[i]) == 0) {
            *out = (rm_log_level_t)i;
            return 0;
        }
    }
    return -EINVAL;
}

int rm_log_parse_format(const char *text, rm_log_format_t *out)
{
    if (text && strcasecmp(text, "plain") == 0)
        *out = RM_LOG_PLAIN;
    else if (text && strcasecmp(text, "json") == 0)
        *out = RM_LOG_JSON;
    else
        return -EINVAL;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned min;
    unsigned cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xE0) == 0xC0) {
        len = 2, min = 0x80, cp = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3, min = 0x800, cp = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4, min = 0x10000, cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* Append `src` as the inside of a JSON string to out[*pos..cap). Stops before
 * an escape that would not fit, so the result is always valid JSON; invalid
 * UTF-8 becomes U+FFFD. */
static void json_escape(char *out, size_t *pos, size_t cap, const char *src)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t n = strlen(src);
    size_t p = *pos;
    for (size_t i = 0; i < n;) {
        char esc[8];
        const char *piece = esc;
        size_t plen;
        size_t used = 1;
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, plen = 2;
        } else if (c == '\n') {
            piece = "\\n", plen = 2;
        } else if (c == '\r') {
            piece = "\\r", plen = 2;
        } else if (c == '\t') {
            piece = "\\t", plen = 2;
        } else if (c < 0x20 || c == 0x7F) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            plen = 6;
        } else if (c < 0x80) {
            piece = (const char *)s + i, plen = 1;
        } else if ((used = utf8_seq(s + i, n - i)) > 0) {
            piece = (const char *)s + i, plen = used;
        } else {
            piece = "\\ufffd", plen = 6, used = 1;
        }
        if (p + plen > cap)
            break;
        memcpy(out + p, piece, plen);
        p += plen;
        i += used;
    }
    *pos = p;
}

static size_t append(char *out, size_t pos, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n > cap - pos)
        n = cap - pos;
    memcpy(out + pos, s, n);
    return pos + n;
}

/* The record's line up to the end of the message: JSON without its closing
 * "}, plain without its newline. */
static size_t format_json(char *line, const char *role, rm_log_level_t level, const char *msg)
{
    struct timespec ts;
    struct tm tm;
    char stamp[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ", ts.tv_nsec / 1000000);

    const size_t tail = 3; /* room kept for the closing "}\n */
    size_t pos = (size_t)snprintf(line, LINE_CAP, "{\"ts\":\"%s\",\"level\":\"%s\",\"role\":\"",
                                  stamp, level_names[level]);
    json_escape(line, &pos, LINE_CAP - tail - 64, role);
    pos += (size_t)snprintf(line + pos, LINE_CAP - pos, "\",\"pid\":%d,\"msg\":\"", (int)getpid());
    json_escape(line, &pos, LINE_CAP - tail, msg);
    return append(line, pos, LINE_CAP, "\"");
}

static size_t format_plain(char *line, const char *role, rm_log_level_t level, const char *msg)
{
    int n = snprintf(line, LINE_CAP - 1, "ringmaster[%s %d]: %s: %s", role, (int)getpid(),
                     level_names[level], msg);
    size_t pos = n < 0 ? 0 : (size_t)n;
    if (pos > LINE_CAP - 2)
        pos = LINE_CAP - 2; /* cut: keep room for the newline */
    return pos;
}

/* All of buf in as few write(2) calls as the kernel allows: one, unless it
 * takes part of it (a signal, a full disk). */
static void write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(STDERR_FILENO, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* stderr is gone: nowhere to say so */
        buf += w;
        len -= (size_t)w;
    }
}

/* The part of a detail a record carries: at most RM_LOG_DETAIL_MAX bytes, its
 * end, from a line's start. Sets *cut when the head was left out. */
static const char *detail_tail(const char *detail, size_t *len, bool *cut)
{
    size_t n = strlen(detail);
    *cut = n > RM_LOG_DETAIL_MAX;
    if (*cut) {
        const char *p = detail + n - RM_LOG_DETAIL_MAX;
        const char *nl = memchr(p, '\n', RM_LOG_DETAIL_MAX);
        detail = nl != NULL ? nl + 1 : p;
        n = strlen(detail);
    }
    *len = n;
    return detail;
}

/* Line and detail in one buffer, one write. Without memory for it the two
 * go out as two writes: a record split is better than a record lost. */
static void write_record(const char *line, size_t len, bool json, const char *detail)
{
    size_t dlen;
    bool cut;
    detail = detail_tail(detail, &dlen, &cut);
    /* JSON escapes grow a byte to at most 6 ("\u00XX"). */
    size_t cap = len + (json ? 6 : 1) * (dlen + 4) + 32;
    char *rec = malloc(cap);
    if (rec == NULL) {
        /* JSON: the record without it (raw lines would not be JSON). */
        write_all(line, len);
        write_all(json ? "}\n" : "\n", json ? 2 : 1);
        if (!json)
            write_all(detail, dlen);
        return;
    }
    memcpy(rec, line, len);
    size_t pos = len;
    if (json) {
        pos = append(rec, pos, cap, ",\"traceback\":\"");
        if (cut)
            pos = append(rec, pos, cap, "...\\n");
        json_escape(rec, &pos, cap - 3, detail);
        pos = append(rec, pos, cap, "\"}\n");
    } else {
        rec[pos++] = '\n';
        if (cut)
            pos = append(rec, pos, cap, "...\n");
        memcpy(rec + pos, detail, dlen);
        pos += dlen;
        if (dlen > 0 && detail[dlen - 1] != '\n')
            rec[pos++] = '\n';
    }
    write_all(rec, pos);
    free(rec);
}

static _Thread_local char *held_detail; /* rm_log_hold_detail's, owned */

void rm_log_hold_detail(char *text)
{
    free(held_detail);
    held_detail = text;
}

void rm_log_drop_detail(void)
{
    rm_log_hold_detail(NULL);
}

char *rm_log_take_detail(void)
{
    char *text = held_detail;
    held_detail = NULL;
    return text;
}

static void vwrite(rm_log_level_t level, const char *detail, const char *fmt, va_list ap)
{
    char msg[MSG_MAX];
    char line[LINE_CAP];

    if ((unsigned)level > RM_LOG_DEBUG)
        level = RM_LOG_ERROR;
    const char *role = rm_log_conf.role ? rm_log_conf.role : defaults.role;
    bool json = rm_log_conf.format == RM_LOG_JSON;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t len = json ? format_json(line, role, level, msg) : format_plain(line, role, level, msg);
    if (detail != NULL && detail[0] != '\0') {
        write_record(line, len, json, detail);
        return;
    }
    len = append(line, len, LINE_CAP, json ? "}\n" : "\n");
    write_all(line, len);
}

void rm_log_write(rm_log_level_t level, const char *fmt, ...)
{
    int saved = errno; /* callers log errno-based failures, then look at errno */
    char *detail = NULL;
    va_list ap;

    if (level == RM_LOG_ERROR) {
        detail = held_detail; /* this record takes it */
        held_detail = NULL;
    }
    va_start(ap, fmt);
    vwrite(level, detail, fmt, ap);
    va_end(ap);
    free(detail);
    errno = saved;
}

void rm_log_write_detail(rm_log_level_t level, const char *detail, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;

    va_start(ap, fmt);
    vwrite(level, detail, fmt, ap);
    va_end(ap);
    errno = saved;
}
