/*
 * memlimit.h - the container's memory limit, and the --max-rss it implies.
 *
 * A worker that outgrows its share of a container's memory limit gets the
 * whole container OOM-killed (or its largest process, often the supervisor's
 * busiest worker, killed mid-request). When --max-rss is not given and the
 * cgroup has a memory limit, the supervisor recycles a worker before that:
 *
 *     --max-rss = 80% of the limit / the most workers that may run (MiB)
 *
 * unless that is below 32 MiB, where no default is set (and a warning says
 * why).
 * The other 20% is for the supervisor, the shared region and a replacement
 * worker starting while the one it replaces drains (docs/deploy.md).
 */
#ifndef RINGMASTER_MEMLIMIT_H
#define RINGMASTER_MEMLIMIT_H

#include <stdint.h>

#define RM_MEMLIMIT_SHARE_PERCENT 80 /* of the limit, split among the workers */
/* A smaller share gives no default: an app whose baseline RSS (CPython plus
 * the app, 15 MiB and up) is near the share would be recycled again and
 * again, which is worse than the OOM risk it avoids. */
#define RM_MEMLIMIT_MIN_SHARE_MIB 32

/* The memory limit in bytes of the cgroup `proc_cgroup` (a /proc/PID/cgroup
 * file) names, under the cgroup filesystem mounted at `cgroup_root`: the
 * smallest of cgroup v2 memory.max or v1 memory.limit_in_bytes on the path to
 * the root. Returns 0 when there is no limit ("max", or v1's "unlimited"
 * page-counter maximum) or it cannot be read. */
uint64_t rm_memlimit_cgroup(const char *cgroup_root, const char *proc_cgroup);

/* rm_memlimit_cgroup() of this process (/sys/fs/cgroup, /proc/self/cgroup). */
uint64_t rm_memlimit_self(void);

/* The default --max-rss in MiB for `workers` workers under a limit of
 * `limit_bytes`: RM_MEMLIMIT_SHARE_PERCENT of it divided by `workers` (0
 * counts as 1); 0 (never recycle) when `limit_bytes` is 0 or the share is
 * below RM_MEMLIMIT_MIN_SHARE_MIB. */
uint64_t rm_memlimit_max_rss_mib(uint64_t limit_bytes, uint32_t workers);

#endif
