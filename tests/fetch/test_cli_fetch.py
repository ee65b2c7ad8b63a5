"""`subtool fetch` end to end: catalogue-shaped entries (official-looking https URLs, a Hub repository) are
registered in the catalogue, and the real command fetches them through `--mirror` (a file server on 127.0.0.1) and
HF_ENDPOINT (the Hub stand-in). Success, --plan/--json then --from, and the error paths' one line and exit code."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from fetch_standins import HF_SECRET, Repo, sha256
from typer.testing import CliRunner

from subtool.cli import app
from subtool.fetch import store
from subtool.mlperf import assets as catalogue
from subtool.mlperf.assets import Asset, AssetFile, HubFiles

DEV = os.urandom(40_000)
WEIGHTS = os.urandom(60_000)
DEV_URL = "https://rajpurkar.example.org/squad/dev-v1.1.json"

# `subtool` with the entries of $FETCH_TEST_ASSETS in the catalogue (assets.ASSETS), then the real main()
REGISTER_AND_RUN = """\
import json, os, sys
from subtool.mlperf import assets as a
def entry(x):
    hub = a.HubFiles(**{**x["hub"], "patterns": tuple(x["hub"]["patterns"])}) if x["hub"] else None
    return a.Asset(**{**x, "files": tuple(a.AssetFile(**f) for f in x["files"]), "hub": hub})
