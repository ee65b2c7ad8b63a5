"""Edges of the LLM data set readers: token ids at the ends of what is accepted (0 and the tokenizer's last id;
not -1 or the vocabulary's size), a pickled DataFrame without a column, without rows, or with ids in a 2-D array;
each refused in one line naming the file and the sample, never read as something else."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from subtool.runner.llm.datasets import GPTJ_PROMPT, load_data
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


# --------------------------------------------------------------- what a mutation probe found no test for
@pytest.mark.parametrize(
    "content, words",
    [
        ("5", "JSON list of sample objects"),  # a JSON number is not iterated as samples
        ("true", "JSON list of sample objects"),
        ('[{"tok_input": [1, 2], "output": "x"}, 5]', "JSON list of sample objects"),  # a sample that is no object
        ('[{"tok_input": [1, 2], "output": "x"}, {"tok_input": [3]}]', "sample 1 has no 'output'"),
        ('[{"output": "x"}]', "sample 0 has no 'tok_input'"),
    ],
)
def test_a_cnn_eval_json_of_no_sample_objects_or_a_sample_without_a_field_is_refused(
    tmp_path, llama3_small, content, words
):
    path = tmp_path / "cnn_eval.json"
    path.write_text(content)
    refused(lambda: load_data(LLM_SPECS["llama3.1-8b"], llama3_small.model_path, path), "dataset.format", path, words)


def test_a_gptj_sample_without_its_instruction_is_refused(tmp_path, gptj_small):
    records = json.loads(gptj_small.dataset_path.read_text())[:2]
    del records[1]["instruction"]
    path = tmp_path / "cnn_eval.json"
    path.write_text(json.dumps(records))
    refused(
        lambda: load_data(LLM_SPECS["gptj-99"], gptj_small.model_path, path), "dataset.format", path, "'instruction'"
    )


@pytest.mark.parametrize("name, file", [("llama3.1-8b", "cnn_eval.json"), ("llama2-70b-99", "orca.pkl")])
def test_a_data_set_that_is_not_there_is_refused_as_missing(tmp_path, llama3_small, llama2_small, name, file):
    model = (llama3_small if name.startswith("llama3") else llama2_small).model_path
    path = tmp_path / file
    refused(lambda: load_data(LLM_SPECS[name], model, path), "dataset.missing", path, "not found")


def test_a_dataframe_of_just_the_two_columns_with_ids_in_an_object_array_is_read(tmp_path, llama2_small):
    """The reference's pickle holds more columns; one with only 'tok_input' and 'output' is enough. An id list
    stored as an object array of Python integers (what pandas can give back) is a list of ids too."""
    import pandas as pd

    df = pd.read_pickle(llama2_small.dataset_path).iloc[:2].reset_index(drop=True)[["tok_input", "output"]]
    ids = [int(x) for x in df["tok_input"][1]]
    df["tok_input"] = pd.Series([list(df["tok_input"][0]), np.array(ids, dtype=object)], dtype=object)
    data = load_data(LLM_SPECS["llama2-70b-99"], llama2_small.model_path, _orca(llama2_small, tmp_path, df))
    assert data.prompts[1].tolist() == ids and data.prompts[1].dtype == np.int32
    assert data.targets == list(df["output"])


def test_the_largest_int32_id_is_kept_as_it_is_and_the_next_refused_not_wrapped(tmp_path, llama3_small):
    """2**31 - 1 fits an int32 (refused only as beyond the tokenizer); 2**31 would wrap to a negative id."""
    spec, model = LLM_SPECS["llama3.1-8b"], llama3_small.model_path
    path = _cnn(tmp_path, llama3_small, [5, 2**31 - 1])
    refused(lambda: load_data(spec, model, path), "dataset.tokenizer_mismatch", path, f"token id {2**31 - 1}")
    path = _cnn(tmp_path, llama3_small, [5, 2**31])
    refused(lambda: load_data(spec, model, path), "dataset.format", path, f"token id {2**31}")


def test_a_gptj_prompt_longer_than_1919_tokens_is_cut_there_keeping_its_start(tmp_path, gptj_small):
    """The reference tokenizes the GPT-J prompt with truncation at 1,919 tokens: the instruction stays, the end of
    a long article goes."""
    records = json.loads(gptj_small.dataset_path.read_text())[:2]
    records[1]["input"] = " ".join(f"word{i}" for i in range(3000))
    path = tmp_path / "cnn_eval.json"
    path.write_text(json.dumps(records))
    data = load_data(LLM_SPECS["gptj-99"], gptj_small.model_path, path)
    whole = data.tokenizer(GPTJ_PROMPT.format(**records[1]))["input_ids"]
    assert len(whole) > 1919 and data.prompts[1].tolist() == whole[:1919]
    assert all(p.dtype == np.int32 for p in data.prompts)  # as the other readers give them
    assert len(data.prompts[0]) < 1919


def test_a_dataframe_with_a_column_twice_is_refused_not_a_traceback(tmp_path, llama2_small):
    """Two 'tok_input' columns (a second tokenization appended beside the first): which one is the prompt is not
    for subtool to guess, and pandas would hand back both as a table."""
    import pandas as pd

    df = pd.read_pickle(llama2_small.dataset_path).iloc[:2].reset_index(drop=True)[["tok_input", "output"]]
    twice = pd.concat([df, df[["tok_input"]]], axis=1)
    assert list(twice.columns) == ["tok_input", "output", "tok_input"]
    path = _orca(llama2_small, tmp_path, twice)
    refused(
        lambda: load_data(LLM_SPECS["llama2-70b-99"], llama2_small.model_path, path),
        "dataset.format",
        path,
        "more than one 'tok_input' column",
    )


def test_a_prompt_of_the_models_positions_is_read_and_one_token_longer_refused(tmp_path, llama3_small):
    """A 7,040-token prompt on a 512-position model ran on (2.6 GB, growing with the square of its length)."""
    spec, model = LLM_SPECS["llama3.1-8b"], llama3_small.model_path
    positions = json.loads((model / "config.json").read_text())["max_position_embeddings"]
    data = load_data(spec, model, _cnn(tmp_path, llama3_small, [7] * positions))
    assert len(data.prompts[1]) == positions
    path = _cnn(tmp_path, llama3_small, [7] * (positions + 1))
    refused(lambda: load_data(spec, model, path), "dataset.format", path, f"sample 1 is a prompt of {positions + 1}")
