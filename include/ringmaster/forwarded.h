/*
 * forwarded.h - which peers may say who the client is, and what they said.
 *
 * A reverse proxy tells the app server the real client through
 * X-Forwarded-For / X-Forwarded-Proto or RFC 7239 Forwarded. Those headers are
 * believed only when the TCP peer is in the --forwarded-allow-ips list; from
 * anyone else they are plain headers the client could have written.
 *
 * A proxy appends the address it received the request from, so the list is
 * read right to left: every address that is itself a trusted proxy is skipped,
 * and the first one that is not is the client. When every hop is trusted (the
 * list is '*'), the leftmost address is the client.
 *
 * Pure: text in, result out, nothing allocated; usable from any thread.
 */
#ifndef RINGMASTER_FORWARDED_H
#define RINGMASTER_FORWARDED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RM_FWD_MAX_NETS 32 /* entries in an allow list */
#define RM_FWD_DEFAULT "127.0.0.1,::1"

/* An address or a network: IPv4 in the first 4 bytes (family 4) or IPv6
 * (family 6); `prefix` bits must match (32 or 128 for a single address). */
typedef struct rm_fwd_net {
    uint8_t family;
    uint8_t prefix;
    uint8_t addr[16];
} rm_fwd_net_t;

typedef struct rm_fwd_allow {
    bool any;       /* '*': every peer is trusted */
    uint32_t count; /* entries in nets */
    rm_fwd_net_t nets[RM_FWD_MAX_NETS];
} rm_fwd_allow_t;

/* A piece of text (a header value), not NUL-terminated. */
typedef struct rm_fwd_span {
    const char *p;
    size_t n;
} rm_fwd_span_t;

enum rm_fwd_scheme { RM_FWD_SCHEME_NONE = 0, RM_FWD_SCHEME_HTTP, RM_FWD_SCHEME_HTTPS };

/* What trusted headers said. `addr` is the client's address as inet_ntop
 * writes it (IPv4-mapped IPv6 as plain IPv4), valid when addr_len > 0. */
typedef struct rm_fwd_result {
    char addr[46];
    size_t addr_len; /* 0: no usable client address */
    bool has_port;
    uint16_t port;
    enum rm_fwd_scheme scheme;
} rm_fwd_result_t;

/* Parse "ADDR[/PREFIX],..." or "*" (spaces around items are allowed) into
 * `out`. Returns 0, or -EINVAL with one readable line in `why` naming the
 * item that is wrong. */
int rm_fwd_allow_parse(rm_fwd_allow_t *out, const char *text, char *why, size_t why_len);

/* Is the peer (family 4 or 6, address as in rm_req_meta_t) trusted? An
 * IPv4-mapped IPv6 peer matches IPv4 entries. Family 0 (a Unix socket) is
 * trusted only by '*'. */
bool rm_fwd_allow_match(const rm_fwd_allow_t *allow, uint8_t family, const uint8_t addr[16]);

/* Resolve the client from trusted headers: X-Forwarded-For (`xff`, one span
 * per header line, in order) and X-Forwarded-Proto (`xfp`, same) when either
 * is present, otherwise RFC 7239 Forwarded (`fwd`). Every hop is checked
 * against `allow`, so only a chain of trusted proxies can move the answer
 * left. An entry that is not an IP address (RFC 7239's "unknown" or an
 * obfuscated name) stops the walk without an address. The scheme is that of
 * the rightmost X-Forwarded-Proto item, or of the chosen Forwarded element;
 * only http and https count. The caller has checked that the peer itself is
 * trusted. */
void rm_fwd_resolve(const rm_fwd_allow_t *allow, const rm_fwd_span_t *xff, size_t n_xff,
                    const rm_fwd_span_t *xfp, size_t n_xfp, const rm_fwd_span_t *fwd, size_t n_fwd,
                    rm_fwd_result_t *out);

#endif
