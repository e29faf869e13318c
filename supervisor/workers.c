/*
 * workers.c - worker processes: spawn, control channel, death, respawn.
 *
 * Each worker is fork+exec'd with the region's memfd, the doorbell eventfd
 * and one end of a control socketpair inherited. PR_SET_PDEATHSIG makes the
 * kernel kill it if the supervisor dies, so no worker outlives us.
 */
#include "ringmaster/control.h"
#include "ringmaster/log.h"
#include "ringmaster/server.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* Back-off for a worker that keeps dying before it is ready: 100 ms doubling
 * up to 10 s. */
#define RESPAWN_MIN_NS 100000000ull
#define RESPAWN_MAX_NS 10000000000ull

static int keep_open(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    return flags < 0 ? -1 : fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void exec_worker(const rm_server_t *s, uint32_t lane, int ctl_fd, pid_t parent)
{
    char region_fd[16], control_fd[16], doorbell_fd[16], lane_s[16], threads[16];
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1); /* the supervisor died before we set PDEATHSIG */
    if (keep_open(s->region.fd) || keep_open(ctl_fd) || keep_open(s->doorbell_fd))
        _exit(126);
    snprintf(region_fd, sizeof(region_fd), "%d", s->region.fd);
    snprintf(control_fd, sizeof(control_fd), "%d", ctl_fd);
    snprintf(doorbell_fd, sizeof(doorbell_fd), "%d", s->doorbell_fd);
    snprintf(lane_s, sizeof(lane_s), "%u", lane);
    snprintf(threads, sizeof(threads), "%u", s->cfg->threads);
    const char *level[] = {"error", "warn", "info", "debug"};
    char *argv[] = {(char *)s->cfg->worker_binary,
                    "--region-fd", region_fd,
                    "--control-fd", control_fd,
                    "--doorbell-fd", doorbell_fd,
                    "--lane", lane_s,
                    "--threads", threads,
                    "--log-level", (char *)level[s->cfg->log_level],
                    "--log-format", s->cfg->log_format == RM_LOG_JSON ? "json" : "plain",
                    "--app", (char *)s->cfg->app,
                    NULL};
    execv(s->cfg->worker_binary, argv);
    dprintf(2, "ringmaster: error: cannot run worker binary %s: %s\n", s->cfg->worker_binary,
            strerror(errno));
    _exit(127);
}

static void arm_ctl(rm_server_t *s, rm_worker_t *w)
{
    struct io_uring_sqe *sqe = rm_server_sqe(s);
    io_uring_prep_recv(sqe, w->ctl_fd, w->ctl_buf + w->ctl_len, sizeof(w->ctl_buf) - w->ctl_len,
                       0);
    io_uring_sqe_set_data64(sqe, rm_user_data(RM_OP_CTL_RECV, w->gen, w->lane.index));
    w->ctl_armed = true;
}

int rm_worker_spawn(rm_server_t *s, uint32_t lane)
{
    rm_worker_t *w = &s->workers[lane];
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    rm_region_lane_reset(&s->region, lane);
    rm_region_lane(&s->region, lane, &w->lane);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(sv[0]);
        close(sv[1]);
        return -err;
    }
    if (pid == 0)
        exec_worker(s, lane, sv[1], parent);
    close(sv[1]);
    w->pid = pid;
    w->ctl_fd = sv[0];
    w->gen = (w->gen + 1) & 0xffffff;
    w->state = RM_WORKER_STARTING;
    w->cut_off = false;
    w->outstanding = 0;
    w->ctl_len = 0;
    w->respawn_at_ns = 0;
    w->spawned_ns = rm_now_ns();
    w->python[0] = w->mode[0] = '\0';
    atomic_store_explicit(&w->lane.shared->worker_pid, pid, memory_order_relaxed);
    atomic_store_explicit(&w->lane.shared->state, RM_LANE_ACTIVE, memory_order_release);
    arm_ctl(s, w);
    RM_DEBUG("worker %u spawned (pid %d)", lane, (int)pid);
    return 0;
}

