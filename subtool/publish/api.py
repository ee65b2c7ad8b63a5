"""`subtool publish`: put the submitter directories on a branch of the fork and open (or reuse) the pull request.

Order of work, chosen so that a failure leaves nothing half-done: read the tree; check the token and, when an
API exists, that the upstream, its base branch and the fork exist and that the token may push; fetch the base;
build the commit in a cached bare clone (no work tree, so a multi-gigabyte results repository is never checked
out); push one ref with a lease; then find or open the pull request. Re-running with the same inputs changes
nothing: the branch's tree is compared first and an open pull request for the branch is reused.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subtool.errors import EXIT_REMOTE, EXIT_USAGE, SubtoolError
from subtool.publish import git as g
from subtool.publish.content import (
    PublishContent,
    commit_message,
    default_branch,
    default_title,
    no_changes_body,
    pr_body,
    refuse_oversized,
    scan_tree,
)
from subtool.publish.failures import remote_error
from subtool.publish.marks import Marks, body_with, marks_from_message, message_with, read_marks, title_with
from subtool.publish.merge import (
    Kept,
    differing_from_base,
    kept_from_branch,
    merged_view,
    only_on_branch,
    others_on_branch,
    result_id,
)
from subtool.publish.options import PublishOptions, PublishResult, Say, scrub
from subtool.publish.remote import (
    GITHUB_HOST,
    ForkLocation,
    Redactor,
    check_clone_url,
    compare_url,
    derive_api_url,
    derive_web_url,
    parse_fork,
    refuse_token_over_http,
    resolve_token,
)

# OWNER/REPO, neither '.' nor '..' (the API's URL would climb out of /repos/: '../..' read the API's root)
_UPSTREAM = re.compile(r"^(?!\.{1,2}/)[A-Za-z0-9_.-]+/(?!\.{1,2}$)[A-Za-z0-9_.-]+$")
BASE_REF = "refs/subtool/base"
BRANCH_REF = "refs/subtool/branch"


def check_destination(fork: str, upstream: str | None):
    """The fork (refused when its URL can carry a token) and --upstream's form, checked without the network:
    `subtool all` asks before it runs anything, publish itself again. Returns the parsed fork."""
    location = parse_fork(fork)
    if upstream and not _UPSTREAM.match(upstream):
        raise SubtoolError(
            f"--upstream must be OWNER/REPO, got '{upstream}'", rule="publish.upstream", exit_code=EXIT_USAGE
        )
    return location


def check_ready(fork: str, upstream: str | None, *, no_pr: bool, token_env: str | None = None) -> None:
    """What `subtool all --fork` can know before the benchmark runs, without the network: the fork's form, a local
    fork that is not there, and a pull request asked of a forge with no token to open it. probe_fork then asks the
    fork itself."""
    location = check_destination(fork, upstream)
    if location.kind == "local":
        path = Path(location.url.removeprefix("file://"))
        if not path.is_dir():
            raise SubtoolError(
                "the fork does not exist (a local fork is a git repository folder)",
                path=path,
                rule="publish.fork_missing",
                hint="create it (git init --bare) or name another --fork",
                exit_code=EXIT_USAGE,
            )
    token = resolve_token(token_env)
    refuse_token_over_http(token, g.remote_url(location), derive_api_url(location, None))
    if upstream and location.has_api and not no_pr and not token:
        raise SubtoolError(
            "no token: opening the pull request at the end of the run needs one",
            rule="publish.no_token",
            exit_code=EXIT_USAGE,
            hint="export GITHUB_TOKEN (or GH_TOKEN), or pass --no-pr to push only",
        )


PROBE_TIMEOUT_S = 30.0


def probe_fork(fork: str, base: str, *, token_env: str | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Ask the fork for its base branch (git ls-remote), as publish will at the end of the run: a fork that does not
    exist, is no git repository, or refuses the token is an error now, before hours of benchmark. One the network
    cannot reach now (an air-gapped node) is not: the warning returned says so, and publish tries again at its end.
    A fork that answers without the base branch is publish's to judge (the upstream may supply it)."""
    location = parse_fork(fork)
    token = resolve_token(token_env)
    redact = Redactor(token)
    url = g.remote_url(location)
    refuse_token_over_http(token, url)
    git = g.Git(Path(os.devnull), token=token, urls=[url], redact=redact, retries=0, timeout_s=timeout_s)
    try:
        git.run("ls-remote", "--heads", "--", url, base)
    except g.GitFailure as failure:
        if failure.kind in ("network", "other"):
            return redact(
                f"cannot reach the fork {location.url} now ({g.last_line(failure.stderr)}): the run goes on, and "
                "publish tries again at its end"
            )
        error = remote_error(failure, where=location.url, has_token=bool(token), action="reading the fork")
        error.hint = f"{error.hint}; nothing has run yet" if error.hint else "nothing has run yet"
        raise scrub(error, redact) from None
    return None


