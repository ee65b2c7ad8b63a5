"""fetch's stall window through an HTTPS proxy (HTTPS_PROXY=https://…) to an HTTPS server: TLS inside TLS, where
urllib3's connection is an SSLTransport, which has no shutdown. The watchdog's shutdown of it failed in its thread
(a traceback on stderr) and the read it was to stop went on for as long as the server liked. Real sockets and real
TLS on 127.0.0.1, with a certificate made by the openssl command for the test."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest
from fetch_standins import RawServer

from subtool.errors import SubtoolError
from subtool.fetch.http import Settings, fetch_to_part

WINDOW = Settings(retries=1, backoff=0.0, timeout=(5, 5), stall_window=0.5)


@pytest.fixture
def tls(tmp_path) -> tuple[ssl.SSLContext, str]:
    """(a server context, the path of its certificate, for REQUESTS_CA_BUNDLE): 127.0.0.1's, self-signed."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, str(cert)


@dataclass
class TlsServer(RawServer):
    """RawServer's answer, over TLS."""

    context: ssl.SSLContext | None = None

    def url(self, path: str = "/f/data.bin") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def _answer(self, conn: socket.socket) -> None:
        try:
            conn = self.context.wrap_socket(conn, server_side=True)
        except OSError:
            conn.close()
            return
        super()._answer(conn)


class TlsProxy:
    """An HTTPS proxy: TLS to the client, then a CONNECT tunnel to 127.0.0.1 (whose TLS is the client's own)."""

    def __init__(self, context: ssl.SSLContext):
        self.context, self.tunnels = context, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()

    def _tunnel(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            client = self.context.wrap_socket(conn, server_side=True)
            request = b""
            while b"\r\n\r\n" not in request:
                request += client.recv(65536) or b"\r\n\r\n"
            port = int(request.split()[1].rsplit(b":", 1)[1])
            server = socket.create_connection(("127.0.0.1", port))
            self.tunnels += 1
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            threading.Thread(target=_pump, args=(server, client), daemon=True).start()
            _pump(client, server)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError, ValueError):
        while block := source.recv(65536):
            sink.sendall(block)
    with contextlib.suppress(OSError, ValueError):
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def through_tls_proxy(tls, monkeypatch):
    """The server context; fetch's requests go through a TlsProxy trusting the test's certificate."""
    context, cert = tls
    proxy = TlsProxy(context)
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, f"https://127.0.0.1:{proxy.port}")
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    yield context, proxy
    with contextlib.suppress(OSError):
        proxy.listener.shutdown(socket.SHUT_RDWR)
    proxy.listener.close()


def _fetch_within(url: str, part, seconds: float = 20.0) -> BaseException | None:
    got: list[BaseException | None] = []

    def work() -> None:
        try:
            fetch_to_part(url, part, size=36, settings=WINDOW)
            got.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            got.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(seconds)
    assert got, f"fetch still waiting after {seconds} s"
    return got[0]


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize(
    ("answer", "trickle", "says"),
    [
        (b"", b"HTTP/1.1 200 OK\r\nContent-Length: 36\r\nX-Pad: " + b"a" * 100_000, "response header in 0.5 s"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nDATA\r\n", b"0" * 100_000, "bytes/s"),
    ],
    ids=["headers", "chunked body"],
)
def test_a_trickling_server_behind_an_https_proxy_is_stopped_after_one_window(
    through_tls_proxy, tmp_path, answer, trickle, says
):
    context, proxy = through_tls_proxy
    server = TlsServer(answer, trickle, context=context)
    listener = server.start()
    try:
        began = time.monotonic()
        err = _fetch_within(server.url(), tmp_path / "data.bin.part")
        assert proxy.tunnels == 1  # TLS inside TLS, the case at stake
        assert isinstance(err, SubtoolError) and (err.rule, err.exit_code) == ("fetch.too_slow", 3), err
        assert says in err.one_line() and time.monotonic() - began < 10
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
