"""llm_accuracy end to end on a real byte-level tokenizer: token ids decoded (the end-of-sequence token skipped),
sentences on their own lines on both sides, ROUGE with the stemmer, and the counts beside it (gen_len, gen_num,
gen_tok_len, tokens_per_sample) figured by hand; a log whose samples are not the data set's is refused."""

from __future__ import annotations

import numpy as np
import pytest

from subtool.errors import SubtoolError
from subtool.runner.llm.accuracy import accuracy_line, llm_accuracy

# (what the model says as decoded, the reference): the same text, with the spaces a byte-level tokenizer decodes
# around it; the same sentences in the other order (rougeLsum scores sentence by sentence, rougeL the whole); a
# shorter answer whose first word is the reference's after Porter stemming; the reordered words as one sentence
SAMPLES = [
    (" Write the summary. Provide context.", "Write the summary. Provide context."),
    ("Provide context. Write the summary. ", "Write the summary. Provide context."),
    ("Provide the answer.", "provides the answer now."),
    ("Provide context, write the summary.", "Write the summary. Provide context."),
]


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE tokenizer (Llama 3's kind) trained on the samples: it decodes spaces as they were."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["</s>"], initial_alphabet=alphabet)
    tok.train_from_iterator([text for sample in SAMPLES for text in sample], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>")


def _ids(tokenizer, text: str) -> np.ndarray:
    ids = tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    return np.array(ids, dtype=np.int32)


def test_rouge_and_counts_over_decoded_token_ids(tokenizer, tmp_path):
    tokens = {i: _ids(tokenizer, said) for i, (said, _) in enumerate(SAMPLES)}
    tokens[7] = np.array([5, 6, 7, 8], dtype=np.int32)  # an index past the data set: not a sample, not counted
    metrics = llm_accuracy(tokens, [ref for _, ref in SAMPLES], tokenizer, tmp_path / "log.json")
    # reordered (5 words; punctuation is no token): 3 of 4 bigrams, a longest common run of 3 words of 5;
    # the short answer: 3 of its 3 words in the reference's 4 (F = 6/7), 2 of its 2 bigrams in the reference's 3
    short = 600 / 7
    assert metrics["rouge1"] == round((300 + short) / 4, 4) == 96.4286
    assert metrics["rouge2"] == round((100 + 75 + 80 + 75) / 4, 4)
    assert metrics["rougeL"] == round((100 + 60 + short + 60) / 4, 4)
    assert metrics["rougeLsum"] == round((300 + short) / 4, 4)  # sentence by sentence, on both sides
    lines = [
        "Write the summary.\nProvide context.",
        "Provide context.\nWrite the summary.",
        "Provide the answer.",
        "Provide context, write the summary.",
    ]
    generated = sum(len(tokens[i]) for i in range(4))  # the end-of-sequence tokens are generated tokens
    assert metrics["gen_len"] == sum(len(line) for line in lines)  # stripped, a line per sentence
    assert metrics["gen_num"] == 4 and metrics["gen_tok_len"] == generated
    assert metrics["tokens_per_sample"] == round(generated / 4, 1)
    line = accuracy_line(metrics, values_as_strings=False)  # the counts as the reference prints them, in its order
    counts = f"'gen_num': 4, 'gen_tok_len': {generated}, 'tokens_per_sample': {round(generated / 4, 1)}}}"
    assert line.startswith(f"{{'rouge1': {metrics['rouge1']}, ") and line.endswith(counts), line


def test_a_log_that_answers_other_indices_than_the_samples_is_refused(tokenizer, tmp_path):
    tokens = {0: _ids(tokenizer, "Provide the answer."), 5: _ids(tokenizer, "Provide the answer.")}
    with pytest.raises(SubtoolError) as err:
        llm_accuracy(tokens, ["provides the answer.", "the answer."], tokenizer, tmp_path / "log.json")
    assert err.value.rule == "acc.incomplete_log" and "1 of 2" in err.value.message


def test_tokens_per_sample_is_rounded_to_one_place_as_the_reference_prints_it(tokenizer, tmp_path):
    """10 tokens over 3 samples, one answer empty (LoadGen logs no bytes for it): 3.3 (the reference's
    round(x, 1)), not 3.33 or 3.333."""
    said = [_ids(tokenizer, text) for text, _ in SAMPLES[:3]]
    tokens = {i: ids[:n] for i, (ids, n) in enumerate(zip(said, (4, 6, 0)))}
    assert all(len(ids) == n for ids, n in zip(tokens.values(), (4, 6, 0)))
    metrics = llm_accuracy(tokens, [ref for _, ref in SAMPLES[:3]], tokenizer, tmp_path / "log.json")
    assert metrics["gen_tok_len"] == 10 and metrics["tokens_per_sample"] == 3.3


@pytest.mark.parametrize("dtype, bad", [(np.int32, -1), (np.int64, -5), (np.int64, 2**32), (np.int64, 2**40 + 7)])
def test_a_logged_token_id_that_is_no_vocabulary_index_is_refused_not_a_traceback(tokenizer, tmp_path, dtype, bad):
    """A log from another harness or read as the wrong integer type (two int32 ids read as one int64 is past
    2**32): one error naming the log and the sample, not the tokenizer's OverflowError."""
    tokens = {i: _ids(tokenizer, said).astype(dtype) for i, (said, _) in enumerate(SAMPLES[:2])}
    tokens[1] = np.array([5, bad, 6], dtype=dtype)
    with pytest.raises(SubtoolError) as err:
        llm_accuracy(tokens, [ref for _, ref in SAMPLES[:2]], tokenizer, tmp_path / "log.json")
    assert err.value.rule == "acc.log_parse" and err.value.path == str(tmp_path / "log.json")
    assert err.value.message.startswith(f"qsl_idx 1: token id {bad} ")


def test_an_id_past_the_models_vocabulary_is_refused_and_one_in_its_padding_decodes_to_nothing(tokenizer, tmp_path):
    """With the checkpoint's vocab_size known, an id at or past it cannot be this model's (before, any id below
    2**32 was decoded, and the tokenizer drops ids it does not know: another model's log scored silently); an id
    between the tokenizer's size and the model's (GPT-J's 50,257 tokens in a 50,400-row embedding) is what the
    references decode to nothing, so the score is that of the answer without it."""
    vocab = len(tokenizer) + 64
    answers = {i: _ids(tokenizer, said) for i, (said, _) in enumerate(SAMPLES[:2])}
    refs = [ref for _, ref in SAMPLES[:2]]
    clean = llm_accuracy(answers, refs, tokenizer, tmp_path / "log.json", vocab)
    padded = dict(answers)
    padded[0] = np.concatenate([answers[0][:1], [vocab - 1], answers[0][1:]]).astype(np.int32)
    scored = llm_accuracy(padded, refs, tokenizer, tmp_path / "log.json", vocab)
    assert {k: scored[k] for k in ("rouge1", "rougeLsum", "gen_len")} == {
        k: clean[k] for k in ("rouge1", "rougeLsum", "gen_len")
    }
    assert scored["gen_tok_len"] == clean["gen_tok_len"] + 1
    padded[1] = np.array([5, vocab, 6], dtype=np.int32)
    with pytest.raises(SubtoolError) as err:
        llm_accuracy(padded, refs, tokenizer, tmp_path / "log.json", vocab)
    assert err.value.rule == "acc.log_parse"
    assert err.value.message.startswith(f"qsl_idx 1: token id {vocab} is past the model's {vocab}-token vocabulary")
    # a config that names fewer tokens than the tokenizer holds: the tokenizer's own ids still count
    assert llm_accuracy(answers, refs, tokenizer, tmp_path / "log.json", 10)["rouge1"] == clean["rouge1"]
