/*
 * http_parse.c - llhttp callbacks that record offsets instead of copying.
 *
 * llhttp is strict by default: it rejects Content-Length together with
 * Transfer-Encoding, differing or repeated Content-Length, bad chunk sizes,
 * bare CR and control bytes in fields. We add the size limits and map its error
 * codes to the status a client should see.
 */
#include "ringmaster/http_parse.h"

#include <string.h>

static rm_http_parser_t *parser_of(llhttp_t *l)
{
    return (rm_http_parser_t *)l->data;
}

/* Extend the span (off, len) to cover [at, at + n), which may arrive in pieces
 * as long as they come from the same contiguous head buffer. */
static void span_extend(const rm_http_parser_t *p, uint32_t *off, uint32_t *len, const char *at,
                        size_t n)
{
    uint32_t start = (uint32_t)(at - p->base);
    if (*len == 0 && *off == 0)
        *off = start;
    *len = start + (uint32_t)n - *off;
}

static int on_message_begin(llhttp_t *l)
{
    rm_http_parser_t *p = parser_of(l);
    p->message_done = false;
    return 0;
}

static int on_method(llhttp_t *l, const char *at, size_t n)
{
    rm_http_parser_t *p = parser_of(l);
    span_extend(p, &p->head->method_off, &p->head->method_len, at, n);
    return 0;
}

static int on_url(llhttp_t *l, const char *at, size_t n)
{
    rm_http_parser_t *p = parser_of(l);
    span_extend(p, &p->head->target_off, &p->head->target_len, at, n);
    if (p->head->target_len > p->limits.max_target) {
        p->status = 414;
        return -1;
    }
    return 0;
}

static int on_header_field(llhttp_t *l, const char *at, size_t n)
{
    rm_http_parser_t *p = parser_of(l);
    rm_http_head_t *h = p->head;
    if (p->head_done)
        return 0; /* a trailer: never merged into the headers (RFC 9110 6.5.1) */
    if (p->in_value || h->field_count == 0) {
        if (h->field_count == RM_HTTP_MAX_HEADERS) {
            p->status = 431;
            return -1;
        }
        memset(&h->fields[h->field_count], 0, sizeof(h->fields[0]));
        h->field_count++;
        p->in_value = false;
    }
    rm_http_field_t *f = &h->fields[h->field_count - 1];
    span_extend(p, &f->name_off, &f->name_len, at, n);
    return 0;
}

static int on_header_value(llhttp_t *l, const char *at, size_t n)
{
    rm_http_parser_t *p = parser_of(l);
    if (p->head_done)
        return 0;
    rm_http_field_t *f = &p->head->fields[p->head->field_count - 1];
    if (!p->in_value) {
        p->in_value = true;
        f->value_off = (uint32_t)(at - p->base);
        f->value_len = 0;
    }
    f->value_len = (uint32_t)(at - p->base) + (uint32_t)n - f->value_off;
    return 0;
}

static bool field_is(const rm_http_parser_t *p, const rm_http_field_t *f, const char *name)
{
    size_t n = strlen(name);
    return f->name_len == n && strncasecmp(p->base + f->name_off, name, n) == 0;
}

static bool value_is(const rm_http_parser_t *p, const rm_http_field_t *f, const char *value)
{
    size_t n = strlen(value);
    return f->value_len == n && strncasecmp(p->base + f->value_off, value, n) == 0;
}

/* RFC 9110 token characters (tchar). */
static bool is_tchar(unsigned char ch)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') ||
           (ch && memchr(extra, ch, sizeof(extra) - 1));
}

/* llhttp lets a space inside a field name and obsolete line folding through
 * (also a fold after an empty first line: "X:\r\n folded"); RFC 9112 says to
 * reject both (5.1, 5.2), which also defeats smuggling by disagreement with a
 * front proxy. */
static bool field_ok(const rm_http_parser_t *p, const rm_http_field_t *f)
{
    const unsigned char *name = (const unsigned char *)p->base + f->name_off;
    const unsigned char *value = (const unsigned char *)p->base + f->value_off;
    if (f->name_len == 0)
        return false;
    for (uint32_t i = 0; i < f->name_len; i++)
        if (!is_tchar(name[i]))
            return false;
    /* Between the colon and the value: optional whitespace only. */
    for (const unsigned char *q = name + f->name_len; q < value; q++)
        if (*q != ':' && *q != ' ' && *q != '\t')
            return false;
    for (uint32_t i = 0; i < f->value_len; i++)
        if ((value[i] < 0x20 && value[i] != '\t') || value[i] == 0x7f)
            return false;
    return true;
}

/* RFC 9112 3.2 / RFC 3986: a Host is uri-host [":" port]; nothing that could
 * be read as a path, a user or a second request. */
