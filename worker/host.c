/*
 * host.c - CPython inside the worker: start it, import the app, stop it.
 *
 * The interpreter is configured with PyConfig_InitPythonConfig, so that
 * PYTHONPATH, PYTHONHOME and a virtual environment behave as they do for the
 * python command; only signal handling stays with the C side. Every PyStatus is
 * checked and the config cleared on every path.
 *
 * Subinterpreters (3.12+) are made by the serving threads themselves, each with
 * an explicit PyInterpreterConfig: its own GIL and object allocator, extension
 * modules checked for multi-interpreter support (a single-phase init module
 * raises ImportError, which rm_host_load_app turns into one line naming it),
 * threads and exec allowed, fork and daemon threads not (Py_EndInterpreter
 * cannot end an interpreter that still runs a daemon thread). Each one inherits
 * the main interpreter's PyConfig (paths, venv, flags) and gets the same
 * sys.path additions, _ringmaster module, JSON encoder and app import.
 */
#include "worker.h"
#include "wsgi.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef RINGMASTER_PYTHON_DIR
#define RINGMASTER_PYTHON_DIR ""
#endif

int rm_host_resolve_mode(rm_worker_mode_t asked, rm_worker_mode_t *mode, char *why, size_t why_len)
{
    char version[32];

    rm_host_python_version(version, sizeof(version));
    if (asked == RM_WORKER_MODE_AUTO)
        asked = RM_FREE_THREADED_BUILD    ? RM_WORKER_MODE_FREE_THREADED
                : RM_HAVE_SUBINTERPRETERS ? RM_WORKER_MODE_SUBINTERPRETERS
                                          : RM_WORKER_MODE_GIL;
    if (asked == RM_WORKER_MODE_FREE_THREADED && !RM_FREE_THREADED_BUILD) {
        snprintf(why, why_len,
                 "--mode free-threaded needs a free-threaded (--disable-gil) CPython, but this "
                 "worker embeds Python %s with the GIL: build a worker for python3.13t and pick "
                 "it with --python 3.13t, or use --mode %s",
                 version, RM_HAVE_SUBINTERPRETERS ? "subinterpreters" : "gil");
        return -ENOTSUP;
    }
    if (asked == RM_WORKER_MODE_SUBINTERPRETERS && !RM_HAVE_SUBINTERPRETERS) {
        snprintf(why, why_len,
                 "--mode subinterpreters needs CPython 3.12 or later, but this worker embeds "
                 "Python %s: build a worker for a newer python and pick it with --python, or use "
                 "--mode gil",
                 version);
        return -ENOTSUP;
    }
    *mode = asked;
    return 0;
}

void rm_host_python_version(char *buf, size_t len)
{
    /* "3.11.2 (main, ...) [GCC 12.2.0]": the runtime library's, not our headers'. */
    const char *v = Py_GetVersion();
    snprintf(buf, len, "%.*s", (int)strcspn(v, " "), v);
}

/* Control characters (a multi-line message) would break the one-line contract. */
static void one_line(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = ' ';
}

static void describe(PyObject *exc, char *buf, size_t len)
{
    const char *name = Py_TYPE(exc)->tp_name;
    const char *dot = strrchr(name, '.');
    if (dot != NULL)
        name = dot + 1;

    PyObject *str = PyObject_Str(exc);
    const char *text = str != NULL ? PyUnicode_AsUTF8(str) : NULL;
    if (text == NULL) {
        PyErr_Clear();
        text = "<unprintable>";
    }
    if (text[0] != '\0')
        snprintf(buf, len, "%s: %s", name, text);
    else
        snprintf(buf, len, "%s", name);
    Py_XDECREF(str);
    one_line(buf);
}

