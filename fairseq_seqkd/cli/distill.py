"""seqkd-distill: the teacher's beam search over a whole split gives a new training corpus (Seq-KD, §3.2).

    seqkd-distill DATA --path TEACHER.pt --out-prefix OUT [--subset train] [--beam 5]
                  [--max-tokens N | --batch-size N] [--nbest K --select seq-inter [--write-kbest]]
                  [--nbest K --select top-n|mbr|seq-inter --keep N [--mbr-utility chrf|bleu]]
                  [--num-shards N --shard-id I] [--resume] [--binarize DIR]
                  [--engine fairseq|ctranslate2|seqkd [--engine-quantize Q]]
    seqkd-distill --merge --out-prefix OUT --num-shards N [--binarize DIR]

Writes OUT.SRC and OUT.TGT (SRC/TGT: the data's language codes) in the
original corpus order: line i is sentence i of the split, its source as
binarized and the teacher's output, both as subword text, ready for
``fairseq-preprocess --srcdict DATA/dict.SRC.txt --tgtdict DATA/dict.TGT.txt
--trainpref OUT`` (or use ``--binarize DIR``, which also copies DATA's
valid/test sets and dictionaries into DIR). With ``--nbest K --select
seq-inter`` the kept output is the one of the K with the highest sentence BLEU
to the reference (Seq-Inter, §3.3); ``--write-kbest`` also writes OUT.kbest.

``--keep N`` keeps N of the K outputs per sentence (docs/multi_output.md):
``--select top-n`` the teacher's N best, ``mbr`` the N with the highest
expected utility (``--mbr-utility chrf`` or ``bleu``, uniform weights) against
the other K - 1 hypotheses, ``seq-inter`` the N closest to the reference. A
sentence's N pairs are on consecutive lines, and OUT.ids gets each line's
0-based sentence id (``--binarize DIR`` copies it to DIR/train.ids, which
``fairseq-train --task seqkd_translation --one-target-per-epoch`` reads).

Batches are fixed once for the whole split (fairseq's length-sorted batching),
shard I of N decodes batches I, I+N, I+2N, ... and every finished batch is
appended to OUT.shard-I-of-N.jsonl. So a killed run continues with
``--resume`` and a sharded run merged with ``--merge`` give exactly the
output of one uninterrupted run: each sentence is decoded in the same batch.

Rerunning: killed anywhere (decoding, merge or --binarize), the same command
with --resume ends with the same bytes as an uninterrupted run; the journals
are removed only once the merge and --binarize have both succeeded, so a
rerun after a failed merge or binarization does not decode again. A second
run on a journal that another run is using stops at once (an flock, freed
when its process dies). The journal records the teacher checkpoint's sha256:
a resume after the checkpoint changed, and a merge of shards decoded with
different versions of it, are refused.
--stop-after-batches N stops with exit status 3 (output not complete yet).

--engine picks who decodes: fairseq (the default and the reference),
ctranslate2 (a Transformer teacher, converted once into TEACHER.pt.ct2-SHA)
or seqkd (an LSTM teacher); the engine and its --engine-quantize are output
options, so a resume or merge with another engine is refused.
"""

from fairseq_seqkd.cli import argument_parser, run_script
from fairseq_seqkd.distill import DistillOptions, distill
from fairseq_seqkd.engines import ENGINES, QUANTIZE
from fairseq_seqkd.mbr import UTILITIES
from fairseq_seqkd.selection import MODES
from fairseq_seqkd.subwords import REMOVE_BPE


def get_parser():
    p = argument_parser("seqkd-distill", __doc__)
    p.add_argument("data", nargs="?", help="fairseq binary data folder (as for fairseq-train)")
    p.add_argument("--path", help="the teacher's fairseq checkpoint")
    p.add_argument("--out-prefix", required=True, help="output prefix: OUT.SRC, OUT.TGT, OUT.kbest")
    p.add_argument("--subset", default="train", help="the split to translate")
    p.add_argument("--source-lang", help="source language (default: inferred from DATA)")
    p.add_argument("--target-lang", help="target language (default: inferred from DATA)")
    p.add_argument("--beam", type=int, default=5, help="beam size (the paper: 5)")
    p.add_argument("--nbest", type=int, default=1, help="hypotheses kept per sentence (Seq-Inter: 35)")
    p.add_argument("--select", choices=MODES, default="top1",
                   help="top1: the teacher's best (Seq-KD); seq-inter: highest sentence BLEU to the reference; "
                        "top-n: the teacher's --keep best; mbr: the --keep with the highest expected utility against "
                        "the other hypotheses (MBR-n)")
    p.add_argument("--keep", type=int, default=1,
                   help="outputs kept per sentence (1 <= N <= --nbest; not with top1): N lines per sentence, "
                        "and OUT.ids")
    p.add_argument("--mbr-utility", choices=UTILITIES, default="chrf",
                   help="--select mbr: sacrebleu's sentence chrF (default) or sentence BLEU between hypotheses")
    p.add_argument("--remove-bpe", choices=REMOVE_BPE, default="sentencepiece",
                   help="subword removal before sentence BLEU or chrF (seq-inter, mbr)")
    p.add_argument("--write-kbest", action="store_true", help="also write all --nbest hypotheses to OUT.kbest")
    p.add_argument("--max-tokens", type=int, default=None, help="batch size in tokens: sentences x the longest max(source, target) length, </s> included (fairseq's count); a longer sentence gets a batch of its own")
    p.add_argument("--batch-size", type=int, default=None, help="batch size in sentences")
    p.add_argument("--max-len-a", type=float, default=0, help="output length limit: a * source length + b")
    p.add_argument("--max-len-b", type=int, default=200, help="output length limit: a * source length + b")
    p.add_argument("--lenpen", type=float, default=1.0, help="length penalty, as fairseq-generate")
    p.add_argument("--num-shards", type=int, default=1, help="split the work into this many shards")
    p.add_argument("--shard-id", type=int, default=0, help="the shard this process decodes (0-based)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its .jsonl file")
    p.add_argument("--merge", action="store_true", help="merge the finished shards into OUT.SRC/OUT.TGT")
    p.add_argument("--stop-after-batches", type=int, default=0,
                   help="stop after this many batches, with exit status 3 (continue later with --resume), e.g. "
                        "for time-limited jobs")
    p.add_argument("--binarize", metavar="DIR", help="also binarize the output into DIR with DATA's dictionaries")
    p.add_argument("--cpu", action="store_true", help="decode on the CPU even if a GPU is available")
    p.add_argument("--fp16", action="store_true", help="decode in half precision (GPU; the fairseq engine)")
    p.add_argument("--engine", choices=ENGINES, default="fairseq",
                   help="who runs the teacher's beam search: fairseq's SequenceGenerator; ctranslate2 "
                        "(Transformer teachers, pip install ctranslate2); seqkd, our LSTM decoder "
                        "(LSTM teachers). See docs/engines.md")
    p.add_argument("--engine-quantize", choices=sorted({q for qs in QUANTIZE.values() for q in qs}),
                   help="the engine's precision: ctranslate2 float32 (default), int8, int8_float16 or float16 "
                        "(GPU); seqkd float32 (default) or int8 (CPU)")
    p.add_argument("--engine-cache", metavar="DIR",
                   help="where --engine ctranslate2 keeps converted teachers (default: beside the checkpoint)")
    return p


def main(argv=None):
    """Parse the arguments and run :func:`fairseq_seqkd.distill.distill`."""
    return distill(DistillOptions(**vars(get_parser().parse_args(argv))))


def cli_main(argv=None):
    run_script(main, argv)


if __name__ == "__main__":
    cli_main()
