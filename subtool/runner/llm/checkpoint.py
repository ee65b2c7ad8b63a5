"""LLM checkpoints: the checks before anything loads, the tokenizer, and the streaming loader of the continuous
engine's Llama weights.

Streaming (`load_streaming`): the model is a skeleton (skeleton.meta_model: decoder layers on the meta device) and
the decoder layers' weights are read from the safetensors files one layer at a time, tensor by tensor: each tensor
goes from its file to the target device at once, a layer's projections are fused (q|k|v, gate|up) and, for fp8,
quantized to e4m3 per output channel there (checkpoint_fp8.py reads the pre-quantized formats), and the layer's
full-width copies are dropped before the next layer is read. Neither host nor device memory ever holds the whole
model in bf16: the host holds one tensor plus the pages of the file being read (a file is opened per layer and
closed after it), the device the result plus one layer.

Bad checkpoints are refused in one line naming the file and the rule (`model.config`: a config.json or
generation_config.json that is not a regular file of strict JSON under 16 MiB, or a generation_config.json field
that would change what the batched engine's beam search returns; `model.weights`: a missing tensor, a wrong shape
or dtype, an index naming a missing file, a broken scale, a NaN or ±inf value or one past the run's dtype, .bin
weights that are not regular files or larger than config.json's model; `model.load`: a file safetensors cannot
read).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from subtool.errors import SubtoolError, exception_line
from subtool.mlperf.json_file import read_json
from subtool.runner.llm.checkpoint_config import check_config_fields
from subtool.runner.llm.specs import LlmSpec

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
BIN = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
TOKENIZER_LIMIT = 256 << 20  # Llama 3's tokenizer.json is 9 MB
GENERATION_CONFIG = "generation_config.json"
# What of generation_config.json a run uses: only the batched engine's beam search (model.generate, GPT-J) reads it,
# and it passes max_new_tokens, min_new_tokens, num_beams, early_stopping, do_sample, pad_token_id and
# eos_token_id itself, so the file's values of those (and temperature, top_p, max_length) are never used. Of the
# rest, these change what the harness gets back, and must be absent or the value given.
GENERATION_FIXED = {
    "max_time": (None, "generation would stop after that many seconds, cutting answers short"),
    "stop_strings": (None, "generation would stop on text, and the harness gives model.generate no tokenizer"),
    "num_return_sequences": (1, "each prompt would get several answers, passed on as other samples' answers"),
    "return_dict_in_generate": (False, "model.generate would return an object, not the token ids the run reads"),
}
_PICKS = "beam search would pick other tokens than the reference's decoding"
GENERATION_FIXED |= {
    key: (value, _PICKS)
    for key, value in (
        ("repetition_penalty", 1.0),
        ("encoder_repetition_penalty", 1.0),
        ("no_repeat_ngram_size", 0),
        ("encoder_no_repeat_ngram_size", 0),
        ("length_penalty", 1.0),
        ("num_beam_groups", 1),
        ("diversity_penalty", 0.0),
        ("bad_words_ids", None),
        ("force_words_ids", None),
        ("suppress_tokens", None),
        ("begin_suppress_tokens", None),
        ("forced_bos_token_id", None),
        ("forced_eos_token_id", None),
        ("sequence_bias", None),
        ("exponential_decay_length_penalty", None),
        ("guidance_scale", None),
    )
}


# ------------------------------------------------------------------------- checks before anything loads
def read_config(model_path: Path) -> dict:
    if not model_path.is_dir():
        raise SubtoolError(
            "is a file, not a checkpoint folder" if model_path.exists() else "model directory not found",
            path=model_path,
            rule="model.missing",
            hint="--model-path takes a Hugging Face checkpoint directory (config.json, weights, tokenizer.json)",
        )
    config_path = model_path / "config.json"
    try:
        config = read_json(config_path, "model.config")
    except FileNotFoundError:
        raise SubtoolError("config.json missing", path=config_path, rule="model.config") from None
    if not isinstance(config, dict):
        raise SubtoolError("config.json is not a JSON object", path=config_path, rule="model.config")
    return config


def check_checkpoint(spec: LlmSpec, model_path: Path, *, need_weights: bool = True) -> dict:
    """Refuse a checkpoint of another architecture, or without weights or tokenizer, before loading anything."""
    model_path = Path(model_path)
    config = read_config(model_path)
    if config.get("model_type") not in spec.model_types:
        raise SubtoolError(
            f"model_type is {config.get('model_type')!r}; {spec.name} needs a "
            f"{' or '.join(spec.model_types)} checkpoint",
            path=model_path / "config.json",
            rule="model.architecture",
        )
    check_config_fields(config, model_path / "config.json")
    if not any((model_path / f).exists() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise SubtoolError(
            "no tokenizer (tokenizer.json, tokenizer.model or vocab.json)", path=model_path, rule="model.tokenizer"
        )
    _check_plain_files(model_path)
    check_generation_config(model_path)
    if need_weights and not any((model_path / f).exists() for f in WEIGHT_FILES):
        raise SubtoolError(f"no weights ({', '.join(WEIGHT_FILES)})", path=model_path, rule="model.weights")
    return config


def _check_plain_files(model_path: Path) -> None:
    """The tokenizer and weight files that are there are regular files (a FIFO or /dev/zero would hang or fill
    memory in the library that reads it), tokenizer files under TOKENIZER_LIMIT; an index is bounded JSON,
    the safetensors one naming regular files in the directory."""
    for rule, names in (("model.tokenizer", TOKENIZER_FILES), ("model.weights", WEIGHT_FILES)):
        for name in names:
            path = model_path / name
            if not os.path.lexists(path):
                continue
            if not path.is_file():
                raise SubtoolError(f"{name} is not a regular file", path=path, rule=rule)
            if rule == "model.tokenizer" and path.stat().st_size > TOKENIZER_LIMIT:
                raise SubtoolError(f"{name} is larger than {TOKENIZER_LIMIT >> 20} MiB", path=path, rule=rule)
            if name == INDEX:  # every file it names a regular file beside it (transformers would open ../x)
                read_weight_map(path)
            elif name.endswith(".json") and rule == "model.weights":
                read_json(path, rule)
    bin_weight_files(model_path)


def check_generation_config(model_path: Path) -> None:
    """generation_config.json, where there is one: a regular file of strict JSON (no NaN or Infinity) under 16 MiB
    holding an object, with GENERATION_FIXED's fields absent or at their value."""
    path = Path(model_path) / GENERATION_CONFIG
    if not os.path.lexists(path):
        return
    try:
        value = read_json(path, "model.config")
    except FileNotFoundError:  # a dangling link
        raise SubtoolError(f"{GENERATION_CONFIG} is a dangling link", path=path, rule="model.config") from None
    if not isinstance(value, dict):
        raise SubtoolError(f"{GENERATION_CONFIG} is not a JSON object", path=path, rule="model.config")
    for key, (fixed, why) in GENERATION_FIXED.items():
        if value.get(key) not in (None, fixed):
            raise SubtoolError(f"{key} is {json.dumps(value[key])[:40]}: {why}", path=path, rule="model.config")


