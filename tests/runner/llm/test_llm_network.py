"""The network SUT (`--backend openai`, the `openai` SDK) against a real OpenAI-compatible server the tests start
on 127.0.0.1 (tests/support/openai_server.py: Starlette + uvicorn serving the tiny demo checkpoint through
transformers), through the CLI and real LoadGen: the same tokens as the local SUT in Offline and Server, real TTFT,
retries on 429/500 and dropped streams, BPE and multi-byte text pieces, and one clear line for every failure."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from subtool.cli import app
from subtool.errors import EXIT_REMOTE, EXIT_USAGE

from .conftest import short_user_conf

pytest.importorskip("openai")
pytest.importorskip("uvicorn")
from support.openai_server import CompletionsServer  # noqa: E402
from support.watched_loadgen import WatchedLoadGen  # noqa: E402

runner = CliRunner()


def _tokens(run_dir) -> dict[int, list[int]]:
    entries = json.loads((run_dir / "accuracy/mlperf_log_accuracy.json").read_text())
    return {e["qsl_idx"]: np.frombuffer(bytes.fromhex(e["data"]), dtype=np.int32).tolist() for e in entries}


@pytest.fixture(scope="module")
def local_tokens(llama3_offline_run):
    """What the local SUT generated for the small data set."""
    return _tokens(llama3_offline_run)


@pytest.fixture(scope="module")
def tiny_server(llama3_small):
    """One server for the module; each test sets its knobs through `server`."""
    with CompletionsServer(llama3_small.model_path) as server:
        yield server


@pytest.fixture
def server(tiny_server):
    return tiny_server.configure()


def _run(llama3_small, out, *args, model_path=None):
    """`subtool run --model llama3.1-8b` on the small data set against an endpoint."""
    base = ["run", "--model", "llama3.1-8b", "--model-path", model_path or llama3_small.model_path]
    base += ["--dataset-path", llama3_small.dataset_path, "--out", out]
    return runner.invoke(app, [*map(str, base), *map(str, args)])


def _one_error(res, rule, exit_code=EXIT_REMOTE):
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"[{rule}]" in errors[0], res.output
    assert res.exit_code == exit_code and "Traceback" not in res.output, res.output
    return errors[0]


def test_server_scenario_streams_the_local_suts_tokens_with_real_ttft(
    tmp_path, llama3_small, local_tokens, server, monkeypatch
):
    """429s with Retry-After are retried, the slow first token shows in TTFT, the key (env only) goes nowhere."""
    monkeypatch.setenv("TINY_KEY", "sk-test-secret")
    server.configure(api_key="sk-test-secret", fail_first=3, fail_status=429, retry_after=0.05)
    server.first_token_delay_s, server.token_delay_s = 0.08, 0.01
    conf = short_user_conf(tmp_path / "user.conf", "llama3_1-8b", "Server", target_qps=20)
    res = _run(llama3_small, tmp_path / "runs", "--scenario", "Server", "--user-conf", conf, "--json",
               "--endpoint", server.url, "--api-key-env", "TINY_KEY")  # fmt: skip
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "runs/llama3.1-8b/Server"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["backend"] == "openai"
    assert _tokens(run_dir) == local_tokens  # three 429s were retried, nothing lost
    assert server.completions > 3 + 24  # the refused requests were sent again
    perf = record["modes"]["performance"]
    assert perf["result_field"] == "result_completed_tokens_per_second" and perf["result"] > 0
    # TTFT is the first token's arrival, not the answer's: the tokens after it take 10 ms each
    assert perf["ttft_ms"]["p50"] >= 80 and perf["tpot_ms"]["p50"] >= 8
    assert "sk-test-secret" not in json.dumps(record) + res.output + (run_dir / "run.json").read_text()


def test_offline_run_scores_through_500s_and_dropped_streams(tmp_path, llama3_small, local_tokens, server):
    """A text-only server (answers re-tokenized) that fails twice with 500 and then breaks two streams mid-answer,
    one by cutting the connection and one by ending without a finish_reason: the run still scores every sample."""
    server.configure(token_ids=False, fail_first=2, fail_status=500, drop_first=2, drop_after=3, drop=("cut", "end"))
    conf = short_user_conf(tmp_path / "user.conf", "llama3_1-8b", "Offline", target_qps=1000)
    res = _run(llama3_small, tmp_path, "--user-conf", conf, "--endpoint", server.url)  # performance + accuracy
    assert res.exit_code == 0, res.output
    assert server.completions == 2 + 2 * 24 + 2 and server.streams == 2 * 24 + 2
    assert _tokens(tmp_path / "llama3.1-8b/Offline") == local_tokens  # one word, one token
    record = json.loads((tmp_path / "llama3.1-8b/Offline/run.json").read_text())
    perf = record["modes"]["performance"]
    assert perf["result_field"] == "result_tokens_per_second" and perf["result"] > 0
    metrics = record["modes"]["accuracy"]["metrics"]
    assert metrics["rouge1"] >= 0 and metrics["tokens_per_sample"] > 0
    assert "'rouge1': '" in (tmp_path / "llama3.1-8b/Offline/accuracy/accuracy.txt").read_text()


@pytest.fixture(scope="module")
def bpe_checkpoint(tmp_path_factory, llama3_small):
    """The tiny llama checkpoint with a real byte-level BPE tokenizer of the same vocabulary size, trained here
    (the `tokenizers` library, no download) on generated text with accented and CJK letters: decoded answers are
    BPE pieces ("ing", " the") and single bytes of multi-byte characters, which only join back into the answer
    with "" (real servers' tokenizers are BPE; the demo's is one word per token, under which any separator
    re-tokenizes to the same ids)."""
    import random
    import shutil

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    model_dir = tmp_path_factory.mktemp("bpe") / "model"
    shutil.copytree(llama3_small.model_path, model_dir)
    vocab_size = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    rng = random.Random(20)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiouéüø"] + ["ing", "tion", "日本", "語", "ß"]
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


def test_text_only_bpe_server_pieces_join_with_nothing_between(tmp_path, llama3_small, bpe_checkpoint):
    from transformers import AutoTokenizer

    with CompletionsServer(bpe_checkpoint, token_ids=False) as server:
        res = _run(llama3_small, tmp_path, "--mode", "accuracy", "--endpoint", server.url, model_path=bpe_checkpoint)
    assert res.exit_code == 0, res.output
    tokenizer = AutoTokenizer.from_pretrained(str(bpe_checkpoint))
    prompts = [r["tok_input"] for r in json.loads(llama3_small.dataset_path.read_text())]
    got = _tokens(tmp_path / "llama3.1-8b/Offline")
    joined_with_spaces_differs = 0
    for i, prompt in enumerate(prompts):
        pieces = server.pieces[tuple(prompt)]
        expected = tokenizer("".join(pieces), add_special_tokens=False)["input_ids"]
        assert got[i] == expected, f"sample {i}: {pieces}"
        joined_with_spaces_differs += tokenizer(" ".join(pieces), add_special_tokens=False)["input_ids"] != expected
    # the test has teeth: the pieces are BPE pieces, and a separator between them changes the answer
    assert joined_with_spaces_differs == len(prompts)
    assert server.held_back > 0  # and some characters' bytes came in two tokens, their text in one later piece


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_is_one_clear_line(tmp_path, llama3_small, capfd):
    res = _run(llama3_small, tmp_path / "runs", "--mode", "accuracy", "--endpoint", f"http://127.0.0.1:{_free_port()}")
    line = _one_error(res, "run.endpoint_unreachable")
    assert "connection refused" in line
    assert not any((tmp_path / "runs").rglob("run.json"))
    # said before the prompts are read and tokenized (a minute for the real set): the benchmark's process said nothing
    assert "data:" not in capfd.readouterr().err


def test_a_model_name_the_server_does_not_serve_is_one_line(tmp_path, llama3_small, server, capfd):
    server.configure(models=("tiny-demo", "tiny-lora"))
    res = _run(llama3_small, tmp_path, "--mode", "accuracy", "--endpoint", server.url, "--served-model", "nope")
    line = _one_error(res, "run.endpoint_model", EXIT_USAGE)
    assert "tiny-demo, tiny-lora" in line and "'nope'" in line
    assert server.completions == 0 and "data:" not in capfd.readouterr().err


def test_the_served_model_is_the_one_named_or_the_only_one(llama3_small, server):
    from subtool.errors import SubtoolError

    server.configure(models=("tiny-demo", "tiny-lora"))
    assert _sut(server.url, llama3_small, served_model="tiny-lora").model == "tiny-lora"
    with pytest.raises(SubtoolError, match="name one") as err:  # two served, none named: no guessing
        _sut(server.url, llama3_small)
    assert err.value.rule == "run.endpoint_model"
    server.configure()
    assert _sut(server.url + "/v1/", llama3_small).model == "tiny-demo"
    for body in ("<html>not an API</html>", '{"data": 5}', '{"data": [{"no_id": 1}]}', '{"data": []}'):
        server.configure(models_body=body)
        with pytest.raises(SubtoolError) as err:  # something else answers at that address
            _sut(server.url, llama3_small)
        assert err.value.rule in ("run.endpoint", "run.endpoint_model"), body


def _sut(server_url, llama3_small, **kwargs):
    from subtool.runner.llm.specs import LLM_SPECS
    from subtool.runner.llm.sut_openai import OpenAICompletionsSUT
    from subtool.runner.llm.workload import generation_for

    gen = generation_for(LLM_SPECS["llama3.1-8b"], llama3_small.model_path, {})
    sut = OpenAICompletionsSUT(server_url, [], None, gen, concurrency=1, **kwargs)
    sut.stop()
    return sut


def test_api_key_comes_from_the_environment_and_problems_are_named(llama3_small, server, monkeypatch):
    from subtool.errors import SubtoolError

    server.configure(api_key="k")
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("WRONG_KEY", "not-it")
    for env, rule in (
        ("NO_SUCH_KEY", "run.api_key"),
        (None, "run.endpoint_auth"),
        ("WRONG_KEY", "run.endpoint_auth"),
    ):
        with pytest.raises(SubtoolError) as err:
            _sut(server.url, llama3_small, api_key_env=env)
        assert err.value.rule == rule
        assert "not-it" not in err.value.one_line()
    monkeypatch.setenv("OPENAI_API_KEY", "k")  # the SDK's own variable, when --api-key-env names none
    assert _sut(server.url, llama3_small).model == "tiny-demo"


def test_a_server_that_keeps_failing_stops_the_run_and_leaves_nothing(tmp_path, llama3_small, server):
    server.configure(fail_first=10**6, fail_status=500, retry_after=0.01)
    res = _run(llama3_small, tmp_path / "runs", "--mode", "accuracy", "--endpoint", server.url)
    assert "HTTP 500" in _one_error(res, "run.endpoint_failed")
    assert not any((tmp_path / "runs").rglob("run.json"))
    assert 7 <= server.completions <= 24 * 7  # each was sent again (6 times), then the run stopped asking


@pytest.mark.parametrize("knobs", [{"drop_first": 10**6}, {"garbage": "{not json"}], ids=["drops", "garbage"])
def test_streams_that_always_break_or_are_garbage_stop_the_run(tmp_path, llama3_small, server, knobs):
    server.configure(**knobs)
    res = _run(llama3_small, tmp_path / "runs", "--mode", "accuracy", "--endpoint", server.url)
    line = _one_error(res, "run.endpoint_failed")
    assert ("stream broke" in line) if "drop_first" in knobs else ("not OpenAI's completions format" in line)
    assert not any((tmp_path / "runs").rglob("run.json"))


@pytest.mark.parametrize(
    "knobs, words",
    [
        ({"extra_tokens": 40}, "past the 16 tokens asked"),  # 640 tokens for max_tokens 16: 19,113 tokens/s VALID
        ({"endless": True}, "goes on past the"),  # a chunk every half second, never a finish_reason: a hang
        ({"token_id_offset": 10**6}, "past the model's"),  # ids that mean nothing passed a performance run
    ],
    ids=["longer", "endless", "past-vocabulary"],
)
def test_an_answer_the_server_could_not_have_generated_stops_the_run(tmp_path, llama3_small, server, knobs, words):
    server.configure(**knobs)
    res = _run(llama3_small, tmp_path / "runs", "--mode", "performance", "--endpoint", server.url)
    assert words in _one_error(res, "run.endpoint_failed")
    assert not any((tmp_path / "runs").rglob("run.json"))


def test_token_ids_that_do_not_read_as_the_servers_text_stop_the_run(tmp_path, llama3_small, server):
    """Ids one off from what the server generated (each still a token of the model) under the right text: the
    accuracy log held the ids, and was scored, while the server had said something else."""
    server.configure(token_id_offset=1)
    res = _run(llama3_small, tmp_path / "runs", "--mode", "accuracy", "--endpoint", server.url)
    line = _one_error(res, "run.endpoint_failed")
    assert "the token ids the server sent read '" in line and "does the server use --model-path's tokenizer?" in line
    assert not any((tmp_path / "runs").rglob("run.json"))


def test_ids_whose_text_came_in_other_pieces_read_as_that_text(tmp_path, llama3_small, bpe_checkpoint):
    """The check above refuses no honest server: BPE ids whose characters' bytes span two tokens (their text held
    back to a later piece) still read as the text the server sent."""
    with CompletionsServer(bpe_checkpoint) as server:
        res = _run(llama3_small, tmp_path, "--mode", "accuracy", "--endpoint", server.url, model_path=bpe_checkpoint)
    assert res.exit_code == 0, res.output
    assert server.held_back > 0


def test_the_servers_usage_count_is_used_where_plausible():
    from types import SimpleNamespace as NS

    from subtool.runner.llm.sut_openai import _Answer

    answer = _Answer()
    piece = NS(text="a", finish_reason=None, logprobs=NS(tokens=["token_id:7", "token_id:8"]))
    answer.add(NS(choices=[piece], usage=None))
    answer.add(NS(choices=[NS(text="", finish_reason="length", logprobs=None)], usage=NS(completion_tokens=3)))
    assert answer.token_ids(None) == [7, 8] and answer.finish_reason == "length"
    assert answer.count(2, max_tokens=128) == 2  # never more than the answer LoadGen logs holds
    answer.usage_tokens = 1
    assert answer.count(2, max_tokens=128) == 1  # the server's own, lower count
    answer.usage_tokens = 10**9  # a lying server does not inflate tokens/s
    assert answer.count(2, max_tokens=128) == 2
    answer.add(NS(choices=[NS(text="b", finish_reason=None, logprobs=NS(tokens=["b"]))], usage=None))
    assert answer.ids is None  # one chunk without ids: the text is re-tokenized


_junk = st.deferred(  # one branch of a one_of, whatever it holds: the well-formed values stay common
    lambda: st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2))
)
_token_id = st.one_of(st.integers(0, 2**31 - 1), st.integers(2**31, 10**12)).map(lambda n: f"token_id:{n}")
_logprobs = st.fixed_dictionaries({"tokens": st.lists(st.one_of(_token_id, _token_id, _token_id, _junk), max_size=3)})
_choice = st.fixed_dictionaries(
    {
        "text": st.one_of(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8), _junk),
        "finish_reason": st.one_of(st.sampled_from(["stop", "length"]), _junk),
    },
    optional={"logprobs": st.one_of(_logprobs, _logprobs, _logprobs, _junk)},
)
_usage = st.fixed_dictionaries({"completion_tokens": st.one_of(st.integers(-5, 300), _junk)})
_chunk = st.one_of(
    st.fixed_dictionaries({"choices": st.lists(_choice, max_size=2)}, optional={"usage": _usage}),
    st.fixed_dictionaries({"choices": st.lists(_choice, max_size=2)}, optional={"usage": _usage}),
    st.fixed_dictionaries({}, optional={"choices": st.one_of(_junk, st.lists(_junk, max_size=2)), "usage": _junk}),
)


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(_chunk, max_size=4))
@example(chunks=[{"choices": [{"text": "a", "finish_reason": None, "logprobs": {"tokens": ["token_id:4294967296"]}}]}])
def test_any_chunk_a_server_sends_is_read_or_refused(chunks, llama3_tokenizer):
    """Chunks as the SDK builds them from any JSON a server sends: the reader takes them or raises one of the
    errors the SUT turns into run.endpoint_failed, and what it takes is token ids LoadGen's int32 array holds."""
    from openai.types import Completion

    from subtool.runner.llm.sut_openai import _Answer

    answer = _Answer()
    try:
        for data in chunks:
            answer.add(Completion.construct(**data))
    except (ValueError, TypeError, AttributeError):
        return
    ids = answer.token_ids(llama3_tokenizer)
    assert all(isinstance(i, int) and 0 <= i < 2**31 for i in ids)
    np.asarray(ids, dtype=np.int32)
    assert 0 <= answer.count(len(ids), max_tokens=128) <= max(len(ids), 128)
    assert answer.first_token(llama3_tokenizer) is None or isinstance(answer.first_token(llama3_tokenizer), int)


