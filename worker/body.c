/*
 * body.c - the request body reader: region slices, a spilled file, or a
 * detached copy, behind one peek/skip interface (body.h).
 */
#include "body.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Read-ahead for spilled bodies: big enough that a hashing loop makes few
 * system calls, small enough to hold per open body. */
#define FILE_BUF_SIZE (256u * 1024u)

int rm_body_reader_open(rm_body_reader_t *r, const rm_req_view_t *view)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    r->left = view->meta.body_len;
    if (view->meta.flags & RM_REQ_BODY_FILE) {
        r->fd = fcntl(view->body_fd, F_DUPFD_CLOEXEC, 0);
        if (r->fd < 0) {
            int err = errno;
            r->left = 0;
            r->error = err;
            return -err;
        }
        return 0;
    }
    r->pool = view->pool;
    r->slices = view->body;
    r->nslices = view->meta.body_slice_count;
    return 0;
}

/* Refill the read-ahead buffer; false at a read error or an early end. */
static bool fill_from_file(rm_body_reader_t *r)
{
    if (r->buf == NULL) {
        r->buf = malloc(FILE_BUF_SIZE);
        if (r->buf == NULL) {
            r->error = ENOMEM;
            return false;
        }
    }
    size_t want = r->left < FILE_BUF_SIZE ? (size_t)r->left : FILE_BUF_SIZE;
    ssize_t n;
    do
        n = pread(r->fd, r->buf, want, (off_t)r->file_off);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        r->error = n < 0 ? errno : ENODATA; /* the file is shorter than the body */
        return false;
    }
    r->file_off += (uint64_t)n;
    r->buf_len = (size_t)n;
    r->buf_pos = 0;
    return true;
}

size_t rm_body_reader_peek(rm_body_reader_t *r, const unsigned char **p)
{
    if (r->left == 0 || r->error)
        return 0;
    if (r->own != NULL) {
        *p = r->own + r->own_off;
        return (size_t)r->left;
    }
    if (r->fd >= 0) {
        if (r->buf_pos == r->buf_len && !fill_from_file(r)) {
            r->left = 0;
            return 0;
        }
        *p = r->buf + r->buf_pos;
        return r->buf_len - r->buf_pos;
    }
    while (r->idx < r->nslices) {
        const rm_slice_t *sl = &r->slices[r->idx];
        if (r->off < sl->len) {
            *p = rm_chunk_pool_ptr(r->pool, sl->chunk) + sl->off + r->off;
            return sl->len - r->off;
        }
        r->idx++;
        r->off = 0;
    }
    return 0;
}

void rm_body_reader_skip(rm_body_reader_t *r, size_t n)
{
    if (r->own != NULL)
        r->own_off += n;
    else if (r->fd >= 0)
        r->buf_pos += n;
    else
        r->off += (uint32_t)n;
    r->left -= n;
}

size_t rm_body_reader_read(rm_body_reader_t *r, void *dst, size_t n)
{
    unsigned char *out = dst;
    size_t done = 0;
    while (done < n) {
        const unsigned char *p;
        size_t have = rm_body_reader_peek(r, &p);
        if (have == 0)
            break;
        size_t take = have < n - done ? have : n - done;
        memcpy(out + done, p, take);
        rm_body_reader_skip(r, take);
        done += take;
    }
    return done;
}

int rm_body_reader_detach(rm_body_reader_t *r)
{
    if (r->fd >= 0 || r->own != NULL)
        return 0;
    size_t n = (size_t)r->left;
    unsigned char *own = n > 0 ? malloc(n) : NULL;
    if (n > 0 && own == NULL) {
        r->left = 0;
        r->slices = NULL;
        r->nslices = 0;
        return -ENOMEM;
    }
    size_t got = rm_body_reader_read(r, own, n);
    r->slices = NULL;
    r->nslices = 0;
    r->own = own;
    r->own_off = 0;
    r->left = got;
    return 0;
}

void rm_body_reader_close(rm_body_reader_t *r)
{
    if (r->fd >= 0)
        close(r->fd);
    free(r->buf);
    free(r->own);
    memset(r, 0, sizeof(*r));
    r->fd = -1;
}
