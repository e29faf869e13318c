/*
 * test_forwarded.c - common/forwarded.c: the --forwarded-allow-ips list and
 * the client that X-Forwarded-For / X-Forwarded-Proto / Forwarded report,
 * believed only through trusted hops.
 */
#include "ringmaster/forwarded.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static char why[256];

static rm_fwd_allow_t allow_of(const char *text)
{
    rm_fwd_allow_t a;
    int rc = rm_fwd_allow_parse(&a, text, why, sizeof(why));
    cr_assert_eq(rc, 0, "parsing '%s': %s", text, why);
    return a;
}

static bool match(const rm_fwd_allow_t *a, const char *ip)
{
    uint8_t addr[16] = {0};
    if (strchr(ip, ':') == NULL) {
        cr_assert_eq(inet_pton(AF_INET, ip, addr), 1, "test address %s", ip);
        return rm_fwd_allow_match(a, 4, addr);
    }
    cr_assert_eq(inet_pton(AF_INET6, ip, addr), 1, "test address %s", ip);
    return rm_fwd_allow_match(a, 6, addr);
}

static rm_fwd_span_t S(const char *s)
{
    return (rm_fwd_span_t){s, strlen(s)};
}

Test(forwarded, allow_list_addresses_and_networks)
{
    rm_fwd_allow_t a = allow_of(" 127.0.0.1 , ::1,10.0.0.0/8,2001:db8::/32, 192.168.1.128/25");
    cr_assert_eq(a.count, 5u);
    cr_assert(!a.any);
    cr_assert(match(&a, "127.0.0.1"));
    cr_assert(!match(&a, "127.0.0.2"));
    cr_assert(match(&a, "::1"));
    cr_assert(match(&a, "10.255.3.4"));
    cr_assert(!match(&a, "11.0.0.1"));
    cr_assert(match(&a, "2001:db8:ffff::5"));
    cr_assert(!match(&a, "2001:db9::5"));
    cr_assert(match(&a, "192.168.1.200"));
    cr_assert(!match(&a, "192.168.1.100"));
    /* An IPv4 client on a dual-stack socket shows up IPv4-mapped. */
    cr_assert(match(&a, "::ffff:127.0.0.1"));
    cr_assert(match(&a, "::ffff:10.1.2.3"));
    cr_assert(!match(&a, "::ffff:127.0.0.2"));
}

Test(forwarded, allow_list_star_and_unix)
{
    rm_fwd_allow_t a = allow_of("*");
    uint8_t none[16] = {0};
    cr_assert(a.any);
    cr_assert(match(&a, "203.0.113.9"));
    cr_assert(rm_fwd_allow_match(&a, 0, none), "'*' trusts a Unix-socket peer");
    a = allow_of(RM_FWD_DEFAULT);
    cr_assert(!rm_fwd_allow_match(&a, 0, none), "a Unix-socket peer is trusted only by '*'");
    cr_assert(match(&a, "127.0.0.1") && match(&a, "::1") && !match(&a, "127.0.0.2"));
}

Test(forwarded, allow_list_errors_name_the_item)
{
    rm_fwd_allow_t a;
    const char *bad[] = {"",           "127.0.0.1,",   "localhost", "10.0.0.0/33",
                         "::1/129",    "1.2.3.4/x",    "1.2.3.4.5", "10.0.0.0/",
                         "fe80::1%lo", "1.2.3.4,,::1", "[::1]",     NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        why[0] = '\0';
        cr_assert_eq(rm_fwd_allow_parse(&a, bad[i], why, sizeof(why)), -EINVAL,
                     "'%s' should be refused", bad[i]);
        cr_assert(why[0] != '\0', "'%s': no reason given", bad[i]);
    }
    rm_fwd_allow_parse(&a, "127.0.0.1,bogus", why, sizeof(why));
    cr_assert(strstr(why, "'bogus'") != NULL, "the reason names the item: %s", why);
}

