"""The system description (`systems/<system>.json`): detection, overrides, and validation against the schema.

Detection (subtool/hostinfo: fields.py and its readers: psutil, NVML, amdsmi, dmidecode, else /proc, /sys,
lscpu, nvidia-smi) reads the host and the framework versions
of the run; every field can be overridden from a TOML/JSON file or `key=value` flags. Fields that cannot be
detected get a value that says so, and are listed in `SystemDescription.guessed` so that `subtool system` can
tell the user what to fill in. Validation gives one message per field, naming it and the allowed values.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subtool import __version__
from subtool.errors import SubtoolError
from subtool.hostinfo.fields import (
    CPU_ONLY_ACCELERATOR,
    GUESSED,
    MIXED_GPUS,
    NOT_DETECTED,
    accelerator_fields,
    host_fields,
    probe_host,
    software_stack,
)
from subtool.mlperf.layout import check_name
from subtool.mlperf.logs import describe_os_error, parse_json, read_bounded
from subtool.schemas import load_schema

SCHEMA_NAME = "system_desc"
# Keys of an overrides file that are not system fields.
MEASUREMENTS_KEY = "measurements"


def required_fields() -> list[str]:
    return list(load_schema(SCHEMA_NAME)["required"])


@dataclass
class SystemDescription:
    fields: dict[str, Any]
    guessed: list[str] = field(default_factory=list)  # fields filled with a placeholder, to be checked
    sources: dict[str, str] = field(default_factory=dict)  # field → where its value came from (--explain)

    def to_json(self) -> str:
        return json.dumps(self.fields, indent=2) + "\n"


# ------------------------------------------------------------------------------------------ detection
def _pkg_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _framework(versions: dict[str, str]) -> tuple[str, str]:
    names = (
        ("torch", "PyTorch"),
        ("transformers", "transformers"),
        ("tensorrt", "TensorRT"),
        ("onnxruntime", "ONNX Runtime"),
        ("vllm", "vLLM"),
        ("tensorflow", "TensorFlow"),
    )
    parts = [f"{label} {versions[k]}" for k, label in names if versions.get(k)]
    if parts:
        return ", ".join(parts), "input: the run's record (run.json versions)"
    parts = [f"{label} {v}" for k, label in names[:2] if (v := _pkg_version(k))]
    return (", ".join(parts), "library: importlib.metadata (installed packages)") if parts else (NOT_DETECTED, GUESSED)


def _short_cpu(model: str) -> str:
    s = re.sub(r"\((R|TM|tm|r)\)|\bCPU\b|\bProcessor\b|@.*$|\d+-Core", " ", model)
    return "_".join(s.split()) or "CPU"


def default_system_name(fields: dict[str, Any], *, demo: bool = False) -> str:
    """A directory-safe system name from the hardware, e.g. `1xNVIDIA_H100_80GB_HBM3_2xAMD_EPYC_9654`."""
    cpu = (
        f"{fields.get('host_processors_per_node', 1)}x{_short_cpu(str(fields.get('host_processor_model_name', 'CPU')))}"
    )
    n_acc = str(fields.get("accelerators_per_node", "0")).strip()
    name = cpu
    if n_acc not in ("0", "") and fields.get("accelerator_model_name") not in (None, "", "N/A", CPU_ONLY_ACCELERATOR):
        name = f"{n_acc}x{'_'.join(str(fields['accelerator_model_name']).split())}_{cpu}"
    name = re.sub(r"[^A-Za-z0-9.+-]+", "_", name).strip("._")
    if demo and "demo" not in name.lower():
        name += "-demo"
    return name


def detect_system(
    *,
    submitter: str,
    division: str,
    system_type: str = "edge",
    versions: dict[str, str] | None = None,
    demo: bool = False,
    status: str = "available",
) -> SystemDescription:
    """Describe this host as the official checker wants it; placeholders are listed in `.guessed`, and where
    each value came from in `.sources`."""
    if submitter:  # the submitter folder's name: the tree's one alphabet (empty: left for the user to fill in)
        check_name(submitter, "submitter", flag="--submitter")
    host = probe_host()
    versions = dict(versions or {})
    given = "input: subtool's arguments"
    f: dict[str, Any] = {
        "division": division,
        "submitter": submitter,
        "status": status,
        "system_type": system_type,
        "system_type_detail": "",
        "system_name": "",
    }
    sources = dict.fromkeys(f, given) | {"system_type_detail": "default: empty"}
    host_f, host_src = host_fields(host)
    framework, framework_src = _framework(versions)
    f.update(host_f, framework=framework, hw_notes="", sw_notes="")
    sources.update(host_src, framework=framework_src, hw_notes="default: empty", sw_notes="default: empty")
    acc_f, acc_src = accelerator_fields(host["gpus"])
    f.update(acc_f)
    sources.update(acc_src)
    loadgen = versions.get("loadgen") or _pkg_version("mlcommons-loadgen")
    f["other_software_stack"] = software_stack(versions, host["gpus"], loadgen, __version__)
    sources["other_software_stack"] = "derived: Python, LoadGen, GPU driver and subtool versions"
    if demo:
        f["hw_notes"] = "DEMO: embedded demo run (random weights), not a benchmark result"  # joined with ". "
        f["sw_notes"] = "DEMO: produced by `subtool all` without a model or data set"
        sources["hw_notes"] = sources["sw_notes"] = "input: a demo run"
    f["system_name"] = default_system_name(f, demo=demo)
    sources["system_name"] = "derived: from the processor and accelerator fields"
    guessed = ["cooling"] + [
        k for k, v in f.items() if (v == NOT_DETECTED or sources[k].startswith(MIXED_GPUS)) and k != "cooling"
    ]
    return SystemDescription(fields=f, guessed=guessed, sources=sources)


def explain_table(desc: SystemDescription) -> str:
    """`subtool system --explain`: each field, its value and where the value came from."""
    from tabulate import tabulate

    rows = []
    for name, value in desc.fields.items():
        source = desc.sources.get(name, "override")
        if name in desc.guessed and not source.startswith(GUESSED):
            source = f"{GUESSED} ({source})"
        rows.append((name, json.dumps(value) if not isinstance(value, str) else value, source))
    return tabulate(rows, headers=("field", "value", "source"), tablefmt="simple", disable_numparse=True)


# ------------------------------------------------------------------------------------------ overrides
OVERRIDES_LIMIT_BYTES = 1 << 20  # a system description is a few kB


def load_overrides(path: Path) -> dict[str, Any]:
    """Read a TOML or JSON overrides file: system fields at the top, an optional [measurements] table.

    A regular file of at most 1 MiB (the user's own: a link to one is followed); every top-level key a known
    system field (a typo would vanish into the JSON); every value one JSON can hold."""
    path = Path(path)
    try:
        raw = read_bounded(path, OVERRIDES_LIMIT_BYTES, follow_links=True)
    except OSError as exc:
        raise SubtoolError(
            f"system overrides {describe_os_error(exc)}", path=path, rule="system.bad_overrides"
        ) from None
    if path.suffix.lower() == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise SubtoolError(f"not valid TOML: {exc}", path=path, rule="system.bad_overrides") from None
        except RecursionError:
            raise SubtoolError("is nested too deeply to read", path=path, rule="system.bad_overrides") from None
    else:
        data, problem = parse_json(raw, unique_keys=True)  # strict: NaN, Infinity and repeated keys refused
        if problem is not None:
            raise SubtoolError(
                f"the file {problem}",
                path=path,
                rule="system.bad_overrides",
                hint="use a .toml file, or JSON with an object at the top",
            )
    if not isinstance(data, dict):
        raise SubtoolError("overrides must be a table/object of field = value", path=path, rule="system.bad_overrides")
    _refuse_non_json(data, path)
    for key in data:
        if key != MEASUREMENTS_KEY:
            check_known_field(key, flag="the key", path=path)
    return data


_MOST_DEPTH = 64  # a system description is two levels deep; TOML's dotted keys build any depth without recursing


def _refuse_non_json(value: Any, path: Path) -> None:
    """TOML has nan, inf, dates and times; JSON (what systems/*.json is) has none of them, and the checker fails
    non-finite numbers. Walked without recursion: `[a.a.a…]` 5,000 deep is one line too."""
    import datetime

    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > _MOST_DEPTH:
            raise SubtoolError("is nested too deeply to read", path=path, rule="system.bad_overrides")
        if isinstance(item, float) and not math.isfinite(item):
            raise SubtoolError(
                f"{where or 'a value'} is {item}, not a finite number (JSON has no NaN or Infinity)",
                path=path,
                rule="system.bad_overrides",
            )
        if isinstance(item, (datetime.date, datetime.time)):  # datetime is a date
            raise SubtoolError(
                f"{where or 'a value'} is a TOML date or time ({item}), not text or a number: quote it",
                path=path,
                rule="system.bad_overrides",
            )
        if isinstance(item, dict):
            stack += [(v, f"{where}.{k}" if where else str(k), depth + 1) for k, v in item.items()]
        elif isinstance(item, list):
            stack += [(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item)]


# Fields the official checker reads beyond the schema's own: a power submission's, the network division's, and
# the nameplate power it takes from the description when there is no nameplate file.
POWER_FIELDS = (
    "power_management",
    "filesystem",
    "boot_firmware_version",
    "management_firmware_version",
    "other_hardware",
    "number_of_type_nics_installed",
    "nics_enabled_firmware",
    "nics_enabled_os",
    "nics_enabled_connected",
    "network_speed_mbit",
    "power_supply_quantity_and_rating_watts",
    "power_supply_details",
    "disk_drives",
    "disk_controllers",
    "system_power_only",
    "system_power_capacity",
)
NETWORK_FIELDS = (
    "is_network",
    "network_type",
    "network_media",
    "network_rate",
    "nic_loadgen",
    "number_nic_loadgen",
    "net_software_stack_loadgen",
    "network_protocol",
    "number_connections",
    "nic_sut",
    "number_nic_sut",
    "net_software_stack_sut",
    "network_topology",
)


def known_fields() -> set[str]:
    return set(load_schema(SCHEMA_NAME)["properties"]) | set(POWER_FIELDS) | set(NETWORK_FIELDS)


def check_known_field(name: str, *, flag: str = "--set", path: Path | None = None) -> None:
    """A field name nobody reads is a typo: one line naming it and the schema, with the nearest known names."""
    import difflib

    known = known_fields()
    if name in known:
        return
    near = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    guess = f"; did you mean {' or '.join(near)}?" if near else ""
    raise SubtoolError(
        f"{flag} {name!r}: unknown system field, not in the system description schema "
        f"(subtool/schemas/{SCHEMA_NAME}.schema.json) nor among the official checker's power and "
        f"network fields{guess}",
        path=path,
        rule="system.unknown_field",
    )


def parse_set(items: list[str]) -> dict[str, str]:
    """`--set key=value` pairs; values stay strings (the checker treats 0 as empty, "0" is fine). A key that is
    no system field is refused (a typo would otherwise vanish into the JSON unnoticed)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise SubtoolError(f"--set {item!r} must be key=value", rule="cli.usage", hint="e.g. --set cooling=air")
        k, v = item.split("=", 1)
        check_known_field(k.strip())
        out[k.strip()] = v.strip()
    return out


def split_overrides(data: dict[str, Any], path: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(system fields, measurements fields) of an overrides document (read from `path`)."""
    data = dict(data)
    meas = data.pop(MEASUREMENTS_KEY, None) or {}
    if not isinstance(meas, dict):
        raise SubtoolError(
            "'measurements' must be a table of measurements.json fields", path=path, rule="system.bad_overrides"
        )
    return data, meas


def apply_overrides(
    desc: SystemDescription, overrides: dict[str, Any], *, source: str = "override"
) -> SystemDescription:
    """The description with these fields replaced; `source` says where they came from (--explain)."""
    fields = dict(desc.fields)
    fields.update(overrides)
    sources = {**desc.sources, **dict.fromkeys(overrides, source)}
    return SystemDescription(fields=fields, guessed=[g for g in desc.guessed if g not in overrides], sources=sources)


# ----------------------------------------------------------------------------------------- validation
def _field_of(err) -> str:
    if err.validator == "required":
        m = re.search(r"'([^']+)' is a required property", err.message)
        return m.group(1) if m else "?"
    return ".".join(str(p) for p in err.absolute_path) or "(document)"


# Fields whose allowed values the schema's enum or type says less plainly than these words.
ALLOWED_WORDS = {
    "is_network": '"true" or "false", as a string',
    "hw_notes": "text (a string): the checker's summary joins the notes as text",
    "sw_notes": "text (a string): the checker's summary joins the notes as text",
}


def _message(err, schema: dict) -> str:
    name = _field_of(err)
    value = err.instance
    prop = schema["properties"].get(name, {})
    if err.validator == "required":
        return f"field '{name}' is missing (the official checker requires it)"
    if name in ALLOWED_WORDS and err.validator in ("enum", "type"):
        return f"field '{name}' is {_shown(value)}; allowed values: {ALLOWED_WORDS[name]}"
    if "enum" in prop and err.validator in ("enum", "not", "pattern", "type"):
        allowed = ", ".join(str(a) for a in dict.fromkeys(str(x).lower() for x in prop["enum"]))
        return f"field '{name}' is {_shown(value)}; allowed values: {allowed}"
    if err.validator == "not" or (err.validator == "pattern" and isinstance(value, str) and not value.strip()):
        if value == 0:
            return f"field '{name}' is 0, which the official checker reads as empty; write \"0\" (a string)"
        return f"field '{name}' is empty; the official checker needs a meaningful value"
    if err.validator == "anyOf":
        if name in ("accelerators_per_node", "host_network_card_count"):
            return (
                f"field '{name}' is {_shown(value)}; allowed values: a whole number ≥ 1, or \"0\" as a string "
                f"(the checker reads the number 0 as empty)"
            )
        return f"field '{name}' is {_shown(value)}; allowed values: a whole number ≥ 1 (e.g. 1 or \"1\")"
    if err.validator == "type":
        return f"field '{name}' is {_shown(value)}; allowed values: text or a number"
    return f"field '{name}': {_shown(err.message, quote=False)}"


def _shown(value: object, *, quote: bool = True) -> str:
    """A value as an error line quotes it: its repr, cut at 120 characters (a 500 kB value is one line still)."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def validation_errors(
    fields: dict[str, Any], *, division: str | None = None, submitter: str | None = None
) -> list[str]:
    """Every problem with a system description, one message per field (empty list: valid)."""
    if not isinstance(fields, dict):
        return ["the system description must be a JSON object"]
    return [message for _, message in field_errors(fields, division=division, submitter=submitter)]


def field_errors(
    fields: dict[str, Any], *, division: str | None = None, submitter: str | None = None
) -> list[tuple[str, str]]:
    """(field, message) for each field of a system description (a JSON object) with a problem."""
    from jsonschema import Draft202012Validator

    schema = load_schema(SCHEMA_NAME)
    errors = []
    seen = set()
    for err in sorted(Draft202012Validator(schema).iter_errors(fields), key=lambda e: str(_field_of(e))):
        name = _field_of(err)
        if name in seen:
            continue
        seen.add(name)
        errors.append((name, _message(err, schema)))
    for name, value in fields.items():  # into the README tables, the .md report and terminals: one printable line
        if name not in seen and isinstance(value, str) and (problem := _text_problem(value)):
            errors.append((name, f"field '{name}' holds {problem}: {_shown(value)}"))
    errors += _count_errors(fields, seen)
    errors += _network_errors(fields, division, seen)
    if division and str(fields.get("division", "")).lower() not in ("", division.lower()) and "division" not in seen:
        errors.append(
            (
                "division",
                f"field 'division' is {fields.get('division')!r} but the result is in the {division} "
                f"division; allowed values: {division}",
            )
        )
    if (
        submitter
        and isinstance(fields.get("submitter"), str)
        and fields["submitter"]
        and fields["submitter"].lower() != submitter.lower()
    ):
        errors.append(
            (
                "submitter",
                f"field 'submitter' is {fields['submitter']!r} but the submitter directory is "
                f"{submitter!r}; allowed values: {submitter}",
            )
        )
    return errors


def _count_errors(fields: dict[str, Any], seen: set[str]) -> list[tuple[str, str]]:
    """Counts the schema takes but no real system has (10^300 accelerators, 10^7 nodes): mlperf/system_counts.py."""
    from subtool.mlperf.system_counts import allowed, count_problem

    found = ((name, count_problem(name, value)) for name, value in fields.items() if name not in seen)
    return [(name, f"field '{name}' {problem}; allowed values: {allowed(name)}") for name, problem in found if problem]


_NETWORK_DIVISION_NEEDS = (
    "field 'is_network' is missing (the official checker requires it in the network division); "
    'allowed values: "true", with the network fields'
)


def _network_errors(fields: dict[str, Any], division: str | None, seen: set[str]) -> list[tuple[str, str]]:
    """is_network as the checker reads it: any value asks for every network field, and only the network
    division may say "true"."""
    raw = fields.get("is_network")
    if "is_network" in seen:
        return []
    if not raw:
        return [] if division != "network" else [("is_network", _NETWORK_DIVISION_NEEDS)]
    errors = [
        (name, f"field '{name}' is missing (the official checker requires it when is_network is set: {raw!r})")
        for name in NETWORK_FIELDS
        if name not in fields
    ]
    says = str(raw).lower() == "true"
    if division in ("network", "closed") and says != (division == "network"):
        want = '"true"' if division == "network" else '"false" or no is_network'
        errors.append(
            ("is_network", f"field 'is_network' is {raw!r} in the {division} division; allowed values: {want}")
        )
    return errors


def _text_problem(text: str) -> str:
    """What keeps a value off one printable line of UTF-8 (the README tables, the .md report, terminals); ""
    when nothing does. A no-break space is fine."""
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):  # JSON's "\ud800" alone: no UTF-8 file can hold it
        return "a lone surrogate (half of a character), which no UTF-8 file can hold"
    if any(
        ord(c) < 0x20
        or 0x7F <= ord(c) <= 0x9F
        or c in "\u2028\u2029"  # line and paragraph separators: line breaks to Python and JavaScript
        or 0x202A <= ord(c) <= 0x202E
        or 0x2066 <= ord(c) <= 0x2069
        for c in text
    ):
        return "a line break or another control character"
    return ""


def validate_system(
    fields: dict[str, Any], *, path: Path | str | None = None, division: str | None = None, submitter: str | None = None
) -> None:
    """Raise one SubtoolError listing every problem (fields named, allowed values given)."""
    errors = validation_errors(fields, division=division, submitter=submitter)
    if errors:
        raise SubtoolError(
            "invalid system description: " + "; ".join(errors),
            path=path,
            rule="system.invalid",
            hint="fix the fields in your overrides file (--system-file) or with `subtool system --set key=value`",
        )
