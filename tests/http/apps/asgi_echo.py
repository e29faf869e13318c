"""An ASGI app for tests/http/test_http11_details.py.

200 and JSON of the scope's path, raw_path and method. For HEAD it sends an
empty body and no Content-Length (an app that leaves HEAD to the server);
HEAD /declared gives the GET's Content-Length itself.
"""

import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    body = json.dumps({
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
    }).encode()
    headers = [(b"content-type", b"application/json")]
    if scope["method"] == "HEAD":
        if scope["path"] == "/declared":
            headers.append((b"content-length", b"42"))
        body = b""
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
