"""Writes that never leave a half-written file or directory behind: write to a temporary sibling, then rename."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from subtool.errors import SubtoolError, os_error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()
_DIR_MODE = 0o777 & ~_umask()

# What this process is writing right now (temporary files, staging directories) and what else must be undone,
# for an exit that cannot unwind the main thread: SIGTERM while it waits inside LoadGen's native code.
_IN_FLIGHT: set[str] = set()
EMERGENCY_CALLBACKS: list = []


def emergency_cleanup() -> None:
    """Remove what is in flight and run the registered callbacks; for an exit through os._exit()."""
    for callback in list(EMERGENCY_CALLBACKS):
        with contextlib.suppress(Exception):
            callback()
    for path in list(_IN_FLIGHT):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def mark_in_flight(path: str | Path) -> None:
    """`path` (a file or a staging folder) is being written: an exit through os._exit removes it."""
    _IN_FLIGHT.add(str(path))


def landed(path: str | Path) -> None:
    """`path` is finished (moved into place or removed): no longer the emergency clean-up's."""
    _IN_FLIGHT.discard(str(path))


def make_dirs(path: str | Path) -> list[Path]:
    """mkdir -p that returns the directories it created, outermost first, for `remove_dirs` to undo.

    Raises SubtoolError (rule io.<errno>) when a directory cannot be made; nothing it made is left then."""
    path = Path(path)
    missing = []
    probe = path
    created: list[Path] = []
    try:
        while not probe.exists() and probe != probe.parent:  # exists() raises on a folder that cannot be read
            missing.append(probe)
            probe = probe.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                if d.is_symlink() and not d.exists():
                    remove_dirs(created)
                    raise SubtoolError(
                        f"is a symbolic link to {os.readlink(d)!r}, which does not exist",
                        path=d,
                        rule="io.dangling_link",
                        hint="create the folder it points to, or name another one",
                    ) from None
                if not d.is_dir():
                    raise
                continue
            created.append(d)
    except OSError as exc:
        remove_dirs(created)
        raise os_error(exc, action="cannot create the directory", path=exc.filename or path) from None
    return created


def remove_dirs(created: list[Path]) -> None:
    """Remove directories `make_dirs` created, innermost first, where they are still empty."""
    for d in reversed(created):
        with contextlib.suppress(OSError):
            d.rmdir()


def _tmp_sibling_prefix(path: Path) -> str:
    # the writer's pid lets a later run tell an abandoned temporary file from a live one (remove_leftovers);
    # the name is cut so that it never runs past NAME_MAX when the final one fits
    return f".{path.name[:48]}.{os.getpid()}."


