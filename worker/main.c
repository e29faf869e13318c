/*
 * main.c - ringmaster-worker: argv, attach, hello, import, ready, serve, exit.
 *
 *   ringmaster-worker --region-fd FD --control-fd FD --doorbell-fd FD --lane N --app SPEC
 *                     [--threads T] [--mode gil] [--log-level error|warn|info|debug]
 *                     [--log-format plain|json]
 *
 * Spawned by the supervisor, one per core. Every start-up failure after the
 * arguments is reported twice: one line on stderr (our log) and a "fatal"
 * control frame, so the supervisor can tell the operator why.
 */
#include "worker.h"

#include "ringmaster/control.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef RINGMASTER_VERSION
#define RINGMASTER_VERSION "dev"
#endif

#define USAGE                                                                                      \
    "usage: ringmaster-worker --region-fd FD --control-fd FD --doorbell-fd FD --lane N "          \
    "--app SPEC\n"                                                                                 \
    "                         [--threads T] [--mode gil] [--log-level error|warn|info|debug]\n"    \
    "                         [--log-format plain|json]\n"                                         \
    "Started by the ringmaster supervisor; not meant to be run by hand.\n"

enum {
    OPT_REGION_FD = 0x100,
    OPT_CONTROL_FD,
    OPT_DOORBELL_FD,
    OPT_LANE,
    OPT_APP,
    OPT_THREADS,
    OPT_MODE,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_HELP,
    OPT_VERSION,
};

static const struct option options[] = {
    {"region-fd", required_argument, NULL, OPT_REGION_FD},
    {"control-fd", required_argument, NULL, OPT_CONTROL_FD},
    {"doorbell-fd", required_argument, NULL, OPT_DOORBELL_FD},
    {"lane", required_argument, NULL, OPT_LANE},
    {"app", required_argument, NULL, OPT_APP},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"mode", required_argument, NULL, OPT_MODE},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
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
        .lane = UINT32_MAX,
        .threads = 1,
        .mode = RM_WORKER_MODE_GIL,
        .log_level = RM_LOG_INFO,
        .log_format = RM_LOG_PLAIN,
    };

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
            fd_slot = opt == OPT_REGION_FD    ? &conf->region_fd
                      : opt == OPT_CONTROL_FD ? &conf->control_fd
                                              : &conf->doorbell_fd;
            if (parse_uint(optarg, 0, INT_MAX, &v) < 0)
                return fail(why, why_len, "%s: '%s' is not a file descriptor number",
                            argv[optind - 1], optarg);
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
                            "--app: '%s' is not module[:attr] or path/to/file.py[:attr]",
                            optarg);
            conf->app_spec = optarg;
            break;
        case OPT_THREADS:
            if (parse_uint(optarg, 1, RM_WORKER_MAX_THREADS, &v) < 0)
                return fail(why, why_len, "--threads: '%s' is not a number from 1 to %d", optarg,
                            RM_WORKER_MAX_THREADS);
            conf->threads = (unsigned)v;
            break;
        case OPT_MODE:
            /* subinterpreters and free-threaded come with their own modes. */
            if (strcmp(optarg, "gil") != 0)
                return fail(why, why_len,
                            "--mode: '%s' is not supported by this worker (supported: gil)",
                            optarg);
            conf->mode = RM_WORKER_MODE_GIL;
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
        case OPT_HELP:
            snprintf(why, why_len, "%s", USAGE);
            return 1;
        case OPT_VERSION:
            snprintf(why, why_len, "ringmaster-worker %s\n", RINGMASTER_VERSION);
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
    if (conf->lane == UINT32_MAX)
        return fail(why, why_len, "--lane is required");
    if (conf->app_spec == NULL)
        return fail(why, why_len, "--app is required");
    return 0;
}

/* The descriptors must be open, and must not leak into processes the app runs. */
static int adopt_fd(int fd, const char *flag, char *why, size_t why_len)
{
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0) {
        snprintf(why, why_len, "%s %d: %s", flag, fd, strerror(errno));
        return -EBADF;
    }
    return 0;
}

static void send_fatal(const rm_worker_conf_t *conf, const char *text)
{
    rm_ctl_msg_t msg = {.type = RM_CTL_FATAL};
    snprintf(msg.text, sizeof(msg.text), "%s", text);
    int rc = rm_ctl_send(conf->control_fd, &msg);
    if (rc < 0)
        RM_WARN("cannot send the fatal frame to the supervisor: %s", strerror(-rc));
}

