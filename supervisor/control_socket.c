/*
 * control_socket.c - the control socket inside the supervisor's io_uring loop.
 *
 * Kernel features: none beyond server.c's (plain accept, recv and send SQEs).
 *
 * Per client one operation is in flight at a time: a receive until a whole
 * request frame is in, then the response goes out (straight away when the
 * socket takes it, else as a SEND), then the next receive. The socket's
 * peers are trusted to be the operator (SO_PEERCRED), but not to be well
 * behaved: a malformed or oversized frame closes that client, nothing else,
 * and so does silence: each client has a deadline (a request within 1 s, an
 * answer read within 5 s, 30 s idle between requests), and when every slot
 * is taken a new client pushes out the one that waited longest unanswered.
 */
#include "ringmaster/control_socket.h"
#include "ringmaster/control.h"
#include "ringmaster/control_proto.h"
#include "ringmaster/log.h"
#include "ringmaster/server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef RINGMASTER_VERSION
#define RINGMASTER_VERSION "dev"
#endif

static uint64_t ud(enum rm_op op, const rm_control_client_t *c, uint32_t idx)
{
    return rm_user_data(op, c ? c->gen : 0, idx);
}

/* ---- setup ------------------------------------------------------------- */

/* The default directory: `owner`'s (the uid we run as after --user), 0700.
 * An existing one must be theirs and not writable by others, or someone
 * could swap the socket under us. One we create as root for --user is given
 * to that user. */
static int make_dir(const char *dir, uid_t owner, gid_t group)
{
    struct stat st;
    bool made = mkdir(dir, 0700) == 0;
    if (!made && errno != EEXIST)
        return -errno;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ELOOP || errno == ENOTDIR ? -EPERM : -errno;
    int rc = 0;
    if (made && geteuid() != owner && fchown(fd, owner, group) < 0)
        rc = -errno;
    else if (fstat(fd, &st) < 0)
        rc = -errno;
    else if (!S_ISDIR(st.st_mode) || st.st_uid != owner || (st.st_mode & 0022))
        rc = -EPERM;
    close(fd);
    return rc;
}

/* Whether anyone accepts connections on the socket at `path`. */
static bool accepting(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    bool live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return live;
}

/* A socket file left by a supervisor that died can go; a live one cannot.
 * Right after a kill -9 the dead supervisor's listening socket lingers for a
 * moment (the kernel tears its io_uring down asynchronously, and a pending
 * accept holds the socket), so a connect that succeeds is retried for up to
 * a second before the socket is taken to be live. */
static int clear_stale(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    for (int tries = 0; accepting(path); tries++) {
        if (tries == 20)
            return -EADDRINUSE;
        usleep(50000);
    }
    return unlink(path) < 0 ? -errno : 0;
}

/* Sockets named PID.sock in the default directory whose supervisor died
 * (kill -9, a crash) before it could remove them: the pid is gone and nobody
 * accepts on the socket, which together prove the file is garbage (a live
 * supervisor in another pid namespace still accepts). */
static void sweep_dead(const char *dir, const char *mine)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t digits = strspn(e->d_name, "0123456789");
        if (digits == 0 || digits > 10 || strcmp(e->d_name + digits, ".sock") != 0)
            continue;
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= sizeof(path) ||
            strcmp(path, mine) == 0)
            continue;
        long pid = strtol(e->d_name, NULL, 10);
        if (pid <= 0 || pid > 0x3fffffff || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        if (clear_stale(path) == 0)
            RM_INFO("removed the control socket %s left by supervisor %ld, which is gone", path,
                    pid);
    }
    closedir(d);
}

