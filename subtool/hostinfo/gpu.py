"""The host's GPUs: NVIDIA through NVML (`pynvml`, from nvidia-ml-py), AMD through `amdsmi`; without them,
NVIDIA's `nvidia-smi` CSV, the driver's /proc/driver/nvidia, and AMD's sysfs (/sys/class/drm).

Each reader returns a `GpuScan` that says which source answered; none raises (a library missing, a driver not
loaded, a call the GPU does not support: the next source is asked, or the value stays unknown). Packaging never
imports torch (docs/architecture.md), so none of this does either.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from subtool.hostinfo.host import MAX_MHZ, plain_name, read_text, run_capped, whole_number

NVML = "library: pynvml (nvidia-ml-py)"
AMDSMI = "library: amdsmi"
NVIDIA_SMI = "command: nvidia-smi"
NVIDIA_SMI_TIMEOUT_S = 20.0  # a hung driver can block nvidia-smi for minutes: the scan goes on without it
NVIDIA_SMI_MAX_OUTPUT = 1024 * 1024  # one short line per GPU
PROC_NVIDIA = "file: /proc/driver/nvidia/gpus"
SYS_DRM = "file: /sys/class/drm"


@dataclass
class Gpu:
    name: str
    memory_mib: int | None = None
    clock_mhz: int | None = None  # the highest SM / graphics clock
    pcie_gen: int | None = None
    pcie_width: int | None = None
    memory_type: str = ""  # HBM3, … where the library says
    partitions: list[tuple[str, int | None]] = field(default_factory=list)  # MIG instances: (profile, MiB)
    partition_mode: str = ""  # AMD: compute/memory partition, e.g. "SPX/NPS1"


@dataclass
class GpuScan:
    gpus: list[Gpu]
    source: str
    vendor: str = "NVIDIA"
    driver: str = ""  # e.g. "NVIDIA driver 570.86.15", "amdgpu 6.10.5"
    cuda: str = ""  # the CUDA version the driver supports, e.g. "12.8"
    interconnect: str = ""  # between the GPUs: "NVLink 4.0 (18 links per GPU)", "xGMI"
    topology: str = ""


def _module(name: str):
    """The library when it imports, else None. amdsmi prints to stdout and raises KeyError when ROCm's
    libamd_smi.so is absent: its output is swallowed so that `subtool system`'s JSON on stdout stays clean."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return importlib.import_module(name)
    except Exception:  # ImportError, or whatever a binding raises when its native library is missing
        return None


def _text(value) -> str:
    return (value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)).strip()


# ------------------------------------------------------------------------------------------------ NVML
def _nv_call(nv, name: str, *args):
    """One NVML query; None where the GPU, the driver or this pynvml does not support it (pynvml 8 has no MIG
    calls; a call may fail with an error of its own, not an NVMLError)."""
    fn = getattr(nv, name, None)
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception:
        return None


