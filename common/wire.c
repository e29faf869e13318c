/*
 * wire.c - checking a request's meta block before anyone reads through it.
 *
 * The block sits in shared memory another process writes, so every count is
 * read once into a local and every sum is done in 64 bits, where offsets and
 * lengths of at most 32 bits each cannot overflow.
 */
#include "ringmaster/wire.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

static bool span_ok(uint64_t off, uint64_t len, uint32_t chunk_size)
{
    return off <= chunk_size && len <= chunk_size - off;
}

int rm_wire_meta_check(const rm_req_meta_t *meta, size_t meta_len, uint32_t chunk_size,
                       uint32_t chunk_count)
{
    if (meta_len < sizeof(rm_req_meta_t))
        return -EBADMSG;
    uint32_t header_count = meta->header_count;
    uint32_t slice_count = meta->body_slice_count;
    if (rm_wire_meta_size(header_count, slice_count) > meta_len)
        return -EBADMSG;

    if (meta->head_chunk >= chunk_count)
        return -EBADMSG;
    if (!span_ok(meta->method_off, meta->method_len, chunk_size) ||
        !span_ok(meta->target_off, meta->target_len, chunk_size) ||
        !span_ok(meta->path_off, meta->path_len, chunk_size) ||
        !span_ok(meta->query_off, meta->query_len, chunk_size))
        return -EBADMSG;

    const rm_wire_header_t *headers = (const rm_wire_header_t *)(meta + 1);
    for (uint32_t i = 0; i < header_count; i++) {
        if (!span_ok(headers[i].name_off, headers[i].name_len, chunk_size) ||
            !span_ok(headers[i].value_off, headers[i].value_len, chunk_size))
            return -EBADMSG;
    }

    if (meta->flags & RM_REQ_BODY_FILE) {
        /* The path runs from after the headers to a NUL inside the block. */
        const char *path = (const char *)(headers + header_count);
        size_t room = meta_len - rm_wire_meta_size(header_count, 0);
        if (slice_count != 0 || room < 2 || path[0] != '/')
            return -EBADMSG;
        const char *nul = memchr(path, '\0', room < PATH_MAX ? room : PATH_MAX);
        return nul != NULL ? 0 : -EBADMSG;
    }

    const rm_slice_t *body = (const rm_slice_t *)(headers + header_count);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < slice_count; i++) {
        if (body[i].chunk >= chunk_count || !span_ok(body[i].off, body[i].len, chunk_size))
            return -EBADMSG;
        sum += body[i].len; /* at most 2^32 slices of < 2^32 bytes: no overflow */
    }
    if (sum != meta->body_len)
        return -EBADMSG;
    return 0;
}
