"""Stand-ins for the host tools system detection runs (nvidia-smi, lscpu, dmidecode): a shell script on the PATH
the test chose, printing what the real tool would on the host the test describes."""

from __future__ import annotations

from pathlib import Path


def fake_tool(bindir: Path, name: str, body: str) -> None:
    exe = bindir / name
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(0o755)
