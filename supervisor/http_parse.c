/*
 * http_parse.c - llhttp callbacks that record offsets instead of copying.
 *
 * llhttp is strict by default: it rejects Content-Length together with
 * Transfer-Encoding, differing or repeated Content-Length, bare CR and control
 * bytes in fields. We add the size limits and map its error codes to the
 * status a client should see. Where llhttp 8.1 refuses what RFC 9112 allows,
 * we parse those parts ourselves: a chunked body (chunked.c) and a trailing
 * HTAB in a field value (normalize_trailing_tabs).
 */
#include "ringmaster/http_parse.h"

#include "ringmaster/chunked.h"

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
    uint32_t i = 0, found = 0;
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
        found++;
    }
    /* An empty Transfer-Encoding names no coding at all: the framing cannot
     * be known (RFC 9112 6.3), whatever Content-Length says. */
    return found ? 0 : 400;
}

/* The request-target has no whitespace or control bytes (RFC 9112 3). */
static bool target_ok(const char *t, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] == 0x7f)
            return false;
    return true;
}

/* The request-line ended right after the target: "GET /" with no version,
 * which llhttp reads as HTTP/0.9 (a simple-request). */
static bool request_line_lacks_version(const rm_http_parser_t *p, const rm_http_head_t *h)
{
    const char *after = p->base + h->target_off + h->target_len;
    return h->target_len > 0 && after < p->buf_end && (*after == '\r' || *after == '\n');
}

/* RFC 9112 3.2.3: authority-form is uri-host ":" port, nothing else. */
static bool authority_form(const char *t, uint32_t n)
{
    const char *colon = n ? memrchr(t, ':', n) : NULL;
    if (!colon || colon == t || t[0] == '/' || memchr(t, '/', n) || memchr(t, '?', n))
        return false;
    uint32_t port_len = (uint32_t)(t + n - colon - 1);
    if (port_len == 0 || port_len > 5)
        return false;
    for (const char *d = colon + 1; d < t + n; d++)
        if (*d < '0' || *d > '9')
            return false;
    return host_ok(t, (uint32_t)(colon - t));
}

