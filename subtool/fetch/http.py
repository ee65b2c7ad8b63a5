"""One file over HTTP(S) into a `.part` file: retries with back-off, resume with Range requests, verification.

`requests` with urllib3's `Retry` retries what fails before the body starts (connection refused or reset, 5xx,
429); a connection dropped mid-body is resumed from the bytes already on disk (`Range: bytes=N-`). A server that
ignores Range answers 200 with the whole body: the part file starts again from zero. Nothing here moves a file
where `run` reads: the caller moves a verified part into place (api.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3 import poolmanager
from urllib3.util.retry import Retry

from subtool.errors import EXIT_REMOTE, SubtoolError, os_error
from subtool.fetch import answer
from subtool.fetch.deadline import HeadersTooSlow, Watchdog, body_shutter, timed_pools

CHUNK = 1 << 20
TIMEOUT = (15, 60)  # connect, read (seconds without a byte)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class Settings:
    retries: int = 5  # per request (urllib3) and, separately, resumes of one file after a dropped body
    backoff: float = 1.0  # seconds, doubled each retry
    timeout: tuple[float, float] = TIMEOUT
    headers: dict[str, str] = field(default_factory=dict)  # e.g. the Hub's Authorization (never printed)
    min_rate: float = 1024.0  # bytes/s: a body slower than this over `stall_window` seconds is stopped
    stall_window: float = 300.0  # (the read timeout only bounds the gap between two bytes); also the time a
    # response's status line and headers get in all, and the longest a body may go without a block read


RETRY_AFTER_MAX = 120.0  # seconds: the longest a server's Retry-After makes one retry wait


class _Retry(Retry):
    """urllib3's Retry with a server's Retry-After bounded by RETRY_AFTER_MAX: a 503 or 429 saying
    `Retry-After: 86400` made fetch sleep for hours per retry, silently (urllib3 2.8 allows up to six hours,
    older ones any wait). A longer wait is the server's to say; the retries then end with the line naming its status."""

    def parse_retry_after(self, retry_after: str) -> float:
        return min(super().parse_retry_after(retry_after), RETRY_AFTER_MAX)


def session(settings: Settings) -> requests.Session:
    retry = _Retry(
        total=settings.retries,
        connect=settings.retries,
        read=settings.retries,
        status=settings.retries,
        backoff_factor=settings.backoff,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        raise_on_status=False,  # the last 5xx comes back as a response: one line names it
        respect_retry_after_header=True,
    )
    s = requests.Session()
    s.trust_env = True  # proxies (and ~/.netrc, for a mirror that asks) from the environment, as clusters set them
    adapter = _Adapter(timed_pools(settings.stall_window), max_retries=retry)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


class _Adapter(HTTPAdapter):
    """requests' adapter whose connections (direct or through an HTTP proxy) give a response's headers one stall
    window in all (deadline.py): a server sending them a byte a minute never tripped the read timeout."""

    def __init__(self, pools: dict[str, type], **kwargs):
        self._pools = pools  # before HTTPAdapter.__init__, which makes the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if manager.pool_classes_by_scheme == poolmanager.pool_classes_by_scheme:  # not a SOCKS proxy's own
            manager.pool_classes_by_scheme = self._pools
        return manager


class RemoteError(SubtoolError):
    """A download that failed on the remote side (exit 3)."""

    def __init__(self, message: str, *, url: str, rule: str, hint: str | None = None, status: int | None = None):
        super().__init__(message, path=url, rule=rule, hint=hint, exit_code=EXIT_REMOTE)
        self.status = status


def _offset_of(response: requests.Response) -> int | None:
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    return int(match.group(1)) if match else None


def _check_status(response: requests.Response, url: str) -> None:
    code = response.status_code
    if code in (200, 206):
        return
    if code in (401, 403):
        raise RemoteError(f"refused (HTTP {code})", url=url, rule="fetch.refused", status=code)
    if code == 404:
        raise RemoteError("not found (HTTP 404)", url=url, rule="fetch.not_found", status=code)
    raise RemoteError(f"the server answered HTTP {code}", url=url, rule="fetch.http_status", status=code)


def _open(s: requests.Session, url: str, have: int, settings: Settings, name: str) -> tuple[requests.Response, int]:
    """GET from byte `have`; returns the response and the offset its body starts at (0: the server ignored the
    Range, or `have` was 0). An answer whose body is not the file `name` as is, byte for byte, is refused."""
    headers = {"Accept-Encoding": "identity", **settings.headers}
    if have:
        headers["Range"] = f"bytes={have}-"
    response = s.get(url, headers=headers, stream=True, timeout=settings.timeout, allow_redirects=True)
    if response.status_code == 416 and have:  # asked past the end: the part is longer than the file
        response.close()
        return _open(s, url, 0, settings, name)
    _check_status(response, url)
    problem = answer.coding_problem(response.headers, name)
    if problem is not None:
        response.close()
        raise RemoteError(
            problem, url=url, rule="fetch.encoding", hint="download through --mirror, or a proxy that does not recode"
        )
    if response.status_code == 206:
        start = _offset_of(response)
        if start != have:  # a Range answer we did not ask for: trust nothing, start again
            response.close()
            if have:
                return _open(s, url, 0, settings, name)
            raise RemoteError(
                "the server answered with a part of the file (HTTP 206) to a request for all of it",
                url=url,
                rule="fetch.response",
            )
        return response, have
    return response, 0


