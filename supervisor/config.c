/*
 * config.c - flags and environment to rm_config_t.
 */
#include "ringmaster/config.h"
#include "ringmaster/control_access.h"
#include "ringmaster/cpus.h"
#include "ringmaster/memlimit.h"
#include "ringmaster/seccomp.h"
#include "ringmaster/interface.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef RINGMASTER_VERSION
#define RINGMASTER_VERSION "dev"
#endif

enum {
    OPT_THREADS = 0x100,
    OPT_MODE,
    OPT_PYTHON,
    OPT_PIN,
    OPT_WORKER_BINARY,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_MAX_BODY,
    OPT_BODY_SPILL_SIZE,
    OPT_SPILL_DIR,
    OPT_MAX_CONNECTIONS,
    OPT_GRACEFUL_TIMEOUT,
    OPT_REQUEST_TIMEOUT,
    OPT_WORKERS_MIN,
    OPT_WORKERS_MAX,
    OPT_IDLE_TIMEOUT,
    OPT_MAX_REQUESTS,
    OPT_MAX_REQUESTS_JITTER,
    OPT_MAX_RSS,
    OPT_HEADER_TIMEOUT,
    OPT_BODY_TIMEOUT,
    OPT_KEEPALIVE_TIMEOUT,
    OPT_WRITE_TIMEOUT,
    OPT_QUEUE_TIMEOUT,
    OPT_MAX_QUEUED,
    OPT_WORKER_QUEUE,
    OPT_CHUNK_SIZE,
    OPT_CHUNKS,
    OPT_VERSION,
    OPT_METRICS,
    OPT_ACCESS_LOG,
    OPT_ACCESS_LOG_FORMAT,
    /* The app-interface flags, in enum rm_app_opt order (interface.h). */
    OPT_INTERFACE,
    OPT_ROOT_PATH,
    OPT_FORWARDED_ALLOW_IPS,
    OPT_CONTROL,
    OPT_CONTROL_GROUP,
    OPT_ATTACH_ONLY,
    OPT_LIFESPAN,
    OPT_LOOP,
    OPT_MAX_CONCURRENCY,
    OPT_USER,
    OPT_GROUP,
    OPT_ACCESS_LOG_QUERY,
    OPT_WORKER_SECCOMP,
};

