"""What seqkd-prepare --mono-src holds per line: the selection's peak memory at N and 16N lines.

For each size, in a fresh process: a file of that many random 10-word sentences (a tenth of them repeats of
earlier lines, 1% of them sentences of a 1,000-sentence "parallel" set), then ``mono.check_mono`` (read,
hash, deduplicate) and ``mono.write_kept`` (read again, write the kept lines). Measured: the process's peak
resident memory (``ru_maxrss``) against the same process's resident memory before the selection (Python,
numpy and the module imported), and the seconds.

    python benchmarks/mono_memory.py [--sizes 100000 1600000] [--workdir /tmp/seqkd-mono-memory]
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def rss_mb():
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS")).split()[1]) / 1024


def write_corpus(path, n, known):
    rng = random.Random(n)
    with open(path, "w") as f:
        lines = []
        for i in range(n):
            r = rng.random()
            if r < 0.1 and lines:
                line = lines[rng.randrange(len(lines))]
            elif r < 0.11:
                line = known[rng.randrange(len(known))]
            else:
                line = " ".join(f"w{rng.randrange(50000)}" for _ in range(10))
            if len(lines) < 10000:
                lines.append(line)
            f.write(line + "\n")


def measure(workdir, n):
    from fairseq_seqkd import mono

    known = [" ".join(f"k{i}_{j}" for j in range(10)) for i in range(1000)]
    path = os.path.join(workdir, f"mono{n}.txt")
    if not os.path.exists(path):
        write_corpus(path, n, known)
    before = rss_mb()
    start = time.perf_counter()
    codes = mono.check_mono(path, known, 0)
    kept = mono.write_kept(path, codes, os.path.join(workdir, f"kept{n}.txt"))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"lines": n, "kept": kept, "removed": mono.counts(codes)["removed"], "seconds": round(seconds, 1),
            "rss_before_mb": round(before), "peak_rss_mb": round(peak)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100000, 1600000])
    p.add_argument("--workdir", default="/tmp/seqkd-mono-memory")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure this size in this process
    args = p.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    if args.one:
        print(json.dumps(measure(args.workdir, args.one)))
        return
    rows = []
    for n in sorted(args.sizes):
        proc = subprocess.run([sys.executable, __file__, "--workdir", args.workdir, "--one", str(n)],
                              capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stderr[-3000:])
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print("| lines | kept | seconds | RSS before (MB) | peak RSS (MB) | peak − before (MB) | bytes per line |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        grown = r["peak_rss_mb"] - r["rss_before_mb"]
        print(f"| {r['lines']:,} | {r['kept']:,} | {r['seconds']} | {r['rss_before_mb']} | {r['peak_rss_mb']} | "
              f"{grown} | {grown * 2**20 / r['lines']:.0f} |")


if __name__ == "__main__":
    main()
