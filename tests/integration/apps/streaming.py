"""Native app with streamed bodies (iterables), for test_streaming.py.

Query parameters: n (pieces), size (bytes per piece), mark (a file path: the
body's close() writes "closed after K pieces, B bytes" there), length (a
Content-Length to declare), mib (MiB to produce).

Routes:
    /gen            Response(iterable) with close(), n pieces of size bytes:
                    piece i is bytes([65 + i % 26]) * size
    /bare           the same iterable returned directly (not in a Response)
    /generator      a plain generator returned directly; mark written in finally
    /length         /gen with Content-Length: length (default n * size)
    /blocks         mib MiB in 64 KiB blocks, block i = i.to_bytes(4, "big") * 16384,
                    with the declared length when ?length=1
    /big-bytes      mib MiB of /blocks as one bytes object (not streamed)
    /forever        1 KiB pieces until the server stops asking (mark in close())
    /raise-early    raises before the first piece
    /raise-late     b"first piece\\n", then raises
    /str-first      yields a str first
    /str-late       b"ok\\n", then a str
    /list-body      Response([b"a", b"b", b"c"], status=201, content_type="text/x-parts")
    /tuple-body     Response((b"x" * 40000, bytearray(b"yz")))
    /list-str       Response([b"a", "b"])
    /status-204     204 with an iterable body (never iterated)
"""

import os
from urllib.parse import parse_qsl

from ringmaster import Response


def _query(request):
    qs = request.query_string
    if not isinstance(qs, str):
        qs = bytes(qs).decode("latin-1")
    return dict(parse_qsl(qs))


def _mark(path, text):
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)  # the test never sees a half-written mark


class Pieces:
    """An iterable with close(), recording how far it got."""

    def __init__(self, make, count, mark):
        self.make = make      # i -> bytes-like, or raises
        self.count = count    # None: forever
        self.mark = mark
        self.produced = 0
        self.bytes = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.count is not None and self.produced >= self.count:
            raise StopIteration
        piece = self.make(self.produced)
        self.produced += 1
        self.bytes += len(piece)
        return piece

    def close(self):
        _mark(self.mark, f"closed after {self.produced} pieces, {self.bytes} bytes")


def _letters(size):
    return lambda i: bytes([65 + i % 26]) * size


def _block(i):
    return i.to_bytes(4, "big") * 16384


def app(request):
    path = request.path if isinstance(request.path, str) else bytes(request.path).decode()
    q = _query(request)
    n = int(q.get("n", "3"))
    size = int(q.get("size", "5"))
    mark = q.get("mark", "")

    if path == "/gen":
        return Response(Pieces(_letters(size), n, mark), content_type="text/x-stream")

    if path == "/bare":
        return Pieces(_letters(size), n, mark)

    if path == "/generator":
        def gen():
            sent = 0
            try:
                for i in range(n):
                    yield bytes([65 + i % 26]) * size
                    sent += 1
            finally:
                _mark(mark, f"closed after {sent} pieces")
        return gen()

    if path == "/length":
        length = q.get("length", str(n * size))
        return Response(Pieces(_letters(size), n, mark), headers={"Content-Length": length})

    if path == "/blocks":
        count = int(q.get("mib", "1")) * 16
        headers = {"content-length": str(count * 65536)} if q.get("length") == "1" else None
        return Response(Pieces(_block, count, mark), headers=headers)

    if path == "/big-bytes":
        return b"".join(_block(i) for i in range(int(q.get("mib", "1")) * 16))

    if path == "/forever":
        return Response(Pieces(_letters(1024), None, mark))

    if path == "/raise-early":
        def boom(i):
            raise ValueError("deliberate failure before the first piece")
        return Response(Pieces(boom, 3, mark))

    if path == "/raise-late":
        def late(i):
            if i == 0:
                return b"first piece\n"
            raise ValueError("deliberate failure after the first piece")
        return Response(Pieces(late, 3, mark))

    if path == "/str-first":
        return Response(Pieces(lambda i: "text", 3, mark))

    if path == "/str-late":
        return Response(Pieces(lambda i: b"ok\n" if i == 0 else "text", 3, mark))

    if path == "/list-body":
        return Response([b"a", b"b", b"c"], status=201, content_type="text/x-parts")

    if path == "/tuple-body":
        return Response((b"x" * 40000, bytearray(b"yz")))

    if path == "/list-str":
        return Response([b"a", "b"])

    if path == "/status-204":
        return Response(Pieces(_letters(size), n, mark), status=204)

    return Response(b"no such route\n", status=404)
