"""Chunked prefill mixed into decode steps: the step planner's budget accounting and fairness on its own, the chunk's
attention layout, and the engine with chunking on against transformers' greedy `generate` token for token (prompts
longer than the chunk, arrivals while a long prompt is still being prefilled)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subtool.runner.llm.engine_schedule import EngineStats, plan_chunks, profile_bucket

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from .test_llm_engine import (  # noqa: E402
    Recorder,
    _cuda_run,
    _generation,
    _model,
    _prompts,
    _reference,
    cuda,
)


# the planner ------------------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    lefts=st.lists(st.integers(1, 5000), max_size=12),
    decoding=st.integers(0, 300),
    budget=st.integers(1, 4096),
    chunk=st.integers(1, 4096),
)
def test_a_step_never_exceeds_its_budget_and_wastes_no_room(lefts, decoding, budget, chunk):
    prefilling = [(100 + i, n) for i, n in enumerate(lefts)]
    plan = plan_chunks(prefilling, decoding, budget, chunk)
    room = budget - decoding
    granted = dict(plan)
    assert sum(granted.values()) <= max(0, room)
    assert [k for k, _ in plan] == [k for k, _ in prefilling if k in granted]  # admission order, no repeats
    for key, left in prefilling:
        n = granted.get(key, 0)
        assert 0 <= n <= min(left, chunk)
        assert key not in granted or n > 0
    if room > 0 and prefilling:  # the oldest always advances by a quarter of the room at least, or finishes
        assert granted[prefilling[0][0]] >= min(prefilling[0][1], chunk, max(1, room // 4))
        if sum(granted.values()) < room:  # room left: every prompt got all it could take
            assert all(granted.get(k, 0) == min(left, chunk) for k, left in prefilling)


def test_a_short_arrival_gets_its_first_token_before_the_long_prompt_ahead_of_it():
    plan = dict(plan_chunks([(0, 15_000), (1, 300), (2, 40)], decoding=100, budget=2048, chunk=2048))
    assert plan[1] == 300 and plan[2] == 40  # both finish this step
    assert plan[0] == 2048 - 100 - 340  # the long prompt takes the rest


def test_a_long_prompt_is_not_starved_by_a_stream_of_short_arrivals():
    budget, chunk, decoding = 1024, 1024, 24
    queue = [[0, 5000]]  # [key, tokens left] in admission order
    steps = 0
    while any(k == 0 for k, _ in queue):
        # two more short prompts every step: alone they would fill every step
        queue += [[2 * steps + 1, 600], [2 * steps + 2, 600]]
        for key, n in plan_chunks([tuple(q) for q in queue], decoding, budget, chunk):
            next(q for q in queue if q[0] == key)[1] -= n
        queue = [q for q in queue if q[1] > 0]
        steps += 1
        assert steps < 100
    assert steps <= math.ceil(5000 / ((budget - decoding) // 4))


def test_the_step_profile_adds_up():
    stats = EngineStats()
    stats.record(10, 0, 0, 0.01, 0.0)
    stats.record(10, 300, 2, 0.01, 0.05)
    stats.record(0, 4096, 1, 0.0, 0.5)
    assert (stats.steps, stats.decode_steps, stats.prefill_steps, stats.mixed_steps) == (3, 2, 2, 1)
    assert (stats.prefill_tokens, stats.prefill_pieces, stats.max_step_tokens) == (4396, 3, 4096)
    assert stats.step_profile["257-1024"] == {"steps": 1, "decode_tokens": 10, "prefill_tokens": 300, "seconds": 0.06}
    assert [profile_bucket(n) for n in (0, 1, 256, 257, 1024, 1025, 4096, 70_000)] == [
        "0",
        "1-256",
        "1-256",
        "257-1024",
        "257-1024",
        "1025-4096",
        "1025-4096",
        "65537-262144",
    ]


def test_the_oldest_prompt_is_guaranteed_a_quarter_of_the_room_not_more():
    """Room 2024: the long prompt ahead is sure of 506 (a quarter); the two short prompts behind it fit in the
    other three quarters, so both get their first tokens this step, and the long one takes what they leave."""
    plan = plan_chunks([(0, 10_000), (1, 700), (2, 700)], decoding=24, budget=2048, chunk=2048)
    assert plan == [(0, 2024 - 1400), (1, 700), (2, 700)]


def test_the_largest_step_counts_its_decode_and_prefill_tokens_together():
    stats = EngineStats()
    stats.record(10, 300, 1, 0.01, 0.05)
    stats.record(0, 200, 1, 0.0, 0.05)
    stats.record(250, 0, 0, 0.01, 0.0)
    assert stats.max_step_tokens == 310


# the chunk's attention layout ---------------------------------------------------------------------------------
def test_a_chunk_row_sees_its_own_prefix_and_the_rows_before_it_only():
    from subtool.runner.llm.engine_attention import chunk_layout, piece_mask

    layout = chunk_layout([(3, 2, 2), (0, 0, 3)], max_len=8)  # slot 3: positions 2-3 after a cached 0-1
    assert layout["q_slot"].tolist() == [3, 3, 0, 0, 0] and layout["q_pos"].tolist() == [2, 3, 0, 1, 2]
    assert layout["k_slot"].tolist() == [3, 3, 3, 3, 0, 0, 0] and layout["k_pos"].tolist() == [0, 1, 2, 3, 0, 1, 2]
    assert layout["own"].tolist() == [2, 3, 4, 5, 6] and layout["last"].tolist() == [1, 4]
    assert layout["cu_q"].tolist() == [0, 2, 5] and layout["cu_k"].tolist() == [0, 4, 7]
    assert piece_mask(2, 2).astype(int).tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert piece_mask(0, 3).astype(int).tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    with pytest.raises(ValueError, match="past the cache"):
        chunk_layout([(0, 6, 3)], max_len=8)


# the engine -------------------------------------------------------------------------------------------------
class LateRecorder(Recorder):
    """Arrivals on the engine's `at`-th call for more work (one call per step)."""

    def __init__(self, prompts, late, at):
        super().__init__(prompts)
        self.pending_late, self.at = list(late), at

    def more_work(self):
        self.calls.append(len(self.done))
        if len(self.calls) == self.at:
            return self.pending_late
        return []


