"""seqkd-distill: the teacher's beam search over a whole split gives a new training corpus (Seq-KD, §3.2).

    seqkd-distill DATA --path TEACHER.pt --out-prefix OUT [--subset train] [--beam 5]
                  [--max-tokens N | --batch-size N] [--nbest K --select seq-inter [--write-kbest]]
                  [--num-shards N --shard-id I] [--resume] [--binarize DIR]
    seqkd-distill --merge --out-prefix OUT --num-shards N [--binarize DIR]

Writes OUT.SRC and OUT.TGT (SRC/TGT: the data's language codes) in the
original corpus order: line i is sentence i of the split, its source as
binarized and the teacher's output, both as subword text, ready for
``fairseq-preprocess --srcdict DATA/dict.SRC.txt --tgtdict DATA/dict.TGT.txt
--trainpref OUT`` (or use ``--binarize DIR``, which also copies DATA's
valid/test sets and dictionaries into DIR). With ``--nbest K --select
seq-inter`` the kept output is the one of the K with the highest sentence BLEU
to the reference (Seq-Inter, §3.3); ``--write-kbest`` also writes OUT.kbest.

Batches are fixed once for the whole split (fairseq's length-sorted batching),
shard I of N decodes batches I, I+N, I+2N, ... and every finished batch is
appended to OUT.shard-I-of-N.jsonl. So a killed run continues with
``--resume`` and a sharded run merged with ``--merge`` give exactly the
output of one uninterrupted run: each sentence is decoded in the same batch.
"""

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time

from fairseq_seqkd.cli import argument_parser, setup_logging
from fairseq_seqkd.kbest import Sentence, write_kbest_file
from fairseq_seqkd.subwords import REMOVE_BPE
from fairseq_seqkd.textio import atomic_write_lines, fail

logger = logging.getLogger("seqkd-distill")

#: Options that change the output: a resumed or merged run must have used the same ones.
OUTPUT_OPTIONS = ("data", "path", "subset", "source_lang", "target_lang", "beam", "nbest", "select",
                  "remove_bpe", "write_kbest", "max_tokens", "batch_size", "max_len_a", "max_len_b",
                  "lenpen", "num_shards", "fp16")


def get_parser():
    p = argument_parser("seqkd-distill", __doc__)
    p.add_argument("data", nargs="?", help="fairseq binary data folder (as for fairseq-train)")
    p.add_argument("--path", help="the teacher's fairseq checkpoint")
    p.add_argument("--out-prefix", required=True, help="output prefix: OUT.SRC, OUT.TGT, OUT.kbest")
    p.add_argument("--subset", default="train", help="the split to translate")
    p.add_argument("--source-lang", help="source language (default: inferred from DATA)")
    p.add_argument("--target-lang", help="target language (default: inferred from DATA)")
    p.add_argument("--beam", type=int, default=5, help="beam size (the paper: 5)")
    p.add_argument("--nbest", type=int, default=1, help="hypotheses kept per sentence (Seq-Inter: 35)")
    p.add_argument("--select", choices=("top1", "seq-inter"), default="top1",
                   help="top1: the teacher's best (Seq-KD); seq-inter: highest sentence BLEU to the reference")
    p.add_argument("--remove-bpe", choices=REMOVE_BPE, default="sentencepiece",
                   help="subword removal before sentence BLEU (seq-inter)")
    p.add_argument("--write-kbest", action="store_true", help="also write all --nbest hypotheses to OUT.kbest")
    p.add_argument("--max-tokens", type=int, default=None, help="batch size in source tokens")
    p.add_argument("--batch-size", type=int, default=None, help="batch size in sentences")
    p.add_argument("--max-len-a", type=float, default=0, help="output length limit: a * source length + b")
    p.add_argument("--max-len-b", type=int, default=200, help="output length limit: a * source length + b")
    p.add_argument("--lenpen", type=float, default=1.0, help="length penalty, as fairseq-generate")
    p.add_argument("--num-shards", type=int, default=1, help="split the work into this many shards")
    p.add_argument("--shard-id", type=int, default=0, help="the shard this process decodes (0-based)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its .jsonl file")
    p.add_argument("--merge", action="store_true", help="merge the finished shards into OUT.SRC/OUT.TGT")
    p.add_argument("--stop-after-batches", type=int, default=0,
                   help="stop after this many batches (continue later with --resume), e.g. for time-limited jobs")
    p.add_argument("--binarize", metavar="DIR", help="also binarize the output into DIR with DATA's dictionaries")
    p.add_argument("--cpu", action="store_true", help="decode on the CPU even if a GPU is available")
    p.add_argument("--fp16", action="store_true", help="decode in half precision (GPU)")
    return p