static const struct option options[] = {
    {"bind", required_argument, NULL, 'b'},
    {"workers", required_argument, NULL, 'w'},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"mode", required_argument, NULL, OPT_MODE},
    {"python", required_argument, NULL, OPT_PYTHON},
    {"pin", no_argument, NULL, OPT_PIN},
    {"worker-binary", required_argument, NULL, OPT_WORKER_BINARY},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"max-body-size", required_argument, NULL, OPT_MAX_BODY},
    {"body-spill-size", required_argument, NULL, OPT_BODY_SPILL_SIZE},
    {"spill-dir", required_argument, NULL, OPT_SPILL_DIR},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"graceful-timeout", required_argument, NULL, OPT_GRACEFUL_TIMEOUT},
    {"timeout", required_argument, NULL, OPT_REQUEST_TIMEOUT},
    {"workers-min", required_argument, NULL, OPT_WORKERS_MIN},
    {"workers-max", required_argument, NULL, OPT_WORKERS_MAX},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"max-requests", required_argument, NULL, OPT_MAX_REQUESTS},
    {"max-requests-jitter", required_argument, NULL, OPT_MAX_REQUESTS_JITTER},
    {"max-rss", required_argument, NULL, OPT_MAX_RSS},
    {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
    {"body-timeout", required_argument, NULL, OPT_BODY_TIMEOUT},
    {"keepalive-timeout", required_argument, NULL, OPT_KEEPALIVE_TIMEOUT},
    {"write-timeout", required_argument, NULL, OPT_WRITE_TIMEOUT},
    {"queue-timeout", required_argument, NULL, OPT_QUEUE_TIMEOUT},
    {"max-queued", required_argument, NULL, OPT_MAX_QUEUED},
    {"worker-queue", required_argument, NULL, OPT_WORKER_QUEUE},
    {"chunk-size", required_argument, NULL, OPT_CHUNK_SIZE},
    {"chunks", required_argument, NULL, OPT_CHUNKS},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {"metrics", required_argument, NULL, OPT_METRICS},
    {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
    {"access-log-format", required_argument, NULL, OPT_ACCESS_LOG_FORMAT},
    {"interface", required_argument, NULL, OPT_INTERFACE},
    {"root-path", required_argument, NULL, OPT_ROOT_PATH},
    {"forwarded-allow-ips", required_argument, NULL, OPT_FORWARDED_ALLOW_IPS},
    {"control", required_argument, NULL, OPT_CONTROL},
    {"control-group", required_argument, NULL, OPT_CONTROL_GROUP},
    {"attach-only", no_argument, NULL, OPT_ATTACH_ONLY},
    {"lifespan", required_argument, NULL, OPT_LIFESPAN},
    {"loop", required_argument, NULL, OPT_LOOP},
    {"max-concurrency", required_argument, NULL, OPT_MAX_CONCURRENCY},
    {"user", required_argument, NULL, OPT_USER},
    {"group", required_argument, NULL, OPT_GROUP},
    {"access-log-query", required_argument, NULL, OPT_ACCESS_LOG_QUERY},
    {"worker-seccomp", no_argument, NULL, OPT_WORKER_SECCOMP},
    {NULL, 0, NULL, 0},
};

void rm_config_usage(void *fp)
{
    fputs("usage: ringmaster [options] APP\n"
          "       ringmaster --attach-only [options] [APP]\n"
          "       ringmaster ctl [--control PATH] [--json] COMMAND   (ringmaster ctl --help)\n"
          "\n"
          "APP is module:attr, module (attr 'app'), or path/to/file.py[:attr].\n"
          "\n"
          "  -b, --bind HOST:PORT       listen address (RINGMASTER_BIND; default 127.0.0.1:8000)\n"
          "  -w, --workers N|auto       worker processes (RINGMASTER_WORKERS, WEB_CONCURRENCY;\n"
          "                             default auto = usable CPUs)\n"
          "      --threads T            Python threads per worker (RINGMASTER_THREADS; default 1)\n"
          "      --mode MODE            how a worker's threads run Python: auto, gil,\n"
          "                             subinterpreters or free-threaded (RINGMASTER_MODE;\n"
          "                             default auto)\n"
          "      --python X.Y[t]        run the worker built for that Python:\n"
          "                             ringmaster-worker-X.Y[t] next to this binary\n"
          "                             (RINGMASTER_PYTHON)\n"
          "      --pin                  pin worker i to usable CPU i, the I/O thread to its own\n"
          "                             (RINGMASTER_PIN=1)\n"
          "      --interface IFACE      how the app is called: wsgi (PEP 3333), asgi (3.0),\n"
          "                             native, or auto: asgi for an async def of three\n"
          "                             arguments, wsgi when it takes two positional ones\n"
          "                             (RINGMASTER_INTERFACE; default auto)\n"
          "      --lifespan MODE        ASGI lifespan: auto, on or off (RINGMASTER_LIFESPAN;\n"
          "                             default auto)\n"
          "      --loop LOOP            ASGI event loop: auto (uvloop if installed), asyncio or\n"
          "                             uvloop (RINGMASTER_LOOP; default auto)\n"
          "      --max-concurrency N    ASGI requests in flight per worker thread\n"
          "                             (RINGMASTER_MAX_CONCURRENCY; default 1000)\n"
          "      --root-path PATH       WSGI SCRIPT_NAME: where the app is mounted\n"
          "                             (RINGMASTER_ROOT_PATH; default none)\n"
          "      --forwarded-allow-ips LIST  peers (IP[/prefix],... or '*') whose\n"
          "                             X-Forwarded-For/-Proto and Forwarded are believed\n"
          "                             (RINGMASTER_FORWARDED_ALLOW_IPS, FORWARDED_ALLOW_IPS;\n"
          "                             default 127.0.0.1,::1)\n"
          "      --worker-binary PATH   ringmaster-worker to run (RINGMASTER_WORKER_BINARY;\n"
          "                             default: next to this binary)\n"
          "      --max-body-size BYTES  largest request body, 413 beyond; K, M, G suffixes\n"
          "                             (RINGMASTER_MAX_BODY_SIZE; default 1M)\n"
          "      --body-spill-size BYTES  a larger body goes to a file in --spill-dir instead\n"
          "                             of shared memory (RINGMASTER_BODY_SPILL_SIZE; default 1M)\n"
          "      --spill-dir DIR        where spilled bodies go (RINGMASTER_SPILL_DIR; default\n"
          "                             $TMPDIR or /tmp)\n"
          "      --max-connections N    open client connections at most (default 10000)\n"
          "      --graceful-timeout S   seconds SIGTERM waits for in-flight requests\n"
          "                             (RINGMASTER_GRACEFUL_TIMEOUT; default 30)\n"
          "      --workers-min N        autoscaling: never fewer workers (default: --workers)\n"
          "      --workers-max N        autoscaling: grow up to N workers under load\n"
          "                             (default: --workers, i.e. no autoscaling)\n"
          "      --idle-timeout S       autoscaling: shrink by one worker after S idle seconds\n"
          "                             (default 60)\n"
          "      --max-requests N       recycle a worker after N requests (default 0: never)\n"
          "      --max-requests-jitter J  plus a random 0..J per worker (default 0)\n"
          "      --max-rss MIB          recycle a worker whose RSS exceeds MIB; 0: never\n"
          "                             (RINGMASTER_MAX_RSS; default: 80% of the cgroup\n"
          "                             memory limit / --workers-max, or 0 without a limit\n"
          "                             or below 32 MiB)\n"
          "  -t, --timeout S            seconds a worker may spend on a request without\n"
          "                             producing output before it is killed (504); 0: never\n"
          "                             (RINGMASTER_TIMEOUT; default 30)\n"
          "      --header-timeout S     seconds to receive a request head (default 10; 408)\n"
          "      --body-timeout S       seconds between reads of a request body (default 30; 408)\n"
          "      --keepalive-timeout S  seconds an idle connection is kept (default 5)\n"
          "      --write-timeout S      seconds a client may read nothing of its response\n"
          "                             (default 30)\n"
          "      --queue-timeout S      seconds a request may wait for a worker thread to take it\n"
          "                             (in the queue or on a lane; default 30; 503)\n"
          "      --max-queued N         requests waiting for a worker at most (default 4096; 503)\n"
          "      --worker-queue N       requests handed to one worker at a time (default 1024)\n"
          "      --chunk-size BYTES     region chunk size, multiple of 4096 (default 16384)\n"
          "      --chunks N             region chunks (default 4096)\n"
          "      --metrics HOST:PORT    serve /metrics (Prometheus), /healthz and /readyz on\n"
          "                             this address (RINGMASTER_METRICS; default: off)\n"
          "      --access-log -|PATH    one line per request to stdout (-) or a file\n"
          "                             (RINGMASTER_ACCESS_LOG; default: off)\n"
          "      --access-log-format F  combined|json (RINGMASTER_ACCESS_LOG_FORMAT;\n"
          "                             default combined)\n"
          "      --access-log-query off|on  keep query strings in the access log\n"
          "                             (RINGMASTER_ACCESS_LOG_QUERY; default off: cut at '?')\n"
          "      --user USER            started as root: bind, then run the supervisor and\n"
          "                             workers as USER (name or uid; RINGMASTER_USER)\n"
          "      --group GROUP          with --user: this group instead of USER's primary one\n"
          "                             (RINGMASTER_GROUP)\n"
          "      --worker-seccomp       workers run under a seccomp filter refusing ptrace,\n"
          "                             mount, namespaces, bpf, kexec, io_uring, ...\n"
          "                             (RINGMASTER_WORKER_SECCOMP=1; default off)\n"
          "      --control PATH         control socket for `ringmaster ctl` and attached workers,\n"
          "                             or 'none' (RINGMASTER_CONTROL; default\n"
          "                             $XDG_RUNTIME_DIR/ringmaster/PID.sock, /run/ringmaster/PID.sock\n"
          "                             as root, else /tmp/ringmaster-UID/PID.sock)\n"
          "      --control-group NAME   members of group NAME may use the control socket too\n"
          "                             (RINGMASTER_CONTROL_GROUP; default: owner and root only)\n"
          "      --attach-only          start no embedded workers: only attached ones serve\n"
          "                             (RINGMASTER_ATTACH_ONLY=1)\n"
          "      --log-level LEVEL      error|warn|info|debug (RINGMASTER_LOG_LEVEL; default info)\n"
          "      --log-format FMT       plain|json (RINGMASTER_LOG_FORMAT; default plain)\n"
          "  -h, --help                 this text\n"
          "      --version              print the version\n",
          (FILE *)fp);
}

uint32_t rm_config_usable_cpus(void)
{
    return rm_cpus_usable();
}

static int fail(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static bool parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!text || !*text || *text == '-')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* Bytes, with an optional binary suffix: "1048576", "512K", "1M", "2G". */
static bool parse_bytes(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!text || !*text || *text == '-')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text)
        return false;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case '\0': break;
    default: return false;
    }
    if (shift && *++end == 'i')
        end++; /* "MiB" reads like "M" */
    if (shift && (*end == 'b' || *end == 'B'))
        end++;
    if (*end || v > (UINT64_MAX >> shift))
        return false;
    v <<= shift;
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int parse_body_size(uint64_t *slot, const char *text, const char *source, char *err,
                           size_t err_len)
{
    uint64_t n;
    if (!parse_bytes(text, 0, UINT64_MAX / 2, &n))
        return fail(err, err_len, "%s: expected bytes (e.g. 1048576, 64K, 1M, 2G), got '%s'",
                    source, text);
    *slot = n;
    return 0;
}

