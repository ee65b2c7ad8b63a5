"""Which SUT backend a run uses: `auto` resolved (torch-cuda where a GPU is visible and the workload has it, else
torch-cpu) without importing torch where no GPU driver is installed, and the packages that backend needs checked
before anything starts."""

from __future__ import annotations

import os
import sys

from subtool.errors import SubtoolError

# what running a model imports, by backend (the `run` extra; `openai` adds its client and needs no torch)
_RUN_MODULES = {"any": ("mlperf_loadgen", "numpy", "transformers"), "torch": ("torch",), "openai": ("openai",)}


def check_run_extra(backend: str) -> None:
    """One line naming the missing packages and the install command, before anything starts, instead of the
    benchmark process's traceback: check, package, pack, publish and score run without them."""
    import importlib.util

    wanted = _RUN_MODULES["any"] + _RUN_MODULES["openai" if backend == "openai" else "torch"]
    missing = []
    for name in wanted:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken or half-removed install
            found = False
        if not found:
            missing.append(name)
    if missing:
        extra = "run,openai" if backend == "openai" else "run"
        raise SubtoolError(
            f"running a benchmark needs {', '.join(missing)}, which this Python ({sys.executable}) cannot import",
            rule="run.missing_extra",
            hint=f'install the {extra} extra: pip install -e ".[{extra}]" from the repository (add -c '
            "constraints.txt on a CPU-only machine)",
        )


# What a GPU driver torch.cuda can use leaves on a Linux host: NVIDIA's device files and /proc entry, Jetson's
# (nvgpu) devices, WSL's GPU device, ROCm's compute device (ROCm builds of torch answer through torch.cuda too).
# With none of them there, torch.cuda.is_available() cannot be True, and `auto` decides without importing torch
# (1–2 s of a CPU run's start).
GPU_DRIVER_MARKS = (
    "/dev/nvidiactl",
    "/dev/nvidia0",
    "/proc/driver/nvidia",
    "/dev/nvhost-ctrl-gpu",
    "/dev/nvmap",
    "/dev/dxg",
    "/dev/kfd",
)


def _gpu_driver_present() -> bool:
    """False only where no GPU can be seen for sure: on Linux, none of GPU_DRIVER_MARKS exists."""
    if not sys.platform.startswith("linux"):
        return True  # no cheap sign elsewhere: torch is asked
    return any(os.path.exists(mark) for mark in GPU_DRIVER_MARKS)


def _cuda_available() -> bool:
    if not _gpu_driver_present():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_backend(backend: str, spec, say) -> str:
    """`auto` → torch-cuda when a GPU is visible and the workload has that backend, else torch-cpu."""
    if backend == "auto":
        backend = "torch-cuda" if "torch-cuda" in spec.backends and _cuda_available() else "torch-cpu"
        say(f"backend: {backend} (auto)")
    if backend not in spec.backends:
        raise SubtoolError(
            f"unknown backend {backend!r} for {spec.name}; choose one of {', '.join(spec.backends)}",
            rule="run.backend",
        )
    return backend
