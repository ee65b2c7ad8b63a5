"""What a checkpoint needs on the continuous engine, from config.json alone (checkpoint_memory.py), and which
engine a run picks before anything loads (sut_torch.choose_engine)."""

from __future__ import annotations

import pytest

from subtool.errors import SubtoolError
from subtool.runner.llm.checkpoint_memory import (
    GIB,
    Shape,
    check_fits_streaming,
    kv_bytes_per_token,
    plan_slots,
    weight_bytes,
)

# Llama-2-70B's architecture (its config.json)
LLAMA2_70B = {
    "model_type": "llama",
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
}
H200_FREE = 139 * GIB


def test_llama2_70b_weighs_what_its_68_98_billion_parameters_do():
    shape = Shape.of(LLAMA2_70B)
    params = 80 * (shape.projection_params() + 2 * 8192) + 2 * 32000 * 8192 + 8192
    assert params == 68_976_648_192
    assert weight_bytes(shape, False, 2) == 2 * params
    fp8 = weight_bytes(shape, True, 2)
    assert 0.5 * 2 * params < fp8 < 0.52 * 2 * params  # e4m3 projections, bf16 embeddings and head, fp32 scales
    assert kv_bytes_per_token(shape, True, 2) == 160 * 1024 and kv_bytes_per_token(shape, False, 2) == 320 * 1024


def test_a_bf16_70b_does_not_fit_one_h200_and_fp8_is_suggested():
    with pytest.raises(SubtoolError) as err:
        check_fits_streaming(
            "/ckpt",
            LLAMA2_70B,
            precision="bf16",
            kv_fp8=False,
            max_len=2048,
            min_slots=32,
            free=H200_FREE,
            where="cuda:0",
        )
    assert err.value.rule == "model.too_large" and "--precision fp8" in err.value.hint
    assert "bf16 weights 128.5 GiB" in err.value.message and "139.0 GiB free on cuda:0" in err.value.message
    check_fits_streaming(
        "/ckpt", LLAMA2_70B, precision="fp8", kv_fp8=True, max_len=2048, min_slots=32, free=H200_FREE, where="cuda:0"
    )
    with pytest.raises(SubtoolError, match="fp8 weights") as err:  # an 80 GB GPU: not even in fp8 with 32 slots
        check_fits_streaming(
            "/ckpt", LLAMA2_70B, precision="fp8", kv_fp8=True, max_len=2048, min_slots=32, free=79 * GIB, where="cuda:1"
        )
    assert "--precision fp8" not in err.value.hint
    with pytest.raises(SubtoolError) as err:  # on CPU, fp8 is no way out: it runs on a GPU only
        check_fits_streaming(
            "/c", LLAMA2_70B, precision="fp32", kv_fp8=False, max_len=2048, min_slots=32, free=H200_FREE, where="RAM"
        )
    assert err.value.hint.startswith("--backend torch-cuda --precision fp8")


def test_slots_fill_the_memory_left_unless_asked_and_never_exceed_the_samples():
    per_token, max_len, work = 160 * 1024, 2048, 7 * GIB
    free = 70 * GIB
    auto = plan_slots(free, per_token, max_len, work, asked=32, auto=True, samples=24576, kv_fp8=True)
    reserved = work + GIB // 2 + int(0.05 * free)
    assert auto.slots == auto.fit == (free - reserved) // (per_token * max_len)
    assert 150 < auto.slots < 200 and "KV cache fp8, 160 KiB per token × 2,048 tokens per slot" in auto.line()
    asked = plan_slots(free, per_token, max_len, work, asked=64, auto=False, samples=24576, kv_fp8=True)
    assert asked.slots == 64
    too_many = plan_slots(free, per_token, max_len, work, asked=5000, auto=False, samples=24576, kv_fp8=True)
    assert too_many.slots == auto.fit
    few = plan_slots(free, per_token, max_len, work, asked=32, auto=True, samples=10, kv_fp8=True)
    assert few.slots == 10
    with pytest.raises(SubtoolError, match="no room for even one sequence"):
        plan_slots(8 * GIB, per_token, max_len, work, asked=1, auto=True, samples=10, kv_fp8=True)


