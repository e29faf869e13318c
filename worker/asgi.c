/*
 * asgi.c - ASGI 3.0 (asgi.h): the scope, receive and send of each request in
 * C, and the lane drained into an event loop that its loop bell wakes.
 *
 * Objects, per interpreter (module _ringmaster_asgi, made here, imported by
 * python/ringmaster/_asgi.py):
 *   Lane     one per serving thread: fileno() (the lane's loop bell, an
 *            eventfd the supervisor writes once the loop found the lane
 *            empty; lane.h), clear(), ring(), pop() -> Request or None,
 *            stopping(), log().
 *   Request  one per request: scope, receive_nowait(), send_nowait(msg),
 *            gone(), close(exc). _asgi.py subclasses it with the awaitable
 *            receive() and send() the app gets.
 *
 * A Request points into the region (its view) until its final completion is
 * pushed; after that (`open` false) it answers http.disconnect and refuses to
 * send, so an app that keeps the callables reaches no recycled chunk. The
 * body is handed out as bytes copied from the region in pieces of at most
 * BODY_PIECE bytes, one http.request message each.
 *
 * Everything runs on the serving thread with its GIL held.
 */
#include "asgi.h"
#include "body.h"
#include "head.h"
#include "stream.h"

#include "ringmaster/doorbell.h"
#include "ringmaster/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BODY_PIECE (64 * 1024) /* bytes of request body per http.request message at most */
#define RING_BATCH 4           /* final completions a loop pass defers the doorbell for, at most */
#define LOG_PATH_MAX 200
#define PATH_STACK 4096
#define FILE_READ (256 * 1024) /* bytes read per step of http.response.pathsend */

/* ---- per-interpreter state ------------------------------------------------------ */

/* Interned strings and constants, by index. */
enum {
    S_TYPE,
    S_ASGI,
    S_HTTP_VERSION,
    S_METHOD,
    S_SCHEME,
    S_PATH,
    S_RAW_PATH,
    S_QUERY_STRING,
    S_ROOT_PATH,
    S_HEADERS,
    S_CLIENT,
    S_SERVER,
    S_STATE,
    S_BODY,
    S_MORE_BODY,
    S_STATUS,
    S_TRAILERS,
    S_MORE_TRAILERS,
    S_PATH_KEY, /* "path" of pathsend: the same text as S_PATH, kept apart for clarity */
    V_HTTP,
    V_HTTPS,
    V_10,
    V_11,
    V_HTTP_REQUEST,
    V_HTTP_DISCONNECT,
    V_START,
    V_BODY,
    V_TRAILERS_MSG,
    V_PATHSEND,
    V_ROOT,
    V_SLASH,
    V_EMPTY_BYTES,
    ASGI_TEMPLATE, /* {"version": "3.0", "spec_version": "2.4"} */
    DISCONNECT_TEMPLATE,
    LANE_TYPE,
    REQUEST_TYPE,
    R_COUNT
};

/* The per-interpreter state is a tuple of R_COUNT constants (st->asgi):
 * nothing in it but references, so a tuple's own GC support is all it needs. */
typedef PyObject AsgiState;

static inline PyObject *R(const AsgiState *as, int i)
{
    return PyTuple_GET_ITEM((PyObject *)as, i);
}

/* ---- Request ----------------------------------------------------------------------- */

/* One serving thread's lane, as its event loop sees it. */
typedef struct {
    PyObject ob_base;
    PyObject *state;     /* AsgiState */
    PyObject *req_type;  /* the class pop() makes (the driver's subclass of Request) */
    PyObject *ctx;       /* handed to every Request */
    PyObject *lifespan;  /* the lifespan state dict, copied into every scope; or NULL */
    PyObject *call_soon; /* the loop's call_soon (defer_rings), or NULL: ring at once */
    PyObject *flush;     /* this lane's flush(), bound, for call_soon */
    rm_serve_thread_t *t;
    int bell_fd;           /* the lane's loop bell (borrowed from the worker's conf) */
    unsigned ring_pending; /* final completions pushed since the doorbell was last rung */
    unsigned unstarted;    /* requests popped whose task has not run yet */
} LaneObject;

typedef struct {
    PyObject ob_base;
    PyObject *state; /* AsgiState, strong */
    PyObject *scope;
    PyObject *ctx;     /* the driver's per-thread server, for the Python subclass */
    LaneObject *lane;  /* strong: where the doorbell ring of its final completion is deferred */
    bool task_started; /* its task ran (read .scope): no longer counted in lane->unstarted */
    rm_serve_thread_t *t;
    rm_req_view_t view;
    const rm_req_meta_t *live; /* the meta in the region: sent, gone */
    rm_body_reader_t body;     /* the request body, read in pieces by receive_nowait() */
    rm_out_t out;
    rm_framed_t r;
    bool open;          /* until the final completion is pushed */
    bool started;       /* http.response.start seen */
    bool body_over;     /* the last http.response.body seen */
    bool want_trailers; /* start said trailers: True */
    bool request_over;  /* the last http.request handed out */
    Py_ssize_t body_sent; /* bytes of the body message being sent that went out: a
                             message larger than the window goes in parts, never
                             waiting on the loop's thread (send_body) */
    /* "METHOD /path" (the path cut at LOG_PATH_MAX), kept by finish(): the head
     * lives in chunks the supervisor reuses once the request is over, and an
     * app may raise after that. */
    char name[16 + LOG_PATH_MAX + 2];
} RequestObject;

static PyObject *message(const AsgiState *as, int type)
{
    PyObject *d = PyDict_New();
    if (d != NULL && PyDict_SetItem(d, R(as, S_TYPE), R(as, type)) < 0)
        Py_CLEAR(d);
    return d;
}

/* Write "METHOD /path" into buf from the request's head (valid while open). */
static void request_name(const RequestObject *self, char *buf, size_t len)
{
    const rm_req_meta_t *m = &self->view.meta;
    int method_len = m->method_len < 15 ? (int)m->method_len : 15;
    int path_len = m->path_len < LOG_PATH_MAX ? (int)m->path_len : LOG_PATH_MAX;
    snprintf(buf, len, "%.*s %.*s", method_len, (const char *)self->view.head + m->method_off,
             path_len, (const char *)self->view.head + m->path_off);
}

/* One record for an app that failed a request, as the native and WSGI paths
 * write it: "GET /path: the ASGI app raised X: ...; answered 500", with the
 * traceback (borrowed, or NULL) in the same record. */
static void log_failure(const RequestObject *self, const char *why, const char *what,
                        const char *trace)
{
    char name[sizeof(self->name)];
    if (self->open)
        request_name(self, name, sizeof(name));
    else
        snprintf(name, sizeof(name), "%s", self->name);
    rm_log_write_detail(RM_LOG_ERROR, trace, "%s: the ASGI app %s%s", name, why, what);
}

static rm_lane_stats_t *lane_stats(rm_serve_thread_t *t)
{
    return &t->w->region.lane_stats[t->w->lane.index];
}

static void lane_flush_rings(LaneObject *lane)
{
    if (lane->ring_pending == 0 || lane->t == NULL)
        return;
    lane->ring_pending = 0;
    rm_serve_ring(lane->t->w);
}