static bool host_ok(const char *v, uint32_t n)
{
    static const char allowed[] = "-._~!$&'()*+,;=:[]%";
    for (uint32_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (!((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') ||
              memchr(allowed, ch, sizeof(allowed) - 1)))
            return false;
    }
    return true;
}

/* Add the codings of one Transfer-Encoding line (a list: empty elements and
 * whitespace allowed, RFC 9110 5.6.1) to *chunked. We decode chunked only:
 * any other coding would reach the app still encoded, so it is 501 (RFC 9112
 * 6.1); chunked twice is 400. Returns 0 or the status. */
static int count_codings(const char *v, uint32_t n, unsigned *chunked)
{
    uint32_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        uint32_t start = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i == start)
            break;
        if (i - start != 7 || strncasecmp(v + start, "chunked", 7) != 0)
            return 501;
        if (++*chunked > 1)
            return 400;
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i < n && v[i] != ',')
            return 400; /* "chunked;q=1" or other parameters */
    }
    return 0;
}

/* The request-target has no whitespace or control bytes (RFC 9112 3). */
static bool target_ok(const char *t, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] == 0x7f)
            return false;
    return true;
}

static int on_headers_complete(llhttp_t *l)
{
    rm_http_parser_t *p = parser_of(l);
    rm_http_head_t *h = p->head;
    h->http_major = l->http_major;
    h->http_minor = l->http_minor;
    if (h->http_major != 1) {
        p->status = 505;
        return -1;
    }
    h->flags = 0;
    if (llhttp_should_keep_alive(l))
        h->flags |= RM_HTTP_KEEP_ALIVE;
    if (l->flags & F_CHUNKED)
        h->flags |= RM_HTTP_CHUNKED;
    p->chunked = (l->flags & F_CHUNKED) != 0;
    if (l->method == HTTP_HEAD)
        h->flags |= RM_HTTP_HEAD;
    if (l->upgrade)
        h->flags |= RM_HTTP_UPGRADE;
    if (l->flags & F_CONTENT_LENGTH) {
        h->content_length = l->content_length;
        if (h->content_length > p->limits.max_body) {
            p->status = 413;
            return -1;
        }
    }
    uint32_t last = h->target_off + h->target_len;
    for (uint16_t i = 0; i < h->field_count; i++) {
        rm_http_field_t *f = &h->fields[i];
        while (f->value_len > 0 && (p->base[f->value_off + f->value_len - 1] == ' ' ||
                                    p->base[f->value_off + f->value_len - 1] == '\t'))
            f->value_len--;
        if (f->value_len == 0)
            f->value_off = f->name_off + f->name_len;
        uint32_t end = f->value_len ? f->value_off + f->value_len : f->name_off + f->name_len;
        if (end > last)
            last = end;
    }
    if (!target_ok(p->base + h->target_off, h->target_len)) {
        p->status = 400;
        return -1;
    }
    unsigned hosts = 0, codings = 0;
    for (uint16_t i = 0; i < h->field_count; i++) {
        const rm_http_field_t *f = &h->fields[i];
        if (!field_ok(p, f)) {
            p->status = 400;
            return -1;
        }
        if (field_is(p, f, "host")) {
            hosts++;
            if (!host_ok(p->base + f->value_off, f->value_len)) {
                p->status = 400;
                return -1;
            }
        }
        if (field_is(p, f, "transfer-encoding")) {
            int st = count_codings(p->base + f->value_off, f->value_len, &codings);
            if (st) {
                p->status = st;
                return -1;
            }
        }
        if (field_is(p, f, "expect")) {
            if (!value_is(p, f, "100-continue")) {
                p->status = 417;
                return -1;
            }
            h->flags |= RM_HTTP_EXPECT_CONTINUE;
        }
    }
    /* RFC 9112 3.2: an HTTP/1.1 request without Host, or any request with
     * more than one, gets 400 (ambiguity here is how caches get poisoned). */
    if (hosts > 1 || (hosts == 0 && h->http_minor >= 1)) {
        p->status = 400;
        return -1;
    }
    /* The head ends right after the last byte we recorded: optional
     * whitespace, the end of that line, then the empty line. llhttp 8.1.0
     * also ends a head at a bare CR followed by anything (CVE-2023-30589,
     * request smuggling), so insist on the line ends ourselves. For an
     * HTTP/1.0 request-line with no headers, `last` is the target: skip the
     * version. */
    const char *q = p->base + last, *end = p->buf_end;
    while (q < end && *q != '\r' && *q != '\n')
        q++; /* " HTTP/1.x" after a target, or whitespace after a value */
    for (int line = 0; line < 2; line++) {
        if (q < end && *q == '\r')
            q++;
        if (q >= end || *q != '\n') {
            p->status = 400;
            return -1;
        }
        q++;
    }
    h->head_len = (uint32_t)(q - p->base);
    if (h->head_len > p->limits.max_head) {
        p->status = 431;
        return -1;
    }
    p->head_done = true;
    /* An upgrade is served as a plain request; we do not switch protocols. */
    return 0;
}

