"""Token-budget batching for the fast BERT SUT: which samples go into one forward pass, and at what size.

The fast forward packs the tokens of several samples back to back (no padding to 384) and runs one CUDA graph
per padded token count, so a batch is described by its samples, its real token count and its bucket (the graph
size it runs at). Everything here is plain Python and numpy: it decides, the executor computes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from subtool.runner.bert.squad import MAX_SEQ_LENGTH

# The most sequences a batch of `bucket` tokens may hold is bucket // this (shorter samples pack more densely).
MIN_TOKENS_PER_SEQUENCE = 32
BULK_FACTOR = 8  # a backlog of this many budgets is packed by length, not by arrival order


def token_buckets(budget: int, fine_step: int = 256, fine_limit: int = 2048, coarse_step: int = 512) -> tuple:
    """Graph sizes: every fine_step tokens up to fine_limit, then every coarse_step, ending at the budget."""
    if budget < MAX_SEQ_LENGTH:
        raise ValueError(f"a token budget of {budget} cannot hold one {MAX_SEQ_LENGTH}-token sample")
    sizes = set(range(fine_step, min(fine_limit, budget) + 1, fine_step))
    sizes.update(range(fine_limit + coarse_step, budget + 1, coarse_step))
    sizes.add(budget)
    return tuple(sorted(sizes))


def capacities(bucket: int) -> tuple:
    """The cu_seqlens capacities a bucket's graphs are captured with: powers of two from what full-length
    samples need up to bucket // MIN_TOKENS_PER_SEQUENCE. Flash attention launches sequences x heads x 3 thread
    blocks whatever the sequences hold, so a batch runs with the smallest capacity that fits it."""
    top = max(4, bucket // MIN_TOKENS_PER_SEQUENCE)
    c = 4
    while c * MAX_SEQ_LENGTH < bucket:
        c *= 2
    out = []
    while c < top:
        out.append(c)
        c *= 2
    out.append(top)
    return tuple(out)


def sequence_capacity(bucket: int) -> int:
    """The most sequences a bucket accepts."""
    return capacities(bucket)[-1]


def choose_shape(tokens: int, sequences: int, buckets: tuple) -> tuple[int, int]:
    """(bucket, capacity): the smallest bucket holding this many tokens and sequences, at its smallest capacity."""
    for b in buckets:
        if b >= tokens:
            for c in capacities(b):
                if c >= sequences:
                    return b, c
    raise ValueError(f"no bucket holds {tokens} tokens in {sequences} sequences (largest {buckets[-1]})")


def choose_bucket(tokens: int, sequences: int, buckets: tuple) -> int:
    return choose_shape(tokens, sequences, buckets)[0]


@dataclass(frozen=True)
class Batch:
    query_ids: np.ndarray  # uint64 LoadGen response ids
    indices: np.ndarray  # int64 QSL indices, same order
    tokens: int  # real tokens
    bucket: int  # the graph size it runs at
    capacity: int  # the sequences its graph has room for

    def __len__(self) -> int:
        return int(self.indices.shape[0])


class TokenBatcher:
    """Pending samples → batches of at most `budget` tokens.

    A small backlog (the Server scenario) is served in arrival order, so no sample waits behind later ones; a
    large one (the single Offline query) is packed longest-first with the shortest samples filling each batch's
    remainder, so nearly every batch runs at the full budget. Thread-safe: LoadGen adds, the launcher takes.
    """

    def __init__(self, lengths: np.ndarray, budget: int, buckets: tuple | None = None):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.size and int(self.lengths.max()) > budget:
            raise ValueError(f"a sample of {int(self.lengths.max())} tokens exceeds the token budget {budget}")
        self.budget = int(budget)
        self.buckets = tuple(buckets) if buckets else token_buckets(self.budget)
        if self.buckets[-1] < self.budget:
            raise ValueError("the largest bucket must hold the whole token budget")
        self.max_sequences = sequence_capacity(self.buckets[-1])
        self._ids = np.zeros(0, np.uint64)
        self._idx = np.zeros(0, np.int64)
        self._sorted = False  # the pool is ordered longest first (bulk mode)
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._closed = False

    # LoadGen side -------------------------------------------------------------------------------------
    def add(self, query_ids, indices) -> None:
        ids = np.asarray(query_ids, dtype=np.uint64)
        idx = np.asarray(indices, dtype=np.int64)
        with self._lock:
            self._ids = np.concatenate([self._ids, ids])
            self._idx = np.concatenate([self._idx, idx])
            self._sorted = False
            self._arrived.notify_all()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._arrived.notify_all()

    def pending(self) -> int:
        with self._lock:
            return int(self._idx.size)

    # launcher side ------------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> bool:
        """Block until samples are pending (True) or the batcher is closed and drained (False)."""
        with self._lock:
            while not self._idx.size and not self._closed:
                if not self._arrived.wait(timeout):
                    return bool(self._idx.size)
            return bool(self._idx.size)

    def take(self) -> Batch | None:
        with self._lock:
            if not self._idx.size:
                return None
            lens = self.lengths[self._idx]
            total = int(lens.sum())
            if total <= self.budget and lens.size <= self.max_sequences:
                batch_ids, batch_idx = self._ids, self._idx
                self._ids, self._idx = self._ids[:0], self._idx[:0]
            elif total >= BULK_FACTOR * self.budget or self._sorted:
                batch_ids, batch_idx = self._take_packed(lens)
            else:
                chosen = _first_fit(lens, self.budget, self.max_sequences)
                batch_ids, batch_idx = self._ids[chosen], self._idx[chosen]
                keep = np.ones(self._idx.size, dtype=bool)
                keep[chosen] = False
                self._ids, self._idx = self._ids[keep], self._idx[keep]
            if not self._idx.size:
                self._sorted = False
        tokens = int(self.lengths[batch_idx].sum())
        return Batch(batch_ids, batch_idx, tokens, *choose_shape(tokens, batch_idx.size, self.buckets))

    def _take_packed(self, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self._sorted:
            order = np.argsort(-lens, kind="stable")
            self._ids, self._idx, lens = self._ids[order], self._idx[order], lens[order]
            self._sorted = True
        head, tail = _head_tail(lens, self.budget, self.max_sequences)
        end = lens.size - tail
        ids = np.concatenate([self._ids[:head], self._ids[end:][::-1]])
        idx = np.concatenate([self._idx[:head], self._idx[end:][::-1]])
        self._ids, self._idx = self._ids[head:end], self._idx[head:end]
        return ids, idx


def _first_fit(lens: np.ndarray, budget: int, max_sequences: int) -> np.ndarray:
    """Positions of samples taken in arrival order while they fit, then later ones that still fit."""
    csum = np.cumsum(lens)
    n = min(int(np.searchsorted(csum, budget, side="right")), max_sequences)
    chosen = list(range(n))
    room = budget - (int(csum[n - 1]) if n else 0)
    shortest = int(lens[n:].min()) if n < lens.size else 0
    for pos in range(n, lens.size):
        if len(chosen) >= max_sequences or room < shortest:
            break
        if lens[pos] <= room:
            chosen.append(pos)
            room -= int(lens[pos])
    return np.asarray(chosen, dtype=np.int64)


def _head_tail(lens: np.ndarray, budget: int, max_sequences: int) -> tuple[int, int]:
    """On a pool sorted longest first: how many of the longest fit, then how many of the shortest fill the rest."""
    window = lens[:max_sequences]
    head = int(np.searchsorted(np.cumsum(window), budget, side="right"))
    room = budget - int(window[:head].sum())
    shortest = lens[head:][::-1][: max_sequences - head]
    tail = int(np.searchsorted(np.cumsum(shortest), room, side="right"))
    return head, tail


@dataclass
class PackedInputs:
    """One batch laid out for the packed forward, every array padded to the bucket size."""

    input_ids: np.ndarray  # int32 [bucket]
    segment_ids: np.ndarray  # int32 [bucket]
    position_ids: np.ndarray  # int32 [bucket]
    # where each token's logits go in the [sequences * 384 (+1 dump row)] output; padding → the dump row
    out_rows: np.ndarray  # int32 [bucket]
    cu_seqlens: np.ndarray  # int32 [capacity + 1], unused sequences empty
    sequences: int
    tokens: int


def pack_inputs(
    input_ids: np.ndarray,
    segment_ids: np.ndarray,
    seq_lengths: np.ndarray,
    indices: np.ndarray,
    bucket: int,
    capacity: int | None = None,
) -> PackedInputs:
    """Gather the samples' real tokens back to back. Padding tokens point at the dump row, capacity * 384
    (capacity defaults to the bucket's largest)."""
    indices = np.asarray(indices, dtype=np.int64)
    lens = seq_lengths[indices].astype(np.int64)
    n = int(lens.sum())
    if n > bucket:
        raise ValueError(f"{n} tokens do not fit a bucket of {bucket}")
    cap = sequence_capacity(bucket) if capacity is None else int(capacity)
    if indices.size > cap:
        raise ValueError(f"{indices.size} sequences do not fit a capacity of {cap}")
    dump = cap * MAX_SEQ_LENGTH
    mask = np.arange(MAX_SEQ_LENGTH)[None, :] < lens[:, None]
    ids = np.zeros(bucket, np.int32)
    seg = np.zeros(bucket, np.int32)
    pos = np.zeros(bucket, np.int32)
    rows = np.full(bucket, dump, np.int32)
    ids[:n] = input_ids[indices][mask]
    seg[:n] = segment_ids[indices][mask]
    grid = np.broadcast_to(np.arange(MAX_SEQ_LENGTH, dtype=np.int32), mask.shape)
    pos[:n] = grid[mask]
    rows[:n] = (np.arange(indices.size, dtype=np.int32)[:, None] * MAX_SEQ_LENGTH + grid)[mask]
    cu = np.full(cap + 1, n, np.int32)
    cu[0] = 0
    cu[1 : indices.size + 1] = np.cumsum(lens)
    return PackedInputs(ids, seg, pos, rows, cu, int(indices.size), n)


class ResponseLedger:
    """Every issued sample answered exactly once: LoadGen hangs on a missing answer and corrupts its log on a
    duplicate, so the SUT checks both before it reports."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open: set[int] = set()
        self.issued = 0
        self.answered = 0
        self.duplicates = 0
        self.unknown = 0

    def issue(self, query_ids) -> None:
        with self._lock:
            for q in map(int, query_ids):
                if q in self._open:
                    self.duplicates += 1
                self._open.add(q)
                self.issued += 1

    def answer(self, query_ids) -> None:
        with self._lock:
            for q in map(int, query_ids):
                if q in self._open:
                    self._open.remove(q)
                    self.answered += 1
                else:
                    self.unknown += 1

    @property
    def outstanding(self) -> int:
        with self._lock:
            return len(self._open)

    def problems(self) -> list[str]:
        out = []
        if self.duplicates:
            out.append(f"{self.duplicates} query ids issued twice while still open")
        if self.unknown:
            out.append(f"{self.unknown} answers for ids never issued or already answered")
        return out
