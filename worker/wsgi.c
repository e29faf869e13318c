/*
 * wsgi.c - PEP 3333: the environ, wsgi.input, start_response, write() and the
 * response body, for app(environ, start_response).
 *
 * The environ is the hot path. Every constant key and value is made once per
 * interpreter (WsgiState, reached through the module state, so each
 * subinterpreter has its own) and a template dict holding all of them, plus
 * placeholders for the per-request keys, is copied per request (a dict copy
 * is a memcpy of its table, and the copy has room for some twenty headers
 * before it grows). Per request only the values are made: the method
 * is an interned string, PATH_INFO is decoded once, headers of common names
 * get interned HTTP_* keys.
 *
 * The response: start_response checks the status and headers at once (a bad
 * one raises in the app, which may still answer otherwise) and renders them.
 * The head is written when the first non-empty piece of body arrives, or at
 * the end of an empty body, as PEP 3333 asks, so a start_response replaced by
 * a later one with exc_info is never seen. Framing:
 *   - a list or tuple is complete: its length is the Content-Length and it
 *     goes out in one completion when it fits a chunk;
 *   - else the app's Content-Length, when it gave one; iteration stops once
 *     that many bytes were produced (PEP 3333), and the last piece rides on
 *     the final completion;
 *   - else chunked transfer-coding on HTTP/1.1, a close-delimited body on
 *     HTTP/1.0;
 *   - HEAD and 1xx/204/304 responses carry no body: the iterable is only run
 *     until the head is known.
 * Every produced piece is pushed before the next one is asked for (PEP 3333
 * forbids holding it back), except for wsgi.file_wrapper, whose reads never
 * wait on the app and are packed into full chunks. At most RM_OUT_WINDOW
 * pushed chunks are not yet sent (stream.h: the supervisor publishes what it
 * sent), so a slow reader holds a bounded part of the region; a client that
 * went away (rm_out_client_gone) ends the iteration. close() of
 * the iterable is always called, before the final completion, so nothing it
 * does can reach memory the supervisor has recycled.
 *
 * An app that raises, or breaks the protocol, before anything was pushed gets
 * a 500; after that the connection is closed, so the client sees a truncated
 * body (no chunked terminator), never a second response.
 *
 * Everything runs with the GIL held (the interpreter's own in subinterpreters
 * mode); the objects here are per request and never shared between threads by
 * the server.
 */
#include "wsgi.h"
#include "asgi.h"
#include "head.h"
#include "body.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <structmember.h>

#ifndef RINGMASTER_VERSION
#define RINGMASTER_VERSION "dev"
#endif

#define MAX_FWD_LINES 16 /* X-Forwarded-For / -Proto / Forwarded lines looked at, each */
#define PATH_STACK 4096  /* PATH_INFO decoded on the stack up to this size */
#define DEFAULT_BLKSIZE 8192

/* ---- per-interpreter state -------------------------------------------------- */

/* Header names with an interned environ key. The first ones are also
 * looked at by the server itself. */
enum {
    H_HOST,
    H_CONTENT_TYPE,
    H_CONTENT_LENGTH,
    H_COOKIE,
    H_XFF,
    H_XFP,
    H_FORWARDED,
    H_TRANSFER_ENCODING,
    H_FIRST_PLAIN, /* the rest are only copied into the environ */
};

#define H(name)                                                                                    \
    {                                                                                              \
        name, sizeof(name) - 1                                                                     \
    }
static const struct {
    const char *name; /* lowercase */
    size_t len;
} known_headers[] = {
    [H_HOST] = H("host"),
    [H_CONTENT_TYPE] = H("content-type"),
    [H_CONTENT_LENGTH] = H("content-length"),
    [H_COOKIE] = H("cookie"),
    [H_XFF] = H("x-forwarded-for"),
    [H_XFP] = H("x-forwarded-proto"),
    [H_FORWARDED] = H("forwarded"),
    [H_TRANSFER_ENCODING] = H("transfer-encoding"),
    H("user-agent"),
    H("accept"),
    H("accept-encoding"),
    H("accept-language"),
    H("accept-charset"),
    H("connection"),
    H("keep-alive"),
    H("referer"),
    H("origin"),
    H("cache-control"),
    H("pragma"),
    H("authorization"),
    H("if-none-match"),
    H("if-modified-since"),
    H("if-match"),
    H("if-unmodified-since"),
    H("if-range"),
    H("range"),
    H("upgrade-insecure-requests"),
    H("x-forwarded-host"),
    H("x-forwarded-port"),
    H("x-real-ip"),
    H("x-requested-with"),
    H("x-request-id"),
    H("x-csrftoken"),
    H("dnt"),
    H("te"),
    H("expect"),
    H("upgrade"),
    H("via"),
    H("priority"),
    H("sec-fetch-site"),
    H("sec-fetch-mode"),
    H("sec-fetch-dest"),
    H("sec-fetch-user"),
    H("sec-ch-ua"),
    H("sec-ch-ua-mobile"),
    H("sec-ch-ua-platform"),
};
#undef H
#define N_KNOWN (sizeof(known_headers) / sizeof(known_headers[0]))

/* Every reference the state holds, by index, so traverse and clear are loops. */
enum {
    R_INPUT_TYPE,
    R_START_TYPE,
    R_WRAPPER_TYPE,
    R_TEMPLATE, /* the environ every request starts from */
    R_SYSDICT,  /* sys.__dict__, where sys.stderr is looked up */
    /* environ keys */
    K_REQUEST_METHOD,
    K_SCRIPT_NAME,
    K_PATH_INFO,
    K_QUERY_STRING,
    K_SERVER_NAME,
    K_SERVER_PORT,
    K_SERVER_PROTOCOL,
    K_SERVER_SOFTWARE,
    K_REMOTE_ADDR,
    K_REMOTE_PORT,
    K_REQUEST_URI,
    K_RAW_URI,
    K_WSGI_VERSION,
    K_WSGI_URL_SCHEME,
    K_WSGI_INPUT,
    K_WSGI_ERRORS,
    K_WSGI_MULTITHREAD,
    K_WSGI_MULTIPROCESS,
    K_WSGI_RUN_ONCE,
    K_WSGI_FILE_WRAPPER,
    /* values */
    V_HTTP,
    V_HTTPS,
    V_HTTP11,
    V_HTTP10,
    V_PORT80,
    V_PORT443,
    V_EMPTY,
    V_SLASH,
    V_LOCALHOST,
    V_CLOSE,  /* "close", an attribute name */
    K_STDERR, /* "stderr", a key of sys.__dict__ */
    R_KNOWN,  /* N_KNOWN environ keys of known_headers follow */
    N_REFS = R_KNOWN + N_KNOWN
};

#define KNOWN_MAX_LEN 32 /* longest name in known_headers, at most */

typedef struct {
    PyObject ob_base; /* PyObject_HEAD, spelled out for clang-format */
    PyObject *ref[N_REFS];
    const rm_app_conf_t *conf; /* borrowed: the worker's, outlives the interpreter */
    /* known_headers by name length: known_order[known_start[n]] up to
     * known_order[known_start[n + 1]] are the entries n bytes long. */
    uint8_t known_order[N_KNOWN];
    uint8_t known_start[KNOWN_MAX_LEN + 2];
} WsgiState;

static inline PyObject *R(const WsgiState *ws, int i)
{
    return ws->ref[i];
}

/* ---- small helpers ----------------------------------------------------------- */

static inline unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* Does `p` (any case) equal `lower`? */
static bool ieq(const unsigned char *p, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ascii_lower(p[i]) != (unsigned char)lower[i])
            return false;
    return true;
}

static int known_index(const WsgiState *ws, const unsigned char *name, size_t len)
{
    if (len > KNOWN_MAX_LEN)
        return -1;
    for (unsigned k = ws->known_start[len]; k < ws->known_start[len + 1]; k++) {
        unsigned i = ws->known_order[k];
        if (ieq(name, known_headers[i].name, len))
            return (int)i;
    }
    return -1;
}

