/*
 * http_parse.h - HTTP/1.1 request parsing in place (RFC 9112), on top of llhttp.
 *
 * The parser never copies or allocates: it reports offsets into the buffer it
 * was given. A request head must be contiguous (the caller reassembles a head
 * that arrived in pieces and parses it again from its first byte); a body may
 * arrive in any number of buffers and is reported piece by piece, already
 * de-chunked, through a callback.
 *
 * Use: rm_http_parser_init once per connection; rm_http_begin before each
 * request; rm_http_feed with the bytes as they come; when it returns
 * RM_HTTP_COMPLETE the request is whole and `consumed` bytes of that buffer
 * belonged to it.
 */
#ifndef RINGMASTER_HTTP_PARSE_H
#define RINGMASTER_HTTP_PARSE_H

#include "ringmaster/chunked.h"

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RM_HTTP_MAX_HEADERS 100

/* Head flags. */
#define RM_HTTP_KEEP_ALIVE 0x1u      /* connection persists after this exchange */
#define RM_HTTP_CHUNKED 0x2u         /* Transfer-Encoding: chunked */
#define RM_HTTP_HEAD 0x4u            /* method HEAD */
#define RM_HTTP_EXPECT_CONTINUE 0x8u /* Expect: 100-continue */
#define RM_HTTP_UPGRADE 0x10u        /* Upgrade requested (not served yet) */

typedef struct rm_http_field {
    uint32_t name_off, name_len;   /* offsets from the head buffer's first byte */
    uint32_t value_off, value_len; /* value without surrounding whitespace */
} rm_http_field_t;

typedef struct rm_http_head {
    uint32_t method_off, method_len;
    uint32_t target_off, target_len;
    uint8_t http_major, http_minor;
    uint16_t field_count;
    uint32_t flags;          /* RM_HTTP_* */
    uint64_t content_length; /* when the message has one */
    uint32_t head_len;       /* bytes of the head, request line to the blank line */
    rm_http_field_t fields[RM_HTTP_MAX_HEADERS];
} rm_http_head_t;

/* Called for each piece of (decoded) body; `at` points into the buffer given
 * to rm_http_feed. Return 0 to go on, non-zero to stop with RM_HTTP_ERROR. */
typedef int (*rm_http_body_cb)(void *ctx, const char *at, size_t len);

typedef struct rm_http_limits {
    uint32_t max_head;   /* bytes of request line + headers (431 beyond) */
    uint32_t max_target; /* bytes of request-target (414 beyond) */
    uint64_t max_body;   /* bytes of body (413 beyond) */
} rm_http_limits_t;

typedef struct rm_http_parser {
    llhttp_t llhttp;
    rm_http_limits_t limits;
    rm_http_head_t *head;    /* borrowed during a request */
    const char *base;        /* first byte of the head buffer */
    const char *buf_end;     /* end of the buffer being fed */
    rm_http_body_cb on_body; /* borrowed */
    void *body_ctx;
    uint64_t body_seen;
    int status; /* error status picked by a callback, 0 if none */
    bool head_done;
    bool message_done;
    bool in_value;        /* last field callback was a value */
    bool chunked;         /* the current message's body is chunked */
    bool in_chunked_body; /* the head is done; chunked_body decodes what follows */
    rm_chunked_t chunked_body;
} rm_http_parser_t;

typedef enum rm_http_result {
    RM_HTTP_NEED_MORE = 0, /* every byte used; the request is not complete */
    RM_HTTP_COMPLETE = 1,  /* the request ended; `consumed` says where */
    RM_HTTP_ERROR = -1,    /* malformed or over a limit; `status` says the answer */
} rm_http_result_t;

void rm_http_parser_init(rm_http_parser_t *p, const rm_http_limits_t *limits);

/* Start a request whose head begins at `head_base` (the buffer given to the
 * next rm_http_feed). Fields of `head` are filled as the head is parsed. */
void rm_http_begin(rm_http_parser_t *p, rm_http_head_t *head, const char *head_base,
                   rm_http_body_cb on_body, void *body_ctx);

/* Parse buf[0..len). While the head is incomplete, buf must be the same
 * buffer as head_base, grown (the caller re-parses from a fresh rm_http_begin);
 * the head's bytes may then be rewritten in place (an HTAB ending a field line
 * becomes SP, which changes no field value), never bytes after it.
 * After the head, any buffer may follow. On RM_HTTP_COMPLETE *consumed is the
 * number of bytes of buf that belonged to the request; on RM_HTTP_NEED_MORE it
 * is len. On RM_HTTP_ERROR *status is the response code (400, 413, 414, 417,
 * 431, 501, 505). */
rm_http_result_t rm_http_feed(rm_http_parser_t *p, char *buf, size_t len, size_t *consumed,
                              int *status);

/* True once the head of the current request is complete. */
static inline bool rm_http_head_done(const rm_http_parser_t *p)
{
    return p->head_done;
}

#endif
