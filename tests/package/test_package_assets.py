"""Each result's README.md names the checkpoint and data set files the run read, with their sha256 and where they
came from (run.json "assets", written by `subtool run`): `subtool package` on a run directory carries them, so
`subtool all` does too. A lying run.json (names with line breaks, backticks, a non-URL document, bad checksums)
cannot reshape the README."""

from __future__ import annotations

import json
from pathlib import Path

from subtool.mlperf.run_record import NOT_VERIFIED
from subtool.package.api import PackageOptions, package_results
from subtool.package.documents import ASSETS_HEADING

DOC = "https://github.com/mlcommons/inference/blob/master/language/bert/README.md"
SHARDS = [
    {
        "kind": "model",
        "name": name,
        "path": f"/home/alice/.cache/subtool/assets/bert-99/model/{name}",
        "sha256": digit * 64,
        "size": size,
        "origin": "official",
        "document": DOC,
        "revision": None,
    }
    for name, digit, size in (("model.pytorch", "1", 1_340_000_000), ("bert_config.json", "2", 313))
]
GIVEN_DATA = {
    "kind": "dataset",
    "name": "dev-v1.1.json",
    "path": "/home/alice/data/dev-v1.1.json",
    "sha256": "3" * 64,
    "size": 4_854_279,
    "origin": "given",
}


def pkg_opts(out: Path, run_dir: Path, division: str | None = None) -> PackageOptions:
    return PackageOptions(
        from_dirs=[run_dir],
        perf=None,
        acc=None,
        compliance=[],
        model=None,
        scenario=None,
        submitter="TeamX",
        division=division,
        system="box1",
        system_file=None,
        out=out,
    )


def _with_assets(run_dir: Path, assets) -> Path:
    record = json.loads((run_dir / "run.json").read_text())
    record["assets"] = assets
    (run_dir / "run.json").write_text(json.dumps(record))
    return run_dir


def _section(readme: str) -> list[str]:
    lines = readme.splitlines()
    start = lines.index(ASSETS_HEADING)
    stop = next(n for n in range(start + 1, len(lines)) if lines[n].startswith("## "))
    return [ln for ln in lines[start + 1 : stop] if ln]


def _readme(tmp_path: Path, run_dir: Path) -> str:
    [result] = package_results(pkg_opts(tmp_path / "tree", run_dir)).results
    return (result.path / "README.md").read_text()


def test_readme_names_fetched_and_given_files_with_their_checksums(pkg_lg, pkg_copy, tmp_path):
    run_dir = _with_assets(pkg_copy(pkg_lg["Offline"]), [*SHARDS, GIVEN_DATA])
    readme = _readme(tmp_path, run_dir)
    model, config, data = _section(readme)
    assert "`model.pytorch`" in model and f"sha256 `{'1' * 64}`" in model and "1,340,000,000 bytes" in model
    assert "official document" in model and f"<{DOC}>" in model
    assert "`bert_config.json`" in config and "2" * 64 in config
    assert "`dev-v1.1.json`" in data and "3" * 64 in data and "given with `--dataset-path`" in data
    assert "/home/alice" not in readme  # the submitter's own paths stay in run.json, out of a public tree
    assert readme.index(ASSETS_HEADING) < readme.index("## Settings")
    # fetched files: the reproduction fetches them before the command (which names no path)
    assert "\nsubtool fetch bert-99\nsubtool run --model bert-99" in readme


def test_a_given_checkpoint_is_said_unverified_and_old_records_keep_their_readme(pkg_lg, pkg_copy, tmp_path):
    given = {"kind": "model", "path": "/x/bert-large", "name": "bert-large", "origin": "given", "note": NOT_VERIFIED}
    readme = _readme(tmp_path, _with_assets(pkg_copy(pkg_lg["Offline"]), [given]))
    assert _section(readme) == ["- Checkpoint `bert-large`: given with `--model-path`; not verified by subtool"]
    assert "subtool fetch" not in readme
    # a record without assets nor paths (the fixtures' runs, older subtool versions): no section at all
    assert ASSETS_HEADING not in _readme(tmp_path / "old", pkg_lg["Offline"])


def test_a_lying_record_cannot_reshape_the_readme(pkg_lg, pkg_copy, tmp_path):
    hostile = [
        {**SHARDS[0], "name": "a\n## Injected\n`x`|y", "document": "javascript:alert(1)\n# H"},
        {**SHARDS[1], "sha256": "not-a-digest"},  # the schema refuses the record: package says which field
    ]
    run_dir = _with_assets(pkg_copy(pkg_lg["Offline"]), hostile[:1])
    readme = _readme(tmp_path, run_dir)
    [line] = _section(readme)
    assert "## Injected" not in readme.replace(line, "") and "javascript:" not in readme.replace(line, "")
    assert "<javascript" not in line and line.count("`") % 2 == 0
    bad = _with_assets(pkg_copy(pkg_lg["Offline"], "bad"), hostile[1:])
    try:
        package_results(pkg_opts(tmp_path / "bad-tree", bad))
    except Exception as err:  # SubtoolError: one line naming run.json and the field
        assert "assets.0.sha256" in str(err) and "run.json" in str(err)
    else:
        raise AssertionError("a run.json with a malformed checksum was packaged")


def test_demo_readme_says_where_its_files_came_from(pkg_lg, pkg_copy, tmp_path):
    run_dir = pkg_copy(pkg_lg["demo_Offline"])
    record = json.loads((run_dir / "run.json").read_text())
    record.update(dataset_sha256="4" * 64, assets=[])
    (run_dir / "run.json").write_text(json.dumps(record))
    [result] = package_results(pkg_opts(tmp_path / "tree", run_dir, division="open")).results
    section = _section((result.path / "README.md").read_text())
    assert section == [f"Generated by subtool's embedded demo (random weights); data set sha256 `{'4' * 64}`."]