/* Ring for what is deferred and ring at once from now on. */
static void lane_stop_deferring(LaneObject *lane)
{
    lane_flush_rings(lane);
    Py_CLEAR(lane->call_soon);
    Py_CLEAR(lane->flush);
}

/* Ring the supervisor's doorbell for a final completion just pushed. Waking
 * a sleeping supervisor costs the ringer a cross-CPU wakeup, some 6 us of the
 * loop's time on a VM, 10% of a FastAPI request. So when the supervisor sleeps
 * and this loop has tasks queued that have not run yet (it will be busy for a
 * while anyway), the ring waits for the end of this pass of the loop (flush()
 * through call_soon) or the RING_BATCH-th completion, whichever comes first:
 * the bound keeps the supervisor fed during a long pass, so the pipeline does
 * not stall. An awake supervisor costs nothing to ring, and a loop with
 * nothing queued rings at once: a lone request waits for no batch. The price:
 * a handler that blocks the loop (synchronous work) holds back up to
 * RING_BATCH - 1 responses finished before it in the same pass, besides the
 * requests queued behind it that it holds back anyway. */
static void lane_ring_soon(LaneObject *lane)
{
    rm_worker_t *w = lane->t->w;
    if (lane->ring_pending > 0) {
        if (++lane->ring_pending >= RING_BATCH)
            lane_flush_rings(lane); /* the flush() already scheduled finds nothing */
        return;
    }
    if (lane->unstarted == 0 || lane->call_soon == NULL || PyErr_Occurred()) {
        rm_serve_ring(w);
        return;
    }
    /* Published, then fenced: an awake supervisor finds the completion. */
    if (!rm_doorbell_asleep(&w->region.header->doorbell))
        return;
    PyObject *h = PyObject_CallOneArg(lane->call_soon, lane->flush);
    if (h == NULL) {
        PyErr_Clear(); /* the loop is closed */
        rm_serve_ring(w);
        return;
    }
    Py_DECREF(h);
    lane->ring_pending = 1;
}

/* Push the final completion: the request is over for us. A body not read
 * yet is dropped (it may point into chunks the supervisor now reuses). */
static int finish(RequestObject *self)
{
    rm_lane_stats_t *stats = lane_stats(self->t);
    request_name(self, self->name, sizeof(self->name));
    rm_lane_stat_add(&stats->in_flight, -1);
    rm_lane_stat_add(&stats->requests, 1);
    rm_body_reader_close(&self->body);
    int rc = rm_serve_finish(self->t, &self->out);
    self->open = false;
    if (rc == 0 && self->lane != NULL && self->lane->t != NULL)
        lane_ring_soon(self->lane);
    else if (rc == 0)
        rm_serve_ring(self->t->w);
    return rc;
}

/* The client left (or the worker stops) while we wrote: end the request with
 * a closed connection and nothing more. Raises OSError for the app. */
static PyObject *ended(RequestObject *self, int err)
{
    rm_out_abandon(&self->out);
    if (self->open) {
        self->out.flags |= RM_DONE_CLOSE;
        finish(self);
    }
    if (err == -ECANCELED)
        PyErr_SetString(PyExc_ConnectionAbortedError, "the worker is stopping");
    else
        PyErr_SetString(PyExc_ConnectionResetError, "the client disconnected");
    return NULL;
}

static PyObject *request_receive_nowait(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    RequestObject *self = (RequestObject *)op;
    const AsgiState *as = (const AsgiState *)self->state;

    if (!self->open || rm_wire_client_done(self->live))
        return PyDict_Copy(R(as, DISCONNECT_TEMPLATE));
    if (self->request_over)
        Py_RETURN_NONE; /* the caller waits for the client to go */
    if (self->body.error != 0) {
        PyErr_Format(PyExc_OSError, "cannot read the request body: %s", strerror(self->body.error));
        return NULL;
    }
    size_t n = self->body.left < BODY_PIECE ? (size_t)self->body.left : BODY_PIECE;
    PyObject *body;
    if (n == 0) {
        body = Py_NewRef(R(as, V_EMPTY_BYTES));
    } else {
        body = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
        if (body == NULL)
            return NULL;
        size_t got = rm_body_reader_read(&self->body, PyBytes_AS_STRING(body), n);
        if (got < n) {
            /* A spilled body's file failed us: end the request rather than
             * hand the app a body shorter than announced. */
            Py_DECREF(body);
            PyErr_Format(PyExc_OSError, "cannot read the request body: %s",
                         strerror(self->body.error != 0 ? self->body.error : EIO));
            return NULL;
        }
    }
    bool more = self->body.left > 0;
    self->request_over = !more;
    PyObject *msg = message(as, V_HTTP_REQUEST);
    if (msg == NULL || PyDict_SetItem(msg, R(as, S_BODY), body) < 0 ||
        PyDict_SetItem(msg, R(as, S_MORE_BODY), more ? Py_True : Py_False) < 0)
        Py_CLEAR(msg);
    Py_DECREF(body);
    return msg;
}

/* message[key] as a borrowed reference; *v = dflt when absent. -1 with an
 * exception for a message that is not a dict. */
static int field(PyObject *msg, PyObject *key, PyObject *dflt, PyObject **v)
{
    PyObject *x = PyDict_GetItemWithError(msg, key);
    if (x == NULL && PyErr_Occurred())
        return -1;
    *v = x != NULL ? x : dflt;
    return 0;
}

/* Two bytes-like items of a header: name and value. */
static int header_pair(PyObject *item, Py_buffer *name, Py_buffer *value)
{
    PyObject *seq = PySequence_Fast(item, "an ASGI header must be a [name, value] pair");
    if (seq == NULL)
        return -1;
    if (PySequence_Fast_GET_SIZE(seq) != 2) {
        PyErr_Format(PyExc_TypeError, "an ASGI header must be a [name, value] pair, not %R", item);
        Py_DECREF(seq);
        return -1;
    }
    int rc = PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, 0), name, PyBUF_SIMPLE);
    if (rc == 0 &&
        (rc = PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, 1), value, PyBUF_SIMPLE)) < 0)
        PyBuffer_Release(name);
    Py_DECREF(seq);
    return rc;
}

/* Render headers (an iterable of [name, value] byte pairs) into `buf` as
 * "name: value\r\n" lines, through rm_head_add when `h` is given (response
 * headers), checked but unclassified otherwise (trailers). */
static int render_headers(PyObject *headers, rm_head_t *h, rm_buf_t *buf)
{
    PyObject *it = PyObject_GetIter(headers);
    PyObject *item;
    int rc = 0;

    if (it == NULL)
        return -1;
    while (rc == 0 && (item = PyIter_Next(it)) != NULL) {
        Py_buffer name, value;
        rc = header_pair(item, &name, &value);
        Py_DECREF(item);
        if (rc < 0)
            break;
        if (h != NULL) {
            rc = rm_head_add(h, name.buf, (size_t)name.len, value.buf, (size_t)value.len);
        } else if (!rm_response_token_ok(name.buf, (size_t)name.len) ||
                   !rm_response_value_ok(value.buf, (size_t)value.len)) {
            PyErr_SetString(PyExc_ValueError, "a trailer name is not a token, or its value holds "
                                              "CR, LF or NUL");
            rc = -1;
        } else if (rm_buf_add(buf, name.buf, (size_t)name.len) < 0 ||
                   rm_buf_add(buf, ": ", 2) < 0 ||
                   rm_buf_add(buf, value.buf, (size_t)value.len) < 0 ||
                   rm_buf_add(buf, "\r\n", 2) < 0) {
            rc = -1;
        }
        PyBuffer_Release(&name);
        PyBuffer_Release(&value);
    }
    Py_DECREF(it);
    return rc < 0 || PyErr_Occurred() ? -1 : 0;
}