def publish_tree(
    opts: PublishOptions, console: Any = None, *, sleep: Callable[[float], None] = time.sleep
) -> PublishResult:
    token: str | None = None
    redact = Redactor(None)
    try:
        token = resolve_token(opts.token_env)
        redact = Redactor(token)
        return _publish(opts, console, token, redact, sleep)
    except SubtoolError as err:
        raise scrub(err, redact) from None


def _publish(
    opts: PublishOptions, console: Any, token: str | None, redact: Redactor, sleep: Callable[[float], None]
) -> PublishResult:
    content = scan_tree(Path(opts.tree))
    marks = read_marks(content.tree, content.results)
    if marks and not opts.allow_short:
        raise _refusal(marks, opts.tree)
    fork = check_destination(opts.fork, opts.upstream)
    if fork.host == GITHUB_HOST:
        refuse_oversized(content)
    branch = g.check_branch_name(opts.branch or default_branch(content))
    api_url = derive_api_url(fork, opts.api_url)
    refuse_token_over_http(token, g.remote_url(fork), api_url)
    result = PublishResult(
        branch=branch,
        commit=None,
        pushed=False,
        fork=fork.url,
        upstream=opts.upstream,
        base=opts.base,
        dry_run=opts.dry_run,
    )
    say = Say(console, redact, result.notes)

    forge = _open_forge(opts, fork, branch, api_url, token, redact, say)

    cache_root = Path(opts.cache) if opts.cache else g.default_cache_root()
    urls = [g.remote_url(fork)] + ([forge.upstream_clone_url] if forge else [])
    with g.locked_cache(g.cache_dir_for(cache_root, fork)) as git_dir:
        git = g.Git(
            git_dir,
            token=token,
            urls=urls,
            redact=redact,
            retries=opts.retries,
            backoff_s=opts.backoff_s,
            sleep=sleep,
            note=say,
        )
        words = _push_branch(git, fork, opts, content, marks, branch, result, say, forge, has_token=bool(token))
    _pull_request(opts, forge, fork, api_url, branch, words, result, say)
    return result


def _open_forge(
    opts: PublishOptions,
    fork: ForkLocation,
    branch: str,
    api_url: str | None,
    token: str | None,
    redact: Redactor,
    say: Say,
) -> Any:
    """The forge that opens the pull request, checked before anything is pushed; None when no PR is wanted."""
    wants_pr = bool(opts.upstream) and not opts.no_pr
    if wants_pr and not fork.has_api:
        say(f"{fork.url} is a plain git location with no pull-request API: pushing only", note=True)
        wants_pr = False
    if not wants_pr:
        return None
    if not token:
        if not opts.dry_run:
            raise SubtoolError(
                "no token: opening a pull request needs one",
                rule="publish.no_token",
                exit_code=EXIT_USAGE,
                hint="export GITHUB_TOKEN (or GH_TOKEN, or --token-env NAME), or pass --no-pr to push only",
            )
        say("no token: the dry run skips the pull-request checks", note=True)
        return None
    from subtool.publish.forge import Forge

    forge = Forge(
        api_url or "",
        token,
        redact=redact,
        retries=opts.retries,
        backoff_s=opts.backoff_s,
        seconds_between_writes=opts.seconds_between_writes,
        seconds_between_requests=opts.seconds_between_requests,
        max_rate_limit_wait_s=opts.max_rate_limit_wait_s,
        timeout_s=opts.timeout_s,
    )
    forge.preflight(upstream=opts.upstream or "", base=opts.base, fork=fork.full_name or "", branch=branch, say=say)
    return forge


def _refusal(marks: Marks, tree: Path) -> SubtoolError:
    first = marks.results[0]
    more = f" and {len(marks.results) - 1} more" if len(marks.results) > 1 else ""
    return SubtoolError(
        f"the tree holds {marks.label} results, which are not submittable ({first}: {marks.why(first)}"
        f"{', ' + marks.reasons[first] if first in marks.reasons else ''}{more})",
        path=tree,
        rule="publish.short_run",
        exit_code=EXIT_USAGE,
        hint="publish a valid run (--run-style valid), or pass --allow-short to publish it anyway, marked "
        f"{marks.label} in the commit, the pull request title and its body",
    )


