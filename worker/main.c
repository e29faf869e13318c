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
#include <stdio.h>
#include <string.h>
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
    w->owner = RM_OWNER_LANE(conf->lane);

    hello = (rm_ctl_msg_t){
        .type = RM_CTL_HELLO,
        .version = RM_CTL_VERSION,
        .pid = (int32_t)getpid(),
        .lane = conf->lane,
        .gil_enabled = true,
    };
    rm_host_python_version(hello.python, sizeof(hello.python));
    snprintf(hello.mode, sizeof(hello.mode), "gil");
    if (send_simple(conf, &hello) < 0)
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
            conf->lane, conf->threads, conf->threads == 1 ? "" : "s", hello.python);

    rc = rm_worker_serve(w);
    status = rc < 0 ? RM_WORKER_EXIT_INTERNAL : RM_WORKER_EXIT_OK;
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
