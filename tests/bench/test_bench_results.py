"""bench/results/*.json say how they were made, and the README's figures are the JSONs' figures.

Every result records the command that made it (one its committed script accepts) or, for runs made through the CLI,
the `subtool` commands (ones the CLI accepts), the machine and the load;
a value the script of its time did not record says "not recorded" and the file's `provenance` says why. The
scripts themselves write those fields (run end to end on tiny sizes here), and the README quotes what the JSON
it links holds.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
NOT_RECORDED = "not recorded"
MACHINE_KEYS = ("cpus", "cpu_model", "gpu", "python", "platform", "torch", "loadgen")
FILES = sorted(RESULTS.glob("*.json"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_result_records_command_machine_and_load(path):
    doc = _load(path)
    command = doc.get("command")
    if "commands" in doc:  # runs through the CLI: each `subtool …` command, none of a bench script
        assert command is None and doc["commands"], f"{path.name}: commands and command both, or none"
        assert all(c.startswith("subtool ") for c in doc["commands"]), f"{path.name}: {doc['commands']}"
        command = "subtool"
    assert isinstance(command, str) and command, f"{path.name}: no command"
    if command == "subtool":
        pass
    elif command == NOT_RECORDED:
        assert doc.get("provenance"), f"{path.name}: command not recorded and no provenance saying why"
    else:
        assert re.fullmatch(r"python bench/(\w+/)?\w+\.py( .*)?", command), f"{path.name}: {command!r}"
        assert (REPO / shlex.split(command)[1]).is_file(), f"{path.name}: no script {shlex.split(command)[1]}"
    machine = doc.get("machine")
    assert isinstance(machine, dict), f"{path.name}: no machine"
    missing = [k for k in MACHINE_KEYS if k not in machine or machine[k] in ("", [])]
    assert not missing, f"{path.name}: machine lacks {missing}"
    load = doc.get("load")
    assert isinstance(load, dict) and set(load) >= {"start", "end"}, f"{path.name}: no load start/end"
    for when in ("start", "end"):
        value = load[when]
        assert value == NOT_RECORDED or (isinstance(value, list) and len(value) == 3), f"{path.name}: load {when}"
    if NOT_RECORDED in json.dumps({k: doc[k] for k in ("machine", "load")}):
        assert doc.get("provenance"), f"{path.name}: fields not recorded, and no provenance saying so"


PARSE = r"""
import importlib.util, json, os, shlex, sys
script, commands = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, os.path.dirname(script))                      # as `python bench/x.py` has it
spec = importlib.util.spec_from_file_location("bench_script", script)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
for command in commands:
    module.build_parser().parse_args(shlex.split(command)[2:])   # exits 2 on an argument the script lacks
"""


def test_recorded_cli_commands_are_ones_the_cli_accepts():
    """Each `subtool …` command a result records parses with subtool's own CLI (options known, values valid)."""
    import typer

    from subtool.cli import app

    group = typer.main.get_command(app)
    commands = [c for path in FILES for c in _load(path).get("commands", [])]
    assert commands
    for command in commands:
        name, *rest = shlex.split(command)[1:]
        ctx = group.context_class(group, info_name="subtool")
        sub = group.get_command(ctx, name)
        assert sub is not None, f"{command!r}: no such subcommand"
        try:
            sub.make_context(name, rest, parent=ctx)  # parses and validates, runs nothing
        except Exception as exc:  # an option the CLI lacks, or a value it refuses (typer's own click)
            pytest.fail(f"{command!r}: {exc}")
    # and the check does catch one it would refuse
    ctx = group.context_class(group, info_name="subtool")
    with pytest.raises(Exception, match="No such option"):
        group.get_command(ctx, "run").make_context("run", ["--model", "bert-99", "--no-such-flag"], parent=ctx)


