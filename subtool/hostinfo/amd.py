"""AMD GPUs (Instinct MI300X and kin) through `amdsmi`, ROCm's Python binding; without it, the amdgpu driver's
sysfs files under /sys/class/drm. Neither raises: an unsupported query leaves its value unknown."""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path

from subtool.hostinfo.gpu import AMDSMI, SYS_DRM, Gpu, GpuScan, _module
from subtool.hostinfo.host import plain_name, read_text, whole_number

AMD_VENDOR_ID = "0x1002"


def _call(smi, fn, *args):
    try:
        return fn(*args)
    except smi.AmdSmiException:
        return None


def _known(value) -> str:
    text = str(value or "").strip()
    return "" if text in ("", "N/A") else text


def _number(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _vram_type(smi, raw) -> str:
    try:
        name = smi.AmdSmiVramType(raw).name
    except (ValueError, TypeError, AttributeError):
        return ""
    return "" if name == "UNKNOWN" else name


def _amd_gpu(smi, handle) -> Gpu:
    asic = _call(smi, smi.amdsmi_get_gpu_asic_info, handle) or {}
    board = _call(smi, smi.amdsmi_get_gpu_board_info, handle) or {}
    vram = _call(smi, smi.amdsmi_get_gpu_vram_info, handle) or {}
    clock = _call(smi, smi.amdsmi_get_clock_info, handle, smi.AmdSmiClkType.GFX) or {}
    pcie = (_call(smi, smi.amdsmi_get_pcie_info, handle) or {}).get("pcie_static", {})
    modes = [
        _known(_call(smi, smi.amdsmi_get_gpu_compute_partition, handle)),
        _known(_call(smi, smi.amdsmi_get_gpu_memory_partition, handle)),
    ]
    name = _known(asic.get("market_name")) or _known(board.get("product_name")) or "AMD GPU"
    return Gpu(
        name=name if name.upper().startswith("AMD") else f"AMD {name}",
        memory_mib=_number(vram.get("vram_size")),  # amdsmi gives MB
        clock_mhz=_number(clock.get("max_clk")),
        pcie_gen=_number(pcie.get("pcie_interface_version")),
        pcie_width=_number(pcie.get("max_pcie_width")),
        memory_type=_vram_type(smi, vram.get("vram_type")),
        partition_mode="/".join(m for m in modes if m),
    )


def _xgmi(smi, handles: list) -> tuple[str, str]:
    """(interconnect, topology) from the link type and hop count of every pair of GPUs."""
    if len(handles) < 2:
        return "", ""
    links = [_call(smi, smi.amdsmi_topo_get_link_type, a, b) or {} for a, b in itertools.combinations(handles, 2)]
    xgmi = smi.AmdSmiLinkType.AMDSMI_LINK_TYPE_XGMI
    if links and all(link.get("type") == xgmi for link in links):
        hops = {link.get("hops") for link in links}
        topology = "xGMI between every pair of GPUs" + (" (1 hop)" if hops == {1} else "")
        return "xGMI (AMD Infinity Fabric)", topology
    pcie = smi.AmdSmiLinkType.AMDSMI_LINK_TYPE_PCIE
    return ("PCIe", "") if links and all(link.get("type") == pcie for link in links) else ("", "")


def amdsmi_scan() -> GpuScan | None:
    """AMD GPUs through amdsmi; None when it is absent (it needs ROCm's libamd_smi.so) or sees no GPU."""
    smi = _module("amdsmi")
    if smi is None:
        return None
    try:
        smi.amdsmi_init()
    except Exception:  # AmdSmiLibraryException, or the binding's own errors when the driver is absent
        return None
    try:
        handles = list(smi.amdsmi_get_processor_handles())
        gpus = [_amd_gpu(smi, h) for h in handles]
        info = (_call(smi, smi.amdsmi_get_gpu_driver_info, handles[0]) or {}) if handles else {}
        interconnect, topology = _xgmi(smi, handles)
    except Exception:  # AmdSmiException; a binding of another ROCm release without a call or an enum member
        return None  # the next source (sysfs) is asked: detection never ends in a traceback
    finally:
        with contextlib.suppress(Exception):
            smi.amdsmi_shut_down()
    if not gpus:
        return None
    driver = " ".join(p for p in (_known(info.get("driver_name")), _known(info.get("driver_version"))) if p)
    return GpuScan(gpus, AMDSMI, "AMD", f"AMD {driver}" if driver else "", "", interconnect, topology)


def _read(path: Path) -> str:
    return (read_text(path) or "").strip()


def sysfs_amd_scan(root: Path | str = "/sys/class/drm") -> GpuScan | None:
    """AMD GPUs the amdgpu driver lists: card*/device with vendor 0x1002, its product name and VRAM size."""
    gpus = []
    for card in sorted(Path(root).glob("card[0-9]*")):
        dev = card / "device"
        if "-" in card.name or _read(dev / "vendor").lower() != AMD_VENDOR_ID:
            continue  # connectors (card0-DP-1) and other vendors' cards
        vram = whole_number(_read(dev / "mem_info_vram_total"), 2**44)  # bytes; 16 TiB is past any GPU
        device = _read(dev / "device")
        name = plain_name(_read(dev / "product_name")) or f"AMD GPU (device {plain_name(device, 10) or '?'})"
        gpus.append(Gpu(name, vram // 2**20 if vram else None))
    return GpuScan(gpus, SYS_DRM, "AMD") if gpus else None
