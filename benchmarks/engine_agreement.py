"""How exact a fast decoding engine is on a real teacher: its distilled corpus and test BLEU against fairseq's.

For one teacher and one engine (``seqkd-distill --engine``), in one run on the same machine:

1. the training split distilled by the fairseq engine (the reference) and by the engine in each
   ``--quantize`` precision, all with the same batches, beam and length limits (the Bible presets':
   ``--max-len-a 1.2 --max-len-b 10``): the share of sentences whose output is the fairseq engine's, how
   many differ, and the corpus BLEU of the engine's output against the fairseq engine's as reference
   (100 = the same corpus);
2. the test split decoded the same way by each, scored against the gold references (``--refs``): the
   teacher's test BLEU per engine and precision, and its difference to the fairseq engine and to the
   engine's float32;
3. each run's decoding speed (sentences/s, model loading included; the runs follow one another).

BLEU: sacrebleu's corpus BLEU (its signature is printed) on the texts after removing SentencePiece.

    python benchmarks/engine_agreement.py DATA --path TEACHER.pt --engine seqkd --quantize float32 int8 \\
        --refs RAW/test.en [--subset train] [--test-subset test] [--threads 1] [--max-tokens 6000] [--held-to-avx2]

``--held-to-avx2`` adds each int8 precision once more with the int8 libraries held to AVX2 (no VNNI), as an
AVX2-only CPU runs them (docs/engines.md, "int8 and the CPU").
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

BIBLE_LIMITS = ["--max-len-a", "1.2", "--max-len-b", "10"]


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


#: what an AVX2-only x86-64 CPU runs, on any x86-64 CPU: the int8 libraries held to AVX2 (no VNNI)
HELD_TO_AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}


def distill(args, subset, engine, quantize, out, held=False):
    """Target lines of ``seqkd-distill`` on ``subset`` with this engine, and its seconds (whole process);
    ``held``: with the int8 libraries held to AVX2 (:data:`HELD_TO_AVX2`)."""
    argv = [os.path.join(os.path.dirname(sys.executable), "seqkd-distill"), args.data, "--path", args.path,
            "--subset", subset, "--beam", str(args.beam), "--max-tokens", str(args.max_tokens), "--cpu",
            "--out-prefix", out, "--engine", engine, *BIBLE_LIMITS]
    if quantize:
        argv += ["--engine-quantize", quantize]
    if args.engine_cache:
        argv += ["--engine-cache", args.engine_cache]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               **(HELD_TO_AVX2 if held else {}))
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"seqkd-distill failed ({engine} {quantize}):\n{proc.stderr[-2000:]}")
    target = next(f for f in os.listdir(os.path.dirname(out))
                  if f.startswith(os.path.basename(out) + ".") and f.rsplit(".", 1)[1] == args.target_lang)
    return read(os.path.join(os.path.dirname(out), target)), seconds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("--path", required=True, help="the teacher's checkpoint")
    p.add_argument("--engine", required=True, choices=("ctranslate2", "seqkd"))
    p.add_argument("--quantize", nargs="+", default=["float32"], help="the engine's precisions to compare")
    p.add_argument("--refs", required=True, help="the test split's gold references (raw text)")
    p.add_argument("--subset", default="train")
    p.add_argument("--test-subset", default="test")
    p.add_argument("--target-lang", default="en")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=6000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--held-to-avx2", action="store_true",
                   help="also run each int8 precision with the int8 libraries held to AVX2 (ONEDNN_MAX_CPU_ISA, "
                        "MKL_ENABLE_INSTRUCTIONS, FBGEMM_ENABLE_INSTRUCTIONS): an AVX2-only CPU's int8, on any CPU")
    p.add_argument("--engine-cache", help="where ctranslate2 keeps its converted teacher (default: a temporary folder)")
    args = p.parse_args(argv)
    import sacrebleu
    from fairseq_seqkd.subwords import remove_subwords_all

    tmp = tempfile.mkdtemp()
    args.engine_cache = args.engine_cache or tmp
    variants = [("fairseq", None)] + [(args.engine, q) for q in args.quantize]
    variants += [(args.engine, q, "AVX2") for q in args.quantize if args.held_to_avx2 and q.startswith("int8")]
    label = {v: v[0] + (f" {v[1]}" if v[1] else "") + (" (held to AVX2)" if len(v) > 2 else "") for v in variants}
    outputs, tests, seconds = {}, {}, {}
    for v in variants:
        folder = os.path.join(tmp, "-".join(map(str, v)))
        outputs[v], seconds[v] = distill(args, args.subset, *v[:2], os.path.join(folder, "train"), len(v) > 2)
        tests[v], _ = distill(args, args.test_subset, *v[:2], os.path.join(folder, "test"), len(v) > 2)
    refs = read(args.refs)
    reference, signature = outputs[("fairseq", None)], None
    words = {v: remove_subwords_all(outputs[v], "sentencepiece") for v in variants}
    test_bleu = {}
    for v in variants:
        bleu = sacrebleu.BLEU()
        hyps = remove_subwords_all(tests[v], "sentencepiece")
        assert len(hyps) == len(refs), (len(hyps), len(refs))
        test_bleu[v] = bleu.corpus_score(hyps, [refs]).score
        signature = bleu.get_signature()
    n = len(reference)
    print(f"teacher {args.path}; {args.subset}: {n} sentences, {args.test_subset}: {len(refs)}; beam {args.beam}, "
          f"--max-tokens {args.max_tokens}, {' '.join(BIBLE_LIMITS)}, {args.threads} thread(s); BLEU: sacrebleu "
          f"({signature})")
    print(f"| engine | {args.subset}: outputs = fairseq's | differ | BLEU vs fairseq's corpus | {args.subset} "
          f"sentences/s | {args.test_subset} BLEU | Δ vs fairseq | Δ vs {args.engine} float32 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    base32 = (args.engine, "float32") if (args.engine, "float32") in test_bleu else None
    for v in variants:
        same = sum(a == b for a, b in zip(outputs[v], reference))
        assert len(outputs[v]) == n
        agree = sacrebleu.corpus_bleu(words[v], [words[("fairseq", None)]]).score
        d32 = f"{test_bleu[v] - test_bleu[base32]:+.2f}" if base32 and v != base32 and v[0] != "fairseq" else ""
        print(f"| {label[v]} | {same}/{n} ({100 * same / n:.2f}%) | {n - same} | {agree:.2f} | {n / seconds[v]:.1f} | "
              f"{test_bleu[v]:.2f} | {test_bleu[v] - test_bleu[('fairseq', None)]:+.2f} | {d32} |", flush=True)


if __name__ == "__main__":
    main()
