"""The data set readers on files in the references' formats (made by the demo generator), and what they refuse."""

from __future__ import annotations

import json
import pickle

import pytest

from subtool.errors import SubtoolError
from subtool.runner.llm.datasets import GPTJ_PROMPT, load_data
from subtool.runner.llm.specs import LLM_SPECS

from .conftest import SMALL


def test_each_reference_format_loads(llama3_small, llama2_small, gptj_small):
    l3 = load_data(LLM_SPECS["llama3.1-8b"], llama3_small.model_path, llama3_small.dataset_path)
    records = json.loads(llama3_small.dataset_path.read_text())
    assert len(l3.prompts) == SMALL and l3.prompts[0].tolist() == records[0]["tok_input"]
    assert l3.targets[3] == records[3]["output"] and set(records[0]) == {"instruction", "input", "tok_input", "output"}
    l2 = load_data(LLM_SPECS["llama2-70b-99"], llama2_small.model_path, llama2_small.dataset_path)
    import pandas as pd

    df = pd.read_pickle(llama2_small.dataset_path)
    assert {"system_prompt", "question", "input", "tok_input", "output", "tok_output"} <= set(df.columns)
    assert l2.prompts[5].tolist() == list(df["tok_input"][5]) and l2.targets[5] == df["output"][5]
    gj = load_data(LLM_SPECS["gptj-99"], gptj_small.model_path, gptj_small.dataset_path)
    first = json.loads(gptj_small.dataset_path.read_text())[0]
    expected = gj.tokenizer(GPTJ_PROMPT.format(**first))["input_ids"]
    assert gj.prompts[0].tolist() == expected and "tok_input" not in first


@pytest.mark.parametrize(
    "content, rule",
    [
        (b"[]", "dataset.format"),
        (b'{"data": []}', "dataset.format"),
        (json.dumps([{"tok_input": [], "output": "x"}]).encode(), "dataset.format"),
        (json.dumps([{"tok_input": ["a"], "output": "x"}]).encode(), "dataset.format"),
        (json.dumps([{"tok_input": [10**9], "output": "x"}]).encode(), "dataset.tokenizer_mismatch"),
    ],
)
def test_not_the_reference_json_is_one_clear_error(tmp_path, llama3_small, content, rule):
    path = tmp_path / "cnn_eval.json"
    path.write_bytes(content)
    with pytest.raises(SubtoolError) as err:
        load_data(LLM_SPECS["llama3.1-8b"], llama3_small.model_path, path)
    assert err.value.rule == rule and str(path) in err.value.one_line()


def test_not_the_reference_pickle_is_one_clear_error(tmp_path, llama2_small):
    spec = LLM_SPECS["llama2-70b-99.9"]
    for name, payload in (("garbage.pkl", b"not a pickle"), ("list.pkl", pickle.dumps([1, 2, 3]))):
        path = tmp_path / name
        path.write_bytes(payload)
        with pytest.raises(SubtoolError) as err:
            load_data(spec, llama2_small.model_path, path)
        assert err.value.rule == "dataset.format", name
