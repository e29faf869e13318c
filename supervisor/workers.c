/*
 * workers.c - worker processes: spawn, control channel, death, respawn.
 *
 * Each worker is fork+exec'd with the region's memfd, the doorbell eventfd
 * and one end of a control socketpair inherited. PR_SET_PDEATHSIG makes the
 * kernel kill it if the supervisor dies, so no worker outlives us. Before
 * exec it sets PR_SET_NO_NEW_PRIVS and empties its capabilities
 * (privileges.h).
 *
 * An attached worker (docs/attach.md) gets the same three descriptors over
 * the control socket instead. It is not our child: its death is seen on a
 * pidfd rather than SIGCHLD, it is never respawned, and reload, scaling and
 * recycling leave it alone. Everything else (heartbeats, --timeout, checking
 * its completions, reclaiming its lane and chunks) is as for any worker.
 */
#include "ringmaster/control.h"
#include "ringmaster/log.h"
#include "ringmaster/privileges.h"
#include "ringmaster/seccomp.h"
#include "ringmaster/server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Back-off for a worker that keeps dying before it is ready: 100 ms doubling
 * up to 10 s. */
#define RESPAWN_MIN_NS 100000000ull
#define RESPAWN_MAX_NS 10000000000ull
/* Workers send a heartbeat every second from a thread that never runs Python;
 * ten missed in a row mean the whole process is stuck (stopped, deadlocked),
 * which no amount of waiting fixes. */
#define HEARTBEAT_LOST_NS 10000000000ull

static int keep_open(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    return flags < 0 ? -1 : fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
}

/* --pin: worker i runs on usable CPU i (modulo their number), the
 * supervisor's I/O thread on the next one, cpus[workers % n]: a CPU of its
 * own when there are fewer workers than CPUs, else it shares CPU 0 with worker
 * 0 (docs/configuration.md). */
static uint16_t pin_cpu_of_worker(const rm_config_t *cfg, uint32_t lane)
{
    return cfg->cpus[lane % cfg->cpu_count];
}

static uint16_t pin_cpu_of_supervisor(const rm_config_t *cfg, uint32_t workers)
{
    return cfg->cpus[workers % cfg->cpu_count];
}

