"""Two network namespaces joined by a veth pair: two "hosts" on one machine, each with its own address, ports and
routes, for tests that run a service across hosts (tests/runner/test_ray_multinode.py: one Ray node in each).

`skip_reason()` says why this machine cannot make them (no `ip`, no CAP_NET_ADMIN: an unprivileged CI), `HostPair`
makes them and `close()` takes everything down again: every process still running inside, then the namespaces (the
veth pair goes with them). Names carry the creating process's pid, so `remove_stale()` deletes only the leftovers
of test processes that are gone (a run killed by a timeout), never a concurrent run's.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "subtool-t"
_NAME = re.compile(rf"^{PREFIX}(\d+)-(\d+)[ab]$")
_SUBNET = "10.231.{n}"  # inside the pair only: the root namespace never routes it
_counter = iter(range(1, 10**6))
_SHORT_ROOT = "/tmp"


def _ip(*args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=timeout)


def skip_reason() -> str | None:
    """Why this machine cannot make network namespaces (None: it can), found by making and deleting one."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN); this test runs unprivileged"
    probe = f"{PREFIX}{os.getpid()}-0a"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` is not allowed here: {made.stderr.strip() or made.returncode}"
    _ip("netns", "delete", probe, check=False)
    return None


def namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def pids_in(ns: str) -> list[int]:
    out = _ip("netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_all_in(ns: str, wait_s: float = 10.0) -> None:
    """SIGKILL every process in this namespace (only what the test started there lives in it), and wait."""
    deadline = time.monotonic() + wait_s
    while (pids := pids_in(ns)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def delete(ns: str) -> None:
    kill_all_in(ns)
    _ip("netns", "delete", ns, check=False)


def remove_stale() -> list[str]:
    """Delete the namespaces (and what runs in them) and the short directories that a test process now gone left
    behind."""
    gone = [ns for ns in namespaces() if (m := _NAME.match(ns)) and not _alive(int(m.group(1)))]
    for ns in gone:
        delete(ns)
    for d in Path(_SHORT_ROOT).glob(f"{PREFIX}*-*"):
        pid = d.name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and d.is_dir() and not d.is_symlink():
            shutil.rmtree(d, ignore_errors=True)
    return gone


@dataclass
class Host:
    ns: str
    address: str

    def argv(self, *command: str) -> list[str]:
        """A command line that runs `command` inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns, *command]

    def run(self, *command: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*command), capture_output=True, text=True, timeout=timeout, env=env)

    def popen(self, *command: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*command), env=env, **kwargs)

    def pids(self) -> list[int]:
        return pids_in(self.ns)


@dataclass
class HostPair:
    """Namespaces `a` and `b`, loopback up in each, a veth pair between them with addresses .1 and .2 of a /24,
    and no default route (as on an air-gapped cluster). Use as a context manager, or call close() from a
    finalizer."""

    a: Host = field(init=False)
    b: Host = field(init=False)

    def __post_init__(self):
        n = next(_counter)
        tag = f"{PREFIX}{os.getpid()}-{n}"
        subnet = _SUBNET.format(n=n % 250)
        self.a = Host(f"{tag}a", f"{subnet}.1")
        self.b = Host(f"{tag}b", f"{subnet}.2")
        self._veth = (f"st{os.getpid()}x{n}"[-15:], f"st{os.getpid()}y{n}"[-15:])  # interface names: 15 chars
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    def _create(self) -> None:
        for host in (self.a, self.b):
            _ip("netns", "add", host.ns)
            _ip("-n", host.ns, "link", "set", "lo", "up")
        va, vb = self._veth
        _ip("link", "add", va, "netns", self.a.ns, "type", "veth", "peer", "name", vb, "netns", self.b.ns)
        for host, dev in ((self.a, va), (self.b, vb)):
            _ip("-n", host.ns, "addr", "add", f"{host.address}/24", "dev", dev)
            _ip("-n", host.ns, "link", "set", dev, "up")

    def close(self) -> None:
        for host in (getattr(self, "a", None), getattr(self, "b", None)):
            if host is not None:
                delete(host.ns)

    def __enter__(self) -> HostPair:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def short_dir() -> Path:
    """A fresh directory with a short path under /tmp, its name tagged like the namespaces' (Ray's unix sockets live
    under its temp dir, and a socket path may be at most 107 bytes: a test's tmp_path is often longer)."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=_SHORT_ROOT))
