/*
 * test_chunked.c - supervisor/chunked.c through its public header.
 */
#include "ringmaster/chunked.h"

#include <criterion/criterion.h>
#include <string.h>

typedef struct acc {
    char data[8192];
    size_t len;
} acc_t;

static int collect(void *ctx, const char *at, size_t len)
{
    acc_t *a = ctx;
    cr_assert_leq(a->len + len, sizeof(a->data));
    memcpy(a->data + a->len, at, len);
    a->len += len;
    return 0;
}

/* Decode `body` whole; returns the result, with *used and *status. */
static rm_chunked_result_t decode(const char *body, acc_t *a, size_t *used, int *status)
{
    rm_chunked_t d;
    rm_chunked_init(&d, 16384, 100);
    memset(a, 0, sizeof(*a));
    return rm_chunked_feed(&d, body, strlen(body), collect, a, used, status);
}

/* Decode `body` cut at every position: the same result, body and end. */
static void expect_same_when_split(const char *body)
{
    acc_t whole;
    size_t whole_used;
    int whole_status;
    rm_chunked_result_t want = decode(body, &whole, &whole_used, &whole_status);
    size_t n = strlen(body);
    for (size_t cut = 0; cut <= n; cut++) {
        rm_chunked_t d;
        acc_t a = {0};
        size_t used = 0, used2 = 0;
        int status = 0;
        rm_chunked_init(&d, 16384, 100);
        rm_chunked_result_t r = rm_chunked_feed(&d, body, cut, collect, &a, &used, &status);
        if (r == RM_CHUNKED_NEED_MORE && cut < n) {
            r = rm_chunked_feed(&d, body + cut, n - cut, collect, &a, &used2, &status);
            used = cut + used2;
        }
        cr_assert_eq(r, want, "cut %zu: result %d, whole %d", cut, r, want);
        if (r == RM_CHUNKED_ERROR) {
            cr_expect_eq(status, whole_status, "cut %zu", cut);
            continue;
        }
        cr_expect_eq(used, whole_used, "cut %zu", cut);
        cr_expect_eq(a.len, whole.len, "cut %zu", cut);
        cr_expect(memcmp(a.data, whole.data, a.len) == 0, "cut %zu", cut);
    }
}

Test(chunked, plain_body_and_what_follows)
{
    acc_t a;
    size_t used;
    int status;
    const char *body = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    cr_assert_eq(decode(body, &a, &used, &status), RM_CHUNKED_DONE);
    cr_expect_eq(used, strlen("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"));
    cr_expect_eq(a.len, 11);
    cr_expect(memcmp(a.data, "hello world", 11) == 0);
    expect_same_when_split(body);
}

Test(chunked, extensions_the_grammar_allows)
{
    static const char *ok[] = {
        "5;a\r\nhello\r\n0\r\n\r\n",
        "5;a=b\r\nhello\r\n0\r\n\r\n",
        "5 ;a=b\r\nhello\r\n0\r\n\r\n",             /* BWS before ';' */
        "5 ; a = b\r\nhello\r\n0\r\n\r\n",          /* BWS around ';' and '=' */
        "5\t;\ta\t=\tb\r\nhello\r\n0\r\n\r\n",      /* HTAB is BWS too */
        "5;a=\"x\\\"z\"\r\nhello\r\n0\r\n\r\n",     /* quoted-pair */
        "5;a=\"b;c=d\"\r\nhello\r\n0\r\n\r\n",      /* separators inside quotes */
        "5;a=\"\"\r\nhello\r\n0\r\n\r\n",           /* empty quoted string */
        "5;a=\"\\\\\";b\r\nhello\r\n0;z=1\r\n\r\n", /* an escaped backslash */
        "5;a=\"\xe9\"\r\nhello\r\n0\r\n\r\n",       /* obs-text */
        "5;a;b;c=d\r\nhello\r\n0\r\n\r\n",
        "5;a=b ;c\r\nhello\r\n0\r\n\r\n",
        "5;a=\"q\" ;c\r\nhello\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        acc_t a;
        size_t used;
        int status = 0;
        cr_expect_eq(decode(ok[i], &a, &used, &status), RM_CHUNKED_DONE, "'%s' status %d", ok[i],
                     status);
        cr_expect_eq(a.len, 5, "'%s'", ok[i]);
        cr_expect_eq(used, strlen(ok[i]), "'%s'", ok[i]);
        expect_same_when_split(ok[i]);
    }
}

