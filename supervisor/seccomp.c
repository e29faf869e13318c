/*
 * seccomp.c - the --worker-seccomp filter (seccomp.h).
 *
 * Kernel features: seccomp filters (3.5), SECCOMP_RET_KILL_PROCESS (4.14).
 *
 * The program, in order: a system call of another architecture ABI kills
 * the process (on x86_64 that includes x32 numbers, above 2^30); each
 * blocked number returns EPERM; clone3 returns ENOSYS (its flags live in
 * memory a filter cannot read, and glibc then falls back to clone); clone
 * with a CLONE_NEW* flag returns EPERM; everything else is allowed. A list
 * of about fifty equality tests costs a few dozen nanoseconds per system
 * call, well under what the calls themselves cost.
 */
#include "ringmaster/seccomp.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#define X32_SYSCALL_BIT 0x40000000u
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#endif

/* clone(2) flags that make a namespace. CLONE_NEWTIME shares its bit with
 * the exit signal in clone's first argument, so only unshare/clone3 can
 * ask for it, and both are refused anyway. */
#define NS_FLAGS                                                                                   \
    (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |  \
     CLONE_NEWNET)

static const struct {
    const char *name;
    int nr;
} blocked[] = {
#ifdef __NR_ptrace
    {"ptrace", __NR_ptrace},
#endif
#ifdef __NR_process_vm_readv
    {"process_vm_readv", __NR_process_vm_readv},
#endif
#ifdef __NR_process_vm_writev
    {"process_vm_writev", __NR_process_vm_writev},
#endif
#ifdef __NR_pidfd_getfd
    {"pidfd_getfd", __NR_pidfd_getfd},
#endif
#ifdef __NR_kcmp
    {"kcmp", __NR_kcmp},
#endif
#ifdef __NR_mount
    {"mount", __NR_mount},
#endif
#ifdef __NR_umount2
    {"umount2", __NR_umount2},
#endif
#ifdef __NR_pivot_root
    {"pivot_root", __NR_pivot_root},
#endif
#ifdef __NR_fsopen
    {"fsopen", __NR_fsopen},
#endif
#ifdef __NR_fsconfig
    {"fsconfig", __NR_fsconfig},
#endif
#ifdef __NR_fsmount
    {"fsmount", __NR_fsmount},
#endif
#ifdef __NR_fspick
    {"fspick", __NR_fspick},
#endif
#ifdef __NR_move_mount
    {"move_mount", __NR_move_mount},
#endif
#ifdef __NR_open_tree
    {"open_tree", __NR_open_tree},
#endif
#ifdef __NR_mount_setattr
    {"mount_setattr", __NR_mount_setattr},
#endif
#ifdef __NR_unshare
    {"unshare", __NR_unshare},
#endif
#ifdef __NR_setns
    {"setns", __NR_setns},
#endif
#ifdef __NR_init_module
    {"init_module", __NR_init_module},
#endif
#ifdef __NR_finit_module
    {"finit_module", __NR_finit_module},
#endif
#ifdef __NR_delete_module
    {"delete_module", __NR_delete_module},
#endif
#ifdef __NR_kexec_load
    {"kexec_load", __NR_kexec_load},
#endif
#ifdef __NR_kexec_file_load
    {"kexec_file_load", __NR_kexec_file_load},
#endif
#ifdef __NR_bpf
    {"bpf", __NR_bpf},
#endif
#ifdef __NR_perf_event_open
    {"perf_event_open", __NR_perf_event_open},
#endif
#ifdef __NR_keyctl
    {"keyctl", __NR_keyctl},
#endif
#ifdef __NR_add_key
    {"add_key", __NR_add_key},
#endif
#ifdef __NR_request_key
    {"request_key", __NR_request_key},
#endif
#ifdef __NR_io_uring_setup
    {"io_uring_setup", __NR_io_uring_setup},
#endif
#ifdef __NR_io_uring_enter
    {"io_uring_enter", __NR_io_uring_enter},
#endif
#ifdef __NR_io_uring_register
    {"io_uring_register", __NR_io_uring_register},
#endif
#ifdef __NR_userfaultfd
    {"userfaultfd", __NR_userfaultfd},
#endif
#ifdef __NR_reboot
    {"reboot", __NR_reboot},
#endif
#ifdef __NR_swapon
    {"swapon", __NR_swapon},
#endif
#ifdef __NR_swapoff
    {"swapoff", __NR_swapoff},
#endif
#ifdef __NR_acct
    {"acct", __NR_acct},
#endif
#ifdef __NR_quotactl
    {"quotactl", __NR_quotactl},
#endif
#ifdef __NR_syslog
    {"syslog", __NR_syslog},
#endif
#ifdef __NR_vhangup
    {"vhangup", __NR_vhangup},
#endif
#ifdef __NR_open_by_handle_at
    {"open_by_handle_at", __NR_open_by_handle_at},
#endif
#ifdef __NR_name_to_handle_at
    {"name_to_handle_at", __NR_name_to_handle_at},
#endif
#ifdef __NR_lookup_dcookie
    {"lookup_dcookie", __NR_lookup_dcookie},
#endif
#ifdef __NR_uselib
    {"uselib", __NR_uselib},
#endif
#ifdef __NR_settimeofday
    {"settimeofday", __NR_settimeofday},
#endif
#ifdef __NR_clock_settime
    {"clock_settime", __NR_clock_settime},
#endif
#ifdef __NR_clock_adjtime
    {"clock_adjtime", __NR_clock_adjtime},
#endif
#ifdef __NR_iopl
    {"iopl", __NR_iopl},
#endif
#ifdef __NR_ioperm
    {"ioperm", __NR_ioperm},
#endif
};

