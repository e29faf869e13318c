"""An app that turns the GIL back on in a free-threaded CPython: it loads an
extension module that does not declare Py_mod_gil. CPython's own test module
_testmultiphase has one, under the init function _testmultiphase_null_slots.
On a build with a GIL this changes nothing."""

import importlib.machinery
import importlib.util
import sys

import _testmultiphase

_NAME = "_testmultiphase_null_slots"
_loader = importlib.machinery.ExtensionFileLoader(_NAME, _testmultiphase.__file__)
_spec = importlib.util.spec_from_loader(_NAME, _loader)
_module = importlib.util.module_from_spec(_spec)
_loader.exec_module(_module)


def app(request):
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    on = is_enabled is None or is_enabled()
    return f"gil {1 if on else 0}\n"