static PyObject *send_start(RequestObject *self, PyObject *msg)
{
    const AsgiState *as = (const AsgiState *)self->state;
    PyObject *status_obj, *headers, *trailers;
    rm_head_t h = {.app_length = -1};
    char line[64];

    if (self->started) {
        PyErr_SetString(PyExc_RuntimeError, "http.response.start sent twice");
        return NULL;
    }
    if (field(msg, R(as, S_STATUS), NULL, &status_obj) < 0 ||
        field(msg, R(as, S_HEADERS), NULL, &headers) < 0 ||
        field(msg, R(as, S_TRAILERS), Py_False, &trailers) < 0)
        return NULL;
    if (status_obj == NULL || !PyLong_Check(status_obj)) {
        PyErr_SetString(PyExc_TypeError, "http.response.start needs an int 'status'");
        return NULL;
    }
    long status = PyLong_AsLong(status_obj);
    if (status < 100 || status > 999) {
        PyErr_Format(PyExc_ValueError, "http.response.start: status %ld is not 100..999", status);
        return NULL;
    }
    h.status = (int)status;
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %ld %s\r\n", status,
                     rm_response_reason((int)status));
    if (rm_buf_add(&h.head, line, (size_t)n) < 0)
        goto fail;
    h.status_len = h.head.len;
    if (headers != NULL && render_headers(headers, &h, NULL) < 0)
        goto fail;
    int want = PyObject_IsTrue(trailers);
    if (want < 0)
        goto fail;
    rm_framed_t *r = &self->r;
    r->status = h.status;
    r->head = h.head;
    r->status_len = h.status_len;
    r->app_length = h.app_length;
    r->app_server = h.app_server;
    r->app_date = h.app_date;
    r->app_close = h.app_close;
    self->started = true;
    self->want_trailers = want;
    Py_RETURN_FALSE;
fail:
    PyMem_Free(h.head.p);
    return NULL;
}

/* The response is complete on our side: terminator (with trailers) and the
 * final completion. */
static PyObject *send_end(RequestObject *self, const rm_buf_t *trailer_lines)
{
    rm_framed_t *r = &self->r;

    if (!r->head_sent && rm_framed_head(r, 0) < 0)
        return ended(self, self->out.err);
    if (r->chunked && trailer_lines != NULL) {
        rm_out_put(&self->out, "0\r\n", 3);
        rm_out_put(&self->out, trailer_lines->p, trailer_lines->len);
        rm_out_put(&self->out, "\r\n", 2);
        r->chunked = false; /* terminated: rm_framed_finish adds none */
    }
    if (rm_framed_finish(r) < 0)
        return ended(self, self->out.err);
    if (finish(self) < 0)
        return ended(self, -ECANCELED);
    Py_RETURN_FALSE;
}

