"""A shipped Transformer student (CTranslate2 directory): identity with fairseq-generate, BLEU, speed.

For a Transformer student checkpoint and DATA, a seqkd-prepare output folder (DATA/bin, DATA/raw/test.SRC,
DATA/raw/test.TGT, DATA/spm/SRC.model):

1. exports the student with ``seqkd-export CKPT --out DIR --spm-model DATA/spm/SRC.model --data DATA/bin``,
   float32 and ``--quantize int8`` (into a temporary folder);
2. runs, each as a whole process with OMP_NUM_THREADS=1 MKL_NUM_THREADS=1, ``fairseq-generate DATA/bin
   --user-dir fairseq_seqkd --task seqkd_translation --path CKPT --gen-subset test --beam 1 --batch-size B
   --max-len-a 1.2 --max-len-b 10 --post-process sentencepiece --cpu --num-workers 0`` (our task sets
   ``required_batch_size_multiple`` to 1, so no batch is dropped: the D- lines are counted) and
   ``seqkd-translate DIR --beam 1 --batch-size B --max-len-a 1.2 --max-len-b 10 --threads 1 < test.SRC``
   (float32 and int8), for each B of --batch-sizes, the engines alternating in --rounds rounds; medians of
   the decoding-only rates each prints (fairseq-generate's "Translated N sentences (M tokens) in Xs (S
   sentences/s ...)": X = N / S, source words/s = the raw test source's words / X; seqkd-translate's last
   stderr line: sentences/s and source words/s, decoding only). Ratios are against fairseq-generate at
   the same B;
3. identity: fairseq-generate's D- lines (detokenized, ordered by id) against the float32 export's output at
   each B, the differing lines printed with both texts, whether fairseq's hypothesis reached the length
   limit of its own source (``int(1.2 * (source subwords + 1) + 10)``, the export's limit; fairseq's at
   B=1, while at a larger B fairseq applies --max-len-a to the batch's longest source) and whether the
   export's SentencePiece encoding of the raw source gives fairseq's binarized source;
4. BLEU (sacrebleu corpus BLEU against DATA/raw/test.TGT, signature printed) of every output;
5. with --teacher TCKPT: fairseq-generate of the teacher with --beam 5 --batch-size 1 in the same rounds,
   and the paper's speed-up: int8 student's greedy source words/s at batch size 1 / teacher's.

Prints a markdown table; --out FILE writes everything as JSON. Usage:

    python benchmarks/bench_deploy_ct2.py DATA CKPT [--teacher TCKPT] [--batch-sizes 1 32] [--rounds 3]
        [--sentences N] [--out FILE]

--sentences N uses the first N test sentences only (a temporary copy of DATA's test set), for trying it out.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import sacrebleu

BIN = os.path.dirname(os.path.abspath(sys.executable))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
FAIRSEQ_RATE = re.compile(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s \(([\d.]+) sentences/s")
OURS_RATE = re.compile(r"Translated ([\d,]+) sentences \(([\d,]+) source words\) in ([\d.]+)s "
                       r"\(([\d.]+) sentences/s, ([\d.]+) source words/s\)")


def tool(name):
    path = os.path.join(BIN, name)
    return path if os.path.exists(path) else name


def run(cmd, stdin=None):
    """Runs cmd as one process with one thread; (stdout, stderr, wall seconds). Raises on failure."""
    start = time.perf_counter()
    p = subprocess.run(cmd, input=stdin, capture_output=True, env=ENV, cwd=REPO)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} exited with {p.returncode}:\n{p.stderr.decode()[-3000:]}")
    return p.stdout.decode("utf-8"), p.stderr.decode("utf-8"), wall


def subset(data, src, tgt, n, out):
    """A copy of DATA's test set reduced to its first n sentences (bin/ and raw/), in out."""
    from fairseq.data import data_utils, indexed_dataset

    os.makedirs(os.path.join(out, "bin"))
    os.makedirs(os.path.join(out, "raw"))
    for lang in (src, tgt):
        shutil.copy(os.path.join(data, "bin", f"dict.{lang}.txt"), os.path.join(out, "bin"))
        prefix = f"test.{src}-{tgt}.{lang}"
        ds = data_utils.load_indexed_dataset(os.path.join(data, "bin", prefix), None)
        builder = indexed_dataset.make_builder(indexed_dataset.data_file_path(os.path.join(out, "bin", prefix)),
                                               "mmap", vocab_size=65535)
        for i in range(n):
            builder.add_item(ds[i])
        builder.finalize(indexed_dataset.index_file_path(os.path.join(out, "bin", prefix)))
        with open(os.path.join(data, "raw", f"test.{lang}"), encoding="utf-8") as f:
            lines = f.read().splitlines()[:n]
        with open(os.path.join(out, "raw", f"test.{lang}"), "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))


def fairseq_cmd(data_bin, ckpt, beam, bs, a, b):
    return [tool("fairseq-generate"), data_bin, "--user-dir", os.path.join(REPO, "fairseq_seqkd"),
            "--task", "seqkd_translation", "--path", ckpt, "--gen-subset", "test", "--beam", str(beam),
            "--batch-size", str(bs), "--max-len-a", str(a), "--max-len-b", str(b),
            "--post-process", "sentencepiece", "--cpu", "--num-workers", "0"]


def parse_fairseq(out, n, words):
    """fairseq-generate's output: ({id: D- text}, {id: hypothesis subwords}, rates)."""
    texts, lengths = {}, {}
    for line in out.splitlines():
        if line.startswith("D-"):
            head, _score, *text = line.split("\t", 2)
            texts[int(head[2:])] = text[0] if text else ""
        elif line.startswith("P-"):
            head, scores = line.split("\t", 1)
            lengths[int(head[2:])] = len(scores.split()) - 1  # positional scores include </s>'s
    if sorted(texts) != list(range(n)):
        sys.exit(f"error: fairseq-generate wrote {len(texts)} D- lines for {n} test sentences")
    m = FAIRSEQ_RATE.search(out)
    if not m:
        sys.exit("error: no 'Translated ...' line in fairseq-generate's output")
    sentences, sps = int(m.group(1).replace(",", "")), float(m.group(4))
    seconds = sentences / sps  # more digits than the printed seconds
    return [texts[i] for i in range(n)], [lengths[i] for i in range(n)], \
        {"sentences/s": sps, "words/s": words / seconds, "seconds": seconds}


def parse_ours(out, err, n):
    lines = out.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != n:
        sys.exit(f"error: seqkd-translate wrote {len(lines)} lines for {n} sources")
    m = OURS_RATE.search(err.strip().splitlines()[-1])
    if not m:
        sys.exit(f"error: seqkd-translate's last stderr line is not its summary: {err.strip()[-300:]}")
    return lines, {"sentences/s": float(m.group(4)), "words/s": float(m.group(5)), "seconds": float(m.group(3))}


def checkpoint_info(ckpt):
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    cfg = state.get("cfg") or {}
    model, task = cfg.get("model"), cfg.get("task")
    arch = getattr(model, "arch", None) or (model.get("arch") if isinstance(model, dict) else None)
    data = getattr(task, "data", None) or (task.get("data") if isinstance(task, dict) else None)
    params = sum(v.numel() for v in state["model"].values())
    return {"path": os.path.abspath(ckpt), "arch": arch, "data": data, "parameters": params,
            "num_updates": (state.get("optimizer_history") or [{}])[-1].get("num_updates")}


def same_file(a, b):
    with open(a, "rb") as f, open(b, "rb") as g:
        return f.read() == g.read()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="a seqkd-prepare output folder")
    p.add_argument("checkpoint", help="the Transformer student")
    p.add_argument("--teacher", help="teacher checkpoint: beam 5, batch size 1, for the paper's speed-up")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-len-a", type=float, default=1.2)
    p.add_argument("--max-len-b", type=int, default=10)
    p.add_argument("--teacher-beam", type=int, default=5)
    p.add_argument("--sentences", type=int, help="only the first N test sentences (trying it out)")
    p.add_argument("--out", help="write the results as JSON")
    args = p.parse_args(argv)
    a, b = args.max_len_a, args.max_len_b

    with open(os.path.join(args.data, "prepare.json")) as f:
        config = json.load(f)["config"]
    src, tgt = config["src_lang"], config["tgt_lang"]
    spm_model = os.path.join(args.data, "spm", f"{src}.model")
    result = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv), "uptime at start": None,
              "host": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
              "max_len_a": a, "max_len_b": b, "batch_sizes": args.batch_sizes, "rounds": args.rounds}
    try:
        result["uptime at start"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    import ctranslate2
    import fairseq
    import torch
    result["versions"] = {"ctranslate2": ctranslate2.__version__, "fairseq": fairseq.__version__,
                          "torch": torch.__version__, "sacrebleu": sacrebleu.__version__}
    result["student"] = checkpoint_info(args.checkpoint)
    if args.teacher:
        result["teacher"] = checkpoint_info(args.teacher)
    for lang in (src, tgt):  # the student's dictionaries must be DATA/bin's
        theirs = os.path.join(result["student"]["data"] or "", f"dict.{lang}.txt")
        if os.path.exists(theirs) and not same_file(theirs, os.path.join(args.data, "bin", f"dict.{lang}.txt")):
            sys.exit(f"error: {theirs} is not {args.data}/bin/dict.{lang}.txt")

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if args.sentences:
            data = os.path.join(tmp, "data")
            subset(args.data, src, tgt, args.sentences, data)
        data_bin = os.path.join(data, "bin")
        with open(os.path.join(data, "raw", f"test.{src}"), "rb") as f:
            source_bytes = f.read()
        sources = source_bytes.decode("utf-8").splitlines()
        with open(os.path.join(data, "raw", f"test.{tgt}"), encoding="utf-8") as f:
            refs = f.read().splitlines()
        n, words = len(sources), sum(len(s.split()) for s in sources)
        if len(refs) != n:
            sys.exit(f"error: {len(refs)} references for {n} sources")

        # 1. export, float32 and int8
        folders = {}
        for q in ("float32", "int8"):
            folders[q] = os.path.join(tmp, q)
            cmd = [tool("seqkd-export"), args.checkpoint, "--out", folders[q], "--spm-model", spm_model,
                   "--data", os.path.join(args.data, "bin")] + (["--quantize", "int8"] if q == "int8" else [])
            run(cmd)
            result.setdefault("export", {})[q] = {
                "command": " ".join(cmd),
                "model.bin bytes": os.path.getsize(os.path.join(folders[q], "model.bin"))}

        # source subwords as fairseq has them (bin) and as the export makes them from the raw text
        from fairseq.data import Dictionary, data_utils
        from fairseq_seqkd.deploy.common import load_spm, source_pieces
        src_dict = Dictionary.load(os.path.join(data_bin, f"dict.{src}.txt"))
        binarized = data_utils.load_indexed_dataset(os.path.join(data_bin, f"test.{src}-{tgt}.{src}"), None)
        src_lengths = [len(binarized[i]) for i in range(n)]  # with </s>
        spm = load_spm(spm_model)
        same_source = [src_dict.encode_line(" ".join(source_pieces(s, spm)), add_if_not_exist=False,
                                            append_eos=True).tolist() == binarized[i].tolist()
                       for i, s in enumerate(sources)]

        # 2. speed, in rounds
        engines = []
        for bs in args.batch_sizes:
            engines.append(("fairseq", bs, fairseq_cmd(data_bin, args.checkpoint, 1, bs, a, b)))
            for q in ("float32", "int8"):
                engines.append((q, bs, [tool("seqkd-translate"), folders[q], "--beam", "1", "--batch-size", str(bs),
                                        "--max-len-a", str(a), "--max-len-b", str(b), "--threads", "1"]))
        if args.teacher:
            engines.append(("teacher", 1, fairseq_cmd(data_bin, args.teacher, args.teacher_beam, 1, a, b)))
        runs = {(name, bs): [] for name, bs, _ in engines}
        outputs, hyp_lengths = {}, {}
        print(f"{n} test sentences, {words} source words; {args.rounds} rounds of {len(engines)} processes",
              file=sys.stderr)
        for r in range(args.rounds):
            for name, bs, cmd in engines:
                if name in ("fairseq", "teacher"):
                    out, err, wall = run(cmd)
                    texts, lengths, rate = parse_fairseq(out + "\n" + err, n, words)
                    hyp_lengths[name, bs] = lengths
                else:
                    out, err, wall = run(cmd, stdin=source_bytes)
                    texts, rate = parse_ours(out, err, n)
                rate["process seconds"] = wall
                runs[name, bs].append(rate)
                if (name, bs) in outputs and outputs[name, bs] != texts:
                    print(f"warning: {name} at batch size {bs}: round {r + 1}'s output differs from round 1's",
                          file=sys.stderr)
                outputs.setdefault((name, bs), texts)
                print(f"round {r + 1}: {name:8} B={bs:<3} {rate['sentences/s']:8.2f} sentences/s "
                      f"{rate['words/s']:9.2f} source words/s ({wall:.1f}s process)", file=sys.stderr, flush=True)
        speed = {}
        for key, rates in runs.items():
            speed[key] = {m: statistics.median(r[m] for r in rates) for m in rates[0]}
        for (name, bs), s in speed.items():
            base = speed[("fairseq", bs)] if name != "teacher" else None
            s["ratio vs fairseq"] = s["words/s"] / base["words/s"] if base else None

        # 3. identity with fairseq-generate, at each batch size
        identity = {}
        for bs in args.batch_sizes:
            fair, ours, lengths = outputs["fairseq", bs], outputs["float32", bs], hyp_lengths["fairseq", bs]
            diffs = []
            for i in range(n):
                if fair[i] != ours[i]:
                    # fairseq's limit applies to the longest source of its batch (batches of similar lengths)
                    limit = int(a * src_lengths[i] + b)
                    diffs.append({"id": i, "fairseq": fair[i], "float32": ours[i],
                                  "fairseq subwords": lengths[i], "limit (own source)": limit,
                                  "fairseq hit limit": lengths[i] >= limit,
                                  "source subwords equal": same_source[i]})
            identity[bs] = {"equal": n - len(diffs), "of": n, "differences": diffs}

        # 4. BLEU
        bleu = {}
        for (name, bs), texts in outputs.items():
            metric = sacrebleu.metrics.BLEU()
            score = metric.corpus_score(texts, [refs])
            bleu[f"{name} B={bs}"] = {"score": score.score, "text": str(score), "signature": str(metric.get_signature())}

    try:
        result["uptime at end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    # int8's agreement with float32 and with fairseq (not expected to be total)
    agree = {bs: {"int8 = float32": sum(x == y for x, y in zip(outputs["int8", bs], outputs["float32", bs])),
                  "int8 = fairseq": sum(x == y for x, y in zip(outputs["int8", bs], outputs["fairseq", bs]))}
             for bs in args.batch_sizes}
    # report
    result.update({"int8 agreement": {f"B={k}": v for k, v in agree.items()}})
    result.update({"sentences": n, "source words": words,
                   "source lines whose SentencePiece encoding is the binarized source": sum(same_source),
                   "runs": {f"{k[0]} B={k[1]}": v for k, v in runs.items()},
                   "speed": {f"{k[0]} B={k[1]}": v for k, v in speed.items()},
                   "identity": {f"B={k}": v for k, v in identity.items()}, "bleu": bleu})
    s, t = result["student"], result.get("teacher")
    print(f"\nuptime at start: {result['uptime at start']}\nuptime at end:   {result.get('uptime at end')}")
    print(f"student {s['path']} ({s['arch']}, {s['parameters']:,} parameters, update {s['num_updates']})"
          + (f"; teacher {t['path']} ({t['arch']}, {t['parameters']:,} parameters)" if t else ""))
    print(f"{n} test sentences ({words} source words), length limit {a} x source + {b}, 1 thread, "
          f"medians of {args.rounds} alternating rounds; decoding-only rates; ctranslate2 "
          f"{ctranslate2.__version__}, fairseq {fairseq.__version__}, torch {torch.__version__}")
    print(f"model.bin: float32 {result['export']['float32']['model.bin bytes']:,} bytes, "
          f"int8 {result['export']['int8']['model.bin bytes']:,} bytes\n")
    print("| engine | beam | batch | BLEU | = fairseq (same B) | sentences/s | source words/s | vs fairseq "
          "| process s |")
    print("|---|---|---|---|---|---|---|---|---|")
    label = {"fairseq": "student, fairseq-generate", "float32": "student, seqkd-translate float32",
             "int8": "student, seqkd-translate int8", "teacher": "teacher, fairseq-generate"}
    for name, bs, _ in engines:
        sp = speed[name, bs]
        same = {"float32": f"{identity[bs]['equal']}/{n}", "int8": f"{agree[bs]['int8 = fairseq']}/{n}"}.get(name, "")
        ratio = f"{sp['ratio vs fairseq']:.2f}x" if sp["ratio vs fairseq"] else ""
        print(f"| {label[name]} | {args.teacher_beam if name == 'teacher' else 1} | {bs} | "
              f"{bleu[f'{name} B={bs}']['score']:.2f} | {same} | {sp['sentences/s']:.2f} | {sp['words/s']:.1f} | "
              f"{ratio} | {sp['process seconds']:.1f} |")
    print(f"\nBLEU signature: {next(iter(bleu.values()))['signature']}")
    b1 = min(args.batch_sizes)
    int8_vs_fp32 = bleu[f"int8 B={b1}"]["score"] - bleu[f"float32 B={b1}"]["score"]
    result["int8 - float32 BLEU"] = int8_vs_fp32
    print(f"int8 - float32 BLEU (B={b1}): {int8_vs_fp32:+.2f}; int8 output = float32's: "
          + ", ".join(f"{v['int8 = float32']}/{n} at B={k}" for k, v in agree.items()))
    if t:
        up = speed["int8", 1]["words/s"] / speed["teacher", 1]["words/s"] if ("int8", 1) in speed else None
        up32 = speed["float32", 1]["words/s"] / speed["teacher", 1]["words/s"] if ("float32", 1) in speed else None
        result["speed-up vs teacher beam 5"] = {"int8 B=1": up, "float32 B=1": up32}
        if up:
            print(f"paper's speed-up: int8 student greedy / teacher beam {args.teacher_beam}, batch size 1, "
                  f"source words/s: {up:.2f}x (float32 student: {up32:.2f}x)")
    print(f"source lines whose SentencePiece encoding equals the binarized source: {sum(same_source)}/{n}")
    for bs in args.batch_sizes:
        diffs = identity[bs]["differences"]
        print(f"\nfloat32 export = fairseq-generate at batch size {bs}: {identity[bs]['equal']}/{n}")
        for d in diffs:
            print(f"  id {d['id']}: fairseq ({d['fairseq subwords']} subwords; its own source's limit "
                  f"{d['limit (own source)']}{': REACHED' if d['fairseq hit limit'] else ''}"
                  f"{'' if d['source subwords equal'] else ', SOURCE SUBWORDS DIFFER'}): {d['fairseq']}")
            print(f"  {' ' * len(str(d['id']))}    float32: {d['float32']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