static int on_body(llhttp_t *l, const char *at, size_t n)
{
    rm_http_parser_t *p = parser_of(l);
    p->body_seen += n;
    if (p->body_seen > p->limits.max_body) {
        p->status = 413;
        return -1;
    }
    if (p->on_body && p->on_body(p->body_ctx, at, n) != 0) {
        p->status = 413; /* the sink refused: more pieces than it can hold */
        return -1;
    }
    return 0;
}

static int on_message_complete(llhttp_t *l)
{
    rm_http_parser_t *p = parser_of(l);
    p->message_done = true;
    return HPE_PAUSED; /* one request at a time; the caller resumes */
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_method = on_method,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void rm_http_parser_init(rm_http_parser_t *p, const rm_http_limits_t *limits)
{
    memset(p, 0, sizeof(*p));
    p->limits = *limits;
    llhttp_init(&p->llhttp, HTTP_REQUEST, &settings);
    p->llhttp.data = p;
}

void rm_http_begin(rm_http_parser_t *p, rm_http_head_t *head, const char *head_base,
                   rm_http_body_cb on_body_cb, void *body_ctx)
{
    llhttp_reset(&p->llhttp);
    p->llhttp.data = p;
    p->head = head;
    p->base = head_base;
    p->on_body = on_body_cb;
    p->body_ctx = body_ctx;
    p->body_seen = 0;
    p->status = 0;
    p->head_done = false;
    p->message_done = false;
    p->in_value = false;
    p->chunked = false;
    p->tail_len = 0;
    head->method_off = head->method_len = 0;
    head->target_off = head->target_len = 0;
    head->field_count = 0;
    head->flags = 0;
    head->content_length = 0;
    head->head_len = 0;
}

static int status_for(llhttp_errno_t err)
{
    switch (err) {
    case HPE_INVALID_VERSION:
        return 505;
    case HPE_INVALID_TRANSFER_ENCODING:
        return 501;
    default:
        return 400;
    }
}

/* Keep the last bytes fed, for checks that look across buffer boundaries. */
static void remember_tail(rm_http_parser_t *p, const char *buf, size_t len)
{
    char joined[sizeof(p->tail) * 2];
    size_t keep = p->tail_len, n = len < sizeof(p->tail) ? len : sizeof(p->tail);
    memcpy(joined, p->tail, keep);
    memcpy(joined + keep, buf + len - n, n);
    size_t total = keep + n, from = total > sizeof(p->tail) ? total - sizeof(p->tail) : 0;
    memcpy(p->tail, joined + from, total - from);
    p->tail_len = (uint8_t)(total - from);
}

/* Whether the message that ends at buf[consumed] ends with CRLF CRLF. */
static bool ends_with_blank_line(rm_http_parser_t *p, const char *buf, size_t consumed)
{
    remember_tail(p, buf, consumed);
    return p->tail_len == 4 && memcmp(p->tail, "\r\n\r\n", 4) == 0;
}

static bool all_tchars(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)buf[i]))
            return false;
    return true;
}

static bool starts_with_token_and_space(const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && is_tchar((unsigned char)buf[i]))
        i++;
    return i > 0 && i < len && buf[i] == ' ';
}

rm_http_result_t rm_http_feed(rm_http_parser_t *p, const char *buf, size_t len, size_t *consumed,
                              int *status)
{
    p->buf_end = buf + len;
    llhttp_errno_t err = llhttp_execute(&p->llhttp, buf, len);
    if (err == HPE_OK) {
        *consumed = len;
        if (!p->head_done && len > p->limits.max_head) {
            *status = 431;
            return RM_HTTP_ERROR;
        }
        remember_tail(p, buf, len);
        return RM_HTTP_NEED_MORE;
    }
    if (err == HPE_PAUSED && p->message_done) {
        *consumed = (size_t)(llhttp_get_error_pos(&p->llhttp) - buf);
        llhttp_resume(&p->llhttp);
        if (p->chunked && !ends_with_blank_line(p, buf, *consumed)) {
            /* llhttp 8.1.0 ends a trailer section at a bare CR too
             * (CVE-2023-30589): the rest would be read as a new request. */
            *status = 400;
            return RM_HTTP_ERROR;
        }
        return RM_HTTP_COMPLETE;
    }
    *consumed = (size_t)(llhttp_get_error_pos(&p->llhttp) - buf);
    *status = p->status ? p->status : status_for(err);
    /* A well-formed method token llhttp does not know ("QUERY", "get"):
     * RFC 9110 9.1 says 501, not 400. */
    if (err == HPE_INVALID_METHOD && !p->head_done) {
        if (starts_with_token_and_space(buf, len)) {
            *status = 501;
        } else if (all_tchars(buf, len)) {
            /* Only part of a method so far ("QUE"): wait for the rest to tell
             * an unknown method (501) from garbage (400). The caller parses
             * a grown head again from a fresh rm_http_begin; a token as long
             * as a whole head is an unknown method all the same. */
            if (len >= p->limits.max_head) {
                *status = 501;
                return RM_HTTP_ERROR;
            }
            *consumed = len;
            return RM_HTTP_NEED_MORE;
        }
    }
    return RM_HTTP_ERROR;
}
