"""seqkd-export: a trained student as a self-contained directory that seqkd-translate runs without fairseq.

    seqkd-export CKPT --out DIR [--spm-model SRC.model] [--quantize int8] [--data DATA]

The checkpoint's architecture chooses the kind of directory. An LSTM (``luong_lstm_*`` or fairseq's
``lstm_*``; pruned ones too) becomes our own format, decoded with torch: the weights (a plain torch state
dict), both dictionaries (JSON), the hyper-parameters and length limits (manifest.json). A Transformer
(fairseq's ``transformer*``, ``bart``, ``multilingual_transformer``: what CTranslate2's converter takes)
becomes a CTranslate2 model, decoded with ctranslate2 and sentencepiece only (no torch): CTranslate2's
model.bin, config.json and vocabularies, and our manifest.json (languages, length limits, the sha256 of
every file). With --spm-model, the source side's SentencePiece model goes with it, so that seqkd-translate
reads raw text (seqkd-prepare writes it as OUT/spm/SRC.model). The dictionaries come from the checkpoint's
data folder, or from --data. --quantize int8: an LSTM's decoder matrices as int8 with per-row scales, a
Transformer's weights as CTranslate2's int8; faster on the CPU, not bit-identical to fairseq. DIR is written
to a temporary folder and renamed at the end; it must not exist (or be empty, or an earlier export).
"""

from fairseq_seqkd.cli import argument_parser, run_script


def get_parser():
    from fairseq_seqkd.deploy.export import QUANTIZE

    p = argument_parser("seqkd-export", __doc__)
    p.add_argument("checkpoint", help="a fairseq checkpoint of an LSTM or Transformer model")
    p.add_argument("--out", required=True, metavar="DIR", help="the model directory to write")
    p.add_argument("--spm-model", metavar="FILE", help="the source side's SentencePiece model (raw-text input)")
    p.add_argument("--quantize", choices=QUANTIZE, help="store the weights as int8 (an LSTM's decoder matrices, a "
                                                        "Transformer's CTranslate2 weights): the fast mode")
    p.add_argument("--data", metavar="DIR", help="folder with dict.SRC.txt and dict.TGT.txt (default: the "
                                                 "checkpoint's data folder)")
    return p


def main(argv=None):
    from fairseq_seqkd.deploy import export_model

    args = get_parser().parse_args(argv)
    return export_model(args.checkpoint, args.out, spm_model=args.spm_model, quantize=args.quantize, data=args.data)


def cli_main(argv=None):
    run_script(main, argv)


if __name__ == "__main__":
    cli_main()