static int parse_spill_dir(rm_config_t *cfg, const char *text, const char *source, char *err,
                           size_t err_len)
{
    if (text[0] != '/')
        return fail(err, err_len, "%s: expected an absolute directory, got '%s'", source, text);
    if (strlen(text) >= sizeof(cfg->spill_dir))
        return fail(err, err_len, "%s: longer than %zu bytes", source, sizeof(cfg->spill_dir) - 1);
    snprintf(cfg->spill_dir, sizeof(cfg->spill_dir), "%s", text);
    return 0;
}

/* Seconds, possibly fractional ("0.5"), from 1 ms to a day. */
static bool parse_seconds(const char *text, double *out)
{
    if (!text || !*text || *text == '-')
        return false;
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || *end || !(v >= 0.001 && v <= 86400.0))
        return false;
    *out = v;
    return true;
}

/* --graceful-timeout: whole seconds, 0 to a day. */
static int parse_graceful_timeout(rm_config_t *cfg, const char *text, const char *source,
                                  char *err, size_t err_len)
{
    uint64_t n;
    if (!parse_u64(text, 0, 86400, &n))
        return fail(err, err_len, "%s: expected seconds (0 to 86400), got '%s'", source, text);
    cfg->graceful_timeout_ms = (uint32_t)n * 1000;
    return 0;
}

/* --max-rss: MiB, 0 for never. */
static int parse_max_rss(rm_config_t *cfg, const char *text, const char *source, char *err,
                         size_t err_len)
{
    uint64_t n;
    if (!parse_u64(text, 0, UINT32_MAX, &n))
        return fail(err, err_len, "%s: expected MiB (0: never), got '%s'", source, text);
    cfg->max_rss_mib = n;
    return 0;
}

/* --timeout: seconds, or 0 to never kill a worker for a slow request. */
static int parse_request_timeout(rm_config_t *cfg, const char *text, const char *source,
                                 char *err, size_t err_len)
{
    double secs;
    if (strcmp(text, "0") == 0) {
        cfg->request_timeout_ms = 0;
        return 0;
    }
    if (!parse_seconds(text, &secs))
        return fail(err, err_len, "%s: expected seconds (0 for none), got '%s'", source, text);
    cfg->request_timeout_ms = (uint32_t)(secs * 1000.0 + 0.5);
    return 0;
}

/* HOST:PORT, [IPv6]:PORT, or :PORT (all interfaces) into host and port. */
static int parse_host_port(char *host_out, size_t host_cap, uint16_t *port_out, const char *text,
                           const char *source, char *err, size_t err_len)
{
    const char *colon = strrchr(text, ':');
    const char *host = text;
    size_t host_len;
    if (!colon)
        return fail(err, err_len, "%s: expected HOST:PORT, got '%s'", source, text);
    host_len = (size_t)(colon - text);
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    }
    if (host_len == 0) {
        host = "0.0.0.0";
        host_len = strlen(host);
    }
    if (host_len >= host_cap)
        return fail(err, err_len, "%s: host too long", source);
    uint64_t port;
    if (!parse_u64(colon + 1, 0, 65535, &port))
        return fail(err, err_len, "%s: bad port in '%s'", source, text);
    memcpy(host_out, host, host_len);
    host_out[host_len] = '\0';
    *port_out = (uint16_t)port;
    return 0;
}

static int parse_bind(rm_config_t *cfg, const char *text, const char *source, char *err,
                      size_t err_len)
{
    return parse_host_port(cfg->bind_host, sizeof(cfg->bind_host), &cfg->bind_port, text, source,
                           err, err_len);
}

static int parse_metrics(rm_config_t *cfg, const char *text, const char *source, char *err,
                         size_t err_len)
{
    int rc = parse_host_port(cfg->metrics_host, sizeof(cfg->metrics_host), &cfg->metrics_port,
                             text, source, err, err_len);
    cfg->metrics_enabled = rc == 0;
    return rc;
}

