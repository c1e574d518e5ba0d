"""seqkd-prepare: parallel text -> split, SentencePiece subwords, fairseq binary data.

One corpus (``--src-file``/``--tgt-file``, split here with a fixed seed) or a
corpus already split (add ``--valid-*`` and ``--test-*`` files). Writes::

    OUT/raw/{train,valid,test}.{SRC,TGT}    plain text (references for BLEU)
    OUT/raw/{valid,test}.ref1.TGT ...        extra references (--extra-ref), same split
    OUT/spm/{SRC,TGT}.model                  one SentencePiece model per side
    OUT/spm/joint.model                      with --joint-vocab: one model of both sides
                                             (SRC.model and TGT.model are copies of it)
    OUT/tok/{train,valid,test}.{SRC,TGT}     subword text (what fairseq sees)
    OUT/bin/                                 fairseq-preprocess output (the DATA argument); with
                                             --joint-vocab dict.SRC.txt = dict.TGT.txt
    OUT/{raw,tok}/mono.SRC, OUT/bin/mono.*   with --mono-src: source-only sentences (no target file)
    OUT/prepare.json                         options and counts, written last

Rerunning with the same options does nothing; with other options it stops
rather than overwrite a corpus that models may have been trained on.

--joint-vocab: one SentencePiece model and one fairseq dictionary of both
sides, so that a Transformer can share them (fairseq-train --share-all-embeddings).
"""

import os

from fairseq_seqkd.cli import argument_parser, run_script
from fairseq_seqkd.prepare import PrepareOptions, prepare


def get_parser():
    p = argument_parser("seqkd-prepare", __doc__)
    p.add_argument("--src-file", required=True, help="source side, one sentence per line (train, or the whole corpus)")
    p.add_argument("--tgt-file", required=True, help="target side, line-aligned with --src-file")
    p.add_argument("--src-lang", required=True, help="source language code used in file names, e.g. es")
    p.add_argument("--tgt-lang", required=True, help="target language code used in file names, e.g. en")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--valid-src", help="a separate validation source file (then the corpus is not split)")
    p.add_argument("--valid-tgt", help="a separate validation target file")
    p.add_argument("--test-src", help="a separate test source file")
    p.add_argument("--test-tgt", help="a separate test target file")
    p.add_argument("--extra-ref", action="append", default=[],
                   help="another reference translation, line-aligned with --tgt-file (repeatable); "
                        "kept for the valid and test splits as raw/{valid,test}.refN.TGT")
    p.add_argument("--ids", help="an id per line of --src-file (e.g. verse references), split alongside")
    p.add_argument("--valid-size", type=int, default=1000, help="sentences held out for validation")
    p.add_argument("--test-size", type=int, default=1000, help="sentences held out for test")
    p.add_argument("--seed", type=int, default=1, help="seed of the split and of --train-size sampling")
    p.add_argument("--max-words", type=int, default=0,
                   help="keep only pairs with at most this many words on both sides (0: all), before splitting")
    p.add_argument("--train-size", type=int, default=0, help="keep at most this many training pairs (0: all)")
    p.add_argument("--vocab-size", type=int, default=8000,
                   help="SentencePiece vocabulary size of each side (with --joint-vocab: of the joint vocabulary)")
    p.add_argument("--src-vocab-size", type=int, help="source vocabulary size (default: --vocab-size)")
    p.add_argument("--tgt-vocab-size", type=int, help="target vocabulary size (default: --vocab-size)")
    p.add_argument("--joint-vocab", action="store_true",
                   help="one SentencePiece model (spm/joint.model, copied as spm/SRC.model and spm/TGT.model) "
                        "trained on both sides' training text, and one fairseq dictionary of both sides "
                        "(bin/dict.SRC.txt and bin/dict.TGT.txt identical), as fairseq-train "
                        "--share-all-embeddings requires; --vocab-size is then the joint size")
    p.add_argument("--mono-src", metavar="FILE",
                   help="source-language sentences without references, one per line, for the teacher to translate "
                        "(seqkd-distill --subset mono): cleaned as the source side, deduplicated against the "
                        "train, valid and test sources and within itself (the first kept, in the file's order), "
                        "binarized as the split 'mono' with the source dictionary and no target file; "
                        "prepare.json says how many lines were removed and why")
    p.add_argument("--spm-model-type", default="unigram", choices=["unigram", "bpe", "char", "word"],
                   help="SentencePiece model type")
    p.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                   help="processes for SentencePiece and fairseq-preprocess")
    return p


def main(argv=None):
    """Parse the arguments and run :func:`fairseq_seqkd.prepare.prepare`."""
    return prepare(PrepareOptions(**vars(get_parser().parse_args(argv))))


def cli_main(argv=None):
    run_script(main, argv)


if __name__ == "__main__":
    cli_main()
