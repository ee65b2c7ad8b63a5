"""`subtool mcp`: the MCP server (stdio) that offers every CLI command as a tool to a coding agent.

It is the `mcp` SDK's low-level Server, not its decorator layer (MCPServer): the tools are data read from the CLI
(mcp_tools.py), not Python functions whose signatures the decorator would need. A call is checked against the
tool's schema (one line back when it does not fit, exit 2) and run as the CLI command in a child process
(mcp_calls.py): the CLI ends with sys.exit and installs signal handlers, `run` imports torch and keeps GPU memory
until its process ends, and a cancelled call must be able to stop its command. This process imports none of the
model stack. The server needs the optional extra: `pip install 'mlperf-subtool[mcp]'`.
"""

from __future__ import annotations

import contextlib
import json

from subtool import __version__
from subtool.errors import EXIT_USAGE, SubtoolError

INSTRUCTIONS = (
    "subtool takes an MLPerf Inference benchmark from a LoadGen run to a published submission: run (or all) → "
    "package → check → pack → publish; organizers score hand-ins with score. Each tool is one `subtool` command "
    "run on this machine; paths are the server's. Exit code 0 is success, 1 means the checker found errors (read "
    "the findings), 2 bad input (the stderr line says what to fix), 3 a remote or network failure. Tokens are the "
    "server's (GITHUB_TOKEN, HF_TOKEN in its environment): never pass one."
)


def build_server(app):
    """The low-level server with a tool for each command of the typer app (subtool.cli's)."""
    from mcp import types
    from mcp.server import Server

    from subtool.mcp_tools import tool_specs

    specs = tool_specs(app)
    tools = [_tool(types, spec) for spec in specs.values()]

    async def list_tools(_ctx, _params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx, params) -> types.CallToolResult:
        return await _call(types, specs, params.name, dict(params.arguments or {}), ctx.session.report_progress)

    return Server(
        "subtool",
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _tool(types, spec):
    p = spec.policy
    return types.Tool(
        name=spec.name,
        title=p.title,
        description=spec.description(),
        input_schema=spec.input_schema(),
        annotations=types.ToolAnnotations(
            title=p.title,
            read_only_hint=p.read_only,
            destructive_hint=p.destructive,
            idempotent_hint=p.idempotent,
            open_world_hint=p.open_world,
        ),
    )


async def _call(types, specs, name: str, arguments: dict, report):
    from subtool.mcp_calls import run_tool
    from subtool.mcp_tools import check_arguments, check_endpoint, check_fork

    spec = specs.get(name)
    problem = f"no tool named {name!r}" if spec is None else check_arguments(spec, arguments)
    problem = problem or check_fork(spec, arguments) or check_endpoint(spec, arguments)
    if problem is not None:
        result = {"exit_code": EXIT_USAGE, "meaning": "bad input or usage", "error": problem}
    else:
        async with _turn(name, report):
            result = await run_tool(spec, arguments, lambda progress, message: report(progress, None, message))
    text = json.dumps(result, indent=2, default=str)
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        structured_content=result,
        is_error=result["exit_code"] not in (0, 1),
    )


# A benchmark (run, all) wants the machine to itself: its GPUs, every core, its memory for the model; six at once
# from one agent would run out of memory. The other commands are light, but each is a process of its own.
BENCHMARK_TOOLS = frozenset({"run", "all"})
MOST_AT_ONCE = {"benchmark": 1, "other": 4}
_LIMITERS: dict = {}


@contextlib.asynccontextmanager
async def _turn(name: str, report):
    """The call's place: one benchmark at a time, a few other commands at a time; a call that waits says so."""
    import anyio

    kind = "benchmark" if name in BENCHMARK_TOOLS else "other"
    limiter = _LIMITERS.setdefault(kind, anyio.Semaphore(MOST_AT_ONCE[kind]))
    if limiter.value == 0:
        await report(0, None, f"waiting: {MOST_AT_ONCE[kind]} {kind} command(s) already running on this server")
    async with limiter:
        yield


def serve(app) -> None:
    """Serve the typer app's commands over stdin/stdout until the client closes them."""
    try:
        import anyio
        from mcp.server.stdio import stdio_server
    except ImportError:
        raise SubtoolError(
            "`subtool mcp` needs the MCP SDK, which is not installed",
            rule="mcp.not_installed",
            hint="pip install 'mlperf-subtool[mcp]'",
        ) from None
    server = build_server(app)

    async def main() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(main)
