"""MBR-n selection cost: time per sentence of ``selection.select_n(..., "mbr")`` with chrF and BLEU utilities.

For K-best lists of K hypotheses (synthetic Bible-like lists, SentencePiece-like pieces, as bench_select.py)
we time the selection of ``--keep`` outputs per sentence the way seqkd-distill runs it (one call per batch of
``--batch`` sentences), beside top-n and Seq-Inter-n on the same lists, and a plain sacrebleu loop (the
oracle of tests/test_multi_output.py) on the first ``--check`` sentences, whose choices must be identical.
MBR costs K x (K - 1) utility evaluations per sentence, Seq-Inter K.

    python benchmarks/bench_mbr.py                         # N = 400 sentences, K = 8 and 35, one thread
    python benchmarks/bench_mbr.py --sentences 1000 --nbest 8 35 --threads 2

With ``--data DATA --path TEACHER``, the cost of MBR against the decoding that makes its K-best lists (issue
20, item 4), on a real teacher: for each K, ``seqkd-distill --beam K --nbest K --write-kbest`` over
``--subset`` (one thread), then ``seqkd-select --mode mbr --keep N`` on the OUT.kbest it wrote, with chrF and
with BLEU (and ``--mode top-n`` for reference), one thread each (``RAYON_NUM_THREADS=1``). Both are run as
the recipes run them (separate processes); the times compared are each script's own: seqkd-distill's
decoding loop and seqkd-select's selection (reading the K-best file, scoring, writing), as they log them,
without the start-up and model loading around them (also printed, as "process").

    python benchmarks/bench_mbr.py --data DATA --path TEACHER.pt --out DIR [--subset valid] [--nbest 8 35]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time


def run_logged(argv, env, pattern):
    """Run a console script; return (its process's wall seconds, the groups of ``pattern`` in its log)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    match = re.search(pattern, proc.stdout + proc.stderr)
    if not match:
        sys.exit(f"{argv[0]}: no line matching {pattern!r} in its log")
    return wall, match.groups()


def teacher_cost(args):
    """MBR selection time against the teacher's decoding time for the same K-best lists."""
    bin_dir = os.path.dirname(os.path.abspath(sys.executable))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RAYON_NUM_THREADS="1",
               PYTHONWARNINGS="ignore")
    os.makedirs(args.out, exist_ok=True)
    print(f"teacher {args.path}, data {args.data}, subset {args.subset}, keep {args.keep}, engine {args.engine}, "
          f"one thread; outputs in {args.out}")
    print(f"{'K':>3}  {'step':<24} {'seconds':>8}  {'ms/sentence':>11}  {'vs decoding':>11}  {'process':>8}")
    for k in args.nbest:
        folder = tempfile.mkdtemp(prefix=f"K{k}-", dir=args.out)
        prefix = os.path.join(folder, args.subset)
        distill = [os.path.join(bin_dir, "seqkd-distill"), args.data, "--path", args.path, "--subset", args.subset,
                   "--out-prefix", prefix, "--beam", str(k), "--nbest", str(k), "--write-kbest", "--cpu",
                   "--engine", args.engine, "--max-tokens", str(args.max_tokens), "--max-len-a", str(args.max_len_a),
                   "--max-len-b", str(args.max_len_b)]
        wall, (n, seconds) = run_logged(distill, env, r"decoded (\d+) sentences in ([\d.]+)s")
        n, decoding = int(n), float(seconds)
        print(f"{k:3d}  {'decoding (' + args.engine + ')':<24} {decoding:8.2f}  {1e3 * decoding / n:11.2f}  "
              f"{'':>11}  {wall:8.1f}", flush=True)
        for mode, utility in (("top-n", None), ("mbr", "chrf"), ("mbr", "bleu")):
            name = f"{mode}-{utility}" if utility else mode
            out = os.path.join(folder, name)
            select = [os.path.join(bin_dir, "seqkd-select"), prefix + ".kbest", "--mode", mode, "--keep",
                      str(args.keep), "--out-src", out + ".src", "--out-tgt", out + ".tgt", "--out-ids", out + ".ids",
                      *(["--mbr-utility", utility] if utility else [])]
            wall, (m, seconds) = run_logged(select, env, r"(\d+) sentences, \d+ hypotheses in ([\d.]+)s")
            assert int(m) == n, (m, n)
            seconds = float(seconds)
            label = f"seqkd-select {mode}" + (f" {utility}" if utility else "")
            print(f"{k:3d}  {label:<24} {seconds:8.2f}  {1e3 * seconds / n:11.2f}  {100 * seconds / decoding:10.1f}%  "
                  f"{wall:8.1f}", flush=True)
        print(f"     ({n} sentences)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sentences", type=int, default=400)
    p.add_argument("--nbest", type=int, nargs="+", default=[8, 35])
    p.add_argument("--keep", type=int, default=4)
    p.add_argument("--batch", type=int, default=64, help="sentences per select_n call (seqkd-distill: one batch)")
    p.add_argument("--check", type=int, default=10, help="sentences also chosen by a plain sacrebleu loop")
    p.add_argument("--threads", type=int, default=1, help="fastchrf's (rayon's) threads; numpy's BLAS too")
    t = p.add_argument_group("a real teacher (--data and --path): MBR against the decoding of its K-best lists")
    t.add_argument("--data", help="binarized data folder")
    t.add_argument("--path", help="the teacher's checkpoint")
    t.add_argument("--subset", default="valid", help="the split to decode")
    t.add_argument("--out", help="where the K-best lists and selections go (a new folder per K inside)")
    t.add_argument("--engine", default="seqkd", help="seqkd-distill --engine (the recipes' default for an LSTM "
                                                   "teacher on the CPU: seqkd)")
    t.add_argument("--max-tokens", type=int, default=6000)
    t.add_argument("--max-len-a", type=float, default=1.2)
    t.add_argument("--max-len-b", type=int, default=10)
    args = p.parse_args(argv)
    if args.data or args.path:
        if not (args.data and args.path and args.out):
            p.error("--data, --path and --out go together")
        return teacher_cost(args)
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