static int pin_to(pid_t pid, uint16_t cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(pid, sizeof(set), &set) < 0 ? -errno : 0;
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void exec_worker(const rm_server_t *s, uint32_t lane, int ctl_fd, pid_t parent)
{
    char region_fd[16], control_fd[16], doorbell_fd[16], bell_fd[16], lane_s[16], threads[16];
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1); /* the supervisor died before we set PDEATHSIG */
    /* The app gets no capability and can never gain one (set-id binaries,
     * file caps), whoever the supervisor runs as (docs/security.md). */
    const char *what = "";
    int rc = rm_priv_lock_down_child(&what);
    if (rc < 0) {
        dprintf(2, "ringmaster: error: worker %u: cannot drop privileges: %s: %s\n", lane, what,
                strerror(-rc));
        _exit(126);
    }
    /* After no_new_privs, which an unprivileged filter needs. */
    if (s->cfg->worker_seccomp && (rc = rm_seccomp_install_worker_filter()) < 0) {
        dprintf(2,
                "ringmaster: error: worker %u: --worker-seccomp: cannot install the filter: %s\n",
                lane, strerror(-rc));
        _exit(126);
    }
    int lane_bell_fd = s->workers[lane].loop_bell_fd;
    if (keep_open(s->region.fd) || keep_open(ctl_fd) || keep_open(s->doorbell_fd) ||
        keep_open(lane_bell_fd))
        _exit(126);
    /* Before exec, so every thread the worker starts inherits the mask. */
    if (s->cfg->pin && pin_to(0, pin_cpu_of_worker(s->cfg, lane)) < 0)
        dprintf(2, "ringmaster: warning: cannot pin worker %u to CPU %u: %s\n", lane,
                pin_cpu_of_worker(s->cfg, lane), strerror(errno));
    snprintf(region_fd, sizeof(region_fd), "%d", s->region.fd);
    snprintf(control_fd, sizeof(control_fd), "%d", ctl_fd);
    snprintf(doorbell_fd, sizeof(doorbell_fd), "%d", s->doorbell_fd);
    snprintf(bell_fd, sizeof(bell_fd), "%d", lane_bell_fd);
    snprintf(lane_s, sizeof(lane_s), "%u", lane);
    snprintf(threads, sizeof(threads), "%u", s->cfg->threads);
    const char *level[] = {"error", "warn", "info", "debug"};
    char *argv[] = {(char *)s->cfg->worker_binary,
                    "--region-fd", region_fd,
                    "--control-fd", control_fd,
                    "--doorbell-fd", doorbell_fd,
                    "--loop-bell-fd", bell_fd,
                    "--lane", lane_s,
                    "--threads", threads,
                    "--mode", (char *)s->cfg->mode,
                    "--log-level", (char *)level[s->cfg->log_level],
                    "--log-format", s->cfg->log_format == RM_LOG_JSON ? "json" : "plain",
                    "--app", (char *)s->cfg->app,
                    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                    NULL, NULL, NULL, NULL, NULL, NULL};
    /* The app-interface flags (the ones the operator set, and the pool's
     * size for wsgi.multiprocess), in the NULLs left above. */
    char workers[16];
    snprintf(workers, sizeof(workers), "%u",
             s->cfg->workers_max > s->cfg->workers ? s->cfg->workers_max : s->cfg->workers);
    size_t argc = sizeof(argv) / sizeof(argv[0]) - 15;
    const char *const iface[][2] = {{"--interface", s->cfg->interface},
                                    {"--root-path", s->cfg->root_path},
                                    {"--forwarded-allow-ips", s->cfg->forwarded_allow_ips},
                                    {"--workers", workers},
                                    {"--lifespan", s->cfg->lifespan},
                                    {"--loop", s->cfg->loop},
                                    {"--max-concurrency", s->cfg->max_concurrency}};
    for (size_t i = 0; i < sizeof(iface) / sizeof(iface[0]); i++) {
        if (iface[i][1] != NULL) {
            argv[argc++] = (char *)iface[i][0];
            argv[argc++] = (char *)iface[i][1];
        }
    }
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

void rm_worker_bind_lane(rm_server_t *s, uint32_t lane)
{
    rm_worker_t *w = &s->workers[lane];
    rm_region_lane(&s->region, lane, &w->lane);
    rm_lane_set_loop_fd(&w->lane, w->loop_bell_fd);
}

/* The slot's loop bell, made when its first worker comes: only slots in use
 * hold a descriptor (there are twice --workers-max of them). */
static int make_loop_bell(rm_worker_t *w)
{
    if (w->loop_bell_fd >= 0)
        return 0;
    w->loop_bell_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return w->loop_bell_fd < 0 ? -errno : 0;
}

int rm_worker_spawn(rm_server_t *s, uint32_t lane)
{
    rm_worker_t *w = &s->workers[lane];
    int sv[2];
    int rc = make_loop_bell(w);
    if (rc < 0)
        return rc;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    rm_region_lane_reset(&s->region, lane);
    rm_worker_bind_lane(s, lane);
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
    w->spawned_ns = rm_now_ns();
    w->last_heartbeat_ns = w->spawned_ns;
    w->app_gen = s->app_gen;
    w->retiring = false;
    w->stop_sent = false;
    w->exit_cause = RM_RESTART_CRASH;
    w->served = 0;
    w->served_limit = 0;
    w->upgrade_noted = false;
    if (s->cfg->max_requests) {
        /* Jitter spreads the recycling of workers started together. */
        uint64_t j = s->cfg->max_requests_jitter;
        w->served_limit = s->cfg->max_requests + (j ? (uint64_t)random() % (j + 1) : 0);
    }
    w->python[0] = w->mode[0] = '\0';
    w->attached = false;
    w->pidfd = -1;
    atomic_store_explicit(&w->lane.shared->worker_pid, pid, memory_order_relaxed);
    atomic_store_explicit(&w->lane.shared->state, RM_LANE_ACTIVE, memory_order_release);
    arm_ctl(s, w);
    RM_DEBUG("worker %u spawned (pid %d)", lane, (int)pid);
    return 0;
}

int rm_workers_start(rm_server_t *s)
{
    if (s->cfg->pin) {
        /* The calling thread is the I/O thread: the event loop runs on it. */
        uint16_t cpu = pin_cpu_of_supervisor(s->cfg, s->target_workers);
        int rc = pin_to(0, cpu);
        if (rc < 0)
            RM_WARN("--pin: cannot pin the I/O thread to CPU %u: %s", cpu, strerror(-rc));
        else
            RM_INFO("--pin: I/O thread on CPU %u, worker i on usable CPU i mod %u", cpu,
                    s->cfg->cpu_count);
    }
    for (uint32_t i = 0; i < s->target_workers; i++) {
        int rc = rm_worker_spawn(s, i);
        if (rc) {
            RM_ERROR("cannot spawn worker %u: %s", i, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

static void worker_gone(rm_server_t *s, rm_worker_t *w, const char *why, bool by_signal);

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
            /* The mode it runs, which auto may have changed since the hello. */
            bool gil_back = false;
            if (m->mode[0] != '\0') {
                snprintf(w->mode, sizeof(w->mode), "%s", m->mode);
                gil_back = m->gil_enabled && strcmp(m->mode, "free-threaded") == 0;
            }
            w->state = RM_WORKER_READY;
            w->was_ready = true;
            s->quick_deaths = 0;
            s->any_ready = true;
            RM_INFO("worker %u ready (pid %d, Python %s, mode %s%s)", w->lane.index, (int)w->pid,
                    w->python[0] ? w->python : "?", w->mode[0] ? w->mode : "?",
                    gil_back ? ", but with the GIL on" : "");
            rm_dispatch_pending(s);
        }
        break;
    case RM_CTL_FATAL:
        if (!s->any_ready && !w->attached) {
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
        /* From the worker's control thread, which never touches Python: it
         * proves the process runs, whatever its interpreter is doing. */
        w->last_heartbeat_ns = rm_now_ns();
        w->heartbeat_served = m->served;
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
        /* End of stream: the process is exiting; SIGCHLD finishes the job.
         * An attached worker closes its channel after unmapping the region
         * (or dies): either way it has detached, and its lane is taken back
         * now; the process may well live on. */
        close(w->ctl_fd);
        w->ctl_fd = -1;
        if (w->attached) {
            struct pollfd p = {.fd = w->pidfd, .events = POLLIN};
            bool dead = w->pidfd >= 0 && poll(&p, 1, 0) == 1;
            worker_gone(s, w,
                        w->cut_off ? "cut off and killed"
                        : dead     ? "its process ended"
                                   : "detached (closed its control channel)",
                        w->cut_off);
        }
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
            w->exit_cause = RM_RESTART_PROTOCOL;
            rm_worker_kill(w);
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
        w->exit_cause = RM_RESTART_PROTOCOL;
        rm_worker_kill(w);
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

/* `why`: how it ended; `by_signal`: killed rather than exited by itself. */
static void worker_gone(rm_server_t *s, rm_worker_t *w, const char *why, bool by_signal)
{
    uint32_t lane = w->lane.index;
    bool attached = w->attached;
    bool expected = w->state == RM_WORKER_STOPPING && !w->cut_off;
    if (s->exit_code != 0)
        RM_DEBUG("worker %u (pid %d) exited: %s", lane, (int)w->pid, why);
    else if (expected)
        RM_INFO("worker %u (pid %d) exited: %s", lane, (int)w->pid, why);
    else
        RM_WARN("worker %u (pid %d) died: %s", lane, (int)w->pid, why);

    bool was_ready_now = w->state == RM_WORKER_READY || w->state == RM_WORKER_STOPPING;
    unsigned w_cause = w->exit_cause < RM_RESTART_CAUSES ? w->exit_cause : RM_RESTART_CRASH;
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
    if (w->pidfd >= 0) {
        if (w->pidfd_armed) {
            struct io_uring_sqe *sqe = rm_server_sqe(s);
            io_uring_prep_poll_remove(sqe, rm_user_data(RM_OP_PIDFD, w->gen, lane));
            io_uring_sqe_set_data64(sqe, rm_user_data(RM_OP_CANCEL, 0, 0));
            w->pidfd_armed = false;
        }
        close(w->pidfd);
        w->pidfd = -1;
    }
    w->attached = false;
    w->pid = 0;
    w->state = RM_WORKER_NONE;
    w->gen = (w->gen + 1) & 0xffffff;
    atomic_store_explicit(&w->lane.shared->state, RM_LANE_IDLE, memory_order_release);
    atomic_store_explicit(&w->lane.shared->worker_pid, 0, memory_order_relaxed);

    if (s->stopping || attached)
        return; /* an attached worker is not ours to replace */
    rm_stat_add(&s->region.stats->restarts[w_cause], 1);
    if (!s->any_ready && !by_signal) {
        /* Exited by itself during start-up before any worker was ready: the app
         * cannot run. (A worker killed from outside is simply replaced.) */
        if (s->exit_code == 0)
            fprintf(stderr, "ringmaster: error: worker exited during start-up (%s)\n", why);
        s->exit_code = 1;
        s->stopping = true;
        s->fast_stop = true;
        return;
    }
    if (!was_ready_now) {
        /* Dying before ready again and again (an import that fails after a
         * reload, a crash at start-up): slow the respawns down. */
        s->quick_deaths++;
        uint64_t delay = RESPAWN_MIN_NS << (s->quick_deaths < 7 ? s->quick_deaths - 1 : 6);
        if (delay > RESPAWN_MAX_NS)
            delay = RESPAWN_MAX_NS;
        s->spawn_not_before_ns = rm_now_ns() + delay;
        RM_WARN("worker %u failed before it was ready; next start in %llu ms", lane,
                (unsigned long long)(delay / 1000000));
    }
    /* rm_workers_maintain starts a replacement if the pool is short. */
}

void rm_workers_reap(rm_server_t *s)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (uint32_t i = 0; i < s->worker_count; i++) {
            if (s->workers[i].pid == pid && !s->workers[i].attached) {
                char why[96];
                describe_exit(status, why, sizeof(why));
                worker_gone(s, &s->workers[i], why, WIFSIGNALED(status));
                break;
            }
        }
    }
}

/* A pool worker that is current. Attached workers are outside the pool. */
static bool fresh(const rm_server_t *s, const rm_worker_t *w)
{
    return !w->retiring && w->app_gen == s->app_gen && !w->attached;
}

uint64_t rm_worker_rss_bytes(pid_t pid)
{
    char path[64];
    unsigned long size, resident;
    snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return n == 2 ? (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

static void retire(rm_worker_t *w, enum rm_restart_cause cause, const char *why)
{
    w->retiring = true;
    w->exit_cause = (uint8_t)cause;
    RM_INFO("worker %u (pid %d) recycled: %s", w->lane.index, (int)w->pid, why);
}

/* Stop handing `w` requests; it is told to exit once it has answered them. */
static void drain(rm_worker_t *w)
{
    w->state = RM_WORKER_STOPPING;
    w->stop_sent = false;
    RM_DEBUG("worker %u (pid %d) draining", w->lane.index, (int)w->pid);
}

static void send_stop(rm_worker_t *w)
{
    rm_ctl_msg_t stop = {.type = RM_CTL_STOP};
    atomic_store_explicit(&w->lane.shared->state, RM_LANE_STOPPING, memory_order_release);
    rm_lane_wake_all(&w->lane);
    if (w->ctl_fd >= 0)
        rm_ctl_send(w->ctl_fd, &stop);
    w->stop_sent = true;
}

/*
 * Autoscaling, like NGINX Unit's processes {max, spare, idle_timeout}: once a
 * second, if requests wait in the queue or every ready worker has some in
 * hand, for two samples in a row, grow by one (up to --workers-max). When at
 * least one worker has had nothing to do for --idle-timeout, shrink by one
 * (down to --workers-min).
 */
static void autoscale(rm_server_t *s, uint64_t now)
{
    const rm_config_t *cfg = s->cfg;
    if (cfg->workers_min == cfg->workers_max || cfg->attach_only ||
        now < s->next_scale_check_ns)
        return;
    s->next_scale_check_ns = now + 1000000000ull;
    uint32_t ready = 0, busy = 0;
    for (uint32_t i = 0; i < s->worker_count; i++) {
        const rm_worker_t *w = &s->workers[i];
        if (w->state == RM_WORKER_READY && !w->attached) {
            ready++;
            busy += w->outstanding > 0;
        }
    }
    if (!s->last_busy_ns)
        s->last_busy_ns = now;
    bool saturated = s->queued > 0 || (ready > 0 && busy == ready);
    if (saturated || busy + 1 >= s->target_workers)
        s->last_busy_ns = now; /* no spare worker to give back */
    s->busy_samples = saturated ? s->busy_samples + 1 : 0;
    if (s->busy_samples >= 2 && s->target_workers < cfg->workers_max) {
        RM_INFO("load: %u of %u workers busy, %u request(s) queued; growing to %u", busy, ready,
                s->queued, s->target_workers + 1);
        s->target_workers++;
        s->busy_samples = 0;
    } else if (now - s->last_busy_ns >= (uint64_t)cfg->idle_timeout_ms * 1000000ull &&
               s->target_workers > cfg->workers_min) {
        RM_INFO("idle for %u ms: shrinking to %u worker(s)", cfg->idle_timeout_ms,
                s->target_workers - 1);
        s->target_workers--;
        s->last_busy_ns = now;
    }
}

/*
 * Keep `target_workers` fresh workers (of the current app generation, not
 * retiring) serving. Called every loop iteration; O(slots).
 *
 * Replacing a worker (recycling, reload, a crash) never lowers capacity: the
 * replacement starts in a free slot while the old one keeps serving, and an
 * old worker is drained only once enough fresh ones are ready. A drained
 * worker finishes what it was handed, then gets "stop".
 */
void rm_workers_maintain(rm_server_t *s, uint64_t now)
{
    const rm_config_t *cfg = s->cfg;
    uint32_t starting = 0, ready_fresh = 0;
    bool check_rss = cfg->max_rss_mib && now >= s->next_rss_check_ns;
    if (check_rss)
        s->next_rss_check_ns = now + 1000000000ull;

    for (uint32_t i = 0; i < s->worker_count; i++) {
        rm_worker_t *w = &s->workers[i];
        if (w->state == RM_WORKER_STOPPING && !w->stop_sent && w->outstanding == 0 &&
            w->pid > 0)
            send_stop(w);
        if ((w->state == RM_WORKER_READY || w->state == RM_WORKER_STOPPING) && w->pid > 0 &&
            now > w->last_heartbeat_ns + HEARTBEAT_LOST_NS) {
            RM_WARN("worker %u (pid %d) killed: no heartbeat for %llu s (the process is wedged, "
                    "not just busy)",
                    w->lane.index, (int)w->pid,
                    (unsigned long long)((now - w->last_heartbeat_ns) / 1000000000ull));
            w->last_heartbeat_ns = now; /* one kill */
            w->exit_cause = RM_RESTART_HEARTBEAT;
            rm_worker_kill(w);
            continue;
        }
        if (w->state != RM_WORKER_READY || !fresh(s, w))
            continue;
        char why[64];
        if (w->served_limit && w->served >= w->served_limit) {
            snprintf(why, sizeof(why), "served %llu requests", (unsigned long long)w->served);
            retire(w, RM_RESTART_MAX_REQUESTS, why);
            continue;
        }
        uint64_t rss;
        if (check_rss && (rss = rm_worker_rss_bytes(w->pid) >> 20) > cfg->max_rss_mib) {
            snprintf(why, sizeof(why), "RSS %llu MiB over --max-rss", (unsigned long long)rss);
            retire(w, RM_RESTART_MAX_RSS, why);
            continue;
        }
        ready_fresh++;
    }
    for (uint32_t i = 0; i < s->worker_count; i++) {
        rm_worker_t *w = &s->workers[i];
        if (w->state == RM_WORKER_STARTING && fresh(s, w))
            starting++;
    }
    if (s->stopping)
        return;
    autoscale(s, now);

    /* Too many fresh workers (SIGTTOU, idle): retire the extras, newest first. */
    for (uint32_t i = s->worker_count; i > 0 && ready_fresh + starting > s->target_workers; i--) {
        rm_worker_t *w = &s->workers[i - 1];
        if ((w->state == RM_WORKER_READY || w->state == RM_WORKER_STARTING) && fresh(s, w)) {
            if (w->state == RM_WORKER_READY)
                ready_fresh--;
            else
                starting--;
            retire(w, RM_RESTART_SCALE_DOWN, "the pool shrank");
        }
    }
    /* Too few: start more in free slots, respecting the crash back-off. */
    for (uint32_t i = 0; i < s->worker_count && ready_fresh + starting < s->target_workers &&
                         now >= s->spawn_not_before_ns;
         i++) {
        rm_worker_t *w = &s->workers[i];
        if (w->state != RM_WORKER_NONE || w->pid > 0)
            continue;
        int rc = rm_worker_spawn(s, i);
        if (rc) {
            RM_ERROR("cannot start a worker: %s", strerror(-rc));
            s->spawn_not_before_ns = now + RESPAWN_MAX_NS;
            break;
        }
        starting++;
    }
    /* Old and retiring workers keep serving until fresh ones can take over. */
    uint32_t keep = s->target_workers > ready_fresh ? s->target_workers - ready_fresh : 0;
    for (uint32_t i = 0; i < s->worker_count; i++) {
        rm_worker_t *w = &s->workers[i];
        if (fresh(s, w) || w->attached ||
            (w->state != RM_WORKER_READY && w->state != RM_WORKER_STARTING))
            continue;
        if (w->state == RM_WORKER_READY && keep > 0) {
            keep--;
            continue;
        }
        if (!w->retiring)
            w->exit_cause = RM_RESTART_RELOAD; /* old app generation */
        drain(w);
    }
}

void rm_workers_reload(rm_server_t *s)
{
    s->app_gen++;
    RM_INFO("reloading: starting %u fresh worker(s); the old ones drain once they are ready",
            s->target_workers);
}

void rm_workers_scale(rm_server_t *s, int delta)
{
    uint32_t max = s->worker_count / 2 - 1;
    if (s->cfg->attach_only) {
        RM_WARN("%s ignored: --attach-only has no pool of embedded workers",
                delta > 0 ? "SIGTTIN" : "SIGTTOU");
        return;
    }
    uint32_t target = s->target_workers;
    if (delta > 0 && target < max)
        target++;
    else if (delta < 0 && target > 1)
        target--;
    if (target == s->target_workers) {
        RM_WARN("%s ignored: already at %u worker(s) (range 1..%u)",
                delta > 0 ? "SIGTTIN" : "SIGTTOU", target, max);
        return;
    }
    RM_INFO("scaling from %u to %u worker(s)", s->target_workers, target);
    s->target_workers = target;
}

void rm_workers_stop_all(rm_server_t *s, bool fast)
{
    rm_ctl_msg_t stop = {.type = RM_CTL_STOP};
    for (uint32_t i = 0; i < s->worker_count; i++) {
        rm_worker_t *w = &s->workers[i];
        if (w->state == RM_WORKER_NONE || (w->state == RM_WORKER_STOPPING && w->stop_sent))
            continue;
        w->state = RM_WORKER_STOPPING;
        atomic_store_explicit(&w->lane.shared->state, RM_LANE_STOPPING, memory_order_release);
        rm_lane_wake_all(&w->lane);
        if (w->ctl_fd >= 0)
            rm_ctl_send(w->ctl_fd, &stop);
        if (fast && w->pid > 0)
            rm_worker_signal(w, SIGTERM);
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
            rm_worker_kill(&s->workers[i]);
}

void rm_worker_signal(rm_worker_t *w, int sig)
{
    if (w->pid <= 0)
        return;
    /* An attached process is not our child: between its exit and our noticing,
     * its pid could be someone else's. Its pidfd cannot. */
    if (w->attached && w->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, w->pidfd, sig, NULL, 0);
    else if (!w->attached)
        kill(w->pid, sig);
}

void rm_worker_kill(rm_worker_t *w)
{
    rm_worker_signal(w, SIGKILL);
}

const char *rm_worker_state_name(const rm_worker_t *w)
{
    switch (w->state) {
    case RM_WORKER_STARTING:
        return "starting";
    case RM_WORKER_READY:
        return w->retiring ? "retiring" : "ready";
    case RM_WORKER_STOPPING:
        return "stopping";
    default:
        return "none";
    }
}

int rm_workers_scale_to(rm_server_t *s, uint32_t target, char *why, size_t why_len)
{
    uint32_t max = s->worker_count / 2 - 1;
    if (s->cfg->attach_only) {
        snprintf(why, why_len, "--attach-only: there is no pool of embedded workers to scale");
        return -ENOTSUP;
    }
    if (target < 1 || target > max) {
        snprintf(why, why_len, "cannot scale to %u worker(s): the range is 1..%u", target, max);
        return -ERANGE;
    }
    if (target != s->target_workers)
        RM_INFO("ctl: scaling from %u to %u worker(s)", s->target_workers, target);
    s->target_workers = target;
    return 0;
}

static void arm_pidfd(rm_server_t *s, rm_worker_t *w)
{
    struct io_uring_sqe *sqe = rm_server_sqe(s);
    io_uring_prep_poll_add(sqe, w->pidfd, POLLIN);
    io_uring_sqe_set_data64(sqe, rm_user_data(RM_OP_PIDFD, w->gen, w->lane.index));
    w->pidfd_armed = true;
}

int rm_worker_attach(rm_server_t *s, const rm_control_peer_t *peer, uint32_t *lane,
                     int fds[RM_CTLP_ATTACH_FDS])
{
    rm_worker_t *w = NULL;
    /* The highest free slot: the pool spawns from the lowest. */
    for (uint32_t i = s->worker_count; i > 0 && !w; i--)
        if (s->workers[i - 1].state == RM_WORKER_NONE && s->workers[i - 1].pid <= 0)
            w = &s->workers[i - 1];
    if (!w)
        return -EBUSY;
    int rc = make_loop_bell(w);
    if (rc < 0)
        return rc;
    int pidfd = (int)syscall(SYS_pidfd_open, peer->pid, 0);
    if (pidfd < 0)
        return -errno;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        int err = errno;
        close(pidfd);
        return -err;
    }
    uint32_t idx = (uint32_t)(w - s->workers);
    rm_region_lane_reset(&s->region, idx);
    rm_worker_bind_lane(s, idx);
    w->pid = peer->pid;
    w->pidfd = pidfd;
    w->attached = true;
    w->ctl_fd = sv[0];
    w->gen = (w->gen + 1) & 0xffffff;
    w->state = RM_WORKER_STARTING;
    w->cut_off = w->retiring = w->stop_sent = false;
    w->outstanding = 0;
    w->ctl_len = 0;
    w->spawned_ns = w->last_heartbeat_ns = rm_now_ns();
    w->app_gen = s->app_gen;
    w->served = w->served_limit = 0;
    w->upgrade_noted = false;
    w->exit_cause = RM_RESTART_CRASH; /* unless we ask it to leave */
    w->python[0] = w->mode[0] = '\0';
    atomic_store_explicit(&w->lane.shared->worker_pid, peer->pid, memory_order_relaxed);
    atomic_store_explicit(&w->lane.shared->state, RM_LANE_ACTIVE, memory_order_release);
    arm_ctl(s, w);
    arm_pidfd(s, w);
    fds[0] = s->region.fd;
    fds[1] = s->doorbell_fd;
    fds[2] = sv[1];
    fds[3] = w->loop_bell_fd;
    *lane = idx;
    return 0;
}

void rm_worker_attach_undo(rm_server_t *s, uint32_t lane)
{
    worker_gone(s, &s->workers[lane], "its descriptors could not be sent", false);
}

void rm_workers_on_pidfd(rm_server_t *s, uint32_t lane, uint32_t gen, int res)
{
    if (lane >= s->worker_count)
        return;
    rm_worker_t *w = &s->workers[lane];
    if (w->gen != gen || !w->attached)
        return; /* a previous attachment's poll */
    w->pidfd_armed = false;
    if (res < 0 && res != -ECANCELED) {
        RM_WARN("worker %u: pidfd poll: %s", lane, strerror(-res));
    }
    /* POLLIN on a pidfd: the process has exited. We are not its parent, so
     * its status is not ours to read. */
    worker_gone(s, w, w->cut_off ? "its process was killed" : "its process ended", w->cut_off);
}
