/*
 * control_proto.c - encoding and decoding of control-socket messages.
 *
 * Every struct in the schema is described once, by a table of its fields
 * (key, kind, offset): the encoder and the decoder walk the same table, so a
 * field added to a table is on the wire both ways and in the round-trip
 * tests. Decoding takes only frames rm_ctl_frame_check passed, and checks
 * every value's type against the table.
 */
#include "ringmaster/control_proto.h"
#include "ringmaster/control.h"

#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

static const char *const cmd_names[] = {
    [RM_CTLP_NONE] = "none",     [RM_CTLP_STATS] = "stats",   [RM_CTLP_WORKERS] = "workers",
    [RM_CTLP_SCALE] = "scale",   [RM_CTLP_RELOAD] = "reload", [RM_CTLP_STOP] = "stop",
    [RM_CTLP_ATTACH] = "attach",
};
#define NCMDS (sizeof(cmd_names) / sizeof(cmd_names[0]))

const char *rm_ctlp_cmd_name(rm_ctlp_cmd_t cmd)
{
    return (unsigned)cmd < NCMDS ? cmd_names[cmd] : "none";
}

rm_ctlp_cmd_t rm_ctlp_cmd_from(const char *name)
{
    for (size_t i = RM_CTLP_STATS; i < NCMDS; i++)
        if (strcmp(name, cmd_names[i]) == 0)
            return (rm_ctlp_cmd_t)i;
    return RM_CTLP_NONE;
}

/* ---- field tables ------------------------------------------------------ */

enum kind { K_U32, K_U64, K_I32, K_BOOL, K_STR };

typedef struct field {
    const char *key;
    enum kind kind;
    size_t off;
    size_t cap; /* K_STR: the char array's size */
} field_t;

#define F(T, key, kind, member)                                                                    \
    {                                                                                              \
        key, kind, offsetof(T, member), sizeof(((T *)0)->member)                                   \
    }

static const field_t request_fields[] = {
    F(rm_ctlp_request_t, "pid", K_I32, pid),       F(rm_ctlp_request_t, "threads", K_U32, threads),
    F(rm_ctlp_request_t, "python", K_STR, python), F(rm_ctlp_request_t, "mode", K_STR, mode),
    F(rm_ctlp_request_t, "app", K_STR, app),
};

static const field_t stats_fields[] = {
    F(rm_ctlp_stats_t, "pid", K_I32, pid),
    F(rm_ctlp_stats_t, "version", K_STR, version),
    F(rm_ctlp_stats_t, "uptime_ms", K_U64, uptime_ms),
    F(rm_ctlp_stats_t, "workers_target", K_U32, workers_target),
    F(rm_ctlp_stats_t, "workers_ready", K_U32, workers_ready),
    F(rm_ctlp_stats_t, "workers_attached", K_U32, workers_attached),
    F(rm_ctlp_stats_t, "connections", K_U32, connections),
    F(rm_ctlp_stats_t, "queued", K_U32, queued),
    F(rm_ctlp_stats_t, "in_flight", K_U32, in_flight),
    F(rm_ctlp_stats_t, "requests", K_U64, requests),
    F(rm_ctlp_stats_t, "chunks_used", K_U32, chunks_used),
    F(rm_ctlp_stats_t, "chunks_total", K_U32, chunks_total),
    F(rm_ctlp_stats_t, "reloads", K_U32, reloads),
    F(rm_ctlp_stats_t, "stopping", K_BOOL, stopping),
    F(rm_ctlp_stats_t, "attach_only", K_BOOL, attach_only),
};

static const field_t worker_fields[] = {
    F(rm_ctlp_worker_t, "lane", K_U32, lane),
    F(rm_ctlp_worker_t, "pid", K_I32, pid),
    F(rm_ctlp_worker_t, "state", K_STR, state),
    F(rm_ctlp_worker_t, "mode", K_STR, mode),
    F(rm_ctlp_worker_t, "python", K_STR, python),
    F(rm_ctlp_worker_t, "attached", K_BOOL, attached),
    F(rm_ctlp_worker_t, "requests", K_U64, requests),
    F(rm_ctlp_worker_t, "in_flight", K_U32, in_flight),
    F(rm_ctlp_worker_t, "rss_bytes", K_U64, rss_bytes),
    F(rm_ctlp_worker_t, "uptime_ms", K_U64, uptime_ms),
};

#define NFIELDS(t) (sizeof(t) / sizeof(t[0]))

/* ---- encoding ---------------------------------------------------------- */

static int put_key(msgpack_packer *pk, const char *key)
{
    return msgpack_pack_str_with_body(pk, key, strlen(key));
}

