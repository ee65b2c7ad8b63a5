"""Answers that are lost or are not the API's: the forge applies a request and drops its answer, or answers a
redirect, an empty body or a page that is not JSON. Publishing either recovers or says one line (exit 3)."""

from __future__ import annotations

import pytest

from subtool.errors import SubtoolError
from subtool.publish.api import publish_tree

from .conftest import UPSTREAM, github
from .test_publish_forge import run_cli

PULLS = r"^POST /api/v3/repos/comp/results/pulls$"


def test_pull_request_applied_but_answer_lost_is_found_and_reused(forge, users, alice_fork, tree, fast, monkeypatch):
    """The POST opens the pull request, its answer never arrives, the retry hears 422 "already exists"."""
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    fault = forge.inject(PULLS, count=1, lose_answer=True)
    result = publish_tree(fast(tree, alice_fork, retries=2))
    assert fault.hits == 1
    statuses = [s for _m, _p, s in forge.requests("POST", r"/api/v3/repos/comp/results/pulls$")]
    assert statuses == [201, 0, 422]  # applied, answer lost; the retry is refused as a duplicate
    pulls = list(github(forge, users.organizers).get_repo(UPSTREAM).get_pulls(state="all"))
    assert len(pulls) == 1
    assert (result.pr_number, result.pr_url, result.pr_created) == (pulls[0].number, pulls[0].html_url, False)
    assert pulls[0].head.sha == result.commit


def test_already_exists_but_nothing_listed_is_one_line_exit_3(tmp_path, forge, users, alice_fork, tree):
    """A forge that says "already exists" and then lists no pull request: one line, no crash on None."""
    forge.inject(PULLS, count=1, lose_answer=True)
    # the listings before the push (into any base) and before opening, and the one after the 422, come back empty
    forge.inject(r"^GET /api/v3/repos/comp/results/pulls\?", count=3, status=200, body=[])
    proc = run_cli(
        [str(tree), "--fork", alice_fork, "--upstream", UPSTREAM, "--api-url", forge.api_url],
        {"GITHUB_TOKEN": users.alice},
        tmp_path,
    )
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error")]
    assert len(lines) == 1 and "already exists" in lines[0] and "lists none" in lines[0], proc.stderr
    assert [s for _m, _p, s in forge.requests("POST", r"/pulls$")] == [201, 0, 422]


NOT_THE_API = {
    "redirect to https": dict(status=301, raw=b"", headers={"Location": "https://127.0.0.1:1/api/v3/user"}),
    "redirect elsewhere": dict(status=301, raw=b"", headers={"Location": "http://example.invalid/api/v3/user"}),
    "empty 200": dict(status=200, raw=b"", headers={"Content-Type": "application/json"}),
    "html 200": dict(status=200, raw=b"<html><body>Sign in</body></html>", headers={"Content-Type": "text/html"}),
    "broken json": dict(status=200, raw=b'{"login": ', headers={"Content-Type": "application/json"}),
    "json of the wrong shape": dict(status=200, raw=b"[1, 2, 3]", headers={"Content-Type": "application/json"}),
}
USER, FORK, OPEN = r"^GET /api/v3/user$", r"^GET /api/v3/repos/alice/results$", PULLS
LIST = r"^GET /api/v3/repos/comp/results/pulls\?"


@pytest.mark.parametrize(
    "where, what",
    [(USER, what) for what in NOT_THE_API]
    + [
        (FORK, "html 200"),
        (FORK, "json of the wrong shape"),
        (FORK, "empty 200"),
        (OPEN, "redirect to https"),
        (OPEN, "broken json"),
        (OPEN, "empty 200"),
        (LIST, "html 200"),
        (LIST, "json of the wrong shape"),
    ],
)
def test_answers_that_are_not_the_api_are_a_clean_error(forge, users, alice_fork, tree, fast, monkeypatch, what, where):
    """In process, so that any exception other than SubtoolError fails the test with its traceback."""
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    forge.inject(where, count=10, **NOT_THE_API[what])
    with pytest.raises(SubtoolError) as info:
        publish_tree(fast(tree, alice_fork))
    err = info.value
    assert (err.rule, err.exit_code) == ("publish.api", 3), (what, err.one_line())
    assert "\n" not in err.one_line()
    if where in (USER, FORK):
        assert "--api-url" in (err.hint or "")
        assert forge.branch_sha("alice/results", "subtool/TeamX") is None  # checks come before the push


def test_cli_redirect_to_https_is_one_line_exit_3(tmp_path, forge, users, alice_fork, tree):
    """What the user types: an http:// API address that the forge moved to https://."""
    forge.inject(
        r"^GET /api/v3/user$",
        count=10,
        status=301,
        raw=b"",
        headers={"Location": forge.api_url.replace("http://", "https://") + "/user"},
    )
    proc = run_cli(
        [str(tree), "--fork", alice_fork, "--upstream", UPSTREAM, "--api-url", forge.api_url],
        {"GITHUB_TOKEN": users.alice},
        tmp_path,
    )
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error")]
    assert len(errors) == 1 and "redirects" in errors[0], proc.stderr
