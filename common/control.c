/*
 * control.c - length-prefixed msgpack frames between supervisor and workers.
 *
 * The peer may be an attached worker we did not start, so decoding trusts
 * nothing: a frame is bounded by RM_CTL_MAX_FRAME, its structure is walked
 * once (check_structure) before msgpack-c builds objects from it, so that a
 * container claiming four billion entries is refused instead of allocated,
 * and every value must have the type its key calls for.
 */
#include "ringmaster/control.h"

#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PREFIX RM_CTL_PREFIX

static const char *const type_names[] = {
    [RM_CTL_UNKNOWN] = "unknown", [RM_CTL_HELLO] = "hello", [RM_CTL_READY] = "ready",
    [RM_CTL_FATAL] = "fatal",     [RM_CTL_STOP] = "stop",   [RM_CTL_HEARTBEAT] = "heartbeat",
};

const char *rm_ctl_type_name(rm_ctl_type_t type)
{
    if ((unsigned)type >= sizeof(type_names) / sizeof(type_names[0]))
        return "unknown";
    return type_names[type];
}

/* ---- encoding ---------------------------------------------------------- */

/* A msgpack writer into the caller's buffer: no allocation, and running out of
 * room is simply an error. */
typedef struct outbuf {
    char *buf;
    size_t cap;
    size_t len;
} outbuf_t;

static int out_write(void *data, const char *p, size_t n)
{
    outbuf_t *o = data;
    if (n > o->cap - o->len)
        return -1;
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return 0;
}

static int pack_str(msgpack_packer *pk, const char *key, const char *s, size_t n)
{
    if (msgpack_pack_str_with_body(pk, key, strlen(key)) < 0)
        return -1;
    return msgpack_pack_str_with_body(pk, s, n);
}

/* Fixed-size fields may lack a NUL; never read past them. */
static int pack_field(msgpack_packer *pk, const char *key, const char *field, size_t cap)
{
    return pack_str(pk, key, field, strnlen(field, cap));
}

static int pack_uint(msgpack_packer *pk, const char *key, uint64_t v)
{
    if (msgpack_pack_str_with_body(pk, key, strlen(key)) < 0)
        return -1;
    return msgpack_pack_uint64(pk, v);
}

static int pack_int(msgpack_packer *pk, const char *key, int64_t v)
{
    if (msgpack_pack_str_with_body(pk, key, strlen(key)) < 0)
        return -1;
    return msgpack_pack_int64(pk, v);
}

static int pack_bool(msgpack_packer *pk, const char *key, bool v)
{
    if (msgpack_pack_str_with_body(pk, key, strlen(key)) < 0)
        return -1;
    return v ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
}

/* Each message is a map whose first entry is "t"; fields follow. */
static int pack_body(msgpack_packer *pk, const rm_ctl_msg_t *msg)
{
    static const uint32_t entries[] = {
        [RM_CTL_HELLO] = 7, [RM_CTL_READY] = 1,     [RM_CTL_FATAL] = 2,
        [RM_CTL_STOP] = 1,  [RM_CTL_HEARTBEAT] = 2,
    };
    if (msg->type <= RM_CTL_UNKNOWN || msg->type > RM_CTL_HEARTBEAT)
        return -EINVAL;
    /* A ready with a mode also says whether the GIL is on. */
    bool ready_state = msg->type == RM_CTL_READY && msg->mode[0] != '\0';

    const char *t = rm_ctl_type_name(msg->type);
    if (msgpack_pack_map(pk, entries[msg->type] + (ready_state ? 2 : 0)) < 0 ||
        pack_str(pk, "t", t, strlen(t)) < 0)
        return -ENOSPC;
    int e = 0;
    switch (msg->type) {
    case RM_CTL_HELLO:
        if (pack_uint(pk, "v", msg->version) < 0 || pack_int(pk, "pid", msg->pid) < 0 ||
            pack_uint(pk, "lane", msg->lane) < 0 ||
            pack_field(pk, "python", msg->python, sizeof(msg->python)) < 0 ||
            pack_field(pk, "mode", msg->mode, sizeof(msg->mode)) < 0 ||
            pack_bool(pk, "gil", msg->gil_enabled) < 0)
            e = -ENOSPC;
        break;
    case RM_CTL_FATAL:
        e = pack_field(pk, "msg", msg->text, sizeof(msg->text)) < 0 ? -ENOSPC : 0;
        break;
    case RM_CTL_HEARTBEAT:
        e = pack_uint(pk, "served", msg->served) < 0 ? -ENOSPC : 0;
        break;
    case RM_CTL_READY:
        if (ready_state && (pack_field(pk, "mode", msg->mode, sizeof(msg->mode)) < 0 ||
                            pack_bool(pk, "gil", msg->gil_enabled) < 0))
            e = -ENOSPC;
        break;
    default: /* stop: the type says it all */
        break;
    }
    return e;
}

