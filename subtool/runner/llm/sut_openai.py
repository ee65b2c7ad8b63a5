"""A network SUT: each LoadGen sample becomes one streaming request to an OpenAI-compatible `/v1/completions`
endpoint (vLLM, SGLang, TensorRT-LLM, TGI, …), with at most `concurrency` requests in flight.

The HTTP client and the server-sent-event stream are the `openai` SDK's (the optional extra `openai`). Its retries
are not used for completions: it would give each try the whole timeout again (seven reads of 600 s kept one sample
in front of a hung server for 70 minutes). Here each sample has one deadline (`request_deadline_s`) for all of its
tries: 408/409/429/5xx answers and failed connections are sent again (at most `max_retries` times) with the
SDK's back-off, honouring Retry-After, a stream that breaks after it started at most `stream_retries` times
(LoadGen still sees one first token), each try given only the time left; past the deadline the sample fails with
one error that names the endpoint.

The prompt goes out as token ids (the data set's own tokenization, no re-tokenizing drift). The first token is
reported to LoadGen the moment it arrives (real TTFT). The answer's token ids are read from the stream when the
server gives them (vLLM: `return_tokens_as_token_ids` with logprobs, entries "token_id:N"); otherwise the streamed
text pieces are joined (with nothing between: they are BPE pieces) and tokenized with the checkpoint's tokenizer.
The server's usage count, where it sends one, is the token count LoadGen's tokens/s uses. The first request that
still fails stops the run with one clear error; the remaining samples are answered empty so LoadGen can finish.
The API key comes from the environment only ($OPENAI_API_KEY, or the variable --api-key-env names).
"""

from __future__ import annotations

import functools
import os
import queue
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

import numpy as np

from subtool.errors import EXIT_REMOTE, SubtoolError
from subtool.runner import loadgen_watch
from subtool.runner.llm.sut_openai_retry import EndpointError, StreamDropped, pause_before_retry
from subtool.runner.workload import SutFailure

NO_KEY = "EMPTY"  # what vLLM's docs pass when the server checks no key
MAX_TOKEN_ID = 2**31 - 1  # the answers are int32 arrays


def base_url(endpoint: str) -> str:
    """`http://host:port[/prefix]` (with or without /v1) → the SDK's base URL, which ends in /v1."""
    parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if parsed.scheme not in ("http", "https") or not parsed.hostname or port == -1:
        raise SubtoolError(
            f"endpoint {shown_url(endpoint)!r} is not an http(s) URL",
            rule="run.endpoint",
            hint="e.g. --endpoint http://127.0.0.1:8000",
        )
    path = parsed.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, f"{path}/v1", "", ""))


