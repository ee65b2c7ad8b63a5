"""bert-99 refuses broken or hostile inputs with one line naming the file and the rule, before LoadGen starts:
config values that are not what BERT needs, damaged or non-finite weights, weights the model would not use,
unusable vocabularies, and SQuAD files that would crash or score wrongly (probe_run findings 1-6, 8-10, 15, 16)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys

import pytest

from subtool.errors import SubtoolError
from subtool.runner.bert.checkpoint import check_checkpoint, load_bert_qa, load_tokenizer
from subtool.runner.bert.squad import read_squad_examples


@pytest.fixture
def ckpt(tmp_path, tiny_checkpoint):
    """A private copy of the tiny Hugging Face checkpoint, to damage."""
    path = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, path)
    return path


def _set_config(ckpt, **values):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.update(values)
    (ckpt / "config.json").write_text(json.dumps(cfg))


def _refused(call, rule: str, path, *words: str) -> SubtoolError:
    with pytest.raises(SubtoolError) as err:
        call()
    line = err.value.one_line()
    assert err.value.rule == rule and err.value.path == str(path), line
    assert all(w in line for w in words), line
    return err.value


# ---------------------------------------------------------------------------------------------- config.json
@pytest.mark.parametrize(
    "key, value, words",
    [
        ("num_hidden_layers", -1, ("num_hidden_layers -1", "positive integer")),
        ("num_hidden_layers", 0, ("num_hidden_layers 0", "positive integer")),
        ("num_hidden_layers", True, ("num_hidden_layers true", "positive integer")),
        ("vocab_size", "abc", ('vocab_size "abc"', "positive integer")),
        ("hidden_size", 64.0, ("hidden_size 64.0", "positive integer")),
        ("intermediate_size", None, ("intermediate_size null", "positive integer")),
        ("layer_norm_eps", -1e-12, ("layer_norm_eps", "finite positive number")),
        ("layer_norm_eps", "small", ("layer_norm_eps", "finite positive number")),
        ("num_attention_heads", 3, ("not a multiple of num_attention_heads 3",)),
        ("max_position_embeddings", 128, ("max_position_embeddings 128", "384")),
        # each of these passed the checks and ended the run in an internal error (or, the first, a SUT that
        # failed on every question), once transformers built the model
        ("type_vocab_size", 1, ("type_vocab_size 1", "SQuAD's 1")),
        ("pad_token_id", 10**9, ("pad_token_id 1000000000", "vocabulary")),
        ("pad_token_id", -1, ("pad_token_id -1",)),
        ("hidden_act", "nonexistent_act", ('hidden_act "nonexistent_act"', "gelu")),
        ("hidden_act", 5, ("hidden_act 5",)),
        ("hidden_dropout_prob", "x", ('hidden_dropout_prob "x"', "probability")),
        ("quantization_config", {"quant_method": "bitsandbytes"}, ("quantization_config", "full-precision")),
        ("attn_implementation", "flash_attention_2", ('"flash_attention_2"', "eager or sdpa")),
    ],
)
def test_config_value_bert_cannot_use_is_refused(ckpt, key, value, words):
    _set_config(ckpt, **{key: value})
    _refused(lambda: check_checkpoint(ckpt), "model.config", ckpt / "config.json", *words)


@pytest.mark.parametrize(
    "text, words",
    [
        ('"layer_norm_eps": NaN', ("NaN", "not a finite number")),
        ('"hidden_size": NaN', ("NaN", "not a finite number")),
        ('"vocab_size": 1e400', ("1e400", "not a finite number")),
    ],
)
def test_non_finite_config_number_is_refused(ckpt, text, words):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.pop(text.split('"')[1])
    (ckpt / "config.json").write_text(json.dumps(cfg)[:-1] + ", " + text + "}")  # json.dumps cannot write these
    _refused(lambda: check_checkpoint(ckpt), "model.config", ckpt / "config.json", *words)


def test_config_that_is_not_a_regular_file_is_refused_without_reading_it(ckpt):
    (ckpt / "config.json").unlink()
    (ckpt / "config.json").symlink_to("/dev/zero")
    _refused(lambda: check_checkpoint(ckpt), "model.config", ckpt / "config.json", "not a regular file")


def test_oversized_empty_or_deeply_nested_config_is_refused(ckpt):
    config = ckpt / "config.json"
    config.write_text("[" * 100_000 + "]" * 100_000)
    _refused(lambda: check_checkpoint(ckpt), "model.config", config, "nested too deeply")
    config.write_text("")
    _refused(lambda: check_checkpoint(ckpt), "model.config", config, "is empty")
    with open(config, "w") as fh:
        fh.write(" " * (17 << 20) + "{}")
    _refused(lambda: check_checkpoint(ckpt), "model.config", config, "larger than 16 MiB")


# ---------------------------------------------------------------------------------------------- weights
def _rewrite_weights(ckpt, change):
    from safetensors.torch import load_file, save_file

    state = load_file(str(ckpt / "model.safetensors"))
    change(state)
    save_file(state, str(ckpt / "model.safetensors"), metadata={"format": "pt"})


def test_nan_weight_is_refused_by_name(ckpt):
    def poison(state):
        state["qa_outputs.weight"][0, 0] = float("nan")

    _rewrite_weights(ckpt, poison)
    weights = ckpt / "model.safetensors"
    _refused(lambda: load_bert_qa(ckpt), "model.weights", weights, "qa_outputs.weight", "NaN or infinite")


def test_packed_loader_refuses_nan_weights_and_extra_layers(ckpt):
    from subtool.runner.bert.packed_model import load_state_dict

    weights = ckpt / "model.safetensors"
    _refused(lambda: load_state_dict(ckpt, layers=1), "model.weights", weights, "not used", "encoder.layer.1.")

    def poison(state):
        state["bert.encoder.layer.0.output.dense.bias"][3] = float("inf")

    _rewrite_weights(ckpt, poison)
    _refused(lambda: load_state_dict(ckpt, layers=2), "model.weights", weights, "layer.0.output.dense.bias")


def test_weights_the_config_does_not_use_are_refused(ckpt):
    """num_hidden_layers 1 over a two-layer checkpoint: transformers drops layer 1 with a warning and runs."""
    _set_config(ckpt, num_hidden_layers=1)
    check_checkpoint(ckpt)  # a valid config by itself
    _refused(
        lambda: load_bert_qa(ckpt),
        "model.weights",
        ckpt / "model.safetensors",
        "16 weights in the file are not used",
        "bert.encoder.layer.1.",
    )


def test_reference_state_dict_with_foreign_tensors_is_refused_but_a_pooler_is_not(tmp_path, tiny_checkpoint):
    import torch
    from transformers import BertForQuestionAnswering

    ref = tmp_path / "ref"
    ref.mkdir()
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    (ref / "bert_config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "architectures"}))
    shutil.copy(tiny_checkpoint / "vocab.txt", ref / "vocab.txt")
    state = BertForQuestionAnswering.from_pretrained(str(tiny_checkpoint)).state_dict()
    state["bert.pooler.dense.weight"] = torch.zeros(64, 64)  # a converted pre-training checkpoint has one
    torch.save(state, ref / "model.pytorch")
    load_bert_qa(ref)
    state["bert.encoder.layer.7.output.dense.weight"] = torch.zeros(64, 64)
    torch.save(state, ref / "model.pytorch")
    _refused(lambda: load_bert_qa(ref), "model.weights", ref / "model.pytorch", "layer.7.output.dense.weight")


def test_unused_weights_are_refused_in_one_line_without_transformers_load_report(ckpt, capfd):
    """transformers' LOAD REPORT table of the weights it leaves out does not print ahead of the refusal naming them,
    and its logging level is as it was after."""
    import logging

    from transformers.utils import logging as hf_logging

    _set_config(ckpt, num_hidden_layers=1)
    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()  # a fresh process's level (an LLM load earlier in this session lowers it)
    # transformers' own handler writes to the stderr of whichever capture was current when it was made: this one
    # writes to this test's
    handler = logging.StreamHandler(sys.stderr)
    hf_logging.add_handler(handler)
    try:
        capfd.readouterr()
        _refused(lambda: load_bert_qa(ckpt), "model.weights", ckpt / "model.safetensors", "16 weights in the file")
        captured = capfd.readouterr()
        assert hf_logging.get_verbosity() == hf_logging.WARNING
    finally:
        hf_logging.remove_handler(handler)
        hf_logging.set_verbosity(before)
    assert "LOAD REPORT" not in captured.out + captured.err and "UNEXPECTED" not in captured.out + captured.err
    assert captured.out + captured.err == "", captured


def _reference(path, tiny_checkpoint, **config):
    """The tiny checkpoint as the MLPerf reference files (bert_config.json with `config`, model.pytorch, vocab.txt)."""
    import torch
    from safetensors.torch import load_file

    path.mkdir()
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    cfg = {k: v for k, v in cfg.items() if k != "architectures"} | config
    (path / "bert_config.json").write_text(json.dumps(cfg))
    shutil.copy(tiny_checkpoint / "vocab.txt", path / "vocab.txt")
    torch.save(load_file(str(tiny_checkpoint / "model.safetensors")), path / "model.pytorch")
    return path


SIZE_CASES = {  # a config field far beyond the weights → the words of the refusal
    "intermediate_size": (10**7, "intermediate_size 10000000, but bert.encoder.layer.0.intermediate.dense.weight"),
    "hidden_size": (2 * 10**6, "hidden_size 2000000, but bert.embeddings.word_embeddings.weight has shape"),
    "num_hidden_layers": (10**6, "num_hidden_layers 1000000, but the weights hold 2 layers"),
    "vocab_size": (10**9, "vocab_size 1000000000, but bert.embeddings.word_embeddings.weight has shape"),
    "max_position_embeddings": (10**8, "max_position_embeddings 100000000, but bert.embeddings.position_embeddings"),
}


@pytest.mark.parametrize("fmt", ["reference", "hf"])
@pytest.mark.parametrize("field", list(SIZE_CASES))
def test_a_config_sized_beyond_its_weights_is_refused_before_the_model_is_built(
    tmp_path, tiny_checkpoint, monkeypatch, fmt, field
):
    """Building the model allocates what the config says (10**7 × 64 floats per layer for intermediate_size 10**7)
    before the weights are compared: the sizes are compared with the file's tensor shapes first."""
    import transformers

    value, words = SIZE_CASES[field]
    if fmt == "reference":
        model = _reference(tmp_path / "ref", tiny_checkpoint, **{field: value})
        weights = model / "model.pytorch"
    else:
        model = tmp_path / "hf"
        shutil.copytree(tiny_checkpoint, model)
        _set_config(model, **{field: value})
        weights = model / "model.safetensors"

    def build(*args, **kwargs):
        pytest.fail("the model was built from the config before its sizes were compared with the weights")

    monkeypatch.setattr(transformers.BertForQuestionAnswering, "__init__", build)
    monkeypatch.setattr(transformers.BertForQuestionAnswering, "from_pretrained", build)
    _refused(lambda: load_bert_qa(model), "model.weights", weights, words)


