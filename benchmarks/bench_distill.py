"""Teacher distillation throughput: seqkd-distill vs fairseq-generate, and with shards.

Same data, teacher, beam and batch size. Each tool reports its own decoding
rate (fairseq-generate's "Translated N sentences ... in Xs", seqkd-distill's
"decoded N sentences in Xs"), which leaves out start-up and model loading for
both; whole-process wall times are printed too. Shards: N processes at once,
each with threads/N intra-op threads, then the merge.

    python benchmarks/bench_distill.py DATA --path TEACHER.pt [--subset valid] [--beam 5] [--shards 2]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

USER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fairseq_seqkd")


def run(cmd, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{cmd[0]} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout + proc.stderr, wall


def rate(pattern, text):
    m = re.search(pattern, text)
    return int(m.group(1)), float(m.group(2))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("--path", required=True)
    p.add_argument("--subset", default="valid")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args(argv)
    bin_dir = os.path.dirname(sys.executable)
    tmp = tempfile.mkdtemp()
    common = ["--beam", str(args.beam), "--batch-size", str(args.batch_size), "--cpu"]
    out, wall_g = run([os.path.join(bin_dir, "fairseq-generate"), args.data, "--user-dir", USER_DIR,
                       "--task", "seqkd_translation", "--path", args.path, "--gen-subset", args.subset,
                       *common], args.threads)
    n, secs_g = rate(r"Translated (\d+) sentences \([^)]*\) in ([0-9.]+)s", out)
    distill = [os.path.join(bin_dir, "seqkd-distill"), args.data, "--path", args.path, "--subset", args.subset,
               *common]
    out, wall_d = run([*distill, "--out-prefix", os.path.join(tmp, "one")], args.threads)
    n_d, secs_d = rate(r"decoded (\d+) sentences in ([0-9.]+)s", out)
    assert n_d == n
    print(f"{args.subset}: {n} sentences, beam {args.beam}, batch {args.batch_size}, {args.threads} threads")
    print(f"  fairseq-generate: {n / secs_g:.1f} sentences/s decoding ({wall_g:.1f}s whole process)")
    print(f"  seqkd-distill   : {n / secs_d:.1f} sentences/s decoding ({wall_d:.1f}s whole process); "
          f"ratio to fairseq-generate {secs_g / secs_d:.2f}")
    threads = max(1, args.threads // args.shards)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    prefix = os.path.join(tmp, "sharded")
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*distill, "--out-prefix", prefix, "--num-shards", str(args.shards), "--shard-id",
                               str(i)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for i in range(args.shards)]
    outs = [proc.communicate()[0] for proc in procs]
    decode_secs = max(rate(r"decoded (\d+) sentences in ([0-9.]+)s", o)[1] for o in outs)
    _, merge_wall = run([os.path.join(bin_dir, "seqkd-distill"), "--merge", "--out-prefix", prefix,
                         "--num-shards", str(args.shards)], 1)
    wall_s = time.perf_counter() - t0
    same = all(open(f"{prefix}.{ext}").read() == open(os.path.join(tmp, f"one.{ext}")).read()
               for ext in [f.rsplit(".", 1)[1] for f in os.listdir(tmp) if f.startswith("one.")])
    print(f"  seqkd-distill, {args.shards} shards x {threads} thread(s): {n / decode_secs:.1f} sentences/s "
          f"decoding (slowest shard), {wall_s:.1f}s whole (merge {merge_wall:.1f}s); "
          f"{'identical to' if same else 'DIFFERENT from'} the unsharded output")


if __name__ == "__main__":
    main()
