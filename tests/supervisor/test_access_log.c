/*
 * test_access_log.c - supervisor/access_log_format.c and resp_scan.c through
 * ringmaster/access_log.h and ringmaster/exchange.h.
 */
#include "ringmaster/access_log.h"
#include "ringmaster/exchange.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#define T(s) ((rm_text_t){(s), sizeof(s) - 1})

/* 2026-11-25 22:30:01.250 UTC */
#define WHEN 1795645801250000000LL

static rm_access_entry_t sample(void)
{
    return (rm_access_entry_t){.remote = "10.0.0.1",
                               .time_unix_ns = WHEN,
                               .line = T("GET /a?b=1 HTTP/1.1"),
                               .method = T("GET"),
                               .target = T("/a?b=1"),
                               .protocol = T("HTTP/1.1"),
                               .referer = T("http://r/"),
                               .user_agent = T("curl/8"),
                               .status = 200,
                               .body_bytes = 14,
                               .duration_us = 1234};
}

static char buf[1 << 16];

/* The line for `e`, NUL-terminated, in buf. */
static const char *format(rm_access_log_format_t fmt, const rm_access_entry_t *e)
{
    size_t n = rm_access_log_format_line(fmt, e, buf, sizeof(buf) - 1);
    buf[n] = '\0';
    return buf;
}

Test(access_log, combined)
{
    rm_access_entry_t e = sample();
    cr_assert_str_eq(format(RM_ACCESS_LOG_COMBINED, &e),
                     "10.0.0.1 - - [25/Nov/2026:22:30:01 +0000] \"GET /a?b=1 HTTP/1.1\" 200 "
                     "14 \"http://r/\" \"curl/8\"\n");
}

Test(access_log, combined_absent_fields_and_escapes)
{
    rm_access_entry_t e = sample();
    e.line = T("GE\"T \\x\x01\xff");
    e.method = e.target = e.protocol = (rm_text_t){0};
    e.referer = (rm_text_t){0};
    e.user_agent = T("");
    e.status = 0;
    e.body_bytes = 0;
    cr_assert_str_eq(format(RM_ACCESS_LOG_COMBINED, &e),
                     "10.0.0.1 - - [25/Nov/2026:22:30:01 +0000] \"GE\\\"T \\\\x\\x01\\xff\" - - "
                     "\"-\" \"-\"\n");
}

Test(access_log, json)
{
    rm_access_entry_t e = sample();
    e.user_agent = T("a\"b\\c\n\xe9");
    cr_assert_str_eq(format(RM_ACCESS_LOG_JSON, &e),
                     "{\"time\":\"2026-11-25T22:30:01.250Z\",\"remote_addr\":\"10.0.0.1\","
                     "\"request\":\"GET /a?b=1 HTTP/1.1\",\"method\":\"GET\",\"path\":"
                     "\"/a?b=1\",\"protocol\":\"HTTP/1.1\",\"status\":200,\"bytes\":14,"
                     "\"duration_ms\":1.234,\"referer\":\"http://r/\",\"user_agent\":"
                     "\"a\\\"b\\\\c\\u000a\\u00e9\"}\n");
}

Test(access_log, json_nulls)
{
    rm_access_entry_t e = sample();
    e.method = e.target = e.protocol = e.referer = e.user_agent = (rm_text_t){0};
    e.status = 0;
    format(RM_ACCESS_LOG_JSON, &e);
    cr_assert(strstr(buf, "\"method\":null,\"path\":null,\"protocol\":null,\"status\":null,"), "%s",
              buf);
    cr_assert(strstr(buf, "\"referer\":null,\"user_agent\":null}\n"), "%s", buf);
}

Test(access_log, cut_short_still_one_line)
{
    rm_access_entry_t e = sample();
    size_t n = rm_access_log_format_line(RM_ACCESS_LOG_COMBINED, &e, buf, 20);
    cr_assert_eq(n, 20);
    cr_assert_eq(buf[19], '\n');
    cr_assert_null(memchr(buf, '\n', 19));
}

Test(access_log, parse_format)
{
    rm_access_log_format_t f;
    cr_assert_eq(rm_access_log_parse_format("json", &f), 0);
    cr_assert_eq(f, RM_ACCESS_LOG_JSON);
    cr_assert_eq(rm_access_log_parse_format("combined", &f), 0);
    cr_assert_eq(f, RM_ACCESS_LOG_COMBINED);
    cr_assert_eq(rm_access_log_parse_format("common", &f), -EINVAL);
}

/* ---- rm_resp_scan ---- */

static size_t feed_bytewise(rm_resp_scan_t *s, const char *p)
{
    size_t body = 0;
    for (size_t i = 0; p[i]; i++)
        body += rm_resp_scan_feed(s, p + i, 1);
    return body;
}

Test(resp_scan, status_and_body)
{
    static const char r[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nhello";
    rm_resp_scan_t s = {0};
    cr_assert_eq(rm_resp_scan_feed(&s, r, sizeof(r) - 1), 5);
    cr_assert_eq(rm_resp_scan_status(&s), 404);
    cr_assert_eq(rm_resp_scan_feed(&s, "more", 4), 4);
    rm_resp_scan_t b = {0};
    cr_assert_eq(feed_bytewise(&b, r), 5);
    cr_assert_eq(rm_resp_scan_status(&b), 404);
}

Test(resp_scan, skips_interim_heads)
{
    static const char r[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n\r\nxy";
    rm_resp_scan_t s = {0};
    cr_assert_eq(rm_resp_scan_feed(&s, r, sizeof(r) - 1), 2);
    cr_assert_eq(rm_resp_scan_status(&s), 201);
}

Test(resp_scan, unknown_until_the_head_ends)
{
    rm_resp_scan_t s = {0};
    cr_assert_eq(rm_resp_scan_feed(&s, "HTTP/1.1 200 OK\r\n", 17), 0);
    cr_assert_eq(rm_resp_scan_status(&s), 0);
    cr_assert_eq(rm_resp_scan_feed(&s, "\r\n", 2), 0);
    cr_assert_eq(rm_resp_scan_status(&s), 200);
}

Test(resp_scan, malformed_status_is_zero)
{
    rm_resp_scan_t s = {0};
    cr_assert_eq(rm_resp_scan_feed(&s, "HTTP/1.1 2x0 OK\r\n\r\nab", 21), 2);
    cr_assert_eq(rm_resp_scan_status(&s), 0);
    rm_resp_scan_t t = {0};
    rm_resp_scan_feed(&t, "HTTP/1.1 700 X\r\n\r\n", 18);
    cr_assert_eq(rm_resp_scan_status(&t), 0);
}

Test(access_log, query_strings_cut)
{
    cr_assert_eq(rm_access_log_target_len("/a?b=1", 6), 2);
    cr_assert_eq(rm_access_log_target_len("/a", 2), 2);
    cr_assert_eq(rm_access_log_target_len("?", 1), 0);
    char line[] = "GET /x?token=s3cret&y=2 HTTP/1.1";
    size_t n = rm_access_log_strip_query(line, strlen(line));
    cr_assert_eq(n, strlen("GET /x HTTP/1.1"));
    cr_assert(memcmp(line, "GET /x HTTP/1.1", n) == 0, "%.*s", (int)n, line);
    char raw[] = "BAD\x01 /p?a b?c";
    n = rm_access_log_strip_query(raw, strlen(raw));
    cr_assert(memcmp(raw, "BAD\x01 /p b", n) == 0 && n == strlen("BAD\x01 /p b"), "%.*s",
              (int)n, raw);
}
