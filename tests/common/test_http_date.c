/*
 * test_http_date.c - common/http_date.c through its public header.
 */
#include "ringmaster/http_date.h"

#include <criterion/criterion.h>
#include <string.h>

Test(http_date, imf_fixdate)
{
    rm_http_date_t cache = {0};
    /* RFC 9110 5.6.7's own example. */
    const char *d = rm_http_date_at(&cache, 784111777);
    cr_expect_str_eq(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    cr_expect_eq(strlen(d), RM_HTTP_DATE_LEN);
    cr_expect_str_eq(rm_http_date_at(&cache, 0), "Thu, 01 Jan 1970 00:00:00 GMT");
}

Test(http_date, made_again_only_when_the_second_changes)
{
    rm_http_date_t cache = {0};
    rm_http_date_at(&cache, 784111777);
    cache.text[0] = 'X'; /* a stale text shows whether it was remade */
    cr_expect_eq(rm_http_date_at(&cache, 784111777)[0], 'X');
    cr_expect_str_eq(rm_http_date_at(&cache, 784111778), "Sun, 06 Nov 1994 08:49:38 GMT");
}

Test(http_date, now_is_a_date)
{
    rm_http_date_t cache = {0};
    const char *d = rm_http_date_get(&cache);
    cr_expect_eq(strlen(d), RM_HTTP_DATE_LEN);
    cr_expect(strcmp(d + RM_HTTP_DATE_LEN - 4, " GMT") == 0, "%s", d);
}