def file_identity(path: Path | None) -> object:
    """Cheap identity of an input file or directory: path, sizes and modification times (no hashing GBs)."""
    if path is None:
        return None
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return [str(path.resolve()), st.st_size, st.st_mtime_ns]
    if path.is_dir():
        files = [(p, p.stat()) for p in sorted(path.rglob("*")) if p.is_file()]
        return [[str(p.relative_to(path)), st.st_size, st.st_mtime_ns] for p, st in files]
    return str(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_output_file(Path(path)) as fh:
        fh.write(data)
    return Path(path)


def utf8_bytes(text: str) -> bytes:
    """`text` as UTF-8, a lone surrogate (a JSON escape in a team's file) as U+FFFD, as score's outputs write it."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # check's summary.csv and pack's outputs ended in this error
        return re.sub("[\ud800-\udfff]", "\ufffd", text).encode("utf-8")


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, utf8_bytes(text))


def atomic_write_json(path: str | Path, obj: object) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


class _CallerError(Exception):
    """Wraps what the caller's block raised, so that it passes through unchanged (not as a write error)."""


@contextlib.contextmanager
def atomic_output_file(path: str | Path, mode: str = "wb") -> Iterator:
    """Open a temporary sibling for streaming writes; it replaces `path` only if the block finishes.

    A failure to write (full disk, read-only or unwritable path, a name too long, a directory in the way)
    leaves neither the temporary file nor any directory this made, and raises SubtoolError (io.<errno>, exit
    2) naming `path`; what the block itself raises passes through unchanged, after the same clean-up."""
    path = Path(path)
    created: list[Path] = []
    tmp = None
    try:
        created = make_dirs(path.parent)
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(path))
        fd, tmp = tempfile.mkstemp(prefix=_tmp_sibling_prefix(path), suffix=".tmp", dir=path.parent)
        _IN_FLIGHT.add(tmp)
        with os.fdopen(fd, mode) as fh:
            try:
                yield fh
            except OSError as exc:
                if isinstance(exc, SubtoolError) or exc.filename not in (None, tmp):
                    raise _CallerError() from exc
                raise  # a write to `fh` failed (ENOSPC, EDQUOT, EIO): a write error of `path`
            except BaseException as exc:
                raise _CallerError() from exc
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; a result file must read like any other
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        remove_dirs(created)
        if isinstance(exc, _CallerError):
            raise exc.__cause__ from None
        if isinstance(exc, OSError):
            raise os_error(exc, path=path) from None
        raise
    finally:
        _IN_FLIGHT.discard(tmp)


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy `src` to `dst` through a temporary sibling: `dst` is the whole file or untouched, and a failed copy
    (a full disk half way through a 65 MB log) leaves no partial file and no directory it made."""
    src = Path(src)
    try:
        fin = open(src, "rb")
    except OSError as exc:
        raise os_error(exc, action="cannot read", path=src) from None
    with fin, atomic_output_file(dst) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    return Path(dst)


@contextlib.contextmanager
def staged_directory(final: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside `final`; on success it replaces `final` in one rename.

    An existing `final` is moved aside first and removed only after the new one is in place, so an
    interruption at any point leaves either the old or the new directory, never a mix.
    """
    final = Path(final)
    created = make_dirs(final.parent)
    try:
        _remove_abandoned_staging(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name[:48]}.{os.getpid()}.", suffix=".staging", dir=final.parent))
        os.chmod(tmp, _DIR_MODE)
        _IN_FLIGHT.add(str(tmp))
    except OSError as exc:
        remove_dirs(created)
        raise os_error(exc, action="cannot create the directory", path=final) from None
    old = None
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not final.exists():
            os.replace(old, final)  # the second rename failed: the previous version comes back
        remove_dirs(created)
        if (
            isinstance(exc, OSError)
            and not isinstance(exc, SubtoolError)
            and (exc.filename is None or str(exc.filename).startswith(str(tmp)))
        ):
            raise os_error(exc, path=final) from None
        raise
    finally:
        _IN_FLIGHT.discard(str(tmp))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_abandoned_staging(final: Path) -> None:
    """Staging directories of a process that was killed (SIGKILL, power loss) are garbage: remove them."""
    prefix = f".{final.name}."
    for sibling in final.parent.iterdir():
        name = sibling.name
        if not (name.startswith(prefix) and (name.endswith(".staging") or ".old-" in name)):
            continue
        parts = name[len(prefix) :].split(".")
        pid_text = parts[0] if name.endswith(".staging") else name.rsplit("-", 1)[-1]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        if ".old-" in name and not final.exists():
            os.replace(sibling, final)  # killed between the two renames: the previous version comes back
        else:
            shutil.rmtree(sibling, ignore_errors=True)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ one writer
LOCK_NAME = ".subtool.lock"


def _lock_holder(fd: int) -> str:
    for _ in range(20):  # the holder writes its pid right after it takes the lock
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        if text:
            return text
        import time

        time.sleep(0.05)
    return "unknown"


@contextlib.contextmanager
def exclusive(directory: str | Path, *, wait: bool = False, on_wait=None, tidy: bool = False) -> Iterator[Path]:
    """Hold `directory/.subtool.lock` (flock) for the block; the file records the holder's pid.

    A second process stops at once with one line naming the holder's pid (rule out.locked), or with
    `wait=True` waits until the holder is done (`on_wait(pid)` is called once first). The kernel drops the lock
    when the holder dies, even by SIGKILL, so a crashed run never leaves a stale lock. `tidy`: when the block
    leaves nothing in the directory but the lock file, the lock file goes, and so do the directory and the
    folders made for it (a failed fetch leaves no empty `assets/.staging/...` behind).
    """
    directory = Path(directory)
    created = make_dirs(directory)
    path = directory / LOCK_NAME
    try:
        fd = _take_lock(path, directory, wait, on_wait)
    except BaseException:
        remove_dirs(created)
        raise
    try:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            raise os_error(exc, path=path) from None
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        if tidy and _only_the_lock(directory):
            with contextlib.suppress(OSError):
                os.unlink(path)  # while still held: a process that opened it retries on the new file (_take_lock)
                remove_dirs(created or [directory])
        os.close(fd)  # closing the descriptor releases the lock


