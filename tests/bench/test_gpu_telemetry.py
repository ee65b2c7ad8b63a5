"""bench/gpu_telemetry.py: the summary of clock, power and temperature samples, and a run without NVML."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import gpu_telemetry  # noqa: E402


def test_summary_reports_clocks_power_and_how_often_each_limit_held_them():
    # (SM MHz, W, °C, reason bits): full clocks at first, then the power cap (0x4) and once a thermal slowdown (0x20)
    samples = [(1980, 400.0, 50, 0), (1980, 500.0, 55, 0)] + [(1600 + i, 699.0, 70 + i, 0x4) for i in range(7)]
    samples.append((1500, 700.0, 80, 0x4 | 0x20))
    got = gpu_telemetry.summarize(samples, max_mhz=1980, limit_w=700.0)
    assert got["available"] and got["samples"] == 10
    assert got["sm_mhz"]["min"] == 1500 and got["sm_mhz"]["p10"] == 1600 and got["sm_mhz"]["max_supported"] == 1980
    assert got["sm_mhz"]["mean"] == round(sum(s[0] for s in samples) / 10)
    assert got["power_w"]["max"] == 700.0 and got["power_w"]["limit"] == 700.0
    assert got["temperature_c_max"] == 80
    assert got["clock_limit_reasons"] == {"sw_power_cap": 0.8, "sw_thermal_slowdown": 0.1}


def test_no_samples_is_said_not_summarized():
    assert gpu_telemetry.summarize([], 1980, 700.0)["available"] is False


def test_a_run_without_nvml_goes_on_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    with gpu_telemetry.Telemetry(interval=0.01) as t:
        pass
    got = t.summary()
    assert got["available"] is False and "NVML unavailable" in got["why"]
