"""SQuAD v1.1 → BERT input features, with the MLPerf bert-99 reference settings.

The reference splits each context on whitespace into words, WordPiece-tokenizes every word, and slides a window
of `max_seq_length - len(query) - 3` tokens over the context with a stride of `doc_stride`, so a long context
yields several features. 10,570 dev-set questions yield 10,833 features this way; that count is the
benchmark's sample count, so this module must reproduce it exactly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subtool.errors import SubtoolError
from subtool.mlperf.logs import parse_json, read_file

MAX_SEQ_LENGTH = 384
MAX_QUERY_LENGTH = 64
DOC_STRIDE = 128
DATASET_LIMIT = 256 << 20  # the SQuAD v1.1 dev file is 4.9 MB, the train file 30 MB


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
    return read_squad(path)[0]


def read_squad(path: str | Path) -> tuple[list[SquadExample], str]:
    """(the examples, the sha256 of the bytes they were read from) of a SQuAD v1.1 file.

    Read with a size bound and only if it is a regular file (a link to one is fine). Every question must have a
    unique string id, a string question, a paragraph with text and at least one answer whose text is a string:
    what would fail or score wrongly after the run is refused here, before LoadGen starts."""
    path = Path(path)
    data = _read_bytes(path)
    doc, problem = parse_json(data) if data.strip() else (None, "is empty")
    if problem is not None:
        raise SubtoolError(f"the file {problem}", path=path, rule="dataset.squad_v1.1")
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise SubtoolError(
            "not a SQuAD v1.1 file: expected a JSON object with a 'data' list", path=path, rule="dataset.squad_v1.1"
        )
    try:
        examples = _examples(doc, path)
    except KeyError as exc:
        raise _bad(path, f"not a SQuAD v1.1 file: a required field {exc} is missing") from None
    except (TypeError, AttributeError):  # a list indexed by a name, a string where an object belongs
        raise _bad(path, "not a SQuAD v1.1 file: a field holds another kind of value than SQuAD's") from None
    if not examples:
        raise SubtoolError("the dataset holds no questions", path=path, rule="dataset.squad_v1.1")
    return examples, hashlib.sha256(data).hexdigest()


def _read_bytes(path: Path) -> bytes:
    try:
        data = read_file(path, DATASET_LIMIT + 1, follow_links=True)
    except FileNotFoundError:
        raise SubtoolError(
            "dataset file not found",
            path=path,
            rule="dataset.missing",
            hint="pass the SQuAD v1.1 dev file (dev-v1.1.json) with --dataset-path",
        ) from None
    except OSError as exc:
        raise SubtoolError(
            f"cannot read dataset: {exc.strerror or exc.__class__.__name__}", path=path, rule="dataset.unreadable"
        ) from None
    if len(data) > DATASET_LIMIT:
        raise SubtoolError(
            f"larger than {DATASET_LIMIT >> 20} MiB: not a SQuAD v1.1 file", path=path, rule="dataset.squad_v1.1"
        )
    return data


def _examples(doc: dict, path: Path) -> list[SquadExample]:
    version = str(doc.get("version", "1.1"))
    examples: list[SquadExample] = []
    seen: set[str] = set()
    for context_id, paragraph in enumerate(p for article in doc["data"] for p in article["paragraphs"]):
        context = paragraph["context"]
        if not _is_text(context):
            raise _bad(path, f"paragraph {context_id + 1}: 'context' is not a string of Unicode text")
        words = split_words(context)
        if not words:  # its questions would have no features: never answered, yet scored
            raise _bad(path, f"paragraph {context_id + 1}: 'context' is empty")
        for qa in paragraph["qas"]:
            if qa.get("is_impossible"):
                raise _bad(path, f"SQuAD {version} file with unanswerable questions; bert-99 uses SQuAD v1.1")
            examples.append(_example(qa, words, context_id, seen, path))
    return examples


def _example(qa: dict, words: list[str], context_id: int, seen: set[str], path: Path) -> SquadExample:
    """One question, checked: what a later stage (tokenizer, F1 scorer) would choke on is refused here."""
    qas_id = qa["id"]
    if not isinstance(qas_id, str) or not qas_id:
        raise _bad(path, f"question id {json.dumps(qas_id)[:40]} is not a non-empty string")
    if qas_id in seen:
        raise _bad(path, f"question id {qas_id!r} appears more than once (SQuAD ids are unique)")
    seen.add(qas_id)
    if not _is_text(qa["question"]):
        raise _bad(path, f"question {qas_id!r}: 'question' is not a string of Unicode text")
    answers = qa.get("answers")
    if not isinstance(answers, list) or not answers:
        raise _bad(path, f"question {qas_id!r} has no answers (every SQuAD v1.1 dev question has at least one)")
    texts = [a["text"] for a in answers]
    if not all(_is_text(t) for t in texts):
        raise _bad(path, f"question {qas_id!r}: an answer's 'text' is not a string of Unicode text")
    return SquadExample(qas_id=qas_id, question=qa["question"], doc_words=words, answers=texts, context_id=context_id)


def _is_text(value: object) -> bool:
    """A string that is Unicode text: JSON's \\ud800 escape makes a lone surrogate, which the tokenizer refuses
    with a TypeError after the model has loaded."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bad(path: Path, message: str) -> SubtoolError:
    return SubtoolError(message, path=path, rule="dataset.squad_v1.1")


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
    """Every example's windows over its paragraph as model inputs ([CLS] question [SEP] window [SEP]), with each
    token's paragraph word and whether this window is the one that gives that token the most context."""
    cls_id, sep_id = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    cached: tuple[int, list[str], list[int]] | None = None  # examples come grouped by paragraph
    rows: list[tuple] = []
    ex_index: list[int] = []
    for ei, ex in enumerate(examples):
        query = tokenizer.tokenize(ex.question)[:max_query_length]
        if cached is None or cached[0] != ex.context_id:
            cached = (ex.context_id, *_doc_pieces(tokenizer, ex.doc_words))
        _, doc_pieces, piece_word = cached
        doc_ids = tokenizer.convert_tokens_to_ids(doc_pieces)
        query_ids = tokenizer.convert_tokens_to_ids(query)
        spans = window_starts(len(doc_pieces), max_seq_length - len(query) - 3, doc_stride)
        for si in range(len(spans)):
            rows.append(_window_row(spans, si, query_ids, doc_ids, piece_word, cls_id, sep_id, max_seq_length))
            ex_index.append(ei)
    return _stacked(rows, ex_index, max_seq_length)


