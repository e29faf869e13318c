/*
 * conf.h - ringmaster-worker's command line, parsed once into a const struct.
 *
 *   ringmaster-worker --region-fd FD --control-fd FD --doorbell-fd FD --loop-bell-fd FD --lane N
 *                     --app SPEC
 *                     [--threads T] [--mode auto|gil|subinterpreters|free-threaded]
 *                     [--log-level error|warn|info|debug] [--log-format plain|json]
 *                     [--interface auto|native|wsgi] [--root-path PATH]
 *                     [--forwarded-allow-ips LIST] [--workers N]
 *
 * `--opt=value` works too. No Python here, so the parser can be tested alone.
 */
#ifndef RINGMASTER_WORKER_CONF_H
#define RINGMASTER_WORKER_CONF_H

#include "ringmaster/interface.h"
#include "ringmaster/log.h"

#include <stddef.h>
#include <stdint.h>

#define RM_WORKER_MAX_THREADS 256

/* How the T serving threads run Python (docs/modes.md). */
typedef enum rm_worker_mode {
    RM_WORKER_MODE_AUTO = 0,        /* the best this build offers that the app loads in */
    RM_WORKER_MODE_GIL,             /* one interpreter, the threads take turns on its GIL */
    RM_WORKER_MODE_SUBINTERPRETERS, /* one interpreter with its own GIL per thread (3.12+) */
    RM_WORKER_MODE_FREE_THREADED,   /* one interpreter, no GIL (a --disable-gil build) */
} rm_worker_mode_t;

typedef struct rm_worker_conf {
    int region_fd;              /* memfd of the region; rm_region_attach takes it */
    int control_fd;             /* connected AF_UNIX stream to the supervisor */
    int doorbell_fd;            /* eventfd that wakes the supervisor */
    int loop_bell_fd;           /* the lane's loop bell: eventfd the supervisor writes for an
                                   event loop that found the lane empty (lane.h) */
    uint32_t lane;              /* the lane served; pool owner RM_OWNER_LANE(lane) */
    const char *app_spec;       /* borrowed from argv: module[:attr] or file.py[:attr] */
    unsigned threads;           /* serving threads, 1..RM_WORKER_MAX_THREADS (default 1) */
    rm_worker_mode_t mode;      /* as asked; main.c resolves auto (default auto) */
    rm_log_level_t log_level;   /* default info */
    rm_log_format_t log_format; /* default plain */
    rm_app_conf_t iface;        /* --interface, --root-path, --forwarded-allow-ips, --workers */
} rm_worker_conf_t;

/* The --mode spelling of `mode` ("auto", "gil", "subinterpreters", "free-threaded"). */
const char *rm_worker_mode_name(rm_worker_mode_t mode);

/* Parse the worker's argv into `conf`. Returns 0; 1 when --help or --version
 * was asked (`why` then holds the text for stdout); or -EINVAL with one
 * readable line in `why` (which flag, which value). Not thread-safe (getopt). */
int rm_worker_conf_parse(rm_worker_conf_t *conf, int argc, char *const argv[], char *why,
                         size_t why_len);

#endif
