"""Seq-KD (Kim & Rush 2016, §3.2): the teacher's beam search over a whole split is the student's new
training corpus; with Seq-Inter (§3.3) the kept hypothesis is the one of the K-best list closest to the
reference by sentence BLEU.

Batches are fixed once for the whole split (fairseq's length-sorted batching, :mod:`fairseq_seqkd.generation`)
and shard I of N decodes batches I, I+N, I+2N, ... Every finished batch is appended to the shard's journal
(``OUT.shard-I-of-N.jsonl``), so a killed run continues where it stopped (``resume``) and the shards merged
give exactly the output of one uninterrupted run: each sentence is decoded in the same batch. The merge
writes ``OUT.SRC`` and ``OUT.TGT`` in corpus order, atomically, only when every shard is finished.
"""

import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from typing import Optional

from fairseq_seqkd.binarize import binarize
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.kbest import Sentence, in_id_order, write_kbest_file
from fairseq_seqkd.selection import select_sentences
from fairseq_seqkd.textio import atomic_write_lines

logger = logging.getLogger("seqkd-distill")

#: Options that change the output: a resumed or merged run must have used the same ones.
OUTPUT_OPTIONS = ("data", "path", "subset", "source_lang", "target_lang", "beam", "nbest", "select",
                  "remove_bpe", "write_kbest", "max_tokens", "batch_size", "max_len_a", "max_len_b",
                  "lenpen", "num_shards", "fp16")


@dataclasses.dataclass
class DistillOptions:
    """What seqkd-distill does (its command-line options, same names)."""

    out_prefix: str
    data: Optional[str] = None  # fairseq binary data folder
    path: Optional[str] = None  # the teacher's checkpoint
    subset: str = "train"
    source_lang: Optional[str] = None
    target_lang: Optional[str] = None
    beam: int = 5
    nbest: int = 1
    select: str = "top1"  # or "seq-inter"
    remove_bpe: str = "sentencepiece"
    write_kbest: bool = False
    max_tokens: Optional[int] = None
    batch_size: Optional[int] = None  # 64 when neither max_tokens nor batch_size is given
    max_len_a: float = 0.0
    max_len_b: int = 200
    lenpen: float = 1.0
    num_shards: int = 1
    shard_id: int = 0
    resume: bool = False
    merge: bool = False
    stop_after_batches: int = 0
    binarize: Optional[str] = None
    cpu: bool = False
    fp16: bool = False

    def checked(self):
        """A copy with defaults filled in; SeqKDError on options that do not go together."""
        if self.merge:
            return self
        if not self.data or not self.path:
            raise SeqKDError("DATA and --path TEACHER.pt are required (or --merge)")
        for name in ("beam", "nbest", "num_shards"):
            if getattr(self, name) < 1:
                raise SeqKDError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        if self.nbest > self.beam:
            raise SeqKDError(f"--nbest {self.nbest} is larger than --beam {self.beam}")
        if not 0 <= self.shard_id < self.num_shards:
            raise SeqKDError(f"--shard-id {self.shard_id}: must be in [0, --num-shards {self.num_shards})")
        if self.select == "seq-inter" and self.nbest < 2:
            raise SeqKDError("--select seq-inter needs --nbest K with K > 1 (the paper: 35)")
        if not os.path.isdir(self.data):
            raise SeqKDError(f"{self.data}: no such data folder")
        if self.max_tokens is None and self.batch_size is None:
            return dataclasses.replace(self, batch_size=64)
        return self


def journal_path(prefix, shard_id, num_shards):
    return f"{prefix}.shard-{shard_id}-of-{num_shards}.jsonl"