char *rm_host_format_traceback(PyObject *exc)
{
    char *out = NULL;
    PyObject *lines = NULL, *text = NULL;
    PyObject *empty = PyUnicode_FromStringAndSize("", 0);
    PyObject *traceback = PyImport_ImportModule("traceback");
    if (traceback != NULL && empty != NULL)
        lines = PyObject_CallMethod(traceback, "format_exception", "O", exc);
    if (lines != NULL)
        text = PyUnicode_Join(empty, lines);
    Py_ssize_t n;
    const char *utf8 = text != NULL ? PyUnicode_AsUTF8AndSize(text, &n) : NULL;
    if (utf8 != NULL) {
        out = malloc((size_t)n + 1);
        if (out != NULL)
            memcpy(out, utf8, (size_t)n + 1);
    }
    PyErr_Clear(); /* a traceback that cannot be formatted is left out */
    Py_XDECREF(text);
    Py_XDECREF(lines);
    Py_XDECREF(traceback);
    Py_XDECREF(empty);
    return out;
}

/* The pending exception, normalized, with its traceback attached; NULL if none. */
static PyObject *take_raised(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (exc != NULL && tb != NULL)
        PyException_SetTraceback(exc, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return exc;
#endif
}

/* Not PyErr_Print: it would run sys.excepthook, keep the traceback (and the
 * request it references) alive in sys.last_*, and exit on SystemExit. Nor
 * PyErr_Display: it writes the traceback line by line on sys.stderr, where
 * other workers' lines land between them; the caller's record carries it. */
void rm_host_take_exception(char *buf, size_t len, bool show_traceback)
{
    PyObject *exc = take_raised();
    if (exc == NULL) {
        snprintf(buf, len, "unknown error");
        return;
    }
    describe(exc, buf, len);
    if (show_traceback)
        rm_log_hold_detail(rm_host_format_traceback(exc));
    PyErr_Clear();
    Py_DECREF(exc);
}

void rm_host_log_exception(char *buf, size_t len, rm_log_level_t level, const char *what)
{
    PyObject *exc = take_raised();
    if (exc == NULL) {
        snprintf(buf, len, "unknown error");
        return;
    }
    describe(exc, buf, len);
    if (level <= rm_log_conf.level) {
        char *trace = rm_host_format_traceback(exc);
        rm_log_write_detail(level, trace, "%s%s", what, buf);
        free(trace);
    }
    PyErr_Clear();
    Py_DECREF(exc);
}

/* Start-up failures are reported by the supervisor as one line; the traceback
 * (one per worker otherwise) only with --log-level debug, in a record of the
 * worker's own. */
#define STARTUP_TRACEBACK RM_LOG_DEBUG

static int status_failed(PyStatus status, char *why, size_t why_len)
{
    if (PyStatus_IsExit(status))
        snprintf(why, why_len, "cannot initialise Python: it asked to exit with status %d",
                 status.exitcode);
    else
        snprintf(why, why_len, "cannot initialise Python: %s%s%s",
                 status.func != NULL ? status.func : "", status.func != NULL ? ": " : "",
                 status.err_msg != NULL ? status.err_msg : "unknown error");
    return -EINVAL;
}

/* The "version" line of $VIRTUAL_ENV/pyvenv.cfg: returns 0 and the value, or
 * -ENOENT when there is no such file or line. */
static int venv_version(const char *venv, char *out, size_t len)
{
    char path[PATH_MAX], line[256];
    int rc = -ENOENT;

    if ((size_t)snprintf(path, sizeof(path), "%s/pyvenv.cfg", venv) >= sizeof(path))
        return -ENAMETOOLONG;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -errno;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *key = line + strspn(line, " \t");
        size_t klen = strcspn(key, " \t=");
        char *eq = strchr(key, '=');
        if (eq == NULL || klen != 7 || memcmp(key, "version", 7) != 0)
            continue;
        char *value = eq + 1 + strspn(eq + 1, " \t");
        value[strcspn(value, " \t\r\n")] = '\0';
        snprintf(out, len, "%s", value);
        rc = 0;
        break;
    }
    fclose(f);
    return rc;
}

/* Length of "3.11" in "3.11.2". */
static size_t major_minor_len(const char *version)
{
    const char *dot = strchr(version, '.');
    if (dot == NULL)
        return strlen(version);
    return (size_t)(dot + 1 - version) + strcspn(dot + 1, ".");
}

/* Make CPython treat $VIRTUAL_ENV as its prefix: getpath finds pyvenv.cfg next
 * to the executable and site then adds the venv's site-packages. A venv of
 * another Python version would load that version's standard library into this
 * runtime, so it is refused with a message instead. A VIRTUAL_ENV without
 * pyvenv.cfg (a stale variable) is ignored with a warning. */
