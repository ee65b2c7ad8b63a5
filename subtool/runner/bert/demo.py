"""The embedded demo: a tiny random-weight BERT and a generated SQuAD v1.1-format data set.

The demo goes through exactly the code a real run uses: it writes a Hugging Face checkpoint directory and a
SQuAD JSON file into a cache, then the workload loads them as it would load the real ones. The data set is
generated so that feature conversion with the reference settings yields exactly 10,833 features from 10,570
questions — the official bert-99 counts — with a SQuAD-like spread of sequence lengths.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from subtool.fsutil import atomic_write_text
from subtool.runner.demo_assets import DEMO_MARKER, DemoAssets, build_once, cache_root, generate_vocabulary

DEMO_VERSION = "2"
DEMO_SEED = 20261126
N_QUESTIONS = 10570
N_TWO_WINDOW_QUESTIONS = 263  # 10,570 questions + 263 extra windows = 10,833 features
QUESTIONS_PER_PARAGRAPH = 5
PARAGRAPHS_PER_ARTICLE = 48
VOCAB_WORDS = 3000  # each a whole WordPiece token, so that one word is one token

# The tiny model: BERT's architecture, a few layers, random weights.
DEMO_CONFIG = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=256,
    max_position_embeddings=512,
    type_vocab_size=2,
)


def demo_assets(cache: Path | None = None) -> DemoAssets:
    """Return the demo checkpoint and data set, generating them once into the cache."""
    root = (cache or cache_root()) / f"demo-bert-v{DEMO_VERSION}"
    assets = DemoAssets(model_path=root / "model", dataset_path=root / "squad-demo-v1.1.json")

    def build(tmp: Path) -> None:
        words = generate_vocabulary(random.Random(DEMO_SEED), VOCAB_WORDS)
        write_checkpoint(tmp / "model", words)
        atomic_write_text(
            tmp / assets.dataset_path.name, json.dumps(generate_squad(words, random.Random(DEMO_SEED + 1)))
        )

    build_once(root, build, f"subtool demo assets v{DEMO_VERSION}")
    return assets


def write_checkpoint(model_dir: Path, words: list[str]) -> None:
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    from subtool.runner.bert.checkpoint import wordpiece_tokenizer

    model_dir.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "?", *words]
    (model_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = wordpiece_tokenizer(model_dir / "vocab.txt")
    tokenizer.save_pretrained(model_dir)
    torch.manual_seed(DEMO_SEED)
    config = BertConfig(vocab_size=len(vocab), **DEMO_CONFIG)
    model = BertForQuestionAnswering(config)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(model_dir)
    (model_dir / DEMO_MARKER).write_text(
        "Embedded demo model: BERT architecture, random weights (seed "
        f"{DEMO_SEED}). Its answers are meaningless; it exists to exercise the pipeline.\n",
        encoding="utf-8",
    )


def _sentence_text(rng: random.Random, words: list[str], n_tokens: int) -> list[str]:
    """Context words whose WordPiece count is exactly n_tokens: words, with a full stop every few words."""
    out: list[str] = []
    tokens = 0
    since_stop = 0
    while tokens < n_tokens:
        remaining = n_tokens - tokens
        word = rng.choice(words)
        since_stop += 1
        if remaining >= 2 and since_stop >= rng.randint(6, 18):
            out.append(word + ".")
            tokens += 2
            since_stop = 0
        else:
            out.append(word)
            tokens += 1
    return out


def _context_length(rng: random.Random, long: bool) -> int:
    if long:
        # with questions of 7..15 tokens the window holds 366..374 tokens: 375..494 tokens give two windows
        return rng.randint(380, 490)
    # SQuAD-like spread: most contexts 80-250 tokens, a tail up to the window size
    return int(min(360, max(30, rng.lognormvariate(5.0, 0.4))))


def generate_squad(
    words: list[str], rng: random.Random, n_questions: int = N_QUESTIONS, n_two_window: int = N_TWO_WINDOW_QUESTIONS
) -> dict:
    """A SQuAD v1.1 JSON document of n_questions questions, n_two_window of them on contexts long enough for
    two windows, so that feature conversion yields n_questions + n_two_window features."""
    sizes: list[tuple[int, bool]] = []  # (questions, long context) per paragraph
    full_long, rest_long = divmod(n_two_window, QUESTIONS_PER_PARAGRAPH)
    sizes += [(QUESTIONS_PER_PARAGRAPH, True)] * full_long + ([(rest_long, True)] if rest_long else [])
    short_questions = n_questions - n_two_window
    full_short, rest_short = divmod(short_questions, QUESTIONS_PER_PARAGRAPH)
    sizes += [(QUESTIONS_PER_PARAGRAPH, False)] * full_short + ([(rest_short, False)] if rest_short else [])
    rng.shuffle(sizes)

    articles: list[dict] = []
    qid = 0
    for pi, (n_questions, long) in enumerate(sizes):
        if pi % PARAGRAPHS_PER_ARTICLE == 0:
            articles.append({"title": f"Demo_article_{len(articles):04d}", "paragraphs": []})
        context_words = _sentence_text(rng, words, _context_length(rng, long))
        context = " ".join(context_words)
        offsets, pos = [], 0
        for w in context_words:
            offsets.append(pos)
            pos += len(w) + 1
        qas = []
        for _ in range(n_questions):
            q_words = [rng.choice(words) for _ in range(rng.randint(6, 14))]
            start = rng.randrange(len(context_words))
            length = rng.randint(1, min(4, len(context_words) - start))
            answer = " ".join(context_words[start : start + length]).rstrip(".")
            qas.append(
                {
                    "id": f"demo{qid:06d}",
                    "question": " ".join(q_words).capitalize() + "?",
                    "answers": [{"answer_start": offsets[start], "text": answer}],
                }
            )
            qid += 1
        articles[-1]["paragraphs"].append({"context": context, "qas": qas})
    return {"version": "1.1", "subtool_demo": True, "data": articles}
