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

``--engines``: the engines side by side instead (``seqkd-distill --engine``). It
builds a synthetic corpus (``--sentences`` pairs, source lengths 10-30 words
of an 8,000-word vocabulary) and random-weight teachers of the paper's sizes
(a fairseq ``transformer``, 6+6 layers of 512; ``luong_lstm_2x500``;
``luong_lstm_4x1000``: one fairseq-train update at a negligible learning
rate, so the weights are fairseq's initialisation), then distils the corpus
with each engine (beam 5, the Bible presets' ``--max-len-a 1.2 --max-len-b
10``): fairseq against ctranslate2 float32/int8 for the Transformer, against
seqkd float32/int8 for the LSTMs. Random weights rarely choose EOS, so every
engine decodes to the length limit; the mean output length per engine is
printed to show that the engines did the same number of steps. CTranslate2's
one-time conversion is done (and timed) before the timed runs.

    python benchmarks/bench_distill.py --engines [--sentences 200] [--teachers transformer,lstm2x500,lstm4x1000] [--threads 2] [--repeats 2]
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
    from fairseq_seqkd.errors import StoppedEarly
    start = time.perf_counter()
    try:
        distill.main(argv)
    except StoppedEarly:  # --stop-after-batches (a warm-up): exit status 3, as seqkd-distill's
        sys.exit(3)
    seconds = time.perf_counter() - start
    sentences = None
print(json.dumps({"seconds": seconds, "sentences": sentences}))
"""


def start(tool, argv, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, "-c", TIMED, tool, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(proc, ok=(0,)):
    out, err = proc.communicate()
    if proc.returncode not in ok:
        sys.exit(f"failed:\n{err[-2000:]}")
    if proc.returncode:
        return None
    return json.loads(out.strip().splitlines()[-1])


def lines(path):
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


#: --engines: teacher name -> (fairseq architecture, [(engine, quantisation)] compared with fairseq's).
TEACHERS = {
    "transformer": ("transformer", [("ctranslate2", "float32"), ("ctranslate2", "int8")]),
    "lstm2x500": ("luong_lstm_2x500", [("seqkd", "float32"), ("seqkd", "int8")]),
    "lstm4x1000": ("luong_lstm_4x1000", [("seqkd", "float32"), ("seqkd", "int8")]),
}


def tool(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def synthetic_data(folder, sentences, vocab=8000, seed=1):
    """A binarized random corpus: sentences pairs, source 10-30 words, target about as long."""
    import random
    rng = random.Random(seed)
    raw = os.path.join(folder, "raw")
    os.makedirs(raw, exist_ok=True)
    for lang in ("src", "tgt"):
        with open(os.path.join(raw, f"train.{lang}"), "w", encoding="utf-8") as f:
            for _ in range(sentences):
                f.write(" ".join(f"{lang}{rng.randrange(vocab)}" for _ in range(rng.randint(10, 30))) + "\n")
    data = os.path.join(folder, "bin")
    subprocess.run([tool("fairseq-preprocess"), "--source-lang", "src", "--target-lang", "tgt", "--trainpref",
                    os.path.join(raw, "train"), "--destdir", data, "--workers", "2"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return data


def random_teacher(data, arch, save_dir):
    """A fairseq checkpoint of ``arch`` with its initial weights (one update at learning rate 1e-9)."""
    subprocess.run([tool("fairseq-train"), data, "--user-dir", USER_DIR, "--task", "seqkd_translation", "--arch", arch,
                    "--optimizer", "adam", "--lr", "1e-9", "--max-tokens", "1000", "--max-update", "1",
                    "--disable-validation", "--no-epoch-checkpoints", "--save-dir", save_dir, "--cpu",
                    "--num-workers", "0", "--seed", "1"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return os.path.join(save_dir, "checkpoint_last.pt")


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def engines(args):
    """Each teacher distilled by fairseq and by the fast engines, alternating, in fresh processes."""
    tmp = tempfile.mkdtemp()
    data = synthetic_data(tmp, args.sentences)
    common = [data, "--subset", "train", "--beam", str(args.beam), "--batch-size", str(args.batch_size), "--cpu",
              "--max-len-a", "1.2", "--max-len-b", "10"]
    print(f"{args.sentences} synthetic sentences (source 10-30 words), beam {args.beam}, batch {args.batch_size}, "
          f"--max-len-a 1.2 --max-len-b 10, {args.threads} thread(s); medians of {args.repeats} alternating runs "
          f"(model and data loading included, interpreter start-up excluded)")
    print("| teacher | engine | sentences/s | speed-up vs fairseq | mean output length | top-1 identical to fairseq |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.teachers.split(","):
        arch, fast = TEACHERS[name]
        teacher = random_teacher(data, arch, os.path.join(tmp, name))
        variants = [("fairseq", None), *fast]
        if any(engine == "ctranslate2" for engine, _ in fast):  # the one-time conversion, outside the timed runs
            t0 = time.perf_counter()
            finish(start("seqkd-distill", [*common, "--path", teacher, "--out-prefix", os.path.join(tmp, "warm"),
                                           "--engine", "ctranslate2", "--stop-after-batches", "1"], args.threads),
                   ok=(0, 3))
            print(f"| {name} | (ctranslate2 conversion, once per checkpoint, with one batch) | "
                  f"{time.perf_counter() - t0:.1f} s | | | |")
        seconds = {v: [] for v in variants}
        outputs = {}
        for r in range(args.repeats):
            for engine, quantize in variants:
                out = os.path.join(tmp, f"{name}-{engine}-{quantize}-{r}")
                argv = [*common, "--path", teacher, "--out-prefix", out, "--engine", engine]
                if quantize:
                    argv += ["--engine-quantize", quantize]
                seconds[(engine, quantize)].append(finish(start("seqkd-distill", argv, args.threads))["seconds"])
                outputs[(engine, quantize)] = read_lines(f"{out}.tgt")
        reference = outputs[("fairseq", None)]
        base = statistics.median(seconds[("fairseq", None)])
        for variant in variants:
            out, median = outputs[variant], statistics.median(seconds[variant])
            assert len(out) == len(reference) == args.sentences, (variant, len(out))
            same = sum(a == b for a, b in zip(out, reference))
            length = statistics.mean(len(line.split()) for line in out)
            label = variant[0] + (f" {variant[1]}" if variant[1] else "")
            print(f"| {name} ({arch}) | {label} | {args.sentences / median:.1f} | {base / median:.2f}x | "
                  f"{length:.1f} | {same}/{len(out)} |", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?")
    p.add_argument("--path")
    p.add_argument("--engines", action="store_true", help="compare the engines on synthetic random-weight teachers")
    p.add_argument("--sentences", type=int, default=200, help="--engines: synthetic corpus size")
    p.add_argument("--teachers", default=",".join(TEACHERS), help="--engines: comma-separated, of " + ", ".join(TEACHERS))
    p.add_argument("--subset", default="valid")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=3, help="runs of each (alternating); medians are reported")
    args = p.parse_args(argv)
    if args.engines:
        return engines(args)
    if not args.data or not args.path:
        p.error("DATA and --path are required (or use --engines)")
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
