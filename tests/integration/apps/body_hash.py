"""Request bodies of any size, read the way large uploads are: in pieces.

WSGI (`app`): every request's wsgi.input is read in 1 MiB pieces (or line by
line with ?lines=1) and answered with JSON {"length", "sha256", "spilled"}:
"spilled" counts the *.body files under RM_TEST_SPILL_DIR while the request
runs (the supervisor's spilled bodies, in its private directory there). `native_app`: the same from request.body.
"""

import hashlib
import json
import os


def _spilled():
    spill_dir = os.environ.get("RM_TEST_SPILL_DIR")
    if not spill_dir:
        return None
    if not os.path.isdir(spill_dir):
        return -1
    # The supervisor spills into a private directory of its own in there.
    return sum(1 for _, _, files in os.walk(spill_dir) for n in files if n.endswith(".body"))


def app(environ, start_response):
    spilled = _spilled()
    digest = hashlib.sha256()
    length = 0
    stream = environ["wsgi.input"]
    if "lines=1" in environ.get("QUERY_STRING", ""):
        for line in stream:
            digest.update(line)
            length += len(line)
    else:
        while True:
            piece = stream.read(1 << 20)
            if not piece:
                break
            digest.update(piece)
            length += len(piece)
    body = json.dumps({"length": length, "sha256": digest.hexdigest(),
                       "spilled": spilled}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def native_app(request):
    spilled = _spilled()
    data = bytes(request.body)
    return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "spilled": spilled}