def run_file(prefix, shard_id, num_shards):
    return f"{prefix}.shard-{shard_id}-of-{num_shards}.jsonl"


def check_args(args):
    if args.merge:
        return
    if not args.data or not args.path:
        fail("DATA and --path TEACHER.pt are required (or --merge)")
    for name in ("beam", "nbest", "num_shards"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    if args.nbest > args.beam:
        fail(f"--nbest {args.nbest} is larger than --beam {args.beam}")
    if not 0 <= args.shard_id < args.num_shards:
        fail(f"--shard-id {args.shard_id}: must be in [0, --num-shards {args.num_shards})")
    if args.select == "seq-inter" and args.nbest < 2:
        fail("--select seq-inter needs --nbest K with K > 1 (the paper: 35)")
    if not os.path.isdir(args.data):
        fail(f"{args.data}: no such data folder")
    if args.max_tokens is None and args.batch_size is None:
        args.batch_size = 64


class RunFile:
    """The append-only record of finished batches of one shard (JSON lines)."""

    def __init__(self, path, header):
        self.path, self.header = path, header
        self.batches, self.complete = {}, False

    def load(self):
        """Read a previous run; drop a last line cut short by a kill."""
        with open(self.path, "rb") as f:
            raw = f.read()
        lines = raw.split(b"\n")
        keep = len(raw)
        if lines and lines[-1] != b"":  # a partial last line
            keep -= len(lines[-1])
            logger.info("%s: dropping an incomplete last line (the run was killed while writing)", self.path)
        lines = [line for line in raw[:keep].split(b"\n") if line]
        if not lines:
            fail(f"{self.path}: empty run file; remove it and start again")
        try:
            records = [json.loads(line) for line in lines]
        except json.JSONDecodeError as e:
            fail(f"{self.path}: corrupt line ({e.msg}); remove it and start again")
        if records[0].get("config") != self.header["config"]:
            old = records[0].get("config", {})
            changed = sorted(k for k in self.header["config"] if old.get(k) != self.header["config"][k])
            fail(f"{self.path} was started with other options ({', '.join(changed)}); use the same options "
                 f"or remove it")
        for rec in records[1:]:
            if rec.get("complete"):
                self.complete = True
            else:
                self.batches[rec["batch"]] = rec["sentences"]
        if keep != len(raw):
            with open(self.path, "r+b") as f:
                f.truncate(keep)

    def start(self):
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(json.dumps(self.header) + "\n")

    def append(self, record):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()

    def finish(self):
        self.append({"complete": True, "batches": len(self.batches)})
        self.complete = True


def config_of(args, data_info):
    config = {k: getattr(args, k) for k in OUTPUT_OPTIONS}
    config["data"] = os.path.abspath(args.data)
    config["path"] = os.path.abspath(args.path)
    config.update(data_info)
    return config


def setup(args):
    """Task, teacher and the fixed batches of the split."""
    import torch
    from fairseq import utils

    from fairseq_seqkd.tasks.seqkd_translation import setup_data_task
    from fairseq_seqkd.teacher import load_model

    task = setup_data_task(args.data, args.subset, args.source_lang, args.target_lang)
    dataset = task.dataset(args.subset)
    if args.select == "seq-inter" and dataset.tgt is None:
        fail(f"{args.data}: subset '{args.subset}' has no target side: --select seq-inter needs the references")
    model = load_model(args.path, task, what="teacher")
    use_cuda = torch.cuda.is_available() and not args.cpu
    if args.fp16:
        model.half()
    if use_cuda:
        model.cuda()
    # Only the source goes through the teacher (targets are references, never fed to the model), and every
    # line must be kept: a source longer than the teacher's positions stops the run, naming the sentence.
    max_source = utils.resolve_max_positions(task.max_positions(), model.max_positions())[0]
    too_long = (dataset.src_sizes > max_source).nonzero()[0]
    if len(too_long):
        i = int(too_long[0])
        fail(f"{args.data}: sentence {i} of {args.subset} has {dataset.src_sizes[i]} source tokens (with </s>), "
             f"more than the teacher's {max_source} positions ({len(too_long)} such sentence(s)); drop or split "
             f"them before fairseq-preprocess")
    max_positions = (max_source, sys.maxsize)
    batches = task.get_batch_iterator(
        dataset, max_tokens=args.max_tokens, max_sentences=args.batch_size, max_positions=max_positions,
        ignore_invalid_inputs=False, seed=1, num_workers=0, disable_iterator_cache=True,
    ).frozen_batches
    return task, model, dataset, batches, use_cuda


def decode_shard(args):
    from tqdm import tqdm

    from fairseq_seqkd.selection import select_sentences
    from fairseq_seqkd.tasks.seqkd_translation import collate, hypothesis_strings

    path = run_file(args.out_prefix, args.shard_id, args.num_shards)
    if os.path.exists(path) and not args.resume:
        fail(f"{path} exists (an earlier run): add --resume to continue it, or remove it")
    task, model, dataset, batches, use_cuda = setup(args)
    data_info = {"source_lang": task.cfg.source_lang, "target_lang": task.cfg.target_lang,
                 "sentences": len(dataset), "batches": len(batches),
                 "batch_digest": hashlib.sha1(b"".join(b.tobytes() for b in batches)).hexdigest()}
    header = {"seqkd_distill": 1, "config": config_of(args, data_info), "shard_id": args.shard_id}
    run = RunFile(path, header)
    if os.path.exists(path):
        run.load()
    else:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        run.start()
    mine = [(j, b) for j, b in enumerate(batches) if j % args.num_shards == args.shard_id]
    todo = [(j, b) for j, b in mine if j not in run.batches]
    total = sum(len(b) for _, b in mine)
    if run.complete or not todo:
        if not run.complete:
            run.finish()
        logger.info("shard %d of %d: all %d batches done already", args.shard_id, args.num_shards, len(mine))
        return run
    generator = task.build_generator([model], argparse.Namespace(
        beam=args.beam, nbest=args.nbest, max_len_a=args.max_len_a, max_len_b=args.max_len_b, lenpen=args.lenpen))
    logger.info("shard %d of %d: %d of %d batches to decode (%d sentences in the shard, %d in %s), beam %d, %s",
                args.shard_id, args.num_shards, len(todo), len(mine), total, len(dataset), args.subset,
                args.beam, "cuda" if use_cuda else "cpu")
    start, decoded = time.time(), 0
    done_before = total - sum(len(b) for _, b in todo)
    bar = tqdm(total=total, initial=done_before, unit="sent", desc="distill", dynamic_ncols=True,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)
    try:
        for count, (j, batch) in enumerate(todo):
            if args.stop_after_batches and count >= args.stop_after_batches:
                logger.info("stopping after %d batches as asked (--stop-after-batches); continue with --resume",
                            count)
                return run
            sample = collate(dataset, batch, use_cuda)
            hypos = task.inference_step(generator, [model], sample)
            records = []
            entries = hypothesis_strings(task, generator, sample, hypos, args.nbest)
            for entry, choice in zip(entries, select_sentences(entries, args.select, args.remove_bpe)):
                record = {"id": entry.id, "src": entry.source, "tgt": choice.target}
                if args.write_kbest:
                    record["ref"] = entry.reference
                    record["hyps"] = entry.hyps
                records.append(record)
            run.append({"batch": j, "sentences": records})
            run.batches[j] = records
            decoded += len(batch)
            bar.update(len(batch))
    except KeyboardInterrupt:
        bar.close()
        fail(f"interrupted: {len(run.batches)} of {len(mine)} batches are in {path}; continue with --resume")
    bar.close()
    run.finish()
    seconds = time.time() - start
    logger.info("shard %d of %d: decoded %d sentences in %.1fs (%.1f sentences/s)", args.shard_id,
                args.num_shards, decoded, seconds, decoded / max(seconds, 1e-9))
    return run


def merge(args):
    """Collect the finished shards into OUT.SRC / OUT.TGT (/ OUT.kbest), in corpus order."""
    runs = []
    for shard in range(args.num_shards):
        path = run_file(args.out_prefix, shard, args.num_shards)
        if not os.path.exists(path):
            fail(f"{path}: missing (shard {shard} of {args.num_shards} has not run)")
        with open(path, encoding="utf-8") as f:
            header = json.loads(f.readline())
        run = RunFile(path, header)
        run.load()
        if not run.complete:
            fail(f"{path}: shard {shard} is not finished; run it (again) with --resume")
        runs.append(run)
    config = runs[0].header["config"]
    for run in runs[1:]:
        if run.header["config"] != config:
            fail(f"{run.path} and {runs[0].path} were made with different options")
    n = config["sentences"]
    sentences = [None] * n
    for run in runs:
        for records in run.batches.values():
            for rec in records:
                if not 0 <= rec["id"] < n or sentences[rec["id"]] is not None:
                    fail(f"{run.path}: sentence {rec['id']} out of range or decoded twice")
                sentences[rec["id"]] = rec
    missing = [i for i, s in enumerate(sentences) if s is None]
    if missing:
        fail(f"{len(missing)} sentences missing from the shards (first: {missing[:5]})")
    src, tgt = config["source_lang"], config["target_lang"]
    atomic_write_lines(f"{args.out_prefix}.{src}", [s["src"] for s in sentences])
    atomic_write_lines(f"{args.out_prefix}.{tgt}", [s["tgt"] for s in sentences])
    if config["write_kbest"]:
        write_kbest_file(f"{args.out_prefix}.kbest",
                         [Sentence(s["id"], s["src"], s["ref"], [tuple(h) for h in s["hyps"]]) for s in sentences],
                         config["nbest"])
    empty = sum(1 for s in sentences if not s["tgt"].strip())
    logger.info("wrote %s.{%s,%s}: %d sentences (%d empty outputs)%s", args.out_prefix, src, tgt, n, empty,
                f" and {args.out_prefix}.kbest" if config["write_kbest"] else "")
    for run in runs:
        os.remove(run.path)
    return config


def binarize(prefix, config, dest):
    """fairseq-preprocess the distilled text with the original dictionaries; copy valid/test sets."""
    from fairseq import options
    from fairseq_cli import preprocess

    data, src, tgt = config["data"], config["source_lang"], config["target_lang"]
    staging = dest.rstrip("/") + ".tmp"
    if os.path.exists(staging):
        shutil.rmtree(staging)
    args = options.get_preprocessing_parser().parse_args([
        "--source-lang", src, "--target-lang", tgt, "--trainpref", prefix, "--destdir", staging,
        "--srcdict", os.path.join(data, f"dict.{src}.txt"), "--tgtdict", os.path.join(data, f"dict.{tgt}.txt"),
        "--workers", "1",
    ])
    preprocess.main(args)
    for name in os.listdir(data):
        if not name.startswith(("train.", "dict.", "preprocess.log")):
            shutil.copy(os.path.join(data, name), staging)
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.replace(staging, dest)
    logger.info("binarized into %s (train from %s.{%s,%s}; valid/test from %s)", dest, prefix, src, tgt, data)


def distill(args):
    check_args(args)
    if not args.merge:
        run = decode_shard(args)
        if not run.complete:
            return None  # stopped early on purpose (--stop-after-batches)
        if args.num_shards > 1:
            logger.info("shard %d done; when all %d shards are done: seqkd-distill --merge --out-prefix %s "
                        "--num-shards %d", args.shard_id, args.num_shards, args.out_prefix, args.num_shards)
            return None
    config = merge(args)
    if args.binarize:
        binarize(args.out_prefix, config, args.binarize)
    return config


def cli_main(argv=None):
    setup_logging()
    args = get_parser().parse_args(argv)
    distill(args)


if __name__ == "__main__":
    cli_main()
