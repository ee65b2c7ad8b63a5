"""The host's memory configuration (its DIMMs), from `dmidecode -t memory` where it is readable.

dmidecode reads the SMBIOS tables, which only root may read on most systems; elsewhere (or without dmidecode)
the configuration stays "not detected" and is listed among the fields to fill in. The parser never raises: an
unreadable, cut-short or garbage output gives no configuration, never a wrong one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass

from subtool.hostinfo.host import run_capped

DMIDECODE = "command: dmidecode -t memory"
_UNITS = {"KB": 1 / (1024 * 1024), "MB": 1 / 1024, "GB": 1, "TB": 1024}
MAX_OUTPUT = 4 * 1024 * 1024  # a real machine's table is a few hundred kB at most
DMIDECODE_TIMEOUT_S = 20.0
MAX_DIMM_GB = 64 * 1024  # no memory module holds 64 TB: a size past it is garbage, not a module


@dataclass(frozen=True)
class Dimm:
    size_gb: float
    kind: str  # DDR5, LPDDR5, …
    speed: str  # "4800 MT/s", or "" when unknown


def _size_gb(text: str) -> float | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB)", text.strip(), flags=re.IGNORECASE)
    return float(m.group(1)) * _UNITS[m.group(2).upper()] if m else None


def _device_blocks(text: str) -> list[dict[str, str]]:
    """The `Memory Device` sections of dmidecode's output, each as {key: value}."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            current = {} if line.strip() == "Memory Device" else None
            if current is not None:
                blocks.append(current)
            continue
        if current is not None:
            key, sep, value = line.strip().partition(":")
            if sep:
                current.setdefault(key.strip(), value.strip())
    return blocks


def parse_dimms(text: str) -> tuple[list[Dimm], int]:
    """(installed modules, slots) from `dmidecode -t memory` output; ([], 0) when it holds none."""
    dimms = []
    blocks = _device_blocks(text)
    for block in blocks:
        size = _size_gb(block.get("Size", ""))
        if not size or not 0 < size <= MAX_DIMM_GB:
            continue  # "No Module Installed", "Unknown", garbage, a number that overflows to inf
        kind = block.get("Type", "")
        kind = "" if kind in ("Unknown", "Other", "<OUT OF SPEC>") else kind
        speed = block.get("Configured Memory Speed") or block.get("Speed") or ""
        speed = speed if re.fullmatch(r"\d+ (MT/s|MHz)", speed) else ""
        dimms.append(Dimm(size, kind, speed))
    return dimms, len(blocks)


def _size_label(gb: float) -> str:
    return f"{gb / 1024:g} TB" if gb >= 1024 else f"{gb:g} GB"


def describe_dimms(dimms: list[Dimm], slots: int) -> str | None:
    """e.g. `16x 64 GB DDR5 4800 MT/s (16 of 24 slots)`; None without modules."""
    if not dimms:
        return None
    groups = Counter(dimms)
    parts = [
        " ".join(p for p in (f"{n}x {_size_label(d.size_gb)}", d.kind, d.speed) if p)
        for d, n in sorted(groups.items(), key=lambda kv: (-kv[1], -kv[0].size_gb, kv[0].kind, kv[0].speed))
    ]
    tail = f" ({len(dimms)} of {slots} slots)" if slots > len(dimms) else ""
    return " + ".join(parts) + tail


def memory_configuration() -> tuple[str | None, str]:
    """(configuration, source) from dmidecode; (None, why not) where it is absent or not readable."""
    exe = shutil.which("dmidecode")
    if not exe:
        return None, "guessed (dmidecode not installed)"
    try:
        status, out = run_capped([exe, "-t", "memory"], MAX_OUTPUT, DMIDECODE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"guessed (dmidecode did not answer within {DMIDECODE_TIMEOUT_S:g} s)"
    except (OSError, subprocess.SubprocessError):
        return None, "guessed (dmidecode did not answer)"
    if len(out) > MAX_OUTPUT:  # the table cut short would count only the modules before the cut
        return None, f"guessed (dmidecode printed over {MAX_OUTPUT // 2**20} MiB, which is no memory table)"
    config = describe_dimms(*parse_dimms(out.decode("utf-8", errors="replace"))) if status == 0 else None
    if config is None:
        return None, "guessed (dmidecode cannot read the SMBIOS tables here: run as root, or set it)"
    return config, DMIDECODE
