"""Scale rehearsal: every stage that touches the whole corpus, at N and 16N sentence pairs, with a tiny teacher.

Builds a synthetic parallel corpus shaped like WMT14 after subword segmentation (target lengths drawn from a
log-normal with mean ~27 subwords, clipped to [1, 120]; sources within +-20% of their target's length;
Zipf-distributed words from a fixed vocabulary of several thousand subwords, the same dictionaries at every N),
a tiny random-weight teacher (luong_lstm_1x32: decoding time small; a random teacher never ends a
hypothesis early, so its outputs run to the length limit, here ``--max-len-a 1.0 --max-len-b 5``: about the
gold length, and the same number of steps per sentence at every size), then runs each stage as its own
process tree and measures:

- wall time per sentence (the stage's whole process, start-up included: at small N start-up weighs more),
- peak anonymous resident memory (RssAnon of /proc/PID/status, summed over the process tree, sampled every
  20 ms) and, separately, peak file-backed resident memory (RssFile: pages of memory-mapped files, the page
  cache's, shared between processes),
- the growth of RssAnon per sentence between the two largest sizes (bytes per sentence), and what that slope
  gives at WMT14's 4.5M pairs (an upper bound: at small N a peak still rises with the fullest batch it meets),
- for two DDP ranks (gloo, CPU) training 3 epochs, ``word_kd`` from the top-k store and fairseq's
  ``cross_entropy`` as the control: each rank's peak and median RssAnon in each epoch (epochs found by rank 0's
  "begin training epoch" lines), which must not grow.

    python benchmarks/bench_scale.py [--sizes 25000 100000 400000] [--vocab 4000] [--workdir /tmp/seqkd-scale]
                                     [--stages binarize distill ...] [--out runs/scale]

The vocabulary (4,000 subwords by default) sets the tiny teacher's decoding cost: on a 2-core CPU, one thread,
beam 5 runs at ~140 sentences/s with 4,000 words (~90 with 6,000): every stage together costs ~48 ms per
sentence, so the default sizes take ~7 hours; ``--sizes 6250 25000 100000`` spans the same 16x in ~1.5 hours.

Goal (issue 18): from N to 16N every stage's peak RssAnon grows by less than 1.25x and its time per sentence
stays within 1.2x. Prints a markdown table and writes runs/scale/scale.json.
"""

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
USER_DIR = os.path.join(REPO, "fairseq_seqkd")

VOCAB = 4000
MEAN_LEN = 27.0


# ------------------------------------------------------------------------------------------------ corpus
def words(vocab):
    return [f"w{i}" for i in range(vocab)]


def write_corpus(folder, n, seed, vocab=VOCAB):
    """``n`` synthetic pairs in folder/train.{src,tgt}; lengths log-normal (mean ~27), Zipf words."""
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed)
    sigma = 0.5
    mu = math.log(MEAN_LEN) - sigma ** 2 / 2
    # Zipf(1) over the vocabulary via the inverse CDF of cumulative weights
    cum, total = [], 0.0
    for r in range(1, vocab + 1):
        total += 1.0 / r
        cum.append(total)
    import bisect

    def word():
        return bisect.bisect_left(cum, rng.random() * total)

    with open(os.path.join(folder, "train.src"), "w") as s, open(os.path.join(folder, "train.tgt"), "w") as t:
        for _ in range(n):
            tlen = min(120, max(1, int(rng.lognormvariate(mu, sigma))))
            slen = min(120, max(1, int(round(tlen * rng.uniform(0.8, 1.2)))))
            s.write(" ".join(f"s{word()}" for _ in range(slen)) + "\n")
            t.write(" ".join(f"w{word()}" for _ in range(tlen)) + "\n")
    for split, m in (("valid", 200), ("test", 200)):
        with open(os.path.join(folder, f"{split}.src"), "w") as s, \
                open(os.path.join(folder, f"{split}.tgt"), "w") as t:
            for _ in range(m):
                tlen = min(120, max(1, int(rng.lognormvariate(mu, sigma))))
                s.write(" ".join(f"s{word()}" for _ in range(tlen)) + "\n")
                t.write(" ".join(f"w{word()}" for _ in range(tlen)) + "\n")


