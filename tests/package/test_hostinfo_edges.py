"""The host readers (subtool/hostinfo) fed hostile /proc and /sys files through a root folder a test builds, and
hostile dmidecode and nvidia-smi through fake ones on PATH: empty, cut-short, binary, non-UTF-8, endless (a link to
/dev/zero), blocking (a FIFO), a link loop, a folder, numbers past anything real (nan, -5, 10^30, "²"), an output
over the cap, a tool that hangs. No reader raises, hangs or reads without end, and a value it cannot trust is
unknown ("guessed"), never written into system.json as if it were the machine's."""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import threading
import time
import types
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from support.host_tools import fake_tool

from subtool.hostinfo import amd, gpu, host, memory

pytestmark = pytest.mark.usefixtures("fresh_probe", "bare_path")

CPUFREQ = "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"
CACHE = "sys/devices/system/cpu/cpu0/cache/index0"
NV_INFO = "proc/driver/nvidia/gpus/0000:01:00.0/information"
DRM = "sys/class/drm/card0/device"


@pytest.fixture(autouse=True)
def no_psutil(monkeypatch):
    """psutil would answer from this machine before the files under test are read."""
    monkeypatch.setitem(sys.modules, "psutil", None)


def _put(root: Path, rel: str, content: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _within(seconds: float, fn):
    """fn's result; the test fails when fn has not returned in time (a read blocked on a FIFO, or endless)."""
    box: list = []
    worker = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still reading after {seconds} s"
    return box[0]


# --------------------------------------------------------------------------- hostile files under a root
def _hostile(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 64)
    elif kind == "non-UTF-8":  # Latin-1: the ® of a model name, the ² that str.isdigit() takes for a digit
        path.write_bytes(
            b"model name\t: Xeon\xae\ncpu cores\t: \xb2\nMemTotal: 1\xb2 kB\nModel: \t H100\xff\n48\xffK\n"
        )
    elif kind == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "link loop":
        path.symlink_to(path.name)
    elif kind == "dangling link":
        path.symlink_to(path.parent / "gone")
    elif kind == "FIFO":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()


HOSTILE_PATHS = (
    "proc/cpuinfo",
    "proc/meminfo",
    NV_INFO,
    CPUFREQ,
    f"{CACHE}/size",
    f"{DRM}/product_name",
    f"{DRM}/mem_info_vram_total",
    "sys/block/nvme0n1/queue/rotational",
    "sys/class/net/eth0/speed",
)


@pytest.mark.parametrize(
    "kind",
    ["empty", "binary", "non-UTF-8", "link to /dev/zero", "link loop", "dangling link", "FIFO", "folder"],
)
def test_every_reader_leaves_a_hostile_file_unknown(tmp_path, kind):
    root = tmp_path / "root"
    _put(root, f"{CACHE}/level", "1\n")
    _put(root, f"{CACHE}/type", "Data\n")
    _put(root, f"{DRM}/vendor", "0x1002\n")
    (root / "sys/class/net/eth0/device").mkdir(parents=True)
    for rel in HOSTILE_PATHS:
        _hostile(root / rel, kind)

    def read_all():
        return (
            host.cpu_info(root=root),
            host.memory_bytes(root=root),
            gpu.proc_nvidia_scan(root),
            amd.sysfs_amd_scan(root / "sys/class/drm"),
            host.storage(str(tmp_path), root=root)[1],
            host.network(root=root),
        )

    (cpu, sources), mem, nvidia, amd_scan, disk_kind, net = _within(20, read_all)
    assert sources["model"] != host.CPUINFO and sources["sockets"] == "guessed"
    assert sources["cores_per_socket"] == "library: os.cpu_count"
    assert (cpu["frequency"], sources["frequency"]) == (host.NOT_DETECTED, "guessed")
    assert (cpu["caches"], sources["caches"]) == (host.NOT_DETECTED, "guessed")
    assert mem == (None, "guessed")
    assert nvidia is None
    assert [(g.name, g.memory_mib) for g in amd_scan.gpus] == [("AMD GPU (device ?)", None)]
    assert disk_kind == (host.NOT_DETECTED, "guessed")
    assert net == ("Ethernet (eth0)", 1, "file: /sys/class/net")


def test_a_file_over_the_read_cap_is_not_read_cut_short(tmp_path, monkeypatch):
    """A cpuinfo cut at the cap would count only the sockets before the cut: the whole file is left unread."""
    monkeypatch.setattr(host, "MAX_READ", 1024)
    cpus = "".join(f"processor\t: {i}\nphysical id\t: {i // 30}\nmodel name\t: Xeon\n\n" for i in range(40))
    _put(tmp_path, "proc/cpuinfo", cpus)
    assert len(cpus) > 1024 and cpus.index("physical id\t: 1") > 1024
    cpu, sources = host.cpu_info(root=tmp_path)
    assert sources["sockets"] == "guessed" and sources["model"] != host.CPUINFO
    monkeypatch.setattr(host, "MAX_READ", 1 << 20)
    assert host.cpu_info(root=tmp_path)[0]["sockets"] == 2  # the same file under the cap: read


@pytest.mark.parametrize(
    "rel, content",
    [
        ("sys/block/sda/queue/rotational", "garbage\n"),  # neither 0 (SSD) nor 1 (HDD)
        (CPUFREQ, "99999999999999999\n"),  # kHz: 10^11 GHz
        (CPUFREQ, "-3800000\n"),
        (f"{CACHE}/size", "\x00\x00\x00"),
        (f"{CACHE}/level", "99\n"),
    ],
)
def test_lying_sysfs_values_are_left_unknown(tmp_path, rel, content):
    _put(tmp_path, f"{CACHE}/level", "1\n")
    _put(tmp_path, f"{CACHE}/size", "48K\n")
    _put(tmp_path, rel, content)
    cpu, sources = host.cpu_info(root=tmp_path)
    (_, kind) = host.storage(str(tmp_path), root=tmp_path)
    assert kind == (host.NOT_DETECTED, "guessed")
    assert cpu["frequency"] == host.NOT_DETECTED
    if rel.startswith(CACHE):
        assert (cpu["caches"], sources["caches"]) == (host.NOT_DETECTED, "guessed")
    else:
        assert cpu["caches"] == "L1 48K"  # the lie elsewhere leaves the good values alone


@pytest.mark.parametrize("speed", ["99999999999999999\n", "-\u00b2\n", "-1\n", "0\n"])
def test_a_lying_link_speed_is_no_speed(tmp_path, speed):
    (tmp_path / "sys/class/net/eth0/device").mkdir(parents=True)
    _put(tmp_path, "sys/class/net/eth0/speed", speed)
    assert host.network(root=tmp_path)[0] == "Ethernet (eth0)"
    _put(tmp_path, "sys/class/net/eth0/speed", "400000\n")
    assert host.network(root=tmp_path)[0] == "Ethernet (eth0 400 Gbit/s)"


# ------------------------------------------------------------------------- text parsers, any input
# Values a file or tool might hold in place of a number: the lies the readers must not pass on.
NUMBERS = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["nan", "inf", "-5", "0", "\u00b2", "\u0663", "9" * 5000, "1e300", ""]),
    st.text(max_size=20),
)


