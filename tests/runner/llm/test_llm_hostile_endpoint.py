"""The network SUT against a hostile server (tests/support/hostile_sse.py: raw bytes over the standard library's
HTTP server, SSE the way no framework would write it): a stream kept alive by comments or an event never ended
stops at the deadline instead of hanging the run, a response of many megabytes is cut off instead of filling the
memory, an empty answer ends the run instead of counting as a valid one, and a key in --endpoint's URL stays out
of every line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from typer.testing import CliRunner

from subtool.cli import app
from subtool.errors import EXIT_REMOTE

from .conftest import short_user_conf

pytest.importorskip("openai")
from support.hostile_sse import HostileServer  # noqa: E402

runner = CliRunner()


def _sut(url: str, model_path, name: str = "llama3.1-8b"):
    """The SUT for one prompt, with no LoadGen token latencies (its _generate then reports nothing to LoadGen)."""
    from subtool.runner.llm.specs import LLM_SPECS
    from subtool.runner.llm.sut_openai import OpenAICompletionsSUT
    from subtool.runner.llm.workload import generation_for

    gen = dataclasses.replace(generation_for(LLM_SPECS[name], model_path, {}), token_latencies=False)
    return OpenAICompletionsSUT(url, [np.array([1, 2, 3], dtype=np.int32)], None, gen, concurrency=1)


@pytest.mark.parametrize("behaviour", ["pings", "dribble"])
def test_a_stream_kept_alive_without_events_ends_at_the_deadline(llama3_small, behaviour):
    """SSE comments every 0.1 s, or an event that never ends: no chunk ever reached the SUT's own checks and every
    read got bytes within the client's timeout, so the run waited for ever."""
    import threading

    failures: list[BaseException] = []
    with HostileServer(behaviour) as server:
        sut = _sut(server.url, llama3_small.model_path)
        sut.request_deadline_s = 1.0
        reader = threading.Thread(target=lambda: _catch(failures, sut._generate, 0, 0), daemon=True)
        reader.start()
        reader.join(15)
        sut.stop()
    assert not reader.is_alive(), "the stream still holds the request after 15 s"
    assert "still coming after 1 s" in str(failures[0]) and type(failures[0]).__name__ == "EndpointError"
    assert server.requests == 1  # not sent again: it is no dropped stream


def _catch(failures: list, call, *args) -> None:
    try:
        call(*args)
    except Exception as exc:  # noqa: BLE001 - the test looks at it
        failures.append(exc)


def _run(small, out, server, *args, model="llama3.1-8b", endpoint=None):
    base = ["run", "--model", model, "--model-path", small.model_path, "--dataset-path", small.dataset_path]
    base += ["--out", out, "--endpoint", endpoint or server.url, "--batch-size", 4]
    return runner.invoke(app, [*map(str, base), *map(str, args)])


def _one_error(res) -> str:
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "[run.endpoint_failed]" in errors[0], res.output
    assert res.exit_code == EXIT_REMOTE and "Traceback" not in res.output, res.output
    return errors[0]


def test_a_response_of_many_megabytes_is_cut_off_not_kept(tmp_path, llama3_small):
    """One answer's first chunk holds 64 MiB of text (its token ids well formed): the SDK's event decoder keeps
    an event whole in memory, so a server sending gigabytes ran the node out of memory; this one was VALID."""
    conf = short_user_conf(tmp_path / "user.conf", "llama3_1-8b", "Offline", target_qps=1000)
    with HostileServer("huge_first") as server:
        res = _run(llama3_small, tmp_path / "runs", server, "--mode", "performance", "--user-conf", conf)
    assert "the response goes on past 1 MiB" in _one_error(res)
    assert server.written < 64 << 20  # the client hung up
    assert not any((tmp_path / "runs").rglob("run.json"))


