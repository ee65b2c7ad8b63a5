"""A Llama model without its decoder weights: what the continuous engine needs besides the layers' projections.

Loading a 70B checkpoint as a transformers model first would hold every bf16 weight at once (140 GB). Instead the
model is built on the meta device (no memory), and only the parts the engine calls as modules — the embedding,
the final norm, the LM head and the rotary embedding — are made real on the target device, empty, for a loader
(or a benchmark's generator) to fill. The decoder layers stay on meta: the engine reads their shapes, and their
weights come to it as `layer_weights` (engine.py's per-layer dict), built one layer at a time.
"""

from __future__ import annotations

import torch


def meta_model(config, device, dtype):
    """A transformers causal LM for `config` whose embedding, final norm and LM head are empty tensors on `device`
    in `dtype` (to be filled), whose rotary embedding is real, and whose decoder layers are on the meta device."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, torch_dtype=dtype)
    inner = model.model
    for module in (inner.embed_tokens, inner.norm, model.lm_head):
        module.to_empty(device=device)
    if getattr(config, "tie_word_embeddings", False):
        model.lm_head.weight = inner.embed_tokens.weight
    # its inverse frequencies are computed at construction: on the CPU and then moved, as for a model loaded on the
    # CPU and moved to the GPU (computed on the GPU, pow rounds differently and the rotary tables differ in the
    # last bit: enough to change greedy tokens a few steps in)
    with torch.device("cpu"):
        inner.rotary_emb = type(inner.rotary_emb)(config=config).to(device)
    return model.eval()