static int config_venv(PyConfig *config, char *why, size_t why_len)
{
    const char *venv = getenv("VIRTUAL_ENV");
    char exe[PATH_MAX], theirs[64], ours[32];

    if (venv == NULL || venv[0] == '\0')
        return 0;
    int rc = venv_version(venv, theirs, sizeof(theirs));
    if (rc < 0) {
        RM_WARN("VIRTUAL_ENV=%s has no usable pyvenv.cfg (%s); ignoring it", venv, strerror(-rc));
        return 0;
    }
    rm_host_python_version(ours, sizeof(ours));
    size_t mm = major_minor_len(ours);
    if (strncmp(theirs, ours, mm) != 0 || (theirs[mm] != '.' && theirs[mm] != '\0')) {
        snprintf(why, why_len,
                 "VIRTUAL_ENV=%s was made by Python %s but this worker embeds Python %s; "
                 "build ringmaster with -DRINGMASTER_PYTHON= that interpreter or use a matching "
                 "venv",
                 venv, theirs, ours);
        return -EINVAL;
    }
    if ((size_t)snprintf(exe, sizeof(exe), "%s/bin/python", venv) >= sizeof(exe)) {
        snprintf(why, why_len, "VIRTUAL_ENV=%s: path too long", venv);
        return -ENAMETOOLONG;
    }
    PyStatus status = PyConfig_SetBytesString(config, &config->program_name, exe);
    if (!PyStatus_Exception(status))
        status = PyConfig_SetBytesString(config, &config->executable, exe);
    if (PyStatus_Exception(status))
        return status_failed(status, why, why_len);
    return 0;
}

static int path_add(PyObject *sys_path, const char *dir, bool front)
{
    PyObject *entry = PyUnicode_DecodeFSDefault(dir);
    if (entry == NULL)
        return -1;
    int rc = front ? PyList_Insert(sys_path, 0, entry) : PyList_Append(sys_path, entry);
    Py_DECREF(entry);
    return rc;
}

/* The working directory first (as gunicorn does), the ringmaster package last,
 * so the app can `import ringmaster` without installing it. */
static int setup_sys_path(char *why, size_t why_len)
{
    char cwd[PATH_MAX];
    const char *pkg_dir = getenv("RINGMASTER_PYTHON_DIR");
    PyObject *sys_path = PySys_GetObject("path"); /* borrowed */

    if (pkg_dir == NULL || pkg_dir[0] == '\0')
        pkg_dir = RINGMASTER_PYTHON_DIR;
    if (sys_path == NULL || !PyList_Check(sys_path)) {
        snprintf(why, why_len, "cannot initialise Python: sys.path is not a list");
        return -EINVAL;
    }
    if (getcwd(cwd, sizeof(cwd)) != NULL && path_add(sys_path, cwd, true) < 0)
        goto fail;
    if (pkg_dir[0] != '\0' && path_add(sys_path, pkg_dir, false) < 0)
        goto fail;
    return 0;

fail:
    snprintf(why, why_len, "cannot set sys.path: ");
    rm_host_log_exception(why + strlen(why), why_len - strlen(why), STARTUP_TRACEBACK,
                          "start-up failed: ");
    return -EINVAL;
}

/* Embedded, sys.executable is "" or our own binary, which breaks subprocess
 * calls of sys.executable and multiprocessing's spawn and forkserver. Point it
 * at the interpreter whose library we run ($VIRTUAL_ENV/bin/python already
 * qualifies); leave it alone if that interpreter is not installed. */
