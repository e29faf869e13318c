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
    """Every C file of worker/ (but the embedding executable's main.c), shm/ and
    common/: globbed, so a new source file cannot be forgotten here."""
    names = sorted(str(p.relative_to(ROOT)) for d in ("worker", "shm", "common")
                   for p in (ROOT / d).glob("*.c") if p.name != "main.c" or d != "worker")
    if "worker/serve.c" not in names or "shm/ring.c" not in names:
        raise SystemExit(f"ringmaster: C sources not found next to {HERE}: "
                         "install from a ringmaster checkout with `pip install ./python`")
    # Relative to this directory: setuptools refuses absolute source paths.
    return ["../" + n for n in names]


def headers():
    """Every header the sources include: a changed one rebuilds the extension
    (setuptools compares only the .c files otherwise, and a reinstall from a
    checkout with an old build/ would link stale objects)."""
    return sorted(str(p) for d in ("include/ringmaster", "worker")
                  for p in (ROOT / d).glob("*.h"))


cflags, libs = msgpack_flags()
setup(
    ext_modules=[
        Extension(
            "_ringmaster",
            sources=sources(),
            depends=headers(),
            include_dirs=[str(ROOT / "include"), str(ROOT / "worker")],
            define_macros=[("_GNU_SOURCE", None), ("RM_EXTENSION", "1"),
                           ("RINGMASTER_VERSION", '"0.1.0"')],
            extra_compile_args=["-std=gnu17", "-Wno-missing-field-initializers", *cflags],
            extra_link_args=libs + ["-pthread"],
        )
    ],
)
