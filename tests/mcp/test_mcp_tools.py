"""The MCP tools against the CLI they stand for: every command a tool and every option a parameter (read from
typer/click, independently of the builder), the annotations, no token anywhere in a schema, arguments that reach
the CLI as the same values, bounded output, a cancelled call's command stopped, no model stack in the server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
import typer.main
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("mcp", reason="`subtool mcp` needs the mcp extra (pip install -e '.[test]')")

from subtool.cli import app  # noqa: E402
from subtool.mcp_tools import (  # noqa: E402
    NOT_TOOLS,
    POLICIES,
    SERVER_ONLY,
    UnmappedOption,
    build_argv,
    check_arguments,
    redact,
    redact_value,
    secret_values,
    tool_specs,
)

# a parameter that carries or names a secret (max_new_tokens counts tokens: not one)
SECRETISH = re.compile(r"(^|_)(token|secret|password|passwd|api_key|key|key_env|credentials?|auth)(_|$)")


def _listed_tools(typer_app=app) -> dict:
    """The tools as a client sees them: the SDK's in-process client on the real server object."""
    import anyio
    from mcp import Client

    from subtool.mcp_server import build_server

    async def listing():
        async with Client(build_server(typer_app)) as client:
            return (await client.list_tools()).tools

    return {tool.name: tool for tool in anyio.run(listing)}


def _expected_name(param) -> str:
    if param.param_type_name == "argument":
        return param.name
    return next(o for o in param.opts if o.startswith("--"))[2:].replace("-", "_")


def test_every_command_is_a_tool_and_every_option_a_parameter():
    tools = _listed_tools()
    commands = typer.main.get_command(app).commands
    assert set(commands) - set(NOT_TOOLS) == set(tools), "a CLI command without a tool, or a tool without a command"
    missing = []
    for name, command in commands.items():
        if name in NOT_TOOLS:
            continue
        schema = tools[name].input_schema
        for param in command.params:
            if (name, param.name) in SERVER_ONLY:
                assert _expected_name(param) not in schema["properties"]
                continue
            prop = schema["properties"].get(_expected_name(param))
            if prop is None:
                missing.append(f"subtool {name} {param.opts[0]}")
                continue
            assert (prop["type"] == "array") == (param.multiple or param.nargs == -1), (name, param.name)
            assert (_expected_name(param) in schema["required"]) == param.required, (name, param.name)
        assert len(schema["properties"]) == len(command.params) - sum(c == name for c, _ in SERVER_ONLY)
    assert not missing, "CLI options without a tool parameter: " + ", ".join(missing)
    assert set(POLICIES) == set(tools), "an annotation entry for a command that no longer exists"


def test_a_new_command_or_an_unmappable_option_fails_the_build():
    extra = typer.Typer()
    extra.command("check")(lambda tree: None)

    @extra.command("new-command")
    def _new(x: int = 1) -> None: ...

    with pytest.raises(UnmappedOption, match="new-command has no entry in POLICIES"):
        tool_specs(extra)

    odd = typer.Typer()

    @odd.command("check")
    def _check(when: tuple[int, int] = typer.Option((1, 2))) -> None: ...

    @odd.command("pack")
    def _pack(bigger: str = typer.Option("x", "--new-option")) -> None: ...

    with pytest.raises(UnmappedOption, match="when"):
        tool_specs(odd)
    odd.registered_commands.pop(0)
    assert "new_option" in tool_specs(odd)["pack"].input_schema()["properties"]


def test_annotations_say_what_each_command_does_to_the_world():
    tools = _listed_tools()
    hints = {
        name: (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint)
        for name, a in ((n, t.annotations) for n, t in tools.items())
    }
    for name, policy in POLICIES.items():
        assert hints[name] == (policy.read_only, policy.destructive, policy.idempotent, policy.open_world), name
        assert tools[name].annotations.title == tools[name].title == policy.title
    # publish changes a remote; fetch downloads; run and all are long and write; check and score only read
    # their inputs and write the reports they are told to (so none claims to be read-only)
    assert hints["publish"] == (False, True, False, True)
    assert hints["fetch"][3] and hints["all"][3] and not hints["check"][3] and not hints["score"][3]
    assert not hints["run"][2] and not hints["all"][2] and hints["all"][1]
    assert hints["check"] == (False, False, True, False) and hints["pack"] == (False, False, True, False)
    assert not any(h[0] for h in hints.values()), "no command leaves everything as it was (each can write a file)"


