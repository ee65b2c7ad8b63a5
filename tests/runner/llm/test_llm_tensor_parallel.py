"""Tensor parallelism (llm/tensor_parallel.py, llm/tp_launch.py): `subtool run --tensor-parallel 2` on CPU with
gloo through real LoadGen generates token for token what one process generates; each rank reads only its rows
and columns of the checkpoint (also of fp8 checkpoints' scales); a rank killed mid-run stops the run with one
line and no hang; sizes the model or the GPUs cannot take are refused before anything starts; the memory check
counts one rank's share and names the TP size that fits."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from subtool.cli import app
from subtool.errors import SubtoolError

from .test_llm_checkpoint import compressed_fp8, hf_fp8, quant_config, random_state, tiny_config, write_checkpoint

torch = pytest.importorskip("torch")


def _run(model_path, dataset, out, *extra):
    """`subtool run` of llama2-70b-99 on the small checkpoint; on CPU (gloo) unless `extra` names a backend: on a
    GPU machine `auto` would pick torch-cuda, and one GPU cannot take two ranks."""
    if "--backend" not in extra:
        extra = ("--backend", "torch-cpu", *extra)
    args = ["run", "--model", "llama2-70b-99", "--mode", "accuracy", "--model-path", model_path]
    args += ["--dataset-path", dataset, "--out", out, *extra]
    return CliRunner().invoke(app, [str(a) for a in args])


def _tokens(out) -> dict:
    import numpy as np

    entries = json.loads((out / "llama2-70b-99/Offline/accuracy/mlperf_log_accuracy.json").read_text())
    return {e["qsl_idx"]: np.frombuffer(bytes.fromhex(e["data"]), dtype="int32").tolist() for e in entries}


# ------------------------------------------------------------------------------------------- end to end
def test_tp2_generates_token_for_token_what_one_process_generates(tmp_path, llama2_small, capfd):
    from .conftest import SMALL

    one = _run(llama2_small.model_path, llama2_small.dataset_path, tmp_path / "tp1", "--engine", "continuous")
    assert one.exit_code == 0, one.output
    two = _run(llama2_small.model_path, llama2_small.dataset_path, tmp_path / "tp2", "--tensor-parallel", "2")
    assert two.exit_code == 0, two.output
    assert "one engine over 2 ranks (gloo, CPU)" in capfd.readouterr().err
    reference, split = _tokens(tmp_path / "tp1"), _tokens(tmp_path / "tp2")
    assert sorted(split) == list(range(SMALL)) and all(len(t) == 16 for t in split.values())
    assert split == reference
    record = json.loads((tmp_path / "tp2/llama2-70b-99/Offline/run.json").read_text())
    assert record["sut"]["tensor_parallel"] == 2 and record["sut"]["process_group"] == "gloo"
    assert record["sut"]["samples"] == SMALL
    from subtool.package.documents import spread_line  # what the result's README says of it

    assert (
        spread_line(record) == "- Spread: one engine, each layer split over 2 CPU processes (tensor parallel 2, gloo)"
    )


def _followers_of_children() -> list[int]:
    """The spawned rank processes under this test's children (the benchmark process runs as a child)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            grand = int((Path("/proc") / str(parent) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"spawn_main" in cmd and grand == me:
            found.append(int(entry.name))
    return found


def test_a_rank_killed_mid_run_stops_the_run_in_one_line(tmp_path, llama2_small):
    out = tmp_path / "out"
    killed: list[int] = []

    def kill_mid_run():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # LoadGen started: the ranks are loaded and generating
            if list(out.rglob("mlperf_log_detail.txt")) and _followers_of_children():
                time.sleep(0.5)
                for pid in _followers_of_children():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_mid_run, daemon=True)
    killer.start()
    t0 = time.monotonic()
    # one sample at a time, 256 tokens each: the run lasts far longer than the kill takes to land
    res = _run(
        llama2_small.model_path,
        llama2_small.dataset_path,
        out,
        "--tensor-parallel",
        "2",
        "--batch-size",
        "1",
        "--max-new-tokens",
        "256",
    )
    killer.join()
    assert killed, "no rank process to kill appeared"
    assert res.exit_code != 0
    assert time.monotonic() - t0 < 90  # no collective waited for the dead rank
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tensor-parallel rank 1 (exit code -9) died" in errors[0], res.output
    assert "Traceback" not in res.output
    assert not (out / "llama2-70b-99/Offline").exists()  # nothing half-written
    time.sleep(0.5)
    assert not _followers_of_children()


