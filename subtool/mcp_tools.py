"""The MCP tools of `subtool mcp`, read from the CLI: one tool per command, one parameter per option.

The tools are built from the typer app itself: each command's click parameters become the tool's JSON-schema
properties (a new CLI option is a new tool parameter, an option of a type this module cannot map is an error, and
a command without an entry in POLICIES is an error), so the tools cannot drift from the CLI.

Tokens stay in the server's environment (GITHUB_TOKEN, GH_TOKEN, HF_TOKEN, …): no tool takes one, the options that
choose which of the server's variables is read as a secret or where the GitHub token is sent (SERVER_ONLY) are not
tool parameters, and every secret-looking variable's value is blanked out of what a call returns.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from subtool.errors import SubtoolError


@dataclass(frozen=True)
class Policy:
    """What a command does to the world (MCP tool annotations: hints a client shows, or asks the user before)."""

    title: str
    read_only: bool = False  # changes nothing at all
    destructive: bool = False  # may replace or remove what is there (else it only adds)
    idempotent: bool = False  # a second identical call changes nothing more
    open_world: bool = False  # reaches the network (a forge, the Hub, an inference endpoint)


# Every command but `mcp` itself; a command missing here fails tool_specs() (and so the tests). None is read-only:
# each writes at least the files it is told to (check --csv/--report, system --out).
POLICIES = {
    "run": Policy("Run a benchmark through LoadGen (long-running; writes a run folder)", open_world=True),
    "all": Policy(
        "Run → package → check → pack (→ publish with --fork): the whole pipeline (long-running)",
        destructive=True,
        open_world=True,
    ),
    "fetch": Policy(
        "Download, verify and install a benchmark's checkpoint and data set", idempotent=True, open_world=True
    ),
    "package": Policy("Lay results out as the submission tree (--force replaces a result)", destructive=True),
    "check": Policy("Check a submission tree (writes only the --csv/--report files named)", idempotent=True),
    "pack": Policy("Pack the tarball, summary and companions into --out", idempotent=True),
    "publish": Policy(
        "Push the submission to a fork's branch and open a pull request", destructive=True, open_world=True
    ),
    "system": Policy("Detect or validate the system description (writes only --out)", idempotent=True),
    "ci": Policy("Check the submitters a pull request changes (appends to --summary)"),
    "score": Policy("Verify and rank teams' hand-ins; write the leaderboards into --out", idempotent=True),
}
NOT_TOOLS = {"mcp": "the server itself"}
# Options an agent may not set: they choose which of the server's environment variables is read as a secret, or
# the API host the GitHub token is sent to ($GITHUB_API_URL of the server's environment still applies).
SERVER_ONLY = {
    ("publish", "token_env"): "the token's variable is the server's choice (GITHUB_TOKEN, else GH_TOKEN)",
    ("publish", "api_url"): "where the token is sent comes from the server's $GITHUB_API_URL",
    ("run", "api_key_env"): "which variable holds an endpoint's key is not the agent's choice",
    ("all", "api_key_env"): "which variable holds an endpoint's key is not the agent's choice",
}
# The tool's default where it differs from the CLI's: the structured document, so the agent reads JSON.
TOOL_DEFAULTS = {"json": True}
FORGE_HOSTS = "SUBTOOL_MCP_FORGE_HOSTS"  # forges besides github.com that `publish`/`all --fork` may push to
ENDPOINT_HOSTS = "SUBTOOL_MCP_ENDPOINT_HOSTS"  # inference servers besides loopback that `run/all --endpoint` may use
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|CREDENTIAL|PRIVATE_KEY", re.IGNORECASE)
STDOUT_KEEP = 8 * 1024 * 1024  # bytes of stdout kept to parse the --json document
JSON_SHOWN = 512 * 1024  # a --json document longer than this is not returned (an agent's context is not a disk)
STDOUT_SHOWN = 16 * 1024  # characters of non-JSON stdout returned
STDERR_SHOWN = 16 * 1024  # the last characters of stderr (the human report) returned
JSON_FILE_LIMIT = 4 * 1024 * 1024  # a JSON file the command wrote is read back up to this size
EXIT_MEANING = {0: "ok", 1: "the checker found errors", 2: "bad input or usage", 3: "remote or network failure"}
_JSON_TYPES = {str: "string", Path: "string", int: "integer", float: "number", bool: "boolean"}
_CLICK_TYPES = {"text": str, "path": Path, "integer": int, "float": float, "boolean": bool}


class UnmappedOption(SubtoolError):
    """A CLI parameter this module cannot express as a tool parameter (a bug to fix here, caught by the tests)."""


# ------------------------------------------------------------------------------------ tools from the CLI
@dataclass(frozen=True)
class ToolParam:
    name: str  # the tool parameter: the long flag without dashes (`--from` → from), or the argument's name
    cli: Any  # the click parameter
    base: type  # str, Path, int, float or bool
    many: bool  # repeatable option or variadic argument: a JSON array
    positional: bool

    def schema(self) -> dict:
        item: dict = {"type": _JSON_TYPES[self.base]}
        if self.base is Path:
            item["minLength"] = 1  # an empty path would be the working directory: never what was meant
        prop: dict = {"type": "array", "items": item} if self.many else dict(item)
        help_text = (getattr(self.cli, "help", None) or "").strip()
        if self.base is Path:
            help_text += " (a path on the server's machine, relative to its working directory)"
        if help_text.strip():
            prop["description"] = help_text.strip()
        default = TOOL_DEFAULTS.get(self.name, self.cli.default) if self.base is bool else self.cli.default
        if default is not None and not callable(default) and default != [] and default != ():
            prop["default"] = [str(v) for v in default] if self.many else _jsonable(default)
        if self.many and self.positional and self.cli.required:
            prop["minItems"] = 1
        return prop


@dataclass(frozen=True)
class ToolSpec:
    name: str
    command: Any  # the click command
    policy: Policy
    params: tuple[ToolParam, ...]

    def input_schema(self) -> dict:
        return {
            "type": "object",
            "properties": {p.name: p.schema() for p in self.params},
            "required": [p.name for p in self.params if p.cli.required],
            "additionalProperties": False,
        }

    def description(self) -> str:
        doc = (self.command.help or "").strip().splitlines()[0] if self.command.help else self.policy.title
        return (
            f"`subtool {self.name}`: {doc} Returns the exit code (0 ok, 1 the checker found errors, 2 bad input, "
            "3 remote failure), the --json document, the JSON files it wrote, and stderr's last lines."
        )


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def _base_type(cli_param) -> tuple[type, bool]:
    """The Python type of one value, and whether the parameter takes many (typer's annotation, else click's)."""
    many = bool(cli_param.multiple) or cli_param.nargs == -1
    descriptor = getattr(cli_param, "type_descriptor", None)
    if descriptor is not None:
        annotation = descriptor.annotation
        if get_origin(annotation) is list:
            (annotation,) = get_args(annotation)
            many = True
        base = annotation if annotation in _JSON_TYPES else None
    else:  # typer on click: the click ParamType's name
        base = _CLICK_TYPES.get(getattr(cli_param.type, "name", ""))
    if base is None:
        raise UnmappedOption(f"the option {cli_param.name} has a type the MCP tools cannot express", rule="mcp.type")
    return base, many


def _param_name(cli_param) -> str:
    if cli_param.param_type_name == "argument":
        return cli_param.name
    flag = next((o for o in cli_param.opts if o.startswith("--")), cli_param.opts[0])
    return flag.lstrip("-").replace("-", "_")


def cli_commands(app) -> dict[str, Any]:
    """The commands of a typer app as click sees them (name → command)."""
    import typer.main

    root = typer.main.get_command(app)
    commands = getattr(root, "commands", None)  # an app of one command is that command, not a group
    return dict(commands) if commands is not None else {root.name: root}


def tool_specs(app) -> dict[str, ToolSpec]:
    """One tool per command of the typer app (but NOT_TOOLS), one parameter per option or argument (but
    SERVER_ONLY). The app is passed in (subtool.cli's): cli.py imports this module's server, not the reverse."""
    specs = {}
    for name, command in sorted(cli_commands(app).items()):
        if name in NOT_TOOLS:
            continue
        if name not in POLICIES:
            raise UnmappedOption(
                f"the command {name} has no entry in POLICIES (its tool annotations)", rule="mcp.policy"
            )
        params = []
        for cli_param in command.params:
            if (name, cli_param.name) in SERVER_ONLY:
                continue
            base, many = _base_type(cli_param)
            positional = cli_param.param_type_name == "argument"
            params.append(ToolParam(_param_name(cli_param), cli_param, base, many, positional))
        if len({p.name for p in params}) != len(params):
            raise UnmappedOption(f"two options of {name} map to one tool parameter", rule="mcp.names")
        specs[name] = ToolSpec(name, command, POLICIES[name], tuple(params))
    return specs


# ------------------------------------------------------------------------------------ arguments → argv
def check_arguments(spec: ToolSpec, arguments: dict) -> str | None:
    """The first way the arguments break the tool's schema, as one line; None when they fit."""
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(spec.input_schema()).iter_errors(arguments), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.path) or "arguments"
        return f"{spec.name}: {where}: {err.message}"
    return _unusable_text(spec, arguments)


