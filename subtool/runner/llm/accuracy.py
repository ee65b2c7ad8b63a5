"""LLM accuracy as the references compute it: decode the token ids LoadGen logged, split sentences, ROUGE.

The references (language/*/evaluation.py) decode with the checkpoint's tokenizer (special tokens skipped), strip,
put each sentence on its own line (NLTK's English Punkt model, for rougeLsum), and average the per-sample
F-measures of ROUGE-1/2/L/Lsum with the Porter stemmer (Google's rouge-score, which `evaluate` wraps), in percent
rounded to 4 places. gen_len is the characters of all predictions, gen_num their count, and tokens_per_sample the
generated tokens per sample.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from subtool.errors import SubtoolError
from subtool.runner.harness import accuracy_entries
from subtool.runner.llm.datasets import id_outside

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def read_token_log(path: Path, dtype: str) -> dict[int, np.ndarray]:
    """qsl index → generated token ids, from LoadGen's mlperf_log_accuracy.json (first entry per index wins)."""
    np_dtype = np.dtype(dtype)
    out: dict[int, np.ndarray] = {}
    for idx, raw in accuracy_entries(path):
        if len(raw) % np_dtype.itemsize:
            raise SubtoolError(
                f"qsl_idx {idx}: {len(raw)} bytes is not a list of {dtype} token ids", path=path, rule="acc.log_parse"
            )
        out.setdefault(idx, np.frombuffer(raw, dtype=np_dtype))
    return out


@functools.lru_cache(maxsize=1)
def sentence_splitter():
    """NLTK's English Punkt model, as the references use; without the model data (air-gapped machines), Punkt
    with default parameters, which differs only on abbreviations. Returns (split function, name)."""
    import nltk
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    for resource in ("tokenizers/punkt_tab/english/", "tokenizers/punkt/english.pickle"):
        try:
            nltk.data.find(resource)
        except LookupError:
            continue
        return nltk.sent_tokenize, "punkt-english"
    return PunktSentenceTokenizer().tokenize, "punkt-untrained"


class _CachedStemmer:
    """rouge-score's Porter stemmer, memoized: the same words recur across thousands of summaries."""

    def __init__(self):
        from nltk.stem import porter

        self._stem = functools.lru_cache(maxsize=None)(porter.PorterStemmer().stem)

    def stem(self, word: str) -> str:
        return self._stem(word)


class _StemmingTokenizer:
    """rouge-score's DefaultTokenizer(use_stemmer=True) with the cached stemmer (same tokens, faster)."""

    def __init__(self):
        self._stemmer = _CachedStemmer()

    def tokenize(self, text: str) -> list[str]:
        from rouge_score import tokenize

        return tokenize.tokenize(text, self._stemmer)


def rouge_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean per-sample F-measure ×100, rounded to 4 places, for ROUGE-1/2/L/Lsum."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise SubtoolError(
            "the LLM accuracy step needs rouge-score",
            rule="run.dependency",
            hint="pip install 'mlperf-subtool[run]' (or: pip install rouge-score nltk)",
        ) from None
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), tokenizer=_StemmingTokenizer())
    sums = dict.fromkeys(ROUGE_KEYS, 0.0)
    for pred, ref in zip(predictions, references):
        scores = scorer.score(ref, pred)
        for key in ROUGE_KEYS:
            sums[key] += scores[key].fmeasure
    n = max(1, len(predictions))
    return {key: round(sums[key] / n * 100, 4) for key in ROUGE_KEYS}


def postprocess(texts: list[str]) -> list[str]:
    split, _ = sentence_splitter()
    return ["\n".join(split(t.strip())) for t in texts]


def _check_token_ids(ids: np.ndarray, index: int, path: Path, vocab: int | None) -> None:
    """A logged answer's ids must be vocabulary indices: below the model's vocabulary size where the checkpoint
    names it (an id at or past it cannot come from this model: the log is another model's answers, or was read as
    the wrong integer type), else below 2**32, past which the tokenizer stops with an overflow. Ids between the
    tokenizer's size and the model's (a vocabulary padded for the GPU) decode to nothing, as in the references."""
    bad = id_outside(ids, 2**32)
    if bad is not None:
        raise SubtoolError(
            f"qsl_idx {index}: token id {bad} is not a vocabulary index", path=path, rule="acc.log_parse"
        )
    bad = id_outside(ids, vocab) if vocab is not None else None
    if bad is not None:
        raise SubtoolError(
            f"qsl_idx {index}: token id {bad} is past the model's {vocab}-token vocabulary (config.json "
            "vocab_size): these are not this model's answers",
            path=path,
            rule="acc.log_parse",
        )


def llm_accuracy(
    tokens: dict[int, np.ndarray], targets: list[str], tokenizer, path: Path, vocab: int | None = None
) -> dict:
    """The reference metrics over every sample; refuses a log that misses samples or holds an id that is not a
    vocabulary index (`vocab`: the model's vocabulary size, when its config names one; at least the tokenizer's)."""
    vocab = max(vocab, len(tokenizer)) if vocab is not None else None
    n = len(targets)
    missing = n - len(tokens.keys() & set(range(n)))
    if missing:
        raise SubtoolError(
            f"the accuracy log answers {n - missing} of {n} samples; an accuracy run must cover every sample",
            path=path,
            rule="acc.incomplete_log",
        )
    order = list(range(n))
    for i in order:
        _check_token_ids(tokens[i], i, path, vocab)
    ids = [tokens[i].astype(np.int64).tolist() for i in order]
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    preds = postprocess(texts)
    refs = postprocess([targets[i] for i in order])
    metrics: dict = rouge_scores(preds, refs)
    gen_tok_len = int(sum(len(t) for t in ids))
    metrics.update(
        gen_len=int(sum(len(p) for p in preds)),
        gen_num=n,
        gen_tok_len=gen_tok_len,
        tokens_per_sample=round(gen_tok_len / n, 1),
    )
    return metrics


def accuracy_line(metrics: dict, *, values_as_strings: bool) -> str:
    """The Python dict line the reference prints and the checker's patterns read, e.g.
    {'rouge1': '38.7792', 'rouge2': '15.9075', 'rougeL': '24.4957', 'rougeLsum': '35.793', 'gen_len': 8167644,
    'gen_num': 13368, 'gen_tok_len': 1711234, 'tokens_per_sample': 128.0}"""
    parts = []
    for key in ROUGE_KEYS:
        value = metrics[key]
        parts.append(f"'{key}': " + (f"'{value}'" if values_as_strings else f"{value}"))
    for key in ("gen_len", "gen_num", "gen_tok_len", "tokens_per_sample"):
        parts.append(f"'{key}': {metrics[key]}")
    return "{" + ", ".join(parts) + "}"
