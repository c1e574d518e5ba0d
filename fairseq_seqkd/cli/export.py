"""seqkd-export: a trained student as a self-contained directory that seqkd-translate runs without fairseq.

    seqkd-export CKPT --out DIR [--spm-model SRC.model] [--quantize int8] [--data DATA]

CKPT is a fairseq checkpoint of an LSTM (``luong_lstm_*`` or fairseq's ``lstm_*``; pruned ones too).
DIR gets the weights (a plain torch state dict), both dictionaries (JSON), the hyper-parameters and
length limits (manifest.json) and, with --spm-model, the source side's SentencePiece model, so that
seqkd-translate reads raw text (seqkd-prepare writes it as OUT/spm/SRC.model). The dictionaries come
from the checkpoint's data folder, or from --data. --quantize int8 stores the decoder's matrices as
int8 with per-row scales: faster on the CPU, not bit-identical to fairseq. DIR is written to a
temporary folder and renamed at the end; it must not exist (or be empty).
"""

from fairseq_seqkd.cli import argument_parser, run_script


def get_parser():
    from fairseq_seqkd.deploy.export import QUANTIZE

    p = argument_parser("seqkd-export", __doc__)
    p.add_argument("checkpoint", help="a fairseq checkpoint of an LSTM model")
    p.add_argument("--out", required=True, metavar="DIR", help="the model directory to write")
    p.add_argument("--spm-model", metavar="FILE", help="the source side's SentencePiece model (raw-text input)")
    p.add_argument("--quantize", choices=QUANTIZE, help="store the decoder's matrices as int8 (fast mode)")
    p.add_argument("--data", metavar="DIR", help="folder with dict.SRC.txt and dict.TGT.txt (default: the "
                                                 "checkpoint's data folder)")
    return p


def main(argv=None):
    from fairseq_seqkd.deploy.export import export

    args = get_parser().parse_args(argv)
    return export(args.checkpoint, args.out, spm_model=args.spm_model, quantize=args.quantize, data=args.data)


def cli_main(argv=None):
    run_script(main, argv)


if __name__ == "__main__":
    cli_main()
