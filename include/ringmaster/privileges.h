/*
 * privileges.h - who the supervisor and its workers run as (docs/security.md).
 *
 * Started as root with --user, the supervisor opens what needs root (the
 * listening socket, the metrics and control sockets, the spill directory, the
 * access log), then becomes that user for good: supplementary groups, then
 * the gid, then the uid, each checked afterwards; every capability set is
 * emptied. Workers, whoever the supervisor runs as, start with
 * PR_SET_NO_NEW_PRIVS and no capabilities at all.
 */
#ifndef RINGMASTER_PRIVILEGES_H
#define RINGMASTER_PRIVILEGES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* --user/--group resolved to ids. */
typedef struct rm_run_as {
    bool enabled; /* switch after binding: --user given and we are root */
    uid_t uid;
    gid_t gid;     /* --group, else the user's primary group */
    bool has_name; /* `name` is in the password database: initgroups() it */
    char name[64]; /* the user's name, for initgroups and messages */
    char home[256]; /* the user's home directory ("" without an account) */
} rm_run_as_t;

/* Resolve --user USER (a name or a numeric uid) and --group GROUP (a name or
 * a numeric gid, or NULL for the user's primary group) for a process whose
 * effective ids are `euid`/`egid`. When euid is not 0 the switch is
 * impossible: naming the current user (and group) is accepted as a no-op
 * (out->enabled false), anything else is an error. `user_src`/`group_src`
 * name the flag or variable in messages. Returns 0 or -EINVAL with one
 * readable line in err. Reads the user and group databases. */
int rm_run_as_resolve(rm_run_as_t *out, const char *user, const char *group, uid_t euid, gid_t egid,
                      const char *user_src, const char *group_src, char *err, size_t err_len);

/* Become `as` for good (supervisor, single-threaded or not: setgroups,
 * setresgid and setresuid act on every thread through glibc). Order:
 * bounding set emptied (root may), supplementary groups (initgroups, or
 * just the gid), real/effective/saved gid, then uid; then every capability
 * set is cleared. Each step is verified (the ids read back, root cannot be
 * regained, no capability left). Then HOME, USER and LOGNAME are set to the
 * user's (when it has an account), as login and systemd's User= do, so that
 * workers and the app do not look for files in root's home. Returns 0 or
 * -errno with one readable line in err; the caller must stop then, never
 * run on as root. */
int rm_priv_drop(const rm_run_as_t *as, char *err, size_t err_len);

/* In a freshly forked worker, before exec: PR_SET_NO_NEW_PRIVS, the ambient
 * and (when permitted) bounding sets emptied, then effective, permitted and
 * inheritable cleared, and read back. Only async-signal-safe calls. Returns
 * 0, or -errno with a static description of the failed step in *what. */
int rm_priv_lock_down_child(const char **what);

#endif