def test_chunked_engine_matches_generate_with_arrivals_while_a_long_prompt_prefills():
    from subtool.runner.llm.engine import ContinuousEngine

    rng = np.random.default_rng(11)
    prompts = [rng.integers(3, 384, size=300).astype(np.int32), *_prompts(5, seed=5)]
    max_new = 8
    model = _model()
    expected = _reference(model, prompts, max_new, 0)
    engine = ContinuousEngine(
        model,
        slots=6,
        max_len=300 + max_new,
        eos_ids=[2],
        generation=_generation(max_new, 0),
        prefill_tokens=48,
        chunk_tokens=32,
        key_block=16,
    )
    sut = LateRecorder(prompts, late=[(i, i) for i in range(2, 6)], at=3)
    engine.run([(0, 0), (1, 1)], sut)
    assert sut.done == expected
    assert all(sut.first[q] == t[0] for q, t in sut.done.items())
    order = list(sut.first)
    assert all(order.index(late) < order.index(0) for late in range(2, 6)), order  # arrivals went first
    s = engine.stats
    assert s.max_step_tokens <= 48 and s.steps == sum(r["steps"] for r in s.step_profile.values())
    assert s.prefill_tokens == sum(len(p) for p in prompts) and s.prompts == 6
    assert s.prefill_pieces >= 6 + 300 // 32 and s.mixed_steps > 0  # the long prompt in pieces, next to decodes


@pytest.mark.parametrize("chunk", [3])
def test_tiny_chunks_and_budget_still_match_generate(chunk):
    from subtool.runner.llm.engine import ContinuousEngine

    model = _model()
    prompts = _prompts(5, seed=9)
    expected = _reference(model, prompts, 6, 2)
    engine = ContinuousEngine(
        model,
        slots=2,
        max_len=max(len(p) for p in prompts) + 6,
        eos_ids=[2],
        generation=_generation(6, 2),
        prefill_tokens=1,  # raised to slots + 1: a step always has room for a prompt token
        chunk_tokens=chunk,
    )
    sut = Recorder(prompts)
    engine.run([(i, i) for i in range(5)], sut)
    assert sut.done == expected and engine.prefill_tokens == 3
    assert engine.stats.max_step_tokens <= 3


def test_an_empty_prompt_is_refused_not_waited_on():
    from subtool.runner.llm.engine import ContinuousEngine

    prompts = [np.zeros(0, dtype=np.int32), *_prompts(1)]
    engine = ContinuousEngine(_model(), slots=2, max_len=90, eos_ids=[2], generation=_generation(4, 0))
    with pytest.raises(ValueError, match="empty prompt"):
        engine.run([(0, 0), (1, 1)], Recorder(prompts))


# on the GPU (the lead runs these on an H200) ------------------------------------------------------------------
@pytest.mark.gpu  # bench/gpu_check.sh runs the files that carry it
@cuda
def test_cuda_chunked_prefill_in_fp32_matches_generate():
    # fp32: SDPA with the explicit chunk mask, the decode graphs around it
    prompts = _prompts(24)
    model = _model("cuda")
    expected = _reference(model, prompts, 10, 0)
    engine, done = _cuda_run(prompts, 10, model=model, chunk_tokens=16)
    assert not engine.chunk_flash and engine.stats.prefill_pieces > 24 and engine.stats.mixed_steps > 0
    assert done == expected


