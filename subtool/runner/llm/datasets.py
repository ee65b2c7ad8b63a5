"""Reading the LLM benchmarks' preprocessed data sets as the references ship them (checkpoints: checkpoint.py).

- llama3.1-8b: `cnn_eval.json`, a JSON list of {"instruction", "input", "tok_input": [ids], "output"} (the
  reference's download_cnndm.py; prompts already tokenized with the Llama-3.1 tokenizer).
- llama2-70b: `open_orca_gpt4_tokenized_llama.sampled_24576.pkl`, a pickled pandas DataFrame with at least the
  columns "tok_input" (ids) and "output" (reference answer) (the reference's processorca.py).
- gptj: `cnn_eval.json`, a JSON list of {"instruction", "input", "output"}; the prompt is the reference's
  Alpaca-style template, tokenized here with the checkpoint's tokenizer (truncated at 1,919 tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subtool.errors import SubtoolError
from subtool.fsutil import sha256_file
from subtool.mlperf.json_file import read_json
from subtool.runner.llm.checkpoint import load_tokenizer, read_config
from subtool.runner.llm.specs import LlmSpec

GPTJ_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
GPTJ_MAX_PROMPT_TOKENS = 1919
JSON_DATASET_LIMIT = 1 << 30  # cnn_eval.json: about 100 MB for the 13,368 samples
INT32_MAX = 2**31 - 1


@dataclass
class LlmData:
    prompts: list[np.ndarray]  # int32 token ids per sample
    targets: list[str]  # reference outputs
    tokenizer: object
    dataset_sha256: str
    description: str

    @property
    def input_lengths(self) -> np.ndarray:
        return np.array([len(p) for p in self.prompts], dtype=np.int64)


# ------------------------------------------------------------------------------------------------ readers
def _json_records(path: Path, spec: LlmSpec) -> list:
    try:
        records = read_json(path, "dataset.format", limit=JSON_DATASET_LIMIT)
    except FileNotFoundError:
        raise SubtoolError(
            "dataset file not found", path=path, rule="dataset.missing", hint=f"{spec.name} reads {spec.dataset_hint}"
        ) from None
    except SubtoolError as exc:  # not a regular file, too large, empty, not strict JSON, nested too deep
        raise SubtoolError(
            f"{exc.message}; {spec.name} reads {spec.dataset_file}", path=path, rule=exc.rule, hint=spec.dataset_hint
        ) from None
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise SubtoolError(
            f"expected a JSON list of sample objects ({spec.dataset_file})",
            path=path,
            rule="dataset.format",
            hint=spec.dataset_hint,
        )
    return records


def _token_ids(value, path: Path, index: int, field: str) -> np.ndarray:
    """A sample's token ids as int32: a non-empty list (or integer array) of integers from 0 to 2**31 - 1. Floats
    and bools are refused, not truncated or taken as 0 and 1; an id too large for int32 is refused, not wrapped."""
    ids = None
    if isinstance(value, np.ndarray) and value.dtype != object:
        ids = value if value.dtype.kind in "iu" else None
    elif isinstance(value, (list, tuple, np.ndarray)) and all(_is_int(t) for t in set(map(type, value))):
        try:
            ids = np.asarray(value, dtype=np.int64)
        except OverflowError:  # an id past int64
            raise SubtoolError(
                f"sample {index}: '{field}' holds a token id too large for any vocabulary",
                path=path,
                rule="dataset.format",
            ) from None
    if ids is None or ids.ndim != 1 or ids.size == 0:
        raise SubtoolError(
            f"sample {index}: '{field}' is not a non-empty list of integer token ids", path=path, rule="dataset.format"
        )
    bad = id_outside(ids, INT32_MAX + 1)
    if bad is not None:
        raise SubtoolError(f"sample {index}: '{field}' holds token id {bad}", path=path, rule="dataset.format")
    return ids.astype(np.int32)


def id_outside(ids: np.ndarray, limit: int) -> int | None:
    """An id of `ids` that is no index below `limit`: the lowest when one is negative, else the highest when it is
    `limit` or more; None when every id fits (or there are none)."""
    if not ids.size:
        return None
    low, high = int(ids.min()), int(ids.max())
    return low if low < 0 else high if high >= limit else None


def _is_int(kind: type) -> bool:
    return issubclass(kind, (int, np.integer)) and not issubclass(kind, (bool, np.bool_))


def _text(value, path: Path, index: int, field: str) -> str:
    """A reference output (or a prompt field): a string, never the text of None or NaN. An empty one is kept: the
    official files are not known to hold one, and refusing a real data set over it would stop a team's run."""
    if not isinstance(value, str):
        raise SubtoolError(
            f"sample {index}: '{field}' is {_shown(value)}, not a string", path=path, rule="dataset.format"
        )
    return value


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _require_fields(record: dict, fields: tuple[str, ...], path: Path, index: int, spec: LlmSpec) -> None:
    missing = [f for f in fields if f not in record]
    if missing:
        raise SubtoolError(
            f"sample {index} has no {', '.join(repr(m) for m in missing)}; this is not "
            f"{spec.dataset_file} as the {spec.name} reference writes it",
            path=path,
            rule="dataset.format",
            hint=spec.dataset_hint,
        )


