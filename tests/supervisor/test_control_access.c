/*
 * test_control_access.c - who may use the control socket, and where it is.
 */
#include "ringmaster/control_access.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const rm_control_policy_t owner_1000 = {.owner = 1000};
static const rm_control_policy_t group_50 = {.owner = 1000, .has_group = true, .group = 50};

Test(control_access, owner_and_root_are_allowed)
{
    rm_control_peer_t p = {.uid = 1000, .gid = 1000};
    cr_assert(rm_control_peer_allowed(&owner_1000, &p));
    p.uid = 0;
    cr_assert(rm_control_peer_allowed(&owner_1000, &p));
}

Test(control_access, another_uid_is_refused)
{
    rm_control_peer_t p = {.uid = 65534, .gid = 65534};
    cr_assert_not(rm_control_peer_allowed(&owner_1000, &p));
    /* Sharing a group means nothing without --control-group. */
    p.gid = 1000;
    cr_assert_not(rm_control_peer_allowed(&owner_1000, &p));
}

Test(control_access, members_of_the_control_group_are_allowed)
{
    rm_control_peer_t p = {.uid = 2000, .gid = 50};
    cr_assert(rm_control_peer_allowed(&group_50, &p));
    p = (rm_control_peer_t){.uid = 2000, .gid = 2000, .ngroups = 3, .groups = {4, 50, 7}};
    cr_assert(rm_control_peer_allowed(&group_50, &p));
    p = (rm_control_peer_t){.uid = 2000, .gid = 2000, .ngroups = 2, .groups = {4, 7}};
    cr_assert_not(rm_control_peer_allowed(&group_50, &p));
}

Test(control_access, only_the_owner_attaches_unless_supervisor_is_root)
{
    rm_control_peer_t member = {.uid = 2000, .gid = 50};
    cr_assert_not(rm_control_peer_may_attach(&group_50, &member));
    rm_control_peer_t owner = {.uid = 1000, .gid = 1000};
    cr_assert(rm_control_peer_may_attach(&group_50, &owner));
    rm_control_policy_t root_group = {.owner = 0, .has_group = true, .group = 50};
    cr_assert(rm_control_peer_may_attach(&root_group, &member));
    rm_control_peer_t stranger = {.uid = 3000, .gid = 3000};
    cr_assert_not(rm_control_peer_may_attach(&root_group, &stranger));
}

Test(control_access, peer_of_a_socketpair_is_this_process)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    rm_control_peer_t p;
    cr_assert_eq(rm_control_peer_of(sv[0], &p), 0);
    cr_assert_eq(p.pid, getpid());
    cr_assert_eq(p.uid, geteuid());
    cr_assert_eq(p.gid, getegid());
    gid_t groups[RM_CONTROL_MAX_GROUPS];
    int n = getgroups(RM_CONTROL_MAX_GROUPS, groups);
    cr_assert_eq((int)p.ngroups, n < 0 ? 0 : n);
    close(sv[0]);
    close(sv[1]);
}

Test(control_access, default_directory)
{
    char buf[108];
    cr_assert_eq(rm_control_default_dir(buf, sizeof(buf), "/run/user/1000", 1000), 0);
    cr_assert_str_eq(buf, "/run/user/1000/ringmaster");
    cr_assert_eq(rm_control_default_dir(buf, sizeof(buf), NULL, 0), 0);
    cr_assert_str_eq(buf, "/run/ringmaster");
    cr_assert_eq(rm_control_default_dir(buf, sizeof(buf), "", 1000), 0);
    cr_assert_str_eq(buf, "/tmp/ringmaster-1000");
    /* A relative XDG_RUNTIME_DIR is invalid per the spec: ignored. */
    cr_assert_eq(rm_control_default_dir(buf, sizeof(buf), "relative", 1000), 0);
    cr_assert_str_eq(buf, "/tmp/ringmaster-1000");
    char small[8];
    cr_assert_eq(rm_control_default_dir(small, sizeof(small), "/run/user/1000", 1000),
                 -ENAMETOOLONG);
}
