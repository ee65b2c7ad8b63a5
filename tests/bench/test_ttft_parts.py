"""bench/ttft_parts.py: the engine-side split of a Server query's TTFT (waiting for a slot, prefilling), on
hand-made stamps and on the bench's own engine run on a CPU."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import ttft_parts  # noqa: E402


def _stamps(rows: dict) -> ttft_parts.Stamps:
    stamps = ttft_parts.Stamps()
    for qid, (arrived, admitted, first) in rows.items():
        if arrived is not None:
            stamps.arrived[qid] = arrived
        if admitted is not None:
            stamps.admitted[qid] = admitted
        if first is not None:
            stamps.first[qid] = first
    return stamps


def test_each_part_is_measured_from_its_own_stamps():
    stamps = _stamps({1: (0.0, 0.5, 0.6), 2: (1.0, 1.0, 1.2), 3: (2.0, 2.1, None), 4: (None, 3.0, 3.5)})
    got = ttft_parts.summary(stamps, [])
    assert got["queries"] == 2  # 3 has no first token yet, 4 no arrival: neither counts
    assert got["ms"]["waiting"]["max"] == 500.0 and got["ms"]["prefilling"]["max"] == 200.0
    assert got["ms"]["arrival_to_first_token"]["max"] == 600.0
    assert got["step_ms"] is None and got["most_prompts_waiting"] == 0


def test_an_idle_gap_between_runs_is_no_step():
    # (end, decoding, waiting, rows, run): the 10 s between run 1's last step and run 2's first is idleness
    timeline = [(0.0, 2, 0, 4, 1), (0.1, 2, 1, 4, 1), (10.1, 1, 0, 4, 2), (10.3, 1, 3, 4, 2)]
    got = ttft_parts.summary(ttft_parts.Stamps(), timeline)
    assert got["step_ms"]["max"] == pytest.approx(200.0) and got["steps_over_1s"] == 0
    assert got["steps_with_prompts_waiting"] == 2 and got["most_prompts_waiting"] == 3 and got["most_decoding"] == 2


def test_stamps_keep_the_first_arrival_and_the_last_admission():
    stamps = ttft_parts.Stamps()
    stamps.arrive([(7, 0)])
    first_arrival = stamps.arrived[7]
    stamps.arrive([(7, 0)])
    stamps.admit(7)
    refused = stamps.admitted[7]
    stamps.admit(7)  # refused for pages the first time, admitted again
    assert stamps.arrived[7] == first_arrival and stamps.admitted[7] >= refused


def test_the_bench_engine_stamps_every_query_in_order(tmp_path):
    # the bench's own engine (tiny width, 2 layers, CPU) run on 4 prompts, 2 of them arriving late: every query
    # is stamped arrived <= admitted <= first token, and the late ones arrive after the run began
    pytest.importorskip("transformers")
    llm70b = pytest.importorskip("llm70b_gpu")
    args = llm70b.build_parser().parse_args(
        ["--tiny", "--device", "cpu", "--weights", "model", "--layers", "2", "--samples", "4", "--max-slots", "2"]
    )
    config = llm70b.llama2_70b_config(args.layers, args.tiny)
    prompts, targets = llm70b.make_workload(4, args.input_mean, args.seed)
    targets[:] = 5  # short answers: the test is about stamps, not lengths
    sut, engine, _ = llm70b.build_sut(args, config, prompts, targets)

    class Callbacks:
        def __init__(self):
            self.prompts, self.done, self.late = prompts, {}, [(2, 2), (3, 3)]

        def first_token(self, qid, token):
            pass

        def complete(self, qid, tokens):
            self.done[qid] = tokens

        def more_work(self):
            late, self.late = (self.late, []) if self.done else ([], self.late)
            return late

    try:
        callbacks = Callbacks()
        engine.run([(0, 0), (1, 1)], callbacks)
    finally:
        sut.stop()
    assert sorted(callbacks.done) == [0, 1, 2, 3]
    stamps = engine.stamps
    assert set(stamps.first) == {0, 1, 2, 3}
    for q in range(4):
        assert stamps.arrived[q] <= stamps.admitted[q] <= stamps.first[q]
    assert min(stamps.arrived[2], stamps.arrived[3]) > max(stamps.first[0], stamps.first[1])
    got = ttft_parts.summary(stamps, engine.timeline)
    assert got["queries"] == 4 and got["most_decoding"] <= 2 and got["step_ms"]["p50"] > 0
