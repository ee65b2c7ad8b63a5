"""The network SUT against a real HTTP server on 127.0.0.1 that serves the tiny model with the OpenAI wire format
(streaming): same tokens as the local SUT, first tokens reported, retries on 503, API keys, a down endpoint."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from typer.testing import CliRunner

from subtool.cli import app

from .conftest import short_user_conf
from .openai_server import TinyCompletionsServer

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["run", *map(str, args)])


def _tokens(run_dir) -> dict[int, list[int]]:
    entries = json.loads((run_dir / "accuracy/mlperf_log_accuracy.json").read_text())
    return {e["qsl_idx"]: np.frombuffer(bytes.fromhex(e["data"]), dtype=np.int32).tolist() for e in entries}


@pytest.fixture(scope="module")
def local_tokens(llama3_offline_run):
    """What the local SUT generated for the small data set."""
    return _tokens(llama3_offline_run)


def test_streamed_answers_equal_the_local_sut_and_report_token_metrics(
    tmp_path, llama3_small, local_tokens, monkeypatch
):
    monkeypatch.setenv("TINY_KEY", "sk-test-secret")
    conf = short_user_conf(tmp_path / "user.conf", "llama3_1-8b", "Server", target_qps=20)
    with TinyCompletionsServer(llama3_small.model_path, api_key="sk-test-secret", fail_first=2) as server:
        res = _run(
            "--model",
            "llama3.1-8b",
            "--scenario",
            "Server",
            "--model-path",
            llama3_small.model_path,
            "--dataset-path",
            llama3_small.dataset_path,
            "--out",
            tmp_path / "runs",
            "--user-conf",
            conf,
            "--endpoint",
            server.url,
            "--api-key-env",
            "TINY_KEY",
            "--json",
        )
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "runs/llama3.1-8b/Server"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["backend"] == "openai"
    assert _tokens(run_dir) == local_tokens  # two 503s were retried, nothing lost
    perf = record["modes"]["performance"]
    assert perf["result_field"] == "result_completed_tokens_per_second" and perf["result"] > 0
    assert perf["ttft_ms"]["p50"] > 0 and perf["tpot_ms"]["p50"] > 0
    assert "sk-test-secret" not in json.dumps(record) + res.output  # the key is never written


def test_text_only_servers_are_retokenized(tmp_path, llama3_small, local_tokens):
    with TinyCompletionsServer(llama3_small.model_path, token_ids=False) as server:
        res = _run(
            "--model",
            "llama3.1-8b",
            "--mode",
            "accuracy",
            "--model-path",
            llama3_small.model_path,
            "--dataset-path",
            llama3_small.dataset_path,
            "--out",
            tmp_path,
            "--endpoint",
            server.url,
        )
    assert res.exit_code == 0, res.output
    assert _tokens(tmp_path / "llama3.1-8b/Offline") == local_tokens  # one word, one token


@pytest.fixture(scope="module")
def bpe_checkpoint(tmp_path_factory, llama3_small):
    """The tiny llama checkpoint with a real byte-level BPE tokenizer of the same vocabulary size, trained here
    (the `tokenizers` library, no download) on generated text: decoded answers are BPE pieces ("ing", " the"),
    which only join back into the answer with "" (real servers' tokenizers are BPE; the demo's is one word per
    token, under which any separator re-tokenizes to the same ids)."""
    import random
    import shutil

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    model_dir = tmp_path_factory.mktemp("bpe") / "model"
    shutil.copytree(llama3_small.model_path, model_dir)
    vocab_size = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    rng = random.Random(20)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["ing", "tion", "er", "ed", "st"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(4000)]
    text = [" ".join(rng.choice(words) for _ in range(40)) + rng.choice([".", ",", "!", "?"]) for _ in range(3000)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        text,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["<unk>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    assert tok.get_vocab_size() == vocab_size and tok.token_to_id("</s>") == 2
    tok.save(str(model_dir / "tokenizer.json"))
    return model_dir


def _pieces(tokenizer, ids: list[int]) -> list[str]:
    """What an incrementally detokenizing server streams for these ids."""
    out, sent = [], ""
    for k in range(1, len(ids) + 1):
        full = tokenizer.decode(ids[:k], skip_special_tokens=True)
        out.append(full[len(sent) :])
        sent = full
    return out


def test_text_only_bpe_server_pieces_join_with_nothing_between(tmp_path, llama3_small, bpe_checkpoint):
    from transformers import AutoTokenizer

    with TinyCompletionsServer(bpe_checkpoint, token_ids=False) as server:
        res = _run(
            "--model",
            "llama3.1-8b",
            "--mode",
            "accuracy",
            "--model-path",
            bpe_checkpoint,
            "--dataset-path",
            llama3_small.dataset_path,
            "--out",
            tmp_path,
            "--endpoint",
            server.url,
        )
        generated = dict(server.generated)
    assert res.exit_code == 0, res.output
    tokenizer = AutoTokenizer.from_pretrained(str(bpe_checkpoint))
    prompts = [r["tok_input"] for r in json.loads(llama3_small.dataset_path.read_text())]
    got = _tokens(tmp_path / "llama3.1-8b/Offline")
    joined_with_spaces_differs = 0
    for i, prompt in enumerate(prompts):
        pieces = _pieces(tokenizer, generated[tuple(prompt)])
        expected = tokenizer("".join(pieces), add_special_tokens=False)["input_ids"]
        assert got[i] == expected, f"sample {i}: {pieces}"
        joined_with_spaces_differs += tokenizer(" ".join(pieces), add_special_tokens=False)["input_ids"] != expected
    # the test has teeth: the pieces are BPE pieces, and a separator between them changes the answer
    assert joined_with_spaces_differs == len(prompts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_error(res, rule):
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code != 0 and len(errors) == 1 and f"[{rule}]" in errors[0], res.output


def test_unreachable_endpoint_is_one_clear_line(tmp_path, llama3_small):
    res = _run(
        "--model",
        "llama3.1-8b",
        "--mode",
        "accuracy",
        "--model-path",
        llama3_small.model_path,
        "--dataset-path",
        llama3_small.dataset_path,
        "--out",
        tmp_path / "runs",
        "--endpoint",
        f"http://127.0.0.1:{_free_port()}",
    )
    _one_error(res, "run.endpoint_unreachable")
    assert "connection refused" in res.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("run.json"))


def test_api_key_problems_are_named(llama3_small, monkeypatch):
    from subtool.errors import SubtoolError
    from subtool.runner.llm.specs import LLM_SPECS
    from subtool.runner.llm.sut_openai import OpenAICompletionsSUT
    from subtool.runner.llm.workload import generation_for

    gen = generation_for(LLM_SPECS["llama3.1-8b"], llama3_small.model_path, {})
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    monkeypatch.setenv("WRONG_KEY", "not-it")
    with TinyCompletionsServer(llama3_small.model_path, api_key="k") as server:
        for env, rule in (
            ("NO_SUCH_KEY", "run.api_key"),
            (None, "run.endpoint_auth"),
            ("WRONG_KEY", "run.endpoint_auth"),
        ):
            with pytest.raises(SubtoolError) as err:
                OpenAICompletionsSUT(server.url, [], None, gen, api_key_env=env)
            assert err.value.rule == rule
            assert "not-it" not in err.value.one_line()


def test_a_server_that_keeps_failing_stops_the_run_and_leaves_nothing(tmp_path, llama3_small):
    with TinyCompletionsServer(llama3_small.model_path, fail_first=10**6) as server:
        res = _run(
            "--model",
            "llama3.1-8b",
            "--mode",
            "accuracy",
            "--model-path",
            llama3_small.model_path,
            "--dataset-path",
            llama3_small.dataset_path,
            "--out",
            tmp_path / "runs",
            "--endpoint",
            server.url,
        )
    _one_error(res, "run.endpoint_failed")
    assert "HTTP 503" in res.output
    assert not any((tmp_path / "runs").rglob("run.json"))
