"""seqkd-eval: the numbers of the paper's Table 1 for one model, as JSON.

    seqkd-eval DATA --path CKPT --json OUT.json [--subset test] [--beam 5] [--lenpen 1] [--fp16]
               [--engine fairseq|ctranslate2|seqkd [--engine-quantize Q]] [--remove-bpe sentencepiece] [--refs FILE] [--extra-refs FILE ...] [--name NAME]
               [--speed-sentences N] [--speed-repeats 3] [--speed-min-seconds 1] [--speed-threads 1]

Keys: ``bleu_greedy`` and ``bleu_beam`` (sacrebleu corpus BLEU of the
detokenized output, as sacrebleu on fairseq-generate's hypotheses; with
``--extra-refs`` also ``*_multiref``), ``ppl`` (perplexity of the gold
targets, as fairseq's validation ppl), ``p_yhat`` (mean over sentences of the
probability the model gives its own greedy output, EOS included), ``params``,
``params_nonzero``, ``src_words_per_sec_greedy`` / ``_beam`` (source words per
second at batch size 1, the paper's setting: the median of ``--speed-repeats``
measurements, each of at least ``--speed-sentences`` sentences and
``--speed-min-seconds`` seconds after ``--speed-warmup`` untimed sentences,
with ``--speed-threads`` CPU threads; ``_runs``: every measurement,
``_spread``: (max - min) / median; ``_batched`` keys: the batched BLEU runs),
the sacrebleu signature, device and thread count, and ``engine`` /
``engine_quantize``: who decoded (the speed figures are that engine's).
"""

import os

from fairseq_seqkd.cli import argument_parser, run_script
from fairseq_seqkd.engines import ENGINES, QUANTIZE
from fairseq_seqkd.evaluation import EvalOptions, SpeedOptions, evaluate, write_result
from fairseq_seqkd.subwords import REMOVE_BPE


def get_parser():
    p = argument_parser("seqkd-eval", __doc__)
    p.add_argument("data", help="fairseq binary data folder")
    p.add_argument("--path", required=True, help="the model's checkpoint")
    p.add_argument("--json", required=True, help="where to write the results")
    p.add_argument("--name", help="the model's name in reports (default: the JSON file's name)")
    p.add_argument("--subset", default="test")
    p.add_argument("--source-lang")
    p.add_argument("--target-lang")
    p.add_argument("--beam", type=int, default=5, help="beam size of the beam-search BLEU (the paper: 5)")
    p.add_argument("--lenpen", type=float, default=1.0, help="length penalty, as fairseq-generate")
    p.add_argument("--remove-bpe", choices=REMOVE_BPE, default="sentencepiece",
                   help="subwords to words (as fairseq's --post-process)")
    p.add_argument("--refs", help="reference text, one line per sentence (default: the subset's targets, "
                                  "detokenized with --remove-bpe)")
    p.add_argument("--extra-refs", nargs="*", default=[], help="more references for multi-reference BLEU")
    p.add_argument("--max-tokens", type=int, default=4000, help="batch size of the BLEU runs in tokens (fairseq's count; a longer sentence gets a batch of its own)")
    p.add_argument("--max-len-a", type=float, default=0)
    p.add_argument("--max-len-b", type=int, default=200)
    p.add_argument("--hyps-out", help="write the detokenized greedy and beam outputs to this prefix (.greedy/.beam)")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--fp16", action="store_true", help="decode in half precision (GPU; the fairseq engine)")
    p.add_argument("--engine", choices=ENGINES, default="fairseq",
                   help="who decodes the BLEU and speed runs, as seqkd-distill --engine (docs/engines.md)")
    p.add_argument("--engine-quantize", choices=sorted({q for qs in QUANTIZE.values() for q in qs}),
                   help="the engine's precision, as seqkd-distill --engine-quantize")
    p.add_argument("--engine-cache", metavar="DIR", help="where --engine ctranslate2 keeps converted models")
    speed = SpeedOptions()
    p.add_argument("--speed-sentences", type=int, default=speed.sentences,
                   help="time batch-size-1 decoding on the first N sentences (0: all); fewer are decoded again")
    p.add_argument("--speed-repeats", type=int, default=speed.repeats,
                   help="measurements of the speed; the JSON has their median and spread")
    p.add_argument("--speed-warmup", type=int, default=speed.warmup, help="sentences decoded untimed first")
    p.add_argument("--speed-min-seconds", type=float, default=speed.min_seconds,
                   help="each measurement lasts at least this long")
    p.add_argument("--speed-threads", type=int, default=speed.threads, help="CPU threads while timing")
    return p


def main(argv=None):
    """Parse the arguments, evaluate (:func:`fairseq_seqkd.evaluation.evaluate`) and write the JSON."""
    args = vars(get_parser().parse_args(argv))
    json_path = args.pop("json")
    speed = SpeedOptions(**{k[len("speed_"):]: args.pop(k) for k in list(args) if k.startswith("speed_")})
    options = EvalOptions(**args, speed=speed)
    options.name = options.name or os.path.splitext(os.path.basename(json_path))[0]
    result = evaluate(options)
    write_result(json_path, result)
    return result


def cli_main(argv=None):
    run_script(main, argv)


if __name__ == "__main__":
    cli_main()
