"""Continuous batching for Llama checkpoints in plain PyTorch: a fixed set of slots over one preallocated KV cache.

Each step has one token budget (`prefill_tokens`), shared by the sequences that decode (one token each) and chunks
of the prompts being prefilled (engine_schedule.py plans them): a prompt longer than the room is prefilled over
several steps while the others keep decoding, a short prompt that arrives meanwhile gets its first token in the
next step, and a long one is never starved. A slot's sequence is answered as it ends (EOS or the length limit) and
the slot refilled from the waiting prompts (Offline: the longest first, once an eighth of the slots are free). What
makes it fast:

- A step runs two passes: the decode step over every slot, always the same shape, so one CUDA graph replays it
  whatever else the step does; then, if the plan has any, the prompt chunks packed as one row of tokens (no
  padding), eager (torch.compile'd with dynamic shapes), so the projections are large matrix products. The chunk
  is compute-bound, so the second read of the weights it costs (for llama3.1-8b fp8, ~2 ms at 4.8 TB/s) is small
  next to its matrix work, while an eager fused step would give up the decode graph on every step that prefills,
  and a graph per chunk shape would mean one per (tokens, prefix lengths). A chunk's rows attend to their own
  slot's cached prefix and to themselves: flash attention's variable-length kernel (causal, aligned to each
  piece's last key) on CUDA in bf16/fp16, SDPA piece by piece with explicit masks elsewhere.
- Decode attention reads only each slot's own keys, straight from the cache, in one CUDA graph for every step:
  a split-key Triton kernel (kernels/decode_attention.py: the query heads of one kv head as one small tile, so
  the keys are read once per kv head and no tensor-core work is wasted on 64-row query tiles), or flash
  attention's variable-length kernel with per-slot key counts (`seqused_k`). Without either (CPU, fp32) the
  step attends over the keys up to the longest live sequence, rounded up to `key_block` (one graph per such
  length on CUDA), each kv head's query heads again as one group of queries.
- One matrix product for q, k and v and one for gate and up (the module weights become views of the fused
  weights, so memory does not grow); rotary tables computed once for every position.
- The layer arithmetic around the matrix products (RMSNorm, rotary, SiLU·up, fp8 row quantisation) is written
  as pure functions of tensors and, on CUDA, torch.compile'd once for all layers, so it runs as a few fused
  kernels instead of dozens of element-wise ones.
- fp8 KV cache (`kv_cache="fp8"`, Triton decode attention only; `"auto"`: with fp8 weights wherever the decode
  attention is Triton's): keys and values kept in e4m3 at unit scale (saturating), as serving engines' fp8 KV
  caches do, halving the bytes attention reads per decode step.
- fp8 (`weights="fp8"`): every projection of the decoder layers in e4m3 with one scale per output channel and
  one per token row of the input (torch._scaled_mm), which halves the bytes a decode step reads and doubles the
  prefill's matrix throughput on Hopper; embeddings, norms, attention and the LM head stay in bf16.

The rotary tables come from the model's own rotary embedding, so rope scaling follows the checkpoint's config;
the arithmetic matches transformers' Llama (the tests compare tokens with its greedy `generate`). Works on CPU
too (no graphs, no compilation), which is how the tests exercise the scheduling.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from subtool.runner.llm.engine_attention import (
    choose_decode_attention,
    chunk_attention,
    chunk_layout,
    flash_decode,
    key_bucket,
    piece_mask,
    store_kv,
)
from subtool.runner.llm.engine_layer import (
    attention_inputs,
    attention_output,
    compile_default,
    fuse,
    quantized,
)
from subtool.runner.llm.engine_pages import PAGE_TOKENS, PagePool
from subtool.runner.llm.engine_schedule import (
    EngineStats,
    Sequence,
    compaction,
    plan_chunks,
    row_bucket,
    row_buckets,
)
from subtool.runner.llm.engine_support import check_options


class ContinuousEngine:
    def __init__(
        self,
        model,
        *,
        slots: int,
        max_len: int,
        eos_ids: list[int],
        generation,
        prefill_tokens: int = 16384,
        chunk_tokens: int | None = None,
        key_block: int = 256,
        weights: str = "model",
        decode_attention: str = "auto",
        compile: bool | None = None,
        kv_cache: str = "model",
        kv_pages: int | None = None,
        page_tokens: int = PAGE_TOKENS,
        layer_weights: list[dict] | None = None,
        layer_output=None,
        decode_tuning: dict | None = None,
        admit_free: int | None = None,
        fused_silu: bool = False,
        fused_kv_write: bool | None = None,
    ):
        """`layer_weights`: the decoder layers' weights already in the engine's form (one dict per layer, as
        `_fuse_layer_weights` builds; projections as `quantized` returns them, fp8 or not as `weights` says), for
        a model whose decoder layers were never loaded (skeleton.meta_model); None: read from `model`'s layers.
        `prefill_tokens`: the token budget of one step (decode tokens + prompt chunks; at least slots + 1);
        `chunk_tokens`: the most tokens of one prompt a step prefills (None: the budget).
        `kv_pages`: the KV cache as a pool of that many pages of `page_tokens` tokens, given out as sequences grow
        (engine_pages.py; Triton or SDPA decode attention), so that slots can outnumber what max_len-sized rows
        would fit; None: every slot owns max_len positions for good.
        `decode_tuning`: the Triton decode kernel's split, block_n, warps, stages, table_ahead and ordered
        (kernels/decode_attention.py; None: its defaults). `admit_free`: while at least that many prompts wait,
        how many slots must be free before they are admitted (None: an eighth of the slots; fewer keeps more
        slots busy, more keeps prompt chunks larger); fewer waiting prompts (Server's trickle) take any free slot.
        `fused_silu`: with fp8 weights, SiLU·up and its e4m3 rows in one Triton kernel (kernels/silu_fp8.py).
        `fused_kv_write`: on CUDA, a step's new keys and values into the cache in one Triton kernel a layer (None:
        wherever decode attention is Triton's; on one H100, 40 of llama2-70b's layers at 512 slots, a decode step
        took 33.9 ms against 34.5 and a prefill chunk of 16k tokens 1,043 against 1,048:
        bench/results/llm70b_gpu_h100_layers40_kv_*.json)."""
        check_options(weights, kv_cache, decode_attention)
        self.model = model
        self.generation = generation
        self.eos_ids = list(eos_ids)
        self.slots = int(slots)
        self.max_len = int(max_len)
        self.prefill_tokens = max(int(prefill_tokens), self.slots + 1)
        self.chunk_tokens = max(1, int(chunk_tokens or self.prefill_tokens))
        self.key_block = max(1, int(key_block))
        self.admit_free = max(1, int(admit_free)) if admit_free is not None else max(1, self.slots // 8)
        self._read_model(model)
        if weights == "fp8" and self.device.type != "cuda":
            raise ValueError("fp8 weights need a CUDA device")
        self.weights = weights
        self.fused_silu = bool(fused_silu) and weights == "fp8"
        with torch.no_grad():
            fused = layer_weights if layer_weights is not None else self._fuse_layer_weights(fp8=weights == "fp8")
            self.layer_weights = fused
            self.cos, self.sin = self._rotary_tables(model.model.rotary_emb)
        self._compile_steps(compile_default(self.device) if compile is None else bool(compile))
        if layer_output is not None:  # tensor parallel: attention_output with o and down summed over the ranks
            self._out_decode = self._out_prefill = layer_output  # (tensor_parallel.sharded_output)
        self.decode_tuning = dict(decode_tuning or {})
        self._choose_attention(decode_attention, kv_cache, fp8=weights == "fp8", paged=kv_pages is not None)
        asked = self.decode_attention == "triton" if fused_kv_write is None else bool(fused_kv_write)
        self.fused_kv_write = asked and self.device.type == "cuda"
        self.pool = PagePool(self.slots, self.max_len, page_tokens, kv_pages)
        self._allocate_state()

    # set-up phases -----------------------------------------------------------------------------------
    def _read_model(self, model) -> None:
        """The decoder's modules and the shapes the steps need, from a transformers Llama-like model."""
        inner = model.model
        self.embed, self.layers, self.norm, self.lm_head = inner.embed_tokens, inner.layers, inner.norm, model.lm_head
        cfg = model.config
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.group = self.n_heads // self.n_kv
        attn = self.layers[0].self_attn
        self.head_dim = attn.head_dim
        self.scaling = attn.scaling
        self.device, self.dtype = self.embed.weight.device, self.embed.weight.dtype
        self.eps = float(getattr(cfg, "rms_norm_eps", 1e-6))
        self.intermediate = self.layers[0].mlp.gate_proj.weight.shape[0]

    def _fuse_layer_weights(self, fp8: bool) -> list[dict]:
        """Per layer: q/k/v and gate/up fused into one product each, fp8 copies of the projections if asked."""
        out = []
        for layer in self.layers:
            a, m = layer.self_attn, layer.mlp
            qkv_w, qkv_b = fuse([a.q_proj, a.k_proj, a.v_proj])
            gu_w, gu_b = fuse([m.gate_proj, m.up_proj])
            out.append(
                {
                    "in_norm": layer.input_layernorm.weight,
                    "post_norm": layer.post_attention_layernorm.weight,
                    "qkv": quantized(qkv_w, qkv_b, fp8),
                    "o": quantized(a.o_proj.weight, a.o_proj.bias, fp8),
                    "gate_up": quantized(gu_w, gu_b, fp8),
                    "down": quantized(m.down_proj.weight, m.down_proj.bias, fp8),
                }
            )
        return out

    def _rotary_tables(self, rotary_emb):
        """cos and sin [max_len, head_dim / 2] in the model's dtype (the model's tables repeat their two halves)."""
        positions = torch.arange(self.max_len, device=self.device)[None]
        cos, sin = rotary_emb(self.embed.weight[:1, :1], positions)
        half = self.head_dim // 2
        if not all(torch.equal(t[..., :half], t[..., half:]) for t in (cos, sin)):
            raise ValueError("rotary tables whose two halves differ are not supported")
        return cos[0, :, :half].to(self.dtype), sin[0, :, :half].to(self.dtype)

    def _compile_steps(self, compiled: bool) -> None:
        """The attention block's input and output halves, compiled (fixed decode shapes, dynamic prefill) or not."""
        self.compiled = compiled
        if not compiled:
            self._in_decode = self._in_prefill = attention_inputs
            self._out_decode = self._out_prefill = attention_output
            return
        # every engine of a process adds compiled variants (dtype, fp8 or not, one row or several) of the same
        # two functions: more than dynamo's default of 8 per function when a process builds several engines
        limit = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
        setattr(torch._dynamo.config, limit, max(64, getattr(torch._dynamo.config, limit)))
        # decode: one shape per row bucket, the full one compiled first for its own shape, the others once for
        # any row count; prefill: the chunk's token count varies. Both through dynamo's automatic dynamic shapes,
        # which make only the sizes seen to change symbolic (warm_up's two chunks mark the token count): with
        # dynamic=True every size was symbolic (hidden, heads, head_dim too), and the element-wise kernels' index
        # arithmetic became 64-bit divisions by runtime values, which made a 16k-token chunk's rotary, SiLU·up and
        # row quantisation take 5-25× their memory time (0.76 of its 2.4 s on an H200, bench/results/
        # llm70b_gpu_profile512_dynamic.json against llm70b_gpu_profile512.json)
        self._in_decode = torch.compile(attention_inputs, fullgraph=True, dynamic=None)
        self._out_decode = torch.compile(attention_output, fullgraph=True, dynamic=None)
        self._in_prefill = torch.compile(attention_inputs, fullgraph=True, dynamic=None)
        self._out_prefill = torch.compile(attention_output, fullgraph=True, dynamic=None)

    def _choose_attention(self, decode_attention: str, kv_cache: str, fp8: bool, paged: bool) -> None:
        """Which decode attention runs (Triton kernel, flash or SDPA) and whether the KV cache is fp8."""
        self.decode_attention = choose_decode_attention(
            decode_attention, self.device, self.dtype, self.head_dim, self.group, paged=paged
        )
        if kv_cache == "fp8" and self.decode_attention != "triton":
            raise ValueError("an fp8 KV cache needs the Triton decode attention (CUDA, bf16/fp16, Triton)")
        self.kv_fp8 = kv_cache == "fp8" or (kv_cache == "auto" and fp8 and self.decode_attention == "triton")
        half = self.device.type == "cuda" and self.dtype in (torch.bfloat16, torch.float16)
        # prompt chunks: flash attention's variable-length kernel where it runs, else SDPA per piece, masked
        self.chunk_flash = half and getattr(torch.ops.aten, "_flash_attention_forward", None) is not None
        self.own_keys = self.decode_attention != "sdpa"  # each slot reads its own keys: one graph for every step
        self.triton_attention = None
        if self.decode_attention == "triton":
            from subtool.runner.kernels.decode_attention import DecodeAttention

            self.triton_attention = DecodeAttention(
                self.slots, self.n_heads, self.n_kv, self.head_dim, self.max_len, self.device, **self.decode_tuning
            )

    def _allocate_state(self) -> None:
        """The KV cache and the fixed tensors the decode step reads and writes (CUDA graph replay reads them in
        place), allocated once for every slot."""
        # per layer one pool of token-major pages and the spare page (engine_pages.py); unpaged, slot s owns rows
        # s·width … (s+1)·width-1, which is also flash attention's packed [slots × width, kv, D]
        pool = self.pool
        shape = (len(self.layers), (pool.pages + 1) * pool.page, self.n_kv, self.head_dim)
        self.width = pool.per_slot * pool.page  # a slot's positions (max_len rounded up to whole pages)
        # fp8: keys and values stored in e4m3 as they are (unit scale, saturating), halving what decode reads
        cache_dtype = torch.float8_e4m3fn if self.kv_fp8 else self.dtype
        self.k_cache = torch.zeros(shape, device=self.device, dtype=cache_dtype)
        self.v_cache = torch.zeros(shape, device=self.device, dtype=cache_dtype)
        self.tokens = torch.zeros(self.slots, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(self.slots, dtype=torch.long, device=self.device)
        self.allow_eos = torch.ones(self.slots, dtype=torch.bool, device=self.device)
        self.next_tokens = torch.zeros(self.slots, dtype=torch.long, device=self.device)
        self.slot_index = torch.arange(self.slots, device=self.device)
        self.key_index = torch.arange(self.width, device=self.device)
        self.page_table = torch.from_numpy(pool.table).to(self.device)
        pool.dirty = False
        # flash decode: a slot's query heads of one kv head are that slot's `group` query rows for that head
        slot_starts = torch.arange(self.slots + 1, device=self.device, dtype=torch.int32)
        self.cu_q, self.cu_k = slot_starts * self.group, slot_starts * self.width
        self.eos_tensor = torch.tensor(self.eos_ids or [-1], device=self.device)
        self.graphs: dict[tuple[int, int], object] = {}
        self.graph_pool = None
        self.completed: set[int] = set()
        self.active: list[Sequence | None] = [None] * self.slots
        self.stats = EngineStats()

    # the model ---------------------------------------------------------------------------------------
    def _inputs(self, fn, i: int, x, cos, sin):
        w = self.layer_weights[i]
        return fn(x, w["in_norm"], self.eps, w["qkv"], cos, sin, self.n_heads, self.n_kv, self.head_dim)

    def _outputs(self, fn, i: int, x, attended):
        w = self.layer_weights[i]
        args = (w["o"], w["post_norm"], self.eps, w["gate_up"], w["down"], self.intermediate, self.fused_silu)
        return fn(x, attended, *args)

    def _decode_step(self, keys: int, rows: int) -> None:
        """One token for each of the first `rows` slots, attending over the first `keys` positions of each (all of
        each slot's own keys with the Triton kernel or flash attention)."""
        s = rows
        pos = self.positions[:s]
        x = self.embed(self.tokens[:s, None])  # [S, 1, H]
        cos, sin = self.cos[pos][:, None, None, :], self.sin[pos][:, None, None, :]  # [S, 1, 1, D]
        page = self.pool.page
        at = self.page_table[self.slot_index[:s], pos // page] * page + pos % page  # each row's cache row
        order = None
        if self.own_keys:
            used = (pos + 1).to(torch.int32)
            if self.triton_attention is not None and self.triton_attention.ordered:
                order = self.triton_attention.order(used)  # the same for every layer of the step
        else:
            key_pos = self.key_index[:keys]
            mask = (key_pos[None, :] <= pos[:, None])[:, None, None, :]  # [S, 1, 1, keys]
            gather = self.page_table[:s, key_pos // page] * page + key_pos % page  # [S, keys]
        for i in range(len(self.layers)):
            q, k, v = self._inputs(self._in_decode, i, x, cos, sin)  # [S, 1, heads|kv, D]
            store_kv(self.k_cache[i], self.v_cache[i], at, k[:, 0], v[:, 0], self.fused_kv_write)
            if self.triton_attention is not None:
                pages = (-1, page, self.n_kv, self.head_dim)
                o = self.triton_attention(
                    q[:, 0],
                    self.k_cache[i].view(pages),
                    self.v_cache[i].view(pages),
                    used,
                    self.scaling,
                    table=self.page_table,
                    order=order,
                )
            elif self.decode_attention == "flash":
                qg = q[:, 0].view(s, self.n_kv, self.group, self.head_dim)
                o = flash_decode(
                    qg, self.k_cache[i], self.v_cache[i], self.cu_q, self.cu_k, self.width, used, self.scaling
                )
            else:
                # the query heads of one kv head as that head's group of query rows: [S, kv, group, D]
                o = F.scaled_dot_product_attention(
                    q[:, 0].view(s, self.n_kv, self.group, self.head_dim),
                    self.k_cache[i][gather].transpose(1, 2),
                    self.v_cache[i][gather].transpose(1, 2),
                    attn_mask=mask,
                    scale=self.scaling,
                )
            x = self._outputs(self._out_decode, i, x, o.reshape(s, 1, -1))
        logits = self.lm_head(self.norm(x))[:, 0].float()
        if self.eos_ids:
            blocked = (~self.allow_eos[:s])[:, None]
            eos_cols = logits[:, self.eos_tensor]
            logits[:, self.eos_tensor] = torch.where(blocked, torch.full_like(eos_cols, float("-inf")), eos_cols)
        self.next_tokens[:s].copy_(logits.argmax(dim=-1))

    def _prefill_chunk(self, pieces: list[tuple[int, int, np.ndarray]], allow_eos: bool) -> list[int]:
        """Pieces of prompts, [(slot, start, tokens)], packed as one row of tokens (no padding) into their slots'
        cache rows from `start` on, each attending to its slot's cached prefix and to itself; the next token
        after each piece."""
        layout = chunk_layout([(slot, start, len(t)) for slot, start, t in pieces], self.max_len)
        # each row's and each key's row in a layer's cache, through the slots' page tables
        layout["q_at"] = self.pool.flat(layout["q_slot"], layout["q_pos"])
        layout["k_at"] = self.pool.flat(layout["k_slot"], layout["k_pos"])
        dev = {k: torch.from_numpy(v).to(self.device) if isinstance(v, np.ndarray) else v for k, v in layout.items()}
        ids = torch.from_numpy(np.concatenate([t for _, _, t in pieces]).astype(np.int64)).to(self.device)
        cos, sin = self.cos[dev["q_pos"]][None, :, None], self.sin[dev["q_pos"]][None, :, None]  # [1, T, 1, D]
        # SDPA: one call per piece (a packed mask would cost rows × all keys), each with its own mask
        masks = None if self.chunk_flash else [self._piece_mask(start, len(t)) for _, start, t in pieces]
        t = len(ids)
        x = self.embed(ids)[None]  # [1, T, H]
        for i in range(len(self.layers)):
            q, k, v = self._inputs(self._in_prefill, i, x, cos, sin)  # [1, T, heads|kv, D]
            store_kv(self.k_cache[i], self.v_cache[i], dev["q_at"], k[0], v[0], self.fused_kv_write)
            keys, values = self._chunk_keys(i, k[0], v[0], dev)  # [K, kv, D]
            # [T, heads, D]: flash's varlen kernel where it runs, else SDPA piece by piece with explicit masks
            o = chunk_attention(q[0], keys, values, dev, masks, layout, self.scaling, self.chunk_flash)
            x = self._outputs(self._out_prefill, i, x, o.reshape(1, t, -1))
        logits = self.lm_head(self.norm(x[0, dev["last"]])).float()
        if not allow_eos and self.eos_ids:
            logits[:, self.eos_ids] = float("-inf")
        return logits.argmax(dim=-1).tolist()

    def _chunk_keys(self, i: int, k, v, dev: dict):
        """Keys and values a chunk attends over, packed per piece: its cached prefix (widened from fp8), then its
        own tokens' keys as computed (not as the cache rounds them)."""
        if len(dev["k_pos"]) == len(k):  # as many keys as rows: no piece has a cached prefix, only its own keys
            return k, v
        out = []
        for cache, own in ((self.k_cache[i], k), (self.v_cache[i], v)):
            if self.kv_fp8:  # gathered as bytes: index kernels need not know e4m3
                packed = cache.view(torch.uint8)[dev["k_at"]].view(cache.dtype).to(self.dtype)
            else:
                packed = cache[dev["k_at"]]
            packed[dev["own"]] = own
            out.append(packed)
        return out

    def _piece_mask(self, start: int, n: int):
        return torch.from_numpy(piece_mask(start, n)).to(self.device)[None, None]

    def _step(self, keys: int, rows: int) -> int:
        """The decode step over the first `rows` slots (a CUDA graph per (rows, keys) on CUDA); the rows it ran."""
        if self.own_keys:
            keys = self.width
        elif self.device.type == "cuda":
            rows = self.slots  # key buckets already multiply the graphs: one row count
        if self.pool.dirty:
            self.page_table.copy_(torch.from_numpy(self.pool.table))
            self.pool.dirty = False
        if self.device.type != "cuda":
            self._decode_step(keys, rows)
            return rows
        graph = self.graphs.get((rows, keys))
        if graph is None:
            graph = self._capture(keys, rows)
        graph.replay()
        return rows

    def _capture(self, keys: int, rows: int):
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up outside the graph (kernels, allocator)
                self._decode_step(keys, rows)
        torch.cuda.current_stream().wait_stream(stream)
        if self.graph_pool is None:
            self.graph_pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # the graphs share one pool: they never run at once, and their results live outside it
        with torch.cuda.graph(graph, pool=self.graph_pool):
            self._decode_step(keys, rows)
        self.graphs[(rows, keys)] = graph
        self.stats.graphs = len(self.graphs)
        return graph

    def _graph_shapes(self, lengths: list[int]) -> list[tuple[int, int]]:
        """(rows, keys) of every decode graph the given prompt lengths can need."""
        if self.own_keys:
            return [(rows, self.width) for rows in reversed(row_buckets(self.slots))]  # all slots first
        longest = min(self.max_len, max(lengths) + self.generation.max_new_tokens)
        top = key_bucket(longest, self.key_block, self.width)
        return [(self.slots, k) for k in sorted(set(range(self.key_block, top + 1, self.key_block)) | {top})]

    def warm_up(self, lengths: list[int]) -> None:
        """Compile and capture what the given prompt lengths will need (decode graphs; with torch.compile, the
        prefill kernels for one piece and for several), before any timed work."""
        if self.device.type != "cuda":
            return
        with torch.inference_mode():
            if self.compiled:
                # dummy prompts into slots that hold nothing yet (their rows are rewritten when admitted; paged,
                # their positions are the spare page's)
                other, n = min(1, self.slots - 1), min(48, self.max_len // 2)
                self._prefill_chunk([(0, 0, np.ones(n, np.int64)), (other, n, np.ones(n // 2, np.int64))], True)
                self._prefill_chunk([(0, 0, np.ones(min(97, self.max_len), np.int64))], True)
            for rows, keys in self._graph_shapes(lengths):
                if (rows, keys) not in self.graphs:
                    self._capture(keys, rows)
        self.positions.zero_()
        self.stats = EngineStats(graphs=len(self.graphs))

    # scheduling (the step planner: engine_schedule.py) -----------------------------------------------
    def run(self, pending: list[tuple[int, int]], sut) -> None:
        """Generate for every (query id, sample index) in pending and whatever arrives meanwhile: each step
        decodes every sequence past its prompt (one token each) and prefills the chunks of prompts the planner
        picks within the step's token budget."""
        lengths = [len(sut.prompts[i]) for _, i in pending]
        order = sorted(range(len(pending)), key=lambda j: -lengths[j])  # Offline: the longest first
        # (query id, sample index) not yet admitted, or a preempted Sequence (first in line)
        self.waiting = waiting = deque(pending[j] for j in order)
        self.active: list[Sequence | None] = [None] * self.slots
        self._admitted = 0
        with torch.inference_mode():
            while True:
                waiting.extend(sut.more_work())
                self._admit(sut)
                self._compact()
                decoding = self._reserve_decode_pages([seq for seq in self.active if seq is not None and seq.decoding])
                prefilling = sorted(
                    (seq for seq in self.active if seq is not None and not seq.decoding), key=lambda q: q.order
                )
                if not decoding and not prefilling:
                    if waiting:
                        continue
                    return
                budget = max(self.prefill_tokens, len(decoding) + 1)  # a prompt token always fits
                plan = plan_chunks(
                    [(q.slot, q.remaining) for q in prefilling], len(decoding), budget, self.chunk_tokens
                )
                t0 = time.perf_counter()
                if decoding:  # a prefilling slot's row writes junk at its next prompt position: a chunk rewrites it
                    self._decode(decoding, sut)
                t1 = time.perf_counter()
                if plan:
                    self._prefill_plan(plan, sut)
                t2 = time.perf_counter()
                self.stats.record(len(decoding), sum(n for _, n in plan), len(plan), t1 - t0, t2 - t1)

    def _admit(self, sut) -> None:
        """Free slots take waiting samples (a preempted sequence first), while the KV pool has pages for their
        prompts and a page to spare for every sequence that is decoding. A queue of `admit_free` or more (Offline's)
        waits until that many slots are free (or every slot), so that its chunks stay large; a shorter one
        (Server's arrivals) takes any free slot at once, since a prompt held back for company waits in its TTFT."""
        waiting = self.waiting
        free = [s for s in range(self.slots) if self.active[s] is None]
        if not waiting or not free:
            return
        if len(free) < self.admit_free <= len(waiting) and len(free) < self.slots:
            return
        running = sum(seq is not None for seq in self.active)
        for slot in free[: len(waiting)]:
            seq = waiting[0] if isinstance(waiting[0], Sequence) else self._sequence(waiting[0], sut)
            spare = 0 if self.pool.fixed else running + 1  # room for each running sequence to grow a page
            if self.pool.free_pages - self.pool.pages_for(len(seq.context) + 1) < spare and running:
                return
            waiting.popleft()
            if not self.pool.ensure(slot, len(seq.context) + 1):  # only a pool emptied by an earlier admission
                waiting.appendleft(seq)
                return
            seq.slot = slot
            if seq.order < 0:
                seq.order = self._admitted
                self._admitted += 1
            self.active[slot] = seq
            running += 1

    def _compact(self) -> None:
        """Paged: sequences above the row bucket their count needs move to free lower slots (their table rows, no
        keys copied), so that a draining engine's decode step computes the rows it holds, not its highest slot's."""
        if self.pool.fixed:
            return
        for src, dst in compaction([s for s, seq in enumerate(self.active) if seq is not None], self.slots):
            seq = self.active[src]
            self.pool.move(src, dst)
            self.active[dst], self.active[src] = seq, None
            seq.slot = dst
            self.stats.moved += 1

    def _sequence(self, item: tuple[int, int], sut) -> Sequence:
        qid, index = item
        prompt = np.asarray(sut.prompts[index])
        if len(prompt) == 0:
            raise ValueError(f"sample {index}: an empty prompt")
        if len(prompt) + self.generation.max_new_tokens > self.max_len:
            raise ValueError(f"sample {index}: {len(prompt)} prompt tokens exceed the cache")
        return Sequence(qid, index, prompt, slot=-1, order=-1)

    def _reserve_decode_pages(self, decoding: list[Sequence]) -> list[Sequence]:
        """A page for each decoding sequence's next position, oldest first; when the pool has none, the newest
        sequence is preempted (its pages freed, itself first in line to be prefilled again). The sequences still
        decoding."""
        if self.pool.fixed:
            return decoding
        for seq in sorted(decoding, key=lambda q: q.order):
            while self.active[seq.slot] is seq and not self.pool.ensure(seq.slot, seq.position + 1):
                self._preempt(max((q for q in self.active if q is not None), key=lambda q: q.order))
        return [seq for seq in decoding if self.active[seq.slot] is seq]

    def _preempt(self, seq: Sequence) -> None:
        """Give seq's pages back; it is prefilled again (its prompt and its answer but the last token) when
        admitted, and goes on from where it was."""
        self.pool.release(seq.slot)
        self.active[seq.slot] = None
        seq.preempt()
        self.waiting.appendleft(seq)
        self.stats.preempted += 1

    def _decode(self, decoding: list[Sequence], sut) -> None:
        """One decode step over the slots up to the last decoding one (a CUDA graph per row bucket); the
        decoding sequences' tokens."""
        g = self.generation
        tokens = np.zeros(self.slots, dtype=np.int64)
        positions = np.zeros(self.slots, dtype=np.int64)
        for seq in self.active:
            if seq is not None:
                tokens[seq.slot] = seq.outputs[-1] if seq.decoding else 0
                positions[seq.slot] = seq.position if seq.decoding else seq.done
        self.tokens.copy_(torch.from_numpy(tokens))
        self.positions.copy_(torch.from_numpy(positions))
        if g.min_new_tokens > 1:
            allow = np.ones(self.slots, dtype=bool)
            for seq in decoding:
                allow[seq.slot] = len(seq.outputs) >= g.min_new_tokens
            self.allow_eos.copy_(torch.from_numpy(allow))
        rows = row_bucket(max(seq.slot for seq in decoding) + 1, self.slots)
        self.stats.decode_row_steps += self._step(
            key_bucket(int(positions.max()) + 1, self.key_block, self.width), rows
        )
        nxt = self.next_tokens[:rows].tolist()
        eos = set(self.eos_ids)
        for seq in decoding:
            token = nxt[seq.slot]
            seq.outputs.append(token)
            if token in eos or len(seq.outputs) >= g.max_new_tokens:
                self._finish(sut, seq)

    def _prefill_plan(self, plan: list[tuple[int, int]], sut) -> None:
        """The planned chunks as one pass; prompts that end in it get their first token (a preempted sequence,
        whose next token is already known, goes back to decoding)."""
        g = self.generation
        pieces = []
        for slot, n in plan:
            seq = self.active[slot]
            pieces.append((slot, seq.done, seq.context[seq.done : seq.done + n]))
        nexts = self._prefill_chunk(pieces, allow_eos=g.min_new_tokens <= 0)
        eos = set(self.eos_ids)
        for (slot, n), first in zip(plan, nexts):
            seq = self.active[slot]
            seq.done += n
            if seq.remaining or seq.outputs:
                continue
            self.stats.prompts += 1
            sut.first_token(seq.qid, first)
            seq.outputs.append(first)
            if first in eos or g.max_new_tokens == 1:
                self._finish(sut, seq)

    def _finish(self, sut, seq: Sequence) -> None:
        sut.complete(seq.qid, seq.outputs)
        self.completed.add(seq.qid)
        self.active[seq.slot] = None
        self.pool.release(seq.slot)
