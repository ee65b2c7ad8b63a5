"""Fork addresses, API/web URL derivation, token lookup, redaction and git failure classes."""

from __future__ import annotations

import pytest

from subtool.errors import SubtoolError
from subtool.publish.git import classify, last_line
from subtool.publish.remote import (
    Redactor,
    basic_auth_header,
    compare_url,
    derive_api_url,
    derive_web_url,
    parse_fork,
    resolve_token,
)


@pytest.mark.parametrize(
    "url, kind, host, full_name",
    [
        ("https://github.com/alice/results.git", "http", "github.com", "alice/results"),
        ("https://github.com/alice/results", "http", "github.com", "alice/results"),
        ("http://127.0.0.1:8123/alice/results.git", "http", "127.0.0.1:8123", "alice/results"),
        ("git@github.com:alice/results.git", "ssh", "github.com", "alice/results"),
        ("ssh://git@ghe.example.com/alice/results.git", "ssh", "ghe.example.com", "alice/results"),
        ("file:///srv/git/alice/results.git", "local", None, "alice/results"),
    ],
)
def test_parse_fork(url, kind, host, full_name):
    fork = parse_fork(url)
    assert (fork.kind, fork.host, fork.full_name) == (kind, host, full_name)


def test_local_path_fork_has_no_api(tmp_path):
    repo = tmp_path / "alice" / "results.git"
    repo.mkdir(parents=True)
    fork = parse_fork(str(repo))
    assert fork.kind == "local" and not fork.has_api and fork.owner == "alice"


@pytest.mark.parametrize(
    "url",
    [
        "https://alice:ghp_secret123@github.com/alice/results.git",
        "https://ghp_secret123@github.com/alice/results.git",
        "https://github.com/alice/results?access_token=ghp_secret123",
        "https://github.com/alice/results#ghp_secret123",
        "ssh://git:ghp_secret123@github.com/alice/results.git",
        "git:ghp_secret123@github.com:alice/results.git",
        "file:///srv/results.git?ghp_secret123",
    ],
)
def test_url_with_credentials_is_refused_without_echoing_them(url):
    with pytest.raises(SubtoolError) as info:
        parse_fork(url)
    assert info.value.rule == "publish.fork_url"
    assert "ghp_secret123" not in info.value.one_line() + (info.value.hint or "")


def test_plain_ssh_and_scp_urls_with_a_user_name_are_fine():
    assert parse_fork("ssh://git@github.com/alice/results.git").full_name == "alice/results"
    assert parse_fork("git@github.com:alice/results.git").full_name == "alice/results"


def test_api_and_web_urls():
    assert derive_api_url(parse_fork("https://github.com/a/r.git"), None) == "https://api.github.com"
    assert derive_api_url(parse_fork("git@ghe.corp:a/r.git"), None) == "https://ghe.corp/api/v3"
    assert derive_api_url(parse_fork("http://127.0.0.1:9/a/r.git"), None) == "http://127.0.0.1:9/api/v3"
    assert derive_api_url(parse_fork("https://github.com/a/r"), "https://x.test/api/v3/") == "https://x.test/api/v3"
    assert derive_api_url(parse_fork("file:///a/r.git"), None) is None
    assert derive_web_url("https://api.github.com") == "https://github.com"
    assert derive_web_url(None) == "https://github.com"
    assert derive_web_url("https://ghe.corp/api/v3") == "https://ghe.corp"
    assert (
        compare_url("https://github.com", "mlcommons/res", "main", "alice", "subtool/T")
        == "https://github.com/mlcommons/res/compare/main...alice:subtool/T?expand=1"
    )


def test_token_lookup_order():
    assert resolve_token(None, {"GH_TOKEN": "b", "GITHUB_TOKEN": "a"}) == "a"
    assert resolve_token(None, {"GH_TOKEN": "b"}) == "b"
    assert resolve_token(None, {}) is None
    assert resolve_token("MY_TOK", {"MY_TOK": "c", "GITHUB_TOKEN": "a"}) == "c"
    with pytest.raises(SubtoolError) as info:
        resolve_token("MY_TOK", {"GITHUB_TOKEN": "a"})
    assert info.value.rule == "publish.no_token" and "MY_TOK" in info.value.message


