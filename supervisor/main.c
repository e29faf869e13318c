/*
 * main.c - the `ringmaster` command.
 */
#include "ringmaster/config.h"
#include "ringmaster/ctl.h"
#include "ringmaster/log.h"
#include "ringmaster/memlimit.h"
#include "ringmaster/server.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static rm_config_t cfg;
    char err[512];
    if (argc > 1 && strcmp(argv[1], "ctl") == 0)
        return rm_ctl_main(argc - 1, argv + 1);
    int rc = rm_config_parse(&cfg, argc, argv, err, sizeof(err));
    if (rc == RM_CONFIG_EXIT_OK)
        return 0;
    if (rc) {
        fprintf(stderr, "ringmaster: error: %s\n", err);
        return 2;
    }
    rm_log_conf.level = cfg.log_level;
    rm_log_conf.format = cfg.log_format;
    rm_log_conf.role = "supervisor";
    if (geteuid() == 0 && !cfg.run_as.enabled)
        RM_WARN("running as root without --user: the supervisor keeps root (workers run as "
                "uid 0, without capabilities); give --user USER to run as that user once the "
                "sockets are bound (docs/security.md)");
    if (cfg.worker_seccomp)
        RM_INFO("--worker-seccomp: workers run under a seccomp filter (ptrace, mount, namespaces, "
                "bpf, kexec, io_uring and more fail with EPERM; docs/security.md)");
    if (cfg.max_rss_from_limit)
        RM_INFO("memory limit %llu MiB: --max-rss defaults to %llu MiB per worker "
                "(80%% shared by up to %u workers)",
                (unsigned long long)(cfg.memory_limit >> 20), (unsigned long long)cfg.max_rss_mib,
                cfg.workers_max);
    else if (cfg.memory_limit && cfg.max_rss_mib == 0)
        RM_WARN("memory limit %llu MiB: 80%% of it shared by %u workers is under %d MiB each, "
                "too little to recycle on; --max-rss stays off (set it, or run fewer workers)",
                (unsigned long long)(cfg.memory_limit >> 20), cfg.workers_max,
                RM_MEMLIMIT_MIN_SHARE_MIB);
    return rm_server_run(&cfg);
}
