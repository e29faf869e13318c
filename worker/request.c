/*
 * request.c - the _ringmaster module: Request, Headers and the body exporter.
 *
 * A Request is a thin object over a validated request in the region. Every
 * attribute is built on first access and cached, so an app that reads only
 * the method and the path pays for two small strings (often interned ones).
 *
 * The region's bytes may only be read until the request's last completion is
 * pushed, so when the app returns rm_request_close makes sure no Python object
 * still points there:
 *   - a Request referenced elsewhere is detached: every attribute is built
 *     and the body copied, so it lives on with owned data;
 *   - a Headers object referenced elsewhere copies its header bytes;
 *   - the body is a memoryview over our own exporter (BodyObject), which counts
 *     its live buffers. If a view outlives the handler (the app stored it, or a
 *     slice of it), the region memory must stay valid: the final completion
 *     carries RM_DONE_HOLD and the exporter's last release pushes
 *     RM_DONE_RELEASE. Once the request is over without views, the exporter
 *     refuses new buffers, so a stray reference to it cannot read reused memory.
 *
 * All of this runs attached to the interpreter. Where there is no GIL (a
 * free-threaded build), an app may still hand a Request, its headers or its
 * body to another thread, so each object's mutable state is changed and read
 * inside a critical section on that object (RM_BEGIN_CRITICAL_SECTION, which
 * costs nothing where a GIL serialises): the exporter's counters, the
 * Request's lazily built attributes and its detach, a Headers' detach.
 */
#include "body.h"
#include "worker.h"

#include <arpa/inet.h>
#include <assert.h>
#include <stddef.h>
#include <string.h>

/* ---- body exporter -------------------------------------------------------- */

typedef struct {
    PyObject ob_base;          /* PyObject_HEAD, spelled out for clang-format */
    const unsigned char *data; /* the body slice in the region; NULL once unavailable */
    Py_ssize_t len;
    Py_ssize_t exports; /* Py_buffers handed out and not yet released */
    bool held;          /* the final completion said RM_DONE_HOLD */
    uint64_t req_id;
    rm_worker_t *worker; /* borrowed: outlives every object of the module */
} BodyObject;

static int body_getbuffer(PyObject *op, Py_buffer *view, int flags)
{
    BodyObject *self = (BodyObject *)op;
    int rc = -1;

    RM_BEGIN_CRITICAL_SECTION(op);
    if (self->data == NULL) {
        PyErr_SetString(PyExc_BufferError,
                        "the request body is no longer available: its request has finished");
        view->obj = NULL;
    } else if (PyBuffer_FillInfo(view, op, (void *)self->data, self->len, 1, flags) == 0) {
        self->exports++;
        rc = 0;
    }
    RM_END_CRITICAL_SECTION();
    return rc;
}

static void body_releasebuffer(PyObject *op, Py_buffer *Py_UNUSED(view))
{
    BodyObject *self = (BodyObject *)op;
    bool release = false;

    RM_BEGIN_CRITICAL_SECTION(op);
    if (--self->exports == 0 && self->held) {
        self->held = false;
        self->data = NULL;
        release = true;
    }
    RM_END_CRITICAL_SECTION();
    /* Outside the section: the push may wait for room in the ring. */
    if (release)
        rm_worker_release_hold(self->worker, self->req_id);
}

static void body_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyType_Slot body_slots[] = {
    {Py_bf_getbuffer, body_getbuffer},
    {Py_bf_releasebuffer, body_releasebuffer},
    {Py_tp_dealloc, body_dealloc},
    {Py_tp_doc, "Read-only bytes of a request body in shared memory."},
    {0, NULL},
};

