"""The one-line refusal the LLM loaders and readers give, as the tests check it: its rule, the file it names, and
words its line must hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from subtool.errors import SubtoolError


def refused(call, rule: str, path: Path, *words: str) -> SubtoolError:
    with pytest.raises(SubtoolError) as err:
        call()
    line = err.value.one_line()
    assert err.value.rule == rule and Path(err.value.path) == path and all(w in line for w in words), line
    return err.value
