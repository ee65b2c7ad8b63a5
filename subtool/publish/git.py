"""Git plumbing for publishing: a cached bare clone of the fork, a commit built without a work tree, a push.

Everything goes through `git` subprocesses. The token reaches git only through the environment
(GIT_CONFIG_COUNT → http.<forge>/.extraHeader), so it is in no argv, no remote URL, no .git/config and no
message git prints. Network operations are retried with exponential back-off; a push updates one ref, which
the server applies only after the whole pack arrived, so a failed push leaves nothing half-pushed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from subtool.errors import EXIT_USAGE, SubtoolError
from subtool.publish.remote import ForkLocation, Redactor, basic_auth_header

ZERO_SHA = "0" * 40

# What git prints for each kind of failure (LC_ALL=C). Checked in this order.
# ssh refusing a host it does not know (no tty to ask on, or a key that changed): no retry heals it
_HOST_KEY = re.compile(
    r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No \S+ host key is known for", re.I
)
_SSH_KEY = re.compile(r"Permission denied \(publickey", re.I)  # ssh: no key the forge knows (the token is no help)
_AUTH = re.compile(
    r"Authentication failed|could not read Username|could not read Password|returned error: 401|"
    r"terminal prompts disabled|Invalid username or password",
    re.I,
)
_FORBIDDEN = re.compile(
    r"returned error: 403|Permission to .* denied|denied to |access denied|"
    r"insufficient permission|unable to create temporary object directory|"
    r"Permission denied",
    re.I,
)
_MISSING = re.compile(
    r"Repository not found|returned error: 404|does not appear to be a git repository|"
    r"not found: did you run git update-server-info|No such file or directory|"
    r"invalid gitfile format|not a git repository",  # a local fork that is a file, or a .git file pointing nowhere
    re.I,
)
# a ref the fetch names is not on the remote (deleted since listed): checked before the network, never retried
_NO_REF = re.compile(r"couldn't find remote ref", re.I)
_REJECTED = re.compile(r"stale info|\[rejected\]|\(fetch first\)|non-fast-forward", re.I)
_DECLINED = re.compile(r"\[remote rejected\]", re.I)  # a server hook (GitHub's 100 MB limit, a protected branch)
_NETWORK = re.compile(
    r"Could not resolve host|Failed to connect|Connection refused|Connection reset|Connection timed out|"
    r"Operation timed out|timed out|RPC failed|early EOF|remote end hung up|unexpected disconnect|"
    r"Empty reply from server|returned error: 5\d\d|HTTP/\d(\.\d)? 5\d\d|SSL|transfer closed|"
    r"Recv failure|Send failure|Could not read from remote repository|the remote end hung up",
    re.I,
)


@dataclass
class GitFailure(Exception):
    """A git command that failed; `kind` is host_key, ssh_key, auth, forbidden, missing, no_ref, rejected, declined,
    network or other."""

    args_: Sequence[str]
    returncode: int
    stderr: str
    kind: str

    def __str__(self) -> str:
        return f"git {' '.join(self.args_[:1])} failed ({self.kind}): {last_line(self.stderr)}"


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    refused = [ln.replace("\t", " ") for ln in lines if ln.startswith("!")]  # push --porcelain ref status
    fatal = [ln for ln in lines if ln.lower().startswith(("fatal:", "error:", "remote:"))]
    said = [ln for ln in lines if ln.lower().startswith("remote:") and ln[7:].strip()]
    if refused and said:  # the server's own reason (a hook's 'File … exceeds the size limit') beside its verdict
        return f"{refused[-1]}: {said[-1]}"
    return (refused or fatal or lines or ["no message"])[-1]


def classify(stderr: str) -> str:
    if _HOST_KEY.search(stderr):
        return "host_key"
    if _SSH_KEY.search(stderr):
        return "ssh_key"
    if _AUTH.search(stderr):
        return "auth"
    if _MISSING.search(stderr):
        return "missing"
    if _FORBIDDEN.search(stderr):
        return "forbidden"
    if _NO_REF.search(stderr):
        return "no_ref"
    if _REJECTED.search(stderr):
        return "rejected"
    if _DECLINED.search(stderr):
        return "declined"
    if _NETWORK.search(stderr):
        return "network"
    return "other"


def default_cache_root() -> Path:
    """Where fork clones are cached without --cache: forks/ in subtool's cache, wherever every other stage keeps
    its files ($SUBTOOL_CACHE, else $XDG_CACHE_HOME/subtool, else ~/.cache/subtool)."""
    from subtool.fsutil import cache_root

    return cache_root() / "forks"


# Every way a user's environment or global config can make git write what it sends (the Authorization header
# in http.<url>.extraHeader included) somewhere. trace2 reads its targets and its configParams/envVars lists from
# the system and global config only, never from `-c` or GIT_CONFIG_COUNT, and a non-empty environment variable
# overrides each: so each is set here, to "off" or to a pattern that matches nothing.
TRACING_OFF = {
    "GIT_TRACE2": "0",
    "GIT_TRACE2_EVENT": "0",
    "GIT_TRACE2_PERF": "0",
    "GIT_TRACE2_CONFIG_PARAMS": "subtool.no-such-setting",
    "GIT_TRACE2_ENV_VARS": "SUBTOOL_NO_SUCH_VARIABLE",
    "GIT_TRACE2_REDACT": "1",
    "GIT_TRACE_REDACT": "1",
    "GIT_TRACE": "0",
    "GIT_TRACE_CURL": "0",
    "GIT_TRACE_PACKET": "0",
    "GIT_TRACE_PERFORMANCE": "0",
    "GIT_TRACE_SETUP": "0",
    "GIT_TRACE_PACK_ACCESS": "0",
    "GIT_TRACE_SHALLOW": "0",
    "GIT_TRACE_REFS": "0",
    "GIT_TRACE_FSMONITOR": "0",
}
# Unset rather than set: git turns curl's verbose mode on when these exist at all, whatever their value.
_UNSET = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_CURL_VERBOSE",
    "GIT_TRACE_CURL_NO_DATA",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_PARAMETERS",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
)


def _clean_environment(extra_config: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_TRACE", "GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_")) and k not in _UNSET
    }
    env.update(TRACING_OFF)
    env.update(LC_ALL="C", LANGUAGE="C", GIT_TERMINAL_PROMPT="0", GCM_INTERACTIVE="never")
    # A bare cache has no hooks worth running and must not pick up a user's commit template or signing prompt.
    config = {
        "core.hooksPath": os.devnull,
        "commit.gpgSign": "false",
        "gc.auto": "0",
        "core.autocrlf": "false",
        "credential.interactive": "false",
        **extra_config,
    }
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def _auth_scope(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return f"{parts.scheme.lower()}://{parts.netloc}/"
    return None


class Git:
    """Runs git against one bare repository with the token in the environment and retries for the network."""

    def __init__(
        self,
        git_dir: Path,
        *,
        token: str | None,
        urls: Iterable[str],
        redact: Redactor,
        retries: int = 3,
        backoff_s: float = 1.0,
        timeout_s: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
        note: Callable[[str], None] = lambda _m: None,
    ) -> None:
        self.git_dir = git_dir
        self.redact = redact
        self.retries = max(0, retries)
        self.backoff_s = max(0.0, backoff_s)
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.note = note
        extra: dict[str, str] = {}
        if token:
            for scope in sorted({s for s in map(_auth_scope, urls) if s}):
                extra[f"http.{scope}.extraHeader"] = basic_auth_header(token)
        self.env = _clean_environment(extra)

    def run(
        self,
        *args: str,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess:
        full_env = dict(self.env, **(env or {}))
        try:
            proc = subprocess.run(
                ["git", "--git-dir", str(self.git_dir), *args],
                input=stdin,
                capture_output=True,
                env=full_env,
                timeout=timeout or self.timeout_s,
            )
        except subprocess.TimeoutExpired as exc:
            raise GitFailure(list(args), 124, f"timed out after {exc.timeout:.0f} s", "network") from None
        except FileNotFoundError:  # no git executable on PATH (the git dir need not exist: git says so itself)
            raise SubtoolError(
                "git is not installed or not on PATH: publishing pushes with it",
                rule="publish.no_git",
                exit_code=EXIT_USAGE,
                hint="install git (e.g. `apt install git` or `module load git`), or leave --fork out",
            ) from None
        if check and proc.returncode != 0:
            stderr = self.redact((proc.stderr + proc.stdout).decode("utf-8", "replace"))
            raise GitFailure(list(args), proc.returncode, stderr, classify(stderr))
        return proc

    def out(self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> str:
        return self.run(*args, stdin=stdin, env=env).stdout.decode("utf-8", "surrogateescape").strip()

    def remote(self, *args: str, what: str) -> subprocess.CompletedProcess:
        """A command that talks to a remote: retried with back-off while the failure looks like the network."""
        attempt = 0
        while True:
            try:
                return self.run(*args)
            except GitFailure as failure:
                if failure.kind != "network" or attempt >= self.retries:
                    raise
                delay = self.backoff_s * (2**attempt)
                attempt += 1
                self.note(
                    f"{what}: network trouble ({last_line(failure.stderr)}); retry {attempt}/{self.retries}"
                    f" in {delay:.1f} s"
                )
                self.sleep(delay)


# ----------------------------------------------------------------------------------------------- cache
def cache_dir_for(cache_root: Path, fork: ForkLocation) -> Path:
    if fork.kind == "local" and "://" not in fork.url:
        key_source = os.path.abspath(fork.url)
    else:
        key_source = fork.url.rstrip("/").removesuffix(".git")
    digest = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{fork.owner or 'fork'}-{fork.name or 'repo'}").strip("-")
    return cache_root / f"{label[:80]}-{digest}.git"  # a file name: 255 bytes at most; the digest tells forks apart


def remote_url(fork: ForkLocation) -> str:
    if fork.kind == "local" and "://" not in fork.url:
        return os.path.abspath(fork.url)
    return fork.url


@contextlib.contextmanager
def locked_cache(git_dir: Path) -> Iterator[Path]:
    """Create the bare cache on first use (atomically) and hold an exclusive lock while publishing."""
    lock_path = git_dir.with_name(git_dir.name + ".lock")
    try:
        git_dir.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "a+")
    except OSError as exc:
        raise _unwritable_cache(git_dir.parent, exc) from None
    with lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        except OSError as exc:  # ENOLCK: a home folder on NFS without its lock daemon
            raise _unwritable_cache(git_dir.parent, exc, "lock") from None
        try:
            if not (git_dir / "HEAD").exists():
                _create_cache(git_dir)
            _clear_stale_locks(git_dir)
            yield git_dir
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _clear_stale_locks(git_dir: Path) -> None:
    """Remove the lock files a git killed mid-fetch left in the cache (shallow.lock, a ref's .lock): a timeout or
    a SIGTERM to subtool SIGKILLs its git child, and every later publish then failed on 'File exists'. Under
    the cache's exclusive lock no other publish is using them."""
    folders = [git_dir, git_dir / "objects" / "info"]
    folders += [Path(d) for d, _, _ in os.walk(git_dir / "refs")]
    for folder in folders:
        for stale in folder.glob("*.lock"):
            with contextlib.suppress(OSError):
                stale.unlink()


def _create_cache(git_dir: Path) -> None:
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{git_dir.name}.", dir=git_dir.parent))
    except OSError as exc:
        raise _unwritable_cache(git_dir.parent, exc) from None
    try:
        proc = subprocess.run(
            ["git", "init", "--bare", "-q", str(tmp)], capture_output=True, env=_clean_environment({})
        )
        if proc.returncode != 0:
            reason = last_line(proc.stderr.decode("utf-8", "replace"))
            raise SubtoolError(
                f"git init failed in the fork cache ({reason})",
                path=git_dir.parent,
                rule="publish.cache",
                exit_code=EXIT_USAGE,
                hint="pass --cache with a writable folder on a local disk",
            )
        if git_dir.exists():
            shutil.rmtree(git_dir)
        os.replace(tmp, git_dir)
    except OSError as exc:
        raise _unwritable_cache(git_dir.parent, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _unwritable_cache(folder: Path, exc: OSError, verb: str = "write") -> SubtoolError:
    return SubtoolError(
        f"cannot {verb} the fork cache ({exc.strerror or exc})",
        path=folder,
        rule="publish.cache",
        exit_code=EXIT_USAGE,
        hint="pass --cache with a writable folder on a local disk",
    )


def set_remote(git: Git, name: str, url: str) -> None:
    current = git.run("config", "--get", f"remote.{name}.url", check=False)
    if current.returncode != 0:
        git.run("remote", "add", "--", name, url)
    elif current.stdout.decode().strip() != url:
        git.run("remote", "set-url", "--", name, url)


def ls_remote_heads(git: Git, remote: str, branches: Sequence[str]) -> dict[str, str]:
    """{branch: sha} for the branches that exist on the remote."""
    refs = [f"refs/heads/{b}" for b in branches]
    proc = git.remote("ls-remote", "--heads", remote, *refs, what=f"listing branches of {remote}")
    heads: dict[str, str] = {}
    for line in proc.stdout.decode().splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/"):
            heads[ref[len("refs/heads/") :]] = sha
    return heads


def fetch(git: Git, remote: str, refs: dict[str, str], *, shallow: bool) -> dict[str, str]:
    """Fetch {branch: local_ref} in one round trip; returns {branch: sha}.

    Shallow and blob-less where the server allows it: building the commit needs the base's trees only, so a
    results repository of many gigabytes costs a few megabytes. The server already has every blob of the base,
    so the push never needs them either.
    """
    depth = ["--depth=1", "--filter=blob:none"] if shallow else []
    specs = [f"+refs/heads/{branch}:{local}" for branch, local in refs.items()]
    git.remote(
        "fetch", "-q", "--no-tags", "--no-write-fetch-head", *depth, remote, *specs, what=f"fetching {', '.join(refs)}"
    )
    return {branch: git.out("rev-parse", local) for branch, local in refs.items()}


def lacks_branch(failure: GitFailure, branch: str) -> bool:
    """Whether a fetch failed because `branch` is not on the remote (deleted after it was listed)."""
    named = re.compile(rf"remote ref refs/heads/{re.escape(branch)}$", re.M)
    return failure.kind == "no_ref" and bool(named.search(failure.stderr))


# --------------------------------------------------------------------------------------------- commit
@dataclass(frozen=True)
class FileEntry:
    path: str  # posix path relative to the tree root == path in the fork
    source: Path  # file on disk
    executable: bool


@dataclass(frozen=True)
class BlobEntry:
    """A file that is already a git object (on the branch being published to), kept as it is."""

    path: str
    mode: str
    sha: str


def list_entries(git: Git, treeish: str) -> list[BlobEntry]:
    """Every non-directory entry of a tree, recursively (trees only: the blobs need not be here)."""
    raw = git.run("ls-tree", "-r", "-z", "--full-tree", treeish).stdout
    entries = []
    for item in filter(None, raw.split(b"\0")):
        meta, _, path = item.partition(b"\t")
        mode, _kind, sha = meta.decode().split()
        entries.append(BlobEntry(path.decode("utf-8", "surrogateescape"), mode, sha))
    return entries


def _stdin_path(source: str | Path) -> str:
    """A file's path as `hash-object --stdin-paths` reads it: one per line, and a line that starts with a double
    quote is C-unquoted (a tree given as '"t"' would hash ./t's files instead). Absolute, it starts with '/'."""
    path = os.path.abspath(source)
    if "\n" in path or "\r" in path:
        raise SubtoolError(
            "a line break in the path of a file to publish", path=path, rule="publish.tree", exit_code=EXIT_USAGE
        )
    return path


def build_tree(
    git: Git, base: str, files: Sequence[FileEntry], replace: Sequence[str], known: Sequence[BlobEntry] = ()
) -> str:
    """The tree of `base` (a commit or tree) with every `replace` directory emptied and `files` (from disk) and
    `known` (existing objects) written in; returns its id."""
    index_dir = Path(tempfile.mkdtemp(prefix="subtool-index-"))
    index_env = {"GIT_INDEX_FILE": str(index_dir / "index")}
    try:
        git.run("read-tree", base, env=index_env)
        ours = {f.path for f in files} | {k.path for k in known}
        our_dirs = {p.rsplit("/", i)[0] for p in ours for i in range(1, p.count("/") + 1)}
        emptied = set(replace)
        removals: list[bytes] = []
        for raw in filter(None, git.run("ls-tree", "-r", "-z", "--name-only", base).stdout.split(b"\0")):
            path = raw.decode("utf-8", "surrogateescape")
            ancestors = {path.rsplit("/", i)[0] for i in range(1, path.count("/") + 1)}
            # Emptied result directories go; so does a file where we need a directory, or the reverse.
            if ancestors & emptied or path in our_dirs or ancestors & ours:
                removals.append(b"0 " + ZERO_SHA.encode() + b"\t" + raw + b"\0")
        if removals:
            git.run("update-index", "-z", "--index-info", stdin=b"".join(removals), env=index_env)
        info = b"".join(
            f"{k.mode} {k.sha}\t".encode() + k.path.encode("utf-8", "surrogateescape") + b"\0" for k in known
        )
        if files:
            paths = "".join(f"{_stdin_path(f.source)}\n" for f in files).encode("utf-8", "surrogateescape")
            shas = git.out("hash-object", "-w", "--no-filters", "--stdin-paths", stdin=paths).split()
            if len(shas) != len(files):
                raise SubtoolError("git hash-object returned fewer ids than files", rule="publish.git")
            info += b"".join(
                f"{'100755' if f.executable else '100644'} {sha}\t".encode() + f.path.encode("utf-8") + b"\0"
                for f, sha in zip(files, shas)
            )
        if info:
            added = git.run("update-index", "-z", "--add", "--replace", "--index-info", stdin=info, env=index_env)
            if added.stderr.strip():  # it says nothing unless it skipped a path (the index is not listed for nothing)
                _refuse_dropped_paths(git, index_env, files, known)
        # --missing-ok: the base's blobs were not fetched (blob-less clone) and need not be; the fork has them.
        return git.out("write-tree", "--missing-ok", env=index_env)
    finally:
        shutil.rmtree(index_dir, ignore_errors=True)


def _refuse_dropped_paths(git: Git, index_env: dict[str, str], files: Sequence[FileEntry], known: Sequence[BlobEntry]):
    """update-index skips a path git may not hold (a `.GIT` or `git~1` folder, a file named `.git`) with a warning
    and exit 0: the commit would silently lack that file. Refused instead, naming the first such file."""
    listed = set(git.run("ls-files", "-z", env=index_env).stdout.split(b"\0"))
    for f in files:
        if f.path.encode("utf-8") not in listed:
            raise SubtoolError(
                "git refuses this path in a repository (a '.git' name in any case, 'git~1' or the like), so the "
                "pushed branch would silently lack the file",
                path=f.source,
                rule="publish.git_path",
                exit_code=EXIT_USAGE,
                hint="rename or remove it; nothing was pushed",
            )
    lost = [k.path for k in known if k.path.encode("utf-8", "surrogateescape") not in listed]
    if lost:
        raise SubtoolError(
            f"git refuses the path '{lost[0]}', which the branch already holds, so the new commit would lack it",
            rule="publish.git_path",
            exit_code=EXIT_USAGE,
            hint="publish with --replace (the branch then holds this tree only), or use another --branch",
        )


def existing_paths(git: Git, treeish: str, paths: Iterable[str]) -> set[str]:
    """Which of `paths` (files or folders) `treeish` holds; its trees only, no blob is read."""
    wanted = sorted(paths)
    if not wanted:
        return set()
    raw = git.run("ls-tree", "-z", "--name-only", treeish, "--", *wanted).stdout
    return {p.decode("utf-8", "surrogateescape") for p in filter(None, raw.split(b"\0"))} & set(wanted)


def tree_of(git: Git, commit: str) -> str:
    return git.out("rev-parse", f"{commit}^{{tree}}")


def parents_of(git: Git, commit: str) -> list[str]:
    proc = git.run("rev-list", "--parents", "-n", "1", commit, check=False)
    words = proc.stdout.decode().split()
    return words[1:]


def diff_names(git: Git, old_tree: str, new_tree: str) -> list[tuple[str, str]]:
    raw = git.run("diff-tree", "-r", "-z", "--no-renames", "--name-status", old_tree, new_tree).stdout
    items = raw.split(b"\0")
    changes = []
    for status, path in zip(items[0::2], items[1::2]):
        if status:
            changes.append((status.decode(), path.decode("utf-8", "surrogateescape")))
    return changes


def commit_tree(git: Git, tree: str, parent: str, message: str, *, author_name: str, author_email: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": author_name,
        "GIT_AUTHOR_EMAIL": author_email,
        "GIT_COMMITTER_NAME": author_name,
        "GIT_COMMITTER_EMAIL": author_email,
    }
    return git.out("commit-tree", tree, "-p", parent, "-F", "-", stdin=message.encode("utf-8"), env=env)


def identity(submitter: str) -> tuple[str, str]:
    """The user's git identity when configured, else the submitter's name with a reserved-domain address."""

    def get(key: str) -> str:
        proc = subprocess.run(["git", "config", "--get", key], capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    name = os.environ.get("GIT_AUTHOR_NAME") or get("user.name") or submitter
    email = os.environ.get("GIT_AUTHOR_EMAIL") or get("user.email") or "subtool@users.invalid"
    return name, email


def push(git: Git, remote: str, commit: str, branch: str, expected_old: str | None) -> None:
    """Point refs/heads/<branch> at `commit`, but only if it still is where we last saw it (or absent)."""
    lease = f"--force-with-lease=refs/heads/{branch}:{expected_old or ''}"
    git.remote("push", "--porcelain", "-q", lease, remote, f"{commit}:refs/heads/{branch}", what=f"pushing {branch}")


def check_branch_name(name: str) -> str:
    # --branch expands '@{-1}' to the branch checked out before in the working directory's repository: refused
    proc = subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True, text=True)
    if proc.returncode != 0 or name.startswith("-") or "@{" in name:
        raise SubtoolError(
            f"'{name}' is not a valid branch name",
            rule="publish.branch",
            hint="use letters, digits, '-', '_', '.' and '/' (no '..', no trailing '/')",
            exit_code=EXIT_USAGE,
        )
    return proc.stdout.strip()
