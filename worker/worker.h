/*
 * worker.h - the pieces of ringmaster-worker and where they meet.
 *
 *   conf.c      argv -> const rm_worker_conf_t (conf.h; no Python)
 *   main.c      attach, hello, import, ready, serve, exit status
 *   host.c      CPython init and finalize, importing the app, exception text
 *   request.c   the _ringmaster module: Request, Headers and the body exporter
 *   response.c  an app's return value -> HTTP/1.1 bytes in chunks; Date cache
 *   stream.c    rm_out_t: response bytes into chunks and completions, the send window
 *   serve.c     serving threads, the control thread, stopping
 *   body.c      reading a request body: region slices or a spilled file (body.h)
 *   wsgi.c      PEP 3333: environ, wsgi.input, start_response, streamed responses (wsgi.h)
 *   attach.c    _ringmaster._serve_attached: the same core in an ordinary Python
 *               process that attached over the control socket (docs/attach.md)
 *
 * Threads: T serving threads, each waiting for a request without holding
 * Python (detached), attaching to build the Request, run the app and write the
 * response, and detaching again before the next wait. What they attach to is
 * the mode (docs/modes.md):
 *   gil              one interpreter; its GIL lets one thread run at a time
 *   subinterpreters  each thread creates, uses and ends its own interpreter,
 *                    which has its own GIL and its own copy of the app
 *   free-threaded    one interpreter without a GIL (Py_GIL_DISABLED builds)
 * The control thread and the signal handlers never touch Python.
 *
 * Exit statuses: 0 after a stop, 1 for an internal failure (region, CPython,
 * control socket), 2 for bad arguments, 3 when the app cannot be imported.
 */
#ifndef RINGMASTER_WORKER_H
#define RINGMASTER_WORKER_H

/* Python.h first: it may set feature macros the C library headers look at. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "conf.h"
#include "stream.h"

#include "ringmaster/chunk_pool.h"
#include "ringmaster/http_date.h"
#include "ringmaster/lane.h"
#include "ringmaster/log.h"
#include "ringmaster/region.h"
#include "ringmaster/wire.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define RM_WORKER_EXIT_OK 0
#define RM_WORKER_EXIT_INTERNAL 1
#define RM_WORKER_EXIT_USAGE 2
#define RM_WORKER_EXIT_APP 3

/* ---- the Python side (host.c, request.c) --------------------------------- */

/* Critical sections lock an object in free-threaded builds and cost nothing
 * where a GIL serialises; CPython has them from 3.13 in both builds. Before
 * that only builds with a GIL exist. */
#if PY_VERSION_HEX >= 0x030D0000
#define RM_BEGIN_CRITICAL_SECTION(op) Py_BEGIN_CRITICAL_SECTION(op)
#define RM_END_CRITICAL_SECTION() Py_END_CRITICAL_SECTION()
#else
#define RM_BEGIN_CRITICAL_SECTION(op) {
#define RM_END_CRITICAL_SECTION() }
#endif

/* Own-GIL subinterpreters (Py_NewInterpreterFromConfig) exist from 3.12. */
#define RM_HAVE_SUBINTERPRETERS (PY_VERSION_HEX >= 0x030C0000)

/* A --disable-gil build, as an expression for code that only reads it. */
#ifdef Py_GIL_DISABLED
#define RM_FREE_THREADED_BUILD 1
#else
#define RM_FREE_THREADED_BUILD 0
#endif

struct rm_worker;

/* Interned method names the Request hands out without allocating. */
enum {
    RM_METHOD_GET,
    RM_METHOD_POST,
    RM_METHOD_PUT,
    RM_METHOD_DELETE,
    RM_METHOD_HEAD,
    RM_METHOD_OPTIONS,
    RM_METHOD_PATCH,
    RM_METHOD_COUNT
};

/* State of the _ringmaster module, one per interpreter. Every PyObject field is
 * a strong reference, released by the module's m_clear. */