def _pull_request(
    opts: PublishOptions,
    forge: Any,
    fork: ForkLocation,
    api_url: str | None,
    branch: str,
    words: _Words,
    result: PublishResult,
    say: Say,
) -> None:
    """Open or reuse the pull request (or, without an API, print the compare URL)."""
    if not result.commit:
        return
    if not result.changes:
        _pull_without_changes(opts, forge, fork, branch, words, result, say)
        return
    if forge is None:
        if opts.upstream:
            result.compare_url = compare_url(derive_web_url(api_url), opts.upstream, opts.base, fork.owner, branch)
            if not opts.dry_run:
                say(f"open the pull request here: {result.compare_url}")
        return
    if opts.dry_run:
        existing = forge.find_pull(
            upstream=opts.upstream or "", base=opts.base, head_owner=fork.owner or "", branch=branch
        )
        say(
            f"would reuse pull request {forge.pull_link(existing)[0]}"
            if existing
            else f"would open a pull request '{words.title}' against {opts.upstream}:{opts.base}"
        )
        return
    try:
        # An explicit title, a DEMO / short-run mark, or a result --replace dropped or reset to the base's copy (the
        # title may name it) is worth changing an open pull request's title for.
        pr, created = forge.ensure_pull(
            upstream=opts.upstream or "",
            base=opts.base,
            head_owner=fork.owner or "",
            branch=branch,
            title=words.title,
            body=words.body,
            explicit_title=opts.title is not None
            or bool(result.not_submittable or result.dropped or result.reset_to_base),
        )
        (result.pr_url, result.pr_number), result.pr_created = forge.pull_link(pr), created
    except SubtoolError as err:
        err.hint = (
            f"the branch {branch} is on the fork; re-run the same command, or open "
            f"{compare_url(derive_web_url(api_url), opts.upstream or '', opts.base, fork.owner, branch)}"
        )
        raise
    say(f"pull request {'opened' if created else 'already open, reused'}: {result.pr_url}")


def _pull_without_changes(
    opts: PublishOptions, forge: Any, fork: ForkLocation, branch: str, words: _Words, result: PublishResult, say: Say
) -> None:
    """--replace left the branch with nothing against the base: none is opened; an open one is told so in its body
    and left open (closing it is the user's call: it may get new results)."""
    if forge is None:
        if opts.upstream:
            say(
                f"no pull request to open: {branch} has no changes against {opts.base}; one already open for it stays "
                "open, with no changes (close it on the forge if you withdraw these results)",
                note=True,
            )
        return
    where = dict(upstream=opts.upstream or "", base=opts.base, head_owner=fork.owner or "", branch=branch)
    if opts.dry_run:
        existing = forge.find_pull(**where)
    else:
        try:
            existing, _ = forge.ensure_pull(
                **where, title=words.title, body=words.body, explicit_title=False, create=False
            )
        except SubtoolError as err:
            err.hint = f"the branch {branch} is on the fork; re-run the same command"
            raise
    if existing is None:
        say(f"no pull request opened: {branch} has no changes against {opts.base}", note=True)
        return
    link, number = forge.pull_link(existing)
    if not opts.dry_run:
        result.pr_url, result.pr_number = link, number
    say(
        f"pull request {link} {'would be' if opts.dry_run else 'is'} left open with no changes against {opts.base}: "
        "close it on the forge if you withdraw these results",
        note=True,
    )


def _cache_error(git: g.Git, failure: g.GitFailure) -> SubtoolError:
    return SubtoolError(
        f"git failed in the fork cache ({g.last_line(failure.stderr)})",
        path=git.git_dir,
        rule="publish.git",
        exit_code=EXIT_USAGE,
        hint="delete that folder (it is only a cache) and re-run the same command",
    )


@dataclass
class _Words:
    """What the commit and the pull request say, for the content the branch will hold."""

    title: str
    message: str
    body: str


TITLE_MOST = 256  # characters GitHub takes in a pull request title; it answers a longer one 422, after the push


