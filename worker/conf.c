/*
 * conf.c - ringmaster-worker's argv to a const rm_worker_conf_t.
 *
 * Pure: no I/O, nothing allocated; the only state is getopt's, which is reset
 * on every call. Checking that the descriptors are open is main.c's job.
 */
#include "conf.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef RINGMASTER_VERSION
#define RINGMASTER_VERSION "dev"
#endif
/* The embedded interpreter's worker tag, "3.13" or "3.13t" (CMake). */
#ifndef RINGMASTER_PYTHON_TAG
#define RINGMASTER_PYTHON_TAG "unknown"
#endif

#define USAGE                                                                                      \
    "usage: ringmaster-worker --region-fd FD --control-fd FD --doorbell-fd FD --loop-bell-fd FD "  \
    "--lane N --app SPEC\n"                                                                        \
    "                         [--threads T] [--mode auto|gil|subinterpreters|free-threaded]\n"     \
    "                         [--log-level error|warn|info|debug] [--log-format plain|json]\n"     \
    "                         [--interface auto|native|wsgi|asgi] [--root-path PATH]\n"            \
    "                         [--forwarded-allow-ips LIST] [--workers N]\n"                        \
    "                         [--lifespan auto|on|off] [--loop auto|asyncio|uvloop]\n"             \
    "                         [--max-concurrency N]\n"                                             \
    "Started by the ringmaster supervisor; not meant to be run by hand.\n"

enum {
    OPT_REGION_FD = 0x100,
    OPT_CONTROL_FD,
    OPT_DOORBELL_FD,
    OPT_LOOP_BELL_FD,
    OPT_LANE,
    OPT_APP,
    OPT_THREADS,
    OPT_MODE,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_HELP,
    OPT_VERSION,
    /* The app-interface flags, in enum rm_app_opt order (interface.h). */
    OPT_INTERFACE,
    OPT_ROOT_PATH,
    OPT_FORWARDED_ALLOW_IPS,
    OPT_WORKERS,
    OPT_LIFESPAN,
    OPT_LOOP,
    OPT_MAX_CONCURRENCY,
};

/* The four descriptor flags come first, in OPT_ order: their messages index
 * this table by opt - OPT_REGION_FD. */
static const struct option options[] = {
    {"region-fd", required_argument, NULL, OPT_REGION_FD},
    {"control-fd", required_argument, NULL, OPT_CONTROL_FD},
    {"doorbell-fd", required_argument, NULL, OPT_DOORBELL_FD},
    {"loop-bell-fd", required_argument, NULL, OPT_LOOP_BELL_FD},
    {"lane", required_argument, NULL, OPT_LANE},
    {"app", required_argument, NULL, OPT_APP},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"mode", required_argument, NULL, OPT_MODE},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {"interface", required_argument, NULL, OPT_INTERFACE},
    {"root-path", required_argument, NULL, OPT_ROOT_PATH},
    {"forwarded-allow-ips", required_argument, NULL, OPT_FORWARDED_ALLOW_IPS},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"lifespan", required_argument, NULL, OPT_LIFESPAN},
    {"loop", required_argument, NULL, OPT_LOOP},
    {"max-concurrency", required_argument, NULL, OPT_MAX_CONCURRENCY},
    {NULL, 0, NULL, 0},
};

