/*
 * log.h - one logging macro for every process.
 *
 * Lines go to stderr prefixed with the role and pid; with RM_LOG_JSON each line
 * is one JSON object instead. The level is checked before the arguments are
 * evaluated. Configuration is a plain struct a test can reset.
 */
#ifndef RINGMASTER_LOG_H
#define RINGMASTER_LOG_H

#include <stdbool.h>

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

void rm_log_write(rm_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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
