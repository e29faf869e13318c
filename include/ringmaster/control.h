/*
 * control.h - control-plane messages between supervisor and workers.
 *
 * Each frame is a 4-byte big-endian length followed by that many bytes of one
 * msgpack map. Keys are short strings; unknown keys are ignored so both sides
 * can grow the schema. Schema version RM_CTL_VERSION travels in "hello".
 *
 *   {"t": "hello", "v": 1, "pid": int, "lane": int, "python": str, "mode": str,
 *    "gil": bool}                       worker -> supervisor, first frame; the mode
 *                                       planned and the GIL as the build has it
 *   {"t": "ready", "mode": str, "gil": bool}
 *                                       worker -> supervisor, app imported; the mode
 *                                       run (auto may have fallen back) and whether
 *                                       the GIL is on after the import. Both keys
 *                                       are optional: a bare {"t": "ready"} (older
 *                                       workers) leaves mode "" and the hello's
 *                                       values stand
 *   {"t": "fatal", "msg": str}          worker -> supervisor, then it exits
 *   {"t": "stop"}                       supervisor -> worker: finish and exit
 *   {"t": "heartbeat", "served": int}   worker -> supervisor
 *
 * Encoding and decoding are pure (no I/O); rm_ctl_send/rm_ctl_recv_blocking are
 * thin helpers for blocking sockets.
 */
#ifndef RINGMASTER_CONTROL_H
#define RINGMASTER_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RM_CTL_VERSION 1
#define RM_CTL_MAX_FRAME 65536 /* larger frames are a protocol error */

typedef enum rm_ctl_type {
    RM_CTL_UNKNOWN = 0,
    RM_CTL_HELLO,
    RM_CTL_READY,
    RM_CTL_FATAL,
    RM_CTL_STOP,
    RM_CTL_HEARTBEAT,
} rm_ctl_type_t;

typedef struct rm_ctl_msg {
    rm_ctl_type_t type;
    uint32_t version;    /* hello */
    int32_t pid;         /* hello */
    uint32_t lane;       /* hello */
    bool gil_enabled;    /* hello, ready (when mode is set) */
    uint64_t served;     /* heartbeat */
    char python[32];     /* hello: "3.11.2" */
    char mode[24];       /* hello, ready: "gil", "subinterpreters", "free-threaded";
                            a ready without it ("") is encoded and decoded bare */
    char text[1024];     /* fatal: the readable reason, NUL-terminated, truncated */
} rm_ctl_msg_t;

/* Encode one frame (length prefix included) into buf.
 * Returns the frame's size, or -ENOSPC when cap is too small. */
ssize_t rm_ctl_encode(const rm_ctl_msg_t *msg, char *buf, size_t cap);

/* Decode the first frame in buf[0..len). Returns the bytes it used, 0 when the
 * frame is incomplete, or -EBADMSG for a malformed or oversized frame. */
ssize_t rm_ctl_decode(const char *buf, size_t len, rm_ctl_msg_t *out);

/* Encode and write a frame to a blocking socket. Returns 0 or -errno. */
int rm_ctl_send(int fd, const rm_ctl_msg_t *msg);

/* Read exactly one frame from a blocking socket. Returns 0, -ECONNRESET at
 * end of stream, -EBADMSG, or -errno. */
int rm_ctl_recv_blocking(int fd, rm_ctl_msg_t *out);

const char *rm_ctl_type_name(rm_ctl_type_t type);

/* ---- framing, shared with the control socket (control_proto.h) ---- */

#define RM_CTL_PREFIX 4 /* bytes of the big-endian body length */

/* Write the length prefix of a body of `body` bytes into buf[0..4). */
void rm_ctl_frame_prefix(char *buf, size_t body);

/* Is a whole, well-formed frame at buf[0..len)? Returns its size (prefix
 * included), 0 when more bytes are needed, or -EBADMSG for a body that is
 * empty, longer than max_body, or not exactly one msgpack object whose
 * containers fit in it (checked before anything is allocated for it). */
ssize_t rm_ctl_frame_check(const char *buf, size_t len, size_t max_body);

/* Write all of buf to a blocking socket (MSG_NOSIGNAL) or file. 0 or -errno. */
int rm_ctl_write_all(int fd, const char *buf, size_t len);

/* Read one frame (prefix included) of at most max_body body bytes from a
 * blocking socket into a malloc'd *frame the caller frees. The structure is
 * not checked. 0, -ECONNRESET at end of stream, -EBADMSG, or -errno. */
int rm_ctl_read_frame(int fd, size_t max_body, char **frame, size_t *len);

#endif
