"""Edges of what an MCP call gives back: a secret blanked in every form a JSON writer may spell it, in the progress
lines as well as in the result, and the JSON files a command wrote read back only up to their bound."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mcp", reason="`subtool mcp` needs the mcp extra (pip install -e '.[test]')")

from subtool.mcp_tools import redact  # noqa: E402

SECRET = 'pä"ss-wörd-12345'  # a non-ASCII letter and a quote: spelled three ways in JSON text


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_a_secret_is_blanked_however_the_json_writer_escapes_it(ensure_ascii):
    text = json.dumps({"path": f"/x/{SECRET}/y", SECRET: 1}, ensure_ascii=ensure_ascii)
    assert SECRET not in text  # only an escaped spelling is there
    back = redact(text, [SECRET])
    assert json.loads(back) == {"path": "/x/***/y", "***": 1}


def test_progress_lines_have_their_secrets_blanked():
    import anyio

    from subtool.mcp_calls import Progress

    sent = []

    async def report(progress, message):
        sent.append((progress, message))

    async def lines():
        progress = Progress(report, [SECRET])
        await progress(f"  pushing with {SECRET} to the fork  ")
        await progress("a second line within the second: not sent")

    anyio.run(lines)
    assert sent == [(1, "pushing with *** to the fork")]


def test_a_json_file_the_command_wrote_is_read_back_only_within_its_bound(tmp_path):
    from subtool.mcp_calls import _written_json
    from subtool.mcp_tools import JSON_FILE_LIMIT

    small, big, same = tmp_path / "small.json", tmp_path / "big.json", tmp_path / "same.json"
    same.write_text('{"old": true}')
    before = {small: None, big: None, same: (same.stat().st_mtime_ns, same.stat().st_size)}
    small.write_text('{"ok": true}')
    big.write_text(json.dumps({"pad": "x" * JSON_FILE_LIMIT}))
    files = _written_json(before)
    assert files[str(small)] == {"ok": True}
    assert files[str(big)] == f"(not read: {big.stat().st_size} bytes)"
    assert str(same) not in files  # unchanged: not written by the command


@pytest.mark.parametrize("name, extra", [("publish", "token_env"), ("publish", "api_url"), ("run", "api_key_env")])
def test_an_argument_no_tool_parameter_takes_is_refused_not_dropped(name, extra):
    """The server-only options are not parameters; one passed anyway is an error the agent reads, not a call that
    runs as if the agent had not asked for it."""
    from subtool.cli import app
    from subtool.mcp_tools import check_arguments, tool_specs

    spec = tool_specs(app)[name]
    arguments = {"tree": "t", "fork": "git@github.com:t/r.git"} if name == "publish" else {"model": "llama3.1-8b"}
    assert check_arguments(spec, arguments) is None
    problem = check_arguments(spec, arguments | {extra: "X"})
    assert problem is not None and problem.startswith(f"{name}: arguments:") and repr(extra) in problem, problem


# --------------------------------------------------------------- what a mutation probe found no test for
def test_an_empty_path_or_a_value_one_past_the_command_line_bound_is_refused():
    """An empty path would be the server's working directory; 32,768 characters is the bound, inclusive."""
    from subtool.cli import app
    from subtool.mcp_tools import ARGUMENT_CHARS, check_arguments, tool_specs

    spec = tool_specs(app)["check"]
    problem = check_arguments(spec, {"tree": ""})
    assert problem is not None and problem.startswith("check: tree:"), problem
    assert check_arguments(spec, {"tree": "x" * ARGUMENT_CHARS}) is None
    assert "over the 32,768" in check_arguments(spec, {"tree": "x" * (ARGUMENT_CHARS + 1)})


def test_values_that_each_fit_but_not_together_are_one_line_not_a_failed_start():
    """100 paths of 32,000 characters, or 20,000 waivers: the child failed to start (E2BIG) and the agent got a
    bare protocol error with a traceback in the server's log."""
    from subtool.cli import app
    from subtool.mcp_tools import MOST_ITEMS, check_arguments, tool_specs

    specs = tool_specs(app)
    problem = check_arguments(specs["score"], {"inputs": ["x" * 32_000] * 100, "out": "o"})
    assert problem is not None and "bytes, over the 1,048,576 a command takes" in problem, problem
    problem = check_arguments(specs["check"], {"tree": "t", "waive": ["perf.min_duration"] * (MOST_ITEMS + 1)})
    assert problem is not None and problem.startswith("check: waive: 4,097 values"), problem
    assert check_arguments(specs["check"], {"tree": "t", "waive": ["perf.min_duration"] * 10}) is None


