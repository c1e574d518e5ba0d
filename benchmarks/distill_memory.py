"""What seqkd-distill holds per sentence: its memory at N and 16N toy sentences, and whether Python objects grow.

For each size, in a fresh process (one thread): a toy corpus of that many training pairs (tests/toydata.py,
binarized with the dictionaries of the smallest size, so one toy teacher serves all), decoded by
``seqkd-distill`` as a library call (beam 5, ``--nbest 5 --write-kbest``, ``--max-len-a 1.0 --max-len-b 5``,
``--max-tokens 6000``, the fairseq engine), shard 0 of 1, then merged. Measured: the peak of RssAnon
(anonymous resident memory, /proc/self/status, sampled every 20 ms) and VmHWM over the whole run, RssAnon
after the decoding, and Python's allocated blocks (``sys.getallocatedblocks()`` after ``gc.collect()``)
after the decoding: if Python objects were kept per sentence, the blocks would grow with N.

    python benchmarks/distill_memory.py [--sizes 5000 80000] [--workdir /tmp/seqkd-distill-memory]
"""

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def status():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f if line.startswith(("RssAnon", "VmHWM")))
    return {k: int(v.split()[0]) // 1024 for k, v in fields.items()}


def prepare(workdir, sizes):
    sys.path.insert(0, os.path.join(REPO, "tests"))
    import toydata

    first = os.path.join(workdir, f"bin{sizes[0]}")
    for n in sizes:
        text, data = os.path.join(workdir, f"text{n}"), os.path.join(workdir, f"bin{n}")
        if os.path.isdir(data):
            continue
        toydata.write_toy_corpus(text, sizes=(("train", n), ("valid", 100), ("test", 100)))
        extra = [] if n == sizes[0] else ["--srcdict", f"{first}/dict.src.txt", "--tgtdict", f"{first}/dict.tgt.txt"]
        toydata.preprocess(text, data, extra=extra)
    model = os.path.join(workdir, "teacher")
    if not os.path.isfile(os.path.join(model, "checkpoint_last.pt")):
        toydata.train(first, model, max_epoch=1)
    return os.path.join(model, "checkpoint_last.pt")


def measure(workdir, n, teacher):
    """One size, in this process (a fresh one per size)."""
    from fairseq_seqkd.distill import DistillOptions, generate_shard, merge_shards

    peak = {"RssAnon": 0, "VmHWM": 0}

    def sample():
        while True:
            now = status()
            for k in peak:
                peak[k] = max(peak[k], now[k])
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    out = os.path.join(workdir, f"out{n}", "train.kd")
    shutil.rmtree(os.path.dirname(out), ignore_errors=True)
    options = DistillOptions(data=os.path.join(workdir, f"bin{n}"), path=teacher, out_prefix=out, cpu=True, beam=5,
                             nbest=5, write_kbest=True, max_len_a=1.0, max_len_b=5, max_tokens=6000).checked()
    start = time.perf_counter()
    generate_shard(options).close()
    gc.collect()
    after = {"rss_anon_after_decoding_mb": status()["RssAnon"], "python_blocks_after_decoding": sys.getallocatedblocks()}
    merge_shards(out, 1)
    time.sleep(0.05)
    return {"sentences": n, "seconds": round(time.perf_counter() - start, 1), "peak_rss_anon_mb": peak["RssAnon"],
            "peak_vm_hwm_mb": peak["VmHWM"], **after}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 80000])
    p.add_argument("--workdir", default="/tmp/seqkd-distill-memory")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure this size in this process
    args = p.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    if args.one:
        print(json.dumps(measure(args.workdir, args.one, os.path.join(args.workdir, "teacher", "checkpoint_last.pt"))))
        return
    sizes = sorted(args.sizes)
    prepare(args.workdir, sizes)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    rows = []
    for n in sizes:
        proc = subprocess.run([sys.executable, __file__, "--workdir", args.workdir, "--one", str(n)], env=env,
                              capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stderr[-3000:])
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print("| sentences | seconds | peak RssAnon (MB) | peak VmHWM (MB) | RssAnon after decoding (MB) | "
          "Python blocks after decoding |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['sentences']:,} | {r['seconds']} | {r['peak_rss_anon_mb']} | {r['peak_vm_hwm_mb']} | "
              f"{r['rss_anon_after_decoding_mb']} | {r['python_blocks_after_decoding']:,} |")
    a, b = rows[0], rows[-1]
    grow = (b["rss_anon_after_decoding_mb"] - a["rss_anon_after_decoding_mb"]) * 2**20 / (b["sentences"] - a["sentences"])
    print(f"peak RssAnon x{b['peak_rss_anon_mb'] / a['peak_rss_anon_mb']:.2f} for x{b['sentences'] / a['sentences']:.0f} "
          f"sentences; RssAnon after decoding {grow:.0f} bytes per sentence more; Python blocks "
          f"{b['python_blocks_after_decoding'] - a['python_blocks_after_decoding']:+,}")


if __name__ == "__main__":
    main()
