/*
 * test_wire.c - rm_wire_meta_check accepts what the supervisor writes and
 * refuses every offset, count or sum that would read outside the region.
 */
#include "ringmaster/wire.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#define CHUNK_SIZE 16384u
#define CHUNK_COUNT 64u

/* Backing store for a meta block with room for a few headers and slices;
 * uint64_t keeps it aligned like a chunk. */
static uint64_t store[512];

/* A valid request: "POST /p?q=1 HTTP/1.1", two headers, a body in two slices. */
static rm_req_meta_t *valid_meta(size_t *len)
{
    memset(store, 0, sizeof(store));
    rm_req_meta_t *m = (rm_req_meta_t *)store;
    m->head_chunk = 3;
    m->flags = RM_REQ_KEEP_ALIVE;
    m->method_off = 0, m->method_len = 4;
    m->target_off = 5, m->target_len = 6;
    m->path_off = 5, m->path_len = 2;
    m->query_off = 8, m->query_len = 3;
    m->http_major = 1, m->http_minor = 1;
    m->header_count = 2;
    m->body_slice_count = 2;
    rm_wire_header_t *h = rm_wire_headers(m);
    h[0] = (rm_wire_header_t){.name_off = 22, .name_len = 4, .value_off = 28, .value_len = 9};
    h[1] = (rm_wire_header_t){.name_off = 39, .name_len = 14, .value_off = 55, .value_len = 3};
    rm_slice_t *b = rm_wire_body(m);
    b[0] = (rm_slice_t){.chunk = 3, .off = 60, .len = 100};
    b[1] = (rm_slice_t){.chunk = CHUNK_COUNT - 1, .off = 0, .len = CHUNK_SIZE};
    m->body_len = 100 + CHUNK_SIZE;
    *len = rm_wire_meta_size(2, 2);
    return m;
}

static int check(const rm_req_meta_t *m, size_t len)
{
    return rm_wire_meta_check(m, len, CHUNK_SIZE, CHUNK_COUNT);
}

Test(wire, layout_helpers)
{
    cr_assert_eq(rm_wire_meta_size(0, 0), sizeof(rm_req_meta_t));
    cr_assert_eq(rm_wire_meta_size(2, 3), sizeof(rm_req_meta_t) + 2 * 16 + 3 * 12);
    size_t len;
    rm_req_meta_t *m = valid_meta(&len);
    cr_assert_eq((char *)rm_wire_headers(m), (char *)m + sizeof(*m));
    cr_assert_eq((char *)rm_wire_body(m), (char *)m + sizeof(*m) + 2 * sizeof(rm_wire_header_t));
}

Test(wire, accepts_valid_meta)
{
    size_t len;
    rm_req_meta_t *m = valid_meta(&len);
    cr_assert_eq(check(m, len), 0);
    cr_assert_eq(check(m, len + 100), 0, "slack after the arrays is fine");

    /* No headers, no body, empty spans at the very end of the chunk. */
    m->header_count = 0;
    m->body_slice_count = 0;
    m->body_len = 0;
    m->query_off = CHUNK_SIZE, m->query_len = 0;
    m->method_off = CHUNK_SIZE - 3, m->method_len = 3;
    cr_assert_eq(check(m, sizeof(*m)), 0);
}

Test(wire, rejects_short_blocks_and_counts_beyond_them)
{
    size_t len;
    rm_req_meta_t *m = valid_meta(&len);
    cr_assert_eq(check(m, sizeof(*m) - 1), -EBADMSG, "shorter than the fixed part");
    cr_assert_eq(check(m, 0), -EBADMSG);
    cr_assert_eq(check(m, len - 1), -EBADMSG, "last slice cut off");

    m->header_count = UINT16_MAX;
    cr_assert_eq(check(m, len), -EBADMSG, "header count beyond meta_len");
    m = valid_meta(&len);
    m->body_slice_count = UINT32_MAX;
    cr_assert_eq(check(m, len), -EBADMSG, "slice count beyond meta_len (and 32-bit overflow)");
    m->body_slice_count = (uint32_t)(UINT32_MAX / sizeof(rm_slice_t)) + 1;
    cr_assert_eq(check(m, len), -EBADMSG, "slice count whose byte size wraps 32 bits");
}

Test(wire, rejects_head_spans_outside_the_chunk)
{
    size_t len;
    for (int which = 0; which < 4; which++) {
        for (int kind = 0; kind < 3; kind++) {
            rm_req_meta_t *m = valid_meta(&len);
            uint32_t *off[] = {&m->method_off, &m->target_off, &m->path_off, &m->query_off};
            uint32_t *ln[] = {&m->method_len, &m->target_len, &m->path_len, &m->query_len};
            switch (kind) {
            case 0: /* starts past the end */
                *off[which] = CHUNK_SIZE + 1, *ln[which] = 0;
                break;
            case 1: /* runs past the end */
                *off[which] = CHUNK_SIZE - 2, *ln[which] = 3;
                break;
            default: /* wraps 32 bits */
                *off[which] = 16, *ln[which] = UINT32_MAX - 8;
                break;
            }
            cr_expect_eq(check(m, len), -EBADMSG, "field %d kind %d accepted", which, kind);
        }
    }
    rm_req_meta_t *m = valid_meta(&len);
    m->head_chunk = CHUNK_COUNT;
    cr_assert_eq(check(m, len), -EBADMSG, "head chunk out of range");
}