def test_a_command_that_cannot_start_is_an_exit_2_result():
    import anyio

    from subtool.mcp_calls import run_child

    outcome = anyio.run(run_child, ["/nonexistent/python", "-c", "pass"])
    result = outcome.to_dict([])
    assert result["exit_code"] == 2 and "[mcp.spawn]" in result["stderr"], result


def test_a_fork_url_with_an_unclosed_ipv6_bracket_is_the_commands_one_line():
    """urlsplit raised ValueError: `publish` and `all` ended with exit 70, and the MCP call with a bare error."""
    from subtool.cli import app
    from subtool.errors import SubtoolError
    from subtool.mcp_tools import check_fork, tool_specs
    from subtool.publish.remote import parse_fork

    with pytest.raises(SubtoolError) as err:
        parse_fork("https://[::1/a/b")
    assert err.value.rule == "publish.fork_url"
    assert check_fork(tool_specs(app)["publish"], {"tree": "t", "fork": "https://[::1/a/b"}, {}) is None


def test_a_fork_url_the_command_cannot_read_is_left_to_the_command_to_refuse():
    """Not a host check's business: `publish` itself says what is wrong with the URL, in its own words."""
    from subtool.cli import app
    from subtool.errors import SubtoolError
    from subtool.mcp_tools import check_fork, tool_specs
    from subtool.publish.remote import parse_fork

    with pytest.raises(SubtoolError):
        parse_fork("ftp://forge.example/team/repo")
    assert check_fork(tool_specs(app)["publish"], {"tree": "t", "fork": "ftp://forge.example/team/repo"}, {}) is None


def test_a_secret_of_eight_characters_is_blanked_and_one_inside_another_leaves_nothing_of_it():
    """Eight characters is a secret (the bound is inclusive); a blank-padded short value or a run of blanks is not
    (blanking it would garble every indented line). The longer of two nested secrets is blanked first, so no tail
    of it is left beside a '***'."""
    from subtool.mcp_tools import redact, secret_values

    env = {"A_TOKEN": "k8chars!", "B_SECRET": "k8chars!-and-more", "C_TOKEN": "   abc   ", "D_PASSWORD": " " * 12}
    secrets = secret_values(env)
    assert secrets == ["k8chars!-and-more", "k8chars!"]
    text = "key k8chars!-and-more, then k8chars! and an indented   abc   value" + " " * 12 + "end"
    assert redact(text, secrets) == "key ***, then *** and an indented   abc   value" + " " * 12 + "end"


def test_benchmarks_run_one_at_a_time_and_say_that_they_wait(monkeypatch):
    """Six `run` calls at once started six processes that each import torch and load a model."""
    import anyio
    from mcp import types

    from subtool import mcp_calls, mcp_server
    from subtool.cli import app
    from subtool.mcp_tools import tool_specs

    running = {"benchmark": 0, "other": 0}
    most = {"benchmark": 0, "other": 0}

    async def command(spec, arguments, report=None):  # the child process, as long as a real one takes to start
        kind = "benchmark" if spec.name in mcp_server.BENCHMARK_TOOLS else "other"
        running[kind] += 1
        most[kind] = max(most[kind], running[kind])
        await anyio.sleep(0.05)
        running[kind] -= 1
        return {"exit_code": 0}

    monkeypatch.setattr(mcp_calls, "run_tool", command)
    monkeypatch.setattr(mcp_server, "_LIMITERS", {})
    said = []

    async def report(progress, total, message):
        said.append(message)

    async def main():
        specs = tool_specs(app)
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(mcp_server._call, types, specs, "run", {"model": "bert-99"}, report)
            for _ in range(8):
                tg.start_soon(mcp_server._call, types, specs, "check", {"tree": "t"}, report)

    anyio.run(main)
    assert most == {"benchmark": 1, "other": 4}, most
    assert any("waiting: 1 benchmark command(s) already running" in m for m in said), said