def write_dicts(folder, vocab=VOCAB):
    """Fixed dictionaries (every word, count 1): the same at every N, so one teacher serves all sizes."""
    os.makedirs(folder, exist_ok=True)
    for side, prefix in (("src", "s"), ("tgt", "w")):
        with open(os.path.join(folder, f"dict.{side}.txt"), "w") as f:
            f.writelines(f"{prefix}{i} 1\n" for i in range(vocab))
    return os.path.join(folder, "dict.src.txt"), os.path.join(folder, "dict.tgt.txt")


# ------------------------------------------------------------------------------------------------ memory
def tree(root):
    """The pids of ``root`` and all its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def rss(pid):
    """(RssAnon, RssFile) of a process in bytes, (0, 0) once it is gone."""
    anon = filed = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
                elif line.startswith("RssFile:"):
                    filed = int(line.split()[1]) * 1024
    except OSError:
        pass
    return anon, filed


class Peak(threading.Thread):
    """Samples the process tree of ``pid`` every ``interval`` seconds; keeps the peaks of the sums."""

    def __init__(self, pid, interval=0.02):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.anon = self.file = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            pids = tree(self.pid)
            sums = [sum(x) for x in zip(*(rss(p) for p in pids))] if pids else [0, 0]
            self.anon, self.file = max(self.anon, sums[0]), max(self.file, sums[1])
            self.stop.wait(self.interval)


def stage_env():
    """The environment of a measured stage: this interpreter's scripts first on PATH, one thread."""
    return dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
                OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def failed(what, log):
    with open(log) as f:
        tail = f.read()[-3000:]
    return SystemExit(f"{what}; {log}:\n{tail}")


def measure(command, log):
    """Run ``command``; (seconds, peak RssAnon bytes, peak RssFile bytes)."""
    full = stage_env()
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=full, cwd=REPO)
        peak = Peak(proc.pid)
        peak.start()
        code = proc.wait()
        seconds = time.perf_counter() - t0
        peak.stop.set()
        peak.join()
    if code != 0:
        raise failed(f"{command[0]} failed (exit {code})", log)
    return seconds, peak.anon, peak.file


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_ranks(command, log, world_size=2):
    """Run ``command`` (a fairseq-train command line) as ``world_size`` CPU DDP ranks (gloo, as the DDP test
    does); (seconds, {rank: [(peak, median) RssAnon bytes in epoch 1, 2, ...]}, peak RssFile bytes of all ranks).
    The peak of an epoch moves with the allocator (+-30 MB from epoch to epoch for plain ``cross_entropy``);
    the median, where a rank sits between its largest batches, is what a leak would raise.

    Epochs are found by rank 0's ``begin training epoch N`` lines (the ranks advance together: every update
    all-reduces), so each rank's samples are put in the epoch rank 0 was in when they were taken."""
    port = free_port()
    env = stage_env()
    ddp = ["--cpu", "--distributed-world-size", str(world_size), "--distributed-init-method",
           f"tcp://127.0.0.1:{port}", "--distributed-no-spawn", "--distributed-backend", "gloo",
           "--ddp-backend", "legacy_ddp"]
    epoch = [0]
    peaks = {rank: {} for rank in range(world_size)}
    filed = [0]
    stop = threading.Event()
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*command, *ddp, "--distributed-rank", str(rank)], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE if rank == 0 else subprocess.DEVNULL,
                              stderr=subprocess.STDOUT) for rank in range(world_size)]

    def sample():
        while not stop.is_set():
            total_file = 0
            for rank, proc in enumerate(procs):
                sizes = [rss(p) for p in tree(proc.pid)]
                anon = sum(a for a, _ in sizes)
                total_file += sum(f for _, f in sizes)
                if epoch[0]:
                    peaks[rank].setdefault(epoch[0], []).append(anon)
            filed[0] = max(filed[0], total_file)
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with open(log, "w") as out:
        for line in procs[0].stdout:
            out.write(line)
            if "begin training epoch" in line:
                epoch[0] = int(line.rsplit(None, 1)[1])
    codes = [proc.wait() for proc in procs]
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    if any(codes):
        raise failed(f"{command[0]} as {world_size} ranks failed (exits {codes})", log)
    return seconds, {rank: [(max(by[e]), statistics.median(by[e])) for e in sorted(by)]
                     for rank, by in peaks.items()}, filed[0]