typedef struct rm_pymod_state {
    PyTypeObject *request_type;
    PyTypeObject *headers_type;
    PyTypeObject *body_type; /* exporter behind request.body's memoryview */
    PyObject *methods[RM_METHOD_COUNT];
    PyObject *str_empty, *str_slash, *str_http11, *str_http10;
    PyObject *str_body, *str_status, *str_headers, *str_content_type;
    PyObject *empty_bytes;
    /* Set by rm_host_init / rm_host_load_app; NULL before. */
    PyObject *app;            /* the app callable */
    PyObject *json_encode;    /* json.JSONEncoder(separators=(",", ":")).encode */
    PyObject *json_chunks;    /* the same as _json's C encoder: (obj, 0) -> str pieces, or NULL */
    PyObject *response_type;  /* ringmaster.Response */
    PyObject *wsgi;           /* WSGI app: its per-interpreter state (wsgi.c); NULL: native */
    PyObject *asgi;           /* ASGI app: its per-interpreter state (asgi.c); NULL otherwise */
    struct rm_worker *worker; /* borrowed: outlives every object of this module */
} rm_pymod_state_t;

typedef struct rm_host {
    PyObject *module;       /* owned: _ringmaster, keeps `st` alive */
    rm_pymod_state_t *st;   /* borrowed from module */
    PyThreadState *main_ts; /* the main thread's state while it waits without the GIL */
    bool initialized;       /* Py_InitializeFromConfig succeeded */
    /* Some thread created a subinterpreter (decides finalization on 3.12). */
    atomic_bool subinterpreters_made;
} rm_host_t;

/* One subinterpreter and the _ringmaster module inside it (subinterpreters
 * mode: one per serving thread, which alone may use and end it). */
typedef struct rm_interp {
    PyThreadState *ts;    /* its thread state on the owning thread; NULL before creation */
    PyObject *module;     /* owned: its _ringmaster, keeps `st` alive */
    rm_pymod_state_t *st; /* borrowed from module */
} rm_interp_t;

/* The version of the libpython we run on, e.g. "3.11.2" (safe before init). */
void rm_host_python_version(char *buf, size_t len);

/* Turn the asked mode into one this build runs: auto becomes free-threaded on
 * a free-threaded build, else subinterpreters where they exist (main.c falls
 * back to gil if the app refuses them), else gil. Returns 0, or -ENOTSUP with
 * one line in `why` naming the mode and what to use instead. No Python needed. */
int rm_host_resolve_mode(rm_worker_mode_t asked, rm_worker_mode_t *mode, char *why, size_t why_len);

/* Initialise CPython (PyConfig, venv, sys.path, _ringmaster, json, the
 * ringmaster package) for w->mode: gil mode on a free-threaded build turns the
 * GIL on. On success the calling thread holds the GIL. Returns 0, or -errno
 * with a readable line in `why`; after a failure call rm_host_finalize all the
 * same. */
int rm_host_init(rm_host_t *host, struct rm_worker *w, int argc, char **argv, char *why,
                 size_t why_len);

/* Import the app named by `spec` into the calling thread's interpreter and
 * keep it in that interpreter's module state `st`. The caller holds the GIL.
 * Returns 0; -ENOTSUP when the app or a module it imports cannot load in a
 * subinterpreter (`why` names the module and suggests another mode); or
 * -ENOENT with "cannot import app 'SPEC': ..." in `why` (the traceback, if
 * any, went to stderr at debug level). */
int rm_host_load_app(rm_pymod_state_t *st, const char *spec, char *why, size_t why_len);

/* Whether the calling thread's interpreter runs with a GIL: on free-threaded
 * builds sys._is_gil_enabled() (an extension module may have turned it on),
 * otherwise always. The caller holds the GIL (is attached). */
bool rm_host_gil_enabled(void);