def _damaged(blob: bytes) -> dict[str, bytes]:
    n = struct.unpack("<Q", blob[:8])[0]
    return {
        "header length 2**62": struct.pack("<Q", 2**62) + blob[8:],
        "header length 10**8": struct.pack("<Q", 10**8) + blob[8:],
        "cut short": blob[: len(blob) // 2],
        "empty": b"",
        "data past the end": blob[: 8 + n] + blob[8 + n : 8 + n + 16],
    }


@pytest.mark.parametrize(
    "case", ["header length 2**62", "header length 10**8", "cut short", "empty", "data past the end"]
)
def test_damaged_safetensors_is_one_line_naming_the_file(ckpt, case):
    weights = ckpt / "model.safetensors"
    weights.write_bytes(_damaged(weights.read_bytes())[case])
    _refused(lambda: load_bert_qa(ckpt), "model.load", weights, "not a readable safetensors file")


# ---------------------------------------------------------------------------------------------- tokenizer
@pytest.mark.parametrize(
    "content, words",
    [
        (os.urandom(20_000) + b"\xff\xfe", ("not UTF-8",)),
        (b"", ("is empty",)),
        (b"\n\n", ("is empty",)),
        (b"[PAD]\n[UNK]\nhello\n", ("no [CLS], [SEP]",)),
    ],
)
def test_unusable_vocab_txt_is_refused_by_name(ckpt, content, words):
    (ckpt / "vocab.txt").write_bytes(content)
    config = check_checkpoint(ckpt)
    _refused(lambda: load_tokenizer(ckpt, config), "model.vocab", ckpt / "vocab.txt", *words)


def test_vocab_txt_that_is_not_a_regular_file_is_refused(ckpt):
    (ckpt / "vocab.txt").unlink()
    (ckpt / "vocab.txt").symlink_to("/dev/zero")
    config = check_checkpoint(ckpt)
    _refused(lambda: load_tokenizer(ckpt, config), "model.vocab", ckpt / "vocab.txt", "not a regular file")


@pytest.mark.parametrize(
    "content, words",
    [(os.urandom(5000) + b"\xff", ("not UTF-8",)), (b"[" * 100_000 + b"]" * 100_000, ("nested too deeply",))],
)
def test_unusable_tokenizer_json_is_refused_by_name(ckpt, content, words):
    (ckpt / "vocab.txt").unlink()
    (ckpt / "tokenizer.json").write_bytes(content)
    config = check_checkpoint(ckpt)
    _refused(lambda: load_tokenizer(ckpt, config), "model.tokenizer", ckpt / "tokenizer.json", *words)


# ---------------------------------------------------------------------------------------------- SQuAD
def _squad_doc(n: int = 3) -> dict:
    qas = [
        {"id": f"q{i}", "question": f"who is {i}?", "answers": [{"text": "tom", "answer_start": 0}]} for i in range(n)
    ]
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "tom is here .", "qas": qas}]}]}


