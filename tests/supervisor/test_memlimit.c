/*
 * test_memlimit.c - supervisor/memlimit.c against fake cgroup hierarchies,
 * and the --max-rss rule it implies.
 */
#include "ringmaster/memlimit.h"

#include "fake_cgroup.h"

#include <criterion/criterion.h>

#define MIB (1024ull * 1024)

static uint64_t limit(const char *self_cgroup)
{
    return rm_memlimit_cgroup(fake_cgroup_root, fake_cgroup_self(self_cgroup));
}

Test(memlimit, v2_memory_max, .init = fake_cgroup_setup)
{
    fake_cgroup_put("kubepods/pod1/memory.max", "536870912\n");
    cr_expect_eq(limit("0::/kubepods/pod1\n"), 512 * MIB);
}

Test(memlimit, v2_smallest_on_the_path_wins, .init = fake_cgroup_setup)
{
    fake_cgroup_put("a/memory.max", "268435456\n");
    fake_cgroup_put("a/b/memory.max", "max\n");
    cr_expect_eq(limit("0::/a/b\n"), 256 * MIB, "the parent's 256 MiB caps the unlimited child");
}

Test(memlimit, v2_max_is_no_limit, .init = fake_cgroup_setup)
{
    fake_cgroup_put("memory.max", "max\n");
    fake_cgroup_put("x/memory.max", "max\n");
    cr_expect_eq(limit("0::/x\n"), 0);
    cr_expect_eq(limit("0::/\n"), 0, "a container's own cgroup namespace root");
}

Test(memlimit, v1_limit_in_bytes, .init = fake_cgroup_setup)
{
    fake_cgroup_put("memory/docker/abc/memory.limit_in_bytes", "1073741824\n");
    fake_cgroup_put("cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "100000\n");
    cr_expect_eq(limit("4:cpu,cpuacct:/docker/abc\n9:memory:/docker/abc\n"), 1024 * MIB);
}

Test(memlimit, v1_unlimited_page_counter_max, .init = fake_cgroup_setup)
{
    fake_cgroup_put("memory/memory.limit_in_bytes", "9223372036854771712\n");
    cr_expect_eq(limit("9:memory:/\n"), 0);
}

Test(memlimit, unreadable_or_garbage_is_no_limit, .init = fake_cgroup_setup)
{
    cr_expect_eq(limit("0::/nowhere\n"), 0);
    fake_cgroup_put("g/memory.max", "lots\n");
    cr_expect_eq(limit("0::/g\n"), 0);
    fake_cgroup_put("e/memory.max", "");
    cr_expect_eq(limit("0::/e\n"), 0);
    cr_expect_eq(rm_memlimit_cgroup(fake_cgroup_root, "/nonexistent/cgroup"), 0);
}

Test(memlimit, max_rss_is_80_percent_shared_by_the_workers)
{
    cr_expect_eq(rm_memlimit_max_rss_mib(1024 * MIB, 4), 204, "1 GiB, 4 workers: 819 / 4");
    cr_expect_eq(rm_memlimit_max_rss_mib(512 * MIB, 1), 409);
    cr_expect_eq(rm_memlimit_max_rss_mib(0, 4), 0, "no limit: never recycle");
    cr_expect_eq(rm_memlimit_max_rss_mib(160 * MIB, 4), 32, "32 MiB each is the smallest");
    cr_expect_eq(rm_memlimit_max_rss_mib(128 * MIB, 4), 0, "25 MiB each: no default");
    cr_expect_eq(rm_memlimit_max_rss_mib(100 * MIB, 0), 80, "0 workers counts as 1");
}
