/*
 * forwarded.c - trusted proxies and the client they report (forwarded.h).
 *
 * Addresses are parsed with inet_pton from a bounded local copy, so a header
 * value can never make us read or write outside it; anything that does not
 * parse as an address is not an address (never a host name to resolve).
 */
#include "ringmaster/forwarded.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_ELEMENTS 64 /* Forwarded elements looked at; more hops than that are not real */

__attribute__((format(printf, 3, 4))) static int fail(char *why, size_t why_len, const char *fmt,
                                                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static rm_fwd_span_t trim(const char *p, size_t n)
{
    while (n > 0 && is_space(p[0]))
        p++, n--;
    while (n > 0 && is_space(p[n - 1]))
        n--;
    return (rm_fwd_span_t){p, n};
}

/* IPv4-mapped IPv6 (::ffff:a.b.c.d) is the IPv4 address. */
static void unmap(uint8_t *family, uint8_t addr[16])
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (*family == 6 && memcmp(addr, prefix, sizeof(prefix)) == 0) {
        memmove(addr, addr + 12, 4);
        memset(addr + 4, 0, 12);
        *family = 4;
    }
}

/* An IPv4 or IPv6 address, nothing else. */
static bool parse_ip(const char *p, size_t n, uint8_t *family, uint8_t addr[16])
{
    char text[INET6_ADDRSTRLEN];

    if (n == 0 || n >= sizeof(text))
        return false;
    memcpy(text, p, n);
    text[n] = '\0';
    memset(addr, 0, 16);
    if (memchr(p, ':', n) == NULL) {
        if (inet_pton(AF_INET, text, addr) != 1)
            return false;
        *family = 4;
        return true;
    }
    if (inet_pton(AF_INET6, text, addr) != 1)
        return false;
    *family = 6;
    unmap(family, addr);
    return true;
}

