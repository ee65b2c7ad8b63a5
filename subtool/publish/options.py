"""What `subtool publish` is asked (PublishOptions) and what it did (PublishResult), and how it speaks: progress
lines and errors with the token scrubbed out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from subtool.errors import SubtoolError
from subtool.publish.remote import Redactor

__all__ = ["PublishOptions", "PublishResult", "Say", "scrub"]


@dataclass
class PublishOptions:
    tree: Path
    fork: str
    upstream: str | None = None
    base: str = "main"
    branch: str | None = None
    title: str | None = None
    api_url: str | None = None
    token_env: str | None = None
    no_pr: bool = False
    dry_run: bool = False
    cache: Path | None = None
    allow_short: bool = False  # publish DEMO / short-run results (marked as such) instead of refusing them
    replace: bool = False  # the branch holds this tree only, dropping what earlier publishes put there
    # Network behaviour: attempts after the first, first back-off (doubles each time), API pacing.
    retries: int = 3
    backoff_s: float = 1.0
    seconds_between_writes: float = 1.0
    seconds_between_requests: float = 0.25
    max_rate_limit_wait_s: float = 120.0
    timeout_s: float = 30.0


@dataclass
class PublishResult:
    branch: str
    commit: str | None
    pushed: bool
    pr_url: str | None = None
    compare_url: str | None = None
    fork: str = ""
    upstream: str | None = None
    base: str = "main"
    base_commit: str | None = None
    dry_run: bool = False
    up_to_date: bool = False
    pr_number: int | None = None
    pr_created: bool = False
    changes: list[str] = field(default_factory=list)  # "A closed/team/…" lines, base → published tree
    kept: list[str] = field(default_factory=list)  # results already on the branch that stay there
    dropped: list[str] = field(default_factory=list)  # results on the branch that --replace removed
    # results --replace took the branch's copy of but that stay on it, as the base holds them (merged upstream, say)
    reset_to_base: list[str] = field(default_factory=list)
    not_submittable: list[str] = field(default_factory=list)  # DEMO / short-run results on the branch
    title: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Say:
    """Human progress on the console (stderr), with the token scrubbed from every line."""

    def __init__(self, console: Any, redact: Redactor, result_notes: list[str]) -> None:
        self.console = console
        self.redact = redact
        self.notes = result_notes

    def __call__(self, text: str, *, note: bool = False) -> None:
        text = self.redact(text)
        if note:
            self.notes.append(text)
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def scrub(err: SubtoolError, redact: Redactor) -> SubtoolError:
    err.message = redact(err.message)
    err.hint = redact(err.hint) if err.hint else err.hint
    err.args = (err.message,)
    return err
