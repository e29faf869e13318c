/*
 * test_privileges.c - supervisor/privileges.c through ringmaster/privileges.h.
 *
 * Criterion runs each test in a process of its own, so the tests that drop
 * privileges for real (as root) leave the runner untouched.
 */
#include "ringmaster/privileges.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char err[512];

static const struct passwd *nobody(void)
{
    const struct passwd *pw = getpwnam("nobody");
    if (!pw)
        cr_skip("no user 'nobody' here");
    return pw;
}

/* The hex value of a "Cap...:" or the text of another /proc/self/status field. */
static void status_field(const char *key, char *out, size_t len)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "re");
    cr_assert(f != NULL);
    out[0] = '\0';
    while (fgets(line, sizeof(line), f)) {
        size_t n = strlen(key);
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            snprintf(out, len, "%.*s", (int)strcspn(v, "\n"), v);
            break;
        }
    }
    fclose(f);
}

static void assert_no_caps(void)
{
    static const char *const keys[] = {"CapEff", "CapPrm", "CapInh", "CapAmb"};
    char v[64];
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        status_field(keys[i], v, sizeof(v));
        cr_assert_str_eq(v, "0000000000000000", "%s is %s", keys[i], v);
    }
}

Test(privileges, nothing_asked_is_nothing_done)
{
    rm_run_as_t as;
    cr_assert_eq(rm_run_as_resolve(&as, NULL, NULL, 0, 0, "--user", "--group", err, sizeof(err)),
                 0);
    cr_assert(!as.enabled);
}

Test(privileges, a_user_by_name_or_uid_as_root)
{
    const struct passwd *pw = nobody();
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    char num[16];
    rm_run_as_t as;
    cr_assert_eq(
        rm_run_as_resolve(&as, "nobody", NULL, 0, 0, "--user", "--group", err, sizeof(err)), 0,
        "%s", err);
    cr_assert(as.enabled && as.has_name);
    cr_assert_eq(as.uid, uid);
    cr_assert_eq(as.gid, gid);
    cr_assert_str_eq(as.name, "nobody");
    snprintf(num, sizeof(num), "%u", (unsigned)uid);
    cr_assert_eq(rm_run_as_resolve(&as, num, NULL, 0, 0, "--user", "--group", err, sizeof(err)), 0,
                 "%s", err);
    cr_assert(as.enabled && as.has_name && as.uid == uid);
    cr_assert_str_eq(as.name, "nobody");
}

Test(privileges, a_group_replaces_the_primary_one)
{
    nobody();
    rm_run_as_t as;
    cr_assert_eq(rm_run_as_resolve(&as, "nobody", "0", 0, 0, "--user", "--group", err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(as.gid, 0);
    cr_assert_eq(
        rm_run_as_resolve(&as, "nobody", "4242", 0, 0, "--user", "--group", err, sizeof(err)), 0,
        "%s", err);
    cr_assert_eq(as.gid, 4242, "a numeric gid need not have a name");
}

Test(privileges, a_uid_without_an_account_needs_a_group)
{
    rm_run_as_t as;
    if (getpwuid(3999999))
        cr_skip("uid 3999999 has an account here");
    cr_assert_eq(
        rm_run_as_resolve(&as, "3999999", NULL, 0, 0, "--user", "--group", err, sizeof(err)),
        -EINVAL);
    cr_assert(strstr(err, "give --group") != NULL, "%s", err);
    cr_assert_eq(
        rm_run_as_resolve(&as, "3999999", "3999999", 0, 0, "--user", "--group", err, sizeof(err)),
        0, "%s", err);
    cr_assert(as.enabled && !as.has_name && as.uid == 3999999 && as.gid == 3999999);
}

Test(privileges, readable_errors)
{
    rm_run_as_t as;
    cr_assert_eq(rm_run_as_resolve(&as, "no-such-user-rm", NULL, 0, 0, "RINGMASTER_USER", "--group",
                                   err, sizeof(err)),
                 -EINVAL);
    cr_assert_str_eq(err, "RINGMASTER_USER: no user named 'no-such-user-rm'");
    nobody();
    cr_assert_eq(rm_run_as_resolve(&as, "nobody", "no-such-group-rm", 0, 0, "--user", "--group",
                                   err, sizeof(err)),
                 -EINVAL);
    cr_assert_str_eq(err, "--group: no group named 'no-such-group-rm'");
    cr_assert_eq(
        rm_run_as_resolve(&as, NULL, "nogroup", 0, 0, "--user", "--group", err, sizeof(err)),
        -EINVAL);
    cr_assert(strstr(err, "--group needs --user") != NULL, "%s", err);
}

Test(privileges, not_root_only_the_current_user)
{
    const struct passwd *pw = nobody();
    rm_run_as_t as;
    cr_assert_eq(
        rm_run_as_resolve(&as, "nobody", NULL, 1000, 1000, "--user", "--group", err, sizeof(err)),
        -EINVAL);
    cr_assert(strstr(err, "runs as uid 1000, not root, so it cannot switch users") != NULL, "%s",
              err);
    cr_assert_eq(rm_run_as_resolve(&as, "nobody", NULL, pw->pw_uid, pw->pw_gid, "--user", "--group",
                                   err, sizeof(err)),
                 0, "%s", err);
    cr_assert(!as.enabled, "naming ourselves is a no-op");
}

Test(privileges, a_worker_child_is_locked_down)
{
    const char *what = "";
    char v[64];
    cr_assert_eq(rm_priv_lock_down_child(&what), 0, "%s", what);
    status_field("NoNewPrivs", v, sizeof(v));
    cr_assert_str_eq(v, "1");
    assert_no_caps();
    if (geteuid() == 0) {
        status_field("CapBnd", v, sizeof(v));
        cr_assert_str_eq(v, "0000000000000000", "root may and must empty the bounding set");
    }
}

Test(privileges, drop_to_nobody_for_good)
{
    const struct passwd *pw = nobody();
    if (geteuid() != 0)
        cr_skip("needs root");
    rm_run_as_t as;
    cr_assert_eq(
        rm_run_as_resolve(&as, "nobody", NULL, 0, 0, "--user", "--group", err, sizeof(err)), 0,
        "%s", err);
    cr_assert_eq(rm_priv_drop(&as, err, sizeof(err)), 0, "%s", err);
    uid_t r, e, s;
    gid_t rg, eg, sg;
    cr_assert_eq(getresuid(&r, &e, &s), 0);
    cr_assert_eq(getresgid(&rg, &eg, &sg), 0);
    cr_assert(r == pw->pw_uid && e == pw->pw_uid && s == pw->pw_uid);
    cr_assert(rg == pw->pw_gid && eg == pw->pw_gid && sg == pw->pw_gid);
    cr_assert_neq(setuid(0), 0, "root came back");
    cr_assert_str_eq(getenv("USER"), "nobody");
    cr_assert_str_eq(getenv("HOME"), pw->pw_dir);
    assert_no_caps();
    char v[64];
    status_field("NoNewPrivs", v, sizeof(v));
    cr_assert_str_eq(v, "1");
}