static int put_str(msgpack_packer *pk, const char *key, const char *s, size_t cap)
{
    size_t n = strnlen(s, cap); /* a full array may lack its NUL */
    return put_key(pk, key) || msgpack_pack_str_with_body(pk, s, n) ? -1 : 0;
}

static int put_fields(msgpack_packer *pk, const void *obj, const field_t *f, size_t n)
{
    const char *base = obj;
    for (size_t i = 0; i < n; i++) {
        const char *p = base + f[i].off;
        if (f[i].kind == K_STR) {
            if (put_str(pk, f[i].key, p, f[i].cap))
                return -1;
            continue;
        }
        if (put_key(pk, f[i].key))
            return -1;
        int r = 0;
        switch (f[i].kind) {
        case K_U32:
            r = msgpack_pack_uint32(pk, *(const uint32_t *)p);
            break;
        case K_U64:
            r = msgpack_pack_uint64(pk, *(const uint64_t *)p);
            break;
        case K_I32:
            r = msgpack_pack_int32(pk, *(const int32_t *)p);
            break;
        case K_BOOL:
            r = *(const bool *)p ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
            break;
        case K_STR:
            break;
        }
        if (r)
            return -1;
    }
    return 0;
}

static int put_map(msgpack_packer *pk, const char *key, const void *obj, const field_t *f, size_t n)
{
    if ((key && put_key(pk, key)) || msgpack_pack_map(pk, n))
        return -1;
    return put_fields(pk, obj, f, n);
}

static int put_uint(msgpack_packer *pk, const char *key, uint64_t v)
{
    return put_key(pk, key) || msgpack_pack_uint64(pk, v) ? -1 : 0;
}

/* The buffer starts with room for the prefix, filled in at the end. */
static ssize_t finish(msgpack_sbuffer *sb, int packed, char **out)
{
    if (packed || !sb->data) {
        msgpack_sbuffer_destroy(sb);
        return -ENOMEM;
    }
    size_t body = sb->size - RM_CTL_PREFIX;
    if (body > RM_CTLP_MAX_FRAME) {
        msgpack_sbuffer_destroy(sb);
        return -EMSGSIZE;
    }
    rm_ctl_frame_prefix(sb->data, body);
    *out = msgpack_sbuffer_release(sb);
    return (ssize_t)(RM_CTL_PREFIX + body);
}

static void start(msgpack_sbuffer *sb, msgpack_packer *pk)
{
    static const char zero[RM_CTL_PREFIX];
    msgpack_sbuffer_init(sb);
    msgpack_sbuffer_write(sb, zero, sizeof(zero));
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
}

ssize_t rm_ctlp_encode_request(const rm_ctlp_request_t *req, char **out)
{
    if (req->cmd <= RM_CTLP_NONE || (unsigned)req->cmd >= NCMDS)
        return -EINVAL;
    bool scale = req->cmd == RM_CTLP_SCALE;
    bool attach = req->cmd == RM_CTLP_ATTACH;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    start(&sb, &pk);
    const char *cmd = rm_ctlp_cmd_name(req->cmd);
    int r = msgpack_pack_map(&pk, 2 + (scale ? 1 : 0) + (attach ? NFIELDS(request_fields) : 0)) ||
            put_uint(&pk, "v", req->version ? req->version : RM_CTLP_VERSION) ||
            put_str(&pk, "cmd", cmd, strlen(cmd) + 1);
    if (!r && scale)
        r = put_key(&pk, req->relative ? "delta" : "n") || msgpack_pack_int32(&pk, req->scale);
    if (!r && attach)
        r = put_fields(&pk, req, request_fields, NFIELDS(request_fields));
    return finish(&sb, r, out);
}

ssize_t rm_ctlp_encode_response(const rm_ctlp_response_t *resp, char **out)
{
    if (resp->has_workers && resp->nworkers > RM_CTLP_MAX_WORKERS)
        return -EMSGSIZE;
    bool scale = resp->ok && resp->cmd == RM_CTLP_SCALE;
    uint32_t entries = 3 + !resp->ok + resp->has_stats + resp->has_workers + scale + resp->has_lane;
    const char *cmd = rm_ctlp_cmd_name(resp->cmd);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    start(&sb, &pk);
    int r = msgpack_pack_map(&pk, entries) ||
            put_uint(&pk, "v", resp->version ? resp->version : RM_CTLP_VERSION) ||
            put_str(&pk, "cmd", cmd, strlen(cmd) + 1) || put_key(&pk, "ok") ||
            (resp->ok ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk));
    if (!r && !resp->ok)
        r = put_str(&pk, "error", resp->error, sizeof(resp->error));
    if (!r && resp->has_stats)
        r = put_map(&pk, "stats", &resp->stats, stats_fields, NFIELDS(stats_fields));
    if (!r && resp->has_workers) {
        r = put_key(&pk, "workers") || msgpack_pack_array(&pk, resp->nworkers);
        for (uint32_t i = 0; !r && i < resp->nworkers; i++)
            r = put_map(&pk, NULL, &resp->workers[i], worker_fields, NFIELDS(worker_fields));
    }
    if (!r && scale)
        r = put_uint(&pk, "target", resp->target);
    if (!r && resp->has_lane)
        r = put_uint(&pk, "lane", resp->lane);
    return finish(&sb, r, out);
}

