/*
 * test_cpus.c - supervisor/cpus.c against fake cgroup hierarchies.
 */
#include "ringmaster/cpus.h"

#include "fake_cgroup.h"

#include <criterion/criterion.h>

static uint32_t quota(const char *self_cgroup)
{
    return rm_cpus_cgroup_quota(fake_cgroup_root, fake_cgroup_self(self_cgroup));
}

Test(cpus, v2_quota_rounds_up, .init = fake_cgroup_setup)
{
    fake_cgroup_put("cpu.max", "max 100000\n");
    fake_cgroup_put("kubepods/pod1/cpu.max", "150000 100000\n");
    cr_expect_eq(quota("0::/kubepods/pod1\n"), 2, "1.5 CPUs of quota is 2 workers");
}

Test(cpus, v2_smallest_quota_on_the_path_wins, .init = fake_cgroup_setup)
{
    fake_cgroup_put("a/cpu.max", "100000 100000\n");
    fake_cgroup_put("a/b/cpu.max", "400000 100000\n");
    cr_expect_eq(quota("0::/a/b\n"), 1, "the parent's 1 CPU caps the child's 4");
}

Test(cpus, v2_no_limit, .init = fake_cgroup_setup)
{
    fake_cgroup_put("cpu.max", "max 100000\n");
    fake_cgroup_put("x/cpu.max", "max 100000\n");
    cr_expect_eq(quota("0::/x\n"), 0);
    cr_expect_eq(quota("0::/\n"), 0, "the root itself, unlimited");
}

Test(cpus, v1_cfs_quota, .init = fake_cgroup_setup)
{
    fake_cgroup_put("cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "250000\n");
    fake_cgroup_put("cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
    cr_expect_eq(quota("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n"), 3);
}

Test(cpus, v1_unlimited_is_minus_one, .init = fake_cgroup_setup)
{
    fake_cgroup_put("cpu/cpu.cfs_quota_us", "-1\n");
    fake_cgroup_put("cpu/cpu.cfs_period_us", "100000\n");
    cr_expect_eq(quota("2:cpu:/\n"), 0);
}

Test(cpus, missing_files_mean_no_quota, .init = fake_cgroup_setup)
{
    cr_expect_eq(quota("0::/nowhere\n"), 0);
    cr_expect_eq(rm_cpus_cgroup_quota(fake_cgroup_root, "/nonexistent/cgroup"), 0);
}

Test(cpus, usable_is_at_least_one_and_at_most_affinity)
{
    uint32_t usable = rm_cpus_usable();
    cr_expect_geq(usable, 1);
    cr_expect_leq(usable, rm_cpus_affinity());
}
