"""The embedded LLM demos: a tiny random-weight model of each family's architecture and a generated data set in
the reference's file format, with the official sample count.

- llama3.1-8b: LlamaForCausalLM (grouped-query attention, rope theta 500000), cnn_eval.json with tok_input;
- llama2-70b: LlamaForCausalLM (rope theta 10000), the OpenOrca DataFrame pickle with tok_input;
- gptj: GPTJForCausalLM, cnn_eval.json without token ids (the workload tokenizes with the Alpaca template).

The tokenizer is a word-level tokenizer over generated words (one word, one token). Samples are short (a few
dozen prompt tokens) and the demo generates DEMO_MAX_NEW_TOKENS tokens instead of the official 128 / 1,024, so
that 13,368 or 24,576 samples run through LoadGen on a laptop CPU in minutes; the counts stay official, so the
accuracy run covers the whole data set as the checker requires. Random weights: the text is meaningless and the
accuracy far below the closed-division targets (the demo is open division only).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from subtool.fsutil import atomic_write_text
from subtool.runner.demo_assets import DEMO_MARKER, DemoAssets, build_once, cache_root, generate_vocabulary
from subtool.runner.llm.specs import LlmSpec

DEMO_VERSION = "3"
DEMO_SEED = 20261211
DEMO_MAX_NEW_TOKENS = 16
DEMO_SETTINGS = {"max_new_tokens": DEMO_MAX_NEW_TOKENS, "batch_size": 256, "threads": 1}
# gptj keeps the reference's beam search (4 beams): each prompt is prefilled four times and every step reorders
# the KV cache of batch x 4 rows: a pass over 13,368 samples takes 62 s in batches of 64, 78 s in batches of 256
FAMILY_SETTINGS = {"gptj": {"batch_size": 64}}
VOCAB_WORDS = 2000

LLAMA3_INSTRUCTION = (
    "Summarize the following news article in 128 tokens. Please output the summary only, "
    "without any other text.\n\nArticle:\n{input}\n\nSummary:"
)
GPTJ_INSTRUCTION = "Summarize the following news article:"
LLAMA2_SYSTEM = "You are an AI assistant. Provide a detailed answer so user don't need to search outside."
LLAMA2_PROMPT_SYSTEM = "<s>[INST] <<SYS>>\n{}\n<</SYS>>\n\n{} [/INST]"
LLAMA2_PROMPT = "<s>[INST] {} [/INST]"

SPECIALS = ["<unk>", "<s>", "</s>"]
PUNCTUATION = [".", ",", ":", "?", "[", "]", "/", "<", ">", "'", "<<", ">>"]

# tiny configurations of each family's architecture
LLAMA_TINY = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)
GPTJ_TINY = dict(n_embd=64, n_layer=2, n_head=4, rotary_dim=8, n_positions=512, tie_word_embeddings=False)

_TOKEN_RE = re.compile(r"\w+|[^\w\s]+")


def demo_assets(spec: LlmSpec, cache: Path | None = None, sample_count: int | None = None) -> DemoAssets:
    """The demo checkpoint and data set of spec's family, generated once into the cache."""
    n = sample_count or spec.sample_count
    root = (cache or cache_root()) / f"demo-{spec.family}-{n}-v{DEMO_VERSION}"
    assets = DemoAssets(model_path=root / "model", dataset_path=root / spec.dataset_file)

    def build(tmp: Path) -> None:
        words = generate_vocabulary(random.Random(DEMO_SEED), VOCAB_WORDS)
        tokenizer = write_checkpoint(tmp / "model", spec.family, words)
        write_dataset(tmp / spec.dataset_file, spec, words, tokenizer, random.Random(DEMO_SEED + 1), n)

    build_once(root, build, f"subtool {spec.family} demo assets v{DEMO_VERSION}")
    return assets


