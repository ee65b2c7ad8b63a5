"""The files handed in beside a tarball are compared with what the tarball holds: a summary JSON that claims
another result, .tstamps from another day, a tarball re-packed after the manifest was written, missing files,
the same team handed in twice. Each is a flag; the rules decide which flags disqualify."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from result_records import result_record
from typer.testing import CliRunner

from subtool.cli import app
from subtool.pack.inputs import date_u
from subtool.scoring.integrity import Flag, check_tstamps, parse_tstamp
from subtool.scoring.rules import default_rules_text

NAME = "mlperf_submission_short"


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=4))


def _repack(tarball: Path, member: str, change) -> None:
    """Rebuild the tarball with one member's bytes changed (a hand edit after `subtool pack`)."""
    with tarfile.open(tarball, "r:gz") as old:
        items = [(m, old.extractfile(m).read() if m.isfile() else None) for m in old.getmembers()]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as new:
        for info, data in items:
            if data is not None and info.name == member:
                data = change(data)
                info.size = len(data)
            new.addfile(info, io.BytesIO(data) if data is not None else None)
    tarball.write_bytes(gzip.compress(raw.getvalue(), mtime=0))


def _flags(doc: dict) -> dict[str, list[tuple[str, str]]]:
    return {e["teams"][0]: sorted((f["rule"], f["message"]) for f in e["flags"]) for e in doc["entries"]}


def test_mismatches_are_flagged_and_the_rules_decide_which_disqualify(sc_copy, tmp_path):
    handins = sc_copy(["Alpha", "Beta", "Gamma", "Delta", "Epsilon"])
    # Alpha claims 1.5× its BERT throughput
    claimed = {}

    def boost(data):
        row = next(r for k, r in data.items() if k.isdigit() and r["Model"] == "bert-99")
        claimed["value"] = row["Result"] * 1.5
        row["Result"] = claimed["value"]

    _edit_json(handins / "Alpha" / f"{NAME}_summary.json", boost)

    # Epsilon claims a better accuracy and a result it never ran
    def dress_up(data):
        data["0"]["Accuracy"] = "F1: 95.0"
        data["1"] = {**data["0"], "Model": "bert-99.9", "MlperfModel": "bert-99.9"}

    _edit_json(handins / "Epsilon" / f"{NAME}_summary.json", dress_up)
    # Beta's .tstamps say the runs happened a day earlier (later would be after the scoring: implausible)
    tstamps = handins / "Beta" / f"{NAME}.tstamps"
    shifted = [date_u(parse_tstamp(ln) - timedelta(days=1)) for ln in tstamps.read_text().splitlines()]
    tstamps.write_text("\n".join(shifted) + "\n")
    # Gamma edited accuracy.txt inside the tarball after packing
    target = "open/Gamma/results/cluster/bert-99/Offline/accuracy/accuracy.txt"
    _repack(handins / "Gamma" / f"{NAME}.tar.gz", target, lambda b: b.replace(b'"f1": 90.874', b'"f1": 90.999'))
    # Delta handed in no .run, and edited its .md after packing
    (handins / "Delta" / f"{NAME}.run").unlink()
    md = handins / "Delta" / f"{NAME}.md"
    md.write_text(md.read_text() + "\nWe also won the hackathon.\n")

    rules = tmp_path / "rules.toml"
    rules.write_text(
        default_rules_text().replace(
            'disqualify = ["entry.duplicate", "entry.several_teams", "entry.several_systems", '
            '"system.accelerators_contradict"]',
            'disqualify = ["summary.result_mismatch"]',
        )
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["score", str(handins), "--out", str(out), "--rules", str(rules), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "leaderboard.json").read_text())
    flags = _flags(doc)

    # a companion edited after packing no longer matches the manifest either
    assert [rule for rule, _ in flags["Alpha"]] == ["manifest.artifact_mismatch", "summary.result_mismatch"]
    assert flags["Alpha"][0][1] == f"{NAME}_summary.json changed after packing (sha256 differs)"
    assert f"says Alpha/cluster/bert-99/Offline = {claimed['value']:g}, the tarball's log says" in flags["Alpha"][1][1]
    assert [rule for rule, _ in flags["Epsilon"]] == [
        "manifest.artifact_mismatch",
        "summary.accuracy_mismatch",
        "summary.unknown_result",
    ]
    assert "F1: 95.0" in flags["Epsilon"][1][1] and "bert-99.9" in flags["Epsilon"][2][1]
    assert [rule for rule, _ in flags["Beta"]] == ["manifest.artifact_mismatch", "tstamps.outside"]
    assert flags["Beta"][1][1].startswith("Beta/cluster/bert-99/Offline ran ")
    assert [rule for rule, _ in flags["Gamma"]] == [
        "manifest.member_mismatch",
        "manifest.tarball_mismatch",
        "summary.accuracy_mismatch",
        "summary.tarball_hash",
    ]
    assert flags["Gamma"][0][1] == f"{target} differs from the manifest"
    assert flags["Delta"] == [
        ("handin.missing_file", f"no {NAME}.run beside the tarball"),
        ("manifest.artifact_mismatch", f"{NAME}.md changed after packing (sha256 differs)"),
    ]

    nvidia = next(c for c in doc["categories"] if c["name"] == "NVIDIA GPUs")
    overall = {r["team"]: r for r in nvidia["overall"]}
    assert overall["Alpha"]["status"] == "disqualified"  # the one flag the rules disqualify on
    assert overall["Alpha"]["reason"].startswith("summary.result_mismatch: ")
    assert overall["Epsilon"]["status"] == "ranked" and overall["Epsilon"]["flags"] == [
        "manifest.artifact_mismatch",
        "summary.accuracy_mismatch",
        "summary.unknown_result",
    ]
    ranked = {r["team"] for c in doc["categories"] for r in c["overall"] if r["status"] == "ranked"}
    assert ranked == {"Beta", "Gamma", "Delta", "Epsilon"}
    md_text = (out / "leaderboard.md").read_text()
    assert "## Flags (handed-in files that disagree with the tarball)" in md_text and "tstamps.outside" in md_text