UNKNOWN_SIZE_CAP = 64 << 30  # a file whose source gives no size (small data files): more is not that file


class _TooLong(Exception):
    """The server sends (or announces) more bytes than the file has."""


class _TooSlow(Exception):
    """The server sends too few bytes over the stall window (a drip that the per-read timeout never trips)."""


@dataclass
class _Pace:
    """Bytes per window: a server that keeps the connection alive with a byte a minute is stopped after one window."""

    min_rate: float
    window: float
    start: float = field(default_factory=time.monotonic)
    got: int = 0

    def add(self, n: int) -> None:
        self.got += n
        spent = time.monotonic() - self.start
        if spent < self.window:
            return
        if self.got < self.min_rate * spent:
            raise _TooSlow(self.got, spent)
        self.start, self.got = time.monotonic(), 0


def _stream(
    response: requests.Response, part: Path, start: int, on_bytes: Callable[[int], None], cap: int, pace: _Pace
) -> None:
    """The body into `part` from byte `start`, never past `cap` bytes in all: a server that announces or sends more
    is stopped at once, before it fills the disk."""
    announced = response.headers.get("Content-Length", "")
    if announced.isdigit() and start + int(announced) > cap:
        response.close()
        raise _TooLong(start + int(announced))
    if part.is_symlink():  # never write through a link someone left in the staging folder
        part.unlink()
    # a read that returns nothing for a window (a chunked body's framing sent a byte a minute) is stopped too
    stop = body_shutter(response.raw, response.close)  # wakes a read blocked in this thread
    with response, open(part, "r+b" if start else "wb") as fh, Watchdog(pace.window, stop) as watch:
        fh.seek(start)
        fh.truncate()
        read1 = getattr(response.raw, "read1", None)  # urllib3 >= 2.3: what arrived, so a drop loses nothing
        blocks = iter(lambda: read1(CHUNK), b"") if read1 is not None else response.iter_content(CHUNK)
        have = start
        try:
            for block in blocks:
                have += len(block)
                if have > cap:
                    raise _TooLong(have)
                fh.write(block)
                on_bytes(len(block))
                pace.add(len(block))
                watch.progress()
        except (_TooLong, _TooSlow):
            raise
        except Exception:  # what a read makes of the socket shut under it (TLS's errors are not urllib3's)
            if not watch.fired:
                raise
        if watch.fired:  # not one byte of the file for a window (pace.got may hold a fast start's bytes)
            raise _TooSlow(0, pace.window)