def read_weight_map(index: Path) -> dict[str, Path]:
    """An index's weight_map (tensor name → its file in the index's directory), each file a regular one there."""
    try:
        data = read_json(index, "model.weights")
    except FileNotFoundError:  # a dangling link
        raise SubtoolError("the index is missing", path=index, rule="model.weights") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise SubtoolError("the index has no weight_map of file names", path=index, rule="model.weights")
    for file in sorted(set(weight_map.values())):
        if Path(file).name != file or not (index.parent / file).is_file():
            raise SubtoolError(
                f"the index names {file!r}, which is not a regular file in the checkpoint directory",
                path=index,
                rule="model.weights",
            )
    return {name: index.parent / file for name, file in weight_map.items()}


def bin_weight_files(model_path: Path) -> list[Path]:
    """The torch.save (pickle) files transformers would load: pytorch_model.bin, else the shards its index names;
    none where safetensors weights are (transformers prefers them). Each is a regular file (a link to one is fine):
    a FIFO or a link to /dev/zero would hang torch.load or fill memory."""
    root = Path(model_path)
    if can_stream(root):
        return []
    if os.path.lexists(root / BIN):
        if not (root / BIN).is_file():
            raise SubtoolError(f"{BIN} is not a regular file", path=root / BIN, rule="model.weights")
        return [root / BIN]
    if os.path.lexists(root / BIN_INDEX):
        return sorted(set(read_weight_map(root / BIN_INDEX).values()))
    return []


