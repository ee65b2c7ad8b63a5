"""A network SUT: each LoadGen sample becomes one streaming request to an OpenAI-compatible `/v1/completions`
endpoint (vLLM, TensorRT-LLM, SGLang, …), with at most `concurrency` requests in flight.

The prompt goes out as token ids (the data set's own tokenization, no re-tokenizing drift). The answer streams
back as server-sent events; the first token is reported to LoadGen the moment it arrives (real TTFT). Token ids
are read from the stream when the server gives them (vLLM: `return_tokens_as_token_ids` with logprobs, entries
"token_id:N"); otherwise the streamed text is tokenized with the checkpoint's tokenizer. 429 and 5xx answers and
dropped connections are retried with exponential back-off (honouring Retry-After); the first request that still
fails stops the run with one clear error, and the remaining samples are answered empty so LoadGen can finish.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import random
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass

import numpy as np

from subtool.errors import SubtoolError

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class EndpointError(Exception):
    def __init__(self, message: str, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass
class Endpoint:
    scheme: str
    host: str
    port: int
    base_path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise SubtoolError(
                f"endpoint {url!r} is not an http(s) URL",
                rule="run.endpoint",
                hint="e.g. --endpoint http://127.0.0.1:8000",
            )
        path = parsed.path.rstrip("/")
        if path.endswith("/v1"):
            path = path[:-3]
        return cls(parsed.scheme, parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80), path)

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=timeout)

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.base_path}{path}"


def _api_key(env_name: str | None) -> str | None:
    if not env_name:
        return None
    value = os.environ.get(env_name)
    if not value:
        raise SubtoolError(
            f"--api-key-env names {env_name}, but that variable is not set",
            rule="run.api_key",
            hint=f"export {env_name}=... before the run (the key is never written to disk)",
        )
    return value


class OpenAICompletionsSUT:
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
        backoff_s: float = 0.5,
    ):
        import mlperf_loadgen as lg

        self.lg = lg
        self.endpoint = Endpoint.parse(endpoint)
        self.prompts = prompts
        self.tokenizer = tokenizer
        self.generation = generation
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.np_dtype = np.dtype(generation.output_dtype)
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        key = _api_key(api_key_env)
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self.model = served_model or self._served_model()
        self._queue: queue.Queue = queue.Queue()
        self._error: str | None = None
        self._error_lock = threading.Lock()
        self._workers = [
            threading.Thread(target=self._work, name=f"subtool-openai-{i}", daemon=True)
            for i in range(max(1, int(concurrency)))
        ]
        for w in self._workers:
            w.start()
        self.handle = lg.ConstructSUT(self.issue_queries, self.flush_queries)

    # set-up ----------------------------------------------------------------------------------------------
    def _served_model(self) -> str:
        """The first model the server lists; a clear error when nothing answers."""
        try:
            status, body = self._get("/v1/models", timeout=min(30.0, self.timeout_s))
        except (OSError, http.client.HTTPException) as exc:
            raise SubtoolError(
                f"cannot reach the endpoint {self.endpoint.url('/v1/models')}: {_reason(exc)}",
                rule="run.endpoint_unreachable",
                hint="start the server (e.g. vllm serve MODEL) or fix --endpoint",
            ) from None
        if status in (401, 403):
            raise SubtoolError(
                f"the endpoint refused the request (HTTP {status})",
                rule="run.endpoint_auth",
                hint="pass --api-key-env VAR with the variable that holds the API key",
            )
        if status != 200:
            raise SubtoolError(
                f"{self.endpoint.url('/v1/models')} answered HTTP {status}",
                rule="run.endpoint",
                hint="--endpoint must be the base URL of an OpenAI-compatible server",
            )
        try:
            return str(json.loads(body)["data"][0]["id"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise SubtoolError("the endpoint's /v1/models answer lists no model", rule="run.endpoint") from None

    def _get(self, path: str, timeout: float) -> tuple[int, bytes]:
        conn = self.endpoint.connect(timeout)
        try:
            conn.request("GET", self.endpoint.base_path + path, headers=self._headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    # LoadGen callbacks -----------------------------------------------------------------------------------
    def issue_queries(self, query_samples) -> None:
        for qs in query_samples:
            self._queue.put((qs.id, qs.index))

    def flush_queries(self) -> None:
        pass

    # the workers -----------------------------------------------------------------------------------------
    def _work(self) -> None:
        conn = None
        while True:
            item = self._queue.get()
            if item is None:
                if conn is not None:
                    conn.close()
                return
            qid, index = item
            if self._error is not None:
                self._complete(qid, [])
                continue
            try:
                tokens, conn = self._generate(qid, index, conn)
            except EndpointError as exc:
                with self._error_lock:
                    if self._error is None:
                        self._error = f"sample {index}: {exc}"
                tokens = []
            self._complete(qid, tokens)

    def _body(self, index: int) -> bytes:
        g = self.generation
        body = {
            "model": self.model,
            "prompt": [int(t) for t in self.prompts[index]],
            "max_tokens": g.max_new_tokens,
            "temperature": 0.0,
            "stream": True,
            "logprobs": 0,
            "return_tokens_as_token_ids": True,
        }
        if g.min_new_tokens > 1:
            body["min_tokens"] = g.min_new_tokens
        if g.num_beams > 1:
            body.update(use_beam_search=True, best_of=g.num_beams)
        return json.dumps(body).encode()

    def _generate(self, qid: int, index: int, conn):
        body = self._body(index)
        state = {"first_sent": False}  # a retried request must not report its first token twice
        for attempt in range(self.max_retries + 1):
            try:
                if conn is None:
                    conn = self.endpoint.connect(self.timeout_s)
                ids, text = self._stream(conn, body, qid, state)
                if ids is None:
                    ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
                return ids, conn
            except EndpointError as exc:
                conn = _close(conn)
                if not exc.retryable or attempt == self.max_retries:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else self.backoff_s * 2**attempt
                time.sleep(delay * (1 + 0.1 * random.random()))
            except (OSError, http.client.HTTPException) as exc:
                conn = _close(conn)
                if attempt == self.max_retries:
                    raise EndpointError(
                        f"{self.endpoint.url('/v1/completions')}: {_reason(exc)}", retryable=False
                    ) from None
                time.sleep(self.backoff_s * 2**attempt)
        raise EndpointError("retries exhausted", retryable=False)

    def _stream(self, conn, body: bytes, qid: int, state: dict):
        """One streaming request: (token ids or None, text). Reports the first token to LoadGen."""
        conn.request("POST", self.endpoint.base_path + "/v1/completions", body=body, headers=self._headers)
        resp = conn.getresponse()
        if resp.status != 200:
            detail = resp.read()[:300].decode("utf-8", "replace").strip()
            retry_after = resp.getheader("Retry-After")
            raise EndpointError(
                f"HTTP {resp.status} from /v1/completions: {detail}",
                retryable=resp.status in RETRY_STATUS,
                retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        ids: list[int] | None = []
        text_parts: list[str] = []
        while True:
            line = resp.readline()
            if not line:
                raise EndpointError("the stream ended without [DONE]", retryable=True)
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            try:
                choice = json.loads(payload)["choices"][0]
            except (ValueError, KeyError, IndexError, TypeError):
                continue  # usage-only or keep-alive chunks
            text = choice.get("text") or ""
            chunk_ids = _token_ids(choice)
            if chunk_ids is None:
                ids = None
            elif ids is not None:
                ids.extend(chunk_ids)
            text_parts.append(text)
            if not state["first_sent"] and (chunk_ids or text):
                first = chunk_ids[0] if chunk_ids else self._first_id(text)
                if first is not None:
                    self._first_token(qid, first)
                    state["first_sent"] = True
        text = "".join(text_parts)
        if ids is not None and not ids and text:
            ids = None
        return ids, text

    def _first_id(self, text: str) -> int | None:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[0] if ids else None

    # responses -------------------------------------------------------------------------------------------
    def _first_token(self, qid: int, token: int) -> None:
        if not self.generation.token_latencies:
            return
        arr = np.array([token], dtype=self.np_dtype)
        self.lg.FirstTokenComplete([self.lg.QuerySampleResponse(qid, arr.ctypes.data, arr.nbytes)])

    def _complete(self, qid: int, tokens: list[int]) -> None:
        arr = np.asarray(tokens, dtype=self.np_dtype)
        self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(qid, arr.ctypes.data, arr.nbytes, len(tokens))])

    def stop(self) -> None:
        for _ in self._workers:
            self._queue.put(None)
        for w in self._workers:
            w.join()
        self.lg.DestroySUT(self.handle)
        if self._error is not None:
            raise SubtoolError(
                f"the endpoint failed during the run: {self._error}",
                rule="run.endpoint_failed",
                hint="check the server's log; the run directory was not changed",
            )


def _token_ids(choice: dict) -> list[int] | None:
    """Token ids from a chunk's logprobs when the server sends them as 'token_id:N' (vLLM), else None."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return [] if not choice.get("text") else None
    tokens = logprobs.get("tokens") or []
    out = []
    for t in tokens:
        if isinstance(t, str) and t.startswith("token_id:"):
            try:
                out.append(int(t[9:]))
                continue
            except ValueError:
                pass
        return None
    return out


def _close(conn):
    if conn is not None:
        conn.close()
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    return str(exc) or type(exc).__name__