a.ASSETS = tuple(entry(x) for x in json.loads(os.environ["FETCH_TEST_ASSETS"]))
from subtool.cli import main
sys.argv = ["subtool"] + sys.argv[1:]
main()
"""


@pytest.fixture
def entries(file_server, hub_server, monkeypatch):
    file_server.files["/rajpurkar.example.org/squad/dev-v1.1.json"] = DEV
    hub_server.repos["org/tiny-bert"] = Repo({"config.json": b"{}", "w.bin": WEIGHTS}, {"w.bin"}, gated=True)
    made = (
        Asset(
            "bert-99",
            "model",
            "ckpt",
            ".",
            "https://doc.example.org/m",
            hub=HubFiles("org/tiny-bert", "main", gated=True),
        ),
        Asset(
            "bert-99",
            "dataset",
            "SQuAD v1.1 dev",
            "dev-v1.1.json",
            "https://doc.example.org/d",
            (AssetFile("dev-v1.1.json", DEV_URL, len(DEV), sha256=sha256(DEV)),),
        ),
    )
    monkeypatch.setattr(catalogue, "ASSETS", made)
    monkeypatch.setenv("FETCH_TEST_ASSETS", json.dumps([dataclasses.asdict(a) for a in made]))
    monkeypatch.setenv("SUBTOOL_FETCH_MIRROR", file_server.url(""))
    return made


def subtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", REGISTER_AND_RUN, *args], capture_output=True, text=True, timeout=120)


def test_fetch_installs_everything_then_says_it_is_installed(entries, monkeypatch, tmp_path, own_cache):
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    proc = subtool("fetch", "bert-99", "--json", str(tmp_path / "out.json"))
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "out.json").read_text())
    assert [a["status"] for a in record["assets"]] == ["installed", "installed"]
    assert store.installed("bert-99", "dataset").run_path.read_bytes() == DEV
    again = subtool("fetch", "bert-99")
    assert again.returncode == 0 and again.stderr.count("already installed and intact") == 2, again.stderr
    for text in (proc.stdout, proc.stderr, again.stderr):
        assert HF_SECRET not in text
    for path in [*own_cache.rglob("*"), tmp_path / "out.json"]:
        assert not path.is_file() or HF_SECRET.encode() not in path.read_bytes()


def test_a_file_the_mirror_lacks_is_one_line_and_exit_3(entries, file_server):
    del file_server.files["/rajpurkar.example.org/squad/dev-v1.1.json"]
    proc = subtool("fetch", "bert-99", "--dataset-only")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "[fetch.not_found]" in lines[0] and "/rajpurkar.example.org/squad/dev-v1.1.json" in lines[0]
    assert "Traceback" not in proc.stderr


runner = CliRunner()


def test_a_model_subtool_cannot_fetch_lists_the_ones_it_can(entries):
    result = runner.invoke(app, ["fetch", "resnet50"])
    assert result.exit_code == 2
    assert "cannot fetch 'resnet50'; it can fetch: bert-99 [fetch.unknown_model]" in result.output


def test_a_gated_model_without_hf_token_is_exit_2_with_what_to_do(entries):
    result = runner.invoke(app, ["fetch", "bert-99", "--model-only"])
    assert result.exit_code == 2
    assert "set HF_TOKEN" in result.output and "accept the license" in result.output


def test_dataset_only_and_model_only_together_are_refused(entries):
    result = runner.invoke(app, ["fetch", "bert-99", "--dataset-only", "--model-only"])
    assert result.exit_code == 2 and "[cli.usage]" in result.output


def test_plan_json_then_from_installs_and_a_corrupt_copy_is_refused_by_name(entries, tmp_path):
    import urllib.request

    plan_file = tmp_path / "carry" / "bert-99" / "plan.json"
    result = runner.invoke(app, ["fetch", "bert-99", "--plan", "--json", str(plan_file)])
    assert result.exit_code == 0, result.output
    assert DEV_URL.split("//")[1] in result.output and sha256(DEV) in result.output
    plan = json.loads(plan_file.read_text())
    for a in plan["assets"]:
        for f in a["files"]:
            (tmp_path / "carry" / f["path"]).parent.mkdir(parents=True, exist_ok=True)
            req = urllib.request.Request(f["url"], headers={"Authorization": f"Bearer {HF_SECRET}"})
            with urllib.request.urlopen(req) as r:  # noqa: S310 - the test's own servers
                (tmp_path / "carry" / f["path"]).write_bytes(r.read())
    bad = tmp_path / "carry" / "bert-99" / "dataset" / "dev-v1.1.json"
    bad.write_bytes(DEV[:-1] + b"\0")
    refused = runner.invoke(app, ["fetch", "bert-99", "--from", str(tmp_path / "carry"), "--dataset-only"])
    assert refused.exit_code == 2 and str(bad) in refused.output and "[fetch.checksum]" in refused.output
    bad.write_bytes(DEV)
    done = runner.invoke(app, ["fetch", "bert-99", "--from", str(tmp_path / "carry"), "--to", str(tmp_path / "c2")])
    assert done.exit_code == 0, done.output
    assert f"--assets {tmp_path / 'c2'}" in done.output
    assert store.installed("bert-99", "model", cache=tmp_path / "c2") is not None


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        (["--mirror", "ftp://mirror.internal"], "[fetch.mirror]"),
        (["--plan", "--from", "."], "[cli.usage]"),
        (["--from", "no-such-dir"], "[fetch.from_dir]"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(entries, args, rule):
    result = runner.invoke(app, ["fetch", "bert-99", "--dataset-only", *args])
    assert result.exit_code == 2 and rule in result.output, result.output


def test_an_interactive_benchmark_fetches_its_plain_models_files():
    """v5.0's llama2-70b-interactive-99 (and a round's llama3.1-8b-interactive) run the plain model's checkpoint on
    its data set: fetching one fetches those, under the plain name, where `run --scenario Interactive` looks."""
    from subtool.fetch.api import select
    from subtool.mlperf.assets import ASSETS

    pairs = (("llama2-70b-interactive-99", "llama2-70b-99"), ("llama3.1-8b-interactive", "llama3.1-8b"))
    for interactive, plain in pairs:
        got = select(interactive, assets=ASSETS)
        assert got == select(plain, assets=ASSETS) and {a.benchmark for a in got} == {plain}
    result = runner.invoke(app, ["fetch", "resnet50-interactive"])  # no plain files either: the same one line
    assert result.exit_code == 2 and "[fetch.unknown_model]" in result.output


def test_a_failed_fetch_into_a_new_folder_leaves_nothing_behind(entries, file_server, tmp_path):
    del file_server.files["/rajpurkar.example.org/squad/dev-v1.1.json"]
    proc = subtool("fetch", "bert-99", "--dataset-only", "--to", str(tmp_path / "new"))
    assert proc.returncode == 3, proc.stderr
    assert not (tmp_path / "new").exists()  # no empty assets/.staging/bert-99 with a lock file in it


def test_a_to_that_is_a_dangling_link_is_named_as_one(entries, tmp_path):
    (tmp_path / "dang").symlink_to(tmp_path / "nonexist")
    proc = subtool("fetch", "bert-99", "--dataset-only", "--to", str(tmp_path / "dang"))
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[0]
    assert "[io.dangling_link]" in line and str(tmp_path / "nonexist") in line and "File exists" not in line


def test_a_data_set_no_source_serves_says_how_to_get_it_in_fetch_its_plan_and_run(tmp_path):
    """GPT-J's cnn_eval.json is built with the reference's download_cnndm.py, never fetched: every place that would
    send a user to `subtool fetch gptj-99 --dataset-only` says that instead (no circle of hints)."""
    refused = runner.invoke(app, ["fetch", "gptj-99", "--dataset-only"])
    assert refused.exit_code == 2 and "[fetch.not_served]" in refused.stderr and "download_cnndm.py" in refused.stderr
    plan = runner.invoke(app, ["fetch", "gptj-99", "--plan"])
    assert plan.exit_code == 0 and "dataset: not fetched" in " ".join(plan.output.split())
    run = runner.invoke(app, ["run", "--model", "gptj-99", "--model-path", str(tmp_path), "--out", str(tmp_path / "o")])
    said = " ".join(run.stderr.split())
    assert run.exit_code == 2 and "[run.inputs]" in said and "download_cnndm.py" in said
    assert "--dataset-only" not in said


def test_a_token_read_from_a_crlf_file_is_used_without_its_line_break(entries, monkeypatch, tmp_path, own_cache):
    # export HF_TOKEN="$(cat token.txt)" keeps a Windows file's carriage return: requests refused the header
    monkeypatch.setenv("HF_TOKEN", HF_SECRET + "\r\n")
    proc = subtool("fetch", "bert-99", "--model-only")
    assert proc.returncode == 0, proc.stderr
    assert HF_SECRET not in proc.stderr + proc.stdout


def test_a_token_of_two_lines_is_one_line_naming_the_variable_never_the_token(entries, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HF_SECRET + "\n" + HF_SECRET)
    proc = subtool("fetch", "bert-99", "--model-only")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "[fetch.hub_token]" in lines[0] and "HF_TOKEN" in lines[0], proc.stderr
    assert HF_SECRET not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
