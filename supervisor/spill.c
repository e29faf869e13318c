/*
 * spill.c - request bodies too large for shared memory go to a file.
 *
 * A body stays in the region as a list of slices up to --body-spill-size (and
 * while the meta chunk has room for its slices). Past that, the request gets a
 * file in the supervisor's private directory inside --spill-dir (spill_dir.h)
 * and every decoded piece is written there by io_uring at its offset,
 * straight from the chunk the kernel received it into: the chunk
 * is referenced until the write completes, so memory stays bounded by the
 * chunk pool whatever the body's size (a slow disk stalls recv through the
 * provided-buffer ring, which is the backpressure). Small pieces (a chunked
 * upload's fragments) are gathered into one chunk per write.
 *
 * Backpressure: the network is usually faster than the disk. Once more than
 * lag_max() bytes are handed to the kernel and not yet written, the
 * connection stops parsing and its recv is cancelled; the write completion
 * that brings the lag under half of that resumes both. So one upload holds a
 * few MiB of chunks however large it is, and never drains the pool: the
 * bound is SPILL_LAG_MAX, or an eighth of the pool when that is smaller (a
 * 4 MiB lag would be the whole of a small pool), and 256 KiB while three
 * quarters of the pool are in use (many uploads at once).
 *
 * The request is handed to a worker once every write has landed, with the
 * file's path in its meta (wire.h, RM_REQ_BODY_FILE). The file is removed when
 * the request ends; a worker that opened it keeps reading its own descriptor.
 */
#include "ringmaster/log.h"
#include "ringmaster/server.h"
#include "ringmaster/spill_dir.h"
#include "ringmaster/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SPILL_LAG_MAX (4u << 20)

/* Files live in the supervisor's private directory (spill_dir.h): a name
 * there cannot have been taken or planted by anyone else. */
static int spill_path(const rm_server_t *s, const rm_conn_t *c, char *buf, size_t len)
{
    return rm_spill_dir_file_path(&s->spill_dir, c->spill_seq, buf, len);
}

#define SPILL_LAG_PRESSED (256u << 10)

/* Whether three quarters of the pool are in use: bodies then go to disk
 * earlier (rm_spill_wanted) and each upload may lag its disk less. */
static bool pool_pressed(const rm_server_t *s)
{
    const rm_chunk_pool_t *pool = &s->region.pool;
    return rm_chunk_pool_in_use(pool) >= pool->count - pool->count / 4;
}

static uint64_t lag_max(const rm_server_t *s)
{
    /* The bound is per upload: 120 uploads each 4 MiB ahead of the disk
     * would hold 480 MiB of chunks. Under pressure each holds 256 KiB. */
    if (pool_pressed(s))
        return SPILL_LAG_PRESSED;
    uint64_t pool = (uint64_t)s->region.pool.count * s->region.pool.chunk_size;
    return pool / 8 < SPILL_LAG_MAX ? pool / 8 : SPILL_LAG_MAX;
}

bool rm_spill_throttled(const rm_server_t *s, const rm_conn_t *c)
{
    return c->spill_fd >= 0 && c->spill_len - c->spill_written > lag_max(s);
}

/* Under pressure, a body larger than this goes to disk below
 * --body-spill-size too. */
#define SPILL_PRESSURE_MIN (64u << 10)

bool rm_spill_wanted(const rm_server_t *s, const rm_conn_t *c, uint64_t seen, uint64_t more,
                     bool slices_full)
{
    uint64_t limit = s->cfg->body_spill_size;
    if (slices_full || seen + more > limit || c->body_expected > limit)
        return true;
    /* Bodies held in the region while they arrive take the chunks that the
     * reads of every connection need: 120 uploads of 1 MiB into a 64 MiB
     * region took them all, no read could go on, and all 120 ended in 408.
     * So once three quarters of the pool are in use, a body over 64 KiB is
     * spilled (what it holds is written out and its chunks come back), and
     * only small bodies stay in shared memory. */
    if (seen + more <= SPILL_PRESSURE_MIN && c->body_expected <= SPILL_PRESSURE_MIN)
        return false;
    return pool_pressed(s);
}

/* Queue a write of `len` bytes at `at` (inside `chunk`, whose reference the
 * write now owns) to file offset `off`. */
static void submit_write(rm_server_t *s, rm_conn_t *c, uint32_t chunk, const void *at,
                         uint32_t len, uint64_t off)
{
    struct io_uring_sqe *sqe = rm_server_sqe(s);
    io_uring_prep_write(sqe, c->spill_fd, at, len, off);
    io_uring_sqe_set_data64(sqe, rm_user_data(RM_OP_SPILL_WRITE, (uint32_t)(c - s->conns), chunk));
    c->spill_pending++;
}

