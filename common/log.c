/*
 * log.c - one line per call on stderr, plain or JSON.
 *
 * Each line is formatted into a stack buffer and written with a single
 * write(2), so lines from several threads or processes sharing stderr do not
 * interleave (up to PIPE_BUF bytes on a pipe). Long messages are cut, never
 * split over two writes.
 */
#include "ringmaster/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
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
    return append(line, pos, LINE_CAP, "\"}\n");
}

static size_t format_plain(char *line, const char *role, rm_log_level_t level, const char *msg)
{
    int n = snprintf(line, LINE_CAP - 1, "ringmaster[%s %d]: %s: %s", role, (int)getpid(),
                     level_names[level], msg);
    size_t pos = n < 0 ? 0 : (size_t)n;
    if (pos > LINE_CAP - 2)
        pos = LINE_CAP - 2; /* cut: keep the newline */
    line[pos++] = '\n';
    return pos;
}

void rm_log_write(rm_log_level_t level, const char *fmt, ...)
{
    int saved = errno; /* callers log errno-based failures, then look at errno */
    char msg[MSG_MAX];
    char line[LINE_CAP];
    va_list ap;

    if ((unsigned)level > RM_LOG_DEBUG)
        level = RM_LOG_ERROR;
    const char *role = rm_log_conf.role ? rm_log_conf.role : defaults.role;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    size_t len = rm_log_conf.format == RM_LOG_JSON ? format_json(line, role, level, msg)
                                                   : format_plain(line, role, level, msg);
    ssize_t w;
    do {
        w = write(STDERR_FILENO, line, len);
    } while (w < 0 && errno == EINTR);
    errno = saved;
}
