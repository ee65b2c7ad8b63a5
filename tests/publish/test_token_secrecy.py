"""The token never shows: not in output, errors, argv, .git/config, the cache, nor anything pushed."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from subtool.errors import SubtoolError
from subtool.publish.api import publish_tree

from .conftest import UPSTREAM
from .test_publish_forge import run_cli


def spellings(token: str) -> list[bytes]:
    basic = base64.b64encode(f"x-access-token:{token}".encode())
    return [token.encode(), basic, token[4:].encode()]


def all_bytes_under(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in root.rglob("*") if p.is_file()]


def git_objects(git_dir: Path) -> bytes:
    """Every object's content, uncompressed (grepping packs on disk would miss compressed text)."""
    proc = subprocess.run(
        ["git", "--git-dir", str(git_dir), "cat-file", "--batch-all-objects", "--batch", "--unordered"],
        capture_output=True,
    )
    return proc.stdout


def assert_clean(token: str, label: str, data: bytes) -> None:
    for secret in spellings(token):
        assert secret not in data, f"token found in {label}"


def test_token_appears_nowhere(tmp_path, forge, users, alice_fork, tree):
    outputs = []
    ok_args = [str(tree), "--fork", alice_fork, "--upstream", UPSTREAM, "--json"]
    for _ in range(2):
        proc = run_cli(ok_args, {"GITHUB_TOKEN": users.alice}, tmp_path)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc)
    # Failures print the most detail: a token the fork refuses, one the API refuses, a network that drops.
    refused = run_cli(
        [str(tree), "--fork", alice_fork, "--no-pr", "--branch", "x"], {"GH_TOKEN": users.mallory}, tmp_path
    )
    assert refused.returncode == 3 and "no push rights" in refused.stderr
    outputs.append(refused)
    bad = "ghp_" + "f" * 36
    rejected = run_cli([*ok_args, "--token-env", "MY_TOKEN"], {"MY_TOKEN": bad}, tmp_path)
    assert rejected.returncode == 3 and "refused the token" in rejected.stderr
    outputs.append(rejected)

    for token in (users.alice, users.mallory, bad):
        for i, proc in enumerate(outputs):
            assert_clean(token, f"stdout of run {i}", proc.stdout.encode())
            assert_clean(token, f"stderr of run {i}", proc.stderr.encode())
        for path, data in all_bytes_under(tmp_path / "xdg-cache"):
            assert_clean(token, str(path), data)
        for clone in (tmp_path / "xdg-cache").rglob("*.git"):
            assert_clean(token, f"objects of {clone}", git_objects(clone))
            config = (clone / "config").read_text()
            assert f"url = {alice_fork}" in config
        fork_dir = forge.repo_path("alice", "results")
        assert_clean(token, "the fork's objects", git_objects(fork_dir))
        assert_clean(token, "the fork's config", (fork_dir / "config").read_bytes())


def test_network_failure_messages_hold_no_token(forge, users, alice_fork, tree, fast, monkeypatch):
    from .test_publish_forge import Recorder

    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    forge.inject(r"^POST /alice/results\.git/git-receive-pack$", count=100, drop=True)
    console = Recorder()
    with pytest.raises(SubtoolError) as info:
        publish_tree(fast(tree, alice_fork, no_pr=True), console)
    text = "\n".join([*console.lines, info.value.one_line(), info.value.hint or ""])
    assert "network" in text
    assert_clean(users.alice, "network failure output", text.encode())


def test_token_is_in_no_argv_and_scoped_to_the_forge(forge, users, alice_fork, tree, fast, monkeypatch):
    seen: list[tuple[list[str], dict]] = []
    real_run = subprocess.run

    def spy(args, *a, **kw):
        seen.append((list(map(str, args)), dict(kw.get("env") or {})))
        return real_run(args, *a, **kw)

    monkeypatch.setattr(subprocess, "run", spy)
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    publish_tree(fast(tree, alice_fork))
    git_calls = [(argv, env) for argv, env in seen if argv and argv[0] == "git"]
    assert any("push" in argv for argv, _ in git_calls)
    for argv, env in git_calls:
        assert all(users.alice not in arg for arg in argv)
        headers = {
            env[k.replace("KEY", "VALUE")]: env[k]
            for k in env
            if k.startswith("GIT_CONFIG_KEY_") and env[k].endswith(".extraHeader")
        }
        for value, key in headers.items():
            assert key == f"http.{forge.url}/.extraHeader"
            assert users.alice not in value and value.startswith("Authorization: Basic ")


