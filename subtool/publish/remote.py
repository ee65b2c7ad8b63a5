"""Where publishing goes: the fork's address, the forge's API and web addresses, the token, and redaction.

Pure functions over strings and the environment; nothing here touches the network or git.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from subtool.errors import EXIT_REMOTE, EXIT_USAGE, SubtoolError

GITHUB_HOST = "github.com"
GITHUB_API = "https://api.github.com"
TOKEN_VARIABLES = ("GITHUB_TOKEN", "GH_TOKEN")

_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/\s]+)@)?(?P<host>[^:/\s]+):(?P<path>(?!//)[^\s]+)$")


@dataclass(frozen=True)
class ForkLocation:
    """A parsed fork address. `kind` is http (a forge may have an API), ssh, or local (no API)."""

    url: str
    kind: str
    host: str | None
    owner: str | None
    name: str | None

    @property
    def full_name(self) -> str | None:
        return f"{self.owner}/{self.name}" if self.owner and self.name else None

    @property
    def has_api(self) -> bool:
        return self.kind in ("http", "ssh") and bool(self.full_name)


def _owner_and_name(path: str) -> tuple[str | None, str | None]:
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) < 2:
        return None, (parts[0].removesuffix(".git") if parts else None)
    return parts[-2], parts[-1].removesuffix(".git")


def _refuse_secrets(url: str, parts, scheme: str) -> None:
    """A fork URL is stored in .git/config, written into run records and echoed by git: one that can carry a
    token (user info on http, a password on ssh, a query or a fragment anywhere) is refused before it goes
    anywhere, and the message never repeats it."""
    where = None
    if scheme in ("http", "https") and (parts.username is not None or parts.password is not None):
        where = "a user name or token before the host"
    elif scheme in ("ssh", "git+ssh") and parts.password is not None:
        where = "a password after the user name"
    elif scheme and len(scheme) > 1 and (parts.query or parts.fragment or url.rstrip().endswith(("?", "#"))):
        where = "a query string or fragment"
    elif not (scheme and len(scheme) > 1):
        match = _SCP_LIKE.match(url)
        if match and ":" in (match.group("user") or ""):
            where = "a password after the user name"
    if where:
        raise SubtoolError(
            f"the fork URL carries credentials or other secrets ({where})",
            rule="publish.fork_url",
            hint="give the plain URL and put the token in GITHUB_TOKEN (or the variable named by --token-env)",
            exit_code=EXIT_USAGE,
        )


def _refuse_page_url(parts) -> None:
    """A github.com repository is /OWNER/REPO: a page's address copied from the browser (…/tree/main) named the
    fork 'tree/main' and failed, after the network, as a fork that does not exist."""
    segments = [p for p in parts.path.split("/") if p]
    if parts.netloc.lower() == GITHUB_HOST and len(segments) > 2:
        repo = f"https://{GITHUB_HOST}/{segments[0]}/{segments[1].removesuffix('.git')}"
        raise SubtoolError(
            f"the fork URL is a page of a repository, not the repository ({'/'.join(segments[2:])[:80]} after it)",
            rule="publish.fork_url",
            hint=f"give the repository's address: {repo}",
            exit_code=EXIT_USAGE,
        )


def parse_fork(url: str) -> ForkLocation:
    """Recognise https://host/owner/repo(.git), git@host:owner/repo.git, ssh://…, file://… and plain paths."""
    url = url.strip()
    if not url:
        raise SubtoolError("the fork URL is empty", rule="publish.fork_url", exit_code=EXIT_USAGE)
    if url.startswith("-"):  # git would read it as one of its options (--upload-pack=… runs a command)
        raise SubtoolError(
            "the fork URL starts with '-', which git reads as an option",
            rule="publish.fork_url",
            hint="give it as https://…, git@host:owner/repo.git, file://… or a path (./-name for a folder so named)",
            exit_code=EXIT_USAGE,
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsed lazily: a port that is no number raises only here
    except ValueError as exc:  # 'https://[::1/a' (an unclosed IPv6 bracket)
        raise SubtoolError(
            f"the fork URL does not parse ({exc})", rule="publish.fork_url", exit_code=EXIT_USAGE
        ) from None
    scheme = parts.scheme.lower()
    _refuse_secrets(url, parts, scheme)
    if scheme in ("http", "https"):
        owner, name = _owner_and_name(parts.path)
        _refuse_page_url(parts)
        return ForkLocation(url, "http", parts.netloc.lower(), owner, name)
    if scheme in ("ssh", "git+ssh"):
        owner, name = _owner_and_name(parts.path)
        return ForkLocation(url, "ssh", (parts.hostname or "").lower(), owner, name)
    if scheme == "file":
        owner, name = _owner_and_name(parts.path)
        return ForkLocation(url, "local", None, owner, name)
    if scheme and len(scheme) > 1:
        raise SubtoolError(
            f"unsupported fork URL scheme '{scheme}'",
            rule="publish.fork_url",
            hint="use https://, ssh://, git@host:owner/repo.git, file:// or a local path",
            exit_code=EXIT_USAGE,
        )
    match = _SCP_LIKE.match(url)
    if match and not os.path.exists(url):
        owner, name = _owner_and_name(match.group("path"))
        return ForkLocation(url, "ssh", match.group("host").lower(), owner, name)
    owner, name = _owner_and_name(os.path.abspath(url))
    return ForkLocation(url, "local", None, owner, name)


def derive_api_url(fork: ForkLocation, explicit: str | None) -> str | None:
    """The REST v3 base URL: the flag/env value, api.github.com for github.com, else GitHub Enterprise's /api/v3."""
    if explicit:
        return explicit.rstrip("/")
    if fork.kind == "local" or not fork.host:
        return None
    if fork.host == GITHUB_HOST:
        return GITHUB_API
    scheme = urlsplit(fork.url).scheme.lower() if fork.kind == "http" else "https"
    return f"{scheme}://{fork.host}/api/v3"


def derive_web_url(api_url: str | None) -> str:
    """The forge's web root, for compare links: github.com for the public API, the prefix before /api/v3 else."""
    if not api_url or api_url.rstrip("/") == GITHUB_API:
        return f"https://{GITHUB_HOST}"
    api_url = api_url.rstrip("/")
    for suffix in ("/api/v3", "/api"):
        if api_url.endswith(suffix):
            return api_url[: -len(suffix)]
    return api_url


def compare_url(web_url: str, upstream: str, base: str, fork_owner: str | None, branch: str) -> str:
    head = f"{fork_owner}:{branch}" if fork_owner else branch
    return f"{web_url.rstrip('/')}/{upstream}/compare/{base}...{head}?expand=1"


def resolve_token(token_env: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The token from --token-env's variable, else GITHUB_TOKEN, else GH_TOKEN; None when there is none."""
    environ = os.environ if environ is None else environ
    if token_env:
        value = environ.get(token_env, "").strip()
        if not value:
            raise SubtoolError(
                f"no token: the variable {token_env} named by --token-env is not set",
                rule="publish.no_token",
                hint=f"export {token_env}=<a token with push rights to your fork>",
                exit_code=EXIT_USAGE,
            )
        return _printable_token(token_env, value)
    for name in TOKEN_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            return _printable_token(name, value)
    return None


def _printable_token(variable: str, value: str) -> str:
    """A token is printable ASCII without spaces. Any other character (a line break from a two-line token file)
    would make an HTTP library quote the token in its error, escaped, where redaction no longer finds it."""
    if all("!" <= ch <= "~" for ch in value):
        return value
    raise SubtoolError(
        f"the token in {variable} holds a space, a line break or another character no token has",
        rule="publish.malformed_token",
        hint=f'set {variable} to the token alone (e.g. export {variable}="$(head -n1 token-file)")',
        exit_code=EXIT_USAGE,
    )


def refuse_token_over_http(token: str | None, *urls: str | None) -> None:
    """A token goes only over https (or to this machine): plain http would show it to every hop on the way."""
    if not token:
        return
    for url in filter(None, urls):
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme.lower() == "http" and not _this_machine(host):
            raise SubtoolError(
                f"the token would travel unencrypted to {host} (an http:// address)",
                rule="publish.insecure_token",
                hint="use the forge's https:// address (--fork, --api-url), or unset the token to push without one",
                exit_code=EXIT_USAGE,
            )


def check_clone_url(clone_url: str, fork: ForkLocation, api_url: str | None) -> str:
    """The upstream's clone address as the API gives it, before git fetches from it (when the fork lacks the base
    branch): an https:// (or this machine's http://) address on the fork's or the API's host. Anything else, a
    file:// or local path, an ext:: or fd:: transport, another host, would have git read a repository of this
    machine, or run a command, and push what it read to the fork."""
    try:
        parts = urlsplit(clone_url)
        host = (parts.hostname or "").lower()
    except ValueError:
        parts, host = None, ""
    hosts = {urlsplit(u).hostname for u in (fork.url if fork.kind == "http" else None, api_url) if u}
    hosts.add(fork.host if fork.kind == "ssh" else None)
    scheme = parts.scheme.lower() if parts else ""
    if host and host in hosts and (scheme == "https" or (scheme == "http" and _this_machine(host))):
        return clone_url
    raise SubtoolError(
        f"the API gives the upstream's git address as '{clone_url[:200]}', which is not an https:// address on "
        "the fork's forge",
        path=api_url,
        rule="publish.api",
        exit_code=EXIT_REMOTE,
        hint="check --api-url (it must be the fork's forge), or push the base branch to the fork first",
    )


def _this_machine(host: str) -> bool:
    """localhost or a loopback address (127.0.0.0/8, ::1); a name like '127.attacker.example' is not one."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def basic_auth_header(token: str) -> str:
    raw = base64.b64encode(f"x-access-token:{token}".encode()).decode("ascii")
    return f"Authorization: Basic {raw}"


class Redactor:
    """Replaces every spelling of the token (plain, inside Basic auth) before text leaves the process."""

    def __init__(self, token: str | None) -> None:
        self._secrets: list[str] = []
        if token:
            self._secrets = [token, repr(token)[1:-1], basic_auth_header(token).split(" ", 2)[2]]

    def __call__(self, text: object) -> str:
        text = str(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text
