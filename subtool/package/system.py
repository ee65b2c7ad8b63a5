"""The system description (`systems/<system>.json`): detection, overrides, and validation against the schema.

Detection reads the host (CPU, cores, memory, storage, GPUs through nvidia-smi, OS) and the framework versions
of the run; every field can be overridden from a TOML/JSON file or `key=value` flags. Fields that cannot be
detected get a value that says so, and are listed in `SystemDescription.guessed` so that `subtool system` can
tell the user what to fill in. Validation gives one message per field, naming it and the allowed values.
"""

from __future__ import annotations

import functools
import glob
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subtool import __version__
from subtool.errors import SubtoolError
from subtool.mlperf.layout import check_name
from subtool.schemas import load_schema

SCHEMA_NAME = "system_desc"
NOT_DETECTED = "not detected"
CPU_ONLY_ACCELERATOR = "N/A (CPU only)"
# Keys of an overrides file that are not system fields.
MEASUREMENTS_KEY = "measurements"


def required_fields() -> list[str]:
    return list(load_schema(SCHEMA_NAME)["required"])


@dataclass
class SystemDescription:
    fields: dict[str, Any]
    guessed: list[str] = field(default_factory=list)  # fields filled with a placeholder, to be checked

    def to_json(self) -> str:
        return json.dumps(self.fields, indent=2) + "\n"


# --------------------------------------------------------------------------------------------- probing
def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _human_bytes(n: float) -> str:
    gb = n / 1e9
    if gb >= 1000:
        return f"{gb / 1000:.1f} TB"
    return f"{gb:.0f} GB" if gb >= 10 else f"{gb:.1f} GB"


