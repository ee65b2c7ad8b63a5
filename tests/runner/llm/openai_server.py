"""A small OpenAI-compatible completions server for the tests: it serves a transformers checkpoint (the tiny
demo models) on 127.0.0.1 with the wire format of vLLM's /v1/models and /v1/completions, streaming included.

Greedy decoding, one request at a time (a lock), token ids in the stream as vLLM sends them with
`return_tokens_as_token_ids` (logprobs.tokens = ["token_id:N"]), or text only (`token_ids=False`). Streamed text
is incrementally detokenized, as real servers do: each chunk carries what the decoded answer grew by, so with a
BPE tokenizer (`bpe_checkpoint` in test_llm_network.py) the pieces join with "" and nothing else.
`generated` keeps each prompt's token ids, for the tests to compare with. It can refuse
the first requests with 503 (retry tests) and require a bearer key.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class TinyCompletionsServer:
    def __init__(
        self,
        model_path: Path,
        *,
        api_key: str | None = None,
        fail_first: int = 0,
        token_ids: bool = True,
        name: str = "tiny-demo",
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(1)
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(str(model_path)).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        self.eos = self.tokenizer.eos_token_id
        self.api_key = api_key
        self.fail_first = fail_first
        self.token_ids = token_ids
        self.name = name
        self.requests = 0
        self.generated: dict[tuple[int, ...], list[int]] = {}  # prompt ids → the answer's token ids
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def generate(self, prompt_ids: list[int], max_tokens: int, min_tokens: int):
        """Greedy tokens, one at a time (a generator), stopping after EOS."""
        torch = self.torch
        from transformers import DynamicCache

        with self.lock, torch.inference_mode():
            cache = DynamicCache()
            ids = torch.tensor([prompt_ids])
            out = self.model(input_ids=ids, cache=cache, use_cache=True)
            answer = self.generated[tuple(prompt_ids)] = []
            for step in range(max_tokens):
                logits = out.logits[0, -1].float()
                if step < min_tokens:
                    logits[self.eos] = float("-inf")
                token = int(logits.argmax())
                answer.append(token)
                yield token
                if token == self.eos:
                    return
                out = self.model(input_ids=torch.tensor([[token]]), cache=cache, use_cache=True)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, status: int, obj, headers: dict | None = None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if server.api_key is None:
                    return True
                if self.headers.get("Authorization") == f"Bearer {server.api_key}":
                    return True
                self._json(401, {"error": {"message": "invalid api key"}})
                return False

            def do_GET(self):
                if not self._authorised():
                    return
                if self.path.rstrip("/") == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": server.name, "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self._authorised():
                    return
                if self.path != "/v1/completions":
                    self._json(404, {"error": {"message": "not found"}})
                    return
                with server.lock:
                    server.requests += 1
                    refuse = server.requests <= server.fail_first
                if refuse:
                    self._json(503, {"error": {"message": "overloaded"}}, {"Retry-After": "0"})
                    return
                if body.get("model") != server.name:
                    self._json(404, {"error": {"message": f"model {body.get('model')!r} not served"}})
                    return
                prompt = body["prompt"]
                ids = prompt if isinstance(prompt, list) else server.tokenizer(prompt)["input_ids"]
                tokens = server.generate(ids, int(body.get("max_tokens", 16)), int(body.get("min_tokens", 0)))
                with_ids = (
                    server.token_ids and body.get("return_tokens_as_token_ids") and body.get("logprobs") is not None
                )
                if not body.get("stream"):
                    out = list(tokens)
                    self._json(
                        200,
                        {
                            "object": "text_completion",
                            "model": server.name,
                            "choices": [
                                {
                                    "index": 0,
                                    "text": server.tokenizer.decode(out, skip_special_tokens=True),
                                    "finish_reason": "stop" if out and out[-1] == server.eos else "length",
                                }
                            ],
                        },
                    )
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                done: list[int] = []
                sent = ""
                for token in tokens:
                    # incremental detokenization, as vLLM streams: each chunk's text is what the answer's text
                    # grew by (a BPE piece such as "ing" or " the": no separator is added between pieces)
                    done.append(token)
                    full = server.tokenizer.decode(done, skip_special_tokens=True)
                    text = full[len(sent) :] if full.startswith(sent) else ""
                    sent = full if full.startswith(sent) else sent
                    choice = {"index": 0, "text": text, "finish_reason": None}
                    if with_ids:
                        choice["logprobs"] = {"tokens": [f"token_id:{token}"], "token_logprobs": [0.0]}
                    self._chunk(f"data: {json.dumps({'choices': [choice]})}\n\n")
                self._chunk("data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")

            def _chunk(self, text: str):
                data = text.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        return Handler
