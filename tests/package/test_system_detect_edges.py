"""System detection on hosts the recordings do not show as they are: two NVLinked GPUs, NVLink on some pairs or some
links only, MIG with mixed or pending profiles, AMD GPUs with mixed links or N/A answers, nvidia-smi next to NVML,
a two-socket or ARM CPU, DIMM sizes in MB and unknown types. A wrong count or size here is a wrong system
description in every result of the submission."""

from __future__ import annotations

import json
import os
import shutil
import sys
import types

import pytest
from support.gpu_libraries import fake_amdsmi, fake_pynvml, load
from support.host_tools import fake_tool

from subtool.hostinfo import gpu, host, memory
from subtool.hostinfo.fields import accelerator_fields, host_fields
from subtool.package.system import detect_system

pytestmark = pytest.mark.usefixtures("fresh_probe")


def _nvml(monkeypatch, recording: dict) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(recording))


def _h100s(count: int) -> dict:
    recording = load("nvml_h100_x8.json")
    recording["devices"] = recording["devices"][:count]
    for dev in recording["devices"]:  # P2P answers only for the peers that are left
        dev["nvmlDeviceGetP2PStatus"] = {k: v for k, v in dev["nvmlDeviceGetP2PStatus"].items() if int(k) < count}
    return recording


# ------------------------------------------------------------------------------------------------ NVIDIA
def test_two_nvlinked_gpus_have_an_interconnect(monkeypatch, bare_path):
    _nvml(monkeypatch, _h100s(2))
    fields, sources = accelerator_fields(gpu.nvml_scan())
    assert fields["accelerators_per_node"] == 2
    assert fields["accelerator_interconnect"] == "NVLink 4.0 (18 links per GPU)"
    assert fields["accelerator_interconnect_topology"] == "NVLink between every pair of GPUs"
    assert sources["accelerator_interconnect"] == gpu.NVML


def test_nvlink_between_some_pairs_only_is_no_all_pairs_topology(monkeypatch, bare_path):
    recording = _h100s(8)
    recording["devices"][2]["nvmlDeviceGetP2PStatus"]["5"]["2"] = 4  # that pair: not supported over NVLink
    _nvml(monkeypatch, recording)
    fields, sources = accelerator_fields(gpu.nvml_scan())
    assert fields["accelerator_interconnect"] == "NVLink 4.0 (18 links per GPU)"
    assert fields["accelerator_interconnect_topology"] == "not detected"
    assert sources["accelerator_interconnect_topology"] == "guessed"


@pytest.mark.parametrize("inactive, says", [(6, "12-18 links per GPU"), (18, "0-18 links per GPU")])
def test_gpus_with_fewer_active_links_give_the_range(monkeypatch, bare_path, inactive, says):
    recording = _h100s(8)
    states = recording["devices"][7]["nvmlDeviceGetNvLinkState"]
    for link in range(18 - inactive, 18):
        states[str(link)] = 0
    _nvml(monkeypatch, recording)
    fields, _ = accelerator_fields(gpu.nvml_scan())
    assert fields["accelerator_interconnect"] == f"NVLink 4.0 ({says})"


def test_mixed_mig_profiles_name_each_and_leave_the_memory_to_the_user(monkeypatch, bare_path):
    recording = load("nvml_a100_mig.json")
    slots = recording["devices"][0]["mig_devices"]
    big = {
        "nvmlDeviceGetName": "NVIDIA A100-SXM4-80GB MIG 3g.40gb",
        "nvmlDeviceGetMemoryInfo": {"total": 42481549312, "free": 42464772096, "used": 16777216},
    }
    recording["devices"][0]["mig_devices"] = [slots[0], slots[1], big, None, None, slots[2], None, None]
    _nvml(monkeypatch, recording)
    fields, sources = accelerator_fields(gpu.nvml_scan())
    assert fields["accelerator_model_name"] == "NVIDIA A100-SXM4-80GB (3x1g.10gb + 1x3g.40gb MIG)"
    assert fields["accelerator_memory_capacity"] == "not detected"  # no one size for "one accelerator"
    assert sources["accelerator_memory_capacity"] == "guessed"


def test_mig_enabled_only_after_a_reset_is_not_mig_yet(monkeypatch, bare_path):
    recording = load("nvml_a100_mig.json")
    recording["devices"][0]["nvmlDeviceGetMigMode"] = [0, 1]  # (current, pending): pending until a GPU reset
    _nvml(monkeypatch, recording)
    fields, _ = accelerator_fields(gpu.nvml_scan())
    assert fields["accelerator_model_name"] == "NVIDIA A100-SXM4-80GB"
    assert fields["accelerator_memory_capacity"] == "80 GB"


