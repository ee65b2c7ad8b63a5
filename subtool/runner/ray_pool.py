"""Generic Ray plumbing for a LoadGen SUT whose model runs on a pool of Ray actors (every model family's Ray SUT
uses it: bert/sut_ray.py, llm/sut_ray.py).

- `RayPoolConfig`: the pool's options (address, worker count, what each worker runs, depth, timeouts), read from
  the run's SutConfig.extra and checked in one line each;
- `connect`: join a cluster (`auto`, HOST:PORT, ray://…) or start one on this machine (`local`), refusing an
  address nobody listens on at once (Ray itself would retry it for minutes);
- `worker_count`: how many workers the cluster can hold (one per free GPU, or per `cpus_per_worker` CPUs), refused
  before any starts when it cannot hold what was asked;
- `await_ready`: every worker's setup, with the first failure (or a subtool version mismatch) as one error;
- `LOCAL_CLUSTER_CONFIG` and `niceness_line`: a cluster started here runs its workers at the driver's priority;
  a joined cluster's own setting (Ray's default is nice 15) is recorded per worker and said once on the console;
- `ExactlyOnceLedger`: LoadGen response ids issued and not yet answered, so a sample is answered exactly once
  whatever the workers do (die, answer late, answer twice);
- `release_workers` and `report_run_end`: kill the actors, shut down a cluster this process started, and turn
  lost workers and ledger mismatches into the run's one error.

Ray is imported inside the functions that need it: the config and the ledger work (and are tested) without it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass

from subtool import __version__
from subtool.errors import SubtoolError

LOCAL = "local"
AUTO = "auto"
CONNECT_PROBE_S = 5.0
FREE_RESOURCES_WAIT_S = 15.0  # what a cluster may need to free the resources of actors just killed
NODE_DESCRIPTION_WAIT_S = 60.0  # a node's description starts one Python process there and reads its hardware
# Ray starts its workers at nice 15 unless the raylet is told otherwise (RAY_worker_niceness), so that under CPU
# contention they yield to every other process, this driver and LoadGen included. The workers are the benchmark:
# a cluster this process starts runs them at the driver's priority.
LOCAL_CLUSTER_CONFIG = {"worker_niceness": 0}
RAY_DEFAULT_NICENESS = 15
# what a worker may run (the families' inner backends) → the Ray resource one worker asks for
WORKER_RESOURCES = {"torch-cpu": "CPU", "torch-cuda": "GPU"}


@dataclass(frozen=True)
class RayPoolConfig:
    address: str = LOCAL  # local | auto | HOST:PORT | ray://HOST:PORT
    workers: int | None = None  # default: one per free GPU (torch-cuda) or per free CPU (torch-cpu)
    inner_backend: str = "torch-cpu"  # what each worker runs (a WORKER_RESOURCES key), or auto
    cpus_per_worker: int = 1  # torch threads of a CPU worker, and the CPUs it reserves
    depth: int = 2  # chunks a worker holds at once
    chunk: int = 32  # most samples in one request (the batch size)
    start_timeout_s: float = 600.0  # for every worker to load its model
    task_timeout_s: float = 600.0  # a chunk unanswered this long counts as a lost worker

    @classmethod
    def from_sut_config(cls, config) -> RayPoolConfig:
        extra = dict(config.extra or {})
        address = str(extra.get("ray_address") or os.environ.get("RAY_ADDRESS") or LOCAL)
        inner = str(extra.get("inner_backend") or "torch-cpu")
        if inner not in WORKER_RESOURCES and inner != AUTO:
            raise SubtoolError(
                f"the ray backend cannot run {inner!r} on its workers; choose one of {', '.join(WORKER_RESOURCES)}",
                rule="run.backend",
            )
        workers = extra.get("workers")
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise SubtoolError(
                f"--workers must be a whole number of at least 1, not {workers!r}", rule="run.ray_workers"
            )
        numbers = {}
        for key in ("cpus_per_worker", "depth"):
            value = extra.get(key, getattr(cls, key))
            if not isinstance(value, int) or value < 1:
                raise SubtoolError(f"{key} must be a whole number of at least 1, not {value!r}", rule="run.ray")
            numbers[key] = value
        for key in ("start_timeout_s", "task_timeout_s"):
            value = extra.get(key, getattr(cls, key))
            if not isinstance(value, (int, float)) or value <= 0:
                raise SubtoolError(f"{key} must be a positive number of seconds, not {value!r}", rule="run.ray")
            numbers[key] = float(value)
        return cls(
            address=address, workers=workers, inner_backend=inner, chunk=max(1, int(config.batch_size)), **numbers
        )

    @property
    def resource(self) -> str:
        return WORKER_RESOURCES[self.inner_backend] if self.inner_backend != AUTO else "CPU"

    def resolved(self, cluster_gpus: float) -> RayPoolConfig:
        """`auto` workers: torch-cuda when the cluster has GPUs (wherever they are), else torch-cpu."""
        if self.inner_backend != AUTO:
            return self
        return dataclasses.replace(self, inner_backend="torch-cuda" if cluster_gpus >= 1 else "torch-cpu")

    @property
    def per_worker(self) -> int:
        return self.cpus_per_worker if self.resource == "CPU" else 1

    def actor_options(self) -> dict:
        """The Ray resources one worker actor reserves: its CPUs, or one GPU."""
        if self.resource == "CPU":
            return {"num_cpus": self.cpus_per_worker, "num_gpus": 0}
        return {"num_cpus": 0, "num_gpus": 1}


def say(line: str) -> None:
    print(f"ray: {line}", file=sys.stderr, flush=True)


def _probe(address: str) -> None:
    """Refuse an address nobody listens on at once: Ray itself retries such an address for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise SubtoolError(f"--ray-address {address!r} is not auto, local or HOST:PORT", rule="run.ray_connect")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_PROBE_S):
            pass
    except OSError as exc:
        raise SubtoolError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc})",
            rule="run.ray_connect",
            hint="start one with `ray start --head --port=6379` (and `ray start "
            "--address=HEAD:6379` on every other node), or use --ray-address local for a "
            "cluster on this machine only",
        ) from None


