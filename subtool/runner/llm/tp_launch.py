"""`--tensor-parallel N`: one engine over N processes, launched by subtool itself (no torchrun).

The benchmark process is rank 0: it talks to LoadGen (TorchLlmSUT) and runs the continuous engine's scheduler as
always. It starts ranks 1…N-1 as spawned processes; each loads its shard of the checkpoint (tensor_parallel.py)
and then follows: rank 0 sends each `run` (the samples) and, at every scheduling step, what arrived meanwhile
(`more_work`), so every rank's scheduler takes the same decisions and calls the same collectives; the layers'
all-reduces make the hidden states, and so the greedy tokens, the same on every rank. Only rank 0 answers LoadGen.

torch.distributed: NCCL between GPUs (one per rank: rank r on cuda:r), gloo on CPU; the step messages always go
over gloo (a CPU-side broadcast, no GPU sync). Joining the group and every collective of the layers have a timeout
(SUBTOOL_TP_TIMEOUT_S, default 600 s). The step messages and the load reports do not: a shard of a 70B checkpoint
read from a slow shared disk may take longer than that, so a rank that is still loading is waited for as long as
it makes progress; one silent for SUBTOOL_TP_STALL_S (default 1800 s) while it loads, a read that never returns,
stops the run with one line naming it and its stage (tp_watch.py). A rank that dies is seen at once (a watcher
on its process; gloo's connections close, NCCL's communicator is aborted), the others are torn down and the run
stops with one line naming the rank; followers die with the benchmark process (PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.runner.llm.sut_torch import LlmGenerator, TorchLlmSUT, _say
from subtool.runner.llm.tp_watch import (
    JOINING,
    LOADED,
    LOADING,
    PREPARING,
    REPORTING,
    SIZING,
    Board,
    StallWatch,
    stall_s,
)
from subtool.runner.stall import end_process_with, seconds_from_env

RULE = "run.tensor_parallel"
TIMEOUT_ENV = "SUBTOOL_TP_TIMEOUT_S"
TIMEOUT_DEFAULT_S = 600.0
TIMEOUT_MAX_S = 7 * 24 * 3600.0
HOST = "127.0.0.1"
STALL_GRACE_S = 10.0  # after a stall, how long rank 0's main thread gets to stop the launch itself
_LAUNCHES: list = []  # the live launches of this process (tests reach the follower processes through it)


def timeout_s() -> float:
    """SUBTOOL_TP_TIMEOUT_S: seconds a join or a collective may take (at least 1; unset, unreadable or NaN: 600).
    Infinity or more than a week is a week: torch takes the timeout as a finite timedelta (inf overflows it)."""
    return min(seconds_from_env(TIMEOUT_ENV, TIMEOUT_DEFAULT_S), TIMEOUT_MAX_S)


def check_size(size: int, device: str, config: dict, model_path) -> None:
    """Refuse, before anything starts, a TP size the GPUs or the model's heads cannot take."""
    from subtool.runner.llm.tensor_parallel import check_divisible

    if size < 1:
        raise SubtoolError(f"--tensor-parallel must be at least 1, not {size}", rule="cli.usage")
    if device == "cuda":
        import torch

        visible = torch.cuda.device_count()
        if size > visible:
            raise SubtoolError(
                f"--tensor-parallel {size} needs {size} GPUs; {visible} visible",
                rule=RULE,
                hint="one rank per GPU: check CUDA_VISIBLE_DEVICES, or a smaller --tensor-parallel",
            )
    check_divisible(config, size, model_path / "config.json")