def _plain(name: str) -> bool:
    return name.isprintable() and "\ufffd" not in name and 0 < len(name) <= 200


def _cpuinfo_lines(draw_lines) -> str:
    return "".join(f"{k}\t: {v}\n" for k, v in draw_lines)


CPUINFO_LINES = st.lists(
    st.tuples(st.sampled_from(["model name", "physical id", "cpu cores", "cpu MHz", "processor"]), NUMBERS),
    max_size=12,
)


@given(lines=CPUINFO_LINES, garbage=st.binary(max_size=200))
@example(lines=[("cpu MHz", "nan")], garbage=b"")
@example(lines=[("cpu MHz", "inf")], garbage=b"")
@example(lines=[("cpu MHz", "-2000")], garbage=b"")
@example(lines=[("cpu MHz", "1e300")], garbage=b"")
@example(lines=[("cpu cores", "\u00b2")], garbage=b"")
@example(lines=[("cpu cores", "9" * 5000)], garbage=b"")
@example(lines=[("cpu cores", "99999999999")], garbage=b"")
@example(lines=[("model name", "Xeon\x00\x1b[2J")], garbage=b"")
@example(lines=[], garbage=b"model name\t: \xff\xfe\n")
def test_cpuinfo_of_any_content_gives_no_invented_value(tmp_path_factory, lines, garbage):
    root = tmp_path_factory.mktemp("root")
    _put(root, "proc/cpuinfo", _cpuinfo_lines(lines).encode() + garbage)
    cpu, sources = host.cpu_info(root=root)
    if sources["cores_per_socket"] == host.CPUINFO:
        assert 1 <= cpu["cores_per_socket"] <= host.MAX_CPUS
    if sources["sockets"] == host.CPUINFO:
        assert 1 <= cpu["sockets"] <= host.MAX_CPUS
    if sources["model"] == host.CPUINFO:
        assert _plain(cpu["model"])
    if cpu["frequency"] != host.NOT_DETECTED:
        mhz = re.fullmatch(r"([0-9]+) MHz", cpu["frequency"])
        assert mhz and 0 <= int(mhz.group(1)) <= host.MAX_MHZ, cpu["frequency"]