static void known_index_init(WsgiState *ws)
{
    unsigned k = 0;
    for (size_t len = 0; len <= KNOWN_MAX_LEN; len++) {
        ws->known_start[len] = (uint8_t)k;
        for (size_t i = 0; i < N_KNOWN; i++)
            if (known_headers[i].len == len)
                ws->known_order[k++] = (uint8_t)i;
    }
    ws->known_start[KNOWN_MAX_LEN + 1] = (uint8_t)k;
    assert(k == N_KNOWN); /* no name is longer than KNOWN_MAX_LEN */
}

static PyObject *latin1(const void *p, size_t n)
{
    return PyUnicode_DecodeLatin1((const char *)p, (Py_ssize_t)n, NULL);
}

/* A port number as a str. */
/* A str of ASCII bytes, without the UTF-8 check a generic constructor makes. */
static PyObject *ascii_str(const char *p, size_t n)
{
    PyObject *s = PyUnicode_New((Py_ssize_t)n, 127);
    if (s != NULL)
        memcpy(PyUnicode_1BYTE_DATA(s), p, n);
    return s;
}

static PyObject *decimal_str(uint64_t v)
{
    char buf[24], *p = rm_decimal(buf, v);
    return ascii_str(p, (size_t)(buf + 24 - p));
}

/* d[key] = value, consuming `value` (NULL: an exception is already set). */
static int put_new(PyObject *d, PyObject *key, PyObject *value)
{
    if (value == NULL)
        return -1;
    int rc = PyDict_SetItem(d, key, value);
    Py_DECREF(value);
    return rc;
}


/* ---- wsgi.input ---------------------------------------------------------------- */

/* A read-only file over the request body (body.h: region slices or a spilled
 * file). Reads copy only what they return. rm_wsgi_run detaches it (copies the
 * unread rest of a region body into memory of its own) if the app still holds
 * it when the request ends. */
typedef struct {
    PyObject ob_base;
    rm_body_reader_t body;
} InputObject;

/* Raise for a body that could not be read (a spilled file gone bad). */
static PyObject *input_error(InputObject *s)
{
    errno = s->body.error;
    return PyErr_SetFromErrno(PyExc_OSError);
}

/* Copy the next n (<= left) bytes out. */
static size_t input_copy(InputObject *s, unsigned char *dst, size_t n)
{
    return rm_body_reader_read(&s->body, dst, n);
}

static PyObject *input_take(InputObject *s, size_t n)
{
    const unsigned char *p;

    if (n == 0)
        return s->body.error ? input_error(s) : PyBytes_FromStringAndSize(NULL, 0);
    /* Within the current piece: one copy straight into the bytes. */
    if (rm_body_reader_peek(&s->body, &p) >= n) {
        PyObject *out = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
        if (out != NULL)
            rm_body_reader_skip(&s->body, n);
        return out;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    if (out == NULL)
        return NULL;
    size_t got = input_copy(s, (unsigned char *)PyBytes_AS_STRING(out), n);
    if (got < n) {
        Py_DECREF(out);
        return input_error(s);
    }
    return out;
}

/* The size argument of read(), readline(), readlines(): absent, None or
 * negative mean "no limit" (-1). */
static int size_arg(PyObject *const *args, Py_ssize_t nargs, const char *fn, Py_ssize_t *size)
{
    *size = -1;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most 1 argument (%zd given)", fn, nargs);
        return -1;
    }
    if (nargs == 0 || args[0] == Py_None)
        return 0;
    if (!PyIndex_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "%s() argument must be an int or None, not %s", fn,
                     Py_TYPE(args[0])->tp_name);
        return -1;
    }
    *size = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
    if (*size == -1 && PyErr_Occurred())
        return -1;
    if (*size < 0)
        *size = -1;
    return 0;
}

static size_t limit_of(const InputObject *s, Py_ssize_t size)
{
    if (size < 0 || (uint64_t)size > s->body.left)
        return (size_t)s->body.left;
    return (size_t)size;
}

static PyObject *input_read(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    InputObject *s = (InputObject *)op;
    Py_ssize_t size;

    if (size_arg(args, nargs, "read", &size) < 0)
        return NULL;
    if (size < 0 && s->body.left > PY_SSIZE_T_MAX)
        return PyErr_NoMemory();
    return input_take(s, limit_of(s, size));
}

/* The next line, b"\n" included, at most `limit` bytes. Within one piece it
 * is one copy; a line over piece boundaries is gathered. */
static PyObject *input_take_line(InputObject *s, size_t limit)
{
    const unsigned char *p = NULL;
    size_t have = rm_body_reader_peek(&s->body, &p);
    if (have == 0 || limit == 0)
        return input_take(s, 0);
    if (have > limit)
        have = limit;
    const unsigned char *nl = memchr(p, '\n', have);
    if (nl != NULL || have == limit)
        return input_take(s, nl != NULL ? (size_t)(nl - p) + 1 : have);

    PyObject *out = PyBytes_FromStringAndSize(NULL, 0);
    size_t n = 0;
    while (out != NULL && n < limit) {
        have = rm_body_reader_peek(&s->body, &p);
        if (have == 0)
            break;
        if (have > limit - n)
            have = limit - n;
        nl = memchr(p, '\n', have);
        size_t take = nl != NULL ? (size_t)(nl - p) + 1 : have;
        if (_PyBytes_Resize(&out, (Py_ssize_t)(n + take)) < 0)
            break; /* out is NULL */
        memcpy(PyBytes_AS_STRING(out) + n, p, take);
        rm_body_reader_skip(&s->body, take);
        n += take;
        if (nl != NULL)
            break;
    }
    if (out != NULL && s->body.error) {
        Py_DECREF(out);
        return input_error(s);
    }
    return out;
}

static PyObject *input_readline(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    InputObject *s = (InputObject *)op;
    Py_ssize_t size;

    if (size_arg(args, nargs, "readline", &size) < 0)
        return NULL;
    return input_take_line(s, limit_of(s, size));
}