# ------------------------------------------------------------------------------------ one rank's view
class Group:
    """This rank's side of the process group: rank, size, and the step messages (rank 0 sends, others receive)."""

    def __init__(self, rank: int, size: int, device: str, port: int, store=None, board: Board | None = None):
        import torch
        import torch.distributed as dist

        self.dist, self.rank, self.size, self.device, self.board = dist, rank, size, device, board
        timeout = timedelta(seconds=timeout_s())
        if store is None:
            store = dist.TCPStore(HOST, port, size, False, timeout)
        self.backend = "nccl" if device == "cuda" else "gloo"
        if device == "cuda":
            torch.cuda.set_device(rank)
        dist.init_process_group(self.backend, store=store, rank=rank, world_size=size, timeout=timeout)
        # the step messages: gloo, and no timeout worth the name (a rank waits for the next command while rank 0
        # scores accuracy or sets LoadGen up; a dead peer closes the connection, a dead rank 0 takes its children)
        self.control = dist.new_group(backend="gloo", timeout=timedelta(days=7))

    def progress(self, stage: int | None = None) -> None:
        """This rank's load: a new stage, or (None) one more beat in the current one (tp_watch.py)."""
        if self.board is not None:
            self.board.beat(self.rank) if stage is None else self.board.stage(self.rank, stage)

    def send(self, message) -> None:
        self.dist.broadcast_object_list([message], src=0, group=self.control)

    def receive(self):
        box = [None]
        self.dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def gather(self, value) -> list:
        """Every rank's `value`. Rank 0's main thread waits for it where Ctrl-C reaches it (a collective waits in
        native code, where Python's signal handlers never run, and a follower may load for an hour)."""
        out = [None] * self.size
        if self.rank == 0 and threading.current_thread() is threading.main_thread():
            _interruptible(lambda: self.dist.all_gather_object(out, value, group=self.control), "gather")
        else:
            self.dist.all_gather_object(out, value, group=self.control)
        return out

    def layer_output(self, compiled: bool):
        """The engine's hook: each layer's output half with its partial products summed over the ranks."""
        from subtool.runner.llm.tensor_parallel import all_reduce, sharded_output

        return sharded_output(all_reduce(), compiled)

    def close(self) -> None:
        if self.dist.is_initialized():
            try:
                self.dist.destroy_process_group()
            except Exception:  # a group whose peers are gone: nothing left to tidy
                pass


def _interruptible(work, what: str) -> None:
    """`work()` in a thread while this thread waits for it in Python: a KeyboardInterrupt here leaves it waiting (the
    launch's teardown kills the ranks it waits for, and it ends with the process)."""
    box: dict = {}

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # raised again in the waiting thread
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"subtool-tp-{what}", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(timeout=0.1)
    if "error" in box:
        raise box["error"]


class _Quiet:
    """A follower's sink: rank 0 alone answers LoadGen."""

    def first_token(self, qid, token) -> None:
        pass

    def complete(self, qid, tokens) -> None:
        pass


class TpGenerator(LlmGenerator):
    """LlmGenerator for one rank: streams its shard, runs the continuous engine with the all-reduce hook, and keeps
    its scheduler in step with rank 0's (`run` and `more_work` go through the group)."""

    def __init__(self, model_path, prompts, generation, *, group: Group, **options):
        self.group = group
        group.progress(PREPARING)
        options["engine"] = "continuous"
        super().__init__(model_path, prompts, generation, **options)

    def _stream(self, model_path, config: dict, precision: str, dtype, options: dict, auto_slots: bool):
        """This rank's shard onto its device; every rank reports (the slots and KV pages it can hold, or its error)
        to all, and every engine takes the fewest of each: the schedulers, and a paged cache's preemptions, must
        match."""
        g = self.group
        try:
            model, slots = self._load_shard(model_path, config, precision, dtype, options, auto_slots)
            status: tuple = ("ok", (slots, options.get("kv_pages")))
        except SubtoolError as exc:
            status = ("error", (exc.message, exc.path, exc.rule, exc.hint))
        except Exception as exc:  # out of GPU memory on this rank's GPU, most likely: said in one line all the same
            first = (str(exc).splitlines() or [""])[0]
            status = ("error", (f"{type(exc).__name__}: {first}", model_path, RULE, None))
        # every rank reports, so none waits on one that failed; Ctrl-C on rank 0 (a KeyboardInterrupt, not caught
        # above) reports nothing: the launch's teardown stops the ranks that would wait for it
        g.progress(REPORTING)
        statuses = g.gather(status)
        g.progress(LOADED)
        for rank, (kind, value) in enumerate(statuses):
            if kind == "error":
                message, path, rule, hint = value
                raise SubtoolError(f"rank {rank} of {g.size}: {message}", path=path, rule=rule, hint=hint)
        self.batch_size = min(slots for _, (slots, _) in statuses)
        pages = [pages for _, (_, pages) in statuses if pages is not None]
        if pages:
            options["kv_pages"] = min(pages)
        return model

    def _load_shard(self, model_path, config: dict, precision: str, dtype, options: dict, auto_slots: bool):
        import time

        from subtool.runner.llm.engine_layer import compile_default
        from subtool.runner.llm.tensor_parallel import load_shard, rank_config

        self.group.progress(LOADING)
        fp8 = precision == "fp8"
        kv_fp8 = self._kv_fp8(rank_config(config, self.group.size), options, fp8, dtype)
        t0 = time.monotonic()
        g = self.group
        model, layers = load_shard(
            model_path, self.device, dtype, fp8=fp8, rank=g.rank, size=g.size, progress=g.progress
        )
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()
        compiled = options.get("compile")
        compiled = compile_default(self.device) if compiled is None else bool(compiled)
        options.update(layer_weights=layers, layer_output=self.group.layer_output(compiled))
        options.setdefault("kv_cache", "fp8" if kv_fp8 else "model")
        if self.group.rank == 0:
            _say(f"rank 0 of {self.group.size} streamed its shard of {model_path} in {time.monotonic() - t0:.1f} s")
        if self.device.type == "cuda":
            g.progress(SIZING)
            max_len = int(self.lengths.max()) + self.generation.max_new_tokens
            self._size_slots(model, rank_config(config, self.group.size), options, kv_fp8, max_len, auto_slots)
        return model, self.batch_size

    def run(self, pending, sink) -> None:
        if self.group.rank == 0:
            self.group.send(("run", pending))
        super().run(pending, sink)

    def more_work(self) -> list:
        if self.group.rank == 0:
            items = self._sink.more_work()
            self.group.send(items)
            return items
        return self.group.receive()


