/*
 * cgroup.h - the tightest limit a cgroup hierarchy puts on this process.
 *
 * A container's limits (Docker's --cpus and --memory, a Kubernetes pod's
 * resources) live in the cgroup files of the process's cgroup or of one of
 * its ancestors. This module finds that cgroup from a /proc/PID/cgroup file,
 * for cgroup v2 (one "0::/path" line) and v1 (one line per hierarchy, the
 * controller mounted at ROOT/CONTROLLERS or ROOT/CONTROLLER), and asks a
 * reader for the limit of each directory on the way up to the mount point.
 * The smallest limit wins. cpus.c and memlimit.c supply the readers.
 */
#ifndef RINGMASTER_CGROUP_H
#define RINGMASTER_CGROUP_H

#include <stdint.h>

/* The limit one cgroup directory sets, or 0 for none or unreadable. */
typedef uint64_t (*rm_cgroup_reader_fn)(const char *dir);

/* The smallest non-zero limit that `v2` (on the unified hierarchy) or `v1`
 * (on the v1 hierarchy carrying `v1_controller`, e.g. "cpu", "memory")
 * reports for the cgroup `proc_cgroup` names and its ancestors, under the
 * cgroup filesystem mounted at `cgroup_root`; 0 when there is none or the
 * files cannot be read. Paths are parameters so that tests can point at a
 * fake hierarchy. */
uint64_t rm_cgroup_smallest_limit(const char *cgroup_root, const char *proc_cgroup,
                                  const char *v1_controller, rm_cgroup_reader_fn v2,
                                  rm_cgroup_reader_fn v1);

/* The first line of the file dir/name into `buf`, NUL-terminated, without its
 * newline. Returns 0, or -1 when the file is missing or empty or the path is
 * too long. */
int rm_cgroup_read_line(const char *dir, const char *name, char *buf, int buf_len);

#endif
