/*
 * test_http_parse.c - supervisor/http_parse.c through its public header.
 */
#include "ringmaster/http_parse.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static const rm_http_limits_t limits = {.max_head = 8192, .max_target = 4096, .max_body = 1 << 20};

typedef struct body_acc {
    char data[1 << 16];
    size_t len;
    int pieces;
} body_acc_t;

static int collect(void *ctx, const char *at, size_t len)
{
    body_acc_t *b = ctx;
    memcpy(b->data + b->len, at, len);
    b->len += len;
    b->pieces++;
    return 0;
}

static rm_http_parser_t parser;
static rm_http_head_t head;
static body_acc_t body;

/* The parser may rewrite a head in place (a field line's trailing HTAB), as
 * the supervisor's receive chunks allow: give it a writable copy. */
static char req_buf[1 << 16];

static char *writable(const char *req)
{
    size_t n = strlen(req);
    cr_assert_lt(n, sizeof(req_buf));
    memcpy(req_buf, req, n + 1);
    return req_buf;
}

static rm_http_result_t parse_all(const char *req, size_t *consumed, int *status)
{
    char *buf = writable(req);
    rm_http_parser_init(&parser, &limits);
    memset(&body, 0, sizeof(body));
    rm_http_begin(&parser, &head, buf, collect, &body);
    return rm_http_feed(&parser, buf, strlen(buf), consumed, status);
}

static void expect_span(const char *buf, uint32_t off, uint32_t len, const char *want)
{
    cr_expect_eq(len, strlen(want), "span length %u, want %zu (%s)", len, strlen(want), want);
    cr_expect(strncmp(buf + off, want, len) == 0, "span '%.*s', want '%s'", (int)len, buf + off,
              want);
}

Test(http_parse, simple_get)
{
    const char *req = "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example\r\nX-Thing:  spaced  \r\n\r\n";
    size_t used;
    int status = 0;
    cr_assert_eq(parse_all(req, &used, &status), RM_HTTP_COMPLETE);
    cr_expect_eq(used, strlen(req));
    expect_span(req, head.method_off, head.method_len, "GET");
    expect_span(req, head.target_off, head.target_len, "/a/b?x=1&y=2");
    cr_expect_eq(head.http_major, 1);
    cr_expect_eq(head.http_minor, 1);
    cr_assert_eq(head.field_count, 2);
    expect_span(req, head.fields[0].name_off, head.fields[0].name_len, "Host");
    expect_span(req, head.fields[0].value_off, head.fields[0].value_len, "example");
    expect_span(req, head.fields[1].value_off, head.fields[1].value_len, "spaced");
    cr_expect(head.flags & RM_HTTP_KEEP_ALIVE);
    cr_expect_eq(head.head_len, strlen(req));
}