def connect(cfg: RayPoolConfig) -> bool:
    """Join or start the cluster; True when this call started the connection (stop() then ends it)."""
    import ray

    if ray.is_initialized():
        return False
    quiet = dict(logging_level=logging.WARNING, log_to_driver=True)
    if cfg.address == LOCAL:
        cpus = os.cpu_count() or 1
        need = (cfg.workers or 0) * cfg.per_worker if cfg.resource == "CPU" else 0
        # more CPU workers than cores is allowed on a local cluster (a scaling measurement asks for it)
        ray.init(
            address="local",
            num_cpus=max(cpus, need),
            include_dashboard=False,
            _system_config=LOCAL_CLUSTER_CONFIG,
            **quiet,
        )
        return True
    if cfg.address != "auto" and not cfg.address.startswith("ray://"):
        _probe(cfg.address)
    try:
        ray.init(address=cfg.address, **quiet)
    except ConnectionError as exc:
        if _token_refused(exc):
            raise SubtoolError(
                f"the Ray cluster at {cfg.address} refused this process: its authentication token is missing or "
                "not the cluster's",
                rule="run.ray_connect",
                hint="the cluster runs with token authentication: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH "
                "to the cluster's token file here, as on every node (or put that token in ~/.ray/auth_token)",
            ) from None
        what = (
            "no Ray cluster runs on this node (--ray-address auto joins one started here with `ray start`)"
            if cfg.address == "auto"
            else f"cannot join the Ray cluster at {cfg.address}: {str(exc).splitlines()[0]}"
        )
        raise SubtoolError(
            what,
            rule="run.ray_connect",
            hint="start one with `ray start --head` on this or another node, set RAY_ADDRESS, "
            "or use --ray-address local",
        ) from None
    except Exception as exc:  # ray.exceptions.AuthenticationError and friends: name them, no traceback
        raise SubtoolError(
            f"cannot join the Ray cluster at {cfg.address}: {exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}",
            rule="run.ray_connect",
            hint="every node and this process need the same Ray version and, with token "
            "authentication, the same token (RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)",
        ) from None
    return True


def _token_refused(exc: BaseException) -> bool:
    """Ray's ConnectionError after it gave up on a GCS that rejected this process's token (the cause says so)."""
    text = " ".join(str(e) for e in (exc, exc.__cause__, exc.__context__) if e is not None)
    return "InvalidAuthToken" in text or "AuthenticationError" in text


def loss_errors() -> tuple:
    """Errors that mean the worker (or its node) is gone, not that the model failed on the input."""
    import ray.exceptions as rex

    return (
        rex.RayActorError,
        rex.WorkerCrashedError,
        rex.NodeDiedError,
        rex.ObjectLostError,
        rex.OutOfMemoryError,
        rex.LocalRayletDiedError,
    )