def _qa(doc: dict, i: int = 0) -> dict:
    return doc["data"][0]["paragraphs"][0]["qas"][i]


def _write(tmp_path, doc) -> object:
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(doc))
    return path


SQUAD_DAMAGE = {
    "question is a number": (lambda d: _qa(d).update(question=5), "q0", "'question' is not a string"),
    "question is null": (lambda d: _qa(d).update(question=None), "q0", "'question' is not a string"),
    "answer is a number": (lambda d: _qa(d).update(answers=[{"text": 5}]), "q0", "'text' is not a string"),
    "answers missing": (lambda d: _qa(d).pop("answers"), "q0", "has no answers"),
    "answers empty": (lambda d: _qa(d, 1).update(answers=[]), "q1", "has no answers"),
    "duplicate id": (lambda d: _qa(d, 2).update(id="q0"), "q0", "more than once"),
    "id is a number": (lambda d: _qa(d).update(id=7), "7", "not a non-empty string"),
    "empty context": (lambda d: d["data"][0]["paragraphs"][0].update(context=" \n"), "paragraph 1", "empty"),
    "context is a list": (lambda d: d["data"][0]["paragraphs"][0].update(context=["a"]), "paragraph 1", "string"),
    # a JSON \ud800 escape: a lone surrogate the tokenizer refused with a TypeError (exit 70) after the model loaded
    "lone surrogate": (lambda d: d["data"][0]["paragraphs"][0].update(context="tom \ud800"), "paragraph 1", "Unicode"),
    "no paragraphs": (lambda d: d["data"][0].pop("paragraphs"), "'paragraphs'", "a required field"),
    "qas is text": (lambda d: d["data"][0]["paragraphs"][0].update(qas="q"), "not a SQuAD", "another kind of value"),
}


