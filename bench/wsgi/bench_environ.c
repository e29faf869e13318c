/*
 * bench_environ.c - nanoseconds to build one PEP 3333 environ (worker/wsgi.c).
 *
 *   build/bench/wsgi/bench_wsgi_environ [iterations]
 *
 * Each request below is laid out in memory the way the supervisor lays it out
 * in the region (head bytes, an rm_req_meta_t, header references, a body
 * slice), and rm_wsgi_environ builds its environ from that, as the worker does
 * before calling the app, again and again. Reported: nanoseconds per environ
 * (build and free), the best and the median of 7 runs, on the interpreter the
 * worker embeds. The environ's wsgi.input is detached here (its body copied),
 * which a served request skips: the cost of that copy is in the POST figure.
 */
#include "wsgi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNS 7
#define CHUNK 16384

typedef struct {
    const char *name;
    const char *head; /* request line and header lines, CRLF-separated, no blank line */
    const char *body;
} scenario_t;

static const scenario_t scenarios[] = {
    {"GET, 3 headers (curl)",
     "GET /api/items/42?page=2&sort=name HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
     "User-Agent: curl/7.88.1\r\nAccept: */*",
     ""},
    {"GET, 13 headers (a browser)",
     "GET /account/settings?tab=profile HTTP/1.1\r\nHost: www.example.com\r\n"
     "Connection: keep-alive\r\nCache-Control: max-age=0\r\n"
     "sec-ch-ua: \"Chromium\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n"
     "sec-ch-ua-mobile: ?0\r\nsec-ch-ua-platform: \"Linux\"\r\nUpgrade-Insecure-Requests: 1\r\n"
     "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36\r\n"
     "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
     "Sec-Fetch-Site: same-origin\r\nAccept-Encoding: gzip, deflate, br\r\n"
     "Accept-Language: en-US,en;q=0.9\r\n"
     "Cookie: sessionid=8f2a0c1b9d7e4f6a; csrftoken=Qm9vbGVhbiBmbGFncyBhcmUgZnVu",
     ""},
    {"POST form, 6 headers, percent-encoded path",
     "POST /caf%C3%A9/submit HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test\r\n"
     "Accept: */*\r\nContent-Type: application/x-www-form-urlencoded\r\n"
     "Content-Length: 27\r\nX-Forwarded-For: 203.0.113.9",
     "name=Zo%C3%AB&color=red&x=1"},
};

/* The request in memory: one "chunk" for the head, one for the meta, one for
 * the body, so offsets and slices mean what they mean in the region. */
typedef struct {
    unsigned char mem[3 * CHUNK];
    rm_chunk_pool_t pool;
    rm_req_view_t view;
} request_t;

