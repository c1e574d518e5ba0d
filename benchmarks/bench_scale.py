"""Scale rehearsal: every stage that touches the whole corpus, at N and 16N sentence pairs, with a tiny teacher.

Builds a synthetic parallel corpus shaped like WMT14 after subword segmentation (target lengths drawn from a
log-normal with mean ~27 subwords, clipped to [1, 120]; sources within +-20% of their target's length;
Zipf-distributed words from a fixed vocabulary of several thousand subwords, the same dictionaries at every N),
a tiny random-weight teacher (luong_lstm_1x32: decoding time small, output lengths bounded by
--max-len-a/-b, so every size decodes the same number of steps per sentence), then runs each stage as its own
process tree and measures:

- wall time per sentence (the stage's whole process, start-up included: at small N start-up weighs more),
- peak anonymous resident memory (RssAnon of /proc/PID/status, summed over the process tree, sampled every
  20 ms) and, separately, peak file-backed resident memory (RssFile: pages of memory-mapped files, the page
  cache's, shared between processes).

    python benchmarks/bench_scale.py [--sizes 25000 100000 400000] [--workdir /tmp/seqkd-scale]
                                     [--stages binarize distill ...] [--out runs/scale]

Goal (issue 18): from N to 16N every stage's peak RssAnon grows by less than 1.25x and its time per sentence
stays within 1.2x. Prints a markdown table and writes runs/scale/scale.json.
"""

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
USER_DIR = os.path.join(REPO, "fairseq_seqkd")

VOCAB = 6000
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


def measure(command, log, env=None):
    """Run ``command``; (seconds, peak RssAnon bytes, peak RssFile bytes)."""
    full = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
                OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore", **(env or {}))
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
        with open(log) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"{command[0]} failed (exit {code}); {log}:\n{tail}")
    return seconds, peak.anon, peak.file


# ------------------------------------------------------------------------------------------------ stages
def make_teacher(work, data):
    """A random-weight luong_lstm_1x32 teacher checkpoint (fairseq-train for 1 update, lr 0)."""
    save = os.path.join(work, "teacher")
    if not os.path.exists(os.path.join(save, "checkpoint_last.pt")):
        subprocess.run(["fairseq-train", data, "--user-dir", USER_DIR, "--task", "seqkd_translation", "--arch",
                        "luong_lstm_1x32", "--optimizer", "adam", "--lr", "1e-9", "--max-update", "1",
                        "--max-tokens", "2000", "--save-dir", save, "--no-epoch-checkpoints", "--cpu",
                        "--num-workers", "0", "--disable-validation", "--seed", "1"], check=True,
                       env=dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.join(save, "checkpoint_last.pt")


DISTILL = ["--cpu", "--max-tokens", "4000", "--max-len-a", "1.2", "--max-len-b", "10"]


def stage_commands(n_dir, text, dicts, teacher):
    """{stage name: [commands]} for one corpus size, run in order: the times add up and the peaks are the
    largest of the stage's measured commands; a ("setup", argv) entry runs unmeasured (the other shards
    before a merge)."""
    data = os.path.join(n_dir, "bin")
    d = os.path.join(n_dir, "distill")
    return {
        "binarize": [["fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--trainpref",
                      f"{text}/train", "--validpref", f"{text}/valid", "--testpref", f"{text}/test", "--destdir", data,
                      "--srcdict", dicts[0], "--tgtdict", dicts[1], "--workers", "1"]],
        "distill (beam 5)": [["seqkd-distill", data, "--path", teacher, *DISTILL, "--beam", "5",
                              "--out-prefix", f"{d}/one"]],
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
        "seqkd-topk (k 8)": [["seqkd-topk", data, "--path", teacher, "--k", "8", "--max-tokens", "4000", "--cpu",
                              "--out", f"{n_dir}/topk"]],
        "word_kd, 300 updates from the store": [[
            "fairseq-train", data, "--user-dir", USER_DIR, "--task", "seqkd_translation", "--arch", "luong_lstm_1x32",
            "--criterion", "word_kd", "--kd-topk-store", f"{n_dir}/topk", "--optimizer", "adam", "--lr", "0.001",
            "--max-tokens", "2000", "--max-update", "300", "--save-dir", f"{n_dir}/student", "--cpu", "--num-workers",
            "0", "--disable-validation", "--no-save", "--seed", "1"]],
        "seqkd-eval": [["seqkd-eval", data, "--path", teacher, "--json", f"{n_dir}/eval.json", "--cpu", "--beam", "5",
                        "--speed-sentences", "20", "--speed-repeats", "1", "--max-len-a", "1.2", "--max-len-b", "10"]],
    }


#: Stages whose work does not grow with N (fixed update count, fixed test set): time per run, not per sentence.
FIXED_WORK = ("word_kd, 300 updates from the store", "seqkd-eval")
#: Stages that see a quarter of the corpus (one shard of four) or three quarters (shards 1-3 before the merge).
SHARE = {"distill 4 shards (each)": 0.25}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[25000, 100000, 400000])
    p.add_argument("--workdir", default="/tmp/seqkd-scale")
    p.add_argument("--out", default="runs/scale")
    p.add_argument("--stages", nargs="*", help="only these stages (names as printed); binarize always runs")
    p.add_argument("--keep", action="store_true", help="keep each size's folder (disk: ~1 GB per 400k)")
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    dicts = write_dicts(os.path.join(args.workdir, "dicts"))
    results = []
    teacher = None
    for n in args.sizes:
        n_dir = os.path.join(args.workdir, f"n{n}")
        shutil.rmtree(n_dir, ignore_errors=True)
        text = os.path.join(n_dir, "text")
        write_corpus(text, n, seed=n)
        commands = stage_commands(n_dir, text, dicts, teacher or "TEACHER")
        for name in commands:
            if name != "binarize" and args.stages and name not in args.stages:
                continue
            if name != "binarize" and teacher is None:
                teacher = make_teacher(args.workdir, os.path.join(n_dir, "bin"))
                commands = stage_commands(n_dir, text, dicts, teacher)
            seconds = anon = filed = 0.0
            for k, command in enumerate(commands[name]):
                log = os.path.join(n_dir, f"{name.split()[0]}-{k}.log")
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
    with open(os.path.join(args.out, "scale.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("\n".join(table(results, args.sizes)))


def table(results, sizes):
    head = ["stage"] + [f"N={n:,}: ms/sent, RssAnon MB (RssFile MB)" for n in sizes]
    if len(sizes) > 1:
        head += [f"RssAnon x (N={sizes[0]:,}→{sizes[-1]:,})", "time/sent x"]
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
        if len(sizes) > 1 and sizes[0] in rows and sizes[-1] in rows:
            a, b = rows[sizes[0]], rows[sizes[-1]]
            cells.append(f"{b['peak_rss_anon_mb'] / a['peak_rss_anon_mb']:.2f}")
            if a["ms_per_sentence"]:
                cells.append(f"{b['ms_per_sentence'] / a['ms_per_sentence']:.2f}")
            else:
                cells.append(f"{b['seconds'] / a['seconds']:.2f} (whole run)")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    main()