class ShardJournal:
    """The append-only record of the finished batches of one shard (JSON lines; the first is the header)."""

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
            raise SeqKDError(f"{self.path}: empty run file; remove it and start again")
        try:
            records = [json.loads(line) for line in lines]
        except json.JSONDecodeError as e:
            raise SeqKDError(f"{self.path}: corrupt line ({e.msg}); remove it and start again") from None
        if records[0].get("config") != self.header["config"]:
            old = records[0].get("config", {})
            changed = sorted(k for k in self.header["config"] if old.get(k) != self.header["config"][k])
            raise SeqKDError(f"{self.path} was started with other options ({', '.join(changed)}); use the same "
                             f"options or remove it")
        for rec in records[1:]:
            if rec.get("complete"):
                self.complete = True
            else:
                self.batches[rec["batch"]] = rec["sentences"]
        if keep != len(raw):
            with open(self.path, "r+b") as f:
                f.truncate(keep)

    @classmethod
    def read(cls, path):
        """A journal as it is on disk (for the merge)."""
        with open(path, encoding="utf-8") as f:
            header = json.loads(f.readline())
        journal = cls(path, header)
        journal.load()
        return journal

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


def _journal_config(options, data_info):
    config = {k: getattr(options, k) for k in OUTPUT_OPTIONS}
    config["data"] = os.path.abspath(options.data)
    config["path"] = os.path.abspath(options.path)
    config.update(data_info)
    return config


