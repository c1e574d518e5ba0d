"""MBR-n selection cost: time per sentence of ``selection.select_n(..., "mbr")`` with chrF and BLEU utilities.

For K-best lists of K hypotheses (synthetic Bible-like lists, SentencePiece-like pieces, as bench_select.py)
we time the selection of ``--keep`` outputs per sentence the way seqkd-distill runs it (one call per batch of
``--batch`` sentences), beside top-n and Seq-Inter-n on the same lists, and a plain sacrebleu loop (the
oracle of tests/test_multi_output.py) on the first ``--check`` sentences, whose choices must be identical.
MBR costs K x (K - 1) utility evaluations per sentence, Seq-Inter K.

    python benchmarks/bench_mbr.py                         # N = 400 sentences, K = 8 and 35, one thread
    python benchmarks/bench_mbr.py --sentences 1000 --nbest 8 35 --threads 2
"""

import argparse
import os
import sys
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sentences", type=int, default=400)
    p.add_argument("--nbest", type=int, nargs="+", default=[8, 35])
    p.add_argument("--keep", type=int, default=4)
    p.add_argument("--batch", type=int, default=64, help="sentences per select_n call (seqkd-distill: one batch)")
    p.add_argument("--check", type=int, default=10, help="sentences also chosen by a plain sacrebleu loop")
    p.add_argument("--threads", type=int, default=1, help="fastchrf's (rayon's) threads; numpy's BLAS too")
    args = p.parse_args(argv)
    # before fastchrf starts its thread pool and numpy its BLAS (this script's own process only)
    os.environ["RAYON_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import sacrebleu

    from fairseq_seqkd import selection
    from fairseq_seqkd.subwords import remove_subwords

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_select import synthetic

    metrics = {"chrf": sacrebleu.sentence_chrf, "bleu": sacrebleu.sentence_bleu}
    print(f"{args.sentences} sentences, keep {args.keep}, batches of {args.batch}, {args.threads} thread(s)")
    print(f"{'K':>3}  {'selection':<14} {'ms/sentence':>11}  {'sacrebleu loop':>14}  {'ratio':>6}")
    for k in args.nbest:
        sentences = synthetic(args.sentences, k)
        words = sum(len(h.split()) for s in sentences for _, h in s.hyps) / (len(sentences) * k)
        runs = [("top-n", None), ("seq-inter", None), ("mbr", "chrf"), ("mbr", "bleu")]
        for mode, utility in runs:
            start = time.perf_counter()
            chosen = []
            for i in range(0, len(sentences), args.batch):
                chosen += selection.select_n(sentences[i:i + args.batch], mode, "sentencepiece", args.keep,
                                             utility or "chrf")
            ms = 1e3 * (time.perf_counter() - start) / len(sentences)
            loop = ""
            if mode == "mbr" and args.check:
                start = time.perf_counter()
                for s, choices in zip(sentences[:args.check], chosen):
                    texts = [remove_subwords(h, "sentencepiece") for _, h in s.hyps]
                    sums = [sum(metrics[utility](texts[i], [texts[j]]).score for j in range(k) if j != i)
                            for i in range(k)]
                    expected = sorted(range(k), key=lambda i: (-sums[i], i))[:args.keep]
                    assert [c.rank for c in choices] == expected, (s.id, expected, [c.rank for c in choices])
                loop_ms = 1e3 * (time.perf_counter() - start) / args.check
                loop = f"{loop_ms:14.2f}  {loop_ms / ms:5.1f}x"
            name = f"{mode} {utility}" if utility else mode
            print(f"{k:3d}  {name:<14} {ms:11.3f}  {loop}", flush=True)
        print(f"     (K = {k}: {words:.1f} pieces per hypothesis on average)")


if __name__ == "__main__":
    main()
