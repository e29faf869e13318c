/*
 * chunked.c - the chunked transfer coding of a request body (chunked.h).
 *
 *   chunked-body   = *chunk last-chunk trailer-section CRLF
 *   chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   last-chunk     = 1*("0") [ chunk-ext ] CRLF
 *   chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *   chunk-ext-val  = token / quoted-string
 *   trailer-section = *( field-line CRLF )
 */
#include "ringmaster/chunked.h"

#include <string.h>

enum {
    S_SIZE,           /* hex digits of a chunk size */
    S_EXT_BWS,        /* whitespace after the size or a value: only ';' may follow */
    S_EXT_NAME_START, /* after ';': BWS, then a name */
    S_EXT_NAME,
    S_EXT_NAME_BWS,    /* whitespace after a name: '=' or ';' may follow */
    S_EXT_VALUE_START, /* after '=': BWS, then a token or a quoted string */
    S_EXT_VALUE,
    S_EXT_QUOTED,
    S_EXT_QUOTED_PAIR, /* after a backslash inside a quoted string */
    S_EXT_QUOTE_END,   /* after the closing quote */
    S_SIZE_LF,         /* CR seen at the end of the size line */
    S_DATA,
    S_DATA_CR, /* the CRLF after the data */
    S_DATA_LF,
    S_TRAILER_START, /* at the start of a trailer line (or the final CRLF) */
    S_TRAILER_NAME,
    S_TRAILER_VALUE,
    S_TRAILER_LF,
    S_FINAL_LF,
    S_DONE,
};

static bool is_ws(unsigned char ch)
{
    return ch == ' ' || ch == '\t';
}

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char ch)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') ||
           (ch && memchr(extra, ch, sizeof(extra) - 1));
}

