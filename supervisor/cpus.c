/*
 * cpus.c - usable CPUs: affinity mask and cgroup CPU quota.
 */
#include "ringmaster/cpus.h"

#include "ringmaster/cgroup.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint32_t rm_cpus_affinity(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (uint32_t)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (uint32_t)n : 1;
}

/* Whole CPUs for `quota` microseconds per `period`, rounded up; 0 for none. */
static uint64_t cpus_for(long long quota, long long period)
{
    if (quota <= 0 || period <= 0)
        return 0;
    return (uint64_t)((quota + period - 1) / period);
}

static long long read_number(const char *dir, const char *name)
{
    char line[32];
    return rm_cgroup_read_line(dir, name, line, sizeof(line)) ? -1 : strtoll(line, NULL, 10);
}

/* v2: cpu.max is "QUOTA PERIOD", or "max PERIOD" without a quota. */
static uint64_t read_v2(const char *dir)
{
    char line[64], max[32];
    long long period;
    if (rm_cgroup_read_line(dir, "cpu.max", line, sizeof(line)) ||
        sscanf(line, "%31s %lld", max, &period) != 2 || strcmp(max, "max") == 0)
        return 0;
    return cpus_for(strtoll(max, NULL, 10), period);
}

/* v1: cpu.cfs_quota_us is -1 without a quota. */
static uint64_t read_v1(const char *dir)
{
    return cpus_for(read_number(dir, "cpu.cfs_quota_us"), read_number(dir, "cpu.cfs_period_us"));
}

uint32_t rm_cpus_cgroup_quota(const char *cgroup_root, const char *proc_cgroup)
{
    uint64_t n = rm_cgroup_smallest_limit(cgroup_root, proc_cgroup, "cpu", read_v2, read_v1);
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

uint32_t rm_cpus_usable(void)
{
    uint32_t n = rm_cpus_affinity();
    uint32_t quota = rm_cpus_cgroup_quota("/sys/fs/cgroup", "/proc/self/cgroup");
    return quota && quota < n ? quota : n;
}