class ExactlyOnceLedger:
    """LoadGen response ids issued and not yet answered. LoadGen hangs on a sample never answered and corrupts
    its log on one answered twice, so only `settle`'s survivors reach QuerySamplesComplete."""

    def __init__(self):
        self._open: dict[int, int] = {}
        self.issued = 0
        self.answered = 0
        self.duplicates = 0  # ids issued again while still open
        self.dropped = 0  # answers for ids not open (already answered, or never issued)

    def issue(self, items) -> None:
        for qid, idx in items:
            if qid in self._open:
                self.duplicates += 1
            self._open[qid] = idx
            self.issued += 1

    def settle(self, items) -> list[int]:
        """Close these (qid, index) samples; positions of the ones that were open, in order."""
        keep = []
        for pos, (qid, _) in enumerate(items):
            if self._open.pop(qid, None) is None:
                self.dropped += 1
            else:
                keep.append(pos)
                self.answered += 1
        return keep

    @property
    def outstanding(self) -> int:
        return len(self._open)

    def counts(self) -> dict:
        """What the run record keeps of the ledger."""
        return {
            "issued": self.issued,
            "answered": self.answered,
            "dropped": self.dropped,
            "duplicates": self.duplicates,
        }

    def problems(self) -> list[str]:
        out = []
        if self.duplicates:
            out.append(f"{self.duplicates} query ids issued twice while still open")
        if self.dropped:
            out.append(f"{self.dropped} answers for samples already answered or never issued (not passed on)")
        if self._open:
            out.append(f"{len(self._open)} samples never answered")
        return out


@dataclass
class PoolWorker:
    """One actor of the pool as the driver sees it; a family's SUT adds its own dispatch counters."""

    number: int
    handle: object
    node: str = "?"  # the host name
    pid: int = 0
    alive: bool = True
    address: str = ""  # the Ray node's IP address: two hosts may share a name, never an address in one cluster
    nice: int | None = None  # the actor process's niceness, as its ready() said

    @property
    def where(self) -> str:
        return f"{self.node} {self.address}" if self.address else self.node

    def name(self) -> str:
        return f"worker {self.number} ({self.where}, pid {self.pid})"


def node_address() -> str | None:
    """The address of the Ray node this process runs on (what a worker's ready() reports beside its host name);
    None outside Ray."""
    try:
        import ray

        return ray.util.get_node_ip_address() if ray.is_initialized() else None
    except Exception:  # Ray missing or not answering: the host name alone describes the node
        return None


def process_niceness() -> int | None:
    """This process's niceness (what a worker's ready() reports): Ray's default for its workers is 15."""
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):  # not on this platform
        return None


def niceness_line(workers: list[PoolWorker]) -> str | None:
    """One console line when workers run below normal priority (None when all run at 0 or say nothing)."""
    niced = [w for w in workers if type(w.nice) is int and w.nice > 0]  # (a bool is not a niceness)
    if not niced:
        return None
    levels = sorted({w.nice for w in niced})
    nodes = sorted({w.where for w in niced})
    whose = " (Ray's default)" if levels == [RAY_DEFAULT_NICENESS] else ""
    return (
        f"{len(niced)} of {len(workers)} workers run at "
        f"nice {'/'.join(str(n) for n in levels)}{whose} on {', '.join(nodes)}: under CPU contention "
        "they get a small share of the CPU; start those nodes with RAY_worker_niceness=0 ray start … to run them "
        "at normal priority"
    )