ssize_t rm_ctl_encode(const rm_ctl_msg_t *msg, char *buf, size_t cap)
{
    if (cap < PREFIX)
        return -ENOSPC;
    outbuf_t out = {buf, cap, PREFIX};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, out_write);
    int r = pack_body(&pk, msg);
    if (r < 0)
        return r;

    size_t body = out.len - PREFIX;
    if (body > RM_CTL_MAX_FRAME)
        return -EMSGSIZE;
    rm_ctl_frame_prefix(buf, body);
    return (ssize_t)out.len;
}

void rm_ctl_frame_prefix(char *buf, size_t body)
{
    unsigned char *p = (unsigned char *)buf;
    p[0] = (unsigned char)(body >> 24);
    p[1] = (unsigned char)(body >> 16);
    p[2] = (unsigned char)(body >> 8);
    p[3] = (unsigned char)body;
}

/* ---- decoding ---------------------------------------------------------- */

static uint64_t be(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* How the size of an object is given, for the type bytes 0xc0..0xdf (the
 * fix* ranges are decoded arithmetically). */
typedef struct mp_format {
    bool valid;
    uint8_t fixed;    /* payload bytes after the type byte */
    uint8_t lenbytes; /* then a big-endian payload length of this many bytes */
    uint8_t extra;    /* bytes of payload beyond that length (the ext type byte) */
    uint8_t countw;   /* or a big-endian element count of this many bytes */
    uint8_t per;      /* objects per counted element: 1 array, 2 map */
} mp_format_t;

static const mp_format_t formats[32] = {
    [0x00] = {.valid = true},                                        /* nil; 0xc1 is never used */
    [0x02] = {.valid = true},        [0x03] = {.valid = true},       /* false, true */
    [0x04] = {true, 0, 1, 0, 0, 0},  [0x05] = {true, 0, 2, 0, 0, 0}, /* bin8, bin16 */
    [0x06] = {true, 0, 4, 0, 0, 0},                                  /* bin32 */
    [0x07] = {true, 0, 1, 1, 0, 0},  [0x08] = {true, 0, 2, 1, 0, 0}, /* ext8, ext16 */
    [0x09] = {true, 0, 4, 1, 0, 0},                                  /* ext32 */
    [0x0a] = {true, 4, 0, 0, 0, 0},  [0x0b] = {true, 8, 0, 0, 0, 0}, /* float32, float64 */
    [0x0c] = {true, 1, 0, 0, 0, 0},  [0x0d] = {true, 2, 0, 0, 0, 0}, /* uint8..64 */
    [0x0e] = {true, 4, 0, 0, 0, 0},  [0x0f] = {true, 8, 0, 0, 0, 0},
    [0x10] = {true, 1, 0, 0, 0, 0},  [0x11] = {true, 2, 0, 0, 0, 0}, /* int8..64 */
    [0x12] = {true, 4, 0, 0, 0, 0},  [0x13] = {true, 8, 0, 0, 0, 0},
    [0x14] = {true, 2, 0, 0, 0, 0},  [0x15] = {true, 3, 0, 0, 0, 0}, /* fixext 1, 2 (+type) */
    [0x16] = {true, 5, 0, 0, 0, 0},  [0x17] = {true, 9, 0, 0, 0, 0}, /* fixext 4, 8 */
    [0x18] = {true, 17, 0, 0, 0, 0},                                 /* fixext 16 */
    [0x19] = {true, 0, 1, 0, 0, 0},  [0x1a] = {true, 0, 2, 0, 0, 0}, /* str8, str16 */
    [0x1b] = {true, 0, 4, 0, 0, 0},                                  /* str32 */
    [0x1c] = {true, 0, 0, 0, 2, 1},  [0x1d] = {true, 0, 0, 0, 4, 1}, /* array16, array32 */
    [0x1e] = {true, 0, 0, 0, 2, 2},  [0x1f] = {true, 0, 0, 0, 4, 2}, /* map16, map32 */
};

/*
 * Walk one msgpack object spanning exactly buf[0..n) without building it.
 * `pending` counts objects still to read; every object takes at least one
 * byte, so pending may never exceed the bytes left. That bounds what
 * msgpack-c will allocate for the frame by a small multiple of its size.
 */
static int check_structure(const unsigned char *p, size_t n)
{
    size_t off = 0;
    uint64_t pending = 1;

    while (pending > 0) {
        if (off >= n)
            return -EBADMSG;
        unsigned char c = p[off++];
        uint64_t skip = 0;     /* payload bytes after the header */
        uint64_t children = 0; /* objects this one contains */

        if (c <= 0x7f || c >= 0xe0) {
            /* positive or negative fixint */
        } else if (c <= 0x8f) {
            children = 2u * (c & 0x0f); /* fixmap */
        } else if (c <= 0x9f) {
            children = c & 0x0f; /* fixarray */
        } else if (c <= 0xbf) {
            skip = c & 0x1f; /* fixstr */
        } else {
            const mp_format_t *f = &formats[c - 0xc0];
            if (!f->valid)
                return -EBADMSG;
            unsigned w = f->lenbytes ? f->lenbytes : f->countw;
            if (n - off < w)
                return -EBADMSG;
            uint64_t v = be(p + off, w);
            off += w;
            skip = f->fixed + (f->lenbytes ? v + f->extra : 0);
            children = f->countw ? v * f->per : 0;
        }
        if (skip > n - off)
            return -EBADMSG;
        off += (size_t)skip;
        pending = pending - 1 + children;
        if (pending > n - off)
            return -EBADMSG;
    }
    return off == n ? 0 : -EBADMSG;
}

static bool key_is(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->via.str.size == n && memcmp(k->via.str.ptr, name, n) == 0;
}

static int get_u64(const msgpack_object *v, uint64_t max, uint64_t *out)
{
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 > max)
        return -EBADMSG;
    *out = v->via.u64;
    return 0;
}

