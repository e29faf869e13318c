/*
 * memlimit.c - cgroup memory limit (v2 memory.max, v1 memory.limit_in_bytes).
 */
#include "ringmaster/memlimit.h"

#include "ringmaster/cgroup.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* v1 reports "no limit" as the page counter's maximum rounded to pages
 * (9223372036854771712 with 4 KiB pages): anything this large is none. */
#define UNLIMITED_ABOVE (1ull << 60)

static uint64_t read_bytes(const char *dir, const char *name)
{
    char line[64], *end;
    if (rm_cgroup_read_line(dir, name, line, sizeof(line)) || strcmp(line, "max") == 0)
        return 0;
    errno = 0;
    unsigned long long v = strtoull(line, &end, 10);
    if (errno || end == line || *line == '-' || v >= UNLIMITED_ABOVE)
        return 0;
    return v;
}

static uint64_t read_v2(const char *dir)
{
    return read_bytes(dir, "memory.max");
}

static uint64_t read_v1(const char *dir)
{
    return read_bytes(dir, "memory.limit_in_bytes");
}

uint64_t rm_memlimit_cgroup(const char *cgroup_root, const char *proc_cgroup)
{
    return rm_cgroup_smallest_limit(cgroup_root, proc_cgroup, "memory", read_v2, read_v1);
}

uint64_t rm_memlimit_self(void)
{
    return rm_memlimit_cgroup("/sys/fs/cgroup", "/proc/self/cgroup");
}

uint64_t rm_memlimit_max_rss_mib(uint64_t limit_bytes, uint32_t workers)
{
    if (!limit_bytes)
        return 0;
    uint64_t mib =
        limit_bytes / (1024 * 1024) * RM_MEMLIMIT_SHARE_PERCENT / 100 / (workers ? workers : 1);
    return mib >= RM_MEMLIMIT_MIN_SHARE_MIB ? mib : 0;
}