static void flush_pack(rm_server_t *s, rm_conn_t *c)
{
    if (c->spill_pack == RM_CHUNK_NONE)
        return;
    submit_write(s, c, c->spill_pack, rm_chunk_pool_ptr(&s->region.pool, c->spill_pack),
                 c->spill_pack_len, c->spill_pack_off);
    c->spill_pack = RM_CHUNK_NONE; /* its reference went with the write */
    c->spill_pack_len = 0;
}

/* Write a piece referenced where it lies: the write takes a reference. */
static void write_in_place(rm_server_t *s, rm_conn_t *c, uint32_t chunk, const void *at,
                           uint32_t len)
{
    flush_pack(s, c); /* offsets are explicit, but keep the file written in order */
    rm_chunk_ref(s, chunk);
    submit_write(s, c, chunk, at, len, c->spill_len);
    c->spill_len += len;
}

bool rm_spill_begin(rm_server_t *s, rm_conn_t *c, const rm_slice_t *slices, uint32_t count)
{
    char path[RM_SPILL_DIR_PATH_MAX + 32];

    c->spill_seq = ++s->spill_seq; /* unique within this process: names only */
    spill_path(s, c, path, sizeof(path));
    int fd = rm_spill_dir_create(&s->spill_dir, c->spill_seq);
    if (fd < 0) {
        int err = -fd;
        RM_ERROR("cannot spill a request body to %s: %s", path, strerror(err));
        c->sink_status = err == ENOSPC || err == EDQUOT ? 507 : 500;
        return false;
    }
    c->spill_fd = fd;
    c->spill_len = 0;
    c->spill_written = 0;
    c->spill_failed = false;
    c->spill_pack = RM_CHUNK_NONE;
    c->spill_pack_len = 0;
    for (uint32_t i = 0; i < count; i++)
        write_in_place(s, c, slices[i].chunk,
                       rm_chunk_pool_ptr(&s->region.pool, slices[i].chunk) + slices[i].off,
                       slices[i].len);
    return true;
}

unsigned rm_spill_relieve(rm_server_t *s)
{
    rm_chunk_pool_t *pool = &s->region.pool;
    unsigned moved = 0;
    for (uint32_t i = 0; i < s->conn_cap; i++) {
        rm_conn_t *c = &s->conns[i];
        if (c->state != RM_CONN_READING || !c->parsing || c->closing || c->spill_fd >= 0 ||
            c->meta_chunk == RM_CHUNK_NONE || c->slice_count == 0 ||
            !rm_http_head_done(&c->parser) || c->parser.body_seen <= SPILL_PRESSURE_MIN)
            continue;
        /* Body slices wait at the meta's scratch offset (conn.c) until the
         * request is complete. */
        rm_slice_t *slices = (rm_slice_t *)(rm_chunk_pool_ptr(pool, c->meta_chunk) +
                                            sizeof(rm_req_meta_t) +
                                            RM_HTTP_MAX_HEADERS * sizeof(rm_wire_header_t));
        if (!rm_spill_begin(s, c, slices, c->slice_count))
            continue; /* its next piece finds it failed (sink_status) */
        c->slice_count = 0;
        rm_conn_drop_body_refs(s, c);
        moved++;
    }
    if (moved)
        RM_DEBUG("pool dry: %u request bodies in progress moved to their files", moved);
    return moved;
}

bool rm_spill_piece(rm_server_t *s, rm_conn_t *c, const char *at, uint32_t len)
{
    rm_chunk_pool_t *pool = &s->region.pool;
    if (c->spill_failed) {
        c->sink_status = 500;
        return false;
    }
    if (len >= pool->chunk_size / 2) {
        write_in_place(s, c, c->feed_chunk, at, len);
        return true;
    }
    if (c->spill_pack != RM_CHUNK_NONE && c->spill_pack_len + len > pool->chunk_size)
        flush_pack(s, c);
    if (c->spill_pack == RM_CHUNK_NONE) {
        c->spill_pack = rm_chunk_alloc_input(s);
        if (c->spill_pack == RM_CHUNK_NONE) {
            /* No chunk to gather small pieces in: write this one from where
             * it lies (one more, smaller write; nothing fails for it). */
            write_in_place(s, c, c->feed_chunk, at, len);
            return true;
        }
        c->spill_pack_len = 0;
        c->spill_pack_off = c->spill_len;
    }
    memcpy(rm_chunk_pool_ptr(pool, c->spill_pack) + c->spill_pack_len, at, len);
    c->spill_pack_len += len;
    c->spill_len += len;
    return true;
}

