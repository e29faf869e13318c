"""Apps whose requests raise with long tracebacks, for tests/integration/test_logs.py.

One module, three interfaces: `native` (app(request)), `wsgi` and `asgi`.
GET /raise/N raises RuntimeError("deliberate failure N") from DEPTH frames
deep, each frame a function of its own (f0 .. f{DEPTH-1}, so Python prints
every one instead of folding them into "[Previous line repeated ...]"): a
traceback of several KiB, longer than a pipe's atomic write. Under asgi,
/raise-after/N raises after the response began and /raise-late/N after it
was complete. Under native, /body-and-close/N answers a body whose iteration
raises (dive) and whose close() raises ValueError too. Any other path
answers "ok".
"""

DEPTH = 100

# f{i} calls f{i+1}; the last one raises. Compiled from text so that each
# frame is a distinct function on a distinct line.
_src = "".join(f"def f{i}(tag):\n    return f{i + 1}(tag)\n" for i in range(DEPTH - 1))
_src += f"def f{DEPTH - 1}(tag):\n    raise RuntimeError('deliberate failure ' + tag)\n"
_frames = {}
exec(compile(_src, "<log_raisers frames>", "exec"), _frames)


def dive(tag):
    return _frames["f0"](tag)


def _text(value):
    if isinstance(value, str):
        return value
    return bytes(value).decode("latin-1")


def _tag(path, prefix):
    return path[len(prefix):] if path.startswith(prefix) else None


class FailingBody:
    def __init__(self, tag):
        self.tag = tag

    def __iter__(self):
        dive(self.tag)
        yield b"never"

    def close(self):
        raise ValueError("close failed " + self.tag)


def native(request):
    path = _text(request.path)
    tag = _tag(path, "/raise/")
    if tag is not None:
        dive(tag)
    tag = _tag(path, "/body-and-close/")
    if tag is not None:
        return FailingBody(tag)
    return "ok\n"


def wsgi(environ, start_response):
    tag = _tag(environ["PATH_INFO"], "/raise/")
    if tag is not None:
        dive(tag)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    path = scope["path"]
    if (tag := _tag(path, "/raise/")) is not None:
        dive(tag)
    start = {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"text/plain")]}
    if (tag := _tag(path, "/raise-after/")) is not None:
        await send(start)
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        dive(tag)
    await send(start)
    await send({"type": "http.response.body", "body": b"ok\n"})
    if (tag := _tag(path, "/raise-late/")) is not None:
        dive(tag)