def checkpoint_bytes(model_path: Path) -> int:
    """Bytes of weights on disk (safetensors or .bin shards)."""
    total = 0
    for pattern in ("*.safetensors", "pytorch_model*.bin"):
        total += sum(p.stat().st_size for p in Path(model_path).glob(pattern))
    return total


# tokenizer_config.json classes that are tokenizer.json read by the `tokenizers` library and nothing more (Llama 3's
# PreTrainedTokenizerFast, and transformers 5's name for it, which the demos save): loaded as that class, for which
# AutoTokenizer would import torch through AutoConfig (2-3 s of an openai-backend run that needs no torch)
PLAIN_FAST_TOKENIZERS = ("PreTrainedTokenizerFast", "TokenizersBackend")


def tokenizer_loader(model_path: Path):
    """The class that loads `model_path`'s tokenizer: PreTrainedTokenizerFast where tokenizer_config.json names a
    plain fast tokenizer and tokenizer.json is there, else AutoTokenizer (which finds the class itself, and says
    what is wrong with a config it cannot read)."""
    fast = False
    try:
        config = read_json(Path(model_path) / "tokenizer_config.json", "model.tokenizer")
        fast = isinstance(config, dict) and config.get("tokenizer_class") in PLAIN_FAST_TOKENIZERS
    except (FileNotFoundError, SubtoolError):
        pass
    if fast and os.path.isfile(Path(model_path) / "tokenizer.json"):
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast
    from transformers import AutoTokenizer

    return AutoTokenizer


def load_tokenizer(model_path: Path):
    from transformers.utils import logging as hf_logging

    loader = tokenizer_loader(model_path)
    hf_logging.set_verbosity_error()
    try:
        tokenizer = loader.from_pretrained(str(model_path), local_files_only=True)
    except Exception as exc:  # config.json and tokenizer.json parsed by transformers/tokenizers: any error type
        raise SubtoolError(
            f"cannot load the tokenizer: {exception_line(exc)}", path=model_path, rule="model.tokenizer"
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def can_stream(model_path: Path) -> bool:
    """Whether the weights are safetensors (the streaming loader's input); .bin checkpoints load whole."""
    return any(os.path.lexists(Path(model_path) / name) for name in (INDEX, SINGLE))


def is_prequantized(config: dict) -> bool:
    """Whether config.json declares quantized weights (which only the streaming loader reads)."""
    return isinstance(config.get("quantization_config"), dict)


def fp8_checkpoint(model_path: Path | str | None) -> str | None:
    """The pre-quantized FP8 format config.json declares (quant_method "fp8" or "compressed-tensors"), else None:
    what `--precision auto` runs in fp8 on a GPU. Reads only config.json and never raises (a config the loader
    cannot read is its error, later)."""
    if model_path is None:
        return None
    try:
        config = read_json(Path(model_path) / "config.json", "model.config")
    except (OSError, SubtoolError):
        return None
    q = config.get("quantization_config") if isinstance(config, dict) else None
    method = q.get("quant_method") if isinstance(q, dict) else None
    return method if method in ("fp8", "compressed-tensors") else None


# ------------------------------------------------------------------------------ the safetensors files
class SafetensorsFiles:
    """Which file holds which tensor (model.safetensors.index.json's weight_map, or the one file's header), and
    reading tensors straight to a device, one at a time."""

    def __init__(self, model_path: Path):
        self.root = Path(model_path)
        index = self.root / INDEX
        self.weight_map = self._index(index) if os.path.lexists(index) else self._single(self.root / SINGLE)

    def _index(self, index: Path) -> dict[str, Path]:
        return read_weight_map(index)

    def _single(self, file: Path) -> dict[str, Path]:
        if not file.is_file():
            raise SubtoolError(f"no safetensors weights ({SINGLE} or {INDEX})", path=self.root, rule="model.weights")
        with self._open(file) as f:
            return {name: file for name in f.keys()}

    @staticmethod
    def _open(file: Path):
        from safetensors import safe_open

        try:
            return safe_open(str(file), framework="pt", device="cpu")
        except Exception as exc:  # SafetensorError, OSError: a header safetensors cannot read
            raise SubtoolError(
                f"not a readable safetensors file: {_first_line(exc)}", path=file, rule="model.load"
            ) from None

    def read(self, names: list[str], device, shapes: dict | None = None) -> dict[str, object]:
        """The named tensors on `device`, read file by file and moved one at a time (missing names are absent);
        a tensor whose header shape is not `shapes[name]` is refused before its bytes are read."""
        by_file: dict[Path, list[str]] = {}
        for name in names:
            if name in self.weight_map:
                by_file.setdefault(self.weight_map[name], []).append(name)
        out = {}
        for file, wanted in by_file.items():
            with self._open(file) as f:
                present = set(f.keys())
                for name in wanted:
                    if name not in present:
                        raise SubtoolError(
                            f"{name}: the index places it here but the file does not hold it",
                            path=file,
                            rule="model.weights",
                        )
                    if shapes and name in shapes:
                        self._check_shape(f, name, shapes[name], file)
                    try:
                        tensor = f.get_tensor(name)
                    except Exception as exc:  # a cut-short file or a dtype this safetensors cannot read
                        raise SubtoolError(
                            f"{name}: cannot read: {_first_line(exc)}", path=file, rule="model.load"
                        ) from None
                    out[name] = tensor.to(device)
                    del tensor
        return out

    @staticmethod
    def _check_shape(f, name: str, shape: tuple, file: Path) -> None:
        try:
            found = tuple(f.get_slice(name).get_shape())
        except Exception as exc:  # a header entry safetensors cannot describe
            raise SubtoolError(f"{name}: cannot read: {_first_line(exc)}", path=file, rule="model.load") from None
        if found != tuple(shape):
            raise SubtoolError(
                f"{name} has shape {list(found)}, the config says {list(shape)}", path=file, rule="model.weights"
            )


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [exc.__class__.__name__])[0]


