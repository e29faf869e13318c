/*
 * test_cpus.c - supervisor/cpus.c against fake cgroup hierarchies.
 */
#include "ringmaster/cpus.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char root[256];

static void setup_root(void)
{
    snprintf(root, sizeof(root), "/tmp/rm-cgroup-XXXXXX");
    cr_assert_not_null(mkdtemp(root), "mkdtemp: %s", strerror(errno));
}

/* Write `text` to root/rel, creating directories on the way. */
static void put(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

static uint32_t quota(const char *self_cgroup)
{
    char self[512];
    put("self-cgroup", self_cgroup);
    snprintf(self, sizeof(self), "%s/self-cgroup", root);
    return rm_cpus_cgroup_quota(root, self);
}

Test(cpus, v2_quota_rounds_up, .init = setup_root)
{
    put("cpu.max", "max 100000\n");
    put("kubepods/pod1/cpu.max", "150000 100000\n");
    cr_expect_eq(quota("0::/kubepods/pod1\n"), 2, "1.5 CPUs of quota is 2 workers");
}

Test(cpus, v2_smallest_quota_on_the_path_wins, .init = setup_root)
{
    put("a/cpu.max", "100000 100000\n");
    put("a/b/cpu.max", "400000 100000\n");
    cr_expect_eq(quota("0::/a/b\n"), 1, "the parent's 1 CPU caps the child's 4");
}

Test(cpus, v2_no_limit, .init = setup_root)
{
    put("cpu.max", "max 100000\n");
    put("x/cpu.max", "max 100000\n");
    cr_expect_eq(quota("0::/x\n"), 0);
    cr_expect_eq(quota("0::/\n"), 0, "the root itself, unlimited");
}

Test(cpus, v1_cfs_quota, .init = setup_root)
{
    put("cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "250000\n");
    put("cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
    cr_expect_eq(quota("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n"), 3);
}

Test(cpus, v1_unlimited_is_minus_one, .init = setup_root)
{
    put("cpu/cpu.cfs_quota_us", "-1\n");
    put("cpu/cpu.cfs_period_us", "100000\n");
    cr_expect_eq(quota("2:cpu:/\n"), 0);
}

Test(cpus, missing_files_mean_no_quota, .init = setup_root)
{
    cr_expect_eq(quota("0::/nowhere\n"), 0);
    cr_expect_eq(rm_cpus_cgroup_quota(root, "/nonexistent/cgroup"), 0);
}

Test(cpus, usable_is_at_least_one_and_at_most_affinity)
{
    uint32_t usable = rm_cpus_usable();
    cr_expect_geq(usable, 1);
    cr_expect_leq(usable, rm_cpus_affinity());
}