def _take_lock(path: Path, directory: Path, wait: bool, on_wait) -> int:
    """An open descriptor of `path`, flocked. A lock file unlinked by its last holder (`tidy`) while this process
    waited on it is no lock at all: the descriptor is dropped and the new file taken instead."""
    import fcntl

    while True:
        try:
            fd = _open_lock(path, directory)
        except OSError as exc:
            raise os_error(exc, action="cannot create the lock file", path=path) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(fd)
                if not wait:
                    raise SubtoolError(
                        f"another subtool (pid {holder}) is writing to this output directory",
                        path=directory,
                        rule="out.locked",
                        hint="let it finish, pass --wait to queue behind it, or choose another --out",
                    ) from None
                if on_wait is not None:
                    on_wait(holder)
                    on_wait = None
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _open_lock(path: Path, directory: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
    except FileNotFoundError:  # a tidy holder removed the folder as it left: make it again, once
        make_dirs(directory)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _only_the_lock(directory: Path) -> bool:
    try:
        return [e.name for e in os.scandir(directory)] == [LOCK_NAME]
    except OSError:
        return False


@contextlib.contextmanager
def one_writer(directory: str | Path, on_wait=None) -> Iterator[Path]:
    """Hold a flock on the directory itself for the block (created if missing; removed again if the block leaves
    it empty after an error): a second writer waits (`on_wait()` is called once first). Unlike `exclusive` it
    leaves no file behind, for directories whose every entry is the user's (a submission tree)."""
    import fcntl

    directory = Path(directory)
    created = make_dirs(directory)
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        remove_dirs(created)
        raise os_error(exc, action="cannot open the output directory", path=directory) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield directory
        except BaseException:
            remove_dirs(created)
            raise
    finally:
        os.close(fd)  # closing the descriptor releases the lock


# What subtool's own writers name their temporary files and folders: `.<name>.<pid>.<mkstemp's 8>.tmp|staging`,
# `.<name>.<pid>.tmp` (a full accuracy log being copied) and package's `.subtool-staging-…`. A user's own hidden
# `.draft.tmp` or `.thesis.staging` matches none of them.
_LEFTOVER = re.compile(r"\..+\.\d{2,9}(?:\.[a-z0-9_]{1,16})?\.(?:tmp|staging)|\.subtool-staging-.+")


def remove_leftovers(root: str | Path, within: Iterable[str | Path] = ()) -> list[Path]:
    """Remove what interrupted subtool writers left: temporary files and staging folders with subtool's own
    names, whose writer is gone, in `root` itself and anywhere below each folder of `within` (the folders
    subtool writes): never elsewhere, since `root` may be a user's folder (`--out .`). A name that carries a
    live process's id is kept.

    Call it only while holding `exclusive(root)`: a name without a pid cannot be told from a live writer's."""
    removed = _sweep(Path(root), recursive=False)
    for folder in within:
        if Path(folder).is_dir() and not Path(folder).is_symlink():
            removed += _sweep(Path(folder), recursive=True)
    return removed


def _sweep(folder: Path, *, recursive: bool) -> list[Path]:
    removed: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):  # os.walk lists links to folders as files
        for name in filenames:
            if name.endswith(".tmp") and _LEFTOVER.fullmatch(name) and not _owned_by_live_pid(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(dirpath, name))
                    removed.append(Path(dirpath, name))
        for name in [d for d in dirnames if d.endswith("staging") or d.startswith(".subtool-staging-")]:
            path = os.path.join(dirpath, name)
            if _LEFTOVER.fullmatch(name) and not os.path.islink(path) and not _owned_by_live_pid(name):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(Path(dirpath, name))
        # a staging folder's contents are its writer's; a clone (the publish cache) is git's
        dirnames[:] = [d for d in dirnames if d != ".git" and not _LEFTOVER.fullmatch(d)] if recursive else []
    return removed


def _owned_by_live_pid(name: str) -> bool:
    pids = [int(p) for p in re.findall(r"(?:^|[.-])(\d{2,9})(?=[.-]|$)", name)]
    return any(pid != os.getpid() and _pid_alive(pid) for pid in pids)


