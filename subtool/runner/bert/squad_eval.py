"""From BERT start/end logits to answer texts, and the SQuAD v1.1 exact-match / F1 metric."""

from __future__ import annotations

import collections
import re
import string
import unicodedata

import numpy as np

from subtool.runner.bert.squad import SquadExample, SquadFeatures

N_BEST = 20
MAX_ANSWER_LENGTH = 30


# ------------------------------------------------------------------------------------------ the metric
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, collapse whitespace (SQuAD v1.1)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1(prediction: str, truth: str) -> float:
    pred = normalize_answer(prediction).split()
    gold = normalize_answer(truth).split()
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_v11_scores(predictions: dict[str, str], examples: list[SquadExample]) -> dict[str, float]:
    """Exact match and F1 in percent, each the best over an example's ground truths, averaged over examples."""
    em_total = f1_total = 0.0
    for ex in examples:
        pred = predictions.get(ex.qas_id, "")
        truths = ex.answers or [""]
        em_total += max(exact_match(pred, t) for t in truths)
        f1_total += max(f1(pred, t) for t in truths)
    n = max(len(examples), 1)
    return {"exact_match": 100.0 * em_total / n, "f1": 100.0 * f1_total / n}


# --------------------------------------------------------------------------------- logits → answer text
def _basic_tokens(text: str) -> list[str]:
    """BERT's basic tokenization for an uncased model: lower case, strip accents, split off punctuation."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    out: list[str] = []
    for word in text.split():
        current = ""
        for ch in word:
            if _is_punctuation(ch):
                if current:
                    out.append(current)
                    current = ""
                out.append(ch)
            else:
                current += ch
        if current:
            out.append(current)
    return out


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _without_spaces(text: str) -> tuple[str, list[int]]:
    kept, index = [], []
    for i, ch in enumerate(text):
        if ch != " ":
            kept.append(ch)
            index.append(i)
    return "".join(kept), index


def project_to_original(pred_text: str, orig_text: str) -> str:
    """Map a span of normalised WordPiece text back onto the original words, keeping their case and punctuation.

    The prediction lives in tokenized space ("( 1895 - 1943 )"), the answer must be the original characters
    ("(1895-1943)"). Both sides are compared with the spaces removed; when they cannot be aligned the whole
    original span is the answer.
    """
    tok_text = " ".join(_basic_tokens(orig_text))
    start = tok_text.find(pred_text)
    if start < 0:
        return orig_text
    end = start + len(pred_text) - 1
    orig_ns, orig_index = _without_spaces(orig_text)
    tok_ns, tok_index = _without_spaces(tok_text)
    if len(orig_ns) != len(tok_ns):
        return orig_text
    tok_to_ns = {t: i for i, t in enumerate(tok_index)}
    if start not in tok_to_ns or end not in tok_to_ns:
        return orig_text
    return orig_text[orig_index[tok_to_ns[start]] : orig_index[tok_to_ns[end]] + 1]


def _top(values: np.ndarray, k: int) -> np.ndarray:
    k = min(k, values.shape[0])
    idx = np.argpartition(-values, k - 1)[:k]
    return idx[np.argsort(-values[idx], kind="stable")]


def best_answers(
    examples: list[SquadExample], features: SquadFeatures, logits: dict[int, np.ndarray], id_to_token
) -> dict[str, str]:
    """The highest-scoring valid span of each example over all its features.

    `logits[feature_index]` is a [seq, 2] array of start/end logits; a feature without logits (missing from the
    accuracy log) contributes nothing. `id_to_token` turns input ids into WordPiece tokens.
    """
    by_example: dict[int, list[int]] = collections.defaultdict(list)
    for fi, ei in enumerate(features.example_index):
        by_example[int(ei)].append(fi)
    answers: dict[str, str] = {}
    for ei, ex in enumerate(examples):
        best = None  # (score, feature, start, end)
        for fi in by_example.get(ei, []):
            out = logits.get(fi)
            if out is None:
                continue
            n = int(features.seq_lengths[fi])
            start_logits = out[:n, 0]
            end_logits = out[:n, 1]
            words = features.token_to_word[fi]
            is_max = features.token_is_max_context[fi]
            for s in _top(start_logits, N_BEST):
                if words[s] < 0 or not is_max[s]:
                    continue
                for e in _top(end_logits, N_BEST):
                    if words[e] < 0 or e < s or e - s + 1 > MAX_ANSWER_LENGTH:
                        continue
                    score = float(start_logits[s] + end_logits[e])
                    if best is None or score > best[0]:
                        best = (score, fi, int(s), int(e))
        if best is None:
            answers[ex.qas_id] = ""
            continue
        _, fi, s, e = best
        pieces = id_to_token(features.input_ids[fi, s : e + 1].tolist())
        pred_text = " ".join(pieces).replace(" ##", "").replace("##", "")
        pred_text = " ".join(pred_text.split())
        words = features.token_to_word[fi]
        orig_text = " ".join(ex.doc_words[words[s] : words[e] + 1])
        answers[ex.qas_id] = project_to_original(pred_text, orig_text)
    return answers
