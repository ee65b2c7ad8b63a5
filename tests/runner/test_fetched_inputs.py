"""What a run reads when the user gives no path (subtool/runner/inputs.py): the files `subtool fetch` installed
(the real store, tests/support/fetched.py), an error naming the fetch command when only one of them is there,
else the embedded demo; `--demo` forces the demo. Then `subtool run` on fetched files: the line naming them and
run.json's `assets` with the manifest's checksums."""

from __future__ import annotations

import json
import shutil

import pytest
from support.fetched import DOCUMENT, install_as_fetched, sha256
from typer.testing import CliRunner

from subtool.cli import app
from subtool.errors import SubtoolError
from subtool.fetch.store import asset_dir
from subtool.runner.api import RunOptions, decide
from subtool.runner.inputs import assets_record, check_run_hash, resolve_inputs


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache of its own: the session's (tests/conftest.py) holds the demo and must never hold fetched files."""
    root = tmp_path / "cache"
    monkeypatch.setenv("SUBTOOL_CACHE", str(root))
    return root


def _resolve(**kw):
    said = []
    opts = resolve_inputs(RunOptions(**kw), lambda line, **_: said.append(line))
    return opts, said


def test_nothing_fetched_is_the_demo(cache):
    opts, said = _resolve()
    assert opts.inputs.demo and opts.model_path is None and opts.dataset_path is None
    # an interrupted fetch (files, no manifest) is not installed
    asset_dir("bert-99", "model", cache).mkdir(parents=True)
    (asset_dir("bert-99", "model", cache) / "config.json").write_text("{}")
    assert _resolve()[0].inputs.demo


def test_both_fetched_are_used_and_named_with_their_short_sha256(cache, tiny_checkpoint, small_squad):
    model = install_as_fetched(cache, "bert-99", "model", tiny_checkpoint)
    data = install_as_fetched(cache, "bert-99", "dataset", small_squad)
    opts, said = _resolve()
    assert not opts.inputs.demo and opts.model_path == model.root and opts.dataset_path == data.run_path
    assert opts.inputs.model == model and opts.inputs.dataset == data
    assert len(said) == 2
    assert str(model.root) in said[0] and "fetched" in said[0] and f"{len(model.files)} files" in said[0]
    assert str(data.run_path) in said[1] and sha256(small_squad)[:12] in said[1]
    # decided once: the run stage's decide (after `subtool all` resolved) says nothing again
    again = []
    assert resolve_inputs(opts, again.append) is opts and again == []


def test_the_demo_flag_wins_over_fetched_files(cache, tiny_checkpoint, small_squad):
    install_as_fetched(cache, "bert-99", "model", tiny_checkpoint)
    install_as_fetched(cache, "bert-99", "dataset", small_squad)
    opts, said = _resolve(demo=True)
    assert opts.inputs.demo and opts.model_path is None and said == []
    with pytest.raises(SubtoolError, match="--demo runs the embedded demo"):
        _resolve(demo=True, dataset_path=small_squad)


@pytest.mark.parametrize("have", ["model", "dataset"])
def test_one_fetched_is_one_error_naming_the_fetch_command(cache, tiny_checkpoint, small_squad, have):
    install_as_fetched(cache, "bert-99", have, tiny_checkpoint if have == "model" else small_squad)
    with pytest.raises(SubtoolError) as err:
        _resolve()
    only = "--dataset-only" if have == "model" else "--model-only"
    flag = "--dataset-path" if have == "model" else "--model-path"
    line = err.value.one_line()
    assert f"`subtool fetch bert-99 {only}`" in line and flag in line and "--demo" in line
    assert err.value.rule == "run.inputs" and err.value.exit_code == 2
    assert err.value.path == str(asset_dir("bert-99", "dataset" if have == "model" else "model", cache))


def test_one_path_given_takes_the_other_fetched(cache, tiny_checkpoint, small_squad):
    with pytest.raises(SubtoolError, match="--model-path is missing") as err:
        _resolve(dataset_path=small_squad)
    assert "subtool fetch bert-99 --model-only" in err.value.hint
    model = install_as_fetched(cache, "bert-99", "model", tiny_checkpoint)
    opts, said = _resolve(dataset_path=small_squad)
    assert opts.model_path == model.root and opts.dataset_path == small_squad and opts.inputs.dataset is None
    assert len(said) == 1 and str(model.root) in said[0]


def test_a_data_set_changed_since_the_fetch_is_refused_by_name(cache, tiny_checkpoint, small_squad):
    install_as_fetched(cache, "bert-99", "model", tiny_checkpoint)
    data = install_as_fetched(cache, "bert-99", "dataset", small_squad)
    body = bytearray(data.run_path.read_bytes())
    body[-2] = ord(" ") if body[-2] != ord(" ") else ord("\t")  # same size: the manifest's size check passes
    data.run_path.write_bytes(bytes(body))
    with pytest.raises(SubtoolError, match="changed since `subtool fetch` installed it") as err:
        _resolve()
    assert err.value.path == str(data.run_path) and err.value.rule == "run.asset_changed"
    assert "subtool fetch bert-99 --dataset-only" in err.value.hint
    # and the run's own hash of what it read is held to the manifest too (a file swapped during the run)
    shutil.copyfile(small_squad, data.run_path)
    inputs = _resolve()[0].inputs
    check_run_hash(inputs, sha256(small_squad))
    with pytest.raises(SubtoolError, match="changed since"):
        check_run_hash(inputs, "0" * 64)
    check_run_hash(_resolve(model_path=tiny_checkpoint, dataset_path=small_squad)[0].inputs, "0" * 64)  # given