Test(chunked, malformed_framing_is_400)
{
    static const char *bad[] = {
        "\r\nhello\r\n0\r\n\r\n",               /* empty size */
        "5 \r\nhello\r\n0\r\n\r\n",             /* whitespace, no extension */
        "5;a=b \r\nhello\r\n0\r\n\r\n",         /* whitespace before the line end */
        "5;\r\nhello\r\n0\r\n\r\n",             /* no name */
        "5;=b\r\nhello\r\n0\r\n\r\n",           /* no name before '=' */
        "5;a=\r\nhello\r\n0\r\n\r\n",           /* no value after '=' */
        "5;a=\"x\r\nhello\r\n0\r\n\r\n",        /* CR inside a quoted string */
        "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n",     /* text after the closing quote */
        "5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n", /* a control byte escaped */
        "5;a=b\rc\r\nhello\r\n0\r\n\r\n",       /* bare CR in an extension */
        "5;a=\x7f\r\nhello\r\n0\r\n\r\n",       /* DEL is no tchar */
        "0x5\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",  /* bare LF after the size */
        "5\r\nhello\n0\r\n\r\n",  /* bare LF after the data */
        "5\r\nhelloX0\r\n\r\n",   /* no CRLF after the data */
        "5\r\nhello\r\n0\r\n\n",  /* bare LF ending the body */
        "5\r\nhello\r\n0\r\n\rX", /* CR then not LF (CVE-2023-30589) */
        "5\r\nhello\r\n0\r\nX: a\n\r\n",
        "5\r\nhello\r\n0\r\nX: a\r\n folded\r\n\r\n", /* obs-fold */
        "5\r\nhello\r\n0\r\n X: a\r\n\r\n",
        "5\r\nhello\r\n0\r\nX : a\r\n\r\n",
        "5\r\nhello\r\n0\r\nX: a\x01\r\n\r\n",
        "5\r\nhello\r\n0\r\n: a\r\n\r\n",
        "10000000000000000\r\n", /* 65 bits */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        acc_t a;
        size_t used;
        int status = 0;
        cr_expect_eq(decode(bad[i], &a, &used, &status), RM_CHUNKED_ERROR, "'%s'", bad[i]);
        cr_expect_eq(status, 400, "'%s'", bad[i]);
        expect_same_when_split(bad[i]);
    }
}

Test(chunked, sizes_up_to_64_bits_and_leading_zeros)
{
    rm_chunked_t d;
    size_t used;
    int status;
    const char *max = "000000ffffffffffffffff\r\nab";
    rm_chunked_init(&d, 16384, 100);
    cr_assert_eq(rm_chunked_feed(&d, max, strlen(max), NULL, NULL, &used, &status),
                 RM_CHUNKED_NEED_MORE);
    cr_expect_eq(d.remaining, UINT64_MAX - 2);
}

Test(chunked, long_extension_lines_are_refused)
{
    char line[RM_CHUNKED_MAX_LINE + 64];
    memset(line, 0, sizeof(line));
    strcpy(line, "5");
    while (strlen(line) < RM_CHUNKED_MAX_LINE)
        strcat(line, ";a=b");
    strcat(line, "\r\n");
    acc_t a;
    size_t used;
    int status = 0;
    cr_expect_eq(decode(line, &a, &used, &status), RM_CHUNKED_ERROR);
    cr_expect_eq(status, 400);
}

Test(chunked, trailers_are_checked_and_bounded)
{
    acc_t a;
    size_t used;
    int status = 0;
    const char *ok = "3\r\nabc\r\n0\r\nX-A: 1\r\nContent-Length: 9\r\nX-B:\t\xe9 v \r\n\r\n";
    cr_expect_eq(decode(ok, &a, &used, &status), RM_CHUNKED_DONE, "status %d", status);
    cr_expect_eq(used, strlen(ok));
    expect_same_when_split(ok);

    rm_chunked_t d;
    rm_chunked_init(&d, 16384, 2);
    const char *three = "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    cr_expect_eq(rm_chunked_feed(&d, three, strlen(three), NULL, NULL, &used, &status),
                 RM_CHUNKED_ERROR);
    cr_expect_eq(status, 431);

    rm_chunked_init(&d, 16, 100);
    const char *big = "0\r\nX-Long: 0123456789\r\n\r\n";
    cr_expect_eq(rm_chunked_feed(&d, big, strlen(big), NULL, NULL, &used, &status),
                 RM_CHUNKED_ERROR);
    cr_expect_eq(status, 431);
}

static int refuse(void *ctx, const char *at, size_t len)
{
    (void)ctx;
    (void)at;
    (void)len;
    return -1;
}

Test(chunked, a_refusing_callback_stops_with_status_0)
{
    rm_chunked_t d;
    size_t used;
    int status = -1;
    const char *body = "3\r\nabc\r\n0\r\n\r\n";
    rm_chunked_init(&d, 16384, 100);
    cr_expect_eq(rm_chunked_feed(&d, body, strlen(body), refuse, NULL, &used, &status),
                 RM_CHUNKED_ERROR);
    cr_expect_eq(status, 0);
    cr_expect_eq(used, 3);
}
