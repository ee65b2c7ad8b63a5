"""Edges of the pack stage no other test reaches: an artifact handed in as a symbolic link, a manifest too large to
read or with a member hash that is no sha256, and the order and uniqueness of the `.tstamps` pairs."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pack_handins import NAME, copy_handin, verify

from subtool.errors import SubtoolError
from subtool.pack.inputs import ResultInfo, RunInfo, TimeWindow, TreeInfo
from subtool.pack.manifest import MAGIC, parse_manifest
from subtool.pack.runs import PackedRuns
from subtool.pack.runscript import render_tstamps
from subtool.pack.verify import _MAX_MANIFEST_BYTES, verify_tarball


# ------------------------------------------------------------------------------------------------ verify
def test_the_hand_in_copied_verifies(packed_valid, tmp_path):
    result, doc = verify(copy_handin(packed_valid, tmp_path / "h"))
    assert result.exit_code == 0 and doc["ok"] and doc["problems"] == [], result.output


@pytest.mark.parametrize("artifact", [f"{NAME}.md", f"{NAME}.tar.gz"])
def test_an_artifact_that_is_a_link_to_the_same_bytes_does_not_verify(packed_valid, tmp_path, artifact):
    """The link's target has the packed bytes (so its hash agrees): only the link itself tells."""
    tarball = copy_handin(packed_valid, tmp_path / "h")
    elsewhere = tmp_path / "elsewhere" / artifact
    elsewhere.parent.mkdir()
    (tarball.parent / artifact).rename(elsewhere)
    os.symlink(elsewhere, tarball.parent / artifact)
    result, doc = verify(tarball)
    assert result.exit_code == 1 and not doc["ok"]
    assert f"{artifact}: a symbolic link, not the file that was packed" in doc["problems"]


def test_a_manifest_over_the_size_limit_is_refused_before_it_is_read(packed_valid, tmp_path):
    tarball = copy_handin(packed_valid, tmp_path / "h")
    manifest = tarball.with_name(f"{NAME}.sha256")
    with manifest.open("r+b") as f:  # the real manifest, then zeros (sparse) up to one byte over the limit
        f.truncate(_MAX_MANIFEST_BYTES + 1)
    with pytest.raises(SubtoolError) as err:
        verify_tarball(tarball)
    assert err.value.rule == "pack.manifest" and f"larger than {_MAX_MANIFEST_BYTES >> 20} MiB" in err.value.message
    with manifest.open("r+b") as f:  # exactly the limit: read (and then refused for its zeros, not its size)
        f.truncate(_MAX_MANIFEST_BYTES)
    with pytest.raises(SubtoolError) as err:
        verify_tarball(tarball)
    assert "larger than" not in err.value.message


@pytest.mark.parametrize(
    "digest",
    ["0" * 63, "0" * 65, "g" * 64, "A" * 64, " " + "0" * 63],
    ids=["short", "long", "not-hex", "upper-case", "space"],
)
def test_a_member_line_whose_hash_is_no_sha256_is_a_manifest_error(digest):
    text = f"{MAGIC}\n# name: {NAME}\n# rules: v6.1\n# member {digest}  open/T/README.md\n"
    with pytest.raises(SubtoolError) as err:
        parse_manifest(text, Path("m.sha256"))
    assert err.value.rule == "pack.manifest" and "line 4 is not `# member <sha256>  <path>`" in err.value.message
    good = parse_manifest(text.replace(digest, "0" * 64), Path("m.sha256"))
    assert good.members == {"open/T/README.md": "0" * 64}


def test_a_manifest_naming_a_round_without_rules_is_refused_naming_the_manifest(packed_valid, tmp_path):
    from typer.testing import CliRunner

    from subtool.cli import app

    tarball = copy_handin(packed_valid, tmp_path / "h")
    manifest = tarball.with_name(f"{NAME}.sha256")
    manifest.write_text(manifest.read_text().replace("# rules: v6.1", "# rules: v9.9"))
    result = CliRunner().invoke(app, ["pack", "--verify", str(tarball)])
    assert result.exit_code != 0 and "[round.unknown]" in result.output, result.output
    assert f"{NAME}.sha256" in result.output and "'v9.9'" in result.output


# ------------------------------------------------------------------------------------------------ .tstamps
def _at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 26, hour, minute, 0, tzinfo=timezone.utc)


def _run(name: str, pair: list[str]) -> RunInfo:
    return RunInfo(Path(name), "bert-99", "Offline", "valid", False, ["subtool", "all"], pair, {}, {}, {})