def test_the_same_team_handed_in_twice_is_flagged_and_held_on_both(sc_copy, tmp_path):
    handins = sc_copy(["Beta"])
    sc_copy(["Beta"], dest="handins/resubmitted")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["score", str(handins), "--out", str(out), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "leaderboard.json").read_text())
    log = "open/Beta/results/cluster/bert-99/Offline/performance/run_1/mlperf_log_detail.txt"
    assert [e["flags"] for e in doc["entries"]] == [
        [
            {"rule": "entry.duplicate", "message": f"Beta/cluster is also in handins/resubmitted/Beta/{NAME}.tar.gz"},
            {
                "rule": "entry.copied_logs",
                "message": f"{log} is byte for byte in handins/resubmitted/Beta/{NAME}.tar.gz "
                "too: one LoadGen run handed in twice",
            },
        ],
        [
            {"rule": "entry.duplicate", "message": f"Beta/cluster is also in handins/Beta/{NAME}.tar.gz"},
            {
                "rule": "entry.copied_logs",
                "message": f"{log} is byte for byte in handins/Beta/{NAME}.tar.gz too: one LoadGen run handed in twice",
            },
        ],
    ]
    # the default rules hold both (one team never takes two places) and name the other input
    rows = next(c for c in doc["categories"] if c["name"] == "AMD GPUs")["overall"]
    assert [(r["rank"], r["status"], r["input"]) for r in rows] == [
        (None, "disqualified", f"handins/Beta/{NAME}.tar.gz"),
        (None, "disqualified", f"handins/resubmitted/Beta/{NAME}.tar.gz"),
    ]
    assert rows[0]["reason"].startswith(f"entry.duplicate: Beta/cluster is also in handins/resubmitted/Beta/{NAME}")


def test_tstamps_parsing_and_windows(tmp_path):
    assert parse_tstamp("Fri Nov  6 01:02:03 UTC 2026") == datetime(2026, 11, 6, 1, 2, 3, tzinfo=timezone.utc)
    assert parse_tstamp("2026-11-06T01:02:03Z") == datetime(2026, 11, 6, 1, 2, 3, tzinfo=timezone.utc)
    assert parse_tstamp("yesterday") is None
    begin = datetime(2026, 11, 26, 1, 52, 6, tzinfo=timezone.utc)
    path = tmp_path / "x.tstamps"
    path.write_text(f"{date_u(begin)}\n{date_u(begin + timedelta(minutes=3))}\n")
    inside = ("T/s/bert-99/Offline", begin + timedelta(seconds=5), begin + timedelta(minutes=2))
    late = ("T/s/bert-99/Server", begin + timedelta(minutes=10), begin + timedelta(minutes=11))
    assert check_tstamps(str(path), [inside], 0) == []
    assert [f.rule for f in check_tstamps(str(path), [inside, late], 120)] == ["tstamps.outside"]
    assert check_tstamps(str(path), [late], 900) == []  # slack covers it
    path.write_text(f"{date_u(begin)}\n")
    assert check_tstamps(str(path), [inside], 0) == [
        Flag("tstamps.unreadable", "x.tstamps has 1 lines: not before/after pairs")
    ]
    path.write_text("Thursday, late\n")
    assert check_tstamps(str(path), [inside], 0)[0].message.startswith("x.tstamps line 1 is not a `date -u` time")