int rm_control_open(rm_server_t *s)
{
    const rm_config_t *cfg = s->cfg;
    rm_control_socket_t *cs = &s->control;
    cs->listen_fd = -1;
    for (int i = 0; i < RM_CONTROL_CLIENTS; i++)
        cs->clients[i].fd = -1;
    if (!cfg->control_enabled)
        return 0;
    /* With --user the socket is bound as root but served as that user: it
     * is the owner who may use it (and attach). */
    uid_t owner = cfg->run_as.enabled ? cfg->run_as.uid : geteuid();
    gid_t owner_gid = cfg->run_as.enabled ? cfg->run_as.gid : getegid();
    cs->policy = (rm_control_policy_t){
        .owner = owner, .has_group = cfg->control_has_group, .group = cfg->control_group};
    snprintf(cs->path, sizeof(cs->path), "%s", cfg->control_path);

    const char *what = "";
    int rc = 0;
    if (cfg->control_path_default) {
        char dir[sizeof(cs->path)];
        snprintf(dir, sizeof(dir), "%s", cs->path);
        *strrchr(dir, '/') = '\0';
        if ((rc = make_dir(dir, owner, owner_gid)) < 0) {
            fprintf(stderr,
                    "ringmaster: error: control socket directory %s: %s%s; give --control PATH "
                    "or --control none\n",
                    dir, strerror(-rc),
                    rc == -EPERM ? " (not a directory of ours that only we can write)" : "");
            return rc;
        }
        sweep_dead(dir, cs->path);
    }
    if ((rc = clear_stale(cs->path)) < 0) {
        what = rc == -EADDRINUSE ? " (another supervisor serves it)"
               : rc == -EEXIST   ? " (exists and is not a socket)"
                                 : "";
        goto fail;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, cs->path, strlen(cs->path) + 1);
    /* The file is created with the mode the umask leaves: make that 0600
     * before bind, so it is never reachable by others, not even briefly. */
    mode_t old = umask(0177);
    int bound = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (bound < 0 || listen(fd, 64) < 0) {
        rc = -errno;
        close(fd);
        goto fail;
    }
    if (cfg->control_has_group &&
        (chown(cs->path, (uid_t)-1, cfg->control_group) < 0 || chmod(cs->path, 0660) < 0)) {
        rc = -errno;
        what = " (--control-group: cannot give the socket to that group)";
        close(fd);
        unlink(cs->path);
        goto fail;
    }
    if (cfg->run_as.enabled &&
        chown(cs->path, owner, cfg->control_has_group ? cfg->control_group : owner_gid) < 0) {
        rc = -errno;
        what = " (--user: cannot give the socket to that user)";
        close(fd);
        unlink(cs->path);
        goto fail;
    }
    cs->listen_fd = fd;
    RM_INFO("control socket %s", cs->path);
    return 0;
fail:
    fprintf(stderr, "ringmaster: error: cannot open the control socket %s: %s%s\n", cs->path,
            strerror(-rc), what);
    return rc;
}