Test(http_parse, content_length_body_and_pipelined_rest)
{
    const char *req = "POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET / "
                      "HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t used;
    int status = 0;
    cr_assert_eq(parse_all(req, &used, &status), RM_HTTP_COMPLETE);
    cr_expect_eq(used, strlen(req) - strlen("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    cr_expect_eq(body.len, 5);
    cr_expect(memcmp(body.data, "hello", 5) == 0);
    cr_expect_eq(head.content_length, 5);
    cr_expect_eq(head.head_len, strlen("POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"));
}

Test(http_parse, chunked_body_decoded_across_buffers)
{
    char part1[] = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
    char part2[] = "lo\r\n6\r\n world\r\n0\r\n\r\n";
    size_t used;
    int status = 0;
    rm_http_parser_init(&parser, &limits);
    memset(&body, 0, sizeof(body));
    rm_http_begin(&parser, &head, part1, collect, &body);
    cr_assert_eq(rm_http_feed(&parser, part1, strlen(part1), &used, &status), RM_HTTP_NEED_MORE);
    cr_assert(rm_http_head_done(&parser));
    cr_expect(head.flags & RM_HTTP_CHUNKED);
    cr_assert_eq(rm_http_feed(&parser, part2, strlen(part2), &used, &status), RM_HTTP_COMPLETE);
    cr_expect_eq(used, strlen(part2));
    cr_expect_eq(body.len, 11);
    cr_expect(memcmp(body.data, "hello world", 11) == 0, "body '%.*s'", (int)body.len, body.data);
}

Test(http_parse, incomplete_head_needs_more_at_every_split)
{
    char req[] = "GET /split HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n";
    size_t n = strlen(req);
    for (size_t cut = 1; cut < n; cut++) {
        size_t used;
        int status = 0;
        rm_http_parser_init(&parser, &limits);
        rm_http_begin(&parser, &head, req, collect, &body);
        rm_http_result_t r = rm_http_feed(&parser, req, cut, &used, &status);
        cr_assert_eq(r, RM_HTTP_NEED_MORE, "cut at %zu gave %d (status %d)", cut, r, status);
        cr_assert(!rm_http_head_done(&parser), "head done with only %zu bytes", cut);
        /* The caller re-parses the grown buffer from a fresh begin. */
        rm_http_begin(&parser, &head, req, collect, &body);
        cr_assert_eq(rm_http_feed(&parser, req, n, &used, &status), RM_HTTP_COMPLETE, "cut %zu",
                     cut);
        cr_assert_eq(head.field_count, 2);
    }
}

Test(http_parse, http10_is_not_keep_alive_unless_asked)
{
    size_t used;
    int status = 0;
    cr_assert_eq(parse_all("GET / HTTP/1.0\r\n\r\n", &used, &status), RM_HTTP_COMPLETE);
    cr_expect(!(head.flags & RM_HTTP_KEEP_ALIVE));
    cr_assert_eq(parse_all("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &used, &status),
                 RM_HTTP_COMPLETE);
    cr_expect(head.flags & RM_HTTP_KEEP_ALIVE);
    cr_assert_eq(
        parse_all("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", &used, &status),
        RM_HTTP_COMPLETE);
    cr_expect(!(head.flags & RM_HTTP_KEEP_ALIVE));
}

Test(http_parse, head_method_flag)
{
    size_t used;
    int status = 0;
    cr_assert_eq(parse_all("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", &used, &status), RM_HTTP_COMPLETE);
    cr_expect(head.flags & RM_HTTP_HEAD);
}

struct bad_case {
    const char *req;
    int status;
};

Test(http_parse, malformed_requests_get_the_right_status)
{
    static const struct bad_case cases[] = {
        {"GARBAGE\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
         400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  folded\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
        {"GET / HTTP/3.0\r\n\r\n", 505},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999\r\n\r\n", 413},
        {"GET / HTTP/1.1\r\nHost: h\r\nExpect: something-else\r\n\r\n", 417},
        {"GET / HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        {"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400},
        /* CVE-2023-30589: llhttp 8.1.0 ends a head at a bare CR. */
        {"GET /a HTTP/1.1\r\nHost: t\r\n\rXGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rXGET / "
         "HTTP/1.1\r\nHost: t\r\n\r\n",
         400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX:\r\n folded\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: "
         "chunked\r\n\r\n0\r\n\r\n",
         501},
        {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
        {"GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"QUERY / HTTP/1.1\r\nHost: h\r\n\r\n", 501},
        {"get / HTTP/1.1\r\nHost: h\r\n\r\n", 501},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t used;
        int status = 0;
        rm_http_result_t r = parse_all(cases[i].req, &used, &status);
        cr_expect_eq(r, RM_HTTP_ERROR, "case %zu (%s) parsed", i, cases[i].req);
        cr_expect_eq(status, cases[i].status, "case %zu (%s): status %d, want %d", i, cases[i].req,
                     status, cases[i].status);
    }
}

Test(http_parse, limits)
{
    static char req[20000];
    size_t used;
    int status = 0;
    /* Target over max_target. */
    strcpy(req, "GET /");
    memset(req + 5, 'a', 5000);
    strcpy(req + 5005, " HTTP/1.1\r\nHost: h\r\n\r\n");
    cr_assert_eq(parse_all(req, &used, &status), RM_HTTP_ERROR);
    cr_expect_eq(status, 414);
    /* Head over max_head. */
    strcpy(req, "GET / HTTP/1.1\r\nHost: h\r\nX: ");
    size_t n = strlen(req);
    memset(req + n, 'b', 9000);
    strcpy(req + n + 9000, "\r\n\r\n");
    cr_assert_eq(parse_all(req, &used, &status), RM_HTTP_ERROR);
    cr_expect_eq(status, 431);
    /* Too many header fields. */
    char *p = req + sprintf(req, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < RM_HTTP_MAX_HEADERS + 1; i++)
        p += sprintf(p, "H%d: v\r\n", i);
    strcpy(p, "\r\n");
    cr_assert_eq(parse_all(req, &used, &status), RM_HTTP_ERROR);
    cr_expect_eq(status, 431);
}

Test(http_parse, expect_continue_flag)
{
    size_t used;
    int status = 0;
    cr_assert_eq(
        parse_all("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
                  &used, &status),
        RM_HTTP_NEED_MORE);
    cr_expect(head.flags & RM_HTTP_EXPECT_CONTINUE);
}

Test(http_parse, trailers_are_not_merged_into_headers)
{
    const char *req = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "3\r\nabc\r\n0\r\nX-Trailer: a\r\nContent-Length: 5\r\n\r\n";
    size_t used;
    int status = 0;
    cr_assert_eq(parse_all(req, &used, &status), RM_HTTP_COMPLETE, "status %d", status);
    cr_expect_eq(used, strlen(req));
    cr_expect_eq(head.field_count, 2, "trailer fields were added as headers");
    cr_expect_eq(body.len, 3);
}

Test(http_parse, trailing_htab_is_ows_in_framing_fields)
{
    size_t used;
    int status = 0;
    cr_assert_eq(parse_all("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\t5\t\r\n\r\nhello", &used,
                           &status),
                 RM_HTTP_COMPLETE, "status %d", status);
    cr_expect_eq(head.content_length, 5);
    cr_expect_eq(body.len, 5);
    cr_assert_eq(parse_all("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\t\r\n\r\n"
                           "1\r\nx\r\n0\r\n\r\n",
                           &used, &status),
                 RM_HTTP_COMPLETE, "status %d", status);
    cr_expect(head.flags & RM_HTTP_CHUNKED);
    cr_assert_eq(
        parse_all("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\t\r\n\r\n", &used, &status),
        RM_HTTP_COMPLETE);
    cr_expect(!(head.flags & RM_HTTP_KEEP_ALIVE));
    /* An HTAB inside a value stays; only the line's last whitespace is OWS. */
    cr_assert_eq(parse_all("GET / HTTP/1.1\r\nHost: h\r\nX: a\tb\t\r\n\r\n", &used, &status),
                 RM_HTTP_COMPLETE);
    expect_span(req_buf, head.fields[1].value_off, head.fields[1].value_len, "a\tb");
}

Test(http_parse, htab_at_the_end_of_what_arrived_waits_for_the_line_end)
{
    size_t used;
    int status = 0;
    cr_expect_eq(parse_all("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\t", &used, &status),
                 RM_HTTP_NEED_MORE);
    cr_expect_eq(parse_all("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\t\r", &used, &status),
                 RM_HTTP_NEED_MORE);
    cr_expect_eq(parse_all("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\tx", &used, &status),
                 RM_HTTP_ERROR);
    cr_expect_eq(status, 400);
    /* A tab after a bare CR is no trailing whitespace: the CR is the error. */
    cr_expect_eq(parse_all("POST / HTTP/1.1\r\nHost: h\r\nX: a\r\t\t", &used, &status),
                 RM_HTTP_ERROR);
    cr_expect_eq(status, 400);
}

Test(http_parse, request_line_without_version_is_400_at_once)
{
    size_t used;
    int status = 0;
    cr_expect_eq(parse_all("GET /\r\n", &used, &status), RM_HTTP_ERROR);
    cr_expect_eq(status, 400);
    cr_expect_eq(parse_all("GET /x\n", &used, &status), RM_HTTP_ERROR);
    cr_expect_eq(status, 400);
    cr_expect_eq(parse_all("GET /\r\nHost: h\r\n\r\n", &used, &status), RM_HTTP_ERROR);
    cr_expect_eq(status, 400);
    cr_expect_eq(parse_all("GET / HTTP/2.0\r\nHost: h\r\n\r\n", &used, &status), RM_HTTP_ERROR);
    cr_expect_eq(status, 505);
}

Test(http_parse, connect_never_reaches_the_app)
{
    size_t used;
    int status = 0;
    cr_expect_eq(parse_all("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                           &used, &status),
                 RM_HTTP_ERROR);
    cr_expect_eq(status, 501);
    cr_expect_eq(parse_all("CONNECT [::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n", &used, &status),
                 RM_HTTP_ERROR);
    cr_expect_eq(status, 501);
    static const char *malformed[] = {
        "CONNECT /echo HTTP/1.1\r\nHost: t\r\n\r\n",
        "CONNECT * HTTP/1.1\r\nHost: t\r\n\r\n",
        "CONNECT example.com HTTP/1.1\r\nHost: t\r\n\r\n",
        "CONNECT example.com:http HTTP/1.1\r\nHost: t\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        status = 0;
        cr_expect_eq(parse_all(malformed[i], &used, &status), RM_HTTP_ERROR, "%s", malformed[i]);
        cr_expect_eq(status, 400, "%s", malformed[i]);
    }
}

Test(http_parse, http10_chunked_never_keeps_the_connection)
{
    size_t used;
    int status = 0;
    cr_assert_eq(parse_all("POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: "
                           "chunked\r\n\r\n0\r\n\r\n",
                           &used, &status),
                 RM_HTTP_COMPLETE, "status %d", status);
    cr_expect(!(head.flags & RM_HTTP_KEEP_ALIVE));
}