static PyType_Spec body_spec = {
    .name = "_ringmaster.BodyBuffer",
    .basicsize = sizeof(BodyObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = body_slots,
};

bool rm_body_exported(PyObject *exporter)
{
    bool exported;

    RM_BEGIN_CRITICAL_SECTION(exporter);
    exported = ((BodyObject *)exporter)->exports > 0;
    RM_END_CRITICAL_SECTION();
    return exported;
}

void rm_body_settle(PyObject *exporter, bool held)
{
    if (exporter == NULL)
        return;
    BodyObject *self = (BodyObject *)exporter;
    bool release = false;

    RM_BEGIN_CRITICAL_SECTION(exporter);
    if (held && self->exports > 0) {
        self->held = true; /* the last release pushes RM_DONE_RELEASE */
    } else {
        self->data = NULL;
        release = held; /* held, but another thread released the last view since */
    }
    RM_END_CRITICAL_SECTION();
    if (release)
        rm_worker_release_hold(self->worker, self->req_id);
    Py_DECREF(exporter);
}

/* The request is over: stop exporting unless a view is still out. Returns
 * whether one is (the caller then owes rm_body_settle). */
static bool body_retire(BodyObject *self)
{
    bool exported;

    RM_BEGIN_CRITICAL_SECTION((PyObject *)self);
    exported = self->exports > 0;
    if (!exported)
        self->data = NULL;
    RM_END_CRITICAL_SECTION();
    return exported;
}

/* ---- Headers -------------------------------------------------------------- */

typedef struct {
    PyObject ob_base;             /* PyObject_HEAD, spelled out for clang-format */
    const rm_wire_header_t *refs; /* `count` refs: in the meta chunk, or in `owned` */
    const unsigned char *base;    /* offsets count from here: the head chunk, or `owned` */
    uint32_t count;
    void *owned; /* PyMem block after a detach, else NULL */
} HeadersObject;

static inline unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* Header names are tokens, hence ASCII: a key that is not an ASCII str
 * matches nothing. */
static bool key_bytes(PyObject *key, const unsigned char **p, Py_ssize_t *n)
{
    if (!PyUnicode_Check(key) || !PyUnicode_IS_ASCII(key))
        return false;
    *p = PyUnicode_DATA(key);
    *n = PyUnicode_GET_LENGTH(key);
    return true;
}

/* Index of the first header at or after `from` named `name` (any case), or -1. */
static Py_ssize_t headers_find(const HeadersObject *h, const unsigned char *name, Py_ssize_t len,
                               uint32_t from)
{
    for (uint32_t i = from; i < h->count; i++) {
        const rm_wire_header_t *r = &h->refs[i];
        if (r->name_len != len)
            continue;
        const unsigned char *have = h->base + r->name_off;
        Py_ssize_t k = 0;
        while (k < len && ascii_lower(have[k]) == ascii_lower(name[k]))
            k++;
        if (k == len)
            return i;
    }
    return -1;
}

static PyObject *headers_value(const HeadersObject *h, uint32_t i)
{
    const rm_wire_header_t *r = &h->refs[i];
    return PyUnicode_DecodeLatin1((const char *)h->base + r->value_off, r->value_len, NULL);
}

static PyObject *headers_name(const HeadersObject *h, uint32_t i)
{
    const rm_wire_header_t *r = &h->refs[i];
    const unsigned char *src = h->base + r->name_off;
    Py_UCS4 maxchar = 0;

    for (uint16_t k = 0; k < r->name_len; k++)
        if (src[k] > maxchar)
            maxchar = src[k];
    PyObject *name = PyUnicode_New(r->name_len, maxchar);
    if (name == NULL)
        return NULL;
    Py_UCS1 *dst = PyUnicode_1BYTE_DATA(name);
    for (uint16_t k = 0; k < r->name_len; k++)
        dst[k] = ascii_lower(src[k]);
    return name;
}

/* Copy the header bytes into memory of our own. On failure (no memory) the
 * object is left empty rather than pointing at memory about to be reused.
 * The caller holds the critical section on `h`. */
static int headers_detach_locked(HeadersObject *h)
{
    size_t bytes = 0;

    if (h->owned != NULL || h->count == 0)
        return 0;
    for (uint32_t i = 0; i < h->count; i++)
        bytes += (size_t)h->refs[i].name_len + h->refs[i].value_len;
    size_t refs_size = (size_t)h->count * sizeof(rm_wire_header_t);
    unsigned char *mem = PyMem_Malloc(refs_size + bytes);
    if (mem == NULL) {
        h->refs = NULL;
        h->base = NULL;
        h->count = 0;
        PyErr_NoMemory();
        return -1;
    }
    rm_wire_header_t *refs = (rm_wire_header_t *)mem;
    uint32_t off = (uint32_t)refs_size;
    for (uint32_t i = 0; i < h->count; i++) {
        refs[i] = h->refs[i];
        memcpy(mem + off, h->base + h->refs[i].name_off, h->refs[i].name_len);
        refs[i].name_off = off;
        off += h->refs[i].name_len;
        memcpy(mem + off, h->base + h->refs[i].value_off, h->refs[i].value_len);
        refs[i].value_off = off;
        off += h->refs[i].value_len;
    }
    h->refs = refs;
    h->base = mem;
    h->owned = mem;
    return 0;
}

static int headers_detach(HeadersObject *h)
{
    int rc;

    RM_BEGIN_CRITICAL_SECTION((PyObject *)h);
    rc = headers_detach_locked(h);
    RM_END_CRITICAL_SECTION();
    return rc;
}

/* The readers below see `refs`, `base` and `count` change together (a
 * detach) only through the critical section on the object. */

static Py_ssize_t headers_length(PyObject *op)
{
    Py_ssize_t n;

    RM_BEGIN_CRITICAL_SECTION(op);
    n = ((HeadersObject *)op)->count;
    RM_END_CRITICAL_SECTION();
    return n;
}

/* The first value of header `key`, a new reference; NULL without an
 * exception when there is none. */
static PyObject *headers_first(HeadersObject *self, PyObject *key)
{
    const unsigned char *name;
    Py_ssize_t len, i = -1;
    PyObject *value = NULL;

    if (!key_bytes(key, &name, &len))
        return NULL;
    RM_BEGIN_CRITICAL_SECTION((PyObject *)self);
    i = headers_find(self, name, len, 0);
    if (i >= 0)
        value = headers_value(self, (uint32_t)i);
    RM_END_CRITICAL_SECTION();
    return value;
}

static PyObject *headers_subscript(PyObject *op, PyObject *key)
{
    PyObject *value = headers_first((HeadersObject *)op, key);

    if (value == NULL && !PyErr_Occurred())
        PyErr_SetObject(PyExc_KeyError, key);
    return value;
}

static int headers_contains(PyObject *op, PyObject *key)
{
    const unsigned char *name;
    Py_ssize_t len, i = -1;

    if (!key_bytes(key, &name, &len))
        return 0;
    RM_BEGIN_CRITICAL_SECTION(op);
    i = headers_find((HeadersObject *)op, name, len, 0);
    RM_END_CRITICAL_SECTION();
    return i >= 0;
}

static PyObject *headers_get(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "get expected 1 or 2 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *value = headers_first((HeadersObject *)op, args[0]);
    if (value != NULL || PyErr_Occurred())
        return value;
    return Py_NewRef(nargs > 1 ? args[1] : Py_None);
}

static PyObject *headers_getall(PyObject *op, PyObject *key)
{
    HeadersObject *self = (HeadersObject *)op;
    const unsigned char *name;
    Py_ssize_t len;
    PyObject *out = PyList_New(0);

    if (out == NULL || !key_bytes(key, &name, &len))
        return out;
    RM_BEGIN_CRITICAL_SECTION(op);
    for (Py_ssize_t i = headers_find(self, name, len, 0); i >= 0;
         i = headers_find(self, name, len, (uint32_t)i + 1)) {
        PyObject *value = headers_value(self, (uint32_t)i);
        if (value == NULL || PyList_Append(out, value) < 0) {
            Py_XDECREF(value);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(value);
    }
    RM_END_CRITICAL_SECTION();
    return out;
}

enum { LIST_KEYS, LIST_VALUES, LIST_ITEMS };

static PyObject *headers_list_locked(HeadersObject *self, int what)
{
    PyObject *out = PyList_New(self->count);
    if (out == NULL)
        return NULL;
    for (uint32_t i = 0; i < self->count; i++) {
        PyObject *item;
        if (what == LIST_KEYS) {
            item = headers_name(self, i);
        } else if (what == LIST_VALUES) {
            item = headers_value(self, i);
        } else {
            PyObject *name = headers_name(self, i);
            PyObject *value = name != NULL ? headers_value(self, i) : NULL;
            item = value != NULL ? PyTuple_Pack(2, name, value) : NULL;
            Py_XDECREF(name);
            Py_XDECREF(value);
        }
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

static PyObject *headers_list(HeadersObject *self, int what)
{
    PyObject *out;

    RM_BEGIN_CRITICAL_SECTION((PyObject *)self);
    out = headers_list_locked(self, what);
    RM_END_CRITICAL_SECTION();
    return out;
}

static PyObject *headers_keys(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return headers_list((HeadersObject *)op, LIST_KEYS);
}

static PyObject *headers_values(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return headers_list((HeadersObject *)op, LIST_VALUES);
}

static PyObject *headers_items(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return headers_list((HeadersObject *)op, LIST_ITEMS);
}

static PyObject *headers_iter(PyObject *op)
{
    PyObject *keys = headers_list((HeadersObject *)op, LIST_KEYS);
    if (keys == NULL)
        return NULL;
    PyObject *it = PyObject_GetIter(keys);
    Py_DECREF(keys);
    return it;
}

static PyObject *headers_repr(PyObject *op)
{
    PyObject *items = headers_list((HeadersObject *)op, LIST_ITEMS);
    if (items == NULL)
        return NULL;
    PyObject *out = PyUnicode_FromFormat("Headers(%R)", items);
    Py_DECREF(items);
    return out;
}

static void headers_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyMem_Free(((HeadersObject *)op)->owned);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef headers_methods[] = {
    {"get", (PyCFunction)(void (*)(void))headers_get, METH_FASTCALL,
     "get(name, default=None)\n--\n\nThe first value of header `name` (any case), or default."},
    {"getall", headers_getall, METH_O,
     "getall(name)\n--\n\nEvery value of header `name` in order; [] when absent."},
    {"keys", headers_keys, METH_NOARGS, "Lowercase header names, in order, repeats included."},
    {"values", headers_values, METH_NOARGS, "Header values, in order."},
    {"items", headers_items, METH_NOARGS, "(lowercase name, value) pairs, in order."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot headers_slots[] = {
    {Py_mp_length, headers_length},
    {Py_mp_subscript, headers_subscript},
    {Py_sq_contains, headers_contains},
    {Py_tp_iter, headers_iter},
    {Py_tp_repr, headers_repr},
    {Py_tp_methods, headers_methods},
    {Py_tp_dealloc, headers_dealloc},
    {Py_tp_doc, "Read-only, case-insensitive request headers; values decoded as latin-1.\n\n"
                "h[name] and h.get(name) give the first value of a repeated header,\n"
                "h.getall(name) every one. Iteration yields lowercase names."},
    {0, NULL},
};

static PyType_Spec headers_spec = {
    .name = "ringmaster.Headers",
    .basicsize = sizeof(HeadersObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_MAPPING,
    .slots = headers_slots,
};

/* ---- Request -------------------------------------------------------------- */

typedef struct {
    PyObject ob_base;     /* PyObject_HEAD, spelled out for clang-format */
    rm_pymod_state_t *st; /* borrowed: our type holds the module, which holds st */
    rm_req_view_t view;   /* valid while `attached` */
    bool attached;
    /* Lazily built attributes: NULL until first asked for (owned). */
    PyObject *method, *path, *query_string, *target, *http_version, *headers, *body, *client;
    BodyObject *exporter; /* owned: behind `body` when that views the region */
} RequestObject;

typedef PyObject *(*build_fn)(RequestObject *self);

static PyObject *latin1(const rm_pymod_state_t *st, const unsigned char *p, uint32_t len)
{
    if (len == 0)
        return Py_NewRef(st->str_empty);
    if (len == 1 && p[0] == '/')
        return Py_NewRef(st->str_slash);
    return PyUnicode_DecodeLatin1((const char *)p, len, NULL);
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

static PyObject *build_method(RequestObject *self)
{
    const unsigned char *p = self->view.head + self->view.meta.method_off;
    uint32_t len = self->view.meta.method_len;

    for (int i = 0; i < RM_METHOD_COUNT; i++)
        if (method_names[i].len == len && memcmp(method_names[i].name, p, len) == 0)
            return Py_NewRef(self->st->methods[i]);
    return latin1(self->st, p, len);
}

static PyObject *build_path(RequestObject *self)
{
    /* An absolute-form target without a path ("http://host") means "/". */
    if (self->view.meta.path_len == 0)
        return Py_NewRef(self->st->str_slash);
    return latin1(self->st, self->view.head + self->view.meta.path_off, self->view.meta.path_len);
}

static PyObject *build_query_string(RequestObject *self)
{
    return latin1(self->st, self->view.head + self->view.meta.query_off, self->view.meta.query_len);
}

static PyObject *build_target(RequestObject *self)
{
    return latin1(self->st, self->view.head + self->view.meta.target_off,
                  self->view.meta.target_len);
}

static PyObject *build_http_version(RequestObject *self)
{
    const rm_req_meta_t *m = &self->view.meta;
    if (m->http_major == 1 && m->http_minor <= 1)
        return Py_NewRef(m->http_minor ? self->st->str_http11 : self->st->str_http10);
    return PyUnicode_FromFormat("%u.%u", (unsigned)m->http_major, (unsigned)m->http_minor);
}

static PyObject *build_headers(RequestObject *self)
{
    PyTypeObject *tp = self->st->headers_type;
    HeadersObject *h = (HeadersObject *)tp->tp_alloc(tp, 0);
    if (h == NULL)
        return NULL;
    h->refs = self->view.headers;
    h->base = self->view.head;
    h->count = self->view.meta.header_count;
    return (PyObject *)h;
}

/* The body as owned bytes: joins several slices, copies one, or reads a
 * spilled body's file whole. */
static PyObject *body_copy(RequestObject *self)
{
    const rm_req_meta_t *m = &self->view.meta;
    rm_body_reader_t reader;

    if (m->body_len == 0)
        return Py_NewRef(self->st->empty_bytes);
    if (m->body_len > PY_SSIZE_T_MAX)
        return PyErr_NoMemory();
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)m->body_len);
    if (out == NULL)
        return NULL;
    size_t got = 0;
    int rc = rm_body_reader_open(&reader, &self->view);
    if (rc == 0) {
        char *dst = PyBytes_AS_STRING(out);
        if (m->flags & RM_REQ_BODY_FILE) {
            Py_BEGIN_ALLOW_THREADS /* a file read may take a while */
            got = rm_body_reader_read(&reader, dst, (size_t)m->body_len);
            Py_END_ALLOW_THREADS
        } else {
            got = rm_body_reader_read(&reader, dst, (size_t)m->body_len); /* memcpy only */
        }
        rc = -reader.error;
        rm_body_reader_close(&reader);
    }
    if (rc < 0 || got != m->body_len) {
        Py_DECREF(out);
        errno = rc < 0 ? -rc : ENODATA;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return out;
}

static PyObject *build_body(RequestObject *self)
{
    const rm_req_meta_t *m = &self->view.meta;

    /* Several slices (a chunked upload, a body over chunk boundaries): join. */
    if (m->body_len == 0 || m->body_slice_count != 1)
        return body_copy(self);
    /* One slice: a zero-copy view of the region. */
    const rm_slice_t *s = &self->view.body[0];
    PyTypeObject *tp = self->st->body_type;
    BodyObject *b = (BodyObject *)tp->tp_alloc(tp, 0);
    if (b == NULL)
        return NULL;
    b->data = rm_chunk_pool_ptr(self->view.pool, s->chunk) + s->off;
    b->len = s->len;
    b->req_id = self->view.req_id;
    b->worker = self->st->worker;
    PyObject *view = PyMemoryView_FromObject((PyObject *)b);
    if (view == NULL) {
        Py_DECREF(b);
        return NULL;
    }
    self->exporter = b;
    return view;
}

static PyObject *build_client(RequestObject *self)
{
    const rm_req_meta_t *m = &self->view.meta;
    char host[INET6_ADDRSTRLEN];
    int family = m->client_family == 4 ? AF_INET : m->client_family == 6 ? AF_INET6 : 0;

    if (family == 0 || inet_ntop(family, m->client_addr, host, sizeof(host)) == NULL)
        Py_RETURN_NONE;
    return Py_BuildValue("(si)", host, (int)m->client_port);
}

/* One table drives the getters and the detach. */
typedef struct {
    size_t slot; /* offsetof the cache field in RequestObject */
    build_fn build;
} lazy_attr_t;

enum {
    ATTR_METHOD,
    ATTR_PATH,
    ATTR_QUERY_STRING,
    ATTR_TARGET,
    ATTR_HTTP_VERSION,
    ATTR_HEADERS,
    ATTR_BODY,
    ATTR_CLIENT,
    LAZY_ATTR_COUNT
};

static lazy_attr_t lazy_attrs[LAZY_ATTR_COUNT] = {
    [ATTR_METHOD] = {offsetof(RequestObject, method), build_method},
    [ATTR_PATH] = {offsetof(RequestObject, path), build_path},
    [ATTR_QUERY_STRING] = {offsetof(RequestObject, query_string), build_query_string},
    [ATTR_TARGET] = {offsetof(RequestObject, target), build_target},
    [ATTR_HTTP_VERSION] = {offsetof(RequestObject, http_version), build_http_version},
    [ATTR_HEADERS] = {offsetof(RequestObject, headers), build_headers},
    [ATTR_BODY] = {offsetof(RequestObject, body), build_body},
    [ATTR_CLIENT] = {offsetof(RequestObject, client), build_client},
};

static inline PyObject **lazy_slot(RequestObject *self, const lazy_attr_t *a)
{
    return (PyObject **)((char *)self + a->slot);
}

static PyObject *request_lazy_get(PyObject *op, void *closure)
{
    RequestObject *self = (RequestObject *)op;
    const lazy_attr_t *a = closure;
    PyObject **slot = lazy_slot(self, a);
    PyObject *value = NULL;

    RM_BEGIN_CRITICAL_SECTION(op);
    if (*slot == NULL) {
        if (!self->attached)
            /* Only after a detach that ran out of memory. */
            PyErr_SetString(PyExc_RuntimeError, "this request has finished and its data is gone");
        else
            *slot = a->build(self);
    }
    value = Py_XNewRef(*slot);
    RM_END_CRITICAL_SECTION();
    return value;
}

static PyObject *request_keep_alive(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(((RequestObject *)op)->view.meta.flags & RM_REQ_KEEP_ALIVE);
}

static PyObject *request_repr(PyObject *op)
{
    RequestObject *self = (RequestObject *)op;
    PyObject *method = request_lazy_get(op, &lazy_attrs[ATTR_METHOD]);
    PyObject *path = method != NULL ? request_lazy_get(op, &lazy_attrs[ATTR_PATH]) : NULL;
    PyObject *out = NULL;

    if (path != NULL)
        out = PyUnicode_FromFormat("<%s %U %R>", Py_TYPE(self)->tp_name, method, path);
    Py_XDECREF(method);
    Py_XDECREF(path);
    return out;
}

static void request_clear_attrs(RequestObject *self)
{
    for (size_t i = 0; i < LAZY_ATTR_COUNT; i++)
        Py_CLEAR(*lazy_slot(self, &lazy_attrs[i]));
}

static void request_dealloc(PyObject *op)
{
    RequestObject *self = (RequestObject *)op;
    PyTypeObject *tp = Py_TYPE(op);

    request_clear_attrs(self);
    Py_CLEAR(self->exporter);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyGetSetDef request_getset[] = {
    {"method", request_lazy_get, NULL, "The request method, e.g. 'GET'.", &lazy_attrs[ATTR_METHOD]},
    {"path", request_lazy_get, NULL,
     "The path before '?', as sent (not percent-decoded), decoded latin-1.",
     &lazy_attrs[ATTR_PATH]},
    {"query_string", request_lazy_get, NULL, "The query after '?', as sent; '' when none.",
     &lazy_attrs[ATTR_QUERY_STRING]},
    {"target", request_lazy_get, NULL, "The request-target as sent.", &lazy_attrs[ATTR_TARGET]},
    {"http_version", request_lazy_get, NULL, "'1.1' or '1.0'.", &lazy_attrs[ATTR_HTTP_VERSION]},
    {"headers", request_lazy_get, NULL, "The request headers (ringmaster.Headers).",
     &lazy_attrs[ATTR_HEADERS]},
    {"body", request_lazy_get, NULL,
     "The body: a read-only memoryview of shared memory when it arrived in one piece,\n"
     "bytes otherwise; b'' when empty. A view kept past the handler pins the\n"
     "request's shared memory until released: keep bytes(request.body) instead.",
     &lazy_attrs[ATTR_BODY]},
    {"client", request_lazy_get, NULL, "(host, port) of the client, or None (Unix socket).",
     &lazy_attrs[ATTR_CLIENT]},
    {"keep_alive", request_keep_alive, NULL, "Whether the connection stays open.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot request_slots[] = {
    {Py_tp_getset, request_getset},
    {Py_tp_repr, request_repr},
    {Py_tp_dealloc, request_dealloc},
    {Py_tp_doc, "An HTTP request, handed to app(request). Attributes are built on first use."},
    {0, NULL},
};

static PyType_Spec request_spec = {
    .name = "ringmaster.Request",
    .basicsize = sizeof(RequestObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = request_slots,
};

PyObject *rm_request_open(rm_pymod_state_t *st, PyObject **spare, const rm_req_view_t *view)
{
    RequestObject *self = (RequestObject *)*spare;

    if (self != NULL) {
        *spare = NULL;
    } else {
        self = (RequestObject *)st->request_type->tp_alloc(st->request_type, 0);
        if (self == NULL)
            return NULL;
        self->st = st;
    }
    self->view = *view;
    self->attached = true;
    return (PyObject *)self;
}

/* Build what is missing and copy what points into the region. The body
 * becomes bytes: a copy of the region view, or built as a copy directly. */
static void request_detach(RequestObject *self, BodyObject *exporter)
{
    char why[256];
    bool failed = false;

    if (self->body == NULL || exporter != NULL) {
        PyObject *copy = body_copy(self);
        failed = copy == NULL;
        Py_XSETREF(self->body, copy); /* drops our view of the region, if any */
    }
    for (size_t i = 0; i < LAZY_ATTR_COUNT; i++) {
        PyObject **slot = lazy_slot(self, &lazy_attrs[i]);
        if (*slot == NULL && (*slot = lazy_attrs[i].build(self)) == NULL)
            failed = true;
    }
    /* A nested section: this one's Request's is held. */
    if (self->headers != NULL && headers_detach((HeadersObject *)self->headers) < 0)
        failed = true;
    if (failed) {
        rm_host_take_exception(why, sizeof(why), true);
        RM_ERROR("cannot keep a request the app still references: %s", why);
    }
}

PyObject *rm_request_close(PyObject *op, PyObject **spare)
{
    RequestObject *self = (RequestObject *)op;
    BodyObject *exporter;
    /* Only we hold it when this is 1, so nothing can make it grow. */
    bool shared = Py_REFCNT(op) > 1;

    RM_BEGIN_CRITICAL_SECTION(op);
    exporter = self->exporter;
    self->exporter = NULL;
    if (shared) {
        request_detach(self, exporter);
        self->attached = false;
    }
    RM_END_CRITICAL_SECTION();
    if (shared) {
        Py_DECREF(op);
    } else {
        HeadersObject *h = (HeadersObject *)self->headers;
        if (h != NULL && Py_REFCNT(h) > 1 && headers_detach(h) < 0) {
            char why[256];
            rm_host_take_exception(why, sizeof(why), true);
            RM_ERROR("cannot keep request headers the app still references: %s", why);
        }
        self->attached = false;
        request_clear_attrs(self); /* releases our own view of the body */
        if (*spare == NULL)
            *spare = op;
        else
            Py_DECREF(op);
    }
    if (exporter != NULL && body_retire(exporter))
        return (PyObject *)exporter;
    Py_XDECREF(exporter);
    return NULL;
}

/* ---- the module ------------------------------------------------------------ */

static int module_exec(PyObject *m)
{
    rm_pymod_state_t *st = PyModule_GetState(m);

    st->request_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &request_spec, NULL);
    st->headers_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &headers_spec, NULL);
    st->body_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &body_spec, NULL);
    if (st->request_type == NULL || st->headers_type == NULL || st->body_type == NULL)
        return -1;
    if (PyModule_AddType(m, st->request_type) < 0 || PyModule_AddType(m, st->headers_type) < 0 ||
        PyModule_AddType(m, st->body_type) < 0)
        return -1;

    for (int i = 0; i < RM_METHOD_COUNT; i++)
        if ((st->methods[i] = PyUnicode_InternFromString(method_names[i].name)) == NULL)
            return -1;
    st->str_empty = PyUnicode_InternFromString("");
    st->str_slash = PyUnicode_InternFromString("/");
    st->str_http11 = PyUnicode_InternFromString("1.1");
    st->str_http10 = PyUnicode_InternFromString("1.0");
    st->str_body = PyUnicode_InternFromString("body");
    st->str_status = PyUnicode_InternFromString("status");
    st->str_headers = PyUnicode_InternFromString("headers");
    st->str_content_type = PyUnicode_InternFromString("content_type");
    st->empty_bytes = PyBytes_FromStringAndSize("", 0);
    if (st->str_empty == NULL || st->str_slash == NULL || st->str_http11 == NULL ||
        st->str_http10 == NULL || st->str_body == NULL || st->str_status == NULL ||
        st->str_headers == NULL || st->str_content_type == NULL || st->empty_bytes == NULL)
        return -1;
    return 0;
}

#define STATE_REFS_MAX (RM_METHOD_COUNT + 32)

/* Every reference the state holds, for traverse and clear. */
static size_t state_refs(rm_pymod_state_t *st, PyObject **refs[])
{
    size_t n = 0;
    refs[n++] = (PyObject **)&st->request_type;
    refs[n++] = (PyObject **)&st->headers_type;
    refs[n++] = (PyObject **)&st->body_type;
    for (int i = 0; i < RM_METHOD_COUNT; i++)
        refs[n++] = &st->methods[i];
    refs[n++] = &st->str_empty;
    refs[n++] = &st->str_slash;
    refs[n++] = &st->str_http11;
    refs[n++] = &st->str_http10;
    refs[n++] = &st->str_body;
    refs[n++] = &st->str_status;
    refs[n++] = &st->str_headers;
    refs[n++] = &st->str_content_type;
    refs[n++] = &st->empty_bytes;
    refs[n++] = &st->app;
    refs[n++] = &st->json_encode;
    refs[n++] = &st->json_chunks;
    refs[n++] = &st->response_type;
    refs[n++] = &st->wsgi;
    refs[n++] = &st->asgi;
    assert(n <= STATE_REFS_MAX);
    return n;
}

static int module_traverse(PyObject *m, visitproc visit, void *arg)
{
    rm_pymod_state_t *st = PyModule_GetState(m);
    PyObject **refs[STATE_REFS_MAX];

    if (st == NULL)
        return 0;
    for (size_t i = 0, n = state_refs(st, refs); i < n; i++)
        Py_VISIT(*refs[i]);
    return 0;
}

static int module_clear(PyObject *m)
{
    rm_pymod_state_t *st = PyModule_GetState(m);
    PyObject **refs[STATE_REFS_MAX];

    if (st == NULL)
        return 0;
    for (size_t i = 0, n = state_refs(st, refs); i < n; i++)
        Py_CLEAR(*refs[i]);
    return 0;
}

static void module_free(void *m)
{
    module_clear((PyObject *)m);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    /* No static state: each interpreter gets its own types and state. */
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    /* Safe without the GIL: the module state is written only before the
     * serving threads start, and the objects' mutable state is guarded by
     * critical sections (see the top of this file). Without this slot, a
     * free-threaded build would turn the GIL on when importing us. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_ringmaster",
    .m_doc = "The request objects of ringmaster-worker (re-exported by the ringmaster package).",
    .m_size = sizeof(rm_pymod_state_t),
    .m_methods = rm_pymod_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyObject *rm_pymod_init(void)
{
    return PyModuleDef_Init(&module_def);
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = ascii_lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

char *rm_decimal(char buf[24], uint64_t v)
{
    char *p = buf + 24;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return p;
}

size_t rm_percent_decode(const unsigned char *p, size_t n, unsigned char *out)
{
    size_t dn = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (p[i] == '%' && i + 2 < n && (hi = hexval(p[i + 1])) >= 0 &&
            (lo = hexval(p[i + 2])) >= 0) {
            out[dn++] = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else {
            out[dn++] = p[i]; /* a lone '%' stays as it is */
        }
    }
    return dn;
}

/* An address from the meta as text: IPv4-mapped IPv6 as IPv4, IPv6 in
 * brackets when `brackets`. Returns the length, 0 when there is none. */
size_t rm_addr_text(uint8_t family, const uint8_t addr[16], bool brackets, char *out, size_t len)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char *p = out;

    if (family == 6 && memcmp(addr, mapped, sizeof(mapped)) == 0) {
        family = 4;
        addr += 12;
    }
    if (family != 4 && family != 6)
        return 0;
    if (family == 4) {
        /* By hand: glibc's inet_ntop formats IPv4 through sprintf. */
        for (int i = 0; i < 4; i++) {
            char buf[24], *d = rm_decimal(buf, addr[i]);
            if (i > 0)
                *p++ = '.';
            memcpy(p, d, (size_t)(buf + 24 - d));
            p += buf + 24 - d;
        }
        *p = '\0';
        return (size_t)(p - out);
    }
    if (brackets)
        *p++ = '[';
    if (inet_ntop(AF_INET6, addr, p, (socklen_t)(len - 2)) == NULL)
        return 0;
    p += strlen(p);
    if (brackets)
        *p++ = ']', *p = '\0';
    return (size_t)(p - out);
}