def read_cnn_llama3(path: Path, spec: LlmSpec) -> tuple[list[np.ndarray], list[str]]:
    records = _json_records(path, spec)
    prompts, targets = [], []
    for i, r in enumerate(records):
        _require_fields(r, ("tok_input", "output"), path, i, spec)
        prompts.append(_token_ids(r["tok_input"], path, i, "tok_input"))
        targets.append(_text(r["output"], path, i, "output"))
    return prompts, targets


def read_openorca_pickle(path: Path, spec: LlmSpec) -> tuple[list[np.ndarray], list[str]]:
    """The reference's pickled DataFrame. Unpickling runs code from the file: only give files you trust."""

    import pandas as pd

    if not Path(path).exists():
        raise SubtoolError("dataset file not found", path=path, rule="dataset.missing", hint=spec.dataset_hint)
    if not Path(path).is_file():
        raise SubtoolError("the data set is not a regular file", path=path, rule="dataset.format")
    try:
        df = pd.read_pickle(path)
    except Exception:  # a damaged pickle raises whatever its bytes lead to (PickleError, AssertionError, …)
        raise SubtoolError(
            f"not a pandas pickle; {spec.name} reads {spec.dataset_file}",
            path=path,
            rule="dataset.format",
            hint=spec.dataset_hint,
        ) from None
    if not isinstance(df, pd.DataFrame) or not {"tok_input", "output"} <= set(df.columns):
        raise SubtoolError(
            f"expected a DataFrame with columns 'tok_input' and 'output' ({spec.dataset_file})",
            path=path,
            rule="dataset.format",
            hint=spec.dataset_hint,
        )
    if len(df) == 0:
        raise SubtoolError("the data set is empty", path=path, rule="dataset.format")
    twice = [c for c in ("tok_input", "output") if list(df.columns).count(c) > 1]
    if twice:  # df[name] would be a DataFrame of them, not one value per sample
        raise SubtoolError(f"the DataFrame has more than one {twice[0]!r} column", path=path, rule="dataset.format")
    prompts = [_token_ids(v, path, i, "tok_input") for i, v in enumerate(df["tok_input"].tolist())]
    return prompts, [_text(v, path, i, "output") for i, v in enumerate(df["output"].tolist())]


def read_cnn_gptj(path: Path, spec: LlmSpec, tokenizer) -> tuple[list[np.ndarray], list[str]]:
    records = _json_records(path, spec)
    prompts, targets = [], []
    for i, r in enumerate(records):
        _require_fields(r, ("instruction", "input", "output"), path, i, spec)
        fields = {key: _text(r[key], path, i, key) for key in ("instruction", "input")}
        ids = tokenizer(GPTJ_PROMPT.format(**fields), truncation=True, max_length=GPTJ_MAX_PROMPT_TOKENS)["input_ids"]
        prompts.append(np.asarray(ids, dtype=np.int32))
        targets.append(_text(r["output"], path, i, "output"))
    return prompts, targets


def _positions(model_path: Path) -> int | None:
    """The checkpoint's max_position_embeddings, where its config.json gives a positive whole number."""
    try:
        config = read_config(model_path)
    except SubtoolError:
        return None  # an endpoint's tokenizer folder: the endpoint knows its own limit
    positions = config.get("max_position_embeddings")
    return positions if isinstance(positions, int) and not isinstance(positions, bool) and positions > 0 else None


def _refuse_past_positions(prompts: list, positions: int | None, dataset_path: Path) -> None:
    """A prompt longer than the model's positions is data for another model: it ran on, its memory growing with the
    square of its length (a 200 kB data file would have needed over 50 GB), instead of being refused."""
    if positions is None:
        return
    for i, p in enumerate(prompts):
        if len(p) > positions:
            raise SubtoolError(
                f"sample {i} is a prompt of {len(p)} tokens, past the model's {positions} positions "
                "(max_position_embeddings); the data set is not this model's",
                path=dataset_path,
                rule="dataset.format",
            )


def load_data(spec: LlmSpec, model_path: Path, dataset_path: Path) -> LlmData:
    dataset_path = Path(dataset_path)
    tokenizer = load_tokenizer(model_path)
    if spec.dataset_format == "cnn-llama3":
        prompts, targets = read_cnn_llama3(dataset_path, spec)
    elif spec.dataset_format == "openorca-pickle":
        prompts, targets = read_openorca_pickle(dataset_path, spec)
    else:
        prompts, targets = read_cnn_gptj(dataset_path, spec, tokenizer)
    vocab = len(tokenizer)
    for i, p in enumerate(prompts):
        # _token_ids refused negative ids: an id found here is past the vocabulary
        if (bad := id_outside(p, vocab)) is not None:
            raise SubtoolError(
                f"sample {i} has token id {bad}, beyond the tokenizer's {vocab} tokens; "
                "the data set was tokenized for another model",
                path=dataset_path,
                rule="dataset.tokenizer_mismatch",
            )
    _refuse_past_positions(prompts, _positions(model_path), dataset_path)
    lengths = [len(p) for p in prompts]
    description = (
        f"{len(prompts)} prompts, {min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.0f})"
    )
    return LlmData(
        prompts=prompts,
        targets=targets,
        tokenizer=tokenizer,
        dataset_sha256=sha256_file(dataset_path),
        description=description,
    )
