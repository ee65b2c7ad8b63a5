"""`subtool pack --verify` against hostile tarballs and a lying manifest (issue 19, items 16 and 17).

Verify unpacks through the same safe extraction as `subtool score` (subtool/pack/safe_tar.py): every
hostile tarball that score refuses, verify refuses with the same rule, before a byte of a bomb is written or a
256 MiB PAX header is read into memory. The manifest is not signed: verify applies only the waivers a short run
explains, says which and that they came from the manifest, and reports the others.

Fuzzing runs HYPOTHESIS_PROFILE=ci (bounded) by default; a long run:
    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -q tests/pack/test_pack_verify.py -k fuzz
"""

from __future__ import annotations

import gzip
import json
import sys
import tarfile
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scoring"))
import hostile  # noqa: E402  (the scoring tests' hostile tarballs)
from pack_handins import NAME, copy_handin, pack_team, verify  # noqa: E402

from subtool.cli import app  # noqa: E402
from subtool.errors import SubtoolError  # noqa: E402
from subtool.mlperf.rounds import ROUND_RULE, VERSIONS  # noqa: E402
from subtool.pack.manifest import MAGIC, parse_manifest  # noqa: E402
from subtool.pack.verify import SHORT_RUN_WAIVERS, verify_tarball  # noqa: E402

# hostile cases whose refusal does not depend on score's tightened test limits (verify uses the defaults)
SAME_RULE = sorted(set(hostile.CASES) - {"too_many_members", "too_large", "ratio_bomb", "no_tree"})


# -------------------------------------------------------------------------------------------- fixtures
# -------------------------------------------------------------------------------- item 17: the manifest
def test_verify_says_which_waivers_it_applied_and_that_the_manifest_named_them(packed_valid, tmp_path):
    tarball = copy_handin(packed_valid, tmp_path / "h")
    result, doc = verify(tarball)
    assert result.exit_code == 0, result.output
    assert doc["ok"] and doc["verdict"] == "PASS"
    assert doc["waive"] == ["perf.min_duration"] and doc["waivers_from"] == "manifest"
    assert doc["waivers_refused"] == []
    note = next(n for n in doc["notes"] if n.startswith("waivers applied"))
    assert "from the manifest" in note and "unsigned" in note and "perf.min_duration" in note
    assert "waived from the manifest: perf.min_duration" in " ".join(result.stderr.split())


def test_a_manifest_that_waives_an_invalid_result_does_not_verify(bert_logs, tmp_path):
    """The team packs its INVALID run with --waive perf.result_invalid: pack says PASS, and the manifest
    records the waiver. Verify refuses that waiver (a short run never explains it) and the checker fails it."""
    tarball = pack_team(bert_logs, tmp_path, 1, "perf.min_duration", "perf.result_invalid")
    manifest = tarball.with_name(f"{NAME}.sha256").read_text()
    assert "# verdict: PASS" in manifest and "perf.result_invalid" in manifest
    result, doc = verify(tarball)
    assert result.exit_code == 1
    assert not doc["ok"] and doc["verdict"] == "FAIL"
    assert doc["waive"] == ["perf.min_duration"] and doc["waivers_refused"] == ["perf.result_invalid"]
    assert "the manifest waives perf.result_invalid, which a short run cannot explain: not applied" in doc["problems"]
    assert any(p.startswith("checker: perf.result_invalid") for p in doc["problems"])
    assert "the checker now says FAIL; at pack time it said PASS" in doc["problems"]


def test_a_waiver_added_to_the_manifest_by_hand_is_refused(packed_valid, tmp_path):
    tarball = copy_handin(packed_valid, tmp_path / "h")
    manifest = tarball.with_name(f"{NAME}.sha256")
    manifest.write_text(
        manifest.read_text().replace(
            "# waive: perf.min_duration", "# waive: acc.below_threshold perf.min_duration system.no_such"
        )
    )
    result, doc = verify(tarball)
    assert result.exit_code == 1
    assert doc["waivers_refused"] == ["acc.below_threshold", "system.no_such"]
    assert SHORT_RUN_WAIVERS == {"perf.min_duration"}


