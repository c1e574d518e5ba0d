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

import logging
import time

from fairseq_seqkd.cli import argument_parser, setup_logging
from fairseq_seqkd.kbest import KBestError, check_complete, read_kbest
from fairseq_seqkd.selection import MODES, REMOVE_BPE, choose_seq_inter
from fairseq_seqkd.textio import atomic_write_lines, fail

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
    p.add_argument("--workers", type=int, default=1, help="processes computing sentence BLEU")
    p.add_argument("--num-sentences", type=int, help="expected number of sentences (catches a missing tail)")
    return p


def select(args):
    start = time.time()
    table = read_kbest(args.input)
    sentences = check_complete(args.input, table, need_reference=args.mode == "seq-inter",
                               num_sentences=args.num_sentences)
    for s in sentences:
        if s.source is None:
            raise KBestError(args.input, s.first_line, f"sentence {s.id} has no source (S-) line")
    n_hyps = sum(len(s.hyps) for s in sentences)
    t0 = time.time()
    if args.mode == "top1":
        chosen = [0] * len(sentences)
    else:
        results = choose_seq_inter([([h for _, h in s.hyps], s.reference) for s in sentences],
                                   args.remove_bpe, args.workers)
        chosen = [best for best, _, _ in results]
        mean = lambda xs: sum(xs) / len(xs)
        logger.info("sentence BLEU: rank 1 %.2f, selected %.2f on average; %d of %d sentences changed",
                    mean([r[2] for r in results]), mean([r[1] for r in results]),
                    sum(1 for b in chosen if b), len(chosen))
    select_time = time.time() - t0
    atomic_write_lines(args.out_src, [s.source for s in sentences])
    atomic_write_lines(args.out_tgt, [s.hyps[best][1] for s, best in zip(sentences, chosen)])
    logger.info("%d sentences, %d hypotheses: selection %.2fs (%.0f hypotheses/s), %.2fs in all",
                len(sentences), n_hyps, select_time, n_hyps / max(select_time, 1e-9), time.time() - start)
    return chosen


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