@pytest.fixture(scope="module")
def llama3_tokenizer(llama3_small):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(llama3_small.model_path))


def test_no_hand_written_http_or_sse_remains():
    """The SUT talks HTTP and SSE through the openai SDK only. The retries around its calls are the SUT's own (one
    deadline a sample for every try, which the SDK cannot give), so sleeping between tries is no longer a needle."""
    from pathlib import Path

    import subtool.runner.llm.sut_openai as sut

    source = Path(sut.__file__).read_text()
    needles = ("import http", "import socket", "urllib.request", "import requests", "httpx", "data:", "[DONE]")
    for needle in (*needles, "readline"):
        assert needle not in source, needle


def test_an_endpoint_that_redirects_is_refused_not_followed(llama3_small):
    """The answers came from the redirect's target while run.json named --endpoint, and the result was VALID."""
    import http.server
    import threading

    from subtool.errors import SubtoolError

    class Redirect(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            self.send_response(307)
            self.send_header("Location", f"http://localhost:{self.server.server_port}/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(SubtoolError) as err:
            _sut(f"http://127.0.0.1:{server.server_port}", llama3_small)
    finally:
        server.shutdown()
    assert err.value.rule == "run.endpoint" and "redirects elsewhere" in err.value.one_line()


def test_a_model_list_past_a_mib_is_refused_before_the_data_loads(tmp_path, llama3_small, server, capfd):
    """The check made before the data set loads reads the model list through the same guard as the SUT: a server
    answering an endless list is cut at 1 MiB, in one line, and nothing else is asked of it."""
    endless = json.dumps({"object": "list", "data": [{"id": f"m{i:07d}", "object": "model"} for i in range(60_000)]})
    assert len(endless) > 2**21
    server.configure(models_body=endless)
    res = _run(llama3_small, tmp_path / "runs", "--mode", "accuracy", "--endpoint", server.url)
    line = _one_error(res, "run.endpoint")
    assert "1 MiB" in line and server.completions == 0, line
    assert "data:" not in capfd.readouterr().err


@pytest.mark.parametrize(
    "knobs", [{"extra_tokens": 40}, {"endless": True}, {"fail_first": 10**6, "fail_status": 500}],
    ids=["longer", "endless", "no-stream"],
)  # fmt: skip
def test_every_sample_answered_after_a_failure_has_its_first_token_first(tmp_path, llama3_small, server, knobs):
    """LoadGen's summary reads a first-token and a per-token latency at the position of each of the run's samples.
    The samples answered empty after a failure had none, so it read past the end of those arrays: the benchmark
    process died of SIGSEGV in LoadGen's logging thread in about one such run in eight (`run.crashed`, exit -11,
    in place of the run's own error). Now each sample LoadGen is answered gets its first token first, once."""
    import mlperf_loadgen as lg

    from subtool.errors import SubtoolError
    from subtool.runner.harness import run_loadgen
    from subtool.runner.llm.specs import LLM_SPECS
    from subtool.runner.llm.workload import LlmQSL, LlmWorkload
    from subtool.runner.workload import SutConfig

    server.configure(retry_after=0.01, **knobs)
    w = LlmWorkload("llama3.1-8b")
    data = w.load(llama3_small.model_path, llama3_small.dataset_path, None)
    config = SutConfig(backend="openai", extra={"endpoint": server.url})
    sut = w.make_sut(llama3_small.model_path, data, config)
    sut.lg = watched = WatchedLoadGen(lg)
    qsl = LlmQSL(data.sample_count, data.sample_count)
    run = lg.TestSettings()
    run.scenario, run.use_token_latencies = lg.TestScenario.Offline, True
    run.offline_expected_qps, run.min_duration_ms, run.min_query_count = 500, 100, 1
    try:
        run_loadgen(sut.handle, qsl.handle, run, scenario="Offline", mode="performance", outdir=tmp_path)
        with pytest.raises(SubtoolError):
            sut.stop()
    finally:
        qsl.destroy()
    assert LLM_SPECS["llama3.1-8b"].token_latencies
    assert len(watched.answered) > data.sample_count  # every issued sample (LoadGen repeats the 24) answered once
    assert len(set(watched.answered)) == len(watched.answered)
    assert sorted(watched.first) == sorted(watched.answered)  # one first token each, none twice