__attribute__((format(printf, 3, 4))) static int fail(char *why, size_t why_len, const char *fmt,
                                                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* A decimal in [min, max], nothing else. */
static int parse_uint(const char *text, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end;
    if (text[0] < '0' || text[0] > '9')
        return -EINVAL;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || *end || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static const char *const mode_names[] = {
    [RM_WORKER_MODE_AUTO] = "auto",
    [RM_WORKER_MODE_GIL] = "gil",
    [RM_WORKER_MODE_SUBINTERPRETERS] = "subinterpreters",
    [RM_WORKER_MODE_FREE_THREADED] = "free-threaded",
};

const char *rm_worker_mode_name(rm_worker_mode_t mode)
{
    if ((unsigned)mode >= sizeof(mode_names) / sizeof(mode_names[0]))
        return "unknown";
    return mode_names[mode];
}

static int parse_mode(const char *text, rm_worker_mode_t *out)
{
    for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++) {
        if (strcmp(text, mode_names[i]) == 0) {
            *out = (rm_worker_mode_t)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* module[:attr] or path.py[:attr]: neither part empty. */
static bool app_spec_ok(const char *spec)
{
    const char *colon = strrchr(spec, ':');
    if (spec[0] == '\0' || spec[0] == ':')
        return false;
    return colon == NULL || colon[1] != '\0';
}

int rm_worker_conf_parse(rm_worker_conf_t *conf, int argc, char *const argv[], char *why,
                         size_t why_len)
{
    unsigned long v;
    int *fd_slot;

    *conf = (rm_worker_conf_t){
        .region_fd = -1,
        .control_fd = -1,
        .doorbell_fd = -1,
        .loop_bell_fd = -1,
        .lane = UINT32_MAX,
        .threads = 1,
        .mode = RM_WORKER_MODE_AUTO,
        .log_level = RM_LOG_INFO,
        .log_format = RM_LOG_PLAIN,
    };
    rm_app_conf_init(&conf->iface);

    /* getopt keeps its position in globals: restart it so a test can parse twice. */
    optind = 0;
    opterr = 0;
    for (;;) {
        int opt = getopt_long(argc, argv, "+:", options, NULL);
        if (opt == -1)
            break;
        switch (opt) {
        case OPT_REGION_FD:
        case OPT_CONTROL_FD:
        case OPT_DOORBELL_FD:
        case OPT_LOOP_BELL_FD:
            fd_slot = opt == OPT_REGION_FD     ? &conf->region_fd
                      : opt == OPT_CONTROL_FD  ? &conf->control_fd
                      : opt == OPT_DOORBELL_FD ? &conf->doorbell_fd
                                               : &conf->loop_bell_fd;
            if (parse_uint(optarg, 0, INT_MAX, &v) < 0)
                return fail(why, why_len, "--%s: '%s' is not a file descriptor number",
                            options[opt - OPT_REGION_FD].name, optarg);
            *fd_slot = (int)v;
            break;
        case OPT_LANE:
            if (parse_uint(optarg, 0, UINT32_MAX - 2, &v) < 0)
                return fail(why, why_len, "--lane: '%s' is not a lane number", optarg);
            conf->lane = (uint32_t)v;
            break;
        case OPT_APP:
            if (!app_spec_ok(optarg))
                return fail(why, why_len,
                            "--app: '%s' is not module[:attr] or path/to/file.py[:attr]", optarg);
            conf->app_spec = optarg;
            break;
        case OPT_THREADS:
            if (parse_uint(optarg, 1, RM_WORKER_MAX_THREADS, &v) < 0)
                return fail(why, why_len, "--threads: '%s' is not a number from 1 to %d", optarg,
                            RM_WORKER_MAX_THREADS);
            conf->threads = (unsigned)v;
            break;
        case OPT_MODE:
            /* Whether this build can run the mode is main.c's question. */
            if (parse_mode(optarg, &conf->mode) < 0)
                return fail(why, why_len,
                            "--mode: '%s' is not auto, gil, subinterpreters or free-threaded",
                            optarg);
            break;
        case OPT_LOG_LEVEL:
            if (rm_log_parse_level(optarg, &conf->log_level) < 0)
                return fail(why, why_len, "--log-level: '%s' is not error, warn, info or debug",
                            optarg);
            break;
        case OPT_LOG_FORMAT:
            if (rm_log_parse_format(optarg, &conf->log_format) < 0)
                return fail(why, why_len, "--log-format: '%s' is not plain or json", optarg);
            break;
        case OPT_INTERFACE:
        case OPT_ROOT_PATH:
        case OPT_FORWARDED_ALLOW_IPS:
        case OPT_WORKERS:
        case OPT_LIFESPAN:
        case OPT_LOOP:
        case OPT_MAX_CONCURRENCY:
            if (rm_app_conf_set(&conf->iface, (enum rm_app_opt)(opt - OPT_INTERFACE), optarg, why,
                                why_len) < 0)
                return -EINVAL;
            break;
        case OPT_HELP:
            snprintf(why, why_len, "%s", USAGE);
            return 1;
        case OPT_VERSION:
            snprintf(why, why_len, "ringmaster-worker %s (CPython %s)\n", RINGMASTER_VERSION,
                     RINGMASTER_PYTHON_TAG);
            return 1;
        case ':':
            return fail(why, why_len, "%s needs a value", argv[optind - 1]);
        default:
            return fail(why, why_len, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return fail(why, why_len, "unexpected argument '%s'", argv[optind]);

    if (conf->region_fd < 0)
        return fail(why, why_len, "--region-fd is required");
    if (conf->control_fd < 0)
        return fail(why, why_len, "--control-fd is required");
    if (conf->doorbell_fd < 0)
        return fail(why, why_len, "--doorbell-fd is required");
    if (conf->loop_bell_fd < 0)
        return fail(why, why_len, "--loop-bell-fd is required");
    if (conf->lane == UINT32_MAX)
        return fail(why, why_len, "--lane is required");
    if (conf->app_spec == NULL)
        return fail(why, why_len, "--app is required");
    return 0;
}
