"""MBR-n selection (minimum Bayes risk): the hypotheses of a K-best list that agree most with the others.

The expected utility of hypothesis i of a list of K is the sum, over the *other* K - 1 hypotheses j taken as
pseudo-references, of ``utility(hyp i, ref j)``; a hypothesis is never its own pseudo-reference. The
weights are uniform: every pseudo-reference counts once, whatever its model score. The teacher's beam scores
are peaked (the top hypothesis often holds most of the renormalised mass) and length-biased, so weighting by
them would mostly re-rank by model score (top-n again); uniform weights over the K-best list are the common
choice in MBR-n distillation (Wang et al. 2024, arXiv 2407.10456).

Utilities, both equal to sacrebleu's sentence scores bit for bit:

* ``chrf`` (default): ``sacrebleu.sentence_chrf(hyp, [ref]).score`` with sacrebleu's defaults (character
  order 6, word order 0, beta 2, whitespace removed), computed pairwise by the ``fastchrf`` package. Its
  arithmetic is sacrebleu's in float64; the only difference is the whitespace it removes (Rust's Unicode
  White_Space, without Python's ``\\x1c``-``\\x1f``), so texts are passed to it with Python's whitespace
  already removed (``"".join(text.split())``, exactly what sacrebleu does).
* ``bleu``: ``sacrebleu.sentence_bleu(hyp, [ref]).score`` with sacrebleu's defaults
  (:class:`fairseq_seqkd.bleu.SentenceBleu`).

Sums are taken in pseudo-reference order (j = 0, 1, ...), one addition at a time, so a tie between two
hypotheses is a tie of the same floats a plain Python loop over sacrebleu's scores gives; ties go to the
better model rank. What is ranked is the sum; :func:`expected_utilities` reports it divided by K - 1.
"""

from typing import List, Sequence

import numpy as np

UTILITIES = ("chrf", "bleu")


def pairwise_chrf(lists: Sequence[Sequence[str]]) -> List[np.ndarray]:
    """For each list of K texts, the K x K matrix ``U[i, j] = sacrebleu.sentence_chrf(text i, [text j]).score``."""
    import fastchrf

    stripped = [["".join(text.split()) for text in texts] for texts in lists]
    if not stripped:
        return []
    return [np.array(m, dtype=np.float64).reshape(len(t), len(t))
            for t, m in zip(stripped, fastchrf.pairwise_chrf(stripped, stripped))]


def pairwise_bleu(lists: Sequence[Sequence[str]], scorer) -> List[np.ndarray]:
    """For each list of K texts, the K x K matrix ``U[i, j] = sacrebleu.sentence_bleu(text i, [text j]).score``
    (``scorer``: a :class:`fairseq_seqkd.bleu.SentenceBleu`)."""
    scores = iter(scorer.scores_of_many([(list(texts), ref) for texts in lists for ref in texts]))
    # scores_of_many gives, per pseudo-reference j, the scores of all hypotheses: column j of U
    return [np.array([next(scores) for _ in texts], dtype=np.float64).reshape(len(texts), len(texts)).T
            for texts in lists]


def utility_sums(matrices: Sequence[np.ndarray]) -> List[np.ndarray]:
    """For each K x K utility matrix, ``sum(U[i, j] for j in range(K) if j != i)`` for every i, added in j
    order (``np.add.accumulate`` is sequential; the diagonal's 0.0 leaves a sum unchanged)."""
    out = []
    for u in matrices:
        u = u.copy()
        np.fill_diagonal(u, 0.0)
        out.append(np.add.accumulate(u, axis=1)[:, -1] if u.size else np.zeros(0))
    return out


def expected_utilities(lists: Sequence[Sequence[str]], utility="chrf", scorer=None) -> List[np.ndarray]:
    """The summed utility of every hypothesis of every list against the others (see the module docstring)."""
    if utility == "chrf":
        matrices = pairwise_chrf(lists)
    elif utility == "bleu":
        matrices = pairwise_bleu(lists, scorer)
    else:
        raise ValueError(f"unknown MBR utility {utility!r}")
    return utility_sums(matrices)


def best_ranks(scores: Sequence[float], keep: int) -> List[int]:
    """The positions of the ``keep`` highest scores, highest first; ties go to the lower position (the
    better model rank)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:keep]
