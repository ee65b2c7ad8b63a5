"""What every bench/ result records about how it was made: the exact command, the machine and its load.

Each script calls `Provenance()` when it starts (the load average then) and merges `prov.record()` into the JSON
it writes (the load average at the end). A reader of bench/results/*.json can then re-run the same command and
see whether the machine was idle or shared:

    "command": "python bench/pack_speed.py --mb 128",          # argv as given, quoted for a shell
    "machine": {"cpus": 2, "cpu_model": "AMD EPYC", "gpu": null, "python": "3.11.7", "platform": "...",
                "torch": "2.13.0+cpu", "loadgen": "6.0.17", ...},
    "load": {"start": [1.2, 0.9, 0.7], "end": [1.9, 1.1, 0.8]},  # os.getloadavg(): 1, 5 and 15 minutes
    "started": "2026-12-02T15:31:02Z", "finished": "2026-12-02T15:31:09Z"

Versions are read from the installed distributions (importlib.metadata), so recording them imports neither torch
nor LoadGen. A field this machine cannot tell is None (no GPU) or "absent" (package not installed).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOT_RECORDED = "not recorded"
PACKAGES = {
    "torch": "torch",
    "transformers": "transformers",
    "loadgen": "mlcommons-loadgen",
    "ray": "ray",
    "triton": "triton",
    "subtool": "mlperf-subtool",
}


def command(argv: list[str] | None = None) -> str:
    """The command line that ran this script, as one shell-quoted string: `python bench/<script>.py ARGS…`."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    try:
        script_text = script.relative_to(REPO).as_posix()
    except ValueError:
        script_text = argv[0]
    return shlex.join(["python", script_text, *argv[1:]])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpus() -> list[str]:
    """The GPUs' names from nvidia-smi (no torch import); [] when there is none or no driver."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def package_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def machine() -> dict:
    found = gpus()
    info = {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "gpu": found[0] if found else None,
        "gpus": len(found),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    info.update({key: package_version(dist) for key, dist in PACKAGES.items()})
    torch = sys.modules.get("torch")  # the build string (…+cu130) once the script imported torch
    if torch is not None:
        info["torch"] = getattr(torch, "__version__", info["torch"])
    return info


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Provenance:
    """Take one at the start of a bench; merge `record()` into its JSON at the end."""

    def __init__(self, argv: list[str] | None = None) -> None:
        self.command = command(argv)
        self.started = utc()
        self.load_start = load()

    def record(self, **machine_extra) -> dict:
        return {
            "command": self.command,
            "machine": {**machine(), **machine_extra},
            "load": {"start": self.load_start, "end": load()},
            "started": self.started,
            "finished": utc(),
        }

    def write(self, result: dict, path: Path, **machine_extra) -> dict:
        """Merge `record(**machine_extra)` into `result` and write it to `path` whole or not at all (a temporary
        file beside it, then a rename): a bench killed mid-write leaves the last result, never half of one."""
        result.update(self.record(**machine_extra))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return result
