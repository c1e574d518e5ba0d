"""Seq-KD (Kim & Rush 2016, §3.2): the teacher's beam search over a whole split is the student's new
training corpus; with Seq-Inter (§3.3) the kept hypothesis is the one of the K-best list closest to the
reference by sentence BLEU. With ``keep`` n > 1, n hypotheses per sentence are kept (top-n, MBR-n or
Seq-Inter-n, :mod:`fairseq_seqkd.selection`), on consecutive lines, and ``OUT.ids`` names each line's
sentence (docs/multi_output.md).

Batches are fixed once for the whole split (fairseq's length-sorted batching, :mod:`fairseq_seqkd.generation`)
and shard I of N decodes batches I, I+N, I+2N, ... Every finished batch is appended to the shard's journal
(``OUT.shard-I-of-N.jsonl``, :class:`ShardJournal`), so the shards merged give exactly the output of one
uninterrupted run: each sentence is decoded in the same batch. The merge writes ``OUT.SRC`` and ``OUT.TGT``
(and ``OUT.kbest``) in corpus order, atomically, only when every shard is finished, without holding the
corpus in memory: an on-disk index of where each sentence lies in the journals, then one pass in id order.

What a rerun does: a run killed anywhere and rerun with the same options (and ``--resume``) continues from
its journal (a batch is in it whole or not at all) and ends with the same bytes as an uninterrupted run.
The journals are removed only when the whole step, merge *and* ``--binarize``, has succeeded, so a rerun
after a failed or killed merge or binarization only merges (and binarizes) again. A journal has one writer:
a run holds an exclusive ``flock`` on it from start to end (merges take all of them), and a second run on
it stops at once; the lock dies with its process, so a killed run never leaves a stale one. The journal
names the teacher by path *and* content (sha256): a resume after the checkpoint changed, and a merge of
shards decoded with different versions of it, are refused.
``--stop-after-batches`` ends with :class:`~fairseq_seqkd.errors.StoppedEarly` (exit status 3).
"""

import contextlib
import dataclasses
import json
import logging
import os
from typing import Dict, List, Optional

from fairseq_seqkd import sharded_job
from fairseq_seqkd.binarize import binarize
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.kbest import Sentence, kbest_header, write_kbest_rows
from fairseq_seqkd.selection import check_keep, select_n
from fairseq_seqkd.sharded_job import BaseJournal
from fairseq_seqkd.textio import atomic_open, file_sha256

logger = logging.getLogger("seqkd-distill")

#: Options that change the output: a resumed or merged run must have used the same ones.
#: ``keep`` is left out of a journal's config when it is 1 and ``mbr_utility`` unless ``select`` is mbr, so
#: that journals started before these options existed are still resumed and merged.
OUTPUT_OPTIONS = ("data", "path", "subset", "source_lang", "target_lang", "beam", "nbest", "select",
                  "remove_bpe", "write_kbest", "max_tokens", "batch_size", "max_len_a", "max_len_b",
                  "lenpen", "num_shards", "fp16", "engine", "engine_quantize", "keep", "mbr_utility")

#: The journal format (the header's ``seqkd_distill``), the newest this version writes and reads: 3, a
#: journal of ``keep`` > 1 (its sentences hold ``"tgts"``). The reader of format 2 (seqkd-distill before
#: ``--keep``) accepts exactly 2 and reads ``"tgt"`` of every sentence: a ``keep`` > 1 journal marked 2 made it
#: fail with a KeyError in the merge, one marked 3 it refuses in one line ("not a seqkd-distill journal (format
#: 3)"). A ``keep`` 1 journal is the same as before and stays format 2, so journals of either version resume
#: and merge in the other. 1 was one line per batch, kept whole in memory.
JOURNAL_FORMAT = 3
#: The formats this version reads (2 with ``keep`` > 1: written before the bump, upgraded when resumed).
READABLE_FORMATS = (2, 3)