static void fix_executable(void)
{
    char path[PATH_MAX];
    PyObject *exe = PySys_GetObject("executable");          /* borrowed */
    PyObject *base_prefix = PySys_GetObject("base_prefix"); /* borrowed */
    const char *cur = exe != NULL && PyUnicode_Check(exe) ? PyUnicode_AsUTF8(exe) : NULL;
    const char *prefix =
        base_prefix != NULL && PyUnicode_Check(base_prefix) ? PyUnicode_AsUTF8(base_prefix) : NULL;

    PyErr_Clear();
    if (cur != NULL) {
        const char *slash = strrchr(cur, '/');
        if (strncmp(slash != NULL ? slash + 1 : cur, "python", 6) == 0)
            return;
    }
    if (prefix == NULL || (size_t)snprintf(path, sizeof(path), "%s/bin/python%d.%d", prefix,
                                           PY_MAJOR_VERSION, PY_MINOR_VERSION) >= sizeof(path))
        return;
    if (access(path, X_OK) != 0)
        return;
    PyObject *value = PyUnicode_DecodeFSDefault(path);
    if (value == NULL || PySys_SetObject("executable", value) < 0 ||
        PySys_SetObject("_base_executable", value) < 0)
        PyErr_Clear();
    Py_XDECREF(value);
}

/* json.encoder.c_make_encoder(...) as JSONEncoder(separators=(",", ":")) would
 * build it, or NULL. */
static PyObject *make_c_encoder(PyObject *json, PyObject *encoder)
{
    PyObject *mod = NULL, *make = NULL, *escape = NULL, *dflt = NULL, *out = NULL;

    mod = PyObject_GetAttrString(json, "encoder");
    make = mod != NULL ? PyObject_GetAttrString(mod, "c_make_encoder") : NULL;
    escape = mod != NULL ? PyObject_GetAttrString(mod, "encode_basestring_ascii") : NULL;
    dflt = PyObject_GetAttrString(encoder, "default");
    if (make != NULL && make != Py_None && escape != NULL && dflt != NULL)
        /* markers, default, encoder, indent, key_separator, item_separator,
         * sort_keys, skipkeys, allow_nan: the same nine in 3.11 to 3.13. */
        out = PyObject_CallFunction(make, "OOOOssOOO", Py_None, dflt, escape, Py_None, ":", ",",
                                    Py_False, Py_False, Py_True);
    Py_XDECREF(dflt);
    Py_XDECREF(escape);
    Py_XDECREF(make);
    Py_XDECREF(mod);
    PyErr_Clear();
    return out;
}

/* dict and list return values become json.dumps(value, separators=(",", ":")).
 * JSONEncoder.encode builds the C encoder of _json on every call (three
 * quarters of its cost for a small dict), so it is built once here, without
 * the circular-reference check that makes it stateful: a cyclic value then
 * fails with RecursionError rather than ValueError, a 500 either way. The fast
 * path is used only if it encodes a probe exactly as the public encoder does;
 * otherwise (no _json, another signature) JSONEncoder(...).encode is called. */
static int setup_json(rm_pymod_state_t *st)
{
    PyObject *json = NULL, *cls = NULL, *kwargs = NULL, *args = NULL, *encoder = NULL;
    PyObject *probe = NULL, *want = NULL, *chunks = NULL, *got = NULL;
    int rc = -1;

    json = PyImport_ImportModule("json");
    cls = json != NULL ? PyObject_GetAttrString(json, "JSONEncoder") : NULL;
    kwargs = Py_BuildValue("{s(ss)}", "separators", ",", ":");
    args = PyTuple_New(0);
    if (cls == NULL || kwargs == NULL || args == NULL)
        goto done;
    encoder = PyObject_Call(cls, args, kwargs);
    st->json_encode = encoder != NULL ? PyObject_GetAttrString(encoder, "encode") : NULL;
    if (st->json_encode == NULL)
        goto done;
    rc = 0;

    st->json_chunks = make_c_encoder(json, encoder);
    probe = Py_BuildValue("{s[idOOs]s{}}", "a", 1, 2.5, Py_None, Py_True, "h\xc3\xa9 \"q\"", "b");
    want = probe != NULL ? PyObject_CallOneArg(st->json_encode, probe) : NULL;
    if (st->json_chunks != NULL && want != NULL) {
        chunks = PyObject_CallFunction(st->json_chunks, "Oi", probe, 0);
        got = chunks != NULL ? PyUnicode_Join(st->str_empty, chunks) : NULL;
    }
    if (got == NULL || PyUnicode_Compare(got, want) != 0)
        Py_CLEAR(st->json_chunks);
    PyErr_Clear();
    RM_DEBUG("JSON responses through %s",
             st->json_chunks != NULL ? "_json's C encoder, built once" : "json.JSONEncoder.encode");
done:
    Py_XDECREF(got);
    Py_XDECREF(chunks);
    Py_XDECREF(want);
    Py_XDECREF(probe);
    Py_XDECREF(encoder);
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    Py_XDECREF(cls);
    Py_XDECREF(json);
    return rc;
}

