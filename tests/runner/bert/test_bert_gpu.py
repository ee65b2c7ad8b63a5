"""The fast SUT on a real GPU: graphs, Triton and flash attention, bf16/fp8 against fp32. Skipped without CUDA."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

from subtool.runner.bert.packed_model import PackedBert  # noqa: E402
from subtool.runner.bert.packed_plan import pack_inputs, sequence_capacity  # noqa: E402
from subtool.runner.bert.squad import MAX_SEQ_LENGTH  # noqa: E402

FP8 = torch.cuda.get_device_capability() >= (8, 9)
pytestmark = pytest.mark.gpu


def forward(model, f, indices, bucket):
    p = pack_inputs(f.input_ids, f.segment_ids, f.seq_lengths, np.asarray(indices), bucket)
    out = torch.full((sequence_capacity(bucket) * MAX_SEQ_LENGTH + 1, 2), float("nan"), device="cuda")
    t = lambda a: torch.from_numpy(a).cuda()  # noqa: E731
    with torch.inference_mode():
        model.forward(
            t(p.input_ids),
            t(p.segment_ids),
            t(p.position_ids),
            t(p.out_rows),
            t(p.cu_seqlens),
            out,
            sequences=p.sequences,
        )
    return out[: p.sequences * MAX_SEQ_LENGTH].view(p.sequences, MAX_SEQ_LENGTH, 2).cpu().numpy()


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_kernels_match_torch():
    from subtool.runner.kernels.fused_norm import add_layernorm, rowwise_fp8

    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(333, 1024, device="cuda", generator=g).bfloat16()
    r = torch.randn(333, 1024, device="cuda", generator=g).bfloat16()
    w = torch.randn(1024, device="cuda", generator=g)
    b = torch.randn(1024, device="cuda", generator=g)
    y, q, s, _ = add_layernorm(x, r, w, b, 1e-12, quantize=FP8)
    ref = torch.nn.functional.layer_norm(x.float() + r.float(), (1024,), w, b, 1e-12)
    assert rel(y.float().cpu().numpy(), ref.cpu().numpy()) < 1e-2
    if FP8:
        assert rel((q.float() * s).cpu().numpy(), y.float().cpu().numpy()) < 0.05
        h = torch.randn(200, 4096, device="cuda", generator=g).bfloat16()
        q, s = rowwise_fp8(h, bias=b.repeat(4).bfloat16(), gelu=True)
        ref = torch.nn.functional.gelu(h.float() + b.repeat(4).bfloat16().float())
        assert rel((q.float() * s).cpu().numpy(), ref.cpu().numpy()) < 0.05


@pytest.mark.parametrize("precision,tolerance", [("bf16", 0.03), ("fp16", 0.01)] + ([("fp8", 0.12)] if FP8 else []))
def test_low_precision_forward_tracks_fp32(tiny_checkpoint, small_features, precision, tolerance):
    f = small_features.features
    ref = forward(PackedBert(tiny_checkpoint, "cuda", "fp32"), f, range(len(f)), 45 * MAX_SEQ_LENGTH)
    fast = PackedBert(tiny_checkpoint, "cuda", precision)
    assert fast.attention == "triton"
    out = forward(fast, f, range(len(f)), 45 * MAX_SEQ_LENGTH)
    assert np.isfinite(out).all()
    assert rel(out, ref) < tolerance


def test_triton_and_flash_attention_give_the_same_forward(tiny_checkpoint, small_features):
    f = small_features.features
    model = PackedBert(tiny_checkpoint, "cuda", "bf16")
    if not model.flash:
        pytest.skip("this torch build has no flash varlen kernel")
    assert model.attention == "triton"
    ours = forward(model, f, range(len(f)), 45 * MAX_SEQ_LENGTH)
    model.attention = "flash"
    theirs = forward(model, f, range(len(f)), 45 * MAX_SEQ_LENGTH)
    assert rel(ours, theirs) < 0.01


def test_graph_replay_equals_the_eager_forward(tiny_checkpoint, small_features):
    from subtool.runner.bert.packed_plan import choose_shape, token_buckets
    from subtool.runner.bert.sut_cuda import GraphExecutor

    f = small_features.features
    model = PackedBert(tiny_checkpoint, "cuda", "bf16")
    ex = GraphExecutor(model, token_buckets(4096), slots=2)
    for n, indices in enumerate(([0, 1, 2], [5], list(range(6, 14)))):
        tokens = int(f.seq_lengths[indices].sum())
        bucket, cap = choose_shape(tokens, len(indices), ex.buckets)
        p = pack_inputs(f.input_ids, f.segment_ids, f.seq_lengths, np.asarray(indices), bucket, cap)
        slot = ex.slots[n % 2]
        ex.submit(slot, p)
        ex.wait(slot)
        got = ex.outputs(slot, len(indices)).reshape(len(indices), MAX_SEQ_LENGTH, 2)
        np.testing.assert_allclose(got, forward(model, f, indices, bucket), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])  # fp16 keeps the residual in float32: the head reads it
def test_the_head_in_the_last_layernorm_gives_the_products_logits(tiny_checkpoint, small_features, precision):
    f = small_features.features
    model = PackedBert(tiny_checkpoint, "cuda", precision)
    assert model.kernels == "triton" and model.fused_head
    fused = forward(model, f, range(12), 12 * MAX_SEQ_LENGTH)
    model.fused_head = False
    product = forward(model, f, range(12), 12 * MAX_SEQ_LENGTH)
    assert rel(fused, product) < 1e-4
    assert not np.any(fused[np.arange(MAX_SEQ_LENGTH)[None, :] >= f.seq_lengths[:12, None]])  # padding stays 0


@pytest.mark.parametrize("precision", ["bf16", "fp8"] if FP8 else ["bf16"])
def test_the_embedding_gathers_in_the_first_layernorm_match_torchs(tiny_checkpoint, small_features, precision):
    f = small_features.features
    model = PackedBert(tiny_checkpoint, "cuda", precision)
    assert model.kernels == "triton" and model.fused_embedding
    fused = forward(model, f, range(12), 12 * MAX_SEQ_LENGTH)
    model.fused_embedding = False
    assert rel(fused, forward(model, f, range(12), 12 * MAX_SEQ_LENGTH)) < 0.01


def test_sut_answers_every_sample_once_on_the_gpu(tmp_path, tiny_checkpoint, small_features, hf_logits):
    import mlperf_loadgen as lg

    from subtool.runner.bert.sut_cuda import TorchCudaBertSUT
    from subtool.runner.bert.workload import BertQSL, read_accuracy_log
    from subtool.runner.harness import run_loadgen

    f = small_features.features
    sut = TorchCudaBertSUT(tiny_checkpoint, f, precision="bf16", token_budget=1024)
    qsl = BertQSL(f, len(f))
    s = lg.TestSettings()
    s.scenario = lg.TestScenario.Offline
    s.offline_expected_qps = 1000
    try:
        run_loadgen(sut.handle, qsl.handle, s, scenario="Offline", mode="accuracy", outdir=tmp_path)
    finally:
        sut.stop()
        qsl.destroy()
    entries = json.loads((tmp_path / "mlperf_log_accuracy.json").read_text())
    assert sorted(e["qsl_idx"] for e in entries) == list(range(len(f)))
    logits = read_accuracy_log(tmp_path / "mlperf_log_accuracy.json")
    ref = np.concatenate([hf_logits[i] for i in range(len(f))])
    got = np.concatenate([logits[i][: int(f.seq_lengths[i])] for i in range(len(f))])
    assert rel(got, ref) < 0.03


@pytest.mark.skipif(not FP8, reason="needs an fp8 GPU")
def test_fp8_on_the_gpu_matches_its_cpu_emulation(tiny_checkpoint, small_features):
    """The CPU tests judge calibration and fallback on the emulation; it must compute what the GPU computes."""
    from subtool.runner.bert.fp8_plan import eval_logits

    f = small_features.features
    idx = list(range(len(f)))
    gpu = eval_logits(PackedBert(tiny_checkpoint, "cuda", "fp8"), f, idx, 4096)
    cpu = eval_logits(PackedBert(tiny_checkpoint, "cpu", "fp8"), f, idx, 4096)
    ref = eval_logits(PackedBert(tiny_checkpoint, "cpu", "fp32"), f, idx, 4096)
    cat = lambda d: np.concatenate([d[i] for i in idx])  # noqa: E731
    assert rel(cat(gpu), cat(cpu)) < 0.5 * rel(cat(gpu), cat(ref)) + 0.02


@pytest.mark.skipif(not FP8, reason="needs an fp8 GPU")
def test_fp8_layer_fallback_and_calibrated_scales_run_in_graphs(tiny_checkpoint, small_features):
    from subtool.runner.bert import fp8_plan
    from subtool.runner.bert.packed_plan import choose_shape, token_buckets
    from subtool.runner.bert.sut_cuda import GraphExecutor

    f = small_features.features
    ref = forward(PackedBert(tiny_checkpoint, "cuda", "fp32"), f, range(len(f)), 45 * MAX_SEQ_LENGTH)
    model = PackedBert(tiny_checkpoint, "cuda", "fp8")
    scales = fp8_plan.calibrate(model, f, range(0, len(f), 2), 4096)
    assert model.static_scales() == pytest.approx(scales) and model.scale_source.startswith("calibrated")
    fp8_plan.apply_fallback(model, [0])  # layer 0 in bf16, layer 1 in fp8: the LayerNorms quantize for layer 1 only
    assert model.layer_ops[0] == frozenset() and model.layer_ops[1]
    out = forward(model, f, range(len(f)), 45 * MAX_SEQ_LENGTH)
    assert np.isfinite(out).all() and rel(out, ref) < 0.12
    ex = GraphExecutor(model, token_buckets(4096), slots=1)
    indices = list(range(6, 14))
    bucket, cap = choose_shape(int(f.seq_lengths[indices].sum()), len(indices), ex.buckets)
    p = pack_inputs(f.input_ids, f.segment_ids, f.seq_lengths, np.asarray(indices), bucket, cap)
    ex.submit(ex.slots[0], p)
    ex.wait(ex.slots[0])
    got = ex.outputs(ex.slots[0], len(indices)).reshape(len(indices), MAX_SEQ_LENGTH, 2)
    np.testing.assert_allclose(got, forward(model, f, indices, bucket), rtol=2e-2, atol=2e-2)


@pytest.mark.skipif(not FP8, reason="needs an fp8 GPU")
def test_an_fp8_model_with_every_layer_in_bf16_computes_what_the_bf16_model_does(tiny_checkpoint, small_features):
    # the layers an fp8 plan moves to bf16 run the bf16 model's products, GELU in the product's epilogue included
    # (without it they ran a separate GELU pass: 8 % slower than bf16 with every layer moved)
    from subtool.runner.bert.fp8_plan import apply_fallback

    f = small_features.features
    fp8 = PackedBert(tiny_checkpoint, device="cuda", precision="fp8")
    apply_fallback(fp8, range(fp8.shape.layers))
    bf16 = PackedBert(tiny_checkpoint, device="cuda", precision="bf16")
    assert fp8.fused_gelu and bf16.fused_gelu
    indices = list(range(len(f)))
    np.testing.assert_array_equal(
        forward(fp8, f, indices, 45 * MAX_SEQ_LENGTH), forward(bf16, f, indices, 45 * MAX_SEQ_LENGTH)
    )


@pytest.mark.skipif(not FP8, reason="needs an fp8 GPU")
def test_the_fp8_gelu_products_tiles_change_its_speed_not_its_answers(tiny_checkpoint, small_features):
    # bench/bert_gpu.py's GEMM tile variants: smaller tiles, two persistent programs a multiprocessor
    f = small_features.features
    model = PackedBert(tiny_checkpoint, "cuda", "fp8")
    want = forward(model, f, range(len(f)), 45 * MAX_SEQ_LENGTH)
    model.gelu_gemm_tiles = {"block_m": 128, "block_n": 128, "block_k": 64, "num_warps": 4, "num_stages": 4}
    model.gelu_gemm_tiles["per_sm"] = 2
    got = forward(model, f, range(len(f)), 45 * MAX_SEQ_LENGTH)
    assert np.isfinite(got).all() and rel(got, want) < 0.02


def test_auto_on_the_gpu_decides_before_the_run_and_reports_why(tiny_checkpoint, small_features, capsys):
    from subtool.runner.bert.workload import workload
    from subtool.runner.workload import LoadedData, SutConfig

    w = workload("bert-99")
    assert w.resolve_precision("torch-cuda", "auto") == "auto"  # decided once data and weights are loaded
    data = LoadedData(small_features, len(small_features.features), "small", "0")
    sut = w.make_sut(
        tiny_checkpoint, data, SutConfig(backend="torch-cuda", precision="auto", extra={"token_budget": 4096})
    )
    try:
        record = sut.stats()["precision"]
        assert sut.precision == record["chosen"] and sut.precision in ("fp8", "bf16", "fp16", "fp32")
        assert record["why"].startswith(f"precision auto → {sut.precision}: ")
        assert record["why"] in capsys.readouterr().out
        assert record["candidates"][0]["precision"] == "fp32"  # the reference every candidate was scored against
        plan = record["fp8_plan"]  # the system description's weight types follow the plan, not the name
        want = sut.precision if plan is None else ("fp8, bf16" if plan["bf16_layers"] else "fp8")
        assert sut.weight_data_types == want
    finally:
        sut.stop()


@pytest.mark.parametrize("batch_size, budget", [(None, 16384), (8, 8 * 384)])
def test_the_run_commands_token_budget_follows_batch_size_only_when_given(
    tiny_checkpoint, small_features, batch_size, budget
):
    """`subtool run --backend torch-cuda` without --batch-size batches 16,384 tokens (the bench's budget); with
    --batch-size N, N × 384."""
    from subtool.runner.bert.workload import workload
    from subtool.runner.workload import LoadedData, SutConfig

    data = LoadedData(small_features, len(small_features.features), "small", "0")
    given = batch_size is not None
    config = SutConfig(backend="torch-cuda", precision="bf16", batch_size=batch_size or 32, batch_size_given=given)
    sut = workload("bert-99").make_sut(tiny_checkpoint, data, config)
    try:
        assert sut.stats()["token_budget"] == budget
    finally:
        sut.stop()
