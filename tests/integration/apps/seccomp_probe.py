"""Probes for --worker-seccomp (tests/integration/test_trust.py), served by
Flask (`flask_app`) and FastAPI (`fastapi_app`): GET /probe tries system calls
the filter refuses and work it must not break, and answers JSON:

    {"ptrace": errno, "unshare": errno, "io_uring_setup": errno,
     "subprocess": exit status of /bin/true, "thread": true}

An errno of 0 means the call succeeded.
"""

import ctypes
import os
import subprocess
import threading

_libc = ctypes.CDLL(None, use_errno=True)
_SYS = {"x86_64": {"ptrace": 101, "unshare": 272, "io_uring_setup": 425},
        "aarch64": {"ptrace": 117, "unshare": 97, "io_uring_setup": 425}}[os.uname().machine]
CLONE_NEWUSER = 0x10000000
PTRACE_TRACEME = 0


def _errno_of(nr, *args):
    ctypes.set_errno(0)
    rc = _libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return ctypes.get_errno() if rc == -1 else 0


def probe():
    done = []
    t = threading.Thread(target=lambda: done.append(True))
    t.start()
    t.join()
    return {
        "ptrace": _errno_of(_SYS["ptrace"], PTRACE_TRACEME, 0, 0, 0),
        "unshare": _errno_of(_SYS["unshare"], CLONE_NEWUSER),
        "io_uring_setup": _errno_of(_SYS["io_uring_setup"], 8, 0),
        "subprocess": subprocess.run(["/bin/true"]).returncode,
        "thread": done == [True],
    }


try:
    from flask import Flask, jsonify

    flask_app = Flask(__name__)

    @flask_app.route("/probe")
    def flask_probe():
        return jsonify(probe())
except ImportError:  # the framework venv is missing: the tests skip
    flask_app = None

try:
    from fastapi import FastAPI

    fastapi_app = FastAPI()

    @fastapi_app.get("/probe")
    async def fastapi_probe():
        return probe()
except ImportError:
    fastapi_app = None
