"""Where each file of a result lives in the official submission tree, per submission round.

One place for the path rules: the current layout (v6.0, v6.1) keeps measurements and compliance runs inside
`results/`, and the code in `src/`; the legacy layout (v5.0, v5.1) splits them into `measurements/`,
`compliance/` and `code/`. Everything else in `submission/` asks this module instead of joining paths itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from subtool.errors import SubtoolError

DIVISIONS = ("closed", "open")
SCENARIOS = ("Offline", "Server", "SingleStream", "MultiStream", "Interactive")
CURRENT_VERSIONS = ("v6.1", "v6.0")
LEGACY_VERSIONS = ("v5.1", "v5.0")
VERSIONS = CURRENT_VERSIONS + LEGACY_VERSIONS
DEFAULT_VERSION = "v6.1"

# The official checker rejects names with spaces or a leading dot, and a `/` would change the tree's depth.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def check_name(value: str, what: str, *, flag: str | None = None) -> str:
    """Refuse a submitter/system/model name that cannot be a directory of the official tree."""
    if not value or not _NAME_RE.match(value) or value in (".", ".."):
        raise SubtoolError(
            f"{what} {value!r} cannot be a directory name in the submission tree",
            rule="package.bad_name",
            hint=(
                f"use letters, digits, '.', '_', '+' and '-' only (no spaces or '/'), e.g. "
                f"{re.sub(r'[^A-Za-z0-9._+-]+', '_', value).strip('._') or 'TeamX'!r}" + (f" in {flag}" if flag else "")
            ),
        )
    return value


def check_version(version: str) -> str:
    if version not in VERSIONS:
        raise SubtoolError(
            f"unknown submission round {version!r}",
            rule="package.bad_version",
            hint=f"use one of {', '.join(VERSIONS)}",
        )
    return version


@dataclass(frozen=True)
class ResultKey:
    """Names one result of the tree."""

    division: str
    submitter: str
    system: str
    model: str
    scenario: str

    def label(self) -> str:
        return f"{self.division}/{self.submitter}/{self.system}/{self.model}/{self.scenario}"


@dataclass(frozen=True)
class Layout:
    """Path templates of one submission round, relative to the tree root."""

    version: str

    @property
    def legacy(self) -> bool:
        return self.version in LEGACY_VERSIONS

    # -- per submitter ----------------------------------------------------------------------------------
    def submitter_dir(self, division: str, submitter: str) -> Path:
        return Path(division) / submitter

    def src_dir(self, division: str, submitter: str) -> Path:
        return self.submitter_dir(division, submitter) / ("code" if self.legacy else "src")

    def documentation_dir(self, division: str, submitter: str) -> Path:
        return self.submitter_dir(division, submitter) / "documentation"

    def system_json(self, division: str, submitter: str, system: str) -> Path:
        return self.submitter_dir(division, submitter) / "systems" / f"{system}.json"

    def model_mapping(self, division: str, submitter: str) -> Path:
        return self.submitter_dir(division, submitter) / "model_mapping.json"

    # -- per result ---------------------------------------------------------------------------------------
    def result_dir(self, key: ResultKey) -> Path:
        """performance/run_1 and accuracy live here (both layouts)."""
        return self.submitter_dir(key.division, key.submitter) / "results" / key.system / key.model / key.scenario

    def measurements_dir(self, key: ResultKey) -> Path:
        """measurements.json (v5: <system>_<scenario>.json), user.conf, README.md, mlperf.conf."""
        if self.legacy:
            return (
                self.submitter_dir(key.division, key.submitter) / "measurements" / key.system / key.model / key.scenario
            )
        return self.result_dir(key)

    def measurements_file(self, key: ResultKey) -> Path:
        # v5.x checkers look for a file that starts with the system name and ends with `_<scenario>.json`.
        name = f"{key.system}_{key.scenario}.json" if self.legacy else "measurements.json"
        return self.measurements_dir(key) / name

    def compliance_dir(self, key: ResultKey, test: str) -> Path:
        if self.legacy:
            return (
                self.submitter_dir(key.division, key.submitter)
                / "compliance"
                / key.system
                / key.model
                / key.scenario
                / test
            )
        return self.result_dir(key) / test

    def owned_dirs(self, key: ResultKey) -> list[Path]:
        """Every directory that belongs to exactly this result (what a replacement removes)."""
        dirs = [self.result_dir(key)]
        if self.legacy:
            dirs.append(self.measurements_dir(key))
            dirs.append(self.compliance_dir(key, "TEST01").parent)
        return dirs


def layout_for(version: str) -> Layout:
    return Layout(check_version(version))