/* Give up the GIL on the main thread while the serving threads run. */
void rm_host_release_main(rm_host_t *host);

/* Take it back (no-op when held). */
void rm_host_acquire_main(rm_host_t *host);

/* Create a subinterpreter with its own GIL on the calling thread, which must
 * hold no Python thread state, and set it up as rm_host_init does the main
 * one. On success the thread holds the new interpreter's GIL. Returns 0, or
 * -errno with a readable line in `why`. Either way, call rm_host_interp_end on
 * this same thread when done. Thread-safe. */
int rm_host_interp_start(rm_interp_t *in, rm_host_t *host, struct rm_worker *w, char *why,
                         size_t why_len);

/* Drop the references held in `in` and Py_EndInterpreter it. Call on the
 * thread that started it, holding its GIL (or after a start that created
 * nothing); returns holding no thread state. */
void rm_host_interp_end(rm_interp_t *in);

/* Take the GIL back if released, drop our references, Py_FinalizeEx. Safe
 * after a failed or skipped rm_host_init. On CPython 3.12 after any
 * subinterpreter was made, the main interpreter is not finalized (3.12
 * aborts there, docs/modes.md): stdio is flushed and the process exits as is. */
void rm_host_finalize(rm_host_t *host);

/* Take the pending Python exception: write "Type: message" (one line) into
 * buf and clear it; if show_traceback, format its traceback and hold it for
 * the calling thread's next error record (rm_log_hold_detail), which the
 * caller logs, naming the request: the two go out as one write, never
 * interleaved with another worker's lines. Runs no sys.excepthook and never
 * exits on SystemExit. The caller holds the GIL. */
void rm_host_take_exception(char *buf, size_t len, bool show_traceback);

/* As rm_host_take_exception, for a failure that is reported elsewhere (to the
 * supervisor, at start-up): when `level` is enabled, the traceback is written
 * now, as a record of its own at `level` reading `what` then buf. */
void rm_host_log_exception(char *buf, size_t len, rm_log_level_t level, const char *what);

/* traceback.format_exception(exc) as one malloc'd UTF-8 string, or NULL when
 * it cannot be formatted. Leaves no exception set; the caller holds the GIL
 * and frees the string. */
char *rm_host_format_traceback(PyObject *exc);

/* Serve from an interpreter someone else initialised (an attached worker,
 * docs/attach.md): set up _ringmaster, the JSON encoder and
 * ringmaster.Response in the calling thread's interpreter, leaving sys.path
 * and sys.executable alone. The caller holds the GIL. Returns 0, or -errno
 * with a readable line in `why`; either way call rm_host_disown after. */
int rm_host_adopt(rm_host_t *host, struct rm_worker *w, char *why, size_t why_len);

/* Undo rm_host_adopt: take the GIL back if released and drop our references.
 * The interpreter lives on. */
void rm_host_disown(rm_host_t *host);

/* The inittab entry of _ringmaster (multi-phase init). */
PyObject *rm_pymod_init(void);

/* _ringmaster's functions: _serve_attached (attach.c). */
extern PyMethodDef rm_pymod_methods[];

/* ---- requests (request.c) ------------------------------------------------ */

/* A validated request as the worker sees it. The pointers are into the region
 * and valid until the request's last completion is pushed. */
typedef struct rm_req_view {
    uint64_t req_id;
    rm_req_meta_t meta;              /* copy of the checked meta block */
    const rm_wire_header_t *headers; /* meta.header_count refs in the meta chunk */
    const rm_slice_t *body;          /* meta.body_slice_count slices in the meta chunk */
    int body_fd;                     /* RM_REQ_BODY_FILE: the spilled body, open; else -1 */
    const unsigned char *head;       /* first byte of meta.head_chunk */
    const rm_chunk_pool_t *pool;     /* resolves body slices */
} rm_req_view_t;

/* The request's meta block in the region itself (the view holds a copy),
 * whose live fields the supervisor updates: it lies right before the header
 * references, as rm_wire_headers() lays it out. */
