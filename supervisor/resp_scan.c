/*
 * resp_scan.c - the status and the end of a response head, from the bytes
 * queued for sending (exchange.h).
 */
#include "ringmaster/exchange.h"

#include <string.h>

/* "HTTP/x.y NNN": the status, or 0 when the prefix is not that. */
static uint16_t status_of(const char *p)
{
    if (memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' || p[8] != ' ')
        return 0;
    unsigned v = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v >= 100 && v <= 599 ? (uint16_t)v : 0;
}

size_t rm_resp_scan_feed(rm_resp_scan_t *scan, const char *data, size_t len)
{
    static const char end[] = "\r\n\r\n";
    size_t i = 0;
    while (i < len && !scan->head_done) {
        if (scan->prefix_len == sizeof(scan->prefix) && scan->crlf == 0) {
            /* Past the status line's start: only a CR can begin the end. */
            const char *cr = memchr(data + i, '\r', len - i);
            if (!cr)
                return 0;
            i = (size_t)(cr - data);
        }
        char ch = data[i++];
        if (scan->prefix_len < sizeof(scan->prefix)) {
            scan->prefix[scan->prefix_len++] = ch;
            if (scan->prefix_len == sizeof(scan->prefix))
                scan->status = status_of(scan->prefix);
        }
        if (ch == end[scan->crlf]) {
            if (++scan->crlf < 4)
                continue;
        } else {
            scan->crlf = ch == '\r' ? 1 : 0;
            continue;
        }
        /* A head ended. An interim 1xx one is followed by the real head. */
        if (scan->status >= 100 && scan->status < 200 && scan->status != 101) {
            memset(scan, 0, sizeof(*scan));
            continue;
        }
        scan->head_done = true;
    }
    return len - i;
}