@pytest.mark.parametrize("case", list(SQUAD_DAMAGE))
def test_squad_question_that_would_crash_or_score_wrongly_is_refused_at_read_time(tmp_path, case):
    change, where, words = SQUAD_DAMAGE[case]
    doc = _squad_doc()
    change(doc)
    path = _write(tmp_path, doc)
    _refused(lambda: read_squad_examples(path), "dataset.squad_v1.1", path, where, words)


def test_squad_json_nested_too_deep_or_non_finite_is_refused(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    _refused(lambda: read_squad_examples(path), "dataset.squad_v1.1", path, "nested too deeply")
    path.write_text(json.dumps(_squad_doc()).replace('"1.1"', "NaN"))
    _refused(lambda: read_squad_examples(path), "dataset.squad_v1.1", path, "not a finite number")


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_squad_path_that_is_not_a_regular_file_says_so(tmp_path, kind):
    path = tmp_path / "dev.json"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    _refused(lambda: read_squad_examples(path), "dataset.unreadable", path, "not a regular file")


def test_run_hash_is_of_the_bytes_the_questions_came_from(tmp_path):
    import hashlib

    from subtool.runner.bert.squad import read_squad

    path = _write(tmp_path, _squad_doc())
    examples, sha = read_squad(path)
    assert len(examples) == 3 and sha == hashlib.sha256(path.read_bytes()).hexdigest()


def test_data_set_that_gives_no_features_is_refused(tmp_path, tiny_checkpoint):
    """Contexts whose words the tokenizer drops entirely (control characters): 0 samples would score 0 and pass."""
    from subtool.runner.bert.workload import load_data

    def refused(doc, *words):
        path = _write(tmp_path, doc)
        load = lambda: load_data(tiny_checkpoint, path, None, check_checkpoint(tiny_checkpoint))  # noqa: E731
        _refused(load, "dataset.squad_v1.1", path, *words)

    doc = _squad_doc()
    doc["data"][0]["paragraphs"][0]["context"] = "\x00 \x01"
    refused(doc, "3 of 3 questions give no features")
    # only some: their questions were never answered and scored 0 among the others, without a word
    doc = _squad_doc()
    doc["data"][0]["paragraphs"].append({"context": "\x00 \x01", "qas": [{**_qa(doc), "id": "lost"}]})
    refused(doc, "1 of 4 questions give no features", "'lost'")


# ---------------------------------------------------------------------------------------------- end to end
MAIN = "import sys; from subtool.cli import main; sys.argv = ['subtool'] + sys.argv[1:]; main()"


def _cli_run(tmp_path, model, dataset):
    argv = ["run", "--model-path", model, "--dataset-path", dataset, "--out", tmp_path / "out"]
    argv += ["--min-duration-ms", "1000", "--backend", "torch-cpu", "--threads", "1", "--mode", "accuracy"]
    res = subprocess.run(
        [sys.executable, "-c", MAIN, *map(str, argv)], capture_output=True, text=True, timeout=300, env=os.environ
    )
    errors = [line for line in res.stderr.splitlines() + res.stdout.splitlines() if line.startswith("error:")]
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-3000:]
    assert "Traceback" not in res.stderr and "run.crashed" not in res.stderr + res.stdout, res.stderr[-3000:]
    assert len(errors) == 1, res.stderr[-3000:]
    assert not (tmp_path / "out" / "bert-99" / "Offline").exists()
    return errors[0], res.stdout + res.stderr


