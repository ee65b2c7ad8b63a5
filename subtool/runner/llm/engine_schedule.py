"""The continuous engine's step planner: which prompt tokens each step prefills next to the running decodes.

Every engine step has one token budget. The sequences that are decoding take one token each; what is left goes to
chunks of the prompts still being prefilled, so a long prompt is prefilled over several steps while the others keep
decoding, and a short prompt that arrives meanwhile gets its first token at once instead of waiting behind it:

- the oldest prompt in prefill (admission order) is always served first, with at least a quarter of the room (or
  what it has left): however many short prompts keep arriving, a long one advances every step (no starvation);
- then the prompts with the fewest tokens left, so the prompts that can finish this step do (first tokens before
  bulk prefill);
- no prompt takes more than `chunk` tokens in one step, and the step never exceeds the budget.

A sequence holds one slot from admission to its last token. Its KV cache is either the slot's own rows, with room
for the longest prompt plus the longest answer, or pages of a shared pool given out as it grows (engine_pages.py);
then a sequence may be preempted when the pool runs dry, and is prefilled again later from its prompt and its answer
so far (`Sequence.context`), so nothing it generated is lost.

A decode step runs over the slots up to the last decoding one, rounded up to one of a few row counts (`row_bucket`),
so that a CUDA graph per row count serves every step and a half-empty engine does not compute its empty slots. As
sequences end in any slot, a draining engine's last slots stay taken: `compaction` names the moves (a paged cache's
table rows, nothing copied) that bring its sequences under the smallest row count that holds them.

Pure Python (no torch): the planner and its accounting are tested on their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)
class Sequence:
    """One admitted sample: its prompt, how much of it is in the cache, its answer so far."""

    qid: int
    index: int  # sample index (the SUT's prompts)
    prompt: np.ndarray
    slot: int
    order: int  # admission order
    done: int = 0  # tokens of the context already in the cache
    outputs: list[int] = field(default_factory=list)
    prefix: np.ndarray | None = None  # after a preemption: the prompt and the answer but its last token

    @property
    def context(self) -> np.ndarray:
        """What prefill puts in the cache: the prompt, or after a preemption the prompt and the answer so far but
        its last token (the next decode step's input)."""
        return self.prompt if self.prefix is None else self.prefix

    @property
    def remaining(self) -> int:
        return len(self.context) - self.done

    @property
    def decoding(self) -> bool:
        return bool(self.outputs) and self.remaining == 0

    @property
    def position(self) -> int:
        """The cache position the next decode step writes (that of the answer's last token)."""
        return len(self.prompt) + len(self.outputs) - 1

    def preempt(self) -> None:
        """Its cache is gone: prefill again from the start, the answer so far included."""
        self.done = 0
        self.slot = -1
        if self.outputs:
            self.prefix = np.concatenate([self.prompt, np.asarray(self.outputs[:-1], dtype=self.prompt.dtype)])


def plan_chunks(prefilling: list[tuple[int, int]], decoding: int, budget: int, chunk: int) -> list[tuple[int, int]]:
    """(key, tokens) to prefill this step for prefilling = [(key, tokens left)] in admission order, given the
    `decoding` tokens of the step and its token budget; in admission order, each at most `chunk`, none empty."""
    room = budget - decoding
    if room <= 0 or not prefilling:
        return []
    chunk = max(1, chunk)
    grant: dict[int, int] = {}
    head, head_left = prefilling[0]
    first = min(head_left, chunk, max(1, room // 4))
    grant[head] = first
    room -= first
    for key, left in sorted(prefilling, key=lambda kl: kl[1]):  # fewest left first; stable: oldest among equals
        if room <= 0:
            break
        have = grant.get(key, 0)
        n = min(left - have, chunk - have, room)
        if n > 0:
            grant[key] = have + n
            room -= n
    return [(key, grant[key]) for key, _ in prefilling if grant.get(key, 0) > 0]


def row_bucket(rows: int, slots: int) -> int:
    """The row count a decode step over the first `rows` slots runs with: `rows` rounded up to an eighth of the
    slots (every count below 8 slots), at most the slots."""
    step = -(-slots // 8)
    return min(slots, -(-max(1, rows) // step) * step)


def row_buckets(slots: int) -> list[int]:
    """Every row count row_bucket gives for these slots (one decode graph each)."""
    return sorted({row_bucket(rows, slots) for rows in range(1, slots + 1)})


def compaction(live: list[int], slots: int) -> list[tuple[int, int]]:
    """(from, to) slot moves that put the sequences of the occupied slots `live` (ascending) within the first
    row_bucket(len(live)) slots: the highest ones into the lowest free slots. No moves when the last one is
    already there, so an engine whose count sits in the same bucket as its highest slot moves nothing."""
    if not live:
        return []
    target = row_bucket(len(live), slots)
    if live[-1] < target:
        return []
    taken = set(live)
    free = [s for s in range(target) if s not in taken]
    return list(zip([s for s in reversed(live) if s >= target], free))


def profile_bucket(prefill_tokens: int) -> str:
    """The step-profile row of a step with this many prefill tokens: 0, then powers of four."""
    if prefill_tokens <= 0:
        return "0"
    low, high = 1, 256
    while prefill_tokens > high:
        low, high = high + 1, high * 4
    return f"{low}-{high}"


@dataclass
class EngineStats:
    """What the engine did: steps, tokens and wall time, decode and prefill apart (a step's decode time ends when
    its tokens reach the host, its prefill time when the chunk's first tokens do, so both include the GPU work)."""

    steps: int = 0
    decode_steps: int = 0  # steps that decoded (one graph replay each on CUDA)
    decode_slot_steps: int = 0  # decode tokens: sequences decoding, summed over steps
    decode_seconds: float = 0.0
    prefill_steps: int = 0  # steps that prefilled prompt chunks (one eager pass each)
    prefill_tokens: int = 0
    prefill_pieces: int = 0  # (prompt, chunk) pieces: a prompt prefilled over three steps counts three
    prefill_seconds: float = 0.0
    prompts: int = 0  # prompts whose prefill completed (first tokens)
    mixed_steps: int = 0  # steps that did both
    preempted: int = 0  # sequences whose pages went back to the pool before they ended (prefilled again later)
    moved: int = 0  # sequences moved to a lower slot (compaction) so that the decode step ran fewer rows
    decode_row_steps: int = 0  # rows the decode steps computed (decode_slot_steps of them were live), summed
    max_step_tokens: int = 0
    graphs: int = 0
    # per prefill size of a step ("0", "1-256", "257-1024", …): steps, decode and prefill tokens, seconds
    step_profile: dict = field(default_factory=dict)

    def record(self, decode_tokens: int, prefill_tokens: int, pieces: int, decode_s: float, prefill_s: float):
        self.steps += 1
        if decode_tokens:
            self.decode_steps += 1
            self.decode_slot_steps += decode_tokens
            self.decode_seconds += decode_s
        if prefill_tokens:
            self.prefill_steps += 1
            self.prefill_tokens += prefill_tokens
            self.prefill_pieces += pieces
            self.prefill_seconds += prefill_s
        if decode_tokens and prefill_tokens:
            self.mixed_steps += 1
        self.max_step_tokens = max(self.max_step_tokens, decode_tokens + prefill_tokens)
        row = self.step_profile.setdefault(
            profile_bucket(prefill_tokens), {"steps": 0, "decode_tokens": 0, "prefill_tokens": 0, "seconds": 0.0}
        )
        row["steps"] += 1
        row["decode_tokens"] += decode_tokens
        row["prefill_tokens"] += prefill_tokens
        row["seconds"] = round(row["seconds"] + decode_s + prefill_s, 6)