def _words(opts: PublishOptions, view: PublishContent, marks: Marks) -> _Words:
    title = title_with(opts.title or default_title(view), marks)
    if opts.title and (len(title) > TITLE_MOST or not title.isprintable()):
        raise SubtoolError(
            f"--title is {len(title)} characters with its marks, over the {TITLE_MOST} a pull request title takes"
            if title.isprintable()
            else "--title holds a line break or another control character",
            rule="publish.title",
            exit_code=EXIT_USAGE,
            hint="give a shorter title on one line; nothing was pushed",
        )
    if len(title) > TITLE_MOST:  # the default names every submitter and benchmark: cut, the body lists them all
        title = title[: TITLE_MOST - 1] + "…"
    return _Words(title, message_with(commit_message(view, title), marks), body_with(pr_body(view), marks))


def _fetch(
    git: g.Git, fork: ForkLocation, opts: PublishOptions, branch: str, say: Say, forge: Any
) -> tuple[str, str | None]:
    """Fetch the base (and the branch when it exists) into the cache; (base commit, branch tip or None)."""
    heads = g.ls_remote_heads(git, "origin", [opts.base, branch])
    base_remote = "origin"
    if opts.base not in heads:
        if forge is None:
            raise SubtoolError(
                f"the base branch '{opts.base}' does not exist on the fork",
                path=fork.url,
                rule="publish.base_missing",
                exit_code=EXIT_REMOTE,
                hint="pass --base with an existing branch, or push that branch to the fork first",
            )
        # A fork that copied only the default branch: take the base from the upstream (the API said it exists).
        g.set_remote(git, "upstream", check_clone_url(forge.upstream_clone_url, fork, forge.api_url))
        base_remote = "upstream"
        say(f"the fork has no branch '{opts.base}'; starting from the upstream's", note=True)
    say(f"fetching {opts.base} from {fork.url if base_remote == 'origin' else opts.upstream}")
    # The branch as fetched, not as listed: one pushed in between is what the commit builds on and the lease names.
    try:
        tips = _fetch_tips(git, base_remote, opts.base, branch if branch in heads else None)
    except g.GitFailure as failure:
        if not g.lacks_branch(failure, branch):
            raise
        # Deleted in between: as if never listed, built on the base and pushed with a lease that expects no branch.
        say(
            f"branch {branch} was deleted on the fork while publish read it: publishing it anew on {opts.base}",
            note=True,
        )
        tips = _fetch_tips(git, base_remote, opts.base, None)
    if base_remote == "origin" and forge is not None and forge.base_sha not in (None, tips[opts.base]):
        say(
            f"the fork's {opts.base} ({tips[opts.base][:12]}) is not {opts.upstream}'s ({forge.base_sha[:12]}): the "
            f"commit is built on the fork's; if the pull request shows results {opts.upstream} already has, or "
            f"conflicts, bring the fork's {opts.base} up to date (GitHub: Sync fork) and publish again",
            note=True,
        )
    return tips[opts.base], tips.get(branch)


def _fetch_tips(git: g.Git, base_remote: str, base: str, branch: str | None) -> dict[str, str]:
    """{name: commit} of the base (from `base_remote`) and of the fork's branch when one is named."""
    wanted = {branch: BRANCH_REF} if branch else {}
    if base_remote == "origin":
        return g.fetch(git, "origin", {base: BASE_REF, **wanted}, shallow=True)
    tips = g.fetch(git, "upstream", {base: BASE_REF}, shallow=False)
    return {**tips, **(g.fetch(git, "origin", wanted, shallow=True) if wanted else {})}


