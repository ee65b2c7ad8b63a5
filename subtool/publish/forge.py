"""The pull-request half of publishing, through PyGithub against GitHub's REST v3 (or a compatible forge).

Every call is wrapped so that a failure becomes one SubtoolError that names what to fix: a refused token, a
missing repository or branch, missing push rights, a rate limit, or the network (after PyGithub's retries with
back-off). No message carries the token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from subtool.errors import EXIT_REMOTE, EXIT_USAGE, SubtoolError
from subtool.publish.remote import Redactor, derive_web_url

T = TypeVar("T")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def _not_the_api() -> tuple[type[BaseException], ...]:
    from github.GithubException import BadAttributeException

    # ValueError covers a JSON body cut short; the rest come from an answer of the wrong shape (PyGithub reads
    # an empty body as None, a page that is not JSON as {"data": …}, and asserts on URLs outside base_url).
    return (ValueError, TypeError, AttributeError, KeyError, IndexError, AssertionError, BadAttributeException)


class Forge:
    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        redact: Redactor,
        retries: int = 3,
        backoff_s: float = 1.0,
        seconds_between_writes: float = 1.0,
        seconds_between_requests: float = 0.25,
        max_rate_limit_wait_s: float = 120.0,
        timeout_s: float = 30.0,
    ) -> None:
        from github import Auth, Github, GithubRetry

        self.api_url = api_url
        self.web_url = derive_web_url(api_url)
        self.redact = redact
        retry = GithubRetry(
            total=retries,
            backoff_factor=backoff_s,
            max_rate_limit_wait=max_rate_limit_wait_s,
            secondary_rate_wait=min(60.0, max_rate_limit_wait_s),
        )
        self.gh = Github(
            base_url=api_url,
            auth=Auth.Token(token),
            timeout=int(timeout_s),
            retry=retry,
            seconds_between_writes=seconds_between_writes,
            seconds_between_requests=seconds_between_requests,
            per_page=100,
        )
        self.login: str | None = None
        self.fork_owner: str | None = None
        self.upstream_clone_url: str | None = None
        self.base_sha: str | None = None  # the upstream's base branch, as preflight read it
        self._upstream: Any = None

    # ------------------------------------------------------------------------------------------- errors
    def _call(self, what: str, fn: Callable[[], T], *, not_found: Callable[[], SubtoolError] | None = None) -> T:
        """Call the API; a failure becomes one SubtoolError line (exit 3) that says what to do, token redacted."""
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - only the failures named below are translated; others re-raise
            error = self._refusal(what, exc) or self._bad_answer(what, exc, not_found)
            if error is None:
                raise
            raise error from None

    def _refusal(self, what: str, exc: Exception) -> SubtoolError | None:
        """The API answered but refused: a bad token, a rate limit."""
        from github import BadCredentialsException, RateLimitExceededException
        from github.GithubException import RateLimitExceededExceedsMaxWait

        where = self.api_url
        if isinstance(exc, BadCredentialsException):
            return SubtoolError(
                f"{what}: the API refused the token (401 Bad credentials)",
                path=where,
                rule="publish.bad_token",
                exit_code=EXIT_REMOTE,
                hint="check that the token is valid, not expired, and meant for this forge",
            )
        if isinstance(exc, RateLimitExceededExceedsMaxWait):
            return SubtoolError(
                f"{what}: API rate limit exceeded; it resets in about {exc.wait:.0f} s",
                path=where,
                rule="publish.rate_limit",
                exit_code=EXIT_REMOTE,
                hint="nothing was pushed; re-run the same command after the reset",
            )
        if isinstance(exc, RateLimitExceededException):
            return SubtoolError(
                f"{what}: API rate limit exceeded",
                path=where,
                rule="publish.rate_limit",
                exit_code=EXIT_REMOTE,
                hint="re-run the same command later",
            )
        return None

    def _bad_answer(
        self, what: str, exc: Exception, not_found: Callable[[], SubtoolError] | None
    ) -> SubtoolError | None:
        """Not found, an error status, no answer at all, or an answer that is not GitHub's REST API."""
        import requests
        from github import GithubException, UnknownObjectException

        where = self.api_url
        if isinstance(exc, UnknownObjectException) or (isinstance(exc, GithubException) and exc.status == 404):
            # the second: a 404 without GitHub's JSON body
            if not_found is not None:
                return not_found()
            if isinstance(exc, UnknownObjectException):
                return SubtoolError(f"{what}: not found (404)", path=where, rule="publish.api", exit_code=EXIT_REMOTE)
        if isinstance(exc, GithubException):
            return SubtoolError(
                f"{what}: the API answered {exc.status}: {self.redact(_describe(exc.data))}",
                path=where,
                rule="publish.api",
                exit_code=EXIT_REMOTE,
            )
        if isinstance(exc, requests.exceptions.RequestException):
            return SubtoolError(
                f"{what}: network failure, gave up after retries ({self.redact(_root_cause(exc))})",
                path=where,
                rule="publish.network",
                exit_code=EXIT_REMOTE,
                hint="re-run the same command when the connection is back",
            )
        if isinstance(exc, RuntimeError):  # PyGithub refuses a 301 to another scheme, host or path
            message = f"{what}: the API address redirects elsewhere ({self.redact(_first_line(exc))})"
        elif isinstance(exc, _not_the_api()):  # an empty, non-JSON or wrongly shaped answer
            message = (
                f"{what}: the answer is not GitHub's REST API ({type(exc).__name__}: {self.redact(_first_line(exc))})"
            )
        else:
            return None
        return SubtoolError(message, path=where, rule="publish.api", exit_code=EXIT_REMOTE, hint=_API_HINT)

    def _text(self, what: str, fn: Callable[[], object], *, not_found: Callable[[], SubtoolError] | None = None) -> str:
        """A field the rest of publishing relies on: a non-empty string, or one line saying the API is not one."""
        value = self._call(what, fn, not_found=not_found)
        if not isinstance(value, str) or not value:
            raise SubtoolError(
                f"{what}: the answer is not GitHub's REST API (a field is missing)",
                path=self.api_url,
                rule="publish.api",
                exit_code=EXIT_REMOTE,
                hint=_API_HINT,
            )
        return value

    # -------------------------------------------------------------------------------------------- checks
    def preflight(self, *, upstream: str, base: str, fork: str, branch: str, say: Callable[[str], None]) -> None:
        """Everything that can be known before pushing: token, upstream, base branch, fork, push rights, and that
        no open pull request of the branch goes into another base."""
        self._check_token()
        up, fk = self._read_repos(upstream=upstream, base=base, fork=fork)
        self._check_fork(up, fk, upstream=upstream, fork=fork)
        self.fork_owner = self._text(f"reading {fork}", lambda: fk.owner.login)
        self.upstream_clone_url = self._text(f"reading {upstream}", lambda: up.clone_url)
        self._upstream = up
        self._refuse_other_base(base=base, branch=branch)
        say(f"{self.login} may push to {fork}; pull request goes to {upstream}:{base}")

    def _refuse_other_base(self, *, base: str, branch: str) -> None:
        """The branch rebuilt on `base` would show, in its open pull request into another base, every difference
        between the two bases as the team's (another round's results, another team's)."""
        head = f"{self.fork_owner}:{branch}"
        pulls = self._call("listing pull requests", lambda: list(self._upstream.get_pulls(state="open", head=head)))
        for pr in pulls:
            other = self._call("reading the pull request", lambda pr=pr: pr.base.ref)
            if other != base:
                raise SubtoolError(
                    f"the branch {branch} is the head of pull request {self.pull_link(pr)[0]} into {other}: built on "
                    f"{base}, it would show {base}'s differences from {other} there",
                    path=self.api_url,
                    rule="publish.other_base",
                    exit_code=EXIT_USAGE,
                    hint=f"pass --branch with another name to publish to {base}, or close that pull request first; "
                    "nothing was pushed",
                )

    def _check_token(self) -> None:
        no_api = lambda: SubtoolError(  # noqa: E731
            "no GitHub-compatible REST API answers here (404 on /user)",
            path=self.api_url,
            rule="publish.no_api",
            exit_code=EXIT_REMOTE,
            hint="pass --api-url with the forge's API address, or --no-pr to push only",
        )
        user = self._call("checking the token", lambda: self.gh.get_user(), not_found=no_api)
        self.login = self._text("checking the token", lambda: user.login, not_found=no_api)

    def _read_repos(self, *, upstream: str, base: str, fork: str) -> tuple[Any, Any]:
        """The upstream repository (with its base branch) and the fork, each one clear line when missing."""
        up = self._call(
            f"reading {upstream}",
            lambda: self.gh.get_repo(upstream),
            not_found=lambda: SubtoolError(
                f"the upstream repository {upstream} does not exist or the token cannot see it",
                path=self.api_url,
                rule="publish.upstream_missing",
                exit_code=EXIT_REMOTE,
                hint="check --upstream OWNER/REPO",
            ),
        )
        head = self._call(
            f"reading {upstream}:{base}",
            lambda: up.get_branch(base),
            not_found=lambda: SubtoolError(
                f"the base branch '{base}' does not exist in {upstream}",
                path=self.api_url,
                rule="publish.base_missing",
                exit_code=EXIT_REMOTE,
                hint="pass --base with the branch the results repository collects submissions on",
            ),
        )
        fk = self._call(
            f"reading {fork}",
            lambda: self.gh.get_repo(fork),
            not_found=lambda: SubtoolError(
                f"the fork {fork} does not exist or the token cannot see it",
                path=self.api_url,
                rule="publish.fork_missing",
                exit_code=EXIT_REMOTE,
                hint=f"fork it first: {self.web_url}/{upstream}/fork, then pass its URL to --fork",
            ),
        )
        for repo, name in ((up, upstream), (fk, fork)):  # a page that is not the API has no html_url
            self._text(f"reading {name}", lambda repo=repo: repo.html_url)
        sha = self._call(f"reading {upstream}:{base}", lambda: head.commit.sha if head.commit else None)
        self.base_sha = sha if isinstance(sha, str) and _SHA.fullmatch(sha) else None  # only to compare the fork's
        return up, fk

    def _check_fork(self, up: Any, fk: Any, *, upstream: str, fork: str) -> None:
        """The token may push to the fork, and the fork is one of the upstream."""
        permissions = self._call(f"reading {fork}", lambda: fk.permissions)
        if self._call(f"reading {fork}", lambda: permissions is None or permissions.push is not True):
            raise SubtoolError(
                f"the token's user ({self.login}) has no push rights to {fork}",
                path=self.api_url,
                rule="publish.no_push_rights",
                exit_code=EXIT_REMOTE,
                hint="push to your own fork, with a token that may write its contents",
            )
        fork_network = self._text(f"reading {fork}", lambda: _network(fk))
        if fork_network != self._text(f"reading {upstream}", lambda: _network(up)):
            raise SubtoolError(
                f"{fork} is not a fork of {upstream} (its network is {fork_network})",
                path=self.api_url,
                rule="publish.not_a_fork",
                exit_code=EXIT_REMOTE,
                hint=f"fork {upstream} and publish to that fork",
            )

    # --------------------------------------------------------------------------------------------- pulls
    def find_pull(self, *, upstream: str, base: str, head_owner: str, branch: str) -> Any:
        owner = self.fork_owner or head_owner
        pulls = self._call(
            "listing pull requests",
            lambda: list(self._upstream.get_pulls(state="open", head=f"{owner}:{branch}", base=base)),
        )
        return pulls[0] if pulls else None

    def pull_link(self, pr: Any) -> tuple[str, int]:
        """(web address, number) of a pull request, checked: a forge that answers nonsense gets one line."""
        url = self._text("reading the pull request", lambda: pr.html_url)
        number = self._call("reading the pull request", lambda: pr.number)
        if not isinstance(number, int) or isinstance(number, bool):
            raise SubtoolError(
                "reading the pull request: the answer is not GitHub's REST API (no number)",
                path=self.api_url,
                rule="publish.api",
                exit_code=EXIT_REMOTE,
                hint=_API_HINT,
            )
        return url, number

    def ensure_pull(
        self,
        *,
        upstream: str,
        base: str,
        head_owner: str,
        branch: str,
        title: str,
        body: str,
        explicit_title: bool,
        create: bool = True,
    ) -> tuple[Any, bool]:
        """The open pull request for the branch, created when there is none (unless not `create`: then None);
        (pull, created)."""
        from github import GithubException

        existing = self.find_pull(upstream=upstream, base=base, head_owner=head_owner, branch=branch)
        if existing is not None:
            changes = {}
            old_title, old_body = self._call("reading the pull request", lambda: (existing.title, existing.body))
            if explicit_title and old_title != title:
                changes["title"] = title
            if (old_body or "") != body:
                changes["body"] = body
            if changes:
                self._call("updating the pull request", lambda: existing.edit(**changes))
            return existing, False
        if not create:
            return None, False
        head = f"{self.fork_owner or head_owner}:{branch}"

        def create() -> Any:
            try:
                return self._upstream.create_pull(
                    title=title, body=body, base=base, head=head, maintainer_can_modify=True
                )
            except GithubException as exc:
                # A retried POST may have been applied the first time: GitHub then says it already exists.
                if exc.status == 422 and "already exists" in _describe(exc.data):
                    return None
                raise

        pr = self._call("opening the pull request", create)
        if pr is not None:
            return pr, True
        found = self.find_pull(upstream=upstream, base=base, head_owner=head_owner, branch=branch)
        if found is None:
            raise SubtoolError(
                f"opening the pull request: the forge says one already exists for {head} into {base}, but lists none",
                path=self.api_url,
                rule="publish.api",
                exit_code=EXIT_REMOTE,
                hint="it may be closed or still being created: look at the upstream's pull requests",
            )
        return found, False


_API_HINT = (
    "check --api-url (or GITHUB_API_URL): it must be the forge's REST API itself, e.g. "
    "https://api.github.com or https://HOST/api/v3 for GitHub Enterprise; or pass --no-pr to push only"
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [""])[0][:200]


def _network(repo: Any) -> str:
    source = repo.source if repo.fork else None
    return (source.full_name if source is not None else repo.full_name).lower()


def _describe(data: Any) -> str:
    if isinstance(data, dict):
        message = str(data.get("message", ""))
        details = []
        for err in data.get("errors") or []:
            if isinstance(err, dict):
                details.append(err.get("message") or f"{err.get('field', '?')} {err.get('code', 'invalid')}")
            else:
                details.append(str(err))
        return f"{message}: {'; '.join(details)}" if details else message
    return str(data)


def _root_cause(exc: BaseException) -> str:
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    reason = getattr(seen, "reason", None)
    return f"{type(seen).__name__}: {reason or seen}"
