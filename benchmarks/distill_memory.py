"""What seqkd-distill holds per sentence: its memory at N and 16N toy sentences, and whether Python objects grow.

For each size, in a fresh process (one thread): a toy corpus of that many training pairs (tests/toydata.py,
binarized with the dictionaries of the smallest size, so one toy teacher serves all), decoded by
``seqkd-distill`` as a library call (beam 5, ``--nbest 5 --write-kbest``, ``--max-len-a 1.0 --max-len-b 5``,
``--max-tokens 6000``, the fairseq engine), shard 0 of 1, then merged. Measured: the peak of RssAnon
(anonymous resident memory, /proc/self/status, sampled every 20 ms) and VmHWM over the whole run, RssAnon
after the decoding, and Python's allocated blocks (``sys.getallocatedblocks()`` after ``gc.collect()``)
after the decoding: if Python objects were kept per sentence, the blocks would grow with N. Native memory
after the decoding is split by glibc's own accounting (``mallinfo2``): bytes in use (live allocations of
torch, numpy and the interpreter) and bytes free but held by the allocator (fragmentation), then RssAnon
again after ``malloc_trim(0)`` hands the free pages back. Growth in use is held memory (a leak or a cache);
growth only in the free part is the allocator's, given back on trim.

    python benchmarks/distill_memory.py [--sizes 5000 80000] [--shards K] [--workdir /tmp/seqkd-distill-memory]

With ``--shards K`` each size decodes shard 0 of K (a quarter of the corpus for K=4), as one of K processes.
"""

import argparse
import ctypes
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


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def native_heap():
    """glibc's heap, in MB: in use (small blocks + mmapped blocks) and free but held by the allocator."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return {"heap_in_use_mb": round((info.uordblks + info.hblkhd) / 2**20, 1),
            "heap_free_held_mb": round(info.fordblks / 2**20, 1)}


def trimmed_rss_anon():
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return status()["RssAnon"]


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


def measure(workdir, n, teacher, shards=1):
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
                             nbest=5, write_kbest=True, max_len_a=1.0, max_len_b=5, max_tokens=6000,
                             num_shards=shards, shard_id=0).checked()
    start = time.perf_counter()
    generate_shard(options).close()
    gc.collect()
    after = {"rss_anon_after_decoding_mb": status()["RssAnon"], "python_blocks_after_decoding": sys.getallocatedblocks(),
             **native_heap(), "rss_anon_after_trim_mb": trimmed_rss_anon()}
    if shards == 1:
        merge_shards(out, 1)
    time.sleep(0.05)
    return {"sentences": n, "shards": shards, "seconds": round(time.perf_counter() - start, 1), "peak_rss_anon_mb": peak["RssAnon"],
            "peak_vm_hwm_mb": peak["VmHWM"], **after}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 80000])
    p.add_argument("--shards", type=int, default=1, help="decode shard 0 of this many")
    p.add_argument("--workdir", default="/tmp/seqkd-distill-memory")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure this size in this process
    args = p.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    if args.one:
        print(json.dumps(measure(args.workdir, args.one, os.path.join(args.workdir, "teacher", "checkpoint_last.pt"),
                                 args.shards)))
        return
    sizes = sorted(args.sizes)
    prepare(args.workdir, sizes)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    rows = []
    for n in sizes:
        proc = subprocess.run([sys.executable, __file__, "--workdir", args.workdir, "--one", str(n),
                               "--shards", str(args.shards)], env=env,
                              capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stderr[-3000:])
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"shard 0 of {args.shards}" if args.shards > 1 else "one process, then the merge")
    print("| sentences | seconds | peak RssAnon (MB) | peak VmHWM (MB) | RssAnon after decoding (MB) | "
          "Python blocks after decoding | heap in use (MB) | heap free, held (MB) | RssAnon after trim (MB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['sentences']:,} | {r['seconds']} | {r['peak_rss_anon_mb']} | {r['peak_vm_hwm_mb']} | "
              f"{r['rss_anon_after_decoding_mb']} | {r['python_blocks_after_decoding']:,} | {r['heap_in_use_mb']} | "
              f"{r['heap_free_held_mb']} | {r['rss_anon_after_trim_mb']} |")
    a, b = rows[0], rows[-1]

    def per_sentence(key):
        return (b[key] - a[key]) * 2**20 / (b["sentences"] - a["sentences"])

    print(f"peak RssAnon x{b['peak_rss_anon_mb'] / a['peak_rss_anon_mb']:.2f} for x{b['sentences'] / a['sentences']:.0f} "
          f"sentences; per sentence more: RssAnon after decoding {per_sentence('rss_anon_after_decoding_mb'):.0f} B, "
          f"heap in use {per_sentence('heap_in_use_mb'):.0f} B, heap free but held "
          f"{per_sentence('heap_free_held_mb'):.0f} B, RssAnon after trim {per_sentence('rss_anon_after_trim_mb'):.0f} B; "
          f"Python blocks {b['python_blocks_after_decoding'] - a['python_blocks_after_decoding']:+,}")


if __name__ == "__main__":
    main()
