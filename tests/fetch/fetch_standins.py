"""Servers on 127.0.0.1 that the fetch tests start: a plain file server (Range, dropped connections, servers that
ignore Range, 5xx, 404) and a Hugging Face Hub stand-in answering what huggingface_hub and fetch call
(`/api/models/<repo>/revision/<rev>?blobs=true` and `/<repo>/resolve/<rev>/<file>` with the Hub's headers).
The real download code runs against them; only the host differs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

HF_SECRET = "hf_standin_SECRET_token_4242"  # the only token the Hub stand-in accepts


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FileServer:
    files: dict[str, bytes] = field(default_factory=dict)
    ignore_range: set[str] = field(default_factory=set)
    drop: dict[str, list[int]] = field(default_factory=dict)  # path -> [cut after N bytes, times left]
    fail: dict[str, int] = field(default_factory=dict)  # path -> 503s left
    retry_after: dict[str, str] = field(default_factory=dict)  # path -> the Retry-After header of its 503s
    drip: dict[str, float] = field(default_factory=dict)  # path -> seconds between two bytes of the body
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # path -> headers of its answers, as given
    requests: list[tuple[str, str, dict]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def gets(self, path: str) -> list[dict]:
        return [h for m, p, h in self.requests if m == "GET" and p == path]


def _send_body(
    handler: BaseHTTPRequestHandler, data: bytes, headers: dict, ranged: bool, cut: int | None, drip: float = 0.0
) -> None:
    start = 0
    match = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range", "")) if ranged else None
    if match:
        start = int(match.group(1))
        if start >= len(data):
            handler.send_response(416)
            handler.send_header("Content-Range", f"bytes */{len(data)}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    else:
        handler.send_response(200)
    body = data[start:]
    for k, v in headers.items():
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Accept-Ranges", "bytes")
    handler.end_headers()
    if handler.command == "HEAD":
        return
    if cut is not None:  # the connection drops mid-body: what a flaky network or a killed proxy does
        handler.wfile.write(body[:cut])
        handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True
        return
    if drip:  # alive, but a byte at a time: what a throttled or hostile server does
        with contextlib.suppress(OSError):
            for i in range(len(body)):
                handler.wfile.write(body[i : i + 1])
                handler.wfile.flush()
                time.sleep(drip)
        handler.close_connection = True
        return
    handler.wfile.write(body)


def _plain_handler(server: FileServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            path = urlsplit(self.path).path
            server.requests.append((self.command, path, dict(self.headers)))
            if server.fail.get(path, 0) > 0:
                server.fail[path] -= 1
                self.send_response(503)
                if path in server.retry_after:
                    self.send_header("Retry-After", server.retry_after[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if path not in server.files:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            cut = None
            if server.drop.get(path, [0, 0])[1] > 0:
                server.drop[path][1] -= 1
                cut = server.drop[path][0]
            ranged = path not in server.ignore_range
            extra = server.headers.get(path, {})
            _send_body(self, server.files[path], extra, ranged, cut, server.drip.get(path, 0.0))

        do_HEAD = do_GET

    return Handler


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client that hangs up mid-body (fetch refusing a body that is too long) is expected, not a traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def _serve(handler_cls) -> tuple[ThreadingHTTPServer, int]:
    httpd = _QuietServer(("127.0.0.1", 0), handler_cls)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return httpd, httpd.server_address[1]


@dataclass
class Repo:
    files: dict[str, bytes]
    lfs: set[str]
    gated: bool = False
    commit: str = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubServer:
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[tuple[str, str, dict]] = field(default_factory=list)
    port: int = 0
    lie: dict[str, bytes] = field(default_factory=dict)  # file name -> other bytes served than the listing's
    odd: dict[str, dict] = field(default_factory=dict)  # file name -> fields of its listing entry, replaced

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def hub_listing_error(join_s: float) -> BaseException | None:
    """What subtool's Hub listing of a small repository raised, run in a thread given `join_s` seconds (None: it
    was still waiting, or it returned), for tests of a Hub that never answers or answers too slowly."""
    from subtool.fetch import hub
    from subtool.mlperf.assets import HubFiles

    got: list[BaseException] = []

    def listing() -> None:
        try:
            hub.listing(HubFiles("meta-llama/Tiny-8B", "main", ("*.json",)))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            got.append(exc)

    worker = threading.Thread(target=listing, daemon=True)
    worker.start()
    worker.join(join_s)
    return got[0] if got else None


def _siblings(repo: Repo) -> list[dict]:
    out = []
    for name, data in sorted(repo.files.items()):
        entry = {"rfilename": name, "size": len(data), "blobId": blob_id(data)}
        if name in repo.lfs:
            entry["lfs"] = {"size": len(data), "sha256": sha256(data), "pointerSize": 134}
        out.append(entry)
    return out


def _hub_handler(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _json(self, code: int, obj: dict, headers: dict | None = None) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):  # noqa: N802
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path, dict(self.headers)))
            api = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path)
            resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            cdn = re.fullmatch(r"/cdn/([0-9a-f]{64})", path)
            if api:
                return self._api(*api.groups())
            if resolve:
                return self._resolve(*resolve.groups())
            if cdn:
                return self._cdn(cdn.group(1))
            self._json(404, {"error": "not found"})

        do_HEAD = do_GET

        def _api(self, repo_id: str, revision: str) -> None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            if revision not in ("main", repo.commit):
                return self._json(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
            info = {"id": repo_id, "sha": repo.commit, "gated": "manual" if repo.gated else False}
            siblings = [{**e, **hub.odd.get(e["rfilename"], {})} for e in _siblings(repo)]
            self._json(200, {**info, "private": False, "siblings": siblings})

        def _resolve(self, repo_id: str, revision: str, name: str) -> None:
            repo = hub.repos.get(repo_id)
            if repo is None or name not in repo.files:
                return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
            if repo.gated:
                auth = self.headers.get("Authorization", "")
                if auth != f"Bearer {HF_SECRET}":
                    code = 403 if auth else 401
                    msg = {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to model is restricted."}
                    return self._json(code, {"error": "gated"}, msg)
            data = repo.files[name]
            headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{blob_id(data)}"'}
            if name in repo.lfs:  # the Hub redirects LFS files to its CDN, on another host
                headers.update({"X-Linked-Etag": f'"{sha256(data)}"', "X-Linked-Size": str(len(data))})
                headers["Location"] = f"http://localhost:{hub.port}/cdn/{sha256(data)}"
                self.send_response(302)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            _send_body(self, hub.lie.get(name, data), headers, True, None)

        def _cdn(self, digest: str) -> None:
            for repo in hub.repos.values():
                for name, data in repo.files.items():
                    if sha256(data) == digest:
                        return _send_body(self, hub.lie.get(name, data), {}, True, None)
            self._json(404, {"error": "no such blob"})

    return Handler


@dataclass
class RawServer:
    """A server on 127.0.0.1 that reads a request and answers `answer` at once, then `trickle` a byte every `gap`
    seconds: an answer as broken as a test needs, to the byte (http.server writes its status line and headers
    itself). `connections` counts the requests it got."""

    answer: bytes
    trickle: bytes = b""
    gap: float = 0.05
    connections: int = 0
    port: int = 0

    def url(self, path: str = "/f/data.bin") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> socket.socket:
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return listener

    def _accept(self, listener: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                conn, _ = listener.accept()
                self.connections += 1
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client hung up: what a test wants of it, often
            request = b""
            while b"\r\n\r\n" not in request:
                got = conn.recv(65536)
                if not got:
                    return
                request += got
            conn.sendall(self.answer)
            for i in range(len(self.trickle)):
                conn.sendall(self.trickle[i : i + 1])
                time.sleep(self.gap)
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):  # until the client closes
                pass
