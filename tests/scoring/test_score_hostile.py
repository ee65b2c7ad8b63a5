"""Hostile tarballs: each is refused with its own rule and a clear per-team error, nothing outside the scratch
folder is touched, and the good teams scored in the same run are still ranked."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hostile import CASES, ESCAPE_TARGETS, HOSTILE_LIMITS, build, snapshot
from typer.testing import CliRunner

from subtool.cli import app
from subtool.scoring.extract import ExtractLimits, Refused, extract_tarball
from subtool.scoring.rules import default_rules_text

TARBALL = "mlperf_submission_short.tar.gz"


def _hostile_rules(path: Path) -> Path:
    text = default_rules_text()
    for key, value in HOSTILE_LIMITS.items():
        lines = [ln for ln in text.splitlines() if ln.startswith(f"{key} =")]
        assert len(lines) == 1, key
        text = text.replace(lines[0], f"{key} = {value}")
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(c for c in CASES if c != "no_tree"))
def test_extraction_refuses_the_case_and_writes_only_inside_its_folder(case, sc_handins, tmp_path):
    sandbox = tmp_path / "sandbox"
    (sandbox / "outside-dir").mkdir(parents=True)
    tarball = build(case, sc_handins["Beta"] / TARBALL, tmp_path / "in.tar.gz", sandbox)
    dest = sandbox / "scratch"
    dest.mkdir()
    before = snapshot(sandbox, skip=dest)
    with pytest.raises(Refused) as refused:
        extract_tarball(tarball, dest, ExtractLimits(**HOSTILE_LIMITS))
    assert refused.value.rule == CASES[case], refused.value.message
    assert refused.value.message  # says which member and why
    assert snapshot(sandbox, skip=dest) == before
    assert not [t for t in ESCAPE_TARGETS if (sandbox / t).exists()]
    for current, dirs, files in os.walk(dest):  # nothing but plain files and folders was written
        for name in dirs + files:
            p = Path(current) / name
            assert not p.is_symlink() and (p.is_dir() or p.is_file()), p


def test_real_tarballs_pass_the_hostile_limits(sc_handins, tmp_path):
    for team in ("Alpha", "Beta"):
        stats = extract_tarball(sc_handins[team] / TARBALL, tmp_path / team, ExtractLimits(**HOSTILE_LIMITS))
        assert stats.files > 10 and stats.stream_bytes / stats.compressed_bytes < 4


def test_default_limits_stop_a_gzip_bomb_early(tmp_path):
    """64 MiB of zeros in a 64 KB tarball: refused after ratio × size, long before the whole bomb is unpacked."""
    import gzip
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("open/T/results/zeros.bin")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(gzip.compress(raw.getvalue(), compresslevel=9))
    dest = tmp_path / "x"
    dest.mkdir()
    with pytest.raises(Refused) as refused:
        extract_tarball(bomb, dest, ExtractLimits())
    assert refused.value.rule == "extract.ratio"
    written = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    assert written <= ExtractLimits().max_ratio * bomb.stat().st_size


def test_score_refuses_every_hostile_tarball_and_ranks_the_good_teams(sc_copy, tmp_path):
    handins = sc_copy(["Beta", "Gamma"])
    (tmp_path / "outside-dir").mkdir()
    for case in CASES:
        folder = handins / f"hostile-{case}"
        folder.mkdir()
        build(case, handins / "Beta" / TARBALL, folder / TARBALL, tmp_path)
    rules = _hostile_rules(tmp_path / "rules.toml")
    out = tmp_path / "out"
    before = snapshot(tmp_path, skip=out)

    result = CliRunner().invoke(
        app, ["score", str(handins), "--out", str(out), "--rules", str(rules), "--jobs", "2", "--json"]
    )
    assert result.exit_code == 0, result.output

    assert snapshot(tmp_path, skip=out) == before  # inputs untouched, nothing written beside them
    assert not [t for t in ESCAPE_TARGETS if (tmp_path / t).exists()]
    assert sorted(p.name for p in out.iterdir()) == [
        "leaderboard.csv",
        "leaderboard.html",
        "leaderboard.json",
        "leaderboard.md",
    ]  # scratch folder removed
    doc = json.loads((out / "leaderboard.json").read_text())
    errors = {e["input"].split("/")[1]: e["error"] for e in doc["entries"] if e["error"]}
    assert {name.removeprefix("hostile-"): err["rule"] for name, err in errors.items()} == CASES
    assert all(err["message"].startswith("refused: ") for err in errors.values())
    assert doc["counts"]["errors"] == len(CASES) and doc["counts"]["scored"] == 2
    ranked = {c["name"]: [r["team"] for r in c["overall"] if r["status"] == "ranked"] for c in doc["categories"]}
    assert ranked == {"AMD GPUs": ["Beta"], "CPUs": ["Gamma"]}
    reasons = {d["input"].split("/")[1]: d["reason"] for d in doc["disqualified"]}
    assert reasons["hostile-traversal"].startswith("extract.path_traversal: refused: member ")
    assert "hostile-symlink\\_outside" in (out / "leaderboard.md").read_text()  # _ escaped in Markdown
    # one line per refused team on the terminal too, and the --json outcome on stdout
    assert "extract.absolute_path: refused: member" in result.stderr
    assert json.loads(result.stdout)["counts"]["errors"] == len(CASES)


def test_a_tarball_bigger_than_the_unpack_limit_is_refused_before_it_is_read(tmp_path):
    import gzip

    big = tmp_path / "big.tar.gz"
    big.write_bytes(gzip.compress(os.urandom(8 << 20), compresslevel=1))  # 8 MiB that gzip cannot shrink
    dest = tmp_path / "x"
    dest.mkdir()
    with pytest.raises(Refused) as refused:
        extract_tarball(big, dest, ExtractLimits(**HOSTILE_LIMITS))
    assert refused.value.rule == "extract.too_large" and refused.value.message.startswith("the tarball alone is")
    assert list(dest.iterdir()) == []


def test_an_extracted_tree_with_a_link_out_of_it_is_refused_and_nothing_leaks(sc_handins, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(sc_handins["_trees"] / "Beta" / "tree", tree)
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"accelerator_model_name": "TOP-SECRET-VALUE"}))
    system = tree / "open" / "Beta" / "systems" / "cluster.json"
    system.unlink()
    system.symlink_to(secret)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["score", str(tree), "--out", str(out), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "leaderboard.json").read_text())["entries"][0]
    assert entry["error"] == {
        "rule": "extract.link_outside",
        "message": (
            "refused: 'open/Beta/systems/cluster.json' is a symbolic link pointing outside the tree (to "
            f"{str(secret)!r}); a submission holds plain files only"
        ),
    }
    assert not any("TOP-SECRET-VALUE" in p.read_text() for p in out.iterdir())
