"""The app the container tests run (tests/deploy).

Routes (GET):
    /              b"ok HOSTNAME\\n": which replica answered
    /sleep?ms=N    sleeps N ms, then answers like /
    /orphan        starts `sleep 1` in the background of a shell that exits at
                   once: the sleep is orphaned and, in a container, becomes a
                   child of PID 1 (the supervisor), which must reap it
"""

import socket
import subprocess
import time

from ringmaster import Response

HOST = socket.gethostname()


def app(request):
    path = request.path
    if path == "/sleep":
        query = request.query_string or ""
        if not isinstance(query, str):
            query = bytes(query).decode("latin-1")
        ms = 0
        for part in query.split("&"):
            if part.startswith("ms="):
                ms = int(part[3:])
        time.sleep(ms / 1000.0)
    elif path == "/orphan":
        subprocess.run(["sh", "-c", "sleep 1 &"], check=True)
    elif path != "/":
        return Response(b"not found\n", status=404)
    return f"ok {HOST}\n".encode()