static void arm_accept(rm_server_t *s)
{
    struct io_uring_sqe *sqe = rm_server_sqe(s);
    io_uring_prep_accept(sqe, s->control.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    io_uring_sqe_set_data64(sqe, ud(RM_OP_CONTROL_ACCEPT, NULL, 0));
    s->control.accept_armed = true;
}

void rm_control_start(rm_server_t *s)
{
    if (s->control.listen_fd >= 0)
        arm_accept(s);
}

/* ---- clients ----------------------------------------------------------- */

static void client_close(rm_control_client_t *c)
{
    /* An operation still in flight completes (with 0) instead of waiting on a
     * descriptor nobody reads; its stale generation makes us ignore it. */
    if (c->recv_armed || c->send_busy)
        shutdown(c->fd, SHUT_RDWR);
    /* Closing a Unix socket with unread input resets the peer, which may
     * then lose our last answer (a refusal's reason): read what is there. */
    char sink[4096];
    for (int i = 0; i < 16 && recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
        ;
    close(c->fd);
    c->fd = -1;
    c->gen = (c->gen + 1) & 0xffffff;
    free(c->out);
    c->out = NULL;
    c->recv_armed = c->send_busy = c->close_after = c->answered = false;
    c->deadline_ns = 0;
}

static void arm_recv(rm_server_t *s, rm_control_client_t *c)
{
    uint32_t idx = (uint32_t)(c - s->control.clients);
    struct io_uring_sqe *sqe = rm_server_sqe(s);
    io_uring_prep_recv(sqe, c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
    io_uring_sqe_set_data64(sqe, ud(RM_OP_CONTROL_RECV, c, idx));
    c->recv_armed = true;
}

static void handle_input(rm_server_t *s, rm_control_client_t *c);

/* Send what is left of c->out: directly while the socket takes it, else
 * through the ring. Then the next request, or the close. */
static void flush(rm_server_t *s, rm_control_client_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            uint32_t idx = (uint32_t)(c - s->control.clients);
            struct io_uring_sqe *sqe = rm_server_sqe(s);
            io_uring_prep_send(sqe, c->fd, c->out + c->out_off, c->out_len - c->out_off,
                               MSG_NOSIGNAL);
            io_uring_sqe_set_data64(sqe, ud(RM_OP_CONTROL_SEND, c, idx));
            c->send_busy = true;
            c->deadline_ns = rm_now_ns() + RM_CONTROL_REPLY_MS * 1000000ull;
            return;
        }
        client_close(c); /* the client went away */
        return;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    if (c->close_after) {
        client_close(c);
        return;
    }
    c->answered = true;
    c->active_ns = rm_now_ns();
    /* Idle until the next request; a request already (partly) here had its
     * second from when its first byte came, which is now at the latest. */
    c->deadline_ns =
        c->active_ns + (c->in_len ? RM_CONTROL_REQUEST_MS : RM_CONTROL_IDLE_MS) * 1000000ull;
    handle_input(s, c); /* a request sent before this response was read */
}

static void respond(rm_server_t *s, rm_control_client_t *c, const rm_ctlp_response_t *resp)
{
    char *frame = NULL;
    ssize_t n = rm_ctlp_encode_response(resp, &frame);
    if (n < 0) {
        RM_WARN("control: cannot encode a %s response: %s", rm_ctlp_cmd_name(resp->cmd),
                strerror((int)-n));
        client_close(c);
        return;
    }
    c->out = frame;
    c->out_len = (size_t)n;
    c->out_off = 0;
    flush(s, c);
}

static void refuse(rm_server_t *s, rm_control_client_t *c, rm_ctlp_cmd_t cmd, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void refuse(rm_server_t *s, rm_control_client_t *c, rm_ctlp_cmd_t cmd, const char *fmt, ...)
{
    rm_ctlp_response_t resp = {.version = RM_CTLP_VERSION, .cmd = cmd, .ok = false};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(resp.error, sizeof(resp.error), fmt, ap);
    va_end(ap);
    respond(s, c, &resp);
}

/* ---- commands ---------------------------------------------------------- */

static void fill_stats(const rm_server_t *s, rm_ctlp_stats_t *st)
{
    *st = (rm_ctlp_stats_t){
        .pid = (int32_t)getpid(),
        .uptime_ms = (rm_now_ns() - s->started_ns) / 1000000ull,
        .workers_target = s->target_workers,
        .connections = s->conn_count,
        .queued = s->queued,
        .requests = s->requests_total,
        .chunks_used = rm_chunk_pool_in_use(&s->region.pool),
        .chunks_total = s->region.pool.count,
        .reloads = s->app_gen,
        .stopping = s->stopping,
        .attach_only = s->cfg->attach_only,
    };
    snprintf(st->version, sizeof(st->version), "%s", RINGMASTER_VERSION);
    for (uint32_t i = 0; i < s->worker_count; i++) {
        const rm_worker_t *w = &s->workers[i];
        if (w->state == RM_WORKER_NONE)
            continue;
        st->workers_ready += w->state == RM_WORKER_READY;
        st->workers_attached += w->attached;
        st->in_flight += w->outstanding;
    }
}

static int fill_workers(const rm_server_t *s, rm_ctlp_response_t *resp)
{
    uint64_t now = rm_now_ns();
    resp->has_workers = true;
    resp->workers = calloc(s->worker_count ? s->worker_count : 1, sizeof(rm_ctlp_worker_t));
    if (!resp->workers)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->worker_count; i++) {
        const rm_worker_t *w = &s->workers[i];
        if (w->state == RM_WORKER_NONE || w->pid <= 0)
            continue;
        rm_ctlp_worker_t *o = &resp->workers[resp->nworkers++];
        o->lane = i;
        o->pid = (int32_t)w->pid;
        o->attached = w->attached;
        o->requests = w->served;
        o->in_flight = w->outstanding;
        o->rss_bytes = rm_worker_rss_bytes(w->pid);
        o->uptime_ms = (now - w->spawned_ns) / 1000000ull;
        snprintf(o->state, sizeof(o->state), "%s", rm_worker_state_name(w));
        snprintf(o->mode, sizeof(o->mode), "%s", w->mode);
        snprintf(o->python, sizeof(o->python), "%s", w->python);
    }
    return 0;
}

static void cmd_scale(rm_server_t *s, rm_control_client_t *c, const rm_ctlp_request_t *req)
{
    int64_t target = req->relative ? (int64_t)s->target_workers + req->scale : req->scale;
    char why[160];
    if (target < 0)
        target = 0;
    int rc = rm_workers_scale_to(s, target > UINT32_MAX ? UINT32_MAX : (uint32_t)target, why,
                                 sizeof(why));
    if (rc < 0) {
        refuse(s, c, RM_CTLP_SCALE, "%s", why);
        return;
    }
    rm_ctlp_response_t resp = {
        .version = RM_CTLP_VERSION, .cmd = RM_CTLP_SCALE, .ok = true, .target = s->target_workers};
    respond(s, c, &resp);
}

/* The response carries the descriptors (SCM_RIGHTS). It is small and the
 * first thing this client reads after its request, so one sendmsg on an
 * empty socket buffer takes it; if not, the attach is undone. */
static void cmd_attach(rm_server_t *s, rm_control_client_t *c, const rm_ctlp_request_t *req)
{
    if (s->stopping) {
        refuse(s, c, RM_CTLP_ATTACH, "the supervisor is stopping");
        return;
    }
    if (!rm_control_peer_may_attach(&s->control.policy, &c->peer)) {
        refuse(s, c, RM_CTLP_ATTACH,
               "uid %u may use the control socket but not attach: a worker must run as the "
               "supervisor's uid (%u) so that it can be stopped",
               (unsigned)c->peer.uid, (unsigned)s->control.policy.owner);
        return;
    }
    uint32_t lane;
    int fds[RM_CTLP_ATTACH_FDS];
    int rc = rm_worker_attach(s, &c->peer, &lane, fds);
    if (rc < 0) {
        refuse(s, c, RM_CTLP_ATTACH, "%s",
               rc == -EBUSY ? "no free lane: every worker slot is taken" : strerror(-rc));
        return;
    }
    rm_ctlp_response_t resp = {.version = RM_CTLP_VERSION,
                               .cmd = RM_CTLP_ATTACH,
                               .ok = true,
                               .has_lane = true,
                               .lane = lane};
    char *frame = NULL;
    ssize_t n = rm_ctlp_encode_response(&resp, &frame);
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * RM_CTLP_ATTACH_FDS)];
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = {.iov_base = frame, .iov_len = n > 0 ? (size_t)n : 0};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = ctl.buf,
                         .msg_controllen = sizeof(ctl.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * RM_CTLP_ATTACH_FDS);
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * RM_CTLP_ATTACH_FDS);
    ssize_t sent = n > 0 ? sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) : -1;
    close(fds[2]); /* the worker's end: it has its own copy now, or never will */
    if (sent != n) {
        RM_WARN("control: attach of pid %d failed while sending descriptors: %s", (int)c->peer.pid,
                sent < 0 ? strerror(errno) : "short send");
        rm_worker_attach_undo(s, lane);
        free(frame);
        client_close(c);
        return;
    }
    free(frame);
    RM_INFO("worker %u attached: pid %d (uid %u), Python %s, mode %s, app %s", lane,
            (int)c->peer.pid, (unsigned)c->peer.uid, req->python[0] ? req->python : "?",
            req->mode[0] ? req->mode : "?", req->app[0] ? req->app : "?");
    /* Its control channel takes over: this connection has done its job. */
    client_close(c);
}

