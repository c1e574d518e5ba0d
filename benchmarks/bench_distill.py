"""Teacher distillation throughput: seqkd-distill vs fairseq-generate, and with shards.

Same data, teacher, beam and batch size. Each tool runs in a fresh process
with the same thread count and is timed by this benchmark's own clock
(``time.perf_counter`` around the tool's main function, inside that
process): model and data loading are included for both, the interpreter's
start-up and imports are not. Sentences are counted from the outputs (not
parsed from log lines, which round to 0.1 s and print thousands separators).
Shards: N processes at once, each with threads/N intra-op threads, timed the
same way; then the merge, and the merged output compared with the unsharded one.

    python benchmarks/bench_distill.py DATA --path TEACHER.pt [--subset valid] [--beam 5] [--shards 2] [--repeats 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

USER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fairseq_seqkd")

# Runs one tool in this fresh process and prints {"seconds", "sentences"} as the last line of stdout.
TIMED = r"""
import contextlib, io, json, sys, time
tool, argv = sys.argv[1], sys.argv[2:]
if tool == "fairseq-generate":
    from fairseq import options
    from fairseq_cli import generate
    args = options.parse_args_and_arch(options.get_generation_parser(), argv)
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        generate.main(args)
    seconds = time.perf_counter() - start
    sentences = len({line.split("\t")[0] for line in out.getvalue().splitlines() if line.startswith("H-")})
else:
    from fairseq_seqkd.cli import distill
    start = time.perf_counter()
    distill.main(argv)
    seconds = time.perf_counter() - start
    sentences = None
print(json.dumps({"seconds": seconds, "sentences": sentences}))
"""


def start(tool, argv, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, "-c", TIMED, tool, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(proc):
    out, err = proc.communicate()
    if proc.returncode:
        sys.exit(f"failed:\n{err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def lines(path):
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("--path", required=True)
    p.add_argument("--subset", default="valid")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=3, help="runs of each (alternating); medians are reported")
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp()
    common = ["--beam", str(args.beam), "--batch-size", str(args.batch_size), "--cpu"]
    generate = [args.data, "--user-dir", USER_DIR, "--task", "seqkd_translation", "--path", args.path,
                "--gen-subset", args.subset, "--num-workers", "0", *common]
    distill = [args.data, "--path", args.path, "--subset", args.subset, *common]
    runs = {"fairseq-generate": [], "seqkd-distill": [], "shards": []}
    for r in range(args.repeats):
        g = finish(start("fairseq-generate", generate, args.threads))
        runs["fairseq-generate"].append(g["seconds"])
        one = os.path.join(tmp, f"one{r}")
        runs["seqkd-distill"].append(finish(start("seqkd-distill", [*distill, "--out-prefix", one],
                                                  args.threads))["seconds"])
        outputs = sorted(f for f in os.listdir(tmp) if f.startswith(f"one{r}."))  # ONE.SRC, ONE.TGT
        n = lines(os.path.join(tmp, outputs[0]))
        assert g["sentences"] == n, (g["sentences"], n)
        threads = max(1, args.threads // args.shards)
        prefix = os.path.join(tmp, f"sharded{r}")
        t0 = time.perf_counter()
        procs = [start("seqkd-distill", [*distill, "--out-prefix", prefix, "--num-shards", str(args.shards),
                                         "--shard-id", str(i)], threads) for i in range(args.shards)]
        slowest = max(finish(proc)["seconds"] for proc in procs)
        merge = finish(start("seqkd-distill", ["--merge", "--out-prefix", prefix, "--num-shards", str(args.shards)], 1))
        wall = time.perf_counter() - t0
        runs["shards"].append((slowest, merge["seconds"], wall))
        for name in outputs:
            ext = name.rsplit(".", 1)[1]
            with open(f"{prefix}.{ext}", encoding="utf-8") as a, open(f"{one}.{ext}", encoding="utf-8") as b:
                assert a.read() == b.read(), "the merged shards differ from the unsharded output"
    gen, dis = statistics.median(runs["fairseq-generate"]), statistics.median(runs["seqkd-distill"])
    slowest = statistics.median(s for s, _, _ in runs["shards"])
    merge = statistics.median(m for _, m, _ in runs["shards"])
    wall = statistics.median(w for _, _, w in runs["shards"])
    print(f"{args.subset}: {n} sentences, beam {args.beam}, batch {args.batch_size}, {args.threads} threads, "
          f"medians of {args.repeats} runs (model and data loading included, interpreter start-up excluded)")
    print(f"  fairseq-generate: {n / gen:.1f} sentences/s ({gen:.2f}s; runs "
          f"{', '.join(f'{s:.2f}' for s in runs['fairseq-generate'])})")
    print(f"  seqkd-distill   : {n / dis:.1f} sentences/s ({dis:.2f}s; runs "
          f"{', '.join(f'{s:.2f}' for s in runs['seqkd-distill'])}); time ratio to fairseq-generate {dis / gen:.2f}")
    print(f"  seqkd-distill, {args.shards} shards x {threads} thread(s) at once: {n / slowest:.1f} sentences/s "
          f"(slowest shard {slowest:.2f}s), {n / (slowest + merge):.1f} with the merge ({merge:.2f}s); whole "
          f"{wall:.1f}s with start-up; merged output identical to the unsharded one")


if __name__ == "__main__":
    main()