static inline const rm_req_meta_t *rm_req_live(const rm_req_view_t *view)
{
    return (const rm_req_meta_t *)view->headers - 1;
}

#define RM_LOG_PATH_MAX 200 /* bytes of a path quoted in a log line */

/* "METHOD /path" of a request for log lines, printed with "%.*s %.*s". */
typedef struct rm_req_name {
    int method_len, path_len;
    const char *method, *path; /* into the view's head chunk */
} rm_req_name_t;

static inline rm_req_name_t rm_req_name(const rm_req_view_t *v)
{
    const rm_req_meta_t *m = &v->meta;
    return (rm_req_name_t){
        .method_len = (int)m->method_len,
        .path_len = m->path_len < RM_LOG_PATH_MAX ? (int)m->path_len : RM_LOG_PATH_MAX,
        .method = (const char *)v->head + m->method_off,
        .path = (const char *)v->head + m->path_off,
    };
}

/* Bind `view` to a Request (reusing *spare when set, which is then taken).
 * Returns a new reference, or NULL with an exception set. GIL held. */
PyObject *rm_request_open(rm_pymod_state_t *st, PyObject **spare, const rm_req_view_t *view);

/* The app has returned: make the Request stop pointing into the region. If it
 * is referenced elsewhere it is detached (every attribute built and copied);
 * otherwise it is cleared and parked in *spare when that is empty. Consumes
 * the reference to `req`. Returns the body exporter (new reference) when some
 * buffer of the body is still exported, else NULL; pass it to rm_body_settle.
 * GIL held. */
PyObject *rm_request_close(PyObject *req, PyObject **spare);

/* True while a Py_buffer of the exporter is alive. GIL held. */
bool rm_body_exported(PyObject *exporter);

/* Decimal digits of v at the end of buf[24]; returns where they start
 * (snprintf costs more than the rest of a small environ's values). Pure. */
char *rm_decimal(char buf[24], uint64_t v);

/* Percent-decode p[0..n) into out (n bytes of room; a '%' not followed by
 * two hex digits stays as it is). Returns the decoded length. Pure. */
size_t rm_percent_decode(const unsigned char *p, size_t n, unsigned char *out);

/* An address from the meta as text: IPv4-mapped IPv6 as IPv4, IPv6 in
 * brackets when `brackets`. `out` has INET6_ADDRSTRLEN + 2 bytes at least.
 * Returns the length, 0 when there is none (a Unix socket). Pure. */
size_t rm_addr_text(uint8_t family, const uint8_t addr[16], bool brackets, char *out, size_t len);

/* The final completion went out with RM_DONE_HOLD (`held`) or without it. When
 * held, the exporter's last buffer release pushes RM_DONE_RELEASE; otherwise it
 * stops exporting. Consumes the reference; NULL is allowed. GIL held. */
void rm_body_settle(PyObject *exporter, bool held);

/* ---- serving (serve.c) --------------------------------------------------- */

typedef struct rm_serve_thread {
    struct rm_worker *w;  /* borrowed */
    rm_pymod_state_t *st; /* the state of the interpreter it serves with; set by the thread */
    rm_interp_t interp;   /* its own interpreter (subinterpreters mode) */
    rm_chunk_pool_t pool; /* own copy of the pool handle: its search hint is per thread */
    rm_http_date_t date;
    PyObject *spare; /* a finished Request kept for the next one, or NULL */
    PyObject *asgi;  /* ASGI: this thread's server (its event loop, asgi.c), or NULL */
    struct rm_parked *parked; /* streamed responses waiting for their clients (serve.c) */
    unsigned nparked;
    unsigned park_poll_ms; /* how often the idle thread looks at them: 1 ms, doubling */
    pthread_t tid;
    unsigned index;
    bool started;
} rm_serve_thread_t;