static void run_command(rm_server_t *s, rm_control_client_t *c, const rm_ctlp_request_t *req)
{
    rm_ctlp_response_t resp = {.version = RM_CTLP_VERSION, .cmd = req->cmd, .ok = true};
    if (req->version != RM_CTLP_VERSION) {
        refuse(s, c, req->cmd, "schema version %u is not supported (this supervisor speaks %u)",
               req->version, RM_CTLP_VERSION);
        return;
    }
    switch (req->cmd) {
    case RM_CTLP_STATS:
        resp.has_stats = true;
        fill_stats(s, &resp.stats);
        break;
    case RM_CTLP_WORKERS:
        if (fill_workers(s, &resp) < 0) {
            refuse(s, c, req->cmd, "out of memory");
            return;
        }
        break;
    case RM_CTLP_SCALE:
        cmd_scale(s, c, req);
        return;
    case RM_CTLP_RELOAD:
        if (s->stopping) {
            refuse(s, c, req->cmd, "the supervisor is stopping");
            return;
        }
        rm_workers_reload(s);
        break;
    case RM_CTLP_STOP:
        rm_server_begin_stop(s, false, "ctl stop");
        break;
    case RM_CTLP_ATTACH:
        cmd_attach(s, c, req);
        return;
    case RM_CTLP_NONE:
        refuse(s, c, req->cmd, "unknown command");
        return;
    }
    respond(s, c, &resp);
    rm_ctlp_response_deinit(&resp);
}

