/*
 * conf.h - ringmaster-worker's command line, parsed once into a const struct.
 *
 *   ringmaster-worker --region-fd FD --control-fd FD --doorbell-fd FD --lane N --app SPEC
 *                     [--threads T] [--mode gil] [--log-level error|warn|info|debug]
 *                     [--log-format plain|json]
 *
 * `--opt=value` works too. No Python here, so the parser can be tested alone.
 */
#ifndef RINGMASTER_WORKER_CONF_H
#define RINGMASTER_WORKER_CONF_H

#include "ringmaster/log.h"

#include <stddef.h>
#include <stdint.h>

#define RM_WORKER_MAX_THREADS 256

typedef enum rm_worker_mode {
    RM_WORKER_MODE_GIL = 0, /* T threads, one interpreter, the classic GIL */
} rm_worker_mode_t;

typedef struct rm_worker_conf {
    int region_fd;        /* memfd of the region; rm_region_attach takes it */
    int control_fd;       /* connected AF_UNIX stream to the supervisor */
    int doorbell_fd;      /* eventfd that wakes the supervisor */
    uint32_t lane;        /* the lane served; pool owner RM_OWNER_LANE(lane) */
    const char *app_spec; /* borrowed from argv: module[:attr] or file.py[:attr] */
    unsigned threads;     /* serving threads, 1..RM_WORKER_MAX_THREADS (default 1) */
    rm_worker_mode_t mode;
    rm_log_level_t log_level;   /* default info */
    rm_log_format_t log_format; /* default plain */
} rm_worker_conf_t;

/* Parse the worker's argv into `conf`. Returns 0; 1 when --help or --version
 * was asked (`why` then holds the text for stdout); or -EINVAL with one
 * readable line in `why` (which flag, which value). Not thread-safe (getopt). */
int rm_worker_conf_parse(rm_worker_conf_t *conf, int argc, char *const argv[], char *why,
                         size_t why_len);

#endif