/* Start-up of subinterpreters mode: every serving thread reports whether its
 * interpreter imported the app, then waits to be told to serve or to end. */
typedef struct rm_start_gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned reported; /* threads that finished loading, successfully or not */
    int err;           /* first failure (-ENOTSUP, -ENOENT, ...), 0 if none */
    int go;            /* 0 wait, 1 serve, -1 end */
    bool gil_enabled;  /* some interpreter runs with a GIL */
    char why[1024];    /* the first failure's reason */
} rm_start_gate_t;

typedef struct rm_worker {
    const rm_worker_conf_t *conf; /* borrowed, outlives the worker */
    rm_worker_mode_t mode;        /* the mode run: never AUTO once resolved */
    bool gil_enabled;             /* after the app was imported (reported in ready) */
    rm_region_t region;
    rm_lane_t lane;
    uint32_t owner;              /* RM_OWNER_LANE(conf->lane) */
    atomic_bool stop;            /* set once, never cleared */
    atomic_uint_fast64_t served; /* requests answered, for the heartbeat */
    int wake_fd;                 /* eventfd: wakes the control thread (signals, stop) */
    rm_host_t host;
    /* Threads, owned by rm_worker_start/rm_worker_wait. */
    rm_serve_thread_t *threads; /* conf->threads entries, or NULL */
    pthread_t control;
    bool control_started;
    rm_start_gate_t gate;
} rm_worker_t;

/* Create the wake eventfd and route SIGTERM/SIGINT to it (SIGPIPE ignored).
 * Call once, early, before any thread starts. Returns 0 or -errno. */
int rm_worker_init(rm_worker_t *w, const rm_worker_conf_t *conf);

/* Undo rm_worker_init (signals back to default, eventfd closed). */
void rm_worker_deinit(rm_worker_t *w);

/* Start the control thread and the serving threads in w->mode. Called on the
 * main thread holding the main interpreter's GIL; returns without it
 * (rm_host_acquire_main or rm_host_finalize take it back). In gil and
 * free-threaded modes the app is already imported. In subinterpreters mode
 * every thread imports it into its own interpreter first, and this returns
 * once all have; then w->gil_enabled is set.
 * Returns 0 (call rm_worker_wait next), or, with every thread stopped and
 * joined and a reason in `why`: what rm_host_load_app or rm_host_interp_start
 * returned for the first thread that failed (-ENOTSUP: the app refuses
 * subinterpreters), or -errno when a thread could not be created. */
int rm_worker_start(rm_worker_t *w, char *why, size_t why_len);

/* Wait until the threads rm_worker_start started have stopped (control frame,
 * EOF, SIGTERM/SIGINT, lane STOPPING, a corrupt ring) and join them. */
void rm_worker_wait(rm_worker_t *w);

/* Ask every thread to finish the request it has and return. Thread- and
 * async-signal-unsafe parts excluded: callable from any thread. */
void rm_worker_request_stop(rm_worker_t *w);

static inline bool rm_worker_stopping(const rm_worker_t *w)
{
    return atomic_load_explicit(&w->stop, memory_order_relaxed);
}

/* Push a completion, backing off while the completion ring is full (the GIL,
 * when `gil_held`, is released during the sleeps). Rings the doorbell when
 * `ring`. Returns 0, -ECANCELED when a stop came first, or -EBADMSG for a
 * corrupt ring (a stop is then requested). */
int rm_worker_push_done(rm_worker_t *w, const rm_done_desc_t *desc, bool gil_held, bool ring);

/* Allocate a response chunk owned by this lane, backing off while the pool is
 * exhausted (GIL released during sleeps; the caller holds it). Returns the
 * index, or RM_CHUNK_NONE when a stop came first. */
uint32_t rm_serve_alloc_chunk(rm_serve_thread_t *t);

