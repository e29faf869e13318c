/*
 * peers.h - helpers the shm suites share: shared memory and peer processes.
 * Include after <criterion/criterion.h>.
 */
#ifndef RINGMASTER_TESTS_SHM_PEERS_H
#define RINGMASTER_TESTS_SHM_PEERS_H

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

/* Anonymous memory that forked peers share with the test. */
static inline void *map_shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(p, MAP_FAILED, "mmap %zu bytes: %s", size, strerror(errno));
    return p;
}

/* fork() for a peer process that must not outlive the test: if the test
 * process dies (a timeout, a failed assertion), the peer is killed too. */
static inline pid_t fork_peer(void)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0 && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent))
        _exit(99);
    return pid;
}

#endif