static bool parse_port(const char *p, size_t n, uint16_t *port)
{
    unsigned v = 0;

    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* A node as proxies write it: "1.2.3.4", "1.2.3.4:80", "::1", "[::1]",
 * "[::1]:80", optionally in double quotes (RFC 7239 requires them around
 * IPv6). A port that is not a number (RFC 7239's obfuscated "_x") is ignored. */
static bool parse_node(rm_fwd_span_t s, uint8_t *family, uint8_t addr[16], bool *has_port,
                       uint16_t *port)
{
    const char *p;
    size_t n;

    s = trim(s.p, s.n);
    if (s.n >= 2 && s.p[0] == '"' && s.p[s.n - 1] == '"')
        s = trim(s.p + 1, s.n - 2);
    p = s.p;
    n = s.n;
    *has_port = false;
    if (n > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (close == NULL)
            return false;
        size_t inner = (size_t)(close - p) - 1;
        size_t rest = n - inner - 2;
        if (!parse_ip(p + 1, inner, family, addr) || memchr(p + 1, ':', inner) == NULL)
            return false;
        if (rest > 0) {
            if (close[1] != ':')
                return false;
            *has_port = parse_port(close + 2, rest - 1, port);
        }
        return true;
    }
    const char *colon = memchr(p, ':', n);
    if (colon != NULL && memchr(colon + 1, ':', n - (size_t)(colon + 1 - p)) == NULL) {
        /* Exactly one colon: IPv4 with a port. */
        if (!parse_ip(p, (size_t)(colon - p), family, addr) || *family != 4)
            return false;
        *has_port = parse_port(colon + 1, n - (size_t)(colon + 1 - p), port);
        return true;
    }
    return parse_ip(p, n, family, addr);
}

int rm_fwd_allow_parse(rm_fwd_allow_t *out, const char *text, char *why, size_t why_len)
{
    memset(out, 0, sizeof(*out));
    for (const char *p = text;;) {
        size_t len = strcspn(p, ",");
        rm_fwd_span_t item = trim(p, len);
        if (item.n == 0)
            return fail(why, why_len, "empty item in '%s' (expected IP[/PREFIX],... or '*')", text);
        if (item.n == 1 && item.p[0] == '*') {
            out->any = true;
        } else {
            rm_fwd_net_t net;
            const char *slash = memchr(item.p, '/', item.n);
            size_t alen = slash != NULL ? (size_t)(slash - item.p) : item.n;
            unsigned prefix;
            if (!parse_ip(item.p, alen, &net.family, net.addr))
                return fail(why, why_len, "'%.*s' is not an IPv4 or IPv6 address", (int)item.n,
                            item.p);
            prefix = net.family == 4 ? 32 : 128;
            if (slash != NULL) {
                uint16_t v;
                size_t plen = item.n - alen - 1;
                if (!parse_port(slash + 1, plen, &v) || v > prefix)
                    return fail(why, why_len, "'%.*s': the prefix length must be 0..%u",
                                (int)item.n, item.p, prefix);
                /* A mapped address kept its IPv6 prefix length: make it IPv4's. */
                if (net.family == 4 && memchr(item.p, ':', alen) != NULL)
                    v = v >= 96 ? (uint16_t)(v - 96) : 0;
                prefix = v;
            }
            net.prefix = (uint8_t)prefix;
            if (out->count == RM_FWD_MAX_NETS)
                return fail(why, why_len, "more than %d addresses in '%s'", RM_FWD_MAX_NETS, text);
            out->nets[out->count++] = net;
        }
        if (p[len] == '\0')
            return 0;
        p += len + 1;
    }
}

static bool net_match(const rm_fwd_net_t *net, uint8_t family, const uint8_t addr[16])
{
    unsigned bytes = net->prefix / 8, bits = net->prefix % 8;

    if (net->family != family)
        return false;
    if (memcmp(net->addr, addr, bytes) != 0)
        return false;
    if (bits == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - bits));
    return (net->addr[bytes] & mask) == (addr[bytes] & mask);
}

bool rm_fwd_allow_match(const rm_fwd_allow_t *allow, uint8_t family, const uint8_t addr[16])
{
    uint8_t a[16];

    if (allow->any)
        return true;
    if (family != 4 && family != 6)
        return false;
    memcpy(a, addr, 16);
    if (family == 4)
        memset(a + 4, 0, 12);
    unmap(&family, a);
    for (uint32_t i = 0; i < allow->count; i++)
        if (net_match(&allow->nets[i], family, a))
            return true;
    return false;
}

static void set_client(rm_fwd_result_t *out, uint8_t family, const uint8_t addr[16], bool has_port,
                       uint16_t port)
{
    if (inet_ntop(family == 4 ? AF_INET : AF_INET6, addr, out->addr, sizeof(out->addr)) == NULL) {
        out->addr_len = 0;
        return;
    }
    out->addr_len = strlen(out->addr);
    out->has_port = has_port;
    out->port = has_port ? port : 0;
}

static enum rm_fwd_scheme parse_scheme(rm_fwd_span_t s)
{
    s = trim(s.p, s.n);
    if (s.n >= 2 && s.p[0] == '"' && s.p[s.n - 1] == '"')
        s = trim(s.p + 1, s.n - 2);
    if (s.n == 4 && strncasecmp(s.p, "http", 4) == 0)
        return RM_FWD_SCHEME_HTTP;
    if (s.n == 5 && strncasecmp(s.p, "https", 5) == 0)
        return RM_FWD_SCHEME_HTTPS;
    return RM_FWD_SCHEME_NONE;
}

/* The comma-separated items of several header lines, right to left: start
 * with *line = n and *pos = SIZE_MAX; false when none is left. *pos is where
 * the unread part of line *line - 1 ends (SIZE_MAX: at the line's end). */
static bool prev_item(const rm_fwd_span_t *lines, size_t *line, size_t *pos, rm_fwd_span_t *item)
{
    while (*line > 0) {
        const rm_fwd_span_t *l = &lines[*line - 1];
        size_t end = *pos == SIZE_MAX ? l->n : *pos;
        size_t start = end;
        while (start > 0 && l->p[start - 1] != ',')
            start--;
        *item = trim(l->p + start, end - start);
        if (start == 0) {
            (*line)--;
            *pos = SIZE_MAX;
        } else {
            *pos = start - 1;
        }
        if (item->n > 0)
            return true;
    }
    return false;
}

static void resolve_xff(const rm_fwd_allow_t *allow, const rm_fwd_span_t *xff, size_t n_xff,
                        rm_fwd_result_t *out)
{
    size_t line = n_xff, end = SIZE_MAX;
    rm_fwd_span_t item;
    uint8_t family = 0, addr[16];
    bool has_port = false, any = false;
    uint16_t port = 0;

    while (prev_item(xff, &line, &end, &item)) {
        if (!parse_node(item, &family, addr, &has_port, &port))
            return; /* "unknown", a name: the chain cannot be followed further */
        any = true;
        if (!rm_fwd_allow_match(allow, family, addr))
            break;
    }
    if (any)
        set_client(out, family, addr, has_port, port);
}

/* Split a Forwarded value into elements (commas outside quotes). */
static size_t forwarded_elements(const rm_fwd_span_t *lines, size_t n_lines, rm_fwd_span_t *el,
                                 size_t max)
{
    size_t count = 0;

    for (size_t i = 0; i < n_lines; i++) {
        const char *p = lines[i].p;
        size_t n = lines[i].n, start = 0;
        bool quoted = false;
        for (size_t k = 0; k <= n; k++) {
            if (k < n && p[k] == '"')
                quoted = !quoted;
            if (k < n && (quoted || p[k] != ','))
                continue;
            rm_fwd_span_t e = trim(p + start, k - start);
            if (e.n > 0) {
                if (count == max)
                    memmove(el, el + 1, (max - 1) * sizeof(*el)); /* keep the rightmost */
                el[count < max ? count++ : max - 1] = e;
            }
            start = k + 1;
        }
    }
    return count;
}

/* The value of `key` (for, proto) in one element's ';'-separated pairs. */
static bool element_param(rm_fwd_span_t el, const char *key, rm_fwd_span_t *value)
{
    size_t klen = strlen(key), start = 0;
    bool quoted = false;

    for (size_t k = 0; k <= el.n; k++) {
        if (k < el.n && el.p[k] == '"')
            quoted = !quoted;
        if (k < el.n && (quoted || el.p[k] != ';'))
            continue;
        rm_fwd_span_t pair = trim(el.p + start, k - start);
        const char *eq = memchr(pair.p, '=', pair.n);
        if (eq != NULL) {
            rm_fwd_span_t name = trim(pair.p, (size_t)(eq - pair.p));
            if (name.n == klen && strncasecmp(name.p, key, klen) == 0) {
                *value = trim(eq + 1, pair.n - (size_t)(eq + 1 - pair.p));
                return true;
            }
        }
        start = k + 1;
    }
    return false;
}

static void resolve_forwarded(const rm_fwd_allow_t *allow, const rm_fwd_span_t *fwd, size_t n_fwd,
                              rm_fwd_result_t *out)
{
    rm_fwd_span_t el[MAX_ELEMENTS], v;
    size_t n = forwarded_elements(fwd, n_fwd, el, MAX_ELEMENTS);
    uint8_t family = 0, addr[16];
    bool has_port = false;
    uint16_t port = 0;

    for (size_t i = n; i > 0; i--) {
        rm_fwd_span_t e = el[i - 1];
        if (element_param(e, "proto", &v))
            out->scheme = parse_scheme(v);
        else
            out->scheme = RM_FWD_SCHEME_NONE;
        if (!element_param(e, "for", &v) || !parse_node(v, &family, addr, &has_port, &port)) {
            out->addr_len = 0;
            return;
        }
        set_client(out, family, addr, has_port, port);
        if (!rm_fwd_allow_match(allow, family, addr))
            return;
    }
}

void rm_fwd_resolve(const rm_fwd_allow_t *allow, const rm_fwd_span_t *xff, size_t n_xff,
                    const rm_fwd_span_t *xfp, size_t n_xfp, const rm_fwd_span_t *fwd, size_t n_fwd,
                    rm_fwd_result_t *out)
{
    memset(out, 0, sizeof(*out));
    if (n_xff > 0 || n_xfp > 0) {
        size_t line = n_xfp, end = SIZE_MAX;
        rm_fwd_span_t item;
        resolve_xff(allow, xff, n_xff, out);
        if (prev_item(xfp, &line, &end, &item))
            out->scheme = parse_scheme(item);
        return;
    }
    if (n_fwd > 0)
        resolve_forwarded(allow, fwd, n_fwd, out);
}
