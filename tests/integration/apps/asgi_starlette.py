"""A Starlette app for tests/integration/test_asgi_frameworks.py: the same
behaviours as asgi_fastapi.py, written with Starlette's own routing."""

import asyncio
import json
import os
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

MARKS = os.environ.get("ASGI_APP_MARKS", "")


@asynccontextmanager
async def lifespan(app):
    app.state.ready = "started"
    yield {"db": "connected"}
    app.state.ready = "stopped"


def write_mark(text):
    if MARKS:
        with open(MARKS, "a") as f:
            f.write(text + "\n")


async def root(request):
    return JSONResponse({"framework": "starlette"})


async def read_item(request):
    try:
        item_id = int(request.path_params["item_id"])
        limit = int(request.query_params.get("limit", "10"))
    except ValueError:
        return JSONResponse({"detail": "not an integer"}, status_code=422)
    return JSONResponse({"item_id": item_id, "q": request.query_params.get("q"), "limit": limit})


async def create_item(request):
    try:
        item = await request.json()
        ok = (isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]
              and isinstance(item.get("price"), (int, float)) and item["price"] > 0)
    except json.JSONDecodeError:
        ok = False
    if not ok:
        return JSONResponse({"detail": "invalid item"}, status_code=422)
    item.setdefault("tags", [])
    item["price"] = float(item["price"])
    return JSONResponse({"item": item, "by": request.headers.get("x-user", "anonymous")},
                        status_code=201)


async def start_task(request):
    name = request.query_params.get("name", "job")

    async def job():
        await asyncio.sleep(0.05)
        write_mark(f"task {name}")
    return JSONResponse({"queued": name}, background=BackgroundTask(job))


async def stream(request):
    n = int(request.query_params.get("n", "5"))

    async def gen():
        for i in range(n):
            yield f"line {i}\n"
            await asyncio.sleep(0.01)
    return StreamingResponse(gen(), media_type="text/plain")


async def state(request):
    return JSONResponse({"ready": request.app.state.ready, "db": request.state.db})


async def missing(request):
    raise HTTPException(status_code=404, detail="no such thing")


async def crash(request):
    raise RuntimeError("starlette handler crashed")


async def echo(request):
    return PlainTextResponse(await request.body())


async def sleep(request):
    s = float(request.query_params.get("s", "0.2"))
    await asyncio.sleep(s)
    return JSONResponse({"slept": s})


app = Starlette(lifespan=lifespan, routes=[
    Route("/", root),
    Route("/items/{item_id}", read_item),
    Route("/items", create_item, methods=["POST"]),
    Route("/tasks", start_task, methods=["POST"]),
    Route("/stream", stream),
    Route("/state", state),
    Route("/missing", missing),
    Route("/crash", crash),
    Route("/echo", echo, methods=["POST"]),
    Route("/sleep", sleep),
])
