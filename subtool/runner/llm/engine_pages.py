"""The continuous engine's KV cache as pages: which pages of one pool hold each slot's keys and values.

The cache of every layer is one pool of fixed-size pages (`page` tokens each) plus one spare page past its end. A
slot's table row maps its logical pages (positions 0…page-1, page…2·page-1, …) to pages of the pool; every position
a slot has not been given maps to the spare page, so a write there (a decode step's row for a slot that is still
prefilling, or empty) lands where nothing reads it.

Two ways to give pages out:

- **fixed** (`pages=None`): slot s owns pool pages s·per_slot … (s+1)·per_slot-1 for good, so the pool is the old
  [slots, max_len] cache and a slot always has room for its prompt and its longest answer. Flash attention's
  variable-length decode reads it as that;
- **paged** (`pages=N`): a pool smaller than slots × max_len, given out a page at a time as sequences grow and
  returned as they end. Sequences are sized by what they hold, not by the longest they might grow to, so many more
  fit at once; when a growing sequence finds no free page, the engine preempts the newest sequence (its pages
  return to the pool, and it is prefilled again later from its prompt and its answer so far).

Pure numpy (no torch): the allocator and its accounting are tested on their own.
"""

from __future__ import annotations

import numpy as np

PAGE_TOKENS = 64  # tokens per page unless asked otherwise: one block of the Triton decode kernel's keys


def pages_for(tokens: int, page: int) -> int:
    return -(-max(0, int(tokens)) // page)


class PagePool:
    def __init__(self, slots: int, max_len: int, page: int, pages: int | None = None):
        if page < 1:
            raise ValueError(f"a page of {page} tokens")
        self.page = int(page)
        self.slots = int(slots)
        self.per_slot = pages_for(max_len, self.page)  # logical pages of one slot's table row
        self.fixed = pages is None
        self.pages = self.slots * self.per_slot if self.fixed else int(pages)
        if self.pages < self.per_slot:
            raise ValueError(
                f"a KV pool of {self.pages} pages of {page} tokens cannot hold one sequence of {max_len} tokens"
            )
        self.spare = self.pages  # the page past the pool: where unmapped positions write
        self.table = np.full((self.slots, self.per_slot), self.spare, dtype=np.int64)
        self.held = np.zeros(self.slots, dtype=np.int64)  # pages mapped in each slot's row
        if self.fixed:
            self.table[:] = np.arange(self.pages, dtype=np.int64).reshape(self.slots, self.per_slot)
            self.held[:] = self.per_slot
        self._free = list(range(self.pages - 1, -1, -1)) if not self.fixed else []  # popped lowest first
        self.dirty = True  # the table changed since the device last copied it

    @property
    def free_pages(self) -> int:
        return len(self._free) if not self.fixed else self.pages

    def pages_for(self, tokens: int) -> int:
        return pages_for(tokens, self.page)

    def ensure(self, slot: int, tokens: int) -> bool:
        """Map pages in slot's row until it holds `tokens` positions; False (nothing mapped) if the pool lacks them."""
        if tokens > self.per_slot * self.page:
            raise ValueError(f"{tokens} tokens are more than a slot's {self.per_slot * self.page}")
        need = self.pages_for(tokens) - int(self.held[slot])
        if need <= 0 or self.fixed:
            return True
        if need > len(self._free):
            return False
        start = int(self.held[slot])
        for j in range(start, start + need):
            self.table[slot, j] = self._free.pop()
        self.held[slot] = start + need
        self.dirty = True
        return True

    def release(self, slot: int) -> None:
        """Return slot's pages to the pool (fixed: nothing to return)."""
        if self.fixed:
            return
        n = int(self.held[slot])
        self._free.extend(int(p) for p in self.table[slot, :n][::-1])
        self.table[slot, :n] = self.spare
        self.held[slot] = 0
        self.dirty = True

    def move(self, src: int, dst: int) -> None:
        """Slot src's pages become those of the empty slot dst (its sequence goes on there; nothing is copied)."""
        if self.fixed:
            raise ValueError("a fixed pool's pages belong to their slots")
        if self.held[dst]:
            raise ValueError(f"slot {dst} holds pages")
        self.table[dst] = self.table[src]
        self.held[dst] = self.held[src]
        self.table[src] = self.spare
        self.held[src] = 0
        self.dirty = True

    def flat(self, slots: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Row of each (slot, position) in a layer's pool laid out token-major: page · page_tokens + offset."""
        return self.table[slots, positions // self.page] * self.page + positions % self.page

    def used_tokens(self) -> int:
        return int(self.held.sum()) * self.page
