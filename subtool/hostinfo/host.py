"""What the host is — CPU, memory, storage, network, OS — each value with where it came from.

psutil (the `system` extra) answers what it knows (core counts, frequency, memory, disk size, link speeds); what
it does not know, or everything when it is not installed, comes from /proc, /sys and `lscpu` as before. Every
reader here returns a value and its source (`library: psutil`, `file: /proc/cpuinfo`, `command: lscpu`), and
never raises on a missing or unreadable file: the value is then "not detected".
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import selectors
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

NOT_DETECTED = "not detected"
PSUTIL = "library: psutil"
CPUINFO = "file: /proc/cpuinfo"
SYSFS_CPU = "file: /sys/devices/system/cpu"
LSCPU = "command: lscpu"
MAX_READ = 16 * 1024 * 1024  # /proc/cpuinfo of a 4096-thread host is under 10 MB; a larger file is not the real one
# A value past these is a lie of a file or a tool, not a record: it is left unknown, never written down.
MAX_CPUS = 8192  # the most CPUs Linux supports (NR_CPUS on x86-64 with MAXSMP)
MAX_MEMORY_BYTES = 2**52  # the most physical memory 52-bit addresses reach (x86-64, arm64)
MAX_MHZ = 100_000  # no processor clocks near 100 GHz
MAX_LINK_MBIT = 10**7  # 10 Tbit/s: the fastest Ethernet is 1.6 Tbit/s
EXITED_POLL_S = 0.1  # while a command prints nothing, how often run_capped looks whether it has ended


def read_text(path: str | Path) -> str | None:
    """A /proc or /sys file's text; None when it is unreadable (a folder, a link loop) or over MAX_READ (/dev/zero
    never ends). A FIFO is opened without waiting for a writer, which would block the read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with open(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_READ + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace") if len(data) <= MAX_READ else None


def whole_number(text: str, most: int) -> int | None:
    """A count or size as a file or tool writes it (ASCII digits, 1 to `most`); else None."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(most)):
        return None  # "²" passes isdigit but not int(); 5000 digits pass neither
    return int(text) if 0 < int(text) <= most else None


def plain_name(text: str, longest: int = 200) -> str:
    """A model name as read, or "" when it is garbage: control characters, undecodable bytes, or too long."""
    text = text.strip()
    return text if text.isprintable() and "\ufffd" not in text and len(text) <= longest else ""


def run_capped(argv: list[str], limit: int, timeout: float) -> tuple[int, bytes]:
    """(exit status, output) of a command whose output is read up to `limit` + 1 bytes: one that prints more is
    stopped there (the caller sees the extra byte), one that runs past `timeout` seconds raises TimeoutExpired.
    The output ends when the command does, even where a process it left behind (a wrapper script's `daemon &`)
    holds the pipe open.
    stderr is not kept: capture_output would hold all of it, and of stdout, in memory before any cap."""
    deadline = time.monotonic() + timeout
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        out = bytearray()
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                while len(out) <= limit:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise subprocess.TimeoutExpired(argv, timeout)
                    if not sel.select(min(left, EXITED_POLL_S)):
                        if proc.poll() is not None:
                            break  # it ended, and what it left running holds the pipe open: no EOF will come
                        continue
                    chunk = os.read(proc.stdout.fileno(), 1 << 16)
                    if not chunk:
                        break
                    out += chunk
            if len(out) > limit:
                proc.kill()
            return proc.wait(max(0.0, deadline - time.monotonic())), bytes(out)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


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
        if k in ("model name", "Processor", "cpu model") and "model" not in facts and (name := plain_name(v)):
            facts["model"] = name
        elif k == "physical id":
            facts["sockets"].add(v)
        elif k == "cpu cores" and "cores_per_socket" not in facts and (cores := whole_number(v, MAX_CPUS)):
            facts["cores_per_socket"] = cores
        elif k == "cpu MHz" and "mhz" not in facts:
            try:
                facts["mhz"] = float(v)
            except ValueError:
                pass
    if not _clock_ok(facts.get("mhz")):
        facts.pop("mhz", None)  # nan, inf, negative: no clock
    return facts


def _clock_ok(mhz) -> bool:
    return isinstance(mhz, (int, float)) and math.isfinite(mhz) and 0 < mhz <= MAX_MHZ


def lscpu_facts() -> dict[str, str]:
    """`lscpu -J` as {field: value} (the ARM hosts' CPU model and socket count live here, not in /proc)."""
    exe = shutil.which("lscpu")
    if not exe:
        return {}
    try:
        status, out = run_capped([exe, "-J"], MAX_READ, timeout=10)
        rows = json.loads(out).get("lscpu", []) if status == 0 and len(out) <= MAX_READ else []
    except (OSError, subprocess.SubprocessError, ValueError, AttributeError):
        return {}
    return {
        str(r.get("field", "")).rstrip(":"): str(r.get("data", ""))
        for r in rows
        if isinstance(r, dict) and r.get("data") is not None
    }


def _frequency(psutil, facts: dict[str, Any], root: str | Path) -> tuple[str, str]:
    if psutil is not None:
        try:
            freq = psutil.cpu_freq()
        except (OSError, RuntimeError, NotImplementedError):
            freq = None
        if freq is not None and _clock_ok(freq.max):
            return f"{freq.max:.0f} MHz", PSUTIL
    max_khz = whole_number(
        read_text(Path(root, "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")) or "", MAX_MHZ * 1000
    )
    if max_khz:
        return f"{max_khz / 1000:.0f} MHz", SYSFS_CPU
    if facts.get("mhz"):
        return f"{facts['mhz']:.0f} MHz", CPUINFO
    return NOT_DETECTED, "guessed"


def _caches(root: str | Path) -> tuple[str, str]:
    caches = []
    base = Path(root, "sys/devices/system/cpu/cpu0/cache")
    for idx in sorted(base.glob("index*")) if base.is_dir() else []:
        level, kind, size = ((read_text(idx / n) or "").strip() for n in ("level", "type", "size"))
        if whole_number(level, 9) and re.fullmatch(r"[0-9]{1,9}[KMG]", size):  # "48K", as the kernel writes it
            tag = {"Data": "d", "Instruction": "i"}.get(kind, "")
            caches.append(f"L{level}{tag} {size}")
    return (", ".join(caches), SYSFS_CPU) if caches else (NOT_DETECTED, "guessed")


def _sockets_and_model(facts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    lscpu: dict[str, str] | None = None
    if facts.get("model"):
        values["model"], sources["model"] = facts["model"], CPUINFO
    if 0 < len(facts["sockets"]) <= MAX_CPUS:
        values["sockets"], sources["sockets"] = len(facts["sockets"]), CPUINFO
    if "model" not in values or "sockets" not in values:
        lscpu = lscpu_facts()
        if "model" not in values and (name := plain_name(lscpu.get("Model name", ""))):
            values["model"], sources["model"] = name, LSCPU
        if "sockets" not in values and (sockets := whole_number(lscpu.get("Socket(s)", ""), MAX_CPUS)):
            values["sockets"], sources["sockets"] = sockets, LSCPU
    if "model" not in values:
        values["model"], sources["model"] = platform.processor() or NOT_DETECTED, "library: platform"
    if "sockets" not in values:
        values["sockets"], sources["sockets"] = 1, "guessed"
    values["sockets"] = max(1, values["sockets"])
    return values, sources


def cpu_info(*, root: str | Path = "/") -> tuple[dict[str, Any], dict[str, str]]:
    """(model, sockets, cores_per_socket, logical, frequency, caches) and the source of each; `root` holds the
    proc/ and sys/ read (tests point it at a folder of their own)."""
    psutil = psutil_module()
    facts = _cpuinfo_facts(read_text(Path(root, "proc/cpuinfo")) or "")
    values, sources = _sockets_and_model(facts)
    physical = None
    if psutil is not None:
        try:
            physical = psutil.cpu_count(logical=False)
        except (OSError, RuntimeError):
            physical = None
    if physical and 0 < physical <= MAX_CPUS:
        values["cores_per_socket"] = max(1, physical // values["sockets"])
        sources["cores_per_socket"] = PSUTIL
    elif facts.get("cores_per_socket"):
        values["cores_per_socket"], sources["cores_per_socket"] = facts["cores_per_socket"], CPUINFO
    else:
        values["cores_per_socket"] = max(1, (os.cpu_count() or 1) // values["sockets"])
        sources["cores_per_socket"] = "library: os.cpu_count"
    values["logical"] = os.cpu_count() or 1
    values["frequency"], sources["frequency"] = _frequency(psutil, facts, root)
    values["caches"], sources["caches"] = _caches(root)
    return values, sources


# --------------------------------------------------------------------------------- memory, disks, network
def memory_bytes(*, root: str | Path = "/") -> tuple[int | None, str]:
    psutil = psutil_module()
    if psutil is not None:
        try:
            total = int(psutil.virtual_memory().total)
        except (OSError, RuntimeError):
            total = 0
        if 0 < total <= MAX_MEMORY_BYTES:
            return total, PSUTIL
    for line in (read_text(Path(root, "proc/meminfo")) or "").splitlines():
        parts = line.split()
        if (
            line.startswith("MemTotal:")
            and len(parts) >= 2
            and (kib := whole_number(parts[1], MAX_MEMORY_BYTES // 1024))
        ):
            return kib * 1024, "file: /proc/meminfo"
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


def storage(path: str = "/", *, root: str | Path = "/") -> tuple[tuple[str, str], tuple[str, str]]:
    """((capacity, source), (type, source)): the size of the file system holding `path`, the kinds of disk that
    `root`/sys/block lists."""
    total, total_src = _disk_total(path)
    capacity = (human_bytes(total), total_src) if total else (NOT_DETECTED, "guessed")
    kinds = set()
    for dev in Path(root, "sys/block").glob("*"):
        if dev.name.startswith(("loop", "ram", "zram", "dm-", "sr")):
            continue
        rot = (read_text(dev / "queue" / "rotational") or "").strip()
        if rot not in ("0", "1"):
            continue
        kinds.add("NVMe SSD" if dev.name.startswith("nvme") else ("HDD" if rot == "1" else "SSD"))
    kind = (" + ".join(sorted(kinds)), "file: /sys/block/*/queue/rotational") if kinds else (NOT_DETECTED, "guessed")
    return capacity, kind


def _link_speeds() -> dict[str, int]:
    psutil = psutil_module()
    if psutil is None:
        return {}
    try:
        return {
            name: int(s.speed) for name, s in psutil.net_if_stats().items() if s.speed and 0 < s.speed <= MAX_LINK_MBIT
        }
    except (OSError, RuntimeError):
        return {}


def network(*, root: str | Path = "/") -> tuple[str, int, str]:
    """(description, physical NIC count, source): NICs with a device behind them, not lo/bridges/ifb."""
    speeds = _link_speeds()
    nics = []
    from_psutil = False
    for dev in sorted(Path(root, "sys/class/net").glob("*")):
        if not (dev / "device").exists():
            continue
        mbit = speeds.get(dev.name, 0)
        from_psutil = from_psutil or bool(mbit)
        if not mbit:  # the kernel writes -1 when the link is down or its speed unknown
            mbit = whole_number(read_text(dev / "speed") or "", MAX_LINK_MBIT) or 0
        nics.append(f"{dev.name}" + (f" {mbit // 1000} Gbit/s" if mbit >= 1000 else ""))
    source = "file: /sys/class/net" + (f" + {PSUTIL}" if from_psutil else "")
    return (f"Ethernet ({', '.join(nics)})" if nics else "none"), len(nics), source


def os_name() -> str:
    try:
        pretty = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        pretty = None
    return f"{pretty or platform.system()} (kernel {platform.release()})"