def test_a_rank_dead_before_it_joined_the_group_stops_the_run_at_once(tmp_path, llama2_small, monkeypatch):
    """A follower killed before it joined the group (here while it imports torch; on a cluster the OOM killer or a
    CUDA start that failed): rank 0 waited in the store for its address for SUBTOOL_TP_TIMEOUT_S (600 s by
    default), then said it `failed unexpectedly (DistStoreError: wait timeout …)`, a bug in subtool."""
    monkeypatch.setenv("SUBTOOL_TP_TIMEOUT_S", "120")  # the old wait, bounded here
    out = tmp_path / "out"
    killed: list[int] = []

    def kill_at_start():
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:  # seen within ms of its start: it needs seconds to join
            for pid in _followers_of_children():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.01)

    killer = threading.Thread(target=kill_at_start, daemon=True)
    killer.start()
    t0 = time.monotonic()
    res = _run(llama2_small.model_path, llama2_small.dataset_path, out, "--tensor-parallel", "2")
    killer.join()
    assert killed, "no rank process to kill appeared"
    assert time.monotonic() - t0 < 60  # not the store's timeout
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.output
    assert "tensor-parallel rank 1 (exit code -9) died before it joined the group" in errors[0], res.output
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert not (out / "llama2-70b-99/Offline").exists()
    assert not _followers_of_children()


def test_a_rank_hung_before_it_joined_is_named_when_the_join_times_out(tmp_path, llama2_small, monkeypatch):
    """A follower alive but stuck from its first moment (held with SIGSTOP: an import from a hung shared disk looks
    the same): rank 0's join ended at SUBTOOL_TP_TIMEOUT_S with `tensor-parallel collective failed:
    DistStoreError: …`, naming no rank. Now the line names the rank and its stage, and no rank is left."""
    monkeypatch.setenv("SUBTOOL_TP_TIMEOUT_S", "8")
    out, held = tmp_path / "out", []

    def hold_at_start():
        deadline = time.monotonic() + 120
        while not held and time.monotonic() < deadline:  # seen within ms of its start: it needs seconds to join
            for pid in _followers_of_children():
                os.kill(pid, signal.SIGSTOP)
                held.append(pid)
            time.sleep(0.01)

    holder = threading.Thread(target=hold_at_start, daemon=True)
    holder.start()
    res = _run(llama2_small.model_path, llama2_small.dataset_path, out, "--tensor-parallel", "2")
    holder.join()
    assert held, "no rank process appeared"
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 2 and len(errors) == 1, res.output
    assert errors[0] == (
        "error: tensor-parallel rank 1 while starting (importing torch): not in the group after 8 s "
        "(SUBTOOL_TP_TIMEOUT_S); every rank was stopped [run.tensor_parallel]"
    )
    assert not (out / "llama2-70b-99/Offline").exists()
    time.sleep(0.5)
    assert not _followers_of_children()


HUNG_TORCH = """
import sys
from pathlib import Path
import numpy as np
import torch.distributed  # rank 0's, before the followers' path holds the hung one
from subtool.errors import SubtoolError
from subtool.runner.llm import tp_launch
from subtool.runner.llm.specs import LLM_SPECS
from subtool.runner.llm.workload import generation_for

path, hung = Path(sys.argv[1]), Path(sys.argv[2])
(hung / "torch").mkdir(parents=True)
(hung / "torch" / "__init__.py").write_text("import time\\n\\ntime.sleep(600)\\n")
sys.path.insert(0, str(hung))  # the path the followers start with
generation = generation_for(LLM_SPECS["llama2-70b-99"], path, {})
options = dict(eos_token_id=2, pad_token_id=0, precision="fp32", device="cpu")
try:
    tp_launch.TensorParallelSUT(path, [np.array([1, 5, 9])], generation, tensor_parallel=2, **options)
except SubtoolError as err:
    print(err.one_line())
"""