/* Check a popped descriptor and open its view. Returns 0 when the request is
 * to be run (the caller closes view->body_fd when it is not -1, once its body
 * reader holds its own); 1 when it was answered here instead (500 for a
 * malformed meta block or a spilled body that cannot be opened, 503 for one
 * that waited past its deadline: the final completion is pushed, not yet
 * rung; or the supervisor had taken it back (wire.h): its RM_DONE_RELEASE is
 * pushed); -ECANCELED on a stop. The GIL is held. */
int rm_serve_admit(rm_serve_thread_t *t, const rm_req_desc_t *desc, rm_req_view_t *view);

/* Push the final completion of what `out` holds (RM_DONE_LAST | out->flags)
 * and count the request served; on failure (a stop) the chunk is freed.
 * Does not ring. Returns 0, -ECANCELED or -EBADMSG. The GIL is held. */
struct rm_out;
int rm_serve_finish(rm_serve_thread_t *t, struct rm_out *out);

/* Ring the supervisor's doorbell (a syscall only when it sleeps). */
void rm_serve_ring(rm_worker_t *w);

/* A held body's last buffer is gone: push {req_id, RM_CHUNK_NONE,
 * RM_DONE_RELEASE} and ring. Called with the GIL held from bf_releasebuffer;
 * never releases it. Gives up (logged) only when stopping. */
void rm_worker_release_hold(rm_worker_t *w, uint64_t req_id);

/* ---- responses (response.c) ---------------------------------------------- */

/* Render the app's return value `result` (borrowed) for the request `view`.
 * A body of known length is written whole (chunks that fill up are pushed as
 * they go). A streamed body (an iterable) is pushed piece by piece as it is
 * produced, within the send window (stream.h), and the iterable's close() has
 * run on return, whatever happened. The last chunk stays in `out` for the
 * caller to push with RM_DONE_LAST | out->flags. GIL held. Returns:
 *   0            done; out->flags has RM_DONE_CLOSE when a stream the app broke
 *                after its head went out was cut (logged here);
 *   -EINVAL      the value cannot be sent and nothing went out: a reason in
 *                `why` (any Python exception printed and cleared), `out` is
 *                empty again for the caller's 500;
 *   -ECONNRESET  the client left during a stream (the caller abandons `out`
 *                and closes);
 *   -ECANCELED   the worker is stopping;
 *   RM_OUT_PARKED  only with out->park_ok: the client's window is full and
 *                the stream waits for it in out->parked (rm_response_resume
 *                goes on; its close() has not run yet). */
int rm_response_write(rm_out_t *out, rm_pymod_state_t *st, PyObject *result,
                      const rm_req_view_t *view, char *why, size_t why_len);

/* Go on with a response that rm_response_write parked (out->parked): its
 * body is iterated again until it ends, fails, the client leaves, or the
 * window is full again (RM_OUT_PARKED, still parked). Otherwise the body's
 * close() has run and the state is freed; returns as rm_response_write. With
 * out->err set (a stop, a client gone), it only cleans up. GIL held. */
int rm_response_resume(rm_out_t *out, const rm_req_view_t *view);

/* Write a short plain-text error response with `status` (e.g. 500). Pass
 * req_flags 0 to close the connection. Returns 0 or -ECANCELED. */
int rm_response_write_error(rm_out_t *out, int status, uint32_t req_flags, uint8_t http_minor);

/* Does the comma-separated header value p[0..n) list `token` (any case,
 * whitespace around elements ignored)? For "Connection: keep-alive, close". */
bool rm_header_has_token(const char *p, size_t n, const char *token);

/* The checks and texts the native response uses, for other interfaces
 * (wsgi.c): a header name is an RFC 9110 token; a value (or status line)
 * holds no CR, LF or NUL; the registered reason phrase of `status`
 * ("Unknown" for others). Pure. */
bool rm_response_token_ok(const char *p, size_t n);
bool rm_response_value_ok(const char *p, size_t n);
const char *rm_response_reason(int status);

#endif
