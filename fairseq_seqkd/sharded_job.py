"""The skeleton of a sharded, journaled, resumable job over a split, merged back in corpus order.

seqkd-distill (:mod:`fairseq_seqkd.distill`) and seqkd-topk (:mod:`fairseq_seqkd.topk_store`) are two such
jobs, and any later sharded stage is meant to be a third: the split's batches are fixed once, shard I of N
processes batches I, I+N, I+2N, ... and records every finished batch in its own append-only journal, so a
run killed anywhere resumes from the last commit and ends with the same bytes as an uninterrupted one.
When every shard is finished, a merge puts where each sentence lies into an on-disk index and writes the
outputs in sentence-id order, never holding the split in memory.

What is shared here (the protocol), and what a job supplies (its format):

- :class:`BaseJournal`: one shard's journal, an append-only file of JSON lines: a header line (its
  ``"config"``: what the shard was started with), a commit line per finished batch (``{"batch": J, ...}``,
  written last, after the batch's data), ``{"complete": true, "batches": B}`` at the end. It holds an
  exclusive ``flock`` from :meth:`~BaseJournal.open` to :meth:`~BaseJournal.close` (one writer; the lock
  dies with its process), drops a torn last line, :meth:`~BaseJournal.resume` checks the config
  (:func:`check_same_config`) and cuts off what no commit covers, :meth:`~BaseJournal.finish` marks it
  complete, :meth:`~BaseJournal.run_batches` runs a shard's remaining batches with progress, a deliberate
  stop (``--stop-after-batches``) and Ctrl-C. A job subclasses it and supplies :meth:`~BaseJournal.locate`
  (where shard I of N lives), :meth:`~BaseJournal.scan` (reading its lines, with the helpers
  :meth:`~BaseJournal._lines`, :meth:`~BaseJournal._after_end`, :meth:`~BaseJournal._add_batch`),
  ``commit`` (what a batch record holds), :meth:`~BaseJournal._load_for_merge` and
  :meth:`~BaseJournal.index_into` (where each of its sentences lies, for the merge).
- :meth:`BaseJournal.open_shards` opens every shard of a merge (locked, finished, same config);
  :func:`sentence_index` is the merge's on-disk index and :meth:`BaseJournal.fill_index` fills it and
  checks that every sentence is in some shard. Writing the outputs from the index is the job's.
"""

import contextlib
import fcntl
import json
import logging
import os
import sys
import time
from typing import Callable, Dict, List, Optional

from fairseq_seqkd.errors import SeqKDError, StoppedEarly

logger = logging.getLogger("seqkd-sharded-job")


def check_same_config(old, new, old_path, new_path=None, what="options", remedy="use the same options or remove it"):
    """SeqKDError unless two shard configs are the same, naming the keys that differ. ``new_path`` None:
    ``new`` is this run's (a resume; ``remedy`` says what to do), else the config of the journal there (a
    merge). ``what``: the word for what a config records ("options", "options or inputs")."""
    if old == new:
        return
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if new_path is None:
        raise SeqKDError(f"{old_path} was started with other {what} ({', '.join(changed)}); {remedy}")
    raise SeqKDError(f"{new_path} and {old_path} were made with different {what} ({', '.join(changed)})")


def refuse_rerun(location, resume):
    """SeqKDError if a shard's journal (or folder) exists and this run was not asked to resume it."""
    if os.path.exists(location) and not resume:
        raise SeqKDError(f"{location} exists (an earlier run): add --resume to continue it, or remove it")


@contextlib.contextmanager
def sentence_index(path, n):
    """The merge's index: an on-disk int64 array of ``n`` rows (at least one) x 3, every value -1 (no
    shard holds the sentence yet), column 0 the shard; the file is removed on leaving."""
    import numpy as np

    index = np.memmap(path, dtype=np.int64, mode="w+", shape=(max(n, 1), 3))
    try:
        index[:] = -1
        yield index
    finally:
        del index
        os.remove(path)


def first_missing(index, n, block):
    """The first sentence id below ``n`` that no shard put into ``index`` (read ``block`` rows at a
    time), else None."""
    for start in range(0, n, block):
        missing = (index[start:start + block, 0] < 0).nonzero()[0]
        if len(missing):
            return start + int(missing[0])
    return None


