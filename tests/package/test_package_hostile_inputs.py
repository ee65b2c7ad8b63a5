"""What a harness's folder can slip into a tree bound for a public repository, found by probing `package`: a
user.conf or mlperf.conf that is a link to any file (an SSH key was published), endless or binary verdict files,
a performance log of another benchmark, and a run.json that calls a short run valid."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from subtool.cli import app

RESULT = "closed/TeamX/results/box1/bert-99/Offline"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\n-----END OPENSSH PRIVATE KEY-----\n"


def _loose(run: Path, out: Path, *extra: str, perf: Path | None = None):
    args = ["package", "--perf", str(perf or run / "performance" / "run_1"), "--acc", str(run / "accuracy")]
    args += ["--model", "bert-99", "--division", "closed", "--submitter", "TeamX", "--system", "box1"]
    return CliRunner().invoke(app, [*args, "--out", str(out), *extra])


def _refused(result, rule: str, out: Path) -> str:
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"[{rule}]" in said, result.output
    assert not (out / RESULT).exists()
    return said


@pytest.mark.parametrize("name", ["user.conf", "mlperf.conf"])
def test_a_conf_file_that_links_to_a_private_key_is_refused_not_published(pkg_lg, pkg_copy, tmp_path, name):
    run = pkg_copy(pkg_lg["Offline"])
    secret = tmp_path / "home" / ".ssh" / "id_ed25519"
    secret.parent.mkdir(parents=True)
    secret.write_text(KEY)
    conf = run / "performance" / "run_1" / name
    conf.unlink(missing_ok=True)
    conf.symlink_to(secret)
    said = _refused(_loose(run, tmp_path / "tree"), "import.user_conf_unreadable", tmp_path / "tree")
    assert f"{name} line 1 is not" in said and "OPENSSH" not in said


@pytest.mark.parametrize("name", ["user.conf", "mlperf.conf"])
def test_a_conf_file_of_random_bytes_or_endless_is_refused(pkg_lg, pkg_copy, tmp_path, name):
    run = pkg_copy(pkg_lg["Offline"])
    conf = run / "performance" / "run_1" / name
    conf.write_bytes(os.urandom(3000).replace(b"\n", b"x"))
    _refused(_loose(run, tmp_path / "a"), "import.user_conf_unreadable", tmp_path / "a")
    with conf.open("wb") as f:  # sparse: 5 GiB of zeros read whole would end the process
        f.truncate(5 << 30)
    said = _refused(_loose(run, tmp_path / "b"), "import.user_conf_unreadable", tmp_path / "b")
    assert "larger than 4 MiB" in said


def test_a_conf_file_of_settings_and_comments_is_kept(pkg_lg, pkg_copy, tmp_path):
    run = pkg_copy(pkg_lg["Offline"])
    conf = "# tuned\n\n*.Offline.min_duration = 200\n   # short\nbert.Offline.target_qps = 10 0x20 1e1\n"
    (run / "performance" / "run_1" / "mlperf.conf").write_text(conf)
    result = _loose(run, tmp_path / "tree")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tree" / RESULT / "mlperf.conf").read_text() == conf


def test_an_endless_or_binary_compliance_accuracy_txt_is_one_line(pkg_lg, pkg_copy, tmp_path):
    """A non-UTF-8 TEST01 accuracy.txt ended `package` with an internal error; a 5 GB one was copied whole."""
    run = pkg_copy(pkg_lg["Offline"])
    txt = run / "TEST01" / "accuracy" / "accuracy.txt"
    txt.write_bytes(b"hash=\xff\xfe\n")
    result = _loose(run, tmp_path / "a", "--compliance", f"TEST01={run / 'TEST01'}")
    assert result.exit_code != 70 and "[internal]" not in result.output, result.output
    with txt.open("wb") as f:
        f.truncate(5 << 30)
    said = _refused(
        _loose(run, tmp_path / "b", "--compliance", f"TEST01={run / 'TEST01'}"),
        "import.unreadable_file",
        tmp_path / "b",
    )
    assert "TEST01 accuracy/accuracy.txt is larger than 4 MiB" in said


def test_a_performance_log_of_another_benchmarks_data_set_is_refused(pkg_lg, pkg_copy, tmp_path):
    """Only accuracy logs were compared with the benchmark: llama2-70b's performance log became a bert-99 result."""
    run = pkg_copy(pkg_lg["Offline"])
    llama = pkg_lg["llama_Offline"] / "performance" / "run_1"
    said = _refused(_loose(run, tmp_path / "tree", perf=llama), "import.model_mismatch", tmp_path / "tree")
    assert "24576 samples" in said and "llama2-70b" in said