def journal_format(keep):
    """The format of a journal of ``keep`` outputs per sentence: 2 for one (what every version reads), else
    :data:`JOURNAL_FORMAT`."""
    return 2 if keep == 1 else JOURNAL_FORMAT

#: Sentences per block when the merge reads its index (a bounded slice of an on-disk array).
_INDEX_BLOCK = 1024
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
    select: str = "top1"  # or "top-n", "mbr", "seq-inter" (fairseq_seqkd.selection.MODES)
    keep: int = 1  # outputs per sentence
    mbr_utility: str = "chrf"  # or "bleu" (--select mbr)
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
    engine: str = "fairseq"  # or "ctranslate2", "seqkd" (fairseq_seqkd.engines)
    engine_quantize: Optional[str] = None  # the engine's default when None
    engine_cache: Optional[str] = None  # where ctranslate2 keeps converted teachers (default: beside them)

    def checked(self):
        """A copy with defaults filled in; SeqKDError on options that do not go together."""
        if self.merge:
            return self
        from fairseq_seqkd.engines import check_engine

        quantize = check_engine(self.engine, self.engine_quantize, self.fp16)
        if quantize != self.engine_quantize:
            return dataclasses.replace(self, engine_quantize=quantize).checked()
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
        if self.select == "mbr" and self.nbest < 2:
            raise SeqKDError("--select mbr needs --nbest K with K > 1: the other hypotheses are the pseudo-references")
        check_keep(self.select, self.keep, self.nbest, self.mbr_utility)
        if not os.path.isdir(self.data):
            raise SeqKDError(f"{self.data}: no such data folder")
        if self.max_tokens is None and self.batch_size is None:
            return dataclasses.replace(self, batch_size=64)
        return self


def journal_path(prefix, shard_id, num_shards):
    return f"{prefix}.shard-{shard_id}-of-{num_shards}.jsonl"


def _sentence_id(raw):
    """The id of a sentence line (``{"id": N, ...}``, as :meth:`ShardJournal.commit` writes it), else None."""
    if raw.startswith(b'{"id": '):
        end = raw.find(b",", 7)
        if end > 7 and raw[7:end].isdigit():
            return int(raw[7:end])
    return None