static int get_i32(const msgpack_object *v, int32_t *out)
{
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT32_MAX)
        *out = (int32_t)v->via.u64;
    else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && v->via.i64 >= INT32_MIN)
        *out = (int32_t)v->via.i64;
    else
        return -EBADMSG;
    return 0;
}

/* Copy a string value into a fixed field, cutting at a UTF-8 boundary and
 * always NUL-terminating. */
static int get_str(const msgpack_object *v, char *dst, size_t cap)
{
    if (v->type != MSGPACK_OBJECT_STR)
        return -EBADMSG;
    const char *src = v->via.str.ptr;
    size_t n = v->via.str.size;
    if (n > cap - 1) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

static rm_ctl_type_t type_from(const msgpack_object *v)
{
    for (size_t i = RM_CTL_HELLO; i < sizeof(type_names) / sizeof(type_names[0]); i++)
        if (key_is(v, type_names[i]))
            return (rm_ctl_type_t)i;
    return RM_CTL_UNKNOWN; /* a newer peer's message: the caller ignores it */
}

static int decode_map(const msgpack_object *root, rm_ctl_msg_t *out)
{
    if (root->type != MSGPACK_OBJECT_MAP)
        return -EBADMSG;
    bool have_type = false;
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object *k = &root->via.map.ptr[i].key;
        const msgpack_object *v = &root->via.map.ptr[i].val;
        uint64_t u;
        int r = 0;
        if (k->type != MSGPACK_OBJECT_STR)
            return -EBADMSG;
        if (key_is(k, "t")) {
            if (v->type != MSGPACK_OBJECT_STR)
                return -EBADMSG;
            out->type = type_from(v);
            have_type = true;
        } else if (key_is(k, "v")) {
            if ((r = get_u64(v, UINT32_MAX, &u)) == 0)
                out->version = (uint32_t)u;
        } else if (key_is(k, "pid")) {
            r = get_i32(v, &out->pid);
        } else if (key_is(k, "lane")) {
            if ((r = get_u64(v, UINT32_MAX, &u)) == 0)
                out->lane = (uint32_t)u;
        } else if (key_is(k, "gil")) {
            if (v->type != MSGPACK_OBJECT_BOOLEAN)
                return -EBADMSG;
            out->gil_enabled = v->via.boolean;
        } else if (key_is(k, "served")) {
            r = get_u64(v, UINT64_MAX, &out->served);
        } else if (key_is(k, "python")) {
            r = get_str(v, out->python, sizeof(out->python));
        } else if (key_is(k, "mode")) {
            r = get_str(v, out->mode, sizeof(out->mode));
        } else if (key_is(k, "msg")) {
            r = get_str(v, out->text, sizeof(out->text));
        }
        /* any other key: a newer peer's field, ignored */
        if (r < 0)
            return r;
    }
    return have_type ? 0 : -EBADMSG;
}

