/*
 * main.c - ringmaster-worker: argv, attach, hello, import, ready, serve, exit.
 *
 * Spawned (fork+exec) by the supervisor, one per core; the command line is in
 * conf.h, the exit statuses in worker.h. Every start-up failure after the
 * arguments goes to the supervisor as a "fatal" control frame; it tells the
 * operator once, in one line (our own log line only at debug level).
 */
#include "worker.h"

#include "ringmaster/control.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

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

/* Bound on waiting for the supervisor to read our last frame. */
#define FATAL_READ_WAIT_MS 1000

static void send_fatal(const rm_worker_conf_t *conf, const char *text)
{
    rm_ctl_msg_t msg = {.type = RM_CTL_FATAL};
    snprintf(msg.text, sizeof(msg.text), "%s", text);
    int rc = rm_ctl_send(conf->control_fd, &msg);
    if (rc < 0) {
        RM_WARN("cannot send the fatal frame to the supervisor: %s", strerror(-rc));
        return;
    }
    /* Exiting right after the send (a mode this build cannot run fails
     * before Python starts) would race the frame against SIGCHLD in the
     * supervisor, which then reports a bare exit status instead of the
     * reason. So wait, briefly, until it has read the frame: SIOCOUTQ on a
     * Unix stream socket counts the bytes the peer has not read yet. */
    for (int ms = 0; ms < FATAL_READ_WAIT_MS; ms++) {
        int unread = 0;
        if (ioctl(conf->control_fd, SIOCOUTQ, &unread) < 0 || unread == 0)
            return;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
        nanosleep(&ts, NULL);
    }
}

static int send_simple(const rm_worker_conf_t *conf, rm_ctl_msg_t *msg)
{
    int rc = rm_ctl_send(conf->control_fd, msg);
    if (rc < 0)
        RM_ERROR("cannot send %s to the supervisor: %s", rm_ctl_type_name(msg->type),
                 strerror(-rc));
    return rc;
}

/* Free-threaded mode with the GIL on serves, but one thread at a time: say
 * so loudly, once, with what turned it on. */
static void warn_gil_on(const rm_worker_conf_t *conf, bool before_app)
{
    const char *cause =
        before_app ? "it was on before the app was imported (PYTHON_GIL=1 or -X gil=1?)"
                   : "importing the app turned it on: some extension module it loaded does not "
                     "declare Py_mod_gil (CPython's RuntimeWarning above names it)";
    RM_WARN("free-threaded mode, but the GIL is ON: %s. The %u serving thread%s of %s run one at "
            "a time, as in gil mode. Use extensions built for free-threading, or set "
            "PYTHON_GIL=0 at your own risk",
            cause, conf->threads, conf->threads == 1 ? "" : "s", conf->app_spec);
}

/* Import the app and start the threads in w->mode. In auto mode an app that
 * refuses subinterpreters runs in gil mode instead. Returns what
 * rm_host_load_app or rm_worker_start returned, `why` filled on failure. */
static int start(rm_worker_t *w, char *why, size_t why_len)
{
    int rc;

    if (w->mode == RM_WORKER_MODE_SUBINTERPRETERS) {
        rc = rm_worker_start(w, why, why_len);
        if (rc != -ENOTSUP)
            return rc;
        if (w->conf->mode != RM_WORKER_MODE_AUTO) {
            size_t n = strlen(why);
            snprintf(why + n, why_len - n, "; run this app with --mode gil%s",
                     RM_FREE_THREADED_BUILD ? " or --mode free-threaded"
                                            : " (or --mode auto, which falls back to gil)");
            return rc;
        }
        RM_INFO("mode auto: %s; falling back to gil mode", why);
        w->mode = RM_WORKER_MODE_GIL;
        rm_host_acquire_main(&w->host);
    }
    bool gil_before = rm_host_gil_enabled();
    rc = rm_host_load_app(w->host.st, w->conf->app_spec, why, why_len);
    if (rc < 0)
        return rc;
    w->gil_enabled = rm_host_gil_enabled();
    if (w->mode == RM_WORKER_MODE_FREE_THREADED && w->gil_enabled)
        warn_gil_on(w->conf, gil_before);
    return rm_worker_start(w, why, why_len);
}

/* Everything after the arguments; returns the exit status. */
static int run(rm_worker_t *w, const rm_worker_conf_t *conf, int argc, char **argv)
{
    char why[1024];
    int rc, status = RM_WORKER_EXIT_INTERNAL;
    rm_ctl_msg_t hello, msg;

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
    /* A stop from this side (rm_worker_request_stop) rings an event loop too. */
    rm_lane_set_loop_fd(&w->lane, conf->loop_bell_fd);
    w->owner = RM_OWNER_LANE(conf->lane);

    /* The hello says the mode planned; the ready, the mode run (auto may fall
     * back) and whether the app left the GIL on. */
    rc = rm_host_resolve_mode(conf->mode, &w->mode, why, sizeof(why));
    hello = (rm_ctl_msg_t){
        .type = RM_CTL_HELLO,
        .version = RM_CTL_VERSION,
        .pid = (int32_t)getpid(),
        .lane = conf->lane,
        .gil_enabled = rc < 0 || w->mode != RM_WORKER_MODE_FREE_THREADED,
    };
    rm_host_python_version(hello.python, sizeof(hello.python));
    snprintf(hello.mode, sizeof(hello.mode), "%s",
             rm_worker_mode_name(rc < 0 ? conf->mode : w->mode));
    if (send_simple(conf, &hello) < 0)
        goto out;
    if (rc < 0) {
        status = RM_WORKER_EXIT_USAGE;
        goto fatal;
    }

    rc = rm_host_init(&w->host, w, argc, argv, why, sizeof(why));
    if (rc < 0)
        goto fatal;
    rc = start(w, why, sizeof(why));
    if (rc < 0) {
        status = rc == -ENOENT || rc == -ENOTSUP ? RM_WORKER_EXIT_APP : RM_WORKER_EXIT_INTERNAL;
        goto fatal;
    }

    const char *mode = rm_worker_mode_name(w->mode);
    msg = (rm_ctl_msg_t){.type = RM_CTL_READY, .gil_enabled = w->gil_enabled};
    snprintf(msg.mode, sizeof(msg.mode), "%s", mode);
    if (send_simple(conf, &msg) < 0) {
        rm_worker_request_stop(w);
        rm_worker_wait(w);
        goto out;
    }
    RM_INFO("serving %s on lane %u with %u thread%s (python %s, mode %s%s)", conf->app_spec,
            conf->lane, conf->threads, conf->threads == 1 ? "" : "s", hello.python, mode,
            w->mode == RM_WORKER_MODE_FREE_THREADED && w->gil_enabled ? ", GIL enabled" : "");

    rm_worker_wait(w);
    status = RM_WORKER_EXIT_OK;
    goto out;

fatal:
    /* The supervisor prints the reason once for all workers. */
    RM_DEBUG("%s", why);
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
        adopt_fd(conf->doorbell_fd, "--doorbell-fd", why, sizeof(why)) < 0 ||
        adopt_fd(conf->loop_bell_fd, "--loop-bell-fd", why, sizeof(why)) < 0) {
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
    close(conf->loop_bell_fd);
    return status;
}