@pytest.mark.parametrize("name", [".", "..", "a\x1bb"])
def test_a_manifest_line_naming_no_plain_file_is_a_manifest_error_not_a_crash(name, packed_valid, tmp_path):
    tarball = copy_handin(packed_valid, tmp_path / "h")
    manifest = tarball.with_name(f"{NAME}.sha256")
    manifest.write_text(manifest.read_text() + f"{'0' * 64}  {name}\n")
    result = CliRunner().invoke(app, ["pack", "--verify", str(tarball)])
    said = " ".join(result.output.split())
    assert result.exit_code not in (0, 70) and "bug in subtool" not in said, said
    assert "is not `<sha256> <file>`" in said and "pack.manifest" in said, said


def _rehash(manifest: Path, fname: str) -> None:
    """What a team can do to the unsigned manifest after editing a companion: write the new hash in."""
    import hashlib

    digest = hashlib.sha256(manifest.with_name(fname).read_bytes()).hexdigest()
    lines = [
        f"{digest}  {fname}" if ln.endswith(f"  {fname}") and not ln.startswith("#") else ln
        for ln in manifest.read_text().splitlines()
    ]
    manifest.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("suffix", ["_summary.json", "_summary.csv"])
def test_a_summary_edited_and_rehashed_into_the_manifest_does_not_verify(packed_valid, tmp_path, suffix):
    tarball = copy_handin(packed_valid, tmp_path / "h")
    summary = tarball.with_name(f"{NAME}{suffix}")
    text = summary.read_text()
    if suffix.endswith(".json"):
        doc = json.loads(text)
        doc["0"]["Result"] = 99999.0
        summary.write_text(json.dumps(doc, indent=4))
    else:
        header, row, *rest = text.splitlines(keepends=True)
        summary.write_text(header + row.replace("Offline", "Offline ", 1) + "".join(rest))
    _rehash(tarball.with_name(f"{NAME}.sha256"), summary.name)
    result, doc = verify(tarball)
    assert result.exit_code == 1 and not doc["ok"], result.output
    assert any(p.startswith(f"{summary.name}: ") and "re-check" in p for p in doc["problems"]), doc["problems"]
    assert not any(
        "sha256 differs" in p for p in doc["problems"]
    )  # the manifest itself agrees: only the re-check can tell


def test_the_summaries_pack_wrote_match_the_recheck(packed_valid, tmp_path):
    result, doc = verify(copy_handin(packed_valid, tmp_path / "h"))
    assert result.exit_code == 0 and doc["ok"] and doc["problems"] == []


# --------------------------------------------------------------------- item 16: the same safe extraction
@pytest.mark.parametrize("case", SAME_RULE)
def test_verify_refuses_each_hostile_tarball_with_the_rule_score_gives(case, packed_valid, tmp_path):
    tarball = copy_handin(packed_valid, tmp_path / "h")
    sandbox = tmp_path / "sandbox"
    (sandbox / "outside-dir").mkdir(parents=True)
    good = tmp_path / "good.tar.gz"
    good.write_bytes(tarball.read_bytes())
    hostile.build(case, good, tarball, sandbox)
    result, doc = verify(tarball)
    assert result.exit_code == 1
    assert doc["verdict"] == ""  # nothing trustworthy was re-checked
    assert any(f"({hostile.CASES[case]})" in p for p in doc["problems"]), doc["problems"]
    assert not [t for t in hostile.ESCAPE_TARGETS if (sandbox / t).exists()]


def test_a_2_gib_sparse_member_is_refused_before_anything_is_written(packed_valid, tmp_path, monkeypatch):
    import tempfile

    tarball = copy_handin(packed_valid, tmp_path / "h")
    good = tmp_path / "good.tar.gz"
    good.write_bytes(tarball.read_bytes())
    hostile.build("sparse_2gib", good, tarball, tmp_path)
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    start = time.perf_counter()
    result = verify_tarball(tarball)
    assert time.perf_counter() - start < 30
    assert any("(extract.too_large)" in p and "2048.0 MiB" in p for p in result.problems), result.problems
    assert list(scratch.iterdir()) == []  # its temporary folder is gone as well