def test_no_tool_takes_a_token():
    for name, tool in _listed_tools().items():
        for prop in tool.input_schema["properties"]:
            assert not SECRETISH.search(prop.lower()), f"{name} takes {prop}"
        assert tool.input_schema["additionalProperties"] is False, name
    # the options that would let an agent pick the secret or where it is sent are the server's alone
    assert {("publish", "token_env"), ("publish", "api_url"), ("run", "api_key_env")} <= set(SERVER_ONLY)


# ----------------------------------------------------------------------------- arguments reach the CLI
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_TEXT = _TEXT | st.sampled_from(
    ["--help", "--json", "-", "--", "--out=x", "a=b", "-v"]
)  # values that look like options
_VALUES = {"string": _TEXT, "integer": st.integers(-(10**6), 10**6), "boolean": st.booleans()}
_VALUES["number"] = st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3))
SPECS = tool_specs(app)


def _arguments(spec):
    props = spec.input_schema()["properties"]
    fields = {}
    for name, prop in props.items():
        item = prop["items"] if prop["type"] == "array" else prop
        value = _VALUES[item["type"]]
        if item.get("minLength"):
            value = value.filter(lambda v, least=item["minLength"]: len(v) >= least)
        if prop["type"] == "array":
            value = st.lists(value, min_size=prop.get("minItems", 0), max_size=3)
        fields[name] = value if name in spec.input_schema()["required"] else st.none() | value
    return st.fixed_dictionaries(fields).map(lambda d: {k: v for k, v in d.items() if v is not None})


@pytest.mark.parametrize("name", sorted(SPECS))
def test_arguments_reach_the_cli_as_the_same_values(name):
    """Whatever the agent sends, click reads back exactly it (values that look like options included)."""
    spec = SPECS[name]
    by_name = {p.name: p for p in spec.params}

    @given(_arguments(spec))
    def roundtrip(arguments):
        argv = build_argv(spec, arguments)
        assert argv[0] == name
        ctx = spec.command.make_context(name, argv[1:], resilient_parsing=True)
        for key, value in arguments.items():
            got = ctx.params[by_name[key].cli.name]
            if by_name[key].base is Path:  # click makes Paths: a/b/ and ./a are a and a
                norm = lambda v: str(Path(v))  # noqa: E731
                got, value = (
                    ([norm(v) for v in got], [norm(v) for v in value])
                    if by_name[key].many
                    else (
                        norm(got),
                        norm(value),
                    )
                )
            if isinstance(value, list):
                assert [str(v) for v in got] == [str(v) for v in value], key
            elif isinstance(value, float):
                assert got == pytest.approx(value), key
            else:
                assert got == value, key

    roundtrip()


def test_build_argv_puts_positionals_after_a_separator():
    argv = build_argv(SPECS["check"], {"tree": "--help", "skip_compliance": False, "waive": ["a", "b"]})
    assert argv == ["check", "--waive=a", "--waive=b", "--no-skip-compliance", "--json", "--", "--help"]
    assert "--json" not in build_argv(SPECS["check"], {"tree": "t", "json": False})


def test_secret_values_are_blanked():
    env = {"GITHUB_TOKEN": "ghp_abcdefgh1234", "HF_TOKEN": "hf_xyzxyzxyz", "MY_API_KEY": "k" * 20, "PATH": "/usr/bin"}
    env["SHORT_TOKEN"] = "abc"  # too short to be a secret: blanking it would garble ordinary text
    secrets = secret_values(env)
    assert set(secrets) == {"ghp_abcdefgh1234", "hf_xyzxyzxyz", "k" * 20}
    assert redact("a ghp_abcdefgh1234 b hf_xyzxyzxyz", secrets) == "a *** b ***"