class ShardJournal(BaseJournal):
    """The append-only record of the finished batches of one shard, locked by its one user
    (:class:`~fairseq_seqkd.sharded_job.BaseJournal`: locking, resume, finish, the merge's driver).

    JSON lines: a header (``{"seqkd_distill": F, "config": ..., "shard_id": I}``, F: :func:`journal_format`),
    then for every finished batch one line per sentence (``{"id": ..., "src": ..., "tgt": ...[, "ref": ...,
    "hyps": ...]}``; with ``keep`` > 1 ``"tgts": [...]``, the kept outputs in order, instead of ``"tgt"``) and a
    commit line ``{"batch": J, "n": COUNT}``, and ``{"complete": true, "batches": B}`` at the end. Lines
    after the last commit (a kill in the middle of a batch) do not count; a writer cuts them off. In memory
    only the numbers of the finished batches are kept.
    """

    tool = "seqkd-distill"
    log = logger
    index_block = _INDEX_BLOCK
    resume_scan = {"validate": True}

    def __init__(self, path, file):
        super().__init__(path, file)
        self.sentences = 0

    @classmethod
    def locate(cls, prefix, shard_id, num_shards):
        return journal_path(prefix, shard_id, num_shards)

    @classmethod
    def check_config(cls, old, new, old_path, new_path=None):
        check_same_config(old, new, old_path, new_path)

    def _record(self, raw, number):
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise self._error(number, f"corrupt line ({getattr(e, 'msg', e)}), not a torn last line: the "
                                      f"journal was damaged; cut it before this line to keep the batches "
                                      f"before it, or remove it") from None
        if not isinstance(record, dict):
            raise self._error(number, "not a journal record")
        return record

    def _check_header(self, record):
        version = record.get("seqkd_distill")
        if version not in READABLE_FORMATS or not isinstance(version, int):
            if isinstance(version, int) and version > JOURNAL_FORMAT:
                raise SeqKDError(f"{self.path}: a journal of a newer seqkd-distill (format {version}); finish it "
                                 f"with that version, or remove it to start again")
            if isinstance(version, int) and version < min(READABLE_FORMATS):
                raise SeqKDError(f"{self.path}: a journal of an older seqkd-distill (format {version}); "
                                 f"finish it with that version, or remove it to start again")
            raise SeqKDError(f"{self.path}: not a seqkd-distill journal (format {version!r})")
        if not isinstance(record.get("config"), dict):
            raise self._error(1, "the header has no config")

    def scan(self, on_batch=None, validate=False):
        """Read the journal line by line: its header, finished batches and completion. ``on_batch(j,
        [(sentence id, byte offset, line number), ...])`` for each finished batch; ``validate``: parse the
        sentence lines too (else only their ids are read). Returns the byte offset after the last record
        that counts (a torn last line and an unfinished batch do not)."""
        self.header, self.batches, self.sentences, self.complete = None, set(), 0, False
        end = 0
        pending = []
        for number, start, offset, raw in self._lines():
            if number == 1:
                record = self._record(raw, number)
                self._check_header(record)
                self.header, end = record, offset
                continue
            self._after_end(number)
            sid = _sentence_id(raw)
            if sid is not None:
                if validate and self._record(raw, number).get("id") != sid:
                    raise self._error(number, "not a journal record")
                pending.append((sid, start, number))
                continue
            record = self._record(raw, number)
            if "batch" in record:
                j, n = record["batch"], record.get("n")
                if n != len(pending):
                    raise self._error(number, f"batch {j} commits {n} sentences, {len(pending)} lines precede it")
                if j in self.batches:
                    raise self._error(number, f"batch {j} appears twice")
                if on_batch is not None:
                    on_batch(j, pending)
                self.batches.add(j)
                self.sentences += n
                pending, end = [], offset
            elif record.get("complete"):
                if pending:
                    raise self._error(number, f"{len(pending)} sentence lines without a batch commit before the end")
                self.complete, end = True, offset
            else:
                raise self._error(number, "not a journal record")
        if pending:
            logger.info("%s: dropping %d sentences of an unfinished batch (the run was killed while writing it)",
                        self.path, len(pending))
        return end

    def _continue(self, header):
        super()._continue(header)
        if self.header["seqkd_distill"] != header["seqkd_distill"]:
            self._upgrade(header["seqkd_distill"])

    def _upgrade(self, version):
        """Mark the journal (same config, written before its format was bumped) with format ``version``: its
        header line rewritten in place, the same length (one digit), so nothing after it moves."""
        self._file.seek(0)
        raw = self._file.readline()
        line = (json.dumps(dict(self.header, seqkd_distill=version)) + "\n").encode("utf-8")
        if len(line) != len(raw) or json.loads(line) != dict(json.loads(raw), seqkd_distill=version):
            raise self._error(1, f"cannot mark this journal as format {version} in place; finish it with the "
                                 f"seqkd-distill that started it, or remove it")
        self._file.seek(0)
        self._write(line.decode("utf-8"))
        logger.info("%s: marked as journal format %d (read by this version, not by one before --keep)", self.path,
                    version)
        self.header = dict(self.header, seqkd_distill=version)

    def commit(self, j, records):
        """Append a finished batch: its sentences (dicts whose first key is ``id``), then its commit line."""
        lines = [json.dumps(record, ensure_ascii=False) for record in records]
        lines.append(json.dumps({"batch": j, "n": len(records)}))
        self._write("\n".join(lines) + "\n")
        self.batches.add(j)
        self.sentences += len(records)

    def read_sentence(self, offset, number, sid):
        """The sentence line at ``offset`` (line ``number``), checked to be sentence ``sid``."""
        self._file.seek(offset)
        record = self._record(self._file.readline(), number)
        if record.get("id") != sid:
            raise self._error(number, f"expected sentence {sid}, found {record.get('id')!r}")
        return record

    def _load_for_merge(self, shard, num_shards):
        """The header only: the sentences are read (and the journal's completion checked) by :meth:`index_into`,
        in the one pass over the journal that the merge makes."""
        self.header = self._read_header()
        if self.header is None:
            raise self._unfinished(shard)
        if self.header.get("shard_id") != shard:
            raise SeqKDError(f"{self.path}: the journal of shard {self.header.get('shard_id')}, not {shard}")

    def _read_header(self):
        f = self._file
        f.seek(0)
        raw = f.readline()
        if not raw.endswith(b"\n"):
            return None
        header = self._record(raw, 1)
        self._check_header(header)
        return header

    def index_into(self, index, shard, n):
        """Row ``id`` of ``index``: (shard, byte offset, line number) of sentence ``id``'s line."""
        import numpy as np

        def on_batch(j, sentences):
            rows = np.array([(shard, offset, line) for _, offset, line in sentences], dtype=np.int64).reshape(-1, 3)
            ids = np.array([sid for sid, _, _ in sentences], dtype=np.int64)
            if len(ids) and (ids.max() >= n or len(np.unique(ids)) != len(ids) or (index[ids, 0] >= 0).any()):
                for sid, _, line in sentences:
                    if sid >= n:
                        raise self._error(line, f"sentence {sid} beyond the {n} of the data")
                    if index[sid, 0] >= 0 or sum(s == sid for s, _, _ in sentences) > 1:
                        raise self._error(line, f"sentence {sid} is in the journals twice")
            index[ids] = rows

        self.scan(on_batch)
        if not self.complete:
            raise self._unfinished(self.header.get("shard_id", shard))


