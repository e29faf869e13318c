"""ringmaster: the Python side of a ringmaster app.

An app is a callable that takes a ``Request`` and returns one of:

- ``Response(body, status=200, headers=None, content_type=None)``
- ``bytes``, ``bytearray`` or ``memoryview``: 200, application/octet-stream
- ``str``: 200, text/plain; charset=utf-8 (sent as UTF-8)
- ``dict`` or ``list``: 200, application/json
- an iterable of bytes (a generator, an iterator; not a tuple): 200,
  application/octet-stream, streamed piece by piece (docs/native.md)

``Request`` and ``Headers`` are implemented in C by ringmaster-worker (module
``_ringmaster``). Outside the worker this package still imports, with
placeholders, so that apps and their tests can import it.
"""

from collections.abc import Mapping as _Mapping

__all__ = ["Headers", "Request", "Response"]


class Response:
    """An HTTP response.

    body: str (sent as UTF-8), a bytes-like object, or an iterable of
        bytes-like pieces (a generator, a list, ...), streamed as it is produced:
        chunked, or with the Content-Length given in headers (then exactly that
        many bytes); its close() is always called.
    status: an int from 100 to 999.
    headers: a dict, or a list of (name, value) pairs for repeated names; names
        and values are str (latin-1) or bytes. Transfer-Encoding is the
        server's, and so is Content-Length unless the body is streamed;
        Connection: close is honoured.
    content_type: the Content-Type when headers do not give one. The default is
        "text/plain; charset=utf-8" for a str body, "application/octet-stream"
        otherwise.
    """

    __slots__ = ("body", "status", "headers", "content_type")

    def __init__(self, body=b"", status=200, headers=None, content_type=None):
        self.body = body
        self.status = status
        self.headers = headers
        self.content_type = content_type

    def __repr__(self):
        return f"<Response status={self.status!r} body={type(self.body).__name__}>"


try:
    from _ringmaster import Headers, Request
except ImportError:  # not inside ringmaster-worker

    class Request:  # type: ignore[no-redef]
        """An HTTP request; only ringmaster-worker creates them."""

        def __init__(self, *args, **kwargs):
            raise TypeError("ringmaster.Request objects are made by ringmaster-worker")

    class Headers:  # type: ignore[no-redef]
        """Request headers; only ringmaster-worker creates them."""

        def __init__(self, *args, **kwargs):
            raise TypeError("ringmaster.Headers objects are made by ringmaster-worker")

else:
    _Mapping.register(Headers)
