/*
 * ctl.c - `ringmaster ctl [--control PATH] [--json] COMMAND`: find the
 * supervisor's control socket, send one request, show the response; `top`
 * repeats stats and workers every second. Options go anywhere on the line.
 */
#include "ringmaster/ctl.h"
#include "ringmaster/control.h"
#include "ringmaster/control_access.h"
#include "ringmaster/control_proto.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define EXIT_REFUSED 1
#define EXIT_USAGE 2

static const char usage_text[] =
    "usage: ringmaster ctl [--control PATH] [--json] COMMAND  (options anywhere; -- ends them)\n"
    "\n"
    "  stats            the supervisor's counters\n"
    "  workers          one line per worker: pid, mode, interpreter, state, requests,\n"
    "                   in flight, RSS, uptime\n"
    "  scale N|+N|-N    set the embedded pool's size, or grow/shrink it\n"
    "  reload           start fresh workers with the app re-imported (like SIGHUP)\n"
    "  stop             graceful stop (like SIGTERM)\n"
    "  top [-n COUNT]   live per-worker load, refreshed every second; q or Ctrl-C quits\n"
    "\n"
    "      --control PATH  the supervisor's socket (RINGMASTER_CONTROL; default: the only\n"
    "                      socket in $XDG_RUNTIME_DIR/ringmaster, /run/ringmaster as root,\n"
    "                      else /tmp/ringmaster-UID)\n"
    "      --json          one JSON object per response instead of tables\n"
    "  -h, --help          this text\n";

static int usage_error(const char *fmt, const char *arg)
{
    fputs("ringmaster ctl: error: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs(" (see ringmaster ctl --help)\n", stderr);
    return EXIT_USAGE;
}

/* ---- finding and talking to the supervisor --------------------------------- */

static int connect_path(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

/* Without --control: the one live socket in the default directory. */
static int find_socket(char *path, size_t len)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    if (rm_control_default_dir(dir, sizeof(dir), getenv("XDG_RUNTIME_DIR"), geteuid()) < 0) {
        fprintf(stderr, "ringmaster ctl: error: the default socket directory's name is too "
                        "long; give --control PATH\n");
        return -1;
    }
    DIR *d = opendir(dir);
    unsigned live = 0;
    if (d) {
        struct dirent *e;
        char candidate[sizeof(dir) + 256];
        while ((e = readdir(d))) {
            size_t n = strlen(e->d_name);
            if (n < 6 || strcmp(e->d_name + n - 5, ".sock") != 0)
                continue;
            snprintf(candidate, sizeof(candidate), "%s/%s", dir, e->d_name);
            if (strlen(candidate) >= len)
                continue; /* not a path we could connect to */
            int fd = connect_path(candidate);
            if (fd < 0)
                continue; /* a dead supervisor's leftover */
            close(fd);
            if (live++ == 0)
                memcpy(path, candidate, strlen(candidate) + 1);
            else
                fprintf(stderr, "%s  %s\n", live == 2 ? path : "", candidate);
        }
        closedir(d);
    }
    if (live == 1)
        return 0;
    if (live == 0)
        fprintf(stderr,
                "ringmaster ctl: error: no running supervisor has a socket in %s; give "
                "--control PATH\n",
                dir);
    else
        fprintf(stderr,
                "ringmaster ctl: error: %u supervisors are running (sockets above); "
                "pick one with --control PATH\n",
                live);
    return -1;
}

/* One request, one response. Returns 0, or -1 after printing why. */
static int exchange(int fd, const rm_ctlp_request_t *req, rm_ctlp_response_t *resp)
{
    char *frame = NULL;
    size_t len;
    ssize_t n = rm_ctlp_encode_request(req, &frame);
    if (n < 0) {
        fprintf(stderr, "ringmaster ctl: error: cannot encode the request: %s\n",
                strerror((int)-n));
        return -1;
    }
    int rc = rm_ctl_write_all(fd, frame, (size_t)n);
    free(frame);
    /* Read even after a failed write: a refused peer is told why, then cut off. */
    int read_rc = rm_ctl_read_frame(fd, RM_CTLP_MAX_FRAME, &frame, &len);
    rc = read_rc == 0 ? 0 : rc < 0 ? rc : read_rc;
    if (rc < 0) {
        fprintf(stderr, "ringmaster ctl: error: the supervisor %s\n",
                rc == -ECONNRESET || rc == -EPIPE ? "closed the connection"
                                                  : "sent no valid answer");
        return -1;
    }
    n = rm_ctlp_decode_response(frame, len, resp);
    free(frame);
    if (n <= 0) {
        fprintf(stderr, "ringmaster ctl: error: the supervisor's answer is malformed\n");
        return -1;
    }
    return 0;
}

/* ---- top ------------------------------------------------------------------ */

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Per-lane requests at the previous refresh, for a rate. */
typedef struct prev {
    int32_t pid;
    uint64_t requests;
} prev_t;

static void top_frame(FILE *out, const rm_ctlp_response_t *st, const rm_ctlp_response_t *ws,
                      prev_t *prev, double secs, bool tty)
{
    const rm_ctlp_stats_t *s = &st->stats;
    if (tty)
        fputs("\033[H\033[2J", out);
    fprintf(out,
            "ringmaster pid %d  workers %u ready (%u attached)  connections %u  queued %u  "
            "in flight %u  requests %" PRIu64 "  chunks %u/%u%s\n\n",
            s->pid, s->workers_ready, s->workers_attached, s->connections, s->queued, s->in_flight,
            s->requests, s->chunks_used, s->chunks_total, s->stopping ? "  STOPPING" : "");
    fprintf(out, "%-5s %-8s %-9s %-16s %-8s %10s %9s %9s %8s\n", "LANE", "PID", "STATE", "MODE",
            "KIND", "REQ/S", "REQUESTS", "IN-FLIGHT", "RSS MiB");
    for (uint32_t i = 0; i < ws->nworkers; i++) {
        const rm_ctlp_worker_t *w = &ws->workers[i];
        prev_t *p = &prev[w->lane % RM_CTLP_MAX_WORKERS];
        double rate = 0;
        if (p->pid == w->pid && secs > 0 && w->requests >= p->requests)
            rate = (double)(w->requests - p->requests) / secs;
        p->pid = w->pid;
        p->requests = w->requests;
        char bar[21] = {0};
        unsigned fill = w->in_flight > 20 ? 20 : w->in_flight;
        memset(bar, '#', fill);
        fprintf(out, "%-5u %-8d %-9s %-16s %-8s %10.1f %9" PRIu64 " %9u %8.1f %s\n", w->lane,
                w->pid, w->state, w->mode[0] ? w->mode : "-", w->attached ? "attached" : "embedded",
                rate, w->requests, w->in_flight, (double)w->rss_bytes / (1 << 20), bar);
    }
    if (tty)
        fputs("\nq or Ctrl-C quits\n", out);
    else
        fputc('\n', out);
    fflush(out);
}

/* Wait up to `ms` for a key; true when it says quit. */
static bool wait_key(int ms, bool keys)
{
    struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
    if (!keys) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
        return false;
    }
    if (poll(&p, 1, ms) > 0) {
        char c;
        if (read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 'Q' || c == 3))
            return true;
    }
    return false;
}

