"""The compliance tests no conformance case reaches (TEST07 / TEST08 / TEST09 of gpt-oss-120b, dlrm-v3 and
e2e-rag-qna) and the sample outputs stable-diffusion-xl and wan-2.2 must keep beside their accuracy log.

No LoadGen run of those benchmarks exists in the fixtures: each result here is a real LoadGen run of another
benchmark (llama3.1-8b Offline) filed under the benchmark's folder. That result fails other rules (sample counts,
metric names), so the tests look only at the findings of the rule under test, and compare them with what the
official checker says about the same compliance folder or accuracy folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.official import official_errors
from treegen import TreeBuilder

from subtool.checker.api import CheckOptions, check_tree

SUB = "TeamX"
LOGS = "llama3.1-8b"
DC = {"system_type": "datacenter"}

# system → (benchmark folder, {compliance file: its text}); every system holds one Offline result
COMPLIANCE = {
    "t07-pass": (
        "gpt-oss-120b",
        {"TEST07/verify_accuracy.txt": "TEST PASS\n", "TEST09/verify_output_len.txt": "TEST PASS\n"},
    ),
    "t07-inline": (
        "gpt-oss-120b",
        {
            "TEST07/verify_accuracy.txt": "accuracy within bounds: TEST PASS\n",
            "TEST09/verify_output_len.txt": "TEST PASS\n",
        },
    ),
    "t07-fail": (
        "gpt-oss-120b",
        {"TEST07/verify_accuracy.txt": "TEST FAIL\n", "TEST09/verify_output_len.txt": "TEST PASS\n"},
    ),
    "t07-none": ("gpt-oss-120b", {"TEST07/notes.txt": "ran it\n", "TEST09/verify_output_len.txt": "TEST PASS\n"}),
    "t09-fail": (
        "gpt-oss-120b",
        {"TEST07/verify_accuracy.txt": "TEST PASS\n", "TEST09/verify_output_len.txt": "TEST FAIL\n"},
    ),
    "t09-inline": (
        "gpt-oss-120b",
        {"TEST07/verify_accuracy.txt": "TEST PASS\n", "TEST09/verify_output_len.txt": "mean length 1200: TEST PASS\n"},
    ),
    "t09-none": (
        "gpt-oss-120b",
        {"TEST07/verify_accuracy.txt": "TEST PASS\n", "TEST09/verify_accuracy.txt": "TEST PASS\n"},
    ),
    "t09-pass": ("e2e-rag-qna", {"TEST09/verify_output_len.txt": "TEST PASS\n"}),
    "t09-qna-fail": ("e2e-rag-qna", {"TEST09/verify_output_len.txt": "TEST FAIL\n"}),
    "t08-pass": ("dlrm-v3", {"TEST08/verify_accuracy.txt": "NE match\n  TEST PASS  \n"}),
    "t08-inline": ("dlrm-v3", {"TEST08/verify_accuracy.txt": "NE match: TEST PASS\n"}),
    "t08-fail": ("dlrm-v3", {"TEST08/verify_accuracy.txt": "TEST FAIL\n"}),
    "t08-none": ("dlrm-v3", {"TEST08/notes.txt": "ran it\n"}),
}
# system → the (rule, test) findings subtool must report for its result
EXPECTED = {
    "t07-pass": set(),
    "t07-inline": set(),  # TEST07's PASS may stand anywhere in the file
    "t07-fail": {("compliance.failed", "TEST07")},
    "t07-none": {("compliance.missing", "TEST07")},
    "t09-fail": {("compliance.failed", "TEST09")},
    "t09-inline": set(),
    "t09-none": {("compliance.missing", "TEST09")},
    "t09-pass": set(),
    "t09-qna-fail": {("compliance.failed", "TEST09")},
    "t08-pass": set(),
    "t08-inline": {("compliance.failed", "TEST08")},  # TEST08's PASS must be a line of its own
    "t08-fail": {("compliance.failed", "TEST08")},
    "t08-none": {("compliance.missing", "TEST08")},
}


def _result(system: str, model: str) -> str:
    return f"closed/{SUB}/results/{system}/{model}/Offline"


@pytest.fixture(scope="module")
def compliance_tree(loadgen_runs, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compliance-edges")
    b = TreeBuilder(root, loadgen_runs)
    for system, (model, files) in COMPLIANCE.items():
        b.system("closed", SUB, system, DC)
        res = b.result("closed", SUB, system, LOGS, "Offline", folder=model, compliance=False)
        for name, text in files.items():
            (res / name).parent.mkdir(parents=True, exist_ok=True)
            (res / name).write_text(text)
    return root


def _compliance_findings(report, result: str) -> set[tuple[str, str]]:
    found = set()
    for f in report.findings:
        if f.result == result and f.rule.startswith("compliance.") and f.severity == "error":
            found.add((f.rule, re.search(r"/(TEST\d\d)(/|$)", f.path).group(1)))
    return found


def test_test07_test08_and_test09_verdicts(compliance_tree):
    report = check_tree(compliance_tree, CheckOptions())
    got = {s: _compliance_findings(report, _result(s, model)) for s, (model, _) in COMPLIANCE.items()}
    assert got == EXPECTED
    for system in ("t07-fail", "t08-fail", "t09-fail"):
        verdict = next(r for r in report.results if r.result == _result(system, COMPLIANCE[system][0]))
        assert not verdict.passed and "compliance.failed" in verdict.failed


def test_the_official_checker_fails_the_same_compliance_folders(compliance_tree, official_checker, tmp_path):
    errors, _ = official_errors(official_checker, compliance_tree, "v6.1", tmp_path)
    official = {}
    for system, (model, _) in COMPLIANCE.items():
        folder = f"TREE/{_result(system, model)}/"
        official[system] = {
            test
            for e in errors
            if folder in e or folder.rstrip("/") + " " in e
            for test in re.findall(r"TEST0[789]", e)
        }
    assert official == {s: {test for _, test in expected} for s, expected in EXPECTED.items()}


# ------------------------------------------------------------------------------- sample images / videos
WAN_V61 = ("130", "106", "84", "59", "12", "123", "43", "22", "238", "32")
SDXL_V60 = ("1311", "2476", "3644", "2188", "4114", "52", "388", "1195", "3427", "2289")


def _samples_tree(root: Path, runs, model: str, folder: str, stems, suffix: str) -> Path:
    """One system per variant of the accuracy folder: every sample file, all but the last, no sample folder at all,
    and two files of other names."""
    b = TreeBuilder(root, runs)
    variants = {"all": list(stems), "one-short": list(stems[:-1]), "no-folder": None, "other-round": ["1", "2"]}
    for system, keep in variants.items():
        b.system("closed", SUB, system, DC if model != "stable-diffusion-xl" else {"system_type": "edge"})
        res = b.result("closed", SUB, system, LOGS, "Offline", folder=model, compliance=False)
        if keep is not None:
            (res / "accuracy" / folder).mkdir()
            for stem in keep:
                (res / "accuracy" / folder / f"{stem}{suffix}").write_bytes(b"\0")
            (res / "accuracy" / folder / "captions.txt").write_text("a prompt\n")
    return root


def _extra(report, model: str) -> dict[str, list[str]]:
    out = {}
    for system in ("all", "one-short", "no-folder", "other-round"):
        rid = _result(system, model)
        out[system] = [f.message for f in report.findings if f.result == rid and f.rule == "acc.extra_files"]
    return out


def test_wan_accuracy_folder_must_hold_the_rounds_sample_videos(loadgen_runs, tmp_path):
    tree = _samples_tree(tmp_path / "wan", loadgen_runs, "wan-2.2-t2v-a14b", "videos", WAN_V61, ".mp4")
    found = _extra(check_tree(tree, CheckOptions(version="v6.1")), "wan-2.2-t2v-a14b")
    assert found["all"] == []
    assert found["one-short"] == ["missing sample outputs: videos/32"]
    assert found["no-folder"] == ["missing sample outputs: videos/"]
    assert len(found["other-round"]) == 1 and found["other-round"][0].startswith("missing sample outputs: videos/130")


def test_sdxl_accuracy_folder_must_hold_the_rounds_sample_images(loadgen_runs, tmp_path):
    tree = _samples_tree(tmp_path / "sdxl", loadgen_runs, "stable-diffusion-xl", "images", SDXL_V60, ".png")
    found = _extra(check_tree(tree, CheckOptions(version="v6.0")), "stable-diffusion-xl")
    assert found["all"] == []
    assert found["one-short"] == ["missing sample outputs: images/2289"]
    assert found["no-folder"] == ["missing sample outputs: images/"]
    assert found["other-round"] and found["other-round"][0].startswith("missing sample outputs: images/1311")
    # v6.1 lists no sample images for stable-diffusion-xl: nothing to miss
    assert _extra(check_tree(tree, CheckOptions(version="v6.1")), "stable-diffusion-xl") == {
        "all": [],
        "one-short": [],
        "no-folder": [],
        "other-round": [],
    }


def test_the_official_checker_misses_the_same_sample_videos(loadgen_runs, official_checker, tmp_path):
    tree = _samples_tree(tmp_path / "wan", loadgen_runs, "wan-2.2-t2v-a14b", "videos", WAN_V61, ".mp4")
    errors, _ = official_errors(official_checker, tree, "v6.1", tmp_path)
    official = {
        system: any(f"TREE/{_result(system, 'wan-2.2-t2v-a14b')}/accuracy" in e and "extra files" in e for e in errors)
        for system in ("all", "one-short", "no-folder", "other-round")
    }
    ours = {k: bool(v) for k, v in _extra(check_tree(tree, CheckOptions()), "wan-2.2-t2v-a14b").items()}
    assert official == ours == {"all": False, "one-short": True, "no-folder": True, "other-round": True}
