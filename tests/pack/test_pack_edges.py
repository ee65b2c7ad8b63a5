"""Edges of the pack stage no other test reaches: an artifact handed in as a symbolic link, a manifest too large to
read or with a member hash that is no sha256, and the order and uniqueness of the `.tstamps` pairs."""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scoring"))
import teamgen  # noqa: E402  (the scoring tests' real-LoadGen team trees)

from subtool.cli import app  # noqa: E402
from subtool.errors import SubtoolError  # noqa: E402
from subtool.pack.inputs import ResultInfo, RunInfo, TimeWindow, TreeInfo  # noqa: E402
from subtool.pack.manifest import MAGIC, parse_manifest  # noqa: E402
from subtool.pack.runs import PackedRuns  # noqa: E402
from subtool.pack.runscript import render_tstamps  # noqa: E402
from subtool.pack.verify import _MAX_MANIFEST_BYTES, verify_tarball  # noqa: E402

NAME = "mlperf_submission_short"


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    """One short, valid bert-99 Offline result packed with --waive perf.min_duration (verify passes it)."""
    pytest.importorskip("mlperf_loadgen", reason="verify re-checks real LoadGen logs (pip install .[run])")
    folder = tmp_path_factory.mktemp("pack-edges")
    conf = folder / "user.conf"
    conf.write_text("bert.Offline.min_duration = 50\nbert.Offline.target_qps = 100000\n")
    teamgen.run_loadgen(
        [
            teamgen.LoadGenJob(
                conf_model="bert",
                scenario="Offline",
                user_conf=conf,
                total=10833,
                runs=(("performance", folder / "valid", 0.06), ("accuracy", folder / "acc", 0.0)),
            )
        ]
    )
    logs = teamgen.Logs(
        perf={"bert-99": [folder / "valid"]}, acc={"bert-99": folder / "acc"}, user_conf={"bert-99": conf}
    )
    tree = teamgen.build_team_tree(folder / "tree", logs, teamgen.TeamSpec("TeamV", results={"bert-99": 0}))
    result = CliRunner().invoke(app, ["pack", str(tree), "--out", str(folder / "out"), "--waive", "perf.min_duration"])
    assert result.exit_code == 0, result.output
    return folder / "out" / f"{NAME}.tar.gz"


def _copy_handin(packed: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for f in packed.parent.iterdir():
        shutil.copyfile(f, dest / f.name)
    return dest / packed.name


def _verify(tarball: Path):
    result = CliRunner().invoke(app, ["pack", "--verify", str(tarball), "--json"])
    return result, json.loads(result.stdout[result.stdout.index("{") :])


# ------------------------------------------------------------------------------------------------ verify
def test_the_hand_in_copied_verifies(packed, tmp_path):
    result, doc = _verify(_copy_handin(packed, tmp_path / "h"))
    assert result.exit_code == 0 and doc["ok"] and doc["problems"] == [], result.output


@pytest.mark.parametrize("artifact", [f"{NAME}.md", f"{NAME}.tar.gz"])
def test_an_artifact_that_is_a_link_to_the_same_bytes_does_not_verify(packed, tmp_path, artifact):
    """The link's target has the packed bytes (so its hash agrees): only the link itself tells."""
    tarball = _copy_handin(packed, tmp_path / "h")
    elsewhere = tmp_path / "elsewhere" / artifact
    elsewhere.parent.mkdir()
    (tarball.parent / artifact).rename(elsewhere)
    os.symlink(elsewhere, tarball.parent / artifact)
    result, doc = _verify(tarball)
    assert result.exit_code == 1 and not doc["ok"]
    assert f"{artifact}: a symbolic link, not the file that was packed" in doc["problems"]


def test_a_manifest_over_the_size_limit_is_refused_before_it_is_read(packed, tmp_path):
    tarball = _copy_handin(packed, tmp_path / "h")
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