def test_recorded_commands_are_ones_their_script_accepts():
    by_script: dict[str, list[str]] = {}
    for path in FILES:
        command = _load(path).get("command")
        if command is not None and command != NOT_RECORDED:
            by_script.setdefault(shlex.split(command)[1], []).append(command)
    assert by_script
    for script, commands in by_script.items():
        proc = subprocess.run(
            [sys.executable, "-c", PARSE, str(REPO / script), json.dumps(commands)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"{script} refuses one of {commands}: {proc.stderr[-600:]}"


@pytest.mark.parametrize(
    "script, args",
    [
        ("bench/pack_speed.py", ["--mb", "1", "--levels", "1"]),
        ("bench/publish_speed.py", ["--mb", "1", "--files", "8"]),
        ("bench/package_speed.py", ["--results", "1", "--size-mb", "1"]),
    ],
)
def test_script_writes_its_exact_command_machine_and_load(tmp_path, script, args):
    if script == "bench/package_speed.py":
        pytest.importorskip("mlperf_loadgen")  # it makes real LoadGen logs
    out = tmp_path / "result.json"
    argv = [script, *args, "--out", str(out)]
    proc = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = _load(out)
    assert doc["command"] == shlex.join(["python", *argv])
    assert doc["machine"]["cpus"] >= 1 and doc["machine"]["cpu_model"] not in ("", NOT_RECORDED)
    assert set(MACHINE_KEYS) <= set(doc["machine"])
    for when in ("start", "end"):
        assert len(doc["load"][when]) == 3 and all(x >= 0 for x in doc["load"][when])
    assert doc["started"] <= doc["finished"]


# --------------------------------------------------------------------------------------- README's figures
def _readme_performance() -> str:
    text = (REPO / "README.md").read_text()
    return text[text.index("## Performance") : text.index("## How it is built")]


def _run(doc: dict, name: str) -> dict:
    return next(r for r in doc["runs"] if r["name"] == name)


def _transformers_bf16_f1(doc: dict) -> float:
    """transformers' bf16 F1 on the proxy: its run's (bench/bert_gpu.py --proxy since the peers became runs) or,
    in a record made before, the F1-only block."""
    run = next((r for r in doc["runs"] if r["name"] == "transformers-bf16"), None)
    return run["f1"] if run else doc["transformers_bf16"]["f1"]


def _kernel_us(doc: dict, prefix: str, run: str = "torch-cuda-fp8") -> float:
    """The µs of the first kernel in a forward's profile whose name starts with `prefix`."""
    return next(us for name, us in _run(doc, run)["profile"]["top_kernels_us"] if name.startswith(prefix))


def _other_share(doc: dict, run: str) -> float:
    """The percentage of a forward's kernel time (its `profile`) in kernels other than products, attention and
    LayerNorm."""
    return 100 * _run(doc, run)["profile"]["share"]["other"]


def _bert_forward(doc: dict, run: str) -> dict:
    """A forward-only run's entry at the budget (16,384 tokens)."""
    return next(f for f in _run(doc, run)["forward_only"] if 16_000 < f["tokens"] <= 16_384)


def _bert_forward_ms(doc: dict, run: str, variant: str) -> float:
    """A forward-only run's milliseconds per batch at the budget (16,384 tokens): the default's or a variant's."""
    if variant == "default":
        return _bert_forward(doc, run)["ms_per_batch"]
    return _run(doc, run)["forward_only_variants"][variant]["ms_per_batch"]


def _layers_in_fp8(plan: dict) -> str:
    """An fp8 plan's "N of M" (its layers in fp8 of all its layers)."""
    fp8 = len(plan["fp8_layers"])
    return f"{fp8} of {fp8 + len(plan['bf16_layers'])}"


def _attention_us(doc: dict, block_m: int, e4m3_out: bool) -> str:
    """bench/packed_attention_gpu.py's µs a call for a tiling with `block_m` queries (a row that names none ran the
    64-query default of its time) and that output, as the README rounds it."""
    row = next(
        r
        for r in doc["kernels"]
        if r.get("block_m", r["tiling"].get("block_m", 64)) == block_m and r["e4m3_out"] == e4m3_out
    )
    return f"{row['us_per_call']:.1f} µs"


def _sass(doc: dict, tuning: dict) -> dict:
    """One tuning's row of bench/decode_attention_sass.py's JSON."""
    return next(k for k in doc["kernels"] if k["tuning"] == tuning)


def _fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def _full_set_projection(doc: dict, samples: int = 24_576) -> float:
    """LoadGen Offline tokens/s carried from a shorter run to `samples`: its fill and drain (the seconds outside
    the engine's steady window) as measured, the added samples' tokens (at the run's mean per sample) at the
    steady rate."""
    offline, steady = doc["offline"], doc["offline"]["steady_state"]
    tokens = offline["result"] * offline["seconds"]
    added = (samples - doc["workload"]["samples"]) * tokens / doc["workload"]["samples"]
    return (tokens + added) / (offline["seconds"] + added / steady["tokens_per_second"])


HEAD_VARIANT = "answer_head_as_a_float32_product"
EMBED_VARIANT = "embedding_gathers_in_torch"
# kernels the fused answer head and embedding removed (a profile's name prefixes): the float32 copy, the product,
# the gathers and the add
REMOVED_KERNELS = (
    "void at::native::unrolled",
    "sm80_xmma",
    "void at::native::vectorized_g",
    "void at::native::vectorized_elementwise_kernel<8",
)
FIGURES = [  # (result file, figure the README must quote, computed from the JSON)
    ("fp8_products_bert_h100", lambda d: f"{d['forward_products']['us_per_layer']:.1f} µs"),
    ("fp8_gemm_gpu_bert_h100", lambda d: f"{d['model_ms_per_step_by_rows']['16384']['rowwise']:.2f} ms"),
    (
        "bert_gpu_h100_forward_data_set",
        lambda d: _fmt(_run(d, "torch-cuda-fp8")["forward_data_set"]["samples_per_s"], 1),
    ),
    (
        "bert_gpu_h100_forward_data_set",
        lambda d: _fmt(_bert_forward(d, "torch-cuda-fp8")["samples_per_s_at_mean_length"], 1),
    ),
    ("bert_run_h100_random_weights", lambda d: f"{d['fp8']['plan']['layers_in_fp8']} of {d['fp8']['plan']['layers']}"),
    ("bert_run_h100_random_weights", lambda d: _fmt(d["fp8"]["result_samples_per_second"], 2)),
    ("bert_run_h100_random_weights", lambda d: _fmt(d["bf16"]["result_samples_per_second"], 2)),
    ("bert_run_h100_fp8_epilogue_gelu", lambda d: _fmt(d["random_weights"]["fp8"]["result_samples_per_second"], 2)),
    ("bert_run_h100_fp8_epilogue_gelu", lambda d: _fmt(d["random_weights"]["bf16"]["result_samples_per_second"], 2)),
    ("bert_run_h100_fp8_epilogue_gelu", lambda d: _layers_in_fp8(d["trained_proxy"]["fp8"]["plan"])),
    ("bert_run_h100_fp8_epilogue_gelu", lambda d: _fmt(d["trained_proxy"]["fp8"]["result_samples_per_second"], 2)),
    ("bert_run_h100_fp8_epilogue_gelu", lambda d: f"F1 **{d['trained_proxy']['fp8']['f1']:.2f}**"),
    ("bert_run_h100_fp8_epilogue_gelu", lambda d: _fmt(d["trained_proxy"]["bf16"]["result_samples_per_second"], 2)),
    ("bert_run_h100_fp8_epilogue_gelu", lambda d: f"{d['trained_proxy']['mean_tokens_per_sample']} tokens"),
    ("bert_run_h100_auto_proxy_f1_65", lambda d: _layers_in_fp8(d["auto"]["plan"])),
    ("bert_run_h100_auto_proxy_f1_65", lambda d: f"{d['auto']['check']['ratio'] * 100:.2f} % of fp32"),
    ("bert_run_h100_auto_proxy_f1_65", lambda d: _fmt(d["auto"]["result_samples_per_second"], 2)),
    ("bert_run_h100_auto_proxy_f1_65", lambda d: f"F1 **{d['auto']['f1']:.2f}**"),
    ("bert_run_h100_auto_proxy_f1_65", lambda d: f"fp32's **{d['fp32']['f1']:.2f}**"),
    ("bert_run_h100_auto_proxy_f1_65", lambda d: f"**{d['f1_ratio_to_fp32']:.4f}** of fp32"),
    *[
        ("bert_run_h100_token_budget", lambda d, run=run: f"**{_fmt(d['runs'][run]['result_samples_per_second'], 2)}**")
        for run in ("default_1", "default_2", "bs32_1", "bs32_2")
    ],
    ("bert_fp8_fallback_gelu_h100", lambda d: _fmt(d["runs"]["fp8_every_layer_bf16"]["best"], 2)),
    ("bert_fp8_fallback_gelu_h100", lambda d: _fmt(d["runs"]["bf16"]["best"], 2)),
    ("bert_fp8_fallback_gelu_h100", lambda d: _fmt(d["runs"]["fp8_every_layer_bf16_separate_gelu"]["best"], 2)),
    ("bert_fp8_fallback_gelu_h100", lambda d: _fmt(d["runs"]["fp8"]["best"], 2)),
    ("bert_gpu_h100", lambda d: _fmt(_run(d, "torch-cuda-fp8")["offline_samples_per_s"], 2)),
    ("fp8_products_bert_h100", lambda d: f"{d['forward_products']['ms_per_forward_only_batch']:.3f} ms"),
    ("fp8_products_bert_h100", lambda d: f"{d['forward_products']['forward_only_batch']['fp8_forward_ms']:.3f} ms"),
    ("fp8_products_bert_h100", lambda d: _fmt(d["forward_products"]["samples_per_s_if_only_products"])),
    ("fp8_products_bert_h100", lambda d: f"{d['forward_products']['ms_per_batch_at_9500_samples_per_s']:.3f} ms"),
    ("fp8_products_bert_h100", lambda d: f"{d['forward_products']['ms_left_for_everything_else_at_9500']:.3f} ms"),
    ("fp8_products_bert_h100", lambda d: f"{d['forward_products']['ms_everything_else_takes_now']:.3f} ms"),
    ("fp8_products_bert_h100", lambda d: f"{d['results_us']['qkv']['tensor_bias']['us_best']:.1f} µs"),
    ("fp8_products_bert_h100", lambda d: f"{d['results_us']['qkv']['rowwise_bias']['us_best']:.1f} µs"),
    ("bert_gpu_h100_graphs_side_by_side", lambda d: f"{d['forward_ceiling_ms_per_batch']['1_lane']:.3f}"),
    ("bert_gpu_h100_graphs_side_by_side", lambda d: f"{d['forward_ceiling_ms_per_batch']['2_lanes']:.3f} ms"),
    ("bert_gpu_h100_graphs_side_by_side", lambda d: _fmt(max(d["executor_samples_per_s"]["2_lanes"]))),
    ("bert_gpu_h100_graphs_side_by_side", lambda d: _fmt(max(d["executor_samples_per_s"]["1_lane"]))),
    ("cublaslt_gelu_e4m3_h100", lambda d: f"{d['results_us']['cublaslt_gelu_bias_e4m3_tensorwise']['us']:.1f} µs"),
    ("cublaslt_gelu_e4m3_h100", lambda d: f"{d['results_us']['subtool_triton_rowwise']['us']:.1f} µs"),
    ("cublaslt_gelu_e4m3_h100", lambda d: f"{d['results_us']['cublaslt_bias_e4m3_tensorwise']['us']:.1f} µs"),
    ("cublaslt_gelu_e4m3_h100", lambda d: f"{d['forward_ms_16k_tokens']['cublaslt_gelu_product']:.3f} ms"),
    ("fp8_gelu_warp_specialize_h100", lambda d: f"{d['results_us']['warp_specialize=True']['us']:.1f}"),
    ("fp8_gelu_warp_specialize_h100", lambda d: f"{d['results_us']['default']['us']:.1f} µs"),
    ("packed_attention_e4m3_in_h100", lambda d: f"{d['attention_us']['e4m3_in_128_queries']:.1f} µs"),
    ("packed_attention_e4m3_in_h100", lambda d: f"{d['attention_us']['bf16_in_128_queries']:.1f} µs"),
    ("packed_attention_e4m3_in_h100", lambda d: f"{d['qkv_product_us']['tensorwise_e4m3_out_bias']:.1f} against"),
    ("packed_attention_e4m3_in_h100", lambda d: f"{d['qkv_product_us']['rowwise_bf16_out_bias']:.1f} µs"),
    ("bert_gpu_h100_forward_head", lambda d: f"{_bert_forward_ms(d, 'torch-cuda-fp8', 'default'):.3f} ms"),
    ("bert_gpu_h100_forward_head", lambda d: f"{_bert_forward_ms(d, 'torch-cuda-fp8', HEAD_VARIANT):.3f} ms"),
    ("bert_gpu_h100_forward_head", lambda d: f"{_bert_forward_ms(d, 'torch-cuda-bf16', 'default'):.3f} ms"),
    ("bert_gpu_h100_forward_head", lambda d: f"{_bert_forward_ms(d, 'torch-cuda-bf16', HEAD_VARIANT):.3f} ms"),
    ("bert_gpu_h100_forward_embedding", lambda d: f"{_bert_forward_ms(d, 'torch-cuda-fp8', 'default'):.3f} ms"),
    ("bert_gpu_h100_forward_embedding", lambda d: f"{_bert_forward_ms(d, 'torch-cuda-fp8', HEAD_VARIANT):.3f} ms"),
    ("bert_gpu_h100_forward_embedding", lambda d: f"{_bert_forward_ms(d, 'torch-cuda-fp8', EMBED_VARIANT):.3f} ms"),
    ("bert_gpu_h100_forward_embedding", lambda d: f"{_other_share(d, 'torch-cuda-fp8'):.1f} %"),
    ("bert_gpu_h100_forward_gelu_tiles_again", lambda d: f"from {_other_share(d, 'torch-cuda-fp8'):.1f} %"),
    *(
        ("bert_gpu_h100_forward_gelu_tiles_again", lambda d, k=kernel: f"({_kernel_us(d, k):.1f} µs")
        for kernel in REMOVED_KERNELS
    ),
    ("llm70b_gpu_h100_layers40_merge_per_head", lambda d: _merge_ms(d)),
    ("llm70b_gpu_h100_layers40_merge_grouped_a", lambda d: _merge_ms(d)),
    ("llm70b_gpu_h100_layers40_merge_per_head", lambda d: f"{d['profile']['decode_step_ms']:.2f} ms"),
    ("llm70b_gpu_h100_layers40_merge_grouped_a", lambda d: f"{d['profile']['decode_step_ms']:.2f}"),
    ("llm70b_gpu_h100_layers40_merge_grouped_b", lambda d: f"{d['profile']['decode_step_ms']:.2f}"),
    ("llm70b_gpu_h100_layers40_kv_fused_a", lambda d: f"{d['profile']['decode_step_ms']:.2f}"),
    ("llm70b_gpu_h100_layers40_kv_fused_b", lambda d: f"{d['profile']['decode_step_ms']:.2f} ms"),
    ("llm70b_gpu_h100_layers40_kv_torch_a", lambda d: f"{d['profile']['decode_step_ms']:.2f}"),
    ("llm70b_gpu_h100_layers40_kv_torch_b", lambda d: f"{d['profile']['decode_step_ms']:.2f} ("),
    ("llm70b_gpu_h100_layers40_kv_fused_a", lambda d: _fmt(d["profile"]["prefill_chunk_ms"], 1)),
    ("llm70b_gpu_h100_layers40_kv_torch_a", lambda d: _fmt(d["profile"]["prefill_chunk_ms"], 1)),
    ("silu_fp8_gpu", lambda d: _fmt(next(p for p in d["points"] if p["m"] == 16384)["triton"]["us"], 1)),
    ("silu_fp8_gpu", lambda d: _fmt(next(p for p in d["points"] if p["m"] == 16384)["compiled"]["us"], 1)),
    ("llm70b_gpu_profile512_silu_fused", lambda d: _fmt(d["profile"]["prefill_chunk_ms"], 1)),
    ("llm70b_gpu_profile512_silu_torch", lambda d: _fmt(d["profile"]["prefill_chunk_ms"], 1)),
    ("llm70b_gpu_paged512_4096samples_fused", lambda d: _fmt(d["offline"]["result"])),
    ("llm70b_gpu_paged512_4096samples_fused", lambda d: _fmt(d["offline"]["steady_state"]["tokens_per_second"])),
    ("llm70b_gpu_paged512_4096samples_fused", lambda d: _fmt(d["offline"]["gpu_telemetry"]["sm_mhz"]["mean"])),
    ("llm70b_gpu_paged512_4096samples_admit32", lambda d: _fmt(d["offline"]["result"])),
    ("llm70b_gpu_paged512_4096samples_admit32", lambda d: _fmt(d["offline"]["steady_state"]["tokens_per_second"])),
    ("llm70b_gpu_paged512_server090_compact", lambda d: _fmt(d["server"][0]["result"])),
    ("llm70b_gpu_paged512_server090_compact", lambda d: f"{d['server'][0]['ttft_ms']['p99']:.0f} ms"),
    ("llm70b_gpu_paged512_server090_compact", lambda d: f"{d['server'][0]['tpot_ms']['p99']:.0f} ms"),
    ("llm70b_gpu_paged512_server090_compact", lambda d: f"{d['server'][0]['target_qps']:.3f} QPS"),
    (
        "llm70b_gpu_paged512_server090_compact",
        lambda d: _fmt(d["server"][0]["ttft_parts"]["ms"]["prefilling"]["p99"], 1),
    ),
    ("llm70b_gpu_profile512_small", lambda d: _fmt(d["profile"]["prefill_small"]["1_tokens"]["ms"], 2)),
    ("llm70b_gpu_profile512_small", lambda d: _fmt(d["profile"]["prefill_small"]["128_tokens"]["kernels_ms"], 2)),
    ("bert_gpu_h100", lambda d: _fmt(_run(d, "torch-cuda-fp16")["offline_samples_per_s"])),
    ("bert_gpu_h100", lambda d: _fmt(_run(d, "torch-cuda-bf16")["offline_samples_per_s"])),
    ("bert_gpu_h100", lambda d: _fmt(_run(d, "torch-cuda-fp8")["offline_samples_per_s"])),
    ("bert_gpu_h100", lambda d: _fmt(_run(d, "torch-cuda-fp16")["vs_fp32"]["f1"], 2)),
    ("bert_gpu_h100", lambda d: _fmt(_run(d, "reference-fp32-bs1-pad384")["offline_samples_per_s"], 1)),
    ("package_speed", lambda d: _fmt(d["package_MBps"])),
    ("package_speed", lambda d: _fmt(d["cp_plus_sync_MBps"])),
    ("package_speed", lambda d: _fmt(d["sha256_one_core_MBps"])),
    ("publish_speed", lambda d: f"{d['timings']['first_publish']['seconds']:.2f} s"),
    ("checker_speed", lambda d: f"{d['speedup']}×"),  # wall-time ratio
    ("checker_speed", lambda d: f"{d['cpu_ratio']}×"),  # CPU-time ratio
    ("pack_speed", lambda d: _fmt(d["runs"][0]["pack_mb_per_s"])),
    ("llm70b_gpu", lambda d: _fmt(d["offline"]["result"])),
    ("llm70b_gpu", lambda d: _fmt(d["server"][0]["result"])),
    ("llm70b_gpu_paged512_1024samples", lambda d: _fmt(d["offline"]["result"])),
    ("llm70b_gpu_paged512_1024samples", lambda d: _fmt(d["profile"]["decode_tokens_per_s_all_slots_busy"])),
    ("llm70b_gpu_paged512_1024samples", lambda d: f"{d['profile']['decode_parts_ms_all_layers']['attention']:.1f} ms"),
    ("llm70b_gpu_paged512_4096samples", lambda d: _fmt(d["offline"]["result"])),
    ("llm70b_gpu_paged512_4096samples", lambda d: _fmt(d["offline"]["steady_state"]["tokens_per_second"])),
    ("llm70b_gpu_paged512_4096samples", lambda d: f"{d['ratio_to_published']['trtllm_h200_fp8_128_128']:.2f}×"),
    ("llm70b_gpu_paged512_3072samples", lambda d: _fmt(d["offline"]["result"])),
    ("llm70b_gpu_paged512_4096samples", lambda d: _fmt(_full_set_projection(d))),
    ("llm70b_gpu_profile512", lambda d: f"{d['profile']['decode_step_ms']:.1f} ms"),
    ("llm70b_gpu_profile512", lambda d: _fmt(d["profile"]["decode_tokens_per_s_all_slots_busy"])),
    ("llm70b_gpu_profile512", lambda d: f"{d['profile']['prefill_chunk_ms'] / 1000:.2f} s"),
    ("llm70b_gpu_profile512", lambda d: _fmt(d["profile"]["prefill_chunk_tokens"])),
    ("llm70b_gpu_profile512_dynamic", lambda d: f"{d['profile']['prefill_chunk_ms'] / 1000:.2f} s"),
    ("llm70b_gpu_profile768_tuned", lambda d: _fmt(d["profile"]["decode_tokens_per_s_all_slots_busy"])),
    *[(f"llm70b_gpu_paged512_server{f}", lambda d: _fmt(d["server"][0]["result"])) for f in ("082", "090", "096")],
    *[
        (f"llm70b_gpu_paged512_server{f}", lambda d, k=k: f"{d['server'][0][k]['p99']:.0f} ms")
        for f in ("082", "090", "096")
        for k in ("ttft_ms", "tpot_ms")
    ],
    ("llm70b_gpu_paged512_server096", lambda d: _fmt(d["server"][0]["gpu_telemetry"]["sm_mhz"]["mean"])),
    ("llm70b_gpu_profile512_mergeskip", lambda d: f"{d['profile']['decode_step_ms']:.1f} ms"),
    ("decode_attention_gpu_ahead", lambda d: f"{d['best']['us_per_layer']:.0f} µs"),
    ("decode_attention_gpu_ahead", lambda d: f"{d['default']['us_per_layer']:.0f} µs"),
    ("decode_attention_gpu", lambda d: f"{d['best']['us_per_layer']:.0f} µs"),
    ("decode_attention_gpu", lambda d: f"{d['default']['us_per_layer']:.0f} µs"),
    ("decode_attention_gpu_ordered", lambda d: f"{d['best']['us_per_layer']:.0f} µs"),
    ("decode_attention_gpu_ordered", lambda d: f"{d['default']['us_per_layer']:.0f} µs"),
    ("decode_attention_gpu_h100_warps", lambda d: f"{d['best']['us_per_layer']:.1f} µs"),
    ("decode_attention_gpu_h100_warps", lambda d: _fastest(d, warps=2)),
    ("decode_attention_gpu_h100_warps", lambda d: _fastest(d, warps=1)),
    ("decode_attention_gpu_h100_fp8_dots", lambda d: _fastest(d, block_n=64, fp8_dots=True)),
    ("decode_attention_gpu_h100_fp8_dots", lambda d: _fastest(d, block_n=64, fp8_dots=False)),
    (
        "decode_attention_gpu_h100_fp8_dots",
        lambda d: f"{_fastest_tuning(d, fp8_dots=True)['worst_difference_from_default']:g}",
    ),
    *[
        ("decode_attention_gpu_h100_half", lambda d, h=h, z=z: _fastest(d, digits=1, half=h, v_zeroed=z))
        for h, z in ((True, False), (False, False), (True, True))
    ],
    ("decode_attention_gpu_h100_half", lambda d: _fastest(d, half=False, v_zeroed=True)),
    ("decode_attention_gpu_h100_prefetch", lambda d: _fastest(d, prefetch=True)),
    *[
        ("decode_attention_sass", lambda d, t=t: f"{_sass(d, t)['loops'][0]['instructions']} instructions")
        for t in ({}, {"v_zeroed": True})
    ],
    ("decode_attention_sass", lambda d: f"warp {_sass(d, {'half': False})['loops'][0]['instructions']} instructions"),
    ("decode_attention_sass", lambda d: f"{_sass(d, {})['registers']} registers"),
    ("decode_attention_sass", lambda d: f"{_sass(d, {'prefetch': True})['registers']} registers"),
    *[
        (stem, lambda d, run=run, key=key: _fmt(_bert_forward_ms(d, run, key), 3))
        for stem, run in (
            ("bert_gpu_h100_attention_tiles", "torch-cuda-fp8"),
            ("bert_gpu_h100_attention_tiles_fp8_again", "torch-cuda-fp8"),
            ("bert_gpu_h100_attention_tiles", "torch-cuda-bf16"),
        )
        for key in ("default", "attention_tiles_128x64_8w_3s")
    ],
    *[
        (f"packed_attention_gpu_h200_{v}", lambda d, m=m, e=e: _attention_us(d, m, e))
        for v, cases in (
            ("tail_masked", ((64, True), (64, False), (128, True), (128, False))),
            ("masked_every_block", ((64, True), (64, False), (128, True))),
        )
        for m, e in cases
    ],
    ("packed_attention_gpu_h200_tail_masked", lambda d: f"{d['flash_varlen_us_per_call']:.1f} µs"),
    *[
        (stem, lambda d, t=t: f"{next(k for k in d['kernels'] if k['tiling'] == t)['loops'][0]['instructions']}")
        for stem, t in (
            ("packed_attention_sass_masked_every_block", {}),
            ("packed_attention_sass", {"block_m": 64, "num_warps": 4}),
        )
    ],
    *[
        (stem, lambda d, run=run, key=key: _fmt(_bert_forward_ms(d, run, key), 3))
        for stem, run, key in (
            ("bert_gpu_h200_forward_tail_masked", "torch-cuda-fp8", "attention_tiles_128x64_8w_3s"),
            ("bert_gpu_h200_forward_masked_every_block", "torch-cuda-fp8", "default"),
            ("bert_gpu_h200_forward_tail_masked", "torch-cuda-bf16", "default"),
            ("bert_gpu_h200_forward_masked_every_block", "torch-cuda-bf16", "default"),
        )
    ],
    *[
        (stem, lambda d, key=key: _fmt(_bert_forward_ms(d, "torch-cuda-fp8", key), 3))
        for stem in (
            "bert_gpu_h100_forward_gelu_tiles",
            "bert_gpu_h100_forward_gelu_tiles_again",
            "bert_gpu_h100_forward_gelu_tiles_2persm",
        )
        for key in ("gelu_gemm_tiles_128x128x128_4w_3s_2persm", "gelu_gemm_tiles_128x256x128_8w_3s_1persm")
    ],
    *[
        (
            "bert_gpu_h100_forward_gelu_tiles_2persm",
            lambda d, key=key: _fmt(_bert_forward_ms(d, "torch-cuda-fp8", key), 3),
        )
        for key in ("gelu_gemm_tiles_64x256x128_4w_2s_2persm", "gelu_gemm_tiles_128x128x128_4w_2s_2persm")
    ],
    *[
        (stem, lambda d: f"{d['kernels'][0]['loops'][0]['instructions']:,} instructions")
        for stem in ("fp8_gemm_sass", "fp8_gemm_sass_clamped")
    ],
    *[
        (f"bert_gpu_h100_forward_epilogue{suffix}", lambda d: _fmt(_bert_forward_ms(d, "torch-cuda-fp8", "default"), 3))
        for suffix in ("", "_again", "_clamped", "_clamped_again")
    ],
    *[
        (stem, lambda d: f"{d['kernels'][0]['registers']} registers")
        for stem in ("fp8_gemm_sass", "fp8_gemm_sass_clamped")
    ],
    *[
        ("decode_attention_gpu_h200_registers_sweep", lambda d, k=k: _fastest(d, digits=1, **k))
        for k in (
            {"registers": 128},
            {"registers": False, "stages": 3},
            {"registers": 120},
            {"registers": 112, "stages": 3},
        )
    ],
    (
        "decode_attention_gpu_h200_registers",
        lambda d: f"{_fastest_tuning(d, registers=128)['us_per_layer']:.1f} against",
    ),
    ("decode_attention_gpu_h200_registers", lambda d: f"against {d['default']['us_per_layer']:.1f}"),
    ("decode_attention_sass_registers", lambda d: f"has {_sass(d, {})['loops'][0]['spills']} spill loads"),
    ("decode_attention_sass_registers", lambda d: f"among {_sass(d, {})['loops'][0]['instructions']} instructions"),
    ("decode_attention_sass_registers", lambda d: f"among {_sass(d, {'registers': 0})['loops'][0]['instructions']}"),
    ("llm70b_gpu_paged512_4096samples_registers128", lambda d: _fmt(d["offline"]["result"])),
    ("llm70b_gpu_paged512_4096samples_registers128", lambda d: _fmt(d["offline"]["steady_state"]["tokens_per_second"])),
    ("llm70b_gpu_paged512_4096samples_registers128", lambda d: _fmt(_full_set_projection(d))),
    (
        "llm70b_gpu_paged512_4096samples_registers128",
        lambda d: f"{d['ratio_to_published']['trtllm_h200_fp8_128_128']:.2f}×",
    ),
    *[
        (stem, lambda d: _fmt(d["offline"]["gpu_telemetry"]["sm_mhz"]["mean"]))
        for stem in ("llm70b_gpu_paged512_4096samples_registers128", "llm70b_gpu_paged512_4096samples_compact")
    ],
    ("llm70b_gpu_paged512_4096samples_ordered", lambda d: _fmt(d["offline"]["result"])),
    ("llm70b_gpu_paged512_4096samples_ordered", lambda d: _fmt(d["offline"]["steady_state"]["tokens_per_second"])),
    ("llm70b_gpu_paged512_4096samples_ordered", lambda d: f"{d['ratio_to_published']['trtllm_h200_fp8_128_128']:.2f}×"),
    ("llm70b_gpu_paged512_4096samples_ordered", lambda d: _fmt(_full_set_projection(d))),
    ("llm70b_gpu_paged512_4096samples_compact", lambda d: _fmt(d["offline"]["result"])),
    ("llm70b_gpu_paged512_4096samples_compact", lambda d: _fmt(d["offline"]["steady_state"]["tokens_per_second"])),
    ("llm70b_gpu_paged512_4096samples_compact", lambda d: f"{d['ratio_to_published']['trtllm_h200_fp8_128_128']:.2f}×"),
    ("llm70b_gpu_paged512_4096samples_compact", lambda d: _fmt(_full_set_projection(d))),
    ("llm70b_gpu_paged512_4096samples_compact", lambda d: f"{d['offline']['phases']['drain']['seconds']:.1f} s"),
    ("llm70b_gpu_paged512_4096samples_ordered", lambda d: f"{d['offline']['phases']['drain']['seconds']:.1f} s"),
    ("llm70b_gpu_paged768_4096samples_compact", lambda d: _fmt(d["offline"]["result"])),
    ("llm70b_gpu_paged512_server096_compact", lambda d: _fmt(d["server"][0]["ttft_ms"]["p99"])),
    ("llm70b_gpu_paged512_server096_compact", lambda d: d["server"][0]["validity"]),
    ("bert_proxy_train", lambda d: _fmt(d["fp32_dev"]["f1"], 2)),
    ("bert_proxy_train", lambda d: _fmt(d["steps"])),
    ("bert_proxy_train_bench", lambda d: _fmt(d["fp32_dev"]["f1"], 1)),
    ("bert_gpu_proxy", lambda d: _fmt(d["fp32"]["f1"], 2)),
    *[("bert_gpu_proxy", lambda d, p=p: _fmt(_run(d, f"torch-cuda-{p}")["f1"], 2)) for p in ("fp8", "bf16")],
    *[("bert_gpu_proxy", lambda d, p=p: _fmt(_run(d, f"torch-cuda-{p}")["f1_ratio"], 3)) for p in ("fp8", "bf16")],
    ("bert_gpu_proxy", lambda d: _fmt(_transformers_bf16_f1(d), 2)),
    ("bert_proxy_train_f1_65", lambda d: _fmt(d["fp32_dev"]["f1"], 2)),
    ("bert_proxy_train_f1_65", lambda d: _fmt(d["steps"])),
    ("bert_gpu_proxy_f1_65", lambda d: _fmt(d["fp32"]["f1"], 2)),
    *[
        ("bert_gpu_proxy_f1_65", lambda d, p=p, k=k, n=n: _fmt(_run(d, p)[k], n))
        for p in ("torch-cuda-fp8", "torch-cuda-bf16", "torch-cuda-fp16", "reference-fp32-bs1-pad384")
        for k, n in (("f1", 2), ("f1_ratio", 3), ("offline_samples_per_s", 0))
    ],
    ("bert_gpu_proxy_f1_65", lambda d: d["auto"]["chosen"]),
    ("bert_gpu_proxy_f1_65", lambda d: _fmt(d["auto"]["candidates"][1]["f1"], 2)),
    ("bert_gpu_proxy_f1_65", lambda d: _fmt(d["auto"]["candidates"][0]["f1"], 2)),
    ("bert_gpu_proxy_f1_65", lambda d: f"{100 * d['auto']['candidates'][1]['ratio']:.2f} %"),
    ("bert_proxy_train_f1_98", lambda d: _fmt(d["fp32_dev"]["f1"], 2)),
    ("bert_proxy_train_f1_98", lambda d: _fmt(d["steps"])),
    ("bert_gpu_proxy_f1_98", lambda d: _fmt(d["fp32"]["f1"], 2)),
    *[
        ("bert_gpu_proxy_f1_98", lambda d, p=p, k=k, n=n: _fmt(_run(d, p)[k], n))
        for p in ("torch-cuda-fp8", "torch-cuda-bf16", "transformers-bf16", "reference-fp32-bs1-pad384")
        for k, n in (("f1", 2), ("offline_samples_per_s", 0))
    ],
    *[("bert_gpu_proxy_f1_98", lambda d, p=p: _fmt(_run(d, p)["f1_ratio"], 4)) for p in ("torch-cuda-fp8",)],
    ("bert_gpu_proxy_f1_98", lambda d: _fmt(_run(d, "torch-cuda-fp8")["fp8_plan"]["search"][0]["f1"], 2)),
    ("bert_gpu_proxy_f1_98", lambda d: f"{100 * d['auto']['candidates'][1]['ratio']:.2f} %"),
    ("bert_gpu_proxy_f1_98", lambda d: f"{d['auto']['candidates'][1]['rounds'][0]['margin']:.2f} F1 points"),
    ("bert_gpu_proxy_f1_98", lambda d: f"standard error of {d['auto']['candidates'][1]['rounds'][0]['stderr']:.2f}"),
    ("bert_gpu_proxy_f1_98", lambda d: f"grew to {_fmt(d['auto']['candidates'][1]['questions'])} questions"),
    ("bert_proxy_train_h100", lambda d: _fmt(d["fp32_dev"]["f1"], 2)),
    ("bert_proxy_train_h100", lambda d: _fmt(d["steps"])),
    ("bert_gpu_proxy_h100", lambda d: _fmt(d["fp32"]["f1"], 2)),
    (
        "bert_gpu_proxy_h100",
        lambda d: f"{_fmt(_run(d, 'torch-cuda-fp8')['f1'], 2)} = {_run(d, 'torch-cuda-fp8')['f1_ratio']:.4f}",
    ),
    *[
        ("bert_gpu_proxy_h100", lambda d, p=p: _fmt(_run(d, p)["f1"], 2))
        for p in ("torch-cuda-bf16", "transformers-bf16")
    ],
    *[
        ("bert_gpu_proxy_h100", lambda d, p=p: _fmt(_run(d, p)["offline_samples_per_s"]))
        for p in ("transformers-bf16", "reference-fp32-bs1-pad384")
    ],
    ("bert_gpu_proxy_h100", lambda d: f"{100 * d['auto']['candidates'][1]['ratio']:.2f} %"),
    ("bert_gpu_proxy_h100", lambda d: _fmt(d["auto"]["fp8_plan"]["search"][0]["f1"], 2)),
    ("bert_proxy_cli_h200", lambda d: _fmt(d["runs"][0]["offline_samples_per_s"])),
    ("bert_proxy_cli_h200", lambda d: f"F1 {d['runs'][0]['accuracy_txt']['f1']:.2f} = {d['runs'][0]['f1_ratio']:.4f}"),
    ("bert_proxy_cli_h200", lambda d: _fmt(d["runs"][3]["server_qps"])),
    ("bert_proxy_cli_h200", lambda d: _fmt(d["runs"][2]["offline_samples_per_s"])),
    ("bert_proxy_cli_h200", lambda d: f"{d['server_to_offline']:.2f} of"),
    ("auto_check_cpu", lambda d: _fmt(d["candidates"]["fp8"]["differing_questions"])),
    ("auto_check_cpu", lambda d: _fmt(d["questions"])),
    ("auto_check_cpu", lambda d: _fmt(d["f1"]["fp32"])),
    *[
        ("auto_check_cpu", lambda d, o=o, k=k: f"{100 * _offset(d, 'fp8', o)[k]:.1f} %")
        for o in (-0.5, -1.0, -0.1)
        for k in ("fixed_wrong", "growing_wrong")
    ],
    ("auto_check_cpu", lambda d: _fmt(_offset(d, "fp8", -0.5)["growing_questions_mean"])),
]


def _offset(doc: dict, candidate: str, offset: float) -> dict:
    """auto_check's row for one candidate and one target offset."""
    return next(r for r in doc["candidates"][candidate]["offsets"] if r["offset_points"] == offset)


def _fastest_tuning(d: dict, **match) -> dict:
    """The fastest tuning among those with `match`'s settings (a setting a tuning leaves out counts as False)."""
    return min(
        (t for t in d["tunings"] if all(t.get(k, False) == v for k, v in match.items())),
        key=lambda t: t["us_per_layer"],
    )


def _merge_ms(d) -> str:
    """The decode step's split merge (kernels/decode_attention.py's _merge_kernel), ms a step, from a profile."""
    (ms,) = [k["ms"] for k in d["profile"]["decode_kernels"] if k["name"] == "_merge_kernel"]
    return f"{ms:g} ms"


def _fastest(d: dict, digits: int = 0, **match) -> str:
    """The fastest tuning's µs per layer among those with `match`'s settings, as the README rounds it."""
    return f"{_fastest_tuning(d, **match)['us_per_layer']:.{digits}f} µs"


@pytest.mark.parametrize("stem, figure", FIGURES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(FIGURES)])
def test_readme_quotes_the_json_it_links(stem, figure):
    section = _readme_performance()
    assert f"bench/results/{stem}.json" in section, f"README's Performance section does not link {stem}.json"
    value = figure(_load(RESULTS / f"{stem}.json"))
    assert value in section, f"README does not quote {value} from {stem}.json"


def test_every_result_the_docs_link_exists():
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for name in re.findall(r"bench/results/([\w.-]+\.json)", doc.read_text()):
            assert (RESULTS / name).is_file(), f"{doc.name} links bench/results/{name}, which does not exist"
    for doc in sorted((REPO / "docs").glob("*.md")):  # the docs' tables name their result files bare
        for name in re.findall(r"`(\w+\.json)`", doc.read_text()):
            if name.startswith(("ray_", "bert_gpu", "llm_gpu", "checker_speed", "pack_", "package_", "score_")):
                assert (RESULTS / name).is_file(), f"{doc.name} names {name}, which bench/results lacks"


def test_gpu_check_summary_prints_each_results_headline(tmp_path):
    import shutil

    shutil.copy(RESULTS / "bert_gpu_h100.json", tmp_path / "gpu_check_bert.json")
    shutil.copy(RESULTS / "llm_gpu.json", tmp_path / "gpu_check_llm.json")
    (tmp_path / "checker_speed_device.json").write_text("{not json")  # a cut-short file is skipped
    proc = subprocess.run(
        [sys.executable, "bench/gpu_check_summary.py", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("gpu_check_bert.json: python bench/bert_gpu.py")
    assert "  torch-cuda-fp8: Offline 6377.53 samples/s, Server best VALID 6343, F1 vs fp32 65.491" in lines
    assert "  subtool fp8, 256 slots: 5578.75 tokens/s VALID" in lines
    assert not any("checker_speed_device" in line for line in lines)
