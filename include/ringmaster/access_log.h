/*
 * access_log.h - one line per request: formatting (pure) and a writer that
 * never blocks the event loop.
 *
 * Formats:
 *   combined  Apache/NGINX "combined":
 *             HOST - - [DD/Mon/YYYY:HH:MM:SS +0000] "REQUEST" STATUS BYTES "REFERER" "AGENT"
 *             BYTES is the response body ("-" when 0), STATUS "-" when unknown;
 *             '"', '\' and bytes outside printable ASCII are escaped (\" \\ \xHH).
 *   json      one object per line: time (RFC 3339, UTC, ms), remote_addr,
 *             request, method, path, protocol (null for a malformed request),
 *             status (null when unknown), bytes, duration_ms, referer,
 *             user_agent (null when absent).
 *
 * The writer: the event loop appends formatted lines to a bounded buffer; a
 * thread of its own swaps it out and writes it. When the buffer is full the
 * line is dropped and counted: a slow disk or a full pipe never stalls the
 * loop.
 */
#ifndef RINGMASTER_ACCESS_LOG_H
#define RINGMASTER_ACCESS_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum rm_access_log_format {
    RM_ACCESS_LOG_COMBINED = 0,
    RM_ACCESS_LOG_JSON = 1,
} rm_access_log_format_t;

/* Parse "combined" or "json". Returns 0 or -EINVAL. */
int rm_access_log_parse_format(const char *text, rm_access_log_format_t *out);

/* A piece of text that is not NUL-terminated; ptr NULL = absent. */
typedef struct rm_text {
    const char *ptr;
    size_t len;
} rm_text_t;

typedef struct rm_access_entry {
    const char *remote;                 /* client address as text ("127.0.0.1", "::1"), or "-" */
    int64_t time_unix_ns;               /* when the request began */
    rm_text_t line;                     /* request line as sent, or absent */
    rm_text_t method, target, protocol; /* absent when the request was malformed */
    rm_text_t referer, user_agent;      /* absent when not sent */
    int status;                         /* 0 when unknown */
    uint64_t body_bytes;
    uint64_t duration_us;
} rm_access_entry_t;

/* Format one line, ending in '\n', into out[0..cap). Returns its length;
 * a line that does not fit is cut short (still ending in '\n'). cap >= 2. Pure. */
size_t rm_access_log_format_line(rm_access_log_format_t fmt, const rm_access_entry_t *e, char *out,
                                 size_t cap);

/* --access-log-query off: the length of `target` without its query string
 * (everything from the first '?'). Pure. */
size_t rm_access_log_target_len(const char *target, size_t len);

/* The same for a raw request line ("METHOD TARGET PROTO", possibly
 * malformed): removes, in place, each run from a '?' to the next space or the
 * end. Returns the new length. Pure. */
size_t rm_access_log_strip_query(char *line, size_t len);

#define RM_ACCESS_LOG_BUFFER (1u << 20) /* bytes of lines waiting for the writer */

typedef struct rm_access_log {
    int fd; /* owned unless it is stdout */
    bool own_fd;
    bool started; /* the thread runs */
    bool stop;    /* under lock: the writer flushes and exits */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    char *fill; /* owned: lines the loop appends to (under lock) */
    size_t fill_len;
    char *drain; /* owned: lines the writer is writing (writer only) */
    size_t cap;
    uint64_t write_errors; /* writer only */
} rm_access_log_t;

/* Open `path` ("-" = standard output) for appending and start the writer.
 * A file is created mode 0640 (client addresses and paths are not for every
 * local user); an existing file keeps its mode.
 * Returns 0, or -errno after printing one readable line. */
int rm_access_log_start(rm_access_log_t *log, const char *path);

/* Queue one line (event loop). Never blocks on I/O: returns false, and the
 * line is dropped, when the buffer cannot take it. */
bool rm_access_log_submit(rm_access_log_t *log, const char *line, size_t len);

/* Write what is queued, stop the thread, close the file. Safe on a log that
 * never started (zeroed). */
void rm_access_log_stop(rm_access_log_t *log);

#endif
