"""Accuracy-log truncation the way the official MLCommons tool does it, in one streaming pass.

The published tree keeps only the first and last 4096 bytes of `mlperf_log_accuracy.json` joined by
`\\n\\n...\\n\\n` (a log shorter than 4096 bytes stays whole), and `accuracy.txt` gets a blank line and
`hash=<sha256 of the full log>` appended. The checker fails an accuracy.txt without a `hash=` line and an accuracy
log over 10240 bytes. The full log is copied outside the tree while it is hashed (the copy in the kernel, the
hash on a second read of the same pages), memory flat whatever the size.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from subtool.errors import SubtoolError

VIEWABLE_SIZE = 4096  # bytes kept from each end
MAX_ACCURACY_LOG_SIZE = 10240  # the checker's "is truncated" limit
ELLIPSIS = b"\n\n...\n\n"
CHUNK = 4 << 20
_HASH_LINE = re.compile(r"^hash=([\w\d]+)$")


def read_hash(accuracy_txt: str | None) -> str | None:
    """The `hash=` value the checker would read from accuracy.txt, if any."""
    for line in (accuracy_txt or "").splitlines():
        m = _HASH_LINE.match(line)
        if m:
            return m.group(1)
    return None


def append_hash(accuracy_txt: str, sha256: str) -> str:
    """accuracy.txt with the official hash line appended (blank line, then `hash=...`)."""
    return f"{accuracy_txt}\nhash={sha256}\n"


@dataclass
class TruncatedLog:
    sha256: str
    size: int
    truncated: bool  # False when the log was short enough to keep whole
    full_copy: Path | None  # where the untruncated log was kept (None when not asked)


def _check_shape(head: bytes, tail: bytes, size: int, path: Path, *, need_entries: bool) -> None:
    """Cheap structural check that works on any size: a JSON list of LoadGen entries, complete at both ends."""
    hint = "copy mlperf_log_accuracy.json again from the machine that ran the accuracy run"
    start = head.lstrip()
    end = tail.rstrip()
    if not start.startswith(b"["):
        raise SubtoolError(
            "accuracy log does not parse: it is not the JSON list LoadGen writes",
            path=path,
            rule="import.accuracy_log_unparsable",
            hint=hint,
        )
    if not end.endswith(b"]"):
        raise SubtoolError(
            "accuracy log does not parse: it does not end with ']' (cut short?)",
            path=path,
            rule="import.accuracy_log_unparsable",
            hint=hint,
        )
    if size <= VIEWABLE_SIZE:
        try:
            entries = json.loads(head.decode("utf-8"))
        except ValueError as exc:
            raise SubtoolError(
                f"accuracy log does not parse: {exc}", path=path, rule="import.accuracy_log_unparsable", hint=hint
            ) from None
        if not isinstance(entries, list) or any(not isinstance(e, dict) or "qsl_idx" not in e for e in entries):
            raise SubtoolError(
                "accuracy log does not parse: entries need qsl_idx and data",
                path=path,
                rule="import.accuracy_log_unparsable",
                hint=hint,
            )
        if need_entries and not entries:
            raise SubtoolError(
                "accuracy log has no entries: was it written by a performance run?",
                path=path,
                rule="import.accuracy_log_empty",
                hint="give the log of the AccuracyOnly run (accuracy mode)",
            )
        return
    body = start[1:].lstrip()
    if not body.startswith(b"{") or b'"qsl_idx"' not in head:
        raise SubtoolError(
            "accuracy log does not parse: the first entry has no qsl_idx",
            path=path,
            rule="import.accuracy_log_unparsable",
            hint=hint,
        )
    if not end[:-1].rstrip().endswith(b"}"):
        raise SubtoolError(
            "accuracy log does not parse: the last entry is incomplete (cut short?)",
            path=path,
            rule="import.accuracy_log_unparsable",
            hint=hint,
        )


# Inside `deferred_keeps()`, a full copy waits under its temporary name until the tree it belongs to is swapped
# in (`commit`); a package that fails before that leaves the kept logs as they were (`discard`).
_DEFERRED: contextvars.ContextVar[list | None] = contextvars.ContextVar("subtool_deferred_keeps", default=None)


@contextlib.contextmanager
def deferred_keeps():
    """Collect the full copies made inside; yields the list to `commit` once the tree is in place. Whatever is
    not committed when the block ends (a failure) is removed."""
    pending: list[tuple[Path, Path, str, int]] = []
    token = _DEFERRED.set(pending)
    try:
        yield pending
    finally:
        _DEFERRED.reset(token)
        for tmp, *_ in pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def commit(pending: list[tuple[Path, Path, str, int]]) -> None:
    """Move each waiting full copy into place (the tree that names its hash is now the live one)."""
    while pending:
        tmp, final, sha, size = pending.pop(0)
        _keep_full_copy(tmp, final, sha, size)
        make_durable([final, final.with_name(final.name + ".sha256")])


def _keep_full_copy(tmp: Path, final: Path, sha256: str, size: int) -> None:
    """Move the fresh full copy into place; an older different copy is renamed aside, never deleted."""
    sidecar = final.with_name(final.name + ".sha256")
    if final.exists():
        old_sha = sidecar.read_text().split()[0] if sidecar.exists() else None
        if old_sha == sha256 and final.stat().st_size == size:
            os.unlink(tmp)
            return
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        os.replace(final, final.with_name(f"{final.stem}.replaced-{stamp}{final.suffix}"))
        if sidecar.exists():
            os.replace(sidecar, final.with_name(f"{final.stem}.replaced-{stamp}{final.suffix}.sha256"))
    os.replace(tmp, final)
    sidecar.write_text(f"{sha256}  {final.name}\n")


def _link(src: Path, dst: Path) -> bool:
    """Keep the full log as a second name of the same file when both lie on one filesystem: a 65 MB log is then
    stored once, not twice (a run directory is replaced as a whole by a later run, never rewritten in place, so
    the kept log cannot change under the hash). False when a copy is needed (another filesystem, no links)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(dst)
    try:
        os.link(src, dst)
    except OSError:
        return False
    return True


