/*
 * interface.h - how an app is called, and the flags that shape what a WSGI
 * app sees (no Python here; shared by the supervisor's flag checks and the
 * worker):
 *
 *   --interface auto|native|wsgi|asgi  how the app is called (default auto)
 *   --root-path PATH                 WSGI SCRIPT_NAME: where the app is mounted
 *   --forwarded-allow-ips LIST       peers whose X-Forwarded-* / Forwarded are believed
 *   --workers N                      worker processes the app may run in at once
 *                                    (wsgi.multiprocess; always passed by the supervisor)
 *   --lifespan auto|on|off           ASGI lifespan protocol (default auto)
 *   --loop auto|asyncio|uvloop       ASGI event loop per serving thread (default auto:
 *                                    uvloop when it imports)
 *   --max-concurrency N              ASGI requests one serving thread holds at once
 *                                    (default 1000)
 *
 * The supervisor checks the values once (exit 2 on a bad one) and passes each
 * flag to its workers only when the operator set it, so the defaults live in
 * rm_app_conf_init.
 */
#ifndef RINGMASTER_INTERFACE_H
#define RINGMASTER_INTERFACE_H

#include "ringmaster/forwarded.h"

#include <stddef.h>

typedef enum rm_interface {
    RM_INTERFACE_AUTO = 0, /* ASGI for a coroutine function of three arguments, WSGI when the
                              app takes two positional arguments, else native */
    RM_INTERFACE_NATIVE,   /* app(request) -> Response, bytes, str, dict or list */
    RM_INTERFACE_WSGI,     /* PEP 3333: app(environ, start_response) -> iterable of bytes */
    RM_INTERFACE_ASGI,     /* ASGI 3.0: async app(scope, receive, send) */
} rm_interface_t;

/* ASGI lifespan: auto runs it and carries on if the app does not support it;
 * on makes any failure fatal; off never sends it. */
typedef enum rm_lifespan {
    RM_LIFESPAN_AUTO = 0,
    RM_LIFESPAN_ON,
    RM_LIFESPAN_OFF,
} rm_lifespan_t;

typedef enum rm_loop {
    RM_LOOP_AUTO = 0, /* uvloop when it imports, else asyncio */
    RM_LOOP_ASYNCIO,
    RM_LOOP_UVLOOP,
} rm_loop_t;

/* Which flag rm_app_conf_set is given. */
enum rm_app_opt {
    RM_APP_OPT_INTERFACE = 0,
    RM_APP_OPT_ROOT_PATH,
    RM_APP_OPT_FORWARDED_ALLOW_IPS,
    RM_APP_OPT_WORKERS,
    RM_APP_OPT_LIFESPAN,
    RM_APP_OPT_LOOP,
    RM_APP_OPT_MAX_CONCURRENCY,
};

typedef struct rm_app_conf {
    rm_interface_t interface;
    const char *root_path; /* borrowed (argv); "" for none; never ends in '/' */
    size_t root_path_len;
    rm_fwd_allow_t forwarded_allow; /* default RM_FWD_DEFAULT */
    unsigned workers;               /* processes of the pool at most (default 1) */
    rm_lifespan_t lifespan;         /* default auto */
    rm_loop_t loop;                 /* default auto */
    unsigned max_concurrency;       /* ASGI requests per serving thread at most (default 1000) */
} rm_app_conf_t;

/* The defaults: auto, no root path, forwarded headers believed from
 * 127.0.0.1 and ::1 only, one worker process, lifespan auto, loop auto,
 * 1000 ASGI requests per thread. */
void rm_app_conf_init(rm_app_conf_t *conf);

/* Apply one flag's value, checked. `value` must outlive `conf` (argv does).
 * Returns 0 or -EINVAL with one line in `why` that names the flag and says
 * what is wrong. */
int rm_app_conf_set(rm_app_conf_t *conf, enum rm_app_opt opt, const char *value, char *why,
                    size_t why_len);

/* "auto", "native", "wsgi" or "asgi"; -EINVAL for anything else. */
int rm_interface_parse(const char *text, rm_interface_t *out);

/* The flag spelling of `interface`. */
const char *rm_interface_name(rm_interface_t interface);

/* The flag spellings of a lifespan and a loop setting. */
const char *rm_lifespan_name(rm_lifespan_t lifespan);
const char *rm_loop_name(rm_loop_t loop);

#endif
