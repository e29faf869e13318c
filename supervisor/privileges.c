/*
 * privileges.c - dropping root in the supervisor, capabilities in the workers
 * (privileges.h).
 *
 * Capabilities are set with the raw capget/capset system calls (version 3:
 * two 32-bit words per set), so no libcap is needed.
 */
#include "ringmaster/privileges.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int fail(char *err, size_t err_len, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t err_len, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return rc;
}

/* A whole decimal number that fits an id (uid_t and gid_t are 32-bit). */
static bool parse_id(const char *text, uint32_t *out)
{
    if (!*text || strspn(text, "0123456789") != strlen(text) || strlen(text) > 10)
        return false;
    unsigned long long v = strtoull(text, NULL, 10);
    if (v >= UINT32_MAX) /* (uid_t)-1 means "unchanged" to the kernel */
        return false;
    *out = (uint32_t)v;
    return true;
}

int rm_run_as_resolve(rm_run_as_t *out, const char *user, const char *group, uid_t euid, gid_t egid,
                      const char *user_src, const char *group_src, char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    if (!user || !*user) {
        if (group && *group)
            return fail(err, err_len, -EINVAL, "%s needs --user (RINGMASTER_USER) as well",
                        group_src);
        return 0;
    }
    uint32_t id;
    struct passwd *pw = getpwnam(user);
    if (!pw && parse_id(user, &id))
        pw = getpwuid((uid_t)id);
    if (pw) {
        out->uid = pw->pw_uid;
        out->gid = pw->pw_gid;
        out->has_name = true;
        snprintf(out->name, sizeof(out->name), "%s", pw->pw_name);
        snprintf(out->home, sizeof(out->home), "%s", pw->pw_dir ? pw->pw_dir : "");
    } else if (parse_id(user, &id) && group && *group) {
        /* A uid with no account (a container's arbitrary uid): fine with an
         * explicit group, which is then its only group. */
        out->uid = (uid_t)id;
        snprintf(out->name, sizeof(out->name), "%u", (unsigned)id);
    } else if (parse_id(user, &id)) {
        return fail(err, err_len, -EINVAL,
                    "%s: uid %s has no entry in the user database; give --group as well", user_src,
                    user);
    } else {
        return fail(err, err_len, -EINVAL, "%s: no user named '%s'", user_src, user);
    }
    if (group && *group) {
        struct group *gr = getgrnam(group);
        if (!gr && parse_id(group, &id))
            gr = getgrgid((gid_t)id);
        if (gr)
            out->gid = gr->gr_gid;
        else if (parse_id(group, &id))
            out->gid = (gid_t)id;
        else
            return fail(err, err_len, -EINVAL, "%s: no group named '%s'", group_src, group);
    }
    if (euid != 0) {
        /* Without root there is nothing to switch to; naming ourselves is a
         * harmless no-op (a unit file shared by root and user installs). */
        if (out->uid == euid && out->gid == egid)
            return 0;
        return fail(err, err_len, -EINVAL,
                    "%s %s: ringmaster runs as uid %u, not root, so it cannot switch users; "
                    "start it as root, or leave out %s (it may only name the current user)",
                    user_src, user, (unsigned)euid, user_src);
    }
    out->enabled = true;
    return 0;
}

/* ---- capabilities ---------------------------------------------------- */

static int caps_get(struct __user_cap_data_struct data[2])
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    return syscall(SYS_capget, &hdr, data) < 0 ? -errno : 0;
}

static int caps_clear(void)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    return syscall(SYS_capset, &hdr, data) < 0 ? -errno : 0;
}

static bool caps_all_clear(void)
{
    struct __user_cap_data_struct data[2];
    if (caps_get(data) < 0)
        return false;
    for (int i = 0; i < 2; i++)
        if (data[i].effective || data[i].permitted || data[i].inheritable)
            return false;
    return true;
}

/* Empty the bounding set. Needs CAP_SETPCAP: without it (not root) -EPERM,
 * and the caller decides whether that matters. */
static int bounding_clear(void)
{
    for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++) {
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 0)
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            return -errno;
    }
    return 0;
}

