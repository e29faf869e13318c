/*
 * cpus.h - how many CPUs this process may really use.
 *
 * The affinity mask says which CPUs the scheduler may run us on; a container
 * may also cap CPU time with a cgroup quota (Docker's --cpus, a Kubernetes
 * limit) without touching the mask. `--workers auto` takes the smaller of the
 * two, the quota rounded up.
 */
#ifndef RINGMASTER_CPUS_H
#define RINGMASTER_CPUS_H

#include <stdint.h>

/* CPUs in this process's affinity mask (at least 1). */
uint32_t rm_cpus_affinity(void);

/* The CPU quota of the cgroup that `proc_cgroup` (a /proc/PID/cgroup file)
 * names, under the cgroup filesystem mounted at `cgroup_root`, rounded up to
 * whole CPUs; the smallest quota on the path to the root counts. Reads cgroup
 * v2 (cpu.max) and v1 (cpu.cfs_quota_us / cpu.cfs_period_us). Returns 0 when
 * there is no quota or it cannot be read. Paths are parameters so that tests
 * can point at a fake hierarchy. */
uint32_t rm_cpus_cgroup_quota(const char *cgroup_root, const char *proc_cgroup);

/* min(affinity, quota): what `--workers auto` uses. */
uint32_t rm_cpus_usable(void);

#endif
