/*
 * control_socket.h - the supervisor's control socket: `ringmaster ctl` and
 * attaching workers connect here (docs/control.md, docs/attach.md).
 *
 * A Unix stream socket at --control PATH, mode 0600 (0660 and the group of
 * --control-group when given), served by the supervisor's io_uring loop: one
 * accept, and one receive or send per client at a time. Each peer is checked
 * with SO_PEERCRED when it connects (control_access.h); a refused peer gets
 * one error response and is disconnected. Requests are answered in order,
 * one at a time per client; a client may send several over one connection.
 */
#ifndef RINGMASTER_CONTROL_SOCKET_H
#define RINGMASTER_CONTROL_SOCKET_H

#include "ringmaster/control_access.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

/* Clients served at once. One more connecting when all are taken pushes out
 * the one that has waited longest without an answer (never one that is
 * being answered, if another will do): silent clients cannot lock the
 * operator out. */
#define RM_CONTROL_CLIENTS 16
/* A client gets this long to send a complete request, counted from accept
 * or from the first byte of a later request. */
#define RM_CONTROL_REQUEST_MS 1000u
/* ... this long to read our answer once it stops fitting the socket buffer. */
#define RM_CONTROL_REPLY_MS 5000u
/* ... and may stay idle this long between answered requests (`ctl top`
 * sends one a second). */
#define RM_CONTROL_IDLE_MS 30000u
/* A request frame is small (an attach is the largest, a few hundred bytes). */
#define RM_CONTROL_REQUEST_MAX 4096

struct rm_server;
struct io_uring_cqe;

typedef struct rm_control_client {
    int fd;       /* -1: free slot */
    uint32_t gen; /* bumped per connection; part of user_data */
    bool recv_armed;
    bool send_busy;
    bool close_after;       /* once the output is sent */
    bool answered;          /* got at least one answer: not a silent client */
    uint64_t deadline_ns;   /* dropped when the loop passes it (rm_control_tick) */
    uint64_t active_ns;     /* accept or the last answer: who waited longest */
    rm_control_peer_t peer; /* as checked at accept */
    uint32_t in_len;
    char in[RM_CONTROL_REQUEST_MAX];
    char *out; /* owned: the response being sent */
    size_t out_len, out_off;
} rm_control_client_t;

typedef struct rm_control_socket {
    int listen_fd; /* -1 when disabled */
    bool accept_armed;
    rm_control_policy_t policy;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    rm_control_client_t clients[RM_CONTROL_CLIENTS];
} rm_control_socket_t;

/* Bind and listen at cfg->control_path (no-op when disabled): creates the
 * default directory (0700) when needed, refuses to replace a path that is not
 * a stale socket (one nobody accepts on). In the default directory it also
 * removes the sockets of supervisors that died without removing theirs
 * (PID.sock whose pid is gone and on which nobody accepts). With --user the
 * socket (and a default directory) is given to that user, who may use it as
 * the owner. 0, or -errno with the reason printed for the operator. */
int rm_control_open(struct rm_server *s);

/* Arm the accept (once the ring exists). */
void rm_control_start(struct rm_server *s);

/* A completion for RM_OP_CONTROL_ACCEPT, _RECV or _SEND. */
void rm_control_on_cqe(struct rm_server *s, int op, uint32_t gen, uint32_t idx,
                       const struct io_uring_cqe *cqe);

/* Drop clients past their deadline (the loop calls it at least every 500 ms). */
void rm_control_tick(struct rm_server *s, uint64_t now);

/* Close every client and the listener, and remove the socket file. */
void rm_control_close(struct rm_server *s);

#endif
