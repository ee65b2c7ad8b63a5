"""Property-based fuzzing of the readers `subtool score` uses on a stranger's hand-in: the tarball (its bytes,
its members and their names), the summary JSON, the .tstamps file and the .sha256 manifest. Whatever the input,
they refuse (extract.* Refused) or report a Flag; nothing else ever escapes, and nothing is written outside the
scratch folder. A bounded number of examples runs in CI (profile "ci", tests/scoring/conftest.py); a long run:

    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -q tests/scoring/test_score_fuzz.py
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from result_records import result_record

from subtool.scoring.extract import ExtractLimits, Refused, extract_tarball
from subtool.scoring.inputs import InputJob
from subtool.scoring.integrity import Flag, check_manifest, check_summary, check_tstamps

LIMITS = ExtractLimits(
    max_members=50,
    max_member_bytes=1 << 16,
    max_total_bytes=1 << 18,
    max_ratio=50,
    ratio_grace_bytes=1 << 16,
    max_name_length=200,
    max_depth=8,
)
TARBALL = "mlperf_submission_short.tar.gz"

# ------------------------------------------------------------------------------------------- tarballs
_NAME_PARTS = st.one_of(
    st.sampled_from(
        ["open", "closed", "T", "results", "..", ".", "", "systems", "a b", "x\udcff", "\x1b[1m", "/", "C:", "\\", "é"]
    ),
    st.text(min_size=1, max_size=12),
)
_NAMES = st.lists(_NAME_PARTS, min_size=1, max_size=6).map("/".join)
_TYPES = st.sampled_from(
    [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE, b"V", b"7"]
)
_MEMBER = st.tuples(
    _NAMES,
    _TYPES,
    st.binary(max_size=300),
    _NAMES,
    st.dictionaries(
        st.sampled_from(
            ["comment", "path", "linkpath", "size", "GNU.sparse.size", "GNU.sparse.realsize", "hdrcharset"]
        ),
        st.text(max_size=20),
        max_size=2,
    ),
)


def _tar_bytes(members, fmt) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as tar:
        for name, kind, data, link, pax in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            if fmt == tarfile.PAX_FORMAT:
                info.pax_headers = pax
            try:
                tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
            except (ValueError, UnicodeError):
                continue  # a member tarfile itself cannot write: leave it out
    return raw.getvalue()


def _assert_only_inside(dest: Path) -> None:
    for current, dirs, files in os.walk(dest):
        for name in dirs + files:
            p = Path(current) / name
            assert not p.is_symlink() and (p.is_dir() or p.is_file()), p
            assert os.path.realpath(p).startswith(os.path.realpath(dest) + os.sep), p
            name.encode("utf-8")  # every name that got through is writable text


def _extract(data: bytes, tmp: Path) -> None:
    archive = tmp / "in.tar.gz"
    archive.write_bytes(data)
    dest = tmp / "x"
    dest.mkdir()
    try:
        extract_tarball(archive, dest, LIMITS)
    except Refused as refused:
        assert refused.rule.startswith("extract.") and refused.message
    _assert_only_inside(dest)
    assert sorted(os.listdir(tmp)) == ["in.tar.gz", "x"]


@given(
    members=st.lists(_MEMBER, max_size=6),
    fmt=st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]),
    tail=st.binary(max_size=16),
    cut=st.integers(min_value=0, max_value=40),
)
def test_fuzz_tar_members_and_names(members, fmt, tail, cut, tmp_path_factory):
    packed = gzip.compress(_tar_bytes(members, fmt), mtime=0)
    if cut:
        packed = packed[:-cut]
    _extract(packed + tail, tmp_path_factory.mktemp("fz"))


@given(
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1, max_size=4)
)
def test_fuzz_bytes_of_a_real_tarball(flips, sc_handins, tmp_path_factory):
    data = bytearray((sc_handins["Beta"] / TARBALL).read_bytes())
    for at, value in flips:
        data[at % len(data)] = value
    _extract(bytes(data), tmp_path_factory.mktemp("fz"))


@given(data=st.binary(max_size=2048))
def test_fuzz_garbage_tarballs(data, tmp_path_factory):
    _extract(data, tmp_path_factory.mktemp("fz"))
    _extract(gzip.compress(data), tmp_path_factory.mktemp("fz"))


# ------------------------------------------------------------------------------------------ companions
_JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
_ROW_KEYS = st.sampled_from(
    ["Division", "Organization", "Platform", "Model", "Scenario", "Result", "Accuracy", "subtool", "artifacts"]
)
_SUMMARY = st.one_of(
    _JSON,
    st.dictionaries(
        st.one_of(st.sampled_from(["0", "1", "12", "subtool"]), st.text(max_size=4)),
        st.dictionaries(_ROW_KEYS, _JSON, max_size=8),
        max_size=4,
    ),
)
RESULTS = [result_record(accuracy="exact_match: 83.6 f1: 90.9")]


def _flags(flags) -> None:
    assert isinstance(flags, list) and all(isinstance(f, Flag) and f.rule and f.message for f in flags)


@given(doc=_SUMMARY, raw=st.one_of(st.none(), st.binary(max_size=200)), results=st.sampled_from([[], RESULTS]))
def test_fuzz_summary_json(doc, raw, results, tmp_path_factory):
    path = tmp_path_factory.mktemp("fz") / "x_summary.json"
    path.write_bytes(raw if raw is not None else json.dumps(doc).encode())
    _flags(check_summary(str(path), results, "0" * 64, TARBALL))


def test_summary_json_nested_100000_deep_or_with_a_5000_digit_number_is_a_flag(tmp_path):
    for name, text in (("deep", "[" * 100_000 + "]" * 100_000), ("digits", '{"0": {"Result": ' + "9" * 5000 + "}}")):
        path = tmp_path / f"{name}_summary.json"
        path.write_text(text)
        flags = check_summary(str(path), RESULTS, "0" * 64, TARBALL)
        assert [f.rule for f in flags] == ["summary.unreadable"], flags


_STAMP = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "Fri Nov  6 01:02:03 UTC 2026",
            "2026-11-06T01:02:03Z",
            "Sat 07 Nov 2026 01:02:03 AM UTC",
            "9999-99-99",
            "Fri Nov  6 01:02:03 UTC 99999",
        ]
    ),
)


@given(lines=st.lists(_STAMP, max_size=8), raw=st.one_of(st.none(), st.binary(max_size=200)))
def test_fuzz_tstamps(lines, raw, tmp_path_factory):
    from datetime import datetime, timezone

    path = tmp_path_factory.mktemp("fz") / "x.tstamps"
    path.write_bytes(raw if raw is not None else "\n".join(lines).encode("utf-8", "surrogatepass"))
    window = (
        "T/box/bert-99/Offline",
        datetime(2026, 11, 6, 1, 0, tzinfo=timezone.utc),
        datetime(2026, 11, 6, 1, 1, tzinfo=timezone.utc),
    )
    _flags(check_tstamps(str(path), [window], 120.0))


_MANIFEST_LINES = st.one_of(
    st.text(max_size=60),
    st.builds(lambda k, v: f"# {k}: {v}", st.sampled_from(["name", "rules", "waive", "verdict"]), st.text(max_size=20)),
    st.builds(lambda d, p: f"{d}  {p}", st.sampled_from(["0" * 64, "f" * 64, "xyz"]), st.text(max_size=30)),
    st.builds(lambda d, p: f"# member {d}  {p}", st.sampled_from(["0" * 64, "1" * 63]), st.text(max_size=30)),
)


@given(
    lines=st.lists(_MANIFEST_LINES, max_size=10),
    magic=st.booleans(),
    members=st.dictionaries(st.text(max_size=10), st.sampled_from(["0" * 64, "1" * 64]), max_size=3),
)
def test_fuzz_manifest_as_score_reads_it(lines, magic, members, tmp_path_factory):
    from subtool.pack.manifest import MAGIC

    folder = tmp_path_factory.mktemp("fz")
    tarball = folder / TARBALL
    tarball.write_bytes(b"not really a tarball")
    path = folder / "mlperf_submission_short.sha256"
    path.write_text("\n".join(([MAGIC] if magic else []) + lines), encoding="utf-8", errors="surrogatepass")
    _flags(check_manifest(str(path), tarball, "0" * 64, members))


# ------------------------------------------------------------------------------------ one whole entry
_TREE_MEMBER = st.tuples(
    st.one_of(
        _NAMES,
        _NAMES.map(lambda n: "open/T/" + n),
        st.sampled_from(
            ["open/T/systems/box.json", "open/T/results/box/bert-99/Offline/performance/run_1/mlperf_log_detail.txt"]
        ),
    ),
    st.just(tarfile.REGTYPE),
    st.binary(max_size=300),
    st.just(""),
    st.just({}),
)


@given(members=st.lists(st.one_of(_MEMBER, _TREE_MEMBER), max_size=5))
def test_fuzz_score_input_never_fails_internally(members, tmp_path_factory):
    """score_input on a fuzzed tarball: refused or scored, never an internal error (a traceback's stand-in)."""
    from subtool.scoring.entry import score_input
    from subtool.scoring.rules import default_rules_text, parse_rules

    folder = tmp_path_factory.mktemp("fz")
    tarball = folder / TARBALL
    tarball.write_bytes(gzip.compress(_tar_bytes(members, tarfile.PAX_FORMAT), mtime=0))
    scratch = folder / "scratch"
    scratch.mkdir()
    job = InputJob(index=0, kind="tarball", path=str(tarball), display=TARBALL, name="mlperf_submission_short")
    entry = score_input(job, parse_rules(default_rules_text(), "default", "0"), str(scratch))
    assert entry.error is None or entry.error["rule"] not in ("score.internal", "score.memory"), entry.error
    assert os.listdir(scratch) == []