def check_same_config(old, new, old_path, new_path=None):
    """SeqKDError unless two journal configs are the same (``new_path`` None: ``new`` is this run's); a
    changed teacher checkpoint is named."""
    if old == new:
        return
    if old.get("teacher_sha256") != new.get("teacher_sha256"):
        where = f"in {new_path}" if new_path else "now"
        raise SeqKDError(f"{new.get('path')}: the teacher checkpoint changed (sha256 {old.get('teacher_sha256')} "
                         f"in {old_path}, {new.get('teacher_sha256')} {where}): one corpus would mix two "
                         f"teachers; restore the checkpoint, or remove the journal(s) of the other one")
    sharded_job.check_same_config(old, new, old_path, new_path)


def _journal_config(options, data_info, teacher_sha256):
    config = {k: getattr(options, k) for k in OUTPUT_OPTIONS}
    if options.keep == 1:
        del config["keep"]
    if options.select != "mbr":
        del config["mbr_utility"]
    config["data"] = os.path.abspath(options.data)
    config["path"] = os.path.abspath(options.path)
    config["teacher_sha256"] = teacher_sha256
    config.update(data_info)
    return config


def generate_shard(options: DistillOptions) -> ShardJournal:
    """Decode this shard's batches that its journal does not hold yet; return the journal, finished and
    still locked (:meth:`ShardJournal.close` releases it). StoppedEarly after ``stop_after_batches``."""
    from fairseq_seqkd import generation

    path = journal_path(options.out_prefix, options.shard_id, options.num_shards)
    sharded_job.refuse_rerun(path, options.resume)
    task = generation.load_split(options.data, options.subset, options.source_lang, options.target_lang)
    dataset = task.dataset(options.subset)
    if options.select == "seq-inter" and dataset.tgt is None:
        raise SeqKDError(f"{options.data}: subset '{options.subset}' has no target side: --select seq-inter "
                         f"needs the references")
    model, use_cuda = generation.load_for_generation(options.path, task, "teacher", options.cpu, options.fp16)
    teacher_sha256 = file_sha256(options.path)
    engine = _build_engine(options, task, model, use_cuda, teacher_sha256)
    batches = generation.fixed_batches(task, model, options.subset, options.max_tokens, options.batch_size,
                                       what="teacher")
    data_info = {"source_lang": task.cfg.source_lang, "target_lang": task.cfg.target_lang,
                 "sentences": len(dataset), "batches": len(batches),
                 "batch_digest": generation.batches_digest(batches)}
    header = {"seqkd_distill": journal_format(options.keep),
              "config": _journal_config(options, data_info, teacher_sha256),
              "shard_id": options.shard_id}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return ShardJournal.start(path, header,
                              lambda journal: _decode(options, journal, dataset, engine, use_cuda, batches))


