"""The event loop of one ringmaster serving thread for an ASGI 3.0 app.

ringmaster-worker (worker/asgi.c) makes one ``Server`` per serving thread, on
that thread, with a ``Lane`` it wrote in C. What is per request is C too: the
scope, ``receive_nowait`` (body pieces straight from the region) and
``send_nowait`` (messages into response chunks). This module only does what
must await:

- it watches the lane's loop bell (``loop.add_reader``), an eventfd the
  supervisor writes once the loop has found the lane empty, and drains the
  lane without blocking into one task per request, up to ``max_concurrency``
  in flight; a task that ends takes the next request itself, so a busy loop
  is not woken at all;
- ``receive()`` waits, once the body is read, until the client goes or the
  response is complete (then ``http.disconnect``);
- ``send()`` waits while the send window is full (the client reads slowly);
- the lifespan protocol runs once per thread, on its loop.

The supervisor does not signal a disconnect or a drained window: both are
flags in the region, polled every POLL_S while somebody waits for them.
"""

import asyncio
import traceback

POLL_S = 0.02  # how often a receive() waiting for the client to go looks at its flag
# A send() waiting for window room looks sooner: from WINDOW_POLL_MIN_S, doubling
# while nothing drained, to POLL_S. A fast client drains 16 chunks (256 KiB) in
# well under a millisecond, so a fixed 20 ms would cap a stream at ~13 MB/s.
WINDOW_POLL_MIN_S = 0.0002
STOP_POLL_S = 0.1  # how often the loop looks for a stop requested elsewhere
LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG = 0, 1, 2, 3


