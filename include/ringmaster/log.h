/*
 * log.h - one logging macro for every process.
 *
 * Records go to stderr prefixed with the role and pid; with RM_LOG_JSON each
 * record is one JSON object instead. The level is checked before the arguments
 * are evaluated. Configuration is a plain struct a test can reset.
 *
 * A record is one write(2): its line and, when it has one, its detail (a
 * Python traceback: plain, the lines after the message; JSON, a "traceback"
 * field). So records from threads and processes sharing stderr never
 * interleave line by line (a write of up to PIPE_BUF bytes on a pipe is atomic;
 * a longer record is still one call).
 */
#ifndef RINGMASTER_LOG_H
#define RINGMASTER_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum rm_log_level {
    RM_LOG_ERROR = 0,
    RM_LOG_WARN = 1,
    RM_LOG_INFO = 2,
    RM_LOG_DEBUG = 3,
} rm_log_level_t;

typedef enum rm_log_format { RM_LOG_PLAIN = 0, RM_LOG_JSON = 1 } rm_log_format_t;

typedef struct rm_log_conf {
    rm_log_level_t level;
    rm_log_format_t format;
    const char *role; /* "supervisor", "worker 3": borrowed, must outlive logging */
} rm_log_conf_t;

extern rm_log_conf_t rm_log_conf; /* defaults: INFO, plain, "ringmaster" */

/* Restore the defaults (tests). */
void rm_log_reset(void);

/* Parse "error|warn|info|debug" / "plain|json". Return 0 or -EINVAL. */
int rm_log_parse_level(const char *text, rm_log_level_t *out);
int rm_log_parse_format(const char *text, rm_log_format_t *out);

/* Longest detail a record carries; a longer one keeps its end (where a
 * traceback names the exception) after a "...\n" line. */
#define RM_LOG_DETAIL_MAX (64 * 1024)

/* One record. At RM_LOG_ERROR it carries the calling thread's held detail
 * (rm_log_hold_detail), if any, and the detail is dropped. */
void rm_log_write(rm_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One record with an explicit detail: `detail` is borrowed (NULL: none); the
 * thread's held detail is left alone. */
void rm_log_write_detail(rm_log_level_t level, const char *detail, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Hold a detail (a traceback) for the calling thread's next error record,
 * for code that takes an exception where the request's name is not known and
 * leaves the logging to its caller. Takes ownership of `text` (from malloc;
 * NULL holds nothing); a detail still held is freed first. Thread-local. */
void rm_log_hold_detail(char *text);

/* Free the calling thread's held detail, if no record took it (the request
 * ended without an error record: the client left). */
void rm_log_drop_detail(void);

/* Take the calling thread's held detail back (the caller owns it; NULL if
 * none), to hold it again after logging another error in between. */
char *rm_log_take_detail(void);

#define RM_LOG(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) <= rm_log_conf.level)                                                            \
            rm_log_write((lvl), __VA_ARGS__);                                                      \
    } while (0)
#define RM_ERROR(...) RM_LOG(RM_LOG_ERROR, __VA_ARGS__)
#define RM_WARN(...) RM_LOG(RM_LOG_WARN, __VA_ARGS__)
#define RM_INFO(...) RM_LOG(RM_LOG_INFO, __VA_ARGS__)
#define RM_DEBUG(...) RM_LOG(RM_LOG_DEBUG, __VA_ARGS__)

#endif