def test_run_json_calling_a_short_run_valid_does_not_hide_it(pkg_lg, pkg_copy, tmp_path):
    run = pkg_copy(pkg_lg["Offline"])
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "run_style": "valid"}))
    result = CliRunner().invoke(
        app, ["package", "--from", str(run), "--submitter", "TeamX", "--system", "box1", "--out", str(tmp_path / "t")]
    )
    assert result.exit_code == 0, result.output
    assert "[short run: not submittable]" in result.output
    [readme] = (tmp_path / "t").rglob("results/box1/bert-99/Offline/README.md")
    assert "Run style: short" in readme.read_text()


def test_a_results_own_notes_are_printed_not_only_in_json(pkg_lg, pkg_copy, tmp_path):
    """An accuracy.txt the checker reads nothing from fails a closed tree's check: package must say so."""
    run = pkg_copy(pkg_lg["Offline"])
    (run / "accuracy" / "accuracy.txt").write_text("garbage\n")
    result = _loose(run, tmp_path / "tree")
    assert result.exit_code == 0, result.output
    assert "  note: accuracy.txt" in result.output, result.output


@pytest.mark.parametrize("inside", [".", "open", "closed/TeamX/keep"])
def test_full_logs_inside_the_tree_is_refused_before_anything_is_written(pkg_lg, pkg_copy, tmp_path, inside):
    """In the tree's own folder the swap deleted the full logs while package said where they were; in a division
    folder they became part of the tree."""
    run = pkg_copy(pkg_lg["Offline"])
    out = tmp_path / "tree"
    said = _refused(_loose(run, out, "--full-logs", str(out / inside)), "package.full_logs_in_tree", out)
    assert "--full-logs is inside the tree" in said
    result = _loose(run, out, "--full-logs", str(out / ".full_logs" / "mine"))  # the hidden folder is fine
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("value", ["-5", "0", '"fast"'])
def test_a_result_that_is_no_positive_number_is_refused_not_packaged(pkg_lg, pkg_copy, tmp_path, value):
    """package wrote 'Result: -5' into the README and exited 0; check then failed the tree."""
    import re

    run = pkg_copy(pkg_lg["Offline"])
    detail = run / "performance" / "run_1" / "mlperf_log_detail.txt"
    text = detail.read_text()
    text, n = re.subn(r'("key": "result_samples_per_second", "value": )[^,]+', lambda m: m.group(1) + value, text)
    assert n == 1
    detail.write_text(text)
    said = _refused(_loose(run, tmp_path / "tree"), "import.bad_result", tmp_path / "tree")
    assert "result_samples_per_second" in said


@pytest.mark.parametrize("where", ["accuracy", "TEST01/performance/run_1"])
def test_random_bytes_as_another_folders_summary_log_are_refused(pkg_lg, pkg_copy, tmp_path, where):
    run = pkg_copy(pkg_lg["Offline"])
    (run / where / "mlperf_log_summary.txt").write_bytes(os.urandom(3000) + b"\xff\x00")
    result = _loose(run, tmp_path / "tree", "--compliance", f"TEST01={run / 'TEST01'}")
    _refused(result, "import.summary_unreadable", tmp_path / "tree")


def _kept_log(out: Path) -> Path:
    return out / ".full_logs" / "closed/TeamX/box1/bert-99/Offline/accuracy/mlperf_log_accuracy.json"


