"""seqkd-select: hypotheses per sentence from K-best lists (Seq-Inter or plain Seq-KD; top-n, MBR-n, Seq-Inter-n).

    seqkd-select INPUT --out-src FILE --out-tgt FILE [--mode seq-inter|top1|top-n|mbr]
                 [--keep N --out-ids FILE] [--mbr-utility chrf|bleu]
                 [--remove-bpe sentencepiece|subword_nmt|none] [--workers N]
                 [--binarize DIR --data DATA [--source-lang S --target-lang T]]

INPUT is fairseq-generate's output (run with --nbest K, without --post-process
so that hypotheses stay subwords) or a K-best file written by
``--task seqkd_translation --kbest-out`` or ``seqkd-distill --write-kbest``.
For every sentence, in id order, OUT-SRC gets the source as given and OUT-TGT
the chosen hypothesis exactly as generated: with ``seq-inter`` (default) the
one with the highest sentence BLEU to the reference (T- line), as
``sacrebleu.sentence_bleu(hyp, [ref])`` with sacrebleu's defaults after
``--remove-bpe`` on both; ties go to the better-ranked one. With ``top1``
the best-scoring hypothesis (plain Seq-KD).

``--keep N`` keeps N hypotheses per sentence on consecutive lines (see
docs/multi_output.md): ``top-n`` the teacher's N best, ``mbr`` the N with the
highest expected utility (``--mbr-utility`` chrF or BLEU, uniform weights)
against the other hypotheses, ``seq-inter`` the N closest to the reference;
OUT-IDS gets each line's 0-based sentence id.

``--binarize DIR --data DATA`` also binarizes OUT-SRC/OUT-TGT into DIR as its
training split, with DATA's dictionaries and DATA's valid/test sets alongside
(OUT-IDS as DIR/train.ids, which ``fairseq-train --task seqkd_translation
--one-target-per-epoch`` reads): what ``seqkd-distill --binarize`` does.
"""

import functools
import logging
import time

from fairseq_seqkd import binarize, mbr, selection
from fairseq_seqkd.cli import argument_parser, run_script
from fairseq_seqkd.subwords import REMOVE_BPE

logger = logging.getLogger("seqkd-select")


def get_parser():
    p = argument_parser("seqkd-select", __doc__)
    p.add_argument("input", help="fairseq-generate output or a K-best file")
    p.add_argument("--out-src", required=True, help="where to write the sources, one per line, in id order")
    p.add_argument("--out-tgt", required=True, help="where to write the chosen hypotheses, line-aligned")
    p.add_argument("--mode", choices=selection.MODES, default="seq-inter",
                   help="seq-inter: highest sentence BLEU to the reference; top1: the teacher's best (Seq-KD); "
                        "top-n: the teacher's --keep best; mbr: the --keep with the highest expected utility against "
                        "the other hypotheses")
    p.add_argument("--keep", type=int, default=1, help="hypotheses kept per sentence (not with top1)")
    p.add_argument("--mbr-utility", choices=mbr.UTILITIES, default="chrf",
                   help="--mode mbr: the utility, sacrebleu's sentence chrF (default) or sentence BLEU")
    p.add_argument("--out-ids", help="where to write each output line's 0-based sentence id (needed with --keep > 1)")
    p.add_argument("--remove-bpe", choices=REMOVE_BPE, default="sentencepiece",
                   help="how to turn subwords into words before computing BLEU (as fairseq's --post-process)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes that parse and score (a K-best file is streamed to them in pieces)")
    p.add_argument("--num-sentences", type=int, help="expected number of sentences (catches a missing tail)")
    p.add_argument("--binarize", metavar="DIR", help="also binarize the selection into DIR (needs --data)")
    p.add_argument("--data", help="--binarize: the binarized data whose dictionaries and valid/test sets DIR gets")
    p.add_argument("--source-lang", help="--binarize: the source language (default: inferred from DATA)")
    p.add_argument("--target-lang", help="--binarize: the target language (default: inferred from DATA)")
    return p


def main(argv=None, start_method="forkserver"):
    """Parse the arguments and write the selection; return its :class:`selection.Summary`."""
    parser = get_parser()
    args = parser.parse_args(argv)
    if bool(args.binarize) != bool(args.data):
        parser.error("--binarize DIR and --data DATA go together")
    start = time.time()
    summary = selection.write_selection(args.input, args.out_src, args.out_tgt, args.mode, args.remove_bpe,
                                        args.workers, args.num_sentences, start_method, args.keep,
                                        args.mbr_utility, args.out_ids)
    seconds = time.time() - start
    ranks = summary.ranks
    if args.keep > 1:
        logger.info("%d outputs for %d sentences (--keep %d)", summary.outputs, len(ranks), args.keep)
    if args.mode == "seq-inter":
        logger.info("sentence BLEU: rank 0 %.2f, selected %.2f on average; %d of %d sentences changed",
                    summary.mean_first_bleu, summary.mean_bleu, sum(1 for r in ranks if r), len(ranks))
    logger.info("%d sentences, %d hypotheses in %.2fs (%.0f hypotheses/s) with %d process(es)",
                len(ranks), summary.hypotheses, seconds, summary.hypotheses / max(seconds, 1e-9), args.workers)
    if args.binarize:
        binarize.binarize_like_data(args.binarize, args.data, args.out_src, args.out_tgt, args.source_lang,
                                    args.target_lang, args.out_ids)
    return summary


def cli_main(argv=None):
    # seqkd-select's process never runs torch (it holds no torch thread pools): forking it is safe and fast.
    run_script(functools.partial(main, start_method="fork"), argv)


if __name__ == "__main__":
    cli_main()