bool rm_spill_complete(rm_server_t *s, rm_conn_t *c)
{
    flush_pack(s, c);
    return c->spill_pending == 0;
}

void rm_spill_finish_meta(rm_server_t *s, rm_conn_t *c, rm_req_meta_t *m)
{
    char *path = (char *)rm_wire_body(m); /* no slices: the path takes their place */
    size_t room = s->region.pool.chunk_size - rm_wire_meta_size(m->header_count, 0);
    int n = spill_path(s, c, path, room);
    m->flags |= RM_REQ_BODY_FILE;
    m->body_slice_count = 0;
    m->body_len = c->spill_len;
    c->meta_len = (uint32_t)(rm_wire_meta_size(m->header_count, 0) + (size_t)n + 1);
}

void rm_spill_on_write(rm_server_t *s, uint32_t conn_idx, uint32_t chunk, int res)
{
    if (chunk < s->region.pool.count)
        rm_chunk_unref(s, chunk);
    if (conn_idx >= s->conn_cap)
        return;
    rm_conn_t *c = &s->conns[conn_idx];
    if (c->spill_pending == 0) {
        RM_ERROR("spill write completion for connection %u, which has none in flight", conn_idx);
        return;
    }
    c->spill_pending--;
    if (c->spill_fd < 0) {
        /* The request was dropped (an error, a timeout): this was its tail. */
        if (c->spill_pending == 0 && c->closing)
            rm_server_close_conn(s, c); /* it waited for this write */
        return;
    }
    if (res >= 0)
        c->spill_written += (uint64_t)res;
    if (c->closing) {
        if (c->spill_pending == 0)
            rm_server_close_conn(s, c); /* it waited for this write */
        return;
    }
    if (res < 0) {
        /* Answer at once, whether the body is complete, still arriving or
         * paused behind the disk (waiting for writes that will never catch up
         * would only end in a 408). Dropping the request removes the file;
         * writes still in flight end on the closed descriptor (above). */
        int status = res == -ENOSPC || res == -EDQUOT ? 507 : 500;
        RM_ERROR("writing a spilled request body: %s; answered %d", strerror(-res), status);
        c->spill_failed = true;
        c->spill_waiting = false;
        rm_conn_abort_request(s, c, status);
        return;
    }
    if (c->recv_paused && c->spill_len - c->spill_written <= lag_max(s) / 2) {
        /* Caught up: parse what is queued, then read again. */
        c->recv_paused = false;
        rm_conn_process(s, c);
        if (c->state != RM_CONN_FREE && !c->recv_armed && !c->closing && !c->close_after &&
            !c->recv_paused && !c->peer_eof)
            rm_server_arm_recv(s, c);
    }
    if (c->spill_pending > 0)
        return;
    if (!c->spill_waiting)
        return;
    c->spill_waiting = false;
    if (c->spill_failed || c->spill_written != c->spill_len) {
        /* A regular file's write comes back short when the file system is
         * full (the next one would say ENOSPC). */
        RM_ERROR("a spilled request body was written short (%llu of %llu bytes): disk full; "
                 "answered 507",
                 (unsigned long long)c->spill_written, (unsigned long long)c->spill_len);
        rm_conn_abort_request(s, c, 507);
        return;
    }
    rm_conn_request_complete(s, c);
}

void rm_spill_drop(rm_server_t *s, rm_conn_t *c)
{
    if (c->spill_pack != RM_CHUNK_NONE) {
        rm_chunk_unref(s, c->spill_pack);
        c->spill_pack = RM_CHUNK_NONE;
        c->spill_pack_len = 0;
    }
    c->recv_paused = false; /* whoever drops the request re-arms or closes */
    if (c->spill_fd < 0)
        return;
    if (c->spill_pending > 0)
        io_uring_submit(&s->ring); /* queued writes take the file before it closes */
    char path[RM_SPILL_DIR_PATH_MAX + 32];
    spill_path(s, c, path, sizeof(path));
    int rc = rm_spill_dir_unlink(&s->spill_dir, c->spill_seq);
    if (rc < 0 && rc != -ENOENT)
        RM_WARN("removing spilled body %s: %s", path, strerror(-rc));
    close(c->spill_fd);
    c->spill_fd = -1;
    c->spill_len = 0;
    c->spill_written = 0;
    c->spill_waiting = false;
}
