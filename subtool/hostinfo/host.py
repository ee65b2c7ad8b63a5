"""What the host is — CPU, memory, storage, network, OS — each value with where it came from.

psutil (the `system` extra) answers what it knows (core counts, frequency, memory, disk size, link speeds); what
it does not know, or everything when it is not installed, comes from /proc, /sys and `lscpu` as before. Every
reader here returns a value and its source (`library: psutil`, `file: /proc/cpuinfo`, `command: lscpu`), and
never raises on a missing or unreadable file: the value is then "not detected".
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

NOT_DETECTED = "not detected"
PSUTIL = "library: psutil"
CPUINFO = "file: /proc/cpuinfo"
SYSFS_CPU = "file: /sys/devices/system/cpu"
LSCPU = "command: lscpu"


def read_text(path: str | Path) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def human_bytes(n: float) -> str:
    gb = n / 1e9
    if gb >= 1000:
        return f"{gb / 1000:.1f} TB"
    return f"{gb:.0f} GB" if gb >= 10 else f"{gb:.1f} GB"


def psutil_module():
    """psutil when installed (the `system` extra), else None: every caller has a reader of its own."""
    try:
        import psutil
    except ImportError:
        return None
    return psutil


# ------------------------------------------------------------------------------------------------ CPU
def _cpuinfo_facts(text: str) -> dict[str, Any]:
    facts: dict[str, Any] = {"sockets": set()}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if not sep:
            continue
        k, v = k.strip(), v.strip()
        if k in ("model name", "Processor", "cpu model") and v and "model" not in facts:
            facts["model"] = v
        elif k == "physical id":
            facts["sockets"].add(v)
        elif k == "cpu cores" and v.isdigit() and "cores_per_socket" not in facts:
            facts["cores_per_socket"] = int(v)
        elif k == "cpu MHz" and "mhz" not in facts:
            try:
                facts["mhz"] = float(v)
            except ValueError:
                pass
    return facts


def lscpu_facts() -> dict[str, str]:
    """`lscpu -J` as {field: value} (the ARM hosts' CPU model and socket count live here, not in /proc)."""
    exe = shutil.which("lscpu")
    if not exe:
        return {}
    try:
        out = subprocess.run([exe, "-J"], capture_output=True, text=True, timeout=10, check=True).stdout
        rows = json.loads(out).get("lscpu", [])
    except (OSError, subprocess.SubprocessError, ValueError, AttributeError):
        return {}
    return {
        str(r.get("field", "")).rstrip(":"): str(r.get("data", ""))
        for r in rows
        if isinstance(r, dict) and r.get("data") is not None
    }


def _frequency(psutil, facts: dict[str, Any]) -> tuple[str, str]:
    if psutil is not None:
        try:
            freq = psutil.cpu_freq()
        except (OSError, RuntimeError, NotImplementedError):
            freq = None
        if freq is not None and freq.max and freq.max > 0:
            return f"{freq.max:.0f} MHz", PSUTIL
    max_khz = (read_text("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") or "").strip()
    if max_khz.isdigit():
        return f"{int(max_khz) / 1000:.0f} MHz", SYSFS_CPU
    if facts.get("mhz"):
        return f"{facts['mhz']:.0f} MHz", CPUINFO
    return NOT_DETECTED, "guessed"


def _caches() -> tuple[str, str]:
    caches = []
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for idx in sorted(base.glob("index*")) if base.is_dir() else []:
        level, kind, size = (read_text(idx / n) for n in ("level", "type", "size"))
        if level and size:
            tag = {"Data": "d", "Instruction": "i"}.get((kind or "").strip(), "")
            caches.append(f"L{level.strip()}{tag} {size.strip()}")
    return (", ".join(caches), SYSFS_CPU) if caches else (NOT_DETECTED, "guessed")


def _sockets_and_model(facts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    lscpu: dict[str, str] | None = None
    if facts.get("model"):
        values["model"], sources["model"] = facts["model"], CPUINFO
    if facts["sockets"]:
        values["sockets"], sources["sockets"] = len(facts["sockets"]), CPUINFO
    if "model" not in values or "sockets" not in values:
        lscpu = lscpu_facts()
        if "model" not in values and lscpu.get("Model name"):
            values["model"], sources["model"] = lscpu["Model name"], LSCPU
        if "sockets" not in values and lscpu.get("Socket(s)", "").isdigit():
            values["sockets"], sources["sockets"] = int(lscpu["Socket(s)"]), LSCPU
    if "model" not in values:
        values["model"], sources["model"] = platform.processor() or NOT_DETECTED, "library: platform"
    if "sockets" not in values:
        values["sockets"], sources["sockets"] = 1, "guessed"
    values["sockets"] = max(1, values["sockets"])
    return values, sources


def cpu_info() -> tuple[dict[str, Any], dict[str, str]]:
    """(model, sockets, cores_per_socket, logical, frequency, caches) and the source of each."""
    psutil = psutil_module()
    facts = _cpuinfo_facts(read_text("/proc/cpuinfo") or "")
    values, sources = _sockets_and_model(facts)
    physical = None
    if psutil is not None:
        try:
            physical = psutil.cpu_count(logical=False)
        except (OSError, RuntimeError):
            physical = None
    if physical:
        values["cores_per_socket"] = max(1, physical // values["sockets"])
        sources["cores_per_socket"] = PSUTIL
    elif facts.get("cores_per_socket"):
        values["cores_per_socket"], sources["cores_per_socket"] = facts["cores_per_socket"], CPUINFO
    else:
        values["cores_per_socket"] = max(1, (os.cpu_count() or 1) // values["sockets"])
        sources["cores_per_socket"] = "library: os.cpu_count"
    values["logical"] = os.cpu_count() or 1
    values["frequency"], sources["frequency"] = _frequency(psutil, facts)
    values["caches"], sources["caches"] = _caches()
    return values, sources


# --------------------------------------------------------------------------------- memory, disks, network
def memory_bytes() -> tuple[int | None, str]:
    psutil = psutil_module()
    if psutil is not None:
        try:
            return int(psutil.virtual_memory().total), PSUTIL
        except (OSError, RuntimeError):
            pass
    for line in (read_text("/proc/meminfo") or "").splitlines():
        parts = line.split()
        if line.startswith("MemTotal:") and len(parts) >= 2 and parts[1].isdigit():
            return int(parts[1]) * 1024, "file: /proc/meminfo"
    return None, "guessed"


def _disk_total(path: str) -> tuple[int | None, str]:
    psutil = psutil_module()
    if psutil is not None:
        try:
            return int(psutil.disk_usage(path).total), PSUTIL
        except (OSError, RuntimeError):
            pass
    try:
        return shutil.disk_usage(path).total, "library: shutil.disk_usage"
    except OSError:
        return None, "guessed"


def storage(path: str = "/") -> tuple[tuple[str, str], tuple[str, str]]:
    """((capacity, source), (type, source)): the size of the file system holding `path`, the kinds of disk."""
    total, total_src = _disk_total(path)
    capacity = (human_bytes(total), total_src) if total else (NOT_DETECTED, "guessed")
    kinds = set()
    for dev in Path("/sys/block").glob("*"):
        if dev.name.startswith(("loop", "ram", "zram", "dm-", "sr")):
            continue
        rot = read_text(dev / "queue" / "rotational")
        if rot is None:
            continue
        kinds.add("NVMe SSD" if dev.name.startswith("nvme") else ("HDD" if rot.strip() == "1" else "SSD"))
    kind = (" + ".join(sorted(kinds)), "file: /sys/block/*/queue/rotational") if kinds else (NOT_DETECTED, "guessed")
    return capacity, kind


def _link_speeds() -> dict[str, int]:
    psutil = psutil_module()
    if psutil is None:
        return {}
    try:
        return {name: int(s.speed) for name, s in psutil.net_if_stats().items() if s.speed and s.speed > 0}
    except (OSError, RuntimeError):
        return {}


def network() -> tuple[str, int, str]:
    """(description, physical NIC count, source): NICs with a device behind them, not lo/bridges/ifb."""
    speeds = _link_speeds()
    nics = []
    from_psutil = False
    for dev in sorted(Path("/sys/class/net").glob("*")):
        if not (dev / "device").exists():
            continue
        mbit = speeds.get(dev.name, 0)
        from_psutil = from_psutil or bool(mbit)
        if not mbit:
            raw = (read_text(dev / "speed") or "").strip()
            mbit = int(raw) if raw.lstrip("-").isdigit() else 0
        nics.append(f"{dev.name}" + (f" {mbit // 1000} Gbit/s" if mbit >= 1000 else ""))
    source = "file: /sys/class/net" + (f" + {PSUTIL}" if from_psutil else "")
    return (f"Ethernet ({', '.join(nics)})" if nics else "none"), len(nics), source


def os_name() -> str:
    try:
        pretty = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        pretty = None
    return f"{pretty or platform.system()} (kernel {platform.release()})"
