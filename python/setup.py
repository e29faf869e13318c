"""Build the _ringmaster extension: ringmaster-worker's serving core (worker/,
shm/, common/) compiled against the interpreter running pip, so that
`python -m ringmaster.worker --attach PATH APP` can serve a supervisor's lane
(docs/attach.md). Needs a C compiler and msgpack-c (libmsgpack-c-dev).

The C sources live in the repository around this directory: install from a
checkout (`pip install ./python`), not from an sdist.
"""

import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def msgpack_flags():
    """Compile and link flags of msgpack-c, from pkg-config when it is there."""
    if shutil.which("pkg-config"):
        try:
            cflags = subprocess.check_output(["pkg-config", "--cflags", "msgpack"], text=True)
            libs = subprocess.check_output(["pkg-config", "--libs", "msgpack"], text=True)
            return cflags.split(), libs.split()
        except subprocess.CalledProcessError:
            pass
    return [], ["-lmsgpackc"]


def sources():
    names = [
        "worker/attach.c", "worker/conf.c", "worker/host.c", "worker/request.c",
        "worker/response.c", "worker/serve.c", "worker/wsgi.c", "worker/body.c",
        "shm/region.c", "shm/ring.c", "shm/chunk_pool.c", "shm/lane.c", "shm/doorbell.c",
        "shm/futex.c", "shm/stats.c",
        "common/log.c", "common/control.c", "common/control_proto.c", "common/wire.c",
        "common/forwarded.c", "common/interface.c", "common/attach_client.c",
    ]
    missing = [n for n in names if not (ROOT / n).is_file()]
    if missing:
        raise SystemExit(f"ringmaster: C sources not found next to {HERE} ({missing[0]}...): "
                         "install from a ringmaster checkout with `pip install ./python`")
    # Relative to this directory: setuptools refuses absolute source paths.
    return ["../" + n for n in names]


cflags, libs = msgpack_flags()
setup(
    ext_modules=[
        Extension(
            "_ringmaster",
            sources=sources(),
            include_dirs=[str(ROOT / "include"), str(ROOT / "worker")],
            define_macros=[("_GNU_SOURCE", None), ("RM_EXTENSION", "1"),
                           ("RINGMASTER_VERSION", '"0.1.0"')],
            extra_compile_args=["-std=gnu17", "-Wno-missing-field-initializers", *cflags],
            extra_link_args=libs + ["-pthread"],
        )
    ],
)
