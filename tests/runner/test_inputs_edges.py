"""runner/inputs.py's decisions the run tests leave open: the nothing-fetched line, a checkpoint read from a
folder inside its asset folder, and --assets DIR with one path given or naming a file."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
from support.fetched import install_as_fetched

from subtool.errors import SubtoolError
from subtool.fetch.store import write_manifest
from subtool.runner.api import RunOptions
from subtool.runner.inputs import resolve_inputs


def _resolve(**kw):
    said = []
    opts = resolve_inputs(RunOptions(**kw), lambda line, **_: said.append(line))
    return opts, said


def test_running_the_demo_for_want_of_fetched_files_says_how_to_fetch_them(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBTOOL_CACHE", str(tmp_path / "cache"))
    opts, said = _resolve()
    assert opts.inputs.demo
    assert said == ["nothing fetched for bert-99 (`subtool fetch bert-99` gets the official checkpoint and data set)"]


def test_a_fetched_checkpoint_is_read_from_its_run_path_not_its_folder(tmp_path, monkeypatch, tiny_checkpoint):
    """A manifest's run_path may name a folder inside the asset's (a checkpoint unpacked one level down): the run
    reads that folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SUBTOOL_CACHE", str(cache))
    wrapped = tmp_path / "wrapped"
    shutil.copytree(tiny_checkpoint, wrapped / "ckpt")
    model = install_as_fetched(cache, "bert-99", "model", wrapped)
    model = dataclasses.replace(model, run_path=model.root / "ckpt")
    write_manifest(model)
    opts, said = _resolve(dataset_path=tmp_path / "given.json")
    assert opts.model_path == model.root / "ckpt" and opts.inputs.model.run_path == model.root / "ckpt"
    assert str(model.root / "ckpt") in said[0]


def test_assets_dir_with_one_path_given_takes_the_other_from_there(tmp_path, monkeypatch, tiny_checkpoint):
    monkeypatch.setenv("SUBTOOL_CACHE", str(tmp_path / "cache"))  # empty: the files are only under --assets
    to = tmp_path / "scratch"
    model = install_as_fetched(to, "bert-99", "model", tiny_checkpoint)
    opts, _ = _resolve(assets=to, dataset_path=tmp_path / "given.json")
    assert opts.model_path == model.root and opts.dataset_path == tmp_path / "given.json"


def test_assets_naming_a_file_is_no_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBTOOL_CACHE", str(tmp_path / "cache"))
    file = tmp_path / "assets.tar"
    file.write_bytes(b"not a folder")
    with pytest.raises(SubtoolError, match="--assets is a file: it takes a folder") as err:
        _resolve(assets=file)
    assert err.value.path == str(file) and err.value.rule == "run.inputs"


def test_a_data_set_no_fetch_serves_is_named_with_what_will_get_it(tmp_path, monkeypatch, tiny_checkpoint):
    """GPT-J's processed data set is served by nobody: the error says how to build it, and names the folder a
    fetch would have filled only when the run took its files from there (no path given)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SUBTOOL_CACHE", str(cache))
    install_as_fetched(cache, "gptj-99", "model", tiny_checkpoint)
    for given, path in (({}, str(cache / "assets/gptj-99/dataset")), ({"model_path": tiny_checkpoint}, None)):
        with pytest.raises(SubtoolError, match="--dataset-path is missing .*download_cnndm.py") as err:
            _resolve(model="gptj-99", **given)
        assert err.value.path == path and err.value.rule == "run.inputs"


def test_one_fetched_says_which_one_is_there_and_which_is_not(tmp_path, monkeypatch, small_squad):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SUBTOOL_CACHE", str(cache))
    install_as_fetched(cache, "bert-99", "dataset", small_squad)
    with pytest.raises(SubtoolError, match="the data set is fetched but not the checkpoint: run `subtool fetch"):
        _resolve()


@pytest.mark.parametrize("count", [3, 5])
def test_a_fetched_folder_is_described_by_its_three_biggest_files(tmp_path, count):
    from subtool.runner.inputs import describe

    src = tmp_path / "ckpt"
    src.mkdir()
    for i in range(count):
        (src / f"f{i}.bin").write_bytes(b"x" * (10 * (i + 1)))
    model = install_as_fetched(tmp_path / "cache", "bert-99", "model", src)
    line = describe(model)
    biggest = [f"f{i}.bin" for i in range(count - 1, count - 4, -1)]
    listed = line.split(" files: ")[1].removesuffix(")").split(", ")
    assert line.startswith(f"checkpoint: {model.root} (fetched; {count} files: ")
    assert [entry.split()[0] for entry in listed[:3]] == biggest
    assert listed[3:] == ([f"+{count - 3} more"] if count > 3 else [])


def test_a_fetched_data_set_folder_or_one_past_the_limit_is_not_hashed_again(tmp_path, monkeypatch, small_squad):
    """Only a data set file up to VERIFY_LIMIT is hashed again before the run (a bigger one costs too long; the
    run's own hash still holds it to the manifest); a data set folder has no one file to hash."""
    from subtool.runner import inputs

    cache = tmp_path / "cache"
    monkeypatch.setenv("SUBTOOL_CACHE", str(cache))
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"a")
    data = install_as_fetched(cache, "bert-99", "dataset", folder)
    data.run_path.joinpath("a.bin").write_bytes(b"b")  # changed, same size: a folder is not hashed here
    assert _resolve(model_path=tmp_path)[0].inputs.dataset == data
    shutil.rmtree(data.root)
    data = install_as_fetched(cache, "bert-99", "dataset", small_squad)
    body = data.run_path.read_bytes()
    data.run_path.write_bytes(body[:-2] + (b" " if body[-2:-1] != b" " else b"\t") + body[-1:])
    monkeypatch.setattr(inputs, "VERIFY_LIMIT", data.files[0].size - 1)
    assert _resolve(model_path=tmp_path)[0].inputs.dataset == data
    monkeypatch.setattr(inputs, "VERIFY_LIMIT", data.files[0].size)
    with pytest.raises(SubtoolError, match="changed since"):
        _resolve(model_path=tmp_path)


def test_a_run_that_reported_no_hash_of_its_data_set_is_not_held_to_the_manifest(tmp_path, small_squad):
    from subtool.runner.inputs import RunInputs, check_run_hash

    data = install_as_fetched(tmp_path / "cache", "bert-99", "dataset", small_squad)
    check_run_hash(RunInputs(demo=False, dataset=data), None)  # nothing to compare: no error, no crash
    with pytest.raises(SubtoolError, match="changed since"):
        check_run_hash(RunInputs(demo=False, dataset=data), "0" * 64)
