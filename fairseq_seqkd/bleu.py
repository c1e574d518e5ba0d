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
  ``my_log``) without building a score object, memoised on the statistics;
* ``choose`` skips the 3- and 4-grams of hypotheses whose upper bound
  cannot beat the best so far (the choice stays exact).
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
                    # 13a only splits at ASCII punctuation: a word of letters and digits stays whole
                    cache[word] = [word] if word.isalnum() else self.tokenizer(word).split()
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

    def _reference(self, ref):
        """Per n-gram order: the reference's n-gram set and its repeated n-grams (None if none); its length."""
        r = self.tokens(ref)
        ref_lists = _ngram_lists(r)
        ref_lists[0] = r  # unigrams as plain tokens, bigger n-grams as tuples
        orders = []
        for grams in ref_lists:
            # n-grams the reference repeats: the only ones where clipping can exceed 1
            repeated = {g: c for g, c in Counter(grams).items() if c > 1}
            orders.append((set(grams), repeated or None))
        return orders, len(r)

    @staticmethod
    def _matches(n, t, grams, total, ref_set, rep):
        """Clipped matches of the hypothesis' n-grams (order n + 1; ``grams`` iterates them)."""
        if rep is None:
            # every reference n-gram occurs once: the distinct matched n-grams
            return len(ref_set.intersection(grams))
        hyp_set = set(grams)
        matched = ref_set & hyp_set
        correct = len(matched)
        if total != len(hyp_set):  # the hypothesis repeats an n-gram of this order
            both = rep.keys() & matched
            if both:
                seq = t if n == 0 else _ngram_lists(t)[n]
                for g in both:  # clip at the smaller of the two counts
                    correct += min(seq.count(g), rep[g]) - 1
        return correct

    def _stats(self, hyp):
        """Tokens, their n-gram iterators (orders 1-4) and the n-gram totals of a hypothesis."""
        t = self.tokens(hyp)
        length = len(t)
        t1 = t[1:]
        t2 = t1[1:]
        grams = (t, zip(t, t1), zip(t, t1, t2), zip(t, t1, t2, t2[1:]))
        return t, grams, [length, max(0, length - 1), max(0, length - 2), max(0, length - 3)]

    def _exact(self, hyp, orders, ref_len):
        t, grams, total = self._stats(hyp)
        correct = [self._matches(n, t, grams[n], total[n], *orders[n]) for n in range(MAX_NGRAM_ORDER)]
        return self._score(correct, total, total[0], ref_len)

    def scores(self, hyps, ref):
        """``[sacrebleu.sentence_bleu(h, [ref]).score for h in hyps]``."""
        orders, ref_len = self._reference(ref)
        done = {}
        out = []
        for hyp in hyps:
            score = done.get(hyp)
            if score is None:
                score = done[hyp] = self._exact(hyp, orders, ref_len)
            out.append(score)
        return out

    def choose(self, hyps, ref):
        """``(index of the best, its BLEU, BLEU of hyps[0])``, ties going to the earliest.

        The same choice as :meth:`best` without scoring every hypothesis in
        full: BLEU grows with every n-gram match count, and the clipped
        matches of order n + 1 never exceed those of order n, so once the
        unigram and bigram matches are known, the score with the 3- and
        4-gram matches set to the bigram matches bounds the hypothesis'
        BLEU from above. A hypothesis whose bound does not beat the best so
        far cannot be chosen, and its 3- and 4-grams are never counted.
        """
        orders, ref_len = self._reference(ref)
        first = best_score = self._exact(hyps[0], orders, ref_len)
        best = 0
        seen = {hyps[0]}
        for i in range(1, len(hyps)):
            hyp = hyps[i]
            if hyp in seen:
                continue  # an earlier copy wins the tie
            seen.add(hyp)
            t, grams, total = self._stats(hyp)
            c1 = self._matches(0, t, grams[0], total[0], *orders[0])
            c2 = self._matches(1, t, grams[1], total[1], *orders[1])
            bound = self._score([c1, c2, min(c2, total[2]), min(c2, total[3])], total, total[0], ref_len)
            if bound <= best_score:
                continue
            c3 = self._matches(2, t, grams[2], total[2], *orders[2])
            c4 = self._matches(3, t, grams[3], total[3], *orders[3])
            score = self._score([c1, c2, c3, c4], total, total[0], ref_len)
            if score > best_score:
                best, best_score = i, score
        return best, best_score, first

    def best(self, hyps, ref):
        """Index of the hypothesis with the highest BLEU (ties: the earliest) and all scores."""
        scores = self.scores(hyps, ref)
        best = 0
        for i in range(1, len(scores)):
            if scores[i] > scores[best]:
                best = i
        return best, scores
