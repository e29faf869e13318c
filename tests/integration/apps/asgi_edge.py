"""An ASGI 3.0 app for tests/integration/test_asgi.py: one route per behaviour.

Plain ASGI, no framework. Lifespan sets state["started"] (and a counter of
startups shared by every thread in the process); requests see it in
scope["state"]. Environment variables change the lifespan for the lifespan
tests: ASGI_EDGE_LIFESPAN=fail sends lifespan.startup.failed, =raise raises
during startup, =unsupported raises for any non-http scope at once.
"""

import asyncio
import json
import os
import threading
import time

STARTUPS = []
STARTUP_LOCK = threading.Lock()
SHUTDOWN_FILE = os.environ.get("ASGI_EDGE_SHUTDOWN_FILE")
# A line per lifespan startup, from every thread and interpreter of the process.
STARTUP_FILE = os.environ.get("ASGI_EDGE_STARTUP_FILE")


async def lifespan(scope, receive, send):
    mode = os.environ.get("ASGI_EDGE_LIFESPAN", "")
    if mode == "unsupported":
        raise RuntimeError("no lifespan here")
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            if mode == "fail":
                await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
                return
            if mode == "raise":
                raise ValueError("startup exploded")
            with STARTUP_LOCK:
                STARTUPS.append(threading.get_ident())
            if STARTUP_FILE:
                with open(STARTUP_FILE, "a") as f:
                    f.write(f"startup {threading.get_ident()}\n")
            scope["state"]["started"] = "yes"
            scope["state"]["thread"] = threading.get_ident()
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            if SHUTDOWN_FILE:
                with open(SHUTDOWN_FILE, "a") as f:
                    f.write("shutdown\n")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def start(send, status=200, headers=(), **extra):
    await send({"type": "http.response.start", "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers], **extra})


async def read_body(receive):
    pieces = []
    while True:
        msg = await receive()
        assert msg["type"] == "http.request", msg
        pieces.append(msg["body"])
        if not msg.get("more_body"):
            return pieces


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    assert scope["type"] == "http", scope
    path = scope["path"]

    if path == "/":
        await start(send, headers=[("content-type", "text/plain")])
        await send({"type": "http.response.body", "body": b"Hello, ASGI!\n"})
    elif path == "/scope":
        info = {k: v for k, v in scope.items() if k not in ("headers", "raw_path",
                                                             "query_string", "state")}
        info["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        info["raw_path"] = scope["raw_path"].decode("latin-1")
        info["query_string"] = scope["query_string"].decode("latin-1")
        info["state"] = {k: v for k, v in scope.get("state", {}).items() if k != "thread"}
        info["types"] = {k: type(v).__name__ for k, v in scope.items()}
        body = json.dumps(info).encode()
        await start(send, headers=[("content-type", "application/json")])
        await send({"type": "http.response.body", "body": body})
    elif path == "/echo":
        pieces = await read_body(receive)
        body = b"".join(pieces)
        await start(send, headers=[("x-pieces", str(len(pieces)))])
        await send({"type": "http.response.body", "body": body})
    elif path == "/stream":
        n = int(scope["query_string"] or b"5")
        await start(send, headers=[("content-type", "text/plain")])
        for i in range(n):
            await send({"type": "http.response.body", "body": b"piece %d\n" % i, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/big":
        n = int(scope["query_string"] or b"1000000")
        await start(send, headers=[("content-length", str(n))])
        block = b"x" * 65536
        left = n
        while left > 0:
            part = block[:min(left, len(block))]
            left -= len(part)
            await send({"type": "http.response.body", "body": part, "more_body": left > 0})
    elif path == "/sleep":
        await asyncio.sleep(float(scope["query_string"] or b"0.5"))
        await start(send)
        await send({"type": "http.response.body", "body": b"slept"})
    elif path == "/block":
        # Synchronous work that holds the whole loop (the anti-pattern apps have).
        time.sleep(float(scope["query_string"] or b"0.05"))
        await start(send)
        await send({"type": "http.response.body", "body": b"blocked"})
    elif path == "/raise-before":
        raise RuntimeError("boom before start")
    elif path == "/raise-after":
        await start(send)
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom after start")
    elif path == "/no-response":
        return
    elif path == "/disconnect-wait":
        # Stream until the client goes; record what the server reported.
        await start(send)
        outcome = "none"
        try:
            for _ in range(500):
                await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
                await asyncio.sleep(0.02)
        except OSError as e:
            outcome = f"send raised {type(e).__name__}"
        msg = await receive()
        while msg["type"] == "http.request":
            msg = await receive()
        with open(scope["query_string"].decode(), "w") as f:
            f.write(f"{outcome}; receive {msg['type']}")
    elif path == "/receive-disconnect":
        # Read the body, then wait on receive() for the client to go.
        await read_body(receive)
        msg = await receive()
        with open(scope["query_string"].decode(), "w") as f:
            f.write(msg["type"])
    elif path == "/trailers":
        await start(send, trailers=True)
        await send({"type": "http.response.body", "body": b"data", "more_body": False})
        await send({"type": "http.response.trailers",
                    "headers": [(b"x-checksum", b"abc")], "more_trailers": False})
    elif path == "/pathsend":
        await start(send, headers=[("content-type", "text/plain")])
        await send({"type": "http.response.pathsend", "path": __file__})
    elif path == "/state":
        body = json.dumps({"started": scope["state"].get("started"),
                           "startups": len(STARTUPS)}).encode()
        scope["state"]["mutated"] = True  # a shallow copy per request: not seen by the next
        await start(send)
        await send({"type": "http.response.body", "body": body})
    elif path == "/bad-message":
        await send({"type": "http.response.body", "body": b"no start"})
    else:
        await start(send, status=404)
        await send({"type": "http.response.body", "body": b"not found"})