@given(value=NUMBERS, unit=st.sampled_from(["kB", "", "MB"]), garbage=st.binary(max_size=100))
@example(value="-5", unit="kB", garbage=b"")
@example(value="nan", unit="kB", garbage=b"")
@example(value="\u00b2", unit="kB", garbage=b"")
@example(value="9" * 5000, unit="kB", garbage=b"")
@example(value=str(10**30), unit="kB", garbage=b"")
@example(value="0", unit="kB", garbage=b"")
def test_meminfo_of_any_content_gives_memtotal_or_nothing(tmp_path_factory, value, unit, garbage):
    root = tmp_path_factory.mktemp("root")
    _put(root, "proc/meminfo", garbage + f"\nMemTotal:   {value} {unit}\nMemFree: 5 kB\n".encode())
    total, source = host.memory_bytes(root=root)
    if total is None:
        assert source == "guessed"
    else:  # only the line's own number, and only one a machine can have
        assert source == "file: /proc/meminfo" and 0 < total <= host.MAX_MEMORY_BYTES
        assert value.isascii() and total == int(value) * 1024


def test_impossible_answers_of_psutil_are_not_believed(tmp_path, monkeypatch):
    """psutil reads the same /proc and /sys files: what it says past any machine falls to the readers' own."""
    fake = types.ModuleType("psutil")
    fake.virtual_memory = lambda: types.SimpleNamespace(total=10**30)
    fake.cpu_count = lambda logical=True: 10**6
    fake.cpu_freq = lambda: types.SimpleNamespace(max=math.inf)
    fake.net_if_stats = lambda: {"eth0": types.SimpleNamespace(speed=10**12)}
    monkeypatch.setitem(sys.modules, "psutil", fake)
    _put(tmp_path, "proc/meminfo", "MemTotal:       65536 kB\n")
    _put(tmp_path, "proc/cpuinfo", "physical id\t: 0\ncpu cores\t: 8\ncpu MHz\t: 2000.0\n")
    (tmp_path / "sys/class/net/eth0/device").mkdir(parents=True)
    assert host.memory_bytes(root=tmp_path) == (65536 * 1024, "file: /proc/meminfo")
    cpu, sources = host.cpu_info(root=tmp_path)
    assert (cpu["cores_per_socket"], sources["cores_per_socket"]) == (8, host.CPUINFO)
    assert (cpu["frequency"], sources["frequency"]) == ("2000 MHz", host.CPUINFO)
    assert host.network(root=tmp_path) == ("Ethernet (eth0)", 1, "file: /sys/class/net")


def test_more_sockets_than_linux_has_cpus_are_not_counted(tmp_path):
    ids = "".join(f"physical id\t: {i}\n" for i in range(host.MAX_CPUS + 1))
    _put(tmp_path, "proc/cpuinfo", ids)
    assert host.cpu_info(root=tmp_path)[1]["sockets"] == "guessed"
    _put(tmp_path, "proc/cpuinfo", ids.split("physical id\t: 2\n")[0])
    assert host.cpu_info(root=tmp_path)[0]["sockets"] == 2


@pytest.mark.parametrize("vram", ["\u00b2", str(10**30), "-5", "9" * 5000])
def test_a_lying_amd_memory_size_is_unknown(tmp_path, vram):
    _put(tmp_path, "card0/device/vendor", "0x1002\n")
    _put(tmp_path, "card0/device/product_name", "AMD Instinct MI300X\n")
    _put(tmp_path, "card0/device/mem_info_vram_total", vram)
    assert [(g.name, g.memory_mib) for g in amd.sysfs_amd_scan(tmp_path).gpus] == [("AMD Instinct MI300X", None)]


