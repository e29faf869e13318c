/*
 * body.h - reading a request body in order, wherever it lies.
 *
 * A body is either slices of the region (zero-copy: a piece is a pointer into
 * shared memory) or, above --body-spill-size, a file the supervisor wrote
 * (wire.h, RM_REQ_BODY_FILE), read here through a read-ahead buffer with a
 * descriptor of the reader's own, so it outlives the request. wsgi.input, the
 * native Request.body and the ASGI receive() all read through this. No Python.
 */
#ifndef RINGMASTER_WORKER_BODY_H
#define RINGMASTER_WORKER_BODY_H

#include "ringmaster/chunk_pool.h"
#include "ringmaster/wire.h"

#include <stddef.h>
#include <stdint.h>

struct rm_req_view;

typedef struct rm_body_reader {
    uint64_t left; /* bytes not read yet */
    int error;     /* errno of a failed file read: the body then ends early */
    /* In the region (fd < 0, own == NULL). */
    const rm_chunk_pool_t *pool;
    const rm_slice_t *slices;
    uint32_t nslices, idx, off;
    /* In a file. */
    int fd;
    uint64_t file_off; /* next byte of the file to read into buf */
    unsigned char *buf;
    size_t buf_len, buf_pos;
    /* After rm_body_reader_detach: the unread rest, in memory of our own. */
    unsigned char *own;
    size_t own_off;
} rm_body_reader_t;

/* Start reading the body of `view` (its body_fd, if any, is duplicated).
 * Returns 0 or -errno. */
int rm_body_reader_open(rm_body_reader_t *r, const struct rm_req_view *view);

/* The next contiguous unread bytes: their count (0 at the end, or on a read
 * error, which sets r->error) and *p. Nothing is consumed. */
size_t rm_body_reader_peek(rm_body_reader_t *r, const unsigned char **p);

/* Consume n bytes, at most what the last peek returned. */
void rm_body_reader_skip(rm_body_reader_t *r, size_t n);

/* Copy up to n bytes out; returns how many (fewer only at the end or on error). */
size_t rm_body_reader_read(rm_body_reader_t *r, void *dst, size_t n);

/* Stop pointing into the region (the request is ending but the reader lives
 * on): the unread rest of a region body is copied into memory of our own; a
 * file body needs nothing. Returns 0 or -ENOMEM (the body then reads as
 * empty). */
int rm_body_reader_detach(rm_body_reader_t *r);

/* Free what the reader holds; it reads as empty afterwards. */
void rm_body_reader_close(rm_body_reader_t *r);

#endif