/* Answer the first complete request in c->in, or read more. */
static void handle_input(rm_server_t *s, rm_control_client_t *c)
{
    if (c->fd < 0)
        return;
    rm_ctlp_request_t req;
    ssize_t n = rm_ctlp_decode_request(c->in, c->in_len, &req);
    if (n < 0 || (n == 0 && c->in_len == sizeof(c->in))) {
        RM_WARN("control: pid %d sent a malformed or oversized request; disconnecting it",
                (int)c->peer.pid);
        client_close(c);
        return;
    }
    if (n == 0) {
        arm_recv(s, c);
        return;
    }
    memmove(c->in, c->in + n, c->in_len - (size_t)n);
    c->in_len -= (uint32_t)n;
    RM_DEBUG("control: %s from pid %d", rm_ctlp_cmd_name(req.cmd), (int)c->peer.pid);
    run_command(s, c, &req);
}

/* Who makes room for a new client when every slot is taken: the client that
 * never got an answer and connected first (a silent one), else the one idle
 * longest since its last answer. Clients being answered right now go last:
 * they are about to finish on their own. */
static rm_control_client_t *pick_victim(rm_control_socket_t *cs)
{
    rm_control_client_t *best = NULL;
    int best_rank = 0;
    for (int i = 0; i < RM_CONTROL_CLIENTS; i++) {
        rm_control_client_t *c = &cs->clients[i];
        int rank = c->out ? 0 : c->answered ? 1 : 2;
        if (!best || rank > best_rank || (rank == best_rank && c->active_ns < best->active_ns)) {
            best = c;
            best_rank = rank;
        }
    }
    return best;
}

/* A slot for a new client: a free one, or one made by pushing out another
 * (pick_victim). Only a peer that may use the socket may push one out. */
static rm_control_client_t *take_slot(rm_control_socket_t *cs, bool allowed, pid_t pid)
{
    for (int i = 0; i < RM_CONTROL_CLIENTS; i++)
        if (cs->clients[i].fd < 0)
            return &cs->clients[i];
    if (!allowed) {
        RM_WARN("control: %d clients already connected; refusing pid %d, which may not use "
                "the socket anyway",
                RM_CONTROL_CLIENTS, (int)pid);
        return NULL;
    }
    rm_control_client_t *c = pick_victim(cs);
    RM_WARN("control: %d clients already connected; dropping pid %d, %s", RM_CONTROL_CLIENTS,
            (int)c->peer.pid, c->answered ? "idle the longest" : "the longest silent one");
    client_close(c);
    return c;
}

