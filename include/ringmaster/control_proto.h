/*
 * control_proto.h - the schema of the supervisor's control socket
 * (`ringmaster ctl`, attached workers), documented in docs/control.md.
 *
 * Framing is control.h's: a 4-byte big-endian length, then one msgpack map.
 * A client sends one request and reads one response, then may send another.
 *
 *   request  {"v": 1, "cmd": "stats"|"workers"|"scale"|"reload"|"stop"|"attach",
 *             "n": int            scale: the pool's new size (absolute), or
 *             "delta": int        scale: relative (+1, -1)
 *             "pid": int, "python": str, "mode": str, "threads": int, "app": str
 *                                 attach: what the attaching process says of itself}
 *   response {"v": 1, "ok": bool, "cmd": str, "error": str (when not ok),
 *             "stats": {...}      stats
 *             "workers": [{...}]  workers
 *             "target": int       scale: the pool's size now
 *             "lane": int         attach: the lane granted; the frame carries
 *                                 three descriptors (SCM_RIGHTS): region memfd,
 *                                 doorbell eventfd, control socket}
 *
 * Versioning: "v" is the schema's major version. Fields are only ever added
 * within a version; a reader ignores keys it does not know and treats a
 * missing optional key as zero or empty. A request of another major version
 * is answered {"ok": false} with the supervisor's "v". Encoding and decoding
 * are pure; decoding refuses a frame before allocating anything for it
 * (rm_ctl_frame_check).
 */
#ifndef RINGMASTER_CONTROL_PROTO_H
#define RINGMASTER_CONTROL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RM_CTLP_VERSION 1
/* A response lists every worker slot (1024 at most, ~200 bytes each). */
#define RM_CTLP_MAX_FRAME (1u << 20)
#define RM_CTLP_MAX_WORKERS 4096
/* Descriptors an attach response carries, in this order. */
#define RM_CTLP_ATTACH_FDS 4

typedef enum rm_ctlp_cmd {
    RM_CTLP_NONE = 0, /* unknown to this version */
    RM_CTLP_STATS,
    RM_CTLP_WORKERS,
    RM_CTLP_SCALE,
    RM_CTLP_RELOAD,
    RM_CTLP_STOP,
    RM_CTLP_ATTACH,
} rm_ctlp_cmd_t;

typedef struct rm_ctlp_request {
    uint32_t version;
    rm_ctlp_cmd_t cmd;
    bool relative;    /* scale: delta, not n */
    int32_t scale;    /* scale: n (absolute, >= 1) or delta */
    int32_t pid;      /* attach: informational; the peer's credentials decide */
    uint32_t threads; /* attach */
    char python[32];  /* attach: "3.13.0" */
    char mode[24];    /* attach: "gil", "free-threaded" */
    char app[128];    /* attach: "module:app" */
} rm_ctlp_request_t;

typedef struct rm_ctlp_stats {
    int32_t pid;
    char version[16]; /* ringmaster's */
    uint64_t uptime_ms;
    uint32_t workers_target; /* the embedded pool's size */
    uint32_t workers_ready;  /* ready workers, attached ones included */
    uint32_t workers_attached;
    uint32_t connections; /* client connections open */
    uint32_t queued;      /* requests waiting for a worker */
    uint32_t in_flight;   /* requests on lanes, not finished */
    uint64_t requests;    /* responses finished since start */
    uint32_t chunks_used;
    uint32_t chunks_total;
    uint32_t reloads; /* app generation: reload and SIGHUP bump it */
    bool stopping;
    bool attach_only;
} rm_ctlp_stats_t;

typedef struct rm_ctlp_worker {
    uint32_t lane;
    int32_t pid;
    char state[16]; /* "starting", "ready", "stopping" */
    char mode[24];
    char python[32];
    bool attached;
    uint64_t requests; /* finished */
    uint32_t in_flight;
    uint64_t rss_bytes;
    uint64_t uptime_ms;
} rm_ctlp_worker_t;

typedef struct rm_ctlp_response {
    uint32_t version;
    rm_ctlp_cmd_t cmd;
    bool ok;
    char error[256];
    bool has_stats;
    rm_ctlp_stats_t stats;
    bool has_workers;
    uint32_t nworkers;
    rm_ctlp_worker_t *workers; /* owned: heap, freed by rm_ctlp_response_deinit */
    uint32_t target;           /* scale */
    bool has_lane;
    uint32_t lane; /* attach */
} rm_ctlp_response_t;

const char *rm_ctlp_cmd_name(rm_ctlp_cmd_t cmd);
/* NONE for a name this version does not know. */
rm_ctlp_cmd_t rm_ctlp_cmd_from(const char *name);

/* Encode one frame (length prefix included) into a malloc'd *out the caller
 * frees. Returns its size, -EINVAL for a command NONE, -EMSGSIZE beyond
 * RM_CTLP_MAX_FRAME, or -ENOMEM. */
ssize_t rm_ctlp_encode_request(const rm_ctlp_request_t *req, char **out);
ssize_t rm_ctlp_encode_response(const rm_ctlp_response_t *resp, char **out);

/* Decode the first frame in buf[0..len). Returns the bytes it used, 0 when
 * incomplete, or -EBADMSG (malformed, oversized, a value of the wrong type,
 * more than RM_CTLP_MAX_WORKERS workers). A request whose command is unknown
 * decodes with cmd NONE; one without "v" or "cmd" is -EBADMSG. The response
 * must be released with rm_ctlp_response_deinit, also after an error. */
ssize_t rm_ctlp_decode_request(const char *buf, size_t len, rm_ctlp_request_t *out);
ssize_t rm_ctlp_decode_response(const char *buf, size_t len, rm_ctlp_response_t *out);

void rm_ctlp_response_deinit(rm_ctlp_response_t *resp);

#endif