def test_a_rank_whose_torch_import_hangs_is_named_when_the_join_times_out(tmp_path, llama2_small):
    """A follower whose `import torch` never returns (torch read from a shared disk that stopped answering; here a
    torch package first on the followers' path that sleeps): it imported torch only once it had said it was
    joining the group, so the join's timeout, finding no rank still starting, said `tensor-parallel collective
    failed: DistStoreError: …` naming no rank. The import is the starting stage, as the line says. (In a process
    of its own: a join that timed out leaves torch.distributed's state unfit for another group in the same one.)"""
    import subprocess
    import sys

    env = {**os.environ, "SUBTOOL_TP_TIMEOUT_S": "8"}
    script = [sys.executable, "-c", HUNG_TORCH, str(llama2_small.model_path), str(tmp_path / "hung-disk")]
    rank0 = subprocess.Popen(script, env=env, start_new_session=True, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = rank0.communicate(timeout=120)
        assert out.strip().splitlines()[-1:] == [
            "tensor-parallel rank 1 while starting (importing torch): not in the group after 8 s "
            "(SUBTOOL_TP_TIMEOUT_S); every rank was stopped [run.tensor_parallel]"
        ], out
        time.sleep(0.5)
        assert not _session_of(rank0.pid), "a rank outlived the launch"
    finally:
        _end_session(rank0)


def test_a_rank_hung_while_it_loads_stops_the_launch_in_one_line_naming_it(llama2_small, monkeypatch):
    """The SUT `subtool run --tensor-parallel 2` builds, with rank 1 alive but silent while it loads its shard
    (held with SIGSTOP the moment it says so: a read of a hung shared filesystem looks the same to rank 0): rank 0
    waited for it in the load report for ever, with no line. Now, SUBTOOL_TP_STALL_S without progress later, one
    error names the rank and its stage, and no rank process is left."""
    import numpy as np

    from subtool.runner.llm import tp_launch
    from subtool.runner.llm.specs import LLM_SPECS
    from subtool.runner.llm.tp_watch import LOADING
    from subtool.runner.llm.workload import generation_for

    # above what importing torch takes rank 1 while it starts (watched too) on a loaded machine
    monkeypatch.setenv("SUBTOOL_TP_STALL_S", "8")
    held, done = [], threading.Event()

    def hold_rank_1_while_it_loads():
        deadline = time.monotonic() + 120
        while not held and not done.is_set() and time.monotonic() < deadline:
            for launch in list(tp_launch._LAUNCHES):
                if launch.board.read()[1][0] == LOADING:
                    os.kill(launch.procs[0].pid, signal.SIGSTOP)
                    held.append(launch.procs[0].pid)
            time.sleep(0.001)
        if held and not done.wait(60):  # still waiting for it (the old wait had no end): the rank dies instead
            os.kill(held[0], signal.SIGKILL)

    holder = threading.Thread(target=hold_rank_1_while_it_loads, daemon=True)
    holder.start()
    path = llama2_small.model_path
    options = dict(eos_token_id=2, pad_token_id=0, precision="fp32", device="cpu")
    generation = generation_for(LLM_SPECS["llama2-70b-99"], path, {})
    t0 = time.monotonic()
    try:
        with pytest.raises(SubtoolError) as caught:
            tp_launch.TensorParallelSUT(path, [np.array([1, 5, 9])], generation, tensor_parallel=2, **options)
    finally:
        done.set()
        holder.join()
    assert held, "rank 1 was never seen loading"
    assert time.monotonic() - t0 < 90
    assert caught.value.one_line() == (
        f"{path}: tensor-parallel rank 1 while loading its shard: no progress for 8 s (SUBTOOL_TP_STALL_S); "
        "every rank was stopped [run.tensor_parallel]"
    )
    assert not tp_launch._LAUNCHES and not any(p.is_alive() for p in tp_launch.mp.active_children())


def _session_of(sid: int) -> dict[int, bytes]:
    """pid → command line of every live process in session `sid`."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if entry.name.isdigit() and int(fields[3]) == sid and fields[0] != "Z":
                found[int(entry.name)] = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
    return found


def _end_session(proc) -> None:
    """Kill what a test started in its own session (`proc` and every process of its session), and nothing else."""
    for pid in _session_of(proc.pid):
        os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def test_a_rank_whose_rank_0_died_before_it_could_watch_it_ends_at_once(tmp_path, llama2_small):
    """Rank 0 dead while a follower still imported torch, before its PR_SET_PDEATHSIG: that signal never came,
    and the orphan waited in the store for the dead rank 0 until SUBTOOL_TP_TIMEOUT_S (600 s by default). Here
    the follower is held (SIGSTOP) from its first moment until rank 0 is gone, so the order is certain."""
    import subprocess
    import sys

    launch = "import sys; from pathlib import Path; from subtool.runner.llm.tp_launch import Launch\n"
    launch += "Launch(2, 'cpu', (Path(sys.argv[1]), [], None), {})\nimport time; time.sleep(600)\n"
    env = {**os.environ, "SUBTOOL_TP_TIMEOUT_S": "120"}  # the old wait, bounded here
    rank0 = subprocess.Popen(
        [sys.executable, "-c", launch, str(llama2_small.model_path)], env=env, start_new_session=True
    )
    try:
        follower, deadline = None, time.monotonic() + 120
        while follower is None and time.monotonic() < deadline and rank0.poll() is None:
            follower = next((p for p, cmd in _session_of(rank0.pid).items() if b"spawn_main" in cmd), None)
        assert follower is not None, "no rank process appeared"
        os.kill(follower, signal.SIGSTOP)  # within ms of its start: importing torch takes far longer
        rank0.kill()
        rank0.wait(timeout=30)
        os.kill(follower, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while follower in _session_of(rank0.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert follower not in _session_of(rank0.pid), "the follower outlived rank 0"
    finally:
        _end_session(rank0)


RANK_0_STUCK = """
import sys, time
from pathlib import Path
import numpy as np
from subtool.runner.llm import tp_launch
from subtool.runner.llm.specs import LLM_SPECS
from subtool.runner.llm.tp_watch import LOADING
from subtool.runner.llm.workload import generation_for

path = Path(sys.argv[1])
generation = generation_for(LLM_SPECS["llama2-70b-99"], path, {})
options = dict(eos_token_id=2, pad_token_id=0, precision="fp32", device="cpu")
tp_launch.STALL_GRACE_S = 2.0
launch = tp_launch.Launch(2, "cpu", (path, [np.array([1, 5, 9])], generation), options)
launch.group.progress(LOADING)
time.sleep(600)  # rank 0 in a read that never returns, no signal ends it: only the watcher can
"""


def test_rank_0_stuck_in_its_own_load_ends_the_process_with_the_line(llama2_small):
    """Rank 0's main thread silent in its load stage (a read no signal interrupts, standing in for a hung NFS read)
    while rank 1 loads and waits for it: the watcher stops rank 1, then, since rank 0 cannot say the line itself,
    says it and ends the process with exit 2; nothing of the launch is left running."""
    import subprocess
    import sys

    env = {**os.environ, "SUBTOOL_TP_STALL_S": "3"}
    script = [sys.executable, "-c", RANK_0_STUCK, str(llama2_small.model_path)]
    rank0 = subprocess.Popen(script, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        _, err = rank0.communicate(timeout=120)
        assert rank0.returncode == 2, err
        line = next(x for x in err.splitlines() if x.startswith("error: "))
        assert "tensor-parallel rank 0 while loading its shard" in line  # rank 1 too, if it was slower than 3 s
        assert line.endswith("no progress for 3 s (SUBTOOL_TP_STALL_S); every rank was stopped [run.tensor_parallel]")
        assert "Traceback" not in err
        time.sleep(0.5)
        assert not _session_of(rank0.pid), "a rank outlived the launch"
    finally:
        _end_session(rank0)


STUCK_IN_THE_SESSION = """
import sys, time
from subtool.runner import session
from subtool.runner.llm import tensor_parallel, tp_launch

tp_launch.STALL_GRACE_S = 2.0
tensor_parallel.load_shard = lambda *a, **k: time.sleep(600)  # rank 0's read of its shard never returns
sys.exit(session.main(sys.argv[1:]))
"""


def test_rank_0_stuck_in_the_benchmark_process_is_one_line_from_the_parent(tmp_path, llama2_small):
    """`subtool run --tensor-parallel 2` whose rank 0 (the benchmark child) hangs in its own load: the watcher said
    its line on stderr and exited the child, and the parent, finding no result, said a second one (`the benchmark
    process died (exit code 2) before reporting [run.crashed]`). Now the child leaves the watcher's error where
    the parent reads the child's errors, and says nothing itself: the parent raises exactly that line."""
    import subprocess
    import sys
    from dataclasses import asdict

    from subtool.runner.api import child_outcome
    from subtool.runner.session import SessionSpec

    stage = tmp_path / "stage"
    stage.mkdir()
    spec = SessionSpec(
        model="llama2-70b-99",
        scenario="Offline",
        modes=["accuracy"],
        model_path=str(llama2_small.model_path),
        dataset_path=str(llama2_small.dataset_path),
        user_conf=str(stage / "user.conf"),
        stage=str(stage),
        cache_dir=str(tmp_path / "cache"),
        result_path=str(stage / ".session-result.json"),
        extra={"tensor_parallel": 2},
    )
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(asdict(spec)))
    env = {**os.environ, "SUBTOOL_TP_STALL_S": "3"}
    child = subprocess.Popen(
        [sys.executable, "-c", STUCK_IN_THE_SESSION, str(spec_file)],
        env=env,
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 2, err
        assert not [x for x in err.splitlines() if x.startswith("error")], err  # the parent's to say
        with pytest.raises(SubtoolError) as caught:
            child_outcome(child.returncode, Path(spec.result_path), stage)
        line = caught.value.one_line()
        assert f"{llama2_small.model_path}: tensor-parallel rank 0 while loading its shard" in line, line
        assert line.endswith("no progress for 3 s (SUBTOOL_TP_STALL_S); every rank was stopped [run.tensor_parallel]")
        assert caught.value.exit_code == 2 and "a hung shared filesystem" in caught.value.hint
        assert not Path(spec.result_path).exists()
        time.sleep(0.5)
        assert not _session_of(child.pid), "a rank outlived the benchmark process"
    finally:
        _end_session(child)


def test_sizes_the_model_or_gpus_cannot_take_are_refused_before_anything_starts(tmp_path, llama2_small):
    from subtool.runner.llm.tp_launch import check_size

    res = _run(llama2_small.model_path, llama2_small.dataset_path, tmp_path / "o", "--tensor-parallel", "3")
    assert res.exit_code == 2
    assert "--tensor-parallel 3 does not divide the model's 4 attention heads" in res.output
    assert "splits over 1, 2 ranks" in res.output
    config = json.loads((llama2_small.model_path / "config.json").read_text())
    visible = torch.cuda.device_count()
    with pytest.raises(SubtoolError, match=f"needs {visible + 1} GPUs; {visible} visible"):
        check_size(visible + 1, "cuda", config, llama2_small.model_path)
    res = _run(llama2_small.model_path, llama2_small.dataset_path, tmp_path / "o", "--tensor-parallel", "0")
    assert res.exit_code == 2 and "--tensor-parallel must be at least 1" in res.output
    res = CliRunner().invoke(app, ["run", "--model", "bert-99", "--demo", "--tensor-parallel", "2"])
    assert res.exit_code == 2 and "--tensor-parallel is for the LLMs, not bert-99" in res.output


def test_the_spread_line_reads_any_run_record_without_raising():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from subtool.package.documents import spread_line

    ray = {"sut": {"per_worker": [{"node": "a", "node_ip": "10.0.0.1"}, {"node": "a", "node_ip": "10.0.0.2"}]}}
    assert spread_line(ray) == "- Spread: 2 Ray workers (one engine each) on 2 node(s)"
    gpus = {"sut": {"tensor_parallel": 2, "accelerators_per_engine": 2, "process_group": "nccl\n# x"}}
    assert spread_line(gpus) == "- Spread: one engine, each layer split over 2 GPUs (tensor parallel 2, ?)"
    assert spread_line({"sut": {"samples": 3}}) is None and spread_line({}) is None
    values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=6),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=10,
    )
    keys = st.sampled_from(["tensor_parallel", "accelerators_per_engine", "process_group", "per_worker", "node"])

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.dictionaries(keys, values, max_size=4))
    def one_line_or_none(sut):
        line = spread_line({"sut": sut})
        assert line is None or (line.startswith("- Spread: ") and "\n" not in line)

    one_line_or_none()