static void lay_out(request_t *r, const scenario_t *s)
{
    unsigned char *head = r->mem, *meta_mem = r->mem + CHUNK, *body = r->mem + 2 * CHUNK;
    rm_req_meta_t *m = (rm_req_meta_t *)meta_mem;
    rm_wire_header_t *h = rm_wire_headers(m);
    size_t hlen = strlen(s->head), blen = strlen(s->body);
    const char *line = (const char *)head;

    memset(r, 0, sizeof(*r));
    memcpy(head, s->head, hlen);
    memcpy(body, s->body, blen);
    r->pool = (rm_chunk_pool_t){.chunks = r->mem, .count = 3, .chunk_size = CHUNK};

    const char *sp1 = strchr(line, ' '), *sp2 = strchr(sp1 + 1, ' ');
    const char *q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
    m->head_chunk = 0;
    m->flags = RM_REQ_KEEP_ALIVE;
    m->method_off = 0;
    m->method_len = (uint32_t)(sp1 - line);
    m->target_off = (uint32_t)(sp1 + 1 - line);
    m->target_len = (uint32_t)(sp2 - sp1 - 1);
    m->path_off = m->target_off;
    m->path_len = q != NULL ? (uint32_t)(q - sp1 - 1) : m->target_len;
    m->query_off = q != NULL ? (uint32_t)(q + 1 - line) : m->target_off + m->target_len;
    m->query_len = q != NULL ? (uint32_t)(sp2 - q - 1) : 0;
    m->http_major = 1;
    m->http_minor = 1;
    m->client_family = 4;
    memcpy(m->client_addr, (uint8_t[]){127, 0, 0, 1}, 4);
    m->client_port = 51234;
    m->server_family = 4;
    memcpy(m->server_addr, (uint8_t[]){127, 0, 0, 1}, 4);
    m->server_port = 8000;

    const char *p = strstr(line, "\r\n");
    while (p != NULL) {
        const char *name = p + 2, *colon = strchr(name, ':'), *end = strstr(name, "\r\n");
        const char *value = colon + 1;
        while (*value == ' ')
            value++;
        if (end == NULL)
            end = line + hlen;
        h[m->header_count++] = (rm_wire_header_t){
            .name_off = (uint32_t)(name - line),
            .value_off = (uint32_t)(value - line),
            .name_len = (uint16_t)(colon - name),
            .value_len = (uint32_t)(end - value),
        };
        p = strstr(name, "\r\n");
    }
    rm_slice_t *slices = rm_wire_body(m);
    if (blen > 0) {
        slices[0] = (rm_slice_t){.chunk = 2, .off = 0, .len = (uint32_t)blen};
        m->body_slice_count = 1;
        m->body_len = blen;
    }
    r->view = (rm_req_view_t){
        .req_id = 1,
        .meta = *m,
        .headers = h,
        .body = slices,
        .head = head,
        .pool = &r->pool,
    };
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? atol(argv[1]) : 200000;
    static request_t req;
    rm_worker_conf_t conf = {.threads = 1, .mode = RM_WORKER_MODE_GIL};
    rm_worker_t w = {.conf = &conf, .mode = RM_WORKER_MODE_GIL};
    char why[512];

    rm_app_conf_init(&conf.iface);
    conf.iface.interface = RM_INTERFACE_WSGI;
    rm_log_conf.level = RM_LOG_WARN;
    if (iterations < 1000)
        iterations = 1000;
    if (PyImport_AppendInittab("_ringmaster", rm_pymod_init) < 0)
        return 1;
    Py_InitializeEx(0);
    PyObject *mod = PyImport_ImportModule("_ringmaster");
    PyObject *globals = PyDict_New();
    PyObject *app = globals != NULL ? PyRun_String("lambda environ, start_response: []",
                                                   Py_eval_input, globals, globals)
                                    : NULL;
    if (mod == NULL || app == NULL) {
        PyErr_Print();
        return 1;
    }
    rm_pymod_state_t *st = PyModule_GetState(mod);
    st->worker = &w;
    st->app = app;
    if (rm_wsgi_load(st, "bench", why, sizeof(why)) < 0) {
        fprintf(stderr, "bench_wsgi_environ: %s\n", why);
        return 1;
    }

    printf("environ build + free, ns per request (%ld per run, %d runs), Python %s\n", iterations,
           RUNS, Py_GetVersion());
    for (size_t s = 0; s < sizeof(scenarios) / sizeof(scenarios[0]); s++) {
        double runs[RUNS];
        lay_out(&req, &scenarios[s]);
        PyObject *env = rm_wsgi_environ(st, &req.view);
        if (env == NULL) {
            PyErr_Print();
            return 1;
        }
        Py_ssize_t keys = PyDict_GET_SIZE(env);
        Py_DECREF(env);
        for (int r = 0; r < RUNS; r++) {
            double t0 = now_ns();
            for (long i = 0; i < iterations; i++) {
                env = rm_wsgi_environ(st, &req.view);
                if (env == NULL) {
                    PyErr_Print();
                    return 1;
                }
                Py_DECREF(env);
            }
            runs[r] = (now_ns() - t0) / (double)iterations;
        }
        qsort(runs, RUNS, sizeof(runs[0]), cmp_double);
        printf("  %-46s %2zd keys  best %6.0f  median %6.0f\n", scenarios[s].name, keys, runs[0],
               runs[RUNS / 2]);
    }
    st->app = NULL;
    Py_DECREF(app);
    Py_DECREF(globals);
    Py_DECREF(mod);
    Py_FinalizeEx();
    return 0;
}
