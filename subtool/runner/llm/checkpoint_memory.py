"""What a Llama checkpoint needs in memory on the continuous engine, from its config alone: the weights (bf16, or
e4m3 projections with bf16 embeddings and head), the KV cache per token, and the working memory of a prefill
batch; and so how many slots (sequences of max_len tokens, each with its own KV cache rows) fit in what is left.

The check runs before anything loads: a model whose weights, working memory and a KV cache for MIN_SLOTS sequences
do not fit is refused with the sizes in words (a bf16 Llama-2-70B on one 141 GB GPU: fp8 is the way). After the
weights are on the device, the slots are sized from the memory then free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from subtool.errors import SubtoolError
from subtool.runner.llm.engine_pages import PAGE_TOKENS

GIB = 2**30
MIN_SLOTS = 32  # fewer sequences at once than this is not a run worth starting on a GPU
MARGIN = 0.05  # of the free memory, left to the allocator, CUDA graphs, logits
FIXED_RESERVE = GIB // 2
MAX_PAGED_SLOTS = 1024  # sequences at once over a paged cache: past this, a decode step's rows gain little
PICKLE_SLACK = 4 << 20  # a torch.save file's own records (zip entries, the pickled structure) past its tensors


@dataclass(frozen=True)
class Shape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool

    @classmethod
    def of(cls, config: dict) -> Shape:
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        return cls(
            hidden=hidden,
            intermediate=int(config["intermediate_size"]),
            layers=int(config["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            vocab=int(config["vocab_size"]),
            tied=bool(config.get("tie_word_embeddings", False)),
        )

    def projection_params(self) -> int:
        """Parameters of one decoder layer's projections (q, k, v, o, gate, up, down)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return self.hidden * (q + 2 * kv) + q * self.hidden + 3 * self.hidden * self.intermediate


def weight_bytes(shape: Shape, fp8: bool, width: int) -> int:
    """Bytes of the weights on the device: projections in e4m3 (plus a float32 scale per output channel) when
    fp8, else `width` bytes each; embeddings, head and norms in `width`."""
    per_layer = shape.projection_params() * (1 if fp8 else width) + 2 * shape.hidden * width
    if fp8:
        q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
        per_layer += 4 * (q + 2 * kv + shape.hidden + 2 * shape.intermediate + shape.hidden)
    outer = shape.vocab * shape.hidden * (1 if shape.tied else 2) * width + shape.hidden * width
    return shape.layers * per_layer + outer


def kv_bytes_per_token(shape: Shape, kv_fp8: bool, width: int) -> int:
    """Keys and values of one token in every layer."""
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * (1 if kv_fp8 else width)


def workspace_bytes(shape: Shape, prefill_tokens: int) -> int:
    """Working memory of the largest engine step (prefill_tokens: its budget of decode tokens and prompt chunks):
    the widest activations of one layer at once (float32 norm and fp8 row-quantisation temporaries, gate|up and
    its SiLU product), rounded up generously."""
    return prefill_tokens * (16 * shape.hidden + 12 * shape.intermediate)


@dataclass(frozen=True)
class SlotPlan:
    slots: int
    fit: int  # slots the memory holds
    free: int  # bytes free once the weights are loaded
    reserved: int  # of which kept for working memory
    kv_per_token: int
    max_len: int
    kv_fp8: bool
    pages: int | None = None  # paged: the pool's pages (None: every slot owns max_len positions)
    page: int = PAGE_TOKENS

    def line(self) -> str:
        kind = "fp8" if self.kv_fp8 else "bf16/fp16"
        per_token = _bytes(self.kv_per_token)
        if self.pages is not None:
            return (
                f"KV cache {kind}, {per_token} per token, paged: {self.pages:,} pages of "
                f"{self.page} tokens ({self.pages * self.page:,} tokens) shared by {self.slots} slots (whole rows of "
                f"{self.max_len:,} tokens would fit {self.fit}; {self.free / GIB:.1f} GiB free after the weights, "
                f"{self.reserved / GIB:.1f} GiB kept for working memory)"
            )
        return (
            f"KV cache {kind}, {per_token} per token × {self.max_len:,} tokens per slot: "
            f"{self.slots} slots (memory for {self.fit}; {self.free / GIB:.1f} GiB free after the weights, "
            f"{self.reserved / GIB:.1f} GiB kept for working memory)"
        )


def _bytes(n: int) -> str:
    """A per-token size in words: bytes below a KiB (a tiny demo model's), else whole KiB."""
    return f"{n:,} B" if n < 1024 else f"{n / 1024:.0f} KiB"