def test_an_unreadable_fetched_data_set_is_one_error_naming_it(request, cache, tiny_checkpoint, small_squad):
    from support.unprivileged import rerun_bound_by_permissions

    if rerun_bound_by_permissions(request):
        return
    install_as_fetched(cache, "bert-99", "model", tiny_checkpoint)
    data = install_as_fetched(cache, "bert-99", "dataset", small_squad)
    data.run_path.chmod(0)
    try:
        with pytest.raises(SubtoolError, match="cannot read the fetched data set") as err:
            _resolve()
    finally:
        data.run_path.chmod(0o644)
    assert err.value.path == str(data.run_path) and err.value.rule == "io.eacces"


def test_decide_resolves_before_anything_loads(cache, small_squad):
    with pytest.raises(SubtoolError, match="--model-path is missing") as err:
        decide(RunOptions(dataset_path=small_squad, backend="torch-cpu"), lambda *a, **k: None)
    assert err.value.rule == "run.inputs"


def test_the_record_lists_fetched_files_from_the_manifest_and_given_ones_as_given(cache, tiny_checkpoint, small_squad):
    model = install_as_fetched(cache, "bert-99", "model", tiny_checkpoint, origin="hub", revision="abc123")
    opts, _ = _resolve(dataset_path=small_squad)
    run_sha = sha256(small_squad)
    record = assets_record(opts.inputs, opts.model_path, opts.dataset_path, run_sha)
    fetched = [e for e in record if e["kind"] == "model"]
    assert {e["name"] for e in fetched} == {f.name for f in model.files}
    for e in fetched:
        f = next(f for f in model.files if f.name == e["name"])
        assert (e["sha256"], e["size"], e["origin"], e["document"], e["revision"]) == (
            f.sha256,
            f.size,
            "hub",
            DOCUMENT,
            "abc123",
        )
        assert e["path"] == str(model.root / f.name)
    [given] = [e for e in record if e["kind"] == "dataset"]
    assert given == {
        "kind": "dataset",
        "name": small_squad.name,
        "path": str(small_squad),
        "sha256": run_sha,
        "origin": "given",
        "size": small_squad.stat().st_size,
    }
    given_model = assets_record(
        _resolve(model_path=tiny_checkpoint, dataset_path=small_squad)[0].inputs, tiny_checkpoint, small_squad, run_sha
    )[0]
    assert given_model["sha256"] is None and given_model["note"] == "not verified by subtool"
    assert assets_record(_resolve(demo=True)[0].inputs, None, None, run_sha) == []


def test_run_on_fetched_files_names_them_and_records_their_checksums(cache, tmp_path, tiny_checkpoint, small_squad):
    model = install_as_fetched(cache, "bert-99", "model", tiny_checkpoint)
    data = install_as_fetched(cache, "bert-99", "dataset", small_squad)
    res = CliRunner().invoke(app, ["run", "--mode", "accuracy", "--out", str(tmp_path / "runs"), "--json"])
    assert res.exit_code == 0, res.output
    assert f"sha256 {sha256(small_squad)[:12]}" in res.output and "demo" not in res.output.split("{")[0]
    record = json.loads((tmp_path / "runs/bert-99/Offline/run.json").read_text())
    assert record["demo"] is False and record["division_hint"] == "closed"
    assert record["model_path"] == str(model.root) and record["dataset_path"] == str(data.run_path)
    listed = {(e["kind"], e["name"]): e["sha256"] for e in record["assets"]}
    assert listed == {
        **{("model", f.name): f.sha256 for f in model.files},
        ("dataset", small_squad.name): sha256(small_squad),
    }


def test_all_on_fetched_files_is_closed_and_its_readme_names_them(
    cache, tmp_path, tiny_checkpoint, small_squad, instant_backend
):
    """`subtool all --submitter TeamX` with nothing but fetched files: a closed result (TEST01 run) whose README
    names every file and its checksum, from the run record."""
    model = install_as_fetched(cache, "bert-99", "model", tiny_checkpoint)
    data = install_as_fetched(cache, "bert-99", "dataset", small_squad)
    out = tmp_path / "out"
    argv = ["all", "--submitter", "TeamX", "--model", "bert-99", "--backend", instant_backend, "--out", str(out)]
    res = CliRunner().invoke(app, argv)
    # the tiny checkpoint's answers are below the accuracy target: the checker says so (exit 1), nothing else fails
    assert res.exit_code == 1, res.output
    assert str(data.run_path) in res.output and "embedded demo" not in res.output
    record = json.loads((out / "runs/bert-99/Offline/run.json").read_text())
    assert record["division_hint"] == "closed" and set(record["compliance"]) == {"TEST01"}
    [readme] = (out / "submission/closed/TeamX/results").glob("*/bert-99/Offline/README.md")
    text = readme.read_text()
    for f in (*model.files, *data.files):
        assert f"`{f.name}`: sha256 `{f.sha256}`" in text
    assert str(cache) not in text
    # reproducing it fetches first: the command names no path, and without the files it would run the demo
    block = text[text.index("```bash") : text.rindex("```")].splitlines()
    # the next line is the command as invoked (this test's argv: pytest's own, or a bare `subtool` under xdist)
    assert block[2] == "subtool fetch bert-99" and block[3].split()[0] == "subtool"


def test_compliance_test_names_are_taken_in_any_case_like_scenarios(cache):
    decided = decide(RunOptions(backend="torch-cpu", compliance=["test01"]), lambda *a, **k: None)
    assert decided.compliance == ["TEST01"]
    with pytest.raises(SubtoolError) as err:
        decide(RunOptions(backend="torch-cpu", compliance=["test06"]), lambda *a, **k: None)
    assert err.value.rule == "run.compliance" and "TEST06" in err.value.message  # named as the rules name it
