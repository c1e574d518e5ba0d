"""Exported students on real data: BLEU of the float and int8 exports, agreement with fairseq, speed.

For each checkpoint: export it (float32 and --quantize int8), translate DATA's raw test sources
with both (SentencePiece model DATA/spm/SRC.model), score against DATA/raw/test.TGT with
sacrebleu (length limit 1.2 x source + 10, as the recipes' distillation), and count
the sentences on which the float export's output equals fairseq's SequenceGenerator's (same
batches). Speed: fairseq's SequenceGenerator and our two decoders on the
same batches (input order, longest first inside a batch, as fairseq wants them), rounds
alternating A B C, median. Usage:

    python benchmarks/bench_deploy.py DATA CKPT [CKPT ...] [--beam 1] [--batch-sizes 1 16] [--repeats 3]

DATA is a seqkd-prepare output folder (bin/, raw/, spm/); the checkpoints' dictionaries must be
DATA/bin's.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import sacrebleu
import torch
from fairseq.sequence_generator import SequenceGenerator

from fairseq_seqkd.deploy.export import export, load_lstm
from fairseq_seqkd.deploy.translator import Translator


def fairseq_decode(model, generator, pad, batch):
    """Best hypotheses of fairseq's SequenceGenerator for a batch of id lists (in the batch's order)."""
    order = sorted(range(len(batch)), key=lambda i: -len(batch[i]))
    longest = len(batch[order[0]])
    src = torch.full((len(batch), longest), pad, dtype=torch.long)
    for row, i in enumerate(order):  # left-padded, as fairseq's data loader does it
        src[row, longest - len(batch[i]):] = torch.tensor(batch[i])
    lengths = torch.tensor([len(batch[i]) for i in order])
    hyps = generator.generate([model], {"net_input": {"src_tokens": src, "src_lengths": lengths}})
    out = [None] * len(batch)
    for row, i in enumerate(order):
        out[i] = hyps[row][0]["tokens"][:-1].tolist()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--beam", type=int, default=1)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--speed-sentences", type=int, default=100, help="test sentences timed (all are scored)")
    p.add_argument("--cpu-clock", action="store_true",
                   help="time by this process's CPU time (1 thread, on a host whose cores other jobs use)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with open(os.path.join(args.data, "prepare.json")) as f:
        config = json.load(f)["config"]
    src_lang, tgt_lang = config["src_lang"], config["tgt_lang"]
    raw = os.path.join(args.data, "raw")
    sources = open(os.path.join(raw, f"test.{src_lang}"), encoding="utf-8").read().splitlines()
    refs = open(os.path.join(raw, f"test.{tgt_lang}"), encoding="utf-8").read().splitlines()
    spm = os.path.join(args.data, "spm", f"{src_lang}.model")
    words = sum(len(s.split()) for s in sources[:args.speed_sentences])
    print(f"{len(sources)} test sentences ({args.speed_sentences} timed, {words} source words), beam {args.beam}, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    print("| checkpoint | BLEU float32 | BLEU int8 | int8 - float32 | float32 = fairseq | batch | words/s fairseq "
          "| float32 | int8 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for ckpt in args.checkpoints:
        with tempfile.TemporaryDirectory() as tmp:
            ours = {}
            for q in (None, "int8"):
                folder = os.path.join(tmp, q or "fp32")
                export(ckpt, folder, spm_model=spm, quantize=q, data=os.path.join(args.data, "bin"))
                ours[q or "fp32"] = Translator.load(folder, beam=args.beam, max_len_a=1.2, max_len_b=10)
            lstm = load_lstm(ckpt, os.path.join(args.data, "bin"))
            model, src_dict, tgt_dict = lstm.model, lstm.source_dict, lstm.target_dict
            ids = [ours["fp32"].source_ids(s) for s in sources]
            texts, bleu = {}, {}
            for name, t in ours.items():
                hyps = []
                for start in range(0, len(ids), 16):
                    hyps += t.translate_ids(ids[start:start + 16])
                texts[name] = [t.text(h) for h in hyps]
                bleu[name] = sacrebleu.corpus_bleu(texts[name], [refs]).score
            for bs in args.batch_sizes:
                # fairseq's max_len_a applies to a batch's longest source: compare on max_len_b only
                generator = SequenceGenerator([model], tgt_dict, beam_size=args.beam, max_len_a=0, max_len_b=60)
                for t in ours.values():
                    t.max_len_a, t.max_len_b = 0, 60
                timed = ids[:args.speed_sentences]
                batches = [timed[i:i + bs] for i in range(0, len(timed), bs)]
                same = 0
                for batch in batches:
                    theirs = fairseq_decode(model, generator, src_dict.pad(), batch)
                    same += sum(h.tokens == o for h, o in zip(ours["fp32"].translate_ids(batch), theirs))
                runs = {"fairseq": lambda: [fairseq_decode(model, generator, src_dict.pad(), b) for b in batches],
                        "fp32": lambda: [ours["fp32"].translate_ids(b) for b in batches],
                        "int8": lambda: [ours["int8"].translate_ids(b) for b in batches]}
                times = {k: [] for k in runs}
                clock = time.process_time if args.cpu_clock else time.perf_counter
                for _ in range(args.repeats):
                    for k, fn in runs.items():
                        start = clock()
                        with torch.no_grad():
                            fn()
                        times[k].append(clock() - start)
                rate = {k: words / statistics.median(v) for k, v in times.items()}
                print(f"| {ckpt} | {bleu['fp32']:.2f} | {bleu['int8']:.2f} | {bleu['int8'] - bleu['fp32']:+.2f} | "
                      f"{same}/{len(timed)} | {bs} | {rate['fairseq']:.0f} | {rate['fp32']:.0f} "
                      f"({rate['fp32'] / rate['fairseq']:.2f}x) | {rate['int8']:.0f} "
                      f"({rate['int8'] / rate['fairseq']:.2f}x) |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