def _doc_pieces(tokenizer, doc_words: list[str]) -> tuple[list[str], list[int]]:
    """A paragraph's word pieces and the word each piece belongs to."""
    doc_pieces: list[str] = []
    piece_word: list[int] = []
    for wi, pieces in enumerate(_wordpiece_per_word(tokenizer, doc_words)):
        doc_pieces.extend(pieces)
        piece_word.extend([wi] * len(pieces))
    return doc_pieces, piece_word


def _window_row(spans, si: int, query_ids, doc_ids, piece_word, cls_id: int, sep_id: int, max_seq_length: int):
    """(ids, segments, length, token → word, best-window mask) of window `si` of `spans`."""
    start, length = spans[si]
    n = len(query_ids) + length + 3
    ids = np.zeros(max_seq_length, dtype=np.int32)
    seg = np.zeros(max_seq_length, dtype=np.int8)
    ids[0] = cls_id
    ids[1 : 1 + len(query_ids)] = query_ids
    ids[1 + len(query_ids)] = sep_id
    doc_off = 2 + len(query_ids)
    ids[doc_off : doc_off + length] = doc_ids[start : start + length]
    ids[doc_off + length] = sep_id
    seg[doc_off:n] = 1
    words = np.full(max_seq_length, -1, dtype=np.int32)
    words[doc_off : doc_off + length] = piece_word[start : start + length]
    best = np.zeros(max_seq_length, dtype=bool)
    if len(spans) == 1:
        best[doc_off : doc_off + length] = True
    else:
        lo, hi = overlapping_windows(spans, si)  # only these can hold the window's tokens
        near = spans[lo : hi + 1]
        best[doc_off : doc_off + length] = [_best_window(near, si - lo, start + i) for i in range(length)]
    return ids, seg, n, words, best


def overlapping_windows(spans: list[tuple[int, int]], si: int) -> tuple[int, int]:
    """The first and last index of the windows that share a token with window `si`. The windows advance by the
    stride, so their starts and ends only grow: a few neighbours, found without looking at the others (looking
    at every window for every token made a long paragraph quadratic, hours for a few MB)."""
    start, length = spans[si]
    end = start + length - 1
    lo = hi = si
    while lo > 0 and spans[lo - 1][0] + spans[lo - 1][1] - 1 >= start:
        lo -= 1
    while hi + 1 < len(spans) and spans[hi + 1][0] <= end:
        hi += 1
    return lo, hi


def _stacked(rows: list[tuple], ex_index: list[int], max_seq_length: int) -> SquadFeatures:
    """The windows' rows as one SquadFeatures (empty arrays of the right width when there are none)."""

    def stack(k: int, dtype) -> np.ndarray:
        return np.stack([r[k] for r in rows]) if rows else np.zeros((0, max_seq_length), dtype)

    seq_lengths = np.asarray([r[2] for r in rows], dtype=np.int32)
    return SquadFeatures(
        input_ids=stack(0, np.int32),
        input_mask=(np.arange(max_seq_length)[None, :] < seq_lengths[:, None]).astype(np.int8),
        segment_ids=stack(1, np.int8),
        seq_lengths=seq_lengths,
        example_index=np.asarray(ex_index, dtype=np.int32),
        token_to_word=stack(3, np.int32),
        token_is_max_context=stack(4, bool),
    )
