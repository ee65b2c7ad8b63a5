"""SQuAD v1.1 → BERT input features, with the MLPerf bert-99 reference settings.

The reference splits each context on whitespace into words, WordPiece-tokenizes every word, and slides a window
of `max_seq_length - len(query) - 3` tokens over the context with a stride of `doc_stride`, so a long context
yields several features. 10,570 dev-set questions yield 10,833 features this way; that count is the
benchmark's sample count, so this module must reproduce it exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subtool.errors import SubtoolError

MAX_SEQ_LENGTH = 384
MAX_QUERY_LENGTH = 64
DOC_STRIDE = 128


@dataclass
class SquadExample:
    qas_id: str
    question: str
    doc_words: list[str]  # the context split on whitespace
    answers: list[str]  # ground-truth answer texts (dev set: several per question)
    context_id: int  # index of the paragraph, so its tokenization can be shared


@dataclass
class SquadFeatures:
    """All features of a data set as dense arrays plus the per-feature maps the answer decoding needs."""

    input_ids: np.ndarray  # int32 [n, MAX_SEQ_LENGTH]
    input_mask: np.ndarray  # int8  [n, MAX_SEQ_LENGTH]
    segment_ids: np.ndarray  # int8  [n, MAX_SEQ_LENGTH]
    seq_lengths: np.ndarray  # int32 [n]
    example_index: np.ndarray  # int32 [n]
    # per token position: the context word it came from (-1 outside the context), and whether this window is
    # the one where that token has the most context (the answer decoding only starts spans there)
    token_to_word: np.ndarray  # int32 [n, MAX_SEQ_LENGTH]
    token_is_max_context: np.ndarray  # bool [n, MAX_SEQ_LENGTH]

    def save(self, path: str | Path) -> None:
        np.savez(path, **{k: getattr(self, k) for k in self.__dataclass_fields__})

    @classmethod
    def load(cls, path: str | Path) -> SquadFeatures:
        with np.load(path) as data:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def _is_whitespace(ch: str) -> bool:
    return ch in (" ", "\t", "\r", "\n") or ord(ch) == 0x202F


def split_words(text: str) -> list[str]:
    words: list[str] = []
    in_word = False
    for ch in text:
        if _is_whitespace(ch):
            in_word = False
        elif in_word:
            words[-1] += ch
        else:
            words.append(ch)
            in_word = True
    return words


def read_squad_examples(path: str | Path) -> list[SquadExample]:
    """Read a SQuAD v1.1 JSON file; anything that is not one gives a SubtoolError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise SubtoolError(
            "dataset file not found",
            path=path,
            rule="dataset.missing",
            hint="pass the SQuAD v1.1 dev file (dev-v1.1.json) with --dataset-path",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SubtoolError(f"not valid JSON ({exc.__class__.__name__})", path=path, rule="dataset.squad_v1.1") from None
    except OSError as exc:
        raise SubtoolError(f"cannot read dataset: {exc.strerror}", path=path, rule="dataset.unreadable") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise SubtoolError(
            "not a SQuAD v1.1 file: expected a JSON object with a 'data' list", path=path, rule="dataset.squad_v1.1"
        )
    version = str(doc.get("version", "1.1"))
    examples: list[SquadExample] = []
    context_id = 0
    try:
        for article in doc["data"]:
            for paragraph in article["paragraphs"]:
                words = split_words(paragraph["context"])
                for qa in paragraph["qas"]:
                    if qa.get("is_impossible"):
                        raise SubtoolError(
                            f"SQuAD {version} file with unanswerable questions; bert-99 uses SQuAD v1.1",
                            path=path,
                            rule="dataset.squad_v1.1",
                        )
                    examples.append(
                        SquadExample(
                            qas_id=str(qa["id"]),
                            question=qa["question"],
                            doc_words=words,
                            answers=[a["text"] for a in qa.get("answers", [])],
                            context_id=context_id,
                        )
                    )
                context_id += 1
    except (KeyError, TypeError) as exc:
        raise SubtoolError(
            f"not a SQuAD v1.1 file: missing or malformed field {exc}", path=path, rule="dataset.squad_v1.1"
        ) from None
    if not examples:
        raise SubtoolError("the dataset holds no questions", path=path, rule="dataset.squad_v1.1")
    return examples


def window_starts(n_tokens: int, max_tokens: int, stride: int = DOC_STRIDE) -> list[tuple[int, int]]:
    """(start, length) of each window over a context of n_tokens, as the reference slides them."""
    spans: list[tuple[int, int]] = []
    start = 0
    while start < n_tokens:
        length = min(n_tokens - start, max_tokens)
        spans.append((start, length))
        if start + length == n_tokens:
            break
        start += min(length, stride)
    return spans


def _best_window(spans: list[tuple[int, int]], index: int, position: int) -> bool:
    """A token seen by several windows belongs to the one where it has the most context on both sides."""
    best_score, best = None, None
    for i, (start, length) in enumerate(spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best = score, i
    return best == index


def _wordpiece_per_word(tokenizer, words: list[str]) -> list[list[str]]:
    """WordPiece tokens of each word: one batched call of a fast tokenizer, or the slow one word by word."""
    if not words:
        return []
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
        pieces: list[list[str]] = [[] for _ in words]
        for tok, wid in zip(enc.tokens(), enc.word_ids()):
            if wid is not None:
                pieces[wid].append(tok)
        return pieces
    return [tokenizer.tokenize(w) for w in words]


def convert_examples_to_features(
    examples: list[SquadExample],
    tokenizer,
    max_seq_length: int = MAX_SEQ_LENGTH,
    max_query_length: int = MAX_QUERY_LENGTH,
    doc_stride: int = DOC_STRIDE,
) -> SquadFeatures:
    cls_id, sep_id = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    context_cache: dict[int, tuple[list[str], list[int]]] = {}
    ids_rows: list[np.ndarray] = []
    seg_rows: list[np.ndarray] = []
    lengths: list[int] = []
    ex_index: list[int] = []
    word_rows: list[np.ndarray] = []
    best_rows: list[np.ndarray] = []

    for ei, ex in enumerate(examples):
        query = tokenizer.tokenize(ex.question)[:max_query_length]
        if ex.context_id not in context_cache:
            doc_pieces: list[str] = []
            piece_word: list[int] = []
            for wi, pieces in enumerate(_wordpiece_per_word(tokenizer, ex.doc_words)):
                doc_pieces.extend(pieces)
                piece_word.extend([wi] * len(pieces))
            context_cache = {ex.context_id: (doc_pieces, piece_word)}  # examples are grouped by paragraph
        doc_pieces, piece_word = context_cache[ex.context_id]
        doc_ids = tokenizer.convert_tokens_to_ids(doc_pieces)
        query_ids = tokenizer.convert_tokens_to_ids(query)
        max_tokens_for_doc = max_seq_length - len(query) - 3
        spans = window_starts(len(doc_pieces), max_tokens_for_doc, doc_stride)
        for si, (start, length) in enumerate(spans):
            n = len(query) + length + 3
            ids = np.zeros(max_seq_length, dtype=np.int32)
            seg = np.zeros(max_seq_length, dtype=np.int8)
            ids[0] = cls_id
            ids[1 : 1 + len(query)] = query_ids
            ids[1 + len(query)] = sep_id
            doc_off = 2 + len(query)
            ids[doc_off : doc_off + length] = doc_ids[start : start + length]
            ids[doc_off + length] = sep_id
            seg[doc_off:n] = 1
            ids_rows.append(ids)
            seg_rows.append(seg)
            lengths.append(n)
            ex_index.append(ei)
            words = np.full(max_seq_length, -1, dtype=np.int32)
            words[doc_off : doc_off + length] = piece_word[start : start + length]
            best = np.zeros(max_seq_length, dtype=bool)
            if len(spans) == 1:
                best[doc_off : doc_off + length] = True
            else:
                best[doc_off : doc_off + length] = [_best_window(spans, si, start + i) for i in range(length)]
            word_rows.append(words)
            best_rows.append(best)

    n = len(ids_rows)
    input_ids = np.stack(ids_rows) if n else np.zeros((0, max_seq_length), np.int32)
    segment_ids = np.stack(seg_rows) if n else np.zeros((0, max_seq_length), np.int8)
    seq_lengths = np.asarray(lengths, dtype=np.int32)
    input_mask = (np.arange(max_seq_length)[None, :] < seq_lengths[:, None]).astype(np.int8)
    token_to_word = np.stack(word_rows) if n else np.zeros((0, max_seq_length), np.int32)
    is_max = np.stack(best_rows) if n else np.zeros((0, max_seq_length), bool)
    return SquadFeatures(
        input_ids=input_ids,
        input_mask=input_mask,
        segment_ids=segment_ids,
        seq_lengths=seq_lengths,
        example_index=np.asarray(ex_index, dtype=np.int32),
        token_to_word=token_to_word,
        token_is_max_context=is_max,
    )
