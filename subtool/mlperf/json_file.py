"""A JSON file an input names (a checkpoint's config.json, its index, a tokenizer.json, a data set, a harness's
model_mapping or measurements): bounded, regular, strict, and refused as one SubtoolError naming the file under
the caller's rule. The model loaders and `package`'s importers read theirs through it; the checker's readers,
which never raise, use logs.read_json_object."""

from __future__ import annotations

from pathlib import Path

from subtool.errors import SubtoolError
from subtool.mlperf.json_strict import parse_json
from subtool.mlperf.logs import describe_os_error, read_bounded

__all__ = ["JSON_LIMIT", "read_json"]

JSON_LIMIT = 16 << 20  # config.json, an index, tokenizer.json: a few kB to a few MB


def read_json(path: Path, rule: str, *, limit: int = JSON_LIMIT):
    """The value of a JSON file, read with a size bound and only if it is a regular file (a link to one, as in the
    Hugging Face cache, is fine). Not a regular file (a FIFO, /dev/zero), too large, empty, not UTF-8, not strict
    JSON (NaN, Infinity) or nested too deep: one SubtoolError naming the file under `rule`. A missing file raises
    FileNotFoundError: each caller says what it is."""
    path = Path(path)
    try:
        data = read_bounded(path, limit, follow_links=True)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SubtoolError(f"{path.name} {describe_os_error(exc)}", path=path, rule=rule) from None
    if not data.strip():
        raise SubtoolError(f"{path.name} is empty", path=path, rule=rule)
    value, problem = parse_json(data)
    if problem is not None:
        raise SubtoolError(f"{path.name} {problem}", path=path, rule=rule)
    return value