def test_nvml_is_asked_before_nvidia_smi(monkeypatch, bare_path):
    _nvml(monkeypatch, load("nvml_h200_x1.json"))
    fake_tool(bare_path, "nvidia-smi", "echo 'NVIDIA H100 PCIe, 81559, 1755, 5, 16, 535.104.05'")
    desc = detect_system(submitter="TeamX", division="open")
    assert desc.fields["accelerator_model_name"] == "NVIDIA H200"
    assert desc.sources["accelerator_model_name"] == gpu.NVML


def test_nvidia_smi_counts_every_gpu_line_and_a_missing_width_is_guessed(monkeypatch, bare_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    line = "NVIDIA H100 80GB HBM3, 81559, 1980, 5, [N/A], 550.54.15"
    fake_tool(bare_path, "nvidia-smi", f"echo '{line}'; echo '{line}'; echo '{line}'; echo '{line}'")
    desc = detect_system(submitter="TeamX", division="open")
    assert desc.fields["accelerators_per_node"] == 4
    assert desc.fields["accelerator_host_interconnect"] == "PCIe"  # generation alone: not "PCIe Gen5 xNone"
    assert desc.sources["accelerator_host_interconnect"] == "guessed (PCIe assumed)"
    assert desc.fields["accelerator_interconnect"] == "not detected"  # nvidia-smi's CSV does not say


def test_nvidia_smi_negative_or_odd_numbers_are_not_values(monkeypatch, bare_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    fake_tool(bare_path, "nvidia-smi", "echo 'NVIDIA H100 80GB HBM3, -1, -1980, 5.0, 16, 550.54.15'")
    desc = detect_system(submitter="TeamX", division="open")
    assert desc.fields["accelerator_memory_capacity"] == desc.fields["accelerator_frequency"] == "not detected"
    assert desc.fields["accelerator_host_interconnect"] == "PCIe"


# --------------------------------------------------------------------------------------------------- AMD
def _mi300x(monkeypatch, recording: dict) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi(recording))


def test_amd_gpus_with_one_pcie_pair_have_no_single_interconnect(monkeypatch, bare_path):
    recording = load("amdsmi_mi300x_x8.json")
    recording["gpus"][0]["amdsmi_topo_get_link_type"]["3"]["type"] = 1  # GPU 0 to GPU 3: PCIe
    _mi300x(monkeypatch, recording)
    fields = detect_system(submitter="TeamX", division="open").fields
    assert fields["accelerator_interconnect"] == fields["accelerator_interconnect_topology"] == "not detected"


def test_amd_gpus_linked_over_pcie_only_say_pcie(monkeypatch, bare_path):
    recording = load("amdsmi_mi300x_x8.json")
    for dev in recording["gpus"]:
        for link in dev["amdsmi_topo_get_link_type"].values():
            link["type"] = 1
    _mi300x(monkeypatch, recording)
    assert detect_system(submitter="TeamX", division="open").fields["accelerator_interconnect"] == "PCIe"


def test_xgmi_over_two_hops_is_not_called_one_hop(monkeypatch, bare_path):
    recording = load("amdsmi_mi300x_x8.json")
    recording["gpus"][0]["amdsmi_topo_get_link_type"]["7"]["hops"] = 2
    _mi300x(monkeypatch, recording)
    fields = detect_system(submitter="TeamX", division="open").fields
    assert fields["accelerator_interconnect_topology"] == "xGMI between every pair of GPUs"


def test_amd_answers_of_na_unknown_and_booleans_are_not_values(monkeypatch, bare_path):
    recording = load("amdsmi_mi300x_x8.json")
    for each in recording["gpus"]:  # every GPU alike: one that differs would be a host of mixed models
        each["amdsmi_get_gpu_asic_info"]["market_name"] = "N/A"
        each["amdsmi_get_gpu_vram_info"]["vram_type"] = 0  # UNKNOWN
        each["amdsmi_get_clock_info"]["0"]["max_clk"] = True
        each["amdsmi_get_gpu_compute_partition"] = "N/A"
    _mi300x(monkeypatch, recording)
    desc = detect_system(submitter="TeamX", division="open")
    f = desc.fields
    assert f["accelerator_model_name"] == "AMD Instinct MI300X OAM"  # the board's name, not "AMD N/A"
    assert f["accelerator_memory_configuration"] == "partition NPS1"
    assert f["accelerator_frequency"] == "not detected" and "accelerator_frequency" in desc.guessed


# ------------------------------------------------------------------------------------------------- CPU
CPUINFO_2S = "".join(
    f"processor\t: {i}\nphysical id\t: {i // 4}\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\ncpu cores\t: 2\n"
    "cpu MHz\t\t: 2000.000\n\n"
    for i in range(8)
)


def _fake_psutil(monkeypatch, physical: int) -> None:
    fake = types.ModuleType("psutil")
    fake.cpu_count = lambda logical=True: physical * 2 if logical else physical
    fake.cpu_freq = lambda: None
    monkeypatch.setitem(sys.modules, "psutil", fake)


def _files(monkeypatch, files: dict[str, str]) -> None:
    monkeypatch.setattr(host, "read_text", lambda path: files.get(str(path)))


def test_a_two_socket_host_counts_cores_per_socket(monkeypatch, bare_path):
    _fake_psutil(monkeypatch, physical=112)
    _files(
        monkeypatch, {"/proc/cpuinfo": CPUINFO_2S, "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": "3800000\n"}
    )
    cpu, sources = host.cpu_info()
    assert (cpu["sockets"], cpu["cores_per_socket"]) == (2, 56)
    assert sources["sockets"] == host.CPUINFO and sources["cores_per_socket"] == host.PSUTIL
    assert (cpu["frequency"], sources["frequency"]) == ("3800 MHz", host.SYSFS_CPU)
    fields, _ = host_fields(
        {
            "cpu": cpu,
            "cpu_sources": sources,
            "storage": (("1 TB", "x"), ("SSD", "x")),
            "network": ("none", 0, "x"),
            "memory": (None, "guessed"),
            "memory_config": (None, "guessed"),
            "os": "Linux",
        }
    )
    assert fields["host_processors_per_node"] == 2 and fields["host_processor_core_count"] == 56
    assert fields["host_processor_interconnect"] == "not detected"  # two sockets: the user names the link


@pytest.mark.parametrize("sockets, want, source", [("2", 2, host.LSCPU), ("0", 1, "guessed"), ("\u00b2", 1, "guessed")])
def test_an_arm_host_takes_model_and_sockets_from_lscpu(monkeypatch, bare_path, sockets, want, source):
    rows = [{"field": "Model name:", "data": "Neoverse-V2"}, {"field": "Socket(s):", "data": sockets}]
    fake_tool(bare_path, "lscpu", f"echo '{json.dumps({'lscpu': rows})}'")
    _fake_psutil(monkeypatch, physical=144)
    _files(monkeypatch, {"/proc/cpuinfo": "processor\t: 0\nBogoMIPS\t: 2000.00\n"})
    cpu, sources = host.cpu_info()
    assert (cpu["model"], sources["model"]) == ("Neoverse-V2", host.LSCPU)
    assert cpu["sockets"] == want and cpu["cores_per_socket"] == 144 // want
    assert sources["sockets"] == source  # lscpu's 0 sockets is no count: one is assumed, and the user is asked


# ---------------------------------------------------------------------------------------------- memory
def _dimm(size: str, kind: str = "DDR4", speed: str = "3200 MT/s") -> str:
    return f"Handle 0x1100, DMI type 17, 40 bytes\nMemory Device\n\tSize: {size}\n\tType: {kind}\n\tSpeed: {speed}\n\n"


def test_dimm_sizes_in_mb_and_unknown_type_or_speed(bare_path):
    text = _dimm("16384 MB") * 2 + _dimm("32 GB", kind="Unknown", speed="Unknown")
    text = "Handle 0x1000, DMI type 16, 23 bytes\nPhysical Memory Array\n\tNumber Of Devices: 4\n\n" + text
    assert memory.describe_dimms(*memory.parse_dimms(text)) == "2x 16 GB DDR4 3200 MT/s + 1x 32 GB"


def test_dmidecode_that_fails_gives_no_configuration_even_with_output(bare_path):
    body = "".join(f"echo '{line}'; " for line in _dimm("64 GB").splitlines() if line)
    fake_tool(bare_path, "dmidecode", body + "exit 1")
    value, source = memory.memory_configuration()
    assert value is None and source.startswith("guessed")


@pytest.mark.parametrize(
    "n, text", [(2e12, "2.0 TB"), (1e12, "1.0 TB"), (999e9, "999 GB"), (64e9, "64 GB"), (5.5e9, "5.5 GB")]
)
def test_sizes_are_written_in_the_unit_a_person_reads(n, text):
    assert host.human_bytes(n) == text


def test_an_nvidia_smi_that_does_not_answer_in_time_is_given_up(monkeypatch, bare_path):
    """A hung driver blocks nvidia-smi: the scan stops waiting after NVIDIA_SMI_TIMEOUT_S and goes on without it,
    even when the tool would have answered later."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    sleep = shutil.which("sleep", path=os.defpath)  # PATH holds only bare_path
    fake_tool(bare_path, "nvidia-smi", f"{sleep} 3; echo 'NVIDIA H100 PCIe, 81559, 1755, 5, 16, 535.104.05'")
    assert gpu.nvidia_smi_scan() is not None  # it does answer, given the time
    monkeypatch.setattr(gpu, "NVIDIA_SMI_TIMEOUT_S", 0.5)
    assert gpu.nvidia_smi_scan() is None


# ------------------------------------------------------------------------------ libraries failing their own way
def _system_json(bare_path) -> dict:
    from typer.testing import CliRunner

    from subtool.cli import app

    fake_tool(bare_path, "dmidecode", "exit 1")
    r = CliRunner().invoke(app, ["system", "--submitter", "TeamX"])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    return json.loads(r.stdout[r.stdout.index("{") : r.stdout.rindex("}") + 1])


def test_a_pynvml_without_the_mig_calls_still_describes_the_gpu(monkeypatch, bare_path):
    nv = fake_pynvml(load("nvml_h200_x1.json"))
    for name in ("nvmlDeviceGetMigMode", "nvmlDeviceGetMaxMigDeviceCount", "nvmlDeviceGetMigDeviceHandleByIndex"):
        delattr(nv, name)  # pynvml 8 (the old `pip install pynvml`) has no MIG calls: an AttributeError, no NVMLError
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    fields = _system_json(bare_path)
    assert fields["accelerators_per_node"] == 1
    assert fields["accelerator_model_name"] == "NVIDIA H200"
    assert nv.state["init"] == 0


def test_a_pynvml_call_failing_with_no_nvml_error_falls_back_to_nvidia_smi(monkeypatch, bare_path):
    nv = fake_pynvml(load("nvml_h200_x1.json"))

    def undecodable_name(handle):
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")  # pynvml decodes the name itself

    nv.nvmlDeviceGetName = undecodable_name
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    fake_tool(bare_path, "nvidia-smi", "echo 'NVIDIA H100 PCIe, 81559, 1755, 5, 16, 535.104.05'")
    fields = _system_json(bare_path)
    assert fields["accelerator_model_name"] == "NVIDIA H100 PCIe"
    assert nv.state["init"] == 0


def test_an_amdsmi_of_another_rocm_release_leaves_the_gpus_to_sysfs(monkeypatch, bare_path):
    smi = fake_amdsmi(load("amdsmi_mi300x_x8.json"))
    del smi.AmdSmiLinkType  # an enum this binding does not have: an AttributeError, no AmdSmiException
    monkeypatch.setitem(sys.modules, "amdsmi", smi)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert "accelerator_model_name" in _system_json(bare_path)  # a description (sysfs next), not a traceback


def test_a_host_of_mixed_gpus_is_not_described_as_all_of_the_first_model(monkeypatch, bare_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    fake_tool(
        bare_path,
        "nvidia-smi",
        "echo 'NVIDIA T400, 2048, 1425, 3, 16, 550.54.15'\n"  # the display card comes first
        + "echo 'NVIDIA H100 80GB HBM3, 81559, 1980, 5, 16, 550.54.15'\n" * 2,
    )
    fields = _system_json(bare_path)
    assert (fields["accelerators_per_node"], fields["accelerator_model_name"]) == (2, "NVIDIA H100 80GB HBM3")
    assert fields["accelerator_memory_capacity"] == "80 GB"
    desc = detect_system(submitter="TeamX", division="open")
    assert {"accelerators_per_node", "accelerator_model_name"} <= set(desc.guessed)  # the user is told to settle it
    assert "1x NVIDIA T400" in desc.sources["accelerator_model_name"]


def test_mig_on_one_gpu_of_three_is_a_mix_not_three_partitioned_gpus(monkeypatch, bare_path):
    import copy

    recording = load("nvml_a100_mig.json")
    plain = copy.deepcopy(recording["devices"][0])
    plain["nvmlDeviceGetMigMode"], plain["mig_devices"] = [0, 0], []
    recording["devices"] = [recording["devices"][0], plain, copy.deepcopy(plain)]
    _nvml(monkeypatch, recording)
    fields = _system_json(bare_path)
    assert (fields["accelerators_per_node"], fields["accelerator_model_name"]) == (2, "NVIDIA A100-SXM4-80GB")
    assert fields["accelerator_memory_capacity"] == "80 GB"
    desc = detect_system(submitter="TeamX", division="open")
    assert "1x NVIDIA A100-SXM4-80GB (7x1g.10gb MIG)" in desc.sources["accelerators_per_node"], desc.sources