def test_tstamps_in_years_no_run_was_in_are_unreadable_not_a_crash(tmp_path):
    # year 1 at +14:00 is before datetime's first UTC moment; year 9999 overflows once the slack is added
    for line in (
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T01:00:00",
        "9999-12-31T23:59:59Z",
        "Mon Jan 01 00:00:00 UTC 0001",
    ):
        assert parse_tstamp(line) is None, line
    path = tmp_path / "x.tstamps"
    path.write_text("0001-01-01T00:00:00+14:00\n0001-01-01T01:00:00+14:00\n")
    begin = datetime(2026, 11, 26, 1, 52, 6, tzinfo=timezone.utc)
    flags = check_tstamps(str(path), [("T/s/bert-99/Offline", begin, begin)], 120)
    assert [f.rule for f in flags] == ["tstamps.unreadable"] and "line 1" in flags[0].message


def test_a_companion_that_is_a_symbolic_link_is_flagged_and_never_read(sc_copy, tmp_path):
    handins = sc_copy(["Beta"])
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    tstamps = handins / "Beta" / f"{NAME}.tstamps"
    tstamps.unlink()
    tstamps.symlink_to(secret)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["score", str(handins), "--out", str(out), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "leaderboard.json").read_text())
    assert _flags(doc)["Beta"] == [
        ("handin.linked_file", f"{NAME}.tstamps is a symbolic link: handed-in files must be files")
    ]
    assert "root:x" not in "".join(p.read_text() for p in out.iterdir() if p.is_file())


def test_a_name_differing_only_in_case_is_the_same_team_so_its_impersonator_is_refused(sc_handins, sc_copy, tmp_path):
    import shutil

    import teamgen

    handins = sc_copy(["Beta", "Gamma"])
    tree = tmp_path / "tree"  # Beta's tree handed in again as "beta", packed by subtool
    shutil.copytree(sc_handins["_trees"] / "Beta" / "tree", tree)
    (tree / "open" / "Beta").rename(tree / "open" / "beta")
    system = tree / "open" / "beta" / "systems" / "cluster.json"
    system.write_text(system.read_text().replace('"Beta', '"beta'))
    teamgen.pack_team(tree, handins / "upload-9")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["score", str(handins), "--out", str(out), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "leaderboard.json").read_text())
    entries = {e["input"].split("/")[1]: e for e in doc["entries"]}
    # the same team as Beta, filed where nothing names Beta: refused as Beta's impersonator, Beta left alone
    # (flagging both as duplicates let anyone get Beta disqualified by handing in as "beta")
    assert entries["upload-9"]["error"]["rule"] == "entry.impersonation"
    assert not [f for f in entries["Beta"]["flags"] if f["rule"].startswith("entry.")]
    overall = {r["team"]: r for c in doc["categories"] for r in c["overall"]}
    assert overall["Beta"]["status"] == "ranked" and "beta" not in overall
    assert overall["Gamma"]["status"] == "ranked"


# ----------------------------------------------------- survivors of a mutation probe: each fails on its mutant
def test_a_tstamps_pair_that_ends_before_it_begins_is_unreadable_whatever_the_slack(tmp_path):
    begin = datetime(2026, 11, 26, 1, 52, 6, tzinfo=timezone.utc)
    path = tmp_path / "x.tstamps"
    path.write_text(f"{date_u(begin + timedelta(minutes=3))}\n{date_u(begin)}\n")  # after, then before
    inside = ("T/s/bert-99/Offline", begin + timedelta(seconds=5), begin + timedelta(minutes=2))
    assert check_tstamps(str(path), [inside], 900) == [
        Flag("tstamps.unreadable", "x.tstamps pair 1 ends before it begins")
    ]


def _record(scenario: str, value, division: str = "open", passed: bool = True):
    return result_record(
        "T",
        "bert-99",
        scenario,
        value,
        division=division,
        accuracy="f1=90.5",
        passed=passed,
        performance_ok=passed,
        failed=[],
        reasons=[],
    )


