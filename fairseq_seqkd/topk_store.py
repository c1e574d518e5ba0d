"""The teacher's top-k on disk: built once by ``seqkd-topk``, memory-mapped by every rank of ``word_kd``.

For every sentence of a split and every target position (teacher forced on the gold target, EOS
included: exactly the positions ``word_kd`` scores) the store holds the teacher's k best words and their
log-probabilities at T = 1 (``log_softmax`` of the full logits, in float32, then rounded to float16). A
log-probability differs from its logit by a constant per position, so ``softmax(stored / T)`` over the k
words is the live teacher's top-k distribution at any temperature T: the temperature applies at
training time.

A store is a folder (:func:`store_files`)::

    header.json      what it was built from (teacher, dictionaries, split, k, sizes), see :func:`build_store`
    values.fp16      float16, tokens x k, best first
    ids.uint16       word ids, tokens x k (``ids.int32`` when the target vocabulary exceeds 65536)
    offsets.int64    int64, sentences + 1: sentence i is rows offsets[i] to offsets[i+1]

Building follows seqkd-distill's conventions: the split's batches are fixed once (fairseq's length-sorted
batching, :func:`fairseq_seqkd.generation.fixed_batches`) and shard I of N computes batches I, I+N, ...
into its own folder ``STORE.shard-I-of-N`` (:class:`ShardWriter`); a batch counts once its data is
flushed and its commit line is in the shard's journal, so a killed run resumes (``--resume``) where it
stopped and ends with the same bytes. The merge streams the shards into the store in sentence-id order
through an on-disk index and publishes the folder atomically; the shard folders are removed only then.
Targets are right-padded when building, so a sentence's values do not depend on the rest of its batch.
"""

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from typing import Dict, List, Optional

import numpy as np

from fairseq_seqkd import sharded_job
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.sharded_job import BaseJournal
from fairseq_seqkd.textio import atomic_dir, file_sha256

logger = logging.getLogger("seqkd-topk")

#: The store and journal format (``seqkd_topk`` in their headers).
FORMAT = 1
HEADER_FILE, VALUES_FILE, OFFSETS_FILE = "header.json", "values.fp16", "offsets.int64"
JOURNAL_FILE, SENTENCES_FILE = "journal.jsonl", "sentences.int64"
_FP16_MIN = float(np.finfo(np.float16).min)
_BLOCK = 4096  # sentences per block when the merge walks its index


def ids_dtype(vocab_size):
    """uint16 ids when every word id fits (vocabulary of at most 65536 words), else int32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


def ids_file(dtype):
    return f"ids.{np.dtype(dtype).name}"


def dictionary_digest(dictionary):
    """sha256 of a fairseq dictionary's symbols in id order (the id -> word map; counts do not matter)."""
    return hashlib.sha256("\n".join(dictionary.symbols).encode("utf-8")).hexdigest()


