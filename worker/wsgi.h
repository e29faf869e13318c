/*
 * wsgi.h - PEP 3333 apps: app(environ, start_response) -> iterable of bytes.
 *
 * wsgi.c builds the environ in C from the request meta (constant keys and
 * values interned once per interpreter), gives the app a wsgi.input that reads
 * the body straight from the region's chunks, and turns start_response, write()
 * and the returned iterable into response chunks: one completion for a body of
 * known length that is ready at once, a completion per produced piece for a
 * streamed one (Transfer-Encoding: chunked on HTTP/1.1, close-delimited on
 * HTTP/1.0), bounded by the supervisor's send window. docs/wsgi.md is the
 * operator's view.
 */
#ifndef RINGMASTER_WORKER_WSGI_H
#define RINGMASTER_WORKER_WSGI_H

#include "worker.h"

/* The app was just imported into `st` (st->app set): pick its interface from
 * st->worker->conf->iface.interface, for auto by inspecting the app's
 * signature, and log the choice. For WSGI, build this interpreter's WSGI state
 * (types, interned keys, the environ template) into st->wsgi; for native,
 * leave st->wsgi NULL. `spec` names the app in the log line. The caller holds
 * the GIL. Returns 0, or -ENOMEM with a line in `why` (the exception cleared). */
int rm_wsgi_load(rm_pymod_state_t *st, const char *spec, char *why, size_t why_len);

/* Serve one request with the WSGI app of `st` (st->wsgi set). Completions
 * that are not the last are pushed as the body is produced; on return the
 * last chunk, if any, is in `out` (out->chunk may be RM_CHUNK_NONE) for the
 * caller to push with RM_DONE_LAST | out->flags. Before returning, the
 * iterable's close() has run and nothing the app can still reach points into
 * the request's chunks (a wsgi.input it kept holds a copy of what it had not
 * read). An app that fails before anything was pushed gets a 500; after, the
 * connection is closed (RM_DONE_CLOSE in out->flags). The GIL is held.
 * Returns 0, -ECONNRESET when the client left mid-response, or -ECANCELED
 * when the worker is stopping (the caller abandons `out` either way). */
int rm_wsgi_run(rm_pymod_state_t *st, const rm_req_view_t *view, rm_out_t *out);

/* Go on with a response rm_wsgi_run parked (it returned RM_OUT_PARKED with
 * out->park_ok: the iterable's next piece waits for the client's window).
 * Returns RM_OUT_PARKED while still waiting, else as rm_wsgi_run, once the
 * iterable's close() has run and the state is freed. With out->err set it
 * only cleans up. The GIL is held. */
int rm_wsgi_resume(rm_out_t *out, const rm_req_view_t *view);

/* The environ rm_wsgi_run would hand the app for `view` (st->wsgi set), its
 * wsgi.input already detached from the view (a copy of the body), for
 * benchmarks and tests of the environ alone. New reference, or NULL with an
 * exception set. The caller holds the GIL. */
PyObject *rm_wsgi_environ(rm_pymod_state_t *st, const rm_req_view_t *view);

#endif
