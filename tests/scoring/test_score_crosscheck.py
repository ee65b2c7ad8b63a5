"""Impersonation and copies (issue 19, item 5): a tarball that carries another team's folder is refused alone,
the team it imitates is left unflagged; two teams that hand in the same LoadGen logs under different names are
both flagged."""

from __future__ import annotations

import json
import shutil

import teamgen
from typer.testing import CliRunner

from subtool.cli import app

TARBALL = "mlperf_submission_short.tar.gz"


def _score(handins, out):
    result = CliRunner().invoke(app, ["score", str(handins), "--out", str(out), "--jobs", "2", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads((out / "leaderboard.json").read_text())


def _by_folder(doc) -> dict:
    return {e["input"].split("/")[1]: e for e in doc["entries"]}


def test_a_tarball_under_another_teams_folder_is_refused_and_the_owner_left_alone(sc_copy, tmp_path):
    handins = sc_copy(["Alpha", "Beta", "Gamma"])
    shutil.copy(handins / "Alpha" / TARBALL, handins / "Beta" / TARBALL)  # Beta hands in Alpha's results
    doc = _score(handins, tmp_path / "out")
    entries = _by_folder(doc)
    assert entries["Beta"]["error"]["rule"] == "entry.impersonation"
    assert "open/Alpha/" in entries["Beta"]["error"]["message"]
    assert "handins/Alpha/" in entries["Beta"]["error"]["message"]
    assert entries["Alpha"]["error"] is None
    assert not [f for f in entries["Alpha"]["flags"] if f["rule"].startswith("entry.")]
    alpha = next(r for c in doc["categories"] for r in c["overall"] if r["team"] == "Alpha")
    assert alpha["status"] == "ranked" and "entry.duplicate" not in alpha["flags"]


def test_a_team_handed_in_twice_under_folders_that_do_not_say_whose_flags_both(sc_copy, tmp_path):
    handins = sc_copy(["Alpha", "Gamma"])
    shutil.copytree(handins / "Alpha", handins / "upload-17")
    shutil.move(handins / "Alpha", handins / "upload-03")
    doc = _score(handins, tmp_path / "out")
    entries = _by_folder(doc)
    for folder in ("upload-03", "upload-17"):
        assert entries[folder]["error"] is None
        assert {f["rule"] for f in entries[folder]["flags"]} >= {"entry.duplicate", "entry.copied_logs"}


def _gamma_as_kappa(sc_handins, tmp_path):
    """Gamma's tree copied as Kappa's: the team folder and its system description renamed (to pack with subtool)."""
    tree = tmp_path / "kappa-tree"
    shutil.copytree(sc_handins["_trees"] / "Gamma" / "tree", tree)
    (tree / "open" / "Gamma").rename(tree / "open" / "Kappa")
    system = tree / "open" / "Kappa" / "systems" / "cluster.json"
    system.write_text(system.read_text().replace('"Gamma', '"Kappa'))
    return tree


def test_the_same_logs_under_another_name_flag_both_teams(sc_handins, sc_copy, tmp_path):
    handins = sc_copy(["Alpha", "Gamma", "Beta"])
    teamgen.pack_team(_gamma_as_kappa(sc_handins, tmp_path), handins / "Kappa")
    doc = _score(handins, tmp_path / "out")
    entries = _by_folder(doc)
    for team, other in (("Gamma", "Kappa"), ("Kappa", "Gamma")):
        copied = [f for f in entries[team]["flags"] if f["rule"] == "entry.copied_logs"]
        assert len(copied) == 1 and f"handins/{other}/{TARBALL}" in copied[0]["message"]
        assert "mlperf_log_detail.txt" in copied[0]["message"]
    for team in ("Alpha", "Beta"):
        assert not [f for f in entries[team]["flags"] if f["rule"].startswith("entry.")]
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "entry.copied\\_logs" in md  # _ escaped in Markdown


def test_a_copied_log_with_a_line_repeated_is_still_the_same_run(sc_handins, sc_copy, tmp_path):
    """One repeated line changes every byte hash but none of LoadGen's stamps of the run (the first value of each
    key counts): the start and end times and the latencies to the nanosecond still say whose run it is."""
    handins = sc_copy(["Alpha", "Gamma", "Beta"])
    tree = _gamma_as_kappa(sc_handins, tmp_path)
    log = next((tree / "open" / "Kappa" / "results").rglob("performance/run_1/mlperf_log_detail.txt"))
    lines = log.read_text().splitlines(keepends=True)
    again = next(line for line in lines if '"key": "generic_message"' in line)
    log.write_text("".join([*lines, again]))
    teamgen.pack_team(tree, handins / "Kappa")
    entries = _by_folder(_score(handins, tmp_path / "out"))
    for team, other in (("Gamma", "Kappa"), ("Kappa", "Gamma")):
        copied = [f for f in entries[team]["flags"] if f["rule"] == "entry.copied_logs"]
        assert len(copied) == 1 and f"handins/{other}/{TARBALL}" in copied[0]["message"], entries[team]["flags"]
        assert "mlperf_log_detail.txt holds the same LoadGen run" in copied[0]["message"]
    for team in ("Alpha", "Beta"):
        assert not [f for f in entries[team]["flags"] if f["rule"].startswith("entry.")]


def test_a_copy_named_after_its_victim_does_not_get_the_victim_refused(sc_copy, tmp_path):
    # the organisers file hand-ins by number; team07 hands in Alpha's tarball and companions named Alpha.*
    handins = sc_copy(["Alpha", "Gamma"])
    (handins / "Alpha").rename(handins / "team03")
    (handins / "team07").mkdir()
    for f in (handins / "team03").iterdir():
        shutil.copy(f, handins / "team07" / f.name.replace("mlperf_submission_short", "Alpha"))
    doc = _score(handins, tmp_path / "out")
    entries = _by_folder(doc)
    for folder in ("team03", "team07"):
        assert entries[folder]["error"] is None, entries[folder]["error"]
        assert {f["rule"] for f in entries[folder]["flags"]} >= {"entry.duplicate", "entry.copied_logs"}
    alpha = [r for c in doc["categories"] for r in c["overall"] if r["team"] == "Alpha"]
    assert [r["status"] for r in alpha] == ["disqualified", "disqualified"]  # held until the organisers decide


def test_a_folder_holding_another_teams_name_as_a_word_does_not_own_it(sc_copy, tmp_path):
    # Alpha_Centauri's team hands in results under open/Alpha/: its folder must not count as naming Alpha
    handins = sc_copy(["Alpha", "Gamma"])
    (handins / "Alpha_Centauri").mkdir()
    for f in (handins / "Alpha").iterdir():
        shutil.copy(f, handins / "Alpha_Centauri" / f.name)
    entries = _by_folder(_score(handins, tmp_path / "out"))
    assert entries["Alpha_Centauri"]["error"]["rule"] == "entry.impersonation"
    assert entries["Alpha"]["error"] is None
    doc = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    alpha = [r for c in doc["categories"] for r in c["overall"] if r["team"] == "Alpha"]
    assert [r["status"] for r in alpha] == ["ranked"]


def _tree_input(sc_handins, root, team, *, as_team=None, system=None):
    """`team`'s extracted tree under root/<as_team or team>/, its submitter renamed to as_team, its system to system."""
    src = sc_handins["_trees"] / team / "tree" / "open" / team
    name = as_team or team
    dest = root / "open" / name
    shutil.copytree(src, dest)
    for path in (dest / "systems").glob("*.json"):
        fields = json.loads(path.read_text())
        path.write_text(json.dumps({**fields, "submitter": name}))
        if system:
            path.rename(path.with_name(f"{system}.json"))
            (dest / "results" / path.stem).rename(dest / "results" / system)
    return dest


def test_one_hand_in_holding_two_teams_is_held_and_names_both(sc_handins, sc_copy, tmp_path):
    handins = sc_copy(["Alpha", "Beta"])
    _tree_input(sc_handins, handins / "Gamma", "Gamma")
    _tree_input(sc_handins, handins / "Gamma", "Delta", as_team="Ghost")  # a second team nobody filed
    doc = _score(handins, tmp_path / "out")
    [flag] = [f for f in _by_folder(doc)["Gamma"]["flags"] if f["rule"] == "entry.several_teams"]
    assert flag["message"] == "holds results under 2 submitters (Gamma, Ghost): one hand-in is one team's"
    rows = {r["team"]: r["status"] for c in doc["categories"] for r in c["overall"]}
    assert (rows["Gamma"], rows["Ghost"], rows["Alpha"], rows["Beta"]) == (
        "disqualified",
        "disqualified",
        "ranked",
        "ranked",
    )


def test_one_team_with_two_systems_in_one_category_is_held(sc_handins, sc_copy, tmp_path):
    handins = sc_copy(["Alpha"])
    tree = _tree_input(sc_handins, handins / "Gamma", "Gamma")
    [system] = (tree / "systems").glob("*.json")
    shutil.copy(system, tree / "systems" / "box2.json")
    shutil.copytree(tree / "results" / system.stem, tree / "results" / "box2")
    doc = _score(handins, tmp_path / "out")
    [flag] = [f for f in _by_folder(doc)["Gamma"]["flags"] if f["rule"] == "entry.several_systems"]
    assert flag["message"].startswith("Gamma has 2 systems in ") and f"(box2, {system.stem})" in flag["message"]
    gamma = [r["status"] for c in doc["categories"] for r in c["overall"] if r["team"] == "Gamma"]
    assert gamma == ["disqualified", "disqualified"]


def _handin(sc_logs, work, dest, team, **spec):
    artifacts = teamgen.make_team(work, sc_logs, teamgen.TeamSpec(team, **spec))
    shutil.copytree(artifacts["tarball"].parent, dest)


def test_a_case_variant_of_a_teams_name_is_impersonation_not_a_duplicate_of_the_owner(sc_logs, sc_copy, tmp_path):
    """Filed under Zeta/, a tarball whose folder is open/alpha/ got the real Alpha disqualified as a duplicate:
    impersonation compared names exactly, duplicates case-blind. Both are case-blind now."""
    handins = sc_copy(["Alpha", "Beta"])
    _handin(sc_logs, tmp_path / "work", handins / "Zeta", "alpha", results={"bert-99": 4})
    entries = _by_folder(_score(handins, tmp_path / "out"))
    assert entries["Zeta"]["error"]["rule"] == "entry.impersonation"
    assert "open/alpha/" in entries["Zeta"]["error"]["message"] and "Alpha's" in entries["Zeta"]["error"]["message"]
    assert entries["Alpha"]["error"] is None
    assert not [f for f in entries["Alpha"]["flags"] if f["rule"].startswith("entry.")]


def test_one_team_under_two_system_names_in_two_hand_ins_is_flagged_in_both(sc_logs, sc_copy, tmp_path):
    """Two hand-ins of Alpha naming systems `cluster` and `cluster2` took first and third place, unflagged."""
    handins = sc_copy(["Beta"])
    _handin(sc_logs, tmp_path / "w1", handins / "Alpha" / "first", "Alpha", system="cluster")
    _handin(sc_logs, tmp_path / "w2", handins / "Alpha" / "second", "Alpha", system="cluster2", results={"bert-99": 3})
    doc = _score(handins, tmp_path / "out")
    flags = {e["input"]: {f["rule"]: f["message"] for f in e["flags"]} for e in doc["entries"]}
    first, second = (f"handins/Alpha/{w}/{TARBALL}" for w in ("first", "second"))
    assert flags[first]["entry.duplicate"] == f"Alpha/cluster is also in {second}"
    assert flags[second]["entry.duplicate"] == f"Alpha/cluster2 is also in {first}"
    ranked = [r["team"] for c in doc["categories"] for r in c["overall"] if r["status"] == "ranked"]
    assert "Alpha" not in ranked and "Beta" in ranked
