"""Continuous batching for Llama checkpoints in plain PyTorch: a fixed set of slots over one preallocated KV cache.

Every decode step advances all slots at once (one token each; on CUDA the step is a captured CUDA graph). A slot
whose sequence ends (EOS or the length limit) is answered at once and refilled with the next waiting prompt,
which is prefilled on its own and writes its keys and values into that slot's rows of the cache. The model's own
modules (projections, norms, MLP, rotary embedding) do the arithmetic, so rope scaling and GQA follow the
checkpoint's config; only the attention bookkeeping is ours.
"""

from __future__ import annotations

from collections import deque

import numpy as np


def supports(model, generation) -> str | None:
    """Why the engine cannot run this model (None when it can)."""
    if generation.num_beams > 1:
        return "beam search (gptj) needs the batched engine"
    if getattr(model.config, "model_type", None) != "llama":
        return f"model_type {getattr(model.config, 'model_type', None)!r} (only llama)"
    devices = set(getattr(model, "hf_device_map", {}).values())
    if len(devices) > 1:
        return "the model is spread over several devices"
    return None


class ContinuousEngine:
    def __init__(self, model, *, slots: int, max_len: int, eos_ids: list[int], generation, prompts=None):
        import torch

        self.torch = torch
        self.model = model
        self.generation = generation
        self.eos_ids = list(eos_ids)
        self.slots = int(slots)
        self.max_len = int(max_len)
        inner = model.model
        self.embed, self.layers, self.norm, self.lm_head = inner.embed_tokens, inner.layers, inner.norm, model.lm_head
        self.rotary = inner.rotary_emb
        attn = self.layers[0].self_attn
        cfg = model.config
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = attn.head_dim
        self.scaling = attn.scaling
        weight = self.embed.weight
        self.device, self.dtype = weight.device, weight.dtype
        shape = (len(self.layers), self.slots, self.n_kv, self.max_len, self.head_dim)
        self.k_cache = torch.zeros(shape, device=self.device, dtype=self.dtype)
        self.v_cache = torch.zeros(shape, device=self.device, dtype=self.dtype)
        # the decode step's inputs and output live in fixed tensors (CUDA graph replay reads them in place)
        self.tokens = torch.zeros(self.slots, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(self.slots, dtype=torch.long, device=self.device)
        self.allow_eos = torch.ones(self.slots, dtype=torch.bool, device=self.device)
        self.next_tokens = torch.zeros(self.slots, dtype=torch.long, device=self.device)
        self.slot_index = torch.arange(self.slots, device=self.device)
        self.key_index = torch.arange(self.max_len, device=self.device)
        self.eos_tensor = torch.tensor(self.eos_ids or [-1], device=self.device)
        self.graph = None
        self.completed: set[int] = set()

    # arithmetic ----------------------------------------------------------------------------------------
    def _qkv(self, layer, h, position_ids):
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        b, t, _ = h.shape
        attn = layer.self_attn
        q = attn.q_proj(h).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = attn.k_proj(h).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = attn.v_proj(h).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        cos, sin = self.rotary(v, position_ids)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        return q, k, v

    def _decode_step(self) -> None:
        torch = self.torch
        F = torch.nn.functional
        pos = self.positions
        x = self.embed(self.tokens[:, None])                                   # [S, 1, H]
        mask = (self.key_index[None, :] <= pos[:, None])[:, None, None, :]      # [S, 1, 1, L]
        for i, layer in enumerate(self.layers):
            h = layer.input_layernorm(x)
            q, k, v = self._qkv(layer, h, pos[:, None])
            self.k_cache[i, self.slot_index, :, pos] = k[:, :, 0]
            self.v_cache[i, self.slot_index, :, pos] = v[:, :, 0]
            o = F.scaled_dot_product_attention(q, self.k_cache[i], self.v_cache[i], attn_mask=mask,
                                               scale=self.scaling, enable_gqa=self.n_heads != self.n_kv)
            x = x + layer.self_attn.o_proj(o.transpose(1, 2).reshape(self.slots, 1, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        logits = self.lm_head(self.norm(x))[:, 0].float()
        if self.eos_ids:
            blocked = (~self.allow_eos)[:, None]
            eos_cols = logits[:, self.eos_tensor]
            logits[:, self.eos_tensor] = torch.where(blocked, torch.full_like(eos_cols, float("-inf")), eos_cols)
        self.next_tokens.copy_(logits.argmax(dim=-1))

    def _prefill(self, slot: int, prompt: np.ndarray, allow_eos: bool) -> int:
        torch = self.torch
        F = torch.nn.functional
        ids = torch.from_numpy(prompt.astype(np.int64))[None].to(self.device)
        n = ids.shape[1]
        position_ids = torch.arange(n, device=self.device)[None]
        x = self.embed(ids)
        for i, layer in enumerate(self.layers):
            h = layer.input_layernorm(x)
            q, k, v = self._qkv(layer, h, position_ids)
            self.k_cache[i, slot, :, :n] = k[0]
            self.v_cache[i, slot, :, :n] = v[0]
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scaling,
                                               enable_gqa=self.n_heads != self.n_kv)
            x = x + layer.self_attn.o_proj(o.transpose(1, 2).reshape(1, n, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        logits = self.lm_head(self.norm(x[:, -1:]))[0, 0].float()
        if not allow_eos and self.eos_ids:
            logits[self.eos_ids] = float("-inf")
        return int(logits.argmax())

    def _step(self) -> None:
        if self.device.type != "cuda":
            self._decode_step()
            return
        torch = self.torch
        if self.graph is None:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):                 # warm-up outside the graph (kernels, allocator)
                    self._decode_step()
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._decode_step()
            self.graph = graph
        self.graph.replay()

    # scheduling ----------------------------------------------------------------------------------------
    def run(self, pending: list[tuple[int, int]], sut) -> None:
        """Generate for every (query id, sample index) in pending and whatever arrives meanwhile."""
        torch = self.torch
        g = self.generation
        waiting = deque(pending)
        qids: list[int | None] = [None] * self.slots
        outputs: list[list[int]] = [[] for _ in range(self.slots)]
        eos = set(self.eos_ids)
        with torch.inference_mode():
            while True:
                waiting.extend(sut.more_work())
                for slot in range(self.slots):
                    while qids[slot] is None and waiting:
                        qid, index = waiting.popleft()
                        prompt = sut.prompts[index]
                        if len(prompt) + g.max_new_tokens > self.max_len:
                            raise ValueError(f"sample {index}: {len(prompt)} prompt tokens exceed the cache")
                        first = self._prefill(slot, prompt, allow_eos=g.min_new_tokens <= 0)
                        sut.first_token(qid, first)
                        if first in eos or g.max_new_tokens == 1:
                            self._finish(sut, qid, [first])
                            continue
                        qids[slot], outputs[slot] = qid, [first]
                        self.tokens[slot] = first
                        self.positions[slot] = len(prompt)
                        self.allow_eos[slot] = g.min_new_tokens <= 1
                busy = [s for s in range(self.slots) if qids[s] is not None]
                if not busy:
                    return
                self._step()
                nxt = self.next_tokens.tolist()
                for slot in busy:
                    token = nxt[slot]
                    outputs[slot].append(token)
                    if token in eos or len(outputs[slot]) >= g.max_new_tokens:
                        self._finish(sut, qids[slot], outputs[slot])
                        qids[slot] = None
                        self.positions[slot] = 0
                self.tokens.copy_(self.next_tokens)
                self.positions.add_(torch.tensor([1 if qids[s] is not None else 0 for s in range(self.slots)],
                                                 device=self.device))
                if g.min_new_tokens > 1:
                    self.allow_eos.copy_(torch.tensor([len(outputs[s]) >= g.min_new_tokens
                                                       for s in range(self.slots)], device=self.device))

    def _finish(self, sut, qid: int, tokens: list[int]) -> None:
        sut.complete(qid, tokens)
        self.completed.add(qid)