static int parse_workers(rm_config_t *cfg, const char *text, const char *source, char *err,
                         size_t err_len)
{
    uint64_t n;
    if (strcmp(text, "auto") == 0) {
        cfg->workers = rm_config_usable_cpus();
        return 0;
    }
    if (!parse_u64(text, 1, 1024, &n))
        return fail(err, err_len, "%s: expected a number 1..1024 or 'auto', got '%s'", source,
                    text);
    cfg->workers = (uint32_t)n;
    return 0;
}

static int parse_threads(rm_config_t *cfg, const char *text, const char *source, char *err,
                         size_t err_len)
{
    uint64_t n;
    if (!parse_u64(text, 1, 256, &n))
        return fail(err, err_len, "%s: expected a number 1..256, got '%s'", source, text);
    cfg->threads = (uint32_t)n;
    return 0;
}

static int parse_mode(rm_config_t *cfg, const char *text, const char *source, char *err,
                      size_t err_len)
{
    static const char *const modes[] = {"auto", "gil", "subinterpreters", "free-threaded"};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcmp(text, modes[i]) == 0) {
            cfg->mode = modes[i];
            return 0;
        }
    }
    return fail(err, err_len,
                "%s: expected auto, gil, subinterpreters or free-threaded, got '%s'", source, text);
}

/* A yes/no environment variable: 1/0, yes/no, true/false, on/off. */
static int parse_flag_value(const char *text, bool *out)
{
    static const char *const yes[] = {"1", "yes", "true", "on"};
    static const char *const no[] = {"0", "no", "false", "off"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
            *out = strcasecmp(text, yes[i]) == 0;
            return 0;
        }
    }
    return -EINVAL;
}

/* --control PATH|none. The default is resolved after parsing (it names our pid). */
static int parse_control(rm_config_t *cfg, const char *text, const char *source, char *err,
                         size_t err_len)
{
    if (strcmp(text, "none") == 0) {
        cfg->control_enabled = false;
        return 0;
    }
    if (!*text || strlen(text) >= sizeof(cfg->control_path))
        return fail(err, err_len, "%s: expected a socket path of 1 to %zu bytes or 'none'",
                    source, sizeof(cfg->control_path) - 1);
    cfg->control_enabled = true;
    cfg->control_path_default = false;
    memcpy(cfg->control_path, text, strlen(text) + 1);
    return 0;
}

static int parse_control_group(rm_config_t *cfg, const char *text, const char *source,
                               char *err, size_t err_len)
{
    struct group *g = getgrnam(text);
    if (!g)
        return fail(err, err_len, "%s: no group named '%s'", source, text);
    cfg->control_has_group = true;
    cfg->control_group = g->gr_gid;
    return 0;
}

static int default_control_path(rm_config_t *cfg, char *err, size_t err_len)
{
    char dir[sizeof(cfg->control_path)];
    /* The directory of the user the supervisor will run as: ctl run by that
     * user finds the socket where it looks by default. XDG_RUNTIME_DIR is the
     * invoking (root's) session's, which that user cannot enter. */
    uid_t uid = cfg->run_as.enabled ? cfg->run_as.uid : geteuid();
    const char *xdg = cfg->run_as.enabled ? NULL : getenv("XDG_RUNTIME_DIR");
    if (rm_control_default_dir(dir, sizeof(dir), xdg, uid) < 0 ||
        (size_t)snprintf(cfg->control_path, sizeof(cfg->control_path), "%s/%d.sock", dir,
                         (int)getpid()) >= sizeof(cfg->control_path))
        return fail(err, err_len,
                    "the default control socket path is too long (XDG_RUNTIME_DIR?); "
                    "give --control PATH");
    cfg->control_path_default = true;
    return 0;
}

/* The usable CPUs (this process's affinity mask), ascending, for --pin. */
static void usable_cpu_list(rm_config_t *cfg)
{
    cpu_set_t set;
    cfg->cpu_count = 0;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        for (int cpu = 0; cpu < CPU_SETSIZE && cfg->cpu_count < RM_CONFIG_MAX_CPUS; cpu++)
            if (CPU_ISSET(cpu, &set))
                cfg->cpus[cfg->cpu_count++] = (uint16_t)cpu;
    if (cfg->cpu_count == 0) {
        cfg->cpus[0] = 0;
        cfg->cpu_count = 1;
    }
}

/* --python X.Y or X.Yt names ringmaster-worker-X.Y[t] next to the default
 * worker (docs/modes.md: one binary per interpreter, the suffix is the
 * interpreter's version and "t" for a free-threaded build). It must exist. */
static int worker_for_python(rm_config_t *cfg, const char *tag, const char *source, char *err,
                             size_t err_len)
{
    char path[PATH_MAX];
    const char *p = tag;
    size_t major = strspn(p, "0123456789");
    size_t minor = p[major] == '.' ? strspn(p + major + 1, "0123456789") : 0;
    const char *rest = p + major + 1 + minor;

    if (major == 0 || minor == 0 || (rest[0] != '\0' && strcmp(rest, "t") != 0))
        return fail(err, err_len, "%s: expected a Python version like 3.13 or 3.13t, got '%s'",
                    source, tag);
    if ((size_t)snprintf(path, sizeof(path), "%s-%s", cfg->worker_binary, tag) >= sizeof(path))
        return fail(err, err_len, "%s: path too long", source);
    if (access(path, X_OK) != 0)
        return fail(err, err_len,
                    "%s %s: no worker binary %s (%s); build it with "
                    "-DRINGMASTER_EXTRA_PYTHONS=/path/to/python%s (docs/modes.md)",
                    source, tag, path, strerror(errno), tag);
    memcpy(cfg->worker_binary, path, strlen(path) + 1);
    return 0;
}

/* --worker-binary and --python both choose the worker: a flag beats a
 * variable, and both at the same level is an error rather than a guess. */
