"""A PyTorch SUT for the LLM benchmarks (transformers checkpoints: Llama, GPT-J).

`LlmGenerator` holds the model and the generation loop and knows nothing of LoadGen (each Ray worker runs one,
ray_worker.py); `TorchLlmSUT` is its LoadGen adapter: LoadGen hands queries to `issue_queries` from its
own thread and a worker thread generates. Two engines:

- `batched` (CPU, and beam search): waiting samples are sorted by prompt length and run in batches padded on the
  left to the longest prompt; greedy decoding with a KV cache, each row completed the moment it ends.
- `continuous` (CUDA, greedy): a fixed set of slots over one preallocated KV cache; every decode step advances
  all busy slots at once (a CUDA graph once warmed up), and a finished slot is refilled with the next prompt
  (prefilled in chunks between decode steps) without waiting for the rest of the batch. See engine.py. Its
  Llama weights are streamed from the safetensors files layer by layer onto the one GPU (checkpoint.py; fp8:
  quantized there, or read pre-quantized), never loaded whole; the slots are sized from the GPU memory left
  after the weights (checkpoint_memory.py) unless --batch-size says how many. A pre-quantized (fp8) checkpoint
  on CPU runs on this engine too, dequantized to the run's precision (CPUs have no fp8 matrix products).

Each response carries the generated token ids (the reference's dtype) and their count, so LoadGen computes
tokens/s; with token latencies on, the first token goes to `lg.FirstTokenComplete` as soon as it exists (TTFT).
A sequence that ends on EOS keeps the EOS token once at its end, as the reference SUTs return it (TEST06).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import numpy as np

from subtool.errors import SubtoolError
from subtool.runner import loadgen_watch
from subtool.runner.llm.checkpoint_memory import available_memory, check_bin_size, check_fits
from subtool.runner.workload import SutFailure

# fp8: the model loads in bf16 and the continuous engine keeps e4m3 copies of the decoder layers' projections
_TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "fp8": "bfloat16"}


@dataclass
class SutStats:
    samples: int = 0
    batches: int = 0
    generated_tokens: int = 0


def plan_batches(indices: list[int], lengths: np.ndarray, batch_size: int) -> list[list[int]]:
    """Positions into `indices`, grouped by prompt length (longest first) into batches of batch_size."""
    order = sorted(range(len(indices)), key=lambda i: -int(lengths[indices[i]]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def check_request(torch, device: str, precision: str, engine: str) -> None:
    """Refuse, before anything loads, a device, precision and engine the torch backends cannot run together."""
    if device == "cuda" and not torch.cuda.is_available():
        raise SubtoolError(
            "--backend torch-cuda but torch sees no CUDA device",
            rule="run.device",
            hint="use --backend torch-cpu, or install a CUDA build of torch",
        )
    if precision not in _TORCH_DTYPES:
        raise SubtoolError(
            f"precision {precision!r} is not supported by the torch backends; choose {', '.join(_TORCH_DTYPES)}",
            rule="run.precision",
        )
    if device == "cpu" and precision == "fp16":
        raise SubtoolError("fp16 is not supported on CPU", rule="run.precision", hint="use fp32 or bf16")
    if precision == "fp8" and (device != "cuda" or engine == "batched"):
        raise SubtoolError(
            "fp8 runs on the continuous engine on a GPU only",
            rule="run.precision",
            hint="use --backend torch-cuda (and --engine auto or continuous), or bf16",
        )


def stop_and_pad_ids(eos_token_id, pad_token_id, config: dict) -> tuple[list[int], int]:
    """The token ids generation stops on (the tokenizer's EOS, else the model config's; one id or a list) and
    the id prompts are padded with (the tokenizer's pad, else the first EOS, else 0)."""
    eos = eos_token_id if eos_token_id is not None else config.get("eos_token_id")
    eos_ids = sorted(set(eos if isinstance(eos, list) else [eos])) if eos is not None else []
    return eos_ids, int(pad_token_id if pad_token_id is not None else (eos_ids or [0])[0])


def _cache_keyword(model) -> str:
    """The forward's KV-cache keyword: transformers 5 renamed past_key_values to cache."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def choose_engine(engine: str, device: str, config: dict, generation, streams: bool, model_path=None) -> str:
    """batched or continuous, from the config alone (nothing loaded yet): `auto` is the continuous engine on CUDA
    for what it supports, and on CPU for a pre-quantized checkpoint (which only its streaming loader reads)."""
    from subtool.runner.llm.checkpoint import is_prequantized
    from subtool.runner.llm.engine_support import supports_config

    if engine not in ("auto", "batched", "continuous"):
        raise SubtoolError(f"unknown engine {engine!r}; choose auto, batched or continuous", rule="run.engine")
    reason = supports_config(config, generation)
    quantized = is_prequantized(config)
    if engine == "auto":
        engine = "continuous" if reason is None and (device == "cuda" or (quantized and streams)) else "batched"
    if engine == "continuous" and reason:
        raise SubtoolError(
            f"the continuous engine cannot run this model: {reason}", rule="run.engine", hint="use --engine batched"
        )
    if quantized and engine != "continuous":
        raise SubtoolError(
            "a pre-quantized checkpoint (config.json quantization_config) loads on the continuous engine only",
            rule="run.engine",
            hint="use --engine continuous (greedy Llama), or a bf16 checkpoint",
        )
    if quantized and not streams:
        raise SubtoolError(
            "pre-quantized weights load from safetensors files only (model.safetensors or its index)",
            path=model_path,
            rule="model.weights",
        )
    return engine


def _say(line: str) -> None:
    import sys

    print(f"llm: {line}", file=sys.stderr, flush=True)


class LlmGenerator:
    """The model and its generation loop, without LoadGen: what the local SUT and each Ray worker run.

    `run(pending, sink)` generates for every (query id, sample index) in pending; the sink receives
    `first_token(qid, token)` (only when the benchmark measures token latencies) and `complete(qid, tokens)`, and
    the continuous engine asks it for `more_work()` (samples that arrived meanwhile, non-blocking) every step.
    """

    def __init__(
        self,
        model_path,
        prompts: list[np.ndarray],
        generation,
        *,
        eos_token_id,
        pad_token_id,
        batch_size: int = 32,
        device: str = "cpu",
        precision: str = "fp32",
        threads: int | None = None,
        engine: str = "auto",
        model=None,
        engine_options: dict | None = None,
        auto_slots: bool = False,
    ):
        """`auto_slots`: the continuous engine on CUDA takes as many slots as the GPU memory left after the weights
        holds (else batch_size, at most that many)."""
        import torch

        from subtool.runner.llm.checkpoint import can_stream, read_config

        check_request(torch, device, precision, engine)
        if threads:
            torch.set_num_threads(threads)
        # `model`: an already built model (the GPU bench builds random weights in place instead of loading)
        config = model.config.to_dict() if model is not None else read_config(model_path)
        self.torch = torch
        self.device = torch.device(device)
        self.generation = generation
        self.prompts = prompts
        self.lengths = np.array([len(p) for p in prompts], dtype=np.int64)
        self.eos_ids, self.pad_id = stop_and_pad_ids(eos_token_id, pad_token_id, config)
        self.batch_size = max(1, int(batch_size))
        streams = model is None and can_stream(model_path)
        self.engine_name = choose_engine(engine, device, config, generation, streams, model_path)
        options = dict(engine_options or {})
        dtype = getattr(torch, _TORCH_DTYPES[precision])
        if model is not None:
            self.model = model
        elif self.engine_name == "continuous" and streams:
            self.model = self._stream(model_path, config, precision, dtype, options, auto_slots)
        else:
            check_bin_size(model_path, config)  # .bin weights: regular files, bounded by config.json
            check_fits(model_path, config, precision, device)
            self.model = self._load_model(model_path, torch, dtype, device)
        self.cache_kw = _cache_keyword(self.model)
        if self.engine_name == "continuous":
            self._check_placement()
            self.engine = self._continuous_engine(precision, options)
        else:
            self.engine = None
        if self.engine is None and precision == "fp8":
            raise SubtoolError("fp8 runs on the continuous engine only", rule="run.precision")
        self.stats = SutStats()
        self._sink = None

    # setup ---------------------------------------------------------------------------------------------
    def _load_model(self, model_path, torch, dtype, device):
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        from subtool.runner.llm.checkpoint import check_model_finite

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        kwargs = {"dtype": dtype}
        if device == "cuda" and torch.cuda.device_count() > 1:
            kwargs["device_map"] = "auto"  # spread layers over every visible GPU
        try:
            model, info = AutoModelForCausalLM.from_pretrained(
                str(model_path), local_files_only=True, output_loading_info=True, **kwargs
            )
        except Exception as exc:  # OSError, ValueError, safetensors' SafetensorError …: the files, not our code
            first = (str(exc).splitlines() or [""])[0]
            raise SubtoolError(
                f"cannot load the checkpoint: {exc.__class__.__name__}: {first}", path=model_path, rule="model.load"
            ) from None
        _check_loaded(info, model_path)
        if "device_map" not in kwargs:
            model.to(self.device)
        check_model_finite(model, model_path)
        return model.eval()

    def _check_placement(self) -> None:
        """A model loaded whole across several GPUs (device_map) cannot run on the continuous engine."""
        devices = set(getattr(self.model, "hf_device_map", {}).values())
        if len(devices) > 1:
            raise SubtoolError(
                "the continuous engine cannot run this model: it is spread over several devices",
                rule="run.engine",
                hint="use --engine batched, or a safetensors checkpoint (streamed onto one GPU)",
            )

    def _stream(self, model_path, config: dict, precision: str, dtype, options: dict, auto_slots: bool):
        """The checkpoint streamed onto the device layer by layer (checkpoint.py), checked against the device's
        memory first; the engine's layer weights go into `options`, the slots are sized from what is left."""
        import time

        from subtool.runner.llm.checkpoint import is_prequantized, load_streaming
        from subtool.runner.llm.checkpoint_memory import MIN_SLOTS, check_fits_streaming

        fp8 = precision == "fp8"
        kv_fp8 = self._kv_fp8(config, options, fp8, dtype)
        max_len = int(self.lengths.max()) + self.generation.max_new_tokens
        min_slots = min(MIN_SLOTS, len(self.prompts), MIN_SLOTS if auto_slots else self.batch_size)
        where = f"cuda:{self._cuda_index()}" if self.device.type == "cuda" else "this host (RAM)"
        check_fits_streaming(
            model_path,
            config,
            precision=precision,
            kv_fp8=kv_fp8,
            max_len=max_len,
            min_slots=min_slots,
            free=self._free_memory(),
            where=where,
        )
        if is_prequantized(config) and not fp8:
            _say(f"{model_path}: pre-quantized weights dequantized to {precision} (fp8 runs with --precision fp8)")
        t0 = time.monotonic()
        model, layers = load_streaming(model_path, self.device, dtype, fp8=fp8)
        if self.device.type == "cuda":  # the per-layer temporaries' cached blocks back to the free memory
            self.torch.cuda.empty_cache()
        options["layer_weights"] = layers
        options.setdefault("kv_cache", "fp8" if kv_fp8 else "model")
        size = ""
        if self.device.type == "cuda":
            size = f", {self.torch.cuda.memory_allocated(self._cuda_index()) / 2**30:.1f} GiB"
        _say(
            f"streamed {model_path} onto {where} in {time.monotonic() - t0:.1f} s "
            f"({'fp8' if fp8 else precision} weights{size})"
        )
        if self.device.type == "cuda":
            self._size_slots(model, config, options, kv_fp8, max_len, auto_slots)
        return model

    def _cuda_index(self) -> int:
        return self.device.index if self.device.index is not None else self.torch.cuda.current_device()

    def _free_memory(self) -> int | None:
        """Free bytes of the one device the continuous engine runs on (MemAvailable on CPU)."""
        if self.device.type == "cuda":
            return int(self.torch.cuda.mem_get_info(self._cuda_index())[0])
        return available_memory("cpu")

    def _kv_fp8(self, config: dict, options: dict, fp8: bool, dtype) -> bool:
        """Whether the engine's KV cache will be e4m3: asked, or (auto, fp8 weights) where decode is Triton's."""
        from subtool.runner.llm.checkpoint_memory import Shape
        from subtool.runner.llm.engine_attention import choose_decode_attention

        kv = options.get("kv_cache", "auto" if fp8 else "model")
        if kv != "auto":
            return kv == "fp8"
        shape = Shape.of(config)
        attention = choose_decode_attention(
            options.get("decode_attention", "auto"), self.device, dtype, shape.head_dim, shape.heads // shape.kv_heads
        )
        return fp8 and attention == "triton"

    def _size_slots(self, model, config: dict, options: dict, kv_fp8: bool, max_len: int, auto_slots: bool) -> None:
        """The slot count from the device's memory left once `model` (not yet self.model) is on it."""
        from subtool.runner.llm.checkpoint_memory import Shape, kv_bytes_per_token, plan_slots, workspace_bytes
        from subtool.runner.llm.engine_attention import reads_pages

        shape = Shape.of(config)
        width = 4 if model.lm_head.weight.dtype == self.torch.float32 else 2
        # paged where the decode attention reads pages (the Triton kernel), unless the options size the cache
        paged = (
            options["kv_pages"] is not None
            if "kv_pages" in options
            else reads_pages(
                options.get("decode_attention", "auto"),
                self.device,
                model.lm_head.weight.dtype,
                shape.head_dim,
                shape.heads // shape.kv_heads,
            )
        )
        # a sequence's typical size at its end, for the paged cache's slot count: its prompt and half the longest
        # answer (answers end early as often as not; a pool that runs dry preempts, it never fails)
        typical = int(self.lengths.mean()) + self.generation.max_new_tokens // 2 if paged else None
        plan = plan_slots(
            self._free_memory(),
            kv_bytes_per_token(shape, kv_fp8, width),
            max_len,
            workspace_bytes(shape, int(options.get("prefill_tokens", 16384))),
            asked=self.batch_size,
            auto=auto_slots,
            samples=len(self.prompts),
            kv_fp8=kv_fp8,
            typical=typical,
        )
        self.batch_size = plan.slots
        if plan.pages is not None:
            options.setdefault("kv_pages", plan.pages)
            options.setdefault("page_tokens", plan.page)
        _say(plan.line())

    def _continuous_engine(self, precision: str, options: dict):
        from subtool.runner.llm.engine import ContinuousEngine

        # options: the engine's own tuning keywords (prefill token budget …; layer_weights when streamed)
        if precision == "fp8":
            # fp8 projections, and an fp8 KV cache where the engine's decode attention is the Triton kernel
            options.setdefault("weights", "fp8")
            options.setdefault("kv_cache", "auto")
        return ContinuousEngine(
            self.model,
            slots=self.batch_size,
            max_len=int(self.lengths.max()) + self.generation.max_new_tokens,
            eos_ids=self.eos_ids,
            generation=self.generation,
            **options,
        )

    # generation ----------------------------------------------------------------------------------------
    def run(self, pending: list[tuple[int, int]], sink) -> None:
        """Generate for every (query id, sample index) in pending, and (continuous engine) whatever the sink's
        more_work() adds meanwhile; returns when no sample is left."""
        self._sink = sink
        if self.engine is not None:
            self.engine.run(pending, self)
        else:
            self.run_batches(pending)

    def first_token(self, query_id: int, token: int) -> None:
        if self.generation.token_latencies:
            self._sink.first_token(query_id, token)

    def complete(self, query_id: int, tokens: list[int]) -> None:
        self.stats.samples += 1
        self.stats.generated_tokens += len(tokens)
        self._sink.complete(query_id, tokens)

    def more_work(self) -> list:
        return self._sink.more_work()

    # the batched engine --------------------------------------------------------------------------------
    def run_batches(self, samples: list[tuple[int, int]]) -> None:
        indices = [idx for _, idx in samples]
        for batch in plan_batches(indices, self.lengths, self.batch_size):
            rows = [samples[i] for i in batch]
            if self.generation.num_beams > 1:
                self._beam_batch(rows)
            else:
                self._greedy_batch(rows)
            self.stats.batches += 1

    def _padded(self, rows):
        torch = self.torch
        seqs = [self.prompts[idx] for _, idx in rows]
        width = max(len(s) for s in seqs)
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for r, s in enumerate(seqs):
            ids[r, width - len(s) :] = s
            mask[r, width - len(s) :] = 1
        first_device = self.model.get_input_embeddings().weight.device
        return torch.from_numpy(ids).to(first_device), torch.from_numpy(mask).to(first_device)

    def _pick(self, logits, step: int):
        if step < self.generation.min_new_tokens and self.eos_ids:
            logits[:, self.eos_ids] = float("-inf")
        return logits.argmax(dim=-1)

    def _greedy_batch(self, rows) -> None:
        torch = self.torch
        from transformers import DynamicCache

        ids, mask = self._padded(rows)
        position = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        eos = set(self.eos_ids)
        outputs: list[list[int]] = [[] for _ in rows]
        open_rows = set(range(len(rows)))
        with torch.inference_mode():
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=position,
                use_cache=True,
                logits_to_keep=1,
                **{self.cache_kw: cache},
            )
            for step in range(self.generation.max_new_tokens):
                nxt = self._pick(out.logits[:, -1, :].float(), step)
                tokens = nxt.tolist()
                for r in sorted(open_rows):
                    outputs[r].append(tokens[r])
                    if step == 0:
                        self.first_token(rows[r][0], tokens[r])
                    if tokens[r] in eos or step == self.generation.max_new_tokens - 1:
                        open_rows.discard(r)
                        self.complete(rows[r][0], outputs[r])
                if not open_rows:
                    break
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
                position = position[:, -1:] + 1
                out = self.model(
                    input_ids=nxt[:, None],
                    attention_mask=mask,
                    position_ids=position,
                    use_cache=True,
                    **{self.cache_kw: cache},
                )

    def _beam_batch(self, rows) -> None:
        ids, mask = self._padded(rows)
        g = self.generation
        with self.torch.inference_mode():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=g.max_new_tokens,
                min_new_tokens=g.min_new_tokens,
                num_beams=g.num_beams,
                early_stopping=True,
                do_sample=False,
                pad_token_id=self.pad_id,
                eos_token_id=self.eos_ids or None,
            )
        eos = set(self.eos_ids)
        for r, row in enumerate(out[:, ids.shape[1] :].tolist()):
            tokens = []
            for t in row:  # up to and including the first EOS; the rest is padding
                tokens.append(t)
                if t in eos:
                    break
            self.first_token(rows[r][0], tokens[0])
            self.complete(rows[r][0], tokens)


