"""Tests of what an unreadable or unwritable file does, run for real under root too.

Root passes every permission check (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), and CI runs as root: a test that
skipped there would never fail. `rerun_bound_by_permissions(request)` returns False when this process is bound by
file permissions (the test goes on here); otherwise it runs this one test again in a child pytest that
`setpriv` started without those two capabilities, asserts that it passed, and returns True (the caller returns:
the child did the work)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_CHILD = "SUBTOOL_TEST_WITHOUT_DAC_OVERRIDE"
WITHOUT_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def permissions_bind() -> bool:
    """Whether a file with mode 000 is unreadable to this process (it is to everyone but a privileged root)."""
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe"
        probe.write_text("x")
        probe.chmod(0)
        try:
            probe.read_text()
        except PermissionError:
            return True
        finally:
            probe.chmod(0o600)
    return False


def rerun_bound_by_permissions(request: pytest.FixtureRequest) -> bool:
    if permissions_bind():
        return False
    if os.environ.get(_CHILD):
        pytest.fail("setpriv left this child root's permission override: the test would prove nothing")
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    root = request.config.rootpath
    proc = subprocess.run(
        [*WITHOUT_OVERRIDE, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
        + [request.node.nodeid],
        cwd=root,
        env={**os.environ, _CHILD: "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    said = proc.stdout.strip().splitlines()[-1:] or [""]
    assert proc.returncode == 0 and re.match(r"1 passed\b", said[0]), proc.stdout[-4000:] + proc.stderr[-2000:]
    return True