def generate_shard(options: DistillOptions) -> ShardJournal:
    """Decode this shard's batches that its journal does not hold yet; return the journal."""
    from tqdm import tqdm

    from fairseq_seqkd import generation

    path = journal_path(options.out_prefix, options.shard_id, options.num_shards)
    if os.path.exists(path) and not options.resume:
        raise SeqKDError(f"{path} exists (an earlier run): add --resume to continue it, or remove it")
    task = generation.load_split(options.data, options.subset, options.source_lang, options.target_lang)
    dataset = task.dataset(options.subset)
    if options.select == "seq-inter" and dataset.tgt is None:
        raise SeqKDError(f"{options.data}: subset '{options.subset}' has no target side: --select seq-inter "
                         f"needs the references")
    model, use_cuda = generation.load_for_generation(options.path, task, "teacher", options.cpu, options.fp16)
    batches = generation.fixed_batches(task, model, options.subset, options.max_tokens, options.batch_size,
                                       what="teacher")
    data_info = {"source_lang": task.cfg.source_lang, "target_lang": task.cfg.target_lang,
                 "sentences": len(dataset), "batches": len(batches),
                 "batch_digest": hashlib.sha1(b"".join(b.tobytes() for b in batches)).hexdigest()}
    journal = ShardJournal(path, {"seqkd_distill": 1, "config": _journal_config(options, data_info),
                                  "shard_id": options.shard_id})
    if os.path.exists(path):
        journal.load()
    else:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        journal.start()
    shard, shards = options.shard_id, options.num_shards
    mine = [(j, b) for j, b in enumerate(batches) if j % shards == shard]
    todo = [(j, b) for j, b in mine if j not in journal.batches]
    total = sum(len(b) for _, b in mine)
    if journal.complete or not todo:
        if not journal.complete:
            journal.finish()
        logger.info("shard %d of %d: all %d batches done already", shard, shards, len(mine))
        return journal
    generator = generation.Generator(task, model, beam=options.beam, nbest=options.nbest,
                                     max_len_a=options.max_len_a, max_len_b=options.max_len_b, lenpen=options.lenpen)
    logger.info("shard %d of %d: %d of %d batches to decode (%d sentences in the shard, %d in %s), beam %d, %s",
                shard, shards, len(todo), len(mine), total, len(dataset), options.subset, options.beam,
                "cuda" if use_cuda else "cpu")
    start, decoded = time.time(), 0
    bar = tqdm(total=total, initial=total - sum(len(b) for _, b in todo), unit="sent", desc="distill",
               dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    try:
        for count, (j, batch) in enumerate(todo):
            if options.stop_after_batches and count >= options.stop_after_batches:
                logger.info("stopping after %d batches as asked (--stop-after-batches); continue with --resume",
                            count)
                return journal
            sample = generation.collate(dataset, batch, use_cuda)
            entries = generator.kbest_sentences(sample, generator.generate(sample))
            records = []
            for entry, choice in zip(entries, select_sentences(entries, options.select, options.remove_bpe)):
                record = {"id": entry.id, "src": entry.source, "tgt": choice.target}
                if options.write_kbest:
                    record["ref"] = entry.reference
                    record["hyps"] = entry.hyps
                records.append(record)
            journal.append({"batch": j, "sentences": records})
            journal.batches[j] = records
            decoded += len(batch)
            bar.update(len(batch))
    except KeyboardInterrupt:
        raise SeqKDError(f"interrupted: {len(journal.batches)} of {len(mine)} batches are in {path}; continue "
                         f"with --resume") from None
    finally:
        bar.close()
    journal.finish()
    seconds = time.time() - start
    logger.info("shard %d of %d: decoded %d sentences in %.1fs (%.1f sentences/s)", shard, shards, decoded,
                seconds, decoded / max(seconds, 1e-9))
    return journal


def merge_shards(out_prefix, num_shards):
    """Collect the finished shards into OUT.SRC / OUT.TGT (/ OUT.kbest), in corpus order; remove the
    journals. Returns the shards' common configuration."""
    journals = []
    for shard in range(num_shards):
        path = journal_path(out_prefix, shard, num_shards)
        if not os.path.exists(path):
            raise SeqKDError(f"{path}: missing (shard {shard} of {num_shards} has not run)")
        journal = ShardJournal.read(path)
        if not journal.complete:
            raise SeqKDError(f"{path}: shard {shard} is not finished; run it (again) with --resume")
        journals.append(journal)
    config = journals[0].header["config"]
    for journal in journals[1:]:
        if journal.header["config"] != config:
            raise SeqKDError(f"{journal.path} and {journals[0].path} were made with different options")
    records = sorted(((rec["id"], 0, rec) for journal in journals for batch in journal.batches.values()
                      for rec in batch), key=lambda item: item[0])
    sentences = list(in_id_order(journal_path(out_prefix, "*", num_shards), records, config["sentences"],
                                 expected_from="the data"))
    src, tgt = config["source_lang"], config["target_lang"]
    atomic_write_lines(f"{out_prefix}.{src}", [s["src"] for s in sentences])
    atomic_write_lines(f"{out_prefix}.{tgt}", [s["tgt"] for s in sentences])
    if config["write_kbest"]:
        write_kbest_file(f"{out_prefix}.kbest",
                         [Sentence(s["id"], s["src"], s["ref"], [tuple(h) for h in s["hyps"]]) for s in sentences],
                         config["nbest"])
    empty = sum(1 for s in sentences if not s["tgt"].strip())
    logger.info("wrote %s.{%s,%s}: %d sentences (%d empty outputs)%s", out_prefix, src, tgt, len(sentences), empty,
                f" and {out_prefix}.kbest" if config["write_kbest"] else "")
    for journal in journals:
        os.remove(journal.path)
    return config


def binarize_distilled(prefix, config, dest):
    """The distilled text binarized with the original data's dictionaries, its valid/test sets alongside."""
    data, src, tgt = config["data"], config["source_lang"], config["target_lang"]
    return binarize(dest, src, tgt, prefix, srcdict=os.path.join(data, f"dict.{src}.txt"),
                    tgtdict=os.path.join(data, f"dict.{tgt}.txt"), copy_from=data)


def distill(options: DistillOptions):
    """Run seqkd-distill: decode this shard (unless ``merge``), then merge and binarize when the output is
    complete. Returns the configuration of the merged output, or None when shards remain (or the run
    stopped early on purpose)."""
    options = options.checked()
    if not options.merge:
        journal = generate_shard(options)
        if not journal.complete:
            return None  # stopped early on purpose (--stop-after-batches)
        if options.num_shards > 1:
            logger.info("shard %d done; when all %d shards are done: seqkd-distill --merge --out-prefix %s "
                        "--num-shards %d", options.shard_id, options.num_shards, options.out_prefix,
                        options.num_shards)
            return None
    config = merge_shards(options.out_prefix, options.num_shards)
    if options.binarize:
        binarize_distilled(options.out_prefix, config, options.binarize)
    return config