def _template_words() -> list[str]:
    texts = (
        LLAMA3_INSTRUCTION,
        GPTJ_INSTRUCTION,
        LLAMA2_SYSTEM,
        LLAMA2_PROMPT_SYSTEM,
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request. ### Instruction: Input: Response:",
    )
    return sorted({t for text in texts for t in _TOKEN_RE.findall(text)})


def build_tokenizer(words: list[str]):
    """A word-level fast tokenizer: every generated word, template word and punctuation mark is one token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for token in [*SPECIALS, *PUNCTUATION, *_template_words(), *words]:
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )


def write_checkpoint(model_dir: Path, family: str, words: list[str]):
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(words)
    tokenizer.save_pretrained(model_dir)
    ids = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(DEMO_SEED)
    if family == "gptj":
        from transformers import GPTJConfig, GPTJForCausalLM

        model = GPTJForCausalLM(GPTJConfig(**GPTJ_TINY, **ids))
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        rope = 500000.0 if family == "llama3.1" else 10000.0
        model = LlamaForCausalLM(LlamaConfig(**LLAMA_TINY, rope_theta=rope, **ids))
    model.save_pretrained(model_dir)
    (model_dir / "subtool_demo.json").write_text(
        json.dumps({**DEMO_SETTINGS, **FAMILY_SETTINGS.get(family, {})}) + "\n"
    )
    (model_dir / DEMO_MARKER).write_text(
        f"Embedded demo model: {family} architecture, tiny, random weights (seed {DEMO_SEED}). Its output is "
        "meaningless; it exists to exercise the pipeline.\n",
        encoding="utf-8",
    )
    return tokenizer


def _sentences(rng: random.Random, words: list[str], n_words: int) -> str:
    out, since = [], 0
    for _ in range(n_words):
        w = rng.choice(words)
        since += 1
        if since >= rng.randint(5, 12):
            w += "."
            since = 0
        out.append(w)
    text = " ".join(out)
    return text if text.endswith(".") else text + "."


def _sample(rng: random.Random, words: list[str]) -> tuple[str, str]:
    article = _sentences(rng, words, rng.randint(8, 40))
    summary = _sentences(rng, words, rng.randint(4, 14))
    return article, summary


def write_dataset(path: Path, spec: LlmSpec, words: list[str], tokenizer, rng: random.Random, n: int) -> None:
    """n samples in spec's reference file format."""
    if spec.dataset_format == "openorca-pickle":
        _write_openorca(path, words, tokenizer, rng, n)
        return
    records = []
    for _ in range(n):
        article, summary = _sample(rng, words)
        if spec.dataset_format == "cnn-llama3":
            prompt = LLAMA3_INSTRUCTION.format(input=article)
            tok = [tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]
            records.append(
                {"instruction": {"llama": LLAMA3_INSTRUCTION}, "input": article, "tok_input": tok, "output": summary}
            )
        else:
            records.append({"instruction": GPTJ_INSTRUCTION, "input": article, "output": summary})
    atomic_write_text(path, json.dumps(records))


def _write_openorca(path: Path, words: list[str], tokenizer, rng: random.Random, n: int) -> None:
    import pandas as pd

    from subtool.fsutil import atomic_output_file

    rows = []
    origins = ("cot", "flan", "niv", "t0")
    for i in range(n):
        question, answer = _sample(rng, words)
        system = LLAMA2_SYSTEM if rng.random() < 0.5 else ""
        prompt = LLAMA2_PROMPT_SYSTEM.format(system, question) if system else LLAMA2_PROMPT.format(question)
        tok_input = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        tok_output = tokenizer(answer, add_special_tokens=False)["input_ids"]
        origin = origins[i % len(origins)]
        rows.append(
            {
                "id": f"{origin}.{i}",
                "system_prompt": system,
                "question": question,
                "output": answer,
                "input": prompt,
                "tok_input": tok_input,
                "tok_output": tok_output,
                "origin": origin,
                "tok_input_length": len(tok_input),
                "tok_output_length": len(tok_output),
            }
        )
    with atomic_output_file(path) as fh:
        pd.DataFrame(rows).to_pickle(fh)
