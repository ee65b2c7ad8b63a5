"""Learnable question answering in SQuAD v1.1 format: the accuracy proxy for BERT's precisions.

A random-weight BERT's top two logits nearly tie, so how often a precision keeps its answers says little about a
trained checkpoint. This generator writes questions whose answer follows from the question: the context is a list
of key/value sentences ("kalu is mote rinabe ." — a key word, `is`, one to three value words) and the question asks
for one key's value ("what is the value of kalu ?"). A model trained on it answers decisively, as a fine-tuned
BERT does on SQuAD, and each precision's F1 relative to the model's own fp32 F1 is then bert-99's criterion.

Every word is one WordPiece token of the vocabulary written with the checkpoint (the demo's generated words plus
the question's few function words), so answers map to token positions exactly. Context lengths follow the demo's
SQuAD-like spread (most 80-250 tokens, a share long enough for two 384-token windows); `--shape tiny` uses short
contexts so a CPU test trains a model in seconds.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

QUESTION_WORDS = ("what", "is", "the", "value", "of", "where")
PROXY_SEED = 20261203


def vocabulary(n_words: int, seed: int = PROXY_SEED) -> list[str]:
    """The proxy's words (generated, one WordPiece token each) without the question's function words."""
    from subtool.runner.demo_assets import generate_vocabulary

    words = generate_vocabulary(random.Random(seed), n_words + len(QUESTION_WORDS))
    return [w for w in words if w not in QUESTION_WORDS][:n_words]


def write_vocab(model_dir: Path, words: list[str]) -> None:
    """vocab.txt and the tokenizer files, as a Hugging Face BERT checkpoint directory holds them."""
    from subtool.runner.bert.checkpoint import wordpiece_tokenizer

    model_dir.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "?", *QUESTION_WORDS, *words]
    (model_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    wordpiece_tokenizer(model_dir / "vocab.txt").save_pretrained(model_dir)


def _context(rng: random.Random, words: list[str], n_tokens: int) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """Sentences `key is v1 [v2 [v3]] .` until about n_tokens tokens: (context words, key → (first value word,
    value word count)). Keys are distinct within a context; values are any words."""
    out: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    keys = rng.sample(words, min(len(words), n_tokens // 3 + 1))
    for key in keys:
        if len(out) + 4 > n_tokens and spans:
            break
        value = [rng.choice(words) for _ in range(rng.randint(1, 3))]
        spans[key] = (len(out) + 2, len(value))
        out += [key, "is", *value[:-1], value[-1] + "."]  # "word." is two tokens: word and the full stop
    return out, spans


def generate(
    words: list[str],
    n_questions: int,
    seed: int,
    context_tokens: tuple[int, int] = (30, 360),
    long_share: float = 0.025,
    questions_per_context: int = 5,
    answer: str = "value",
) -> dict:
    """A SQuAD v1.1 document of n_questions key/value questions. Context lengths: lognormal around 150 tokens
    clipped to context_tokens, and long_share of the contexts 380-490 tokens (two windows, as SQuAD's long ones).

    answer "value": "what is the value of K ?" → K's value words (finding them takes two attention steps: match the
    key, then move to the words after it). answer "key": "where is K ?" → K itself (one step: the tiny CPU shape
    learns it in seconds). answer "mixed": each question one of the two at random (the easy one teaches finding
    the key, which the lookup builds on)."""
    rng = random.Random(seed)
    lo, hi = context_tokens
    paragraphs = []
    qid = 0
    while qid < n_questions:
        if rng.random() < long_share:
            n_tokens = rng.randint(380, 490)
        else:
            n_tokens = int(min(hi, max(lo, rng.lognormvariate(5.0, 0.4) if hi > 200 else rng.randint(lo, hi))))
        context_words, spans = _context(rng, words, n_tokens)
        offsets, pos = [], 0
        for w in context_words:
            offsets.append(pos)
            pos += len(w) + 1
        qas = []
        for key in rng.sample(sorted(spans), min(questions_per_context, len(spans), n_questions - qid)):
            kind = answer if answer != "mixed" else rng.choice(("value", "key"))
            first, count = spans[key] if kind == "value" else (spans[key][0] - 2, 1)
            text = " ".join(context_words[first : first + count]).rstrip(".")
            qas.append(
                {
                    "id": f"proxy{qid:06d}",
                    "question": f"what is the value of {key} ?" if kind == "value" else f"where is {key} ?",
                    "answers": [{"answer_start": offsets[first], "text": text}],
                }
            )
            qid += 1
        paragraphs.append({"context": " ".join(context_words), "qas": qas})
    return {"version": "1.1", "subtool_proxy": True, "data": [{"title": "proxy", "paragraphs": paragraphs}]}


def write_squad(path: Path, doc: dict) -> Path:
    from subtool.fsutil import atomic_write_text

    atomic_write_text(path, json.dumps(doc))
    return path


def answer_positions(examples, features, doc: dict) -> tuple:
    """Start/end token positions of each feature's answer (0, 0: the answer is not in that window, SQuAD's
    convention), from the answer's first character and the word each token came from."""
    import numpy as np

    first_word: dict[str, tuple[int, int]] = {}
    for article in doc["data"]:
        for para in article["paragraphs"]:
            starts = {}
            pos = 0
            for wi, w in enumerate(para["context"].split(" ")):
                starts[pos] = wi
                pos += len(w) + 1
            for qa in para["qas"]:
                a = qa["answers"][0]
                first_word[qa["id"]] = (starts[a["answer_start"]], len(a["text"].split()))
    n = len(features)
    start = np.zeros(n, np.int64)
    end = np.zeros(n, np.int64)
    for fi in range(n):
        ex = examples[int(features.example_index[fi])]
        w0, count = first_word[ex.qas_id]
        words = features.token_to_word[fi]
        s = np.flatnonzero(words == w0)
        e = np.flatnonzero(words == w0 + count - 1)
        if s.size and e.size:
            start[fi] = s[0]
            end[fi] = e[0]  # a value word is one token (its full stop is the next token)
    return start, end