_DROPPED = (
    urllib3.exceptions.HTTPError,  # read1 raises urllib3's own: IncompleteRead, ProtocolError, ReadTimeoutError
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


def fetch_to_part(
    url: str,
    part: Path,
    *,
    size: int | None,
    settings: Settings,
    on_bytes: Callable[[int], None] = lambda n: None,
    on_restart: Callable[[int], None] = lambda have: None,
) -> None:
    """Download `url` into `part`, resuming what is there. Returns when the body was read to its end (and, where
    `size` is known, the part has that size). Raises RemoteError (exit 3) after `settings.retries` dropped bodies."""
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        have = 0
    drops = 0
    cap = size if size is not None else UNKNOWN_SIZE_CAP
    with session(settings) as s:
        while True:
            if size is not None and have == size and have > 0:
                return
            response, start = _connect(s, url, have, settings, part.name.removesuffix(".part"))
            try:
                on_restart(start)
                _stream(response, part, start, on_bytes, cap, _Pace(settings.min_rate, settings.stall_window))
            except _DROPPED as exc:
                drops += 1
                have = part.stat().st_size if part.exists() else 0
                if drops > settings.retries:
                    raise RemoteError(
                        f"the connection failed {drops} times ({type(exc).__name__})",
                        url=url,
                        rule="fetch.network",
                        hint="run the same command again: it resumes from the bytes already downloaded",
                    ) from None
                time.sleep(settings.backoff * (2 ** (drops - 1)))
                continue
            except (_TooLong, _TooSlow, requests.exceptions.RequestException) as exc:
                raise _stream_error(exc, url, part, size, cap, settings) from None
            except OSError as exc:  # the disk's, not the server's (requests' own errors are OSErrors: caught above)
                raise _disk_error(exc, url, part) from None
            have = part.stat().st_size
            if size is None or have == size:
                return
            if have > size:
                remove(part)
                raise RemoteError(f"the server sent {have} bytes, the source says {size}", url=url, rule="fetch.size")
            drops += 1  # a body that ended early without an error: resume like a dropped connection
            if drops > settings.retries:
                raise RemoteError(f"the body ended after {have} of {size} bytes", url=url, rule="fetch.network")


def _connect(s: requests.Session, url: str, have: int, settings: Settings, name: str) -> tuple[requests.Response, int]:
    """`_open`, with what fails before the body as one RemoteError (urllib3 has retried the connection already:
    resuming would only wait longer)."""
    try:
        return _open(s, url, have, settings, name)
    except HeadersTooSlow as exc:
        raise RemoteError(
            f"the server did not send its whole response header in {exc.args[0]:g} s: stopped",
            url=url,
            rule="fetch.too_slow",
            hint="run the same command again, or download through --mirror",
        ) from None
    except (*_DROPPED, requests.exceptions.RequestException, ValueError, UnicodeError) as exc:
        raise _connect_error(exc, url, settings) from None  # bare ValueError: a redirect's Location (answer.py)


def _connect_error(exc: Exception, url: str, settings: Settings) -> RemoteError:
    """The one line for a request that got no answer fetch can read: the server's fault named where it is one."""
    said = answer.failure(exc)
    if said is not None:
        return RemoteError(said[0], url=url, rule=said[1], hint="the server (or a proxy on the way) is broken")
    if isinstance(exc, _DROPPED):
        return RemoteError(
            f"cannot connect ({type(exc).__name__}, after {settings.retries} retries)",
            url=url,
            rule="fetch.network",
            hint="check the network, the proxy settings or the mirror's address",
        )
    return RemoteError(f"cannot download ({type(exc).__name__})", url=url, rule="fetch.network")


def _disk_error(exc: OSError, url: str, part: Path) -> SubtoolError:
    """A full disk (or quota, or read-only file system) while the body is written: the part and URL named, and
    the bytes already written kept for the same command to resume."""
    err = os_error(exc, action=f"cannot write the download of {url}", path=part)
    err.hint = f"{err.hint or 'fix the file system'}; the bytes written so far are kept and the same command resumes"
    return err


def _stream_error(exc: Exception, url: str, part: Path, size: int | None, cap: int, settings: Settings) -> RemoteError:
    """The one line for a body that cannot be kept (too long: the part goes), is too slow (the part stays, for
    the next run) or failed otherwise."""
    if isinstance(exc, _TooLong):
        remove(part)
        says = (
            f"the server sends {exc.args[0]:,} bytes or more, the source says {cap:,}"
            if size is not None
            else f"the server sends over {cap:,} bytes, more than any such file"
        )
        return RemoteError(says, url=url, rule="fetch.size")
    if isinstance(exc, _TooSlow):
        got, spent = exc.args
        return RemoteError(
            f"the server sent {got:,} bytes in {spent:.0f} s, under {settings.min_rate:,.0f} bytes/s: stopped",
            url=url,
            rule="fetch.too_slow",
            hint="run the same command again: it resumes from the bytes already downloaded (or use --mirror)",
        )
    return RemoteError(f"cannot download ({type(exc).__name__})", url=url, rule="fetch.network")


@dataclass(frozen=True)
class Digests:
    size: int
    sha256: str
    md5: str | None = None  # only when asked: a source that gives no md5 needs none


def digests(path: Path, *, md5: bool = False) -> Digests:
    sha, m5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False) if md5 else None, 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            sha.update(block)
            if m5 is not None:
                m5.update(block)
            size += len(block)
    return Digests(size, sha.hexdigest(), m5.hexdigest() if m5 is not None else None)


def git_blob_sha1(path: Path) -> str:
    """The Hub's `blobId` of a file kept in git (not LFS): sha1 of "blob <size>\\0" + the bytes."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class Progress:
    """A rich progress bar on stderr, only when enabled (a terminal, not --json); silent otherwise."""

    def __init__(self, enabled: bool):
        self._bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

            self._bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=Console(stderr=True),
                transient=True,
            )

    @contextlib.contextmanager
    def file(self, label: str, total: int | None) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
        """(advance by n bytes, restart at byte n) for one file."""
        if self._bar is None:
            yield (lambda n: None), (lambda n: None)
            return
        from rich.markup import escape

        bar = self._bar
        with bar:  # the label is a file name from a listing: shown as written, never read as markup
            task = bar.add_task(escape(label), total=total)
            try:
                yield (lambda n: bar.advance(task, n)), (lambda n: bar.update(task, completed=n))
            finally:
                bar.remove_task(task)


def remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