def worker_count(ray, cfg: RayPoolConfig) -> int:
    """How many workers to start: --workers, or one per free GPU/CPU; refused when the cluster cannot hold them."""
    kind, per = cfg.resource, cfg.per_worker
    total = ray.cluster_resources().get(kind, 0.0)
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    count = cfg.workers or int(ray.available_resources().get(kind, 0.0) // per)
    if count < 1:
        raise SubtoolError(
            f"the Ray cluster has no free {kind} for a {cfg.inner_backend} worker "
            f"({total:g} in all on {nodes} node{'s' if nodes != 1 else ''})",
            rule="run.ray_resources",
            hint="start the worker nodes with `ray start --address=HEAD:6379`"
            + (" on machines with GPUs" if kind == "GPU" else ""),
        )
    if count * per > total:
        most = int(total // per)
        raise SubtoolError(
            f"{count} {cfg.inner_backend} workers need {count * per} {kind}; the Ray cluster "
            f"has {total:g} on {nodes} node{'s' if nodes != 1 else ''}",
            rule="run.ray_resources",
            hint=(f"ask for at most {most} workers, or add" if most else "add")
            + " nodes with `ray start --address=HEAD:6379`"
            + (
                " (GPU workers need nodes where Ray sees GPUs; --backend torch-cpu runs on CPUs)"
                if kind == "GPU" and not most
                else ""
            ),
        )
    deadline = time.monotonic() + FREE_RESOURCES_WAIT_S
    while ray.available_resources().get(kind, 0.0) < count * per:
        if time.monotonic() > deadline:
            free = ray.available_resources().get(kind, 0.0)
            raise SubtoolError(
                f"{count} {cfg.inner_backend} workers need {count * per} {kind}; only "
                f"{free:g} of the cluster's {total:g} are free (other Ray jobs hold the rest)",
                rule="run.ray_resources",
                hint="wait for those jobs or ask for fewer workers",
            )
        time.sleep(0.2)
    return count


def await_ready(ray, cfg: RayPoolConfig, workers: list) -> list[dict]:
    """Wait for every worker's `ready()`; the first setup failure (or version mismatch) is one clear error.
    Each worker's node and pid are filled in; the ready() answers come back in worker order."""
    pending = {w.handle.ready.remote(): w for w in workers}
    answers = {}
    deadline = time.monotonic() + cfg.start_timeout_s
    while pending:
        left = deadline - time.monotonic()
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, left))
        if not ready:
            raise SubtoolError(
                f"{len(pending)} of {len(workers)} Ray workers did not start within {cfg.start_timeout_s:g} s",
                rule="run.ray_start",
                hint="see `ray status` for pending resources; a large model may need a longer start_timeout_s",
            )
        worker = pending.pop(ready[0])
        try:
            info = ray.get(ready[0])
        except Exception as exc:
            raise SubtoolError(
                f"Ray worker {worker.number} died while starting: {exc.__class__.__name__}: {first_line(exc)}",
                rule="run.ray_start",
                hint="every node needs subtool and its dependencies installed (the same versions as this one)",
            ) from None
        worker.node, worker.pid, worker.address = info["node"], info["pid"], str(info.get("node_ip") or "")
        worker.nice = info.get("nice") if isinstance(info.get("nice"), int) else None
        if info.get("subtool") != __version__:
            raise SubtoolError(
                f"Ray worker {worker.number} on {worker.node} runs subtool "
                f"{info.get('subtool')}, this process {__version__}",
                rule="run.ray_start",
                hint="install the same subtool on every node (or run them all from one container image)",
            )
        err = info["error"]
        if err:
            where = f"on {worker.node}: " if cfg.address != LOCAL else ""
            raise SubtoolError(
                f"Ray worker {worker.number} {where}{err['message']}",
                path=err.get("path"),
                rule=err.get("rule") or "run.ray_start",
                hint=err.get("hint"),
            )
        answers[worker.number] = info
    return [answers[w.number] for w in workers]


def start_workers(ray, cfg: RayPoolConfig, actor_cls, args: tuple, worker_type=PoolWorker, **options):
    """Start the pool: worker_count(cfg) actors of `actor_cls(*args)`, never restarted by Ray (a lost worker's
    samples go to the survivors instead), and wait until every one is ready. Returns the workers and their
    ready() answers; on any failure the actors already started are killed before the error goes up."""
    count = worker_count(ray, cfg)
    actor = ray.remote(actor_cls).options(max_restarts=0, max_task_retries=0, **cfg.actor_options(), **options)
    workers = []
    try:
        workers = [worker_type(i, actor.remote(*args)) for i in range(count)]
        answers = await_ready(ray, cfg, workers)
    except BaseException:
        release_workers(ray, workers, owns_ray=False)
        raise
    line = niceness_line(workers)
    if line:
        say(line)
    return workers, answers


def resolve_auto(ray, cfg: RayPoolConfig) -> RayPoolConfig:
    """`auto` workers decided on the connected cluster (torch-cuda when it has GPUs), and said on the console."""
    if cfg.inner_backend != AUTO:
        return cfg
    cfg = cfg.resolved(ray.cluster_resources().get("GPU", 0.0))
    say(f"workers run {cfg.inner_backend} (auto)")
    return cfg


