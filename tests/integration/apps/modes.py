"""The app behind test_modes.py: what each worker mode shares between threads.

Every route answers "PID INTERP THREAD VALUE GIL" (one line, space-separated):
    PID     os.getpid()
    INTERP  the id of the interpreter that ran the request (0 is the main one)
    THREAD  threading.get_ident() of the serving thread
    VALUE   depends on the route
    GIL     1 if this interpreter runs with a GIL, else 0

Routes:
    /locked?ms=N   sleeps N ms (default 0), then increments a module-level
                   counter under a module-level threading.Lock; VALUE is the
                   counter after the increment. In gil and free-threaded modes
                   one counter serves the whole worker; in subinterpreters mode
                   each thread's interpreter has its own module, hence its own.
    /count         VALUE is that counter, unchanged
    /sleep?ms=N    sleeps N ms (default 100); VALUE is 0
"""

import os
import sys
import threading
import time

try:
    import _interpreters  # 3.13
except ImportError:
    try:
        import _xxsubinterpreters as _interpreters  # 3.12
    except ImportError:
        _interpreters = None  # 3.11: only the main interpreter exists

_lock = threading.Lock()
_counter = 0


def _interp_id():
    if _interpreters is None:
        return 0
    current = _interpreters.get_current()
    return int(current[0] if isinstance(current, tuple) else current)


def _gil():
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return 1 if is_enabled is None or is_enabled() else 0


def _ms(query, default):
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "ms" and value:
            return int(value)
    return default


def app(request):
    global _counter
    path = request.path
    query = request.query_string or ""
    if path == "/locked":
        ms = _ms(query, 0)
        if ms:
            time.sleep(ms / 1000.0)
        with _lock:
            _counter += 1
            value = _counter
    elif path == "/count":
        with _lock:
            value = _counter
    elif path == "/sleep":
        time.sleep(_ms(query, 100) / 1000.0)
        value = 0
    else:
        return b"no such route\n"
    return f"{os.getpid()} {_interp_id()} {threading.get_ident()} {value} {_gil()}\n"
