"""word_kd training-step cost: time vs cross_entropy, and peak memory of --kd-topk vs full.

Time: one training step (forward + backward) of the same student with
fairseq's ``cross_entropy`` and with ``word_kd`` (teacher twice the student's
width), alternating A B A B in one process; also the teacher's forward alone,
which gives the ideal ratio 1 + teacher forward / student step; and ``word_kd
--kd-topk-store`` (top 8 read from a seqkd-topk store on disk: no teacher).

Memory: peak resident memory of a fresh process that runs a few steps with
``cross_entropy``, ``word_kd`` over the full vocabulary, and ``--kd-topk 8``.

    python benchmarks/bench_word_kd.py [--student luong_lstm_2x128] [--vocab 8000] [--mem-vocab 32000]
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from fairseq.criterions import FairseqCriterion
from fairseq.criterions.cross_entropy import CrossEntropyCriterion
from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

import fairseq_seqkd  # noqa: F401
from fairseq_seqkd.criterions.word_kd import WordKDCriterion
from fairseq_seqkd.models.luong_lstm import LUONG_SHAPES
from fairseq_seqkd.teacher import FrozenTeacher
from fairseq_seqkd.topk_store import ShardWriter, TopKStore, batch_topk, ids_dtype, merge_shards, shard_folder


class _Task:
    cfg = argparse.Namespace(left_pad_source=True, train_subset="train")

    def __init__(self, vocab):
        d = Dictionary()
        for i in range(vocab - len(d)):
            d.add_symbol(f"w{i}")
        self.source_dictionary = self.target_dictionary = d


class _WordKD(WordKDCriterion):
    """The real criterion (same forward), given a teacher model instead of a checkpoint path."""

    def __init__(self, task, teacher_model, alpha=0.5, temperature=1.0, topk=0, store=None):
        FairseqCriterion.__init__(self, task)
        self.alpha, self.temperature, self.topk, self.sentence_avg = alpha, temperature, topk, False
        self.teacher = FrozenTeacher(teacher_model)
        self.store = TopKStore.open(store) if store else None
        self._split_checked = None

    def _check_split(self):
        """The synthetic batch has no dataset: the split check (once per run, not per step) is left out."""


def make_store(folder, teacher_model, task, sample, k):
    """A seqkd-topk store of the batch's sentences (ids 0 .. B-1), through the library's own writer and merge."""
    out = os.path.join(folder, "store")
    vocab = len(task.target_dictionary)
    shard = ShardWriter.open(shard_folder(out, 0, 1), create=True)
    shard.resume({"k": k, "ids_dtype": ids_dtype(vocab).name, "sentences": sample["target"].size(0),
                  "target_tokens": sample["ntokens"], "num_shards": 1})
    shard.commit(0, *batch_topk(FrozenTeacher(teacher_model), sample, k, task.target_dictionary.pad(),
                                ids_dtype(vocab)))
    shard.finish()
    merge_shards(out, 1, {0: shard})
    return out


def build(layers, units, task):
    args = argparse.Namespace(arch="lstm", criterion="cross_entropy", encoder_layers=layers, decoder_layers=layers,
                              encoder_embed_dim=units, decoder_embed_dim=units, encoder_hidden_size=units,
                              decoder_hidden_size=units, decoder_out_embed_dim=units)
    ARCH_CONFIG_REGISTRY["luong_lstm_2x128"](args)  # Luong defaults; the sizes above win
    return ARCH_MODEL_REGISTRY["lstm"].build_model(args, task)


def make_sample(task, batch, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    vocab = len(task.target_dictionary)
    src = torch.randint(4, vocab, (batch, length), generator=g)
    tgt = torch.randint(4, vocab, (batch, length), generator=g)
    prev = torch.cat([torch.full((batch, 1), task.target_dictionary.eos()), tgt[:, :-1]], dim=1)
    return {"net_input": {"src_tokens": src, "src_lengths": torch.full((batch,), length),
                          "prev_output_tokens": prev},
            "target": tgt, "ntokens": batch * length, "nsentences": batch, "id": torch.arange(batch)}


def step(criterion, model, sample):
    model.zero_grad(set_to_none=True)
    loss, _, _ = criterion(model, sample)
    loss.backward()


def timed(fn, repeats):
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def memory_child(mode, student_arch, vocab, batch, length):
    task = _Task(vocab)
    layers, units = LUONG_SHAPES[student_arch]
    student = build(layers, units, task).train()
    sample = make_sample(task, batch, length)
    if mode == "cross_entropy":
        crit = CrossEntropyCriterion(task, False)
    else:
        crit = _WordKD(task, build(layers, 2 * units, task), topk=8 if mode == "topk8" else 0)
    step(crit, student, sample)  # allocate once, then measure the steady state peak
    for _ in range(2):
        step(crit, student, sample)
    print(json.dumps({"mode": mode, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--student", default="luong_lstm_2x128", choices=sorted(LUONG_SHAPES))
    p.add_argument("--vocab", type=int, default=8000, help="vocabulary for the timing part")
    p.add_argument("--mem-vocab", type=int, default=32000, help="vocabulary for the memory part")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--length", type=int, default=25)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        return memory_child(args.memory_child, args.student, args.mem_vocab, args.batch, args.length)

    torch.manual_seed(0)
    layers, units = LUONG_SHAPES[args.student]
    task = _Task(args.vocab)
    student = build(layers, units, task).train()
    teacher = build(layers, 2 * units, task)
    sample = make_sample(task, args.batch, args.length)
    ce = CrossEntropyCriterion(task, False)
    kd_full = _WordKD(task, teacher)
    kd_top8 = _WordKD(task, teacher, topk=8)
    store_dir = tempfile.mkdtemp(prefix="bench_word_kd.")
    kd_store = _WordKD(task, teacher, topk=8, store=make_store(store_dir, teacher, task, sample, 8))
    frozen = FrozenTeacher(teacher)
    runs = {name: [] for name in ("cross_entropy", "word_kd", "word_kd_top8", "word_kd_top8_store",
                                  "teacher_forward")}
    for fn in (lambda: step(ce, student, sample), lambda: step(kd_full, student, sample),
               lambda: step(kd_store, student, sample)):
        fn()  # warm-up
    for _ in range(args.repeats):
        runs["cross_entropy"] += timed(lambda: step(ce, student, sample), 1)
        runs["word_kd"] += timed(lambda: step(kd_full, student, sample), 1)
        runs["word_kd_top8"] += timed(lambda: step(kd_top8, student, sample), 1)
        runs["word_kd_top8_store"] += timed(lambda: step(kd_store, student, sample), 1)
        runs["teacher_forward"] += timed(lambda: frozen.logits(sample["net_input"]), 1)
    shutil.rmtree(store_dir)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"student {args.student}, teacher {layers}x{2 * units}, vocab {args.vocab}, batch {args.batch}x"
          f"{args.length} tokens, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for k, v in med.items():
        print(f"  {k:16s} median {v * 1000:8.1f} ms  (runs: {', '.join(f'{t * 1000:.0f}' for t in runs[k])})")
    ideal = 1 + med["teacher_forward"] / med["cross_entropy"]
    print(f"  step time word_kd / cross_entropy: {med['word_kd'] / med['cross_entropy']:.2f} "
          f"(top-8: {med['word_kd_top8'] / med['cross_entropy']:.2f}; top-8 from --kd-topk-store: "
          f"{med['word_kd_top8_store'] / med['cross_entropy']:.2f}); "
          f"ideal 1 + teacher forward / student step = {ideal:.2f}")

    print(f"peak memory, fresh process per mode, vocab {args.mem_vocab}:")
    peaks = {}
    for mode in ("cross_entropy", "word_kd_full", "topk8"):
        out = subprocess.run([sys.executable, __file__, "--memory-child", mode, "--student", args.student,
                              "--mem-vocab", str(args.mem_vocab), "--batch", str(args.batch),
                              "--length", str(args.length)], capture_output=True, text=True, check=True)
        peaks[mode] = json.loads(out.stdout.strip().splitlines()[-1])["max_rss_mb"]
        print(f"  {mode:16s} {peaks[mode]:8.0f} MB")
    extra_full = peaks["word_kd_full"] - peaks["cross_entropy"]
    extra_top8 = peaks["topk8"] - peaks["cross_entropy"]
    print(f"  memory above cross_entropy: full {extra_full:.0f} MB, top-8 {extra_top8:.0f} MB")


if __name__ == "__main__":
    main()
