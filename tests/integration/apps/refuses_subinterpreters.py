"""An app that cannot run in a subinterpreter: it imports readline, a
single-phase init extension module, which CPython 3.12 and 3.13 refuse to load
in an interpreter with its own GIL (ImportError). In gil mode it loads."""

import readline  # noqa: F401


def app(request):
    return b"loaded readline\n"
