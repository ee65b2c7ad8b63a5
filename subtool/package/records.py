"""What packaging produces and passes between its phases: the planned results and the report of what was written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subtool.mlperf.layout import ResultKey
from subtool.package.importers import ImportedResult


@dataclass
class PackagedResult:
    division: str
    submitter: str
    system: str
    model: str
    scenario: str
    path: Path
    run_style: str
    demo: bool
    benchmark: str = ""
    source: str = ""
    replaced: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "division": self.division,
            "submitter": self.submitter,
            "system": self.system,
            "model": self.model,
            "benchmark": self.benchmark,
            "scenario": self.scenario,
            "path": str(self.path),
            "run_style": self.run_style,
            "demo": self.demo,
            "source": self.source,
            "replaced": self.replaced,
            "notes": list(self.notes),
        }


@dataclass
class PackageResult:
    tree: Path
    version: str
    full_logs: Path
    results: list[PackagedResult] = field(default_factory=list)
    systems: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tree": str(self.tree),
            "version": self.version,
            "full_logs": str(self.full_logs),
            "results": [r.to_dict() for r in self.results],
            "systems": [str(s) for s in self.systems],
            "notes": list(self.notes),
        }


@dataclass
class Planned:
    """One result, checked and ready to write: where it goes and the files computed for it."""

    key: ResultKey
    imp: ImportedResult
    accuracy_txt: str
    accuracy_line: str | None
    measurements: dict
    user_conf_text: str
