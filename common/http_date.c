/*
 * http_date.c - the Date field value, cached per second (http_date.h).
 */
#include "ringmaster/http_date.h"

#include <stdio.h>

const char *rm_http_date_at(rm_http_date_t *cache, time_t when)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;

    if ((when != cache->sec || cache->text[0] == '\0') && gmtime_r(&when, &tm) != NULL) {
        snprintf(cache->text, sizeof(cache->text), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
                 tm.tm_min, tm.tm_sec);
        cache->sec = when;
    }
    return cache->text;
}

const char *rm_http_date_get(rm_http_date_t *cache)
{
    return rm_http_date_at(cache, time(NULL)); /* vDSO: no syscall */
}