def check_finite(tensors: dict, where) -> None:
    """Refuse a weight or bias that holds a NaN or ±inf, naming it and its file (`where(name)`); scales are
    to_part's to check. The loaders call it on the tensors as the engine will run them, after the cast to the run's
    dtype (LayerReader.cast): an fp32 1e6 is finite, and ±inf in fp16; checked in the file's dtype it would pass.

    Cheap enough for every load: one reduction per tensor on the device it was just copied to and one
    synchronisation per call (per layer). Float tensors: aminmax, which NaN and ±inf survive, with no temporary the
    size of the tensor (isfinite would make one, and on CPU bf16 it is 300× slower). e4m3 has no inf, and its NaN
    is the byte 0x7F or 0xFF: the largest int8 and the largest uint8. Other dtypes are refused by to_part.
    """
    import torch

    names, flags = [], []
    for name, t in tensors.items():
        if not name.endswith((".weight", ".bias")) or not t.numel():
            continue
        if t.dtype == torch.float8_e4m3fn:
            raw = t.view(torch.uint8)
            flags.append((raw.amax() != 0xFF) & (raw.view(torch.int8).amax() != 0x7F))
        elif t.is_floating_point():
            flags.append(torch.isfinite(torch.stack(torch.aminmax(t))).all())
        else:
            continue
        names.append(name)
    if not flags:
        return
    one_device = len({f.device for f in flags}) == 1  # a model spread over GPUs (device_map) syncs per tensor
    ok = torch.stack(flags).cpu() if one_device else torch.stack([f.cpu() for f in flags])
    if not bool(ok.all()):
        name = names[int((~ok).nonzero()[0, 0])]
        dtype = str(tensors[name].dtype).removeprefix("torch.")
        raise SubtoolError(
            f"{name}: non-finite values (NaN or ±inf) in {dtype}", path=where(name), rule="model.weights"
        )


def check_model_finite(model, model_path: Path) -> None:
    """check_finite over a model loaded whole (the batched engine's transformers load), in the dtype it runs in;
    the file named is the one the index places the weight in, else the checkpoint directory."""
    model_path = Path(model_path)

    def where(name: str) -> Path:
        if os.path.lexists(model_path / INDEX):
            return SafetensorsFiles(model_path).weight_map.get(name, model_path)
        return model_path / SINGLE if os.path.lexists(model_path / SINGLE) else model_path

    check_finite(dict(model.named_parameters()), where)


# ------------------------------------------------------------------------------------- the streaming load
PROJECTIONS = {  # engine name → the checkpoint's modules side by side
    "qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "o": ("self_attn.o_proj",),
    "gate_up": ("mlp.gate_proj", "mlp.up_proj"),
    "down": ("mlp.down_proj",),
}