/* ---- decoding ---------------------------------------------------------- */

static bool key_is(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

/* An integer in [min, max], of either msgpack sign. */
static int get_int(const msgpack_object *v, int64_t min, uint64_t max, int64_t *out)
{
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= max) {
        *out = (int64_t)v->via.u64;
        return 0;
    }
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && v->via.i64 >= min) {
        *out = v->via.i64;
        return 0;
    }
    return -EBADMSG;
}

/* Copy a string into a fixed array, cut at a UTF-8 boundary, NUL-terminated. */
static int get_str(const msgpack_object *v, char *dst, size_t cap)
{
    if (v->type != MSGPACK_OBJECT_STR)
        return -EBADMSG;
    size_t n = v->via.str.size;
    if (n > cap - 1) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)v->via.str.ptr[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, v->via.str.ptr, n);
    dst[n] = '\0';
    return 0;
}

/* Set the field `k` names, if the table has it. 1 when it was not there. */
static int get_field(const msgpack_object *k, const msgpack_object *v, void *obj, const field_t *f,
                     size_t n)
{
    char *base = obj;
    for (size_t i = 0; i < n; i++) {
        if (!key_is(k, f[i].key))
            continue;
        char *p = base + f[i].off;
        int64_t x = 0;
        switch (f[i].kind) {
        case K_U32:
            if (get_int(v, 0, UINT32_MAX, &x))
                return -EBADMSG;
            *(uint32_t *)p = (uint32_t)x;
            return 0;
        case K_U64:
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return -EBADMSG;
            *(uint64_t *)p = v->via.u64;
            return 0;
        case K_I32:
            if (get_int(v, INT32_MIN, INT32_MAX, &x))
                return -EBADMSG;
            *(int32_t *)p = (int32_t)x;
            return 0;
        case K_BOOL:
            if (v->type != MSGPACK_OBJECT_BOOLEAN)
                return -EBADMSG;
            *(bool *)p = v->via.boolean;
            return 0;
        case K_STR:
            return get_str(v, p, f[i].cap);
        }
    }
    return 1; /* a newer peer's key: ignored */
}

static int get_map(const msgpack_object *m, void *obj, const field_t *f, size_t n)
{
    if (m->type != MSGPACK_OBJECT_MAP)
        return -EBADMSG;
    for (uint32_t i = 0; i < m->via.map.size; i++)
        if (get_field(&m->via.map.ptr[i].key, &m->via.map.ptr[i].val, obj, f, n) < 0)
            return -EBADMSG;
    return 0;
}

static int get_version(const msgpack_object *v, uint32_t *out)
{
    int64_t x;
    if (get_int(v, 0, UINT32_MAX, &x))
        return -EBADMSG;
    *out = (uint32_t)x;
    return 0;
}

static int get_cmd(const msgpack_object *v, rm_ctlp_cmd_t *out)
{
    char name[16];
    if (get_str(v, name, sizeof(name)))
        return -EBADMSG;
    *out = rm_ctlp_cmd_from(name);
    return 0;
}

/* Unpack one checked frame and hand its root map to `decode`. */
static ssize_t unpack(const char *buf, size_t len, int (*decode)(const msgpack_object *, void *),
                      void *out)
{
    ssize_t frame = rm_ctl_frame_check(buf, len, RM_CTLP_MAX_FRAME);
    if (frame <= 0)
        return frame;
    size_t body = (size_t)frame - RM_CTL_PREFIX;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int r = -EBADMSG;
    if (msgpack_unpack_next(&up, buf + RM_CTL_PREFIX, body, &off) == MSGPACK_UNPACK_SUCCESS &&
        off == body && up.data.type == MSGPACK_OBJECT_MAP)
        r = decode(&up.data, out);
    msgpack_unpacked_destroy(&up);
    return r < 0 ? r : frame;
}