def _build_engine(options, task, model, use_cuda, teacher_sha256):
    """The decoding engine of ``options.engine`` for this teacher; SeqKDError if it cannot run it."""
    from fairseq_seqkd import engines

    return engines.build_engine(options.engine, options.engine_quantize, task, model, options.path,
                                beam=options.beam, nbest=options.nbest, max_len_a=options.max_len_a,
                                max_len_b=options.max_len_b, lenpen=options.lenpen, use_cuda=use_cuda,
                                cache_dir=options.engine_cache, teacher_sha256=teacher_sha256)


def _decode(options, journal, dataset, engine, use_cuda, batches):
    from fairseq_seqkd import generation

    shard, shards = options.shard_id, options.num_shards
    mine = generation.shard_batches(batches, shard, shards)

    def starting(todo, total):
        logger.info("shard %d of %d: %d of %d batches to decode (%d sentences in the shard, %d in %s), beam %d, "
                    "engine %s%s, %s", shard, shards, len(todo), len(mine), total, len(dataset), options.subset,
                    options.beam, engine.name, f" {options.engine_quantize}" if options.engine_quantize else "",
                    "cuda" if use_cuda else "cpu")

    def step(j, batch):
        entries = engine.decode(dataset, batch)
        records = []
        for entry, choices in zip(entries, select_n(entries, options.select, options.remove_bpe, options.keep,
                                                     options.mbr_utility)):
            record = {"id": entry.id, "src": entry.source}
            if options.keep == 1:
                record["tgt"] = choices[0].target
            else:
                record["tgts"] = [choice.target for choice in choices]
            if options.write_kbest:
                record["ref"] = entry.reference
                record["hyps"] = entry.hyps
            records.append(record)
        journal.commit(j, records)

    ran = journal.run_batches(mine, step, shard_id=shard, num_shards=shards,
                              stop_after_batches=options.stop_after_batches, desc="distill", starting=starting)
    if ran is None:
        return
    decoded, seconds = ran
    logger.info("shard %d of %d: decoded %d sentences in %.1fs (%.1f sentences/s; engine %s: %.1fs of decoding%s)",
                shard, shards, decoded, seconds, decoded / max(seconds, 1e-9), engine.name, engine.seconds,
                engine.note())


def open_shards(out_prefix, num_shards, held: Optional[Dict[int, ShardJournal]] = None) -> List[ShardJournal]:
    """Every shard's journal, locked (``held``: those this process holds already) and its header checked
    against the first one's."""
    return ShardJournal.open_shards(out_prefix, num_shards, held)


def merge_shards(out_prefix, num_shards, held: Optional[Dict[int, ShardJournal]] = None):
    """Collect the finished shards into OUT.SRC / OUT.TGT (/ OUT.kbest), in corpus order. The journals
    stay (:func:`distill` removes them once the whole step succeeded). Returns the shards' common
    configuration. Memory does not grow with the corpus: a pass over each journal puts where each
    sentence lies into an on-disk index (``OUT.merge-N.index.tmp``, removed at the end), then the
    outputs are written in id order by seeking into the journals."""
    journals = open_shards(out_prefix, num_shards, held)
    try:
        return _merge(out_prefix, journals)
    finally:
        for journal in journals:
            if journal not in (held or {}).values():
                journal.close()


def _merge(out_prefix, journals):
    config = journals[0].config
    n = config["sentences"]
    with sharded_job.sentence_index(f"{out_prefix}.merge-{len(journals)}.index.tmp", n) as index:
        ShardJournal.fill_index(out_prefix, journals, index, n)  # shard, offset, line
        return _write_outputs(out_prefix, config, journals, index, n)


