/*
 * test_interface.c - common/interface.c: the app-interface flags, checked the
 * same way by the supervisor (exit 2 on a bad value) and the worker.
 */
#include "ringmaster/interface.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

static char why[256];

static int set(rm_app_conf_t *c, enum rm_app_opt opt, const char *value)
{
    why[0] = '\0';
    return rm_app_conf_set(c, opt, value, why, sizeof(why));
}

Test(interface, defaults)
{
    rm_app_conf_t c;
    uint8_t lo4[16] = {127, 0, 0, 1}, lo6[16] = {[15] = 1}, other[16] = {10, 0, 0, 1};
    rm_app_conf_init(&c);
    cr_assert_eq(c.interface, RM_INTERFACE_AUTO);
    cr_assert_str_eq(c.root_path, "");
    cr_assert_eq(c.root_path_len, 0u);
    cr_assert_eq(c.workers, 1u);
    cr_assert(rm_fwd_allow_match(&c.forwarded_allow, 4, lo4));
    cr_assert(rm_fwd_allow_match(&c.forwarded_allow, 6, lo6));
    cr_assert(!rm_fwd_allow_match(&c.forwarded_allow, 4, other));
}

Test(interface, interface_names_round_trip)
{
    const char *names[] = {"auto", "native", "wsgi", "asgi"};
    for (int i = 0; i < 4; i++) {
        rm_interface_t v;
        cr_assert_eq(rm_interface_parse(names[i], &v), 0, "%s", names[i]);
        cr_assert_str_eq(rm_interface_name(v), names[i]);
    }
    rm_app_conf_t c;
    rm_app_conf_init(&c);
    cr_assert_eq(set(&c, RM_APP_OPT_INTERFACE, "rsgi"), -EINVAL);
    cr_assert(strstr(why, "--interface") && strstr(why, "'rsgi'"), "why: %s", why);
    cr_assert_eq(set(&c, RM_APP_OPT_INTERFACE, "WSGI"), -EINVAL, "names are lowercase");
    cr_assert_eq(set(&c, RM_APP_OPT_INTERFACE, "wsgi"), 0);
    cr_assert_eq(c.interface, RM_INTERFACE_WSGI);
    cr_assert_eq(set(&c, RM_APP_OPT_INTERFACE, "asgi"), 0);
    cr_assert_eq(c.interface, RM_INTERFACE_ASGI);
}

Test(interface, asgi_flags)
{
    rm_app_conf_t c;
    rm_app_conf_init(&c);
    cr_assert_eq(c.lifespan, RM_LIFESPAN_AUTO);
    cr_assert_eq(c.loop, RM_LOOP_AUTO);
    cr_assert_eq(c.max_concurrency, 1000u);
    cr_assert_eq(set(&c, RM_APP_OPT_LIFESPAN, "on"), 0);
    cr_assert_eq(c.lifespan, RM_LIFESPAN_ON);
    cr_assert_str_eq(rm_lifespan_name(c.lifespan), "on");
    cr_assert_eq(set(&c, RM_APP_OPT_LIFESPAN, "yes"), -EINVAL);
    cr_assert(strstr(why, "--lifespan") && strstr(why, "'yes'"), "why: %s", why);
    cr_assert_eq(set(&c, RM_APP_OPT_LOOP, "uvloop"), 0);
    cr_assert_eq(c.loop, RM_LOOP_UVLOOP);
    cr_assert_str_eq(rm_loop_name(c.loop), "uvloop");
    cr_assert_eq(set(&c, RM_APP_OPT_LOOP, "trio"), -EINVAL);
    cr_assert(strstr(why, "--loop"), "why: %s", why);
    cr_assert_eq(set(&c, RM_APP_OPT_MAX_CONCURRENCY, "64"), 0);
    cr_assert_eq(c.max_concurrency, 64u);
    const char *bad[] = {"0", "65537", "-1", "12x", "", NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        cr_assert_eq(set(&c, RM_APP_OPT_MAX_CONCURRENCY, bad[i]), -EINVAL, "'%s'", bad[i]);
        cr_assert(strstr(why, "--max-concurrency") != NULL, "why: %s", why);
    }
    cr_assert_eq(c.max_concurrency, 64u, "a refused value changes nothing");
}

Test(interface, root_path_is_normalised_and_checked)
{
    rm_app_conf_t c;
    rm_app_conf_init(&c);
    cr_assert_eq(set(&c, RM_APP_OPT_ROOT_PATH, "/app/"), 0, "why: %s", why);
    cr_assert_eq(c.root_path_len, 4u, "the trailing slash is not part of SCRIPT_NAME");
    cr_assert_eq(strncmp(c.root_path, "/app", c.root_path_len), 0);
    cr_assert_eq(set(&c, RM_APP_OPT_ROOT_PATH, "/"), 0);
    cr_assert_eq(c.root_path_len, 0u, "'/' is the same as no root path");
    cr_assert_eq(set(&c, RM_APP_OPT_ROOT_PATH, ""), 0);
    cr_assert_eq(c.root_path_len, 0u);
    cr_assert_eq(set(&c, RM_APP_OPT_ROOT_PATH, "/caf\xc3\xa9"), 0, "UTF-8 is fine");

    const char *bad[] = {"app", "/a?b", "/a#b", "/a%20b", "/a\r\nX: y", "/a\tb", NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        cr_assert_eq(set(&c, RM_APP_OPT_ROOT_PATH, bad[i]), -EINVAL, "'%s' accepted", bad[i]);
        cr_assert(strstr(why, "--root-path") != NULL, "why: %s", why);
    }
}

Test(interface, forwarded_allow_ips_and_workers)
{
    rm_app_conf_t c;
    uint8_t a[16] = {10, 1, 2, 3};
    rm_app_conf_init(&c);
    cr_assert_eq(set(&c, RM_APP_OPT_FORWARDED_ALLOW_IPS, "10.0.0.0/8"), 0, "why: %s", why);
    cr_assert(rm_fwd_allow_match(&c.forwarded_allow, 4, a));
    cr_assert_eq(set(&c, RM_APP_OPT_FORWARDED_ALLOW_IPS, "10.0.0.0/8,nope"), -EINVAL);
    cr_assert(strstr(why, "--forwarded-allow-ips") && strstr(why, "'nope'"), "why: %s", why);
    cr_assert_eq(set(&c, RM_APP_OPT_WORKERS, "4"), 0);
    cr_assert_eq(c.workers, 4u);
    cr_assert_eq(set(&c, RM_APP_OPT_WORKERS, "0"), -EINVAL);
    cr_assert_eq(set(&c, RM_APP_OPT_WORKERS, "2x"), -EINVAL);
    cr_assert_eq(set(&c, RM_APP_OPT_WORKERS, "-1"), -EINVAL);
}