static int send_simple(const rm_worker_conf_t *conf, rm_ctl_msg_t *msg)
{
    int rc = rm_ctl_send(conf->control_fd, msg);
    if (rc < 0)
        RM_ERROR("cannot send %s to the supervisor: %s", rm_ctl_type_name(msg->type),
                 strerror(-rc));
    return rc;
}

/* Everything after the arguments; returns the exit status. */
static int run(rm_worker_t *w, const rm_worker_conf_t *conf, int argc, char **argv)
{
    char why[1024];
    int rc, status = RM_WORKER_EXIT_INTERNAL;
    rm_ctl_msg_t msg;

    rc = rm_region_attach(&w->region, conf->region_fd, conf->lane);
    if (rc < 0) {
        snprintf(why, sizeof(why), "cannot attach the shared region (--region-fd %d): %s",
                 conf->region_fd,
                 rc == -EPROTO ? "wrong magic or layout version (supervisor from another build?)"
                               : strerror(-rc));
        goto fatal;
    }
    if (conf->lane >= w->region.conf.lane_count) {
        snprintf(why, sizeof(why), "--lane %u: the region has %u lanes", conf->lane,
                 w->region.conf.lane_count);
        status = RM_WORKER_EXIT_USAGE;
        goto fatal;
    }
    rm_region_lane(&w->region, conf->lane, &w->lane);
    w->owner = RM_OWNER_LANE(conf->lane);

    msg = (rm_ctl_msg_t){
        .type = RM_CTL_HELLO,
        .version = RM_CTL_VERSION,
        .pid = (int32_t)getpid(),
        .lane = conf->lane,
        .gil_enabled = true,
    };
    rm_host_python_version(msg.python, sizeof(msg.python));
    snprintf(msg.mode, sizeof(msg.mode), "gil");
    if (send_simple(conf, &msg) < 0)
        goto out;

    rc = rm_host_init(&w->host, w, argc, argv, why, sizeof(why));
    if (rc < 0)
        goto fatal;
    rc = rm_host_load_app(&w->host, conf->app_spec, why, sizeof(why));
    if (rc < 0) {
        status = RM_WORKER_EXIT_APP;
        goto fatal;
    }

    msg = (rm_ctl_msg_t){.type = RM_CTL_READY};
    if (send_simple(conf, &msg) < 0)
        goto out;
    RM_INFO("serving %s on lane %u with %u thread%s (python %s, mode gil)", conf->app_spec,
            conf->lane, conf->threads, conf->threads == 1 ? "" : "s", Py_GetVersion());

    rc = rm_worker_serve(w);
    status = rc < 0 ? RM_WORKER_EXIT_INTERNAL : RM_WORKER_EXIT_OK;
    goto out;

fatal:
    RM_ERROR("%s", why);
    send_fatal(conf, why);
out:
    rm_host_finalize(&w->host);
    rm_region_detach(&w->region);
    return status;
}

int main(int argc, char **argv)
{
    static char role[32]; /* rm_log_conf.role borrows it until exit */
    rm_worker_conf_t parsed;
    char why[1024];
    rm_worker_t w;

    int rc = rm_worker_conf_parse(&parsed, argc, argv, why, sizeof(why));
    if (rc > 0) {
        fputs(why, stdout);
        return RM_WORKER_EXIT_OK;
    }
    if (rc < 0) {
        fprintf(stderr, "ringmaster-worker: %s\n", why);
        return RM_WORKER_EXIT_USAGE;
    }
    const rm_worker_conf_t *conf = &parsed;

    snprintf(role, sizeof(role), "worker %u", conf->lane);
    rm_log_conf.level = conf->log_level;
    rm_log_conf.format = conf->log_format;
    rm_log_conf.role = role;

    if (adopt_fd(conf->control_fd, "--control-fd", why, sizeof(why)) < 0 ||
        adopt_fd(conf->region_fd, "--region-fd", why, sizeof(why)) < 0 ||
        adopt_fd(conf->doorbell_fd, "--doorbell-fd", why, sizeof(why)) < 0) {
        fprintf(stderr, "ringmaster-worker: %s\n", why);
        return RM_WORKER_EXIT_USAGE;
    }

    rc = rm_worker_init(&w, conf);
    if (rc < 0) {
        snprintf(why, sizeof(why), "cannot set up signal handling: %s", strerror(-rc));
        RM_ERROR("%s", why);
        send_fatal(conf, why);
        return RM_WORKER_EXIT_INTERNAL;
    }
    int status = run(&w, conf, argc, argv);
    rm_worker_deinit(&w);
    close(conf->control_fd);
    close(conf->doorbell_fd);
    return status;
}
