/*
 * http_date.h - the Date field value (RFC 9110 5.6.7, IMF-fixdate), made at
 * most once a second per cache.
 *
 * Every response from a server with a clock carries Date (RFC 9110 6.6.1):
 * the worker's answers and the supervisor's own (400, 408, 503...). A cache
 * belongs to one thread; it is plain memory, so a test can make its own.
 */
#ifndef RINGMASTER_HTTP_DATE_H
#define RINGMASTER_HTTP_DATE_H

#include <time.h>

#define RM_HTTP_DATE_LEN 29 /* strlen("Sun, 06 Nov 1994 08:49:37 GMT") */

typedef struct rm_http_date {
    time_t sec;    /* second `text` was made for (0: never) */
    char text[32]; /* IMF-fixdate, NUL-terminated */
} rm_http_date_t;

/* The current date, RM_HTTP_DATE_LEN characters, valid until the next call
 * with the same cache. */
const char *rm_http_date_get(rm_http_date_t *cache);

/* The date for `when`, written into the cache (for tests and for callers
 * that already read the clock). */
const char *rm_http_date_at(rm_http_date_t *cache, time_t when);

#endif
