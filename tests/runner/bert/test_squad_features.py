"""Feature conversion with the reference settings: window counts, layout, and refusal of non-SQuAD input."""

from __future__ import annotations

import json

import pytest

from subtool.errors import SubtoolError
from subtool.runner.bert.squad import (
    MAX_SEQ_LENGTH,
    convert_examples_to_features,
    read_squad_examples,
    split_words,
    window_starts,
)


def test_windows_slide_by_the_stride_and_end_at_the_context_end():
    assert window_starts(100, 300) == [(0, 100)]
    assert window_starts(300, 300) == [(0, 300)]
    # 301 tokens, window 300: a second window starts one stride (128) later and reaches the end
    assert window_starts(301, 300) == [(0, 300), (128, 173)]
    # 700 tokens: windows at 0, 128, 256, 384 (the last one reaches 684 < 700? no: 384+300=684) then 512
    assert window_starts(700, 300) == [(0, 300), (128, 300), (256, 300), (384, 300), (512, 188)]


def test_split_words_keeps_punctuation_attached_like_the_reference():
    assert split_words(" The  cat\tsat.\nDone ") == ["The", "cat", "sat.", "Done"]


def _squad(tmp_path, contexts_and_questions):
    data = {
        "version": "1.1",
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {"context": c, "qas": [{"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": 0}]}]}
                    for i, (c, q, a) in enumerate(contexts_and_questions)
                ],
            }
        ],
    }
    p = tmp_path / "squad.json"
    p.write_text(json.dumps(data))
    return p


def test_long_context_gives_the_reference_count_of_features(tmp_path, tiny_checkpoint, tiny_words):
    from subtool.runner.bert.checkpoint import wordpiece_tokenizer

    tok = wordpiece_tokenizer(tiny_checkpoint / "vocab.txt")
    question = " ".join(tiny_words[:9]) + "?"  # 10 tokens → 384 - 10 - 3 = 371 context tokens a window
    short = " ".join(tiny_words[:50])
    long_ = " ".join((tiny_words * 3)[:900])  # 900 tokens: windows at 0,128,...,640 → 6 features
    path = _squad(tmp_path, [(short, question, tiny_words[0]), (long_, question, tiny_words[5])])
    examples = read_squad_examples(path)
    feats = convert_examples_to_features(examples, tok)
    expected_long = len(window_starts(900, 371))
    assert expected_long == 6
    assert len(feats) == 1 + expected_long
    assert list(feats.example_index) == [0] + [1] * expected_long
    # layout: [CLS] question [SEP] context [SEP], segment 1 on the context, mask over the real tokens
    first = feats.input_ids[0]
    assert tok.convert_ids_to_tokens([int(first[0])]) == ["[CLS]"]
    assert tok.convert_ids_to_tokens(first[12:15].tolist()) == tiny_words[:3]  # real word pieces, not [UNK]
    assert int(feats.seq_lengths[0]) == 1 + 10 + 1 + 50 + 1
    assert feats.segment_ids[0, 12 : 12 + 51].all() and not feats.segment_ids[0, :12].any()
    assert feats.input_mask[1].sum() == MAX_SEQ_LENGTH  # a full window fills the sequence
    # every context token is the "max context" one in exactly one window
    owners = {}
    for fi in range(1, len(feats)):
        for pos in range(MAX_SEQ_LENGTH):
            w = feats.token_to_word[fi, pos]
            if w >= 0 and feats.token_is_max_context[fi, pos]:
                owners.setdefault(int(w), []).append(fi)
    assert sorted(owners) == list(range(900)) and all(len(v) == 1 for v in owners.values())


@pytest.mark.parametrize(
    "content, rule",
    [
        ("not json at all", "dataset.squad_v1.1"),
        (
            json.dumps(
                {
                    "version": "2.0",
                    "data": [
                        {
                            "paragraphs": [
                                {
                                    "context": "a b",
                                    "qas": [{"id": "x", "question": "q?", "answers": [], "is_impossible": True}],
                                }
                            ]
                        }
                    ],
                }
            ),
            "dataset.squad_v1.1",
        ),
        (json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}), "dataset.squad_v1.1"),
        (json.dumps([1, 2, 3]), "dataset.squad_v1.1"),
    ],
)
def test_not_squad_v11_is_one_clear_error(tmp_path, content, rule):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(SubtoolError) as err:
        read_squad_examples(p)
    assert err.value.rule == rule and err.value.path == str(p)


def test_missing_dataset_names_the_file(tmp_path):
    with pytest.raises(SubtoolError) as err:
        read_squad_examples(tmp_path / "dev-v1.1.json")
    assert err.value.rule == "dataset.missing" and "dev-v1.1.json" in err.value.one_line()