ARGUMENT_CHARS = 32_768  # a path or a value on a command line; the kernel refuses one argument over 128 KiB


def _unusable_text(spec: ToolSpec, arguments: dict) -> str | None:
    """A text argument no command line can carry (a NUL, half of a UTF-16 pair) or too long for one; the value
    itself is not echoed (it could not be written back either)."""
    for name, value in arguments.items():
        for text in value if isinstance(value, list) else [value]:
            if not isinstance(text, str):
                continue
            why = (
                "holds a NUL character"
                if "\0" in text
                else "holds half of a UTF-16 surrogate pair, which is no character"
                if any("\ud800" <= c <= "\udfff" for c in text)
                else f"is {len(text):,} characters, over the {ARGUMENT_CHARS:,} a command line argument may be"
                if len(text) > ARGUMENT_CHARS
                else None
            )
            if why:
                return f"{spec.name}: {name}: {why}"
    return _too_much_in_all(spec, arguments)


ALL_ARGUMENT_BYTES = 1 << 20  # the whole command line: Linux refuses more than ARG_MAX (2 MiB with the environment)
MOST_ITEMS = 4096  # values of one list argument


def _too_much_in_all(spec: ToolSpec, arguments: dict) -> str | None:
    """Every value fits, but together they would not (100 paths of 32,000 characters): refused as one line
    instead of the child process failing to start with E2BIG."""
    total = 0
    for name, value in arguments.items():
        items = value if isinstance(value, list) else [value]
        if len(items) > MOST_ITEMS:
            return f"{spec.name}: {name}: {len(items):,} values, over the {MOST_ITEMS:,} one argument may hold"
        total += sum(len(str(item).encode("utf-8", "surrogatepass")) + 16 for item in items)
    if total > ALL_ARGUMENT_BYTES:
        return f"{spec.name}: the arguments come to {total:,} bytes, over the {ALL_ARGUMENT_BYTES:,} a command takes"
    return None