int rm_workers_start(rm_server_t *s)
{
    for (uint32_t i = 0; i < s->worker_count; i++) {
        s->workers[i].ctl_fd = -1;
        int rc = rm_worker_spawn(s, i);
        if (rc) {
            RM_ERROR("cannot spawn worker %u: %s", i, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

static void on_message(rm_server_t *s, rm_worker_t *w, const rm_ctl_msg_t *m)
{
    switch (m->type) {
    case RM_CTL_HELLO:
        snprintf(w->python, sizeof(w->python), "%s", m->python);
        snprintf(w->mode, sizeof(w->mode), "%s", m->mode);
        if (m->pid != w->pid || m->lane != w->lane.index)
            RM_WARN("worker %u says it is pid %d on lane %u", w->lane.index, (int)m->pid,
                    m->lane);
        break;
    case RM_CTL_READY:
        if (w->state == RM_WORKER_STARTING) {
            w->state = RM_WORKER_READY;
            w->was_ready = true;
            w->quick_deaths = 0;
            s->any_ready = true;
            RM_INFO("worker %u ready (pid %d, Python %s, mode %s)", w->lane.index, (int)w->pid,
                    w->python[0] ? w->python : "?", w->mode[0] ? w->mode : "?");
            rm_dispatch_pending(s);
        }
        break;
    case RM_CTL_FATAL:
        if (!s->any_ready) {
            /* Start-up failure: say it once and stop, rather than respawn forever. */
            if (s->exit_code == 0)
                fprintf(stderr, "ringmaster: error: %s\n", m->text);
            s->exit_code = 1;
            s->stopping = true;
            s->fast_stop = true;
        } else {
            RM_ERROR("worker %u (pid %d) failed: %s", w->lane.index, (int)w->pid, m->text);
        }
        break;
    case RM_CTL_HEARTBEAT:
        w->served = m->served;
        break;
    default:
        RM_WARN("worker %u sent an unexpected %s message", w->lane.index,
                rm_ctl_type_name(m->type));
        break;
    }
}

void rm_workers_on_ctl(rm_server_t *s, uint32_t lane, uint32_t gen, int res)
{
    if (lane >= s->worker_count)
        return;
    rm_worker_t *w = &s->workers[lane];
    if (w->gen != gen || w->ctl_fd < 0)
        return; /* a previous incarnation's read */
    w->ctl_armed = false;
    if (res <= 0) {
        /* End of stream: the process is exiting; SIGCHLD finishes the job. */
        close(w->ctl_fd);
        w->ctl_fd = -1;
        return;
    }
    w->ctl_len += (uint32_t)res;
    size_t pos = 0;
    for (;;) {
        rm_ctl_msg_t m;
        ssize_t n = rm_ctl_decode(w->ctl_buf + pos, w->ctl_len - pos, &m);
        if (n == 0)
            break;
        if (n < 0) {
            RM_ERROR("worker %u sent a malformed control frame; killing it", lane);
            kill(w->pid, SIGKILL);
            close(w->ctl_fd);
            w->ctl_fd = -1;
            return;
        }
        pos += (size_t)n;
        on_message(s, w, &m);
    }
    memmove(w->ctl_buf, w->ctl_buf + pos, w->ctl_len - pos);
    w->ctl_len -= (uint32_t)pos;
    if (w->ctl_len == sizeof(w->ctl_buf)) {
        RM_ERROR("worker %u sent an oversized control frame; killing it", lane);
        kill(w->pid, SIGKILL);
        return;
    }
    arm_ctl(s, w);
}

static void describe_exit(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "status 0x%x", status);
}

static void worker_gone(rm_server_t *s, rm_worker_t *w, int status)
{
    uint32_t lane = w->lane.index;
    char why[96];
    describe_exit(status, why, sizeof(why));
    bool expected = w->state == RM_WORKER_STOPPING && !w->cut_off;
    if (s->exit_code != 0)
        RM_DEBUG("worker %u (pid %d) exited: %s", lane, (int)w->pid, why);
    else if (expected)
        RM_INFO("worker %u (pid %d) exited: %s", lane, (int)w->pid, why);
    else
        RM_WARN("worker %u (pid %d) died: %s", lane, (int)w->pid, why);

    /* Take what it finished, answer what it had started, then reclaim. */
    if (!w->cut_off)
        rm_dispatch_drain(s);
    w->cut_off = false;
    rm_dispatch_lane_lost(s, lane);
    uint32_t freed = rm_chunk_pool_reclaim(&s->region.pool, RM_OWNER_LANE(lane));
    if (freed)
        RM_DEBUG("reclaimed %u chunks of worker %u", freed, lane);
    if (w->ctl_fd >= 0) {
        close(w->ctl_fd);
        w->ctl_fd = -1;
    }
    bool was_ready_now = w->state == RM_WORKER_READY || w->state == RM_WORKER_STOPPING;
    w->pid = 0;
    w->state = RM_WORKER_NONE;
    w->gen = (w->gen + 1) & 0xffffff;
    atomic_store_explicit(&w->lane.shared->state, RM_LANE_IDLE, memory_order_release);
    atomic_store_explicit(&w->lane.shared->worker_pid, 0, memory_order_relaxed);

    if (s->stopping)
        return;
    if (!s->any_ready && !WIFSIGNALED(status)) {
        /* Exited by itself during start-up before any worker was ready: the app
         * cannot run. (A worker killed from outside is simply replaced.) */
        if (s->exit_code == 0)
            fprintf(stderr, "ringmaster: error: worker exited during start-up (%s)\n", why);
        s->exit_code = 1;
        s->stopping = true;
        s->fast_stop = true;
        return;
    }
    uint64_t delay = 0;
    if (!was_ready_now) {
        w->quick_deaths++;
        delay = RESPAWN_MIN_NS << (w->quick_deaths < 7 ? w->quick_deaths - 1 : 6);
        if (delay > RESPAWN_MAX_NS)
            delay = RESPAWN_MAX_NS;
        RM_WARN("worker %u keeps failing before it is ready; respawning in %llu ms", lane,
                (unsigned long long)(delay / 1000000));
    }
    w->respawn_at_ns = rm_now_ns() + delay;
    if (w->respawn_at_ns == 0)
        w->respawn_at_ns = 1;
}

void rm_workers_reap(rm_server_t *s)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (uint32_t i = 0; i < s->worker_count; i++) {
            if (s->workers[i].pid == pid) {
                worker_gone(s, &s->workers[i], status);
                break;
            }
        }
    }
}

void rm_workers_respawn_due(rm_server_t *s, uint64_t now)
{
    for (uint32_t i = 0; i < s->worker_count; i++) {
        rm_worker_t *w = &s->workers[i];
        if (w->state != RM_WORKER_NONE || !w->respawn_at_ns || now < w->respawn_at_ns)
            continue;
        int rc = rm_worker_spawn(s, i);
        if (rc) {
            RM_ERROR("cannot respawn worker %u: %s", i, strerror(-rc));
            w->respawn_at_ns = now + RESPAWN_MAX_NS;
        }
    }
}

void rm_workers_stop_all(rm_server_t *s, bool fast)
{
    rm_ctl_msg_t stop = {.type = RM_CTL_STOP};
    for (uint32_t i = 0; i < s->worker_count; i++) {
        rm_worker_t *w = &s->workers[i];
        w->respawn_at_ns = 0;
        if (w->state == RM_WORKER_NONE || w->state == RM_WORKER_STOPPING)
            continue;
        w->state = RM_WORKER_STOPPING;
        atomic_store_explicit(&w->lane.shared->state, RM_LANE_STOPPING, memory_order_release);
        rm_lane_wake_all(&w->lane);
        if (w->ctl_fd >= 0)
            rm_ctl_send(w->ctl_fd, &stop);
        if (fast && w->pid > 0)
            kill(w->pid, SIGTERM);
    }
}

bool rm_workers_all_exited(const rm_server_t *s)
{
    for (uint32_t i = 0; i < s->worker_count; i++)
        if (s->workers[i].pid > 0)
            return false;
    return true;
}

void rm_workers_kill_all(rm_server_t *s)
{
    for (uint32_t i = 0; i < s->worker_count; i++)
        if (s->workers[i].pid > 0)
            kill(s->workers[i].pid, SIGKILL);
}