static int resolve_worker_binary(rm_config_t *cfg, const char *flag_binary,
                                 const char *flag_python, char *err, size_t err_len)
{
    const char *env_binary = getenv("RINGMASTER_WORKER_BINARY");
    const char *env_python = getenv("RINGMASTER_PYTHON");

    if (flag_binary != NULL && flag_python != NULL)
        return fail(err, err_len, "--worker-binary and --python both choose the worker; give one");
    if (flag_binary != NULL) {
        snprintf(cfg->worker_binary, sizeof(cfg->worker_binary), "%s", flag_binary);
        return 0;
    }
    if (flag_python != NULL)
        return worker_for_python(cfg, flag_python, "--python", err, err_len);
    if (env_binary != NULL && *env_binary && env_python != NULL && *env_python)
        return fail(err, err_len,
                    "RINGMASTER_WORKER_BINARY and RINGMASTER_PYTHON both choose the worker; "
                    "set one");
    if (env_binary != NULL && *env_binary)
        snprintf(cfg->worker_binary, sizeof(cfg->worker_binary), "%s", env_binary);
    else if (env_python != NULL && *env_python)
        return worker_for_python(cfg, env_python, "RINGMASTER_PYTHON", err, err_len);
    return 0;
}

static void default_worker_binary(rm_config_t *cfg)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        snprintf(cfg->worker_binary, sizeof(cfg->worker_binary), "ringmaster-worker");
        return;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    size_t dir_len = slash ? (size_t)(slash - self) : 0;
    static const char name[] = "/ringmaster-worker";
    if (dir_len + sizeof(name) > sizeof(cfg->worker_binary))
        dir_len = 0;
    memcpy(cfg->worker_binary, self, dir_len);
    memcpy(cfg->worker_binary + dir_len, name, sizeof(name));
}

static void set_defaults(rm_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->bind_host, sizeof(cfg->bind_host), "127.0.0.1");
    cfg->bind_port = 8000;
    cfg->workers = rm_config_usable_cpus();
    cfg->threads = 1;
    cfg->mode = "auto";
    usable_cpu_list(cfg);
    cfg->log_level = RM_LOG_INFO;
    cfg->log_format = RM_LOG_PLAIN;
    cfg->chunk_size = 16384;
    cfg->chunk_count = 4096;
    cfg->lane_capacity = 1024;
    cfg->recv_buffers = 512;
    cfg->max_connections = 10000;
    cfg->max_head = 16384;
    cfg->max_target = 8192;
    cfg->max_body = 1024 * 1024;
    cfg->body_spill_size = 1024 * 1024;
    const char *tmp = getenv("TMPDIR");
    snprintf(cfg->spill_dir, sizeof(cfg->spill_dir), "%s",
             tmp && tmp[0] == '/' && strlen(tmp) < sizeof(cfg->spill_dir) ? tmp : "/tmp");
    cfg->graceful_timeout_ms = 30000;
    cfg->request_timeout_ms = 30000;
    cfg->idle_timeout_ms = 60000;
    cfg->header_timeout_ms = 10000;
    cfg->body_timeout_ms = 30000;
    cfg->keepalive_timeout_ms = 5000;
    cfg->write_timeout_ms = 30000;
    cfg->queue_timeout_ms = 30000;
    cfg->max_rss_mib = UINT64_MAX; /* unset: resolved from the memory limit */
    cfg->max_queued = 4096;
    cfg->worker_queue = 1024;
    cfg->startup_timeout_ms = 60000;
    cfg->backlog = 4096;
    cfg->control_enabled = true;
    cfg->control_path_default = true;
    default_worker_binary(cfg);
}

/* Check an app-interface flag's value the way the worker will apply it, and
 * keep it to pass on. `source` is the flag or the variable it came from. */
static int set_app_opt(const char **slot, enum rm_app_opt opt, const char *value,
                       const char *source, char *err, size_t err_len)
{
    rm_app_conf_t scratch;
    char why[256];

    rm_app_conf_init(&scratch);
    if (rm_app_conf_set(&scratch, opt, value, why, sizeof(why)) < 0) {
        /* `why` names the flag ("--root-path: ..."); name the variable instead. */
        const char *colon = strstr(why, ": ");
        if (source[0] != '-' && colon != NULL)
            return fail(err, err_len, "%s: %s", source, colon + 2);
        return fail(err, err_len, "%s", why);
    }
    *slot = value;
    return 0;
}

