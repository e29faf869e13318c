"""A native app for tests/http/test_http11_details.py: HEAD answered with an
empty body (/empty), with the GET's Content-Length given by the app
(/declared), or with the GET's body (anything else)."""

from ringmaster import Response


def app(request):
    path = request.path
    if request.method == "HEAD" and path == "/empty":
        return Response(b"")
    if request.method == "HEAD" and path == "/declared":
        return Response(b"", headers={"content-length": "42"})
    if request.method == "HEAD" and path == "/stream-empty":
        return Response([])
    return Response(b"x" * 42)