def _summary(tmp_path: Path, *rows: dict) -> str:
    path = tmp_path / "x_summary.json"
    path.write_text(json.dumps({str(i): row for i, row in enumerate(rows)}))
    return str(path)


def _row(scenario: str, result, division: str = "open") -> dict:
    return {
        "Division": division,
        "Organization": "T",
        "Platform": "box",
        "Model": "bert-99",
        "Scenario": scenario,
        "Result": result,
        "Accuracy": "f1=90.5",
    }


def test_a_passing_result_without_a_summary_row_is_flagged(tmp_path):
    from subtool.scoring.integrity import check_summary

    results = [_record("Offline", 100.0), _record("Server", 50.0), _record("SingleStream", 1.0, passed=False)]
    flags = check_summary(_summary(tmp_path, _row("Offline", 100.0)), results, None, None)
    assert [(f.rule, "Server" in f.message) for f in flags] == [("summary.missing_result", True)]


def test_a_summary_row_without_a_result_for_a_result_with_one_is_flagged_and_vice_versa(tmp_path):
    from subtool.scoring.integrity import check_summary

    for said, real in ((None, 100.0), (100.0, None)):
        flags = check_summary(_summary(tmp_path, _row("Offline", said)), [_record("Offline", real)], None, None)
        assert [f.rule for f in flags] == ["summary.result_mismatch"], (said, real)
    assert check_summary(_summary(tmp_path, _row("Offline", None)), [_record("Offline", None)], None, None) == []


def test_a_summary_row_is_matched_to_the_result_of_its_own_division_first(tmp_path):
    from subtool.scoring.integrity import check_summary

    results = [_record("Offline", 100.0, division="closed"), _record("Offline", 200.0, division="open")]
    rows = (_row("Offline", 100.0, division="closed"), _row("Offline", 200.0, division="open"))
    assert check_summary(_summary(tmp_path, *rows), results, None, None) == []


def test_the_manifest_check_flags_a_member_missing_or_extra_and_a_tarball_it_does_not_name(tmp_path):
    from subtool.pack.manifest import Manifest
    from subtool.scoring.integrity import check_manifest

    tarball = tmp_path / "x.tar.gz"
    tarball.write_bytes(b"not read: its hash is given")
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    manifest = Manifest("x", "v6.1", (), "PASS", "0.1.0", artifacts={"x.tar.gz": a}, members={"open/T/f": b})
    path = tmp_path / "x.sha256"
    path.write_text(manifest.render())
    assert check_manifest(str(path), tarball, a, {"open/T/f": b}) == []
    missing = check_manifest(str(path), tarball, a, {})
    extra = check_manifest(str(path), tarball, a, {"open/T/f": b, "open/T/g": c})
    assert [(f.rule, f.message) for f in missing + extra] == [
        ("manifest.member_mismatch", "open/T/f is in the manifest but not in the tarball"),
        ("manifest.member_mismatch", "open/T/g is in the tarball but not in the manifest"),
    ]
    manifest.artifacts = {}
    path.write_text(manifest.render())
    assert [f.rule for f in check_manifest(str(path), tarball, a, {"open/T/f": b})] == ["manifest.tarball_mismatch"]


def test_a_companion_file_over_16_mib_is_flagged_unread(tmp_path):
    """A hand-in's .tstamps (or summary, or manifest) is a few lines: a huge one is flagged by its size, never read
    into the scorer's memory (a sparse file: no disk is spent)."""
    path = tmp_path / "x.tstamps"
    with open(path, "wb") as fh:
        fh.truncate((16 << 20) + 1)
    begin = datetime(2026, 11, 26, 1, 52, 6, tzinfo=timezone.utc)
    flags = check_tstamps(str(path), [("T/s/bert-99/Offline", begin, begin)], 0)
    assert flags == [Flag("tstamps.unreadable", "x.tstamps is larger than 16 MiB")]
    with open(path, "r+b") as fh:
        fh.truncate(16 << 20)  # at the limit: read (and then found not to be times)
    assert "larger than" not in check_tstamps(str(path), [("T/s/bert-99/Offline", begin, begin)], 0)[0].message


