/*
 * chunked.h - the chunked transfer coding of a request body (RFC 9112 7.1),
 * decoded in place.
 *
 * llhttp 8.1 refuses two things the grammar allows (BWS around ';' and '=' in
 * a chunk extension, and a quoted-pair inside a quoted extension value), and
 * ends a trailer section at a bare CR (CVE-2023-30589). So the supervisor
 * decodes chunked bodies itself, with this byte-at-a-time state machine: it
 * keeps its state between buffers, so a body may be cut anywhere, and it
 * reports each run of data bytes as a span of the buffer it was given (no
 * copy). Extensions are parsed and ignored; trailer fields are checked like
 * header fields and dropped (RFC 9110 6.5.1: they never become headers).
 *
 * Strict where the framing could be read two ways: the size is 1*HEXDIG (at
 * most 64 bits); whitespace is allowed only where chunk-ext puts BWS (before
 * ';' and around '='), so "5 \r\n" is refused; every line ends in CRLF (a bare
 * LF or CR is refused); obs-fold in trailers is refused.
 */
#ifndef RINGMASTER_CHUNKED_H
#define RINGMASTER_CHUNKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A chunk-size line (size and extensions) longer than this is refused: the
 * extensions carry nothing we use, so they may not hold a connection open. */
#define RM_CHUNKED_MAX_LINE 4096

/* Called for each run of data bytes; `at` points into the buffer given to
 * rm_chunked_feed. Return 0 to go on, non-zero to stop (RM_CHUNKED_ERROR with
 * status 0: the caller's callback decided). */
typedef int (*rm_chunked_data_cb)(void *ctx, const char *at, size_t len);

typedef struct rm_chunked {
    uint8_t state;          /* internal: where in the grammar we are */
    uint8_t size_digits;    /* significant hex digits of the current size */
    bool size_seen;         /* at least one hex digit in this size line */
    uint64_t remaining;     /* data bytes left in the current chunk */
    uint32_t line_len;      /* bytes of the current size line */
    uint32_t trailer_bytes; /* bytes of the trailer section so far */
    uint32_t trailer_fields;
    uint32_t max_trailer_bytes;  /* beyond: 431 */
    uint32_t max_trailer_fields; /* beyond: 431 */
} rm_chunked_t;

typedef enum rm_chunked_result {
    RM_CHUNKED_NEED_MORE = 0, /* every byte used; the body goes on */
    RM_CHUNKED_DONE = 1,      /* the body (and its trailers) ended; `consumed` says where */
    RM_CHUNKED_ERROR = -1,    /* malformed or over a limit; `status` says the answer */
} rm_chunked_result_t;

/* Start a body. Trailers may take at most `max_trailer_bytes` bytes and
 * `max_trailer_fields` field lines (431 beyond either). */
void rm_chunked_init(rm_chunked_t *d, uint32_t max_trailer_bytes, uint32_t max_trailer_fields);

/* Decode buf[0..len). On RM_CHUNKED_DONE *consumed is the number of bytes of
 * buf that belonged to the body, on NEED_MORE it is len; on ERROR *status is
 * 400 or 431, or 0 when `on_data` returned non-zero. */
rm_chunked_result_t rm_chunked_feed(rm_chunked_t *d, const char *buf, size_t len,
                                    rm_chunked_data_cb on_data, void *ctx, size_t *consumed,
                                    int *status);

#endif