def test_error_messages_are_scrubbed(forge, users, alice_fork, tree, fast, monkeypatch):
    """Even a message that would quote the token (here: a forge echoing it) reaches the user redacted."""
    monkeypatch.setenv("GITHUB_TOKEN", users.alice)
    forge.inject(
        r"^GET /api/v3/repos/alice/results$",
        count=1,
        status=418,
        body={"message": f"teapot says token {users.alice} is odd"},
    )
    with pytest.raises(SubtoolError) as info:
        publish_tree(fast(tree, alice_fork))
    assert "teapot" in info.value.message and users.alice not in info.value.message
    assert users.alice not in str(info.value)


def _tracing_user(home: Path, traces: Path) -> dict[str, str]:
    """A user whose global git config and environment trace everything git does, redaction off."""
    home.mkdir(parents=True, exist_ok=True)
    traces.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text(
        "[trace2]\n"
        f"\teventTarget = {traces / 'cfg-event.log'}\n"
        f"\tnormalTarget = {traces / 'cfg-normal.log'}\n"
        f"\tperfTarget = {traces / 'cfg-perf.log'}\n"
        "\tconfigParams = http.*,*extraheader*,core.*\n"
        "\tenvVars = GIT_CONFIG_VALUE_0,GIT_CONFIG_VALUE_1,GIT_CONFIG_VALUE_5,GIT_CONFIG_VALUE_6\n"
    )
    return {
        "GIT_TRACE": str(traces / "trace.log"),
        "GIT_TRACE_CURL": str(traces / "curl.log"),
        "GIT_TRACE_PACKET": str(traces / "packet.log"),
        "GIT_CURL_VERBOSE": "1",
        "GIT_TRACE_REDACT": "0",
        "GIT_TRACE2_REDACT": "0",
        "GIT_TRACE2_EVENT": str(traces / "env-event.log"),
        "GIT_TRACE2_CONFIG_PARAMS": "http.*",
        "GIT_TRACE2_ENV_VARS": "GIT_CONFIG_VALUE_5",
    }


def test_a_users_git_tracing_never_records_the_token(tmp_path, forge, users, alice_fork, tree):
    """trace2 (config and environment), GIT_TRACE*, GIT_CURL_VERBOSE: git runs with all of them off."""
    home, traces = tmp_path / "home", tmp_path / "traces"
    tracing = _tracing_user(home, traces)
    # Control: this set-up does record an extraHeader value when git runs under it as given.
    control_env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("GIT_")}
    control_env.update(
        tracing,
        HOME=str(home),
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0=f"http.{forge.url}/.extraHeader",
        GIT_CONFIG_VALUE_0="Authorization: Basic Q09OVFJPTC1TRUNSRVQ=",
    )
    subprocess.run(["git", "ls-remote", alice_fork], env=control_env, capture_output=True, timeout=60)
    recorded = b"".join(p.read_bytes() for p in traces.iterdir())
    assert b"Q09OVFJPTC1TRUNSRVQ=" in recorded
    for p in traces.iterdir():
        p.unlink()

    proc = run_cli(
        [str(tree), "--fork", alice_fork, "--upstream", UPSTREAM, "--api-url", forge.api_url, "--json"],
        {"GITHUB_TOKEN": users.alice, **tracing},
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert_clean(users.alice, "stdout", proc.stdout.encode())
    assert_clean(users.alice, "stderr", proc.stderr.encode())
    for path, data in all_bytes_under(traces):
        assert_clean(users.alice, str(path), data)
    assert forge.branch_sha("alice/results", "subtool/TeamX") is not None
