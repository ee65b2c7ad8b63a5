"""The stall window of a download applied where a socket's read timeout does not reach.

A read timeout bounds the silence between two bytes: a server that sends its status line and headers, or the
framing of a chunked body, one byte a minute was never stopped. A `Watchdog` shuts the socket down when no progress
was made for one window; the connections of `timed_pools` give a response's status line and headers one window in
all (http.py's `Settings.stall_window`, the window its too-slow rule judges a body's bytes over).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Watchdog:
    """Calls `stop` (a socket's shutdown, which wakes a read blocked in another thread) once `seconds` pass
    without `progress()`. `fired` says whether it did; leaving the `with` ends its thread."""

    def __init__(self, seconds: float, stop: Callable[[], None]):
        self.seconds, self.fired, self._stop = seconds, False, stop
        self._deadline = time.monotonic() + seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="subtool-fetch-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def progress(self) -> None:
        self._deadline = time.monotonic() + self.seconds

    def _watch(self) -> None:
        while not self._done.wait(max(0.0, self._deadline - time.monotonic())):
            if time.monotonic() >= self._deadline:
                self.fired = True
                with contextlib.suppress(OSError, ValueError, RuntimeError):  # closed or released meanwhile
                    self._stop()
                return


def shutter(sock) -> Callable[[], None]:
    """How a watchdog wakes a read blocked on `sock`: the shutdown of the socket under it. TLS through an HTTPS
    proxy is urllib3's SSLTransport, which has no shutdown (nor, then, has the response's): its `socket` has."""
    while not hasattr(sock, "shutdown") and hasattr(sock, "socket"):
        sock = sock.socket
    return lambda: sock.shutdown(socket.SHUT_RDWR)


def body_shutter(raw, fallback: Callable[[], None]) -> Callable[[], None]:
    """`shutter` of the connection a urllib3 response `raw` is read from; `fallback` where none is held."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    return shutter(sock) if sock is not None else getattr(raw, "shutdown", fallback)


class HeadersTooSlow(Exception):  # noqa: N818 - not an OSError or HTTPException: urllib3 does not retry it
    """The status line and headers of a response took more than one window (args: the window in seconds)."""


class _HeadersInTime:
    """A urllib3 connection whose response's status line and headers must all arrive within `header_window`."""

    header_window: float = 300.0

    def getresponse(self, *args, **kwargs):
        with Watchdog(self.header_window, shutter(self.sock)) as watch:
            try:
                response = super().getresponse(*args, **kwargs)
            except Exception:
                if watch.fired:  # what the shutdown made of the read: a disconnection, a bad status line
                    raise HeadersTooSlow(self.header_window) from None
                raise
        if watch.fired:  # http.client takes a header block cut short for a whole one
            response.close()
            raise HeadersTooSlow(self.header_window)
        return response


def timed_pools(window: float) -> dict[str, type]:
    """urllib3's pool classes by scheme (a PoolManager's `pool_classes_by_scheme`), with connections whose
    response headers get `window` seconds in all."""

    def pool(base: type, connection: type) -> type:
        timed = type(connection.__name__, (_HeadersInTime, connection), {"header_window": window})
        return type(base.__name__, (base,), {"ConnectionCls": timed})

    return {"http": pool(HTTPConnectionPool, HTTPConnection), "https": pool(HTTPSConnectionPool, HTTPSConnection)}
