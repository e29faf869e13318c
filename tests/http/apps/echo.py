"""Echo app for the HTTP conformance corpus (tests/http).

Every request gets 200 and a JSON object describing what the app saw:

    {"method": ..., "path": ..., "query_string": ..., "http_version": ...,
     "headers": [[lowercase name, value], ...] (in order, repeats kept),
     "body_length": N, "body_sha256": hex}

Strings are the request's bytes decoded as Latin-1, so any byte round-trips.
One path differs, for the 1 MiB POST benchmark:
    /len     the body length only, as text (no JSON, no hashing)
"""

import hashlib
import json

from ringmaster import Response


def _text(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    return value


def app(request):
    path = _text(request.path)
    if path == "/len":
        return Response(str(len(request.body)).encode(), headers={"content-type": "text/plain"})
    body = bytes(request.body)
    info = {
        "method": _text(request.method),
        "path": path,
        "query_string": _text(request.query_string),
        "http_version": _text(request.http_version),
        "headers": [[_text(k), _text(v)] for k, v in request.headers.items()],
        "body_length": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    return Response(json.dumps(info).encode(), headers={"content-type": "application/json"})
