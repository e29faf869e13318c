/*
 * seccomp.h - the optional system-call filter of --worker-seccomp
 * (docs/security.md "A seccomp filter for workers").
 *
 * A classic BPF program, no libseccomp: every system call is allowed except
 * a list that a Python web app has no business making and that widen what a
 * compromised app could do to the host or to other processes (tracing and
 * reading other processes, mounting, namespaces, kernel modules, kexec, BPF,
 * perf, the kernel keyring, io_uring, userfaultfd, ...). Those fail with
 * EPERM (clone3 with ENOSYS, so that glibc falls back to clone, whose
 * namespace flags are refused); a system call of another architecture ABI
 * (i386, x32) kills the process. The filter is installed in the worker
 * between fork and exec, after PR_SET_NO_NEW_PRIVS, and is inherited by
 * everything the app starts; it cannot be removed.
 */
#ifndef RINGMASTER_SECCOMP_H
#define RINGMASTER_SECCOMP_H

#include <stdbool.h>
#include <stddef.h>

/* Whether this build knows the running architecture's system call numbers
 * (x86_64 and aarch64). */
bool rm_seccomp_supported(void);

/* The names of the system calls the filter refuses, NULL-terminated (for
 * documentation and tests). */
extern const char *const rm_seccomp_blocked_names[];

/* Install the filter in the calling process (async-signal-safe: for the
 * child between fork and exec). Needs PR_SET_NO_NEW_PRIVS set first.
 * Returns 0 or -errno (-ENOSYS on an unsupported architecture). */
int rm_seccomp_install_worker_filter(void);

#endif