static PyObject *input_readlines(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    InputObject *s = (InputObject *)op;
    Py_ssize_t hint;
    size_t total = 0;

    if (size_arg(args, nargs, "readlines", &hint) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    while (out != NULL && s->body.left > 0 && (hint <= 0 || total < (size_t)hint)) {
        PyObject *line = input_take_line(s, (size_t)s->body.left);
        if (line == NULL || PyList_Append(out, line) < 0)
            Py_CLEAR(out);
        else
            total += (size_t)PyBytes_GET_SIZE(line);
        Py_XDECREF(line);
    }
    return out;
}

static PyObject *input_readinto(PyObject *op, PyObject *arg)
{
    InputObject *s = (InputObject *)op;
    Py_buffer view;

    if (PyObject_GetBuffer(arg, &view, PyBUF_WRITABLE) < 0)
        return NULL;
    size_t n = input_copy(s, view.buf, limit_of(s, view.len));
    PyBuffer_Release(&view);
    if (n == 0 && s->body.error)
        return input_error(s);
    return PyLong_FromSize_t(n);
}

static PyObject *input_iternext(PyObject *op)
{
    InputObject *s = (InputObject *)op;

    if (s->body.left == 0)
        return s->body.error ? input_error(s) : NULL; /* NULL: StopIteration */
    return input_take_line(s, (size_t)s->body.left);
}

static PyObject *input_true(PyObject *Py_UNUSED(op), PyObject *Py_UNUSED(ignored))
{
    Py_RETURN_TRUE;
}

static PyObject *input_false(PyObject *Py_UNUSED(op), PyObject *Py_UNUSED(ignored))
{
    Py_RETURN_FALSE;
}

static PyObject *input_close(PyObject *Py_UNUSED(op), PyObject *Py_UNUSED(ignored))
{
    Py_RETURN_NONE; /* the body belongs to the request, not to the app */
}

static void input_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    rm_body_reader_close(&((InputObject *)op)->body);
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* Stop reading the region: the unread rest moves into memory of our own (a
 * spilled body keeps its own descriptor). On failure (no memory) the input
 * reads as empty. */
static void input_detach(InputObject *s)
{
    uint64_t n = s->body.left;
    if (rm_body_reader_detach(&s->body) < 0)
        RM_ERROR("no memory to keep %" PRIu64 " unread bytes of a wsgi.input the app still "
                 "holds; it now reads as empty",
                 n);
}

static PyMethodDef input_methods[] = {
    {"read", (PyCFunction)(void (*)(void))input_read, METH_FASTCALL,
     "read(size=-1)\n--\n\nUp to size bytes of the body (all that is left by default); b'' at "
     "the end."},
    {"readline", (PyCFunction)(void (*)(void))input_readline, METH_FASTCALL,
     "readline(size=-1)\n--\n\nThe next line, b'\\n' included, at most size bytes."},
    {"readlines", (PyCFunction)(void (*)(void))input_readlines, METH_FASTCALL,
     "readlines(hint=-1)\n--\n\nThe remaining lines, stopping once hint bytes were read."},
    {"readinto", input_readinto, METH_O,
     "readinto(buffer)\n--\n\nRead into a writable buffer; returns the byte count."},
    {"readable", input_true, METH_NOARGS, "True."},
    {"seekable", input_false, METH_NOARGS, "False: the body is read once, in order."},
    {"close", input_close, METH_NOARGS, "Does nothing: the server owns the body."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot input_slots[] = {
    {Py_tp_methods, input_methods},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, input_iternext},
    {Py_tp_dealloc, input_dealloc},
    {Py_tp_doc, "wsgi.input: the request body, read from shared memory."},
    {0, NULL},
};

static PyType_Spec input_spec = {
    .name = "ringmaster.WSGIInput",
    .basicsize = sizeof(InputObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = input_slots,
};

static PyObject *input_new(const WsgiState *ws, const rm_req_view_t *v)
{
    PyTypeObject *tp = (PyTypeObject *)R(ws, R_INPUT_TYPE);
    InputObject *s = (InputObject *)tp->tp_alloc(tp, 0);

    if (s == NULL)
        return NULL;
    if (rm_body_reader_open(&s->body, v) < 0) {
        errno = s->body.error;
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(s);
        return NULL;
    }
    return (PyObject *)s;
}

/* ---- wsgi.file_wrapper ------------------------------------------------------------ */

typedef struct {
    PyObject ob_base;
    PyObject *filelike;
    Py_ssize_t blksize;
} WrapperObject;

static PyObject *wrapper_new(PyTypeObject *tp, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"filelike", "block_size", NULL};
    PyObject *filelike;
    Py_ssize_t blksize = DEFAULT_BLKSIZE;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|n:FileWrapper", kwlist, &filelike, &blksize))
        return NULL;
    if (blksize <= 0) {
        PyErr_SetString(PyExc_ValueError, "FileWrapper: block_size must be positive");
        return NULL;
    }
    WrapperObject *self = (WrapperObject *)tp->tp_alloc(tp, 0);
    if (self == NULL)
        return NULL;
    self->filelike = Py_NewRef(filelike);
    self->blksize = blksize;
    return (PyObject *)self;
}

static PyObject *wrapper_iternext(PyObject *op)
{
    WrapperObject *self = (WrapperObject *)op;
    PyObject *data = PyObject_CallMethod(self->filelike, "read", "n", self->blksize);

    if (data == NULL)
        return NULL;
    if (PyBytes_Check(data) && PyBytes_GET_SIZE(data) == 0) {
        Py_DECREF(data);
        return NULL; /* end of file */
    }
    return data; /* anything else is the response loop's to refuse */
}

static PyObject *wrapper_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    WrapperObject *self = (WrapperObject *)op;
    PyObject *close = PyObject_GetAttrString(self->filelike, "close");

    if (close == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return NULL;
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *res = PyObject_CallNoArgs(close);
    Py_DECREF(close);
    return res;
}

static int wrapper_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(((WrapperObject *)op)->filelike);
    return 0;
}

static int wrapper_clear(PyObject *op)
{
    Py_CLEAR(((WrapperObject *)op)->filelike);
    return 0;
}

static void wrapper_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    wrapper_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef wrapper_methods[] = {
    {"close", wrapper_close, METH_NOARGS, "Close the wrapped file (if it has close())."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef wrapper_members[] = {
    {"filelike", T_OBJECT_EX, offsetof(WrapperObject, filelike), READONLY, "The wrapped file."},
    {"blksize", T_PYSSIZET, offsetof(WrapperObject, blksize), READONLY, "Bytes per read()."},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot wrapper_slots[] = {
    {Py_tp_new, wrapper_new},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, wrapper_iternext},
    {Py_tp_methods, wrapper_methods},
    {Py_tp_members, wrapper_members},
    {Py_tp_traverse, wrapper_traverse},
    {Py_tp_clear, wrapper_clear},
    {Py_tp_dealloc, wrapper_dealloc},
    {Py_tp_doc, "wsgi.file_wrapper(filelike, block_size=8192): iterates filelike.read(block_size)."
                "\n\nReturned from a WSGI app, its blocks are packed into full chunks."},
    {0, NULL},
};

static PyType_Spec wrapper_spec = {
    .name = "ringmaster.FileWrapper",
    .basicsize = sizeof(WrapperObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = wrapper_slots,
};

/* ---- the response ----------------------------------------------------------------- */

/* ---- start_response and write() ------------------------------------------------ */

typedef struct {
    PyObject ob_base;
    rm_framed_t *resp; /* NULL once the request is over */
} StartObject;

/* A status or header text: str, latin-1 only. *p stays valid while `obj`
 * (or *keep, a bytes made for a non-ASCII str) lives. */
static int text_of(PyObject *obj, const char *what, const char **p, size_t *n, PyObject **keep)
{
    *keep = NULL;
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be str, not %s", what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (PyUnicode_IS_ASCII(obj)) {
        *p = (const char *)PyUnicode_DATA(obj);
        *n = (size_t)PyUnicode_GET_LENGTH(obj);
        return 0;
    }
    *keep = PyUnicode_AsLatin1String(obj);
    if (*keep == NULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s %R is not latin-1 text (PEP 3333)", what, obj);
        return -1;
    }
    *p = PyBytes_AS_STRING(*keep);
    *n = (size_t)PyBytes_GET_SIZE(*keep);
    return 0;
}


static int render_status(rm_head_t *a, PyObject *status)
{
    const char *p;
    size_t n;
    PyObject *keep;

    if (text_of(status, "the status", &p, &n, &keep) < 0)
        return -1;
    int rc = -1;
    if (n < 3 || p[0] < '1' || p[0] > '9' || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9' ||
        (n > 3 && p[3] != ' ')) {
        PyErr_Format(PyExc_ValueError,
                     "the status %R is not a three-digit code and a reason, like '200 OK'", status);
        goto out;
    }
    if (!rm_response_value_ok(p, n)) {
        PyErr_Format(PyExc_ValueError, "the status %R holds CR, LF or NUL", status);
        goto out;
    }
    a->status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    if (rm_buf_add(&a->head, "HTTP/1.1 ", 9) < 0 || rm_buf_add(&a->head, p, n) < 0)
        goto out;
    if (n <= 4) {
        /* "200" or "200 ": the reason phrase the code is registered with. */
        const char *reason = rm_response_reason(a->status);
        if ((n == 3 && rm_buf_add(&a->head, " ", 1) < 0) ||
            rm_buf_add(&a->head, reason, strlen(reason)) < 0)
            goto out;
    }
    rc = rm_buf_add(&a->head, "\r\n", 2);
    a->status_len = a->head.len;
out:
    Py_XDECREF(keep);
    return rc;
}

static int render_header(rm_head_t *a, PyObject *item, Py_ssize_t i)
{
    PyObject *name_obj, *value_obj, *kn = NULL, *kv = NULL;
    const char *name, *value;
    size_t nlen, vlen;
    int rc = -1;

    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
        PyErr_Format(PyExc_TypeError, "response header %zd is %R, not a (name, value) tuple", i,
                     item);
        return -1;
    }
    name_obj = PyTuple_GET_ITEM(item, 0);
    value_obj = PyTuple_GET_ITEM(item, 1);
    if (text_of(name_obj, "a header name", &name, &nlen, &kn) < 0 ||
        text_of(value_obj, "a header value", &value, &vlen, &kv) < 0)
        goto out;
    rc = rm_head_add(a, name, nlen, value, vlen);
out:
    Py_XDECREF(kn);
    Py_XDECREF(kv);
    return rc;
}

static int parse_start(rm_head_t *a, PyObject *status, PyObject *headers)
{
    *a = (rm_head_t){.app_length = -1};
    if (render_status(a, status) < 0)
        return -1;
    if (!PyList_Check(headers) && !PyTuple_Check(headers)) {
        PyErr_Format(PyExc_TypeError,
                     "response headers must be a list of (name, value) tuples, "
                     "not %s",
                     Py_TYPE(headers)->tp_name);
        return -1;
    }
    /* Only exact str is accepted inside, so no app code runs while the
     * list is read and it cannot change under us. */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(headers); i++)
        if (render_header(a, PySequence_Fast_GET_ITEM(headers, i), i) < 0)
            return -1;
    return 0;
}

static PyObject *write_call(PyObject *op, PyObject *data);

static PyMethodDef write_def = {
    "write", write_call, METH_O,
    "write(data)\n--\n\nSend bytes of the response body now (PEP 3333's write callable)."};

static PyObject *start_call(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"status", "response_headers", "exc_info", NULL};
    rm_framed_t *r = ((StartObject *)op)->resp;
    PyObject *status, *headers, *exc_info = Py_None;
    rm_head_t a;

    if (kwargs == NULL && PyTuple_GET_SIZE(args) >= 2 && PyTuple_GET_SIZE(args) <= 3) {
        status = PyTuple_GET_ITEM(args, 0);
        headers = PyTuple_GET_ITEM(args, 1);
        if (PyTuple_GET_SIZE(args) == 3)
            exc_info = PyTuple_GET_ITEM(args, 2);
    } else if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:start_response", kwlist, &status,
                                            &headers, &exc_info)) {
        return NULL;
    }
    if (r == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "start_response() called after its request ended");
        return NULL;
    }
    if (exc_info != Py_None) {
        if (!PyTuple_Check(exc_info) || PyTuple_GET_SIZE(exc_info) != 3 ||
            !PyExceptionClass_Check(PyTuple_GET_ITEM(exc_info, 0))) {
            PyErr_SetString(PyExc_TypeError,
                            "exc_info must be a (type, value, traceback) tuple, as sys.exc_info() "
                            "returns");
            return NULL;
        }
        if (r->head_sent) {
            /* PEP 3333: too late to change the response; re-raise the error. */
            PyErr_Restore(Py_NewRef(PyTuple_GET_ITEM(exc_info, 0)),
                          Py_NewRef(PyTuple_GET_ITEM(exc_info, 1)),
                          Py_NewRef(PyTuple_GET_ITEM(exc_info, 2)));
            return NULL;
        }
    } else if (r->status != 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "start_response() called a second time without exc_info");
        return NULL;
    }
    if (parse_start(&a, status, headers) < 0) {
        PyMem_Free(a.head.p);
        return NULL;
    }
    /* Replaces what an earlier call (with exc_info) said. */
    PyMem_Free(r->head.p);
    r->status = a.status;
    r->head = a.head;
    r->status_len = a.status_len;
    r->app_length = a.app_length;
    r->app_server = a.app_server;
    r->app_date = a.app_date;
    r->app_close = a.app_close;
    return PyCFunction_NewEx(&write_def, op, NULL);
}