/* Everything an interpreter needs besides the app, in the calling thread's
 * interpreter: sys.path and sys.executable, _ringmaster (its state pointing
 * at `w`), the JSON encoder, ringmaster.Response. Fills *module (owned) and
 * *st; on failure they may be half set: the caller drops them all the same. */
static int setup_interp(PyObject **module, rm_pymod_state_t **st, rm_worker_t *w, bool embedded,
                        char *why, size_t why_len)
{
    PyObject *pkg;

    /* An interpreter someone else started (an attached worker) has its
     * paths and executable right already. */
    if (embedded) {
        int rc = setup_sys_path(why, why_len);
        if (rc < 0)
            return rc;
        fix_executable();
    }

    *module = PyImport_ImportModule("_ringmaster");
    if (*module == NULL) {
        snprintf(why, why_len, "cannot import _ringmaster: ");
        goto fail_exc;
    }
    *st = PyModule_GetState(*module);
    (*st)->worker = w;

    if (setup_json(*st) < 0) {
        snprintf(why, why_len, "cannot set up the json module: ");
        goto fail_exc;
    }

    pkg = PyImport_ImportModule("ringmaster");
    if (pkg != NULL) {
        (*st)->response_type = PyObject_GetAttrString(pkg, "Response");
        Py_DECREF(pkg);
    }
    if ((*st)->response_type != NULL && !PyType_Check((*st)->response_type)) {
        Py_CLEAR((*st)->response_type);
        PyErr_SetString(PyExc_TypeError, "ringmaster.Response is not a class");
    }
    if ((*st)->response_type == NULL) {
        const char *dir = getenv("RINGMASTER_PYTHON_DIR");
        snprintf(why, why_len, "cannot import ringmaster.Response (RINGMASTER_PYTHON_DIR=%s): ",
                 dir != NULL && dir[0] != '\0' ? dir : RINGMASTER_PYTHON_DIR);
        goto fail_exc;
    }
    return 0;

fail_exc:
    rm_host_log_exception(why + strlen(why), why_len - strlen(why), STARTUP_TRACEBACK,
                          "start-up failed: ");
    return -EINVAL;
}

/* Drop what setup_interp and rm_host_load_app stored, while the module still
 * works: the app's objects may hold body views whose release pushes
 * RM_DONE_RELEASE through st->worker. */
static void drop_interp(PyObject **module, rm_pymod_state_t **st)
{
    if (*st != NULL) {
        Py_CLEAR((*st)->app);
        Py_CLEAR((*st)->wsgi);
        Py_CLEAR((*st)->asgi);
        Py_CLEAR((*st)->json_encode);
        Py_CLEAR((*st)->json_chunks);
        Py_CLEAR((*st)->response_type);
    }
    *st = NULL;
    Py_CLEAR(*module);
}

int rm_host_init(rm_host_t *host, rm_worker_t *w, int argc, char **argv, char *why, size_t why_len)
{
    PyStatus status;
    PyConfig config;
    int rc;

    *host = (rm_host_t){0};
    atomic_init(&host->subinterpreters_made, false);
    if (PyImport_AppendInittab("_ringmaster", rm_pymod_init) < 0) {
        snprintf(why, why_len, "cannot initialise Python: cannot register _ringmaster");
        return -ENOMEM;
    }

    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0; /* SIGTERM/SIGINT belong to serve.c */
    config.parse_argv = 0;              /* our flags are not Python's; sys.argv = argv */
    status = PyConfig_SetBytesArgv(&config, argc, argv);
    if (PyStatus_Exception(status)) {
        rc = status_failed(status, why, why_len);
        goto fail_config;
    }
    rc = config_venv(&config, why, why_len);
    if (rc < 0)
        goto fail_config;
#ifdef Py_GIL_DISABLED
    /* gil mode on a free-threaded build: threads take turns, as PYTHON_GIL=1
     * would make them (the variable, when set, still wins). */
    if (w->mode == RM_WORKER_MODE_GIL)
        config.enable_gil = 1;
#endif
    status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status))
        return status_failed(status, why, why_len);
    host->initialized = true;

    return setup_interp(&host->module, &host->st, w, true, why, why_len);

