"""Sentence BLEU (fairseq_seqkd.bleu) equals sacrebleu's sentence_bleu exactly, bit for bit."""

import random

import pytest
import sacrebleu
from sacrebleu.metrics.bleu import BLEU

from fairseq_seqkd import bleu
from fairseq_seqkd.bleu import SentenceBleu

# characters that exercise every rule of sacrebleu's 13a tokenizer
NASTY = list("aábcdeéz") + list("0123456789") + list(".,.,-:;!?'\"&/()[]{}~`@#$%^*+=<>|\\") + [
    " ", " ", " ", "\t", "\u00a0", "&quot;", "&amp;", "&lt;", "&gt;", "<skipped>", "é", "ß", "中", "😀", "--", "...", "\x00"]


def random_text(rng, max_len=30):
    return "".join(rng.choice(NASTY) for _ in range(rng.randint(0, max_len)))


def test_word_by_word_tokenisation_equals_sacrebleu():
    rng = random.Random(1)
    tokenizer, ours = BLEU(effective_order=True).tokenizer, SentenceBleu()
    for _ in range(5000):
        text = random_text(rng)
        assert ours.tokens(text) == tokenizer(text.rstrip()).split(), repr(text)


def test_scores_equal_sacrebleu_bit_for_bit():
    rng = random.Random(2)
    ours = SentenceBleu()
    words = ["the", "the", "of", "God", "said", ",", ".", "3.5", "1,000", "it's", "\u00e9l", "x-y", "a", "a", "b"]
    checked = 0
    for _ in range(400):
        ref = " ".join(rng.choice(words) for _ in range(rng.randint(0, 15)))
        if rng.random() < 0.2:
            ref = random_text(rng)
        hyps = []
        for _ in range(rng.randint(1, 12)):
            kind = rng.random()
            if kind < 0.1:
                hyps.append("")
            elif kind < 0.3:
                hyps.append(random_text(rng))
            else:
                toks = ref.split()
                for _ in range(rng.randint(0, 5)):
                    if toks and rng.random() < 0.5:
                        toks.pop(rng.randrange(len(toks)))
                    else:
                        toks.insert(rng.randint(0, len(toks)), rng.choice(words))
                hyps.append(" ".join(toks))
        expected = [sacrebleu.sentence_bleu(h, [ref]).score for h in hyps]
        assert ours.scores(hyps, ref) == expected, (hyps, ref)
        best = max(range(len(hyps)), key=lambda i: (expected[i], -i))  # ties: the earliest
        assert ours.best(hyps, ref) == (best, expected[best], expected[0]), (hyps, ref)
        checked += len(hyps)
    assert checked > 2000


def test_choice_prefers_the_earliest_of_equal_scores():
    ours = SentenceBleu()
    ref = "in the beginning God created the heaven"
    hyps = ["in the end", "in the beginning God made", "God created in the beginning",
            "in the beginning God made", ref, ref]
    scores = ours.scores(hyps, ref)
    assert scores[4] == scores[5] == sacrebleu.sentence_bleu(ref, [ref]).score
    assert ours.best(hyps, ref) == (4, scores[4], scores[0])
    assert ours.best(["x y", "a b", "c d"], ref) == (0, 0.0, 0.0)  # all zero: the first one


@pytest.mark.parametrize("group, table_size, words", [(256, 1 << 24, 10 ** 6), (3, 40, 5)])
def test_many_lists_at_once_equal_one_at_a_time(monkeypatch, group, table_size, words):
    """Lists scored together (shared words, a text containing the separator); then small groups, tables
    too small for the n-gram lookup (binary search instead) and a scorer that often forgets its words."""
    monkeypatch.setattr(bleu, "GROUP", group)
    monkeypatch.setattr(bleu, "TABLE_SIZE", table_size)
    monkeypatch.setattr(bleu, "WORDS", words)
    rng = random.Random(5)
    words = ["the", "the", "of", "God", ",", ".", "a", "b", "c\x00d", "3.5"]
    lists = []
    for _ in range(600):
        ref = " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
        hyps = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) for _ in range(rng.randint(1, 6))]
        lists.append((hyps, ref))
    together = SentenceBleu().best_of_many(lists)
    assert len(together) == 600
    for (hyps, ref), got in zip(lists, together):
        expected = [sacrebleu.sentence_bleu(h, [ref]).score for h in hyps]
        best = max(range(len(hyps)), key=lambda i: (expected[i], -i))
        assert got == (best, expected[best], expected[0]), (hyps, ref)
    with pytest.raises(ValueError):
        SentenceBleu().best_of_many([(["a"], "a"), ([], "b")])
