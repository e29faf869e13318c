"""The smallest ringmaster app: `ringmaster examples/hello.py`.

Routes:
    GET  /       -> "Hello, world!\n"
    GET  /json   -> a JSON object (a dict return value is sent as JSON)
    POST /echo   -> the request body, byte for byte
    anything else -> 404
"""

from ringmaster import Response


def app(request):
    path = request.path
    if path == "/":
        return b"Hello, world!\n"
    if path == "/json":
        return {"message": "Hello, world!", "method": request.method}
    if path == "/echo":
        if request.method != "POST":
            return Response(b"POST a body to /echo\n", status=405,
                            headers={"allow": "POST"})
        return Response(bytes(request.body),
                        headers={"content-type": "application/octet-stream"})
    return Response(b"not found\n", status=404,
                    headers={"content-type": "text/plain"})