# ------------------------------------------------------------------------------------ nothing left behind
def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _snapshot(root: Path) -> set[str]:
    if not root.is_dir():
        return set()
    seen = {str(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        seen.update(os.path.join(dirpath, n) for n in dirnames + filenames)
    return seen


@contextlib.contextmanager
def undo_on_error(*roots: str | Path) -> Iterator[list[Path]]:
    """For a stage that writes below several roots (a tree, its full logs): if the block fails, a root it
    created is removed whole (with the parents it made); below a root that was there, every file the block
    listed (in the yielded list) that was not there before is removed, then every new directory left empty.
    Files that were there before are never removed. An OSError from the block becomes a one-line SubtoolError
    (io.<errno>)."""
    paths = [Path(r) for r in roots if r is not None]
    before = {str(p): _snapshot(p) for p in paths}
    ancestors = {str(p): _existing_ancestor(p) for p in paths}
    written: list[Path] = []
    try:
        yield written
    except BaseException as exc:
        old = set().union(*before.values())
        for f in written:
            if str(f) not in old:
                with contextlib.suppress(OSError):
                    os.unlink(f)
        for p in paths:
            if not before[str(p)]:
                shutil.rmtree(p, ignore_errors=True)  # the block made this root: all of it is new
            _remove_new_empty_dirs(p, before[str(p)], ancestors[str(p)])
        if isinstance(exc, OSError) and not isinstance(exc, SubtoolError):
            raise os_error(exc, action="cannot write", path=exc.filename or (paths[0] if paths else None)) from None
        raise


def check_name_fits(name: str, directory: str | Path, flag: str) -> None:
    """A name that becomes a folder (submitter, system) must fit NAME_MAX with subtool's staging decoration:
    refuse it before anything runs, not after the benchmark."""
    if name and not name_fits(name, directory):
        raise SubtoolError(
            f"{flag} is {len(name)} characters: too long for a folder name on this file system",
            path=directory,
            rule="io.name_too_long",
            hint=f"use a shorter {flag}",
        )


def _remove_new_empty_dirs(root: Path, before: set[str], ancestor: Path) -> None:
    if root.is_dir():
        for dirpath, _dirnames, _files in os.walk(root, topdown=False):
            if dirpath not in before and dirpath != str(root):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
    if before:
        return
    d = root
    while d != ancestor and d != d.parent:  # the root and the parents the block made, if empty
        with contextlib.suppress(OSError):
            os.rmdir(d)
        d = d.parent


def name_fits(name: str, directory: str | Path, *, overhead: int = 48) -> bool:
    """`name` (plus `overhead` bytes of temporary-name decoration) fits the file system's NAME_MAX there."""
    try:
        limit = os.pathconf(_existing_ancestor(Path(directory).absolute()), "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    return len(os.fsencode(name)) + overhead <= limit


# ------------------------------------------------------------------------------------- output pre-flight
def check_output_path(path: str | Path | None, flag: str, *, directory: bool = False) -> None:
    """Refuse, before anything runs and without creating anything, an output path that cannot be written: a
    directory where a file goes (or a file where a directory goes), a parent that is a file, a read-only or
    unwritable parent, a name too long. A full disk shows only when writing: the writers handle that."""
    import errno

    if path is None:
        return
    path = Path(path)
    problem = None
    if path.exists() and directory and not path.is_dir():
        problem = OSError(errno.ENOTDIR, "exists and is not a directory", str(path))
    elif path.is_dir() and not directory:
        problem = IsADirectoryError(errno.EISDIR, "is a directory, and this option names a file", str(path))
    else:
        parent = _existing_ancestor(path if directory else path.parent)
        too_long = [p for p in path.parts if len(os.fsencode(p)) > _name_max(parent)]
        if too_long:
            problem = OSError(errno.ENAMETOOLONG, "File name too long", str(path))
        elif not parent.is_dir():
            problem = NotADirectoryError(errno.ENOTDIR, f"{parent} is a file, not a directory", str(path))
        elif not os.access(parent, os.W_OK | os.X_OK):
            problem = PermissionError(errno.EACCES, f"{parent} is not writable", str(path))
        elif path.exists() and not os.access(path, os.W_OK):
            problem = PermissionError(errno.EACCES, "not writable", str(path))
    if problem is not None:
        err = os_error(problem, action=f"{flag} cannot be written", path=path)
        raise err


def _name_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def cache_root() -> Path:
    """Where subtool keeps what it generates or downloads (the demos, `subtool fetch`'s checkpoints and data
    sets): $SUBTOOL_CACHE, else $XDG_CACHE_HOME/subtool, else ~/.cache/subtool."""
    env = os.environ.get("SUBTOOL_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "subtool"


def wrong_kind(path: str | Path) -> str:
    """What `path` is, for a line refusing it where a file or a folder of the other kind was wanted."""
    p = Path(path)
    if p.is_dir():
        return "is a folder"
    if p.is_file():
        return "is a file"
    if p.exists() or p.is_symlink():
        return "is neither a file nor a folder (a dangling link, a FIFO, a device?)"
    return "does not exist"


def within(path: str | Path, folder: str | Path) -> bool:
    """`path` is `folder` or below it, links resolved in both (a way round through a link is the same place)."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))