# --------------------------------------------------------------------------------------------- followers
def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the benchmark process (its parent, pid `parent`) dies, whatever way it dies
    (Linux). One that died before this call (while this process imported torch) is no longer the parent: this
    process ends at once, instead of waiting for a rank 0 that is gone until the store's timeout."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


def follower_main(rank: int, size: int, device: str, port: int, args: tuple, options: dict, parent: int, board) -> None:
    """Rank 1…N-1: join the group, load the shard, then do what rank 0 says until it says stop."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: rank 0 stops the rest
    model_path, prompts, generation = args
    # torch imported while the rank is still starting: an import from a hung shared disk is named as such when the
    # join times out (Launch._join), not taken for a rank waiting in the group
    import torch.distributed  # noqa: F401

    board.stage(rank, JOINING)
    group = Group(rank, size, device, port, board=board)
    code = 0
    try:
        gen = TpGenerator(model_path, prompts, generation, group=group, **options)
        while True:
            message = group.receive()
            if message[0] != "run":
                break
            gen.run(message[1], _Quiet())
    except SubtoolError:
        code = 2  # rank 0 has the line (the status exchange); saying it twice would only repeat it
    except Exception as exc:  # a collective that failed because rank 0 stopped: its line is rank 0's to say
        code = 1
        if os.environ.get("SUBTOOL_DEBUG"):
            raise
        del exc
    finally:
        group.close()
    os._exit(code)


class Launch:
    """Rank 0's handle on the followers: started, watched, and torn down."""

    def __init__(self, size: int, device: str, args: tuple, options: dict):
        import torch.distributed as dist

        self.size, self.device, self.model_path = size, device, args[0]
        self.procs: list = []
        self.dead: list[str] = []
        self.stalled: SubtoolError | None = None
        self.closing = False
        store = dist.TCPStore(HOST, 0, size, True, timedelta(seconds=timeout_s()), wait_for_workers=False)
        ctx = mp.get_context("spawn")
        self.board = Board(ctx, size)
        self.board.stage(0, JOINING)  # rank 0 has torch already
        self.stall = StallWatch(self.board, stall_s())
        for rank in range(1, size):
            proc = ctx.Process(
                target=follower_main,
                args=(rank, size, device, store.port, args, options, os.getpid(), self.board),
                name=f"subtool-tp-rank{rank}",
                daemon=True,
            )
            proc.start()
            self.procs.append(proc)
        _LAUNCHES.append(self)
        self._watcher = threading.Thread(target=self._watch, name="subtool-tp-watch", daemon=True)
        self._watcher.start()
        try:
            self.group = self._join(store)
        except BaseException as exc:
            self.shutdown(clean=False)
            if isinstance(exc, Exception):
                raise self.error(exc) from None
            raise

    def _join(self, store) -> Group:
        """Rank 0's side of the group, joined while the followers are watched. The join waits in the store for
        every rank's address (up to SUBTOOL_TP_TIMEOUT_S): a follower that died before it joined (killed while it
        imported torch, out of memory, a CUDA start that failed) stops the launch at once instead, and the join's
        thread, left waiting, ends with the process; one still starting when the wait ends is named."""
        box: dict = {}

        def join() -> None:
            try:
                box["group"] = Group(0, self.size, self.device, store.port, store=store, board=self.board)
            except BaseException as exc:  # said by the launch, in rank 0's main thread
                box["error"] = exc

        joiner = threading.Thread(target=join, name="subtool-tp-join", daemon=True)
        joiner.start()
        while joiner.is_alive() and not self.dead and not self.stalled:
            joiner.join(timeout=0.1)
        if self.stalled:
            raise self.stalled
        if joiner.is_alive():
            raise SubtoolError(
                f"tensor-parallel {', '.join(self.dead)} died before it joined the group; the other ranks were stopped",
                rule=RULE,
            )
        late = self.board.late()
        if "error" in box and late:  # the store's timeout: name who kept it waiting, and where
            raise SubtoolError(
                f"tensor-parallel {', '.join(f'rank {r} while {stage}' for r, stage in late)}: not in the group "
                f"after {timeout_s():g} s ({TIMEOUT_ENV}); every rank was stopped",
                rule=RULE,
                hint="a rank stuck before it could join (an import from a hung shared filesystem?)",
            )
        if "error" in box:
            raise box["error"]
        return box["group"]

    def _watch(self) -> None:
        """A follower that ends before rank 0 lets it go is a dead rank: noted, and (NCCL) the group aborted so
        no collective waits for it until the timeout. Until every rank has loaded, a rank silent too long in its
        own work (tp_watch.py) stops the launch."""
        from multiprocessing.connection import wait

        sentinels = {p.sentinel: r for r, p in enumerate(self.procs, start=1)}
        watching = True
        while (sentinels or watching) and not self.closing:
            ended = wait(list(sentinels), timeout=0.5) if sentinels else time.sleep(0.5) or []
            for s in ended:
                rank = sentinels.pop(s)
                if self.closing or self.stalled:
                    return
                proc = self.procs[rank - 1]
                proc.join(timeout=5)  # reaped, so its exit code is known
                self.dead.append(f"rank {rank} (exit code {proc.exitcode})")
                self._abort()
            watching = watching and not self.dead and not self.board.loaded()
            stalled = self.stall.stalled() if watching else []
            if stalled and not self.closing:
                self._stop_stalled(stalled)
                return

    def _stop_stalled(self, stalled: list) -> None:
        """A hung rank: every follower killed (rank 0's collectives then fail at once, and it says the line). Rank 0
        itself may be the one stuck, in a read no signal ends: if it has not stopped the launch STALL_GRACE_S later,
        this thread says the line, removes what is in flight and ends the process (runner/stall.end_process_with), as
        the signal watchdog does."""
        self.stalled = self.stall.error(stalled, self.model_path)
        for proc in self.procs:
            proc.kill()
        self._abort()
        deadline = time.monotonic() + STALL_GRACE_S
        while not self.closing and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.closing:
            return
        end_process_with(self.stalled)  # in `subtool run`'s benchmark process: the parent says it, from its result file

    def _abort(self) -> None:
        if self.device != "cuda":
            return  # gloo: the dead rank's connections are closed, collectives fail at once
        try:
            from torch.distributed.distributed_c10d import _abort_process_group

            _abort_process_group()
        except Exception:  # an older torch: the collective's timeout ends it
            pass

    def error(self, exc: BaseException) -> SubtoolError:
        """What a failure during the run means, in one line."""
        if self.stalled is not None:
            return self.stalled
        if isinstance(exc, SubtoolError):
            return exc
        if self.dead:
            return SubtoolError(
                f"tensor-parallel {', '.join(self.dead)} died; the other ranks were stopped",
                rule=RULE,
            )
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return SubtoolError(f"tensor-parallel collective failed: {type(exc).__name__}: {first}", rule=RULE)

    def shutdown(self, *, clean: bool) -> None:
        """Followers told to stop (clean) and joined, or killed; the group destroyed; nothing left running."""
        self.closing = True
        if clean and not self.dead and getattr(self, "group", None) is not None:
            try:
                self.group.send(("stop",))
            except Exception:
                pass
        for proc in self.procs:
            proc.join(timeout=30 if clean else 0.1)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)
        if getattr(self, "group", None) is not None:
            self.group.close()
        if self in _LAUNCHES:
            _LAUNCHES.remove(self)


