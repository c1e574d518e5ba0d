"""Choosing hypotheses per sentence from K-best lists: Seq-KD (top 1) or Seq-Inter (§3.3), or n of them.

Seq-Inter keeps the hypothesis with the highest sentence BLEU to the gold
target (sacrebleu's ``sentence_bleu`` with its defaults, computed exactly by
:mod:`fairseq_seqkd.bleu`), both sides turned into words with ``remove_bpe``
first; ties go to the better-ranked hypothesis.

With ``keep`` n (:func:`select_n`), n hypotheses per sentence, in this order:

* ``top-n``: the teacher's n best (K-best rank order); ``top1`` is top-n with n = 1;
* ``mbr``: the n with the highest expected utility against the other hypotheses of the list
  (:mod:`fairseq_seqkd.mbr`: uniform weights, chrF or BLEU, on the words after ``remove_bpe``);
* ``seq-inter``: the n with the highest sentence BLEU to the reference (n = 1: Seq-Inter as above).

Ties go to the better model rank. A list with fewer than n hypotheses gives all of them.

* :func:`select_sentences` / :func:`select_n`: the choices for sentences already in memory (seqkd-distill);
* :func:`select_file`: the choices for a K-best file or fairseq-generate output, in id order;
* :func:`write_selection`: the same, written to a source and a target file (seqkd-select).

Our K-best file is streamed: it is cut into pieces of whole sentences that
worker processes parse and score, so memory stays flat at WMT scale and
every step but the reading of bytes runs in parallel. fairseq-generate
output (any order) is read whole first.
"""

import collections
import concurrent.futures
import contextlib
import math
import multiprocessing
from typing import Iterator, List, NamedTuple

from fairseq_seqkd import mbr
from fairseq_seqkd.bleu import SentenceBleu
from fairseq_seqkd.errors import KBestError, SeqKDError
from fairseq_seqkd.kbest import (KBestFile, check_complete, check_sentence, in_id_order, is_kbest_file,
                                 parse_kbest_rows, read_generate_output)
from fairseq_seqkd.subwords import remove_subwords_all
from fairseq_seqkd.textio import atomic_open

MODES = ("seq-inter", "top1", "top-n", "mbr")
PIECE_BYTES = 1 << 19  # K-best file pieces handed to a worker
PIECE_SENTENCES = 2048  # the same for fairseq-generate output


class Choice(NamedTuple):
    id: int
    line: int  # where the sentence starts in the input
    source: str
    target: str  # the chosen hypothesis, as generated
    rank: int  # its rank in the K-best list (0: the teacher's best)
    hypotheses: int
    bleu: float  # its sentence BLEU (seq-inter; else NaN)
    first_bleu: float  # the sentence BLEU of rank 0 (seq-inter; else NaN)
    utility: float = math.nan  # its expected utility (mbr: mean over the other hypotheses; else NaN)


_SCORER = None  # one per process: it caches the tokens of the words it has seen


def check_keep(mode, keep, nbest=None, utility="chrf"):
    """SeqKDError unless ``keep`` outputs per sentence go with ``mode`` (and ``nbest`` hypotheses, if given)."""
    if mode not in MODES:
        raise SeqKDError(f"unknown selection {mode!r} (one of {', '.join(MODES)})")
    if utility not in mbr.UTILITIES:
        raise SeqKDError(f"--mbr-utility {utility}: one of {', '.join(mbr.UTILITIES)}")
    if keep < 1:
        raise SeqKDError(f"--keep {keep}: must be at least 1")
    if mode == "top1" and keep > 1:
        raise SeqKDError(f"--keep {keep} with top1, which keeps one output: use top-n --keep {keep}")
    if nbest is not None and keep > nbest:
        raise SeqKDError(f"--keep {keep} is larger than --nbest {nbest}: there are only {nbest} hypotheses to keep")


def _scorer():
    global _SCORER
    if _SCORER is None:
        _SCORER = SentenceBleu()
    return _SCORER


