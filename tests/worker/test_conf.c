/*
 * test_conf.c - ringmaster-worker's command line (worker/conf.c): the argv the
 * supervisor builds parses into the right struct, and every bad argument is
 * refused with a line that names the flag.
 */
#include "../../worker/conf.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

static char why[1024];

/* Parse a NULL-terminated list of arguments after argv[0]. */
static int parse(rm_worker_conf_t *conf, const char *const *args)
{
    char *argv[32] = {"ringmaster-worker"};
    int argc = 1;
    while (args[argc - 1] != NULL)
        argv[argc] = (char *)args[argc - 1], argc++;
    why[0] = '\0';
    return rm_worker_conf_parse(conf, argc, argv, why, sizeof(why));
}

#define REQUIRED                                                                                   \
    "--region-fd", "5", "--control-fd", "6", "--doorbell-fd", "7", "--loop-bell-fd", "8",          \
        "--lane", "3", "--app", "pkg.mod:app"

Test(conf, full_argv)
{
    rm_worker_conf_t c;
    const char *args[] = {REQUIRED, "--threads",    "4",    "--mode", "gil", "--log-level",
                          "debug",  "--log-format", "json", NULL};
    cr_assert_eq(parse(&c, args), 0, "why: %s", why);
    cr_assert_eq(c.region_fd, 5);
    cr_assert_eq(c.control_fd, 6);
    cr_assert_eq(c.doorbell_fd, 7);
    cr_assert_eq(c.loop_bell_fd, 8);
    cr_assert_eq(c.lane, 3u);
    cr_assert_str_eq(c.app_spec, "pkg.mod:app");
    cr_assert_eq(c.threads, 4u);
    cr_assert_eq(c.mode, RM_WORKER_MODE_GIL);
    cr_assert_eq(c.log_level, RM_LOG_DEBUG);
    cr_assert_eq(c.log_format, RM_LOG_JSON);
}

Test(conf, defaults)
{
    rm_worker_conf_t c;
    const char *args[] = {REQUIRED, NULL};
    cr_assert_eq(parse(&c, args), 0, "why: %s", why);
    cr_assert_eq(c.threads, 1u);
    cr_assert_eq(c.mode, RM_WORKER_MODE_AUTO);
    cr_assert_eq(c.log_level, RM_LOG_INFO);
    cr_assert_eq(c.log_format, RM_LOG_PLAIN);
}

Test(conf, equals_form_and_file_spec)
{
    rm_worker_conf_t c;
    const char *args[] = {"--region-fd=0",
                          "--control-fd=1",
                          "--doorbell-fd=2",
                          "--loop-bell-fd=3",
                          "--lane=0",
                          "--app=/srv/app dir/main.py:api",
                          NULL};
    cr_assert_eq(parse(&c, args), 0, "why: %s", why);
    cr_assert_eq(c.region_fd, 0);
    cr_assert_eq(c.lane, 0u);
    cr_assert_str_eq(c.app_spec, "/srv/app dir/main.py:api");
}

Test(conf, parses_twice)
{
    rm_worker_conf_t c;
    const char *args[] = {REQUIRED, "--threads", "2", NULL};
    cr_assert_eq(parse(&c, args), 0, "why: %s", why);
    cr_assert_eq(parse(&c, args), 0, "second parse (getopt state reset): %s", why);
    cr_assert_eq(c.threads, 2u);
}

Test(conf, help_and_version)
{
    rm_worker_conf_t c;
    const char *help[] = {"--help", NULL};
    const char *version[] = {"--version", NULL};
    cr_assert_eq(parse(&c, help), 1);
    cr_assert(strstr(why, "usage: ringmaster-worker") != NULL, "help text: %s", why);
    cr_assert_eq(parse(&c, version), 1);
    cr_assert(strncmp(why, "ringmaster-worker ", 18) == 0, "version text: %s", why);
}

/* Each missing required flag is named. */
Test(conf, required_flags)
{
    static const char *const flags[] = {"--region-fd",    "--control-fd", "--doorbell-fd",
                                        "--loop-bell-fd", "--lane",       "--app"};
    const char *full[] = {REQUIRED, NULL};
    for (size_t drop = 0; drop < 6; drop++) {
        const char *args[14];
        size_t n = 0;
        for (size_t i = 0; i < 12; i += 2)
            if (i / 2 != drop)
                args[n++] = full[i], args[n++] = full[i + 1];
        args[n] = NULL;
        rm_worker_conf_t c;
        cr_assert_eq(parse(&c, args), -EINVAL, "without %s", flags[drop]);
        cr_assert(strstr(why, flags[drop]) != NULL && strstr(why, "required") != NULL,
                  "without %s the message was: %s", flags[drop], why);
    }
}

/* Bad values: the message names the flag (or the argument) it refuses. */
static void refuse(const char *flag, const char *value, const char *named)
{
    rm_worker_conf_t c;
    const char *args[] = {REQUIRED, flag, value, NULL};
    cr_assert_eq(parse(&c, args), -EINVAL, "%s %s was accepted", flag, value ? value : "(none)");
    cr_assert(strstr(why, named) != NULL, "%s %s: message '%s' does not name '%s'", flag,
              value ? value : "(none)", why, named);
    cr_assert(strchr(why, '\n') == NULL, "message is not one line: %s", why);
}

Test(conf, bad_values)
{
    refuse("--region-fd", "-1", "--region-fd");
    refuse("--control-fd", "x", "--control-fd");
    refuse("--doorbell-fd", "99999999999", "--doorbell-fd");
    refuse("--loop-bell-fd", "-3", "--loop-bell-fd");
    refuse("--lane", "1e3", "--lane");
    refuse("--lane", "", "--lane");
    refuse("--threads", "0", "--threads");
    refuse("--threads", "257", "--threads");
    refuse("--threads", " 2", "--threads");
    refuse("--mode", "nogil", "--mode");
    refuse("--mode", "GIL", "--mode");
    refuse("--mode", "", "--mode");
    refuse("--log-level", "verbose", "--log-level");
    refuse("--log-format", "xml", "--log-format");
    refuse("--app", "module:", "--app");
    refuse("--app", ":app", "--app");
    refuse("--app", "", "--app");
    refuse("--bogus", "1", "--bogus");
    refuse("stray", NULL, "stray");
}

Test(conf, every_mode)
{
    static const struct {
        const char *text;
        rm_worker_mode_t mode;
    } modes[] = {
        {"auto", RM_WORKER_MODE_AUTO},
        {"gil", RM_WORKER_MODE_GIL},
        {"subinterpreters", RM_WORKER_MODE_SUBINTERPRETERS},
        {"free-threaded", RM_WORKER_MODE_FREE_THREADED},
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        rm_worker_conf_t c;
        const char *args[] = {REQUIRED, "--mode", modes[i].text, NULL};
        cr_assert_eq(parse(&c, args), 0, "--mode %s: %s", modes[i].text, why);
        cr_assert_eq(c.mode, modes[i].mode, "--mode %s", modes[i].text);
        cr_assert_str_eq(rm_worker_mode_name(c.mode), modes[i].text);
    }
    cr_assert_str_eq(rm_worker_mode_name((rm_worker_mode_t)99), "unknown");
}

Test(conf, missing_value)
{
    rm_worker_conf_t c;
    const char *args[] = {REQUIRED, "--threads", NULL};
    cr_assert_eq(parse(&c, args), -EINVAL);
    cr_assert(strstr(why, "--threads") != NULL, "message: %s", why);
}
