"""A small forge on 127.0.0.1 for the publish tests: real git smart-HTTP plus GitHub's REST v3 subset.

No real forge installs on the machines this suite runs on, so this stands in for one where it matters:
- git: every `/<owner>/<repo>.git/...` request goes through `git http-backend` (git's own smart-HTTP CGI), with
  Basic authentication (password = token) and GitHub's rules: anyone may read a public repository, only a
  writer may push (401 without or with a bad token, 403 with a token that may not write);
- API under `/api/v3`: the calls PyGithub makes for publishing (user, repos, forks, branches, pulls), with the
  validation GitHub does: 401 "Bad credentials", 404 "Not Found", 422 "Validation Failed" for a missing head or
  base branch and for a second open pull request from the same head. Every URL it returns is built from its own
  address, as PyGithub requires.
- fault injection: answer the next N matching requests with a status (5xx, a rate limit), with raw bytes (an
  empty or non-JSON body, a redirect), drop the connection in the middle of the request body (network down
  mid-push), or apply the request and then drop its answer (the answer lost on the way back).
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import itertools
import json
import os
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_GIT_PATH = re.compile(r"^/(?P<owner>[^/]+)/(?P<name>[^/]+?)\.git(?P<rest>/.*)$")
_DOCS = "https://docs.github.com/rest"
TITLE_MOST = 256  # characters of an issue or pull request title


@dataclass
class Repo:
    id: int
    owner: str
    name: str
    private: bool = False
    parent: str | None = None  # full name of the repository this one was forked from
    default_branch: str = "main"
    writers: set[str] = field(default_factory=set)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Pull:
    id: int
    number: int
    repo: str  # base repository full name
    base: str
    head_repo: str
    head_ref: str
    title: str
    body: str
    user: str
    state: str = "open"
    maintainer_can_modify: bool = True
    created_at: str = ""
    updated_at: str = ""


@dataclass
class Fault:
    """Answer (or cut) the next `count` requests whose "METHOD path" matches `pattern`."""

    pattern: str
    count: int
    status: int = 502
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection after reading half the request body, answer nothing
    raw: bytes | None = None  # answer with exactly these bytes as the body (status and headers as given)
    lose_answer: bool = False  # apply the request as usual, then close the connection without answering
    hits: int = 0


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class TestForge:
    __test__ = False  # not a test class, despite the name

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "repositories"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tokens: dict[str, str] = {}
        self.repos: dict[str, Repo] = {}
        self.pulls: dict[str, list[Pull]] = {}
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []  # (method, path, status) of every request
        self._ids = itertools.count(1000)
        self._lock = threading.RLock()
        forge = self

        class Handler(_Handler):
            pass

        Handler.forge = forge
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v3"

    def start(self) -> TestForge:
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="test-forge", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --------------------------------------------------------------------------------------------- setup
    def add_user(self, login: str, token: str) -> None:
        self.tokens[token] = login

    def create_repo(self, owner: str, name: str, seed: Path, *, private: bool = False) -> Repo:
        """A repository whose content is a clone of the git repository `seed`."""
        path = self.repo_path(owner, name)
        _git("clone", "-q", "--bare", str(seed), str(path))
        _git("--git-dir", str(path), "config", "uploadpack.allowFilter", "true")
        head = _git("--git-dir", str(path), "symbolic-ref", "--short", "HEAD")
        repo = Repo(next(self._ids), owner, name, private=private, default_branch=head, writers={owner})
        self.repos[repo.full_name] = repo
        return repo

    def fork(self, source: str, owner: str, *, default_branch_only: bool = False) -> Repo:
        parent = self.repos[source]
        existing = self.repos.get(f"{owner}/{parent.name}")
        if existing is not None:
            return existing
        path = self.repo_path(owner, parent.name)
        only = ["--single-branch", "--branch", parent.default_branch] if default_branch_only else []
        _git("clone", "-q", "--bare", *only, str(self.repo_path(parent.owner, parent.name)), str(path))
        _git("--git-dir", str(path), "config", "uploadpack.allowFilter", "true")
        repo = Repo(
            next(self._ids),
            owner,
            parent.name,
            private=parent.private,
            parent=parent.full_name,
            default_branch=parent.default_branch,
            writers={owner},
        )
        self.repos[repo.full_name] = repo
        return repo

    def repo_path(self, owner: str, name: str) -> Path:
        return self.root / owner / f"{name}.git"

    def git_url(self, owner: str, name: str) -> str:
        return f"{self.url}/{owner}/{name}.git"

    def branch_sha(self, full_name: str, branch: str) -> str | None:
        repo = self.repos[full_name]
        proc = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.repo_path(repo.owner, repo.name)),
                "rev-parse",
                "--verify",
                "-q",
                f"refs/heads/{branch}",
            ],
            capture_output=True,
            text=True,
        )
        return proc.stdout.strip() or None

    def inject(self, pattern: str, count: int = 1, **kwargs: Any) -> Fault:
        fault = Fault(pattern, count, **kwargs)
        self.faults.append(fault)
        return fault

    def network_root(self, full_name: str) -> str:
        repo = self.repos[full_name]
        while repo.parent:
            repo = self.repos[repo.parent]
        return repo.full_name

    def requests(self, method: str, pattern: str) -> list[tuple[str, str, int]]:
        return [r for r in self.log if r[0] == method and re.search(pattern, r[1])]

    # ------------------------------------------------------------------------------------------ JSON views
    def user_json(self, login: str) -> dict:
        return {
            "login": login,
            "id": abs(hash(login)) % 10**6,
            "node_id": f"U_{login}",
            "type": "User",
            "site_admin": False,
            "url": f"{self.api_url}/users/{login}",
            "html_url": f"{self.url}/{login}",
        }

    def repo_json(self, repo: Repo, viewer: str | None, *, full: bool = True) -> dict:
        data = {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": self.user_json(repo.owner),
            "private": repo.private,
            "fork": repo.parent is not None,
            "html_url": f"{self.url}/{repo.full_name}",
            "url": f"{self.api_url}/repos/{repo.full_name}",
            "clone_url": self.git_url(repo.owner, repo.name),
            "default_branch": repo.default_branch,
            "visibility": "private" if repo.private else "public",
            "description": None,
            "pulls_url": f"{self.api_url}/repos/{repo.full_name}/pulls{{/number}}",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": _now(),
            "pushed_at": _now(),
        }
        if viewer is not None:
            data["permissions"] = {
                "admin": viewer == repo.owner,
                "maintain": viewer in repo.writers,
                "push": viewer in repo.writers,
                "triage": True,
                "pull": True,
            }
        if full and repo.parent:
            data["parent"] = self.repo_json(self.repos[repo.parent], viewer, full=False)
            data["source"] = self.repo_json(self.repos[self.network_root(repo.full_name)], viewer, full=False)
        return data

    def pull_json(self, pr: Pull) -> dict:
        base_repo, head_repo = self.repos[pr.repo], self.repos[pr.head_repo]
        api = f"{self.api_url}/repos/{pr.repo}/pulls/{pr.number}"
        return {
            "url": api,
            "id": pr.id,
            "node_id": f"PR_{pr.id}",
            "number": pr.number,
            "state": pr.state,
            "html_url": f"{self.url}/{pr.repo}/pull/{pr.number}",
            "locked": False,
            "title": pr.title,
            "body": pr.body,
            "user": self.user_json(pr.user),
            "created_at": pr.created_at,
            "updated_at": pr.updated_at,
            "closed_at": None,
            "merged_at": None,
            "merged": False,
            "draft": False,
            "maintainer_can_modify": pr.maintainer_can_modify,
            "head": {
                "label": f"{head_repo.owner}:{pr.head_ref}",
                "ref": pr.head_ref,
                "sha": self.branch_sha(pr.head_repo, pr.head_ref),
                "user": self.user_json(head_repo.owner),
                "repo": self.repo_json(head_repo, None, full=False),
            },
            "base": {
                "label": f"{base_repo.owner}:{pr.base}",
                "ref": pr.base,
                "sha": self.branch_sha(pr.repo, pr.base),
                "user": self.user_json(base_repo.owner),
                "repo": self.repo_json(base_repo, None, full=False),
            },
        }


class _Handler(BaseHTTPRequestHandler):
    forge: TestForge
    protocol_version = "HTTP/1.1"
    server_version = "test-forge/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the forge keeps its own log
        pass

    # ----------------------------------------------------------------------------------------- plumbing
    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _read_body(self, limit: int | None = None) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
                if limit is not None and sum(map(len, chunks)) >= limit:
                    break
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length if limit is None else min(length, limit))

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.forge.log.append((self.command, self.path, status))

    def _json(self, status: int, obj: Any, extra: dict[str, str] | None = None) -> None:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-GitHub-Media-Type": "github.v3",
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "4999",
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            **(extra or {}),
        }
        self._send(status, json.dumps(obj).encode(), headers)

    def _fault(self) -> bool:
        request = f"{self.command} {self.path}"
        with self.forge._lock:
            fault = next((f for f in self.forge.faults if f.hits < f.count and re.search(f.pattern, request)), None)
            if fault is None:
                return False
            fault.hits += 1
        if fault.lose_answer:
            self._apply_and_lose_answer()
            return True
        if fault.drop:
            length = int(self.headers.get("Content-Length") or 1 << 16)
            self._read_body(limit=max(1, length // 2))
            self.forge.log.append((self.command, self.path, 0))
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        self._read_body()
        if fault.raw is not None:
            self._send(fault.status, fault.raw, fault.headers)
            return True
        body = fault.body if fault.body is not None else {"message": "Server Error"}
        self._json(fault.status, body, fault.headers)
        return True

    def _apply_and_lose_answer(self) -> None:
        """Run the request through the forge (its effect stays), throw the answer away, cut the connection."""
        real, self.wfile = self.wfile, io.BytesIO()
        try:
            self._route_request()
        finally:
            self.wfile = real
        self.forge.log.append((self.command, self.path, 0))
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _dispatch(self) -> None:
        try:
            if self._fault():
                return
            self._route_request()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route_request(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/api/v3/") or path == "/api/v3":
            self._api()
        elif _GIT_PATH.match(path):
            self._git()
        else:
            self._read_body()
            self._send(404, b"Not Found\n", {"Content-Type": "text/plain"})

    def _credentials(self) -> tuple[bool, str | None]:
        """(sent credentials?, login or None when they are wrong)."""
        header = self.headers.get("Authorization", "")
        if not header:
            return False, None
        scheme, _, value = header.partition(" ")
        token = value.strip()
        if scheme.lower() == "basic":
            try:
                token = base64.b64decode(token).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                return True, None
        elif scheme.lower() not in ("token", "bearer"):
            return True, None
        return True, self.forge.tokens.get(token)

    # ------------------------------------------------------------------------------------------------ git
    def _git(self) -> None:
        parts = urlsplit(self.path)
        match = _GIT_PATH.match(parts.path)
        assert match is not None
        repo = self.forge.repos.get(f"{match['owner']}/{match['name']}")
        sent, login = self._credentials()
        body = self._read_body()
        if sent and login is None:
            self._send(401, b"Bad credentials\n", {"WWW-Authenticate": 'Basic realm="test-forge"'})
            return
        if repo is None or (repo.private and login is None):
            self._send(404, b"Repository not found.\n", {"Content-Type": "text/plain"})
            return
        pushing = "git-receive-pack" in parts.path or "service=git-receive-pack" in parts.query
        if pushing and login is None:
            self._send(401, b"Authentication required\n", {"WWW-Authenticate": 'Basic realm="test-forge"'})
            return
        if pushing and login not in repo.writers:
            self._send(
                403, f"Permission to {repo.full_name}.git denied to {login}.\n".encode(), {"Content-Type": "text/plain"}
            )
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.forge.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": unquote(parts.path),
            "QUERY_STRING": parts.query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": login or "",
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "HOME": str(self.forge.root),
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        proc = subprocess.run(["git", "http-backend"], input=body, capture_output=True, env=env)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        self._send(status, payload, headers)

    # ------------------------------------------------------------------------------------------------ API
    def _api(self) -> None:
        forge = self.forge
        parts = urlsplit(self.path)
        route = parts.path[len("/api/v3") :].rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        raw = self._read_body()
        payload = json.loads(raw) if raw.strip() else {}
        sent, login = self._credentials()
        if sent and login is None:
            self._json(401, {"message": "Bad credentials", "documentation_url": _DOCS, "status": "401"})
            return
        with forge._lock:
            self._route(route, query, payload, login)

    def _not_found(self) -> None:
        self._json(404, {"message": "Not Found", "documentation_url": _DOCS, "status": "404"})

    def _invalid(self, errors: list[dict]) -> None:
        self._json(422, {"message": "Validation Failed", "errors": errors, "documentation_url": _DOCS, "status": "422"})

    def _route(self, route: str, query: dict, payload: dict, login: str | None) -> None:
        forge, method = self.forge, self.command
        if route == "/user" and method == "GET":
            if login is None:
                self._json(401, {"message": "Requires authentication", "documentation_url": _DOCS})
                return
            self._json(200, forge.user_json(login))
            return
        match = re.match(r"^/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)(?P<rest>/.*)?$", route)
        if not match:
            self._not_found()
            return
        repo = forge.repos.get(f"{match['owner']}/{match['name']}")
        if repo is None or (repo.private and login is None):
            self._not_found()
            return
        rest = match["rest"] or ""
        if rest == "" and method == "GET":
            self._json(200, forge.repo_json(repo, login))
        elif rest == "/forks" and method == "POST":
            if login is None:
                self._json(401, {"message": "Requires authentication", "documentation_url": _DOCS})
                return
            fork = forge.fork(
                repo.full_name,
                payload.get("organization") or login,
                default_branch_only=bool(payload.get("default_branch_only")),
            )
            self._json(202, forge.repo_json(fork, login))
        elif rest.startswith("/branches/") and method == "GET":
            branch = unquote(rest[len("/branches/") :])
            sha = forge.branch_sha(repo.full_name, branch)
            if sha is None:
                self._json(404, {"message": "Branch not found", "documentation_url": _DOCS, "status": "404"})
                return
            self._json(
                200,
                {
                    "name": branch,
                    "protected": False,
                    "commit": {"sha": sha, "url": f"{forge.api_url}/repos/{repo.full_name}/commits/{sha}"},
                    "_links": {
                        "self": f"{forge.api_url}/repos/{repo.full_name}/branches/{branch}",
                        "html": f"{forge.url}/{repo.full_name}/tree/{branch}",
                    },
                },
            )
        elif rest == "/pulls" and method == "GET":
            self._json(200, [forge.pull_json(p) for p in self._list_pulls(repo, query)])
        elif rest == "/pulls" and method == "POST":
            self._create_pull(repo, payload, login)
        elif re.fullmatch(r"/pulls/\d+", rest) and method in ("GET", "PATCH"):
            number = int(rest.rsplit("/", 1)[1])
            pr = next((p for p in forge.pulls.get(repo.full_name, []) if p.number == number), None)
            if pr is None:
                self._not_found()
                return
            if method == "PATCH":
                if login is None or login not in (pr.user, *repo.writers):
                    self._json(403, {"message": "Must have admin rights to Repository.", "documentation_url": _DOCS})
                    return
                for key in ("title", "body", "state"):
                    if key in payload and payload[key] is not None:
                        setattr(pr, key, payload[key])
                pr.updated_at = _now()
            self._json(200, forge.pull_json(pr))
        else:
            self._not_found()

    def _head_repo(self, repo: Repo, head: str) -> tuple[Repo | None, str]:
        owner, sep, ref = head.partition(":")
        if not sep:
            return repo, head
        root = self.forge.network_root(repo.full_name)
        for candidate in self.forge.repos.values():
            if candidate.owner == owner and self.forge.network_root(candidate.full_name) == root:
                return candidate, ref
        return None, ref

    def _list_pulls(self, repo: Repo, query: dict) -> list[Pull]:
        state = query.get("state", "open")
        pulls = [p for p in self.forge.pulls.get(repo.full_name, []) if state == "all" or p.state == state]
        if "base" in query:
            pulls = [p for p in pulls if p.base == query["base"]]
        if "head" in query:
            head_repo, ref = self._head_repo(repo, query["head"])
            pulls = [p for p in pulls if head_repo and p.head_repo == head_repo.full_name and p.head_ref == ref]
        return pulls

    def _create_pull(self, repo: Repo, payload: dict, login: str | None) -> None:
        forge = self.forge
        if login is None:
            self._json(401, {"message": "Requires authentication", "documentation_url": _DOCS})
            return
        missing = [f for f in ("title", "head", "base") if not payload.get(f)]
        if missing:
            self._invalid([{"resource": "PullRequest", "field": f, "code": "missing_field"} for f in missing])
            return
        errors = []
        if len(payload["title"]) > TITLE_MOST:  # GitHub: "title is too long (maximum is 256 characters)"
            errors.append({"resource": "Issue", "field": "title", "code": "custom", "message": "title is too long"})
        if forge.branch_sha(repo.full_name, payload["base"]) is None:
            errors.append({"resource": "PullRequest", "field": "base", "code": "invalid"})
        head_repo, ref = self._head_repo(repo, payload["head"])
        if head_repo is None or forge.branch_sha(head_repo.full_name, ref) is None:
            errors.append({"resource": "PullRequest", "field": "head", "code": "invalid"})
        if errors:
            self._invalid(errors)
            return
        assert head_repo is not None
        duplicate = [
            p
            for p in forge.pulls.get(repo.full_name, [])
            if p.state == "open"
            and p.head_repo == head_repo.full_name
            and p.head_ref == ref
            and p.base == payload["base"]
        ]
        if duplicate:
            self._invalid(
                [
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"A pull request already exists for {head_repo.owner}:{ref}.",
                    }
                ]
            )
            return
        pulls = forge.pulls.setdefault(repo.full_name, [])
        pr = Pull(
            id=next(forge._ids),
            number=len(pulls) + 1,
            repo=repo.full_name,
            base=payload["base"],
            head_repo=head_repo.full_name,
            head_ref=ref,
            title=payload["title"],
            body=payload.get("body") or "",
            user=login,
            maintainer_can_modify=bool(payload.get("maintainer_can_modify", True)),
            created_at=_now(),
            updated_at=_now(),
        )
        pulls.append(pr)
        self._json(201, forge.pull_json(pr), {"Location": f"{forge.api_url}/repos/{repo.full_name}/pulls/{pr.number}"})


def _git(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    proc = subprocess.run(["git", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()
