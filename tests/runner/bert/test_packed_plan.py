"""Token-budget batching, bucket choice, packing and answer accounting of the fast BERT SUT (pure logic, CPU)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from subtool.runner.bert.packed_plan import (
    BULK_FACTOR,
    ResponseLedger,
    TokenBatcher,
    capacities,
    choose_bucket,
    choose_shape,
    pack_inputs,
    sequence_capacity,
    token_buckets,
)
from subtool.runner.bert.squad import MAX_SEQ_LENGTH


def squad_like_lengths(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(5.0, 0.4, n).astype(np.int64) + 14, 20, MAX_SEQ_LENGTH)


def drain(batcher: TokenBatcher) -> list:
    out = []
    while (batch := batcher.take()) is not None:
        out.append(batch)
    return out


def test_buckets_end_at_the_budget_and_grow():
    b = token_buckets(16384)
    assert b[0] == 256 and b[-1] == 16384 and list(b) == sorted(set(b))
    assert token_buckets(1000)[-1] == 1000
    with pytest.raises(ValueError):
        token_buckets(100)


def test_choose_bucket_is_the_smallest_that_holds_tokens_and_sequences():
    buckets = token_buckets(4096)
    assert choose_bucket(1, 1, buckets) == 256
    assert choose_bucket(257, 2, buckets) == 512
    assert choose_bucket(4096, 3, buckets) == 4096
    # 40 tiny sequences need more cu_seqlens room than a 512-token graph has
    assert sequence_capacity(512) < 40 and sequence_capacity(choose_bucket(400, 40, buckets)) >= 40
    with pytest.raises(ValueError):
        choose_bucket(4097, 1, buckets)


def test_capacities_run_from_full_length_samples_to_short_ones():
    assert capacities(256) == (4, 8)
    assert capacities(16384) == (64, 128, 256, 512)
    for bucket in token_buckets(16384):
        caps = capacities(bucket)
        assert caps[0] * MAX_SEQ_LENGTH >= bucket  # the smallest still holds full-length samples
        assert list(caps) == sorted(set(caps)) and caps[-1] == sequence_capacity(bucket)
    # a batch runs at the smallest capacity that holds it
    assert choose_shape(16000, 42, token_buckets(16384)) == (16384, 64)
    assert choose_shape(16000, 65, token_buckets(16384)) == (16384, 128)


@pytest.mark.parametrize("budget", [384, 4096, 16384])
def test_offline_backlog_answers_every_sample_once_within_budget(budget):
    lengths = squad_like_lengths(10833)
    batcher = TokenBatcher(lengths, budget)
    rng = np.random.default_rng(1)
    order = rng.permutation(lengths.size)
    batcher.add(order + 1000, order)  # query ids differ from indices on purpose
    batches = drain(batcher)
    ids = np.concatenate([b.query_ids for b in batches])
    idx = np.concatenate([b.indices for b in batches])
    assert sorted(idx.tolist()) == list(range(lengths.size))
    assert np.array_equal(ids.astype(np.int64), idx + 1000)  # ids travel with their samples
    for b in batches:
        assert b.tokens == int(lengths[b.indices].sum()) <= budget
        assert b.bucket >= b.tokens and len(b) <= b.capacity <= sequence_capacity(b.bucket)
        assert b.capacity in capacities(b.bucket) and (
            b.capacity == capacities(b.bucket)[0] or len(b) > b.capacity // 2
        )
    # packed longest-first with short ones in the gaps: all but the last few batches are nearly full
    full = [b.tokens / budget for b in batches[:-3]]
    if budget >= 4096:
        assert min(full) > 0.97
    assert batcher.pending() == 0 and batcher.take() is None


def test_small_backlog_is_served_in_arrival_order():
    lengths = np.full(50, 100)
    batcher = TokenBatcher(lengths, 1024)
    batcher.add(np.arange(25), np.arange(25))
    first = batcher.take()
    assert first.indices.tolist() == list(range(10))  # the ten oldest fit 1024 tokens
    batcher.add(np.arange(25, 30), np.arange(25, 30))
    rest = drain(batcher)
    taken = [i for b in rest for i in b.indices.tolist()]
    assert taken == list(range(10, 30))


def test_first_fit_fills_the_gap_with_later_samples():
    lengths = np.array([300, 300, 300, 200, 100, 50])
    batcher = TokenBatcher(lengths, 1000)
    batcher.add(np.arange(6), np.arange(6))
    assert batcher.take().indices.tolist() == [0, 1, 2, 4]  # 200 does not fit the last 100, 100 does


def test_trickle_and_bulk_mixed_every_sample_once_from_threads():
    lengths = squad_like_lengths(3000, seed=2)
    batcher = TokenBatcher(lengths, 2048)
    got: list[int] = []

    def consume():
        while batcher.wait():
            b = batcher.take()
            if b is not None:
                got.extend(b.indices.tolist())

    t = threading.Thread(target=consume)
    t.start()
    for start in range(0, 1000, 7):  # arrivals one query at a time, as in Server
        stop = min(start + 7, 1000)
        batcher.add(np.arange(start, stop), np.arange(start, stop))
    batcher.add(np.arange(1000, 3000), np.arange(1000, 3000))  # then a bulk of many budgets
    assert 2000 * 150 > BULK_FACTOR * 2048
    batcher.close()
    t.join(timeout=30)
    assert not t.is_alive()
    assert sorted(got) == list(range(3000))


def test_a_sample_longer_than_the_budget_is_refused():
    with pytest.raises(ValueError):
        TokenBatcher(np.array([384]), 383)


def test_pack_inputs_lays_tokens_back_to_back():
    ids = np.arange(4 * MAX_SEQ_LENGTH, dtype=np.int32).reshape(4, MAX_SEQ_LENGTH)
    seg = (np.arange(MAX_SEQ_LENGTH) % 2).astype(np.int8)[None, :].repeat(4, 0)
    lengths = np.array([5, 3, 384, 2], dtype=np.int32)
    p = pack_inputs(ids, seg, lengths, np.array([1, 3, 0]), 256, 4)
    assert p.tokens == 10 and p.sequences == 3
    assert p.input_ids[:10].tolist() == [384, 385, 386, 1152, 1153, 0, 1, 2, 3, 4]
    assert p.position_ids[:10].tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3, 4]
    assert p.segment_ids[:10].tolist() == [0, 1, 0, 0, 1, 0, 1, 0, 1, 0]
    assert p.out_rows[:10].tolist() == [0, 1, 2, 384, 385, 768, 769, 770, 771, 772]
    dump = 4 * MAX_SEQ_LENGTH
    assert (p.out_rows[10:] == dump).all() and (p.input_ids[10:] == 0).all()
    assert p.cu_seqlens.size == 4 + 1
    assert p.cu_seqlens[:4].tolist() == [0, 3, 5, 10] and (p.cu_seqlens[4:] == 10).all()
    with pytest.raises(ValueError):
        pack_inputs(ids, seg, lengths, np.array([2]), 256)  # 384 tokens in a 256 bucket


def test_ledger_counts_missing_duplicate_and_unknown_answers():
    ledger = ResponseLedger()
    ledger.issue([1, 2, 3])
    ledger.answer([1, 2])
    assert ledger.outstanding == 1 and not ledger.problems()
    ledger.answer([2, 99])
    assert ledger.unknown == 2 and "never issued or already answered" in ledger.problems()[0]
    ledger.issue([3])
    assert ledger.duplicates == 1