static PyObject *write_call(PyObject *op, PyObject *data)
{
    rm_framed_t *r = ((StartObject *)op)->resp;

    if (r == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "write() called after its request ended");
        return NULL;
    }
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "write() takes bytes, not %s", Py_TYPE(data)->tp_name);
        return NULL;
    }
    int rc = rm_framed_piece(r, PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data), RM_FLUSH_ALWAYS);
    if (rc == -ECONNRESET) {
        PyErr_SetString(PyExc_BrokenPipeError, "the client has disconnected");
        return NULL;
    }
    if (rc < 0) {
        PyErr_SetString(PyExc_RuntimeError, "the worker is stopping");
        return NULL;
    }
    Py_RETURN_NONE;
}

static void start_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyType_Slot start_slots[] = {
    {Py_tp_call, start_call},
    {Py_tp_dealloc, start_dealloc},
    {Py_tp_doc, "start_response(status, response_headers, exc_info=None) -> write"},
    {0, NULL},
};

static PyType_Spec start_spec = {
    .name = "ringmaster.StartResponse",
    .basicsize = sizeof(StartObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = start_slots,
};

/* ---- the environ ------------------------------------------------------------------ */

/* Where the request came from, and what trusted proxies said about it. */
typedef struct {
    rm_fwd_span_t xff[MAX_FWD_LINES], xfp[MAX_FWD_LINES], fwd[MAX_FWD_LINES];
    size_t n_xff, n_xfp, n_fwd;
    const unsigned char *host;
    size_t host_len;
    bool has_length; /* a Content-Length header was sent */
} seen_t;

static void see_span(rm_fwd_span_t *spans, size_t *n, const unsigned char *p, size_t len)
{
    if (*n < MAX_FWD_LINES)
        spans[(*n)++] = (rm_fwd_span_t){(const char *)p, len};
}

/* HTTP_ + the name upper-cased, '-' as '_'. */
static PyObject *http_key(const unsigned char *name, size_t n)
{
    Py_UCS4 max = 127;
    for (size_t i = 0; i < n; i++)
        if (name[i] > 127)
            max = 255;
    PyObject *key = PyUnicode_New((Py_ssize_t)(5 + n), max);
    if (key == NULL)
        return NULL;
    Py_UCS1 *d = PyUnicode_1BYTE_DATA(key);
    memcpy(d, "HTTP_", 5);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = name[i];
        d[5 + i] = c == '-' ? '_' : (c >= 'a' && c <= 'z' ? (Py_UCS1)(c - 32) : c);
    }
    return key;
}

/* env[key] = value, or, when the header came before, the values joined with
 * `sep` (RFC 9110 5.3; "; " for Cookie, RFC 9113 8.2.3). Consumes `value`. */
static int add_header(PyObject *env, PyObject *key, PyObject *value, const char *sep)
{
    PyObject *have;

    if (value == NULL)
        return -1;
    /* SetDefault tells a new key by handing back our own value, except when
     * the value is a cached singleton ("" or one character) another header
     * could have handed in too: those ask first. */
    if (PyUnicode_GET_LENGTH(value) > 1) {
        have = PyDict_SetDefault(env, key, value);
        if (have == value || have == NULL) {
            Py_DECREF(value);
            return have == NULL ? -1 : 0;
        }
    } else {
        have = PyDict_GetItemWithError(env, key);
        if (have == NULL && PyErr_Occurred()) {
            Py_DECREF(value);
            return -1;
        }
        if (have == NULL)
            return put_new(env, key, value);
    }
    PyObject *joined = PyUnicode_FromFormat("%U%s%U", have, sep, value);
    Py_DECREF(value);
    return put_new(env, key, joined);
}

