"""A Hugging Face repository's files (HubFiles) as a list fetch can download and verify, through huggingface_hub.

The listing is the Hub's own metadata at the revision (`HfApi.model_info(files_metadata=True)`): each file's size,
and the sha256 of an LFS file or the git blob id of a small one. Every file is then downloaded from its
`resolve/<commit>/<name>` URL, pinned to the commit the revision resolved to, so one install is one commit.

The endpoint is `$HF_ENDPOINT` (read at call time; a mirror of the Hub on an air-gapped cluster) and the token is
`$HF_TOKEN` and nothing else (never an argument, never printed, never written; no stored login is read).
"""

from __future__ import annotations

import fnmatch
import os
import re
import threading
from dataclasses import dataclass

from subtool.errors import EXIT_REMOTE, EXIT_USAGE, SubtoolError
from subtool.fetch.http import Settings
from subtool.fetch.names import clash, safe_name
from subtool.fetch.store import MANIFEST
from subtool.mlperf.assets import HubFiles

DEFAULT_ENDPOINT = "https://huggingface.co"
LIST_TIMEOUT = 60.0  # seconds without an answer to the listing (huggingface_hub waits forever unless told)
LIST_DEADLINE = Settings.stall_window  # seconds for the whole listing, however slowly its bytes come


@dataclass(frozen=True)
class HubFile:
    name: str
    url: str
    size: int | None
    sha256: str | None  # LFS files
    blob_id: str | None  # files kept in git: sha1 of "blob <size>\0" + bytes


@dataclass(frozen=True)
class Listing:
    repo_id: str
    revision: str  # as asked
    commit: str  # what it resolved to
    files: tuple[HubFile, ...]


def endpoint() -> str:
    """$HF_ENDPOINT (or huggingface.co), checked before huggingface_hub reads it: that library fails on import,
    with a line of its own, on a bad port or address."""
    from subtool.fetch.names import check_base_url

    value = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    check_base_url(value, what="HF_ENDPOINT", rule="fetch.hub_endpoint")
    return value


def token() -> str | None:
    """$HF_TOKEN without surrounding whitespace (a token file's line break), None when unset or blank. A token
    is printable ASCII without spaces: any other character inside (a CRLF file's carriage return, a two-line
    file) made requests fail with InvalidHeader, a line that did not say the token was the problem, and an HTTP
    library may quote such a header escaped in its error, where no redaction finds it."""
    value = os.environ.get("HF_TOKEN", "").strip()
    if not value:
        return None
    if all("!" <= ch <= "~" for ch in value):
        return value
    raise SubtoolError(
        "the token in HF_TOKEN holds a space, a line break or another character no token has",
        rule="fetch.hub_token",
        hint='set HF_TOKEN to the token alone (e.g. export HF_TOKEN="$(head -n1 token-file)")',
        exit_code=EXIT_USAGE,
    )


def auth_headers() -> dict[str, str]:
    tok = token()
    return {"authorization": f"Bearer {tok}"} if tok else {}


def model_page(hub: HubFiles) -> str:
    return f"{endpoint()}/{hub.repo_id}"


def license_page(hub: HubFiles) -> str:
    """Where the license is accepted: huggingface.co itself, also when HF_ENDPOINT is a mirror."""
    return f"{DEFAULT_ENDPOINT}/{hub.repo_id}"


def require_token(hub: HubFiles) -> None:
    """A gated repository without $HF_TOKEN: one line before anything is downloaded (exit 2)."""
    if hub.gated and not token():
        raise SubtoolError(
            f"{hub.repo_id} is gated: set HF_TOKEN to your Hugging Face token and accept the license on "
            f"{license_page(hub)}",
            rule="fetch.hub_token",
            exit_code=EXIT_USAGE,
        )


def refused(hub: HubFiles, status: int | str) -> SubtoolError:
    with_token = "with the token in HF_TOKEN" if token() else "without a token (HF_TOKEN is not set)"
    return SubtoolError(
        f"the Hub refused {hub.repo_id} {with_token} (HTTP {status})",
        rule="fetch.hub_refused",
        hint=f"accept the license on {license_page(hub)} with the account whose token is in HF_TOKEN",
        exit_code=EXIT_REMOTE,
    )


def file_url(repo_id: str, name: str, commit: str) -> str:
    where = endpoint()
    from huggingface_hub import hf_hub_url

    return hf_hub_url(repo_id, name, revision=commit, endpoint=where)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def listing(hub: HubFiles) -> Listing:
    """The files of `hub` matching its patterns, with the Hub's sizes and checksums. Raises SubtoolError: exit 3
    when the Hub cannot be reached or refuses, 2 for a repository or revision that does not exist."""
    where = endpoint()  # checked before huggingface_hub is imported
    from huggingface_hub import HfApi

    info = _model_info(HfApi(endpoint=where, token=token() or False, library_name="subtool"), hub)
    commit = info.sha or hub.revision
    if info.sha and not re.fullmatch(r"[0-9a-f]{40}", str(info.sha)):  # it goes into each URL and the manifest
        raise _untrusted(
            hub,
            f"the Hub gives {ascii(info.sha)[:60]} as {hub.repo_id}'s commit, which is no commit id",
            "fetch.hub_name",
        )
    files = [f for f in (_hub_file(hub, sib, commit) for sib in info.siblings or []) if f is not None]
    clashing = clash([MANIFEST, *(f.name for f in files)])
    if clashing is not None:  # found now, before gigabytes are downloaded that cannot be installed side by side
        raise SubtoolError(
            f"the Hub lists {clashing!r} beside a file of the same name but for case, a folder of that name, or "
            "subtool's own manifest",
            path=model_page(hub),
            rule="fetch.layout",
            exit_code=EXIT_REMOTE,
        )
    if not files:
        raise SubtoolError(
            f"no file of {hub.repo_id}@{hub.revision} matches {', '.join(hub.patterns)}",
            path=model_page(hub),
            rule="fetch.hub_empty",
            exit_code=EXIT_REMOTE,
        )
    return Listing(hub.repo_id, hub.revision, commit, tuple(sorted(files, key=lambda f: f.name)))


