"""Choosing one hypothesis per sentence from K-best lists: Seq-KD (top 1) or Seq-Inter (§3.3).

Seq-Inter keeps the hypothesis with the highest sentence BLEU to the gold
target (sacrebleu's ``sentence_bleu`` with its defaults, computed exactly by
:mod:`fairseq_seqkd.bleu`), both sides decoded with ``remove_bpe`` first;
ties go to the better-ranked hypothesis.
"""

import multiprocessing
from typing import List, Sequence

from fairseq_seqkd.bleu import SentenceBleu

MODES = ("seq-inter", "top1")
REMOVE_BPE = ("sentencepiece", "subword_nmt", "none")


def decode(text: str, remove_bpe: str) -> str:
    """Subword text to words, exactly as fairseq's ``--post-process`` does it (data_utils.post_process)."""
    if remove_bpe == "sentencepiece":  # the common case, inlined: it runs for every hypothesis
        return text.replace(" ", "").replace("\u2581", " ").strip()
    if remove_bpe == "none":
        return text
    from fairseq.data.data_utils import post_process

    return post_process(text, remove_bpe)


_SCORER = None
_PAIRS = None  # the pairs being scored, shared with forked workers instead of pickled to them


def _choose_range(args):
    """[(best index, its BLEU, rank-1 BLEU)] for pairs[start:stop]."""
    start, stop, remove_bpe = args
    global _SCORER
    if _SCORER is None:
        _SCORER = SentenceBleu()
    out = []
    for hyps, ref in _PAIRS[start:stop]:
        out.append(_SCORER.choose([decode(h, remove_bpe) for h in hyps], decode(ref, remove_bpe)))
    return out


def choose_seq_inter(pairs: Sequence, remove_bpe="sentencepiece", workers=1, chunk_size=64) -> List:
    """For each (hypotheses, reference) pair: (index of the best, its BLEU, BLEU of rank 1)."""
    global _PAIRS
    _PAIRS = pairs
    try:
        ranges = [(i, min(i + chunk_size, len(pairs)), remove_bpe) for i in range(0, len(pairs), chunk_size)]
        methods = multiprocessing.get_all_start_methods()
        if workers <= 1 or len(ranges) <= 1 or "fork" not in methods:
            return [r for chunk in map(_choose_range, ranges) for r in chunk]
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return [r for chunk in pool.imap(_choose_range, ranges) for r in chunk]
    finally:
        _PAIRS = None