def projection_shapes(config) -> dict[str, tuple[int, int]]:
    """Each projection module's weight shape [out, in] from a transformers Llama config."""
    h, i = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    return {
        "self_attn.q_proj": (q, h),
        "self_attn.k_proj": (kv, h),
        "self_attn.v_proj": (kv, h),
        "self_attn.o_proj": (h, q),
        "mlp.gate_proj": (i, h),
        "mlp.up_proj": (i, h),
        "mlp.down_proj": (h, i),
    }


class LayerReader:
    """Reads decoder layer i's tensors to the device and builds the engine's per-layer dict from them."""

    def __init__(self, files: SafetensorsFiles, config, fmt, device, dtype, fp8: bool):
        self.files, self.config, self.fmt = files, config, fmt
        self.device, self.dtype, self.fp8 = device, dtype, fp8
        self.shapes = projection_shapes(config)
        self.bias = {
            "self_attn": bool(getattr(config, "attention_bias", False)),
            "mlp": bool(getattr(config, "mlp_bias", False)),
        }

    def names(self, i: int) -> list[str]:
        prefix = f"model.layers.{i}."
        names = [prefix + "input_layernorm.weight", prefix + "post_attention_layernorm.weight"]
        for module in self.shapes:
            names.append(f"{prefix}{module}.weight")
            if self.fmt.scale_suffix:
                names.append(f"{prefix}{module}.{self.fmt.scale_suffix}")
            if self.bias[module.split(".")[0]]:
                names.append(f"{prefix}{module}.bias")
        return names

    def expected(self, i: int) -> dict[str, tuple]:
        """The shape of each weight and norm of layer i (scales are checked against their weight later)."""
        prefix, h = f"model.layers.{i}.", self.config.hidden_size
        shapes = {f"{prefix}{m}.weight": s for m, s in self.shapes.items()}
        shapes |= {f"{prefix}{m}.bias": (s[0],) for m, s in self.shapes.items()}
        return shapes | {prefix + "input_layernorm.weight": (h,), prefix + "post_attention_layernorm.weight": (h,)}

    def layer(self, i: int) -> dict:
        from subtool.runner.llm.checkpoint_fp8 import Part, fuse, to_part

        prefix = f"model.layers.{i}."
        got = self.files.read(self.names(i), self.device, self.expected(i))
        self.cast(got, projections=not self.fp8)  # fp8 quantizes the projections per channel from the file's dtype
        check_finite(got, self._where)
        out = {
            "in_norm": self._tensor(got, prefix + "input_layernorm.weight", (self.config.hidden_size,)),
            "post_norm": self._tensor(got, prefix + "post_attention_layernorm.weight", (self.config.hidden_size,)),
        }
        for engine_name, modules in PROJECTIONS.items():
            parts, biases = [], []
            for module in modules:
                name = f"{prefix}{module}.weight"
                weight = self._tensor(got, name, self.shapes[module], cast=False)
                scale = got.pop(f"{prefix}{module}.{self.fmt.scale_suffix}", None) if self.fmt.scale_suffix else None
                part = to_part(weight, scale, self.fmt, name, self._where(name))
                if not self.fp8 and weight.element_size() == 1:  # e4m3 × its scale, checked in the run's dtype
                    part = Part(dense=part.dequantized(self.dtype))
                    check_finite({name: part.dense}, self._where)
                parts.append(part)
                if self.bias[module.split(".")[0]]:
                    biases.append(self._tensor(got, f"{prefix}{module}.bias", (self.shapes[module][0],)))
            bias = None if not biases else (biases[0] if len(biases) == 1 else self._cat(biases))
            out[engine_name] = fuse(parts, bias, self.fp8, self.dtype)
            del parts
            self._check_scale(out[engine_name], f"{prefix}{modules[0]}")
        return out

    def cast(self, got: dict, projections: bool) -> None:
        """The float weights and biases of `got` (read in the file's dtype) in the run's dtype, in place; e4m3 (and
        other one-byte or integer tensors, which to_part refuses) as they are, the projections' only if
        `projections`. The cast the engine needs anyway, done before check_finite rather than after it: the check
        sees the values the engine runs with, for no extra pass."""
        for name, tensor in got.items():
            if not name.endswith((".weight", ".bias")) or not tensor.is_floating_point() or tensor.element_size() < 2:
                continue
            if projections or not name.endswith("_proj.weight"):
                got[name] = tensor.to(self.dtype)

    @staticmethod
    def _cat(tensors):
        import torch

        return torch.cat(tensors)

    def _where(self, name: str):
        return self.files.weight_map.get(name, self.files.root)

    def _tensor(self, got: dict, name: str, shape: tuple, cast: bool = True):
        tensor = got.pop(name, None)
        if tensor is None:
            raise SubtoolError(f"{name} is missing", path=self._where(name), rule="model.weights")
        if tuple(tensor.shape) != tuple(shape):
            raise SubtoolError(
                f"{name} has shape {list(tensor.shape)}, the config says {list(shape)}",
                path=self._where(name),
                rule="model.weights",
            )
        return tensor.to(self.dtype) if cast else tensor

    def _check_scale(self, lin: tuple, name: str) -> None:
        """fp8: a weight with inf/nan values gives a non-finite channel scale; refuse it here, not as garbage."""
        import torch

        if lin[3] is not None and not bool(torch.isfinite(lin[3]).all()):
            raise SubtoolError(
                f"{name}: weights with non-finite values (inf or nan)", path=self._where(name), rule="model.weights"
            )