def test_empty_answers_end_the_run_not_count_as_samples(tmp_path, gptj_small):
    """A server that finishes every answer at once with no token: gptj's LoadGen settings count no tokens, so the
    run was VALID at 460 samples/s and kept (for the llamas LoadGen stopped on a zero token count, naming itself)."""
    conf = short_user_conf(tmp_path / "user.conf", "gptj", "Offline", target_qps=1000)
    with HostileServer("empty") as server:
        res = _run(gptj_small, tmp_path / "runs", server, "--mode", "performance", "--user-conf", conf, model="gptj-99")
    assert "the answer has no token" in _one_error(res)
    assert not any((tmp_path / "runs").rglob("run.json"))


def test_an_answer_under_the_benchmarks_least_length_ends_the_run(tmp_path, gptj_small, llama3_small):
    """A server that ignores min_tokens (gptj asks for 30; the demo's 16-token answers for all 16) and stops after 3:
    the run was VALID and its accuracy log held answers the reference could not have given. The llamas ask for at
    least 1: the same answer is theirs to give."""
    conf = short_user_conf(tmp_path / "user.conf", "gptj", "Offline", target_qps=1000)
    with HostileServer("short") as server:
        res = _run(gptj_small, tmp_path / "runs", server, "--mode", "performance", "--user-conf", conf, model="gptj-99")
        assert "the answer has 3 tokens (finish_reason stop), under the min_tokens 16" in _one_error(res)
        assert not any((tmp_path / "runs").rglob("run.json"))
        res = _run(llama3_small, tmp_path / "llama", server, "--mode", "accuracy")
    assert res.exit_code == 0, res.output


def test_a_key_in_the_endpoints_url_is_in_no_line(tmp_path, llama3_small):
    """`--endpoint http://user:KEY@host` (a proxy's basic auth) was printed whole in the unreachable and not-http
    lines; the user and password still go to the server."""
    secret = "sk-in-the-url-77"
    conf = short_user_conf(tmp_path / "user.conf", "llama3_1-8b", "Offline", target_qps=1000)
    with HostileServer("ok") as server:
        port = server.url.rpartition(":")[2]
        res = _run(
            llama3_small, tmp_path / "ok", server, "--user-conf", conf, endpoint=f"http://u:{secret}@127.0.0.1:{port}"
        )
    assert res.exit_code == 0 and server.authorization[0].startswith("Basic "), res.output
    with HostileServer("ok") as server:  # only to have a free port: the server is gone when the run starts
        port = server.url.rpartition(":")[2]
    here = f"127.0.0.1:{port}"
    for endpoint in (f"http://u:{secret}@{here}", f"ftp://u:{secret}@{here}", f"ftp://{here}/?key={secret}#{secret}"):
        res = _run(llama3_small, tmp_path / "runs", None, "--mode", "accuracy", endpoint=endpoint)
        assert res.exit_code != 0 and "error:" in res.output and "Traceback" not in res.output, res.output
        assert secret not in res.output and "***" in res.output, res.output


def test_an_html_page_for_a_stream_is_named_not_sent_again(tmp_path, llama3_small):
    """A login page answered with 200: it read as a stream dropped before its finish_reason, sent three times."""
    with HostileServer("html") as server:
        res = _run(llama3_small, tmp_path / "runs", server, "--mode", "accuracy")
        assert "answered text/html; charset=utf-8, not an event stream" in _one_error(res)
    assert server.requests <= 4  # one a worker, none sent again


def test_a_key_given_to_api_key_env_in_place_of_a_name_is_not_printed(tmp_path, llama3_small, monkeypatch, capfd):
    """`--api-key-env $OPENAI_API_KEY` hands the key itself: the line said "--api-key-env names sk-…"."""
    monkeypatch.delenv("MY_SERVER_KEY", raising=False)
    with HostileServer("ok") as server:
        for given in ("sk-proj-Abc123xyz", "token-abc123", "abcdef0123456789"):
            res = _run(llama3_small, tmp_path / "runs", server, "--mode", "accuracy", "--api-key-env", given)
            assert res.exit_code == 2 and "[run.api_key]" in res.output and given not in res.output, res.output
            assert "data:" not in capfd.readouterr().err  # refused before the prompts are read
        res = _run(llama3_small, tmp_path / "runs", server, "--mode", "accuracy", "--api-key-env", "MY_SERVER_KEY")
    assert "--api-key-env names MY_SERVER_KEY, but that variable is not set" in res.output  # a name is still named
    assert server.requests == 0