def _build(
    git: g.Git,
    opts: PublishOptions,
    content: PublishContent,
    marks: Marks,
    base_commit: str,
    old_tip: str | None,
    result: PublishResult,
    say: Say,
) -> tuple[str, _Words]:
    """The tree to publish: base, then what the branch holds for these submitters (unless --replace), then
    this tree; and the words that describe it."""
    kept = Kept()
    if old_tip:
        changes = g.diff_names(git, base_commit, old_tip)
        kept = differing_from_base(kept_from_branch(g.list_entries(git, old_tip), content.submitter_names), changes)
        earlier = marks_from_message(git.out("log", "-1", "--format=%B", old_tip))
        keep_ids = {result_id(r) for r in only_on_branch(kept, content)}
        others = others_on_branch(changes, content.submitter_names)
        if others:
            say(f"the branch holds other submitters' files, which are not carried over: {', '.join(others)}", note=True)
        if opts.replace:  # what the base holds stays on the branch, as the base has it: not dropped
            on_base = g.existing_paths(git, base_commit, keep_ids)
            result.dropped, result.reset_to_base = sorted(keep_ids - on_base), sorted(on_base)
            kept = Kept()
        else:
            result.kept = sorted(keep_ids)
            marks = marks.merge(earlier, keep_ids)
    # One pass over the index: the branch's entries that this tree does not bring again, then this tree.
    ours, covered = {f.path for f in content.files}, tuple(f"{d}/" for d in content.replace)
    known = [e for e in kept.entries if e.path not in ours and not e.path.startswith(covered)]
    tree = g.build_tree(git, base_commit, content.files, sorted({*content.replace, *kept.replace}), known)
    result.not_submittable = marks.results
    if result.kept:
        say(f"keeping {len(result.kept)} result(s) already on the branch: {', '.join(result.kept)}", note=True)
    if result.dropped:
        say(
            f"--replace: dropping {len(result.dropped)} result(s) from the branch: {', '.join(result.dropped)}",
            note=True,
        )
    if result.reset_to_base:
        say(
            f"--replace: {len(result.reset_to_base)} result(s) stay on the branch as {opts.base} holds them (its copy, "
            f"not the branch's earlier one): {', '.join(result.reset_to_base)}",
            note=True,
        )
    if marks:
        say(f"publishing {marks.label} results, marked as such (--allow-short): {', '.join(marks.results)}", note=True)
    return tree, _words(opts, merged_view(content, kept), marks)


def _push_branch(
    git: g.Git,
    fork: ForkLocation,
    opts: PublishOptions,
    content: PublishContent,
    marks: Marks,
    branch: str,
    result: PublishResult,
    say: Say,
    forge: Any,
    has_token: bool,
) -> _Words:
    where = fork.url
    try:
        g.set_remote(git, "origin", g.remote_url(fork))
    except g.GitFailure as failure:
        raise _cache_error(git, failure) from None
    try:
        base_commit, old_tip = _fetch(git, fork, opts, branch, say, forge)
    except g.GitFailure as failure:
        raise remote_error(failure, where=where, has_token=has_token, action="reading the fork") from None

    result.base_commit = base_commit
    try:
        tree, words = _build(git, opts, content, marks, base_commit, old_tip, result, say)
        result.title = words.title
        result.changes = [f"{status} {path}" for status, path in g.diff_names(git, g.tree_of(git, base_commit), tree)]
        old_tree = g.tree_of(git, old_tip) if old_tip else None
    except g.GitFailure as failure:
        raise _cache_error(git, failure) from None
    if not result.changes:  # a pull request of the branch says it has nothing to merge
        words = _Words(words.title, words.message, no_changes_body(opts.base, result.dropped, result.reset_to_base))
    if old_tip and old_tree == tree:
        result.commit, result.up_to_date = old_tip, True
        say(f"branch {branch} on the fork already holds this submission ({old_tip[:12]}); nothing to push")
        return words
    # With nothing to add to the base, --replace still pushes: the branch must not keep what it held.
    if not result.changes and not (opts.replace and old_tip):
        result.up_to_date = True
        say(f"the base branch {opts.base} already holds exactly these files; nothing to publish", note=True)
        return words
    _commit_and_push(git, opts, content, tree, base_commit, old_tip, branch, words, result, say, has_token, where)
    if not result.changes:
        held = "now holds" if result.pushed else "would hold"
        say(f"--replace: branch {branch} {held} no changes against {opts.base}", note=True)
    return words


def _commit_and_push(
    git: g.Git,
    opts: PublishOptions,
    content: PublishContent,
    tree: str,
    base_commit: str,
    old_tip: str | None,
    branch: str,
    words: _Words,
    result: PublishResult,
    say: Say,
    has_token: bool,
    where: str,
) -> None:
    name, email = g.identity(content.submitter_names[0])
    try:
        result.commit = g.commit_tree(git, tree, base_commit, words.message, author_name=name, author_email=email)
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
        error = remote_error(failure, where=where, has_token=has_token, action=f"pushing {branch}")
        if opts.replace and failure.kind == "rejected":
            error.hint = (
                f"nothing was pushed; look at what {branch} holds now first: re-running with --replace drops it "
                "(without --replace, its results of these submitters are kept)"
            )
        raise error from None
    result.pushed = True
    say(f"pushed {result.commit[:12]} to {branch} on {where}")
