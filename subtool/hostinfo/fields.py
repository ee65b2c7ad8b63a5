"""This host as system-description fields, each with the source it came from (for `subtool system --explain`).

`probe_host()` asks the readers once per process (hostinfo.host, .memory, .gpu, .amd); the field builders
turn what they found into the official checker's fields. A field nobody could detect is "not detected" with the
source "guessed", and detect_system lists it for the user to fill in.
"""

from __future__ import annotations

import functools
import platform
from collections import Counter
from dataclasses import replace
from typing import Any

from subtool.hostinfo import amd, gpu, memory
from subtool.hostinfo import host as readers
from subtool.hostinfo.gpu import Gpu, GpuScan
from subtool.hostinfo.host import NOT_DETECTED, human_bytes

CPU_ONLY_ACCELERATOR = "N/A (CPU only)"
GUESSED = "guessed"
Sourced = tuple[dict[str, Any], dict[str, str]]  # (fields, field → source)


def detect_gpus() -> GpuScan | None:
    """The first source that sees GPUs: NVML, nvidia-smi, amdsmi, the NVIDIA driver's /proc, amdgpu's sysfs."""
    for scan in (
        gpu.nvml_scan,
        gpu.nvidia_smi_scan,
        amd.amdsmi_scan,
        gpu.proc_nvidia_scan,
        amd.sysfs_amd_scan,
    ):
        found = scan()
        if found is not None and found.gpus:
            return found
    return None


@functools.lru_cache(maxsize=1)
def probe_host() -> dict[str, Any]:
    """Everything detection reads from this machine (cached: it does not change within a process)."""
    cpu, cpu_sources = readers.cpu_info()
    return {
        "cpu": cpu,
        "cpu_sources": cpu_sources,
        "memory": readers.memory_bytes(),
        "memory_config": memory.memory_configuration(),
        "storage": readers.storage(),
        "network": readers.network(),
        "gpus": detect_gpus(),
        "os": readers.os_name(),
    }


def _memory_fields(host: dict[str, Any]) -> Sourced:
    mem, mem_src = host["memory"]
    config, config_src = host["memory_config"]
    return (
        {
            "host_memory_capacity": human_bytes(mem) if mem else NOT_DETECTED,
            "host_memory_configuration": config or NOT_DETECTED,
        },
        {"host_memory_capacity": mem_src if mem else GUESSED, "host_memory_configuration": config_src},
    )


def host_fields(host: dict[str, Any]) -> Sourced:
    """The host half of a description: processors, memory, storage, network, OS."""
    cpu, src = host["cpu"], host["cpu_sources"]
    (cap, cap_src), (kind, kind_src) = host["storage"]
    networking, nics, net_src = host["network"]
    mem_fields, mem_sources = _memory_fields(host)
    fields = {
        "number_of_nodes": 1,
        "host_processor_model_name": cpu["model"],
        "host_processors_per_node": cpu["sockets"],
        "host_processor_core_count": cpu["cores_per_socket"],
        "host_processor_frequency": cpu["frequency"],
        "host_processor_caches": cpu["caches"],
        "host_processor_interconnect": "N/A" if cpu["sockets"] == 1 else NOT_DETECTED,
        **mem_fields,
        "host_storage_capacity": cap,
        "host_storage_type": kind,
        "host_networking": networking,
        "host_network_card_count": str(nics),
        "host_networking_topology": "N/A (single node)",
        "cooling": NOT_DETECTED,
        "operating_system": host["os"],
    }
    sources = {
        "number_of_nodes": "default: one node (the run's record widens it)",
        "host_processor_model_name": src["model"],
        "host_processors_per_node": src["sockets"],
        "host_processor_core_count": src["cores_per_socket"],
        "host_processor_frequency": src["frequency"],
        "host_processor_caches": src["caches"],
        "host_processor_interconnect": "derived: one socket" if cpu["sockets"] == 1 else GUESSED,
        "host_storage_capacity": cap_src,
        "host_storage_type": kind_src,
        "host_networking": net_src,
        "host_network_card_count": net_src,
        "host_networking_topology": "default: single node",
        "cooling": GUESSED,
        "operating_system": "library: platform (/etc/os-release, uname)",
        **mem_sources,
    }
    return fields, sources


CPU_ONLY_FIELDS = {
    # the checker reads 0 as "empty", so the count is the string "0". The model name reaches the summary, where
    # a bare "N/A" becomes null in the JSON (pandas reads it as missing) but stays in the CSV.
    "accelerators_per_node": "0",
    "accelerator_model_name": CPU_ONLY_ACCELERATOR,
    "accelerator_memory_capacity": "N/A",
    "accelerator_memory_configuration": "N/A",
    "accelerator_frequency": "N/A",
    "accelerator_host_interconnect": "N/A",
    "accelerator_interconnect": "N/A",
    "accelerator_interconnect_topology": "N/A",
    "accelerator_on-chip_memories": "N/A",
}