static int add_headers(const WsgiState *ws, PyObject *env, const rm_req_view_t *v, seen_t *seen)
{
    for (uint32_t i = 0; i < v->meta.header_count; i++) {
        const rm_wire_header_t *h = &v->headers[i];
        const unsigned char *name = v->head + h->name_off, *val = v->head + h->value_off;
        size_t nlen = h->name_len, vlen = h->value_len;
        int k = known_index(ws, name, nlen);
        PyObject *key;
        int rc;

        switch (k) {
        case H_HOST:
            if (seen->host == NULL) {
                seen->host = val;
                seen->host_len = vlen;
            }
            break;
        case H_CONTENT_LENGTH:
            seen->has_length = true; /* CONTENT_LENGTH is the body's length, set later */
            continue;
        case H_TRANSFER_ENCODING:
            /* The supervisor removed the coding (RFC 3875 4.2): the app gets
             * the decoded body and its CONTENT_LENGTH, and a framework that
             * saw "chunked" here would ignore that length. */
            continue;
        case H_XFF:
            see_span(seen->xff, &seen->n_xff, val, vlen);
            break;
        case H_XFP:
            see_span(seen->xfp, &seen->n_xfp, val, vlen);
            break;
        case H_FORWARDED:
            see_span(seen->fwd, &seen->n_fwd, val, vlen);
            break;
        default:
            break;
        }
        if (k >= 0) {
            rc =
                add_header(env, R(ws, R_KNOWN + k), latin1(val, vlen), k == H_COOKIE ? "; " : ", ");
        } else if (memchr(name, '_', nlen) != NULL) {
            /* "X_Forwarded_For" would become the key of "X-Forwarded-For":
             * dropped, as nginx and gunicorn do, so no header can pose as
             * another. */
            continue;
        } else {
            key = http_key(name, nlen);
            if (key == NULL)
                return -1;
            rc = add_header(env, key, latin1(val, vlen), ", ");
            Py_DECREF(key);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}


/* SCRIPT_NAME stays the template's (the root path, or ""). PATH_INFO is the
 * path percent-decoded, as latin-1 (PEP 3333: the bytes as they came, one
 * code point each), less the root path when the path starts with it; "*"
 * for OPTIONS *. */
static int set_path(const WsgiState *ws, PyObject *env, const unsigned char *p, size_t n)
{
    unsigned char stack[PATH_STACK], *heap = NULL;
    const unsigned char *d = p;
    size_t dn = n;
    PyObject *value;

    if (n == 0) /* an absolute-form target without a path */
        return PyDict_SetItem(env, R(ws, K_PATH_INFO), R(ws, V_SLASH));
    /* The asterisk-form of OPTIONS * goes through as "*", as gunicorn gives
     * it: an empty PATH_INFO would read as the root (Flask redirects it). */
    if (memchr(p, '%', n) != NULL) {
        unsigned char *out = n <= sizeof(stack) ? stack : (heap = PyMem_Malloc(n));
        if (out == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        dn = rm_percent_decode(p, n, out);
        d = out;
    }
    size_t root = ws->conf->root_path_len;
    if (root > 0 && dn >= root && memcmp(d, ws->conf->root_path, root) == 0 &&
        (dn == root || d[root] == '/')) {
        d += root;
        dn -= root;
    }
    if (dn == 1 && d[0] == '/')
        value = Py_NewRef(R(ws, V_SLASH));
    else
        value = latin1(d, dn);
    PyMem_Free(heap);
    return put_new(env, R(ws, K_PATH_INFO), value);
}

/* SERVER_NAME and SERVER_PORT: the Host header's (as sent, an IPv6 literal in
 * its brackets), else the address the client connected to. */
static int set_server(const WsgiState *ws, PyObject *env, const rm_req_meta_t *m,
                      const seen_t *seen, bool https)
{
    PyObject *name, *port = NULL;
    int port_num = -1;

    if (seen->host != NULL && seen->host_len > 0) {
        const unsigned char *h = seen->host;
        size_t n = seen->host_len, name_len = n;
        const unsigned char *colon = NULL;
        if (h[0] == '[') {
            const unsigned char *close = memchr(h, ']', n);
            if (close != NULL && (size_t)(close - h) + 1 < n && close[1] == ':')
                colon = close + 1;
        } else {
            colon = memchr(h, ':', n);
        }
        if (colon != NULL) {
            const unsigned char *digits = colon + 1;
            size_t plen = n - (size_t)(digits - h);
            bool ok = plen > 0 && plen <= 5;
            name_len = (size_t)(colon - h);
            for (size_t i = 0; ok && i < plen; i++)
                ok = digits[i] >= '0' && digits[i] <= '9';
            if (ok) /* else the scheme's default port */
                port = latin1(digits, plen);
        }
        name = latin1(h, name_len);
    } else {
        char text[48];
        size_t n = rm_addr_text(m->server_family, m->server_addr, true, text, sizeof(text));
        if (n > 0) {
            name = ascii_str(text, n);
            port_num = m->server_port;
        } else {
            name = Py_NewRef(R(ws, V_LOCALHOST)); /* a Unix socket, without Host */
        }
    }
    if (put_new(env, R(ws, K_SERVER_NAME), name) < 0) {
        Py_XDECREF(port);
        return -1;
    }
    if (port == NULL && port_num >= 0)
        port = decimal_str((unsigned)port_num);
    else if (port == NULL)
        port = Py_NewRef(R(ws, https ? V_PORT443 : V_PORT80));
    return put_new(env, R(ws, K_SERVER_PORT), port);
}

/* REMOTE_ADDR / REMOTE_PORT and wsgi.url_scheme; *https tells set_server. */
static int set_remote(const WsgiState *ws, PyObject *env, const rm_req_meta_t *m,
                      const seen_t *seen, bool *https)
{
    rm_fwd_result_t fwd = {0};
    char text[48];
    size_t n;

    *https = false;
    if ((seen->n_xff || seen->n_xfp || seen->n_fwd) &&
        rm_fwd_allow_match(&ws->conf->forwarded_allow, m->client_family, m->client_addr))
        rm_fwd_resolve(&ws->conf->forwarded_allow, seen->xff, seen->n_xff, seen->xfp, seen->n_xfp,
                       seen->fwd, seen->n_fwd, &fwd);
    if (fwd.scheme == RM_FWD_SCHEME_HTTPS) {
        *https = true;
        if (PyDict_SetItem(env, R(ws, K_WSGI_URL_SCHEME), R(ws, V_HTTPS)) < 0)
            return -1;
    }
    if (fwd.addr_len > 0) {
        if (put_new(env, R(ws, K_REMOTE_ADDR),
                    PyUnicode_FromStringAndSize(fwd.addr, (Py_ssize_t)fwd.addr_len)) < 0)
            return -1;
        /* The proxy's port to us says nothing about the client's. */
        return fwd.has_port ? put_new(env, R(ws, K_REMOTE_PORT), decimal_str(fwd.port)) : 0;
    }
    n = rm_addr_text(m->client_family, m->client_addr, false, text, sizeof(text));
    if (n == 0)
        return 0; /* a Unix socket: no address to give */
    if (put_new(env, R(ws, K_REMOTE_ADDR), ascii_str(text, n)) < 0)
        return -1;
    return put_new(env, R(ws, K_REMOTE_PORT), decimal_str(m->client_port));
}

static const struct {
    const char *name;
    uint32_t len;
} method_names[RM_METHOD_COUNT] = {
    [RM_METHOD_GET] = {"GET", 3},     [RM_METHOD_POST] = {"POST", 4},
    [RM_METHOD_PUT] = {"PUT", 3},     [RM_METHOD_DELETE] = {"DELETE", 6},
    [RM_METHOD_HEAD] = {"HEAD", 4},   [RM_METHOD_OPTIONS] = {"OPTIONS", 7},
    [RM_METHOD_PATCH] = {"PATCH", 5},
};

static PyObject *method_of(const rm_pymod_state_t *st, const unsigned char *p, uint32_t len)
{
    for (int i = 0; i < RM_METHOD_COUNT; i++)
        if (method_names[i].len == len && memcmp(method_names[i].name, p, len) == 0)
            return Py_NewRef(st->methods[i]);
    return latin1(p, len);
}

static PyObject *environ_build(const WsgiState *ws, const rm_pymod_state_t *st,
                               const rm_req_view_t *v, PyObject *input)
{
    const rm_req_meta_t *m = &v->meta;
    const unsigned char *head = v->head;
    seen_t seen; /* only the counts and scalars need a value: 800 bytes otherwise */
    bool https;
    PyObject *uri;
    PyObject *errors = NULL;
    PyObject *env = PyDict_Copy(R(ws, R_TEMPLATE));

    if (env == NULL)
        return NULL;
        /* sys.stderr as it is now (the app may have replaced it). A strong
         * reference: without a GIL another thread could replace it meanwhile. */
#if PY_VERSION_HEX >= 0x030D0000
    if (PyDict_GetItemRef(R(ws, R_SYSDICT), R(ws, K_STDERR), &errors) < 0)
        goto fail;
#else
    errors = Py_XNewRef(PyDict_GetItemWithError(R(ws, R_SYSDICT), R(ws, K_STDERR)));
    if (errors == NULL && PyErr_Occurred())
        goto fail;
#endif
    seen.n_xff = seen.n_xfp = seen.n_fwd = 0;
    seen.host = NULL;
    seen.host_len = 0;
    seen.has_length = false;
    if (put_new(env, R(ws, K_REQUEST_METHOD), method_of(st, head + m->method_off, m->method_len)) <
            0 ||
        set_path(ws, env, head + m->path_off, m->path_len) < 0 ||
        put_new(env, R(ws, K_QUERY_STRING),
                m->query_len ? latin1(head + m->query_off, m->query_len)
                             : Py_NewRef(R(ws, V_EMPTY))) < 0 ||
        PyDict_SetItem(env, R(ws, K_WSGI_INPUT), input) < 0 ||
        PyDict_SetItem(env, R(ws, K_WSGI_ERRORS), errors != NULL ? errors : Py_None) < 0)
        goto fail;
    Py_CLEAR(errors);

    uri = latin1(head + m->target_off, m->target_len);
    if (uri == NULL || PyDict_SetItem(env, R(ws, K_RAW_URI), uri) < 0 ||
        put_new(env, R(ws, K_REQUEST_URI), uri) < 0)
        goto fail;
    if (m->http_major != 1 || m->http_minor > 1) {
        if (put_new(env, R(ws, K_SERVER_PROTOCOL),
                    PyUnicode_FromFormat("HTTP/%u.%u", (unsigned)m->http_major,
                                         (unsigned)m->http_minor)) < 0)
            goto fail;
    } else if (m->http_minor == 0 &&
               PyDict_SetItem(env, R(ws, K_SERVER_PROTOCOL), R(ws, V_HTTP10)) < 0) {
        goto fail;
    }

    if (add_headers(ws, env, v, &seen) < 0)
        goto fail;
    /* The body is whole by now (a chunked one decoded): its length is known
     * even when no Content-Length was sent, and apps size their reads by it. */
    if ((seen.has_length || (m->flags & RM_REQ_CHUNKED) || m->body_len > 0) &&
        put_new(env, R(ws, R_KNOWN + H_CONTENT_LENGTH), decimal_str(m->body_len)) < 0)
        goto fail;
    if (set_remote(ws, env, m, &seen, &https) < 0 || set_server(ws, env, m, &seen, https) < 0)
        goto fail;
    return env;

fail:
    Py_XDECREF(errors);
    Py_DECREF(env);
    return NULL;
}

PyObject *rm_wsgi_environ(rm_pymod_state_t *st, const rm_req_view_t *view)
{
    const WsgiState *ws = (const WsgiState *)st->wsgi;
    PyObject *input = input_new(ws, view);
    PyObject *env = input != NULL ? environ_build(ws, st, view, input) : NULL;

    /* The caller owns the environ, so its wsgi.input may outlive the view. */
    if (input != NULL)
        input_detach((InputObject *)input);
    Py_XDECREF(input);
    return env;
}

/* ---- running the app ------------------------------------------------------------ */

/* A list or tuple: every piece is there, so its length is known and the
 * pieces go out packed. `seq` is not changed meanwhile (a tuple, or a list
 * under the GIL: nothing here runs Python code). */
static int send_sequence(rm_framed_t *r, PyObject *seq)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    int64_t total = 0;

    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_Check(items[i])) {
            PyErr_Format(PyExc_TypeError, "the response iterable yielded %s, not bytes",
                         Py_TYPE(items[i])->tp_name);
            return -EINVAL;
        }
        total += PyBytes_GET_SIZE(items[i]);
    }
    if (r->status == 0) {
        PyErr_SetString(PyExc_RuntimeError, "the app returned without calling start_response()");
        return -EINVAL;
    }
    if (!r->head_sent && rm_framed_head(r, total) < 0)
        return r->out->err;
    for (Py_ssize_t i = 0; i < n && !rm_framed_complete(r); i++)
        if (rm_framed_piece(r, PyBytes_AS_STRING(items[i]), (size_t)PyBytes_GET_SIZE(items[i]),
                       RM_FLUSH_NEVER) < 0)
            return r->out->err;
    return rm_framed_finish(r);
}

