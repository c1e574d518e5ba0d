"""Exact, fast sentence-level BLEU for choosing among K-best hypotheses (Seq-Inter, §3.3).

``SentenceBleu().scores(hyps, ref)`` returns, for every hypothesis, exactly
``sacrebleu.sentence_bleu(hyp, [ref]).score`` with sacrebleu's defaults (13a
tokenisation, exponential smoothing, effective order, case kept): the same
float, bit for bit. It is much faster than one sacrebleu call per hypothesis:

* the tokenisation is sacrebleu's own tokenizer applied word by word with a
  cache (13a decides each split from one character on each side, and the
  whitespace between words acts exactly like the padding sacrebleu adds
  around a line), so each distinct word is tokenised once;
* the reference's n-grams are counted once per K-best list;
* clipped matches come from set intersections done in C: a matched n-gram
  counts once unless it is repeated in both hypothesis and reference, which
  only the (few) repeated reference n-grams need to be checked for;
* the score is ``BLEU.compute_bleu``'s arithmetic (same operations, same
  ``my_log``) without building a score object, memoised on the statistics.
"""

import math
from collections import Counter
from itertools import chain

from sacrebleu.metrics.bleu import BLEU, MAX_NGRAM_ORDER
from sacrebleu.utils import my_log

assert MAX_NGRAM_ORDER == 4, "the n-gram code below is written for sacrebleu's 4-grams"


def bleu_from_stats(correct, total, sys_len, ref_len):
    """``BLEU.compute_bleu(..., smooth_method='exp', effective_order=True).score``, same operations."""
    bp = 1.0
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    if not any(correct):
        return 0.0
    precisions = [0.0] * MAX_NGRAM_ORDER
    smooth_mteval = 1.0
    eff_order = MAX_NGRAM_ORDER
    for n in range(1, MAX_NGRAM_ORDER + 1):
        if total[n - 1] == 0:
            break
        eff_order = n
        if correct[n - 1] == 0:
            smooth_mteval *= 2
            precisions[n - 1] = 100.0 / (smooth_mteval * total[n - 1])
        else:
            precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1]
    return bp * math.exp(sum([my_log(p) for p in precisions[:eff_order]]) / eff_order)


def _ngram_lists(t):
    """The 1-, 2-, 3- and 4-grams of a token list, as tuples (the keys sacrebleu uses)."""
    return [list(zip(t)), list(zip(t, t[1:])), list(zip(t, t[1:], t[2:])), list(zip(t, t[1:], t[2:], t[3:]))]


class SentenceBleu:
    """sacrebleu's sentence BLEU (defaults) for many hypotheses against one reference."""

    def __init__(self):
        # The tokenizer of the metric sacrebleu.sentence_bleu builds with its defaults.
        self.tokenizer = BLEU(effective_order=True).tokenizer
        self._word_tokens = {}
        self._scores = {}

    def tokens(self, text):
        """sacrebleu's tokens of ``text`` (``BLEU._preprocess_segment``, case kept)."""
        cache = self._word_tokens
        words = text.split()
        try:
            pieces = list(map(cache.__getitem__, words))
        except KeyError:
            if len(cache) > 2_000_000:
                cache.clear()
            for word in words:
                if word not in cache:
                    cache[word] = self.tokenizer(word).split()
            pieces = list(map(cache.__getitem__, words))
        return list(chain.from_iterable(pieces))

    def _score(self, correct, total, sys_len, ref_len):
        key = (*correct, sys_len, ref_len)  # total follows from sys_len
        score = self._scores.get(key)
        if score is None:
            if len(self._scores) > 1_000_000:
                self._scores.clear()
            score = self._scores[key] = bleu_from_stats(correct, total, sys_len, ref_len)
        return score

    def scores(self, hyps, ref):
        """``[sacrebleu.sentence_bleu(h, [ref]).score for h in hyps]``."""
        r = self.tokens(ref)
        ref_len = len(r)
        ref_lists = _ngram_lists(r)
        ref_lists[0] = r  # unigrams as plain tokens, bigger n-grams as tuples
        ref_sets = [set(grams) for grams in ref_lists]
        # n-grams the reference repeats, per order: the only ones where clipping can exceed 1
        repeated = [{g: c for g, c in Counter(grams).items() if c > 1} for grams in ref_lists]
        checks = [(n, rep.keys(), rep) for n, rep in enumerate(repeated) if rep]
        set1, set2, set3, set4 = ref_sets
        done = {}
        out = []
        for hyp in hyps:
            score = done.get(hyp)
            if score is None:
                t = self.tokens(hyp)
                length = len(t)
                t1 = t[1:]
                t2 = t1[1:]
                hyp_sets = [set(t), set(zip(t, t1)), set(zip(t, t1, t2)), set(zip(t, t1, t2, t2[1:]))]
                # distinct matched n-grams; each counts once unless repeated on both sides
                correct = [len(set1 & hyp_sets[0]), len(set2 & hyp_sets[1]), len(set3 & hyp_sets[2]),
                           len(set4 & hyp_sets[3])]
                total = [length, max(0, length - 1), max(0, length - 2), max(0, length - 3)]
                for n, keys, rep in checks:
                    if total[n] == len(hyp_sets[n]):
                        continue  # the hypothesis repeats no n-gram of this order
                    both = keys & hyp_sets[n]
                    if both:
                        grams = t if n == 0 else _ngram_lists(t)[n]
                        for g in both:  # clip at the smaller of the two counts
                            correct[n] += min(grams.count(g), rep[g]) - 1
                score = done[hyp] = self._score(correct, total, length, ref_len)
            out.append(score)
        return out

    def best(self, hyps, ref):
        """Index of the hypothesis with the highest BLEU (ties: the earliest) and all scores."""
        scores = self.scores(hyps, ref)
        best = 0
        for i in range(1, len(scores)):
            if scores[i] > scores[best]:
                best = i
        return best, scores