static int top(int fd, bool json, long count)
{
    bool tty = isatty(STDOUT_FILENO) && !json;
    bool keys = tty && isatty(STDIN_FILENO);
    struct termios saved, raw;
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (keys && tcgetattr(STDIN_FILENO, &saved) == 0) {
        raw = saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    } else {
        keys = false;
    }
    prev_t *prev = calloc(RM_CTLP_MAX_WORKERS, sizeof(prev_t));
    int status = prev ? 0 : EXIT_REFUSED;
    struct timespec last = {0}, now;
    for (long i = 0; prev && !interrupted && (count <= 0 || i < count); i++) {
        rm_ctlp_request_t rs = {.version = RM_CTLP_VERSION, .cmd = RM_CTLP_STATS};
        rm_ctlp_request_t rw = {.version = RM_CTLP_VERSION, .cmd = RM_CTLP_WORKERS};
        rm_ctlp_response_t st, ws;
        if (exchange(fd, &rs, &st) < 0) {
            status = EXIT_REFUSED;
            break;
        }
        if (exchange(fd, &rw, &ws) < 0) {
            rm_ctlp_response_deinit(&st);
            status = EXIT_REFUSED;
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        double secs = last.tv_sec ? (double)(now.tv_sec - last.tv_sec) +
                                        (double)(now.tv_nsec - last.tv_nsec) / 1e9
                                  : 0;
        last = now;
        if (json) {
            rm_ctl_print_json(stdout, &st);
            rm_ctl_print_json(stdout, &ws);
            fflush(stdout);
        } else {
            top_frame(stdout, &st, &ws, prev, secs, tty);
        }
        rm_ctlp_response_deinit(&st);
        rm_ctlp_response_deinit(&ws);
        if ((count <= 0 || i + 1 < count) && wait_key(1000, keys))
            break;
    }
    free(prev);
    if (keys)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    return status;
}

/* ---- main ----------------------------------------------------------------- */

/* "3" (absolute), "+1"/"-1" (relative). */
static int parse_scale(const char *text, rm_ctlp_request_t *req)
{
    char *end;
    bool relative = text[0] == '+' || text[0] == '-';
    errno = 0;
    long v = strtol(text, &end, 10);
    if (!*text || *end || errno || v < -1024 || v > 1024 || (!relative && v < 1))
        return -EINVAL;
    req->relative = relative;
    req->scale = (int32_t)v;
    return 0;
}

/* "-1", "+2": a number (scale's argument), not an option. */
static bool is_number(const char *arg)
{
    return (arg[0] == '-' || arg[0] == '+') && arg[1] >= '0' && arg[1] <= '9';
}

/* The command line, parsed. */
typedef struct ctl_args {
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* --control, or "" */
    bool json;
    bool help;
    const char *count;  /* top's -n value, or NULL */
    const char *pos[3]; /* COMMAND and its argument, borrowed from argv */
    int npos;
} ctl_args_t;

/* Options go anywhere on the line, before or after the command and its
 * argument, as people type them (`ctl workers --json`); `--` ends them. A
 * number such as scale's "-1" is an argument, never an option. Returns 0, or
 * EXIT_USAGE after one line on stderr. */
static int parse_args(int argc, char **argv, ctl_args_t *a)
{
    bool options = true;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = NULL;
        if (!options || arg[0] != '-' || arg[1] == '\0' || is_number(arg)) {
            if (a->npos == (int)(sizeof(a->pos) / sizeof(a->pos[0])))
                return usage_error("unexpected argument '%s'", arg);
            a->pos[a->npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options = false;
        } else if (strcmp(arg, "--json") == 0) {
            a->json = true;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            a->help = true;
        } else if (strcmp(arg, "--control") == 0 || strncmp(arg, "--control=", 10) == 0) {
            value = arg[9] == '=' ? arg + 10 : i + 1 < argc ? argv[++i] : NULL;
            if (value == NULL || !*value)
                return usage_error("%s--control needs a PATH", "");
            if (strlen(value) >= sizeof(a->path))
                return usage_error("--control: path too long: '%s'", value);
            snprintf(a->path, sizeof(a->path), "%s", value);
        } else if (strcmp(arg, "-n") == 0) {
            if (i + 1 >= argc)
                return usage_error("%stop -n needs a COUNT", "");
            a->count = argv[++i];
        } else {
            return usage_error("unknown option '%s'", arg);
        }
    }
    return 0;
}

int rm_ctl_main(int argc, char **argv)
{
    ctl_args_t a = {0};
    long count = 0;
    const char *env = getenv("RINGMASTER_CONTROL");
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc;
    if (a.help) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!a.path[0] && env && *env)
        snprintf(a.path, sizeof(a.path), "%s", env);
    if (a.npos == 0)
        return usage_error("%smissing COMMAND", "");
    const char *name = a.pos[0];
    rm_ctlp_request_t req = {.version = RM_CTLP_VERSION, .cmd = rm_ctlp_cmd_from(name)};
    bool is_top = strcmp(name, "top") == 0;
    int used = 1;
    if (!is_top && (req.cmd == RM_CTLP_NONE || req.cmd == RM_CTLP_ATTACH))
        return usage_error("unknown command '%s'", name);
    if (a.count != NULL && !is_top)
        return usage_error("-n %s: only top takes a count", a.count);
    if (a.count != NULL) {
        char *end;
        count = strtol(a.count, &end, 10);
        if (!*a.count || *end || count < 1)
            return usage_error("top -n: expected a count of refreshes, got '%s'", a.count);
    } else if (req.cmd == RM_CTLP_SCALE) {
        if (a.npos < 2)
            return usage_error("%sscale needs N, +N or -N", "");
        if (parse_scale(a.pos[1], &req) < 0)
            return usage_error("scale: expected N (1..1024), +N or -N, got '%s'", a.pos[1]);
        used = 2;
    }
    if (a.npos > used)
        return usage_error("unexpected argument '%s'", a.pos[used]);

    if (!a.path[0] && find_socket(a.path, sizeof(a.path)) < 0)
        return EXIT_REFUSED;
    int fd = connect_path(a.path);
    if (fd < 0) {
        fprintf(stderr, "ringmaster ctl: error: cannot connect to %s: %s%s\n", a.path,
                strerror(-fd),
                fd == -ECONNREFUSED || fd == -ENOENT ? " (is the supervisor running?)" : "");
        return EXIT_REFUSED;
    }
    signal(SIGPIPE, SIG_IGN);
    int status;
    if (is_top) {
        status = top(fd, a.json, count);
    } else {
        rm_ctlp_response_t resp = {0};
        status = exchange(fd, &req, &resp) < 0 ? EXIT_REFUSED : 0;
        if (status == 0) {
            if (a.json)
                rm_ctl_print_json(stdout, &resp);
            else if (resp.ok)
                rm_ctl_print_human(stdout, &resp);
            if (!resp.ok) {
                fprintf(stderr, "ringmaster ctl: error: %s\n", resp.error);
                status = EXIT_REFUSED;
            }
        }
        rm_ctlp_response_deinit(&resp);
    }
    close(fd);
    return status;
}
