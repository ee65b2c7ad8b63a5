"""Edges of the LLM data set readers: token ids at the ends of what is accepted (0 and the tokenizer's last id;
not -1 or the vocabulary's size), a pickled DataFrame without a column, without rows, or with ids in a 2-D array;
each refused in one line naming the file and the sample, never read as something else."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from subtool.runner.llm.datasets import load_data
from subtool.runner.llm.specs import LLM_SPECS

from .refusals import refused


def _cnn(tmp_path, llama3_small, tok_input) -> Path:
    records = json.loads(llama3_small.dataset_path.read_text())[:2]
    records[1]["tok_input"] = tok_input
    path = tmp_path / "cnn_eval.json"
    path.write_text(json.dumps(records))
    return path


def test_token_ids_from_zero_to_the_tokenizers_last_are_read_and_past_itrefused(tmp_path, llama3_small):
    from subtool.runner.llm.checkpoint import load_tokenizer

    spec, model = LLM_SPECS["llama3.1-8b"], llama3_small.model_path
    vocab = len(load_tokenizer(model))
    data = load_data(spec, model, _cnn(tmp_path, llama3_small, [0, vocab - 1]))
    assert data.prompts[1].tolist() == [0, vocab - 1] and data.prompts[1].dtype == np.int32
    path = _cnn(tmp_path, llama3_small, [5, vocab])
    refused(lambda: load_data(spec, model, path), "dataset.tokenizer_mismatch", path, f"token id {vocab}")


def test_a_negative_token_id_is_refused_not_read(tmp_path, llama3_small):
    path = _cnn(tmp_path, llama3_small, [5, -1, 7])
    err = refused(
        lambda: load_data(LLM_SPECS["llama3.1-8b"], llama3_small.model_path, path), "dataset.format", path, "id -1"
    )
    assert err.message.startswith("sample 1:")


def _orca(llama2_small, tmp_path, df) -> Path:
    path = tmp_path / "orca.pkl"
    df.to_pickle(path)
    return path


@pytest.mark.parametrize("column", ["tok_input", "output"])
def test_a_dataframe_without_a_column_isrefused(tmp_path, llama2_small, column):
    import pandas as pd

    df = pd.read_pickle(llama2_small.dataset_path).drop(columns=[column])
    path = _orca(llama2_small, tmp_path, df)
    refused(
        lambda: load_data(LLM_SPECS["llama2-70b-99"], llama2_small.model_path, path),
        "dataset.format",
        path,
        "columns 'tok_input' and 'output'",
    )


def test_a_dataframe_without_rows_isrefused(tmp_path, llama2_small):
    import pandas as pd

    df = pd.read_pickle(llama2_small.dataset_path).iloc[:0]
    path = _orca(llama2_small, tmp_path, df)
    refused(
        lambda: load_data(LLM_SPECS["llama2-70b-99"], llama2_small.model_path, path), "dataset.format", path, "empty"
    )


def test_token_ids_in_a_two_dimensional_array_arerefused(tmp_path, llama2_small):
    """A [1, n] array (a batch of one, as a tokenizer's return_tensors gives it) is not one prompt's ids."""
    import pandas as pd

    df = pd.read_pickle(llama2_small.dataset_path).iloc[:2].reset_index(drop=True)
    df["tok_input"] = pd.Series([np.asarray(v, dtype=np.int64) for v in df["tok_input"]], dtype=object)
    df.at[1, "tok_input"] = np.asarray([df["tok_input"][1]], dtype=np.int64)
    path = _orca(llama2_small, tmp_path, df)
    err = refused(
        lambda: load_data(LLM_SPECS["llama2-70b-99"], llama2_small.model_path, path),
        "dataset.format",
        path,
        "not a non-empty list of integer token ids",
    )
    assert err.message.startswith("sample 1:")


def test_a_gptj_prompt_is_the_alpaca_template_ending_at_the_response_marker():
    """The reference's GPT-J prompt: the sample's instruction and input in their places and nothing after
    "### Response:" (a newline there would be another prompt, with other answers)."""
    from subtool.runner.llm.datasets import GPTJ_PROMPT

    prompt = GPTJ_PROMPT.format(instruction="Summarize the article.", input="the text")
    assert prompt.startswith("Below is an instruction that describes a task, paired with an input")
    assert prompt.endswith("\n\n### Instruction:\nSummarize the article.\n\n### Input:\nthe text\n\n### Response:")
