"""A hostile OpenAI-compatible server for the tests, on 127.0.0.1: the standard library's HTTP server writing the
bytes of its answers itself, so it can break the server-sent-event format where a real framework would not let it.

It lists one model ("hostile") and answers every /v1/completions request with `behaviour`:

- "ok": `max_tokens` one-token chunks with their ids (vLLM's "token_id:N"), a finish_reason, usage, [DONE];
- "pings": one token, then an SSE comment every 0.1 s for ever (a stuck server whose keep-alive task still runs);
- "dribble": one token, then an event it never ends, one byte every 0.1 s;
- "huge_first": the first request's answer carries `huge_bytes` of text in one chunk, the others are "ok";
- "empty": a finish_reason at once, no token at all;
- "html": a 200 answer that is an HTML page (a login page or a proxy's notice in front of the server);
- "hang": the request is read and never answered, not even its headers (a hung server that still accepts);
- "stall": one token, then silence with the connection kept open (a server hung mid-answer);
- "short": three tokens, then finish_reason "stop" and a usage count of 3 (a server that ignores min_tokens).

The tokens' text is "" (this server has no tokenizer: any text it wrote would not be what its ids read), save for
"huge_first"'s and the first token of the behaviours that hold the stream. A request "hang" or "stall" holds ends
when the server is closed.

`requests` counts the completions asked for, `written` the bytes the streams sent.
"""

from __future__ import annotations

import http.server
import json
import threading
import time

BEHAVIOURS = ("ok", "pings", "dribble", "huge_first", "empty", "html", "hang", "stall", "short")


def event(data: dict | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def token_chunk(text: str, token: int | None, finish: str | None = None) -> bytes:
    choice: dict = {"index": 0, "text": text, "finish_reason": finish}
    if token is not None:
        choice["logprobs"] = {"tokens": [f"token_id:{token}"], "token_logprobs": [0.0]}
    return event({"object": "text_completion", "choices": [choice]})


class HostileServer:
    def __init__(self, behaviour: str = "ok", huge_bytes: int = 64 << 20):
        assert behaviour in BEHAVIOURS, behaviour
        self.behaviour, self.huge_bytes = behaviour, huge_bytes
        self.requests = self.written = 0
        self.authorization: list[str | None] = []  # the Authorization header of every request
        self.lock = threading.Lock()
        self.closed = threading.Event()  # ends the requests "hang" and "stall" hold
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_port}"

    def __enter__(self) -> HostileServer:
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.closed.set()
        self._http.shutdown()
        self._http.server_close()

    def answer(self, write, max_tokens: int, nth: int) -> None:
        """The body of the nth completions request's stream, through `write` (which counts the bytes)."""
        if self.behaviour == "html":
            write(b"<!doctype html><html><body><form>Sign in</form></body></html>")
            return
        if self.behaviour == "empty":
            write(token_chunk("", None, "stop") + event("[DONE]"))
            return
        if self.behaviour == "stall":
            write(token_chunk("w", 5))
            self.closed.wait(120)
            return
        if self.behaviour in ("pings", "dribble"):
            write(token_chunk("w", 5) + (b"data: {" if self.behaviour == "dribble" else b""))
            while True:  # until the client hangs up (the write fails)
                write(b" " if self.behaviour == "dribble" else b": ping\n\n")
                time.sleep(0.1)
        count = min(3, max_tokens) if self.behaviour == "short" else max_tokens
        first = "x" * self.huge_bytes if self.behaviour == "huge_first" and nth == 1 else ""
        body = b"".join(token_chunk(first if i == 0 else "", 5 + i) for i in range(count))
        usage = {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": count}}
        finish = "stop" if self.behaviour == "short" else "length"
        write(body + token_chunk("", None, finish) + event(usage) + event("[DONE]"))


def _handler(server: HostileServer):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the stream ends when the connection closes

        def log_message(self, *args):
            pass

        def _head(self, content_type: str, length: int | None = None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()

        def do_GET(self):  # noqa: N802
            server.authorization.append(self.headers.get("authorization"))
            body = json.dumps({"object": "list", "data": [{"id": "hostile", "object": "model"}]}).encode()
            self._head("application/json", len(body))
            self.wfile.write(body)

        def do_POST(self):  # noqa: N802
            server.authorization.append(self.headers.get("authorization"))
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            with server.lock:
                server.requests += 1
                nth = server.requests
            if server.behaviour == "hang":
                server.closed.wait(120)
                return
            self._head("text/html; charset=utf-8" if server.behaviour == "html" else "text/event-stream")
            try:
                server.answer(self._write, int(body.get("max_tokens", 16)), nth)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _write(self, data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()
            with server.lock:
                server.written += len(data)

    return Handler