def test_a_shard_no_rank_can_load_is_one_line_from_the_ranks_not_a_hang(tmp_path, llama2_small):
    from .test_llm_checkpoint_run import _copy_as

    # fp8 blocks of 32 rows: k and v have 32 rows (2 kv heads × 16), 16 per rank, so a block straddles the ranks
    blocks = _copy_as(
        llama2_small.model_path, tmp_path / "fp8", lambda s: hf_fp8(s, (32, 32)), quantization=quant_config("hf-fp8")
    )
    res = _run(blocks, llama2_small.dataset_path, tmp_path / "o", "--tensor-parallel", "2")
    assert res.exit_code == 2
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert (
        len(errors) == 1 and "rank 0 of 2: model.layers.0.self_attn.k_proj.weight_scale_inv: scale blocks" in errors[0]
    )
    assert errors[0].endswith("[run.tensor_parallel]") and "Traceback" not in res.output
    assert not (tmp_path / "o/llama2-70b-99/Offline").exists()


# ------------------------------------------------------------------------------------- the sharded loader
def _rank_rows(t, parts: tuple[int, ...], rank: int, size: int = 2):
    """Rank `rank`'s rows of each of the fused parts of t, side by side (what a rank's fused weight holds)."""
    out, start = [], 0
    for n in parts:
        out.append(t[start + rank * n // size : start + (rank + 1) * n // size])
        start += n
    return torch.cat(out)


FORMATS = {  # name → (the bf16 weights converted, config.json's quantization_config)
    "plain": (lambda s: s, None),
    "hf-fp8 blocks of 16": (lambda s: hf_fp8(s, (16, 16)), quant_config("hf-fp8", block=(16, 16))),
    "compressed per channel": (lambda s: compressed_fp8(s, "channel"), quant_config("compressed-tensors")),
    "compressed per tensor": (
        lambda s: compressed_fp8(s, "tensor"),
        quant_config("compressed-tensors", strategy="tensor"),
    ),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_rank_reads_its_rows_and_columns_of_every_format(tmp_path, fmt):
    from subtool.runner.llm.checkpoint import load_streaming
    from subtool.runner.llm.tensor_parallel import load_shard

    config = tiny_config(num_hidden_layers=2, attention_bias=True)  # q 4×16, k and v 2×16, MLP 96
    convert, quantization = FORMATS[fmt]
    path = write_checkpoint(tmp_path / "c", config, convert(random_state(config)), shards=2, quantization=quantization)
    cpu = torch.device("cpu")
    _, whole = load_streaming(path, cpu, torch.float32, fp8=False)
    shards = [load_shard(path, cpu, torch.float32, fp8=False, rank=r, size=2)[1] for r in (0, 1)]
    for i, layer in enumerate(whole):
        for r, shard in enumerate(s[i] for s in shards):
            assert torch.equal(shard["in_norm"], layer["in_norm"]) and torch.equal(
                shard["post_norm"], layer["post_norm"]
            )
            for key, parts in (("qkv", (64, 32, 32)), ("gate_up", (96, 96))):  # by rows, bias with them
                assert torch.equal(shard[key][0], _rank_rows(layer[key][0], parts, r)), (key, r)
            assert torch.equal(shard["qkv"][1], _rank_rows(layer["qkv"][1], (64, 32, 32), r))
            for key in ("o", "down"):  # by columns
                assert torch.equal(shard[key][0], layer[key][0].chunk(2, dim=1)[r]), (key, r)
        assert torch.equal(shards[0][i]["o"][1], layer["o"][1]) and shards[1][i]["o"][1] is None  # added once


def test_block_scales_that_straddle_two_ranks_are_refused(tmp_path):
    from subtool.runner.llm.tensor_parallel import load_shard

    config = tiny_config(num_hidden_layers=1)
    state = hf_fp8(random_state(config), (32, 32))  # k and v: 32 rows, 16 per rank, in one block
    path = write_checkpoint(tmp_path / "c", config, state, quantization=quant_config("hf-fp8"))
    with pytest.raises(SubtoolError, match="scale blocks of 32 do not split evenly over 2 ranks"):
        load_shard(path, torch.device("cpu"), torch.float32, fp8=False, rank=0, size=2)


# ------------------------------------------------------------------------------------------ memory check
LLAMA2_70B = dict(
    hidden_size=8192,
    intermediate_size=28672,
    num_hidden_layers=80,
    num_attention_heads=64,
    num_key_value_heads=8,
    vocab_size=32000,
)
H100_FREE = int(79.1 * 2**30)


def test_the_fit_check_counts_one_ranks_share_and_names_the_tp_size_that_fits():
    from subtool.runner.llm.checkpoint_memory import check_fits_streaming

    sizes = dict(precision="fp8", kv_fp8=True, max_len=2048, min_slots=32, free=H100_FREE, where="cuda:0")
    with pytest.raises(SubtoolError) as caught:
        check_fits_streaming(Path("/m"), LLAMA2_70B, **sizes)
    assert caught.value.rule == "model.too_large" and "--tensor-parallel 2" in caught.value.hint
    check_fits_streaming(Path("/m"), LLAMA2_70B, tensor_parallel=2, **sizes)  # half the projections: fits
    with pytest.raises(SubtoolError) as caught:  # bf16 at TP=2 needs 4 such GPUs
        bf16 = {**sizes, "precision": "bf16", "kv_fp8": False}
        check_fits_streaming(Path("/m"), LLAMA2_70B, tensor_parallel=2, **bf16)
    assert "one rank's share of 2" in caught.value.message and "--tensor-parallel 4" in caught.value.hint


# ------------------------------------------------------------------------------------------------ CUDA
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu  # bench/gpu_check.sh runs the tests that carry it
@cuda
@pytest.mark.parametrize("precision", ["bf16", "fp8"])
def test_cuda_tp1_through_the_launcher_matches_the_plain_engine(tmp_path, llama2_small, capfd, monkeypatch, precision):
    """One GPU: the launcher's path (NCCL group of one, the layer_output hook's all-reduce inside the decode CUDA
    graph, the sharded loader) gives the plain engine's tokens (both uncompiled: the same arithmetic)."""
    monkeypatch.setenv("SUBTOOL_LLM_COMPILE", "0")
    common = ("--backend", "torch-cuda", "--precision", precision)
    plain = _run(llama2_small.model_path, llama2_small.dataset_path, tmp_path / "plain", *common)
    assert plain.exit_code == 0, plain.output
    tp = _run(llama2_small.model_path, llama2_small.dataset_path, tmp_path / "tp", *common, "--tensor-parallel", "1")
    assert tp.exit_code == 0, tp.output
    assert "one engine over 1 rank (nccl, GPU 0)" in capfd.readouterr().err
    reference, launched = _tokens(tmp_path / "plain"), _tokens(tmp_path / "tp")
    assert sorted(launched) == list(range(24)) and launched == reference
    record = json.loads((tmp_path / "tp/llama2-70b-99/Offline/run.json").read_text())
    assert record["sut"]["tensor_parallel"] == 1 and record["sut"]["accelerators_per_engine"] == 1
    assert record["sut"]["process_group"] == "nccl"


@pytest.mark.gpu  # bench/gpu_check.sh runs the tests that carry it
@cuda
def test_cuda_tp1_compiled_runs_and_agrees_with_the_compiled_plain_engine(tmp_path, llama2_small):
    """The compiled hook (the arithmetic between the all-reduces torch.compile'd, as the engine compiles its own):
    the run completes, and its tokens are the plain compiled engine's but for fusion rounding."""
    common = ("--backend", "torch-cuda", "--precision", "fp8")
    plain = _run(llama2_small.model_path, llama2_small.dataset_path, tmp_path / "plain", *common)
    assert plain.exit_code == 0, plain.output
    tp = _run(llama2_small.model_path, llama2_small.dataset_path, tmp_path / "tp", *common, "--tensor-parallel", "1")
    assert tp.exit_code == 0, tp.output
    reference, launched = _tokens(tmp_path / "plain"), _tokens(tmp_path / "tp")
    assert sorted(launched) == list(range(24)) and all(len(t) == 16 for t in launched.values())
    same_first = sum(launched[i][0] == reference[i][0] for i in range(24))
    assert same_first >= 20, f"first tokens agree on {same_first} of 24"