def _model(g: Gpu) -> str:
    """The GPU's model name, its MIG instances named as NVIDIA's own MIG results do."""
    if not g.partitions:
        return g.name
    profiles = Counter(profile for profile, _ in g.partitions)
    return f"{g.name} ({' + '.join(f'{n}x{p}' for p, n in profiles.items())} MIG)"


def _model_and_memory(scan: GpuScan) -> tuple[str, int | None]:
    """The model name and the memory one accelerator (a GPU, or a MIG instance) has."""
    g = scan.gpus[0]
    if not g.partitions:
        return g.name, g.memory_mib
    sizes = {mib for _, mib in g.partitions}
    return _model(g), sizes.pop() if len(sizes) == 1 else None


MIXED_GPUS = "guessed (the GPUs differ: "  # the start of the count's and name's source on a host of mixed models


def _main_gpus(scan: GpuScan) -> tuple[GpuScan, str]:
    """The GPUs of the host's most common model (ties: the first GPU's), and, where it has others too (an H100
    beside a display card), the source that says so: which of them ran the benchmark is for the user to say."""
    counts = Counter(_model(g) for g in scan.gpus)  # MIG on some GPUs only is a mix too
    if len(counts) == 1:
        return scan, ""
    top = max(counts, key=lambda name: counts[name])
    mix = ", ".join(f"{n}x {name}" for name, n in counts.items())
    return replace(scan, gpus=[g for g in scan.gpus if _model(g) == top]), f"{MIXED_GPUS}{mix})"


def accelerator_fields(scan: GpuScan | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The accelerator half, from the GPUs of the most common model; CPU-only hosts say so."""
    if scan is None or not scan.gpus:
        return dict(CPU_ONLY_FIELDS), dict.fromkeys(CPU_ONLY_FIELDS, "derived: no GPU found (CPU only)")
    scan, mixed = _main_gpus(scan)
    g, n, src = scan.gpus[0], len(scan.gpus), scan.source
    model, mib = _model_and_memory(scan)
    memory_config = ", ".join(
        p for p in (g.memory_type, f"partition {g.partition_mode}" if g.partition_mode else "") if p
    )
    one = "derived: one accelerator"
    values: dict[str, tuple[Any, str]] = {
        "accelerators_per_node": (n, mixed or src),
        "accelerator_model_name": (model, mixed or src),
        "accelerator_memory_capacity": (f"{round(mib / 1024)} GB", src) if mib else (NOT_DETECTED, GUESSED),
        "accelerator_memory_configuration": (memory_config, src) if memory_config else (NOT_DETECTED, GUESSED),
        "accelerator_frequency": (f"{g.clock_mhz} MHz", src) if g.clock_mhz else (NOT_DETECTED, GUESSED),
        "accelerator_host_interconnect": (f"PCIe Gen{g.pcie_gen} x{g.pcie_width}", src)
        if g.pcie_gen and g.pcie_width
        else ("PCIe", "guessed (PCIe assumed)"),
        "accelerator_interconnect": ("N/A", one) if n == 1 else _or_guessed(scan.interconnect, src),
        "accelerator_interconnect_topology": ("N/A", one) if n == 1 else _or_guessed(scan.topology, src),
        "accelerator_on-chip_memories": ("", "default: empty"),
    }
    return {k: v for k, (v, _) in values.items()}, {k: s for k, (_, s) in values.items()}


def _or_guessed(value: str, source: str) -> tuple[str, str]:
    return (value, source) if value else (NOT_DETECTED, GUESSED)


def software_stack(versions: dict[str, str], scan: GpuScan | None, loadgen: str | None, subtool: str) -> str:
    stack = [f"Python {versions.get('python') or platform.python_version()}"]
    if loadgen:
        stack.append(f"mlcommons-loadgen {loadgen}")
    if scan is not None and scan.driver:
        stack.append(scan.driver)
    if scan is not None and scan.cuda:
        stack.append(f"CUDA {scan.cuda}")
    stack.append(f"subtool {subtool}")
    return ", ".join(stack)


# Fields that describe a run's set-up, not one machine: not part of a node's own description.
NOT_PER_NODE = ("number_of_nodes", "host_networking_topology", "cooling")


def describe_node() -> dict[str, Any]:
    """This machine as a multi-node run records each of its nodes: host name, the per-node fields of a system
    description (processors, memory, storage, network, OS, accelerators), each field's source, the GPU driver."""
    import socket

    host = probe_host()
    fields, sources = host_fields(host)
    acc, acc_sources = accelerator_fields(host["gpus"])
    fields = {k: v for k, v in {**fields, **acc}.items() if k not in NOT_PER_NODE}
    sources = {**sources, **acc_sources}
    return {
        "host": socket.gethostname(),
        "fields": fields,
        "sources": {k: sources[k] for k in fields},
        "driver": host["gpus"].driver if host["gpus"] is not None else "",
    }