/* Pieces of the app's iterator until it ends (0), fails (-EINVAL, a Python
 * exception set), the output fails (r->out->err), or, with out->park_ok, the
 * client's window is full before the next piece (RM_OUT_PARKED). */
static int send_pieces(rm_framed_t *r, PyObject *it, rm_flush_mode_t mode)
{
    while (!rm_framed_complete(r)) {
        if (rm_out_client_gone(r->out))
            return r->out->err = -ECONNRESET;
        if (r->out->park_ok && rm_out_window_busy(r->out))
            return RM_OUT_PARKED;
        PyObject *item = PyIter_Next(it);
        if (item == NULL)
            return PyErr_Occurred() ? -EINVAL : 0;
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "the response iterable yielded %s, not bytes",
                         Py_TYPE(item)->tp_name);
            Py_DECREF(item);
            return -EINVAL;
        }
        if (PyBytes_GET_SIZE(item) > 0 && r->status == 0) {
            PyErr_SetString(PyExc_RuntimeError,
                            "the response iterable yielded data before start_response() was "
                            "called");
            Py_DECREF(item);
            return -EINVAL;
        }
        int rc = rm_framed_piece(r, PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item), mode);
        Py_DECREF(item);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The iterator ended: the head if it is still due, the body's end. */
static int send_end(rm_framed_t *r)
{
    if (r->status == 0) {
        PyErr_SetString(PyExc_RuntimeError, "the app returned without calling start_response()");
        return -EINVAL;
    }
    return rm_framed_finish(r);
}

/* The app's iterable: a list or tuple is sent at once, anything else one
 * produced piece at a time. Returns 0, -EINVAL when the app failed (a Python
 * exception is set), r->out->err, or RM_OUT_PARKED with the iterator in *it
 * (a new reference) and its flush mode in *mode. */
static int send_result(rm_framed_t *r, const WsgiState *ws, PyObject *result, PyObject **it,
                       rm_flush_mode_t *mode)
{
    *it = NULL;
    if (PyTuple_CheckExact(result))
        return send_sequence(r, result);
    if (PyList_CheckExact(result)) {
#ifdef Py_GIL_DISABLED
        /* Without a GIL another thread may change a list the app shares
         * between requests: send a snapshot of it. */
        PyObject *snapshot = PyList_AsTuple(result);
        if (snapshot == NULL)
            return -EINVAL;
        int rc = send_sequence(r, snapshot);
        Py_DECREF(snapshot);
        return rc;
#else
        return send_sequence(r, result);
#endif
    }

    /* Blocks of a file_wrapper never wait on the app: packed into full
     * chunks, and never parked (the file is read as fast as the client). */
    bool wrapper = Py_IS_TYPE(result, (PyTypeObject *)R(ws, R_WRAPPER_TYPE));
    *mode = wrapper ? RM_FLUSH_NEVER : RM_FLUSH_UNLESS_DONE;
    if (wrapper)
        r->out->park_ok = false;
    PyObject *iter = PyObject_GetIter(result);
    if (iter == NULL)
        return -EINVAL;
    int rc = send_pieces(r, iter, *mode);
    if (rc == RM_OUT_PARKED) {
        *it = iter;
        return rc;
    }
    Py_DECREF(iter);
    return rc < 0 ? rc : send_end(r);
}

/* PEP 3333: close() of the iterable, whatever happened. */
static void close_result(const WsgiState *ws, PyObject *result, const rm_req_view_t *v)
{
    char why[512];

    if (PyList_CheckExact(result) || PyTuple_CheckExact(result) ||
        rm_out_close_iterable(result, R(ws, V_CLOSE), why, sizeof(why)) == 0)
        return;
    rm_req_name_t n = rm_req_name(v);
    RM_ERROR("%.*s %.*s: close() of the WSGI response raised %s", n.method_len, n.method,
             n.path_len, n.path, why);
}

/* rm_wsgi_run's outcome when the app failed: a 500 if nothing went out yet,
 * else a cut connection. The exception (if any) is taken here. */
static int app_failed(rm_framed_t *r, const rm_req_view_t *v, const char *what)
{
    const rm_req_meta_t *m = &v->meta;
    rm_out_t *out = r->out;
    rm_req_name_t n = rm_req_name(v);
    char why[768];

    rm_host_take_exception(why, sizeof(why), true);
    out->app_failed = true;
    if (out->pushed == 0) {
        RM_ERROR("%.*s %.*s: the WSGI app %s %s; answered 500", n.method_len, n.method, n.path_len,
                 n.path, what, why);
        /* Nothing left this process: start the response over. */
        out->used = 0;
        out->flags = 0;
        return rm_response_write_error(out, 500, m->flags, m->http_minor);
    }
    RM_ERROR("%.*s %.*s: the WSGI app %s %s after the response began; closing the connection",
             n.method_len, n.method, n.path_len, n.path, what, why);
    out->flags |= RM_DONE_CLOSE;
    return 0;
}

