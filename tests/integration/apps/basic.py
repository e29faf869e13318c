"""The app most integration tests run against (ringmaster's native interface).

Routes (all GET unless noted):
    /                 b"Hello, world!\\n"
    /echo      POST   the request body, byte for byte, with x-body-length
    /json             a dict (sent as JSON)
    /list             a list (sent as JSON)
    /str              a str (sent as UTF-8 text)
    /headers          custom response headers set through Response
    /missing-*        404 with x-custom header (anything unknown is 404 too)
    /raise            raises RuntimeError (the server must answer 500)
    /id?id=X          x-echo-id: X header and body "id=X" (cross-talk checks)
    /pid              the worker's pid
    /sleep?ms=N       sleeps N ms, then answers with the worker's pid
    /reqinfo...       JSON describing the request object as the app sees it
"""

import os
import time

from ringmaster import Response


def _text(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    return value


def _query(request):
    out = {}
    qs = _text(request.query_string) or ""
    for part in qs.split("&"):
        if part:
            key, _, val = part.partition("=")
            out[key] = val
    return out


def app(request):
    path = _text(request.path)

    if path == "/":
        return b"Hello, world!\n"

    if path == "/echo":
        body = bytes(request.body)
        return Response(body, headers={"content-type": "application/octet-stream",
                                       "x-body-length": str(len(body))})

    if path == "/json":
        return {"message": "Hello, world!", "n": 42, "list": [1, 2, 3], "unicode": "h\u00e9"}

    if path == "/list":
        return [1, "two", {"three": 3}]

    if path == "/str":
        return "caf\u00e9 \u2615\n"

    if path == "/headers":
        return Response(b"custom headers\n", status=201,
                        headers={"x-custom": "yes", "x-another": "value 2",
                                 "content-type": "text/x-ringmaster"})

    if path == "/raise":
        raise RuntimeError("deliberate failure from the test app")

    if path == "/id":
        rid = _query(request).get("id", "")
        return Response(("id=" + rid).encode(), headers={"x-echo-id": rid})

    if path == "/pid":
        return str(os.getpid()).encode()

    if path == "/sleep":
        time.sleep(int(_query(request).get("ms", "100")) / 1000.0)
        return str(os.getpid()).encode()

    if path.startswith("/reqinfo"):
        headers = request.headers
        client = request.client
        return {
            "method": _text(request.method),
            "path": path,
            "query_string": _text(request.query_string),
            "x_test": headers.get("x-test"),
            "x_test_upper": headers.get("X-TEST"),
            "x_multi": list(headers.getall("x-multi")),
            "absent": headers.get("x-absent"),
            "body_length": len(bytes(request.body)),
            "client": repr(client),
        }

    return Response(b"no such route\n", status=404,
                    headers={"x-custom": "not-found", "content-type": "text/plain"})