def select_sentences(sentences, mode="seq-inter", remove_bpe="sentencepiece") -> List[Choice]:
    """One Choice per sentence (which must have hypotheses, and a reference for seq-inter)."""
    if mode in ("top1", "top-n"):
        return [Choice(s.id, s.first_line, s.source, s.hyps[0][1], 0, len(s.hyps), math.nan, math.nan)
                for s in sentences]
    if mode == "mbr":
        return [choices[0] for choices in select_n(sentences, mode, remove_bpe)]
    hyps = iter(remove_subwords_all([h for s in sentences for _, h in s.hyps], remove_bpe))
    refs = remove_subwords_all([s.reference for s in sentences], remove_bpe)
    results = _scorer().best_of_many([([next(hyps) for _ in s.hyps], ref) for s, ref in zip(sentences, refs)])
    return [Choice(s.id, s.first_line, s.source, s.hyps[best][1], best, len(s.hyps), bleu, first)
            for s, (best, bleu, first) in zip(sentences, results)]


def select_n(sentences, mode="seq-inter", remove_bpe="sentencepiece", keep=1, utility="chrf") -> List[List[Choice]]:
    """Up to ``keep`` Choices per sentence, in the selection's order (see the module docstring). With
    ``keep`` 1 the choices are :func:`select_sentences`' (the same code for top1 and seq-inter)."""
    check_keep(mode, keep, utility=utility)
    if keep == 1 and mode != "mbr":
        return [[choice] for choice in select_sentences(sentences, mode, remove_bpe)]
    if mode == "top-n":
        return [[Choice(s.id, s.first_line, s.source, s.hyps[r][1], r, len(s.hyps), math.nan, math.nan)
                 for r in range(min(keep, len(s.hyps)))] for s in sentences]
    hyps = iter(remove_subwords_all([h for s in sentences for _, h in s.hyps], remove_bpe))
    lists = [[next(hyps) for _ in s.hyps] for s in sentences]
    out = []
    if mode == "seq-inter":
        refs = remove_subwords_all([s.reference for s in sentences], remove_bpe)
        for s, scores in zip(sentences, _scorer().scores_of_many(list(zip(lists, refs)))):
            out.append([Choice(s.id, s.first_line, s.source, s.hyps[r][1], r, len(s.hyps), scores[r], scores[0])
                        for r in mbr.best_ranks(scores, keep)])
        return out
    sums = mbr.expected_utilities(lists, utility, _scorer() if utility == "bleu" else None)
    for s, total in zip(sentences, sums):
        others = max(len(s.hyps) - 1, 1)
        out.append([Choice(s.id, s.first_line, s.source, s.hyps[r][1], r, len(s.hyps), math.nan, math.nan,
                           total[r] / others) for r in mbr.best_ranks(total.tolist(), keep)])
    return out


def _select_piece(task):
    """Choices for one piece of a K-best file (run in a worker)."""
    path, first_line, data, mode, remove_bpe, keep, utility = task
    sentences = parse_kbest_rows(path, first_line, data)
    for s in sentences:
        check_sentence(path, s, need_reference=mode == "seq-inter", need_source=True)
    return select_n(sentences, mode, remove_bpe, keep, utility)


def _select_list(task):
    sentences, mode, remove_bpe, keep, utility = task
    return select_n(sentences, mode, remove_bpe, keep, utility)


def worker_context(start_method="forkserver"):
    """The multiprocessing context of the selection workers.

    "forkserver" (the default) forks workers from a fresh server process that has imported only this
    module: safe in any process, including one that holds torch's thread pools (a test run, or a script
    that trained a model first), at the cost of one import in the server per process. "fork" is fast
    and safe only in a process that has never run torch (seqkd-select's).
    """
    if start_method not in multiprocessing.get_all_start_methods():
        start_method = "spawn"
    context = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        context.set_forkserver_preload([__name__])
    return context


def _in_workers(work, tasks, workers, start_method="forkserver"):
    """``map(work, tasks)`` in order, in ``workers`` processes with a few tasks in flight (bounded memory)."""
    if workers <= 1:
        yield from map(work, tasks)
        return
    # A worker that dies makes the results raise BrokenProcessPool (multiprocessing.Pool would wait forever).
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=worker_context(start_method)) as pool:
        pending = collections.deque()
        try:
            for task in tasks:
                pending.append(pool.submit(work, task))
                if len(pending) > 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # stopped early: drop what has not started
                future.cancel()