@given(size=NUMBERS, unit=st.sampled_from(["KB", "MB", "GB", "TB"]), garbage=st.binary(max_size=200))
@example(size="9" * 400, unit="GB", garbage=b"")  # float() of it is inf
@example(size=str(10**30), unit="TB", garbage=b"")
def test_dmidecode_output_of_any_content_gives_no_impossible_module(size, unit, garbage):
    text = (b"Memory Device\n\tSize: " + f"{size} {unit}\n\tType: DDR5\n".encode() + garbage).decode(
        "utf-8", errors="replace"
    )
    dimms, slots = memory.parse_dimms(text)
    assert len(dimms) <= slots
    assert all(0 < d.size_gb <= memory.MAX_DIMM_GB for d in dimms)
    described = memory.describe_dimms(dimms, slots) or ""
    assert not re.search(r"\binf\b|\bnan\b|e\+", described), described


NVSMI_FIELDS = st.one_of(NUMBERS, st.sampled_from(["[N/A]", "[Not Supported]"]))


@given(rows=st.lists(st.lists(NVSMI_FIELDS, min_size=6, max_size=7), max_size=4), garbage=st.binary(max_size=100))
@example(rows=[["NVIDIA H100", "\u00b2", "1980", "5", "16", "550.54.15"]], garbage=b"")
@example(rows=[["NVIDIA H100", "99999999999", "1e300", "99", "4096", "550"]], garbage=b"")
@example(rows=[["", "81559", "1980", "5", "16", "550.54.15"]], garbage=b"")
@example(rows=[["H100\x00\x1b", "81559", "1980", "5", "16", "550"]], garbage=b"")
@example(rows=[["NVIDIA H100", "81559", "1980", "5", "16", "550\x1b[2J"]], garbage=b"")
def test_nvidia_smi_csv_of_any_content_gives_no_invented_gpu(rows, garbage):
    text = "\n".join(", ".join(r) for r in rows) + garbage.decode("utf-8", errors="replace")
    gpus, driver = gpu.nvidia_smi_gpus(text)
    assert len(gpus) <= len(text.splitlines())
    for g in gpus:
        assert _plain(g.name)
        for value, most in ((g.memory_mib, 2**24), (g.clock_mhz, host.MAX_MHZ), (g.pcie_gen, 16), (g.pcie_width, 32)):
            assert value is None or 0 < value <= most
    assert driver == "" or _plain(driver)


@given(content=st.binary(max_size=300), model=st.text(max_size=40))
@example(content=b"Model: \t H100\xff\n", model="")
@example(content=b"", model="NVIDIA\x00H100")
@example(content=b"", model="  ")
def test_the_nvidia_drivers_information_file_of_any_content(tmp_path_factory, content, model):
    root = tmp_path_factory.mktemp("root")
    _put(root, NV_INFO, content + f"\nModel: \t {model}\n".encode())
    scan = gpu.proc_nvidia_scan(root)
    assert scan is None or all(_plain(g.name) and g.memory_mib is None for g in scan.gpus)
    _put(root, NV_INFO, "Model: \t NVIDIA H100 PCIe\nIRQ: 42\n")
    assert [g.name for g in gpu.proc_nvidia_scan(root).gpus] == ["NVIDIA H100 PCIe"]


# ------------------------------------------------------------------------ dmidecode and nvidia-smi on PATH
FIXTURES = Path(__file__).parent / "fixtures"
SLEEP = shutil.which("sleep", path=os.defpath)  # PATH holds only bare_path
H100_LINE = "NVIDIA H100 PCIe, 81559, 1755, 5, 16, 535.104.05"


def _dimm_table(tmp_path: Path, modules: int) -> Path:
    block = "Handle 0x1100, DMI type 17, 40 bytes\nMemory Device\n\tSize: 64 GB\n\tType: DDR5\n\tSpeed: 4800 MT/s\n\n"
    table = tmp_path / "table.txt"
    table.write_text(block * modules)
    return table


