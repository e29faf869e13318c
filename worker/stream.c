/*
 * stream.c - a response's bytes into chunks and completions, within the send
 * window (stream.h).
 */
#include "stream.h"
#include "worker.h"

#include <errno.h>
#include <time.h>

#define WAIT_FIRST_NS 20000L /* first sleep while the window is full */
#define WAIT_MAX_NS 2000000L /* sleeps double up to this */

void rm_out_init(rm_out_t *out, rm_serve_thread_t *t, uint64_t req_id, const rm_req_meta_t *live)
{
    /* Field by field: the window array needs no zeroing (window_count says
     * how much of it counts), and this runs for every request. */
    out->t = t;
    out->live = live;
    out->req_id = req_id;
    out->chunk = RM_CHUNK_NONE;
    out->base = NULL;
    out->used = 0;
    out->cap = t->pool.chunk_size;
    out->flags = 0;
    out->pushed = 0;
    out->err = 0;
    out->app_failed = false;
    out->pushed_bytes = 0;
    out->window_first = 0;
    out->window_count = 0;
    out->park_ok = false;
    out->parked = NULL;
}

void rm_out_abandon(rm_out_t *out)
{
    if (out->chunk != RM_CHUNK_NONE)
        rm_chunk_pool_free(&out->t->pool, out->chunk, out->t->w->owner);
    out->chunk = RM_CHUNK_NONE;
    out->base = NULL;
    out->used = 0;
}

/* Wait while RM_OUT_WINDOW pushed chunks are not yet sent. Polling: the
 * supervisor updates `sent` without waking anyone (a wake per send would cost
 * it a syscall on its hot path), and a full window means the client is slow,
 * so a sleep of up to 2 ms is small next to its pace. */
/* Forget the pushed chunks the client has taken. */
static void window_advance(rm_out_t *out)
{
    uint64_t sent = rm_wire_sent(out->live);
    while (out->window_count > 0 && out->window_end[out->window_first] <= sent) {
        out->window_first = (out->window_first + 1) % RM_OUT_WINDOW;
        out->window_count--;
    }
}

/* Framing a part of a body may add: a chunk-size line and its CRLFs, then
 * the body's terminator, with margin. */
#define FRAMING_SLACK 64

size_t rm_out_window_room(rm_out_t *out)
{
    if (out->live == NULL)
        return SIZE_MAX / 2;
    window_advance(out);
    if (out->window_count >= RM_OUT_WINDOW)
        return 0;
    size_t bytes = (size_t)(RM_OUT_WINDOW - out->window_count) * out->cap;
    size_t held = (size_t)out->used + FRAMING_SLACK;
    return bytes > held ? bytes - held : 0;
}

bool rm_out_window_busy(rm_out_t *out)
{
    if (out->live == NULL)
        return false;
    window_advance(out);
    return out->window_count >= RM_OUT_WINDOW / 2;
}

static int wait_window(rm_out_t *out)
{
    rm_worker_t *w = out->t->w;
    rm_lane_stats_t *stats = &w->region.lane_stats[w->lane.index];
    long ns = WAIT_FIRST_NS;
    int rc = 0;

    if (out->live == NULL)
        return 0;
    window_advance(out);
    if (out->window_count < RM_OUT_WINDOW)
        return 0;
    /* The thread is held by a slow client: /metrics shows how many are. */
    rm_lane_stat_add(&stats->window_waits, 1);
    for (;;) {
        window_advance(out);
        if (out->window_count < RM_OUT_WINDOW)
            break;
        if (rm_wire_client_gone(out->live)) {
            rc = -ECONNRESET;
            break;
        }
        if (rm_worker_stopping(w)) {
            rc = -ECANCELED;
            break;
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = ns};
        PyThreadState *saved = PyEval_SaveThread();
        nanosleep(&ts, NULL);
        PyEval_RestoreThread(saved);
        if (ns < WAIT_MAX_NS)
            ns *= 2;
    }
    rm_lane_stat_add(&stats->window_waits, -1);
    return rc;
}