fail_config:
    PyConfig_Clear(&config);
    return rc;
}

/* SPEC is module[:attr] or path/to/file.py[:attr]; attr defaults to "app" and
 * may be dotted. Fills the module name (the file's stem for a path) and puts a
 * file's directory first on sys.path. */
static int resolve_spec(const char *spec, char *module, size_t module_len, const char **attr,
                        char *why, size_t why_len)
{
    size_t len = strlen(spec);
    const char *colon = strrchr(spec, ':');
    char path[PATH_MAX]; /* the file, then its directory */

    /* A spec ending in ".py" is a file even when its directory holds a ':'. */
    if (len > 3 && strcmp(spec + len - 3, ".py") == 0)
        colon = NULL;
    size_t mlen = colon != NULL ? (size_t)(colon - spec) : len;
    *attr = colon != NULL ? colon + 1 : "app";

    if (mlen <= 3 || memcmp(spec + mlen - 3, ".py", 3) != 0) {
        if (mlen >= module_len)
            goto too_long;
        memcpy(module, spec, mlen);
        module[mlen] = '\0';
        return 0;
    }

    /* The path as given, made absolute but not resolved: a symlinked app.py
     * imports from the link's directory, by the link's name. */
    char cwd[PATH_MAX];
    int n;
    if (spec[0] == '/') {
        n = snprintf(path, sizeof(path), "%.*s", (int)mlen, spec);
    } else if (getcwd(cwd, sizeof(cwd)) != NULL) {
        n = snprintf(path, sizeof(path), "%s/%.*s", cwd, (int)mlen, spec);
    } else {
        snprintf(why, why_len, "cannot import app '%s': getcwd: %s", spec, strerror(errno));
        return -ENOENT;
    }
    if (n < 0 || (size_t)n >= sizeof(path))
        goto too_long;
    if (access(path, R_OK) != 0) {
        snprintf(why, why_len, "cannot import app '%s': %s: %s", spec, path, strerror(errno));
        return -ENOENT;
    }
    char *slash = strrchr(path, '/'); /* the path is absolute */
    size_t stem_len = strlen(slash + 1) - 3;
    if (stem_len == 0 || stem_len >= module_len)
        goto too_long;
    memcpy(module, slash + 1, stem_len);
    module[stem_len] = '\0';
    slash[slash == path ? 1 : 0] = '\0'; /* keep "/" for a file at the root */

    PyObject *sys_path = PySys_GetObject("path");
    if (sys_path == NULL || !PyList_Check(sys_path) || path_add(sys_path, path, true) < 0) {
        PyErr_Clear();
        snprintf(why, why_len, "cannot import app '%s': cannot update sys.path", spec);
        return -ENOENT;
    }
    return 0;

too_long:
    snprintf(why, why_len, "cannot import app '%s': name too long", spec);
    return -ENOENT;
}

#if RM_HAVE_SUBINTERPRETERS
/* CPython refuses a single-phase init extension in an interpreter that checks
 * (check_multi_interp_extensions) with exactly this ImportError, in 3.12 and
 * 3.13: "module NAME does not support loading in subinterpreters". */
#define REFUSAL_HEAD "module "
#define REFUSAL_TAIL " does not support loading in subinterpreters"

/* If `exc` or an exception it was raised from or during is that ImportError,
 * copy the module's name into `name` and return true. */
