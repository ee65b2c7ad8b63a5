"""Running a Triton kernel check script on a CUDA GPU, or on the CPU through Triton's interpreter.

Triton reads TRITON_INTERPRET when it is imported, so the script runs in a child process; it gets the device
("cuda" or "cpu") as its first argument and fails by a non-zero exit. Tests using it skip where Triton is not
installed (the CPU-only torch wheels don't bring it)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton")


def run_kernel_check(script: str, min_capability: tuple[int, int] = (0, 0)) -> None:
    """Run `script` on the GPU when there is one of at least `min_capability`, else under the interpreter."""
    import torch

    gpu = torch.cuda.is_available() and torch.cuda.get_device_capability() >= min_capability
    env = dict(os.environ)
    if not gpu:
        env["TRITON_INTERPRET"] = "1"
    res = subprocess.run(
        [sys.executable, "-c", script, "cuda" if gpu else "cpu"], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout + res.stderr
