/*
 * attach.c - _ringmaster._serve_attached: an ordinary Python process serves a
 * running supervisor's lane through the same core as ringmaster-worker
 * (docs/attach.md). `python -m ringmaster.worker --attach PATH APP` calls it.
 *
 * It asks the control socket for a lane ({"cmd": "attach"}); the answer
 * carries the region's memfd, the doorbell eventfd and our end of a control
 * socketpair (SCM_RIGHTS). From there it is main.c's sequence in an
 * interpreter that is already running: hello, import the app, start the
 * serving and control threads, ready, wait for a stop. The mode is gil, or
 * free-threaded on a free-threaded build whose GIL is off; the app runs in
 * this interpreter, whose sys.path and venv are the caller's.
 */
#include "worker.h"

#include "ringmaster/attach_client.h"
#include "ringmaster/control.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int send_msg(const rm_worker_conf_t *conf, rm_ctl_msg_t *msg)
{
    int rc = rm_ctl_send(conf->control_fd, msg);
    if (rc < 0)
        RM_ERROR("cannot send %s to the supervisor: %s", rm_ctl_type_name(msg->type),
                 strerror(-rc));
    return rc;
}

/* Everything from the descriptors to the stop. The GIL is held on entry and
 * on return. Returns 0, or -errno with why. */
static int serve(rm_worker_t *w, const rm_worker_conf_t *conf, char *why, size_t why_len)
{
    int rc = rm_region_attach(&w->region, conf->region_fd, conf->lane);
    if (rc < 0) {
        close(conf->region_fd);
        snprintf(why, why_len, "cannot map the shared region: %s",
                 rc == -EPROTO ? "wrong magic or layout version (a supervisor from another "
                                 "ringmaster build?)"
                               : strerror(-rc));
        return rc;
    }
    if (conf->lane >= w->region.conf.lane_count) {
        snprintf(why, why_len, "lane %u is outside the region (%u lanes)", conf->lane,
                 w->region.conf.lane_count);
        return -EINVAL;
    }
    rm_region_lane(&w->region, conf->lane, &w->lane);
    /* A stop from this side (rm_worker_request_stop) rings an event loop too. */
    rm_lane_set_loop_fd(&w->lane, conf->loop_bell_fd);
    w->owner = RM_OWNER_LANE(conf->lane);

    rm_ctl_msg_t hello = {.type = RM_CTL_HELLO,
                          .version = RM_CTL_VERSION,
                          .pid = (int32_t)getpid(),
                          .lane = conf->lane,
                          .gil_enabled = w->mode != RM_WORKER_MODE_FREE_THREADED};
    rm_host_python_version(hello.python, sizeof(hello.python));
    snprintf(hello.mode, sizeof(hello.mode), "%s", rm_worker_mode_name(w->mode));
    if (send_msg(conf, &hello) < 0) {
        snprintf(why, why_len, "the supervisor closed the control channel");
        return -ECONNRESET;
    }
    rc = rm_host_adopt(&w->host, w, why, why_len);
    if (rc == 0)
        rc = rm_host_load_app(w->host.st, conf->app_spec, why, why_len);
    if (rc == 0) {
        w->gil_enabled = rm_host_gil_enabled();
        rc = rm_worker_start(w, why, why_len);
    }
    if (rc < 0) {
        rm_ctl_msg_t fatal = {.type = RM_CTL_FATAL};
        snprintf(fatal.text, sizeof(fatal.text), "%s", why);
        send_msg(conf, &fatal);
        rm_host_disown(&w->host);
        return rc;
    }
    rm_ctl_msg_t ready = {.type = RM_CTL_READY, .gil_enabled = w->gil_enabled};
    snprintf(ready.mode, sizeof(ready.mode), "%s", rm_worker_mode_name(w->mode));
    if (send_msg(conf, &ready) < 0)
        rm_worker_request_stop(w);
    else
        RM_INFO("attached: serving %s on lane %u with %u thread%s (python %s, mode %s)",
                conf->app_spec, conf->lane, conf->threads, conf->threads == 1 ? "" : "s",
                hello.python, rm_worker_mode_name(w->mode));
    rm_worker_wait(w); /* without the GIL: rm_worker_start released it */
    rm_host_disown(&w->host);
    return 0;
}