def ids_path(out_prefix):
    """``OUT.ids``: the 0-based sentence id of each line of OUT.SRC / OUT.TGT (written when keep > 1)."""
    return f"{out_prefix}.ids"


def _targets(journal, s, line, keep):
    if keep == 1:
        return [s["tgt"]]
    targets = s.get("tgts")
    if not isinstance(targets, list) or not targets:
        raise journal._error(line, f"sentence {s.get('id')} has no list of targets (\"tgts\")")
    return targets


def _write_outputs(out_prefix, config, journals, index, n):
    src, tgt, kbest = config["source_lang"], config["target_lang"], config["write_kbest"]
    keep = config.get("keep", 1)
    empty = lines = 0
    with contextlib.ExitStack() as stack:
        out_src = stack.enter_context(atomic_open(f"{out_prefix}.{src}"))
        out_tgt = stack.enter_context(atomic_open(f"{out_prefix}.{tgt}"))
        out_kbest = stack.enter_context(atomic_open(f"{out_prefix}.kbest")) if kbest else None
        out_ids = stack.enter_context(atomic_open(ids_path(out_prefix))) if keep > 1 else None
        if kbest:
            out_kbest.write(kbest_header(n, config["nbest"]))
        for start in range(0, n, _INDEX_BLOCK):
            for sid, (shard, offset, line) in enumerate(index[start:start + _INDEX_BLOCK].tolist(), start):
                s = journals[shard].read_sentence(offset, line, sid)
                for target in _targets(journals[shard], s, line, keep):
                    out_src.write(s["src"] + "\n")
                    out_tgt.write(target + "\n")
                    if out_ids is not None:
                        out_ids.write(f"{sid}\n")
                    empty += not target.strip()
                    lines += 1
                if kbest:
                    write_kbest_rows(out_kbest, Sentence(sid, s["src"], s["ref"], [tuple(h) for h in s["hyps"]]))
    pairs = f"{lines} pairs of " if keep > 1 else ""
    logger.info("wrote %s.{%s,%s%s}: %s%d sentences (%d empty outputs)%s", out_prefix, src, tgt,
                ",ids" if keep > 1 else "", pairs, n, empty, f" and {out_prefix}.kbest" if kbest else "")
    return config


def binarize_distilled(prefix, config, dest):
    """The distilled text binarized with the original data's dictionaries, its valid/test sets alongside (and
    OUT.ids as ``train.ids`` when keep > 1: the training split's sentence ids, for --one-target-per-epoch)."""
    data, src, tgt = config["data"], config["source_lang"], config["target_lang"]
    extra = {"train.ids": ids_path(prefix)} if config.get("keep", 1) > 1 else None
    return binarize(dest, src, tgt, prefix, srcdict=os.path.join(data, f"dict.{src}.txt"),
                    tgtdict=os.path.join(data, f"dict.{tgt}.txt"), copy_from=data, extra_files=extra)


def distill(options: DistillOptions):
    """Run seqkd-distill: decode this shard (unless ``merge``), then merge and binarize when the output is
    complete, and only then remove the journals. Returns the configuration of the merged output, or None
    when shards remain; StoppedEarly when it stopped early on purpose (``stop_after_batches``)."""
    options = options.checked()
    held = {}
    try:
        if not options.merge:
            held[options.shard_id] = generate_shard(options)
            if options.num_shards > 1:
                logger.info("shard %d done; when all %d shards are done: seqkd-distill --merge --out-prefix %s "
                            "--num-shards %d", options.shard_id, options.num_shards, options.out_prefix,
                            options.num_shards)
                return None
        journals = open_shards(options.out_prefix, options.num_shards, held)
        held.update(enumerate(journals))
        config = _merge(options.out_prefix, journals)
        if options.binarize:
            binarize_distilled(options.out_prefix, config, options.binarize)
        for journal in journals:
            os.remove(journal.path)  # still locked: no run can take it up in between
        return config
    finally:
        for journal in held.values():
            journal.close()