class BaseJournal:
    """One shard's journal (see the module's docstring), locked by its one user from :meth:`open` to
    :meth:`close`.

    ``location`` is what names the shard to the user (the journal file, or a folder holding it and the
    shard's data files: :meth:`journal_of`); ``path`` is the journal file. ``header`` is the header line
    once read, ``batches`` the numbers of the committed batches, ``complete`` whether it is finished.
    """

    #: The program, as named in the messages about locks.
    tool = "a sharded job"
    #: Where the journal logs (dropped torn lines).
    log = logger
    #: How :func:`check_same_config` words a config and what to do about a resume with another one.
    config_what = "options"
    config_remedy = "use the same options or remove it"
    #: Sentences per block when the merge walks its index.
    index_block = 1024
    #: The merge's error when a sentence is in no shard (``where``: :meth:`locate` of shard ``*``).
    not_indexed = "{where}: sentence {sid} of the {n} of the data is in no journal"
    #: The start of the StoppedEarly message of :meth:`run_batches`.
    stopped = "after {count} batches, as asked"
    #: The scan :meth:`resume` makes (keyword arguments of :meth:`scan`).
    resume_scan: dict = {}
    #: Whether a location exists (a shard that has run): a file for a journal of its own, a folder else.
    exists = staticmethod(os.path.exists)

    def __init__(self, location, file):
        self.location, self.path, self._file = location, self.journal_of(location), file
        self.header: Optional[dict] = None
        self.batches, self.complete = set(), False

    # ----------------------------------------------------------------- what a job supplies

    @classmethod
    def locate(cls, prefix, shard_id, num_shards):
        """The location of shard ``shard_id`` of ``num_shards`` of the job writing ``prefix``."""
        raise NotImplementedError

    @classmethod
    def journal_of(cls, location):
        """The journal file of a location (itself, by default)."""
        return location

    def scan(self):
        """Read the whole journal (:meth:`_lines`): set ``header``, ``batches``, ``complete`` and whatever
        else the job keeps; return the byte offset after the last line that counts."""
        raise NotImplementedError

    def _load_for_merge(self, shard, num_shards):
        """Read what the merge needs of this journal (at least ``header``); SeqKDError unless it is shard
        ``shard`` of ``num_shards`` and (as far as is known before :meth:`index_into`) finished."""
        raise NotImplementedError

    def index_into(self, index, shard, n):
        """Put where each of this shard's sentences lies into ``index`` (:func:`sentence_index`; row = the
        sentence id, column 0 = ``shard``); SeqKDError on an id beyond ``n`` or already indexed. What it
        returns is collected by :meth:`fill_index`."""
        raise NotImplementedError

    # ----------------------------------------------------------------- opening and locking

    @property
    def config(self):
        return None if self.header is None else self.header["config"]

    @classmethod
    def open(cls, location, create=False):
        """The journal at ``location`` (created empty if ``create``), locked for this process until
        :meth:`close`; SeqKDError if another process holds it."""
        return cls(location, cls._lock(cls.journal_of(location), create))

    @classmethod
    def _lock(cls, path, create):
        try:
            fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o666)
        except FileNotFoundError:
            raise SeqKDError(f"{path}: missing") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # read-write fd: flock over NFS needs it
        except BlockingIOError:
            os.close(fd)
            raise SeqKDError(f"{path}: in use by another {cls.tool} run (locked); wait for it to end, or "
                             f"stop it") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)  # the run that held it finished and removed it just before we locked it
            raise SeqKDError(f"{path}: removed by another {cls.tool} run while this one started; run again")
        return os.fdopen(fd, "r+b")

    def close(self):
        """Release the lock."""
        if self._file is not None:
            self._file.close()
            self._file = None

    @classmethod
    def start(cls, location, header, work: Callable[["BaseJournal"], None]):
        """Open (create) the journal at ``location``, :meth:`resume` it with ``header`` (what the job's
        ``resume`` takes) and ``work(journal)``; return it still locked, or close it and raise what went wrong."""
        journal = cls.open(location, create=True)
        try:
            journal.resume(header)
            work(journal)
        except BaseException:
            journal.close()
            raise
        return journal

    # ----------------------------------------------------------------- reading

    def _error(self, number, message):
        return SeqKDError(f"{self.path}:{number}: {message}")

    def _lines(self):
        """``(line number, byte offset, offset after it, raw line)`` of every whole line from the start; a
        torn last line (a kill while writing it) is dropped and logged."""
        f = self._file
        f.seek(0)
        offset = number = 0
        for raw in f:
            number += 1
            start, offset = offset, offset + len(raw)
            if not raw.endswith(b"\n"):
                self.log.info("%s: dropping an incomplete last line (the run was killed while writing)", self.path)
                return
            yield number, start, offset, raw

    def _after_end(self, number):
        """SeqKDError if the journal is complete already (line ``number`` comes after its end)."""
        if self.complete:
            raise self._error(number, "a line after the end of the journal")

    def _add_batch(self, j, number):
        """Count batch ``j`` (its commit on line ``number``) as finished; SeqKDError if it was already."""
        if j in self.batches:
            raise self._error(number, f"batch {j} appears twice")
        self.batches.add(j)

    # ----------------------------------------------------------------- writing

    def resume(self, header):
        """Continue the journal as its writer: a new or empty one (or one killed before its header was
        whole) gets ``header``; else check it was started with ``header``'s config (:meth:`_continue`), and cut
        off what no commit covers."""
        end = self.scan(**self.resume_scan) if os.fstat(self._file.fileno()).st_size else 0
        if self.header is None:
            self._file.seek(0)
            self._file.truncate()
            self._write_record(header)
            self.header = header
            end = self._file.tell()
        else:
            self._continue(header)
        self._file.seek(end)
        self._file.truncate()

    def _continue(self, header):
        """Check that the journal read can be continued by a run of ``header``."""
        self.check_config(self.config, header["config"], self.path)

    @classmethod
    def check_config(cls, old, new, old_path, new_path=None):
        """:func:`check_same_config` in this job's words."""
        check_same_config(old, new, old_path, new_path, cls.config_what, cls.config_remedy)

    def _write(self, text):
        self._file.write(text.encode("utf-8"))
        self._file.flush()

    def _write_record(self, record):
        self._write(json.dumps(record) + "\n")

    def finish(self):
        """Mark the journal complete."""
        self._write_record({"complete": True, "batches": len(self.batches)})
        self.complete = True

    def run_batches(self, mine, step, *, shard_id, num_shards, stop_after_batches=0, desc="batches",
                    starting=None):
        """Run ``step(j, batch)`` (which commits batch ``j`` to this journal) over the shard's batches
        ``mine`` (``[(j, batch), ...]``) that the journal does not hold yet, with a progress bar, then
        :meth:`finish`. ``starting(todo, total)`` is called before the first one (to log what is to do).
        Returns ``(sentences done, seconds)``, or None when nothing was left (the journal is then finished
        too). StoppedEarly after ``stop_after_batches`` batches; Ctrl-C is a one-line SeqKDError."""
        from tqdm import tqdm

        todo = [(j, b) for j, b in mine if j not in self.batches]
        total = sum(len(b) for _, b in mine)
        if self.complete or not todo:
            if not self.complete:
                self.finish()
            self.log.info("shard %d of %d: all %d batches done already", shard_id, num_shards, len(mine))
            return None
        if starting is not None:
            starting(todo, total)
        start, done = time.time(), 0
        bar = tqdm(total=total, initial=total - sum(len(b) for _, b in todo), unit="sent", desc=desc,
                   dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
        try:
            for count, (j, batch) in enumerate(todo):
                if stop_after_batches and count >= stop_after_batches:
                    raise StoppedEarly(f"{self.stopped.format(count=count)} (--stop-after-batches): "
                                       f"{len(self.batches)} of the {len(mine)} batches of shard {shard_id} of "
                                       f"{num_shards} are done, in {self.location}; rerun with --resume to continue")
                step(j, batch)
                done += len(batch)
                bar.update(len(batch))
        except KeyboardInterrupt:
            raise SeqKDError(f"interrupted: {len(self.batches)} of {len(mine)} batches are in {self.location}; "
                             f"continue with --resume") from None
        finally:
            bar.close()
        self.finish()
        return done, time.time() - start

    # ----------------------------------------------------------------- merging

    def _unfinished(self, shard):
        return SeqKDError(f"{self.location}: shard {shard} is not finished; run it (again) with --resume")

    @classmethod
    def open_shards(cls, prefix, num_shards, held: Optional[Dict[int, "BaseJournal"]] = None) -> List["BaseJournal"]:
        """Every shard's journal, locked (``held``: those this process holds already), read for the merge
        (:meth:`_load_for_merge`) and its config checked against the first one's. On an error, those opened
        here are closed again."""
        held = held or {}
        journals = []
        try:
            for shard in range(num_shards):
                if shard in held:
                    journal = held[shard]
                else:
                    location = cls.locate(prefix, shard, num_shards)
                    if not cls.exists(location):
                        raise SeqKDError(f"{location}: missing (shard {shard} of {num_shards} has not run)")
                    journal = cls.open(location)
                journals.append(journal)
                journal._load_for_merge(shard, num_shards)
                cls.check_config(journals[0].config, journal.config, journals[0].path, journal.path if shard else None)
        except BaseException:
            for journal in journals:
                if journal not in held.values():
                    journal.close()
            raise
        return journals

    @classmethod
    def fill_index(cls, prefix, journals, index, n):
        """Index every journal's sentences (:meth:`index_into`), then check that each of the ``n`` sentences
        is in one; returns what :meth:`index_into` returned, per journal."""
        results = [journal.index_into(index, shard, n) for shard, journal in enumerate(journals)]
        sid = first_missing(index, n, cls.index_block)
        if sid is not None:
            raise SeqKDError(cls.not_indexed.format(where=cls.locate(prefix, "*", len(journals)), sid=sid, n=n))
        return results