/* Call `entry` for each key and value of a map; stop at an error. */
static int each_entry(const msgpack_object *root,
                      int (*entry)(const msgpack_object *, const msgpack_object *, void *),
                      void *arg)
{
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        int r = entry(&root->via.map.ptr[i].key, &root->via.map.ptr[i].val, arg);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The keys both directions share: "v" and "cmd". 1 when `k` is neither. */
static int get_header(const msgpack_object *k, const msgpack_object *v, uint32_t *version,
                      rm_ctlp_cmd_t *cmd, unsigned *seen)
{
    if (key_is(k, "v")) {
        *seen |= 1;
        return get_version(v, version);
    }
    if (key_is(k, "cmd")) {
        *seen |= 2;
        return get_cmd(v, cmd);
    }
    return 1;
}

typedef struct request_dec {
    rm_ctlp_request_t *req;
    unsigned seen; /* 1: "v", 2: "cmd" */
} request_dec_t;

static int request_entry(const msgpack_object *k, const msgpack_object *v, void *arg)
{
    request_dec_t *d = arg;
    rm_ctlp_request_t *req = d->req;
    int r = get_header(k, v, &req->version, &req->cmd, &d->seen);
    if (r <= 0)
        return r;
    if (key_is(k, "n") || key_is(k, "delta")) {
        int64_t x = 0;
        r = get_int(v, INT32_MIN, INT32_MAX, &x);
        req->scale = (int32_t)x;
        req->relative = key_is(k, "delta");
        return r;
    }
    return get_field(k, v, req, request_fields, NFIELDS(request_fields));
}

static int decode_request(const msgpack_object *root, void *arg)
{
    request_dec_t d = {.req = arg};
    int r = each_entry(root, request_entry, &d);
    return r < 0 ? r : d.seen == 3 ? 0 : -EBADMSG;
}

ssize_t rm_ctlp_decode_request(const char *buf, size_t len, rm_ctlp_request_t *out)
{
    memset(out, 0, sizeof(*out));
    ssize_t r = unpack(buf, len, decode_request, out);
    if (r < 0)
        memset(out, 0, sizeof(*out));
    return r;
}

static int decode_workers(const msgpack_object *v, rm_ctlp_response_t *resp)
{
    if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > RM_CTLP_MAX_WORKERS || resp->workers)
        return -EBADMSG;
    resp->has_workers = true;
    resp->nworkers = v->via.array.size;
    if (resp->nworkers == 0)
        return 0;
    resp->workers = calloc(resp->nworkers, sizeof(rm_ctlp_worker_t));
    if (!resp->workers)
        return -EBADMSG;
    for (uint32_t i = 0; i < resp->nworkers; i++)
        if (get_map(&v->via.array.ptr[i], &resp->workers[i], worker_fields, NFIELDS(worker_fields)))
            return -EBADMSG;
    return 0;
}

typedef struct response_dec {
    rm_ctlp_response_t *resp;
    unsigned seen; /* 1: "v", 2: "cmd", 4: "ok" */
} response_dec_t;

static int response_entry(const msgpack_object *k, const msgpack_object *v, void *arg)
{
    response_dec_t *d = arg;
    rm_ctlp_response_t *resp = d->resp;
    int64_t x = 0;
    int r = get_header(k, v, &resp->version, &resp->cmd, &d->seen);
    if (r <= 0)
        return r;
    r = 0;
    if (key_is(k, "ok")) {
        if (v->type != MSGPACK_OBJECT_BOOLEAN)
            return -EBADMSG;
        resp->ok = v->via.boolean;
        d->seen |= 4;
    } else if (key_is(k, "error")) {
        r = get_str(v, resp->error, sizeof(resp->error));
    } else if (key_is(k, "stats")) {
        r = get_map(v, &resp->stats, stats_fields, NFIELDS(stats_fields));
        resp->has_stats = true;
    } else if (key_is(k, "workers")) {
        r = decode_workers(v, resp);
    } else if (key_is(k, "target")) {
        r = get_int(v, 0, UINT32_MAX, &x);
        resp->target = (uint32_t)x;
    } else if (key_is(k, "lane")) {
        r = get_int(v, 0, UINT32_MAX, &x);
        resp->lane = (uint32_t)x;
        resp->has_lane = true;
    }
    return r;
}

/* "cmd" may be missing from a response (older peers): "v" and "ok" may not. */
static int decode_response(const msgpack_object *root, void *arg)
{
    response_dec_t d = {.resp = arg};
    int r = each_entry(root, response_entry, &d);
    return r < 0 ? r : (d.seen & 5) == 5 ? 0 : -EBADMSG;
}

ssize_t rm_ctlp_decode_response(const char *buf, size_t len, rm_ctlp_response_t *out)
{
    memset(out, 0, sizeof(*out));
    ssize_t r = unpack(buf, len, decode_response, out);
    if (r < 0) {
        rm_ctlp_response_deinit(out);
        memset(out, 0, sizeof(*out));
    }
    return r;
}

void rm_ctlp_response_deinit(rm_ctlp_response_t *resp)
{
    free(resp->workers);
    resp->workers = NULL;
    resp->nworkers = 0;
}