static PyObject *serve_attached(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {
        "control", "app", "threads", "log_level", "interface", "root_path", "forwarded_allow_ips",
        NULL};
    const char *control, *app, *level = "info", *iface[3] = {NULL, NULL, NULL};
    unsigned threads = 1;
    rm_pymod_state_t *st = PyModule_GetState(module);
    char why[1024], role[48];

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ss|Izzzz", kwlist, &control, &app, &threads,
                                     &level, &iface[0], &iface[1], &iface[2]))
        return NULL;
    if (st == NULL || st->worker != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this interpreter already serves as a worker");
        return NULL;
    }
    if (threads < 1 || threads > RM_WORKER_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "threads: expected 1..%d, got %u", RM_WORKER_MAX_THREADS,
                     threads);
        return NULL;
    }
    rm_worker_conf_t conf = {.app_spec = app, .threads = threads, .log_format = RM_LOG_PLAIN};
    if (rm_log_parse_level(level, &conf.log_level) < 0) {
        PyErr_Format(PyExc_ValueError, "log_level: expected error|warn|info|debug, got '%s'",
                     level);
        return NULL;
    }
    rm_app_conf_init(&conf.iface);
    for (int i = 0; i < 3; i++) {
        if (iface[i] != NULL &&
            rm_app_conf_set(&conf.iface, (enum rm_app_opt)i, iface[i], why, sizeof(why)) < 0) {
            PyErr_SetString(PyExc_ValueError, why);
            return NULL;
        }
    }
    /* gil mode, or free-threaded where this interpreter really runs without
     * one; subinterpreters need an interpreter of our own making. */
    conf.mode = RM_FREE_THREADED_BUILD && !rm_host_gil_enabled() ? RM_WORKER_MODE_FREE_THREADED
                                                                 : RM_WORKER_MODE_GIL;
    rm_log_conf.level = conf.log_level;
    rm_log_conf.format = conf.log_format;

    rm_ctlp_request_t req = {.version = RM_CTLP_VERSION,
                             .cmd = RM_CTLP_ATTACH,
                             .pid = (int32_t)getpid(),
                             .threads = threads};
    rm_host_python_version(req.python, sizeof(req.python));
    snprintf(req.mode, sizeof(req.mode), "%s", rm_worker_mode_name(conf.mode));
    snprintf(req.app, sizeof(req.app), "%s", app);
    int fds[RM_CTLP_ATTACH_FDS];
    PyThreadState *ts = PyEval_SaveThread(); /* the supervisor may take a moment */
    int rc = rm_attach_request(control, &req, &conf.lane, fds, why, sizeof(why));
    PyEval_RestoreThread(ts);
    if (rc < 0) {
        PyErr_SetString(rc == -EPERM ? PyExc_PermissionError : PyExc_ConnectionError, why);
        return NULL;
    }
    conf.region_fd = fds[0];
    conf.doorbell_fd = fds[1];
    conf.control_fd = fds[2];
    conf.loop_bell_fd = fds[3];
    snprintf(role, sizeof(role), "worker %u (attached)", conf.lane);
    rm_log_conf.role = role;

    /* rm_worker_init takes SIGTERM and SIGINT (and ignores SIGPIPE) for the
     * serving; Python's own handlers come back afterwards. */
    struct sigaction old_term, old_int, old_pipe;
    sigaction(SIGTERM, NULL, &old_term);
    sigaction(SIGINT, NULL, &old_int);
    sigaction(SIGPIPE, NULL, &old_pipe);
    rm_worker_t *w = PyMem_RawCalloc(1, sizeof(*w));
    rc = w == NULL ? -ENOMEM : rm_worker_init(w, &conf);
    if (rc < 0) {
        snprintf(why, sizeof(why), "cannot set up the worker: %s", strerror(-rc));
        close(fds[0]);
    } else {
        w->mode = conf.mode;
        rc = serve(w, &conf, why, sizeof(why));
        rm_region_detach(&w->region);
        rm_worker_deinit(w);
    }
    PyMem_RawFree(w);
    close(conf.doorbell_fd);
    close(conf.control_fd);
    close(conf.loop_bell_fd);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    rm_log_conf.role = "ringmaster";
    st->worker = NULL; /* it may attach again */
    if (rc < 0) {
        PyErr_SetString(PyExc_RuntimeError, why);
        return NULL;
    }
    Py_RETURN_NONE;
}

PyMethodDef rm_pymod_methods[] = {
    {"_serve_attached", (PyCFunction)(void (*)(void))serve_attached, METH_VARARGS | METH_KEYWORDS,
     "_serve_attached(control, app, threads=1, log_level='info', interface=None, "
     "root_path=None, forwarded_allow_ips=None)\n--\n\n"
     "Attach to the supervisor whose control socket is `control` and serve `app` "
     "(module:attr) on the lane it grants until it says stop."},
    {NULL, NULL, 0, NULL},
};

#ifdef RM_EXTENSION
/* Built as an extension module (python/setup.py), not embedded. */
PyMODINIT_FUNC PyInit__ringmaster(void)
{
    return rm_pymod_init();
}
#endif
