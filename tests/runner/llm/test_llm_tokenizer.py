"""The LLM tokenizer (llm/checkpoint.py's load_tokenizer): a plain fast tokenizer (tokenizer.json, a
tokenizer_config.json naming PreTrainedTokenizerFast as Llama 3's does, or transformers 5's TokenizersBackend as
the demos') loads as that class without AutoTokenizer, which imports torch (2-3 s of an openai-backend run), and
gives what AutoTokenizer gives; any other class, or a config that cannot be read, still goes through AutoTokenizer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subtool.errors import SubtoolError
from subtool.runner.llm.checkpoint import load_tokenizer, tokenizer_loader

TEXTS = ["Summarize: the cat sat on the mat.", "Ünïcödé — 東京 🙂", "  spaces\tand\nlines  ", "", "<s> </s> 12345"]


@pytest.fixture(params=["llama3_small", "llama2_small", "gptj_small"])
def demo_model(request):
    return request.getfixturevalue(request.param).model_path


def test_a_plain_fast_tokenizer_loads_as_autotokenizer_would(demo_model):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    assert tokenizer_loader(demo_model) is PreTrainedTokenizerFast
    ours = load_tokenizer(demo_model)
    theirs = AutoTokenizer.from_pretrained(str(demo_model), local_files_only=True)
    if theirs.pad_token_id is None:
        theirs.pad_token = theirs.eos_token
    assert type(ours) is type(theirs)
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id, len(ours)) == (
        theirs.bos_token_id,
        theirs.eos_token_id,
        theirs.pad_token_id,
        len(theirs),
    )
    for text in TEXTS:
        ids = ours(text)["input_ids"]
        assert ids == theirs(text)["input_ids"]
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)


def test_loading_a_plain_fast_tokenizer_does_not_import_torch(llama3_small):
    code = (
        "import sys; from subtool.runner.llm.checkpoint import load_tokenizer; "
        f"load_tokenizer({str(llama3_small.model_path)!r}); print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


@pytest.mark.parametrize(
    "config, without_tokenizer_json",
    [({"tokenizer_class": "LlamaTokenizer"}, False), ({}, False), ({"tokenizer_class": "TokenizersBackend"}, True)],
)
def test_other_tokenizers_go_through_autotokenizer(tmp_path, llama3_small, config, without_tokenizer_json):
    from transformers import AutoTokenizer

    model = tmp_path / "model"
    shutil.copytree(llama3_small.model_path, model)
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    if without_tokenizer_json:
        (model / "tokenizer.json").unlink()
    assert tokenizer_loader(model) is AutoTokenizer


def test_a_garbage_tokenizer_config_is_still_one_error_naming_the_tokenizer(tmp_path, llama3_small):
    model = tmp_path / "model"
    shutil.copytree(llama3_small.model_path, model)
    (model / "tokenizer_config.json").write_bytes(b'{"tokenizer_class": "PreTrainedTokenizerFast", ')
    with pytest.raises(SubtoolError) as caught:
        load_tokenizer(model)
    assert caught.value.rule == "model.tokenizer"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=200), st.text(max_size=100).map(str.encode)))
def test_whatever_tokenizer_config_holds_the_choice_never_raises(tmp_path, data):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    (tmp_path / "tokenizer_config.json").write_bytes(data)
    (tmp_path / "tokenizer.json").write_text("{}")
    assert tokenizer_loader(tmp_path) in (AutoTokenizer, PreTrainedTokenizerFast)
