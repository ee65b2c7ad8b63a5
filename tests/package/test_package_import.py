"""`subtool package` from other harnesses' logs (MLC raw results, loose LoadGen dirs), both layouts, and every
kind of bad input: each gives one clear error and leaves the tree exactly as it was."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from subtool.cli import app
from subtool.errors import SubtoolError
from subtool.package import group as package_group
from subtool.package import truncate as truncate_mod
from subtool.package.api import PackageOptions, package_results
from subtool.package.staging import ASIDE_PREFIX, STAGING_PREFIX

runner = CliRunner()


def opts(out: Path, *from_dirs: Path, **kw) -> PackageOptions:
    base = dict(
        from_dirs=list(from_dirs),
        perf=None,
        acc=None,
        compliance=[],
        model=None,
        scenario=None,
        submitter="TeamX",
        division=None,
        system="box1",
        system_file=None,
        out=out,
    )
    base.update(kw)
    return PackageOptions(**base)


FULL_LOGS = ".full_logs"  # package's default home of the untruncated logs, inside --out; kept, never part of it


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and inode in the tree (the kept full logs aside): 'unchanged' means neither rewritten
    nor replaced."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_ino)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != FULL_LOGS
    }


def top(root: Path) -> list[str]:
    """What lies at the tree root besides the kept full logs (staging or moved-aside folders would show here)."""
    return sorted(p.name for p in root.iterdir() if p.name != FULL_LOGS)


def files_below(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------------------------- MLC
@pytest.mark.parametrize("version", ["v6.1", "v5.0"])
def test_mlc_raw_results_both_layouts(pkg_lg, tmp_path, version, pkg_accuracy_line):
    out = tmp_path / "tree"
    res = package_results(opts(out, pkg_lg["mlc"], system=None, version=version))
    system = "mlc_box-reference-cpu-pytorch"
    assert sorted((r.division, r.system, r.scenario) for r in res.results) == [
        ("open", system, "Offline"),
        ("open", system, "SingleStream"),
    ]
    sub = out / "open" / "TeamX"
    sysjson = json.loads((sub / "systems" / f"{system}.json").read_text())
    # system_meta.json wins over detection; the folder decides division and submitter
    assert sysjson["system_name"] == "MLC test box" and sysjson["cooling"] == "air"
    assert (sysjson["division"], sysjson["submitter"]) == ("open", "TeamX")
    result = sub / "results" / system / "bert-99" / "Offline"
    if version == "v6.1":
        meas_dir, t01 = result, result / "TEST01"
        assert files_below(result / "performance" / "run_1") == {
            "mlperf_log_summary.txt",
            "mlperf_log_detail.txt",
            "mlperf_log_accuracy.json",
        }
        meas_file = meas_dir / "measurements.json"
    else:
        meas_dir = sub / "measurements" / system / "bert-99" / "Offline"
        t01 = sub / "compliance" / system / "bert-99" / "Offline" / "TEST01"
        meas_file = meas_dir / f"{system}_Offline.json"
        assert files_below(result) == {
            "performance/run_1/mlperf_log_summary.txt",
            "performance/run_1/mlperf_log_detail.txt",
            "performance/run_1/mlperf_log_accuracy.json",
            "accuracy/mlperf_log_summary.txt",
            "accuracy/mlperf_log_detail.txt",
            "accuracy/accuracy.txt",
            "accuracy/mlperf_log_accuracy.json",
        }
        assert (sub / "code" / "bert-99" / "README.md").is_file() and not (sub / "src").exists()
    assert files_below(meas_dir) >= {"README.md", "user.conf", meas_file.name}
    assert json.loads(meas_file.read_text())["starting_weights_filename"] == "model.pytorch"
    assert (t01 / "verify_performance.txt").is_file() and (t01 / "performance/run_1/mlperf_log_detail.txt").is_file()
    # MLC's own accuracy.txt is kept as written, the hash appended
    acc_txt = (result / "accuracy" / "accuracy.txt").read_text()
    assert acc_txt.startswith("Reading examples...\n") and pkg_accuracy_line in acc_txt
    assert acc_txt.rstrip().splitlines()[-1].startswith("hash=")
    # MLC extras stay out of the tree; imported logs do not ship subtool's source
    assert not list(out.rglob("mlc-host-info.json"))
    assert "MLC" in (meas_dir / "README.md").read_text()
    assert not list(out.rglob("subtool-0.1.0"))


def test_mlc_missing_accuracy_txt_names_the_file(pkg_lg, pkg_copy, tmp_path):
    mlc = pkg_copy(pkg_lg["mlc"])
    missing = mlc / "mlc_box-reference-cpu-pytorch" / "bert-99" / "Offline" / "accuracy" / "accuracy.txt"
    missing.unlink()
    r = runner.invoke(app, ["package", "--from", str(mlc), "--submitter", "TeamX", "--out", str(tmp_path / "t")])
    assert r.exit_code == 2
    assert f"{missing}: accuracy.txt is missing" in r.stderr and "[import.accuracy_missing]" in r.stderr
    assert "accuracy-squad.py" in r.stderr
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    ("mapping", "said"),
    [
        ('{"bert-99": ["bert-99"]}', "maps 'bert-99' to list"),
        ('{"bert-99": {"a": 1}}', "maps 'bert-99' to dict"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"bert-99": NaN}', "not a finite number"),
    ],
    ids=["list", "object", "deep", "nan"],
)
def test_mlc_model_mapping_that_maps_to_no_name_is_one_line(pkg_lg, pkg_copy, tmp_path, mapping, said):
    mlc = pkg_copy(pkg_lg["mlc"])
    path = (
        mlc / "mlc_box-reference-cpu-pytorch" / "bert-99" / "Offline" / "performance" / "run_1" / "model_mapping.json"
    )
    path.write_text(mapping)  # the mapping nearest the logs is the one read
    r = runner.invoke(app, ["package", "--from", str(mlc), "--submitter", "TeamX", "--out", str(tmp_path / "t")])
    assert r.exit_code == 2, r.output
    assert said in r.stderr and "[import.bad_json]" in r.stderr and str(path) in r.stderr
    assert not (tmp_path / "t").exists()


# ------------------------------------------------------------------------------------------ loose dirs
def test_loose_logs_nvidia_style(pkg_lg, tmp_path):
    loose = pkg_lg["loose"]
    out = tmp_path / "tree"
    r = runner.invoke(
        app,
        [
            "package",
            "--perf",
            str(loose / "Offline_performance"),
            "--acc",
            str(loose / "Offline_accuracy"),
            "--compliance",
            f"TEST01={loose / 'Offline_TEST01'}",
            "--model",
            "bert-99",
            "--scenario",
            "Offline",
            "--division",
            "open",
            "--submitter",
            "TeamX",
            "--system",
            "dgx",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    [res] = json.loads(r.stdout)["results"]
    result = Path(res["path"])
    assert res["scenario"] == "Offline" and res["run_style"] == "short"
    # no user.conf beside NVIDIA's logs: rebuilt from what LoadGen logged it applied
    conf = (result / "user.conf").read_text()
    assert "reconstructed by subtool" in conf
    assert "bert.Offline.target_qps = 100000" in conf and "bert.Offline.min_duration = 200" in conf
    assert (result / "TEST01" / "verify_accuracy.txt").is_file()
    meas = json.loads((result / "measurements.json").read_text())
    assert meas["starting_weights_filename"].endswith("model.pytorch")  # bert-99 reference defaults
    # …and the README says that nothing named the weights, instead of claiming the reference ones silently
    assert "names the reference weights" in " ".join((result / "README.md").read_text().split())


def _loose_args(run: Path, out: Path, *extra: str) -> list[str]:
    return [
        "package",
        "--perf",
        str(run / "performance" / "run_1"),
        "--acc",
        str(run / "accuracy"),
        "--model",
        "bert-99",
        "--submitter",
        "TeamX",
        "--out",
        str(out),
        *extra,
    ]


def test_loose_logs_inside_a_demo_run_stay_a_demo(pkg_lg, tmp_path):
    demo = pkg_lg["demo_Offline"]
    r = runner.invoke(app, _loose_args(demo, tmp_path / "closed", "--division", "closed"))
    assert r.exit_code == 2 and "[package.demo_closed]" in r.output
    r = runner.invoke(app, _loose_args(demo, tmp_path / "tree", "--system", "box", "--json"))
    assert r.exit_code == 0, r.output
    [res] = json.loads(r.stdout)["results"]
    assert res["demo"] is True and res["division"] == "open" and res["system"] == "box-demo"
    result = Path(res["path"])
    assert "**DEMO**" in (result / "README.md").read_text()
    weights = json.loads((result / "measurements.json").read_text())["starting_weights_filename"]
    assert weights == "subtool embedded demo: random weights"


@pytest.mark.parametrize(
    "record",
    [
        "{not json",
        "[1, 2]",
        '{"demo": true, "modes": {"performance": {"dir": "x"}}}',
        '{"demo": true, "modes": "performance"}',
    ],
)
def test_loose_logs_beside_a_foreign_or_lying_run_json_are_not_a_demo(pkg_lg, pkg_copy, tmp_path, record):
    run = pkg_copy(pkg_lg["Offline"])
    (run / "run.json").write_text(record)
    r = runner.invoke(app, _loose_args(run, tmp_path / "tree", "--division", "closed", "--system", "box", "--json"))
    if '"modes": "performance"' in record:  # modes not a table: the default folders are the run's
        assert r.exit_code == 2 and "[package.demo_closed]" in r.output
        return
    assert r.exit_code == 0, r.output
    [res] = json.loads(r.stdout)["results"]
    assert res["demo"] is False and res["division"] == "closed"


def test_loose_scenario_read_from_logs_when_not_given(pkg_lg, tmp_path):
    run = pkg_lg["SingleStream"]
    res = package_results(
        opts(tmp_path / "t", perf=run / "performance/run_1", acc=run / "accuracy", model="bert-99", division="open")
    )
    assert res.results[0].scenario == "SingleStream"


def test_open_division_custom_model_mapping(pkg_lg, tmp_path):
    run = pkg_lg["Offline"]
    out = tmp_path / "t"
    package_results(
        opts(out, perf=run / "performance/run_1", acc=run / "accuracy", model="my-bert=bert-99", division="open")
    )
    sub = out / "open" / "TeamX"
    assert (sub / "results" / "box1" / "my-bert" / "Offline" / "accuracy" / "accuracy.txt").is_file()
    assert json.loads((sub / "model_mapping.json").read_text()) == {"my-bert": "bert-99"}
    with pytest.raises(SubtoolError, match="only allowed in the open division"):
        package_results(
            opts(
                tmp_path / "t2",
                perf=run / "performance/run_1",
                acc=run / "accuracy",
                model="my-bert=bert-99",
                division="closed",
            )
        )


# ----------------------------------------------------------------------------------------- bad input
def test_server_log_given_as_offline(pkg_lg, tmp_path):
    run = pkg_lg["Server"]
    r = runner.invoke(
        app,
        [
            "package",
            "--perf",
            str(run / "performance/run_1"),
            "--acc",
            str(run / "accuracy"),
            "--model",
            "bert-99",
            "--scenario",
            "Offline",
            "--submitter",
            "TeamX",
            "--out",
            str(tmp_path / "t"),
        ],
    )
    assert r.exit_code == 2
    assert "this is a Server log, but it was given as Offline" in r.stderr
    assert "[import.scenario_mismatch]" in r.stderr and "--scenario Server" in r.stderr
    assert not (tmp_path / "t").exists()


def test_accuracy_log_given_as_performance(pkg_lg, tmp_path):
    run = pkg_lg["Offline"]
    with pytest.raises(SubtoolError, match="this is an accuracy log .* given as the performance log") as exc:
        package_results(opts(tmp_path / "t", perf=run / "accuracy", acc=run / "performance/run_1", model="bert-99"))
    assert exc.value.rule == "import.wrong_mode"


def test_logs_of_another_model(pkg_lg, pkg_copy, tmp_path):
    llama = pkg_lg["llama_Offline"]
    with pytest.raises(SubtoolError) as exc:
        package_results(opts(tmp_path / "t", perf=llama / "performance/run_1", acc=llama / "accuracy", model="bert-99"))
    assert exc.value.rule == "import.model_mismatch" and "24576 samples" in exc.value.message
    assert "llama2-70b-99" in exc.value.message
    # a run directory whose run.json names another model than its user.conf was run with
    run = pkg_copy(pkg_lg["Offline"])
    record = json.loads((run / "run.json").read_text())
    record["model"] = "llama2-70b-99"
    (run / "run.json").write_text(json.dumps(record))
    with pytest.raises(SubtoolError, match="user.conf sets bert but the result is llama2-70b-99") as exc:
        package_results(opts(tmp_path / "t", run))
    assert not (tmp_path / "t").exists()


def _good_tree(pkg_lg, out: Path) -> dict:
    package_results(opts(out, pkg_lg["SingleStream"]))
    return snapshot(out)


@pytest.mark.parametrize(
    "damage,rule",
    [
        ("accuracy_cut", "import.accuracy_log_unparsable"),
        ("accuracy_garbage", "import.accuracy_log_unparsable"),
        ("detail_cut", "import.truncated_log"),
        ("hash_mismatch", "import.accuracy_hash_mismatch"),
        # found by probing: these were copied into the tree with exit 0 (the checker can only warn on a summary)
        ("summary_garbage", "import.summary_unreadable"),
        ("summary_empty", "import.summary_unreadable"),
        ("summary_cut", "import.summary_unreadable"),
        ("user_conf_binary", "import.user_conf_unreadable"),
    ],
)
def test_bad_logs_leave_tree_unchanged(pkg_lg, pkg_copy, tmp_path, damage, rule):
    out = tmp_path / "tree"
    before = _good_tree(pkg_lg, out)
    run = pkg_copy(pkg_lg["Offline"])
    acc_log = run / "accuracy" / "mlperf_log_accuracy.json"
    if damage == "accuracy_cut":
        data = acc_log.read_bytes()
        acc_log.write_bytes(data[: len(data) // 2])
    elif damage == "accuracy_garbage":
        acc_log.write_text("this is not json\n" * 1000)
    elif damage == "detail_cut":
        detail = run / "performance" / "run_1" / "mlperf_log_detail.txt"
        data = detail.read_bytes()
        detail.write_bytes(data[: len(data) // 2])
    elif damage.startswith("summary_"):
        summary = run / "performance" / "run_1" / "mlperf_log_summary.txt"
        text = summary.read_bytes()
        summary.write_bytes(
            {"summary_garbage": bytes(range(256)) * 20, "summary_empty": b"", "summary_cut": text[: len(text) // 2]}[
                damage
            ]
        )
    elif damage == "user_conf_binary":
        (run / "user.conf").write_bytes(bytes(range(256)) * 4)
    else:
        (run / "accuracy" / "accuracy.txt").write_text('{"exact_match": 1.0, "f1": 2.0}\n\nhash=' + "0" * 64 + "\n")
    r = runner.invoke(
        app, ["package", "--from", str(run), "--submitter", "TeamX", "--system", "box1", "--out", str(out)]
    )
    assert r.exit_code == 2
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and f"[{rule}]" in errors[0], r.stderr
    assert snapshot(out) == before
    assert top(out) == ["closed"]


def test_duplicate_inputs_and_existing_result(pkg_lg, tmp_path):
    out = tmp_path / "tree"
    with pytest.raises(SubtoolError, match="two inputs are the same result") as exc:
        package_results(opts(out, pkg_lg["Offline"], pkg_lg["Offline"]))
    assert exc.value.rule == "package.duplicate_result" and not out.exists()
    before = _good_tree(pkg_lg, out)
    r = runner.invoke(
        app,
        [
            "package",
            "--from",
            str(pkg_lg["SingleStream"]),
            "--submitter",
            "TeamX",
            "--system",
            "box1",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 2 and "[package.result_exists]" in r.stderr and "--force" in r.stderr
    assert snapshot(out) == before
    # a "no" at the prompt changes nothing either
    asked = []
    with pytest.raises(SubtoolError):
        package_results(opts(out, pkg_lg["SingleStream"]), confirm=lambda q: asked.append(q) or False)
    assert asked and "closed/TeamX/box1/bert-99/SingleStream" in asked[0]
    assert snapshot(out) == before


def test_adding_never_clobbers_and_force_replaces_only_its_result(pkg_lg, tmp_path):
    out = tmp_path / "tree"
    package_results(opts(out, pkg_lg["SingleStream"]))
    package_results(opts(out, pkg_lg["Offline"], system="box2"))  # another system
    package_results(opts(out, pkg_lg["Server"], division="closed"))  # another scenario, same system
    sub = out / "closed" / "TeamX"
    (sub / "documentation" / "README.md").write_text("edited by the team\n")
    (sub / "systems" / "box1.json").write_text(
        (sub / "systems" / "box1.json").read_text().replace('"not detected"', '"liquid"')
    )
    before = snapshot(out)
    res = package_results(opts(out, pkg_lg["Offline"], system="box2", force=True))
    assert res.results[0].replaced
    after = snapshot(out)
    box2_offline = "closed/TeamX/results/box2/bert-99/Offline/"
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    # only the replaced result was rewritten; everything else kept its bytes and inode
    assert changed and all(k.startswith(box2_offline) for k in changed)
    assert (sub / "documentation" / "README.md").read_text() == "edited by the team\n"
    assert '"liquid"' in (sub / "systems" / "box1.json").read_text()
    assert {p.name for p in (sub / "results").iterdir()} == {"box1", "box2"}
    assert {p.name for p in (sub / "results" / "box1" / "bert-99").iterdir()} == {"SingleStream", "Server"}
    assert not [p for p in top(out) if p.startswith(".")]


def test_system_file_conflicting_with_tree_needs_force(pkg_lg, tmp_path):
    out = tmp_path / "tree"
    package_results(opts(out, pkg_lg["SingleStream"]))
    before = snapshot(out)
    overrides = tmp_path / "sys.json"
    overrides.write_text(json.dumps({"cooling": "liquid"}))
    with pytest.raises(SubtoolError, match="already in the tree and differs") as exc:
        package_results(opts(out, pkg_lg["Offline"], system_file=overrides))
    assert exc.value.rule == "package.system_exists" and snapshot(out) == before
    package_results(opts(out, pkg_lg["Offline"], system_file=overrides, force=True))
    assert json.loads((out / "closed/TeamX/systems/box1.json").read_text())["cooling"] == "liquid"


@pytest.mark.parametrize("damaged", ["{not json", "[1, 2]"])
def test_damaged_system_description_in_tree_is_kept_as_it_is(pkg_lg, tmp_path, damaged):
    out = tmp_path / "tree"
    package_results(opts(out, pkg_lg["SingleStream"]))
    target = out / "closed/TeamX/systems/box1.json"
    target.write_text(damaged)
    res = package_results(opts(out, pkg_lg["Offline"]))  # joins box1: no traceback, the file is not repaired
    assert target.read_text() == damaged
    assert "kept the existing closed/TeamX/systems/box1.json (detected values not applied)" in res.notes


def test_interrupted_package_leaves_previous_tree(pkg_lg, tmp_path, monkeypatch):
    out = tmp_path / "tree"
    before = _good_tree(pkg_lg, out)
    calls = {"n": 0}
    real = truncate_mod.truncate_accuracy_log

    def interrupted(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the TEST01 log, after the main accuracy log was written
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr("subtool.package.results.truncate_accuracy_log", interrupted)
    with pytest.raises(KeyboardInterrupt):
        package_results(opts(out, pkg_lg["Offline"]))
    assert calls["n"] == 2
    assert snapshot(out) == before
    assert not [p for p in top(out) if p.startswith(".")]


def test_killed_between_renames_is_recovered(pkg_lg, tmp_path):
    out = tmp_path / "tree"
    before = _good_tree(pkg_lg, out)
    # what a SIGKILL between the two renames leaves: the old tree moved aside, a staging dir
    os.replace(out / "closed" / "TeamX", out / f"{ASIDE_PREFIX}closed--TeamX--99999")
    (out / f"{STAGING_PREFIX}closed--TeamX--99999" / "closed").mkdir(parents=True)
    package_results(opts(out, pkg_lg["Offline"]))
    after = snapshot(out)
    # the two lists of the tree's results name the joining one; everything else is as it was
    lists = {"closed/TeamX/documentation/README.md", "closed/TeamX/src/README.md"}
    assert all(after.get(k) == v for k, v in before.items() if k not in lists)
    assert all(b"bert-99 / Offline" in after[k][0] or b"bert-99 Offline" in after[k][0] for k in lists)
    assert "closed/TeamX/results/box1/bert-99/Offline/accuracy/accuracy.txt" in after
    assert top(out) == ["closed"]


# ------------------------------------------------------------------------------------ accuracy sources
def test_accuracy_from_run_json_metrics_or_scorer(pkg_lg, pkg_copy, tmp_path):
    run = pkg_copy(pkg_lg["Offline"])
    (run / "accuracy" / "accuracy.txt").unlink()
    res = package_results(opts(tmp_path / "t", run))
    txt = (res.results[0].path / "accuracy" / "accuracy.txt").read_text()
    assert txt.startswith('{"exact_match": 83.412, "f1": 90.502}\n\nhash=')
    # loose logs without accuracy.txt: an accuracy scorer supplied by the caller computes it
    seen = []

    def scorer(imp):
        seen.append(imp.acc_dir / "mlperf_log_accuracy.json")
        return '{"exact_match": 80.0, "f1": 88.0}\n'

    res = package_results(
        opts(tmp_path / "t2", perf=run / "performance/run_1", acc=run / "accuracy", model="bert-99", division="open"),
        accuracy_scorer=scorer,
    )
    assert seen == [run / "accuracy" / "mlperf_log_accuracy.json"]
    assert (
        (res.results[0].path / "accuracy" / "accuracy.txt")
        .read_text()
        .startswith('{"exact_match": 80.0, "f1": 88.0}\n\nhash=')
    )


def test_already_truncated_input_is_kept(pkg_lg, tmp_path):
    first = tmp_path / "first"
    package_results(opts(first, pkg_lg["Offline"], division="open"))
    result = first / "open/TeamX/results/box1/bert-99/Offline"
    # re-package the published result as loose logs (what a team does with a tree from last round)
    res = package_results(
        opts(
            tmp_path / "second",
            perf=result / "performance/run_1",
            acc=result / "accuracy",
            model="bert-99",
            division="open",
        )
    )
    again = res.results[0].path / "accuracy"
    assert (again / "accuracy.txt").read_bytes() == (result / "accuracy" / "accuracy.txt").read_bytes()
    assert (again / "mlperf_log_accuracy.json").read_bytes() == (
        result / "accuracy" / "mlperf_log_accuracy.json"
    ).read_bytes()


def test_full_logs_never_deleted_on_replace(pkg_lg, pkg_copy, tmp_path):
    out = tmp_path / "tree"
    res = package_results(opts(out, pkg_lg["Offline"]))
    full = res.full_logs / "closed/TeamX/box1/bert-99/Offline/accuracy/mlperf_log_accuracy.json"
    first = full.read_bytes()
    run = pkg_copy(pkg_lg["Offline"])
    log = run / "accuracy" / "mlperf_log_accuracy.json"
    data = log.read_bytes()
    log.write_bytes(data.replace(b'"seq_id" : 0,', b'"seq_id" :  0,', 1))
    package_results(opts(out, run, force=True))
    kept = sorted(p.name for p in full.parent.iterdir())
    assert full.read_bytes() == log.read_bytes()
    replaced = [n for n in kept if n.startswith("mlperf_log_accuracy.replaced-") and n.endswith(".json")]
    assert len(replaced) == 1 and (full.parent / replaced[0]).read_bytes() == first
    assert hashlib.sha256(full.read_bytes()).hexdigest() in (full.parent / (full.name + ".sha256")).read_text()


def test_from_with_scenario_picks_among_results(pkg_lg, tmp_path):
    res = package_results(opts(tmp_path / "t", pkg_lg["mlc"], system=None, scenario="SingleStream"))
    assert [r.scenario for r in res.results] == ["SingleStream"]
    with pytest.raises(SubtoolError, match="no result matches --model \\* --scenario Server; found ") as exc:
        package_results(opts(tmp_path / "t2", pkg_lg["mlc"], system=None, scenario="Server"))
    assert "bert-99/Offline" in exc.value.message


def test_interruption_after_merging_model_mapping_leaves_it(pkg_lg, tmp_path, monkeypatch):
    run = pkg_lg["Offline"]
    out = tmp_path / "tree"
    package_results(
        opts(out, perf=run / "performance/run_1", acc=run / "accuracy", model="bert-a=bert-99", division="open")
    )
    before = snapshot(out)

    def boom(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(package_group, "write_documents", boom)  # after model_mapping.json was merged
    with pytest.raises(KeyboardInterrupt):
        package_results(
            opts(out, perf=run / "performance/run_1", acc=run / "accuracy", model="bert-b=bert-99", division="open")
        )
    assert snapshot(out) == before
    assert json.loads((out / "open/TeamX/model_mapping.json").read_text()) == {"bert-a": "bert-99"}


def test_an_interrupted_write_waits_for_its_workers_through_a_second_interrupt():
    # found by probing: a Ctrl-C landing inside the pool's own join let workers write on after the staging folder
    # was removed, and the folder came back half-written
    import signal
    import time
    from concurrent.futures import ThreadPoolExecutor

    from subtool.package.group import _finish_running

    fired = []

    def interrupt(signum, frame):  # three interrupts, 0.1 s apart, all while the 0.6 s task still runs
        fired.append(1)
        if len(fired) < 3:
            signal.setitimer(signal.ITIMER_REAL, 0.1)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            slow = pool.submit(time.sleep, 0.6)
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            _finish_running([slow])
            assert slow.done() and len(fired) == 3
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ----------------------------------------------------- survivors of a mutation probe: each fails on its mutant
@pytest.mark.parametrize("damage", ["no_verdict", "nan_result"])
def test_a_whole_log_line_missing_or_a_nan_value_is_refused(pkg_lg, pkg_copy, tmp_path, damage):
    """Cut at a line boundary (no half line for the parser to trip on): the end-of-run verdict is missing; or
    a result that is not a finite number."""
    from subtool.package.logs import read_detail_log

    run = pkg_copy(pkg_lg["Offline"])
    detail = run / "performance" / "run_1" / "mlperf_log_detail.txt"
    lines = detail.read_text().splitlines(keepends=True)
    if damage == "no_verdict":
        lines = [ln for ln in lines if '"key": "result_validity"' not in ln]
        rule = "import.truncated_log"
    else:
        [i] = [i for i, ln in enumerate(lines) if '"key": "result_samples_per_second"' in ln]
        lines[i] = re.sub(r'"value": [^,}]+', '"value": NaN', lines[i])
        rule = "import.not_finite"
    detail.write_text("".join(lines))
    with pytest.raises(SubtoolError) as exc:
        read_detail_log(detail, expect_mode="performance")
    assert exc.value.rule == rule


def test_weight_data_types_come_from_the_runs_precision_where_no_measurements_give_them(pkg_lg, pkg_copy, tmp_path):
    """A run.json whose measurements leave weight_data_types out (another harness's, an older subtool's): the
    run's own precision is what the weights ran in, not a blank the checker fails."""
    run = pkg_copy(pkg_lg["Offline"])
    record = json.loads((run / "run.json").read_text())
    del record["measurements"]["weight_data_types"]
    record["precision"] = "bf16"
    (run / "run.json").write_text(json.dumps(record))
    for stray in run.rglob("measurements.json"):
        stray.unlink()
    res = package_results(opts(tmp_path / "t", run))
    assert json.loads((res.results[0].path / "measurements.json").read_text())["weight_data_types"] == "bf16"


def test_an_accuracy_txt_that_already_carries_the_logs_hash_is_kept_as_given(pkg_lg, pkg_copy, tmp_path):
    """The official accuracy script's output (its metric line, then hash= of the full log) beside the full log:
    packaged as it is, with one hash line, never a second one appended."""
    run = pkg_copy(pkg_lg["Offline"])
    log = run / "accuracy" / "mlperf_log_accuracy.json"
    given = f'{{"exact_match": 83.412, "f1": 90.502}}\n\nhash={hashlib.sha256(log.read_bytes()).hexdigest()}\n'
    (run / "accuracy" / "accuracy.txt").write_text(given)
    res = package_results(opts(tmp_path / "t", run))
    assert (res.results[0].path / "accuracy" / "accuracy.txt").read_text() == given
