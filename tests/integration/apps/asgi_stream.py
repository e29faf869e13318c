"""ASGI app for test_slow_readers.py.

Routes:
    /one?mib=N      N MiB (default 4) of block i = i.to_bytes(4, "big") * 16384
                    in ONE http.response.body message, with its Content-Length
    /pieces?mib=N   the same bytes in 64 KiB messages, no Content-Length
    anything else   b"AAABBB"
"""

from urllib.parse import parse_qsl


def blocks(mib):
    return b"".join(i.to_bytes(4, "big") * 16384 for i in range(mib * 16))


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    q = dict(parse_qsl(scope["query_string"].decode("latin-1")))
    mib = int(q.get("mib", "4"))
    if scope["path"] == "/one":
        body = blocks(mib)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    if scope["path"] == "/pieces":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(mib * 16):
            await send({"type": "http.response.body", "body": i.to_bytes(4, "big") * 16384,
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"AAABBB"})