def _make_loop(name, lane):
    if name in ("uvloop", "auto"):
        try:
            import uvloop
        except ImportError as e:
            if name == "uvloop":
                raise RuntimeError(f"--loop uvloop: uvloop does not import ({e})") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Server:
    """One serving thread's loop, requests in flight and lifespan."""

    def __init__(self, lane, app, loop_name, lifespan, max_concurrency):
        self.lane = lane
        self.app = app
        self.lifespan = lifespan
        self.max_concurrency = max_concurrency
        self.loop = _make_loop(loop_name, lane)
        self.loop_name = type(self.loop).__module__.split(".")[0]
        self.state = {}
        self.running = {}  # request -> its task: strong references (the loop keeps weak ones)
        self.waiting_gone = {}  # request -> futures of receive() waiting for the client to go
        self.waiting_window = {}  # request -> futures of send() waiting for window room
        self.poller = None
        self.window_poller = None
        self.capped = False  # at max_concurrency: not watching the bell
        self.window_poll_s = WINDOW_POLL_MIN_S
        self.stopped = None
        self._lifespan_task = None
        self._lifespan_in = None
        self._lifespan_out = None
        lane.set(_request_class(lane), self, None)
        # Once per worker: the first thread speaks for all.
        lane.log(LOG_INFO if lane.index() == 0 else LOG_DEBUG,
                 f"ASGI: {self.loop_name} event loop per thread, lifespan {lifespan}, "
                 f"at most {max_concurrency} requests in flight per thread")

    # ---- lifespan ------------------------------------------------------------------

    async def _lifespan_main(self):
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._lifespan_in.get, self._lifespan_out.put)
        except BaseException as e:  # noqa: BLE001 - reported to whoever waits
            self._lifespan_out.put_nowait(e)
        else:
            self._lifespan_out.put_nowait(None)

    async def _lifespan_step(self, event):
        await self._lifespan_in.put({"type": event})
        return await self._lifespan_out.get()

    def startup(self):
        """Run lifespan.startup; None when the app may serve, else why not."""
        if self.lifespan == "off":
            return None
        self._lifespan_in = asyncio.Queue()
        self._lifespan_out = asyncio.Queue()

        async def go():
            self._lifespan_task = asyncio.ensure_future(self._lifespan_main())
            return await self._lifespan_step("lifespan.startup")

        asyncio.set_event_loop(self.loop)
        reply = self.loop.run_until_complete(go())
        if isinstance(reply, dict) and reply.get("type") == "lifespan.startup.complete":
            self.lane.set(_request_class(self.lane), self, self.state)
            return None
        if isinstance(reply, dict) and reply.get("type") == "lifespan.startup.failed":
            return reply.get("message") or "the app sent lifespan.startup.failed"
        # The app returned or raised without answering: no lifespan support.
        self._lifespan_task = None
        what = (
            "returned" if reply is None else f"raised {type(reply).__name__}: {reply}"
            if not isinstance(reply, dict) else f"sent {reply.get('type')!r}"
        )
        if self.lifespan == "on":
            if isinstance(reply, BaseException):
                # The supervisor reports the failure; the traceback, in one record, is here.
                self.lane.log(LOG_ERROR, f"lifespan.startup: the app {what}", _format(reply))
            return f"the app {what} instead of completing lifespan.startup (--lifespan on)"
        self.lane.log(LOG_DEBUG, f"lifespan: the app {what}; serving without lifespan")
        return None

    def shutdown(self):
        """Run lifespan.shutdown (when startup completed), then close the loop."""
        try:
            if self._lifespan_task is not None and not self._lifespan_task.done():
                reply = self.loop.run_until_complete(
                    asyncio.wait_for(self._lifespan_step("lifespan.shutdown"), 30)
                )
                if isinstance(reply, dict) and reply.get("type") == "lifespan.shutdown.failed":
                    self.lane.log(LOG_ERROR, f"lifespan shutdown failed: {reply.get('message')}")
                elif isinstance(reply, BaseException):
                    self.lane.log(LOG_ERROR, f"lifespan shutdown raised {reply!r}")
        except Exception as e:  # noqa: BLE001
            self.lane.log(LOG_ERROR, f"lifespan shutdown: {e!r}")
        finally:
            self.close()

    def close(self):
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
        asyncio.set_event_loop(None)

    # ---- serving ---------------------------------------------------------------------

    def serve(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self):
        loop = self.loop
        self.stopped = loop.create_future()
        fd = self.lane.fileno()
        stop_watch = None
        try:
            try:
                # Responses finished in one pass of the loop wake the supervisor once.
                self.lane.defer_rings(loop.call_soon)
                loop.add_reader(fd, self._on_ready)
                stop_watch = loop.call_later(STOP_POLL_S, self._watch_stop)
                self._pump()
                await self.stopped
            finally:
                loop.remove_reader(fd)
                if stop_watch is not None:
                    stop_watch.cancel()
            # Requests still queued on a stopping lane are served (as WSGI
            # threads do): tasks ending take them, so wait until none is left.
            while self.running:
                await asyncio.wait(set(self.running.values()))
        finally:
            self.lane.defer_rings(None)  # rings for what is left

    def _watch_stop(self):
        if self.lane.stopping():
            self._stop()
        else:
            self.loop.call_later(STOP_POLL_S, self._watch_stop)

    def _stop(self):
        if self.stopped is not None and not self.stopped.done():
            self.stopped.set_result(None)

    def _on_ready(self):
        if self.lane.stopping():
            # A stop rings the bell too; left readable, so that every
            # thread's loop sees it (this one stops watching it).
            self._stop()
        else:
            self.lane.clear()
        self._pump()

    def _pump(self):
        lane, running, create_task = self.lane, self.running, self.loop.create_task
        while len(running) < self.max_concurrency:
            req = lane.pop()  # None: the lane is empty and the bell armed
            if req is None:
                if self.capped:
                    self.capped = False
                    if not self.stopped.done():
                        self.loop.add_reader(lane.fileno(), self._on_ready)
                return
            running[req] = create_task(self._run(req))
        if not self.capped:
            # Full: stop watching the bell until a task ends, and ring it, so
            # that another thread's loop takes what waits (a loop alone on the
            # lane finds it readable when it watches again: one spare wake).
            self.capped = True
            self.loop.remove_reader(lane.fileno())
            lane.ring()

    async def _run(self, req):
        try:
            # Reading req.scope tells the lane this task runs (worker/asgi.c).
            await self.app(req.scope, req.receive, req.send)
        except BaseException as e:  # noqa: BLE001 - the server answers for the app
            # The traceback goes into the one record that names the request
            # (worker/asgi.c request_close), never printed apart: two workers'
            # lines would interleave. What the app raised because the client
            # left (a reset, a cancel) needs none.
            quiet = isinstance(e, (OSError, asyncio.CancelledError)) and req.gone()
            req.close(e, None if quiet else _format(e))
        else:
            req.close(None)
        finally:
            if self.waiting_gone or self.waiting_window:
                self._settle(req)
            del self.running[req]
            self._pump()

    # ---- waiting on the region's flags ----------------------------------------------

    def wait_gone(self, req):
        """A future done once req's client has gone or its response is complete."""
        fut = self._wait(self.waiting_gone, req)
        if self.poller is None:
            self.poller = self.loop.call_later(POLL_S, self._poll)
        return fut

    def wait_window(self, req):
        """A future done once req's send window has room (or its client went)."""
        fut = self._wait(self.waiting_window, req)
        if self.window_poller is None:
            self.window_poll_s = WINDOW_POLL_MIN_S
            self.window_poller = self.loop.call_later(self.window_poll_s, self._poll_window)
        return fut

    def _wait(self, table, req):
        fut = self.loop.create_future()
        table.setdefault(req, []).append(fut)
        return fut

    def _settle(self, req):
        for table in (self.waiting_gone, self.waiting_window):
            for fut in table.pop(req, ()):
                if not fut.done():
                    fut.set_result(None)

    def _poll(self):
        self.poller = None
        for req in [r for r in self.waiting_gone if r.gone()]:
            self._settle(req)
        if self.waiting_gone:
            self.poller = self.loop.call_later(POLL_S, self._poll)

    def _poll_window(self):
        self.window_poller = None
        ready = [r for r in self.waiting_window if r.gone() or not r.window_full()]
        for req in ready:
            self._settle(req)
        if self.waiting_window:
            # Back off while clients read slowly; poll soon again while they drain.
            self.window_poll_s = (WINDOW_POLL_MIN_S if ready
                                  else min(self.window_poll_s * 2, POLL_S))
            self.window_poller = self.loop.call_later(self.window_poll_s, self._poll_window)


def _format(exc):
    """exc's traceback as one string, for one log record."""
    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:  # noqa: BLE001 - a traceback that cannot be formatted is left out
        return None


_REQUEST_CLASS = None


def _request_class(lane):
    """The Request class whose receive and send the app gets: the C type of
    this interpreter with the two awaitables added (made once per
    interpreter; this module is imported once in each)."""
    global _REQUEST_CLASS
    if _REQUEST_CLASS is None:
        _REQUEST_CLASS = _define_request(lane.request_type())
    return _REQUEST_CLASS


def _define_request(base):
    class Request(base):
        __slots__ = ()

        async def receive(self):
            msg = self.receive_nowait()
            while msg is None:
                # The body is read: wait until the client goes or the response is complete.
                await self.ctx.wait_gone(self)
                msg = self.receive_nowait()
            return msg

        async def send(self, message):
            while self.send_nowait(message):
                await self.ctx.wait_window(self)
            ctx = self.ctx
            if ctx.waiting_gone and self.gone():
                # The response is complete: a receive() waiting for the end returns now.
                ctx._settle(self)

    return Request
