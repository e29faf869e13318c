"""The WSGI app of tests/integration/test_wsgi.py, checked by wsgiref.validate.

The app is wrapped in wsgiref.validate.validator, which asserts PEP 3333 on
both sides (the environ, wsgi.input and wsgi.errors the server hands in, the
way it calls the iterable and close()), and every warning is an error: a
validator warning makes the request fail with 500.

Routes (GET unless noted):
    .../environ[/...]    JSON of the environ: str values as they are, others as repr
    /echo?mode=M   POST  the body read through wsgi.input with M: read (read(n) loop),
                         readline, readlines, iter, readinto, all (one read(n) of
                         CONTENT_LENGTH); x-body-length / x-pieces headers
    /past-end      POST  read(len + 10), then read(5) and readline(): JSON of the lengths
    /stream?n=&size=     a generator of n pieces of size bytes each (no Content-Length)
    /list?n=&size=       a list of n pieces of size bytes each
    /write?n=&size=      write() n pieces, then return []
    /length?declared=&actual=   Content-Length: declared, a generator producing actual bytes
    /raise-before        raises before start_response
    /raise-after-start   start_response, then raises
    /raise-in-iter?after=N   a generator that yields N pieces, then raises
    /exc-info            start_response 200, then an error page through exc_info (500)
    /exc-info-late       yields a piece, then start_response with exc_info: re-raised
    /forever?mark=PATH   yields a piece every 10 ms forever; close() writes PATH
    /closed?mark=PATH    a two-piece iterable whose close() writes PATH
    /file?path=&bs=      wsgi.file_wrapper(open(path, "rb"), bs)
    /status?code=C       status C with an empty body (no Content-Type for 204/304)
    /head-gen            a generator; for HEAD only its headers go out
"""

import json
import sys
import time
import warnings
from urllib.parse import parse_qs
from wsgiref.validate import validator

warnings.simplefilter("error")


def _query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _int(q, name, default):
    return int(q.get(name, default))


def _text(start_response, status, body, extra=()):
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body)))] + list(extra))
    return [body]


def _json(start_response, obj):
    data = json.dumps(obj).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


class Forever:
    """Pieces every 10 ms until closed; close() leaves a mark for the test."""

    def __init__(self, mark):
        self.mark = mark
        self.n = 0

    def __iter__(self):
        return self

    def __next__(self):
        time.sleep(0.01)
        self.n += 1
        return b"x" * 1024

    def close(self):
        with open(self.mark, "w") as f:
            f.write(f"closed after {self.n} pieces\n")


class Closed:
    def __init__(self, mark):
        self.mark = mark
        self.items = iter([b"first,", b"second"])

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.items)

    def close(self):
        with open(self.mark, "w") as f:
            f.write("closed\n")


def _echo(environ, start_response, mode):
    inp = environ["wsgi.input"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    pieces = []
    if mode == "read":
        while True:
            piece = inp.read(1000)
            if not piece:
                break
            pieces.append(piece)
    elif mode == "all":
        pieces.append(inp.read(length))
    elif mode == "readline":
        while True:
            line = inp.readline()
            if not line:
                break
            pieces.append(line)
    elif mode == "readline-limit":
        while True:
            line = inp.readline(7)
            if not line:
                break
            pieces.append(line)
    elif mode == "readlines":
        pieces.extend(inp.readlines())
    elif mode == "iter":
        pieces.extend(inp)
    elif mode == "readinto":
        # The validator's InputWrapper has no readinto: reach the server's object.
        raw = inp.input
        buf = bytearray(777)
        while True:
            n = raw.readinto(buf)
            if not n:
                break
            pieces.append(bytes(buf[:n]))
    else:
        return _text(start_response, "400 Bad Request", b"unknown mode\n")
    body = b"".join(pieces)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body))),
                              ("X-Body-Length", str(len(body))),
                              ("X-Pieces", str(len(pieces)))])
    return [body]


def _raw(environ, start_response):
    path = environ["PATH_INFO"]
    q = _query(environ)

    if "environ" in path.split("/"):
        env = {}
        for key, value in environ.items():
            env[key] = value if isinstance(value, str) else repr(value)
        env["wsgi.version"] = list(environ["wsgi.version"])
        env["wsgi.multithread"] = environ["wsgi.multithread"]
        env["wsgi.multiprocess"] = environ["wsgi.multiprocess"]
        env["wsgi.run_once"] = environ["wsgi.run_once"]
        env["errors_is_stderr"] = environ["wsgi.errors"].errors is sys.stderr
        return _json(start_response, env)

    if path == "/echo":
        return _echo(environ, start_response, q.get("mode", "read"))

    if path == "/past-end":
        inp = environ["wsgi.input"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        first = inp.read(length + 10)
        return _json(start_response, {"first": len(first), "again": len(inp.read(5)),
                                      "line": len(inp.readline()),
                                      "content_length": environ.get("CONTENT_LENGTH")})

    if path == "/stream":
        n, size = _int(q, "n", 3), _int(q, "size", 10)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def gen():
            for i in range(n):
                yield bytes([65 + i % 26]) * size
        return gen()

    if path == "/list":
        n, size = _int(q, "n", 3), _int(q, "size", 10)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [bytes([65 + i % 26]) * size for i in range(n)]

    if path == "/write":
        n, size = _int(q, "n", 3), _int(q, "size", 10)
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        for i in range(n):
            write(bytes([97 + i % 26]) * size)
        return []

    if path == "/length":
        declared, actual = _int(q, "declared", 10), _int(q, "actual", 10)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(declared))])

        def gen():
            left = actual
            while left > 0:
                take = min(left, 7)
                yield b"L" * take
                left -= take
        return gen()

    if path == "/raise-before":
        raise RuntimeError("deliberate: before start_response")

    if path == "/raise-after-start":
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise RuntimeError("deliberate: after start_response")

    if path == "/raise-in-iter":
        after = _int(q, "after", 1)
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            for i in range(after):
                yield b"piece %d\n" % i
            raise RuntimeError("deliberate: inside the iterable")
        return gen()

    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("deliberate: replaced response")
        except ValueError:
            body = b"custom error page\n"
            start_response("500 Internal Server Error",
                           [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                            ("X-Replaced", "yes")], sys.exc_info())
            return [body]

    if path == "/exc-info-late":
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"first piece\n"
            try:
                raise ValueError("deliberate: too late to replace")
            except ValueError:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                               sys.exc_info())
            yield b"never sent\n"
        return gen()

    if path == "/forever":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Forever(q["mark"])

    if path == "/closed":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closed(q["mark"])

    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(q["path"], "rb"), _int(q, "bs", 8192))

    if path == "/status":
        code = _int(q, "code", 204)
        reason = {204: "No Content", 304: "Not Modified", 404: "Not Found"}.get(code, "Other")
        headers = [] if code in (204, 304) else [("Content-Type", "text/plain")]
        start_response(f"{code} {reason}", headers)
        return []

    if path == "/head-gen":
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain"), ("X-Gen", "yes")])
            yield b"generated body\n"
        return gen()

    return _text(start_response, "404 Not Found", b"no such route\n")


_checked = validator(_raw)


def app(environ, start_response):
    # Two positional arguments, so --interface auto sees a WSGI app (the
    # validator's own wrapper takes *args).
    return _checked(environ, start_response)
