"""One MCP tool call: the CLI command in a child process, its output bounded, its secrets blanked, its JSON read.

The child is `python -m subtool.cli …` with the server's environment (where the tokens are); stdin is closed;
stdout (the --json document) and stderr (the human report) are read as they come so that neither pipe fills,
and only their bounded parts are kept. A cancelled call (the client gave up) stops the child with SIGTERM, which
the CLI answers by leaving nothing half-written, then SIGKILL if it has not ended within STOP_GRACE seconds.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from subtool.mcp_tools import (
    EXIT_MEANING,
    JSON_FILE_LIMIT,
    JSON_SHOWN,
    STDERR_SHOWN,
    STDOUT_KEEP,
    STDOUT_SHOWN,
    ToolSpec,
    build_argv,
    redact,
    redact_value,
    secret_values,
)

STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL of a cancelled call's command
PROGRESS_EVERY = 1.0  # seconds between two progress notifications of one call
CHUNK = 64 * 1024


@dataclass
class Outcome:
    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str
    stdout_cut: bool = False
    files: dict[str, object] = field(default_factory=dict)

    def to_dict(self, secrets: list[str]) -> dict:
        """What the agent gets: exit code and its meaning, the --json document (or bounded stdout), files, stderr."""
        # the document is decoded from what the command wrote and blanked once decoded (an escaped secret is whole
        # again then); stdout is blanked before it is cut, so that no part of a secret is left at the cut
        document, stdout, note = self._document(self.stdout, redact(self.stdout, secrets))
        return {
            "command": redact(" ".join(["subtool", *self.argv]), secrets),
            "exit_code": self.exit_code,
            "meaning": EXIT_MEANING.get(self.exit_code, "interrupted or failed"),
            "json": redact_value(document, secrets),
            "stdout": stdout,
            "note": note,
            "stderr": redact(self.stderr, secrets)[-STDERR_SHOWN:],
            "files": redact_value(self.files, secrets),
        }

    def _document(self, stdout: str, shown: str) -> tuple[object, str, str | None]:
        """(the --json document in `stdout` or None, the head of `shown` (stdout, its secrets blanked) returned
        beside it, a note on what was left out)."""
        head = shown[:STDOUT_SHOWN] + ("\n… (cut)" if len(shown) > STDOUT_SHOWN or self.stdout_cut else "")
        if self.stdout_cut:
            return None, head, f"stdout is over the {STDOUT_KEEP} bytes kept"
        try:
            document = json.loads(stdout) if stdout.strip() else None
        except ValueError:
            return None, head, None
        if document is not None and len(stdout) > JSON_SHOWN:
            return None, head, f"the --json document is {len(stdout)} characters, over the {JSON_SHOWN} returned"
        return document, "" if document is not None else head, None


class _Keep:
    """The head (stdout: the JSON document) or the tail (stderr: the last lines) of a stream, within a bound."""

    def __init__(self, limit: int, tail: bool):
        self.limit, self.tail, self.data, self.cut = limit, tail, bytearray(), False

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.limit:
            self.cut = True
            self.data = self.data[-self.limit :] if self.tail else self.data[: self.limit]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _json_paths(spec: ToolSpec, arguments: dict) -> dict[Path, tuple[int, int] | None]:
    """The .json paths among the call's path arguments, with their (mtime, size) before the call (None: absent)."""
    found = {}
    for p in spec.params:
        if p.base is not Path or arguments.get(p.name) is None:
            continue
        for value in arguments[p.name] if p.many else [arguments[p.name]]:
            path = Path(value)
            if path.suffix == ".json":
                found[path] = _stamp(path)
    return found


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _written_json(before: dict[Path, tuple[int, int] | None]) -> dict[str, object]:
    """The JSON files the command created or changed, parsed (a file too big or not JSON says so instead)."""
    files: dict[str, object] = {}
    for path, stamp in before.items():
        now = _stamp(path)
        if now is None or now == stamp or not path.is_file():
            continue
        if now[1] > JSON_FILE_LIMIT:
            files[str(path)] = f"(not read: {now[1]} bytes)"
            continue
        try:
            files[str(path)] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            files[str(path)] = f"(not read: {exc})"
    return files


class Progress:
    """stderr's lines as progress for the client (a long `run` shows it is alive), one every PROGRESS_EVERY
    seconds at most, secrets blanked. `report(progress, message)` is the SDK's (a no-op if the client asked none)."""

    def __init__(self, report, secrets: list[str]):
        self.report, self.secrets, self.lines, self.last = report, secrets, 0, float("-inf")

    async def __call__(self, line: str) -> None:
        import time

        self.lines += 1
        now = time.monotonic()
        if line.strip() and now - self.last >= PROGRESS_EVERY:
            self.last = now
            await self.report(self.lines, redact(line.strip(), self.secrets)[:500])


async def run_tool(spec: ToolSpec, arguments: dict, report=None) -> dict:
    """Run the tool's command; the result dictionary the agent reads (see Outcome.to_dict). `report`, when given,
    is called as report(progress, message) with stderr's lines."""
    argv = build_argv(spec, arguments)
    before = _json_paths(spec, arguments)
    on_line = Progress(report, secret_values()) if report is not None else None
    outcome = await run_child([sys.executable, "-m", "subtool.cli", *argv], on_line)
    outcome.argv = argv
    outcome.files = _written_json(before)
    return outcome.to_dict(secret_values())


async def run_child(cmd: list[str], on_line=None) -> Outcome:
    """Run `cmd` to its end (or until cancelled: then stop it) and keep the bounded parts of its output;
    `on_line` (async) is given each line of stderr as it comes."""
    import subprocess

    import anyio

    from subtool.cli_signals import STARTER_ENV

    # NO_COLOR: plain lines; STARTER_ENV: a `subtool` command ends (cleanly) if this server dies
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", STARTER_ENV: str(os.getpid())}
    env.pop("COLUMNS", None)  # no terminal: the CLI's CI-log width (long lines, no wrapping mid-sentence)
    out, err = _Keep(STDOUT_KEEP, tail=False), _Keep(STDERR_SHOWN * 4, tail=True)
    try:
        process = await anyio.open_process(cmd, stdin=subprocess.DEVNULL, env=env)
    except OSError as exc:  # E2BIG, a full process table: the agent gets a result, never a bare protocol error
        return Outcome(cmd, 2, "", f"error: cannot start the command ({exc.strerror or exc}) [mcp.spawn]\n")
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_drain, process.stdout, out)
            tg.start_soon(_drain, process.stderr, err, on_line)
        code = await process.wait()
    finally:
        if process.returncode is None:  # cancelled: stop the command the way Ctrl-C would, then for good
            with anyio.CancelScope(shield=True):
                await _stop(process)
    return Outcome(cmd, code, out.text(), err.text(), stdout_cut=out.cut)


async def _drain(stream, keep: _Keep, on_line=None) -> None:
    import anyio

    pending = b""
    try:
        while True:
            chunk = await stream.receive(CHUNK)
            keep.add(chunk)
            if on_line is not None:
                *lines, pending = (pending + chunk).split(b"\n")
                pending = pending[-CHUNK:]  # a line without an end is cut, never kept whole
                for line in lines:
                    await on_line(line.decode("utf-8", errors="replace"))
    except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
        return


async def _stop(process) -> None:
    import anyio

    try:
        process.terminate()
        with anyio.move_on_after(STOP_GRACE):
            await process.wait()
            return
        process.kill()
        await process.wait()
    except ProcessLookupError:
        return
