"""Exact, fast sentence-level BLEU for choosing among K-best hypotheses (Seq-Inter, §3.3).

``SentenceBleu().scores(hyps, ref)`` returns, for every hypothesis, exactly
``sacrebleu.sentence_bleu(hyp, [ref]).score`` with sacrebleu's defaults (13a
tokenisation, exponential smoothing, effective order, case kept): the same
float, bit for bit. ``best_of_many`` picks the best hypothesis of many K-best
lists at once, much faster than one sacrebleu call per hypothesis:

* tokenisation is sacrebleu's own tokenizer applied to each distinct word once
  (13a decides each split from one character on each side, and the whitespace
  between words acts exactly like the padding sacrebleu adds around a line);
  words become integer ids through a dictionary;
* the n-gram statistics of a few hundred K-best lists are counted together
  with numpy: a token or n-gram gets an id only if it occurs in its own
  sentence's reference (the others cannot match), an n-gram's id comes from
  the id of its first n-1 tokens and its last token through a lookup table,
  and matches are clipped at the reference's counts;
* scores are computed with numpy for all hypotheses, and the best few of each
  list again with ``BLEU.compute_bleu``'s exact arithmetic (same operations,
  same ``my_log``), so that the choice is the one sacrebleu's scores give,
  ties going to the better-ranked hypothesis.
"""

import math
from itertools import chain, repeat

import numpy as np
from sacrebleu.metrics.bleu import BLEU, MAX_NGRAM_ORDER
from sacrebleu.utils import my_log

assert MAX_NGRAM_ORDER == 4, "the statistics below are written for sacrebleu's 4-grams"

SEP = "\x00"  # joins texts (and new words) into one line; texts that contain it take a slower path
# K-best lists are scored in groups of up to GROUP lists, large enough for numpy; a group's lookup tables
# have about (reference tokens + 1) x (longest reference + 1) entries, kept under TABLE_SIZE (a reference
# has at most as many tokens as characters). A longer single reference is looked up by binary search.
GROUP = 256
TABLE_SIZE = 1 << 24
# The scorer remembers the tokens of this many distinct words at most, then starts afresh.
WORDS = 2_000_000
# numpy's and the math module's log/exp differ by a few ulps at most; hypotheses within this of the
# best numpy score are scored again exactly.
TOLERANCE = 1e-9


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


def bleu_array(correct, sys_len, ref_len):
    """``bleu_from_stats`` for arrays of statistics (``correct``: 4 x n), up to rounding."""
    orders = np.arange(1, MAX_NGRAM_ORDER + 1)[:, None]
    total = np.maximum(sys_len[None, :] - orders + 1, 0)
    used = total > 0  # effective order: the orders with at least one n-gram
    zero = (correct == 0) & used
    smooth = np.exp2(np.cumsum(zero, axis=0))
    safe_total = np.maximum(total, 1)
    precision = np.where(zero, 100.0 / (smooth * safe_total), 100.0 * correct / safe_total)
    eff_order = np.maximum(used.sum(axis=0), 1)
    log_mean = np.where(used, np.log(np.where(used, precision, 1.0)), 0.0).sum(axis=0) / eff_order
    safe_len = np.maximum(sys_len, 1)
    bp = np.where(sys_len < ref_len, np.exp(1 - ref_len / safe_len), 1.0)
    score = bp * np.exp(log_mean)
    return np.where((correct.sum(axis=0) > 0) & (sys_len > 0), score, 0.0)


class _Growing:
    """An int64 array that grows by doubling; ``data[:size]`` holds what was appended."""

    def __init__(self, values):
        self.data, self.size = np.zeros(1024, np.int64), 0
        self.extend(values)

    def extend(self, values):
        end = self.size + len(values)
        if end > len(self.data):
            data = np.zeros(max(end, 2 * len(self.data)), np.int64)
            data[:self.size] = self.data[:self.size]
            self.data = data
        self.data[self.size:end] = values
        self.size = end


