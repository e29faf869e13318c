/*
 * config.h - the supervisor's configuration, parsed once from flags and the
 * environment into a plain struct that runtime code only reads.
 *
 * Precedence: command-line flag, then RINGMASTER_* variable, then the
 * gunicorn-compatible variable (WEB_CONCURRENCY), then the default.
 */
#ifndef RINGMASTER_CONFIG_H
#define RINGMASTER_CONFIG_H

#include "ringmaster/access_log.h"
#include "ringmaster/log.h"
#include "ringmaster/privileges.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

#define RM_CONFIG_MAX_CPUS 1024 /* CPU_SETSIZE: CPUs --pin can name */

typedef struct rm_config {
    char bind_host[256];        /* "127.0.0.1", "::1", "0.0.0.0" */
    uint16_t bind_port;
    bool metrics_enabled;       /* --metrics given */
    char metrics_host[256];     /* --metrics HOST:PORT: /metrics, /healthz, /readyz */
    uint16_t metrics_port;
    const char *access_log;     /* --access-log: "-" (stdout) or a path; NULL: off.
                                   Borrowed: argv or environ */
    rm_access_log_format_t access_log_format; /* --access-log-format */
    bool access_log_query;      /* --access-log-query on: keep query strings in the log */
    uint32_t workers;           /* resolved count, >= 1 */
    uint32_t threads;           /* Python threads per worker */
    const char *mode;           /* static: "auto", "gil", "subinterpreters", "free-threaded" */
    const char *app;            /* borrowed from argv: module:attr or file.py[:attr] */
    /* App-interface flags (interface.h), checked, passed to workers as given;
     * NULL when not set (the worker's defaults apply). Borrowed: argv or environ. */
    const char *interface;           /* --interface auto|native|wsgi|asgi */
    const char *root_path;           /* --root-path */
    const char *forwarded_allow_ips; /* --forwarded-allow-ips */
    const char *lifespan;            /* --lifespan auto|on|off */
    const char *loop;                /* --loop auto|asyncio|uvloop */
    const char *max_concurrency;     /* --max-concurrency N */
    char worker_binary[PATH_MAX]; /* --worker-binary, or --python's ringmaster-worker-X.Y[t] */
    bool pin;                   /* --pin: worker i on usable CPU i, the I/O thread on its own */
    uint32_t cpu_count;         /* usable CPUs at start-up (the affinity mask), >= 1 */
    uint16_t cpus[RM_CONFIG_MAX_CPUS]; /* their numbers, ascending; cpu_count of them */
    rm_log_level_t log_level;
    rm_log_format_t log_format;
    uint32_t chunk_size;        /* bytes per region chunk */
    uint32_t chunk_count;       /* chunks in the region */
    uint32_t lane_capacity;     /* cells per lane ring */
    uint32_t recv_buffers;      /* provided buffers kept armed for recv */
    uint32_t max_connections;
    uint32_t max_head;          /* request line + headers, bytes */
    uint32_t max_target;        /* request-target, bytes */
    uint64_t max_body;          /* request body, bytes */
    uint64_t body_spill_size;   /* a body past this goes to a file in spill_dir */
    char spill_dir[1024];       /* absolute; where spilled bodies are written */
    uint32_t graceful_timeout_ms;
    uint32_t workers_min;         /* autoscaling floor (default: workers) */
    uint32_t workers_max;         /* autoscaling ceiling (default: workers; equal: off) */
    uint32_t idle_timeout_ms;     /* an idle pool shrinks by one worker this often */
    uint64_t max_requests;        /* recycle a worker after this many requests; 0: never */
    uint64_t max_requests_jitter; /* plus a random 0..jitter per worker */
    uint64_t max_rss_mib;         /* recycle a worker above this RSS; 0: never */
    bool max_rss_from_limit;      /* max_rss_mib is the memory limit's share (memlimit.h) */
    uint64_t memory_limit;        /* cgroup memory limit in bytes when read; 0: none */
    uint32_t request_timeout_ms; /* --timeout: a worker silent this long on a request is killed; 0: never */
    uint32_t header_timeout_ms;  /* first byte of a head to its end (408 beyond) */
    uint32_t body_timeout_ms;    /* between two reads of a request body (408 beyond) */
    uint32_t keepalive_timeout_ms; /* idle connection between requests */
    uint32_t write_timeout_ms;   /* output queued and the client reads nothing */
    uint32_t queue_timeout_ms;   /* a request waiting for a worker longer gets 503 */
    uint32_t max_queued;         /* requests waiting for a lane, in total (503 beyond) */
    uint32_t worker_queue;       /* requests on one worker's lane at most (<= lane_capacity) */
    uint32_t startup_timeout_ms; /* a worker that is not ready by then failed */
    int backlog;
    /* Control socket (docs/control.md). */
    bool control_enabled;       /* false: --control none */
    char control_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* resolved path */
    bool control_path_default;  /* the path is the default: create its directory */
    bool control_has_group;     /* --control-group given */
    gid_t control_group;        /* its gid: members may use the socket (mode 0660) */
    bool attach_only;           /* --attach-only: no embedded workers, APP optional */
    /* --user/--group: become this user once the sockets are bound (privileges.h);
     * run_as.enabled is false without --user or when it names who we are. */
    rm_run_as_t run_as;
    bool worker_seccomp;        /* --worker-seccomp: workers run under seccomp.h's filter */
} rm_config_t;

/* Outcome of parsing, besides success (0). */
#define RM_CONFIG_EXIT_OK 1 /* --help or --version was printed: exit 0 */

/* Fill `cfg` from argv and the environment. Returns 0, RM_CONFIG_EXIT_OK, or
 * -EINVAL with one readable line in err (no trailing newline). */
int rm_config_parse(rm_config_t *cfg, int argc, char **argv, char *err, size_t err_len);

/* Usable CPUs: the affinity mask, capped by a cgroup CPU quota (cpus.h). */
uint32_t rm_config_usable_cpus(void);

/* Print the usage text to `fp` (a FILE *). */
void rm_config_usage(void *fp);

#endif