def on_nodes(workers: list[PoolWorker]) -> str:
    """Where the pool's workers run, for the console: `2 nodes: a, b` (`a 10.0.0.1` once the address is known)."""
    nodes = sorted({w.where for w in workers})
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}: {', '.join(nodes)}"


def kill_worker(ray, worker: PoolWorker) -> None:
    """Kill an actor for good (a worker written off must never answer late); one already gone is fine."""
    try:
        ray.kill(worker.handle, no_restart=True)
    except Exception:  # already gone
        pass


def _describe_node() -> dict:
    from subtool.hostinfo.fields import describe_node

    return describe_node()


def node_descriptions(ray, workers: list[PoolWorker]) -> list[dict]:
    """Each live node the workers ran on, described by itself (subtool.hostinfo: CPU, memory, GPUs, each value's
    source), for run.json and the system description of a multi-node run. One light task per node, pinned to it,
    taking no CPU (the workers hold them); [] where the cluster cannot say, which never fails a run."""
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ids = {str(n.get("NodeManagerAddress")): n.get("NodeID") for n in ray.nodes() if n.get("Alive")}
        addresses = sorted({w.address for w in workers if w.address in ids})
        task = ray.remote(num_cpus=0, max_retries=0)(_describe_node)
        on = [NodeAffinitySchedulingStrategy(ids[a], soft=False) for a in addresses]
        pinned = [task.options(scheduling_strategy=strategy) for strategy in on]
        answers = ray.get([t.remote() for t in pinned], timeout=NODE_DESCRIPTION_WAIT_S)
    except Exception as exc:  # a node lost meanwhile, a timeout, an old Ray: the run's record goes without
        logging.getLogger(__name__).debug("no node descriptions: %s", exc)
        return []
    return [{"node_ip": a, **d} for a, d in zip(addresses, answers) if isinstance(d, dict)]


def release_workers(ray, workers, owns_ray: bool) -> None:
    """Kill the pool's actors, and shut Ray down if this process started it."""
    for w in workers:
        kill_worker(ray, w)
    if owns_ray:
        ray.shutdown()


def report_run_end(deaths: list[str], reissued: int, error: str | None, ledger: ExactlyOnceLedger) -> None:
    """After a Ray run: say which workers were lost, then raise the run's error or a mismatch with LoadGen."""
    if deaths and error is None:
        say(
            f"the run completed after losing {len(deaths)} worker{'s' if len(deaths) != 1 else ''}"
            f" ({reissued} samples re-issued): " + "; ".join(deaths)
        )
    if error is not None:
        raise SubtoolError(
            f"the Ray SUT failed during the run: {error}",
            rule="run.sut_error",
            hint="see the `ray:` lines above; `ray status` and the Ray logs on the node "
            "(/tmp/ray/session_latest/logs) say why a worker died",
        )
    problems = ledger.problems()
    if problems:
        raise SubtoolError(
            "the Ray SUT's answers do not match what LoadGen issued: " + "; ".join(problems), rule="run.sut_error"
        )


RAYLET_PID_ENV = "RAY_RAYLET_PID"  # set by the raylet in every worker process it starts
RAYLET_WATCH_S = 0.5


def die_with_raylet() -> bool:
    """In a worker actor's constructor: end this process when the raylet that started it dies. Ray's own workers
    outlived a raylet killed mid-run (the OOM killer, a crash; or the driver's local cluster going down with it),
    reparented and still holding their model, and on a GPU node that GPU's memory, until someone killed them.
    False, and nothing watched, outside Ray or where the raylet is not this process's parent (a container)."""
    import threading

    raylet = os.environ.get(RAYLET_PID_ENV, "")
    if not raylet.isdigit() or int(raylet) <= 1 or os.getppid() != int(raylet):
        return False

    def watch() -> None:
        while os.getppid() == int(raylet):
            time.sleep(RAYLET_WATCH_S)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="subtool-raylet-watch", daemon=True).start()
    return True


def first_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    text = str(cause if isinstance(cause, BaseException) else exc).strip()
    return text.splitlines()[0] if text else ""


def require_ray() -> None:
    """One clear line when the ray backend is asked for without Ray installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SubtoolError(
            "the ray backend needs Ray, which is not installed",
            rule="run.backend",
            hint="pip install 'mlperf-subtool[ray]' (or pip install 'ray>=2.9') on every node",
        ) from None
