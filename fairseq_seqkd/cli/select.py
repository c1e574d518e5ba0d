"""seqkd-select: one hypothesis per sentence from K-best lists (Seq-Inter or plain Seq-KD).

    seqkd-select INPUT --out-src FILE --out-tgt FILE [--mode seq-inter|top1]
                 [--remove-bpe sentencepiece|subword_nmt|none] [--workers N]

INPUT is fairseq-generate's output (run with --nbest K, without --post-process
so that hypotheses stay subwords) or a K-best file written by
``--task seqkd_translation --kbest-out`` or ``seqkd-distill --write-kbest``.
For every sentence, in id order, OUT-SRC gets the source as given and OUT-TGT
the chosen hypothesis exactly as generated: with ``seq-inter`` (default) the
one with the highest sentence BLEU to the reference (T- line), as
``sacrebleu.sentence_bleu(hyp, [ref])`` with sacrebleu's defaults after
``--remove-bpe`` on both; ties go to the better-ranked one. With ``top1``
the best-scoring hypothesis (plain Seq-KD).
"""

import contextlib
import logging
import time

from fairseq_seqkd.cli import argument_parser, setup_logging
from fairseq_seqkd.kbest import KBestError
from fairseq_seqkd.selection import MODES, REMOVE_BPE, choices
from fairseq_seqkd.textio import atomic_open, fail

logger = logging.getLogger("seqkd-select")


def get_parser():
    p = argument_parser("seqkd-select", __doc__)
    p.add_argument("input", help="fairseq-generate output or a K-best file")
    p.add_argument("--out-src", required=True, help="where to write the sources, one per line, in id order")
    p.add_argument("--out-tgt", required=True, help="where to write the chosen hypotheses, line-aligned")
    p.add_argument("--mode", choices=MODES, default="seq-inter",
                   help="seq-inter: highest sentence BLEU to the reference; top1: the teacher's best (Seq-KD)")
    p.add_argument("--remove-bpe", choices=REMOVE_BPE, default="sentencepiece",
                   help="how to turn subwords into words before computing BLEU (as fairseq's --post-process)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes that parse and score (a K-best file is streamed to them in pieces)")
    p.add_argument("--num-sentences", type=int, help="expected number of sentences (catches a missing tail)")
    return p


def select(args):
    """Write the outputs (atomically: nothing is left on an error); return the chosen ranks."""
    start = time.time()
    ranks, hyps, bleu, first_bleu = [], 0, 0.0, 0.0
    with atomic_open(args.out_src) as src, atomic_open(args.out_tgt) as tgt, \
            contextlib.closing(choices(args.input, args.mode, args.remove_bpe, args.workers, args.num_sentences)) as chosen:
        for choice in chosen:
            src.write(choice.source + "\n")
            tgt.write(choice.target + "\n")
            ranks.append(choice.rank)
            hyps += choice.hypotheses
            bleu += choice.bleu
            first_bleu += choice.first_bleu
    seconds = time.time() - start
    if args.mode == "seq-inter":
        logger.info("sentence BLEU: rank 0 %.2f, selected %.2f on average; %d of %d sentences changed",
                    first_bleu / max(len(ranks), 1), bleu / max(len(ranks), 1), sum(1 for r in ranks if r), len(ranks))
    logger.info("%d sentences, %d hypotheses in %.2fs (%.0f hypotheses/s) with %d process(es)",
                len(ranks), hyps, seconds, hyps / max(seconds, 1e-9), args.workers)
    return ranks


def cli_main(argv=None):
    setup_logging()
    args = get_parser().parse_args(argv)
    if args.workers < 1:
        fail(f"--workers {args.workers}: must be at least 1")
    try:
        select(args)
    except KBestError as e:
        fail(str(e))


if __name__ == "__main__":
    cli_main()
