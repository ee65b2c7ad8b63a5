"""What one result check needs: the job (plain, picklable data) and the context the rules read it through."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

from subtool.checker.findings import Collector
from subtool.mlperf.layout import FILE, LINK, Listings, listing
from subtool.mlperf.logs import LoadgenLog, read_loadgen_log
from subtool.mlperf.round import SCENARIO_BY_LOWER, ModelRules, RoundConfig, round_config


@dataclass(frozen=True)
class ResultJob:
    root: str
    version: str
    division: str
    submitter: str
    system: str
    model: str  # folder name
    scenario: str  # folder name
    mlperf_model: str  # benchmark the folder resolves to
    system_json: dict | None
    # the tree walk's folder listings, shared by every job of one check (never copied: workers are forked)
    listings: Listings | None = field(default=None, compare=False, hash=False, repr=False)
    generation: str | None = None  # the layout the submitter folder shows ("v5" | "v6"), else the round's

    @property
    def result_id(self) -> str:
        return f"{self.division}/{self.submitter}/results/{self.system}/{self.model}/{self.scenario}"


@dataclass
class ResultContext:
    job: ResultJob
    out: Collector = field(default_factory=Collector)

    def __post_init__(self) -> None:
        self.out.result = self.job.result_id
        self._listings: dict[str, dict[str, str]] = {}
        self._root = os.path.join(self.job.root, "")  # with its trailing separator

    # ---- configuration
    @cached_property
    def cfg(self) -> RoundConfig:
        return round_config(self.job.version)

    @cached_property
    def rules(self) -> ModelRules | None:
        return self.cfg.model(self.job.mlperf_model)

    @property
    def division(self) -> str:
        return self.job.division

    @property
    def closed_like(self) -> bool:
        return self.job.division in ("closed", "network")

    @property
    def scenario(self) -> str:
        """The folder's scenario in canonical spelling (folder name when it is not a known scenario)."""
        return SCENARIO_BY_LOWER.get(self.job.scenario.lower(), self.job.scenario)

    # ---- paths (relative ones for messages, absolute ones for reading)
    @cached_property
    def submitter_rel(self) -> str:
        return f"{self.job.division}/{self.job.submitter}"

    @cached_property
    def result_rel(self) -> str:
        return self.job.result_id

    @cached_property
    def measurements_rel(self) -> str:
        return f"{self.submitter_rel}/" + self.cfg.layout.measurements(
            self.job.system, self.job.model, self.job.scenario
        )

    @cached_property
    def compliance_rel(self) -> str:
        return f"{self.submitter_rel}/" + self.cfg.layout.compliance(self.job.system, self.job.model, self.job.scenario)

    def abs(self, rel: str) -> str:
        return self._root + rel  # (os.path.join for each of a result's ~17 paths costs more than it does)

    def entries(self, rel_dir: str) -> dict[str, str]:
        """A folder's entries by name → kind; listed once per check (the tree walk's listing when it made one).

        Symbolic links are left out: the tree scan reports each one (tree.symlink), and no rule reads through
        one. A folder that cannot be listed is empty here (the scan reports it as tree.unreadable).
        """
        found = self._listings.get(rel_dir)
        if found is None:
            kinds = listing(self.abs(rel_dir), self.job.listings) or {}
            found = {name: kind for name, kind in kinds.items() if kind != LINK}
            self._listings[rel_dir] = found
        return found

    def exists(self, rel: str) -> bool:
        parent, _, name = rel.rpartition("/")
        return name in self.entries(parent)

    def is_file(self, rel: str) -> bool:
        parent, _, name = rel.rpartition("/")
        return self.entries(parent).get(name) == FILE

    def size(self, rel: str) -> int | None:
        """Size of a file in a listed folder (not through a link); None when absent."""
        parent, _, name = rel.rpartition("/")
        if name not in self.entries(parent):
            return None
        try:
            return os.stat(self.abs(rel), follow_symlinks=False).st_size
        except OSError:
            return None

    def files(self, rel_dir: str) -> list[str]:
        return [name for name, kind in self.entries(rel_dir).items() if kind == FILE]

    # ---- logs, each parsed once
    @cached_property
    def perf_rel(self) -> str:
        return f"{self.result_rel}/performance/run_1/mlperf_log_detail.txt"

    @cached_property
    def acc_rel(self) -> str:
        return f"{self.result_rel}/accuracy/mlperf_log_detail.txt"

    @cached_property
    def perf_log(self) -> LoadgenLog | None:
        return self.log(self.perf_rel)

    @cached_property
    def acc_log(self) -> LoadgenLog | None:
        return self.log(self.acc_rel)

    def log(self, rel: str) -> LoadgenLog | None:
        if not self.is_file(rel):
            return None
        return read_loadgen_log(self.abs(rel))

    # ---- what the summary row needs, filled in by the rules
    result_value: float | None = None
    accuracy_metrics: dict = field(default_factory=dict)
    inferred: bool = False