static PyObject *send_body(RequestObject *self, PyObject *msg)
{
    const AsgiState *as = (const AsgiState *)self->state;
    rm_framed_t *r = &self->r;
    PyObject *body, *more_obj;
    Py_buffer b;

    if (!self->started || self->body_over) {
        PyErr_SetString(PyExc_RuntimeError, self->started
                                                ? "http.response.body after the last one"
                                                : "http.response.body before http.response.start");
        return NULL;
    }
    if (field(msg, R(as, S_BODY), R(as, V_EMPTY_BYTES), &body) < 0 ||
        field(msg, R(as, S_MORE_BODY), Py_False, &more_obj) < 0)
        return NULL;
    int more = PyObject_IsTrue(more_obj);
    if (more < 0 || PyObject_GetBuffer(body, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    /* Never wait for the client here: that would stop the whole loop. The
     * message goes out as far as the window allows; True sends the caller
     * to wait for the client, and it sends the same message again, which
     * goes on from body_sent. */
    if (self->body_sent > b.len)
        self->body_sent = 0; /* not the message we were in the middle of */
    Py_ssize_t left = b.len - self->body_sent;
    if (left > 0) {
        if (!r->head_sent) /* all of it is here when it is the last: its length is known */
            rm_framed_head(r, !more && !self->want_trailers ? (int64_t)b.len : -1);
        size_t room = rm_out_window_room(&self->out);
        if (room == 0 && self->out.err == 0) {
            PyBuffer_Release(&b);
            Py_RETURN_TRUE;
        }
        size_t take = (size_t)left < room ? (size_t)left : room;
        bool part = take < (size_t)left;
        rm_framed_piece(r, (const char *)b.buf + self->body_sent, take,
                        more || part ? RM_FLUSH_ALWAYS : RM_FLUSH_NEVER);
        if (part && self->out.err == 0) {
            self->body_sent += (Py_ssize_t)take;
            PyBuffer_Release(&b);
            Py_RETURN_TRUE;
        }
    } else if (!r->head_sent && !more && !self->want_trailers) {
        rm_framed_head(r, (int64_t)b.len);
    }
    self->body_sent = 0;
    PyBuffer_Release(&b);
    if (self->out.err < 0)
        return ended(self, self->out.err);
    if (more)
        Py_RETURN_FALSE;
    self->body_over = true;
    if (self->want_trailers)
        Py_RETURN_FALSE; /* http.response.trailers ends it */
    return send_end(self, NULL);
}

static PyObject *send_trailers(RequestObject *self, PyObject *msg)
{
    const AsgiState *as = (const AsgiState *)self->state;
    PyObject *headers, *more_obj;
    rm_buf_t lines = {0};

    if (!self->want_trailers || !self->body_over) {
        PyErr_SetString(PyExc_RuntimeError,
                        "http.response.trailers without trailers: True in http.response.start, "
                        "or before the last http.response.body");
        return NULL;
    }
    if (field(msg, R(as, S_HEADERS), NULL, &headers) < 0 ||
        field(msg, R(as, S_MORE_TRAILERS), Py_False, &more_obj) < 0)
        return NULL;
    if (headers != NULL && render_headers(headers, NULL, &lines) < 0) {
        PyMem_Free(lines.p);
        return NULL;
    }
    int more = PyObject_IsTrue(more_obj);
    if (more < 0) {
        PyMem_Free(lines.p);
        return NULL;
    }
    /* Trailers only travel in a chunked body; more_trailers pieces are joined
     * by sending them all at the end. */
    PyObject *res = more ? Py_NewRef(Py_False) : send_end(self, &lines);
    PyMem_Free(lines.p);
    return res;
}

/* http.response.pathsend: the file's bytes as the whole body. The reads run
 * on the loop's thread (a local file; docs/asgi.md). */
static PyObject *send_path(RequestObject *self, PyObject *msg)
{
    const AsgiState *as = (const AsgiState *)self->state;
    rm_framed_t *r = &self->r;
    PyObject *path_obj, *bytes_path = NULL;
    struct stat sb;

    if (!self->started || self->body_over) {
        PyErr_SetString(PyExc_RuntimeError, "http.response.pathsend needs http.response.start "
                                            "before it and no body");
        return NULL;
    }
    if (field(msg, R(as, S_PATH_KEY), NULL, &path_obj) < 0)
        return NULL;
    if (path_obj == NULL || !PyUnicode_FSConverter(path_obj, &bytes_path))
        return NULL;
    int fd = open(PyBytes_AS_STRING(bytes_path), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        if (fd >= 0)
            close(fd);
        PyErr_Format(PyExc_OSError, "http.response.pathsend: cannot read %R", path_obj);
        Py_DECREF(bytes_path);
        return NULL;
    }
    Py_DECREF(bytes_path);
    self->body_over = true;
    char *buf = PyMem_Malloc(FILE_READ);
    if (buf == NULL) {
        close(fd);
        return PyErr_NoMemory();
    }
    rm_framed_head(r, (int64_t)sb.st_size);
    while (self->out.err == 0) {
        ssize_t n = read(fd, buf, FILE_READ);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* short: finish closes the connection */
        rm_framed_piece(r, buf, (size_t)n, RM_FLUSH_NEVER);
    }
    PyMem_Free(buf);
    close(fd);
    if (self->out.err < 0)
        return ended(self, self->out.err);
    return send_end(self, NULL);
}

/* Returns False when the message was taken, True when the send window is full
 * and the caller must wait and send the same message again. */
static PyObject *request_send_nowait(PyObject *op, PyObject *msg)
{
    RequestObject *self = (RequestObject *)op;
    const AsgiState *as = (const AsgiState *)self->state;
    PyObject *type;

    if (!PyDict_Check(msg)) {
        PyErr_Format(PyExc_TypeError, "an ASGI message must be a dict, not %s",
                     Py_TYPE(msg)->tp_name);
        return NULL;
    }
    if (field(msg, R(as, S_TYPE), NULL, &type) < 0)
        return NULL;
    if (type == NULL || !PyUnicode_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "an ASGI message needs a str 'type'");
        return NULL;
    }
    if (!self->open) {
        if (self->body_over) {
            PyErr_SetString(PyExc_RuntimeError, "the response is already complete");
            return NULL;
        }
        PyErr_SetString(PyExc_ConnectionResetError, "the client disconnected");
        return NULL;
    }
    if (rm_wire_client_gone(self->live))
        return ended(self, -ECONNRESET);
    if (PyUnicode_Compare(type, R(as, V_BODY)) == 0)
        return send_body(self, msg);
    if (PyUnicode_Compare(type, R(as, V_START)) == 0)
        return send_start(self, msg);
    if (PyUnicode_Compare(type, R(as, V_TRAILERS_MSG)) == 0)
        return send_trailers(self, msg);
    if (PyUnicode_Compare(type, R(as, V_PATHSEND)) == 0)
        return send_path(self, msg);
    if (PyErr_Occurred())
        return NULL;
    PyErr_Format(PyExc_ValueError, "unknown ASGI message type %R for an http scope", type);
    return NULL;
}

static PyObject *request_gone(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    RequestObject *self = (RequestObject *)op;
    return PyBool_FromLong(!self->open || rm_wire_client_done(self->live));
}

static PyObject *request_window_full(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    RequestObject *self = (RequestObject *)op;
    return PyBool_FromLong(self->open && rm_out_window_room(&self->out) == 0);
}

/* close(exc, traceback=None): the app is done (exc None) or raised `exc`,
 * with `traceback` its formatted text (None: not worth one, an OSError about
 * the client leaving). Whatever the response lacks is settled: a 500 when
 * nothing went out yet, else a closed connection; either way one record
 * names the request, what the app did, what the client got, and carries the
 * traceback. An exception after the request ended (response complete, client
 * gone) is logged too, with what the client got. */
static PyObject *request_close(PyObject *op, PyObject *args)
{
    RequestObject *self = (RequestObject *)op;
    const rm_req_meta_t *m = &self->view.meta;
    PyObject *exc, *tb_text = Py_None;
    const char *what;
    const char *trace = NULL;
    char why[512];

    if (!PyArg_ParseTuple(args, "O|O:close", &exc, &tb_text))
        return NULL;
    if (tb_text != Py_None) {
        trace = PyUnicode_AsUTF8(tb_text);
        if (trace == NULL)
            return NULL;
    }
    if (exc != Py_None) {
        PyObject *s = PyObject_Str(exc);
        const char *text = s != NULL ? PyUnicode_AsUTF8(s) : NULL;
        snprintf(why, sizeof(why), "raised %s: %s", Py_TYPE(exc)->tp_name,
                 text != NULL ? text : "?");
        Py_XDECREF(s);
        PyErr_Clear();
    } else {
        snprintf(why, sizeof(why), "returned %s",
                 self->started ? "before the response body was complete"
                               : "without sending http.response.start");
    }
    if (!self->open) {
        /* Nothing left to settle; a traceback still says where the app failed. */
        if (exc != Py_None && trace != NULL)
            log_failure(self, why,
                        self->body_over ? " after its response was complete"
                                        : " after the client left; the connection was closed",
                        trace);
        Py_RETURN_NONE;
    }
    rm_lane_stat_add(&lane_stats(self->t)->exceptions, 1);
    if (self->out.pushed == 0) {
        /* Nothing left for the client yet: replace it all with a 500. */
        rm_out_abandon(&self->out);
        self->out.flags = 0;
        what = "; answered 500";
        if (rm_response_write_error(&self->out, 500, m->flags, m->http_minor) < 0) {
            log_failure(self, why, "; the 500 could not be sent", trace);
            rm_out_abandon(&self->out);
            self->open = false;
            Py_RETURN_NONE;
        }
    } else {
        /* Part of it went out: the client sees a truncated body. */
        self->out.flags |= RM_DONE_CLOSE;
        what = exc != Py_None ? " after the response began; closed the connection"
                              : "; closed the connection";
    }
    finish(self);
    log_failure(self, why, what, trace);
    Py_RETURN_NONE;
}

/* The request's task runs (or never will): it leaves the lane's count of
 * work queued on the loop (lane_ring_soon). */
static void request_mark_started(RequestObject *self)
{
    if (self->task_started)
        return;
    self->task_started = true;
    if (self->lane != NULL && self->lane->unstarted > 0)
        self->lane->unstarted--;
}

/* _run reads .scope first thing: that read marks the task started. */
static PyObject *request_get_scope(PyObject *op, void *Py_UNUSED(closure))
{
    request_mark_started((RequestObject *)op);
    return Py_NewRef(((RequestObject *)op)->scope);
}

static PyObject *request_get_ctx(PyObject *op, void *Py_UNUSED(closure))
{
    RequestObject *self = (RequestObject *)op;
    return Py_NewRef(self->ctx != NULL ? self->ctx : Py_None);
}

static int request_traverse(PyObject *op, visitproc visit, void *arg)
{
    RequestObject *self = (RequestObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->state);
    Py_VISIT(self->scope);
    Py_VISIT(self->ctx);
    Py_VISIT(self->lane);
    return 0;
}

static int request_clear(PyObject *op)
{
    RequestObject *self = (RequestObject *)op;
    request_mark_started(self);
    Py_CLEAR(self->scope);
    Py_CLEAR(self->ctx);
    Py_CLEAR(self->lane);
    return 0;
}

static void request_dealloc(PyObject *op)
{
    RequestObject *self = (RequestObject *)op;
    PyTypeObject *tp = Py_TYPE(op);

    PyObject_GC_UnTrack(op);
    if (self->open) {
        /* Never closed (the worker stops): the supervisor fails the request. */
        rm_out_abandon(&self->out);
        rm_lane_stat_add(&lane_stats(self->t)->in_flight, -1);
        self->open = false;
    }
    rm_body_reader_close(&self->body);
    PyMem_Free(self->r.head.p);
    self->r.head.p = NULL;
    request_clear(op);
    Py_CLEAR(self->state);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef request_methods[] = {
    {"receive_nowait", request_receive_nowait, METH_NOARGS,
     "The next http.request piece, http.disconnect, or None: wait for the client to go."},
    {"send_nowait", request_send_nowait, METH_O,
     "Take an http.response.* message; True: the send window is full, send it again later."},
    {"gone", request_gone, METH_NOARGS, "Whether the client left or the response is complete."},
    {"window_full", request_window_full, METH_NOARGS, "Whether the send window is full."},
    {"close", request_close, METH_VARARGS,
     "close(exc, traceback=None): the app finished (None) or raised; settle the response."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef request_getset[] = {
    {"scope", request_get_scope, NULL, "the ASGI scope", NULL},
    {"ctx", request_get_ctx, NULL, "the serving thread's server", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot request_slots[] = {
    {Py_tp_dealloc, request_dealloc},
    {Py_tp_traverse, request_traverse},
    {Py_tp_clear, request_clear},
    {Py_tp_methods, request_methods},
    {Py_tp_getset, request_getset},
    {Py_tp_doc, "An ASGI request being served (made by Lane.pop)."},
    {0, NULL},
};

static PyType_Spec request_spec = {
    .name = "_ringmaster_asgi.Request",
    .basicsize = sizeof(RequestObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = request_slots,
};

/* ---- the scope ---------------------------------------------------------------------- */

static inline unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
}

#define MAX_FWD_LINES 16 /* X-Forwarded-For / -Proto / Forwarded lines looked at, each */

/* The proxy headers a request carried, for --forwarded-allow-ips. */
typedef struct {
    rm_fwd_span_t xff[MAX_FWD_LINES], xfp[MAX_FWD_LINES], fwd[MAX_FWD_LINES];
    size_t n_xff, n_xfp, n_fwd;
} fwd_seen_t;

static void see_span(rm_fwd_span_t *spans, size_t *n, const unsigned char *p, size_t len)
{
    if (*n < MAX_FWD_LINES)
        spans[(*n)++] = (rm_fwd_span_t){.p = (const char *)p, .n = len};
}

/* Note a proxy header whose lower-cased name is `lower`. */
static void see_forwarded(fwd_seen_t *seen, const unsigned char *lower, size_t n,
                          const unsigned char *val, size_t vlen)
{
    if (n == 15 && memcmp(lower, "x-forwarded-for", 15) == 0)
        see_span(seen->xff, &seen->n_xff, val, vlen);
    else if (n == 17 && memcmp(lower, "x-forwarded-proto", 17) == 0)
        see_span(seen->xfp, &seen->n_xfp, val, vlen);
    else if (n == 9 && memcmp(lower, "forwarded", 9) == 0)
        see_span(seen->fwd, &seen->n_fwd, val, vlen);
}

static PyObject *header_list(const rm_req_view_t *v, fwd_seen_t *seen)
{
    uint16_t n = v->meta.header_count;
    PyObject *list = PyList_New(n);
    unsigned char lower[256];

    if (list == NULL)
        return NULL;
    for (uint16_t i = 0; i < n; i++) {
        const rm_wire_header_t *h = &v->headers[i];
        const unsigned char *name = v->head + h->name_off;
        PyObject *k;
        if (h->name_len <= sizeof(lower)) {
            for (uint16_t j = 0; j < h->name_len; j++)
                lower[j] = ascii_lower(name[j]);
            k = PyBytes_FromStringAndSize((const char *)lower, h->name_len);
            if (lower[0] == 'x' || lower[0] == 'f')
                see_forwarded(seen, lower, h->name_len, v->head + h->value_off, h->value_len);
        } else {
            k = PyBytes_FromStringAndSize(NULL, h->name_len);
            if (k != NULL)
                for (uint16_t j = 0; j < h->name_len; j++)
                    PyBytes_AS_STRING(k)[j] = (char)ascii_lower(name[j]);
        }
        PyObject *val =
            PyBytes_FromStringAndSize((const char *)v->head + h->value_off, h->value_len);
        PyObject *pair = k != NULL && val != NULL ? PyTuple_Pack(2, k, val) : NULL;
        Py_XDECREF(k);
        Py_XDECREF(val);
        if (pair == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, pair);
    }
    return list;
}

/* (host, port), or None for a Unix socket. */
static PyObject *address(uint8_t family, const uint8_t addr[16], uint16_t port)
{
    char text[64];
    size_t n = rm_addr_text(family, addr, false, text, sizeof(text));
    if (n == 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(s#H)", text, (Py_ssize_t)n, port);
}

/* The path, percent-decoded, as text (UTF-8; undecodable bytes replaced, as
 * uvicorn and urllib.parse.unquote do). */
static PyObject *decoded_path(const AsgiState *as, const unsigned char *p, size_t n)
{
    unsigned char stack[PATH_STACK], *heap = NULL;

    if (n == 0)
        return Py_NewRef(R(as, V_SLASH)); /* an absolute-form target without a path */
    if (n == 1 && p[0] == '/')
        return Py_NewRef(R(as, V_SLASH));
    if (memchr(p, '%', n) == NULL)
        return PyUnicode_DecodeUTF8((const char *)p, (Py_ssize_t)n, "replace");
    unsigned char *out = n <= sizeof(stack) ? stack : (heap = PyMem_Malloc(n));
    if (out == NULL)
        return PyErr_NoMemory();
    size_t dn = rm_percent_decode(p, n, out);
    PyObject *s = PyUnicode_DecodeUTF8((const char *)out, (Py_ssize_t)dn, "replace");
    PyMem_Free(heap);
    return s;
}

static int put(PyObject *d, PyObject *key, PyObject *value)
{
    if (value == NULL)
        return -1;
    int rc = PyDict_SetItem(d, key, value);
    Py_DECREF(value);
    return rc;
}

/* scope["client"] and scope["scheme"]: from the proxy headers when the peer
 * is trusted (--forwarded-allow-ips), as WSGI's REMOTE_ADDR and url_scheme. */
static int put_client(const AsgiState *as, const rm_app_conf_t *conf, PyObject *scope,
                      const rm_req_meta_t *m, const fwd_seen_t *seen)
{
    rm_fwd_result_t fwd = {0};

    if ((seen->n_xff || seen->n_xfp || seen->n_fwd) &&
        rm_fwd_allow_match(&conf->forwarded_allow, m->client_family, m->client_addr))
        rm_fwd_resolve(&conf->forwarded_allow, seen->xff, seen->n_xff, seen->xfp, seen->n_xfp,
                       seen->fwd, seen->n_fwd, &fwd);
    if (PyDict_SetItem(scope, R(as, S_SCHEME),
                       R(as, fwd.scheme == RM_FWD_SCHEME_HTTPS ? V_HTTPS : V_HTTP)) < 0)
        return -1;
    if (fwd.addr_len > 0)
        /* The proxy's port to us says nothing about the client's: 0 if unsaid. */
        return put(scope, R(as, S_CLIENT),
                   Py_BuildValue("(s#H)", fwd.addr, (Py_ssize_t)fwd.addr_len,
                                 fwd.has_port ? fwd.port : 0));
    return put(scope, R(as, S_CLIENT), address(m->client_family, m->client_addr, m->client_port));
}

static PyObject *scope_build(const AsgiState *as, const rm_app_conf_t *conf, const rm_req_view_t *v,
                             PyObject *state)
{
    const rm_req_meta_t *m = &v->meta;
    const unsigned char *head = v->head;
    PyObject *scope = _PyDict_NewPresized(16);
    fwd_seen_t seen;

    if (scope == NULL)
        return NULL;
    seen.n_xff = seen.n_xfp = seen.n_fwd = 0;
    if (PyDict_SetItem(scope, R(as, S_TYPE), R(as, V_HTTP)) < 0 ||
        put(scope, R(as, S_ASGI), PyDict_Copy(R(as, ASGI_TEMPLATE))) < 0 ||
        PyDict_SetItem(scope, R(as, S_HTTP_VERSION), R(as, m->http_minor == 0 ? V_10 : V_11)) < 0 ||
        put(scope, R(as, S_METHOD),
            PyUnicode_DecodeLatin1((const char *)head + m->method_off, m->method_len, NULL)) < 0 ||
        put(scope, R(as, S_PATH), decoded_path(as, head + m->path_off, m->path_len)) < 0 ||
        put(scope, R(as, S_RAW_PATH),
            PyBytes_FromStringAndSize((const char *)head + m->path_off, m->path_len)) < 0 ||
        put(scope, R(as, S_QUERY_STRING),
            PyBytes_FromStringAndSize((const char *)head + m->query_off, m->query_len)) < 0 ||
        PyDict_SetItem(scope, R(as, S_ROOT_PATH), R(as, V_ROOT)) < 0 ||
        put(scope, R(as, S_HEADERS), header_list(v, &seen)) < 0 ||
        put_client(as, conf, scope, m, &seen) < 0 ||
        put(scope, R(as, S_SERVER), address(m->server_family, m->server_addr, m->server_port)) <
            0 ||
        (state != NULL && put(scope, R(as, S_STATE), PyDict_Copy(state)) < 0)) {
        Py_DECREF(scope);
        return NULL;
    }
    return scope;
}

/* ---- Lane --------------------------------------------------------------------------- */

/* Stop when told to, or when the supervisor marked the lane as stopping. */
static bool lane_should_stop(rm_worker_t *w)
{
    if (rm_worker_stopping(w))
        return true;
    if (atomic_load_explicit(&w->lane.shared->state, memory_order_relaxed) == RM_LANE_STOPPING) {
        rm_worker_request_stop(w);
        return true;
    }
    return false;
}

/* The next request from the lane, without waiting. Returns 1 with *desc, 0
 * when there is none (the loop bell is then armed: the supervisor writes it
 * when one comes), -1 for a corrupt ring. */
static int lane_take(LaneObject *self, rm_req_desc_t *desc)
{
    rm_lane_t *lane = &self->t->w->lane;
    for (;;) {
        int rc = rm_lane_pop_request(lane, desc, 0, 0);
        if (rc == 0)
            return 1;
        if (rc != -ETIMEDOUT && rc != -EINTR)
            break;
        if (!rm_lane_arm_loop_bell(lane))
            return 0;
    }
    RM_ERROR("the request ring of lane %u is corrupt; stopping", self->t->w->conf->lane);
    rm_worker_request_stop(self->t->w);
    return -1;
}

/* A request taken and admitted that cannot become a Request (out of memory):
 * answer it 500 rather than leave it hanging, and go on to the next, so that
 * the drain still ends with the lane empty and its bell armed. */
static void lane_refuse(LaneObject *self, const rm_req_desc_t *desc, rm_req_view_t *view)
{
    rm_out_t out;
    PyErr_Clear();
    if (view->body_fd >= 0)
        close(view->body_fd);
    RM_ERROR("out of memory for an ASGI request; answered 500");
    rm_out_init(&out, self->t, desc->req_id, NULL);
    if (rm_response_write_error(&out, 500, 0, 1) == 0 && rm_serve_finish(self->t, &out) == 0)
        rm_serve_ring(self->t->w);
    else
        rm_out_abandon(&out);
}

static PyObject *lane_pop(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    LaneObject *self = (LaneObject *)op;
    const AsgiState *as = (const AsgiState *)self->state;
    rm_req_desc_t desc;
    rm_req_view_t view;
    PyObject *scope;
    RequestObject *req;

    for (;;) {
        if (lane_take(self, &desc) <= 0)
            Py_RETURN_NONE;
        int rc = rm_serve_admit(self->t, &desc, &view);
        if (rc < 0)
            Py_RETURN_NONE; /* stopping */
        if (rc > 0) {
            rm_serve_ring(self->t->w); /* answered here (500, 503): try the next */
            continue;
        }
        scope = scope_build(as, &self->t->w->conf->iface, &view, self->lifespan);
        PyTypeObject *tp = (PyTypeObject *)self->req_type;
        req = scope != NULL ? (RequestObject *)tp->tp_alloc(tp, 0) : NULL;
        if (req != NULL)
            break;
        Py_XDECREF(scope);
        lane_refuse(self, &desc, &view);
    }
    req->state = Py_NewRef(self->state);
    req->scope = scope;
    req->ctx = Py_XNewRef(self->ctx);
    req->lane = (LaneObject *)Py_NewRef(op);
    self->unstarted++;
    req->t = self->t;
    req->view = view;
    req->live = rm_req_live(&view);
    int brc = rm_body_reader_open(&req->body, &view);
    if (view.body_fd >= 0)
        close(view.body_fd); /* the reader holds its own */
    if (brc < 0) {
        /* Cannot read the body: receive() raises OSError, so the app fails
         * and the request is answered 500. */
        req->body.left = 0;
        req->body.error = -brc;
    }
    rm_out_init(&req->out, self->t, desc.req_id, req->live);
    req->r = (rm_framed_t){
        .out = &req->out,
        .req_flags = view.meta.flags,
        .http_major = view.meta.http_major,
        .http_minor = view.meta.http_minor,
        .app_length = -1,
        .length = -1,
    };
    req->open = true;
    rm_lane_stat_add(&lane_stats(self->t)->in_flight, 1);
    return (PyObject *)req;
}

static PyObject *lane_request_type(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(R((AsgiState *)((LaneObject *)op)->state, REQUEST_TYPE));
}

static PyObject *lane_index(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLong(((LaneObject *)op)->t->index);
}

static PyObject *lane_fileno(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(((LaneObject *)op)->bell_fd);
}

static PyObject *lane_clear(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    uint64_t v;
    if (read(((LaneObject *)op)->bell_fd, &v, sizeof(v)) < 0) {
        /* EAGAIN: already cleared (another thread's loop shares the bell) */
    }
    Py_RETURN_NONE;
}

/* defer_rings(call_soon): ring the doorbell for final completions once per
 * pass of the loop that call_soon belongs to (lane_ring_soon);
 * defer_rings(None): at once, after ringing for any left. */
static PyObject *lane_defer_rings(PyObject *op, PyObject *call_soon)
{
    LaneObject *self = (LaneObject *)op;
    lane_stop_deferring(self);
    if (call_soon == Py_None)
        Py_RETURN_NONE;
    if (!PyCallable_Check(call_soon)) {
        PyErr_SetString(PyExc_TypeError, "defer_rings(): call_soon must be callable or None");
        return NULL;
    }
    PyObject *flush = PyObject_GetAttrString(op, "flush");
    if (flush == NULL)
        return NULL;
    Py_XSETREF(self->flush, flush);
    Py_XSETREF(self->call_soon, Py_NewRef(call_soon));
    Py_RETURN_NONE;
}

static PyObject *lane_flush(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    lane_flush_rings((LaneObject *)op);
    Py_RETURN_NONE;
}

/* Write the bell: a loop that stops taking requests (at --max-concurrency)
 * hands the ones waiting to the other threads' loops. */
static PyObject *lane_ring(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    (void)rm_eventfd_signal(((LaneObject *)op)->bell_fd);
    Py_RETURN_NONE;
}

static PyObject *lane_stopping(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(lane_should_stop(((LaneObject *)op)->t->w));
}

/* log(level, text, detail=None): 0 error, 1 warn, 2 info, 3 debug, through
 * the worker's log; a detail (a traceback) goes into the same record. */
static PyObject *lane_log(PyObject *Py_UNUSED(op), PyObject *args)
{
    int level;
    const char *text;
    const char *detail = NULL;
    if (!PyArg_ParseTuple(args, "is|z:log", &level, &text, &detail))
        return NULL;
    if (level < RM_LOG_ERROR || level > RM_LOG_DEBUG)
        level = RM_LOG_DEBUG;
    if ((rm_log_level_t)level <= rm_log_conf.level)
        rm_log_write_detail((rm_log_level_t)level, detail, "%s", text);
    Py_RETURN_NONE;
}

/* set(req_type, ctx, lifespan_state_or_None): what pop() makes. */
static PyObject *lane_set(PyObject *op, PyObject *args)
{
    LaneObject *self = (LaneObject *)op;
    PyObject *tp, *ctx, *lifespan;
    if (!PyArg_ParseTuple(args, "OOO:set", &tp, &ctx, &lifespan))
        return NULL;
    if (!PyType_Check(tp) ||
        !PyType_IsSubtype((PyTypeObject *)tp,
                          (PyTypeObject *)R((AsgiState *)self->state, REQUEST_TYPE))) {
        PyErr_SetString(PyExc_TypeError, "set(): a subclass of Request expected");
        return NULL;
    }
    if (lifespan != Py_None && !PyDict_Check(lifespan)) {
        PyErr_SetString(PyExc_TypeError, "set(): the lifespan state must be a dict or None");
        return NULL;
    }
    Py_XSETREF(self->req_type, Py_NewRef(tp));
    Py_XSETREF(self->ctx, Py_NewRef(ctx));
    Py_XSETREF(self->lifespan, lifespan == Py_None ? NULL : Py_NewRef(lifespan));
    Py_RETURN_NONE;
}

static int lane_traverse(PyObject *op, visitproc visit, void *arg)
{
    LaneObject *self = (LaneObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->state);
    Py_VISIT(self->req_type);
    Py_VISIT(self->ctx);
    Py_VISIT(self->lifespan);
    Py_VISIT(self->call_soon);
    Py_VISIT(self->flush);
    return 0;
}

static int lane_clear_refs(PyObject *op)
{
    LaneObject *self = (LaneObject *)op;
    Py_CLEAR(self->req_type);
    Py_CLEAR(self->ctx);
    Py_CLEAR(self->lifespan);
    Py_CLEAR(self->call_soon);
    Py_CLEAR(self->flush);
    return 0;
}

static void lane_dealloc(PyObject *op)
{
    LaneObject *self = (LaneObject *)op;
    PyTypeObject *tp = Py_TYPE(op);

    PyObject_GC_UnTrack(op);
    lane_flush_rings(self);
    lane_clear_refs(op);
    Py_CLEAR(self->state);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef lane_methods[] = {
    {"pop", lane_pop, METH_NOARGS, "The next request (a Request), or None when none is ready."},
    {"fileno", lane_fileno, METH_NOARGS, "The eventfd that turns readable when requests come."},
    {"clear", lane_clear, METH_NOARGS, "Reset the eventfd before draining."},
    {"ring", lane_ring, METH_NOARGS, "Make the eventfd readable (for the other threads' loops)."},
    {"defer_rings", lane_defer_rings, METH_O, "defer_rings(loop.call_soon or None)."},
    {"flush", lane_flush, METH_NOARGS, "Ring the doorbell for the completions deferred."},
    {"stopping", lane_stopping, METH_NOARGS, "Whether the worker is stopping."},
    {"log", lane_log, METH_VARARGS, "log(level, text, detail=None) through the worker's log."},
    {"set", lane_set, METH_VARARGS, "set(request_type, ctx, lifespan_state)."},
    {"request_type", lane_request_type, METH_NOARGS, "The C Request type to subclass."},
    {"index", lane_index, METH_NOARGS, "The serving thread's index in its worker."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot lane_slots[] = {
    {Py_tp_dealloc, lane_dealloc},
    {Py_tp_traverse, lane_traverse},
    {Py_tp_clear, lane_clear_refs},
    {Py_tp_methods, lane_methods},
    {Py_tp_doc, "A serving thread's view of the worker's lane (made by the worker)."},
    {0, NULL},
};

static PyType_Spec lane_spec = {
    .name = "_ringmaster_asgi.Lane",
    .basicsize = sizeof(LaneObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = lane_slots,
};

/* ---- loading -------------------------------------------------------------------------- */

static const struct {
    int index;
    const char *text;
} interned[] = {
    {S_TYPE, "type"},
    {S_ASGI, "asgi"},
    {S_HTTP_VERSION, "http_version"},
    {S_METHOD, "method"},
    {S_SCHEME, "scheme"},
    {S_PATH, "path"},
    {S_RAW_PATH, "raw_path"},
    {S_QUERY_STRING, "query_string"},
    {S_ROOT_PATH, "root_path"},
    {S_HEADERS, "headers"},
    {S_CLIENT, "client"},
    {S_SERVER, "server"},
    {S_STATE, "state"},
    {S_BODY, "body"},
    {S_MORE_BODY, "more_body"},
    {S_STATUS, "status"},
    {S_TRAILERS, "trailers"},
    {S_MORE_TRAILERS, "more_trailers"},
    {S_PATH_KEY, "path"},
    {V_HTTP, "http"},
    {V_HTTPS, "https"},
    {V_10, "1.0"},
    {V_11, "1.1"},
    {V_HTTP_REQUEST, "http.request"},
    {V_HTTP_DISCONNECT, "http.disconnect"},
    {V_START, "http.response.start"},
    {V_BODY, "http.response.body"},
    {V_TRAILERS_MSG, "http.response.trailers"},
    {V_PATHSEND, "http.response.pathsend"},
    {V_SLASH, "/"},
};

/* Every constant, into the tuple `as` (R_COUNT slots). */
static int state_fill(PyObject *as, const rm_app_conf_t *conf)
{
    PyObject *v[R_COUNT] = {NULL};
    for (size_t i = 0; i < sizeof(interned) / sizeof(interned[0]); i++)
        v[interned[i].index] = PyUnicode_InternFromString(interned[i].text);
    v[V_ROOT] =
        PyUnicode_DecodeUTF8(conf->root_path, (Py_ssize_t)conf->root_path_len, "surrogateescape");
    v[V_EMPTY_BYTES] = PyBytes_FromStringAndSize("", 0);
    v[ASGI_TEMPLATE] = Py_BuildValue("{s:s,s:s}", "version", "3.0", "spec_version", "2.4");
    v[DISCONNECT_TEMPLATE] = Py_BuildValue("{s:s}", "type", "http.disconnect");
    v[LANE_TYPE] = PyType_FromSpec(&lane_spec);
    v[REQUEST_TYPE] = PyType_FromSpec(&request_spec);
    int rc = 0;
    for (int i = 0; i < R_COUNT; i++) {
        if (v[i] == NULL)
            rc = -1;
        else
            PyTuple_SET_ITEM(as, i, v[i]); /* steals */
    }
    return rc;
}

bool rm_asgi_detect(PyObject *app)
{
    PyObject *inspect = PyImport_ImportModule("inspect");
    bool yes = false;

    if (inspect != NULL) {
        PyObject *r = PyObject_CallMethod(inspect, "iscoroutinefunction", "O", app);
        yes = r == Py_True;
        Py_XDECREF(r);
        if (!yes && !PyFunction_Check(app) && !PyMethod_Check(app)) {
            PyObject *call = PyObject_GetAttrString(app, "__call__");
            r = call != NULL ? PyObject_CallMethod(inspect, "iscoroutinefunction", "O", call)
                             : NULL;
            yes = r == Py_True;
            Py_XDECREF(r);
            Py_XDECREF(call);
        }
        Py_DECREF(inspect);
    }
    PyErr_Clear();
    return yes;
}

int rm_asgi_load(rm_pymod_state_t *st, char *why, size_t why_len)
{
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        char err[300];
        rm_host_take_exception(err, sizeof(err), false);
        snprintf(why, why_len,
                 "cannot run an ASGI app here: asyncio does not import in this interpreter (%s)",
                 err);
        return -ENOTSUP;
    }
    Py_DECREF(asyncio);
    PyObject *as = PyTuple_New(R_COUNT);
    if (as != NULL && state_fill(as, &st->worker->conf->iface) == 0) {
        Py_XSETREF(st->asgi, as);
        return 0;
    }
    Py_XDECREF(as);
    snprintf(why, why_len, "cannot set up ASGI: ");
    rm_host_log_exception(why + strlen(why), why_len - strlen(why), RM_LOG_ERROR,
                          "cannot set up ASGI: ");
    return -ENOMEM;
}

/* ---- a serving thread's loop ------------------------------------------------------------ */

static PyObject *lane_new(rm_serve_thread_t *t)
{
    AsgiState *as = (AsgiState *)t->st->asgi;
    PyTypeObject *tp = (PyTypeObject *)R(as, LANE_TYPE);
    LaneObject *self = (LaneObject *)tp->tp_alloc(tp, 0);
    if (self == NULL)
        return NULL;
    self->state = Py_NewRef((PyObject *)as);
    self->t = t;
    self->bell_fd = t->w->conf->loop_bell_fd;
    self->req_type = Py_NewRef(R(as, REQUEST_TYPE));
    return (PyObject *)self;
}

int rm_asgi_thread_start(rm_serve_thread_t *t, char *why, size_t why_len)
{
    const rm_app_conf_t *conf = &t->w->conf->iface;
    PyObject *driver = NULL, *lane = NULL, *server = NULL, *err = NULL;
    int rc = -ENOMEM;

    driver = PyImport_ImportModule("ringmaster._asgi");
    if (driver != NULL)
        lane = lane_new(t);
    if (lane != NULL)
        server = PyObject_CallMethod(driver, "Server", "OOssI", lane, t->st->app,
                                     rm_loop_name(conf->loop), rm_lifespan_name(conf->lifespan),
                                     conf->max_concurrency);
    if (server != NULL)
        err = PyObject_CallMethod(server, "startup", NULL);
    if (err == NULL) {
        snprintf(why, why_len, "cannot start the ASGI event loop: ");
        rm_host_log_exception(why + strlen(why), why_len - strlen(why), RM_LOG_ERROR,
                              "cannot start the ASGI event loop: ");
    } else if (err != Py_None) {
        const char *text = PyUnicode_Check(err) ? PyUnicode_AsUTF8(err) : NULL;
        snprintf(why, why_len, "ASGI lifespan startup failed: %s", text ? text : "?");
        PyErr_Clear();
        rc = -ENOENT;
    } else {
        t->asgi = Py_NewRef(server);
        rc = 0;
    }
    if (rc < 0 && server != NULL) {
        PyObject *r = PyObject_CallMethod(server, "close", NULL);
        if (r == NULL)
            PyErr_Clear();
        Py_XDECREF(r);
    }
    Py_XDECREF(err);
    Py_XDECREF(server);
    Py_XDECREF(lane);
    Py_XDECREF(driver);
    return rc;
}

void rm_asgi_thread_serve(rm_serve_thread_t *t)
{
    PyObject *r = PyObject_CallMethod(t->asgi, "serve", NULL);
    if (r == NULL) {
        char why[512];
        rm_host_take_exception(why, sizeof(why), true);
        RM_ERROR("ASGI event loop of thread %u failed: %s; stopping", t->index, why);
        rm_worker_request_stop(t->w);
    }
    Py_XDECREF(r);
}

/* The serving thread ends: ring for what is deferred, drop the loop's
 * call_soon and forget the thread, whose state is freed before the
 * interpreter (and a Lane kept alive by a reference cycle) goes. */
static void lane_detach(rm_serve_thread_t *t)
{
    PyObject *lane = PyObject_GetAttrString(t->asgi, "lane");
    if (lane == NULL) {
        PyErr_Clear();
        return;
    }
    if (PyObject_TypeCheck(lane, (PyTypeObject *)R((AsgiState *)t->st->asgi, LANE_TYPE))) {
        lane_stop_deferring((LaneObject *)lane);
        ((LaneObject *)lane)->t = NULL;
    }
    Py_DECREF(lane);
}

void rm_asgi_thread_end(rm_serve_thread_t *t)
{
    if (t->asgi == NULL)
        return;
    PyObject *r = PyObject_CallMethod(t->asgi, "shutdown", NULL);
    if (r == NULL) {
        char why[512];
        rm_host_take_exception(why, sizeof(why), true);
        RM_ERROR("ASGI shutdown of thread %u failed: %s", t->index, why);
    }
    Py_XDECREF(r);
    PyErr_Clear();
    lane_detach(t);
    Py_CLEAR(t->asgi);
}