/* A response parked off its thread (serve.c): what sending the rest needs.
 * The references are strong. */
typedef struct wsgi_stream {
    rm_framed_t r; /* r.out is set again at each resume: the caller's out moves */
    const WsgiState *ws;
    PyObject *result, *it, *start, *env, *input;
    rm_flush_mode_t mode;
} wsgi_stream_t;

/* The response is decided (rc as send_result's, but never RM_OUT_PARKED):
 * the app's failure answered, its objects let go. Returns as rm_wsgi_run. */
static int run_end(const WsgiState *ws, rm_framed_t *r, const rm_req_view_t *view, int rc,
                   PyObject *result, PyObject *start, PyObject *env, PyObject *input)
{
    rm_out_t *out = r->out;

    if (out->err != 0) {
        /* A stop, or the client left: whatever the app raised about it
         * (write() raises BrokenPipeError) is no error of its own. */
        PyErr_Clear();
        rc = out->err;
    } else if (rc == -EINVAL) {
        rc = app_failed(r, view, result == NULL ? "raised" : "failed:");
    }
    /* start_response and write() now raise, also from close(). Nothing the
     * app kept may reach the request's chunks. */
    if (start != NULL)
        ((StartObject *)start)->resp = NULL;
    if (result != NULL) {
        close_result(ws, result, view);
        Py_DECREF(result);
    }
    Py_XDECREF(start);
    Py_XDECREF(env);
    if (input != NULL) {
        if (Py_REFCNT(input) > 1)
            input_detach((InputObject *)input);
        Py_DECREF(input);
    }
    PyMem_Free(r->head.p);
    return rc;
}

int rm_wsgi_run(rm_pymod_state_t *st, const rm_req_view_t *view, rm_out_t *out)
{
    const WsgiState *ws = (const WsgiState *)st->wsgi;
    PyObject *input, *env = NULL, *start = NULL, *result = NULL, *it = NULL;
    rm_flush_mode_t mode = RM_FLUSH_UNLESS_DONE;
    int rc;
    rm_framed_t r = {
        .out = out,
        .req_flags = view->meta.flags,
        .http_major = view->meta.http_major,
        .http_minor = view->meta.http_minor,
        .app_length = -1,
        .length = -1,
    };

    input = input_new(ws, view);
    if (input != NULL)
        env = environ_build(ws, st, view, input);
    if (env != NULL) {
        PyTypeObject *tp = (PyTypeObject *)R(ws, R_START_TYPE);
        start = tp->tp_alloc(tp, 0);
    }
    if (start != NULL) {
        ((StartObject *)start)->resp = &r;
        PyObject *args[2] = {env, start};
        result = PyObject_Vectorcall(st->app, args, 2, NULL);
    }

    rc = result != NULL ? send_result(&r, ws, result, &it, &mode) : -EINVAL;
    if (rc == RM_OUT_PARKED) {
        wsgi_stream_t *ps = PyMem_Malloc(sizeof(*ps));
        if (ps != NULL) {
            *ps = (wsgi_stream_t){.r = r, .ws = ws, .result = result, .it = it, .start = start,
                                  .env = env, .input = input, .mode = mode};
            /* start_response and write() reach the response where it now lives. */
            ((StartObject *)start)->resp = &ps->r;
            out->parked = ps;
            return RM_OUT_PARKED;
        }
        out->park_ok = false; /* no memory to park: the rest is sent from here */
        rc = send_pieces(&r, it, mode);
        Py_DECREF(it);
        if (rc == 0)
            rc = send_end(&r);
    }
    return run_end(ws, &r, view, rc, result, start, env, input);
}

int rm_wsgi_resume(rm_out_t *out, const rm_req_view_t *view)
{
    wsgi_stream_t *ps = out->parked;
    int rc = out->err;

    out->parked = NULL;
    ps->r.out = out;
    if (rc == 0)
        rc = send_pieces(&ps->r, ps->it, ps->mode);
    if (rc == RM_OUT_PARKED) {
        out->parked = ps;
        return rc;
    }
    if (rc == 0)
        rc = send_end(&ps->r);
    Py_DECREF(ps->it);
    rc = run_end(ps->ws, &ps->r, view, rc, ps->result, ps->start, ps->env, ps->input);
    PyMem_Free(ps);
    return rc;
}

/* ---- loading ------------------------------------------------------------------------- */

static int state_traverse(PyObject *op, visitproc visit, void *arg)
{
    WsgiState *ws = (WsgiState *)op;
    Py_VISIT(Py_TYPE(op));
    for (int i = 0; i < N_REFS; i++)
        Py_VISIT(ws->ref[i]);
    return 0;
}

static int state_clear(PyObject *op)
{
    WsgiState *ws = (WsgiState *)op;
    for (int i = 0; i < N_REFS; i++)
        Py_CLEAR(ws->ref[i]);
    return 0;
}

static void state_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    state_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyType_Slot state_slots[] = {
    {Py_tp_traverse, state_traverse},
    {Py_tp_clear, state_clear},
    {Py_tp_dealloc, state_dealloc},
    {Py_tp_doc, "ringmaster's WSGI constants for one interpreter."},
    {0, NULL},
};

static PyType_Spec state_spec = {
    .name = "ringmaster.WSGIState",
    .basicsize = sizeof(WsgiState),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = state_slots,
};

static const char *const key_names[] = {
    [K_REQUEST_METHOD] = "REQUEST_METHOD",
    [K_SCRIPT_NAME] = "SCRIPT_NAME",
    [K_PATH_INFO] = "PATH_INFO",
    [K_QUERY_STRING] = "QUERY_STRING",
    [K_SERVER_NAME] = "SERVER_NAME",
    [K_SERVER_PORT] = "SERVER_PORT",
    [K_SERVER_PROTOCOL] = "SERVER_PROTOCOL",
    [K_SERVER_SOFTWARE] = "SERVER_SOFTWARE",
    [K_REMOTE_ADDR] = "REMOTE_ADDR",
    [K_REMOTE_PORT] = "REMOTE_PORT",
    [K_REQUEST_URI] = "REQUEST_URI",
    [K_RAW_URI] = "RAW_URI",
    [K_WSGI_VERSION] = "wsgi.version",
    [K_WSGI_URL_SCHEME] = "wsgi.url_scheme",
    [K_WSGI_INPUT] = "wsgi.input",
    [K_WSGI_ERRORS] = "wsgi.errors",
    [K_WSGI_MULTITHREAD] = "wsgi.multithread",
    [K_WSGI_MULTIPROCESS] = "wsgi.multiprocess",
    [K_WSGI_RUN_ONCE] = "wsgi.run_once",
    [K_WSGI_FILE_WRAPPER] = "wsgi.file_wrapper",
    [V_HTTP] = "http",
    [V_HTTPS] = "https",
    [V_HTTP11] = "HTTP/1.1",
    [V_HTTP10] = "HTTP/1.0",
    [V_PORT80] = "80",
    [V_PORT443] = "443",
    [V_EMPTY] = "",
    [V_SLASH] = "/",
    [V_LOCALHOST] = "localhost",
    [V_CLOSE] = "close",
    [K_STDERR] = "stderr",
};

/* The interned keys of known_headers: HTTP_* but for the two CGI names
 * (CONTENT_LENGTH is set from the body, never from the header). */
static PyObject *known_key(size_t i)
{
    if (i == H_CONTENT_TYPE)
        return PyUnicode_InternFromString("CONTENT_TYPE");
    if (i == H_CONTENT_LENGTH)
        return PyUnicode_InternFromString("CONTENT_LENGTH");
    PyObject *key = http_key((const unsigned char *)known_headers[i].name, known_headers[i].len);
    if (key != NULL)
        PyUnicode_InternInPlace(&key);
    return key;
}

/* Every constant, and the environ template: the constants, and a
 * placeholder for each key every request sets, so that copies of it replace
 * values in place and have room for the headers. */
