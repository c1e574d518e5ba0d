"""Incremental decoding speed: luong_lstm_* vs fairseq's own ``lstm`` of the same size.

Both models get the same random weights, sources and beam search
(fairseq's SequenceGenerator); runs alternate A B A B and we report the
median time of each and the ratio. Usage:

    python benchmarks/bench_decoding.py [--arch luong_lstm_2x256] [--beam 5] [--sentences 200]
"""

import argparse
import statistics
import sys
import time

import torch
from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY
from fairseq.sequence_generator import SequenceGenerator

import fairseq_seqkd  # noqa: F401  (registers the architectures)
from fairseq_seqkd.models.luong_lstm import LUONG_SHAPES


class _Task:
    def __init__(self, vocab):
        self.source_dictionary = self.target_dictionary = Dictionary()
        for i in range(vocab - 4):
            self.target_dictionary.add_symbol(f"w{i}")


def build(arch, task, **overrides):
    args = argparse.Namespace(arch=arch, criterion="cross_entropy", **overrides)
    ARCH_CONFIG_REGISTRY[arch](args)
    return ARCH_MODEL_REGISTRY[arch].build_model(args, task).eval()


def decode_all(model, task, batches, beam):
    generator = SequenceGenerator([model], task.target_dictionary, beam_size=beam, max_len_b=60)
    start = time.perf_counter()
    with torch.no_grad():
        for src, lengths in batches:
            generator.generate([model], {"net_input": {"src_tokens": src, "src_lengths": lengths}})
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="luong_lstm_2x256", choices=sorted(LUONG_SHAPES))
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--sentences", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    layers, units = LUONG_SHAPES[args.arch]
    task = _Task(args.vocab)
    torch.manual_seed(0)
    ours = build(args.arch, task)
    stock = build("lstm", task, encoder_layers=layers, decoder_layers=layers, encoder_embed_dim=units,
                  decoder_embed_dim=units, encoder_hidden_size=units, decoder_hidden_size=units,
                  decoder_out_embed_dim=units, dropout=0.3)
    stock.load_state_dict(ours.state_dict())
    gen = torch.Generator().manual_seed(1)
    batches = []
    for start in range(0, args.sentences, args.batch_size):
        n = min(args.batch_size, args.sentences - start)
        lengths = torch.randint(10, 31, (n,), generator=gen).sort(descending=True).values
        src = torch.full((n, int(lengths[0])), task.source_dictionary.pad())
        for i, length in enumerate(lengths.tolist()):  # left-padded, as fairseq batches them
            src[i, -length:] = torch.randint(4, args.vocab, (length,), generator=gen)
            src[i, -1] = task.source_dictionary.eos()
        batches.append((src, lengths))
    times = {"ours": [], "stock": []}
    decode_all(ours, task, batches[:1], args.beam)  # warm-up
    for _ in range(args.repeats):
        times["ours"].append(decode_all(ours, task, batches, args.beam))
        times["stock"].append(decode_all(stock, task, batches, args.beam))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.arch} vs fairseq lstm (same size), beam {args.beam}, {args.sentences} sentences, "
          f"batch {args.batch_size}, vocab {args.vocab}, {args.threads} threads, torch {torch.__version__}")
    for k in ("ours", "stock"):
        print(f"  {k:5s}: median {med[k]:.2f}s ({args.sentences / med[k]:.1f} sentences/s), runs "
              + ", ".join(f"{t:.2f}" for t in times[k]))
    print(f"  ratio ours/stock (time): {med['ours'] / med['stock']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
