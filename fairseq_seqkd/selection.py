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
    """Subword text to words, exactly as fairseq's ``--post-process`` does it."""
    from fairseq.data.data_utils import post_process

    return text if remove_bpe == "none" else post_process(text, remove_bpe)


_SCORER = None


def _choose_chunk(args):
    """[(best index, its BLEU, rank-1 BLEU)] for a chunk of (hypotheses, reference) pairs."""
    chunk, remove_bpe = args
    global _SCORER
    if _SCORER is None:
        _SCORER = SentenceBleu()
    out = []
    for hyps, ref in chunk:
        best, scores = _SCORER.best([decode(h, remove_bpe) for h in hyps], decode(ref, remove_bpe))
        out.append((best, scores[best], scores[0]))
    return out


def choose_seq_inter(pairs: Sequence, remove_bpe="sentencepiece", workers=1, chunk_size=256) -> List:
    """For each (hypotheses, reference) pair: (index of the best, its BLEU, BLEU of rank 1)."""
    chunks = [(pairs[i:i + chunk_size], remove_bpe) for i in range(0, len(pairs), chunk_size)]
    if workers <= 1 or len(chunks) <= 1:
        results = map(_choose_chunk, chunks)
        return [r for chunk in results for r in chunk]
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    with multiprocessing.get_context(method).Pool(workers) as pool:
        return [r for chunk in pool.imap(_choose_chunk, chunks) for r in chunk]