def _model_info(api, hub: HubFiles):
    """The Hub's answer to the listing, given LIST_DEADLINE seconds in all: LIST_TIMEOUT bounds the silence
    between two bytes only, so a Hub or mirror sending its headers a byte a minute held fetch (and --plan) for as
    long as it liked. huggingface_hub's client gives no socket to shut down: the call runs in a daemon thread,
    left to the end of the process once the deadline passes."""
    got: list = []

    def call() -> None:
        try:
            got.append(api.model_info(hub.repo_id, revision=hub.revision, files_metadata=True, timeout=LIST_TIMEOUT))
        except Exception as exc:  # noqa: BLE001 - huggingface_hub and its HTTP client raise many types
            got.append(_hub_error(hub, exc))

    worker = threading.Thread(target=call, name="subtool-hub-listing", daemon=True)
    worker.start()
    worker.join(LIST_DEADLINE)
    if not got:
        raise SubtoolError(
            f"the Hub did not finish its answer to the listing of {hub.repo_id} in {LIST_DEADLINE:g} s: stopped",
            path=model_page(hub),
            rule="fetch.too_slow",
            hint="run the same command again, or set HF_ENDPOINT to a Hub mirror that answers",
            exit_code=EXIT_REMOTE,
        )
    if isinstance(got[0], SubtoolError):
        raise got[0]
    return got[0]


def _untrusted(hub: HubFiles, message: str, rule: str, said: str = "answers so") -> SubtoolError:
    """An answer of the Hub (or mirror) that fetch refuses to build on: one line, exit 3, the endpoint to check."""
    return SubtoolError(
        message,
        path=model_page(hub),
        rule=rule,
        hint=f"a Hub or mirror that {said} is not to be trusted: check HF_ENDPOINT",
        exit_code=EXIT_REMOTE,
    )


def _hub_file(hub: HubFiles, sib, commit: str) -> HubFile | None:
    """One listed file as fetch downloads it, None when no pattern of `hub` takes it. Its name, size and checksums
    come from the server: each is checked before anything is made of it (a path, a byte cap, a comparison)."""
    if not safe_name(sib.rfilename):
        raise _untrusted(
            hub,
            f"the Hub lists a file named {sib.rfilename!r}, which is not a plain relative path inside the repository",
            "fetch.hub_name",
            said="lists such a name",
        )
    if not _matches(sib.rfilename, hub.patterns):
        return None
    sha = sib.lfs.sha256 if sib.lfs else None
    size = sib.lfs.size if sib.lfs else sib.size
    problem = _listed_problem(size, sha, sib.blob_id)
    if problem is not None:
        raise _untrusted(
            hub, f"the Hub lists {sib.rfilename!r} with {problem}", "fetch.hub_listing", said="lists such a file"
        )
    return HubFile(sib.rfilename, file_url(hub.repo_id, sib.rfilename, commit), size, sha, sib.blob_id)


_LISTED_HEX = (("sha256", re.compile(r"[0-9a-f]{64}")), ("git blob id", re.compile(r"[0-9a-f]{40}")))


def _listed_problem(size: object, sha: object, blob_id: object) -> str | None:
    """What is wrong with a listed file's size and checksums (the Hub gives a byte count, a sha256 for an LFS
    file and a git blob id for every file), or None."""
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        return f"a size of {ascii(size)[:40]}, which is no byte count"
    for what, pattern in _LISTED_HEX:
        value = sha if what == "sha256" else blob_id
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            return f"a {what} of {ascii(value)[:80]}, which is no {what}"
    if sha is None and blob_id is None:
        return "no checksum"
    return None


def _hub_error(hub: HubFiles, exc: Exception) -> SubtoolError:
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(exc, GatedRepoError) or status in (401, 403):
        return refused(hub, status or "401")
    if isinstance(exc, RevisionNotFoundError):
        return SubtoolError(
            f"{hub.repo_id} has no revision {hub.revision}", path=model_page(hub), rule="fetch.hub_revision"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return SubtoolError(f"no repository {hub.repo_id} on {endpoint()}", rule="fetch.hub_repo")
    what = f"HTTP {status}" if isinstance(exc, HfHubHTTPError) and status else type(exc).__name__
    return SubtoolError(
        f"cannot list {hub.repo_id}@{hub.revision} on {endpoint()} ({what})",
        rule="fetch.hub_unreachable",
        hint="check the network, or set HF_ENDPOINT to your Hub mirror",
        exit_code=EXIT_REMOTE,
    )
