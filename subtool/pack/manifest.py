"""The `<name>.sha256` manifest: one file that both `sha256sum -c` and `subtool pack --verify` can check.

Plain `<sha256>  <file>` lines cover the artifacts beside it (so organisers can check them with coreutils alone).
Lines starting with `#` are comments to sha256sum; subtool reads two kinds of them: `# key: value` settings
(the rules version and the waivers the checker ran with, so a re-check uses the same ones) and
`# member <sha256>  <path>` lines, one per regular file inside the tarball.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.mlperf.rounds import ROUND_RULE, VERSIONS

MAGIC = "# subtool pack manifest 1"
_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Manifest:
    name: str
    version: str
    waive: tuple[str, ...]
    verdict: str
    subtool_version: str
    artifacts: dict[str, str] = field(default_factory=dict)  # file name beside the manifest → sha256
    members: dict[str, str] = field(default_factory=dict)  # path inside the tarball → sha256

    def render(self) -> str:
        lines = [
            MAGIC,
            f"# Check the artifacts: sha256sum -c {self.name}.sha256",
            "# Check them, every file in the tarball, and re-run the checker: "
            f"subtool pack --verify {self.name}.tar.gz",
            f"# name: {self.name}",
            f"# rules: {self.version}",
            f"# waive: {' '.join(self.waive)}",
            f"# verdict: {self.verdict}",
            f"# subtool: {self.subtool_version}",
        ]
        lines += [f"{digest}  {fname}" for fname, digest in sorted(self.artifacts.items())]
        lines += [f"# member {digest}  {path}" for path, digest in sorted(self.members.items())]
        return "\n".join(lines) + "\n"


def _plain_file_name(name: str) -> bool:
    """A file beside the manifest: one path component, not `.` or `..`, no control characters."""
    return bool(name) and "/" not in name and name not in (".", "..") and not any(ord(c) < 32 for c in name)


def parse_manifest(text: str, source: Path) -> Manifest:
    lines = text.splitlines()
    if not lines or lines[0].strip() != MAGIC:
        raise SubtoolError(
            "not a subtool pack manifest (first line differs)",
            path=source,
            rule="pack.manifest",
            hint="verify needs the .sha256 file that `subtool pack` wrote beside the tarball",
        )
    settings: dict[str, str] = {}
    artifacts: dict[str, str] = {}
    members: dict[str, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        if line.startswith("# member "):
            digest, sep, path = line[len("# member ") :].partition("  ")
            if not sep or not _HEX.match(digest) or not path:
                raise SubtoolError(
                    f"line {number} is not `# member <sha256>  <path>`", path=source, rule="pack.manifest"
                )
            members[path] = digest
        elif line.startswith("# "):
            key, sep, value = line[2:].partition(":")
            if sep and key in ("name", "rules", "waive", "verdict", "subtool"):
                settings[key] = value.strip()
        else:
            digest, sep, fname = line.partition("  ")
            if not sep or not _HEX.match(digest) or not _plain_file_name(fname):
                raise SubtoolError(f"line {number} is not `<sha256>  <file>`", path=source, rule="pack.manifest")
            artifacts[fname] = digest
    for key in ("name", "rules"):
        if not settings.get(key):
            raise SubtoolError(f"the manifest has no `# {key}:` line", path=source, rule="pack.manifest")
    if settings["rules"] not in VERSIONS:  # the re-check would run with no rules at all
        raise SubtoolError(
            f"the manifest's `# rules:` line names {settings['rules']!r}, a round this subtool has no rules for",
            path=source,
            rule=ROUND_RULE,
            hint=f"it knows {', '.join(VERSIONS)}; a tarball packed by a newer subtool needs that version to verify",
        )
    return Manifest(
        name=settings["name"],
        version=settings["rules"],
        waive=tuple(settings.get("waive", "").split()),
        verdict=settings.get("verdict", ""),
        subtool_version=settings.get("subtool", ""),
        artifacts=artifacts,
        members=members,
    )