def test_a_server_that_takes_the_connection_and_answers_nothing_is_named_soon(llama3_small, monkeypatch):
    """A hung server (the kernel still accepts its connections): the model list waited three times the completions'
    600 s read timeout, half an hour, before the first line."""
    import socket
    import threading

    from subtool.errors import SubtoolError
    from subtool.runner.llm.sut_openai import OpenAICompletionsSUT

    monkeypatch.setattr(OpenAICompletionsSUT, "models_timeout_s", 0.5, raising=False)
    failures: list[BaseException] = []
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)  # never accepted, never answered
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        builder = threading.Thread(target=lambda: _catch(failures, _sut, url, llama3_small.model_path), daemon=True)
        builder.start()
        builder.join(20)
    assert not builder.is_alive(), "still waiting for the model list after 20 s"
    assert isinstance(failures[0], SubtoolError) and failures[0].rule == "run.endpoint_unreachable"
    assert "timed out" in failures[0].one_line()


@pytest.mark.parametrize("behaviour", ["hang", "stall"])
def test_a_server_that_hangs_mid_run_fails_the_sample_at_its_deadline(llama3_small, behaviour):
    """A server that takes a completion request and then says nothing (no headers, or nothing after the first
    token): the SDK read for 600 s and then retried, six times, so one sample took 70 minutes to fail."""
    import threading
    import time

    failures: list[BaseException] = []
    with HostileServer(behaviour) as server:
        sut = _sut(server.url, llama3_small.model_path)
        sut.request_deadline_s = 1.5
        started = time.monotonic()
        reader = threading.Thread(target=lambda: _catch(failures, sut._generate, 0, 0), daemon=True)
        reader.start()
        reader.join(20)
        took = time.monotonic() - started
        sut.stop()
    assert not reader.is_alive(), "the sample still waits for the hung server after 20 s"
    assert took < 6, took  # the deadline, not the deadline times the tries
    assert "no complete answer within 1.5 s" in str(failures[0]) and type(failures[0]).__name__ == "EndpointError"


def test_a_hung_server_stops_the_run_in_one_line_naming_the_endpoint(tmp_path, llama3_small, monkeypatch):
    """The run (its benchmark process, through the run API: `request_deadline_s` is no CLI option) ends soon
    after the deadline, and its line says which server failed, never with the key."""
    import time

    from subtool.errors import SubtoolError
    from subtool.runner.api import RunOptions, run_benchmark

    monkeypatch.setenv("OPENAI_API_KEY", "sk-hung-server-key")
    with HostileServer("hang") as server:
        extra = {"endpoint": server.url, "request_deadline_s": 1.0}
        paths = {"model_path": llama3_small.model_path, "dataset_path": llama3_small.dataset_path}
        opts = RunOptions(model="llama3.1-8b", mode="accuracy", **paths, out=tmp_path / "runs", batch_size=4,
                          backend="openai", extra=extra)  # fmt: skip
        started = time.monotonic()
        with pytest.raises(SubtoolError) as err:
            run_benchmark(opts)
    assert time.monotonic() - started < 90
    line = err.value.one_line()
    assert err.value.rule == "run.endpoint_failed" and err.value.exit_code == EXIT_REMOTE, line
    assert f"the endpoint {server.url}/v1 failed" in line and "no complete answer within 1 s" in line, line
    assert "sk-hung-server-key" not in line
    assert not any((tmp_path / "runs").rglob("run.json"))


