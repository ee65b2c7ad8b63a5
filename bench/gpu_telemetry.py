"""What the GPU's clocks, power and temperature did during a timed run, sampled through NVML in a thread.

A bench that runs for minutes at full load meets the GPU's power and thermal limits: the same decode step timed
after a 450 s LoadGen run took 86 ms against 69.5 ms after warm-up alone, every kernel 13-16 % slower
(bench/results/llm70b_gpu_paged512_4096samples.json's profile against llm70b_gpu_profile512.json), and the
Server runs that recorded this (llm70b_gpu_paged512_server*.json) found the card at its 700 W limit with the
software power cap holding the SM clock at ~1,700 of 1,980 MHz in 97-99.6 % of the samples. This records why,
beside the figure it explains:

    with Telemetry() as t:
        run()
    result["gpu_telemetry"] = t.summary()

`summary()` gives the SM clock (mean, 10th percentile, lowest, the GPU's maximum), power (mean, highest, limit),
the highest temperature, and each reason NVML gave for holding the clocks down with the share of samples it was
active in. Without NVML or a GPU it says why instead, and the run goes on.
"""

from __future__ import annotations

import threading

# NVML's clocks-event (throttle) reason bits that hold the clocks below their maximum, by the name NVML gives them
REASONS = {
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
}


def summarize(samples: list[tuple[float, float, float, int]], max_mhz: float | None, limit_w: float | None) -> dict:
    """samples: (SM MHz, watts, °C, reason bits) each → the record summary() returns."""
    if not samples:
        return {"available": False, "why": "no samples (the run ended before the first)"}
    clocks = sorted(s[0] for s in samples)
    n = len(samples)
    reasons = {}
    for bit, name in REASONS.items():
        active = sum(1 for s in samples if s[3] & bit)
        if active:
            reasons[name] = round(active / n, 3)
    return {
        "available": True,
        "samples": n,
        "sm_mhz": {
            "mean": round(sum(clocks) / n),
            "p10": clocks[n // 10],
            "min": clocks[0],
            "max_supported": max_mhz,
        },
        "power_w": {
            "mean": round(sum(s[1] for s in samples) / n, 1),
            "max": round(max(s[1] for s in samples), 1),
            "limit": limit_w,
        },
        "temperature_c_max": max(s[2] for s in samples),
        "clock_limit_reasons": reasons,  # share of samples each reason was active in
    }


class Telemetry:
    """Samples GPU `index` every `interval` seconds between __enter__ and __exit__."""

    def __init__(self, index: int = 0, interval: float = 0.5) -> None:
        self.index, self.interval = index, interval
        self.samples: list[tuple[float, float, float, int]] = []
        self.why = ""
        self.max_mhz = self.limit_w = None
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self) -> Telemetry:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self.max_mhz = pynvml.nvmlDeviceGetMaxClockInfo(self._handle, pynvml.NVML_CLOCK_SM)
            self.limit_w = pynvml.nvmlDeviceGetEnforcedPowerLimit(self._handle) / 1000
        except Exception as exc:  # no nvidia-ml-py, no driver, no GPU: the bench still runs
            self.why = f"NVML unavailable: {type(exc).__name__}: {exc}"[:200]
            return self
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        nvml, handle = self._nvml, self._handle
        while not self._stop.is_set():
            try:
                self.samples.append(
                    (
                        nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
                        nvml.nvmlDeviceGetPowerUsage(handle) / 1000,
                        nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
                        nvml.nvmlDeviceGetCurrentClocksEventReasons(handle),
                    )
                )
            except Exception as exc:
                self.why = f"NVML sampling stopped: {type(exc).__name__}: {exc}"[:200]
                return
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def summary(self) -> dict:
        if not self.samples:
            return {"available": False, "why": self.why or "no samples"}
        out = summarize(self.samples, self.max_mhz, self.limit_w)
        if self.why:
            out["note"] = self.why
        return out