def test_another_harnesss_log_rewritten_in_place_leaves_the_kept_full_log_as_hashed(pkg_lg, pkg_copy, tmp_path):
    """The kept log was a hard link to the input: a harness re-running into the same folder (LoadGen truncates
    and rewrites the file) changed it under the hash the tree names."""
    run = pkg_copy(pkg_lg["Offline"])
    out = tmp_path / "tree"
    assert _loose(run, out).exit_code == 0
    kept = _kept_log(out)
    before = kept.read_bytes()
    with open(run / "accuracy" / "mlperf_log_accuracy.json", "r+b") as f:  # in place, same inode
        f.truncate(0)
        f.write(b"[]\n")
    assert kept.read_bytes() == before and kept.stat().st_nlink == 1


def test_a_package_that_fails_leaves_the_kept_full_logs_as_they_were(pkg_lg, pkg_copy, tmp_path):
    """It failed (an empty compliance folder) after the new full log had replaced the kept one, so .full_logs
    held B's log while the tree still named A's hash."""
    first, second = pkg_copy(pkg_lg["Offline"]), pkg_copy(pkg_lg["Offline"], "second")
    log = second / "accuracy" / "mlperf_log_accuracy.json"
    log.write_text(log.read_text().replace("[", "[ ", 1))  # another log: another hash
    txt = second / "accuracy" / "accuracy.txt"  # without the hash of the first log
    txt.write_text("".join(line for line in txt.read_text().splitlines(True) if not line.startswith("hash=")))
    out = tmp_path / "tree"
    assert _loose(first, out).exit_code == 0
    kept = {p.relative_to(out): p.read_bytes() for p in (out / ".full_logs").rglob("*") if p.is_file()}
    empty = tmp_path / "TEST01"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing the checker reads\n")
    result = _loose(second, out, "--force", "--compliance", f"TEST01={empty}")
    assert result.exit_code == 2 and "[import.compliance_empty]" in result.output, result.output
    after = {p.relative_to(out): p.read_bytes() for p in (out / ".full_logs").rglob("*") if p.is_file()}
    assert after == kept


def test_a_detail_log_that_is_a_fifo_is_unreadable_not_cut_short(pkg_lg, pkg_copy, tmp_path):
    """It was refused (without blocking) under import.truncated_log, which sends the user looking for a cut."""
    run = pkg_copy(pkg_lg["Offline"])
    detail = run / "performance" / "run_1" / "mlperf_log_detail.txt"
    detail.unlink()
    os.mkfifo(detail)
    said = _refused(_loose(run, tmp_path / "tree"), "import.unreadable_log", tmp_path / "tree")
    assert "not a regular file" in said


def test_a_file_where_a_division_folder_goes_is_refused_before_anything_is_read(pkg_lg, pkg_copy, tmp_path):
    run = pkg_copy(pkg_lg["Offline"])
    out = tmp_path / "tree"
    out.mkdir()
    (out / "closed").write_text("notes\n")
    said = _refused(_loose(run, out), "package.out_unwritable", out)
    assert "closed in --out is a file" in said and (out / "closed").read_text() == "notes\n"


def test_a_summary_log_that_is_a_link_is_followed_like_the_detail_log_beside_it(pkg_lg, pkg_copy, tmp_path):
    """A run folder of the user's own may hold links (a harness that links its logs): the detail log was read
    through one, the summary beside it refused as 'a symbolic link'."""
    run = pkg_copy(pkg_lg["Offline"])
    summary = run / "performance" / "run_1" / "mlperf_log_summary.txt"
    kept = tmp_path / "elsewhere" / "mlperf_log_summary.txt"
    kept.parent.mkdir()
    summary.rename(kept)
    summary.symlink_to(kept)
    result = _loose(run, tmp_path / "tree")
    assert result.exit_code == 0, result.output
    copied = tmp_path / "tree" / "closed/TeamX/results/box1/bert-99/Offline/performance/run_1/mlperf_log_summary.txt"
    assert not copied.is_symlink() and copied.read_bytes() == kept.read_bytes()