@pytest.mark.parametrize(
    ("key", "value"),
    [("request_deadline_s", float("nan")), ("request_deadline_s", -5), ("request_deadline_s", 0),
     ("request_deadline_s", True), ("request_timeout_s", "abc"), ("request_timeout_s", float("inf")),
     ("request_timeout_s", 10**400), ("request_timeout_s", [1])],
)  # fmt: skip
def test_an_endpoint_time_limit_must_be_a_positive_finite_number(key, value):
    from subtool.errors import SubtoolError
    from subtool.runner.llm.workload import endpoint_seconds

    with pytest.raises(SubtoolError, match=f"{key} must be a positive number of seconds") as err:
        endpoint_seconds({key: value}, key, 900.0)
    assert err.value.rule == "run.endpoint"
    assert endpoint_seconds({key: "2.5"}, key, 900.0) == 2.5 and endpoint_seconds({key: None}, key, 900.0) == 900.0


@pytest.mark.parametrize(
    "value", [0, -1, 4097, 10**400, 2.5, float("nan"), float("inf"), True, "many", "1e9", [4], {"n": 4}]
)
def test_the_endpoint_concurrency_must_be_a_whole_number_of_threads_in_range(value):
    """Each request in flight is a worker thread: 10**9 once started threads until memory ran out, and text, a
    fraction or infinity ended in "failed unexpectedly"."""
    from subtool.errors import SubtoolError
    from subtool.runner.llm.workload import MAX_CONCURRENCY, endpoint_concurrency

    with pytest.raises(SubtoolError, match="concurrency must be a whole number of requests from 1 to 4096") as err:
        endpoint_concurrency({"concurrency": value}, 32)
    assert err.value.rule == "run.endpoint"
    assert endpoint_concurrency({"concurrency": "12"}, 32) == 12 and endpoint_concurrency({"concurrency": 8.0}, 3) == 8
    assert endpoint_concurrency({}, 32) == 32 and endpoint_concurrency({"concurrency": None}, 5) == 5
    assert endpoint_concurrency({"concurrency": MAX_CONCURRENCY}, 1) == MAX_CONCURRENCY


def test_a_batch_size_past_the_bound_is_refused_by_its_own_name_when_concurrency_is_not_given():
    """Without `concurrency` the batch size (--batch-size, up to 2**20) is the requests in flight: refused as
    itself, not with a hint to leave out an option the user never gave."""
    from subtool.errors import SubtoolError
    from subtool.runner.llm.workload import endpoint_concurrency

    with pytest.raises(SubtoolError, match=r"^the batch size \(the requests in flight when concurrency is not given\)"):
        endpoint_concurrency({}, 8192)
    assert endpoint_concurrency({"concurrency": 64}, 8192) == 64


def test_a_nan_deadline_is_refused_before_the_run_instead_of_turning_the_deadline_off(tmp_path, llama3_small):
    """NaN once turned the per-sample deadline off without a word (a run on a hung server then hung for the
    request timeout, tries times); through the run API it is one line naming the option before LoadGen starts."""
    from subtool.errors import SubtoolError
    from subtool.runner.api import RunOptions, run_benchmark

    with HostileServer("hang") as server:
        # a short request timeout, so that a deadline taken as given ends the run in seconds rather than hanging
        extra = {"endpoint": server.url, "request_timeout_s": 2.0, "request_deadline_s": float("nan")}
        paths = {"model_path": llama3_small.model_path, "dataset_path": llama3_small.dataset_path}
        opts = RunOptions(model="llama3.1-8b", mode="accuracy", **paths, out=tmp_path / "runs", batch_size=4,
                          backend="openai", extra=extra)  # fmt: skip
        with pytest.raises(SubtoolError) as err:
            run_benchmark(opts)
    line = err.value.one_line()
    assert err.value.rule == "run.endpoint" and "request_deadline_s must be a positive number of seconds" in line
    assert not any((tmp_path / "runs").rglob("run.json"))
