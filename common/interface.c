/*
 * interface.c - the app-interface flags (interface.h): parsed and checked
 * the same way by the supervisor, which refuses a bad value at start-up, and
 * by the worker, which applies it.
 */
#include "ringmaster/interface.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const interface_names[] = {
    [RM_INTERFACE_AUTO] = "auto",
    [RM_INTERFACE_NATIVE] = "native",
    [RM_INTERFACE_WSGI] = "wsgi",
    [RM_INTERFACE_ASGI] = "asgi",
};

static const char *const lifespan_names[] = {
    [RM_LIFESPAN_AUTO] = "auto",
    [RM_LIFESPAN_ON] = "on",
    [RM_LIFESPAN_OFF] = "off",
};

static const char *const loop_names[] = {
    [RM_LOOP_AUTO] = "auto",
    [RM_LOOP_ASYNCIO] = "asyncio",
    [RM_LOOP_UVLOOP] = "uvloop",
};

/* A decimal count from 1 to max into *out; -EINVAL otherwise. */
static int parse_count(const char *value, unsigned long max, unsigned *out)
{
    char *end;
    unsigned long n = strtoul(value, &end, 10);
    if (value[0] < '0' || value[0] > '9' || *end != '\0' || n < 1 || n > max)
        return -EINVAL;
    *out = (unsigned)n;
    return 0;
}

/* Index of `text` in names[0..n), or -1. */
static int name_index(const char *const *names, size_t n, const char *text)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(text, names[i]) == 0)
            return (int)i;
    return -1;
}

__attribute__((format(printf, 3, 4))) static int fail(char *why, size_t why_len, const char *fmt,
                                                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

int rm_interface_parse(const char *text, rm_interface_t *out)
{
    int i = name_index(interface_names, sizeof(interface_names) / sizeof(interface_names[0]), text);
    if (i < 0)
        return -EINVAL;
    *out = (rm_interface_t)i;
    return 0;
}

const char *rm_interface_name(rm_interface_t interface)
{
    if ((unsigned)interface >= sizeof(interface_names) / sizeof(interface_names[0]))
        return "unknown";
    return interface_names[interface];
}

const char *rm_lifespan_name(rm_lifespan_t lifespan)
{
    return (unsigned)lifespan < sizeof(lifespan_names) / sizeof(lifespan_names[0])
               ? lifespan_names[lifespan]
               : "?";
}

const char *rm_loop_name(rm_loop_t loop)
{
    return (unsigned)loop < sizeof(loop_names) / sizeof(loop_names[0]) ? loop_names[loop] : "?";
}

void rm_app_conf_init(rm_app_conf_t *conf)
{
    char why[128];

    memset(conf, 0, sizeof(*conf));
    conf->interface = RM_INTERFACE_AUTO;
    conf->root_path = "";
    conf->root_path_len = 0;
    conf->workers = 1;
    conf->lifespan = RM_LIFESPAN_AUTO;
    conf->loop = RM_LOOP_AUTO;
    conf->max_concurrency = 1000;
    /* The default list is a constant that parses. */
    (void)rm_fwd_allow_parse(&conf->forwarded_allow, RM_FWD_DEFAULT, why, sizeof(why));
}

/* A mount point is a path prefix: "/" and a trailing "/" mean the same as
 * none, and nothing in it may end the path or break a header line. */
static int set_root_path(rm_app_conf_t *conf, const char *value, char *why, size_t why_len)
{
    size_t len = strlen(value);

    if (len > 0 && value[0] != '/')
        return fail(why, why_len, "--root-path: '%s' must start with '/'", value);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c < 0x20 || c == 0x7f || c == '?' || c == '#' || c == '%')
            return fail(why, why_len,
                        "--root-path: '%s' holds a control character, '?', '#' or '%%' (give the "
                        "path decoded, as PATH_INFO shows it)",
                        value);
    }
    while (len > 0 && value[len - 1] == '/')
        len--;
    conf->root_path = value;
    conf->root_path_len = len;
    return 0;
}

int rm_app_conf_set(rm_app_conf_t *conf, enum rm_app_opt opt, const char *value, char *why,
                    size_t why_len)
{
    char inner[200];

    switch (opt) {
    case RM_APP_OPT_INTERFACE:
        if (rm_interface_parse(value, &conf->interface) < 0)
            return fail(why, why_len, "--interface: '%s' is not auto, native, wsgi or asgi", value);
        return 0;
    case RM_APP_OPT_ROOT_PATH:
        return set_root_path(conf, value, why, why_len);
    case RM_APP_OPT_FORWARDED_ALLOW_IPS:
        if (rm_fwd_allow_parse(&conf->forwarded_allow, value, inner, sizeof(inner)) < 0)
            return fail(why, why_len, "--forwarded-allow-ips: %s", inner);
        return 0;
    case RM_APP_OPT_WORKERS:
        if (parse_count(value, 1024, &conf->workers) < 0)
            return fail(why, why_len, "--workers: '%s' is not a number from 1 to 1024", value);
        return 0;
    case RM_APP_OPT_LIFESPAN: {
        int i = name_index(lifespan_names, 3, value);
        if (i < 0)
            return fail(why, why_len, "--lifespan: '%s' is not auto, on or off", value);
        conf->lifespan = (rm_lifespan_t)i;
        return 0;
    }
    case RM_APP_OPT_LOOP: {
        int i = name_index(loop_names, 3, value);
        if (i < 0)
            return fail(why, why_len, "--loop: '%s' is not auto, asyncio or uvloop", value);
        conf->loop = (rm_loop_t)i;
        return 0;
    }
    case RM_APP_OPT_MAX_CONCURRENCY:
        if (parse_count(value, 65536, &conf->max_concurrency) < 0)
            return fail(why, why_len, "--max-concurrency: '%s' is not a number from 1 to 65536",
                        value);
        return 0;
    }
    return fail(why, why_len, "unknown app option %d", (int)opt);
}
