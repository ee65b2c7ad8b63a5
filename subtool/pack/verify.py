"""`subtool pack --verify`: proof that a tarball and its companions are what `subtool pack` checked.

It re-hashes the artifacts and every member against the `.sha256` manifest, unpacks the tarball through the
project's one safe extraction (safe_tar: the member, size, ratio and PAX-header limits and the gzip trailer check
that `subtool score` applies) and re-runs the checker there with the rules version recorded at pack time.

The manifest is not signed: whoever hands the tarball in can edit it. So the waivers it names are not taken on
trust. Only the waivers a short run explains (SHORT_RUN_WAIVERS) are applied, and the output says which ones and
that they came from the manifest; any other waiver in it is a problem and is not applied, so a manifest that
waives its way past an INVALID result does not verify.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape

from subtool.errors import SubtoolError
from subtool.fsutil import sha256_file, wrong_kind
from subtool.pack.manifest import Manifest, parse_manifest
from subtool.pack.tarball import read_tarball

# A short run (the competitions' shortened runs) breaks exactly this rule on purpose (checker/RULES.md).
SHORT_RUN_WAIVERS = frozenset({"perf.min_duration"})
_MAX_MANIFEST_BYTES = 64 << 20


@dataclass
class VerifyResult:
    ok: bool
    tarball: Path
    manifest: Path
    version: str
    waive: tuple[str, ...]  # the waivers applied (taken from the manifest, short-run ones only)
    verdict: str  # the re-run checker's: PASS | FAIL | "" (not re-run: the files are damaged)
    members_checked: int
    artifacts_checked: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    waivers_refused: tuple[str, ...] = ()
    waivers_from: str = "manifest"

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "tarball": str(self.tarball),
            "manifest": str(self.manifest),
            "version": self.version,
            "waive": list(self.waive),
            "waivers_from": self.waivers_from,
            "waivers_refused": list(self.waivers_refused),
            "verdict": self.verdict,
            "members_checked": self.members_checked,
            "artifacts_checked": self.artifacts_checked,
            "problems": list(self.problems),
            "notes": list(self.notes),
        }


def _manifest_path(tarball: Path) -> tuple[str, Path]:
    name = tarball.name
    for suffix in (".tar.gz", ".tgz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name, tarball.with_name(f"{name}.sha256")


def _read_manifest(tarball: Path) -> tuple[str, Path, Manifest]:
    if not tarball.is_file():
        raise SubtoolError(f"the tarball {wrong_kind(tarball)}", path=tarball, rule="pack.verify")
    name, manifest_path = _manifest_path(tarball)
    if not manifest_path.is_file():
        raise SubtoolError(
            "no manifest beside the tarball",
            path=manifest_path,
            rule="pack.verify",
            hint="keep the .sha256 file that `subtool pack` wrote next to the tarball",
        )
    if manifest_path.stat().st_size > _MAX_MANIFEST_BYTES:
        raise SubtoolError(
            f"the manifest is larger than {_MAX_MANIFEST_BYTES >> 20} MiB", path=manifest_path, rule="pack.manifest"
        )
    text = manifest_path.read_text(encoding="utf-8", errors="replace")
    return name, manifest_path, parse_manifest(text, manifest_path)


def split_waivers(manifest: Manifest) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(applied, refused): the manifest's waivers that a short run explains, and the others."""
    asked = sorted(set(manifest.waive))
    return (tuple(w for w in asked if w in SHORT_RUN_WAIVERS), tuple(w for w in asked if w not in SHORT_RUN_WAIVERS))


def _artifact_problems(tarball: Path, manifest_path: Path, manifest: Manifest, name: str) -> list[str]:
    problems = []
    if manifest.name != name:
        problems.append(f"the manifest is for {manifest.name}.tar.gz, not {tarball.name} (renamed?)")
    tar_entry = f"{manifest.name}.tar.gz"
    if tar_entry not in manifest.artifacts:
        problems.append(f"the manifest has no hash for {tar_entry}")
    for fname, digest in sorted(manifest.artifacts.items()):
        target = tarball if fname == tar_entry else manifest_path.with_name(fname)
        if target.is_symlink():
            problems.append(f"{fname}: a symbolic link, not the file that was packed")
        elif not target.is_file():
            problems.append(f"{fname}: missing (listed in the manifest)")
        elif sha256_file(target) != digest:
            problems.append(f"{fname}: sha256 differs from the manifest (changed after packing)")
    return problems