def test_dmidecode_printing_past_the_cap_gives_no_configuration(tmp_path, bare_path, monkeypatch):
    """A table cut at the cap would count only the modules before the cut: it is no configuration at all. The
    reading stops at the cap: this dmidecode, still running after its table, is not waited for."""
    monkeypatch.setattr(memory, "DMIDECODE_TIMEOUT_S", 5.0)
    table = _dimm_table(tmp_path, memory.MAX_OUTPUT // 80 + 1000)
    assert table.stat().st_size > memory.MAX_OUTPUT
    fake_tool(bare_path, "dmidecode", f"/bin/cat '{table}'; exec {SLEEP} 30")
    value, source = memory.memory_configuration()
    assert value is None and source == "guessed (dmidecode printed over 4 MiB, which is no memory table)"
    fake_tool(bare_path, "dmidecode", f"exec /bin/cat '{_dimm_table(tmp_path, 16)}'")
    assert memory.memory_configuration() == ("16x 64 GB DDR5 4800 MT/s", memory.DMIDECODE)


def test_dmidecode_printing_without_end_is_cut_at_the_cap_at_once(bare_path):
    fake_tool(bare_path, "dmidecode", "exec /bin/cat /dev/zero")
    started = time.monotonic()
    value, source = memory.memory_configuration()
    assert value is None and "over 4 MiB" in source
    assert time.monotonic() - started < memory.DMIDECODE_TIMEOUT_S / 2  # stopped at the cap, not at the timeout


@pytest.mark.parametrize(
    "body",
    [
        f"exec {SLEEP} 30",
        f"/bin/cat '{FIXTURES / 'dmidecode_2s_ddr5.txt'}'; exec {SLEEP} 30",
        f"exec >&-; exec {SLEEP} 30",
    ],
    ids=["silent", "prints then hangs", "closes its output then hangs"],
)
def test_a_dmidecode_that_hangs_is_given_up(bare_path, monkeypatch, body):
    monkeypatch.setattr(memory, "DMIDECODE_TIMEOUT_S", 0.5)
    fake_tool(bare_path, "dmidecode", body)
    started = time.monotonic()
    assert memory.memory_configuration() == (None, "guessed (dmidecode did not answer within 0.5 s)")
    assert time.monotonic() - started < 5


def test_dmidecode_printing_binary_garbage_gives_no_configuration(bare_path):
    fake_tool(bare_path, "dmidecode", r"printf 'Memory Device\n\tSize: \377\376 GB\n\000\001\n'")
    value, source = memory.memory_configuration()
    assert value is None and source.startswith("guessed (dmidecode cannot read")


def test_nvidia_smi_printing_bytes_that_are_not_utf8_is_read(bare_path):
    fake_tool(bare_path, "nvidia-smi", rf"printf 'NVIDIA H100 \377PCIe, 81559, 1755, 5, 16, 535\n{H100_LINE}\n'")
    scan = gpu.nvidia_smi_scan()  # the first line's name is garbage: no GPU; the second is one
    assert scan is not None and [(g.name, g.memory_mib) for g in scan.gpus] == [("NVIDIA H100 PCIe", 81559)]


def test_nvidia_smi_printing_past_its_cap_is_no_answer(tmp_path, bare_path):
    """A GPU per line: an output over the cap is no list of this host's GPUs (thousands of them here)."""
    lines = tmp_path / "gpus.csv"
    lines.write_text(f"{H100_LINE}\n" * (gpu.NVIDIA_SMI_MAX_OUTPUT // len(H100_LINE) + 10))
    fake_tool(bare_path, "nvidia-smi", f"exec /bin/cat '{lines}'")
    assert gpu.nvidia_smi_scan() is None
    fake_tool(bare_path, "nvidia-smi", "exec /bin/cat /dev/zero")
    assert _within(10, gpu.nvidia_smi_scan) is None


@pytest.mark.parametrize("body", [f"echo '{H100_LINE}'; exit 3", "exit 0", "echo '\\x00\\x00'"])
def test_nvidia_smi_failing_or_saying_nothing_is_no_answer(bare_path, body):
    fake_tool(bare_path, "nvidia-smi", body)
    assert gpu.nvidia_smi_scan() is None


def test_an_lscpu_model_name_of_control_characters_is_no_name(bare_path):
    fake_tool(bare_path, "lscpu", r"""echo '{"lscpu": [{"field": "Model name:", "data": "Neoverse\u001b[2J"}]}'""")
    assert host.cpu_info(root=bare_path)[1]["model"] != host.LSCPU
    fake_tool(bare_path, "lscpu", """echo '{"lscpu": [{"field": "Model name:", "data": "Neoverse-V2"}]}'""")
    assert host.cpu_info(root=bare_path)[0]["model"] == "Neoverse-V2"


def test_an_nvidia_smi_that_leaves_a_process_holding_its_output_is_read_when_it_ends(bare_path):
    """A wrapper script that starts something in the background: the pipe stays open after nvidia-smi ends. It
    was read until the 20 s timeout, and the host described as CPU only."""
    fake_tool(bare_path, "nvidia-smi", f"echo '{H100_LINE}'\n/bin/sleep 30 &")
    started = time.monotonic()
    scan = gpu.nvidia_smi_scan()
    assert scan is not None and [g.name for g in scan.gpus] == ["NVIDIA H100 PCIe"]
    assert time.monotonic() - started < 5