class TorchLlmSUT(SutFailure):
    """The LoadGen adapter over an LlmGenerator: LoadGen's thread queues the samples it issues, a worker thread
    generates them; first tokens go to lg.FirstTokenComplete, answers (with their token count) to
    QuerySamplesComplete. Every issued sample is answered once, also when generation fails (empty, and stop()
    raises)."""

    def __init__(self, model_path, prompts: list[np.ndarray], generation, **options):
        import mlperf_loadgen as lg

        self.generator = self.make_generator(model_path, prompts, generation, options)
        self.generation = generation
        self.stats = self.generator.stats
        self.np_dtype = np.dtype(generation.output_dtype)
        self._queue: queue.Queue = queue.Queue()
        self._open: set[int] = set()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self.lg = lg
        self._worker = threading.Thread(target=self._work, name="subtool-llm-sut", daemon=True)
        self._worker.start()
        self.handle = loadgen_watch.construct_sut(lg, self.issue_queries, self.flush_queries)

    def make_generator(self, model_path, prompts, generation, options: dict):
        """The generator this SUT drives (tp_launch.py's SUT: rank 0 of a tensor-parallel engine)."""
        return LlmGenerator(model_path, prompts, generation, **options)

    # LoadGen callbacks ---------------------------------------------------------------------------------
    def issue_queries(self, query_samples) -> None:
        items = [(qs.id, qs.index) for qs in query_samples]
        with self._lock:
            self._open.update(qid for qid, _ in items)
        self._queue.put(items)

    def flush_queries(self) -> None:
        pass

    # the generator's sink ------------------------------------------------------------------------------
    def first_token(self, query_id: int, token: int) -> None:
        arr = np.array([token], dtype=self.np_dtype)
        loadgen_watch.first_token(self.lg, [self.lg.QuerySampleResponse(query_id, arr.ctypes.data, arr.nbytes)])

    def complete(self, query_id: int, tokens: list[int]) -> None:
        with self._lock:
            if query_id not in self._open:
                return
            self._open.discard(query_id)
        arr = np.asarray(tokens, dtype=self.np_dtype)
        loadgen_watch.complete(
            self.lg, [self.lg.QuerySampleResponse(query_id, arr.ctypes.data, arr.nbytes, len(tokens))]
        )

    def more_work(self) -> list:
        """Samples that arrived since the engine started (non-blocking)."""
        pending, stop = self._drain([])
        if stop:
            self._queue.put(None)
        return pending

    # the worker ----------------------------------------------------------------------------------------
    def _drain(self, first: list) -> tuple[list, bool]:
        """Everything queued now (the Offline query arrives whole; Server queries trickle in)."""
        pending = list(first)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return pending, False
            if item is None:
                return pending, True
            pending.extend(item)

    def _work(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is None:
                return
            pending, stop = self._drain(item)
            if self._error is not None:
                self._answer_empty()
                continue
            try:
                self.generator.run(pending, self)
            except BaseException as exc:  # reported by stop(); LoadGen would otherwise wait forever
                self._error = exc
                self._answer_empty()

    def _answer_empty(self) -> None:
        with self._lock:
            open_now, self._open = sorted(self._open), set()
        if open_now:
            loadgen_watch.complete(self.lg, [self.lg.QuerySampleResponse(qid, 0, 0, 0) for qid in open_now])

    def stop(self) -> None:
        self._queue.put(None)
        self._worker.join()
        self.lg.DestroySUT(self.handle)
        if self._error is not None:
            raise SubtoolError(f"the SUT failed during the run: {self._error!r}", rule="run.sut_error")


def _check_loaded(info: dict, model_path) -> None:
    """transformers fills a weight the files lack with random numbers and skips one the model has no place for,
    with a warning at most: every weight must come from the files, and the config must describe them all (the
    streaming loader refuses the same)."""
    missing = sorted(info.get("missing_keys") or ())
    unused = sorted(k for k in info.get("unexpected_keys") or () if not k.endswith("rotary_emb.inv_freq"))
    for keys, what, hint in (
        (missing, "missing from the checkpoint", "the checkpoint is incomplete, or its config claims more"),
        (unused, "in the checkpoint but not in the model", "the config (num_hidden_layers, …) must describe the files"),
    ):
        if keys:
            raise SubtoolError(
                f"{len(keys)} weights {what} (e.g. {', '.join(keys[:3])})",
                path=model_path,
                rule="model.weights",
                hint=hint,
            )