static int hex_value(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text */
static bool is_qdtext(unsigned char ch)
{
    return ch == '\t' || ch == ' ' || ch == 0x21 || (ch >= 0x23 && ch <= 0x5b) ||
           (ch >= 0x5d && ch <= 0x7e) || ch >= 0x80;
}

/* field-vchar / SP / HTAB: what a field value may hold (obs-text included). */
static bool is_value_char(unsigned char ch)
{
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

void rm_chunked_init(rm_chunked_t *d, uint32_t max_trailer_bytes, uint32_t max_trailer_fields)
{
    memset(d, 0, sizeof(*d));
    d->state = S_SIZE;
    d->max_trailer_bytes = max_trailer_bytes;
    d->max_trailer_fields = max_trailer_fields;
}

/* The size line ended (its CR and LF seen): data follows, or the trailers. */
static void size_line_done(rm_chunked_t *d)
{
    d->state = d->remaining ? S_DATA : S_TRAILER_START;
    d->size_seen = false;
    d->size_digits = 0;
    d->line_len = 0;
}

/* One byte of the size line, S_SIZE to S_SIZE_LF. Returns false when the
 * byte cannot be there. */
static bool size_line_byte(rm_chunked_t *d, unsigned char ch)
{
    switch (d->state) {
    case S_SIZE: {
        int v = hex_value(ch);
        if (v >= 0) {
            if (d->size_digits == 16)
                return false; /* over 64 bits */
            d->remaining = (d->remaining << 4) | (uint64_t)v;
            if (d->remaining)
                d->size_digits++; /* leading zeros are free */
            d->size_seen = true;
            return true;
        }
        if (!d->size_seen)
            return false;
        if (ch == '\r')
            d->state = S_SIZE_LF;
        else if (ch == ';')
            d->state = S_EXT_NAME_START;
        else if (is_ws(ch))
            d->state = S_EXT_BWS;
        else
            return false;
        return true;
    }
    case S_EXT_BWS:
        if (ch == ';')
            d->state = S_EXT_NAME_START;
        else if (!is_ws(ch))
            return false;
        return true;
    case S_EXT_NAME_START:
        if (is_tchar(ch))
            d->state = S_EXT_NAME;
        else if (!is_ws(ch))
            return false;
        return true;
    case S_EXT_NAME:
        if (ch == '\r')
            d->state = S_SIZE_LF;
        else if (ch == ';')
            d->state = S_EXT_NAME_START;
        else if (ch == '=')
            d->state = S_EXT_VALUE_START;
        else if (is_ws(ch))
            d->state = S_EXT_NAME_BWS;
        else if (!is_tchar(ch))
            return false;
        return true;
    case S_EXT_NAME_BWS:
        if (ch == ';')
            d->state = S_EXT_NAME_START;
        else if (ch == '=')
            d->state = S_EXT_VALUE_START;
        else if (!is_ws(ch))
            return false;
        return true;
    case S_EXT_VALUE_START:
        if (ch == '"')
            d->state = S_EXT_QUOTED;
        else if (is_tchar(ch))
            d->state = S_EXT_VALUE;
        else if (!is_ws(ch))
            return false;
        return true;
    case S_EXT_VALUE:
        if (ch == '\r')
            d->state = S_SIZE_LF;
        else if (ch == ';')
            d->state = S_EXT_NAME_START;
        else if (is_ws(ch))
            d->state = S_EXT_BWS;
        else if (!is_tchar(ch))
            return false;
        return true;
    case S_EXT_QUOTED:
        if (ch == '"')
            d->state = S_EXT_QUOTE_END;
        else if (ch == '\\')
            d->state = S_EXT_QUOTED_PAIR;
        else if (!is_qdtext(ch))
            return false;
        return true;
    case S_EXT_QUOTED_PAIR:
        /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
        if (!(ch == '\t' || (ch >= 0x20 && ch != 0x7f)))
            return false;
        d->state = S_EXT_QUOTED;
        return true;
    case S_EXT_QUOTE_END:
        if (ch == '\r')
            d->state = S_SIZE_LF;
        else if (ch == ';')
            d->state = S_EXT_NAME_START;
        else if (is_ws(ch))
            d->state = S_EXT_BWS;
        else
            return false;
        return true;
    case S_SIZE_LF:
        if (ch != '\n')
            return false;
        size_line_done(d);
        return true;
    default:
        return false;
    }
}

/* One byte of the trailer section. Returns 0, or the error status. */
static int trailer_byte(rm_chunked_t *d, unsigned char ch)
{
    if (++d->trailer_bytes > d->max_trailer_bytes)
        return 431;
    switch (d->state) {
    case S_TRAILER_START:
        if (ch == '\r') {
            d->state = S_FINAL_LF;
            return 0;
        }
        /* Whitespace here is obs-fold or a space before a name; LF alone is
         * a bare LF: all refused. */
        if (!is_tchar(ch))
            return 400;
        if (++d->trailer_fields > d->max_trailer_fields)
            return 431;
        d->state = S_TRAILER_NAME;
        return 0;
    case S_TRAILER_NAME:
        if (ch == ':')
            d->state = S_TRAILER_VALUE;
        else if (!is_tchar(ch))
            return 400;
        return 0;
    case S_TRAILER_VALUE:
        if (ch == '\r')
            d->state = S_TRAILER_LF;
        else if (!is_value_char(ch))
            return 400;
        return 0;
    case S_TRAILER_LF:
        if (ch != '\n')
            return 400;
        d->state = S_TRAILER_START;
        return 0;
    case S_FINAL_LF:
        if (ch != '\n')
            return 400;
        d->state = S_DONE;
        return 0;
    default:
        return 400;
    }
}

rm_chunked_result_t rm_chunked_feed(rm_chunked_t *d, const char *buf, size_t len,
                                    rm_chunked_data_cb on_data, void *ctx, size_t *consumed,
                                    int *status)
{
    size_t i = 0;
    *status = 0;
    while (i < len && d->state != S_DONE) {
        unsigned char ch = (unsigned char)buf[i];
        switch (d->state) {
        case S_DATA: {
            size_t n = len - i;
            if (n > d->remaining)
                n = (size_t)d->remaining;
            if (on_data && on_data(ctx, buf + i, n) != 0) {
                *consumed = i;
                return RM_CHUNKED_ERROR;
            }
            d->remaining -= n;
            i += n;
            if (d->remaining == 0)
                d->state = S_DATA_CR;
            continue;
        }
        case S_DATA_CR:
            if (ch != '\r')
                goto bad;
            d->state = S_DATA_LF;
            break;
        case S_DATA_LF:
            if (ch != '\n')
                goto bad;
            d->state = S_SIZE;
            break;
        case S_TRAILER_START:
        case S_TRAILER_NAME:
        case S_TRAILER_VALUE:
        case S_TRAILER_LF:
        case S_FINAL_LF: {
            int st = trailer_byte(d, ch);
            if (st) {
                *consumed = i;
                *status = st;
                return RM_CHUNKED_ERROR;
            }
            break;
        }
        default:
            if (++d->line_len > RM_CHUNKED_MAX_LINE || !size_line_byte(d, ch))
                goto bad;
            break;
        }
        i++;
    }
    *consumed = i;
    return d->state == S_DONE ? RM_CHUNKED_DONE : RM_CHUNKED_NEED_MORE;
bad:
    *consumed = i;
    *status = 400;
    return RM_CHUNKED_ERROR;
}
