"""System detection through the libraries: NVML (one H200, eight NVLinked H100, a MIG-partitioned A100) and
amdsmi (eight MI300X) answering from recordings, psutil on this machine for real, dmidecode's memory layout, the
fallbacks when a library is missing, and `subtool system --explain` naming each field's source."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.gpu_libraries import fake_amdsmi, fake_pynvml, load
from support.host_tools import fake_tool
from typer.testing import CliRunner

from subtool.cli import app
from subtool.hostinfo import amd, gpu, host, memory
from subtool.hostinfo.fields import accelerator_fields, probe_host
from subtool.package.system import detect_system, validation_errors

FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("fresh_probe")


def _with_nvml(monkeypatch, fixture: str):
    nv = fake_pynvml(load(fixture))
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    return nv


# ------------------------------------------------------------------------------------------------ NVIDIA
def test_one_h200_through_nvml(monkeypatch, bare_path):
    nv = _with_nvml(monkeypatch, "nvml_h200_x1.json")
    desc = detect_system(submitter="TeamX", division="closed")
    f = desc.fields
    assert f["accelerators_per_node"] == 1 and f["accelerator_model_name"] == "NVIDIA H200"
    assert f["accelerator_memory_capacity"] == "140 GB"  # 150754820096 B = 143771 MiB
    assert (f["accelerator_frequency"], f["accelerator_host_interconnect"]) == ("1980 MHz", "PCIe Gen5 x16")
    assert f["accelerator_interconnect"] == f["accelerator_interconnect_topology"] == "N/A"
    assert "NVIDIA driver 570.86.15, CUDA 12.8" in f["other_software_stack"]
    assert desc.sources["accelerator_model_name"] == gpu.NVML
    assert desc.sources["accelerator_interconnect"] == "derived: one accelerator"
    assert "accelerator_interconnect" not in desc.guessed
    assert "accelerator_memory_configuration" in desc.guessed  # NVML does not say HBM3e: the user does
    assert nv.state["init"] == 0  # every nvmlInit matched by nvmlShutdown
    assert validation_errors(f, division="closed", submitter="TeamX") == []


def test_eight_nvlinked_h100_through_nvml(monkeypatch, bare_path):
    _with_nvml(monkeypatch, "nvml_h100_x8.json")
    desc = detect_system(submitter="TeamX", division="closed")
    f = desc.fields
    assert f["accelerators_per_node"] == 8 and f["accelerator_memory_capacity"] == "80 GB"
    assert f["accelerator_interconnect"] == "NVLink 4.0 (18 links per GPU)"
    assert f["accelerator_interconnect_topology"] == "NVLink between every pair of GPUs"
    assert not {"accelerator_interconnect", "accelerator_interconnect_topology"} & set(desc.guessed)
    assert f["system_name"].startswith("8xNVIDIA_H100_80GB_HBM3_")
    assert "NVIDIA driver 550.54.15, CUDA 12.4" in f["other_software_stack"]


def test_gpus_without_nvlink_are_pcie_and_unsupported_queries_stay_unknown(monkeypatch, bare_path):
    recording = load("nvml_h100_x8.json")
    for dev in recording["devices"]:
        for key in ("nvmlDeviceGetNvLinkState", "nvmlDeviceGetMaxClockInfo", "nvmlDeviceGetP2PStatus"):
            dev.pop(key)  # the fake answers NVMLError_NotSupported, as a PCIe card's driver does
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(recording))
    desc = detect_system(submitter="TeamX", division="open")
    assert desc.fields["accelerator_interconnect"] == "PCIe"
    assert desc.fields["accelerator_interconnect_topology"] == "not detected"
    assert desc.fields["accelerator_frequency"] == "not detected"
    assert {"accelerator_interconnect_topology", "accelerator_frequency"} <= set(desc.guessed)
    assert desc.sources["accelerator_frequency"] == "guessed"


def test_mig_partitioned_a100_is_described_by_its_instances(monkeypatch, bare_path):
    _with_nvml(monkeypatch, "nvml_a100_mig.json")
    scan = gpu.nvml_scan()
    assert scan is not None and scan.gpus[0].partitions == [("1g.10gb", 9984)] * 7  # slot 8 empty: NOT_FOUND
    fields, sources = accelerator_fields(scan)
    assert fields["accelerator_model_name"] == "NVIDIA A100-SXM4-80GB (7x1g.10gb MIG)"
    assert fields["accelerator_memory_capacity"] == "10 GB"  # one instance's memory, not the card's 80 GB
    assert fields["accelerators_per_node"] == 1 and sources["accelerator_memory_capacity"] == gpu.NVML


def test_nvml_without_its_driver_library_falls_back_to_nvidia_smi(monkeypatch, bare_path):
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (the test extra has it)")
    nv = fake_pynvml(load("nvml_h200_x1.json"), init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    fake_tool(bare_path, "nvidia-smi", "echo 'NVIDIA H100 PCIe, 81559, 1755, 5, 16, 535.104.05'")
    desc = detect_system(submitter="TeamX", division="open")
    assert desc.fields["accelerator_model_name"] == "NVIDIA H100 PCIe"
    assert desc.fields["accelerator_memory_capacity"] == "80 GB"
    assert desc.sources["accelerator_model_name"] == gpu.NVIDIA_SMI
    assert "NVIDIA driver 535.104.05" in desc.fields["other_software_stack"]


def test_nvidia_smi_answers_with_na_values_and_garbage(monkeypatch, bare_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    # MIG-enabled or virtual GPUs answer [N/A] for some columns; a warning line is not a GPU
    fake_tool(
        bare_path, "nvidia-smi", "echo 'NVIDIA H100 80GB HBM3, [N/A], [N/A], 5, 16, 550.54.15'; echo 'WARNING: x'"
    )
    desc = detect_system(submitter="TeamX", division="open")
    assert (desc.fields["accelerators_per_node"], desc.fields["accelerator_model_name"]) == (1, "NVIDIA H100 80GB HBM3")
    assert desc.fields["accelerator_memory_capacity"] == desc.fields["accelerator_frequency"] == "not detected"
    assert {"accelerator_memory_capacity", "accelerator_frequency"} <= set(desc.guessed)
    fake_tool(bare_path, "nvidia-smi", "echo 'No devices were found'; exit 6")
    probe_host.cache_clear()
    assert detect_system(submitter="TeamX", division="open").fields["accelerators_per_node"] == "0"


@given(st.text(max_size=300))
def test_cpuinfo_reader_never_raises_on_garbage(text):
    facts = host._cpuinfo_facts(text)
    assert isinstance(facts["sockets"], set) and isinstance(facts.get("model", ""), str)


# --------------------------------------------------------------------------------------------------- AMD
def test_eight_mi300x_through_amdsmi(monkeypatch, bare_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVIDIA library: the AMD one answers
    smi = fake_amdsmi(load("amdsmi_mi300x_x8.json"))
    monkeypatch.setitem(sys.modules, "amdsmi", smi)
    desc = detect_system(submitter="TeamX", division="closed")
    f = desc.fields
    assert f["accelerators_per_node"] == 8 and f["accelerator_model_name"] == "AMD Instinct MI300X"
    assert f["accelerator_memory_capacity"] == "192 GB"  # vram_size 196592 MB
    assert f["accelerator_memory_configuration"] == "HBM3, partition SPX/NPS1"
    assert (f["accelerator_frequency"], f["accelerator_host_interconnect"]) == ("2100 MHz", "PCIe Gen5 x16")
    assert f["accelerator_interconnect"] == "xGMI (AMD Infinity Fabric)"
    assert f["accelerator_interconnect_topology"] == "xGMI between every pair of GPUs (1 hop)"
    assert "AMD amdgpu 6.10.5" in f["other_software_stack"]
    assert all(desc.sources[k] == gpu.AMDSMI for k in ("accelerator_model_name", "accelerator_frequency"))
    assert not [g for g in desc.guessed if g.startswith("accelerator")]
    assert smi.state["init"] == 0
    assert f["system_name"].startswith("8xAMD_Instinct_MI300X_")


def test_amdsmi_without_rocm_is_silent_and_the_sysfs_reader_answers(tmp_path, monkeypatch, capfd):
    # The PyPI amdsmi prints to stdout and raises KeyError when ROCm's libamd_smi.so is missing.
    pkg = tmp_path / "site" / "amdsmi"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("print('Unable to find libamd_smi.so')\nraise KeyError('libamd_smi.so')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    assert amd.amdsmi_scan() is None
    assert capfd.readouterr().out == ""  # `subtool system` prints its JSON on stdout: nothing may mix in
    drm = tmp_path / "drm"
    for card, vendor, extra in (("card0", "0x1002", True), ("card1", "0x10de", False), ("card0-DP-1", "0x1002", 0)):
        (drm / card / "device").mkdir(parents=True)
        (drm / card / "device" / "vendor").write_text(vendor + "\n")
        if extra:
            (drm / card / "device" / "product_name").write_text("AMD Instinct MI300X\n")
            (drm / card / "device" / "mem_info_vram_total").write_text(f"{196592 * 2**20}\n")
    scan = amd.sysfs_amd_scan(drm)
    assert scan is not None and scan.source == gpu.SYS_DRM
    assert [(g.name, g.memory_mib) for g in scan.gpus] == [("AMD Instinct MI300X", 196592)]
    (drm / "card0" / "device" / "mem_info_vram_total").write_bytes(b"\xff\x00garbage")  # unreadable size: unknown
    (drm / "card0" / "device" / "product_name").unlink()
    (drm / "card0" / "device" / "device").write_text("0x74a1\n")
    scan = amd.sysfs_amd_scan(drm)
    assert [(g.name, g.memory_mib) for g in scan.gpus] == [("AMD GPU (device 0x74a1)", None)]


# ------------------------------------------------------------------------------------------ host, memory
def test_this_machine_through_psutil_and_without_it(monkeypatch):
    psutil = pytest.importorskip("psutil")
    cpu, sources = host.cpu_info()
    assert cpu["sockets"] * cpu["cores_per_socket"] <= psutil.cpu_count(logical=False)
    assert sources["cores_per_socket"] == host.PSUTIL
    total, source = host.memory_bytes()
    assert (total, source) == (psutil.virtual_memory().total, host.PSUTIL)
    (cap, cap_src), _ = host.storage("/")
    assert cap_src == host.PSUTIL and cap == host.human_bytes(psutil.disk_usage("/").total)
    monkeypatch.setitem(sys.modules, "psutil", None)  # not installed: today's readers answer the same
    assert host.memory_bytes() == (total, "file: /proc/meminfo")
    cpu2, sources2 = host.cpu_info()
    assert sources2["cores_per_socket"] != host.PSUTIL and cpu2["model"] == cpu["model"]


def test_dimm_layout_from_dmidecode(bare_path):
    text = (FIXTURES / "dmidecode_2s_ddr5.txt").read_text()
    assert memory.describe_dimms(*memory.parse_dimms(text)) == ("16x 64 GB DDR5 4800 MT/s (16 of 24 slots)")
    fake_tool(bare_path, "dmidecode", f"exec /bin/cat '{FIXTURES / 'dmidecode_2s_ddr5.txt'}'")
    assert memory.memory_configuration() == (
        "16x 64 GB DDR5 4800 MT/s (16 of 24 slots)",
        memory.DMIDECODE,
    )
    desc = detect_system(submitter="TeamX", division="open")
    assert desc.fields["host_memory_configuration"].startswith("16x 64 GB DDR5")
    assert "host_memory_configuration" not in desc.guessed
    # not root: dmidecode cannot read the tables, and the field is left to the user
    fake_tool(bare_path, "dmidecode", "echo '/dev/mem: Permission denied' >&2; exit 1")
    value, source = memory.memory_configuration()
    assert value is None and source.startswith("guessed") and "root" in source
    probe_host.cache_clear()
    desc = detect_system(submitter="TeamX", division="open")
    assert desc.fields["host_memory_configuration"] == "not detected" and "host_memory_configuration" in desc.guessed


@given(st.text(max_size=400))
def test_dmidecode_parser_never_raises_on_garbage(text):
    dimms, slots = memory.parse_dimms("Memory Device\n\tSize: " + text)
    out = memory.describe_dimms(dimms, slots)
    assert out is None or out.split("x ", 1)[0].isdigit()


# ----------------------------------------------------------------------------------------------- explain
def test_cli_explain_names_each_fields_source(tmp_path, monkeypatch, bare_path):
    _with_nvml(monkeypatch, "nvml_h100_x8.json")
    fake_tool(bare_path, "dmidecode", "exit 1")
    over = tmp_path / "o.toml"
    over.write_text('hw_notes = "liquid-cooled rack"\n')
    r = runner.invoke(app, ["system", "--submitter", "TeamX", "--explain", "--file", str(over), "--set", "cooling=air"])
    assert r.exit_code == 0, r.output
    rows = {p[0]: p[1:] for p in (re.split(r"\s{2,}", line.strip()) for line in r.stdout.splitlines()) if p[0]}
    assert rows["accelerator_interconnect"] == ["NVLink 4.0 (18 links per GPU)", "library: pynvml (nvidia-ml-py)"]
    assert rows["cooling"] == ["air", "override: --set"]
    assert rows["hw_notes"] == ["liquid-cooled rack", f"override: {over}"]
    assert rows["host_memory_configuration"][0] == "not detected"
    assert rows["host_memory_configuration"][1].startswith("guessed (dmidecode cannot read the SMBIOS tables")
    assert rows["host_memory_capacity"][1] == ("library: psutil" if _has("psutil") else "file: /proc/meminfo")
    assert rows["division"] == ["open", "input: subtool's arguments"]
    assert not r.stdout.lstrip().startswith("{")  # the table replaces the JSON; --out still writes the JSON
    assert set(rows) >= {"field", *detect_system(submitter="TeamX", division="open").fields}


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def test_detection_needs_no_library(monkeypatch, bare_path):
    """psutil, pynvml and amdsmi all missing: the description is still whole and valid (CPU only here)."""
    for name in ("psutil", "pynvml", "amdsmi"):
        monkeypatch.setitem(sys.modules, name, None)
    desc = detect_system(submitter="TeamX", division="open")
    assert validation_errors(desc.fields, division="open", submitter="TeamX") == []
    assert all(not s.startswith("library: psutil") for s in desc.sources.values())
    assert os.environ["PATH"] == str(bare_path)
