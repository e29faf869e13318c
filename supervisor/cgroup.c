/*
 * cgroup.c - walk a process's cgroup up to the root, smallest limit wins.
 */
#include "ringmaster/cgroup.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int rm_cgroup_read_line(const char *dir, const char *name, char *buf, int buf_len)
{
    char path[PATH_MAX + 64];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return -1;
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char *line = fgets(buf, buf_len, f);
    fclose(f);
    if (!line || !*buf || *buf == '\n')
        return -1;
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

static uint64_t smaller(uint64_t best, uint64_t v)
{
    return v && (!best || v < best) ? v : best;
}

/* The smallest limit from `base/rel` up to `base` itself. A container sees
 * its own cgroup as "/" when it has a cgroup namespace, or its full path from
 * the host's root otherwise; either way the walk stops at the mount point. */
static uint64_t walk_up(const char *base, const char *rel, rm_cgroup_reader_fn read)
{
    char dir[PATH_MAX];
    uint64_t best = 0;
    if ((size_t)snprintf(dir, sizeof(dir), "%s%s", base, strcmp(rel, "/") == 0 ? "" : rel) >=
        sizeof(dir))
        return 0;
    size_t base_len = strlen(base);
    for (;;) {
        best = smaller(best, read(dir));
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < base_len)
            break;
        *slash = '\0';
        if (strlen(dir) < base_len)
            break;
    }
    return best;
}

uint64_t rm_cgroup_smallest_limit(const char *cgroup_root, const char *proc_cgroup,
                                  const char *v1_controller, rm_cgroup_reader_fn v2,
                                  rm_cgroup_reader_fn v1)
{
    FILE *f = fopen(proc_cgroup, "re");
    if (!f)
        return 0;
    char line[PATH_MAX + 64], base[PATH_MAX + 256], want[64];
    snprintf(want, sizeof(want), ",%s,", v1_controller);
    uint64_t best = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        /* "hierarchy-id:controllers:path" */
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c1 = *c2 = '\0';
        const char *controllers = c1 + 1, *rel = c2 + 1;
        if (strcmp(line, "0") == 0 && *controllers == '\0') {
            best = smaller(best, walk_up(cgroup_root, rel, v2));
            continue;
        }
        /* v1: the controller, possibly co-mounted ("cpu,cpuacct"). */
        char list[256];
        snprintf(list, sizeof(list), ",%s,", controllers);
        if (!strstr(list, want))
            continue;
        if ((size_t)snprintf(base, sizeof(base), "%s/%s", cgroup_root, controllers) >=
                sizeof(base) ||
            access(base, F_OK) != 0)
            snprintf(base, sizeof(base), "%s/%s", cgroup_root, v1_controller);
        best = smaller(best, walk_up(base, rel, v1));
    }
    fclose(f);
    return best;
}
