"""`subtool publish`: put the submitter directories on a branch of the fork and open (or reuse) the pull request.

Order of work, chosen so that a failure leaves nothing half-done: read the tree; check the token and, when an
API exists, that the upstream, its base branch and the fork exist and that the token may push; fetch the base;
build the commit in a cached bare clone (no work tree, so a multi-gigabyte results repository is never checked
out); push one ref with a lease; then find or open the pull request. Re-running with the same inputs changes
nothing: the branch's tree is compared first and an open pull request for the branch is reused.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from subtool.errors import EXIT_REMOTE, EXIT_USAGE, SubtoolError
from subtool.submission import publish_git as g
from subtool.submission.publish_content import (PublishContent, commit_message, default_branch, default_title,
                                                pr_body, scan_tree)
from subtool.submission.publish_remote import (ForkLocation, Redactor, compare_url, derive_api_url,
                                               derive_web_url, parse_fork, resolve_token)

_UPSTREAM = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
BASE_REF = "refs/subtool/base"
BRANCH_REF = "refs/subtool/branch"


@dataclass
class PublishOptions:
    tree: Path
    fork: str
    upstream: Optional[str] = None
    base: str = "main"
    branch: Optional[str] = None
    title: Optional[str] = None
    api_url: Optional[str] = None
    token_env: Optional[str] = None
    no_pr: bool = False
    dry_run: bool = False
    cache: Optional[Path] = None
    # Network behaviour: attempts after the first, first back-off (doubles each time), API pacing.
    retries: int = 3
    backoff_s: float = 1.0
    seconds_between_writes: float = 1.0
    seconds_between_requests: float = 0.25
    max_rate_limit_wait_s: float = 120.0
    timeout_s: float = 30.0


@dataclass
class PublishResult:
    branch: str
    commit: Optional[str]
    pushed: bool
    pr_url: Optional[str] = None
    compare_url: Optional[str] = None
    fork: str = ""
    upstream: Optional[str] = None
    base: str = "main"
    base_commit: Optional[str] = None
    dry_run: bool = False
    up_to_date: bool = False
    pr_number: Optional[int] = None
    pr_created: bool = False
    changes: list[str] = field(default_factory=list)   # "A closed/team/…" lines, base → published tree
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Say:
    """Human progress on the console (stderr), with the token scrubbed from every line."""

    def __init__(self, console: Any, redact: Redactor, result_notes: list[str]) -> None:
        self.console = console
        self.redact = redact
        self.notes = result_notes

    def __call__(self, text: str, *, note: bool = False) -> None:
        text = self.redact(text)
        if note:
            self.notes.append(text)
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def _scrub(err: SubtoolError, redact: Redactor) -> SubtoolError:
    err.message = redact(err.message)
    err.hint = redact(err.hint) if err.hint else err.hint
    err.args = (err.message,)
    return err


def publish_tree(opts: PublishOptions, console: Any = None, *,
                 sleep: Callable[[float], None] = time.sleep) -> PublishResult:
    token: Optional[str] = None
    redact = Redactor(None)
    try:
        token = resolve_token(opts.token_env)
        redact = Redactor(token)
        return _publish(opts, console, token, redact, sleep)
    except SubtoolError as err:
        raise _scrub(err, redact) from None


def _publish(opts: PublishOptions, console: Any, token: Optional[str], redact: Redactor,
             sleep: Callable[[float], None]) -> PublishResult:
    content = scan_tree(Path(opts.tree))
    fork = parse_fork(opts.fork)
    if opts.upstream and not _UPSTREAM.match(opts.upstream):
        raise SubtoolError(f"--upstream must be OWNER/REPO, got '{opts.upstream}'", rule="publish.upstream",
                           exit_code=EXIT_USAGE)
    branch = g.check_branch_name(opts.branch or default_branch(content))
    title = opts.title or default_title(content)
    api_url = derive_api_url(fork, opts.api_url)
    result = PublishResult(branch=branch, commit=None, pushed=False, fork=fork.url, upstream=opts.upstream,
                           base=opts.base, dry_run=opts.dry_run)
    say = _Say(console, redact, result.notes)

    wants_pr = bool(opts.upstream) and not opts.no_pr
    if wants_pr and not fork.has_api:
        say(f"{fork.url} is a plain git location with no pull-request API: pushing only", note=True)
        wants_pr = False
    forge = None
    if wants_pr:
        if not token:
            if not opts.dry_run:
                raise SubtoolError(
                    "no token: opening a pull request needs one", rule="publish.no_token", exit_code=EXIT_USAGE,
                    hint="export GITHUB_TOKEN (or GH_TOKEN, or --token-env NAME), or pass --no-pr to push only")
            say("no token: the dry run skips the pull-request checks", note=True)
        else:
            from subtool.submission.publish_forge import Forge

            forge = Forge(api_url or "", token, redact=redact, retries=opts.retries, backoff_s=opts.backoff_s,
                          seconds_between_writes=opts.seconds_between_writes,
                          seconds_between_requests=opts.seconds_between_requests,
                          max_rate_limit_wait_s=opts.max_rate_limit_wait_s, timeout_s=opts.timeout_s)
            forge.preflight(upstream=opts.upstream or "", base=opts.base, fork=fork.full_name or "",
                            say=say)

    cache_root = Path(opts.cache) if opts.cache else g.default_cache_root()
    urls = [g.remote_url(fork)] + ([forge.upstream_clone_url] if forge else [])
    with g.locked_cache(g.cache_dir_for(cache_root, fork)) as git_dir:
        git = g.Git(git_dir, token=token, urls=urls, redact=redact, retries=opts.retries,
                    backoff_s=opts.backoff_s, sleep=sleep, note=say)
        _push_branch(git, fork, opts, content, branch, title, result, say, forge, has_token=bool(token))

    if forge is not None and result.commit:
        if opts.dry_run:
            existing = forge.find_pull(upstream=opts.upstream or "", base=opts.base, head_owner=fork.owner or "",
                                       branch=branch)
            say(f"would reuse pull request {forge.pull_link(existing)[0]}" if existing else
                f"would open a pull request '{title}' against {opts.upstream}:{opts.base}")
        else:
            try:
                pr, created = forge.ensure_pull(upstream=opts.upstream or "", base=opts.base,
                                                head_owner=fork.owner or "", branch=branch, title=title,
                                                body=pr_body(content), explicit_title=opts.title is not None)
            except SubtoolError as err:
                err.hint = (f"the branch {branch} is on the fork; re-run the same command, or open "
                            f"{compare_url(derive_web_url(api_url), opts.upstream or '', opts.base, fork.owner, branch)}")
                raise
            (result.pr_url, result.pr_number), result.pr_created = forge.pull_link(pr), created
            say(f"pull request {'opened' if created else 'already open, reused'}: {result.pr_url}")
    elif opts.upstream and result.commit:
        web = derive_web_url(api_url)
        result.compare_url = compare_url(web, opts.upstream, opts.base, fork.owner, branch)
        if not opts.dry_run:
            say(f"open the pull request here: {result.compare_url}")
    return result


def _cache_error(git: g.Git, failure: g.GitFailure) -> SubtoolError:
    return SubtoolError(f"git failed in the fork cache ({g.last_line(failure.stderr)})", path=git.git_dir,
                        rule="publish.git", exit_code=EXIT_USAGE,
                        hint="delete that folder (it is only a cache) and re-run the same command")


def _push_branch(git: g.Git, fork: ForkLocation, opts: PublishOptions, content: PublishContent, branch: str,
                 title: str, result: PublishResult, say: _Say, forge: Any, has_token: bool) -> None:
    where = fork.url
    try:
        g.set_remote(git, "origin", g.remote_url(fork))
    except g.GitFailure as failure:
        raise _cache_error(git, failure) from None
    try:
        heads = g.ls_remote_heads(git, "origin", [opts.base, branch])
        base_remote = "origin"
        if opts.base not in heads:
            if forge is None:
                raise SubtoolError(f"the base branch '{opts.base}' does not exist on the fork", path=where,
                                   rule="publish.base_missing", exit_code=EXIT_REMOTE,
                                   hint="pass --base with an existing branch, or push that branch to the fork first")
            # A fork that copied only the default branch: take the base from the upstream (the API said it exists).
            g.set_remote(git, "upstream", forge.upstream_clone_url)
            base_remote = "upstream"
            say(f"the fork has no branch '{opts.base}'; starting from the upstream's", note=True)
        say(f"fetching {opts.base} from {where if base_remote == 'origin' else opts.upstream}")
        old_tip = heads.get(branch)
        if base_remote == "origin":
            wanted = {opts.base: BASE_REF, **({branch: BRANCH_REF} if old_tip else {})}
            base_commit = g.fetch(git, "origin", wanted, shallow=True)[opts.base]
        else:
            base_commit = g.fetch(git, "upstream", {opts.base: BASE_REF}, shallow=False)[opts.base]
            if old_tip:
                g.fetch(git, "origin", {branch: BRANCH_REF}, shallow=True)
    except g.GitFailure as failure:
        raise g.remote_error(failure, where=where, has_token=has_token, action="reading the fork") from None

    result.base_commit = base_commit
    try:
        tree = g.build_tree(git, base_commit, content.files, content.replace)
        base_tree = g.tree_of(git, base_commit)
        result.changes = [f"{status} {path}" for status, path in g.diff_names(git, base_tree, tree)]
        old_tree = g.tree_of(git, old_tip) if old_tip else None
    except g.GitFailure as failure:
        raise _cache_error(git, failure) from None
    if old_tip and old_tree == tree:
        result.commit, result.up_to_date = old_tip, True
        say(f"branch {branch} on the fork already holds this submission ({old_tip[:12]}); nothing to push")
        return
    if not result.changes:
        result.up_to_date = True
        say(f"the base branch {opts.base} already holds exactly these files; nothing to publish", note=True)
        return
    name, email = g.identity(content.submitter_names[0])
    try:
        result.commit = g.commit_tree(git, tree, base_commit, commit_message(content, title),
                                      author_name=name, author_email=email)
    except g.GitFailure as failure:
        raise _cache_error(git, failure) from None
    summary = f"{len(result.changes)} file(s) changed against {opts.base} ({base_commit[:12]})"
    if opts.dry_run:
        say(f"dry run: would push {result.commit[:12]} to {branch} on {where}: {summary}")
        for line in result.changes:
            say(f"  {line}")
        return
    say(f"pushing {branch} ({summary})")
    try:
        g.push(git, "origin", result.commit, branch, old_tip)
    except g.GitFailure as failure:
        raise g.remote_error(failure, where=where, has_token=has_token, action=f"pushing {branch}") from None
    result.pushed = True
    say(f"pushed {result.commit[:12]} to {branch} on {where}")