static bool subinterpreter_refusal(PyObject *exc, char *name, size_t name_len)
{
    const size_t head = strlen(REFUSAL_HEAD), tail = strlen(REFUSAL_TAIL);
    PyObject *seen[16]; /* compared by address only: `exc` keeps its chain alive */
    size_t depth = 0;
    bool match = false;
    PyObject *cur = Py_XNewRef(exc);

    /* Bounded and cycle-safe: a chain can loop through __context__. */
    while (cur != NULL && !match && depth < sizeof(seen) / sizeof(seen[0])) {
        for (size_t i = 0; i < depth; i++)
            if (seen[i] == cur)
                goto done;
        seen[depth++] = cur;
        if (PyErr_GivenExceptionMatches(cur, PyExc_ImportError)) {
            PyObject *str = PyObject_Str(cur);
            const char *text = str != NULL ? PyUnicode_AsUTF8(str) : NULL;
            size_t n = text != NULL ? strlen(text) : 0;
            match = n > head + tail && memcmp(text, REFUSAL_HEAD, head) == 0 &&
                    strcmp(text + n - tail, REFUSAL_TAIL) == 0;
            if (match)
                snprintf(name, name_len, "%.*s", (int)(n - head - tail), text + head);
            Py_XDECREF(str);
            PyErr_Clear();
        }
        PyObject *next = PyException_GetCause(cur); /* new references */
        if (next == NULL)
            next = PyException_GetContext(cur);
        Py_SETREF(cur, next);
    }
done:
    Py_XDECREF(cur);
    return match;
}

/* The pending exception, if it is the refusal, becomes the -ENOTSUP line. */
static bool explain_refusal(const char *spec, char *why, size_t why_len)
{
    char name[128];
    PyObject *exc = PyErr_GetRaisedException();
    bool refused = subinterpreter_refusal(exc, name, sizeof(name));

    PyErr_SetRaisedException(exc);
    if (!refused)
        return false;
    rm_host_log_exception(why, why_len, STARTUP_TRACEBACK, "start-up failed: "); /* clears it */
    snprintf(why, why_len,
             "cannot import app '%s' in a subinterpreter: module %s does not support loading in "
             "subinterpreters (a single-phase init extension)",
             spec, name);
    return true;
}
#endif

int rm_host_load_app(rm_pymod_state_t *st, const char *spec, char *why, size_t why_len)
{
    char module[256];
    const char *attr;
    PyObject *obj;

    int rc = resolve_spec(spec, module, sizeof(module), &attr, why, why_len);
    if (rc < 0)
        return rc;

    obj = PyImport_ImportModule(module);
    if (obj == NULL)
        goto fail_exc;
    /* Walk a dotted attribute: "app", "api.app". */
    for (const char *part = attr; obj != NULL && *part != '\0';) {
        size_t n = strcspn(part, ".");
        PyObject *name = PyUnicode_FromStringAndSize(part, (Py_ssize_t)n);
        PyObject *next = name != NULL ? PyObject_GetAttr(obj, name) : NULL;
        Py_XDECREF(name);
        Py_SETREF(obj, next);
        part += n + (part[n] == '.');
    }
    if (obj == NULL)
        goto fail_exc;
    if (!PyCallable_Check(obj)) {
        snprintf(why, why_len, "cannot import app '%s': '%s' is not callable (type %s)", spec, attr,
                 Py_TYPE(obj)->tp_name);
        Py_DECREF(obj);
        return -ENOENT;
    }
    Py_XSETREF(st->app, obj);
    /* Native or WSGI: decided per interpreter, since its state lives there. */
    return rm_wsgi_load(st, spec, why, why_len);

fail_exc:
#if RM_HAVE_SUBINTERPRETERS
    if (PyInterpreterState_Get() != PyInterpreterState_Main() &&
        explain_refusal(spec, why, why_len))
        return -ENOTSUP;
#endif
    snprintf(why, why_len, "cannot import app '%s': ", spec);
    rm_host_log_exception(why + strlen(why), why_len - strlen(why), STARTUP_TRACEBACK,
                          "start-up failed: ");
    return -ENOENT;
}

bool rm_host_gil_enabled(void)
{
#ifdef Py_GIL_DISABLED
    PyObject *sys = PyImport_ImportModule("sys");
    PyObject *on = sys != NULL ? PyObject_CallMethod(sys, "_is_gil_enabled", NULL) : NULL;
    int enabled = on != NULL ? PyObject_IsTrue(on) : -1;
    Py_XDECREF(on);
    Py_XDECREF(sys);
    if (enabled < 0) {
        PyErr_Clear();
        return true; /* cannot tell: do not claim parallelism */
    }
    return enabled != 0;
#else
    return true;
#endif
}

