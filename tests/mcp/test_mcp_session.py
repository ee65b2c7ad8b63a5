"""`subtool mcp` end to end: the MCP SDK's own client spawns the server over stdio and drives check → pack → score
on a team's tree laid out from real LoadGen logs (the scoring tests' teamgen), then reads the verdicts.

One session serves every call of a test, as an agent's would; each call is a real CLI command in a child process.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("mcp", reason="`subtool mcp` needs the mcp extra (pip install -e '.[test]')")
sys.path.append(str(Path(__file__).resolve().parents[1] / "scoring"))
import teamgen  # noqa: E402

# built at run time, as the publish tests build theirs, so no committed line looks like a real token
FAKE_TOKEN = "ghp_" + "mcpTestNeverShown" + "0123456789abcdef"


def _server_command() -> list[str]:
    script = shutil.which("subtool", path=str(Path(sys.executable).parent))
    return [script, "mcp"] if script else [sys.executable, "-m", "subtool.cli", "mcp"]


async def _session(calls, env_extra=None):
    """Spawn `subtool mcp`, initialize, and hand the live session to `calls` (an async function)."""
    from mcp import ClientSession, StdioServerParameters, stdio_client

    command, *args = _server_command()
    params = StdioServerParameters(command=command, args=args, env={**os.environ, **(env_extra or {})})
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return await calls(session)


def _drive(calls, env_extra=None):
    import anyio

    return anyio.run(_session, calls, env_extra)


async def _call(session, name: str, arguments: dict, progress: list | None = None) -> dict:
    async def on_progress(done, total, message):
        progress.append(message)

    result = await session.call_tool(name, arguments, progress_callback=on_progress if progress is not None else None)
    data = result.structured_content
    assert data == json.loads(result.content[0].text)  # the text content carries the same document
    assert result.is_error == (data["exit_code"] not in (0, 1))
    return data


@pytest.fixture(scope="module")
def team_tree(tmp_path_factory) -> Path:
    pytest.importorskip("mlperf_loadgen", reason="the tree is laid out from real LoadGen logs (pip install .[run])")
    root = tmp_path_factory.mktemp("mcp")
    logs = teamgen.generate_logs(root / "loadgen")
    return teamgen.build_team_tree(root / "tree", logs, teamgen.TeamSpec("Alpha"))


def test_check_pack_score_over_stdio(team_tree, tmp_path):
    handin = tmp_path / "handins" / "Alpha"
    board = tmp_path / "board"

    async def calls(session):
        listed = {tool.name for tool in (await session.list_tools()).tools}
        short = await _call(session, "check", {"tree": str(team_tree)})
        checked = await _call(session, "check", {"tree": str(team_tree), "waive": ["perf.min_duration"]})
        packed = await _call(
            session, "pack", {"tree": str(team_tree), "out": str(handin), "waive": ["perf.min_duration"]}
        )
        scored = await _call(session, "score", {"inputs": [str(handin.parent)], "out": str(board)})
        return listed, short, checked, packed, scored

    listed, short, checked, packed, scored = _drive(calls)
    assert {"check", "pack", "score", "run", "publish"} <= listed
    # a short run is an error of the checker's (exit 1, its finding in the JSON), not a failed call
    assert short["exit_code"] == 1 and short["meaning"] == "the checker found errors"
    assert "perf.min_duration" in json.dumps(short["json"])
    assert checked["exit_code"] == 0, checked["stderr"]
    assert checked["command"].startswith("subtool check --waive=perf.min_duration --json -- ")
    assert checked["json"]["ok"] is True and checked["json"]["counts"]["passed"] == 1
    assert checked["json"]["waived_rules"] == ["perf.min_duration"]
    assert packed["exit_code"] == 0, packed["stderr"]
    assert (handin / "mlperf_submission_short.tar.gz").is_file()
    assert scored["exit_code"] == 0, scored["stderr"]
    assert scored["json"]["counts"]["ranked"] == 1 and scored["json"]["disqualified"] == []
    (category,) = scored["json"]["categories"]
    assert category["name"] == "NVIDIA GPUs"
    assert [(r["team"], r["rank"], r["status"]) for r in category["overall"]] == [("Alpha", 1, "ranked")]


def test_bad_arguments_secrets_and_written_json(tmp_path):
    """A call that breaks the schema is refused with one line and runs nothing; the server's token never comes
    back, even where a command echoes it (result or progress); a JSON file the command wrote comes back parsed."""
    secret_dir = tmp_path / f"tree-{FAKE_TOKEN}"
    report = tmp_path / "report.json"
    secret_dir.mkdir()

    async def calls(session):
        unknown = await _call(session, "check", {"tree": str(tmp_path), "token": FAKE_TOKEN})
        wrong = await _call(session, "score", {"inputs": [], "out": str(tmp_path / "o")})
        echoed = await _call(session, "check", {"tree": str(secret_dir), "report": str(report)}, progress)
        return unknown, wrong, echoed

    progress: list[str] = []
    unknown, wrong, echoed = _drive(calls, {"GITHUB_TOKEN": FAKE_TOKEN})
    assert unknown["exit_code"] == 2 and "'token' was unexpected" in unknown["error"]
    assert wrong["exit_code"] == 2 and "inputs" in wrong["error"]
    assert not (tmp_path / "o").exists()
    # the folder holds no result: check runs and answers (exit 1, layout.no_results) with the path in it
    assert echoed["exit_code"] == 1 and "layout.no_results" in json.dumps(echoed["json"]), echoed
    text = json.dumps(echoed)
    assert FAKE_TOKEN not in text and "tree-***" in text
    # stderr's first line came as progress while the command ran (throttled, blanked the same way)
    assert progress and progress[0] in echoed["stderr"] and FAKE_TOKEN not in json.dumps(progress)
    assert echoed["files"][str(report)] == json.loads(report.read_text().replace(FAKE_TOKEN, "***"))


def test_a_secret_that_json_escapes_never_comes_back(tmp_path):
    """Found by probing: secrets were blanked in the raw --json text, where a quote, a backslash or a non-ASCII
    letter is escaped, and json.loads then gave the secret back whole in the `json` document."""
    secrets = {"A_TOKEN": 'ab"cdefgh12345', "B_PASSWORD": "pässwörd12345", "C_SECRET": "back\\slash12345"}

    async def calls(session):
        return [await _call(session, "check", {"tree": str(tmp_path / f"nope-{s}")}) for s in secrets.values()]

    for secret, answer in zip(secrets.values(), _drive(calls, secrets)):
        assert answer["exit_code"] == 2 and answer["json"]["error"]["path"].endswith("nope-***"), answer
        assert secret not in json.dumps(answer, ensure_ascii=False) and secret not in json.dumps(answer)


def test_text_no_command_line_can_carry_is_refused_without_echoing_it(tmp_path):
    """Found by probing: a NUL or an over-long path crashed the call inside Popen (a traceback in the server's log,
    an error code 0)."""

    async def calls(session):
        return [
            await _call(session, "check", {"tree": tree})
            for tree in (f"{tmp_path}/a\0b", f"{tmp_path}/" + "x" * 1_000_000)
        ]

    nul, long = _drive(calls)
    assert nul["exit_code"] == 2 and nul["error"] == "check: tree: holds a NUL character"
    assert long["exit_code"] == 2 and "over the 32,768 a command line argument may be" in long["error"]
    # a lone surrogate never reaches the server's code: the SDK's JSON parser drops the message (as it drops
    # `{not json`, without an answer); tests/mcp/test_mcp_tools.py checks the refusal for a client that passes one
