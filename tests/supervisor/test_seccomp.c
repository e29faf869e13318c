/*
 * test_seccomp.c - supervisor/seccomp.c through ringmaster/seccomp.h.
 *
 * Each test installs the filter in its own Criterion process, then checks
 * what the filter refuses and what an app's ordinary work still gets.
 */
#include "ringmaster/seccomp.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void install(void)
{
    if (!rm_seccomp_supported())
        cr_skip("no filter for this architecture");
    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    int rc = rm_seccomp_install_worker_filter();
    cr_assert_eq(rc, 0, "%s", strerror(-rc));
}

/* errno of a raw system call expected to fail. */
static int fails_with(long rc)
{
    cr_assert_eq(rc, -1, "the call succeeded");
    return errno;
}

static void *thread_main(void *arg)
{
    return arg;
}

Test(seccomp, refuses_what_an_app_has_no_business_doing)
{
    install();
    cr_assert_eq(fails_with(syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0)), EPERM);
    cr_assert_eq(fails_with(syscall(SYS_unshare, CLONE_NEWUSER)), EPERM);
    cr_assert_eq(fails_with(syscall(SYS_setns, 0, 0)), EPERM);
    cr_assert_eq(fails_with(syscall(SYS_mount, "none", "/mnt", "tmpfs", 0, NULL)), EPERM);
    cr_assert_eq(fails_with(syscall(SYS_bpf, 0, NULL, 0)), EPERM);
    cr_assert_eq(fails_with(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0)), EPERM);
    cr_assert_eq(fails_with(syscall(SYS_keyctl, 0, 0, 0, 0, 0)), EPERM);
    cr_assert_eq(fails_with(syscall(SYS_io_uring_setup, 8, NULL)), EPERM);
    cr_assert_eq(fails_with(syscall(SYS_process_vm_readv, getppid(), NULL, 0, NULL, 0, 0)), EPERM);
    cr_assert_eq(fails_with(syscall(SYS_kexec_load, 0, 0, NULL, 0)), EPERM);
    cr_assert_eq(fails_with(syscall(SYS_userfaultfd, 0)), EPERM);
    /* clone3 says "no such call", so that glibc falls back to clone... */
    cr_assert_eq(fails_with(syscall(SYS_clone3, NULL, 0)), ENOSYS);
    /* ...whose namespace flags are refused. */
    cr_assert_eq(fails_with(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, NULL, NULL, 0)), EPERM);
    cr_assert_eq(fails_with(syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, NULL, NULL, 0)), EPERM);
}

Test(seccomp, ordinary_work_goes_on)
{
    install();
    cr_assert_gt(getpid(), 0);
    pthread_t t;
    void *out = NULL;
    cr_assert_eq(pthread_create(&t, NULL, thread_main, (void *)0x1), 0, "threads still start");
    cr_assert_eq(pthread_join(t, &out), 0);
    cr_assert_eq(out, (void *)0x1);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork still works: %s", strerror(errno));
    if (pid == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a subprocess still runs");
}

Test(seccomp, the_list_is_named)
{
    size_t n = 0;
    bool ptrace_listed = false;
    for (; rm_seccomp_blocked_names[n]; n++)
        ptrace_listed |= strcmp(rm_seccomp_blocked_names[n], "ptrace") == 0;
    cr_assert_gt(n, 30);
    cr_assert(ptrace_listed);
}