@pytest.mark.parametrize(
    ("line", "edit", "says"),
    [
        ("Samples per second", lambda v: str(float(v) * 2), "the summary's Samples per second is"),
        ("Result is", lambda v: "INVALID", "the summary says the run is 'INVALID'"),
        ("Scenario", lambda v: "Server", "the summary is for a 'Server' run"),
    ],
)
def test_a_summary_that_disagrees_with_its_detail_log_is_refused(pkg_lg, pkg_copy, tmp_path, line, edit, says):
    """package laid out a summary of another run (or an edited one) beside the detail log; check then failed the
    result (summary.mismatch). The comparison is check's own (mlperf.summary_match)."""
    run = pkg_copy(pkg_lg["Offline"])
    summary = run / "performance" / "run_1" / "mlperf_log_summary.txt"
    lines = summary.read_text().splitlines(keepends=True)
    at = next(i for i, text in enumerate(lines) if text.startswith(line + " :") or text.startswith(line + ":"))
    head, value = lines[at].split(":", 1)
    lines[at] = f"{head}: {edit(value.strip())}\n"
    summary.write_text("".join(lines))
    said = _refused(_loose(run, tmp_path / "tree"), "import.summary_mismatch", tmp_path / "tree")
    assert "mlperf_log_summary.txt" in said and says in said


def _from(src: Path, out: Path, *extra: str):
    args = ["package", "--from", str(src), "--submitter", "TeamX", "--system", "box1", "--out", str(out), *extra]
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize(
    "source,where",
    [
        ("Offline", "performance/run_1"),
        ("Offline", "accuracy"),
        ("Offline", "TEST01"),  # run.json records it
        ("mlc", "mlc_box-reference-cpu-pytorch/bert-99/Offline"),
        ("mlc", "mlc_box-reference-cpu-pytorch/bert-99/SingleStream/TEST01"),
    ],
)
def test_a_file_where_a_folder_goes_is_refused_naming_it(pkg_lg, pkg_copy, tmp_path, source, where):
    """A file in place of a compliance test's or MLC's scenario folder was passed over as if nothing were there:
    exit 0 and a tree without that result or test; one in place of a run's folder was 'missing'."""
    import shutil

    src = pkg_copy(pkg_lg[source])
    shutil.rmtree(src / where)
    (src / where).write_text("not a folder\n")
    out = tmp_path / "tree"
    result = _from(src, out)
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "should be a folder; this is a file [import.not_a_folder]" in said, said
    assert f"{src / where}:" in said and said.count("error:") == 1
    assert not [p for p in out.rglob("*") if p.is_file()]  # nothing written


def test_a_compliance_run_that_run_json_records_and_is_gone_is_said(pkg_lg, pkg_copy, tmp_path):
    import shutil

    run = pkg_copy(pkg_lg["Offline"])
    shutil.rmtree(run / "TEST01")
    result = _from(run, tmp_path / "tree")
    said = " ".join(result.output.split())
    assert result.exit_code == 0, said
    assert f"note: run.json records a TEST01 run, and {run / 'TEST01'} is gone: packaged without it" in said


@pytest.mark.parametrize(
    "where,target",
    [
        ("user.conf", "loop"),  # a link loop: it was passed over, and user.conf rebuilt from the detail log
        ("accuracy/accuracy.txt", "/dev/zero"),  # a device: passed over, the verdict made anew
        ("accuracy/mlperf_log_accuracy.json", "loop"),  # was 'missing'
        ("accuracy/mlperf_log_accuracy.json", "/dev/zero"),
    ],
)
def test_a_link_loop_or_a_device_where_a_file_goes_is_refused_naming_it(pkg_lg, pkg_copy, tmp_path, where, target):
    run = pkg_copy(pkg_lg["Offline"])
    path = run / where
    path.unlink()
    if target == "loop":
        (path.parent / "other").symlink_to(path.name)
        path.symlink_to("other")
    else:
        path.symlink_to(target)
    out = tmp_path / "tree"
    result = _from(run, out)
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "should be a file; this is neither a file nor a folder" in said, said
    assert f"{path}:" in said and "[import.not_a_file]" in said and said.count("error:") == 1
    assert not [p for p in out.rglob("*") if p.is_file()]  # nothing written
