/*
 * fake_cgroup.h - a throwaway cgroup hierarchy in /tmp for the cgroup readers'
 * tests (test_cpus.c, test_memlimit.c).
 */
#ifndef RM_TEST_FAKE_CGROUP_H
#define RM_TEST_FAKE_CGROUP_H

/* The root of the fake hierarchy, valid after fake_cgroup_setup(). */
extern char fake_cgroup_root[256];

/* Criterion .init: a fresh empty directory as the root. */
void fake_cgroup_setup(void);

/* Write `text` to ROOT/rel, creating directories on the way. */
void fake_cgroup_put(const char *rel, const char *text);

/* The path of ROOT/self-cgroup after writing `text` to it: a stand-in for
 * /proc/self/cgroup. Valid until the next call. */
const char *fake_cgroup_self(const char *text);

#endif