def _pax_bomb(dest: Path, header_bytes: int) -> Path:
    """A tarball whose first member carries a PAX header of `header_bytes` bytes (streamed: never in memory)."""
    record = b"comment="
    body_len = header_bytes
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = body_len
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip container
    with open(dest, "wb") as fh:
        fh.write(comp.compress(header.tobuf(format=tarfile.USTAR_FORMAT)))
        digits = str(body_len)
        fh.write(comp.compress(f"{digits} ".encode() + record))
        left = body_len - len(digits) - 1 - len(record)
        chunk = b"A" * (1 << 20)
        while left > 1:
            n = min(left - 1, len(chunk))
            fh.write(comp.compress(chunk[:n]))
            left -= n
        fh.write(comp.compress(b"\n" + bytes(-body_len % 512)))
        fh.write(comp.compress(tarfile.TarInfo("open/x").tobuf() + bytes(1024)))
        fh.write(comp.flush())
    return dest


def test_a_256_mib_pax_header_is_refused_without_reading_it_into_memory(packed_valid, tmp_path):
    tarball = copy_handin(packed_valid, tmp_path / "h")
    _pax_bomb(tarball, 256 << 20)
    tracemalloc.start()
    try:
        result = verify_tarball(tarball)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert any("(extract.header_too_large)" in p for p in result.problems), result.problems
    assert peak < 32 << 20, f"verify held {peak >> 20} MiB"


# ------------------------------------------------------------------------------- fuzzing the manifest
_LINES = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda k, v: f"# {k}: {v}",
        st.sampled_from(["name", "rules", "waive", "verdict", "subtool", "x"]),
        st.text(max_size=40),
    ),
    st.builds(
        lambda d, p: f"# member {d}  {p}", st.text("0123456789abcdef", min_size=60, max_size=66), st.text(max_size=40)
    ),
    st.builds(lambda d, p: f"{d}  {p}", st.text("0123456789abcdefABC", min_size=62, max_size=66), st.text(max_size=40)),
)


@example(lines=["# name:0", "# rules:0"], magic=True)  # a round it has no rules for (found by the long fuzz)
@given(lines=st.lists(_LINES, max_size=12), magic=st.booleans())
def test_fuzz_manifest_parser_only_ever_raises_a_subtool_error(lines, magic):
    text = "\n".join(([MAGIC] if magic else []) + lines)
    try:
        manifest = parse_manifest(text, Path("m.sha256"))
    except SubtoolError as err:
        # a malformed manifest, or one whose `# rules:` names a round this subtool has no rules for
        assert err.rule in ("pack.manifest", ROUND_RULE) and err.message
        return
    assert manifest.name and manifest.version in VERSIONS
    assert all(isinstance(w, str) and w for w in manifest.waive)


@given(data=st.binary(max_size=4096))
def test_fuzz_verify_on_garbage_beside_a_real_manifest_gives_problems_not_exceptions(
    data, packed_valid, tmp_path_factory
):
    folder = tmp_path_factory.mktemp("fuzz-verify")
    tarball = folder / f"{NAME}.tar.gz"
    tarball.write_bytes(gzip.compress(data) if data[:1] == b"\x00" else data)
    (folder / f"{NAME}.sha256").write_bytes(packed_valid.with_name(f"{NAME}.sha256").read_bytes())
    result = verify_tarball(tarball)
    assert not result.ok and result.problems and result.verdict == ""


def test_read_tarball_of_a_pack_tarball_returns_its_members(packed_valid, tmp_path):
    from subtool.pack.tarball import read_tarball

    hashes, problems = read_tarball(packed_valid, tmp_path)
    manifest = parse_manifest(packed_valid.with_name(f"{NAME}.sha256").read_text(), Path("m"))
    assert problems == [] and hashes == manifest.members