def test_tstamps_holds_each_pair_once_oldest_first():
    """Two run directories of one `subtool all` carry the same pair (written once); a result no run directory
    produced, run before them, gets its own pair, which comes first."""
    morning = TimeWindow(_at(10), _at(10, 30)).lines()
    noon = TimeWindow(_at(12), _at(12, 30)).lines()
    runs = [_run("runs/a", morning), _run("runs/b", morning), _run("runs/c", noon)]
    orphan = ResultInfo("open", "T", "box", "bert-99", "SingleStream", "r/SS", window=TimeWindow(_at(8), _at(8, 5)))
    text = render_tstamps(PackedRuns(runs=runs), TreeInfo(Path("t"), [], [orphan]))
    early = TimeWindow(_at(8), _at(8, 5)).lines()
    assert text.splitlines() == [*early, *morning, *noon]


# ------------------------------------------------------------------------------------------------ .run
def test_a_line_break_in_a_system_field_stays_inside_the_run_scripts_comment(bert_logs, tmp_path):
    """The .run copies system fields onto comment lines: a newline there must not start a command."""
    import subprocess

    from pack_handins import teamgen
    from typer.testing import CliRunner

    from subtool.cli import app

    marker = tmp_path / "ran"
    spec = teamgen.TeamSpec(
        "TeamV", results={"bert-99": 0}, overrides={"accelerator_model_name": f"N/A\ntouch {marker}\n#"}
    )
    tree = teamgen.build_team_tree(tmp_path / "tree", bert_logs, spec)
    result = CliRunner().invoke(
        app, ["pack", str(tree), "--out", str(tmp_path / "out"), "--waive", "perf.min_duration"]
    )
    assert result.exit_code == 0, result.output
    script = (tmp_path / "out" / f"{NAME}.run").read_text()
    assert (
        [ln for ln in script.splitlines() if "touch" in ln]
        == [ln for ln in script.splitlines() if "touch" in ln and ln.startswith("#   system ")]
        != []
    )
    assert "N/A\\ntouch" in script
    header = script[: script.index("set -euo pipefail")]  # the comments, run as bash would
    subprocess.run(["bash", "-c", header], cwd=tmp_path, check=True)
    assert not marker.exists()


def test_a_full_disk_while_the_tarball_is_written_names_it_and_keeps_the_old_artifacts(
    packed_valid, tmp_path, monkeypatch
):
    """The write's OSError carries no file name: the line said only 'No space left on device'."""
    import errno
    import shutil

    from typer.testing import CliRunner

    from subtool.cli import app
    from subtool.pack import api as pack_api

    tree = packed_valid.parent.parent / "tree"
    out = tmp_path / "out"
    shutil.copytree(packed_valid.parent, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pack_api, "write_tarball", full)
    result = CliRunner().invoke(app, ["pack", str(tree), "--out", str(out), "--waive", "perf.min_duration"])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "[io.enospc]" in said and f"{NAME}.tar.gz" in said, result.output
    assert f"error: {out / f'{NAME}.tar.gz'}: " in said and ".staging" not in said  # the real place, not staging's
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_folder_where_one_artifact_goes_leaves_every_old_artifact_and_names_that_place(packed_valid, tmp_path):
    """The tree changed since the last pack, so every artifact would change: none may be replaced while the .md
    cannot be (the old .sha256 would then describe a new tarball), and the line names the .md's real place."""
    import shutil

    from typer.testing import CliRunner

    from subtool.cli import app

    tree, out = tmp_path / "tree", tmp_path / "out"
    shutil.copytree(packed_valid.parent.parent / "tree", tree)
    shutil.copytree(packed_valid.parent, out)
    (out / f"{NAME}.md").unlink()
    (out / f"{NAME}.md").mkdir()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with (tree / "open" / "TeamV" / "documentation" / "README.md").open("a") as fh:
        fh.write("more\n")
    result = CliRunner().invoke(app, ["pack", str(tree), "--out", str(out), "--waive", "perf.min_duration"])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert f"error: {out / f'{NAME}.md'}: cannot replace: a folder is in the place of this output" in said, said
    assert "[io.eisdir]" in said and ".staging" not in said
    assert sorted(p.name for p in out.iterdir()) == sorted([*before, f"{NAME}.md"])  # no staging left behind


def test_verify_of_a_folder_says_it_is_a_folder(tmp_path):
    from typer.testing import CliRunner

    from subtool.cli import app

    result = CliRunner().invoke(app, ["pack", "--verify", str(tmp_path)])
    assert result.exit_code == 2 and "the tarball is a folder [pack.verify]" in " ".join(result.output.split())


def test_pack_pointed_at_alls_out_names_its_submission_folder(tmp_path):
    from typer.testing import CliRunner

    from subtool.cli import app

    (tmp_path / "subtool-out" / "submission" / "open" / "TeamX").mkdir(parents=True)
    result = CliRunner().invoke(app, ["pack", str(tmp_path / "subtool-out"), "--out", str(tmp_path / "a")])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"did you mean {tmp_path / 'subtool-out' / 'submission'}?" in said, said