def test_secrets_are_blanked_in_json_text_and_in_decoded_documents():
    secrets = ['ab"cd\\ef12345', "pässwörd12345"]
    text = json.dumps({"p": f"/x/{secrets[0]}", "q": secrets[1]})  # as a command's --json writes them
    assert all(s not in json.loads(redact(text, secrets)).values() for s in secrets)
    doc = {"error": {"path": f"/x/{secrets[0]}", secrets[1]: [secrets[1], 3]}}
    assert redact_value(doc, secrets) == {"error": {"path": "/x/***", "***": ["***", 3]}}


def test_arguments_no_command_line_can_carry_are_refused_without_echoing_them():
    spec = SPECS["check"]
    assert check_arguments(spec, {"tree": "/tmp/a\0b"}) == "check: tree: holds a NUL character"
    half = check_arguments(spec, {"tree": "/tmp/\ud800"})
    assert "surrogate pair" in half and "\ud800" not in half
    assert "over the 32,768" in check_arguments(spec, {"tree": "x" * 40_000})
    assert check_arguments(spec, {"tree": "/tmp/ok", "waive": ["perf.min_duration"]}) is None


# ----------------------------------------------------------------------------- the child process
def test_output_is_bounded_and_a_cancelled_call_stops_its_command(tmp_path):
    import anyio

    from subtool.mcp_calls import STDERR_SHOWN, run_child
    from subtool.mcp_tools import STDOUT_KEEP

    flood = f"import sys; sys.stdout.write('x' * ({STDOUT_KEEP} + 5)); sys.stderr.write('y' * 10**6 + 'END')"
    outcome = anyio.run(run_child, [sys.executable, "-c", flood])
    assert outcome.exit_code == 0 and outcome.stdout_cut and len(outcome.stdout) == STDOUT_KEEP
    assert outcome.stderr.endswith("END") and len(outcome.stderr) <= STDERR_SHOWN * 4
    shown = outcome.to_dict([])
    assert shown["json"] is None and shown["stdout"].endswith("(cut)") and len(shown["stderr"]) == STDERR_SHOWN

    pid_file = tmp_path / "pid"
    sleeper = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"

    async def cancelled():
        with anyio.move_on_after(20) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_child, [sys.executable, "-c", sleeper])
                while not pid_file.exists() or not pid_file.read_text():
                    await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
        return scope.cancelled_caught

    started = time.monotonic()
    assert not anyio.run(cancelled), "the child never started"
    assert time.monotonic() - started < 15
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_the_server_never_imports_the_model_stack():
    code = (
        "import sys\n"
        "from subtool.cli import app\n"
        "from subtool.mcp_server import build_server\n"
        "build_server(app)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'mlperf_loadgen', 'ray'}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def _call_in_process(name: str, arguments: dict) -> dict:
    import anyio
    from mcp import Client

    from subtool.mcp_server import build_server

    async def call():
        async with Client(build_server(app)) as client:
            return (await client.call_tool(name, arguments)).structured_content

    return anyio.run(call)


def test_a_fork_on_an_unlisted_host_is_refused_before_anything_runs(tmp_path, monkeypatch):
    """The fork's host receives the server's GitHub token (git push, API): an agent may not pick any host."""
    from subtool.mcp_tools import FORGE_HOSTS, check_fork

    monkeypatch.delenv(FORGE_HOSTS, raising=False)
    evil = "https://evil.example/team/results.git"
    for name in ("publish", "all"):
        assert "evil.example is not a forge" in check_fork(SPECS[name], {"fork": evil}, {})
        assert check_fork(SPECS[name], {"fork": evil}, {FORGE_HOSTS: "git.corp, evil.example"}) is None
    assert check_fork(SPECS["publish"], {"fork": "git@evil.example:team/results.git"}, {}) is not None
    assert check_fork(SPECS["publish"], {"fork": "http://127.0.0.1:9/t/r.git"}, {FORGE_HOSTS: "127.0.0.1"})
    for fine in ("https://github.com/team/results.git", "git@github.com:team/results.git", str(tmp_path / "fork")):
        assert check_fork(SPECS["publish"], {"fork": fine}, {}) is None, fine

    tree = str(tmp_path / "no-tree")
    refused = _call_in_process("publish", {"tree": tree, "fork": evil, "dry_run": True})
    assert refused["exit_code"] == 2 and "[mcp.forge_host]" in refused["error"] and "command" not in refused
    monkeypatch.setenv(FORGE_HOSTS, "evil.example")
    ran = _call_in_process("publish", {"tree": tree, "fork": evil, "dry_run": True})
    assert ran["command"].startswith("subtool publish --fork=https://evil.example/") and ran["exit_code"] == 2


def test_an_endpoint_off_this_machine_is_refused_unless_the_server_lists_it(tmp_path, monkeypatch):
    """The endpoint receives the server's OPENAI_API_KEY with every request: an agent may not pick any host."""
    from subtool.mcp_tools import ENDPOINT_HOSTS, check_endpoint

    for name in ("run", "all"):
        for far in ("http://evil.example:8000", "evil.example:8000", "https://10.0.0.5/v1", "http://[::ffff:1]:9"):
            assert "[mcp.endpoint_host]" in check_endpoint(SPECS[name], {"endpoint": far}, {}), far
        for near in ("http://127.0.0.1:8000", "localhost:8000", "http://[::1]:8000/v1", "http://LOCALHOST:1"):
            assert check_endpoint(SPECS[name], {"endpoint": near}, {}) is None, near
        listed = {ENDPOINT_HOSTS: "gpu-node-3, evil.example"}
        assert check_endpoint(SPECS[name], {"endpoint": "http://gpu-node-3:8000"}, listed) is None
        assert check_endpoint(SPECS[name], {"endpoint": "http://evil.example:8000"}, listed) is None
        assert check_endpoint(SPECS[name], {"endpoint": "http://[bad"}, {}) is not None  # unparsable: refused
    assert check_endpoint(SPECS["check"], {"tree": str(tmp_path)}, {}) is None

    monkeypatch.delenv(ENDPOINT_HOSTS, raising=False)
    refused = _call_in_process("run", {"model": "llama3.1-8b", "endpoint": "http://evil.example:8000"})
    assert refused["exit_code"] == 2 and "[mcp.endpoint_host]" in refused["error"] and "command" not in refused


def test_without_the_sdk_subtool_mcp_says_what_to_install():
    blocked = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('mcp', 'mcp_types'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from subtool.cli import main\n"
        "sys.argv = ['subtool', 'mcp']\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "needs the MCP SDK" in proc.stderr and "[mcp]" in proc.stderr and "Traceback" not in proc.stderr


def test_what_comes_back_of_stdout_is_bounded():
    from subtool.mcp_calls import Outcome
    from subtool.mcp_tools import JSON_SHOWN, STDOUT_SHOWN

    def back(stdout: str, cut: bool = False) -> dict:
        return Outcome(["check"], 0, stdout, "", stdout_cut=cut).to_dict(["s3cr3t-value"])

    small = back('{"ok": true, "path": "/x/s3cr3t-value"}\n')
    assert small["json"] == {"ok": True, "path": "/x/***"} and small["stdout"] == "" and small["note"] is None
    big = back(json.dumps({"findings": ["x" * 100] * (JSON_SHOWN // 50)}))
    assert big["json"] is None and "over the" in big["note"] and len(big["stdout"]) <= STDOUT_SHOWN + 10
    text = back("not json " * 10_000)
    assert text["json"] is None and text["stdout"].endswith("(cut)") and text["note"] is None
    assert back('{"ok": true}', cut=True)["json"] is None