def select_file(path, mode="seq-inter", remove_bpe="sentencepiece", workers=1, num_sentences=None,
                start_method="forkserver", keep=1, utility="chrf") -> Iterator[List[Choice]]:
    """The Choices of each sentence of a K-best file or fairseq-generate output (:func:`select_n`), in id order.

    Stops with KBestError (``FILE:LINE: what is wrong``) on a malformed input, a missing, repeated or
    out-of-order sentence, or fewer sentences than the K-best file's header (or ``num_sentences``) says.
    """
    if workers < 1:
        raise SeqKDError(f"--workers {workers}: must be at least 1")
    check_keep(mode, keep, utility=utility)
    if is_kbest_file(path):
        kbest = KBestFile(path)
        expected = kbest.sentences
        if num_sentences is not None and num_sentences != expected:
            raise KBestError(path, 1, f"the header says {expected} sentences, not {num_sentences}")
        size = PIECE_BYTES if workers > 1 else 8 * PIECE_BYTES
        batches = _in_workers(_select_piece, ((path, line, data, mode, remove_bpe, keep, utility)
                                              for line, data in kbest.pieces(size)), workers, start_method)
        end_line = lambda: kbest.lines  # noqa: E731
    else:
        sentences = check_complete(path, read_generate_output(path), need_reference=mode == "seq-inter",
                                   num_sentences=num_sentences)
        for s in sentences:
            check_sentence(path, s, need_source=True)
        expected, end_line = len(sentences), lambda: 0
        batches = _in_workers(_select_list, ((sentences[i:i + PIECE_SENTENCES], mode, remove_bpe, keep, utility)
                                             for i in range(0, len(sentences), PIECE_SENTENCES)), workers,
                              start_method)
    with contextlib.closing(batches):  # on an error, stop the workers now, not when the generator is collected
        choices = ((cs[0].id, cs[0].line, cs) for batch in batches for cs in batch)
        yield from in_id_order(path, choices, expected, end_line)


class Summary(NamedTuple):
    ranks: List[int]  # the rank of every sentence's first choice
    hypotheses: int
    mean_bleu: float  # mean sentence BLEU of the first choices (NaN unless seq-inter)
    mean_first_bleu: float  # the same for rank 0
    outputs: int = 0  # lines written (sentences x keep, fewer where a list is shorter)


def write_selection(path, out_src, out_tgt, mode="seq-inter", remove_bpe="sentencepiece", workers=1,
                    num_sentences=None, start_method="forkserver", keep=1, utility="chrf", out_ids=None) -> Summary:
    """Write the sources and the chosen hypotheses of ``path`` line by line, in id order, atomically:
    on an error nothing is left (not even a temporary file). With ``keep`` > 1, a sentence's outputs are
    on consecutive lines and ``out_ids`` (required then) gets each line's 0-based sentence id."""
    check_keep(mode, keep, utility=utility)
    if keep > 1 and not out_ids:
        raise SeqKDError(f"--keep {keep} writes several lines per sentence: give --out-ids FILE for their sentence ids")
    ranks, hyps, bleu, first_bleu, outputs = [], 0, 0.0, 0.0, 0
    with contextlib.ExitStack() as stack:
        src, tgt = stack.enter_context(atomic_open(out_src)), stack.enter_context(atomic_open(out_tgt))
        ids = stack.enter_context(atomic_open(out_ids)) if out_ids else None
        chosen = stack.enter_context(contextlib.closing(
            select_file(path, mode, remove_bpe, workers, num_sentences, start_method, keep, utility)))
        for choices in chosen:
            for choice in choices:
                src.write(choice.source + "\n")
                tgt.write(choice.target + "\n")
                if ids is not None:
                    ids.write(f"{choice.id}\n")
            outputs += len(choices)
            first = choices[0]
            ranks.append(first.rank)
            hyps += first.hypotheses
            bleu += first.bleu
            first_bleu += first.first_bleu
    n = max(len(ranks), 1)
    return Summary(ranks, hyps, bleu / n, first_bleu / n, outputs)