def _cpu_info() -> dict[str, Any]:
    text = _read("/proc/cpuinfo") or ""
    model = None
    sockets: set[str] = set()
    cores_per_socket = None
    mhz = None
    for line in text.splitlines():
        if ":" not in line:
            continue
        k, v = (s.strip() for s in line.split(":", 1))
        if k in ("model name", "Processor", "cpu model") and not model:
            model = v
        elif k == "physical id":
            sockets.add(v)
        elif k == "cpu cores" and cores_per_socket is None and v.isdigit():
            cores_per_socket = int(v)
        elif k == "cpu MHz" and mhz is None:
            try:
                mhz = float(v)
            except ValueError:
                pass
    max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_khz and max_khz.strip().isdigit():
        mhz = int(max_khz.strip()) / 1000
    n_sockets = max(1, len(sockets))
    logical = os.cpu_count() or 1
    if cores_per_socket is None:
        cores_per_socket = max(1, logical // n_sockets)
    caches = []
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for idx in sorted(base.glob("index*")) if base.is_dir() else []:
        level, kind, size = (_read(str(idx / n)) for n in ("level", "type", "size"))
        if level and size:
            tag = {"Data": "d", "Instruction": "i"}.get((kind or "").strip(), "")
            caches.append(f"L{level.strip()}{tag} {size.strip()}")
    return {
        "model": model or platform.processor() or NOT_DETECTED,
        "sockets": n_sockets,
        "cores_per_socket": cores_per_socket,
        "logical": logical,
        "frequency": f"{mhz:.0f} MHz" if mhz else NOT_DETECTED,
        "caches": ", ".join(caches) if caches else NOT_DETECTED,
    }


def _memory_bytes() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def _storage(path: str = "/") -> tuple[str, str]:
    try:
        total = shutil.disk_usage(path).total
    except OSError:
        return NOT_DETECTED, NOT_DETECTED
    kinds = set()
    for dev in Path("/sys/block").glob("*"):
        if dev.name.startswith(("loop", "ram", "zram", "dm-", "sr")):
            continue
        rot = _read(str(dev / "queue" / "rotational"))
        if rot is None:
            continue
        kinds.add("NVMe SSD" if dev.name.startswith("nvme") else ("HDD" if rot.strip() == "1" else "SSD"))
    return _human_bytes(total), " + ".join(sorted(kinds)) if kinds else NOT_DETECTED


def _network() -> tuple[str, int]:
    nics = []
    for dev in sorted(Path("/sys/class/net").glob("*")):
        if (dev / "device").exists():  # physical (or paravirtual) NICs, not lo/bridges/ifb
            speed = (_read(str(dev / "speed")) or "").strip()
            nics.append(
                f"{dev.name}"
                + (f" {int(speed) // 1000} Gbit/s" if speed.lstrip("-").isdigit() and int(speed) >= 1000 else "")
            )
    return (f"Ethernet ({', '.join(nics)})" if nics else "none"), len(nics)


def _nvidia_smi() -> list[dict[str, str]]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    query = "name,memory.total,clocks.max.sm,pcie.link.gen.max,pcie.link.width.max,driver_version"
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 6:
            gpus.append(dict(zip(("name", "memory_mib", "sm_mhz", "pcie_gen", "pcie_width", "driver"), parts)))
    return gpus


def _driver_gpus() -> list[dict[str, str]]:
    """Only when nvidia-smi is absent: the model names the NVIDIA driver lists under /proc (no memory size, which
    the description then marks as not detected). packaging never imports torch (docs/architecture.md)."""
    gpus = []
    for info in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        text = _read(info) or ""
        model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model:")), "")
        if model:
            gpus.append({"name": model, "memory_mib": "", "sm_mhz": "", "pcie_gen": "", "pcie_width": "", "driver": ""})
    return gpus


def _os_name() -> str:
    try:
        pretty = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        pretty = None
    return f"{pretty or platform.system()} (kernel {platform.release()})"


def _pkg_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def probe_host() -> dict[str, Any]:
    """Everything detection reads from this machine (cached: it does not change within a process)."""
    gpus = _nvidia_smi() or _driver_gpus()
    storage_cap, storage_type = _storage()
    networking, nic_count = _network()
    return {
        "cpu": _cpu_info(),
        "memory": _memory_bytes(),
        "storage": (storage_cap, storage_type),
        "network": (networking, nic_count),
        "gpus": gpus,
        "os": _os_name(),
    }


# ------------------------------------------------------------------------------------------ detection
def _framework(versions: dict[str, str]) -> str:
    names = (
        ("torch", "PyTorch"),
        ("transformers", "transformers"),
        ("tensorrt", "TensorRT"),
        ("onnxruntime", "ONNX Runtime"),
        ("vllm", "vLLM"),
        ("tensorflow", "TensorFlow"),
    )
    parts = [f"{label} {versions[k]}" for k, label in names if versions.get(k)]
    if not parts:
        parts = [f"{label} {v}" for k, label in names[:2] if (v := _pkg_version(k))]
    return ", ".join(parts) if parts else NOT_DETECTED


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


def _host_fields(host: dict[str, Any]) -> dict[str, Any]:
    """The host half of a description: processors, memory, storage, network, OS."""
    cpu = host["cpu"]
    mem = host["memory"]
    return {
        "number_of_nodes": 1,
        "host_processor_model_name": cpu["model"],
        "host_processors_per_node": cpu["sockets"],
        "host_processor_core_count": cpu["cores_per_socket"],
        "host_processor_frequency": cpu["frequency"],
        "host_processor_caches": cpu["caches"],
        "host_processor_interconnect": "N/A" if cpu["sockets"] == 1 else NOT_DETECTED,
        "host_memory_capacity": _human_bytes(mem) if mem else NOT_DETECTED,
        "host_memory_configuration": f"{_human_bytes(mem)} total, module layout {NOT_DETECTED}"
        if mem
        else NOT_DETECTED,
        "host_storage_capacity": host["storage"][0],
        "host_storage_type": host["storage"][1],
        "host_networking": host["network"][0],
        "host_network_card_count": str(host["network"][1]),
        "host_networking_topology": "N/A (single node)",
        "cooling": NOT_DETECTED,
        "operating_system": host["os"],
    }


def _accelerator_fields(gpus: list[dict[str, str]]) -> tuple[dict[str, Any], list[str]]:
    """The accelerator half, from the first GPU (and the fields left to the user); CPU-only hosts say so."""
    if not gpus:
        # CPU-only: the checker reads 0 as "empty", so the count is the string "0". The model name reaches the
        # summary, where a bare "N/A" becomes null in the JSON (pandas reads it as missing) but stays in the CSV.
        return {
            "accelerators_per_node": "0",
            "accelerator_model_name": CPU_ONLY_ACCELERATOR,
            "accelerator_memory_capacity": "N/A",
            "accelerator_memory_configuration": "N/A",
            "accelerator_frequency": "N/A",
            "accelerator_host_interconnect": "N/A",
            "accelerator_interconnect": "N/A",
            "accelerator_interconnect_topology": "N/A",
            "accelerator_on-chip_memories": "N/A",
        }, []
    g = gpus[0]
    fields = {
        "accelerators_per_node": len(gpus),
        "accelerator_model_name": g["name"],
        "accelerator_memory_capacity": f"{round(int(g['memory_mib']) / 1024)} GB"
        if g["memory_mib"].isdigit()
        else NOT_DETECTED,
        "accelerator_memory_configuration": NOT_DETECTED,
        "accelerator_frequency": f"{g['sm_mhz']} MHz" if g["sm_mhz"].isdigit() else NOT_DETECTED,
        "accelerator_host_interconnect": (
            f"PCIe Gen{g['pcie_gen']} x{g['pcie_width']}" if g["pcie_gen"].isdigit() else "PCIe"
        ),
        "accelerator_interconnect": "N/A" if len(gpus) == 1 else NOT_DETECTED,
        "accelerator_interconnect_topology": "N/A" if len(gpus) == 1 else NOT_DETECTED,
        "accelerator_on-chip_memories": "",
    }
    guessed = ["accelerator_memory_configuration"]
    if len(gpus) > 1:
        guessed += ["accelerator_interconnect", "accelerator_interconnect_topology"]
    return fields, guessed


def _software_stack(versions: dict[str, str], gpus: list[dict[str, str]]) -> str:
    stack = [f"Python {versions.get('python') or platform.python_version()}"]
    lg = versions.get("loadgen") or _pkg_version("mlcommons-loadgen")
    if lg:
        stack.append(f"mlcommons-loadgen {lg}")
    if gpus and gpus[0].get("driver"):
        stack.append(f"NVIDIA driver {gpus[0]['driver']}")
    stack.append(f"subtool {__version__}")
    return ", ".join(stack)


def detect_system(
    *,
    submitter: str,
    division: str,
    system_type: str = "edge",
    versions: dict[str, str] | None = None,
    demo: bool = False,
    status: str = "available",
) -> SystemDescription:
    """Describe this host as the official checker wants it; placeholders are listed in `.guessed`."""
    if submitter:  # the submitter folder's name: the tree's one alphabet (empty: left for the user to fill in)
        check_name(submitter, "submitter", flag="--submitter")
    host = probe_host()
    versions = dict(versions or {})
    f: dict[str, Any] = {
        "division": division,
        "submitter": submitter,
        "status": status,
        "system_type": system_type,
        "system_type_detail": "",
        "system_name": "",
        **_host_fields(host),
        "framework": _framework(versions),
        "hw_notes": "",
        "sw_notes": "",
    }
    guessed = ["cooling", "host_memory_configuration"]
    accelerator, accelerator_guessed = _accelerator_fields(host["gpus"])
    f.update(accelerator)
    guessed += accelerator_guessed
    f["other_software_stack"] = _software_stack(versions, host["gpus"])
    guessed += [k for k, v in f.items() if v == NOT_DETECTED and k not in guessed]
    if demo:
        f["hw_notes"] = "DEMO: embedded demo run (random weights); not a benchmark result."
        f["sw_notes"] = "DEMO: produced by `subtool all` without a model or data set."
    f["system_name"] = default_system_name(f, demo=demo)
    return SystemDescription(fields=f, guessed=guessed)


# ------------------------------------------------------------------------------------------ overrides
def load_overrides(path: Path) -> dict[str, Any]:
    """Read a TOML or JSON overrides file: system fields at the top, an optional [measurements] table."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SubtoolError(
            f"cannot read system overrides: {exc.strerror}", path=path, rule="system.bad_overrides"
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
    else:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise SubtoolError(
                f"not valid JSON: {exc}",
                path=path,
                rule="system.bad_overrides",
                hint="use a .toml file, or JSON with an object at the top",
            ) from None
    if not isinstance(data, dict):
        raise SubtoolError("overrides must be a table/object of field = value", path=path, rule="system.bad_overrides")
    return data


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


def check_known_field(name: str, *, flag: str = "--set") -> None:
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


def split_overrides(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(system fields, measurements fields) of an overrides document."""
    data = dict(data)
    meas = data.pop(MEASUREMENTS_KEY, None) or {}
    if not isinstance(meas, dict):
        raise SubtoolError("'measurements' must be a table of measurements.json fields", rule="system.bad_overrides")
    return data, meas


def apply_overrides(desc: SystemDescription, overrides: dict[str, Any]) -> SystemDescription:
    fields = dict(desc.fields)
    fields.update(overrides)
    return SystemDescription(fields=fields, guessed=[g for g in desc.guessed if g not in overrides])


# ----------------------------------------------------------------------------------------- validation
def _field_of(err) -> str:
    if err.validator == "required":
        m = re.search(r"'([^']+)' is a required property", err.message)
        return m.group(1) if m else "?"
    return ".".join(str(p) for p in err.absolute_path) or "(document)"


def _message(err, schema: dict) -> str:
    name = _field_of(err)
    value = err.instance
    prop = schema["properties"].get(name, {})
    if err.validator == "required":
        return f"field '{name}' is missing (the official checker requires it)"
    if "enum" in prop and err.validator in ("enum", "not", "pattern", "type"):
        allowed = ", ".join(str(a) for a in dict.fromkeys(str(x).lower() for x in prop["enum"]))
        return f"field '{name}' is {value!r}; allowed values: {allowed}"
    if err.validator == "not" or (err.validator == "pattern" and isinstance(value, str) and not value.strip()):
        if value == 0:
            return f"field '{name}' is 0, which the official checker reads as empty; write \"0\" (a string)"
        return f"field '{name}' is empty; the official checker needs a meaningful value"
    if err.validator == "anyOf":
        if name in ("accelerators_per_node", "host_network_card_count"):
            return (
                f"field '{name}' is {value!r}; allowed values: a whole number ≥ 1, or \"0\" as a string "
                f"(the checker reads the number 0 as empty)"
            )
        return f"field '{name}' is {value!r}; allowed values: a whole number ≥ 1 (e.g. 1 or \"1\")"
    if err.validator == "type":
        return f"field '{name}' is {value!r}; allowed values: text or a number"
    return f"field '{name}': {err.message}"


def validation_errors(
    fields: dict[str, Any], *, division: str | None = None, submitter: str | None = None
) -> list[str]:
    """Every problem with a system description, one message per field (empty list: valid)."""
    from jsonschema import Draft202012Validator

    schema = load_schema(SCHEMA_NAME)
    if not isinstance(fields, dict):
        return ["the system description must be a JSON object"]
    errors = []
    seen = set()
    for err in sorted(Draft202012Validator(schema).iter_errors(fields), key=lambda e: str(_field_of(e))):
        name = _field_of(err)
        if name in seen:
            continue
        seen.add(name)
        errors.append(_message(err, schema))
    if division and str(fields.get("division", "")).lower() not in ("", division.lower()) and "division" not in seen:
        errors.append(
            f"field 'division' is {fields.get('division')!r} but the result is in the {division} "
            f"division; allowed values: {division}"
        )
    if (
        submitter
        and isinstance(fields.get("submitter"), str)
        and fields["submitter"]
        and fields["submitter"].lower() != submitter.lower()
    ):
        errors.append(
            f"field 'submitter' is {fields['submitter']!r} but the submitter directory is "
            f"{submitter!r}; allowed values: {submitter}"
        )
    return errors


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
