"""What a failed git command tells the user: one line per kind of failure (git.classify's), with its rule and
what to do."""

from __future__ import annotations

from subtool.errors import EXIT_REMOTE, SubtoolError
from subtool.publish.git import GitFailure, last_line

# kind of git failure → (what happened, rule, what to do); "auth" is "no_token" when no token was given.
REMOTE_ERRORS = {
    "auth": ("the token was refused", "publish.bad_token", "check that the token is valid and not expired"),
    "no_token": (
        "authentication required and no token was given",
        "publish.no_token",
        "export GITHUB_TOKEN (or GH_TOKEN, or name a variable with --token-env)",
    ),
    "host_key": (
        "ssh does not trust the fork's host key",
        "publish.ssh_host_key",
        "connect once by hand (ssh -T git@HOST) to check and accept its key, or give the https:// URL and a token",
    ),
    "ssh_key": (
        "ssh refused this machine's key",
        "publish.ssh_key",
        "add this machine's ssh public key to your forge account (ssh -T git@HOST tests it), or give the https:// "
        "URL and a token",
    ),
    "forbidden": (
        "no push rights",
        "publish.no_push_rights",
        "push to your own fork, with a token that may write its contents",
    ),
    "missing": (
        "the fork does not exist or cannot be seen",
        "publish.fork_missing",
        "fork the results repository first, and check the URL given to --fork",
    ),
    "rejected": (
        "the branch changed on the fork while publishing",
        "publish.branch_moved",
        "re-run the same command; it starts again from what is on the fork now",
    ),
    "no_ref": (
        "a branch was deleted on the fork while publishing read it",
        "publish.branch_moved",
        "nothing was pushed; re-run the same command, it starts again from what is on the fork now",
    ),
    "declined": (
        "the fork's server declined the push",
        "publish.push_declined",
        "nothing was pushed; fix what the server's message names (e.g. a file over its size limit) and re-run",
    ),
    "network": (
        "network failure, gave up after retries",
        "publish.network",
        "nothing was pushed; re-run the same command when the connection is back",
    ),
}


def remote_error(failure: GitFailure, *, where: str, has_token: bool, action: str) -> SubtoolError:
    """Turn a git failure into the one-line error a user can act on."""
    kind = "no_token" if failure.kind == "auth" and not has_token else failure.kind
    what, rule, hint = REMOTE_ERRORS.get(kind, ("git failed", "publish.git", None))
    detail = last_line(failure.stderr)
    return SubtoolError(f"{action}: {what} ({detail})", path=where, rule=rule, exit_code=EXIT_REMOTE, hint=hint)