def test_cli_refuses_nan_weights_before_loadgen_with_one_line(tmp_path, ckpt, small_squad):
    def poison(state):
        state["bert.embeddings.word_embeddings.weight"][5] = float("nan")

    _rewrite_weights(ckpt, poison)
    line, _ = _cli_run(tmp_path, ckpt, small_squad)
    assert "model.safetensors" in line and "bert.embeddings.word_embeddings.weight" in line, line
    assert line.endswith("[model.weights]"), line


def test_cli_refuses_an_answer_that_is_not_a_string_before_loadgen(tmp_path, tiny_checkpoint, small_squad):
    doc = json.loads(small_squad.read_text())
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"] = [{"text": 5, "answer_start": 0}]
    path = tmp_path / "bad-answer.json"
    path.write_text(json.dumps(doc))
    line, _ = _cli_run(tmp_path, tiny_checkpoint, path)
    assert "bad-answer.json" in line and "'text' is not a string" in line and line.endswith("[dataset.squad_v1.1]")


def test_cli_refuses_unused_weights_with_its_one_line_and_no_load_report(tmp_path, ckpt, small_squad):
    _set_config(ckpt, num_hidden_layers=1)
    line, output = _cli_run(tmp_path, ckpt, small_squad)
    assert "16 weights in the file are not used" in line and line.endswith("[model.weights]"), line
    assert "LOAD REPORT" not in output and "UNEXPECTED" not in output, output[-3000:]


@pytest.mark.parametrize("name", ["model.pytorch", "model.safetensors"])
def test_weights_that_are_a_fifo_or_a_folder_are_refused_not_waited_on(tmp_path, tiny_checkpoint, name):
    """A FIFO model.pytorch hung the run; a FIFO or folder model.safetensors was reported as no weights file."""
    model = _reference(tmp_path / "ref", tiny_checkpoint) if name == "model.pytorch" else tmp_path / "hf"
    if name == "model.safetensors":
        shutil.copytree(tiny_checkpoint, model)
    weights = model / name
    weights.unlink()
    os.mkfifo(weights)
    _refused(lambda: load_bert_qa(model), "model.load", weights, "not a regular file")
    weights.unlink()
    weights.mkdir()
    _refused(lambda: load_bert_qa(model), "model.load", weights, "not a regular file")


def test_pickled_objects_in_weights_are_refused_without_advice_to_unpickle_them(tmp_path, tiny_checkpoint):
    import torch

    model = _reference(tmp_path / "ref", tiny_checkpoint)
    torch.save({"weights": ValueError("not a tensor")}, model / "model.pytorch")
    err = _refused(lambda: load_bert_qa(model), "model.load", model / "model.pytorch", "never unpickles")
    assert "weights_only" not in err.one_line()