void rm_host_release_main(rm_host_t *host)
{
    host->main_ts = PyEval_SaveThread();
}

void rm_host_acquire_main(rm_host_t *host)
{
    if (host->main_ts != NULL) {
        PyEval_RestoreThread(host->main_ts);
        host->main_ts = NULL;
    }
}

int rm_host_interp_start(rm_interp_t *in, rm_host_t *host, rm_worker_t *w, char *why,
                         size_t why_len)
{
    *in = (rm_interp_t){0};
#if RM_HAVE_SUBINTERPRETERS
    const PyInterpreterConfig config = {
        .use_main_obmalloc = 0,
        .allow_fork = 0, /* forking a process that runs several interpreters is unsafe */
        .allow_exec = 1, /* subprocess works */
        .allow_threads = 1,
        .allow_daemon_threads = 0, /* Py_EndInterpreter would abort on one still running */
        .check_multi_interp_extensions = 1,
        .gil = PyInterpreterConfig_OWN_GIL,
    };

    atomic_store(&host->subinterpreters_made, true);
    PyStatus status = Py_NewInterpreterFromConfig(&in->ts, &config);
    if (PyStatus_Exception(status)) {
        in->ts = NULL;
        snprintf(why, why_len, "cannot create a subinterpreter: %s%s%s",
                 status.func != NULL ? status.func : "", status.func != NULL ? ": " : "",
                 status.err_msg != NULL ? status.err_msg : "unknown error");
        return -EINVAL;
    }
    return setup_interp(&in->module, &in->st, w, true, why, why_len);
#else
    (void)host;
    (void)w;
    snprintf(why, why_len, "subinterpreters need CPython 3.12 or later");
    return -ENOTSUP;
#endif
}

void rm_host_interp_end(rm_interp_t *in)
{
    if (in->ts == NULL)
        return;
    drop_interp(&in->module, &in->st);
    Py_EndInterpreter(in->ts);
    in->ts = NULL;
}

int rm_host_adopt(rm_host_t *host, rm_worker_t *w, char *why, size_t why_len)
{
    *host = (rm_host_t){0};
    atomic_init(&host->subinterpreters_made, false);
    return setup_interp(&host->module, &host->st, w, false, why, why_len);
}

void rm_host_disown(rm_host_t *host)
{
    rm_host_acquire_main(host);
    drop_interp(&host->module, &host->st);
}

void rm_host_finalize(rm_host_t *host)
{
    if (!host->initialized)
        return;
    rm_host_acquire_main(host);
    drop_interp(&host->module, &host->st);
#if PY_VERSION_HEX < 0x030D0000
    /* CPython 3.12 (3.12.1 here) aborts in the main interpreter's finalization
     * ("free(): invalid pointer") once a subinterpreter has imported hashlib,
     * ssl or asyncio. Every subinterpreter was ended on its own thread and the
     * app never ran in this one, so there is little left to finalize: flush
     * what Python buffered and leave the rest to the process exit. */
    if (atomic_load(&host->subinterpreters_made)) {
        PyObject *out = PySys_GetObject("stdout"), *err = PySys_GetObject("stderr");
        PyObject *r1 =
            out != NULL && out != Py_None ? PyObject_CallMethod(out, "flush", NULL) : NULL;
        PyObject *r2 =
            err != NULL && err != Py_None ? PyObject_CallMethod(err, "flush", NULL) : NULL;
        Py_XDECREF(r1);
        Py_XDECREF(r2);
        PyErr_Clear();
        fflush(NULL);
        RM_DEBUG("Python 3.12 with subinterpreters: skipping Py_FinalizeEx (docs/modes.md)");
        host->initialized = false;
        return;
    }
#endif
    if (Py_FinalizeEx() < 0)
        RM_WARN("Python finalization failed (could not flush sys.stdout or sys.stderr?)");
    host->initialized = false;
}