int rm_out_push(rm_out_t *out)
{
    if (out->err)
        return out->err;
    int rc = wait_window(out);
    if (rc == 0) {
        rm_done_desc_t d = {
            .req_id = out->req_id, .chunk = out->chunk, .off = 0, .len = out->used, .flags = 0};
        rc = rm_worker_push_done(out->t->w, &d, true, true);
        if (rc == -EBADMSG)
            rc = -ECANCELED; /* a stop is requested */
    }
    if (rc < 0)
        return out->err = rc;
    out->pushed++;
    out->pushed_bytes += out->used;
    if (out->live != NULL) {
        /* wait_window made room */
        out->window_end[(out->window_first + out->window_count) % RM_OUT_WINDOW] =
            out->pushed_bytes;
        out->window_count++;
    }
    out->chunk = RM_CHUNK_NONE; /* the supervisor's now: never touch it again */
    out->base = NULL;
    out->used = 0;
    return 0;
}

int rm_out_flush(rm_out_t *out)
{
    if (out->err == 0 && out->chunk != RM_CHUNK_NONE && out->used > 0)
        rm_out_push(out);
    return out->err;
}

int rm_out_put_slow(rm_out_t *out, const void *data, size_t n)
{
    const char *p = data;

    while (n > 0 && out->err == 0) {
        /* A full chunk goes out only when more bytes follow, so the last one
         * can ride on the final completion. */
        if (out->chunk != RM_CHUNK_NONE && out->used == out->cap && rm_out_push(out) < 0)
            break;
        if (out->chunk == RM_CHUNK_NONE) {
            out->chunk = rm_serve_alloc_chunk(out->t);
            if (out->chunk == RM_CHUNK_NONE) {
                out->err = -ECANCELED;
                break;
            }
            out->base = rm_chunk_pool_ptr(&out->t->pool, out->chunk);
            out->used = 0;
        }
        size_t take = n < out->cap - out->used ? n : out->cap - out->used;
        memcpy(out->base + out->used, p, take);
        out->used += (uint32_t)take;
        p += take;
        n -= take;
    }
    return out->err;
}

int rm_out_put_length(rm_out_t *out, uint64_t n)
{
    char line[40] = "Content-Length: ";
    char digits[20];
    size_t len = 16, nd = 0;

    do {
        digits[nd++] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    while (nd > 0)
        line[len++] = digits[--nd];
    line[len++] = '\r';
    line[len++] = '\n';
    return rm_out_put(out, line, len);
}

int rm_out_put_chunk(rm_out_t *out, const void *p, size_t n)
{
    char line[24];
    size_t len = 0;

    for (size_t v = n; v != 0; v >>= 4)
        len++;
    for (size_t i = 0, v = n; i < len; i++, v >>= 4)
        line[len - 1 - i] = "0123456789abcdef"[v & 15];
    line[len++] = '\r';
    line[len++] = '\n';
    rm_out_put(out, line, len);
    rm_out_put(out, p, n);
    return RM_OUT_LIT(out, "\r\n");
}

int rm_out_close_iterable(PyObject *iterable, PyObject *name, char *why, size_t why_len)
{
    PyObject *close =
        name != NULL ? PyObject_GetAttr(iterable, name) : PyObject_GetAttrString(iterable, "close");
    if (close == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            return 0;
        }
    } else {
        PyObject *res = PyObject_CallNoArgs(close);
        Py_DECREF(close);
        if (res != NULL) {
            Py_DECREF(res);
            return 0;
        }
    }
    rm_host_take_exception(why, why_len, true);
    return -EINVAL;
}

int64_t rm_out_parse_length(const char *p, size_t n)
{
    int64_t v = 0;

    while (n > 0 && (*p == ' ' || *p == '\t'))
        p++, n--;
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n == 0 || n > 18)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}