def stream_layers(files: SafetensorsFiles, config, fmt, device, dtype, fp8: bool) -> Iterator[tuple[int, dict]]:
    """(i, layer i's weights in the engine's form) for every decoder layer, one layer in memory at a time."""
    reader = LayerReader(files, config, fmt, device, dtype, fp8)
    for i in range(config.num_hidden_layers):
        yield i, reader.layer(i)


def _fill_outer(model, files: SafetensorsFiles, config, fmt, device, dtype) -> None:
    """The embedding, the final norm and the LM head (unless tied) into the skeleton's empty tensors."""
    import torch

    from subtool.runner.llm.checkpoint_fp8 import to_part

    reader = LayerReader(files, config, fmt, device, dtype, False)
    h, vocab = config.hidden_size, config.vocab_size
    wanted = {"model.embed_tokens": (vocab, h), "model.norm": (h,)}
    if not getattr(config, "tie_word_embeddings", False):
        wanted["lm_head"] = (vocab, h)
    names = [f"{m}.weight" for m in wanted] + ([f"{m}.{fmt.scale_suffix}" for m in wanted] if fmt.scale_suffix else [])
    got = files.read(names, device, {f"{m}.weight": shape for m, shape in wanted.items()})
    reader.cast(got, projections=True)
    check_finite(got, reader._where)
    with torch.no_grad():
        for module, shape in wanted.items():
            name = f"{module}.weight"
            tensor = reader._tensor(got, name, shape, cast=False)
            scale = got.pop(f"{module}.{fmt.scale_suffix}", None) if fmt.scale_suffix else None
            if len(shape) == 2:
                quantized = tensor.element_size() == 1
                tensor = to_part(tensor, scale, fmt, name, reader._where(name)).dequantized(dtype)
                if quantized:  # e4m3 × its scale, checked in the run's dtype
                    check_finite({name: tensor}, reader._where)
            model.get_submodule(module).weight.copy_(tensor)


def model_config(model_path: Path):
    """The transformers config of the checkpoint, without its quantization_config (the skeleton is built plain;
    the loader reads the quantized tensors itself)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(model_path), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise SubtoolError(
            f"cannot read the model config: {_first_line(exc)}",
            path=Path(model_path) / "config.json",
            rule="model.config",
        ) from None
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    return config


def load_streaming(model_path: Path, device, dtype, *, fp8: bool):
    """(skeleton model, per-layer weights) for ContinuousEngine(model, layer_weights=...): the checkpoint read
    layer by layer onto `device`, projections in e4m3 per output channel when fp8, else in `dtype`."""
    from subtool.runner.llm.checkpoint_fp8 import weight_format
    from subtool.runner.llm.skeleton import meta_model

    model_path = Path(model_path)
    fmt = weight_format(read_config(model_path), model_path / "config.json")
    files = SafetensorsFiles(model_path)
    config = model_config(model_path)
    model = meta_model(config, device, dtype)
    _fill_outer(model, files, config, fmt, device, dtype)
    layers: list[dict | None] = [None] * config.num_hidden_layers
    for i, weights in stream_layers(files, config, fmt, device, dtype, fp8):
        layers[i] = weights
    return model, layers
