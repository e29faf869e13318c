"""An app whose import takes SLOW_IMPORT_S seconds (default 3): while it
imports, no worker is ready (tests of /readyz)."""

import os
import time

time.sleep(float(os.environ.get("SLOW_IMPORT_S", "3")))


def app(request):
    return b"ready now\n"
