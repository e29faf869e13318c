/*
 * cpus.c - usable CPUs: affinity mask and cgroup CPU quota.
 */
#include "ringmaster/cpus.h"

#include <limits.h>
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
static uint32_t cpus_for(long long quota, long long period)
{
    if (quota <= 0 || period <= 0)
        return 0;
    return (uint32_t)((quota + period - 1) / period);
}

static uint32_t read_v2(const char *dir)
{
    char path[PATH_MAX + 16], max[32];
    long long quota, period;
    if ((size_t)snprintf(path, sizeof(path), "%s/cpu.max", dir) >= sizeof(path))
        return 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    int n = fscanf(f, "%31s %lld", max, &period);
    fclose(f);
    if (n != 2 || strcmp(max, "max") == 0)
        return 0;
    quota = strtoll(max, NULL, 10);
    return cpus_for(quota, period);
}

static long long read_number(const char *dir, const char *name)
{
    char path[PATH_MAX + 32];
    long long v = -1;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return -1;
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    if (fscanf(f, "%lld", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

static uint32_t read_v1(const char *dir)
{
    return cpus_for(read_number(dir, "cpu.cfs_quota_us"), read_number(dir, "cpu.cfs_period_us"));
}

/* The smallest quota from `base/rel` up to `base`. */
static uint32_t walk_up(const char *base, const char *rel, uint32_t (*read)(const char *))
{
    char dir[PATH_MAX];
    uint32_t best = 0;
    if ((size_t)snprintf(dir, sizeof(dir), "%s%s", base, rel) >= sizeof(dir))
        return 0;
    size_t base_len = strlen(base);
    for (;;) {
        uint32_t q = read(dir);
        if (q && (!best || q < best))
            best = q;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < base_len)
            break;
        *slash = '\0';
        if (strlen(dir) < base_len)
            break;
    }
    return best;
}

uint32_t rm_cpus_cgroup_quota(const char *cgroup_root, const char *proc_cgroup)
{
    FILE *f = fopen(proc_cgroup, "re");
    if (!f)
        return 0;
    char line[PATH_MAX + 64], base[PATH_MAX + 256];
    uint32_t best = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        /* "hierarchy-id:controllers:path" */
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c1 = *c2 = '\0';
        const char *controllers = c1 + 1, *rel = c2 + 1;
        uint32_t q = 0;
        if (strcmp(line, "0") == 0 && *controllers == '\0') {
            q = walk_up(cgroup_root, strcmp(rel, "/") == 0 ? "" : rel, read_v2);
        } else {
            /* v1: the cpu controller, possibly co-mounted as "cpu,cpuacct". */
            char list[256];
            snprintf(list, sizeof(list), ",%s,", controllers);
            if (!strstr(list, ",cpu,"))
                continue;
            if ((size_t)snprintf(base, sizeof(base), "%s/%s", cgroup_root, controllers) >=
                    sizeof(base) ||
                access(base, F_OK) != 0)
                snprintf(base, sizeof(base), "%s/cpu", cgroup_root);
            q = walk_up(base, strcmp(rel, "/") == 0 ? "" : rel, read_v1);
        }
        if (q && (!best || q < best))
            best = q;
    }
    fclose(f);
    return best;
}

uint32_t rm_cpus_usable(void)
{
    uint32_t n = rm_cpus_affinity();
    uint32_t quota = rm_cpus_cgroup_quota("/sys/fs/cgroup", "/proc/self/cgroup");
    return quota && quota < n ? quota : n;
}
