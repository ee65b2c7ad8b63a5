"""GPU libraries answering from recorded outputs (tests/package/fixtures/), for hosts without the hardware.

`fake_pynvml` is a `pynvml` module whose calls answer from a recording, with the real pynvml's own constants,
structs (c_nvmlMemory_t) and errors (NVMLError and its per-code subclasses); `fake_amdsmi` is an `amdsmi` module
whose calls return the binding's dicts and raise its exception types. Tests put them in sys.modules, where
subtool's adapters import them: everything from the import on is the real adapter code.
"""

from __future__ import annotations

import enum
import json
import types
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "package" / "fixtures"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------ NVML
class _NvHandle:
    def __init__(self, record: dict, index: int):
        self.record, self.index = record, index


def _nv_arg(arg) -> str:
    return str(arg.index if isinstance(arg, _NvHandle) else int(arg))


def fake_pynvml(recording: dict, *, init_error: int | None = None) -> types.ModuleType:
    import pytest

    real = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (the test and system extras have it)")

    nv = types.ModuleType("pynvml")
    for name in dir(real):
        if name.startswith(("NVML_", "NVMLError", "c_nvml")):
            setattr(nv, name, getattr(real, name))
    devices = [_NvHandle(rec, i) for i, rec in enumerate(recording["devices"])]
    state = {"init": 0}

    def need_init():
        if not state["init"]:
            raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)

    def init():
        if init_error is not None:
            raise real.NVMLError(init_error)
        state["init"] += 1

    def shutdown():
        need_init()
        state["init"] -= 1

    def system_call(key):
        def call():
            need_init()
            return recording[key]

        return call

    def device_call(key):
        def call(handle, *args):
            need_init()
            if key not in handle.record:
                raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
            value = handle.record[key]
            for arg in args:
                if _nv_arg(arg) not in value:
                    raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
                value = value[_nv_arg(arg)]
            if key == "nvmlDeviceGetMemoryInfo":
                mem = real.c_nvmlMemory_t()
                mem.total, mem.free, mem.used = value["total"], value["free"], value["used"]
                return mem
            return value

        return call

    def handle_by_index(i):
        need_init()
        if not 0 <= i < len(devices):
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        return devices[i]

    def mig_handle(handle, i):
        need_init()
        slots = handle.record.get("mig_devices") or []
        if i >= len(slots) or slots[i] is None:
            raise real.NVMLError(real.NVML_ERROR_NOT_FOUND)
        return _NvHandle(slots[i], 1000 + i)

    nv.nvmlInit, nv.nvmlShutdown = init, shutdown
    nv.nvmlDeviceGetCount = lambda: (need_init(), len(devices))[1]
    nv.nvmlDeviceGetHandleByIndex = handle_by_index
    nv.nvmlDeviceGetMigDeviceHandleByIndex = mig_handle
    nv.nvmlSystemGetDriverVersion = system_call("nvmlSystemGetDriverVersion")
    nv.nvmlSystemGetCudaDriverVersion = system_call("nvmlSystemGetCudaDriverVersion")
    for key in (
        "nvmlDeviceGetName",
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetMaxClockInfo",
        "nvmlDeviceGetMaxPcieLinkGeneration",
        "nvmlDeviceGetMaxPcieLinkWidth",
        "nvmlDeviceGetMigMode",
        "nvmlDeviceGetMaxMigDeviceCount",
        "nvmlDeviceGetNvLinkState",
        "nvmlDeviceGetNvLinkVersion",
        "nvmlDeviceGetP2PStatus",
    ):
        setattr(nv, key, device_call(key))
    nv.state = state  # the tests check that every nvmlInit was matched by an nvmlShutdown
    return nv


# ---------------------------------------------------------------------------------------------- amdsmi
class AmdSmiException(Exception):
    pass


class AmdSmiLibraryException(AmdSmiException):
    def __init__(self, err_code: int):
        super().__init__(f"amdsmi error {err_code}")
        self.err_code = err_code


class AmdSmiClkType(enum.IntEnum):  # values as amdsmi_wrapper defines them (SYS and GFX are one clock)
    SYS = 0
    GFX = 0
    DF = 1
    MEM = 5


class AmdSmiVramType(enum.IntEnum):
    UNKNOWN = 0
    HBM = 1
    HBM2 = 2
    HBM2E = 3
    HBM3 = 4
    DDR4 = 12
    GDDR6 = 22


class AmdSmiLinkType(enum.IntEnum):
    AMDSMI_LINK_TYPE_INTERNAL = 0
    AMDSMI_LINK_TYPE_PCIE = 1
    AMDSMI_LINK_TYPE_XGMI = 2
    AMDSMI_LINK_TYPE_NOT_APPLICABLE = 3
    AMDSMI_LINK_TYPE_UNKNOWN = 4


_AMDSMI_STATUS_NOT_SUPPORTED = 2
_AMDSMI_STATUS_NOT_INIT = 32


class _AmdHandle:
    def __init__(self, record: dict, index: int):
        self.record, self.index = record, index


def fake_amdsmi(recording: dict) -> types.ModuleType:
    smi = types.ModuleType("amdsmi")
    smi.AmdSmiException, smi.AmdSmiLibraryException = AmdSmiException, AmdSmiLibraryException
    smi.AmdSmiClkType, smi.AmdSmiVramType, smi.AmdSmiLinkType = AmdSmiClkType, AmdSmiVramType, AmdSmiLinkType
    handles = [_AmdHandle(rec, i) for i, rec in enumerate(recording["gpus"])]
    state = {"init": 0}

    def need_init():
        if not state["init"]:
            raise AmdSmiLibraryException(_AMDSMI_STATUS_NOT_INIT)

    def init(flag=None):
        state["init"] += 1

    def shut_down():
        need_init()
        state["init"] -= 1

    def call(key):
        def answer(handle, *args):
            need_init()
            if key not in handle.record:
                raise AmdSmiLibraryException(_AMDSMI_STATUS_NOT_SUPPORTED)
            value = handle.record[key]
            for arg in args:
                sub = arg.index if isinstance(arg, _AmdHandle) else int(arg)  # a peer GPU, or an enum value
                if str(sub) not in value:
                    raise AmdSmiLibraryException(_AMDSMI_STATUS_NOT_SUPPORTED)
                value = value[str(sub)]
            return json.loads(json.dumps(value))  # a fresh dict per call, as the binding builds one

        return answer

    smi.amdsmi_init, smi.amdsmi_shut_down = init, shut_down
    smi.amdsmi_get_processor_handles = lambda: (need_init(), list(handles))[1]
    for key in (
        "amdsmi_get_gpu_asic_info",
        "amdsmi_get_gpu_board_info",
        "amdsmi_get_gpu_vram_info",
        "amdsmi_get_clock_info",
        "amdsmi_get_pcie_info",
        "amdsmi_get_gpu_compute_partition",
        "amdsmi_get_gpu_memory_partition",
        "amdsmi_get_gpu_driver_info",
        "amdsmi_topo_get_link_type",
    ):
        setattr(smi, key, call(key))
    smi.state = state
    return smi