def _member_problems(members: dict[str, str], manifest: Manifest) -> list[str]:
    problems = [f"{m}: in the manifest but not in the tarball" for m in sorted(set(manifest.members) - set(members))]
    problems += [f"{m}: in the tarball but not in the manifest" for m in sorted(set(members) - set(manifest.members))]
    problems += [
        f"{m}: sha256 differs from the manifest"
        for m in sorted(set(members) & set(manifest.members))
        if members[m] != manifest.members[m]
    ]
    return problems


def _recheck(unpacked: Path, manifest: Manifest, applied: tuple[str, ...]) -> tuple[str, list[str]]:
    from subtool.pack.checking import finding_views, run_checker
    from subtool.pack.checking import verdict as verdict_of

    report = run_checker(unpacked, manifest.version, frozenset(applied))
    verdict = verdict_of(report)
    problems = [
        f"checker: {f.rule} {f.path}: {f.message}" for f in finding_views(report, unpacked) if f.severity == "error"
    ]
    if manifest.verdict and manifest.verdict != verdict:
        problems.append(f"the checker now says {verdict}; at pack time it said {manifest.verdict}")
    return verdict, problems, report


def _summary_problems(report, unpacked: Path, manifest_path: Path, name: str) -> list[str]:
    """The summary CSV and JSON beside the tarball against the re-check's own: the manifest is unsigned, so a
    result edited in them and re-hashed into it is found only here."""
    import json

    from subtool.checker.report import write_summary_csv
    from subtool.pack.checking import portable_report
    from subtool.pack.summary import summary_rows

    problems = []
    with tempfile.TemporaryDirectory(prefix="subtool-verify-summary-") as tmp:
        fresh = Path(tmp) / "summary.csv"
        write_summary_csv(portable_report(report, unpacked), fresh)
        handed = manifest_path.with_name(f"{name}_summary.csv")
        if _plain_file(handed) and handed.read_bytes() != fresh.read_bytes():
            problems.append(f"{handed.name}: differs from the summary of the re-check (edited after packing)")
        handed = manifest_path.with_name(f"{name}_summary.json")
        if _plain_file(handed):
            try:
                rows = {k: v for k, v in json.loads(handed.read_bytes()).items() if k != "subtool"}
            except (ValueError, AttributeError, RecursionError):
                rows = None
            if rows != summary_rows(fresh):
                problems.append(f"{handed.name}: its result rows differ from the re-check's (edited after packing)")
    return problems


def _plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def verify_tarball(path: Path, version: str = "v6.1", console=None) -> VerifyResult:
    tarball = Path(path)
    say = console.print if console is not None else (lambda *a, **k: None)
    name, manifest_path, manifest = _read_manifest(tarball)
    applied, refused = split_waivers(manifest)
    notes = []
    if manifest.version != version:
        notes.append(f"re-checked with the rules recorded at pack time ({manifest.version}), not {version}")
    notes.append(
        "waivers applied, taken from the manifest (unsigned: whoever hands in can edit it): "
        + (", ".join(applied) or "none")
    )
    problems = [f"the manifest waives {w}, which a short run cannot explain: not applied" for w in refused]
    problems += _artifact_problems(tarball, manifest_path, manifest, name)

    verdict = ""
    with tempfile.TemporaryDirectory(prefix="subtool-verify-") as tmp:
        unpacked = Path(tmp) / "tree"
        unpacked.mkdir()
        members, tar_problems = read_tarball(tarball, unpacked)
        problems += tar_problems
        if not tar_problems:
            problems += _member_problems(members, manifest)
            say(
                f"verify: re-checking {len(members)} files (rules {manifest.version}, waived from the manifest: "
                + (", ".join(applied) or "none")
                + ")",
                highlight=False,
                markup=False,
            )
            verdict, check_problems, report = _recheck(unpacked, manifest, applied)
            problems += check_problems
            problems += _summary_problems(report, unpacked, manifest_path, name)

    result = VerifyResult(
        ok=not problems,
        tarball=tarball,
        manifest=manifest_path,
        version=manifest.version,
        waive=applied,
        verdict=verdict,
        members_checked=len(members),
        artifacts_checked=len(manifest.artifacts),
        problems=problems,
        notes=notes,
        waivers_refused=refused,
    )
    _say(say, result)
    return result


def _say(say, result: VerifyResult) -> None:
    for note in result.notes:
        say(f"verify: {note}", highlight=False, markup=False)
    name = escape(result.tarball.name)
    if result.ok:
        say(
            f"[bold green]verified[/]: {name} matches its manifest ({result.members_checked} files, "
            f"{result.artifacts_checked} artifacts) and the checker says {result.verdict}.",
            highlight=False,
        )
        return
    say(f"[bold red]verify failed[/]: {len(result.problems)} problem(s) with {name}:", highlight=False)
    for problem in result.problems[:20]:
        say(f"  {problem}", highlight=False, markup=False)
