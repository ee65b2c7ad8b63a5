"""bench/llm70b_gpu.py's own arithmetic: the steady-state window it reports beside LoadGen's figure, and the
kernel table of its profile (on CPU, by operator)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

llm70b = pytest.importorskip("llm70b_gpu")


def test_steady_state_counts_only_the_full_engine_with_prompts_waiting():
    # (end time, sequences that emitted a token, prompts waiting) per decode step, 8 slots: filling (3 and 5
    # decoding), full from t=2 while prompts wait until t=5, then the drain
    timeline = [(0.0, 3, 9), (1.0, 5, 7), (2.0, 7, 5), (3.0, 8, 3), (4.0, 8, 1), (5.0, 7, 1), (6.0, 4, 0), (7.0, 1, 0)]
    got = llm70b.steady_state(timeline, slots=8)
    # from the first step with 7 of 8 decoding (t=2) to the last with prompts waiting (t=5): 8+8+7 tokens in 3 s
    assert got["tokens_per_second"] == round(23 / 3, 1)
    assert got["steps"] == 3 and got["seconds"] == 3.0


@pytest.mark.parametrize(
    "timeline",
    [
        [],
        [(0.0, 2, 5), (1.0, 3, 0)],  # never 7/8 busy
        [(0.0, 8, 0), (1.0, 8, 0)],  # nothing ever waited
        [(0.0, 2, 4), (1.0, 8, 0)],  # full only once nothing waited any more
    ],
)
def test_no_steady_state_is_reported_where_there_was_none(timeline):
    assert llm70b.steady_state(timeline, slots=8) is None


def test_kernel_table_names_where_the_time_went():
    torch = pytest.importorskip("torch")
    a, small = torch.randn(512, 512), torch.randn(16)

    def work():  # the products take ~100 ms, the sum microseconds: a busy machine cannot swap their order
        for _ in range(20):
            a @ a
        small.sum()

    table = llm70b.kernel_table(work, "cpu", top=5)
    assert table and len(table) <= 5
    assert table == sorted(table, key=lambda r: r["ms"], reverse=True)
    assert "mm" in table[0]["name"] and table[0]["calls"] >= 20
    assert 0 < sum(r["share"] for r in table) <= 1.0001


def run_bench(tmp_path, *more: str) -> dict:
    """bench/llm70b_gpu.py at its CPU smoke size (tiny width, 2 layers, 8 prompts) → its JSON."""
    pytest.importorskip("transformers")
    import json
    import subprocess

    out = tmp_path / "bench.json"
    bench = Path(__file__).resolve().parents[2] / "bench" / "llm70b_gpu.py"
    args = ["--tiny", "--device", "cpu", "--weights", "model", "--layers", "2", "--samples", "8", *more]
    done = subprocess.run(
        [sys.executable, str(bench), *args, "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text())


def test_profile_only_runs_end_to_end_on_a_cpu(tmp_path):
    # the profile steps the engine outside run() (no waiting queue): a CPU smoke run of the whole --profile-only
    # path, as a GPU session would make it, with every number it reports
    profile = run_bench(tmp_path, "--profile-only")["profile"]
    assert profile["decode_step_ms"] > 0 and profile["prefill_chunk_ms"] > 0
    assert profile["prefill_chunk_tokens"] > 0 and profile["prefill_kernels"] and profile["decode_kernels"]
    assert {"qkv", "o", "gate_up", "down"} <= set(profile["decode_parts_ms_all_layers"])
    small = profile["prefill_small"]  # a pass's fixed cost: whole against its kernels' (operators') own time
    assert set(small) == {"1_tokens", "128_tokens"} and all(v["ms"] > 0 and v["kernels_ms"] > 0 for v in small.values())


def test_progress_line_says_how_far_a_run_got():
    from subtool.runner.llm.engine_schedule import EngineStats

    stats = EngineStats()
    stats.record(decode_tokens=300, prefill_tokens=4000, pieces=12, decode_s=0.1, prefill_s=0.5)
    stats.record(decode_tokens=500, prefill_tokens=0, pieces=0, decode_s=0.1, prefill_s=0.0)
    stats.prompts = 12
    line = llm70b.progress_line(stats, "Server", 40.0)
    assert line.startswith("[Server 40 s]")
    assert "prompts 12" in line and "output tokens 800 (20/s)" in line and "steps 2 (prefill 4,000 tokens)" in line


def test_run_phases_split_the_run_into_fill_steady_and_drain():
    # 8 slots: filling until t=2 (first step with 7 decoding), prompts waiting until t=5, then the drain to t=9
    timeline = [(0.0, 3, 9), (1.0, 5, 7), (2.0, 7, 5), (3.0, 8, 3), (4.0, 8, 1), (5.0, 7, 1), (7.0, 4, 0), (9.0, 1, 0)]
    got = llm70b.run_phases(timeline, slots=8)
    assert got["fill"] == {
        "seconds": 2.0,
        "steps": 2,
        "tokens": 12,
        "tokens_per_second": 6.0,
        "mean_decoding_per_step": 6.0,
    }
    # the steady part is what steady_state reports
    assert got["steady"]["tokens"] == 23 and got["steady"]["seconds"] == 3.0
    assert got["steady"]["tokens_per_second"] == llm70b.steady_state(timeline, 8)["tokens_per_second"]
    assert got["drain"] == {
        "seconds": 4.0,
        "steps": 2,
        "tokens": 5,
        "tokens_per_second": 1.2,
        "mean_decoding_per_step": 2.5,
    }
    assert llm70b.run_phases([(0.0, 8, 0)], slots=8) is None
    assert "mean_rows_per_step" not in got["drain"]  # a timeline without the rows computed


def test_run_phases_report_the_rows_each_step_computed_where_the_timeline_has_them():
    # the drain's two steps computed 8 and then 2 rows (the slots' last sequences moved down)
    timeline = [(0.0, 3, 9, 4), (1.0, 5, 7, 6), (2.0, 7, 5, 8), (3.0, 8, 3, 8), (5.0, 7, 1, 8), (7.0, 4, 0, 8)]
    got = llm70b.run_phases(timeline + [(9.0, 1, 0, 2)], slots=8)
    assert got["drain"]["mean_rows_per_step"] == 5.0 and got["steady"]["mean_rows_per_step"] == 8.0


def test_an_offline_run_reports_its_phases_and_the_gpu_telemetry_or_why_not(tmp_path):
    # the LoadGen Offline path of the bench on a CPU: LoadGen's figure, the engine's fill/steady/drain split (their
    # tokens add up to every output token the engine counted) and the telemetry record, which says why it is empty
    result = run_bench(tmp_path, "--server-seconds", "0")
    offline = result["offline"]
    assert offline["result"] > 0 and offline["validity"] in ("VALID", "INVALID")
    phases = offline["phases"]
    assert set(phases) == {"fill", "steady", "drain"}
    # every decode step's tokens but the first step's (the phases count from its end): at most one per slot
    missing = offline["engine"]["decode_slot_steps"] - sum(p["tokens"] for p in phases.values())
    assert 0 <= missing <= result["memory"]["slots"]
    assert phases["steady"]["tokens_per_second"] == offline["steady_state"]["tokens_per_second"]
    # the rows each decode step computed: never fewer than the sequences that decoded in it
    engine = offline["engine"]
    assert (
        engine["decode_slot_steps"] <= engine["decode_row_steps"] <= engine["decode_steps"] * result["memory"]["slots"]
    )
    assert all(p["mean_rows_per_step"] >= p["mean_decoding_per_step"] for p in phases.values() if p["steps"])
    telemetry = offline["gpu_telemetry"]
    assert telemetry["samples"] > 0 if telemetry["available"] else telemetry["why"]