def target_digest(targets, count):
    """sha256 over the target token ids (int32, little-endian, EOS included) of sentences 0 .. count-1."""
    digest = hashlib.sha256()
    for i in range(count):
        digest.update(np.asarray(targets[i], dtype="<i4").tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- building


@dataclasses.dataclass
class TopKOptions:
    """What seqkd-topk does (its command-line options, same names)."""

    out: str
    data: Optional[str] = None
    path: Optional[str] = None
    k: int = 0
    subset: str = "train"
    source_lang: Optional[str] = None
    target_lang: Optional[str] = None
    max_tokens: Optional[int] = None
    batch_size: Optional[int] = None  # 64 when neither max_tokens nor batch_size is given
    num_shards: int = 1
    shard_id: int = 0
    resume: bool = False
    merge: bool = False
    stop_after_batches: int = 0
    cpu: bool = False
    fp16: bool = False

    def checked(self):
        """A copy with defaults filled in; SeqKDError on options that do not go together."""
        if self.num_shards < 1:
            raise SeqKDError(f"--num-shards {self.num_shards}: must be at least 1")
        if self.merge:
            return self
        if not self.data or not self.path:
            raise SeqKDError("DATA and --path TEACHER.pt are required (or --merge)")
        if self.k < 1:
            raise SeqKDError(f"--k {self.k}: must be at least 1")
        if not 0 <= self.shard_id < self.num_shards:
            raise SeqKDError(f"--shard-id {self.shard_id}: must be in [0, --num-shards {self.num_shards})")
        if not os.path.isdir(self.data):
            raise SeqKDError(f"{self.data}: no such data folder")
        if not os.path.isfile(self.path):
            raise SeqKDError(f"teacher {self.path}: no such file")
        if self.max_tokens is None and self.batch_size is None:
            return dataclasses.replace(self, batch_size=64)
        return self


def shard_folder(out, shard_id, num_shards):
    return f"{os.path.abspath(out)}.shard-{shard_id}-of-{num_shards}"


class ShardWriter(BaseJournal):
    """One shard's folder: its data files and its journal, locked by its one user
    (:class:`~fairseq_seqkd.sharded_job.BaseJournal`: locking, resume, finish, the merge's driver).

    ``values.fp16`` / ``ids.*`` / ``sentences.int64`` (sentence id, token count; in computed order) grow by
    one batch at a time. ``journal.jsonl`` has a header line (``{"seqkd_topk": 1, "config": ...}``), then
    one line per committed batch with the shard's running totals (``{"batch": J, "sentences": S,
    "tokens": T}``), written only after that batch's data is flushed, and ``{"complete": true}`` at the
    end. Data beyond the last commit (a kill in the middle of a batch) does not count; a writer cuts it off.
    """

    tool = "seqkd-topk"
    log = logger
    config_what = "options or inputs"
    config_remedy = "use the same ones, or remove its folder"
    index_block = _BLOCK
    not_indexed = "{where}: sentence {sid} of the {n} of the split is in no shard"
    stopped = "stopped after {count} batches as asked"
    exists = staticmethod(os.path.isdir)

    def __init__(self, folder, journal):
        super().__init__(folder, journal)
        self.sentences, self.tokens = 0, 0
        self._files = {}

    @property
    def folder(self):
        return self.location

    @classmethod
    def locate(cls, prefix, shard_id, num_shards):
        return shard_folder(prefix, shard_id, num_shards)

    @classmethod
    def journal_of(cls, location):
        return os.path.join(location, JOURNAL_FILE)

    @classmethod
    def open(cls, folder, create=False):
        """The shard at ``folder`` (created if ``create``), locked until :meth:`close`; SeqKDError if another
        process holds it."""
        if create:
            os.makedirs(folder, exist_ok=True)
        return super().open(folder, create)

    def close(self):
        for f in self._files.values():
            f.close()
        self._files = {}
        super().close()  # releases the lock

    def scan(self):
        """Read the journal: its config, committed batches and totals. Returns the byte offset after the last
        line that counts (a torn last line does not)."""
        self.header, self.batches, self.sentences, self.tokens, self.complete = None, set(), 0, 0, False
        end = 0
        for number, _, offset, raw in self._lines():
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise self._error(number, "corrupt line, not a torn last line: remove the shard folder to "
                                          "compute it again") from None
            if number == 1:
                if not isinstance(record, dict) or record.get("seqkd_topk") != FORMAT:
                    raise self._error(number, f"not a seqkd-topk journal of format {FORMAT}")
                record["config"]  # noqa: B018 (as before: a KeyError when the header has no config)
                self.header = record
            elif self.complete:
                self._after_end(number)
            elif "batch" in record:
                self._add_batch(record["batch"], number)
                self.sentences, self.tokens = record["sentences"], record["tokens"]
            elif record.get("complete"):
                self.complete = True
            else:
                raise self._error(number, "not a journal record")
            end = offset
        return end

    def _data_files(self):
        k, dtype = self.config["k"], np.dtype(self.config["ids_dtype"])
        return {VALUES_FILE: 2 * k, ids_file(dtype): dtype.itemsize * k, SENTENCES_FILE: 16}

    def _committed_bytes(self, name, per_row):
        return (self.sentences if name == SENTENCES_FILE else self.tokens) * per_row

    def resume(self, config):
        """Continue as the writer: check the shard was started with ``config`` (a new one gets it), cut off
        what the journal does not commit, and open the data files for appending."""
        super().resume({"seqkd_topk": FORMAT, "config": config})
        for name, per_row in self._data_files().items():
            path = os.path.join(self.folder, name)
            f = open(path, "a+b")
            committed = self._committed_bytes(name, per_row)
            size = os.fstat(f.fileno()).st_size
            if size < committed:
                f.close()
                raise SeqKDError(f"{path}: {size} bytes, fewer than the {committed} its journal commits: the shard "
                                 f"was damaged; remove {self.folder} to compute it again")
            f.truncate(committed)
            self._files[name] = f

    def commit(self, j, sentence_ids, lengths, values, ids):
        """Append batch ``j``: its sentences' ids and token counts and their rows (``values``/``ids``:
        tokens x k, the sentences' tokens one after the other); the commit line is written last."""
        files = self._files
        files[VALUES_FILE].write(np.ascontiguousarray(values, dtype="<f2").tobytes())
        files[ids_file(self.config["ids_dtype"])].write(
            np.ascontiguousarray(ids, dtype=np.dtype(self.config["ids_dtype"]).newbyteorder("<")).tobytes())
        files[SENTENCES_FILE].write(np.stack([sentence_ids, lengths], axis=1).astype("<i8").tobytes())
        for f in files.values():
            f.flush()
        self.sentences += len(sentence_ids)
        self.tokens += int(np.sum(lengths))
        self._write_record({"batch": int(j), "sentences": self.sentences, "tokens": self.tokens})
        self.batches.add(int(j))

    def memmap(self, name, dtype, columns):
        """A read-only view of a committed data file (rows x ``columns``)."""
        rows = self._committed_bytes(name, np.dtype(dtype).itemsize * columns) // (np.dtype(dtype).itemsize * columns)
        if rows == 0:
            return np.zeros((0, columns), dtype=dtype)
        return np.memmap(os.path.join(self.folder, name), dtype=dtype, mode="r", shape=(rows, columns))

    def _load_for_merge(self, shard, num_shards):
        self.scan()
        if self.config is None or not self.complete:
            raise self._unfinished(shard)
        if self.config.get("num_shards") != num_shards:
            raise SeqKDError(f"{self.folder}: a shard of {self.config.get('num_shards')}, not {num_shards}")

    def index_into(self, index, s, n):
        """Row ``id`` of ``index``: (shard, first row, rows) of sentence ``id``; returns the shard's tokens."""
        sentences = self.memmap(SENTENCES_FILE, "<i8", 2)
        first = 0
        for start in range(0, len(sentences), _BLOCK):
            block = np.asarray(sentences[start:start + _BLOCK])
            sids, lengths = block[:, 0], block[:, 1]
            if len(sids) and (sids.min() < 0 or sids.max() >= n or len(np.unique(sids)) != len(sids)
                              or (index[sids, 0] >= 0).any()):
                raise SeqKDError(f"{self.folder}: a sentence id beyond the {n} of the split, or in the shards twice")
            starts = first + np.cumsum(lengths) - lengths
            index[sids] = np.stack([np.full_like(sids, s), starts, lengths], axis=1)
            first += int(lengths.sum())
        if first != self.tokens:
            raise SeqKDError(f"{self.folder}: its sentences hold {first} tokens, its journal {self.tokens}")
        return first


def _teacher_and_split(options):
    """The split (fairseq's translation task), the teacher (frozen, placed) and the store's configuration."""
    import torch

    from fairseq_seqkd import generation
    from fairseq_seqkd.teacher import FrozenTeacher

    task = generation.load_split(options.data, options.subset, options.source_lang, options.target_lang)
    dataset = task.dataset(options.subset)
    if dataset.tgt is None:
        raise SeqKDError(f"{options.data}: subset '{options.subset}' has no target side: the teacher is forced "
                         f"on the gold target")
    teacher = FrozenTeacher.load(options.path, task)
    use_cuda = torch.cuda.is_available() and not options.cpu
    dtype = torch.float16 if options.fp16 else torch.float32
    teacher.follow(torch.empty(0, device="cuda" if use_cuda else "cpu", dtype=dtype))
    vocab = len(task.target_dictionary)
    if options.k > vocab:
        raise SeqKDError(f"--k {options.k}: more than the {vocab} words of the target vocabulary")
    src, tgt = task.cfg.source_lang, task.cfg.target_lang
    config = {
        "k": options.k,
        "values": "teacher log-probabilities at T=1, float16, best first",
        "ids_dtype": ids_dtype(vocab).name,
        "subset": options.subset,
        "data": os.path.abspath(options.data),
        "source_lang": src,
        "target_lang": tgt,
        "sentences": len(dataset),
        "target_tokens": int(dataset.tgt_sizes.sum()),
        "target_digest": target_digest(dataset.tgt, len(dataset)),
        "source_dictionary_sha256": dictionary_digest(task.source_dictionary),
        "target_dictionary_sha256": dictionary_digest(task.target_dictionary),
        "target_vocabulary": vocab,
        "teacher": os.path.abspath(options.path),
        "teacher_sha256": file_sha256(options.path),
        "teacher_dtype": "float16" if options.fp16 else "float32",
        "max_tokens": options.max_tokens,
        "batch_size": options.batch_size,
    }
    return task, dataset, teacher, use_cuda, config


def _check_target_lengths(task, teacher, dataset, subset):
    from fairseq import utils

    max_target = utils.resolve_max_positions(task.max_positions(), teacher.model.max_positions())[1]
    if max_target is None:
        return
    too_long = (dataset.tgt_sizes > max_target).nonzero()[0]
    if len(too_long):
        i = int(too_long[0])
        raise SeqKDError(f"{task.cfg.data}: sentence {i} of {subset} has {dataset.tgt_sizes[i]} target tokens (with "
                         f"</s>), more than the teacher's {max_target} positions ({len(too_long)} such sentence(s))")


def batch_topk(teacher, sample, k, pad, ids_type):
    """The teacher's top k (log-probabilities at T=1 as float16, word ids) at the target tokens of a batch,
    row after row: ``(sentence ids, token counts, values, ids)`` as numpy arrays."""
    import torch

    logits = teacher.logits(sample["net_input"])
    values, index = torch.log_softmax(logits.float(), dim=-1).topk(k, dim=-1)
    keep = sample["target"].ne(pad)
    values = values[keep].clamp_(min=_FP16_MIN).half().cpu().numpy()
    index = index[keep].cpu().numpy().astype(ids_type)
    return sample["id"].cpu().numpy(), keep.sum(1).cpu().numpy(), values, index


def build_shard(options: TopKOptions) -> ShardWriter:
    """Compute this shard's batches that its journal does not hold yet; return the shard, finished and
    still locked (:meth:`ShardWriter.close` releases it). StoppedEarly after ``stop_after_batches``."""
    from fairseq_seqkd import generation

    folder = shard_folder(options.out, options.shard_id, options.num_shards)
    sharded_job.refuse_rerun(folder, options.resume)
    task, dataset, teacher, use_cuda, config = _teacher_and_split(options)
    _check_target_lengths(task, teacher, dataset, options.subset)
    batches = generation.fixed_batches(task, teacher.model, options.subset, options.max_tokens, options.batch_size,
                                       what="teacher")
    config["num_shards"] = options.num_shards
    config["batches"] = len(batches)
    config["batch_digest"] = generation.batches_digest(batches)
    return ShardWriter.start(folder, config,
                             lambda shard: _compute(options, shard, task, dataset, teacher, use_cuda, batches))


def _compute(options, shard, task, dataset, teacher, use_cuda, batches):
    from fairseq_seqkd import generation

    me, shards = options.shard_id, options.num_shards
    mine = generation.shard_batches(batches, me, shards)

    def starting(todo, total):
        logger.info("shard %d of %d: %d of %d batches to compute (%d sentences in the shard, %d in %s), top %d, %s",
                    me, shards, len(todo), len(mine), total, len(dataset), options.subset, options.k,
                    "cuda" if use_cuda else "cpu")

    pad, ids_type = task.target_dictionary.pad(), np.dtype(shard.config["ids_dtype"])

    def step(j, batch):
        sample = generation.collate(dataset, batch, use_cuda)
        shard.commit(j, *batch_topk(teacher, sample, options.k, pad, ids_type))

    ran = shard.run_batches(mine, step, shard_id=me, num_shards=shards, stop_after_batches=options.stop_after_batches,
                            desc="topk", starting=starting)
    if ran is None:
        return
    done, seconds = ran
    logger.info("shard %d of %d: %d sentences in %.1fs (%.1f sentences/s)", me, shards, done, seconds,
                done / max(seconds, 1e-9))


# ----------------------------------------------------------------------------------------------- merging


def open_shards(out, num_shards, held: Optional[Dict[int, ShardWriter]] = None) -> List[ShardWriter]:
    """Every shard, locked (``held``: those this process holds already), finished, with the same config."""
    return ShardWriter.open_shards(out, num_shards, held)


def merge_shards(out, num_shards, held: Optional[Dict[int, ShardWriter]] = None):
    """Write the store ``out`` from the finished shards, in sentence-id order, and publish it atomically;
    then remove the shard folders. Memory does not grow with the split: an on-disk index says where each
    sentence lies, and the rows are copied sentence by sentence. Returns the store's header."""
    shards = open_shards(out, num_shards, held)
    try:
        header = _merge(out, shards)
        for shard in shards:
            shutil.rmtree(shard.folder)  # still locked: no run can take it up in between
        return header
    finally:
        for shard in shards:
            shard.close()


def _merge(out, shards):
    config = shards[0].config
    n = config["sentences"]
    with sharded_job.sentence_index(f"{os.path.abspath(out)}.merge-index.tmp", n) as index:  # shard, first row, rows
        tokens = sum(ShardWriter.fill_index(out, shards, index, n))
        if tokens != config["target_tokens"]:
            raise SeqKDError(f"{shard_folder(out, '*', len(shards))}: {tokens} target tokens, the split has "
                             f"{config['target_tokens']}")
        with atomic_dir(out) as tmp:
            header = _write_store(tmp, config, shards, index, n)
        logger.info("wrote %s: %d sentences, %d target tokens, top %d (%.2f bytes per target token)", out, n,
                    tokens, config["k"], store_bytes(out) / max(tokens, 1))
        return header


def _write_store(folder, config, shards, index, n):
    k, id_type = config["k"], np.dtype(config["ids_dtype"]).newbyteorder("<")
    values = [shard.memmap(VALUES_FILE, "<f2", k) for shard in shards]
    ids = [shard.memmap(ids_file(id_type), id_type, k) for shard in shards]
    with open(os.path.join(folder, OFFSETS_FILE), "wb") as out_offsets, \
            open(os.path.join(folder, VALUES_FILE), "wb") as out_values, \
            open(os.path.join(folder, ids_file(id_type)), "wb") as out_ids:
        out_offsets.write(np.zeros(1, dtype="<i8").tobytes())
        total = 0
        for start in range(0, n, _BLOCK):
            block = np.asarray(index[start:start + _BLOCK])
            out_offsets.write((total + np.cumsum(block[:, 2])).astype("<i8").tobytes())
            total += int(block[:, 2].sum())
            for s, first, rows in block.tolist():
                out_values.write(values[s][first:first + rows].tobytes())
                out_ids.write(ids[s][first:first + rows].tobytes())
    header = {"seqkd_topk": FORMAT, **{key: v for key, v in config.items() if key not in _SHARD_ONLY},
              "files": store_files(id_type)}
    with open(os.path.join(folder, HEADER_FILE), "w", encoding="utf-8") as f:
        json.dump(header, f, indent=1, sort_keys=True)
        f.write("\n")
    return header


#: Configuration of the computation that the store does not depend on.
_SHARD_ONLY = ("num_shards", "batches", "batch_digest")


def store_files(id_type):
    return {"header": HEADER_FILE, "values": VALUES_FILE, "ids": ids_file(id_type), "offsets": OFFSETS_FILE}


def store_bytes(path):
    """Bytes of a store's files (header included)."""
    return sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path))


