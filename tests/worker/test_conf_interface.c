/*
 * test_conf_interface.c - the app-interface flags on ringmaster-worker's
 * command line (worker/conf.c with common/interface.c): what the supervisor
 * passes lands in conf->iface, and a bad value is refused naming the flag.
 */
#include "../../worker/conf.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

static char why[1024];

static int parse(rm_worker_conf_t *conf, const char *const *extra)
{
    char *argv[32] = {"ringmaster-worker",
                      "--region-fd",
                      "5",
                      "--control-fd",
                      "6",
                      "--doorbell-fd",
                      "7",
                      "--loop-bell-fd",
                      "8",
                      "--lane",
                      "0",
                      "--app",
                      "app:app"};
    int argc = 13;
    for (int i = 0; extra[i] != NULL; i++)
        argv[argc++] = (char *)extra[i];
    why[0] = '\0';
    return rm_worker_conf_parse(conf, argc, argv, why, sizeof(why));
}

Test(conf_interface, defaults_when_not_passed)
{
    rm_worker_conf_t c;
    const char *none[] = {NULL};
    cr_assert_eq(parse(&c, none), 0, "why: %s", why);
    cr_assert_eq(c.iface.interface, RM_INTERFACE_AUTO);
    cr_assert_eq(c.iface.root_path_len, 0u);
    cr_assert_eq(c.iface.workers, 1u);
    cr_assert(!c.iface.forwarded_allow.any);
    cr_assert_eq(c.iface.forwarded_allow.count, 2u, "127.0.0.1 and ::1");
}

Test(conf_interface, all_flags)
{
    rm_worker_conf_t c;
    const char *args[] = {"--interface", "wsgi", "--root-path=/mount/",
                          "--workers",   "3",    "--forwarded-allow-ips",
                          "*",           NULL};
    cr_assert_eq(parse(&c, args), 0, "why: %s", why);
    cr_assert_eq(c.iface.interface, RM_INTERFACE_WSGI);
    cr_assert_eq(c.iface.root_path_len, 6u);
    cr_assert_eq(strncmp(c.iface.root_path, "/mount", 6), 0);
    cr_assert_eq(c.iface.workers, 3u);
    cr_assert(c.iface.forwarded_allow.any);
}

Test(conf_interface, bad_values_name_the_flag)
{
    rm_worker_conf_t c;
    const char *bad[][3] = {{"--interface", "rsgi", NULL},
                            {"--root-path", "relative", NULL},
                            {"--forwarded-allow-ips", "10.0.0.0/99", NULL},
                            {"--workers", "0", NULL}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(parse(&c, bad[i]), -EINVAL, "%s %s accepted", bad[i][0], bad[i][1]);
        cr_assert(strstr(why, bad[i][0]) != NULL, "%s %s: why '%s' does not name the flag",
                  bad[i][0], bad[i][1], why);
    }
}