# ------------------------------------------------------------------------------------------- the SUT
class TensorParallelSUT(TorchLlmSUT):
    """TorchLlmSUT whose generator is rank 0 of a tensor-parallel launch."""

    def __init__(self, model_path, prompts, generation, *, tensor_parallel: int, **options):
        from subtool.runner.llm.checkpoint import can_stream, read_config
        from subtool.runner.llm.engine_support import supports_config

        device = options.get("device", "cpu")
        check_size(tensor_parallel, device, read_config(model_path), model_path)
        if options.get("engine") not in (None, "auto", "continuous"):
            raise SubtoolError("--tensor-parallel runs on the continuous engine", rule=RULE, hint="drop --engine")
        if not can_stream(model_path):
            raise SubtoolError("tensor parallelism reads safetensors checkpoints only", path=model_path, rule=RULE)
        why = supports_config(read_config(model_path), generation)
        if why:
            raise SubtoolError(f"the continuous engine cannot run this model: {why}", path=model_path, rule=RULE)
        self.tp_size = tensor_parallel
        self._check_fits(model_path, generation, prompts, options)
        self.launch = Launch(tensor_parallel, device, (Path(model_path), prompts, generation), dict(options))
        try:
            super().__init__(model_path, prompts, generation, **options)
        except BaseException as exc:
            self.launch.shutdown(clean=False)
            if not isinstance(exc, Exception):
                raise  # Ctrl-C (or SIGTERM): an interrupt, said as one by whoever runs the benchmark, not an error
            raise self.launch.error(exc) from None
        ranks = f"{tensor_parallel} rank{'s' if tensor_parallel > 1 else ''}"
        where = "GPU 0" if tensor_parallel == 1 else f"GPUs 0-{tensor_parallel - 1}"
        where = where if device == "cuda" else "CPU"
        _say(f"tensor parallel: one engine over {ranks} ({self.launch.group.backend}, {where})")
        self.stats = self._tp_stats

    def make_generator(self, model_path, prompts, generation, options: dict):
        return TpGenerator(model_path, prompts, generation, group=self.launch.group, **options)

    def _check_fits(self, model_path, generation, prompts, options: dict) -> None:
        """The memory check on one rank's share, before any process starts (CUDA: the free memory of GPU 0)."""
        if options.get("device") != "cuda":
            return
        import torch

        from subtool.runner.llm.checkpoint import read_config
        from subtool.runner.llm.checkpoint_memory import MIN_SLOTS, check_fits_streaming

        config = read_config(model_path)
        precision = options.get("precision", "bf16")
        max_len = max(len(p) for p in prompts) + generation.max_new_tokens
        check_fits_streaming(
            model_path,
            config,
            precision=precision,
            kv_fp8=precision == "fp8",
            max_len=max_len,
            min_slots=min(MIN_SLOTS, len(prompts)),
            free=int(torch.cuda.mem_get_info(0)[0]),
            where="cuda:0",
            tensor_parallel=self.tp_size,
        )

    def _tp_stats(self) -> dict:
        return {
            **asdict(self.generator.stats),
            "tensor_parallel": self.tp_size,
            "accelerators_per_engine": self.tp_size if self.launch.device == "cuda" else 0,
            "process_group": self.launch.group.backend,
        }

    def stop(self) -> None:
        error = self._error
        self._error = None
        try:
            super().stop()
        finally:
            self.launch.shutdown(clean=error is None)
        if error is not None:
            raise self.launch.error(error)