def plan_slots(
    free: int,
    kv_per_token: int,
    max_len: int,
    workspace: int,
    *,
    asked: int,
    auto: bool,
    samples: int,
    kv_fp8: bool,
    typical: int | None = None,
) -> SlotPlan:
    """Slots for `free` bytes: as many as fit (auto) or the number asked, never more than fit or than samples.
    With `typical` (the tokens a sequence typically holds at its end), a paged cache: the memory as one pool of
    pages, and as many slots as sequences of that size fill it (auto; at least what whole rows fit, at most
    MAX_PAGED_SLOTS), since the pool is given out as sequences grow; never more pages than the slots can hold at
    once (whole rows each): a small model leaves the rest of the memory alone."""
    reserved = workspace + FIXED_RESERVE + int(MARGIN * free)
    fit = max(0, (free - reserved) // max(1, kv_per_token * max_len))
    if fit < 1:
        raise SubtoolError(
            f"no room for even one sequence's KV cache ({kv_per_token * max_len / GIB:.2f} GiB for {max_len:,} "
            f"tokens) after the weights: {free / GIB:.1f} GiB free, {reserved / GIB:.1f} GiB needed for working memory",
            rule="model.too_large",
            hint="--precision fp8 (e4m3 weights and KV cache), or a smaller prefill batch (prefill_tokens)",
        )
    want, cap, pages = (fit if auto else max(1, int(asked))), fit, None
    if typical is not None:
        pool = (free - reserved) // max(1, kv_per_token)
        pages, cap = int(pool // PAGE_TOKENS), MAX_PAGED_SLOTS
        if auto:
            want = max(fit, pool // max(1, int(typical)))
    slots = int(max(1, min(want, cap, max(1, samples))))
    if pages is not None:
        pages = min(pages, slots * -(-max_len // PAGE_TOKENS))
    return SlotPlan(
        slots=slots,
        fit=int(fit),
        free=free,
        reserved=reserved,
        kv_per_token=kv_per_token,
        max_len=max_len,
        kv_fp8=kv_fp8,
        pages=pages,
    )


def rank_config(config: dict, size: int) -> dict:
    """config.json's shape fields as one rank of `size` sees them (what the memory check sizes)."""
    heads = int(config["num_attention_heads"])
    out = dict(config)
    out["head_dim"] = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    out["num_attention_heads"] = heads // size
    out["num_key_value_heads"] = int(config.get("num_key_value_heads") or heads) // size
    out["intermediate_size"] = int(config["intermediate_size"]) // size
    return out


def needed_bytes(config: dict, *, precision: str, kv_fp8: bool, max_len: int, min_slots: int) -> tuple[int, int, int]:
    """(weights, KV cache for min_slots sequences, working memory) in bytes on the device of a config's model
    (one rank's share under tensor parallelism: tensor_parallel.rank_config)."""
    shape = Shape.of(config)
    width = 4 if precision == "fp32" else 2
    weights = weight_bytes(shape, precision == "fp8", width)
    kv = min_slots * max_len * kv_bytes_per_token(shape, kv_fp8, width)
    return weights, kv, workspace_bytes(shape, 16384) + FIXED_RESERVE


def tp_that_fits(config: dict, free: int, **sizes) -> int | None:
    """The smallest tensor-parallel size (2, 4, 8; one that divides the heads) whose rank share fits `free`."""
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    for size in (2, 4, 8):
        if heads % size or kv_heads % size or int(config["intermediate_size"]) % size:
            continue
        if sum(needed_bytes(rank_config(config, size), **sizes)) <= free:
            return size
    return None


def check_fits_streaming(
    model_path,
    config: dict,
    *,
    precision: str,
    kv_fp8: bool,
    max_len: int,
    min_slots: int,
    free: int | None,
    where,
    tensor_parallel: int = 1,
) -> None:
    """Refuse, before loading, a model whose weights, working memory and KV cache for min_slots sequences exceed
    the free memory of the one device the continuous engine runs on (one rank's share of it, and the free memory
    of one of its GPUs, under tensor parallelism); on a GPU the hint names the TP size that would fit."""
    if free is None:
        return
    sizes = dict(precision=precision, kv_fp8=kv_fp8, max_len=max_len, min_slots=min_slots)
    share = rank_config(config, tensor_parallel) if tensor_parallel > 1 else config
    weights, kv, work = needed_bytes(share, **sizes)
    if weights + kv + work <= free:
        return
    if where.startswith("cuda"):
        hint = (
            "--precision fp8 stores the projections and the KV cache in e4m3 (half the bytes)"
            if precision != "fp8"
            else "a GPU with more memory or fewer slots (--batch-size)"
        )
        fits = tp_that_fits(config, free, **sizes)
        if fits and fits > tensor_parallel:
            split = f"--tensor-parallel {fits} splits each layer over {fits} such GPUs (it fits at that size)"
            hint = split if precision == "fp8" else f"{hint}; or {split}"
    else:
        hint = "--backend torch-cuda --precision fp8 on a GPU with the memory, or a machine with more RAM"
    share_words = f" (one rank's share of {tensor_parallel})" if tensor_parallel > 1 else ""
    raise SubtoolError(
        f"does not fit: {precision} weights{share_words} {weights / GIB:.1f} GiB + a KV cache for {min_slots} "
        f"sequences of {max_len:,} tokens {kv / GIB:.1f} GiB + working memory {work / GIB:.1f} GiB exceed the "
        f"{free / GIB:.1f} GiB free on {where}",
        path=model_path,
        rule="model.too_large",
        hint=hint,
    )


# ------------------------------------------------------------------ the batched engine (a whole transformers load)
def available_memory(device: str) -> int | None:
    """Bytes the weights may use: free memory of every visible GPU, or MemAvailable on Linux; None if unknown."""
    if device == "cuda":
        import torch

        return sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_fits(model_path, config: dict, precision: str, device: str) -> None:
    """Refuse, before loading, a checkpoint whose weights cannot fit the memory of the chosen device (a whole
    transformers load: the batched engine's)."""
    from subtool.runner.llm.checkpoint import checkpoint_bytes

    on_disk = checkpoint_bytes(model_path)
    disk_width = {"float32": 4, "float16": 2, "bfloat16": 2}.get(
        str(config.get("torch_dtype") or config.get("dtype") or "float32"), 4
    )
    width = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 3}[precision]  # fp8: bf16 weights + e4m3 copies
    needed = int(on_disk / disk_width * width * 1.05)
    available = available_memory(device)
    if available is not None and needed > available:
        where = "GPU memory (all visible GPUs)" if device == "cuda" else "free RAM"
        raise SubtoolError(
            f"the model needs about {needed / 2**30:.1f} GiB in {precision} but only "
            f"{available / 2**30:.1f} GiB of {where} is available",
            path=model_path,
            rule="model.too_large",
            hint="use a GPU backend with more or larger GPUs (--backend torch-cuda spreads the "
            "model over every visible GPU), a lower --precision, or --backend openai with a "
            "serving engine",
        )


# ------------------------------------------------------------------ pytorch_model.bin: bounded by the config
def _positive(config: dict, key: str, config_path, default: int | None = None) -> int:
    """config.json's `key` (or `default` where it is absent or null), refused unless a positive integer."""
    value = config.get(key)
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SubtoolError(
            f"{key} {value!r} is not a positive integer (it bounds the size of the .bin weights)",
            path=config_path,
            rule="model.config",
        )
    return value


def bin_bytes_bound(config: dict, config_path) -> int:
    """The most bytes a torch.save checkpoint of config.json's model takes: every parameter in float32 (the LM head
    counted even when tied, every bias counted) and 1% more, the buffers older checkpoints store (GPT-J's causal
    masks, n_positions² bools per layer; Llama's rotary inv_freq) and PICKLE_SLACK. A bf16 Llama-2-70B's .bin
    shards are 138 GB of the 279 GB bound, GPT-J-6B's fp32 ones 24.2 GB of 24.6 GB."""

    def get(key: str, default: int | None = None) -> int:
        return _positive(config, key, config_path, default)

    if config.get("model_type") == "gptj":
        h, layers, vocab = get("n_embd"), get("n_layer"), get("vocab_size")
        inner, positions = get("n_inner", 4 * h), get("n_positions", 2048)
        per_layer = 4 * h * h + 2 * h * inner + inner + 3 * h
        params, buffers = layers * per_layer + 2 * vocab * h + vocab + 2 * h, layers * (positions * positions + 4)
    else:
        heads = get("num_attention_heads")
        shape = Shape(
            hidden=get("hidden_size"),
            intermediate=get("intermediate_size"),
            layers=get("num_hidden_layers"),
            heads=heads,
            kv_heads=get("num_key_value_heads", heads),
            head_dim=get("head_dim", get("hidden_size") // heads),
            vocab=get("vocab_size"),
            tied=False,
        )
        q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
        biases = shape.layers * (q + 2 * kv + 2 * shape.intermediate + 2 * shape.hidden)
        params, buffers = weight_bytes(shape, False, 1) + biases, shape.layers * shape.head_dim * 2
    return int(4 * params * 1.01) + buffers + PICKLE_SLACK


def check_bin_size(model_path, config: dict) -> None:
    """Refuse, before torch.load reads them, .bin weights (pytorch_model.bin or its shards) that are not regular
    files or whose bytes are out of proportion to the model config.json describes (bin_bytes_bound)."""
    from subtool.runner.llm.checkpoint import bin_weight_files

    files = bin_weight_files(model_path)
    if not files:
        return
    total = sum(f.stat().st_size for f in files)
    bound = bin_bytes_bound(config, Path(model_path) / "config.json")
    if total > bound:
        what = files[0].name if len(files) == 1 else f"the {len(files)} .bin shards"
        raise SubtoolError(
            f"{what}: {total / 2**20:,.1f} MiB, more than the {bound / 2**20:,.1f} MiB that config.json's model "
            "takes in float32",
            path=files[0] if len(files) == 1 else model_path,
            rule="model.weights",
        )