ssize_t rm_ctl_frame_check(const char *buf, size_t len, size_t max_body)
{
    if (len < PREFIX)
        return 0;
    uint64_t body = be((const unsigned char *)buf, PREFIX);
    /* Refuse an oversized frame before waiting for its bytes. */
    if (body == 0 || body > max_body)
        return -EBADMSG;
    if (len - PREFIX < body)
        return 0;
    if (check_structure((const unsigned char *)buf + PREFIX, (size_t)body) < 0)
        return -EBADMSG;
    return (ssize_t)(PREFIX + body);
}

ssize_t rm_ctl_decode(const char *buf, size_t len, rm_ctl_msg_t *out)
{
    ssize_t frame = rm_ctl_frame_check(buf, len, RM_CTL_MAX_FRAME);
    if (frame <= 0)
        return frame;
    size_t body = (size_t)frame - PREFIX;
    const char *p = buf + PREFIX;

    memset(out, 0, sizeof(*out));
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int r = -EBADMSG;
    if (msgpack_unpack_next(&up, p, (size_t)body, &off) == MSGPACK_UNPACK_SUCCESS && off == body)
        r = decode_map(&up.data, out);
    msgpack_unpacked_destroy(&up);
    if (r < 0) {
        memset(out, 0, sizeof(*out));
        return r;
    }
    return frame;
}

/* ---- blocking I/O ------------------------------------------------------ */

/* Large enough for the biggest frame we encode (a fatal with 1 KiB of text). */
#define SEND_BUF 2048

int rm_ctl_send(int fd, const rm_ctl_msg_t *msg)
{
    char buf[SEND_BUF];
    ssize_t len = rm_ctl_encode(msg, buf, sizeof(buf));
    if (len < 0)
        return (int)len;
    return rm_ctl_write_all(fd, buf, (size_t)len);
}

int rm_ctl_write_all(int fd, const char *buf, size_t len)
{
    bool is_socket = true;
    for (size_t done = 0; done < len;) {
        ssize_t n;
        /* MSG_NOSIGNAL: a dead peer is an error to return, not SIGPIPE. */
        if (is_socket)
            n = send(fd, buf + done, len - done, MSG_NOSIGNAL);
        else
            n = write(fd, buf + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ENOTSOCK && is_socket) {
                is_socket = false;
                continue;
            }
            return -errno;
        }
        done += (size_t)n;
    }
    return 0;
}

/* Read exactly n bytes. 0, -ECONNRESET on end of stream, or -errno. */
static int read_full(int fd, char *buf, size_t n)
{
    for (size_t done = 0; done < n;) {
        ssize_t r = read(fd, buf + done, n - done);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -ECONNRESET;
        done += (size_t)r;
    }
    return 0;
}

int rm_ctl_read_frame(int fd, size_t max_body, char **frame, size_t *len)
{
    char prefix[PREFIX];
    int r = read_full(fd, prefix, PREFIX);
    if (r < 0)
        return r;
    uint64_t body = be((const unsigned char *)prefix, PREFIX);
    if (body == 0 || body > max_body)
        return -EBADMSG;

    char *buf = malloc(PREFIX + (size_t)body);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, prefix, PREFIX);
    r = read_full(fd, buf + PREFIX, (size_t)body);
    if (r < 0) {
        free(buf);
        return r;
    }
    *frame = buf;
    *len = PREFIX + (size_t)body;
    return 0;
}

int rm_ctl_recv_blocking(int fd, rm_ctl_msg_t *out)
{
    char *frame;
    size_t len;
    int r = rm_ctl_read_frame(fd, RM_CTL_MAX_FRAME, &frame, &len);
    if (r < 0)
        return r;
    ssize_t used = rm_ctl_decode(frame, len, out);
    free(frame);
    return used < 0 ? (int)used : 0;
}
