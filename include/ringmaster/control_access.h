/*
 * control_access.h - where the control socket lives and who may use it.
 *
 * Pure checks (no I/O) so that tests can call them with any credentials; the
 * socket itself is control_socket.h's.
 */
#ifndef RINGMASTER_CONTROL_ACCESS_H
#define RINGMASTER_CONTROL_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Supplementary groups read for a peer, at most. */
#define RM_CONTROL_MAX_GROUPS 64

/* What the supervisor allows: its own uid, root, and with --control-group the
 * members of that group. */
typedef struct rm_control_policy {
    uid_t owner;    /* the supervisor's effective uid */
    bool has_group; /* --control-group given */
    gid_t group;
} rm_control_policy_t;

/* A peer as SO_PEERCRED and /proc/PID/status describe it. */
typedef struct rm_control_peer {
    pid_t pid;
    uid_t uid;
    gid_t gid; /* primary */
    size_t ngroups;
    gid_t groups[RM_CONTROL_MAX_GROUPS]; /* supplementary */
} rm_control_peer_t;

/* May `peer` use the control socket? Root and the owner always may; a member
 * of the policy's group (primary or supplementary) may too. */
bool rm_control_peer_allowed(const rm_control_policy_t *policy, const rm_control_peer_t *peer);

/* May `peer` attach as a worker? Only the owner, or anyone the policy allows
 * when the supervisor runs as root: the supervisor must be able to kill a
 * worker it gave the region to. */
bool rm_control_peer_may_attach(const rm_control_policy_t *policy, const rm_control_peer_t *peer);

/* Fill `peer` from a connected Unix socket: SO_PEERCRED, then the "Groups:"
 * line of /proc/PID/status (left empty when unreadable). 0 or -errno. */
int rm_control_peer_of(int fd, rm_control_peer_t *peer);

/* The directory control sockets go in by default: $XDG_RUNTIME_DIR/ringmaster
 * when set, /run/ringmaster for root, else /tmp/ringmaster-UID. `env_xdg` is
 * XDG_RUNTIME_DIR (NULL or "" when unset). Returns 0 or -ENAMETOOLONG. */
int rm_control_default_dir(char *buf, size_t len, const char *env_xdg, uid_t uid);

#endif
