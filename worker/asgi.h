/*
 * asgi.h - ASGI 3.0 apps: async app(scope, receive, send), many requests in
 * flight per serving thread.
 *
 * Each serving thread of an ASGI app runs an asyncio event loop (uvloop when
 * asked for or installed) driven by python/ringmaster/_asgi.py. What happens
 * per request is C (asgi.c): the lane is drained without blocking into
 * Request objects whose scope is built from the request meta, whose
 * receive_nowait() hands out the body in pieces straight from the region,
 * and whose send_nowait() writes http.response.* messages into chunks
 * (stream.h). The Python side only awaits: it runs each request as a task and
 * waits where the C side says it must (the send window is full, the body is
 * read and the client has not gone).
 *
 * The lane's futex cannot be watched by an event loop, so a small C thread per
 * serving thread (the waiter) sleeps on it without Python, pops one request
 * when one comes, parks it in a one-slot handoff and writes an eventfd the
 * loop watches (loop.add_reader). The loop then takes the parked request and
 * drains the lane itself without blocking, up to --max-concurrency requests
 * in flight. docs/asgi.md says why this design and what it costs.
 */
#ifndef RINGMASTER_WORKER_ASGI_H
#define RINGMASTER_WORKER_ASGI_H

#include "worker.h"

/* Whether `app` looks like an ASGI app for --interface auto: a coroutine
 * function (or an object whose __call__ is one) taking three positional
 * arguments. The GIL is held; never raises. */
bool rm_asgi_detect(PyObject *app);

/* The app of `st` is ASGI: build this interpreter's ASGI state into st->asgi
 * (types, interned keys, the driver module). The GIL is held. Returns 0, or
 * -ENOMEM / -ENOTSUP (asyncio does not load in this interpreter) with a line
 * in `why`. */
int rm_asgi_load(rm_pymod_state_t *st, char *why, size_t why_len);

/* On serving thread `t` (t->st->asgi set, its GIL held): make the thread's
 * event loop and waiter, and run the lifespan startup. Returns 0 (t->asgi is
 * set), or -ENOENT with the app's startup failure in `why` (t->asgi is then
 * cleared and the waiter stopped), or -ENOMEM. */
int rm_asgi_thread_start(rm_serve_thread_t *t, char *why, size_t why_len);

/* Serve until the worker stops, then let the requests in flight finish. The
 * GIL is held (the loop releases it while it waits). */
void rm_asgi_thread_serve(rm_serve_thread_t *t);

/* Run the lifespan shutdown, close the loop, stop the waiter and drop
 * t->asgi. Safe when rm_asgi_thread_start failed. The GIL is held. */
void rm_asgi_thread_end(rm_serve_thread_t *t);

#endif
