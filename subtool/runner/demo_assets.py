"""What the embedded demos of every model family share: the cache they are generated into, the pair of paths a
demo hands its workload, the made-up vocabulary their tokenizers read, and building a demo folder once.

Each family's demo (bert/demo.py, llm/demo.py) writes a checkpoint and a data set in the official file formats
into the cache; the workload then loads them as it would load the real ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from subtool.fsutil import atomic_write_text, cache_root, staged_directory  # noqa: F401  (cache_root, re-exported)

COMPLETE = "COMPLETE"  # written last into a demo folder: one without it is rebuilt, never trusted
DEMO_MARKER = "SUBTOOL_DEMO.txt"  # in every demo checkpoint (random weights)

_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class DemoAssets:
    model_path: Path
    dataset_path: Path


def generate_vocabulary(rng: random.Random, n: int) -> list[str]:
    """n pronounceable lower-case words (1 to 4 syllables), sorted; the same rng state gives the same words."""
    words: set[str] = set()
    while len(words) < n:
        syllables = rng.randint(1, 4)
        words.add("".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables)))
    return sorted(words)


def build_once(root: Path, build: Callable[[Path], None], label: str) -> None:
    """Generate a demo folder once: `build(tmp)` fills a staged copy, COMPLETE (holding `label`) marks it whole,
    and it takes root's place in one rename. A root already COMPLETE is kept as it is."""
    if (root / COMPLETE).exists():
        return
    with staged_directory(root) as tmp:
        build(tmp)
        atomic_write_text(tmp / COMPLETE, f"{label}\n")
