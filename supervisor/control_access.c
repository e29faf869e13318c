/*
 * control_access.c - the control socket's location and its peer checks.
 */
#include "ringmaster/control_access.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static bool in_group(const rm_control_peer_t *peer, gid_t group)
{
    if (peer->gid == group)
        return true;
    for (size_t i = 0; i < peer->ngroups && i < RM_CONTROL_MAX_GROUPS; i++)
        if (peer->groups[i] == group)
            return true;
    return false;
}

bool rm_control_peer_allowed(const rm_control_policy_t *policy, const rm_control_peer_t *peer)
{
    if (peer->uid == 0 || peer->uid == policy->owner)
        return true;
    return policy->has_group && in_group(peer, policy->group);
}

bool rm_control_peer_may_attach(const rm_control_policy_t *policy, const rm_control_peer_t *peer)
{
    if (!rm_control_peer_allowed(policy, peer))
        return false;
    return policy->owner == 0 || peer->uid == policy->owner;
}

/* "Groups:\t27 100 1000" from /proc/PID/status; the peer may have exited,
 * which leaves the list empty (its primary group still counts). */
static void read_groups(rm_control_peer_t *peer)
{
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)peer->pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "Groups:", 7) != 0)
            continue;
        char *p = line + 7, *end;
        while (peer->ngroups < RM_CONTROL_MAX_GROUPS) {
            unsigned long g = strtoul(p, &end, 10);
            if (end == p)
                break;
            peer->groups[peer->ngroups++] = (gid_t)g;
            p = end;
        }
        break;
    }
    fclose(f);
}

int rm_control_peer_of(int fd, rm_control_peer_t *peer)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    memset(peer, 0, sizeof(*peer));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -errno;
    peer->pid = cred.pid;
    peer->uid = cred.uid;
    peer->gid = cred.gid;
    read_groups(peer);
    return 0;
}

int rm_control_default_dir(char *buf, size_t len, const char *env_xdg, uid_t uid)
{
    int n;
    if (env_xdg && env_xdg[0] == '/')
        n = snprintf(buf, len, "%s/ringmaster", env_xdg);
    else if (uid == 0)
        n = snprintf(buf, len, "/run/ringmaster");
    else
        n = snprintf(buf, len, "/tmp/ringmaster-%u", (unsigned)uid);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}
