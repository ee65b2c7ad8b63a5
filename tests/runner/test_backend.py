"""`--backend auto`: torch-cuda where a GPU is visible, else torch-cpu, and without importing torch where no GPU
driver is installed (a CPU run's parent process then starts without torch's 1–2 s import)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from subtool.errors import SubtoolError
from subtool.runner import backend

ROOT = Path(__file__).resolve().parents[2]
CHOOSE = """
import sys
from types import SimpleNamespace
import subtool.runner.api  # what `subtool run` imports: none of it may import torch either
from subtool.runner import backend
backend.GPU_DRIVER_MARKS = tuple(sys.argv[1:])
said = []
spec = SimpleNamespace(name="bert-99", backends=("torch-cpu", "torch-cuda", "instant"))
print(backend.resolve_backend("auto", spec, said.append), "torch" in sys.modules, said[0])
"""


def _choose(*marks: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", CHOOSE, *marks], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split(maxsplit=2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the driver's marks are Linux paths")
def test_no_gpu_driver_means_torch_cpu_without_importing_torch(tmp_path):
    backend, imported, said = _choose(str(tmp_path / "nvidiactl"), str(tmp_path / "kfd"))
    assert (backend, imported) == ("torch-cpu", "False") and said.strip() == "backend: torch-cpu (auto)"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the driver's marks are Linux paths")
def test_a_driver_mark_makes_auto_ask_torch(tmp_path):
    torch = pytest.importorskip("torch")
    mark = tmp_path / "nvidiactl"
    mark.touch()
    backend, imported, _ = _choose(str(tmp_path / "absent"), str(mark))
    assert imported == "True"
    assert backend == ("torch-cuda" if torch.cuda.is_available() else "torch-cpu")


def test_the_marks_are_only_trusted_on_linux(monkeypatch, tmp_path):
    monkeypatch.setattr(backend, "GPU_DRIVER_MARKS", (str(tmp_path / "absent"),))
    monkeypatch.setattr(sys, "platform", "linux")
    assert backend._gpu_driver_present() is False
    monkeypatch.setattr(sys, "platform", "win32")  # no /dev there: torch is asked
    assert backend._gpu_driver_present() is True


def test_a_workload_without_torch_cuda_and_an_unknown_backend(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(backend, "_cuda_available", lambda: True)
    spec = SimpleNamespace(name="demo", backends=("torch-cpu",))
    assert backend.resolve_backend("auto", spec, lambda line: None) == "torch-cpu"
    with pytest.raises(SubtoolError) as err:
        backend.resolve_backend("torch-cuda", spec, lambda line: None)
    assert err.value.rule == "run.backend"