@pytest.mark.gpu  # bench/gpu_check.sh runs the files that carry it
@cuda
def test_cuda_flash_chunks_agree_with_whole_prompts():
    # bf16: flash attention's variable-length kernel over cached prefixes (chunks of 16) against whole prompts in
    # one piece each (a top-left causal alignment would hide each chunk's prefix: most answers would change)
    prompts = _prompts(24)
    whole_engine, whole = _cuda_run(prompts, 10, prefill_tokens=4096)
    assert whole_engine.chunk_flash and whole_engine.stats.prefill_pieces == 24
    engine, chunked = _cuda_run(prompts, 10, chunk_tokens=16)
    assert engine.stats.prefill_pieces > 24
    same = sum(chunked[i] == whole[i] for i in range(24))
    assert same >= 20, f"chunked and whole prefill agree on {same} of 24 sequences"


@pytest.mark.gpu  # bench/gpu_check.sh runs the files that carry it
@cuda
def test_cuda_fp8_cache_chunks_read_their_prefix_back():
    # fp8 KV cache: a chunk's prefix is gathered as bytes and widened; its first tokens mostly agree with whole
    # prompts' (which attend to their own keys unrounded)
    prompts = _prompts(24)
    _, whole = _cuda_run(prompts, 10, prefill_tokens=4096, kv_cache="fp8")
    engine, chunked = _cuda_run(prompts, 10, chunk_tokens=16, kv_cache="fp8")
    assert engine.kv_fp8 and engine.stats.prefill_pieces > 24
    first = sum(chunked[i][0] == whole[i][0] for i in range(24))
    assert first >= 18, f"fp8 cache: chunked and whole first tokens agree on {first} of 24"


def _admission_engine(model, prompts, max_new: int, **options):
    """A continuous engine that logs each admission round: (free slots, prompts waiting, prompts it took)."""
    from subtool.runner.llm.engine import ContinuousEngine

    class Logged(ContinuousEngine):
        def _admit(self, sut):
            free, waiting = sum(s is None for s in self.active), len(self.waiting)
            super()._admit(sut)
            self.admissions.append((free, waiting, waiting - len(self.waiting)))

    engine = Logged(
        model,
        max_len=max(len(p) for p in prompts) + max_new,
        eos_ids=[2],
        generation=_generation(max_new, 0),
        key_block=16,
        **options,
    )
    engine.admissions = []
    return engine


@pytest.mark.parametrize("admit_free", [None, 1, 5])
def test_admission_waits_for_admit_free_slots_and_still_matches_generate(admit_free):
    model = _model()
    prompts = _prompts(30, seed=11)
    max_new = 12
    expected = _reference(model, prompts, max_new, 0)
    # prompts enter a few at a time (prefill_tokens 40), so sequences end at different steps
    engine = _admission_engine(model, prompts, max_new, slots=10, prefill_tokens=40, admit_free=admit_free)
    sut = Recorder(prompts)
    engine.run([(i, i) for i in range(30)], sut)
    assert sut.done == expected
    assert engine.admit_free == (admit_free or 1)  # 10 slots // 8
    # the rounds that took prompts while sequences ran
    later = [(free, waiting) for free, waiting, took in engine.admissions if took and free < engine.slots]
    assert later, "no admission while sequences ran: the test's prompts no longer stagger"
    # held back only while a full round waits: each admission found admit_free slots free or a shorter queue
    assert all(free >= engine.admit_free or waiting < engine.admit_free for free, waiting in later)
    if admit_free == 5:
        assert min(free for free, _ in later) < 10  # admitted while others still ran, not only when empty
    else:  # one free slot is enough: some admission took a single slot
        assert any(free == 1 for free, _ in later)


class _Trickle(Recorder):
    """Server's arrivals: once the first sequence has finished, one late prompt per engine step."""

    def more_work(self):
        self.calls.append(len(self.done))
        if self.late and self.done:
            return [self.late.pop(0)]
        return []


def test_a_short_queue_takes_a_free_slot_at_once():
    # a full engine (6 slots) with admit_free 4: the late prompts arrive one a step, so the queue stays under 4;
    # each must enter the first free slot, not wait for three more to free up (its wait would be its TTFT)
    model = _model()
    prompts = _prompts(14, seed=5)
    max_new = 10
    expected = _reference(model, prompts, max_new, 0)
    engine = _admission_engine(model, prompts, max_new, slots=6, admit_free=4)
    sut = _Trickle(prompts, late=[(i, i) for i in range(6, 14)])
    engine.run([(i, i) for i in range(6)], sut)
    assert sut.done == expected
    short = [(free, waiting, took) for free, waiting, took in engine.admissions if free and 0 < waiting < 4]
    assert short, "no step found a short queue and a free slot: the arrivals no longer trickle"
    assert all(took == min(free, waiting) for free, waiting, took in short), short
    # and the case a min(admit_free, queue) rule held back happened: fewer slots free than prompts waiting
    assert any(free < waiting for free, waiting, _ in short), short