#define NBLOCKED (sizeof(blocked) / sizeof(blocked[0]))

const char *const rm_seccomp_blocked_names[] = {
#ifdef __NR_ptrace
    "ptrace",
#endif
#ifdef __NR_process_vm_readv
    "process_vm_readv",
#endif
#ifdef __NR_process_vm_writev
    "process_vm_writev",
#endif
#ifdef __NR_pidfd_getfd
    "pidfd_getfd",
#endif
#ifdef __NR_kcmp
    "kcmp",
#endif
#ifdef __NR_mount
    "mount",
#endif
#ifdef __NR_umount2
    "umount2",
#endif
#ifdef __NR_pivot_root
    "pivot_root",
#endif
#ifdef __NR_fsopen
    "fsopen",
#endif
#ifdef __NR_fsconfig
    "fsconfig",
#endif
#ifdef __NR_fsmount
    "fsmount",
#endif
#ifdef __NR_fspick
    "fspick",
#endif
#ifdef __NR_move_mount
    "move_mount",
#endif
#ifdef __NR_open_tree
    "open_tree",
#endif
#ifdef __NR_mount_setattr
    "mount_setattr",
#endif
#ifdef __NR_unshare
    "unshare",
#endif
#ifdef __NR_setns
    "setns",
#endif
#ifdef __NR_init_module
    "init_module",
#endif
#ifdef __NR_finit_module
    "finit_module",
#endif
#ifdef __NR_delete_module
    "delete_module",
#endif
#ifdef __NR_kexec_load
    "kexec_load",
#endif
#ifdef __NR_kexec_file_load
    "kexec_file_load",
#endif
#ifdef __NR_bpf
    "bpf",
#endif
#ifdef __NR_perf_event_open
    "perf_event_open",
#endif
#ifdef __NR_keyctl
    "keyctl",
#endif
#ifdef __NR_add_key
    "add_key",
#endif
#ifdef __NR_request_key
    "request_key",
#endif
#ifdef __NR_io_uring_setup
    "io_uring_setup",
#endif
#ifdef __NR_io_uring_enter
    "io_uring_enter",
#endif
#ifdef __NR_io_uring_register
    "io_uring_register",
#endif
#ifdef __NR_userfaultfd
    "userfaultfd",
#endif
#ifdef __NR_reboot
    "reboot",
#endif
#ifdef __NR_swapon
    "swapon",
#endif
#ifdef __NR_swapoff
    "swapoff",
#endif
#ifdef __NR_acct
    "acct",
#endif
#ifdef __NR_quotactl
    "quotactl",
#endif
#ifdef __NR_syslog
    "syslog",
#endif
#ifdef __NR_vhangup
    "vhangup",
#endif
#ifdef __NR_open_by_handle_at
    "open_by_handle_at",
#endif
#ifdef __NR_name_to_handle_at
    "name_to_handle_at",
#endif
#ifdef __NR_lookup_dcookie
    "lookup_dcookie",
#endif
#ifdef __NR_uselib
    "uselib",
#endif
#ifdef __NR_settimeofday
    "settimeofday",
#endif
#ifdef __NR_clock_settime
    "clock_settime",
#endif
#ifdef __NR_clock_adjtime
    "clock_adjtime",
#endif
#ifdef __NR_iopl
    "iopl",
#endif
#ifdef __NR_ioperm
    "ioperm",
#endif
    NULL,
};

bool rm_seccomp_supported(void)
{
#ifdef ARCH
    return true;
#else
    return false;
#endif
}

int rm_seccomp_install_worker_filter(void)
{
#ifndef ARCH
    return -ENOSYS;
#else
    /* Room for the fixed head and tail and one test per blocked call. */
    struct sock_filter prog[16 + NBLOCKED];
    size_t n = 0;
    prog[n++] =
        (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    prog[n++] =
        (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#ifdef X32_SYSCALL_BIT
    prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
#endif
    /* After the tests: clone3, clone and its flags (4 instructions), then
     * the three returns. Each test jumps forward to its return. */
    size_t allow_at = n + NBLOCKED + 4;
    size_t eperm_at = allow_at + 1;
    size_t enosys_at = eperm_at + 1;
    for (size_t i = 0; i < NBLOCKED; i++, n++)
        prog[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)blocked[i].nr,
                                               (uint8_t)(eperm_at - n - 1), 0);
    prog[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3,
                                           (uint8_t)(enosys_at - n - 1), 0);
    n++;
    prog[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0,
                                           (uint8_t)(allow_at - n - 1));
    n++;
    /* Little-endian: the low 32 bits of args[0] come first. */
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                             offsetof(struct seccomp_data, args[0]));
    prog[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, NS_FLAGS,
                                           (uint8_t)(eperm_at - n - 1), 0);
    n++;
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS);
    struct sock_fprog fprog = {.len = (unsigned short)n, .filter = prog};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) < 0)
        return -errno;
    return 0;
#endif
}