def shown_url(url: str) -> str:
    """`url` as a message may show it: a user and password (a proxy's basic auth), query and fragment, where a key
    can ride along, are `***`."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "***"
    host = parts.netloc.rpartition("@")[2]
    netloc = f"***@{host}" if "@" in parts.netloc else host
    hidden = ("***" if parts.query else "", "***" if parts.fragment else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, *hidden))


def api_key(env_name: str | None) -> str:
    """The key from the environment: the variable --api-key-env names (then it must be set), else $OPENAI_API_KEY,
    else a placeholder for servers that check none."""
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            # a value that is no conventional variable name may be the key itself (`--api-key-env $KEY`): not shown
            name = env_name if re.fullmatch(r"[A-Z_][A-Z0-9_]{0,63}", env_name) else None
            raise SubtoolError(
                f"--api-key-env names {name}, but that variable is not set"
                if name
                else "--api-key-env takes the name of the variable that holds the key (such as OPENAI_API_KEY), "
                "and what it was given names no variable that is set (it is not shown: it may be the key itself)",
                rule="run.api_key",
                hint=f"export {name or 'VAR'}=... before the run, and pass --api-key-env {name or 'VAR'} "
                "(the key is never written to disk)",
            )
        return value
    return os.environ.get("OPENAI_API_KEY") or NO_KEY


def make_client(endpoint: str, key: str, timeout_s: float, max_retries: int, on_response=None):
    try:
        import openai
    except ImportError:
        raise SubtoolError(
            "the openai backend needs the openai package",
            rule="run.backend_missing",
            hint='pip install "mlperf-subtool[openai]"',
        ) from None
    # a redirect is not followed: answers from another address would be recorded as the --endpoint's
    hooks = {"response": [on_response]} if on_response is not None else {}
    http_client = openai.DefaultHttpxClient(follow_redirects=False, event_hooks=hooks)
    return openai.OpenAI(
        base_url=base_url(endpoint), api_key=key, timeout=timeout_s, max_retries=max_retries, http_client=http_client
    )


class OpenAICompletionsSUT(SutFailure):
    # one sample, from its first request to its answer's last byte, every try and pause included: the client's
    # timeout is per read, and a server that sends a byte a second (an SSE comment, a line it never ends, a chunk
    # every half second) would hold the run for ever
    request_deadline_s = 900.0
    # the most bytes one response may hold: room for a token's chunk (about 400 bytes from vLLM) ten times over
    bytes_per_token = 4096
    base_response_bytes = 1 << 20
    # the model list, a healthy server's instant answer even under load: three reads of the completions' timeout
    # (600 s) kept a run in front of a hung server for half an hour before its first line
    models_timeout_s = 30.0

    def __init__(
        self,
        endpoint: str,
        prompts: list[np.ndarray],
        tokenizer,
        generation,
        *,
        api_key_env: str | None = None,
        served_model: str | None = None,
        concurrency: int = 32,
        timeout_s: float = 600.0,
        max_retries: int = 6,
        stream_retries: int = 2,
        request_deadline_s: float | None = None,
    ):
        import mlperf_loadgen as lg

        self.lg = lg
        self.prompts = prompts
        self.tokenizer = tokenizer
        self.generation = generation
        self.stream_retries, self.max_retries, self.timeout_s = stream_retries, max_retries, timeout_s
        self.request_deadline_s = float(request_deadline_s or self.request_deadline_s)
        self._local = threading.local()  # the deadline of the sample this worker thread is answering
        self.np_dtype = np.dtype(generation.output_dtype)
        # a token id at or past it is no token of the model (no tokenizer: a SUT only asked for the served model)
        self.vocabulary = len(tokenizer) if tokenizer is not None else MAX_TOKEN_ID + 1
        # chunks of one stream (one token each, with room for empty ones), and the length of an answer whose text
        # was tokenized again here (BPE merges at the pieces' edges may come out longer than generated)
        self.most_pieces = 2 * generation.max_new_tokens + 16
        self._key = api_key(api_key_env)
        self.client = make_client(endpoint, self._key, timeout_s, 0, self._guard)  # the retries are _generate's
        self.where = shown_url(str(self.client.base_url).rstrip("/"))
        self.model = self._served_model(served_model)
        self._queue: queue.Queue = queue.Queue()
        self._error: str | None = None
        self._error_lock = threading.Lock()
        self._workers = [
            threading.Thread(target=self._work, name=f"subtool-openai-{i}", daemon=True)
            for i in range(max(1, int(concurrency)))
        ]
        for w in self._workers:
            w.start()
        self.handle = loadgen_watch.construct_sut(lg, self.issue_queries, self.flush_queries)

    # set-up ----------------------------------------------------------------------------------------------
    def _served_model(self, wanted: str | None) -> str:
        """The model to ask for: --served-model if the server lists it, else the one model it lists."""
        return served_model(self.client, wanted, self.models_timeout_s, self._describe)

    def _guard(self, response) -> None:
        """The client's response hook: the body is read through a _Guarded stream, which ends it at the deadline
        or the size limit (the SDK's event decoder keeps an unfinished line or event whole in memory)."""
        limit = self.base_response_bytes + self.bytes_per_token * self.generation.max_new_tokens
        deadline = getattr(self._local, "deadline", None) or time.monotonic() + self.request_deadline_s
        response.stream = _guarded(response.stream, limit, deadline, self.request_deadline_s)

    # LoadGen callbacks -----------------------------------------------------------------------------------
    def issue_queries(self, query_samples) -> None:
        for qs in query_samples:
            self._queue.put((qs.id, qs.index))

    def flush_queries(self) -> None:
        pass

    # the workers -----------------------------------------------------------------------------------------
    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            qid, index = item
            if self._error is not None:
                self._complete(qid, [], 0)
                continue
            try:
                answer = self._generate(qid, index)
                ids = self._checked(answer.token_ids(self.tokenizer), from_server=bool(answer.ids))
                self._refuse_short(answer, ids)
                self._refuse_disagreement(answer, ids)
                self._complete(qid, ids, answer.count(len(ids), self.generation.max_new_tokens))
            except Exception as exc:  # noqa: BLE001 - any failure must still answer LoadGen, then stop the run
                with self._error_lock:
                    if self._error is None:
                        self._error = f"sample {index}: {self._describe(exc)}"
                self._complete(qid, [], 0)

    def _checked(self, ids: list[int], *, from_server: bool) -> list[int]:
        """The answer as LoadGen will log it: not empty, no longer than asked, every id a token of the model (a
        server that sends more, or ids past the vocabulary, would make a tokens/s figure of tokens nobody generated;
        empty answers made gptj, whose LoadGen settings count no tokens, VALID at any rate the server liked). Text
        tokenized again here may come out a little longer than what the server generated (BPE merges differ at
        the pieces' edges): it gets the same room as the stream's chunks."""
        most = self.generation.max_new_tokens if from_server else self.most_pieces
        if not ids:  # a model asked for at least one token gives one (EOS, if nothing else)
            raise EndpointError("the answer has no token")
        if len(ids) > most:
            raise EndpointError(f"the answer has {len(ids)} tokens, over the {self.generation.max_new_tokens} asked")
        bad = next((i for i in ids if not 0 <= i < self.vocabulary), None)
        if bad is not None:
            raise EndpointError(f"token id {bad} is past the model's {self.vocabulary}-token vocabulary")
        return ids

    def _refuse_short(self, answer: _Answer, ids: list[int]) -> None:
        """An answer shorter than the benchmark's least length (gptj: 30 tokens, sent as min_tokens) shows that the
        server ignored min_tokens: the reference model could not have stopped there, so neither accuracy nor
        tokens/s would be the benchmark's. Counted are the ids the server sent, else its usage count where plausible
        (text tokenized again here may be shorter than what was generated: it is no evidence)."""
        least, usage = self.generation.min_new_tokens, answer.usage_tokens
        plausible = usage if usage is not None and 0 < usage <= self.generation.max_new_tokens else None
        generated = len(ids) if answer.ids else plausible
        if generated is not None and generated < least:
            raise EndpointError(
                f"the answer has {generated} tokens (finish_reason {answer.finish_reason}), under the min_tokens "
                f"{least} the benchmark asks for: the server does not honour min_tokens"
            )

    def _refuse_disagreement(self, answer: _Answer, ids: list[int]) -> None:
        """Token ids the server sent must read as the text it sent: the accuracy log holds the ids, so ids that say
        something else (a server on another tokenizer or model than --model-path's, a proxy that rewrote the text,
        ids off by some offset) would be scored as an answer nobody saw. One decode a sample; spaces are not compared
        (servers tidy them differently), nor a character the answer's last token cut in two."""
        text = "".join(answer.pieces)
        if self.tokenizer is None or not answer.ids or not text.strip():
            return
        decoded = self.tokenizer.decode(ids, skip_special_tokens=True)
        if _comparable(decoded) != _comparable(text):
            raise EndpointError(
                f"the token ids the server sent read {_short(decoded, 60)!r}, but its text is {_short(text, 60)!r}: "
                "does the server use --model-path's tokenizer?"
            )

    def _request(self, index: int, deadline: float):
        g = self.generation
        extra: dict = {"return_tokens_as_token_ids": True}  # vLLM's: token ids in the stream, no re-tokenizing
        if g.min_new_tokens > 1:
            extra["min_tokens"] = g.min_new_tokens
        if g.num_beams > 1:
            extra.update(use_beam_search=True, best_of=g.num_beams)
        return self.client.completions.create(
            model=self.model,
            prompt=[int(t) for t in self.prompts[index]],
            max_tokens=g.max_new_tokens,
            temperature=0.0,
            logprobs=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=extra,
            timeout=max(0.01, min(self.timeout_s, deadline - time.monotonic())),
        )

    def _generate(self, qid: int, index: int) -> _Answer:
        """The sample's answer, asked for again after a failure worth another try while its deadline allows."""
        import openai

        deadline = self._local.deadline = time.monotonic() + self.request_deadline_s
        first_sent = False  # a request sent again must not report its first token twice
        tries = {StreamDropped: 0, openai.APIError: 0}
        while True:
            answer = _Answer()
            try:
                self._read(self._request(index, deadline), answer, qid, first_sent)
                return answer
            except (StreamDropped, openai.APIError) as exc:
                first_sent = first_sent or answer.first_sent
                kind = StreamDropped if isinstance(exc, StreamDropped) else openai.APIError
                tries[kind] += 1
                pause = pause_before_retry(
                    exc, tries[kind], self.stream_retries if kind is StreamDropped else self.max_retries
                )
                if pause is None and time.monotonic() < deadline:
                    raise
                if pause is None or time.monotonic() + pause >= deadline:
                    sent = sum(tries.values())
                    raise EndpointError(
                        f"no complete answer within {self.request_deadline_s:g} s ({sent} request"
                        f"{'s' if sent > 1 else ''}; the last: {self._describe(exc)})"
                    ) from None
                time.sleep(pause)

    def _read(self, stream, answer: _Answer, qid: int, first_sent: bool) -> None:
        """One stream into `answer`; the first token goes to LoadGen as it arrives."""
        import openai

        answer.first_sent = first_sent
        chunks = 0
        try:
            with stream:
                for chunk in stream:
                    chunks += 1
                    answer.add(chunk)
                    if not answer.first_sent and (first := answer.first_token(self.tokenizer)) is not None:
                        self._first_token(qid, first)
                        answer.first_sent = True
                    self._refuse_endless(answer)
        except openai.APIConnectionError as exc:  # timeouts included
            raise StreamDropped(f"the stream broke: {self._describe(exc)}") from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise EndpointError(f"the stream is not OpenAI's completions format ({exc})") from None
        if answer.finish_reason is None:
            _refuse_no_stream(stream, chunks)
            raise StreamDropped("the stream ended before the answer did (no finish_reason)")

    def _refuse_endless(self, answer: _Answer) -> None:
        if answer.finish_reason is not None:
            return
        if len(answer.pieces) > self.most_pieces or len(answer.ids or ()) > self.generation.max_new_tokens:
            raise EndpointError(
                f"the stream goes on past the {self.generation.max_new_tokens} tokens asked without finishing"
            )

    # responses -------------------------------------------------------------------------------------------
    def _first_token(self, qid: int, token: int) -> None:
        if not self.generation.token_latencies:
            return
        arr = np.array([token], dtype=self.np_dtype)
        loadgen_watch.first_token(self.lg, [self.lg.QuerySampleResponse(qid, arr.ctypes.data, arr.nbytes)])

    def _complete(self, qid: int, tokens: list[int], n_tokens: int) -> None:
        arr = np.asarray(tokens, dtype=self.np_dtype)
        loadgen_watch.complete(self.lg, [self.lg.QuerySampleResponse(qid, arr.ctypes.data, arr.nbytes, n_tokens)])

    def _describe(self, exc: BaseException) -> str:
        """One line for a failure, with the API key cut out wherever a server echoed it."""
        return _describe_hiding(exc, self._key)

    def stop(self) -> None:
        for _ in self._workers:
            self._queue.put(None)
        for w in self._workers:
            w.join()
        self.lg.DestroySUT(self.handle)
        self.client.close()
        if self._error is not None:
            raise SubtoolError(
                f"the endpoint {self.where} failed during the run: {self._error}",
                rule="run.endpoint_failed",
                hint="check the server's log; the run directory was not changed",
                exit_code=EXIT_REMOTE,
            )


def _refuse_no_stream(stream, chunks: int) -> None:
    """A 200 answer that held no event and is no event stream (an HTML login page, a proxy's notice, a server that
    ignored stream=true and sent JSON) is not a dropped stream to send again: it says what came instead."""
    kind = str(getattr(getattr(stream, "response", None), "headers", {}).get("content-type") or "no content type")
    if chunks == 0 and not kind.lower().startswith("text/event-stream"):
        raise EndpointError(f"the server answered {_short(kind, 60)}, not an event stream of completions")


def _guarded(stream, limit: int, deadline: float, seconds: float):
    """`stream` (the HTTP client's byte stream of one response) ending in an EndpointError once it has sent more
    than `limit` bytes, or is still sending at `deadline` (`seconds` after its sample was asked for). Its class
    derives from the stream's own base (the SyncByteStream of the HTTP library the SDK uses), which the client
    checks the stream against."""
    base = next((c for c in type(stream).__mro__ if c.__name__ == "SyncByteStream"), None)
    return stream if base is None else _guarded_class(base)(stream, limit, deadline, seconds)


@functools.lru_cache(maxsize=4)
def _guarded_class(base: type) -> type:
    class Guarded(base):
        def __init__(self, inner, limit: int, deadline: float, seconds: float):
            self.inner, self.limit, self.deadline, self.seconds = inner, limit, deadline, seconds

        def __iter__(self):
            seen = 0
            for part in self.inner:
                seen += len(part)
                if seen > self.limit:
                    raise EndpointError(f"the response goes on past {self.limit / 2**20:.0f} MiB")
                if time.monotonic() > self.deadline:
                    raise EndpointError(f"the response was still coming after {self.seconds:.0f} s")
                yield part

        def close(self) -> None:
            self.inner.close()

    return Guarded


@dataclass
class _Answer:
    """What one stream said: token ids (None once a chunk came without them), text pieces, finish, usage."""

    ids: list[int] | None = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage_tokens: int | None = None
    first_sent: bool = False

    def add(self, chunk) -> None:
        usage = getattr(chunk, "usage", None)
        if usage is not None and type(usage.completion_tokens) is int:
            self.usage_tokens = usage.completion_tokens
        for choice in chunk.choices or []:
            text = choice.text or ""
            if not isinstance(text, str):
                raise TypeError(f"a choice's text is {type(text).__name__}")
            chunk_ids = _token_ids(choice)
            if chunk_ids is None:
                self.ids = None
            elif self.ids is not None:
                self.ids.extend(chunk_ids)
            self.pieces.append(text)
            self.finish_reason = choice.finish_reason or self.finish_reason

    def first_token(self, tokenizer) -> int | None:
        if self.ids:
            return self.ids[0]
        text = "".join(self.pieces)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        return ids[0] if ids else None

    def token_ids(self, tokenizer) -> list[int]:
        text = "".join(self.pieces)  # BPE pieces: nothing goes between them
        if self.ids is not None and (self.ids or not text):
            return self.ids
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def count(self, n_ids: int, max_tokens: int) -> int:
        """The server's own count of generated tokens where it sent a plausible one, but never more than the
        answer LoadGen logs holds (a server claiming max_tokens for a one-token answer made tokens/s 16 times
        the truth), else the ids'."""
        if self.usage_tokens is not None and 0 < self.usage_tokens <= max_tokens:
            return min(self.usage_tokens, n_ids)
        return n_ids


def served_model(client, wanted: str | None, timeout_s: float, describe) -> str:
    """The model to ask `client`'s server for: `wanted` if the server lists it, else the one model it lists; each
    failure one line (`describe(exc)`: the failure's words, with the key cut out)."""
    import openai

    where = shown_url(f"{client.base_url}models")
    try:
        # a few quick tries only: nothing listening is most often a wrong --endpoint, not a busy server; and a
        # server that takes the connection but answers nothing (hung) is one, not a slow generation
        listed = client.with_options(max_retries=2, timeout=timeout_s).models.list()
        served = [m.id for m in listed if isinstance(getattr(m, "id", None), str) and m.id]
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise SubtoolError(
            f"the endpoint refused the request (HTTP {exc.status_code})",
            rule="run.endpoint_auth",
            hint="export OPENAI_API_KEY, or pass --api-key-env VAR naming the variable that holds the key",
            exit_code=EXIT_REMOTE,
        ) from None
    except openai.APIConnectionError as exc:
        raise SubtoolError(
            f"cannot reach the endpoint {where}: {describe(exc)}",
            rule="run.endpoint_unreachable",
            hint="start the server (e.g. vllm serve MODEL) or fix --endpoint",
            exit_code=EXIT_REMOTE,
        ) from None
    except (openai.APIError, EndpointError, ValueError, TypeError, AttributeError) as exc:
        raise SubtoolError(
            f"{where} did not answer a model list: {describe(exc)}",
            rule="run.endpoint",
            hint="--endpoint must be the base URL of an OpenAI-compatible server",
            exit_code=EXIT_REMOTE,
        ) from None
    return _pick_model(served, wanted, where)


def check_endpoint(endpoint: str, api_key_env: str | None, wanted: str | None) -> str:
    """The checks the SUT makes when it starts (the key is there, the server answers its model list within
    OpenAICompletionsSUT.models_timeout_s and serves the model), made before the data set loads: a server that is
    not running, or a wrong key or model, is said in a second rather than after the prompts are read and
    tokenized. The model it would ask for; the SUT asks the server again when it starts."""
    key = api_key(api_key_env)
    seconds = OpenAICompletionsSUT.models_timeout_s

    def guard(response) -> None:  # a model list is small: one MiB, and no longer than the timeout
        limit = OpenAICompletionsSUT.base_response_bytes
        response.stream = _guarded(response.stream, limit, time.monotonic() + seconds, seconds)

    client = make_client(endpoint, key, seconds, 0, guard)
    try:
        return served_model(client, wanted, seconds, lambda exc: _describe_hiding(exc, key))
    finally:
        client.close()


def _pick_model(served: list[str], wanted: str | None, where: str) -> str:
    if wanted is not None and wanted in served:
        return wanted
    if wanted is None and len(served) == 1:
        return served[0]
    listed = ", ".join(served[:10]) or "none"
    raise SubtoolError(
        f"{where} serves {listed}" + (f", not {wanted!r}" if wanted is not None else ": name one"),
        rule="run.endpoint_model",
        hint="pass --served-model with one of the names the server lists",
    )


def _token_ids(choice) -> list[int] | None:
    """Token ids from a chunk's logprobs when the server sends them as 'token_id:N' (vLLM), else None."""
    logprobs = getattr(choice, "logprobs", None)
    tokens = getattr(logprobs, "tokens", None) if logprobs is not None else None
    if tokens is None:
        return [] if not choice.text else None
    out = []
    for t in tokens:
        if not (isinstance(t, str) and t.startswith("token_id:") and t[9:].isdecimal() and t[9:].isascii()):
            return None
        if (token := int(t[9:])) > MAX_TOKEN_ID:
            raise ValueError(f"token id {t[9:][:20]} is not a vocabulary index")
        out.append(token)
    return out


def _describe_hiding(exc: BaseException, key: str) -> str:
    """_describe's line with the API key cut out wherever a server echoed it."""
    text = _describe(exc)
    return text.replace(key, "***") if key and key != NO_KEY else text


def _describe(exc: BaseException) -> str:
    import openai

    if isinstance(exc, EndpointError):
        return _short(str(exc))
    if isinstance(exc, openai.APIStatusError) and 300 <= exc.status_code < 400:
        return f"HTTP {exc.status_code}: the server redirects elsewhere; give --endpoint the address that answers"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {_short(exc.message)}"
    if isinstance(exc, openai.APITimeoutError):
        return "timed out (the server sent nothing within the request timeout)"
    reason, cause = str(exc), exc
    for _ in range(8):  # the socket's own words, innermost
        if (cause := cause.__cause__ or cause.__context__) is None:
            break
        if isinstance(cause, ConnectionRefusedError) or "connection refused" in str(cause).lower():
            return "connection refused (is the server running?)"
        reason = str(cause) or reason
    return _short(reason or type(exc).__name__)


def _comparable(text: str) -> str:
    """`text` without white space, or a character cut in two at its end (decoded as U+FFFD, held back by servers)."""
    return "".join(text.split()).rstrip("\ufffd")


def _short(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