@pytest.mark.parametrize("token", ["ghp_SUPER\nSECRET123", "ghp_SUPER SECRET123", "ghp_SUPER\x1bSECRET123", "ghp_é"])
def test_a_token_with_a_character_no_token_has_is_refused_without_printing_it(token):
    """requests quoted such a token escaped in its error (the newline as two characters), past the redactor."""
    for variable, given in (("GITHUB_TOKEN", None), ("MY_TOK", "MY_TOK")):
        with pytest.raises(SubtoolError) as info:
            resolve_token(given, {variable: token})
        said = info.value.one_line() + (info.value.hint or "")
        assert info.value.rule == "publish.malformed_token" and variable in said
        assert "SUPER" not in said and "SECRET" not in said and "ghp_" not in said


def test_the_redactor_hides_the_escaped_spelling_too():
    token = "ghp_back\\slash"
    assert token not in Redactor(token)(f"error: {token!r}") and "slash" not in Redactor(token)(f"{token!r}")


@pytest.mark.parametrize("url", ["--upload-pack=touch${IFS}PWNED;:x/y", "-oProxyCommand=x:o/r.git", "-"])
def test_a_fork_url_git_would_read_as_an_option_is_refused(url):
    with pytest.raises(SubtoolError) as info:
        parse_fork(url)
    assert info.value.rule == "publish.fork_url" and "starts with '-'" in info.value.message


def test_a_local_fork_folder_whose_name_starts_with_a_dash_is_given_as_a_path(tmp_path):
    assert parse_fork(str(tmp_path / "-results")).kind == "local"
    assert parse_fork("./-results").kind == "local"


def test_redactor_hides_plain_and_basic_auth_spellings():
    redact = Redactor("s3cr3t-token")
    header = basic_auth_header("s3cr3t-token")
    assert "s3cr3t-token" not in redact("token s3cr3t-token failed")
    assert header.split()[-1] not in redact(header)
    assert Redactor(None)("unchanged") == "unchanged"


@pytest.mark.parametrize(
    "stderr, kind",
    [
        ("fatal: Authentication failed for 'https://x/a/r.git/'", "auth"),
        ("fatal: could not read Username for 'https://x': terminal prompts disabled", "auth"),
        ("fatal: unable to access 'http://x/a/r.git/': The requested URL returned error: 403", "forbidden"),
        ("remote: Repository not found.\nfatal: repository 'https://x/a/r.git/' not found", "missing"),
        ("fatal: '/tmp/none.git' does not appear to be a git repository", "missing"),
        ("fatal: unable to access 'http://127.0.0.1:1/': Failed to connect to 127.0.0.1 port 1", "network"),
        ("error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502", "network"),
        (
            "send-pack: unexpected disconnect while reading sideband packet\n"
            "fatal: the remote end hung up unexpectedly",
            "network",
        ),
        ("!\trefs/heads/x:refs/heads/x\t[rejected] (stale info)", "rejected"),
        ("fatal: couldn't find remote ref refs/heads/subtool/TeamX", "no_ref"),  # deleted since listed: no retry
        ("fatal: something else entirely", "other"),
    ],
)
def test_git_failure_classes(stderr, kind):
    assert classify(stderr) == kind


def test_last_line_prefers_ref_status_then_fatal():
    assert last_line("hint: x\nfatal: the reason\nmore\n") == "fatal: the reason"
    assert (
        last_line("!\tref\t[rejected] (stale info)\nerror: failed to push some refs") == "! ref [rejected] (stale info)"
    )


@pytest.mark.parametrize(
    ("urls", "refused"),
    [
        (("http://git.example.com/o/r.git",), True),
        (("http://127.attacker.example/o/r.git",), True),  # a name that starts like a loopback address
        (("https://git.example.com/o/r.git", "http://git.example.com/api/v3"), True),  # --api-url over http
        (("https://git.example.com/o/r.git", "https://git.example.com/api/v3"), False),
        (("http://127.0.0.1:8080/o/r.git", "http://localhost/api/v3", "http://[::1]/x"), False),  # this machine
        (("/srv/forks/r.git", None), False),
    ],
)
def test_a_token_is_refused_where_it_would_travel_over_plain_http(urls, refused):
    from subtool.publish.remote import refuse_token_over_http

    refuse_token_over_http(None, *urls)  # no token, nothing to protect
    if not refused:
        refuse_token_over_http("ghp_x", *urls)
        return
    with pytest.raises(SubtoolError) as info:
        refuse_token_over_http("ghp_x", *urls)
    assert info.value.rule == "publish.insecure_token" and ".example" in info.value.message
    assert "ghp_x" not in info.value.one_line() + (info.value.hint or "")
