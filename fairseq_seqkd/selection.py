"""Choosing one hypothesis per sentence from K-best lists: Seq-KD (top 1) or Seq-Inter (§3.3).

Seq-Inter keeps the hypothesis with the highest sentence BLEU to the gold
target (sacrebleu's ``sentence_bleu`` with its defaults, computed exactly by
:mod:`fairseq_seqkd.bleu`), both sides decoded with ``remove_bpe`` first;
ties go to the better-ranked hypothesis.

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

from fairseq_seqkd.bleu import SentenceBleu
from fairseq_seqkd.kbest import (KBestError, KBestFile, check_complete, check_sentence, is_kbest_file,
                                 parse_kbest_rows, read_generate_output)

MODES = ("seq-inter", "top1")
REMOVE_BPE = ("sentencepiece", "subword_nmt", "none")
PIECE_BYTES = 1 << 19  # K-best file pieces handed to a worker
PIECE_SENTENCES = 2048  # the same for fairseq-generate output


class Choice(NamedTuple):
    id: int
    line: int  # where the sentence starts in the input
    source: str
    target: str  # the chosen hypothesis, as generated
    rank: int  # its rank in the K-best list (0: the teacher's best)
    hypotheses: int
    bleu: float  # its sentence BLEU (NaN with --mode top1)
    first_bleu: float  # the sentence BLEU of rank 0 (NaN with --mode top1)


def decode(text: str, remove_bpe: str) -> str:
    """Subword text to words, exactly as fairseq's ``--post-process`` does it (data_utils.post_process)."""
    if remove_bpe == "sentencepiece":  # the common case, inlined: it runs for every hypothesis
        return text.replace(" ", "").replace("\u2581", " ").strip()
    if remove_bpe == "none":
        return text
    from fairseq.data.data_utils import post_process

    return post_process(text, remove_bpe)


def decode_all(texts, remove_bpe: str) -> List[str]:
    """``[decode(t, remove_bpe) for t in texts]`` up to the whitespace at either end (which BLEU ignores)."""
    if remove_bpe == "sentencepiece" and texts:  # one pass over all of them (texts are lines: no newlines)
        return "\n".join(texts).replace(" ", "").replace("\u2581", " ").split("\n")
    return [decode(t, remove_bpe) for t in texts]


_SCORER = None  # one per process: it caches the tokens of the words it has seen


def choose(sentences, mode="seq-inter", remove_bpe="sentencepiece") -> List[Choice]:
    """One Choice per sentence (which must have hypotheses, and a reference for seq-inter)."""
    if mode == "top1":
        return [Choice(s.id, s.first_line, s.source, s.hyps[0][1], 0, len(s.hyps), math.nan, math.nan)
                for s in sentences]
    global _SCORER
    if _SCORER is None:
        _SCORER = SentenceBleu()
    hyps = iter(decode_all([h for s in sentences for _, h in s.hyps], remove_bpe))
    refs = decode_all([s.reference for s in sentences], remove_bpe)
    results = _SCORER.choose_many([([next(hyps) for _ in s.hyps], ref) for s, ref in zip(sentences, refs)])
    return [Choice(s.id, s.first_line, s.source, s.hyps[best][1], best, len(s.hyps), bleu, first)
            for s, (best, bleu, first) in zip(sentences, results)]


def _choose_piece(task):
    """Choices for one piece of a K-best file (run in a worker)."""
    path, first_line, data, mode, remove_bpe = task
    sentences = parse_kbest_rows(path, first_line, data)
    for s in sentences:
        check_sentence(path, s, need_reference=mode == "seq-inter", need_source=True)
    return choose(sentences, mode, remove_bpe)


def _choose_sentences(task):
    sentences, mode, remove_bpe = task
    return choose(sentences, mode, remove_bpe)


def _in_workers(work, tasks, workers):
    """``map(work, tasks)`` in order, in ``workers`` processes with a few tasks in flight (bounded memory)."""
    if workers <= 1:
        yield from map(work, tasks)
        return
    # A worker that dies makes the results raise BrokenProcessPool (multiprocessing.Pool would wait forever).
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
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


def choices(path, mode="seq-inter", remove_bpe="sentencepiece", workers=1, num_sentences=None) -> Iterator[Choice]:
    """One Choice per sentence of a K-best file or fairseq-generate output, in id order.

    Stops with KBestError (``FILE:LINE: what is wrong``) on a malformed input, a missing, repeated or
    out-of-order sentence, or fewer sentences than the K-best file's header (or ``num_sentences``) says.
    """
    if is_kbest_file(path):
        kbest = KBestFile(path)
        expected = kbest.sentences
        if num_sentences is not None and num_sentences != expected:
            raise KBestError(path, 1, f"the header says {expected} sentences, not {num_sentences}")
        size = PIECE_BYTES if workers > 1 else 8 * PIECE_BYTES
        batches = _in_workers(_choose_piece, ((path, line, data, mode, remove_bpe)
                                              for line, data in kbest.pieces(size)), workers)
    else:
        kbest = None
        sentences = check_complete(path, read_generate_output(path), need_reference=mode == "seq-inter",
                                   num_sentences=num_sentences)
        for s in sentences:
            check_sentence(path, s, need_source=True)
        expected = len(sentences)
        batches = _in_workers(_choose_sentences, ((sentences[i:i + PIECE_SENTENCES], mode, remove_bpe)
                                                  for i in range(0, len(sentences), PIECE_SENTENCES)), workers)
    with contextlib.closing(batches):  # on an error, stop the workers now, not when the generator is collected
        yield from _in_order(path, batches, expected, kbest)


def _in_order(path, batches, expected, kbest):
    """The choices of the batches, checked to be sentences 0, 1, ..., expected - 1."""
    count = 0
    for batch in batches:
        for choice in batch:
            if choice.id < count:
                raise KBestError(path, choice.line, f"sentence {choice.id} out of order or repeated "
                                                    f"(after sentence {count - 1})")
            if choice.id > count:
                raise KBestError(path, choice.line, f"sentence id(s) {count} to {choice.id - 1} missing")
            if count >= expected:
                raise KBestError(path, choice.line, f"sentence {choice.id} beyond the {expected} of the header")
            count += 1
            yield choice
    if count != expected:
        raise KBestError(path, kbest.lines, f"truncated: {count} sentences, the header says {expected}")