static void on_accept(rm_server_t *s, int res)
{
    rm_control_socket_t *cs = &s->control;
    cs->accept_armed = false;
    if (res >= 0) {
        rm_control_peer_t peer;
        int rc = rm_control_peer_of(res, &peer);
        bool allowed = rc == 0 && rm_control_peer_allowed(&cs->policy, &peer);
        rm_control_client_t *c = take_slot(cs, allowed, peer.pid);
        if (!c) {
            close(res);
        } else {
            uint64_t now = rm_now_ns();
            c->fd = res;
            c->in_len = 0;
            c->peer = peer;
            c->answered = false;
            c->active_ns = now;
            c->deadline_ns = now + RM_CONTROL_REQUEST_MS * 1000000ull;
            if (!allowed) {
                RM_WARN("control: refused pid %d (uid %u, gid %u): %s", (int)peer.pid,
                        (unsigned)peer.uid, (unsigned)peer.gid,
                        rc < 0 ? strerror(-rc) : "not the supervisor's uid, root or its group");
                c->close_after = true;
                refuse(s, c, RM_CTLP_NONE, "permission denied: uid %u may not use this socket",
                       (unsigned)peer.uid);
            } else {
                arm_recv(s, c);
            }
        }
    } else if (res != -ECANCELED && res != -EAGAIN) {
        RM_WARN("control: accept: %s", strerror(-res));
    }
    if (cs->listen_fd >= 0)
        arm_accept(s);
}

void rm_control_on_cqe(rm_server_t *s, int op, uint32_t gen, uint32_t idx,
                       const struct io_uring_cqe *cqe)
{
    if (op == RM_OP_CONTROL_ACCEPT) {
        on_accept(s, cqe->res);
        return;
    }
    if (idx >= RM_CONTROL_CLIENTS)
        return;
    rm_control_client_t *c = &s->control.clients[idx];
    if (c->fd < 0 || c->gen != gen)
        return; /* a closed client's last completion */
    if (op == RM_OP_CONTROL_SEND) {
        c->send_busy = false;
        if (cqe->res <= 0) {
            client_close(c);
            return;
        }
        c->out_off += (size_t)cqe->res;
        flush(s, c);
        return;
    }
    c->recv_armed = false;
    if (cqe->res <= 0) {
        client_close(c); /* done, or gone */
        return;
    }
    if (c->in_len == 0 && c->answered) /* the first byte of a later request */
        c->deadline_ns = rm_now_ns() + RM_CONTROL_REQUEST_MS * 1000000ull;
    c->in_len += (uint32_t)cqe->res;
    handle_input(s, c);
}

void rm_control_tick(rm_server_t *s, uint64_t now)
{
    for (int i = 0; i < RM_CONTROL_CLIENTS; i++) {
        rm_control_client_t *c = &s->control.clients[i];
        if (c->fd < 0 || now < c->deadline_ns)
            continue;
        RM_WARN("control: pid %d %s in time; disconnecting it", (int)c->peer.pid,
                c->out        ? "did not read its answer"
                : c->in_len   ? "did not finish its request"
                : c->answered ? "stayed idle too long"
                              : "sent no request");
        client_close(c);
    }
}

void rm_control_close(rm_server_t *s)
{
    rm_control_socket_t *cs = &s->control;
    for (int i = 0; i < RM_CONTROL_CLIENTS; i++)
        if (cs->clients[i].fd >= 0)
            client_close(&cs->clients[i]);
    if (cs->listen_fd < 0)
        return;
    close(cs->listen_fd);
    cs->listen_fd = -1;
    /* The directory stays: another supervisor may be about to bind in it. */
    unlink(cs->path);
}
