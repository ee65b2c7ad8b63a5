"""The packed inference forward against transformers' BertForQuestionAnswering on the same weights (CPU, fp32)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from subtool.errors import SubtoolError  # noqa: E402
from subtool.runner.bert.packed_model import PackedBert  # noqa: E402
from subtool.runner.bert.packed_plan import pack_inputs, sequence_capacity  # noqa: E402
from subtool.runner.bert.squad import MAX_SEQ_LENGTH  # noqa: E402


def run_packed(model, features, indices, bucket):
    p = pack_inputs(features.input_ids, features.segment_ids, features.seq_lengths, np.asarray(indices), bucket)
    out = torch.full((sequence_capacity(bucket) * MAX_SEQ_LENGTH + 1, 2), float("nan"))  # poisoned
    t = torch.from_numpy
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
    return out[: p.sequences * MAX_SEQ_LENGTH].view(p.sequences, MAX_SEQ_LENGTH, 2).numpy()


@pytest.fixture(scope="module")
def packed_fp32(tiny_checkpoint):
    return PackedBert(tiny_checkpoint, device="cpu", precision="fp32")


def test_packed_forward_matches_transformers(packed_fp32, small_features, hf_logits):
    f = small_features.features
    indices = list(range(len(f)))
    out = run_packed(packed_fp32, f, indices, 45 * MAX_SEQ_LENGTH)
    for row, i in enumerate(indices):
        n = int(f.seq_lengths[i])
        np.testing.assert_allclose(out[row, :n], hf_logits[i], rtol=1e-4, atol=1e-5)
        assert not out[row, n:].any()  # beyond the sequence: zeros, as the reference pads


def test_a_samples_logits_do_not_depend_on_its_batch(packed_fp32, small_features, rng):
    f = small_features.features
    alone = {i: run_packed(packed_fp32, f, [i], 512)[0] for i in (0, 7, 30)}
    for _ in range(3):
        others = rng.sample(range(len(f)), 8)
        batch = [i for i in others if i not in alone] + [0, 7, 30]
        rng.shuffle(batch)
        out = run_packed(packed_fp32, f, batch, 4096)
        for i in alone:
            np.testing.assert_allclose(out[batch.index(i)], alone[i], rtol=1e-5, atol=1e-6)


def test_a_float32_residual_stream_gives_the_same_logits(tiny_checkpoint, small_features, hf_logits):
    """The residual kept apart from the next products' input (fp16's accuracy-first path) changes no answer."""
    model = PackedBert(tiny_checkpoint, device="cpu", precision="fp32", residual_fp32=True)
    assert model.residual_fp32
    f = small_features.features
    out = run_packed(model, f, [0, 1, 2], 2048)
    for row in range(3):
        n = int(f.seq_lengths[row])
        np.testing.assert_allclose(out[row, :n], hf_logits[row], rtol=1e-4, atol=1e-5)


def test_unsupported_precision_is_refused_and_fp8_on_cpu_is_emulated(tiny_checkpoint):
    with pytest.raises(SubtoolError, match="precision 'int4' is not supported"):
        PackedBert(tiny_checkpoint, device="cpu", precision="int4")
    model = PackedBert(tiny_checkpoint, device="cpu", precision="fp8")  # e4m3 round trips in torch
    assert model.fp8_emulated and model.layer_ops == [frozenset({"qkv", "o", "ff1", "ff2"})] * model.shape.layers


def test_checkpoint_without_a_qa_head_is_refused(tmp_path, tiny_checkpoint):
    import shutil

    from safetensors.torch import load_file, save_file

    bad = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, bad)
    sd = load_file(str(bad / "model.safetensors"))
    save_file({k: v for k, v in sd.items() if not k.startswith("qa_outputs")}, str(bad / "model.safetensors"))
    with pytest.raises(SubtoolError, match="no tensor qa_outputs.weight"):
        PackedBert(bad, device="cpu", precision="fp32")


def test_the_mlperf_reference_checkpoint_layout_loads_the_same_weights(
    tmp_path, tiny_checkpoint, small_features, hf_logits
):
    """bert_config.json + model.pytorch (a state dict, here wrapped as {"model": ...}) as the reference ships it."""
    import json
    import shutil

    from safetensors.torch import load_file

    ref = tmp_path / "reference"
    ref.mkdir()
    shutil.copy(tiny_checkpoint / "vocab.txt", ref / "vocab.txt")
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    google = {
        k: cfg[k]
        for k in (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "vocab_size",
            "max_position_embeddings",
            "type_vocab_size",
            "hidden_act",
        )
    }
    (ref / "bert_config.json").write_text(json.dumps(google))
    torch.save({"model": load_file(str(tiny_checkpoint / "model.safetensors"))}, ref / "model.pytorch")
    f = small_features.features
    out = run_packed(PackedBert(ref, device="cpu", precision="fp32"), f, [0, 1, 2], 2048)
    for row in range(3):
        n = int(f.seq_lengths[row])
        np.testing.assert_allclose(out[row, :n], hf_logits[row], rtol=1e-4, atol=1e-5)
