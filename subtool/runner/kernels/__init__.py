"""GPU kernels the fast SUTs use (Triton; imported only where a GPU path runs), and the facts that decide whether
one can run, which need no Triton import."""

from __future__ import annotations

import os


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def interpreted() -> bool:
    """Triton runs kernels through its CPU interpreter (TRITON_INTERPRET=1): no PTX, no loops to loaded bounds."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def head_dim_fits(head_dim: int) -> bool:
    """tl.dot needs a power-of-two head dimension of at least 16."""
    return head_dim >= 16 and head_dim & (head_dim - 1) == 0