def test_a_paged_cache_shares_the_same_memory_among_more_slots():
    per_token, max_len, work = 160 * 1024, 2048, 7 * GIB
    free = 70 * GIB
    whole = plan_slots(free, per_token, max_len, work, asked=32, auto=True, samples=24576, kv_fp8=True)
    paged = plan_slots(free, per_token, max_len, work, asked=32, auto=True, samples=24576, kv_fp8=True, typical=796)
    pool = (free - whole.reserved) // per_token
    assert paged.pages == pool // 64 and paged.fit == whole.fit
    assert paged.slots == pool // 796 and paged.slots > 2 * whole.slots  # llama2-70b: 284-token prompts
    assert f"{paged.pages:,} pages of 64 tokens" in paged.line() and f"shared by {paged.slots} slots" in paged.line()
    short = plan_slots(free, per_token, max_len, work, asked=32, auto=True, samples=24576, kv_fp8=True, typical=40)
    assert short.slots == 1024  # MAX_PAGED_SLOTS
    asked = plan_slots(free, per_token, max_len, work, asked=700, auto=False, samples=24576, kv_fp8=True, typical=796)
    assert asked.slots == 700  # more than whole rows fit: the pool is shared
    huge = plan_slots(free, per_token, max_len, work, asked=32, auto=True, samples=24576, kv_fp8=True, typical=10**6)
    assert huge.slots == whole.fit  # never fewer than whole rows would give


def test_a_small_model_takes_only_the_pages_its_slots_can_hold():
    """The tiny llama demo on an H200 (2 layers, 2 KV heads of 16, bf16: 256 B a token) took a pool of 8.6 million
    pages, 132 GiB, for 1,024 slots of 97 tokens, and said "0 KiB per token"."""
    per_token, max_len, free = 256, 97, 139 * GIB
    plan = plan_slots(free, per_token, max_len, 8 * GIB, asked=32, auto=True, samples=24576, kv_fp8=False, typical=56)
    assert plan.slots == 1024 and plan.pages == 1024 * 2  # two 64-token pages hold a 97-token sequence
    assert "KV cache bf16/fp16, 256 B per token, paged: 2,048 pages of 64 tokens" in plan.line()
    few = plan_slots(free, per_token, max_len, 8 * GIB, asked=32, auto=True, samples=10, kv_fp8=False, typical=56)
    assert few.slots == 10 and few.pages == 20
    whole = plan_slots(free, 1536, max_len, 8 * GIB, asked=32, auto=True, samples=24576, kv_fp8=False)
    assert "2 KiB per token × 97 tokens per slot" in whole.line()


def _gen(beams=1):
    from subtool.runner.llm.workload import Generation

    return Generation(max_new_tokens=8, min_new_tokens=1, num_beams=beams, output_dtype="int32", token_latencies=True)


FP8 = {**LLAMA2_70B, "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}


@pytest.mark.parametrize(
    "engine,device,config,beams,streams,expected",
    [
        ("auto", "cuda", LLAMA2_70B, 1, True, "continuous"),
        ("auto", "cpu", LLAMA2_70B, 1, True, "batched"),
        ("auto", "cpu", FP8, 1, True, "continuous"),  # only the streaming loader reads it: dequantized on CPU
        ("auto", "cuda", {"model_type": "gptj"}, 4, True, "batched"),
        ("auto", "cuda", {**LLAMA2_70B, "hidden_act": "gelu"}, 1, True, "batched"),
        ("continuous", "cpu", LLAMA2_70B, 1, False, "continuous"),
        ("continuous", "cuda", {"model_type": "gptj"}, 4, True, "beam search"),
        ("batched", "cuda", FP8, 1, True, "pre-quantized"),
        ("auto", "cuda", FP8, 1, False, "safetensors files only"),  # .bin weights: nothing streams them
        ("fast", "cuda", LLAMA2_70B, 1, True, "unknown engine"),
    ],
)
def test_the_engine_is_chosen_from_the_config_before_loading(engine, device, config, beams, streams, expected):
    from subtool.runner.llm.sut_torch import choose_engine

    if expected in ("continuous", "batched"):
        assert choose_engine(engine, device, config, _gen(beams), streams) == expected
    else:
        with pytest.raises(SubtoolError, match=expected) as err:
            choose_engine(engine, device, config, _gen(beams), streams)
        assert err.value.rule == ("model.weights" if "safetensors" in expected else "run.engine")