static int on_headers_complete(llhttp_t *l)
{
    rm_http_parser_t *p = parser_of(l);
    rm_http_head_t *h = p->head;
    h->http_major = l->http_major;
    h->http_minor = l->http_minor;
    if (request_line_lacks_version(p, h)) {
        p->status = 400; /* RFC 9112 3: a malformed request-line (no HTTP/0.9) */
        return -1;
    }
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
    /* RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has suspect
     * framing; the connection closes after it, whatever it asked for. */
    if (p->chunked && h->http_minor == 0)
        h->flags &= ~RM_HTTP_KEEP_ALIVE;
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
    /* The asterisk-form is "*" alone, and only for OPTIONS (RFC 9112
     * 3.2.4): "*foo/../x" is no target an app should see as a path. */
    if (h->target_len > 0 && p->base[h->target_off] == '*' &&
        (h->target_len != 1 || l->method != HTTP_OPTIONS)) {
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
    /* CONNECT asks for a tunnel, which only a proxy makes, and takes only the
     * authority-form (RFC 9112 3.2.3): anything else is malformed (400); the
     * authority-form is understood and refused (501), so that no app can
     * answer a 2xx that a client would take for an open tunnel. */
    if (l->method == HTTP_CONNECT) {
        p->status = authority_form(p->base + h->target_off, h->target_len) ? 501 : 400;
        return -1;
    }
    p->head_done = true;
    if (p->chunked) {
        /* chunked.c decodes the body: llhttp ends the message at the head. */
        rm_chunked_init(&p->chunked_body, p->limits.max_head, RM_HTTP_MAX_HEADERS);
        return 1;
    }
    /* An upgrade is served as a plain request; we do not switch protocols. */
    return 0;
}

/* A piece of decoded body, from llhttp (Content-Length) or chunked.c. */
static int deliver_body(void *ctx, const char *at, size_t n)
{
    rm_http_parser_t *p = ctx;
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

static int on_body(llhttp_t *l, const char *at, size_t n)
{
    return deliver_body(parser_of(l), at, n);
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
    p->in_chunked_body = false;
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

/* RFC 9110 5.5: OWS around a field value is SP or HTAB, but llhttp 8.1 takes
 * only SP after a Content-Length value, and compares Transfer-Encoding and
 * Connection values with the HTAB included. Before the head is parsed, turn
 * each HTAB at the end of a complete field line (before its CRLF or LF) into
 * SP: the value, with its surrounding whitespace removed, is the same, and
 * llhttp then sees what the RFC means. Only field lines are touched: leading
 * empty lines and the request-line are skipped, and it stops at the empty
 * line that ends the head, so body bytes after it are never changed. */
static void normalize_trailing_tabs(char *buf, size_t len)
{
    if (memchr(buf, '\t', len) == NULL)
        return; /* nearly every head: one fast scan and done */
    size_t i = 0;
    while (i < len && (buf[i] == '\r' || buf[i] == '\n'))
        i++;
    char *lf = memchr(buf + i, '\n', len - i); /* end of the request-line */
    if (!lf)
        return;
    i = (size_t)(lf - buf) + 1;
    while (i < len) {
        lf = memchr(buf + i, '\n', len - i);
        if (!lf)
            return; /* an incomplete line: normalised when it is whole */
        size_t end = (size_t)(lf - buf);
        if (end > i && buf[end - 1] == '\r')
            end--;
        if (end == i)
            return; /* the empty line: the head ends here */
        for (size_t k = end; k > i + 1 && (buf[k - 1] == ' ' || buf[k - 1] == '\t'); k--)
            buf[k - 1] = ' ';
        i = (size_t)(lf - buf) + 1;
    }
}

/* `rest` (from where llhttp stopped to the end of what has arrived) starts
 * with HTAB and holds only whitespace, perhaps ending in CR: the line may
 * still turn out to end there. */
static bool ows_may_end_line(const char *rest, size_t n)
{
    if (n == 0 || rest[0] != '\t')
        return false;
    for (size_t i = 0; i < n; i++)
        if (rest[i] != ' ' && rest[i] != '\t' && !(rest[i] == '\r' && i == n - 1))
            return false;
    return true;
}

/* Decode chunked body bytes (chunked.c); the message ends with the body. */
static rm_http_result_t feed_chunked(rm_http_parser_t *p, const char *buf, size_t len,
                                     size_t *consumed, int *status)
{
    int st = 0;
    rm_chunked_result_t r =
        rm_chunked_feed(&p->chunked_body, buf, len, deliver_body, p, consumed, &st);
    if (r == RM_CHUNKED_ERROR) {
        *status = st ? st : p->status;
        return RM_HTTP_ERROR;
    }
    if (r == RM_CHUNKED_NEED_MORE) {
        p->in_chunked_body = true;
        return RM_HTTP_NEED_MORE;
    }
    p->in_chunked_body = false;
    p->message_done = true;
    return RM_HTTP_COMPLETE;
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

rm_http_result_t rm_http_feed(rm_http_parser_t *p, char *buf, size_t len, size_t *consumed,
                              int *status)
{
    if (p->in_chunked_body)
        return feed_chunked(p, buf, len, consumed, status);
    if (!p->head_done && buf == p->base)
        normalize_trailing_tabs(buf, len);
    p->buf_end = buf + len;
    llhttp_errno_t err = llhttp_execute(&p->llhttp, buf, len);
    if (err == HPE_OK) {
        *consumed = len;
        if (!p->head_done && len > p->limits.max_head) {
            *status = 431;
            return RM_HTTP_ERROR;
        }
        if (!p->head_done && p->head->target_len > 0 && request_line_lacks_version(p, p->head)) {
            /* "GET /" and its line end: llhttp waits for HTTP/0.9 fields;
             * the request-line is malformed already. */
            *status = 400;
            return RM_HTTP_ERROR;
        }
        return RM_HTTP_NEED_MORE;
    }
    if (err == HPE_PAUSED && p->message_done) {
        *consumed = (size_t)(llhttp_get_error_pos(&p->llhttp) - buf);
        llhttp_resume(&p->llhttp);
        if (p->chunked) {
            size_t head = *consumed, used = 0;
            p->message_done = false;
            rm_http_result_t r = feed_chunked(p, buf + head, len - head, &used, status);
            *consumed = head + used;
            return r;
        }
        return RM_HTTP_COMPLETE;
    }
    *consumed = (size_t)(llhttp_get_error_pos(&p->llhttp) - buf);
    *status = p->status ? p->status : status_for(err);
    if (!p->head_done && !p->status && request_line_lacks_version(p, p->head)) {
        *status = 400; /* as it would be had the fields come later (split reads) */
        return RM_HTTP_ERROR;
    }
    if (!p->head_done && !p->status && buf == p->base && *consumed > 0 &&
        buf[*consumed - 1] != '\r' && ows_may_end_line(buf + *consumed, len - *consumed)) {
        /* llhttp stopped at an HTAB that may be trailing OWS of a line not
         * yet whole ("Content-Length: 5<HTAB>" and no CRLF yet): wait for the
         * line end, then normalize_trailing_tabs decides. */
        *consumed = len;
        return RM_HTTP_NEED_MORE;
    }
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
