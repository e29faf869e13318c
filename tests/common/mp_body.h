/*
 * mp_body.h - msgpack bodies built with msgpack-c itself, so that tests can
 * say things our encoders never would. Header-only, for the tests.
 */
#ifndef RINGMASTER_TESTS_MP_BODY_H
#define RINGMASTER_TESTS_MP_BODY_H

#include <msgpack.h>
#include <string.h>

typedef struct body {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} body_t;

static inline void body_init(body_t *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static inline void put_str(body_t *b, const char *s)
{
    msgpack_pack_str_with_body(&b->pk, s, strlen(s));
}

#endif
