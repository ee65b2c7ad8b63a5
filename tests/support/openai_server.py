"""A real OpenAI-compatible completions server for the tests, on 127.0.0.1: Starlette routes, sse-starlette's
event stream and uvicorn, serving a transformers checkpoint (the tiny demo models) with the wire format of vLLM's
/v1/models and /v1/completions (streaming, `stream_options.include_usage`, `return_tokens_as_token_ids`).

Greedy decoding, token by token as the chunks go out. Streamed text is incrementally detokenized as vLLM does it:
each chunk carries what the decoded answer grew by, so with a BPE tokenizer the pieces are "ing", " the", or ""
while a multi-byte character is still incomplete, and they join with "" and nothing else. `generated` keeps each
prompt's answer (token ids) for the tests to compare with.

Knobs for what real servers do to a client: refuse the first `fail_first` requests with `fail_status` (and a
Retry-After of `retry_after` seconds), wait `first_token_delay_s` before the first token and `token_delay_s`
before each next one, break the first
`drop_first` streams after `drop_after` tokens (`drop="cut"`: the connection goes down mid-answer; `"end"`: the
stream ends cleanly without a finish_reason), require a bearer key, list several models.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path


class CompletionsServer:
    def __init__(self, model_path: Path, **knobs):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(1)
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(str(model_path)).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        self.eos = self.tokenizer.eos_token_id
        self.lock = threading.Lock()
        # (prompt ids, max_tokens, min_tokens) → the greedy answer, kept across configure(): the tests of a module
        # ask the same prompts again and again, and the model's forward was most of the server's CPU time
        self._decoded: dict[tuple, list[int]] = {}
        self.configure(**knobs)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._uvicorn = None
        self._thread: threading.Thread | None = None

    def configure(
        self,
        *,
        api_key: str | None = None,
        token_ids: bool = True,
        models: tuple[str, ...] = ("tiny-demo",),
        fail_first: int = 0,
        fail_status: int = 503,
        retry_after: float | None = None,
        first_token_delay_s: float = 0.0,
        token_delay_s: float = 0.0,
        drop_first: int = 0,
        drop_after: int = 2,
        drop: str | tuple[str, ...] = "cut",
        garbage: str | None = None,
        models_body: str | None = None,
        extra_tokens: int = 0,
        endless: bool = False,
        usage_claim: int | None = None,
        token_id_offset: int = 0,
    ) -> CompletionsServer:
        """Set every knob (the defaults: a well-behaved server) and start counting afresh, for a server that
        several tests share."""
        with self.lock:
            self.api_key = api_key
            self.token_ids = token_ids
            self.models = models
            self.fail_first, self.fail_status, self.retry_after = fail_first, fail_status, retry_after
            self.first_token_delay_s, self.token_delay_s = first_token_delay_s, token_delay_s
            self.drop_first, self.drop_after = drop_first, drop_after
            self.drop = (drop,) if isinstance(drop, str) else drop  # the n-th broken stream breaks the n-th way
            self.garbage = garbage  # sent as a stream's first event's data, when set
            self.models_body = models_body  # /v1/models answers this (200, text/html) instead, when set
            # lies: tokens past max_tokens, a stream that never finishes, a usage count, ids past the vocabulary
            self.extra_tokens, self.endless = extra_tokens, endless
            self.usage_claim, self.token_id_offset = usage_claim, token_id_offset
            self.completions = 0  # /v1/completions requests seen
            self.streams = 0  # streams started
            self.held_back = 0  # chunks whose text waited for the rest of a multi-byte character
            self.generated: dict[tuple[int, ...], list[int]] = {}  # prompt ids → the answer's token ids
            self.pieces: dict[tuple[int, ...], list[str]] = {}  # prompt ids → the text pieces streamed
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self):
        import uvicorn

        config = uvicorn.Config(
            self.app(), log_level="critical", access_log=False, lifespan="off", timeout_graceful_shutdown=1
        )
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._uvicorn.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self._uvicorn.should_exit = True
        self._thread.join(10)
        self._sock.close()

    # the model ---------------------------------------------------------------------------------------------
    def generate(self, prompt_ids: list[int], max_tokens: int, min_tokens: int):
        """Greedy tokens, one at a time (a generator), stopping after EOS. torch's inference mode is held for one
        step at a time, never across a yield: a stream the client drops leaves this generator suspended, and a
        mode held open in it was restored, when the garbage collector closed it, in whichever thread that ran —
        the main one, whose grad mode it turned off (the proxy training tests then failed in that worker)."""
        torch = self.torch
        from transformers import DynamicCache

        cache = DynamicCache()

        def step(ids: list[list[int]], no_eos: bool) -> int:
            with torch.inference_mode():
                logits = self.model(input_ids=torch.tensor(ids), cache=cache, use_cache=True).logits[0, -1].float()
                if no_eos:
                    logits[self.eos] = float("-inf")
                return int(logits.argmax())

        answer = self.generated[tuple(prompt_ids)] = []
        key = (tuple(prompt_ids), max_tokens, min_tokens)
        if key in self._decoded:  # greedy decoding gives the same tokens every time: streamed again, not recomputed
            for token in self._decoded[key]:
                answer.append(token)
                yield token
            return
        token = step([prompt_ids], min_tokens > 0)
        for n in range(max_tokens):
            answer.append(token)
            yield token
            if token == self.eos or n + 1 == max_tokens:
                self._decoded[key] = list(answer)  # only an answer decoded to its end
                return
            token = step([[token]], n + 1 < min_tokens)

    # HTTP --------------------------------------------------------------------------------------------------
    def app(self):
        from sse_starlette import EventSourceResponse
        from starlette.applications import Starlette
        from starlette.responses import HTMLResponse, JSONResponse
        from starlette.routing import Route

        def refused(request):
            if self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}":
                return None
            return JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)

        async def models(request):
            if self.models_body is not None:
                return HTMLResponse(self.models_body)
            data = [{"id": name, "object": "model"} for name in self.models]
            return refused(request) or JSONResponse({"object": "list", "data": data})

        async def completions(request):
            body = await request.json()
            if (no := refused(request)) is not None:
                return no
            with self.lock:
                self.completions += 1
                fail = self.completions <= self.fail_first
            if fail:
                headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
                return JSONResponse({"error": {"message": "overloaded"}}, self.fail_status, headers=headers)
            if body.get("model") not in self.models:
                return JSONResponse({"error": {"message": f"model {body.get('model')!r} not served"}}, 404)
            if not body.get("stream"):
                return JSONResponse({"error": {"message": "this test server only streams"}}, 400)
            with self.lock:
                self.streams += 1
                drop = self.drop[(self.streams - 1) % len(self.drop)] if self.streams <= self.drop_first else None
            return EventSourceResponse(self.events(body, drop), ping=0)

        return Starlette(routes=[Route("/v1/models", models), Route("/v1/completions", completions, methods=["POST"])])

    def events(self, body: dict, drop: str | None):
        """The stream's events (run in Starlette's thread pool: the model works between them)."""
        prompt = body["prompt"]
        ids = prompt if isinstance(prompt, list) else self.tokenizer(prompt)["input_ids"]
        with_ids = self.token_ids and body.get("return_tokens_as_token_ids") and body.get("logprobs") is not None
        done: list[int] = []
        sent = ""
        pieces = self.pieces[tuple(ids)] = []
        time.sleep(self.first_token_delay_s)
        if self.garbage is not None:
            yield {"data": self.garbage}
        for token in self.generate(ids, int(body.get("max_tokens", 16)), int(body.get("min_tokens", 0))):
            if done:
                time.sleep(self.token_delay_s)
            if drop and len(done) == self.drop_after:
                if drop == "cut":
                    raise ConnectionAbortedError("the test server drops this stream")
                return
            done.append(token)
            full = self.tokenizer.decode(done, skip_special_tokens=True)
            text = ""
            if full.endswith("\ufffd"):  # a multi-byte character cut in two: its bytes go out when complete
                self.held_back += 1
            elif full.startswith(sent):
                text, sent = full[len(sent) :], full  # what the answer's text grew by
            pieces.append(text)
            choice = {"index": 0, "text": text, "finish_reason": None}
            if with_ids:
                sent_id = token + self.token_id_offset
                choice["logprobs"] = {"tokens": [f"token_id:{sent_id}"], "token_logprobs": [0.0]}
            yield {"data": json.dumps({"object": "text_completion", "choices": [choice]})}
        yield from self._lies(done, with_ids)
        finish = "stop" if done and done[-1] == self.eos else "length"
        yield {"data": json.dumps({"choices": [{"index": 0, "text": "", "finish_reason": finish}]})}
        if (body.get("stream_options") or {}).get("include_usage"):
            claimed = len(done) if self.usage_claim is None else self.usage_claim
            usage = {"prompt_tokens": len(ids), "completion_tokens": claimed, "total_tokens": len(ids) + claimed}
            yield {"data": json.dumps({"choices": [], "usage": usage})}
        yield {"data": "[DONE]"}

    def _lies(self, done: list[int], with_ids: bool):
        """What a broken or lying server adds after the answer: more tokens than asked (`extra_tokens`), or
        tokens for ever (`endless`, until the client hangs up)."""
        count = 0
        while self.endless or count < self.extra_tokens:
            count += 1
            token = done[-1] if done else 0
            choice = {"index": 0, "text": "x", "finish_reason": None}
            if with_ids:
                choice["logprobs"] = {"tokens": [f"token_id:{token}"], "token_logprobs": [0.0]}
            if self.endless:
                time.sleep(0.01)
            yield {"data": json.dumps({"object": "text_completion", "choices": [choice]})}