/* Environment first, so that flags parsed afterwards override it. */
static int apply_env(rm_config_t *cfg, char *err, size_t err_len)
{
    const char *v;
    int rc;
    if ((v = getenv("RINGMASTER_BIND")) && *v &&
        (rc = parse_bind(cfg, v, "RINGMASTER_BIND", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_METRICS")) && *v &&
        (rc = parse_metrics(cfg, v, "RINGMASTER_METRICS", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_ACCESS_LOG")) && *v)
        cfg->access_log = v;
    if ((v = getenv("RINGMASTER_ACCESS_LOG_QUERY")) && *v &&
        parse_flag_value(v, &cfg->access_log_query))
        return fail(err, err_len, "RINGMASTER_ACCESS_LOG_QUERY: expected off or on, got '%s'", v);
    if ((v = getenv("RINGMASTER_ACCESS_LOG_FORMAT")) && *v &&
        rm_access_log_parse_format(v, &cfg->access_log_format))
        return fail(err, err_len, "RINGMASTER_ACCESS_LOG_FORMAT: expected combined|json, got '%s'",
                    v);
    if ((v = getenv("WEB_CONCURRENCY")) && *v &&
        (rc = parse_workers(cfg, v, "WEB_CONCURRENCY", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_WORKERS")) && *v &&
        (rc = parse_workers(cfg, v, "RINGMASTER_WORKERS", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_THREADS")) && *v &&
        (rc = parse_threads(cfg, v, "RINGMASTER_THREADS", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_TIMEOUT")) && *v &&
        (rc = parse_request_timeout(cfg, v, "RINGMASTER_TIMEOUT", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_MODE")) && *v &&
        (rc = parse_mode(cfg, v, "RINGMASTER_MODE", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_MAX_BODY_SIZE")) && *v &&
        (rc = parse_body_size(&cfg->max_body, v, "RINGMASTER_MAX_BODY_SIZE", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_BODY_SPILL_SIZE")) && *v &&
        (rc = parse_body_size(&cfg->body_spill_size, v, "RINGMASTER_BODY_SPILL_SIZE", err,
                              err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_SPILL_DIR")) && *v &&
        (rc = parse_spill_dir(cfg, v, "RINGMASTER_SPILL_DIR", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_GRACEFUL_TIMEOUT")) && *v &&
        (rc = parse_graceful_timeout(cfg, v, "RINGMASTER_GRACEFUL_TIMEOUT", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_MAX_RSS")) && *v &&
        (rc = parse_max_rss(cfg, v, "RINGMASTER_MAX_RSS", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_PIN")) && *v && parse_flag_value(v, &cfg->pin))
        return fail(err, err_len, "RINGMASTER_PIN: expected 1 or 0, got '%s'", v);
    /* RINGMASTER_WORKER_BINARY and RINGMASTER_PYTHON: resolve_worker_binary. */
    if ((v = getenv("RINGMASTER_INTERFACE")) && *v &&
        (rc = set_app_opt(&cfg->interface, RM_APP_OPT_INTERFACE, v, "RINGMASTER_INTERFACE", err,
                          err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_ROOT_PATH")) && *v &&
        (rc = set_app_opt(&cfg->root_path, RM_APP_OPT_ROOT_PATH, v, "RINGMASTER_ROOT_PATH", err,
                          err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_LIFESPAN")) && *v &&
        (rc = set_app_opt(&cfg->lifespan, RM_APP_OPT_LIFESPAN, v, "RINGMASTER_LIFESPAN", err,
                          err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_LOOP")) && *v &&
        (rc = set_app_opt(&cfg->loop, RM_APP_OPT_LOOP, v, "RINGMASTER_LOOP", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_MAX_CONCURRENCY")) && *v &&
        (rc = set_app_opt(&cfg->max_concurrency, RM_APP_OPT_MAX_CONCURRENCY, v,
                          "RINGMASTER_MAX_CONCURRENCY", err, err_len)))
        return rc;
    /* gunicorn's name first, so that ours wins when both are set. */
    if ((v = getenv("FORWARDED_ALLOW_IPS")) && *v &&
        (rc = set_app_opt(&cfg->forwarded_allow_ips, RM_APP_OPT_FORWARDED_ALLOW_IPS, v,
                          "FORWARDED_ALLOW_IPS", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_FORWARDED_ALLOW_IPS")) && *v &&
        (rc = set_app_opt(&cfg->forwarded_allow_ips, RM_APP_OPT_FORWARDED_ALLOW_IPS, v,
                          "RINGMASTER_FORWARDED_ALLOW_IPS", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_CONTROL")) && *v &&
        (rc = parse_control(cfg, v, "RINGMASTER_CONTROL", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_CONTROL_GROUP")) && *v &&
        (rc = parse_control_group(cfg, v, "RINGMASTER_CONTROL_GROUP", err, err_len)))
        return rc;
    if ((v = getenv("RINGMASTER_WORKER_SECCOMP")) && *v &&
        parse_flag_value(v, &cfg->worker_seccomp))
        return fail(err, err_len, "RINGMASTER_WORKER_SECCOMP: expected 1 or 0, got '%s'", v);
    if ((v = getenv("RINGMASTER_ATTACH_ONLY")) && *v && parse_flag_value(v, &cfg->attach_only))
        return fail(err, err_len, "RINGMASTER_ATTACH_ONLY: expected 1 or 0, got '%s'", v);
    if ((v = getenv("RINGMASTER_LOG_LEVEL")) && *v && rm_log_parse_level(v, &cfg->log_level))
        return fail(err, err_len, "RINGMASTER_LOG_LEVEL: expected error|warn|info|debug");
    if ((v = getenv("RINGMASTER_LOG_FORMAT")) && *v && rm_log_parse_format(v, &cfg->log_format))
        return fail(err, err_len, "RINGMASTER_LOG_FORMAT: expected plain|json");
    return 0;
}

int rm_config_parse(rm_config_t *cfg, int argc, char **argv, char *err, size_t err_len)
{
    int rc, opt;
    uint64_t n;
    const char *flag_binary = NULL, *flag_python = NULL;
    const char *user = getenv("RINGMASTER_USER"), *group = getenv("RINGMASTER_GROUP");
    const char *user_src = "RINGMASTER_USER", *group_src = "RINGMASTER_GROUP";
    set_defaults(cfg);
    if ((rc = apply_env(cfg, err, err_len)))
        return rc;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+:b:w:t:h", options, NULL)) != -1) {
        switch (opt) {
        case 'b':
            if ((rc = parse_bind(cfg, optarg, "--bind", err, err_len)))
                return rc;
            break;
        case OPT_METRICS:
            if ((rc = parse_metrics(cfg, optarg, "--metrics", err, err_len)))
                return rc;
            break;
        case OPT_ACCESS_LOG:
            if (!*optarg)
                return fail(err, err_len, "--access-log: expected - or a path");
            cfg->access_log = optarg;
            break;
        case OPT_ACCESS_LOG_QUERY:
            if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0)
                return fail(err, err_len, "--access-log-query: expected off or on, got '%s'",
                            optarg);
            cfg->access_log_query = strcmp(optarg, "on") == 0;
            break;
        case OPT_WORKER_SECCOMP:
            cfg->worker_seccomp = true;
            break;
        case OPT_USER:
            user = optarg;
            user_src = "--user";
            break;
        case OPT_GROUP:
            group = optarg;
            group_src = "--group";
            break;
        case OPT_ACCESS_LOG_FORMAT:
            if (rm_access_log_parse_format(optarg, &cfg->access_log_format))
                return fail(err, err_len, "--access-log-format: expected combined|json, got '%s'",
                            optarg);
            break;
        case 'w':
            if ((rc = parse_workers(cfg, optarg, "--workers", err, err_len)))
                return rc;
            break;
        case OPT_THREADS:
            if ((rc = parse_threads(cfg, optarg, "--threads", err, err_len)))
                return rc;
            break;
        case OPT_MODE:
            if ((rc = parse_mode(cfg, optarg, "--mode", err, err_len)))
                return rc;
            break;
        case OPT_PYTHON:
            flag_python = optarg;
            break;
        case OPT_PIN:
            cfg->pin = true;
            break;
        case OPT_WORKER_BINARY:
            flag_binary = optarg;
            break;
        case OPT_LOG_LEVEL:
            if (rm_log_parse_level(optarg, &cfg->log_level))
                return fail(err, err_len, "--log-level: expected error|warn|info|debug, got '%s'",
                            optarg);
            break;
        case OPT_LOG_FORMAT:
            if (rm_log_parse_format(optarg, &cfg->log_format))
                return fail(err, err_len, "--log-format: expected plain|json, got '%s'", optarg);
            break;
        case OPT_MAX_BODY:
            if ((rc = parse_body_size(&cfg->max_body, optarg, "--max-body-size", err, err_len)))
                return rc;
            break;
        case OPT_BODY_SPILL_SIZE:
            if ((rc = parse_body_size(&cfg->body_spill_size, optarg, "--body-spill-size", err,
                                      err_len)))
                return rc;
            break;
        case OPT_SPILL_DIR:
            if ((rc = parse_spill_dir(cfg, optarg, "--spill-dir", err, err_len)))
                return rc;
            break;
        case OPT_MAX_CONNECTIONS:
            if (!parse_u64(optarg, 1, 1u << 20, &n))
                return fail(err, err_len, "--max-connections: expected 1..1048576, got '%s'",
                            optarg);
            cfg->max_connections = (uint32_t)n;
            break;
        case OPT_GRACEFUL_TIMEOUT:
            if ((rc = parse_graceful_timeout(cfg, optarg, "--graceful-timeout", err, err_len)))
                return rc;
            break;
        case OPT_WORKERS_MIN:
        case OPT_WORKERS_MAX:
            if (!parse_u64(optarg, 1, 512, &n))
                return fail(err, err_len, "%s: expected 1..512, got '%s'",
                            opt == OPT_WORKERS_MIN ? "--workers-min" : "--workers-max", optarg);
            if (opt == OPT_WORKERS_MIN)
                cfg->workers_min = (uint32_t)n;
            else
                cfg->workers_max = (uint32_t)n;
            break;
        case OPT_IDLE_TIMEOUT: {
            double secs;
            if (!parse_seconds(optarg, &secs))
                return fail(err, err_len, "--idle-timeout: expected seconds, got '%s'", optarg);
            cfg->idle_timeout_ms = (uint32_t)(secs * 1000.0 + 0.5);
            break;
        }
        case OPT_MAX_REQUESTS:
        case OPT_MAX_REQUESTS_JITTER:
            if (!parse_u64(optarg, 0, UINT32_MAX, &n))
                return fail(err, err_len, "%s: expected a number, got '%s'",
                            opt == OPT_MAX_REQUESTS ? "--max-requests" : "--max-requests-jitter",
                            optarg);
            if (opt == OPT_MAX_REQUESTS)
                cfg->max_requests = n;
            else
                cfg->max_requests_jitter = n;
            break;
        case OPT_MAX_RSS:
            if ((rc = parse_max_rss(cfg, optarg, "--max-rss", err, err_len)))
                return rc;
            break;
        case 't':
        case OPT_REQUEST_TIMEOUT:
            if ((rc = parse_request_timeout(cfg, optarg, "--timeout", err, err_len)))
                return rc;
            break;
        case OPT_HEADER_TIMEOUT:
        case OPT_BODY_TIMEOUT:
        case OPT_KEEPALIVE_TIMEOUT:
        case OPT_WRITE_TIMEOUT:
        case OPT_QUEUE_TIMEOUT: {
            static const char *const names[] = {
                [OPT_HEADER_TIMEOUT - OPT_HEADER_TIMEOUT] = "--header-timeout",
                [OPT_BODY_TIMEOUT - OPT_HEADER_TIMEOUT] = "--body-timeout",
                [OPT_KEEPALIVE_TIMEOUT - OPT_HEADER_TIMEOUT] = "--keepalive-timeout",
                [OPT_WRITE_TIMEOUT - OPT_HEADER_TIMEOUT] = "--write-timeout",
                [OPT_QUEUE_TIMEOUT - OPT_HEADER_TIMEOUT] = "--queue-timeout",
            };
            double secs;
            if (!parse_seconds(optarg, &secs))
                return fail(err, err_len, "%s: expected seconds (0.001 to 86400), got '%s'",
                            names[opt - OPT_HEADER_TIMEOUT], optarg);
            uint32_t ms = (uint32_t)(secs * 1000.0 + 0.5);
            if (opt == OPT_HEADER_TIMEOUT)
                cfg->header_timeout_ms = ms;
            else if (opt == OPT_BODY_TIMEOUT)
                cfg->body_timeout_ms = ms;
            else if (opt == OPT_KEEPALIVE_TIMEOUT)
                cfg->keepalive_timeout_ms = ms;
            else if (opt == OPT_WRITE_TIMEOUT)
                cfg->write_timeout_ms = ms;
            else
                cfg->queue_timeout_ms = ms;
            break;
        }
        case OPT_WORKER_QUEUE:
            if (!parse_u64(optarg, 1, 65536, &n))
                return fail(err, err_len, "--worker-queue: expected 1..65536, got '%s'", optarg);
            cfg->worker_queue = (uint32_t)n;
            break;
        case OPT_MAX_QUEUED:
            if (!parse_u64(optarg, 1, 1u << 22, &n))
                return fail(err, err_len, "--max-queued: expected 1..4194304, got '%s'", optarg);
            cfg->max_queued = (uint32_t)n;
            break;
        case OPT_CHUNK_SIZE:
            if (!parse_u64(optarg, 4096, 1u << 20, &n) || n % 4096)
                return fail(err, err_len,
                            "--chunk-size: expected a multiple of 4096 up to 1 MiB, got '%s'",
                            optarg);
            cfg->chunk_size = (uint32_t)n;
            break;
        case OPT_CHUNKS:
            if (!parse_u64(optarg, 64, 1u << 20, &n))
                return fail(err, err_len, "--chunks: expected 64..1048576, got '%s'", optarg);
            cfg->chunk_count = (uint32_t)n;
            break;
        case OPT_INTERFACE:
        case OPT_ROOT_PATH:
        case OPT_FORWARDED_ALLOW_IPS: {
            static const char *const flags[] = {"--interface", "--root-path",
                                                "--forwarded-allow-ips"};
            const char **slot = opt == OPT_INTERFACE   ? &cfg->interface
                                : opt == OPT_ROOT_PATH ? &cfg->root_path
                                                       : &cfg->forwarded_allow_ips;
            if ((rc = set_app_opt(slot, (enum rm_app_opt)(opt - OPT_INTERFACE), optarg,
                                  flags[opt - OPT_INTERFACE], err, err_len)))
                return rc;
            break;
        }
        case OPT_CONTROL:
            if ((rc = parse_control(cfg, optarg, "--control", err, err_len)))
                return rc;
            break;
        case OPT_CONTROL_GROUP:
            if ((rc = parse_control_group(cfg, optarg, "--control-group", err, err_len)))
                return rc;
            break;
        case OPT_ATTACH_ONLY:
            cfg->attach_only = true;
            break;
        case OPT_LIFESPAN:
        case OPT_LOOP:
        case OPT_MAX_CONCURRENCY: {
            /* The worker's app options, in enum rm_app_opt order from LIFESPAN. */
            static const char *const flags[] = {"--lifespan", "--loop", "--max-concurrency"};
            const char **slot = opt == OPT_LIFESPAN ? &cfg->lifespan
                                : opt == OPT_LOOP   ? &cfg->loop
                                                    : &cfg->max_concurrency;
            if ((rc = set_app_opt(slot, (enum rm_app_opt)(RM_APP_OPT_LIFESPAN + opt - OPT_LIFESPAN),
                                  optarg, flags[opt - OPT_LIFESPAN], err, err_len)))
                return rc;
            break;
        }
        case 'h':
            rm_config_usage(stdout);
            return RM_CONFIG_EXIT_OK;
        case OPT_VERSION:
            printf("ringmaster %s\n", RINGMASTER_VERSION);
            return RM_CONFIG_EXIT_OK;
        case ':':
            return fail(err, err_len, "option %s needs a value", argv[optind - 1]);
        default:
            return fail(err, err_len, "unknown option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind >= argc && !cfg->attach_only)
        return fail(err, err_len, "missing APP (module:attr or path/to/app.py); see --help");
    if (optind + 1 < argc)
        return fail(err, err_len, "unexpected argument '%s' after APP", argv[optind + 1]);
    cfg->app = optind < argc ? argv[optind] : "";
    if (!*cfg->app && !cfg->attach_only)
        return fail(err, err_len, "APP is empty");
    if (cfg->attach_only && !cfg->control_enabled)
        return fail(err, err_len, "--attach-only needs the control socket; drop --control none");
    if (cfg->worker_seccomp && !rm_seccomp_supported())
        return fail(err, err_len,
                    "--worker-seccomp: this build knows the system calls of x86_64 and aarch64 "
                    "only");
    if ((rc = rm_run_as_resolve(&cfg->run_as, user, group, geteuid(), getegid(), user_src,
                                group_src, err, err_len)))
        return rc;
    if (cfg->control_enabled && cfg->control_path_default &&
        (rc = default_control_path(cfg, err, err_len)))
        return rc;
    if ((rc = resolve_worker_binary(cfg, flag_binary, flag_python, err, err_len)))
        return rc;

    /* Autoscaling bounds default to the fixed pool; -w is clamped into them. */
    if (!cfg->workers_min)
        cfg->workers_min = cfg->workers_max && cfg->workers_max < cfg->workers ? cfg->workers_max
                                                                                : cfg->workers;
    if (!cfg->workers_max)
        cfg->workers_max = cfg->workers > cfg->workers_min ? cfg->workers : cfg->workers_min;
    if (cfg->workers_min > cfg->workers_max)
        return fail(err, err_len, "--workers-min %u is above --workers-max %u", cfg->workers_min,
                    cfg->workers_max);
    if (cfg->workers < cfg->workers_min)
        cfg->workers = cfg->workers_min;
    if (cfg->workers > cfg->workers_max)
        cfg->workers = cfg->workers_max;
    /* No --max-rss: a share of the container's memory limit (memlimit.h). */
    if (cfg->max_rss_mib == UINT64_MAX) {
        cfg->memory_limit = rm_memlimit_self();
        cfg->max_rss_mib = rm_memlimit_max_rss_mib(cfg->memory_limit, cfg->workers_max);
        cfg->max_rss_from_limit = cfg->max_rss_mib != 0;
    }
    /* Derived geometry: a lane holds what one worker may be handed, a head fits
     * in a chunk, and at most a quarter of the chunks wait in the kernel for reads. */
    while (cfg->lane_capacity < cfg->worker_queue)
        cfg->lane_capacity *= 2;
    if (cfg->max_head > cfg->chunk_size)
        cfg->max_head = cfg->chunk_size;
    if (cfg->max_target > cfg->max_head)
        cfg->max_target = cfg->max_head;
    if (cfg->recv_buffers > cfg->chunk_count / 4)
        cfg->recv_buffers = cfg->chunk_count / 4;
    /* The provided-buffer ring needs a power of two. */
    uint32_t rb = 1;
    while (rb * 2 <= cfg->recv_buffers)
        rb *= 2;
    cfg->recv_buffers = rb;
    return 0;
}
