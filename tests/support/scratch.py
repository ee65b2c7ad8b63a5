"""A scratch folder for a test module's hypothesis examples, removed when the test process exits.

Hypothesis runs many examples inside one test call, so function-scoped `tmp_path` does not fit; a folder made at
import time did, but was never removed, and every run left one in the system's temporary folder per xdist worker.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path


def module_scratch(prefix: str) -> Path:
    """A new empty folder under the system's temporary folder, deleted (with what is in it) at interpreter exit."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