static int state_fill(WsgiState *ws, const rm_worker_t *w)
{
    /* In subinterpreters mode each interpreter has its own app object that
     * only its own thread calls: to the app, a process of one thread. */
    bool per_thread = w->mode == RM_WORKER_MODE_SUBINTERPRETERS;
    bool multithread = w->conf->threads > 1 && !per_thread;
    bool multiprocess = w->conf->iface.workers > 1 || (per_thread && w->conf->threads > 1);
    PyObject *d;

    known_index_init(ws);
    PyObject *sys = PyImport_ImportModule("sys");
    if (sys == NULL)
        return -1;
    ws->ref[R_SYSDICT] = Py_NewRef(PyModule_GetDict(sys));
    Py_DECREF(sys);
    ws->ref[R_INPUT_TYPE] = PyType_FromSpec(&input_spec);
    ws->ref[R_START_TYPE] = PyType_FromSpec(&start_spec);
    ws->ref[R_WRAPPER_TYPE] = PyType_FromSpec(&wrapper_spec);
    for (int i = K_REQUEST_METHOD; i < R_KNOWN; i++)
        if ((ws->ref[i] = PyUnicode_InternFromString(key_names[i])) == NULL)
            return -1;
    for (size_t i = 0; i < N_KNOWN; i++)
        if ((ws->ref[R_KNOWN + i] = known_key(i)) == NULL)
            return -1;
    if (ws->ref[R_INPUT_TYPE] == NULL || ws->ref[R_START_TYPE] == NULL ||
        ws->ref[R_WRAPPER_TYPE] == NULL)
        return -1;

    ws->ref[R_TEMPLATE] = d = PyDict_New();
    if (d == NULL)
        return -1;
    PyObject *version = Py_BuildValue("(ii)", 1, 0);
    PyObject *script = latin1(ws->conf->root_path, ws->conf->root_path_len);
    PyObject *software = PyUnicode_FromString("ringmaster/" RINGMASTER_VERSION);
    const struct {
        int key;
        PyObject *value; /* borrowed */
    } fixed[] = {
        {K_REQUEST_METHOD, R(ws, V_EMPTY)},
        {K_SCRIPT_NAME, script},
        {K_PATH_INFO, R(ws, V_SLASH)},
        {K_QUERY_STRING, R(ws, V_EMPTY)},
        {K_SERVER_NAME, R(ws, V_LOCALHOST)},
        {K_SERVER_PORT, R(ws, V_PORT80)},
        {K_SERVER_PROTOCOL, R(ws, V_HTTP11)},
        {K_SERVER_SOFTWARE, software},
        {K_REQUEST_URI, R(ws, V_SLASH)},
        {K_RAW_URI, R(ws, V_SLASH)},
        {K_WSGI_VERSION, version},
        {K_WSGI_URL_SCHEME, R(ws, V_HTTP)},
        {K_WSGI_INPUT, Py_None},
        {K_WSGI_ERRORS, Py_None},
        {K_WSGI_MULTITHREAD, multithread ? Py_True : Py_False},
        {K_WSGI_MULTIPROCESS, multiprocess ? Py_True : Py_False},
        {K_WSGI_RUN_ONCE, Py_False},
        {K_WSGI_FILE_WRAPPER, R(ws, R_WRAPPER_TYPE)},
    };
    int rc = version != NULL && script != NULL && software != NULL ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < sizeof(fixed) / sizeof(fixed[0]); i++)
        rc = PyDict_SetItem(d, R(ws, fixed[i].key), fixed[i].value);
    Py_XDECREF(version);
    Py_XDECREF(script);
    Py_XDECREF(software);
    return rc;
}

/* auto: WSGI when the app takes exactly two positional arguments without
 * defaults (environ, start_response), native otherwise. `why` says what was
 * seen; *unsure when the signature gave no clear answer. */
static rm_interface_t detect(PyObject *app, char *why, size_t why_len, bool *unsure)
{
    PyObject *inspect = NULL, *sig = NULL, *params = NULL, *values = NULL, *empty = NULL;
    long required = 0, varargs = 0;
    rm_interface_t out = RM_INTERFACE_NATIVE;

    *unsure = true;
    inspect = PyImport_ImportModule("inspect");
    sig = inspect != NULL ? PyObject_CallMethod(inspect, "signature", "O", app) : NULL;
    params = sig != NULL ? PyObject_GetAttrString(sig, "parameters") : NULL;
    values = params != NULL ? PyMapping_Values(params) : NULL;
    PyObject *param_cls = inspect != NULL ? PyObject_GetAttrString(inspect, "Parameter") : NULL;
    empty = param_cls != NULL ? PyObject_GetAttrString(param_cls, "empty") : NULL;
    Py_XDECREF(param_cls);
    if (values == NULL || empty == NULL) {
        char err[200];
        rm_host_take_exception(err, sizeof(err), false);
        snprintf(why, why_len, "no signature to inspect (%s)", err);
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(values); i++) {
        PyObject *p = PyList_GET_ITEM(values, i);
        PyObject *kind = PyObject_GetAttrString(p, "kind");
        PyObject *dflt = PyObject_GetAttrString(p, "default");
        long k = kind != NULL ? PyLong_AsLong(kind) : -1;
        /* inspect.Parameter kinds: 0 positional-only, 1 positional-or-keyword, 2 *args. */
        if ((k == 0 || k == 1) && dflt == empty)
            required++;
        varargs += k == 2;
        Py_XDECREF(kind);
        Py_XDECREF(dflt);
    }
    PyErr_Clear();
    if (required == 2) {
        out = RM_INTERFACE_WSGI;
        *unsure = false;
        snprintf(why, why_len, "auto: the app takes two positional arguments");
    } else if (required == 1) {
        *unsure = false;
        snprintf(why, why_len, "auto: the app takes one positional argument");
    } else {
        snprintf(why, why_len, "auto: the app takes %ld required positional argument%s%s", required,
                 required == 1 ? "" : "s", varargs ? " and *args" : "");
    }
done:
    Py_XDECREF(empty);
    Py_XDECREF(values);
    Py_XDECREF(params);
    Py_XDECREF(sig);
    Py_XDECREF(inspect);
    return out;
}

int rm_wsgi_load(rm_pymod_state_t *st, const char *spec, char *why, size_t why_len)
{
    const rm_worker_t *w = st->worker;
    const rm_app_conf_t *conf = &w->conf->iface;
    rm_interface_t iface = conf->interface;
    char reason[256];
    bool unsure = false;

    if (iface == RM_INTERFACE_AUTO && rm_asgi_detect(st->app)) {
        iface = RM_INTERFACE_ASGI;
        snprintf(reason, sizeof(reason), "auto: the app is a coroutine function");
    } else if (iface == RM_INTERFACE_AUTO) {
        iface = detect(st->app, reason, sizeof(reason), &unsure);
    } else {
        snprintf(reason, sizeof(reason), "--interface %s", rm_interface_name(iface));
    }
    /* Once per process: in subinterpreters mode every thread loads the app. */
    static atomic_bool logged;
    if (atomic_exchange(&logged, true))
        ;
    else if (unsure)
        RM_WARN("app %s: %s, so it is called as a native app(request); pass --interface wsgi "
                "for a WSGI app",
                spec, reason);
    else
        RM_INFO("app %s: %s interface (%s)", spec,
                iface == RM_INTERFACE_WSGI   ? "WSGI"
                : iface == RM_INTERFACE_ASGI ? "ASGI"
                                             : "native",
                reason);
    Py_CLEAR(st->wsgi);
    Py_CLEAR(st->asgi);
    if (iface == RM_INTERFACE_ASGI)
        return rm_asgi_load(st, why, why_len);
    if (iface != RM_INTERFACE_WSGI)
        return 0;

    PyTypeObject *tp = (PyTypeObject *)PyType_FromSpec(&state_spec);
    WsgiState *ws = tp != NULL ? (WsgiState *)tp->tp_alloc(tp, 0) : NULL;
    Py_XDECREF(tp); /* the instance holds its type */
    if (ws != NULL) {
        ws->conf = conf;
        if (state_fill(ws, w) == 0) {
            st->wsgi = (PyObject *)ws;
            return 0;
        }
        Py_DECREF(ws);
    }
    snprintf(why, why_len, "cannot set up WSGI: ");
    rm_host_log_exception(why + strlen(why), why_len - strlen(why), RM_LOG_ERROR,
                          "cannot set up WSGI: ");
    return -ENOMEM;
}