def build_store(options: TopKOptions):
    """Run seqkd-topk: compute this shard (unless ``merge``); with one shard, or with ``merge``, write and
    publish the store and remove the shard folders. Returns the store's header, or None when shards
    remain; StoppedEarly when it stopped early on purpose (``stop_after_batches``)."""
    options = options.checked()
    held = {}
    try:
        if not options.merge:
            held[options.shard_id] = build_shard(options)
            if options.num_shards > 1:
                logger.info("shard %d done; when all %d shards are done: seqkd-topk --merge --out %s --num-shards %d",
                            options.shard_id, options.num_shards, options.out, options.num_shards)
                return None
        return merge_shards(options.out, options.num_shards, held)
    finally:
        for shard in held.values():
            shard.close()


# ----------------------------------------------------------------------------------------------- reading


class TopKStore:
    """A finished store, memory-mapped read-only: every process that opens it shares its pages through the
    page cache; nothing is copied per process beyond the rows of the batch being read."""

    def __init__(self, path, header, offsets, values, ids):
        self.path, self.header = path, header
        self.k, self.sentences, self.tokens = header["k"], header["sentences"], header["target_tokens"]
        self.offsets, self.values, self.ids = offsets, values, ids

    @classmethod
    def open(cls, path):
        """The store at ``path``; SeqKDError if it is missing, of another format, or its files do not match
        its header."""
        header_path = os.path.join(path, HEADER_FILE)
        try:
            with open(header_path, encoding="utf-8") as f:
                header = json.load(f)
        except FileNotFoundError:
            raise SeqKDError(f"{path}: not a top-k store (no {HEADER_FILE}); build one with seqkd-topk") from None
        except (OSError, ValueError) as e:
            raise SeqKDError(f"{header_path}: unreadable ({e})") from None
        if not isinstance(header, dict) or header.get("seqkd_topk") != FORMAT:
            raise SeqKDError(f"{header_path}: not a seqkd-topk store of format {FORMAT}")
        k, n, tokens = header["k"], header["sentences"], header["target_tokens"]
        id_type = np.dtype(header["ids_dtype"]).newbyteorder("<")
        offsets = _map(path, OFFSETS_FILE, "<i8", (n + 1,))
        values = _map(path, VALUES_FILE, "<f2", (tokens, k))
        ids = _map(path, ids_file(id_type), id_type, (tokens, k))
        if offsets[0] != 0 or offsets[-1] != tokens:
            raise SeqKDError(f"{path}/{OFFSETS_FILE}: does not span the {tokens} tokens of {header_path}")
        return cls(path, header, offsets, values, ids)

    def gather(self, sentence_ids, lengths):
        """The rows of the given sentences, one after the other: ``(values, ids)``, each tokens x k (copies of
        the mapped pages). ``lengths``: the number of target tokens each sentence has in the batch; SeqKDError
        names the first sentence whose stored length differs."""
        sentence_ids = np.asarray(sentence_ids, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        if len(sentence_ids) and (sentence_ids.min() < 0 or sentence_ids.max() >= self.sentences):
            bad = int(sentence_ids[(sentence_ids < 0) | (sentence_ids >= self.sentences)][0])
            raise SeqKDError(f"{self.path}: no sentence {bad} (the store has {self.sentences})")
        starts = self.offsets[sentence_ids]
        stored = self.offsets[sentence_ids + 1] - starts
        if not np.array_equal(stored, lengths):
            r = int((stored != lengths).nonzero()[0][0])
            raise SeqKDError(f"{self.path}: sentence {int(sentence_ids[r])} has {int(lengths[r])} target tokens in "
                             f"training, {int(stored[r])} in the store: the data changed after it was built")
        rows = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))
        return self.values[rows], self.ids[rows]

    def check(self, what, ours, message):
        """SeqKDError ``STORE: MESSAGE`` unless the header's ``what`` equals ``ours``."""
        if self.header.get(what) != ours:
            raise SeqKDError(f"--kd-topk-store {self.path}: {message}")

    def check_split(self, targets, count, data, subset):
        """SeqKDError unless the split being trained on (``targets``: its target sentences) is the one the
        store was built for (same sentence count and target digest)."""
        h = self.header
        built = f"built for the {h['sentences']} sentences of {h['subset']} of {h['data']}"
        if count != h["sentences"]:
            raise SeqKDError(f"--kd-topk-store {self.path}: {built}, training on the {count} of {subset} of {data}")
        digest = target_digest(targets, count)
        if digest != h["target_digest"]:
            raise SeqKDError(f"--kd-topk-store {self.path}: {built}, whose targets differ from those of {subset} of "
                             f"{data} (target digest {h['target_digest'][:12]}... vs {digest[:12]}...); build a "
                             f"store for this split with seqkd-topk")


def _map(path, name, dtype, shape):
    file = os.path.join(path, name)
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    try:
        size = os.path.getsize(file)
    except OSError:
        raise SeqKDError(f"{file}: missing") from None
    if size != expected:
        raise SeqKDError(f"{file}: {size} bytes, its header says {expected}: the store is damaged or incomplete")
    if expected == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(file, dtype=dtype, mode="r", shape=shape)