int rm_priv_lock_down_child(const char **what)
{
    /* First, so that nothing exec'd from here on (the worker, anything the
     * app spawns) can gain privileges through set-id bits or file caps. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        *what = "prctl(PR_SET_NO_NEW_PRIVS)";
        return -errno;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
        *what = "prctl(PR_CAP_AMBIENT_CLEAR_ALL)";
        return -errno;
    }
    /* Only a process holding CAP_SETPCAP may shrink the bounding set; one
     * without it has no capability an exec could restore under
     * no_new_privs anyway. */
    int rc = bounding_clear();
    if (rc < 0 && rc != -EPERM) {
        *what = "prctl(PR_CAPBSET_DROP)";
        return rc;
    }
    /* Last: clearing the effective set takes CAP_SETPCAP away. */
    if ((rc = caps_clear()) < 0) {
        *what = "capset";
        return rc;
    }
    if (!caps_all_clear()) {
        *what = "capget (a capability survived capset)";
        return -EPERM;
    }
    return 0;
}

/* ---- the supervisor's drop ------------------------------------------- */

static bool groups_are_only(gid_t gid)
{
    gid_t list[64];
    int n = getgroups(64, list);
    if (n < 0)
        return false;
    for (int i = 0; i < n; i++)
        if (list[i] != gid)
            return false;
    return true;
}

int rm_priv_drop(const rm_run_as_t *as, char *err, size_t err_len)
{
    const char *who = as->name;
    int rc;
    if (!as->enabled)
        return 0;
    /* setresuid from root must clear every capability: make sure no
     * keep-caps bit asks otherwise. */
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
        return fail(err, err_len, -errno, "--user %s: prctl(PR_SET_KEEPCAPS): %s", who,
                    strerror(errno));
    if ((rc = bounding_clear()) < 0 && rc != -EPERM)
        return fail(err, err_len, rc, "--user %s: emptying the capability bounding set: %s", who,
                    strerror(-rc));
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return fail(err, err_len, -errno, "--user %s: clearing ambient capabilities: %s", who,
                    strerror(errno));
    /* Groups first, while we still may; then the gid; the uid last, since
     * after it nothing else can be changed. */
    if (as->has_name ? initgroups(as->name, as->gid) < 0 : setgroups(1, &as->gid) < 0)
        return fail(err, err_len, -errno, "--user %s: setting supplementary groups: %s", who,
                    strerror(errno));
    if (setresgid(as->gid, as->gid, as->gid) < 0)
        return fail(err, err_len, -errno, "--user %s: setresgid(%u): %s", who, (unsigned)as->gid,
                    strerror(errno));
    if (setresuid(as->uid, as->uid, as->uid) < 0)
        return fail(err, err_len, -errno, "--user %s: setresuid(%u): %s", who, (unsigned)as->uid,
                    strerror(errno));

    /* Trust nothing: read everything back. */
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 || ru != as->uid ||
        eu != as->uid || su != as->uid || rg != as->gid || eg != as->gid || sg != as->gid)
        return fail(err, err_len, -EPERM, "--user %s: the uid/gid did not change as asked", who);
    if (!as->has_name && !groups_are_only(as->gid))
        return fail(err, err_len, -EPERM, "--user %s: supplementary groups were not dropped", who);
    if (as->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
        return fail(err, err_len, -EPERM, "--user %s: root could be regained after the switch",
                    who);
    if ((rc = caps_clear()) < 0 || !caps_all_clear())
        return fail(err, err_len, rc < 0 ? rc : -EPERM,
                    "--user %s: capabilities remain after the switch", who);
    /* The workers set it themselves; here it covers anything else the
     * supervisor might exec. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return fail(err, err_len, -errno, "--user %s: prctl(PR_SET_NO_NEW_PRIVS): %s", who,
                    strerror(errno));
    if (as->has_name && (setenv("USER", as->name, 1) < 0 || setenv("LOGNAME", as->name, 1) < 0 ||
                         (as->home[0] && setenv("HOME", as->home, 1) < 0)))
        return fail(err, err_len, -errno, "--user %s: setting HOME, USER, LOGNAME: %s", who,
                    strerror(errno));
    return 0;
}