def _nvml_partitions(nv, handle) -> list[tuple[str, int | None]]:
    mode = _nv_call(nv, "nvmlDeviceGetMigMode", handle)
    if not mode or mode[0] != getattr(nv, "NVML_DEVICE_MIG_ENABLE", 1):
        return []
    parts = []
    for i in range(_nv_call(nv, "nvmlDeviceGetMaxMigDeviceCount", handle) or 0):
        mig = _nv_call(nv, "nvmlDeviceGetMigDeviceHandleByIndex", handle, i)
        if mig is None:
            continue  # no instance in this slot
        name = _text(_nv_call(nv, "nvmlDeviceGetName", mig) or "")
        profile = name.rsplit(" MIG ", 1)[-1] if " MIG " in name else name or "MIG"
        mem = _nv_call(nv, "nvmlDeviceGetMemoryInfo", mig)
        parts.append((profile, int(mem.total) // 2**20 if mem is not None else None))
    return parts


def _nvml_gpu(nv, handle) -> Gpu:
    mem = _nv_call(nv, "nvmlDeviceGetMemoryInfo", handle)
    return Gpu(
        name=_text(nv.nvmlDeviceGetName(handle)),
        memory_mib=int(mem.total) // 2**20 if mem is not None else None,
        clock_mhz=_nv_call(nv, "nvmlDeviceGetMaxClockInfo", handle, nv.NVML_CLOCK_SM) or None,
        pcie_gen=_nv_call(nv, "nvmlDeviceGetMaxPcieLinkGeneration", handle) or None,
        pcie_width=_nv_call(nv, "nvmlDeviceGetMaxPcieLinkWidth", handle) or None,
        partitions=_nvml_partitions(nv, handle),
    )


def _nvlink_versions(nv) -> dict[int, str]:
    prefix = "NVML_NVLINK_VERSION_"
    return {
        getattr(nv, k): k[len(prefix) :].replace("_", ".")
        for k in dir(nv)
        if k.startswith(prefix) and k != prefix + "INVALID" and isinstance(getattr(nv, k), int)
    }


def _nvlink(nv, handles: list) -> tuple[str, str]:
    """(interconnect, topology) between the GPUs from each GPU's active NVLinks and the pairs' P2P status."""
    if len(handles) < 2:
        return "", ""
    active = []
    version = None
    for h in handles:
        links = [
            link
            for link in range(getattr(nv, "NVML_NVLINK_MAX_LINKS", 18))
            if _nv_call(nv, "nvmlDeviceGetNvLinkState", h, link) == nv.NVML_FEATURE_ENABLED
        ]
        active.append(len(links))
        if links and version is None:
            version = _nv_call(nv, "nvmlDeviceGetNvLinkVersion", h, links[0])
    if not any(active):
        return "PCIe", ""
    label = f"NVLink {_nvlink_versions(nv).get(version, '')}".strip()
    per_gpu = f"{active[0]} links per GPU" if len(set(active)) == 1 else f"{min(active)}-{max(active)} links per GPU"
    pairs = [(a, b) for i, a in enumerate(handles) for b in handles[i + 1 :]]
    ok = [_nv_call(nv, "nvmlDeviceGetP2PStatus", a, b, nv.NVML_P2P_CAPS_INDEX_NVLINK) for a, b in pairs]
    topology = "NVLink between every pair of GPUs" if all(s == nv.NVML_P2P_STATUS_OK for s in ok) else ""
    return f"{label} ({per_gpu})", topology


def _cuda_version(raw) -> str:
    return f"{raw // 1000}.{raw % 1000 // 10}" if isinstance(raw, int) and raw > 0 else ""


def nvml_scan() -> GpuScan | None:
    """NVIDIA GPUs through NVML; None when pynvml or the driver's libnvidia-ml is absent, it sees none, or it
    fails in a way of its own (pynvml 8 has no MIG calls)."""
    nv = _module("pynvml")
    if nv is None:
        return None
    try:
        nv.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded, or an OSError from ctypes
        return None
    try:
        handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(nv.nvmlDeviceGetCount())]
        gpus = [_nvml_gpu(nv, h) for h in handles]
        driver = _text(_nv_call(nv, "nvmlSystemGetDriverVersion") or "")
        interconnect, topology = _nvlink(nv, handles)
        cuda = _cuda_version(_nv_call(nv, "nvmlSystemGetCudaDriverVersion"))
    except Exception:  # NVMLError; an older pynvml without a function (AttributeError), a name not UTF-8, …
        return None  # the next source (nvidia-smi) is asked: detection never ends in a traceback
    finally:
        with contextlib.suppress(Exception):
            nv.nvmlShutdown()
    if not gpus:
        return None
    return GpuScan(gpus, NVML, "NVIDIA", f"NVIDIA driver {driver}" if driver else "", cuda, interconnect, topology)


# --------------------------------------------------------------------------------------- nvidia-smi, /proc
def nvidia_smi_gpus(out: str) -> tuple[list[Gpu], str]:
    """(GPUs, driver version) from nvidia-smi's CSV; a line without a GPU's name is none, a number past what any
    GPU has (MiB, MHz, PCIe generation, lanes) is unknown."""
    gpus, driver = [], ""
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 6 and plain_name(parts[0]):
            mib, mhz, gen, width = (whole_number(p, most) for p, most in zip(parts[1:5], (2**24, MAX_MHZ, 16, 32)))
            gpus.append(Gpu(parts[0], mib, mhz, gen, width))
            driver = driver or plain_name(parts[5], 40)
    return gpus, driver


def nvidia_smi_scan() -> GpuScan | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    query = "name,memory.total,clocks.max.sm,pcie.link.gen.max,pcie.link.width.max,driver_version"
    argv = [exe, f"--query-gpu={query}", "--format=csv,noheader,nounits"]
    try:
        status, out = run_capped(argv, NVIDIA_SMI_MAX_OUTPUT, NVIDIA_SMI_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    if status != 0 or len(out) > NVIDIA_SMI_MAX_OUTPUT:
        return None
    gpus, driver = nvidia_smi_gpus(out.decode("utf-8", errors="replace"))
    if not gpus:
        return None
    return GpuScan(gpus, NVIDIA_SMI, "NVIDIA", f"NVIDIA driver {driver}" if driver else "")


def proc_nvidia_scan(root: Path | str = "/") -> GpuScan | None:
    """Only when NVML and nvidia-smi are absent: the model names the NVIDIA driver lists under /proc (no memory
    size, which the description then marks as not detected)."""
    gpus = []
    for info in sorted(Path(root, "proc/driver/nvidia/gpus").glob("*/information")):
        text = read_text(info) or ""
        model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model:")), "")
        if plain_name(model):
            gpus.append(Gpu(model))
    return GpuScan(gpus, PROC_NVIDIA, "NVIDIA") if gpus else None
