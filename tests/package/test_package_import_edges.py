"""Refusals of the import step that no packaging run in the other tests reaches: a compliance run of another
scenario, a compliance test given twice, and a custom model name that model_mapping.json already maps to another
benchmark."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from subtool.errors import SubtoolError
from subtool.mlperf.benchmarks import require_benchmark
from subtool.package import group as package_group
from subtool.package.importers import _check_compliance, _loose_compliance


def test_a_compliance_run_of_another_scenario_is_refused(pkg_lg, tmp_path):
    test01 = tmp_path / "TEST01" / "performance" / "run_1"
    test01.mkdir(parents=True)
    shutil.copy(pkg_lg["Server"] / "performance" / "run_1" / "mlperf_log_detail.txt", test01)
    with pytest.raises(SubtoolError) as err:
        _check_compliance({"TEST01": tmp_path / "TEST01"}, "Offline", require_benchmark("bert-99"))
    assert err.value.rule == "import.scenario_mismatch" and "TEST01 compliance run" in err.value.message
    _check_compliance({"TEST01": tmp_path / "TEST01"}, "Server", require_benchmark("bert-99"))  # its own scenario


def test_a_compliance_test_given_twice_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _loose_compliance([f"TEST01={tmp_path / 'a'}"]) == {"TEST01": tmp_path / "a"}
    with pytest.raises(SubtoolError) as err:
        _loose_compliance([f"TEST01={tmp_path / 'a'}", f"test01={tmp_path / 'b'}"])
    assert err.value.rule == "import.duplicate"


def _group(root: Path) -> SimpleNamespace:
    layout = SimpleNamespace(
        model_mapping=lambda division, submitter: Path(division) / submitter / "model_mapping.json"
    )
    return SimpleNamespace(root=root, out=root, layout=layout, division="open", submitter="TeamX")


def _item(model: str, bench: str) -> SimpleNamespace:
    imp = SimpleNamespace(bench=SimpleNamespace(name=bench), custom_model=model != bench)
    return SimpleNamespace(key=SimpleNamespace(model=model), imp=imp)


def test_a_custom_model_name_mapped_to_another_benchmark_is_refused_and_the_mapping_kept(tmp_path):
    target = tmp_path / "open" / "TeamX" / "model_mapping.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps({"my-model": "resnet"}))
    package_group._merge_model_mapping(_group(tmp_path), [_item("other-model", "bert-99")])
    assert json.loads(target.read_text()) == {"my-model": "resnet", "other-model": "bert-99"}
    with pytest.raises(SubtoolError) as err:
        package_group._merge_model_mapping(_group(tmp_path), [_item("my-model", "bert-99")])
    assert err.value.rule == "package.model_mapping_conflict"
    assert json.loads(target.read_text()) == {"my-model": "resnet", "other-model": "bert-99"}


def test_loose_performance_logs_without_the_accuracy_run_are_refused(pkg_lg):
    from subtool.package.importers import import_loose

    run = pkg_lg["Offline"]
    with pytest.raises(SubtoolError) as err:
        import_loose(run / "performance" / "run_1", None, model="bert-99", scenario="Offline", compliance=[])
    assert err.value.rule == "cli.usage" and "--perf needs --acc" in err.value.message


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/x> <img src=x onerror=alert(1)>",
        "https://example.com/a b",
        "https://example.com/`code`",
        "javascript:alert(1)",
    ],
)
def test_a_recorded_url_that_could_reshape_the_readme_is_shown_as_code_not_linked(url):
    from subtool.package.documents import _md_link

    shown = _md_link(url)
    assert shown.startswith("`") and shown.endswith("`") and "<" + url + ">" != shown


def test_a_plain_url_is_linked():
    from subtool.package.documents import _md_link

    assert _md_link("https://huggingface.co/bert-base") == "<https://huggingface.co/bert-base>"


def test_a_compliance_test_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(SubtoolError, match="unknown compliance test 'TEST99'") as err:
        _loose_compliance([f"TEST99={tmp_path}"])
    assert err.value.rule == "cli.usage"


def test_user_conf_wildcard_lines_name_no_model_and_nul_bytes_are_refused(tmp_path):
    from subtool.package.importers import conf_models

    conf = tmp_path / "user.conf"
    conf.write_text("*.Offline.min_duration = 60000\nbert.Offline.target_qps = 10\n# llama.Server.x = 1\n")
    assert conf_models(conf) == {"bert"}
    conf.write_bytes(b"bert.Offline.target_qps = 10\n\x00")
    with pytest.raises(SubtoolError) as err:
        conf_models(conf)
    assert err.value.rule == "import.user_conf_unreadable"


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("bert.Offline.target_qps = 10  # mine", "value '#' is not a number"),  # LoadGen refuses the file
        ("bert.Offline.target_qps=10", "key=value needs spaces"),  # LoadGen skips it
        ("bert.Offline.target_qps = fast", "value 'fast' is not a number"),
        ("API_TOKEN = 1234", "is not model.scenario.setting"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "expected 'key = value'"),
        ("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", "a key with no value"),
    ],
)
def test_a_conf_line_loadgen_would_not_read_as_a_setting_is_refused_naming_it(tmp_path, line, why):
    """The conf check is LoadGen's own tokenization (mlperf.user_conf.read_settings), not a looser look-alike:
    a value that is no number passed `key = value`'s shape and was published as the run's conf."""
    from subtool.package.importers import conf_models

    conf = tmp_path / "user.conf"
    conf.write_text(f"# tuned\n*.Offline.min_duration = 60000\n{line}\n")
    with pytest.raises(SubtoolError) as err:
        conf_models(conf)
    assert err.value.rule == "import.user_conf_unreadable"
    assert "line 3 " in str(err.value) and why in str(err.value)


def test_run_directories_in_hidden_folders_are_not_imported(pkg_lg, tmp_path):
    from subtool.package.importers import discover

    shutil.copytree(pkg_lg["Offline"], tmp_path / "out" / "runs" / "bert-99" / "Offline")
    shutil.copytree(pkg_lg["Offline"], tmp_path / "out" / ".trash" / "Offline")
    (found,) = discover(tmp_path / "out")
    assert ".trash" not in Path(found.source).parts


def test_empty_folders_are_removed_and_files_kept(tmp_path):
    from subtool.package.staging import remove_empty_dirs

    (tmp_path / "r" / "TEST01" / "accuracy").mkdir(parents=True)
    (tmp_path / "r" / "performance" / "run_1").mkdir(parents=True)
    (tmp_path / "r" / "performance" / "run_1" / "log.txt").write_text("x")
    remove_empty_dirs(tmp_path / "r")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "r",
        "r/performance",
        "r/performance/run_1",
        "r/performance/run_1/log.txt",
    ]
