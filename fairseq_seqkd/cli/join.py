"""seqkd-join: one training corpus from several distilled parts, each sentence's lines kept together by an ids file.

    seqkd-join --part PREFIX [--part PREFIX ...] --out-prefix OUT --source-lang S --target-lang T
               [--binarize DIR --data DATA]

Each part is PREFIX.S and PREFIX.T (subword text, line-aligned: what seqkd-distill --out-prefix or
seqkd-select write) and, when a source has several lines (--keep N), PREFIX.ids. OUT.S and OUT.T get the
parts' lines in the order given, OUT.ids each line's sentence id, unique across the parts (part k's ids follow
the last of part k-1). The usual order: the distilled training set, then the distilled source-only text
(seqkd-distill DATA --subset mono, docs/distillation.md), then anything further.

``--binarize DIR --data DATA`` also binarizes OUT into DIR as its training split with DATA's dictionaries,
DATA's valid/test sets alongside and OUT.ids as DIR/train.ids, which ``fairseq-train --task
seqkd_translation --one-target-per-epoch`` and seqkd-topk read.
"""

from fairseq_seqkd.cli import argument_parser, run_script
from fairseq_seqkd.errors import SeqKDError


def get_parser():
    p = argument_parser("seqkd-join", __doc__)
    p.add_argument("--part", action="append", default=[], metavar="PREFIX", required=True,
                   help="a distilled part: PREFIX.SRC, PREFIX.TGT (and PREFIX.ids); repeat, in order")
    p.add_argument("--out-prefix", required=True, help="write OUT.SRC, OUT.TGT and OUT.ids")
    p.add_argument("--source-lang", required=True, help="the source language's file suffix, e.g. es")
    p.add_argument("--target-lang", required=True, help="the target language's file suffix, e.g. en")
    p.add_argument("--binarize", metavar="DIR", help="also binarize the joined corpus into DIR (needs --data)")
    p.add_argument("--data", help="the binarized data folder whose dictionaries and valid/test sets DIR gets")
    return p


def main(argv=None):
    from fairseq_seqkd.corpus_parts import join_parts

    args = get_parser().parse_args(argv)
    if bool(args.binarize) != bool(args.data):
        raise SeqKDError("--binarize DIR and --data DATA go together")
    report = join_parts(args.part, args.out_prefix, args.source_lang, args.target_lang)
    if args.binarize:
        from fairseq_seqkd.binarize import binarize_like_data

        prefix = args.out_prefix
        binarize_like_data(args.binarize, args.data, f"{prefix}.{args.source_lang}", f"{prefix}.{args.target_lang}",
                           args.source_lang, args.target_lang, ids_file=f"{prefix}.ids")
    return report


def cli_main(argv=None):
    run_script(main, argv)


if __name__ == "__main__":
    cli_main()