# ------------------------------------------------------------------------------------------------ stages
def make_teacher(work, data, vocab):
    """A random-weight luong_lstm_1x32 teacher checkpoint (fairseq-train for 1 update, lr ~0)."""
    save = os.path.join(work, f"teacher-v{vocab}")
    if not os.path.exists(os.path.join(save, "checkpoint_last.pt")):
        subprocess.run(["fairseq-train", data, "--user-dir", USER_DIR, "--task", "seqkd_translation", "--arch",
                        "luong_lstm_1x32", "--optimizer", "adam", "--lr", "1e-9", "--max-update", "1",
                        "--max-tokens", "2000", "--save-dir", save, "--no-epoch-checkpoints", "--cpu",
                        "--num-workers", "0", "--disable-validation", "--seed", "1"], check=True,
                       env=stage_env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.join(save, "checkpoint_last.pt")


DISTILL = ["--cpu", "--max-tokens", "4000", "--batch-size", "128", "--max-len-a", "1.0", "--max-len-b", "5"]


def stage_commands(n_dir, text, dicts, teacher):
    """{stage name: [commands]} for one corpus size, run in order: the times add up and the peaks are the
    largest of the stage's measured commands; a ("setup", argv) entry runs unmeasured (the other shards
    before a merge)."""
    data = os.path.join(n_dir, "bin")
    d = os.path.join(n_dir, "distill")
    train = ["fairseq-train", data, "--user-dir", USER_DIR, "--task", "seqkd_translation", "--arch", "luong_lstm_1x32",
             "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "2000", "--num-workers", "0",
             "--disable-validation", "--no-save", "--seed", "1"]
    train300 = [*train, "--max-update", "300", "--save-dir", f"{n_dir}/student", "--cpu"]
    ddp_train = [*train, "--max-epoch", str(EPOCHS), "--save-dir", f"{n_dir}/ddp", "--log-format", "simple"]
    fixed_mmap = ["env", f"MALLOC_MMAP_THRESHOLD_={FIXED_MMAP_THRESHOLD}"]
    return {
        "binarize": [["fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--trainpref",
                      f"{text}/train", "--validpref", f"{text}/valid", "--testpref", f"{text}/test", "--destdir", data,
                      "--srcdict", dicts[0], "--tgtdict", dicts[1], "--workers", "1"]],
        "distill (beam 5)": [["seqkd-distill", data, "--path", teacher, *DISTILL, "--beam", "5",
                              "--out-prefix", f"{d}/one"]],
        ALLOCATOR_STAGES[3]: [[*fixed_mmap, "seqkd-distill", data, "--path", teacher, *DISTILL, "--beam", "5", "--out-prefix", f"{d}/fixed-mmap"]],
        "distill 4 shards (each)": [["seqkd-distill", data, "--path", teacher, *DISTILL, "--beam", "5",
                                     "--out-prefix", f"{d}/sh", "--num-shards", "4", "--shard-id", "0"]],
        "distill merge + binarize": [("setup", ["bash", "-c", " && ".join(
            [" ".join(["seqkd-distill", data, "--path", teacher, *DISTILL, "--beam", "5", "--out-prefix", f"{d}/sh",
                       "--num-shards", "4", "--shard-id", str(i)]) for i in range(1, 4)])]),
            ["seqkd-distill", "--merge", "--out-prefix", f"{d}/sh", "--num-shards", "4", "--binarize",
             f"{n_dir}/bin-seqkd"]],
        "distill K-best (beam 8, nbest 8)": [["seqkd-distill", data, "--path", teacher, *DISTILL, "--beam", "8",
                                             "--nbest", "8", "--write-kbest", "--out-prefix", f"{d}/kb"]],
        "seqkd-select": [["seqkd-select", f"{d}/kb.kbest", "--out-src", f"{d}/inter.src", "--out-tgt",
                          f"{d}/inter.tgt", "--remove-bpe", "none", "--workers", "1"]],
        "seqkd-topk (k 8)": [["seqkd-topk", data, "--path", teacher, "--k", "8", "--max-tokens", "4000", "--batch-size", "128", "--cpu",
                              "--out", f"{n_dir}/topk"]],
        "word_kd, 300 updates from the store": [[*train300, "--criterion", "word_kd", "--kd-topk-store",
                                                 f"{n_dir}/topk"]],
        ALLOCATOR_STAGES[0]: [[*train300, "--criterion", "cross_entropy"]],
        ALLOCATOR_STAGES[1]: [[*fixed_mmap, *train300, "--criterion", "word_kd", "--kd-topk-store",
                               f"{n_dir}/topk"]],
        ALLOCATOR_STAGES[2]: [[*fixed_mmap, *train300, "--criterion", "cross_entropy"]],
        DDP_STAGE: [[*ddp_train, "--criterion", "word_kd", "--kd-topk-store", f"{n_dir}/topk"]],
        DDP_CONTROL: [[*ddp_train, "--criterion", "cross_entropy"]],
        "seqkd-eval": [["seqkd-eval", data, "--path", teacher, "--json", f"{n_dir}/eval.json", "--cpu", "--beam", "5",
                        "--speed-sentences", "20", "--speed-repeats", "1", "--max-len-a", "1.0", "--max-len-b", "5"]],
    }


#: Two word_kd ranks for 3 epochs from the store: time per sentence and epoch, RssAnon per rank and epoch.
DDP_STAGE = "word_kd, 2 DDP ranks x 3 epochs from the store"
#: The same ranks with fairseq's cross_entropy (no store): the control for what fairseq alone does per epoch.
DDP_CONTROL = "cross_entropy, 2 DDP ranks x 3 epochs (control)"
DDP_STAGES = (DDP_STAGE, DDP_CONTROL)
EPOCHS = 3

#: Controls for the training stages' memory: fairseq's cross_entropy, and both with glibc's mmap threshold fixed.
#: By default glibc raises its threshold as large blocks are freed (up to 32 MiB), after which tensors of varied
#: batch shapes come from the heap and fragment it: a CPU process's RSS then grows with the number of distinct
#: batch shapes it has seen (saturating), which a larger corpus offers more of within the same updates.
FIXED_MMAP_THRESHOLD = 8 * 2**20
ALLOCATOR_STAGES = ("cross_entropy, 300 updates (control)",
                    "word_kd, 300 updates from the store, MALLOC_MMAP_THRESHOLD_=8 MiB",
                    "cross_entropy, 300 updates, MALLOC_MMAP_THRESHOLD_=8 MiB",
                    "distill (beam 5), MALLOC_MMAP_THRESHOLD_=8 MiB")

#: Stages whose work does not grow with N (fixed update count, fixed test set): time per run, not per sentence.
FIXED_WORK = ("word_kd, 300 updates from the store", *ALLOCATOR_STAGES[:3], "seqkd-eval")
#: Stages that see a quarter of the corpus (one shard of four) or three quarters (shards 1-3 before the merge).
SHARE = {"distill 4 shards (each)": 0.25}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[25000, 100000, 400000])
    p.add_argument("--vocab", type=int, default=VOCAB, help="subwords per side (the teacher's decoding cost)")
    p.add_argument("--workdir", default="/tmp/seqkd-scale")
    p.add_argument("--out", default="runs/scale")
    p.add_argument("--stages", nargs="*", help="only these stages (names as printed); binarize always runs")
    p.add_argument("--keep", action="store_true", help="keep each size's folder (disk: ~1 GB per 400k)")
    p.add_argument("--table", metavar="SCALE_JSON", nargs="+",
                   help="only print the table of earlier runs' scale.json files (rows of all of them)")
    args = p.parse_args()
    if args.table:
        results = []
        for path in args.table:
            with open(path) as f:
                results += json.load(f)
        print("\n".join(table(results, sorted({r["n"] for r in results}))))
        return
    os.makedirs(args.workdir, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    dicts = write_dicts(os.path.join(args.workdir, f"dicts-v{args.vocab}"), args.vocab)
    results = []
    teacher = None
    for n in args.sizes:
        n_dir = os.path.join(args.workdir, f"n{n}")
        shutil.rmtree(n_dir, ignore_errors=True)
        text = os.path.join(n_dir, "text")
        write_corpus(text, n, seed=n, vocab=args.vocab)
        commands = stage_commands(n_dir, text, dicts, teacher or "TEACHER")
        for name in commands:
            if name != "binarize" and args.stages and name not in args.stages:
                continue
            if name != "binarize" and teacher is None:
                teacher = make_teacher(args.workdir, os.path.join(n_dir, "bin"), args.vocab)
                commands = stage_commands(n_dir, text, dicts, teacher)
            seconds = anon = filed = 0.0
            slug = "".join(c if c.isalnum() else "-" for c in name)
            if name in DDP_STAGES:
                seconds, epochs, filed = measure_ranks(commands[name][0], os.path.join(n_dir, f"{slug}.log"))
                results.append({"stage": name, "n": n, "seconds": round(seconds, 2),
                                "ms_per_sentence": round(seconds / (n * EPOCHS) * 1000, 3),
                                "peak_rss_anon_mb": round(max(p for e in epochs.values() for p, _ in e) / 2**20, 1),
                                "peak_rss_file_mb": round(filed / 2**20, 1),
                                "rank_epoch_rss_anon_mb": {r: [round(p / 2**20, 1) for p, _ in e]
                                                           for r, e in epochs.items()},
                                "rank_epoch_median_rss_anon_mb": {r: [round(m / 2**20, 1) for _, m in e]
                                                                  for r, e in epochs.items()}})
                print(json.dumps(results[-1]), flush=True)
                continue
            for k, command in enumerate(commands[name]):
                log = os.path.join(n_dir, f"{slug}-{k}.log")
                if isinstance(command, tuple):  # ("setup", argv): run, not measured
                    measure(command[1], log)
                    continue
                s, a, f = measure(command, log)
                seconds, anon, filed = seconds + s, max(anon, a), max(filed, f)
            share = SHARE.get(name, 1.0)
            per = None if name in FIXED_WORK else seconds / (n * share) * 1000
            results.append({"stage": name, "n": n, "seconds": round(seconds, 2), "ms_per_sentence": per and round(per, 3),
                            "peak_rss_anon_mb": round(anon / 2**20, 1), "peak_rss_file_mb": round(filed / 2**20, 1)})
            print(json.dumps(results[-1]), flush=True)
        if not args.keep:
            shutil.rmtree(n_dir, ignore_errors=True)
        with open(os.path.join(args.out, "scale.json"), "w") as f:  # after every size: a partial run is kept
            json.dump(results, f, indent=1)
    print("\n".join(table(results, args.sizes)))


#: WMT14 En->De's training pairs: where the measured slope is extrapolated to.
WMT14_PAIRS = 4_500_000


def table(results, sizes):
    """Markdown lines: per stage and size ms/sentence and peak RssAnon (RssFile), the growth from the smallest
    to the largest size, RssAnon's slope in bytes per sentence and what it gives at WMT14's size; then each
    DDP rank's peak RssAnon per epoch."""
    sizes = sorted(sizes)
    head = ["stage"] + [f"N={n:,}: ms/sent, RssAnon MB (RssFile MB)" for n in sizes]
    if len(sizes) > 1:
        # the slope between the two largest sizes: at small N a stage's peak still rises with the batches it meets
        # (the fullest batch, the allocator's heap), which --max-tokens bounds; per-sentence state goes on rising
        lo = sizes[-2]
        head += [f"RssAnon x (N={sizes[0]:,}→{sizes[-1]:,})", "time/sent x",
                 f"RssAnon slope (N={lo:,}→{sizes[-1]:,}), bytes/sent",
                 f"RssAnon at {WMT14_PAIRS / 1e6:g}M pairs (by the slope)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by = {}
    for r in results:
        by.setdefault(r["stage"], {})[r["n"]] = r
    for stage, rows in by.items():
        cells = [stage]
        for n in sizes:
            r = rows.get(n)
            if not r:
                cells.append("")
                continue
            t = f"{r['ms_per_sentence']:.2f}" if r["ms_per_sentence"] is not None else f"{r['seconds']:.0f} s"
            cells.append(f"{t}, {r['peak_rss_anon_mb']:.0f} ({r['peak_rss_file_mb']:.0f})")
        if len(sizes) > 1:
            if sizes[0] in rows and sizes[-1] in rows and lo in rows:
                a, b = rows[sizes[0]], rows[sizes[-1]]
                cells.append(f"{b['peak_rss_anon_mb'] / a['peak_rss_anon_mb']:.2f}")
                if a["ms_per_sentence"]:
                    cells.append(f"{b['ms_per_sentence'] / a['ms_per_sentence']:.2f}")
                else:
                    cells.append(f"{b['seconds'] / a['seconds']:.2f} (whole run)")
                slope = (b["peak_rss_anon_mb"] - rows[lo]["peak_rss_anon_mb"]) * 2**20 / (sizes[-1] - lo)
                at = b["peak_rss_anon_mb"] + max(slope, 0) * (WMT14_PAIRS - sizes[-1]) / 2**20
                cells += [f"{slope:.0f}", f"{at:,.0f} MB"]
            else:
                cells += [""] * 4
        lines.append("| " + " | ".join(cells) + " |")
    ddp = [r for r in results if "rank_epoch_rss_anon_mb" in r]
    if ddp:
        lines += ["", "DDP ranks: each rank's RssAnon (MB) in each epoch, peak (median)", "",
                  "| stage | N | rank | " + " | ".join(f"epoch {e + 1}" for e in range(EPOCHS)) +
                  f" | epoch {EPOCHS} / epoch 1: peak (median) |", "|---|---|---|" + "---|" * (EPOCHS + 1)]
        for r in sorted(ddp, key=lambda r: (r["stage"], r["n"])):
            medians = r.get("rank_epoch_median_rss_anon_mb", {})
            for rank, peaks in sorted(r["rank_epoch_rss_anon_mb"].items()):
                mid = medians.get(rank)
                cells = [f"{p:.1f}" + (f" ({m:.1f})" if mid else "") for p, m in zip(peaks, mid or peaks)]
                ratio = f"{peaks[-1] / peaks[0]:.3f}" + (f" ({mid[-1] / mid[0]:.3f})" if mid else "") if peaks else ""
                lines.append(f"| {r['stage']} | {r['n']:,} | {rank} | " + " | ".join(cells) + f" | {ratio} |")
    return lines


if __name__ == "__main__":
    main()