def _copy_whole(src: Path, dst: Path, errors: list) -> None:
    """Copy inside the kernel (copy_file_range, as cp does); runs in a thread while the caller hashes."""
    try:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            try:
                while os.copy_file_range(fin.fileno(), fout.fileno(), 1 << 30):
                    pass
            except (AttributeError, OSError):
                fin.seek(0)
                fout.seek(0)
                fout.truncate()
                shutil.copyfileobj(fin, fout, CHUNK)
    except BaseException as exc:  # noqa: BLE001 - re-raised by the caller's thread
        errors.append(exc)


class _FullCopy:
    """The untruncated log kept outside the tree: a hard link, or a kernel copy on a second thread, under a
    temporary name until `keep` renames it into place; `abandon` removes what was not kept."""

    def __init__(self, src: Path, final: Path, *, link: bool):
        final.parent.mkdir(parents=True, exist_ok=True)
        self.final = final
        self.tmp: Path | None = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        self.errors: list = []
        self.copier: threading.Thread | None = None
        if not (link and _link(src, self.tmp)):
            self.copier = threading.Thread(target=_copy_whole, args=(src, self.tmp, self.errors), daemon=True)
            self.copier.start()

    def wait(self) -> None:
        if self.copier is not None:
            self.copier.join()
            self.copier = None
            if self.errors:
                raise self.errors[0]

    def keep(self, src: Path, sha: str, size: int, written: list[Path] | None) -> None:
        if self.tmp.stat().st_size != size:
            raise SubtoolError(
                "accuracy log changed while it was being copied",
                path=src,
                rule="import.accuracy_log_changed",
                hint="package again once the run finished",
            )
        pending = _DEFERRED.get()
        if pending is not None:  # moved into place once the tree is (commit); synced with the staged files
            pending.append((self.tmp, self.final, sha, size))
            if written is not None:
                written.append(self.tmp)
            self.tmp = None
            return
        _keep_full_copy(self.tmp, self.final, sha, size)
        self.tmp = None
        if written is not None:
            written += [self.final, self.final.with_name(self.final.name + ".sha256")]

    def abandon(self) -> None:
        if self.copier is not None:
            self.copier.join()
        if self.tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)


def _hash_ends(src: Path) -> tuple[str, bytes, bytes]:
    """One sequential read: the SHA-256 of the whole file, its first and its last VIEWABLE_SIZE bytes."""
    hasher = hashlib.sha256()
    head = bytearray()
    tail = b""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(src, "rb") as fh:
        with contextlib.suppress(AttributeError, OSError):
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            chunk = view[:n]
            hasher.update(chunk)
            if len(head) < VIEWABLE_SIZE:
                head += chunk[: VIEWABLE_SIZE - len(head)]
            tail = bytes(chunk[-VIEWABLE_SIZE:]) if n >= VIEWABLE_SIZE else (tail + bytes(chunk))[-VIEWABLE_SIZE:]
    return hasher.hexdigest(), bytes(head), tail


def _write_new(dst: Path, data: bytes, written: list[Path] | None) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        dst.unlink()  # never write through a hard link into a published tree
    dst.write_bytes(data)
    if written is not None:
        written.append(dst)


def truncate_accuracy_log(
    src: Path,
    dst: Path,
    *,
    full_copy: Path | None,
    need_entries: bool = True,
    written: list[Path] | None = None,
    link: bool = True,
) -> TruncatedLog:
    """Hash `src`, keep it whole at `full_copy` and write the official truncated form to `dst`. The full copy is
    a hard link to `src` only with `link` (a subtool run directory, replaced as a whole by a later run): another
    harness may rewrite its log in place, which would change the kept copy under its hash.

    The whole-file copy runs in the kernel on a second thread while this one reads and hashes, so the pass is
    as fast as `cp`. Nothing is fsync'd here: the caller makes the files it lists in `written` durable before it
    publishes them (one sync at the end instead of one per file).
    """
    src = Path(src)
    size = src.stat().st_size
    full_copy = Path(full_copy) if full_copy is not None else None
    copy = _FullCopy(src, full_copy, link=link) if full_copy is not None else None
    try:
        sha, head, tail = _hash_ends(src)
        if copy is not None:
            copy.wait()
        _check_shape(head, tail, size, src, need_entries=need_entries)
        truncated = size >= VIEWABLE_SIZE
        _write_new(Path(dst), head + ELLIPSIS + tail if truncated else head, written)
        if copy is not None:
            copy.keep(src, sha, size, written)
    finally:
        if copy is not None:
            copy.abandon()
    return TruncatedLog(sha256=sha, size=size, truncated=truncated, full_copy=full_copy)


def make_durable(paths: list[Path]) -> None:
    """fsync the files, then their directories, so that a rename published after this survives a crash."""
    dirs = set()
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            dirs.add(Path(p).parent)
    for d in dirs:
        with contextlib.suppress(OSError):
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def is_already_truncated(accuracy_txt: str | None, log_path: Path) -> bool:
    """The official tool's test: accuracy.txt has a hash and the log is under the limit → leave both alone."""
    return bool(read_hash(accuracy_txt)) and Path(log_path).stat().st_size < MAX_ACCURACY_LOG_SIZE