def build_argv(spec: ToolSpec, arguments: dict) -> list[str]:
    """The command line that the arguments (already schema-checked) stand for; positionals after `--`, so that
    a value that looks like an option is never read as one."""
    argv, positionals = [spec.name], []
    for p in spec.params:
        value = arguments.get(p.name, TOOL_DEFAULTS.get(p.name) if p.base is bool else None)
        if value is None:
            continue
        values = list(value) if p.many else [value]
        if p.positional:
            positionals += [str(v) for v in values]
        elif p.base is bool:
            flag = p.cli.opts[0] if value else next(iter(p.cli.secondary_opts), None)
            argv += [flag] if flag else []
        else:
            flag = next(o for o in p.cli.opts if o.startswith("--"))
            argv += [f"{flag}={v}" for v in values]
    return argv + (["--", *positionals] if positionals else [])


# ------------------------------------------------------------------------------------ secrets
def listed_hosts(environ, variable: str) -> set[str]:
    """The hosts a comma-separated variable of the server's environment lists, lower-cased."""
    return {h.strip().lower() for h in environ.get(variable, "").split(",") if h.strip()}


def check_fork(spec: ToolSpec, arguments: dict, environ: dict[str, str] | None = None) -> str | None:
    """A fork on a host the server does not trust would be sent the server's GitHub token (git push and the
    API both go to the fork's host): refused, as one line, unless the host is github.com or listed in
    $SUBTOOL_MCP_FORGE_HOSTS (comma-separated) of the server's environment. Local forks carry no token."""
    from subtool.publish.remote import GITHUB_HOST, parse_fork

    if arguments.get("fork") is None or "fork" not in {p.name for p in spec.params}:
        return None
    try:
        fork = parse_fork(str(arguments["fork"]))
    except SubtoolError:
        return None  # the command itself says what is wrong with it
    environ = os.environ if environ is None else environ
    allowed = {GITHUB_HOST} | listed_hosts(environ, FORGE_HOSTS)
    if fork.kind == "local" or fork.host in allowed:
        return None
    return (
        f"{spec.name}: fork: {fork.host} is not a forge this server sends its token to "
        f"(the server's {FORGE_HOSTS} lists the others it may) [mcp.forge_host]"
    )


def check_endpoint(spec: ToolSpec, arguments: dict, environ: dict[str, str] | None = None) -> str | None:
    """An inference endpoint receives the server's key ($OPENAI_API_KEY, which the network SUT sends with every
    request): refused, as one line, unless its host is this machine (127.0.0.1, ::1, localhost) or listed in
    $SUBTOOL_MCP_ENDPOINT_HOSTS (comma-separated) of the server's environment."""
    import urllib.parse

    if arguments.get("endpoint") is None or "endpoint" not in {p.name for p in spec.params}:
        return None
    endpoint = str(arguments["endpoint"])
    try:
        host = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}").hostname
    except ValueError:
        host = None
    environ = os.environ if environ is None else environ
    allowed = LOOPBACK | listed_hosts(environ, ENDPOINT_HOSTS)
    if host is not None and host.lower() in allowed:
        return None
    return (
        f"{spec.name}: endpoint: {host or endpoint!r} is not a server this server sends its API key to "
        f"(this machine is; the server's {ENDPOINT_HOSTS} lists the others it may) [mcp.endpoint_host]"
    )


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """The values of the environment's secret-looking variables (long enough to be a secret), longest first."""
    environ = os.environ if environ is None else environ
    found = {v for k, v in environ.items() if SECRET_NAME.search(k) and len(v.strip()) >= 8}
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret blanked, as it is and as JSON writes it inside a string (a quote, a backslash or
    a non-ASCII letter in a secret is escaped there, and json.loads would turn the escape back into the secret)."""
    for secret in secrets:
        for form in dict.fromkeys((secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1])):
            text = text.replace(form, "***")
    return text


def redact_value(value: object, secrets: list[str]) -> object:
    """A decoded JSON document with every secret blanked in its strings and keys."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact(str(k), secrets): redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v, secrets) for v in value]
    return value