Test(forwarded, allow_list_too_long)
{
    char text[2048] = "";
    rm_fwd_allow_t a;
    for (int i = 0; i <= RM_FWD_MAX_NETS; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s10.0.0.%d", i ? "," : "", i);
    cr_assert_eq(rm_fwd_allow_parse(&a, text, why, sizeof(why)), -EINVAL);
}

static rm_fwd_result_t xff(const char *allow, const char *a, const char *b, const char *proto)
{
    rm_fwd_allow_t al = allow_of(allow);
    rm_fwd_span_t lines[2], p = proto ? S(proto) : S("");
    size_t n = 0;
    rm_fwd_result_t r;
    if (a != NULL)
        lines[n++] = S(a);
    if (b != NULL)
        lines[n++] = S(b);
    rm_fwd_resolve(&al, lines, n, &p, proto ? 1 : 0, NULL, 0, &r);
    return r;
}

Test(forwarded, xff_rightmost_untrusted_is_the_client)
{
    /* The client may prepend anything; only the hops our proxies added count. */
    rm_fwd_result_t r = xff("127.0.0.1,10.0.0.0/8", "6.6.6.6, 203.0.113.7, 10.1.1.1", NULL, NULL);
    cr_assert_str_eq(r.addr, "203.0.113.7");
    cr_assert_eq(r.addr_len, strlen("203.0.113.7"));
    cr_assert(!r.has_port);
    cr_assert_eq(r.scheme, RM_FWD_SCHEME_NONE);
}

Test(forwarded, xff_all_trusted_takes_the_leftmost)
{
    rm_fwd_result_t r = xff("*", "198.51.100.1, 10.0.0.2", NULL, "https");
    cr_assert_str_eq(r.addr, "198.51.100.1");
    cr_assert_eq(r.scheme, RM_FWD_SCHEME_HTTPS);
}

Test(forwarded, xff_across_header_lines_and_forms)
{
    /* Two lines are one list; ports and brackets are taken off. */
    rm_fwd_result_t r = xff("127.0.0.1", "198.51.100.1:1234", "[2001:db8::7]:443", NULL);
    cr_assert_str_eq(r.addr, "2001:db8::7");
    cr_assert(r.has_port);
    cr_assert_eq(r.port, 443);
    r = xff("127.0.0.1,2001:db8::7", "198.51.100.1:1234", "[2001:db8::7]:443", NULL);
    cr_assert_str_eq(r.addr, "198.51.100.1");
    cr_assert_eq(r.port, 1234);
    r = xff("127.0.0.1", " , ::ffff:192.0.2.1 ,", NULL, NULL);
    cr_assert_str_eq(r.addr, "192.0.2.1", "mapped IPv4 shown as IPv4, empty items skipped");
    r = xff("127.0.0.1", "2001:db8::1", NULL, NULL);
    cr_assert_str_eq(r.addr, "2001:db8::1");
}

Test(forwarded, xff_garbage_gives_no_address)
{
    rm_fwd_result_t r = xff("127.0.0.1", "198.51.100.1, unknown", NULL, "http");
    cr_assert_eq(r.addr_len, 0u, "a hop that is not an address stops the walk: got %s", r.addr);
    cr_assert_eq(r.scheme, RM_FWD_SCHEME_HTTP);
    r = xff("127.0.0.1", "<script>", NULL, NULL);
    cr_assert_eq(r.addr_len, 0u);
    r = xff("127.0.0.1", "1.2.3.4:99999", NULL, NULL);
    cr_assert_str_eq(r.addr, "1.2.3.4");
    cr_assert(!r.has_port, "a port out of range is no port");
}

Test(forwarded, xfp_rightmost_item_and_only_http_or_https)
{
    cr_assert_eq(xff("*", NULL, NULL, "https").scheme, RM_FWD_SCHEME_HTTPS);
    cr_assert_eq(xff("*", NULL, NULL, " HTTPS ").scheme, RM_FWD_SCHEME_HTTPS);
    cr_assert_eq(xff("*", NULL, NULL, "http, https").scheme, RM_FWD_SCHEME_HTTPS);
    cr_assert_eq(xff("*", NULL, NULL, "https, http").scheme, RM_FWD_SCHEME_HTTP);
    cr_assert_eq(xff("*", NULL, NULL, "ftp").scheme, RM_FWD_SCHEME_NONE);
    cr_assert_eq(xff("*", NULL, NULL, "").scheme, RM_FWD_SCHEME_NONE);
    cr_assert_eq(xff("*", NULL, NULL, "https").addr_len, 0u);
}

static rm_fwd_result_t fwd(const char *allow, const char *value)
{
    rm_fwd_allow_t al = allow_of(allow);
    rm_fwd_span_t line = S(value);
    rm_fwd_result_t r;
    rm_fwd_resolve(&al, NULL, 0, NULL, 0, &line, 1, &r);
    return r;
}

Test(forwarded, rfc7239_forwarded)
{
    rm_fwd_result_t r = fwd("127.0.0.1", "for=192.0.2.60;proto=https;by=203.0.113.43");
    cr_assert_str_eq(r.addr, "192.0.2.60");
    cr_assert_eq(r.scheme, RM_FWD_SCHEME_HTTPS);

    r = fwd("127.0.0.1,10.0.0.1", "for=6.6.6.6;proto=http, For=\"[2001:db8:cafe::17]:4711\";"
                                  "Proto=HTTPS, for=10.0.0.1;proto=http");
    cr_assert_str_eq(r.addr, "2001:db8:cafe::17");
    cr_assert(r.has_port);
    cr_assert_eq(r.port, 4711);
    cr_assert_eq(r.scheme, RM_FWD_SCHEME_HTTPS, "the scheme of the client's own element");

    r = fwd("127.0.0.1", "for=unknown;proto=https");
    cr_assert_eq(r.addr_len, 0u);
    cr_assert_eq(r.scheme, RM_FWD_SCHEME_HTTPS);
    r = fwd("127.0.0.1", "for=_hidden, for=198.51.100.17");
    cr_assert_str_eq(r.addr, "198.51.100.17");
    r = fwd("127.0.0.1", "proto=https");
    cr_assert_eq(r.addr_len, 0u, "an element without for= names no client");
    r = fwd("127.0.0.1", "for=\"198.51.100.17:_port\"; by=\"a,b\", for=192.0.2.1");
    cr_assert_str_eq(r.addr, "192.0.2.1", "commas inside quotes do not split elements");
}

Test(forwarded, x_forwarded_headers_win_over_forwarded)
{
    rm_fwd_allow_t al = allow_of("127.0.0.1");
    rm_fwd_span_t x = S("198.51.100.2"), f = S("for=192.0.2.1;proto=https");
    rm_fwd_result_t r;
    rm_fwd_resolve(&al, &x, 1, NULL, 0, &f, 1, &r);
    cr_assert_str_eq(r.addr, "198.51.100.2");
    cr_assert_eq(r.scheme, RM_FWD_SCHEME_NONE);
}