Test(wire, rejects_header_spans_outside_the_chunk)
{
    size_t len;
    rm_req_meta_t *m = valid_meta(&len);
    rm_wire_header_t *h = rm_wire_headers(m);
    h[1].value_off = CHUNK_SIZE - 1, h[1].value_len = 2;
    cr_assert_eq(check(m, len), -EBADMSG, "value past the end");

    m = valid_meta(&len);
    h = rm_wire_headers(m);
    h[0].name_off = UINT32_MAX, h[0].name_len = 1;
    cr_assert_eq(check(m, len), -EBADMSG, "name offset wrapping");

    m = valid_meta(&len);
    h = rm_wire_headers(m);
    h[1].value_off = 10, h[1].value_len = UINT32_MAX;
    cr_assert_eq(check(m, len), -EBADMSG, "value length wrapping");
}

Test(wire, rejects_bad_body_slices)
{
    size_t len;
    rm_req_meta_t *m = valid_meta(&len);
    rm_wire_body(m)[0].chunk = CHUNK_COUNT;
    cr_assert_eq(check(m, len), -EBADMSG, "chunk out of range");

    m = valid_meta(&len);
    rm_wire_body(m)[1].off = 1; /* full-chunk slice shifted by one */
    cr_assert_eq(check(m, len), -EBADMSG, "slice past the end of its chunk");

    m = valid_meta(&len);
    rm_wire_body(m)[0].off = UINT32_MAX - 10, rm_wire_body(m)[0].len = 100;
    cr_assert_eq(check(m, len), -EBADMSG, "slice offset wrapping");

    m = valid_meta(&len);
    m->body_len += 1;
    cr_assert_eq(check(m, len), -EBADMSG, "body_len above the sum");
    m->body_len -= 2;
    cr_assert_eq(check(m, len), -EBADMSG, "body_len below the sum");
}

Test(wire, body_sum_is_computed_in_64_bits)
{
    /* Many full-chunk slices: the sum passes 2^32 only if a narrow sum would
     * wrap; body_len must match the true 64-bit total. */
    static uint64_t big[(sizeof(rm_req_meta_t) + 300000 * sizeof(rm_slice_t)) / 8 + 1];
    const uint32_t slices = 300000, chunk_size = 1u << 20; /* 300000 MiB in all */
    rm_req_meta_t *m = (rm_req_meta_t *)big;
    memset(m, 0, sizeof(*m));
    m->body_slice_count = slices;
    rm_slice_t *b = rm_wire_body(m);
    for (uint32_t i = 0; i < slices; i++)
        b[i] = (rm_slice_t){.chunk = i % 8, .off = 0, .len = chunk_size};
    size_t len = rm_wire_meta_size(0, slices);
    uint64_t total = (uint64_t)slices * chunk_size;
    m->body_len = total;
    cr_assert_eq(rm_wire_meta_check(m, len, chunk_size, 8), 0);
    m->body_len = total & 0xFFFFFFFFu; /* what a 32-bit sum would give */
    cr_assert_eq(rm_wire_meta_check(m, len, chunk_size, 8), -EBADMSG);
}

/* The valid request with its body spilled to a file: no slices, a path. */
static rm_req_meta_t *file_meta(size_t *len, const char *path)
{
    rm_req_meta_t *m = valid_meta(len);
    m->flags |= RM_REQ_BODY_FILE;
    m->body_slice_count = 0;
    m->body_len = 1u << 30; /* a file may hold more than the region */
    char *p = (char *)rm_wire_body(m);
    size_t n = strlen(path) + 1;
    memcpy(p, path, n);
    *len = rm_wire_meta_size(2, 0) + n;
    return m;
}

Test(wire, accepts_a_spilled_body_path)
{
    size_t len;
    rm_req_meta_t *m = file_meta(&len, "/tmp/ringmaster-1-2.body");
    cr_assert_eq(check(m, len), 0);
    cr_assert_str_eq(rm_wire_body_path(m), "/tmp/ringmaster-1-2.body");
    cr_assert_eq(check(m, len + 40), 0, "slack after the NUL is fine");
}

Test(wire, rejects_a_spilled_body_without_a_proper_path)
{
    size_t len;
    rm_req_meta_t *m = file_meta(&len, "/tmp/x.body");
    cr_assert_eq(check(m, len - 1), -EBADMSG, "NUL cut off: the path would run on");
    m->body_slice_count = 1;
    cr_assert_eq(check(m, len + sizeof(rm_slice_t)), -EBADMSG, "slices and a file at once");
    m = file_meta(&len, "tmp/x.body");
    cr_assert_eq(check(m, len), -EBADMSG, "relative path");
    m = file_meta(&len, "");
    cr_assert_eq(check(m, len), -EBADMSG, "empty path");
    m = file_meta(&len, "/x");
    cr_assert_eq(check(m, rm_wire_meta_size(2, 0)), -EBADMSG, "no room for a path");
}