class SentenceBleu:
    """sacrebleu's sentence BLEU (defaults) for many hypotheses against their references."""

    def __init__(self):
        # the tokenizer of the metric that sacrebleu.sentence_bleu builds with its defaults
        self.tokenizer = BLEU(effective_order=True).tokenizer
        self._tables = {}
        self._scores = {}
        self._forget_words()

    def _forget_words(self):
        self._word_id = {}  # word -> id (1, 2, ...); 0 ends a text in a token stream
        self._token_id = {}  # token -> id (1, 2, ...)
        # per word id: its first token in _flat and its number of tokens; word 0 is token 0
        self._first, self._count, self._flat = _Growing([0]), _Growing([1]), _Growing([0])
        self._tables.pop("vocab", None)

    @staticmethod
    def _words_of(text):
        """The words of a text as keys of the word table: a word containing SEP is kept apart, as a tuple."""
        words = text.split()
        return words if SEP not in text else [(w,) if SEP in w else w for w in words]

    def _add_words(self, words):
        new = [w for w in dict.fromkeys(words) if w not in self._word_id]
        if not new:
            return
        # 13a leaves a word of letters and digits whole. The others are tokenized in one line, joined
        # by SEP, which no rule touches and whose surrounding spaces pad each word like a line's ends.
        whole = [w for w in new if isinstance(w, str) and w.isalnum()]
        joinable = [w for w in new if isinstance(w, str) and not w.isalnum()]
        apart = [w for w in new if not isinstance(w, str)]
        pieces = self.tokenizer(f" {SEP} ".join(joinable)).split(SEP) if joinable else []
        split = [p.split() for p in pieces] + [self.tokenizer(w[0]).split() for w in apart]
        count = np.concatenate([np.ones(len(whole), np.int64), np.fromiter(map(len, split), np.int64, len(split))])
        token_id = self._token_id
        self._first.extend(self._flat.size + np.cumsum(count) - count)
        self._count.extend(count)
        self._flat.extend([token_id.setdefault(t, len(token_id) + 1) for t in chain(whole, chain.from_iterable(split))])
        n = len(self._word_id)
        self._word_id.update(zip(chain(whole, joinable, apart), range(n + 1, n + 1 + len(new))))

    def tokens(self, text):
        """sacrebleu's tokens of ``text`` (``BLEU._preprocess_segment``, case kept)."""
        words = self._words_of(text)
        self._add_words(words)
        names = dict(zip(self._token_id.values(), self._token_id.keys()))
        first, count, flat = self._first.data, self._count.data, self._flat.data
        return [names[t] for w in map(self._word_id.__getitem__, words)
                for t in flat[first[w]:first[w] + count[w]].tolist()]

    def _word_stream(self, texts):
        """The word ids of all texts, each text followed by a 0."""
        line = f" {SEP} ".join(texts) + f" {SEP}"
        if line.count(SEP) == len(texts):  # no text contains SEP: one split, SEP ends each text
            words = line.split()
            get = self._word_id.get
            ids = np.fromiter(map(get, words, repeat(0)), np.int64, len(words))
            zeros = np.flatnonzero(ids == 0)
            if len(zeros) > len(texts):  # words never seen before
                unknown = [words[i] for i in zeros.tolist()]
                self._add_words([w for w in unknown if w != SEP])
                ids[zeros] = np.fromiter(map(get, unknown, repeat(0)), np.int64, len(unknown))
            return ids
        words = [self._words_of(t) for t in texts]
        self._add_words(chain.from_iterable(words))
        get = self._word_id.__getitem__
        return np.fromiter(chain.from_iterable(chain(map(get, ws), (0,)) for ws in words), np.int64)

    def _token_stream(self, texts):
        """The token ids of all texts, each text followed by a 0."""
        ids = self._word_stream(texts)
        start, count, flat = self._first.data, self._count.data, self._flat.data
        n = count[ids]
        if np.all(n == 1):
            return flat[start[ids]]
        ends = np.cumsum(n)
        return flat[np.repeat(start[ids] - (ends - n), n) + np.arange(ends[-1])]

    # -- statistics -----------------------------------------------------------------------------------
    def _table(self, name, size):
        """A zeroed int64 lookup table of at least ``size`` entries (callers zero what they set)."""
        table = self._tables.get(name)
        if table is None or len(table) < size:
            table = self._tables[name] = np.zeros(max(size, 2 * len(table if table is not None else ())), np.int64)
        return table

    def _stats(self, refs, hyp_lists):
        """Clipped n-gram matches (4 x texts) and lengths of the texts ref 0, hyps 0, ref 1, hyps 1, ...

        A token gets an id only if it occurs in its own list's reference: 1 + the position of its
        first occurrence among all the references' tokens; others get 0 and cannot match. An n-gram's
        id is found the same way from (id of its first n-1 tokens, its last token's place in the
        reference), through a lookup table filled from the references.
        """
        sizes = np.fromiter(map(len, hyp_lists), np.int64, len(refs)) + 1
        texts = list(chain.from_iterable(chain((r,), h) for r, h in zip(refs, hyp_lists)))
        tokens = self._token_stream(texts)
        ends = tokens == 0
        text_of = np.cumsum(ends) - ends  # a text's end counts as its own
        lengths = np.bincount(text_of[~ends], minlength=len(texts))
        is_ref = np.zeros(len(texts), bool)
        is_ref[np.cumsum(sizes) - sizes] = True
        at_ref = is_ref[text_of] & ~ends
        ref_pos = np.flatnonzero(at_ref)
        n_ref = len(ref_pos)
        # local ids of the references' tokens, then (list, local id) -> unigram id
        vocab = np.unique(tokens[ref_pos])
        local = self._table("vocab", len(self._token_id) + 1)
        local[vocab] = np.arange(1, len(vocab) + 1)
        token_local = local[tokens]
        local[vocab] = 0
        keys = np.repeat(np.arange(len(refs)), sizes)[text_of] * (len(vocab) + 1) + token_local
        table = self._table("unigrams", len(refs) * (len(vocab) + 1))
        table[keys[ref_pos[::-1]]] = np.arange(n_ref, 0, -1)  # the first occurrence wins
        ids = np.where(token_local > 0, table[keys], 0)
        table[keys[ref_pos]] = 0
        # a token's place in its reference (1, 2, ...), the last part of an n-gram's key
        ref_start = np.cumsum(lengths[is_ref]) - lengths[is_ref]
        list_ref_start = np.repeat(ref_start, sizes)[text_of]
        place = np.where(ids > 0, ids - list_ref_start, 0)
        width = int(place.max()) + 1
        rank = np.arange(len(texts)) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # 0: the reference
        correct = np.zeros((MAX_NGRAM_ORDER, len(texts)), np.int64)
        for n in range(MAX_NGRAM_ORDER):
            if n:
                prefix, last = ids[:-1], place[n:]
                ok = (prefix > 0) & (last > 0)
                codes = np.where(ok, prefix * width + last, 0)
                ref_ngrams = np.flatnonzero(ok & at_ref[: len(ok)])
                ids = self._ngram_ids(codes, ok, ref_ngrams, (n_ref + 1) * width)
            ref_counts = np.bincount(ids[at_ref[: len(ids)]], minlength=n_ref + 1)
            hits = np.flatnonzero((ids > 0) & ~is_ref[text_of[: len(ids)]])
            correct[n] = np.bincount(text_of[hits], weights=self._clipped(hits, ids[hits], rank[text_of[hits]],
                                                                          ref_counts, n_ref), minlength=len(texts))
        return correct, lengths, is_ref, sizes

    def _ngram_ids(self, codes, ok, ref_ngrams, code_range):
        """1 + index of each n-gram's code among the references' codes (``codes[ref_ngrams]``), else 0."""
        ref_codes = codes[ref_ngrams]
        if code_range <= TABLE_SIZE:
            table = self._table("ngrams", code_range)
            table[ref_codes[::-1]] = np.arange(len(ref_codes), 0, -1)
            ids = np.where(ok, table[codes], 0)
            table[ref_codes] = 0
            return ids
        known = np.unique(ref_codes)
        where = np.minimum(np.searchsorted(known, codes), max(len(known) - 1, 0))
        return np.where(ok & (known[where] == codes) if len(known) else False, where + 1, 0)

    def _clipped(self, hits, ngrams, rank, ref_counts, n_ref):
        """For each hit (a hypothesis n-gram found in the reference): does it count once clipped?

        The k-th occurrence (k = 0, 1, ...) of an n-gram in a hypothesis counts if the reference has
        more than k of it. First occurrences are found with a table indexed by (rank of the
        hypothesis in its list, n-gram id); only repeats of n-grams the reference repeats are sorted.
        """
        slots = rank * (n_ref + 1) + ngrams
        first = self._table("first", int(rank.max(initial=0) + 1) * (n_ref + 1))
        order = np.arange(len(hits))
        first[slots[::-1]] = order[::-1]  # the earliest hit of each slot wins
        counts = first[slots] == order
        repeats = np.flatnonzero(~counts & (ref_counts[ngrams] > 1))
        if len(repeats):
            members = np.flatnonzero(np.isin(slots, slots[repeats]))
            members = members[np.argsort(slots[members], kind="stable")]  # by slot, then position
            run_start = np.flatnonzero(np.r_[True, slots[members][1:] != slots[members][:-1]])
            occurrence = np.arange(len(members)) - np.repeat(run_start, np.diff(np.r_[run_start, len(members)]))
            counts[members] = occurrence < ref_counts[ngrams[members]]
        return counts

    # -- scores -----------------------------------------------------------------------------------------
    def _score(self, correct, sys_len, ref_len):
        key = (*correct, sys_len, ref_len)
        score = self._scores.get(key)
        if score is None:
            if len(self._scores) > 1_000_000:
                self._scores.clear()
            total = [max(0, sys_len - n) for n in range(MAX_NGRAM_ORDER)]
            score = self._scores[key] = bleu_from_stats(list(correct), total, sys_len, ref_len)
        return score

    def scores(self, hyps, ref):
        """``[sacrebleu.sentence_bleu(h, [ref]).score for h in hyps]``."""
        correct, lengths, _, _ = self._stats([ref], [hyps])
        correct, lengths = correct.T.tolist(), lengths.tolist()
        return [self._score(correct[i], lengths[i], lengths[0]) for i in range(1, len(lengths))]

    def scores_of_many(self, lists):
        """For each (hypotheses, reference) in ``lists``: ``[sacrebleu.sentence_bleu(h, [reference]).score for h
        in hypotheses]``, every score exact (as :meth:`scores`, many lists at once)."""
        out = []
        for group, correct, lengths, is_ref, sizes, ref_len in self._group_stats(lists):
            rows = np.vstack([correct, lengths, ref_len]).T.tolist()
            for start, size in zip(np.flatnonzero(is_ref).tolist(), sizes.tolist()):
                out.append([self._score(row[:4], row[4], row[5]) for row in rows[start + 1:start + size]])
        return out

    def best_of_many(self, lists):
        """For each (hypotheses, reference) in ``lists``: (index of the best hypothesis, its BLEU, BLEU of
        hypothesis 0), with the BLEU of ``sacrebleu.sentence_bleu``; ties go to the earliest."""
        out = []
        for group, correct, lengths, is_ref, sizes, ref_len in self._group_stats(lists):
            approx = bleu_array(correct, lengths, ref_len)
            approx[is_ref] = -1.0
            starts = np.flatnonzero(is_ref)
            near_best = approx >= np.repeat(np.maximum.reduceat(approx, starts), sizes) - TOLERANCE
            near_best[starts + 1] = True  # hypothesis 0, whose BLEU is reported
            candidates = np.flatnonzero(near_best)
            stats = np.vstack([correct[:, candidates], lengths[candidates], ref_len[candidates]]).T.tolist()
            which = np.repeat(np.arange(len(group)), sizes)[candidates].tolist()
            best = [None] * len(group)
            for j, rank, row in zip(which, (candidates - starts[which]).tolist(), stats):
                score = self._score(row[:4], row[4], row[5])
                if best[j] is None:
                    best[j] = [rank - 1, score, score]  # hypothesis 0 comes first
                elif score > best[j][1]:
                    best[j][:2] = rank - 1, score
            out.extend(map(tuple, best))
        return out

    def _group_stats(self, lists):
        """For each group of :meth:`_groups`: (group, correct, lengths, is_ref, sizes, each row's reference
        length), the statistics of :meth:`_stats` (references and hypotheses of a list in consecutive rows)."""
        for group in self._groups(lists):
            if len(self._word_id) > WORDS:
                self._forget_words()
            if not all(hyps for hyps, _ in group):
                raise ValueError("a K-best list without hypotheses")  # callers check first: a bug
            correct, lengths, is_ref, sizes = self._stats([r for _, r in group], [h for h, _ in group])
            yield group, correct, lengths, is_ref, sizes, np.repeat(lengths[is_ref], sizes)

    @staticmethod
    def _groups(lists):
        """Consecutive groups of lists whose lookup tables stay small (see TABLE_SIZE)."""
        group, chars, longest = [], 0, 0
        for hyps_ref in lists:
            size = len(hyps_ref[1]) + 1
            if group and (len(group) == GROUP or (chars + size) * max(longest, size) > TABLE_SIZE):
                yield group
                group, chars, longest = [], 0, 0
            group.append(hyps_ref)
            chars, longest = chars + size, max(longest, size)
        if group:
            yield group

    def best(self, hyps, ref):
        """``(index of the best, its BLEU, BLEU of hyps[0])`` for one K-best list."""
        return self.best_of_many([(hyps, ref)])[0]
