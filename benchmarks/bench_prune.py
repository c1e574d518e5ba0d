"""Does pruning make decoding faster on a CPU?

1. Beam search with a pruned model kept dense (zeros in place) vs the
   unpruned model: same shapes, same work; expected equal.
2. The matrix products that dominate LSTM decoding (LSTM gates, output
   projection), dense ``torch.mm`` vs ``torch.sparse.mm`` on a CSR matrix
   at 80% and 90% sparsity, for a batch of 1 (greedy, batch size 1) and 40
   (beam 5 x 8 sentences).

Runs alternate A B A B; medians and ratios are printed.

    python benchmarks/bench_prune.py [--arch luong_lstm_2x256] [--vocab 8000]
"""

import argparse
import statistics
import time

import torch
from fairseq.sequence_generator import SequenceGenerator

from bench_decoding import _Task, build
from fairseq_seqkd import pruning
from fairseq_seqkd.models.luong_lstm import LUONG_SHAPES


def median_time(fn, repeats):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="luong_lstm_2x256", choices=sorted(LUONG_SHAPES))
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--sentences", type=int, default=96)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    task = _Task(args.vocab)
    layers, units = LUONG_SHAPES[args.arch]
    dense = build(args.arch, task)
    pruned = build(args.arch, task)
    pruned.load_state_dict(dense.state_dict())
    masks = pruning.magnitude_masks(dict(pruned.named_parameters()), 0.8)
    pruning.apply_masks(pruned.named_parameters(), masks)
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, args.vocab, (8, 20), generator=g)
    src[:, -1] = task.source_dictionary.eos()
    sample = {"net_input": {"src_tokens": src, "src_lengths": torch.full((8,), 20)}}
    print(f"{args.arch}, vocab {args.vocab}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for beam in (1, 5):
        times = {"unpruned": [], "pruned 80% (dense)": []}
        for _ in range(args.repeats):
            for name, model in (("unpruned", dense), ("pruned 80% (dense)", pruned)):
                gen = SequenceGenerator([model], task.target_dictionary, beam_size=beam, max_len_b=30,
                                        min_len=30)  # fixed length: both decode the same number of steps
                with torch.no_grad():
                    t0 = time.perf_counter()
                    for _ in range(args.sentences // 8):
                        gen.generate([model], sample)
                    times[name].append(time.perf_counter() - t0)
        m = {k: statistics.median(v) for k, v in times.items()}
        print(f"  beam {beam}: unpruned {m['unpruned']:.2f}s, pruned-dense {m['pruned 80% (dense)']:.2f}s, "
              f"ratio {m['pruned 80% (dense)'] / m['unpruned']:.3f}")
    shapes = {"LSTM layer-1 gates (4H x 2H)": (4 * units, 2 * units),
              "output projection (V x H)": (args.vocab, units)}
    for sparsity in (0.8, 0.9):
        for label, (rows, cols) in shapes.items():
            w = torch.randn(rows, cols)
            w = w * (torch.rand(rows, cols) >= sparsity)
            csr = w.to_sparse_csr()
            for batch in (1, 40):
                x = torch.randn(cols, batch)
                d = median_time(lambda: [torch.mm(w, x) for _ in range(200)], args.repeats)
                s = median_time(lambda: [torch.sparse.mm(csr, x) for _ in range(200)], args.repeats)
                print(f"  {int(sparsity * 100)}% zeros, {label}, batch {batch}: dense {d * 5:.2f} ms, "
                      f"CSR {s * 5:.2f} ms per product, CSR/dense {s / d:.2f}")


if __name__ == "__main__":
    main()