def test_a_tstamps_pair_that_would_hold_any_run_or_lies_ahead_is_implausible(tmp_path):
    """1970 to 9998 holds every LoadGen run there is: the check of the windows must not pass on it."""
    path = tmp_path / "x.tstamps"
    begin = datetime(2026, 11, 26, 1, 52, 6, tzinfo=timezone.utc)
    inside = ("T/s/bert-99/Offline", begin, begin + timedelta(minutes=2))
    path.write_text("Thu Jan  1 00:00:00 UTC 1970\nFri Dec 31 23:59:59 UTC 9998\n")
    [flag] = check_tstamps(str(path), [inside], 120)
    assert (
        flag.rule == "tstamps.implausible" and "pair 1 ends 9998-12-31 23:59:59 UTC, after the scoring" in flag.message
    )
    path.write_text(f"{date_u(begin - timedelta(days=30))}\n{date_u(begin + timedelta(days=1))}\n")
    [flag] = check_tstamps(str(path), [inside], 120)
    assert flag == Flag("tstamps.implausible", "x.tstamps pair 1 spans 31.0 days: one run takes hours")
    path.write_text(f"{date_u(begin - timedelta(days=6))}\n{date_u(begin + timedelta(days=1))}\n")
    assert check_tstamps(str(path), [inside], 120) == []  # a week is allowed


def test_a_summary_that_gives_one_row_twice_is_unreadable(sc_copy, tmp_path):
    """json.loads keeps the last of two "0" rows: a lie first and the truth after it passed every comparison."""
    handins = sc_copy(["Alpha"])
    summary = handins / "Alpha" / f"{NAME}_summary.json"
    text = summary.read_text()
    row = json.loads(text)["0"]
    summary.write_text(text.replace('"0":', f'"0": {json.dumps({**row, "Result": 99999999.0})}, "0":', 1))
    manifest = handins / "Alpha" / f"{NAME}.sha256"
    manifest.unlink()  # optional, unsigned: without it only the summary's own reading can catch the lie
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["score", str(handins), "--out", str(out), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    flags = _flags(json.loads((out / "leaderboard.json").read_text()))["Alpha"]
    assert (
        "summary.unreadable",
        f"{NAME}_summary.json repeats the key '0' in one object (which value was meant?)",
    ) in flags


def test_accelerator_count_and_name_that_contradict_are_flagged_held_and_shown_as_named(sc_logs, sc_copy, tmp_path):
    """An H100 system that says accelerators_per_node 0 would rank among the CPUs, shown by its CPU; 4 × N/A
    would too. Each is flagged and held by the default rules; an honest CPU system (0 × N/A) is not."""
    import teamgen

    handins = sc_copy(["Gamma"])
    for team, run, fields in (
        ("Gpu0", 0, {"accelerators_per_node": "0"}),
        ("Na4", 1, {"accelerator_model_name": "N/A", "accelerators_per_node": "4"}),
    ):
        spec = teamgen.TeamSpec(team, overrides=fields, results={"bert-99": run})
        handin = teamgen.make_team(tmp_path / "work", sc_logs, spec)["tarball"].parent
        handin.rename(handins / team)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["score", str(handins), "--out", str(out), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "leaderboard.json").read_text())
    rows = {r["team"]: r for c in doc["categories"] for r in c["overall"]}
    assert rows["Gamma"]["status"] == "ranked" and rows["Gamma"]["flags"] == []
    assert rows["Gamma"]["accelerator"] == "CPU: Intel Xeon Platinum 8480+"
    for team, said in (("Gpu0", "0 and accelerator_model_name 'NVIDIA H100-SXM-80GB'"), ("Na4", "4 and ")):
        assert rows[team]["status"] == "disqualified" and rows[team]["flags"] == ["system.accelerators_contradict"]
        reason = rows[team]["reason"]
        assert f"system.accelerators_contradict: {team}/cluster says accelerators_per_node {said}" in reason
    assert rows["Gpu0"]["accelerator"] == "NVIDIA H100-SXM-80GB"  # the accelerator it names, not its CPU
    assert "system.accelerators\\_contradict" in (out / "leaderboard.md").read_text()  # _ escaped in Markdown


def test_what_subtool_system_writes_for_a_cpu_only_machine_names_no_accelerator():
    # "N/A (CPU only)" with 0 accelerators was flagged as a contradiction: subtool's own demo hand-in was held
    from subtool.hostinfo.fields import CPU_ONLY_ACCELERATOR
    from subtool.scoring.integrity import named_accelerator

    for said in (CPU_ONLY_ACCELERATOR, "N/A", "none", "CPU only", "", " n/a (no GPU) "):
        assert named_accelerator({"accelerator_model_name": said}) == "", said
    assert named_accelerator({"accelerator_model_name": "NVIDIA H100 (SXM)"}) == "NVIDIA H100 (SXM)"
