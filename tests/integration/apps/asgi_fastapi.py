"""A FastAPI app for tests/integration/test_asgi_frameworks.py.

Path and query parameters, a validated JSON body (422 when invalid), a
dependency, a background task, a streamed response, an exception handler and
a startup hook (the lifespan) that the routes can see. Background tasks write
to the file named by ASGI_APP_MARKS, one line each.
"""

import asyncio
import os
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

MARKS = os.environ.get("ASGI_APP_MARKS", "")


@asynccontextmanager
async def lifespan(app):
    app.state.ready = "started"
    yield {"db": "connected"}
    app.state.ready = "stopped"


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str = Field(min_length=1)
    price: float = Field(gt=0)
    tags: list[str] = []


async def current_user(x_user: str = Header(default="anonymous")):
    return {"user": x_user}


def write_mark(text):
    if MARKS:
        with open(MARKS, "a") as f:
            f.write(text + "\n")


@app.get("/")
async def root():
    return {"framework": "fastapi"}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None, limit: int = 10):
    return {"item_id": item_id, "q": q, "limit": limit}


@app.post("/items", status_code=201)
async def create_item(item: Item, user=Depends(current_user)):
    return {"item": item.model_dump(), "by": user["user"]}


@app.post("/tasks")
async def start_task(tasks: BackgroundTasks, name: str = "job"):
    async def job():
        await asyncio.sleep(0.05)
        write_mark(f"task {name}")
    tasks.add_task(job)
    return {"queued": name}


@app.get("/stream")
async def stream(n: int = 5):
    async def gen():
        for i in range(n):
            yield f"line {i}\n"
            await asyncio.sleep(0.01)
    return StreamingResponse(gen(), media_type="text/plain")


@app.get("/state")
async def state(request: Request):
    return {"ready": request.app.state.ready, "db": request.state.db}


@app.get("/missing")
async def missing():
    raise HTTPException(status_code=404, detail="no such thing")


@app.get("/crash")
async def crash():
    raise RuntimeError("fastapi handler crashed")


@app.post("/echo")
async def echo(request: Request):
    body = await request.body()
    return PlainTextResponse(body)


@app.get("/sleep")
async def sleep(s: float = 0.2):
    await asyncio.sleep(s)
    return {"slept": s}
