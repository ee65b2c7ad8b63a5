"""What `subtool all` reports: the Outcome (its `--json` document and exit code) and the one-screen summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from subtool.errors import EXIT_CHECK_FAILED, EXIT_OK

__all__ = ["Outcome", "print_summary"]


@dataclass
class Outcome:
    out: Path
    stages: dict[str, str]  # stage → "done" | "skipped (unchanged)" | "not asked"
    run: dict = field(default_factory=dict)  # the run record's headline
    check_ok: bool | None = None
    findings: list[dict] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    publish: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CHECK_FAILED if self.check_ok is False else EXIT_OK

    def to_dict(self) -> dict:
        return {
            "ok": self.exit_code == EXIT_OK,  # as in the error document every command prints on failure
            "out": str(self.out),
            "stages": self.stages,
            "run": self.run,
            "check_ok": self.check_ok,
            "findings": self.findings,
            "artifacts": self.artifacts,
            "publish": self.publish,
            "exit_code": self.exit_code,
        }


def print_summary(outcome: Outcome, console, seconds: float) -> None:
    from rich.table import Table

    from subtool.pack.report import format_number

    run = outcome.run
    table = Table(title=f"subtool all — {seconds:.0f} s", show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # a path too long for the width folds onto the next line, never cut
    label = f"{run.get('model')} {run.get('scenario')}"
    if run.get("demo"):
        label += " (embedded demo: random weights, open division)"
    table.add_row("benchmark", label)
    table.add_row("run style", str(run.get("run_style")))
    if run.get("result") is not None:
        table.add_row("result", f"{run['result']:.2f} {run.get('units') or ''} ({run.get('validity')})")
    if run.get("accuracy"):
        acc = run["accuracy"]
        table.add_row("accuracy", ", ".join(f"{k} {format_number(v)}" for k, v in acc.items()))
    for key, title in (("ttft_ms", "TTFT (ms)"), ("tpot_ms", "TPOT (ms)")):
        if run.get(key):
            table.add_row(title, ", ".join(f"{p} {format_number(v)}" for p, v in run[key].items()))
    if outcome.check_ok is not None:
        waived = sorted({f["rule"] for f in outcome.findings if f.get("severity") == "waived"})
        errors = [f for f in outcome.findings if f.get("severity") == "error"]
        verdict = "[green]PASS[/]" if outcome.check_ok else f"[red]FAIL[/] ({len(errors)} errors)"
        if waived:
            verdict += f" — waived: {', '.join(waived)}"
        table.add_row("checker", verdict)
    for key, path in outcome.artifacts.items():
        table.add_row(key, str(path))
    if outcome.publish:
        for key in ("branch", "pr_url", "compare_url"):
            if outcome.publish.get(key):
                table.add_row(key, str(outcome.publish[key]))
    for name, status in outcome.stages.items():
        table.add_row(f"stage {name}", status)
    console.print(table)
