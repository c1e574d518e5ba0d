"""The sharded-job skeleton (:mod:`fairseq_seqkd.sharded_job`) on its own: a third, minimal job built on it
(its batch record is just the batch's sentence ids, its output one line per sentence naming the batch that
held it), sharded, killed part-way, resumed, merged, gives the bytes of an unsharded, uninterrupted run.
That is what a later sharded stage (the source-only split's decoding) will lean on."""

import json
import os
import random
import re

import pytest

from fairseq_seqkd import sharded_job
from fairseq_seqkd.errors import SeqKDError, StoppedEarly
from fairseq_seqkd.sharded_job import BaseJournal, check_same_config

N = 37  # sentences
BATCH = 4


class Killed(Exception):
    """A crash in the middle of a shard (what a SIGKILL would be, without the process)."""


class IdsJournal(BaseJournal):
    """Header ``{"ids_job": 1, "config": ..., "shard_id": I}``, then ``{"batch": J, "ids": [...]}`` per
    finished batch, then the end line."""

    tool = "ids-job"

    @classmethod
    def locate(cls, prefix, shard_id, num_shards):
        return f"{prefix}.shard-{shard_id}-of-{num_shards}.jsonl"

    def scan(self, on_batch=None):
        self.header, self.batches, self.complete = None, set(), False
        end = 0
        for number, start, offset, raw in self._lines():
            record = json.loads(raw)
            if number == 1:
                self.header = record
            else:
                self._after_end(number)
                if "batch" in record:
                    self._add_batch(record["batch"], number)
                    if on_batch is not None:
                        on_batch(record["batch"], record["ids"])
                elif record.get("complete"):
                    self.complete = True
                else:
                    raise self._error(number, "not a journal record")
            end = offset
        return end

    def commit(self, j, ids):
        self._write_record({"batch": j, "ids": ids})
        self.batches.add(j)

    def _load_for_merge(self, shard, num_shards):
        self.scan()
        if self.header is None or not self.complete:
            raise self._unfinished(shard)

    def index_into(self, index, shard, n):
        def on_batch(j, ids):
            for position, sid in enumerate(ids):
                if sid >= n or index[sid, 0] >= 0:
                    raise SeqKDError(f"{self.path}: sentence {sid} beyond the data or twice")
                index[sid] = (shard, j, position)

        self.scan(on_batch)
        return len(self.batches)


def fixed_batches(n=N, size=BATCH):
    """Scattered ids in fixed batches, as length-sorted batching makes them."""
    ids = list(range(n))
    random.Random(n).shuffle(ids)
    return [ids[i:i + size] for i in range(0, n, size)]


def run_shard(prefix, shard_id, num_shards, resume=False, crash_after=None, stop_after_batches=0, option="a"):
    """Shard ``shard_id`` of the ids job; ``crash_after``: raise Killed after that many new batches."""
    location = IdsJournal.locate(prefix, shard_id, num_shards)
    sharded_job.refuse_rerun(location, resume)
    batches = fixed_batches()
    mine = [(j, batches[j]) for j in range(shard_id, len(batches), num_shards)]
    header = {"ids_job": 1, "config": {"sentences": N, "batches": len(batches), "option": option},
              "shard_id": shard_id}

    def work(journal):
        done = []

        def step(j, batch):
            if crash_after is not None and len(done) == crash_after:
                raise Killed()
            journal.commit(j, batch)
            done.append(j)

        journal.run_batches(mine, step, shard_id=shard_id, num_shards=num_shards,
                            stop_after_batches=stop_after_batches, desc="ids")

    return IdsJournal.start(location, header, work)


def merge(prefix, num_shards, held=None):
    """OUT: line ``sid`` is ``sid batch position``, written from the index in id order."""
    journals = IdsJournal.open_shards(prefix, num_shards, held)
    try:
        n = journals[0].config["sentences"]
        with sharded_job.sentence_index(f"{prefix}.merge.index.tmp", n) as index:
            batches = IdsJournal.fill_index(prefix, journals, index, n)
            with open(f"{prefix}.out", "w") as out:
                for sid, (_, j, position) in enumerate(index[:n].tolist()):
                    out.write(f"{sid} {j} {position}\n")
        assert sum(batches) == len(fixed_batches())
    finally:
        for journal in journals:
            if journal not in (held or {}).values():
                journal.close()
    assert not os.path.exists(f"{prefix}.merge.index.tmp")
    return open(f"{prefix}.out").read()


def run_all(prefix, num_shards):
    for shard in range(num_shards):
        run_shard(prefix, shard, num_shards).close()
    return merge(prefix, num_shards)


def test_sharded_killed_resumed_and_merged_equals_one_uninterrupted_run(tmp_path):
    expected = run_all(str(tmp_path / "one"), 1)
    assert expected == "".join(f"{sid} {j} {p}\n" for sid, (j, p) in sorted(
        (sid, (j, p)) for j, batch in enumerate(fixed_batches()) for p, sid in enumerate(batch)))
    clean = str(tmp_path / "clean")
    assert run_all(clean, 3) == expected
    prefix = str(tmp_path / "killed")
    for shard in range(3):
        with pytest.raises(Killed):
            run_shard(prefix, shard, 3, crash_after=1 + shard % 2)
        path = IdsJournal.locate(prefix, shard, 3)
        with open(path, "ab") as f:
            f.write(b'{"batch": 99, "ids": [1, ')  # killed while writing the next commit: a torn last line
        with pytest.raises(SeqKDError, match=re.escape(f"{path} exists (an earlier run): add --resume")):
            run_shard(prefix, shard, 3)
    with pytest.raises(SeqKDError, match=r"killed.shard-0-of-3.jsonl: shard 0 is not finished; run it \(again\)"):
        merge(prefix, 3)
    for shard in range(3):
        journal = run_shard(prefix, shard, 3, resume=True)
        assert journal.complete
        journal.close()
        path = IdsJournal.locate(prefix, shard, 3)
        assert open(path, "rb").read() == open(IdsJournal.locate(clean, shard, 3), "rb").read()
    assert merge(prefix, 3) == expected
    journal = run_shard(prefix, 0, 3, resume=True)  # finished already: nothing is added
    journal.close()
    assert open(IdsJournal.locate(prefix, 0, 3), "rb").read() == open(IdsJournal.locate(clean, 0, 3), "rb").read()


def test_stop_after_batches_then_resume(tmp_path):
    prefix = str(tmp_path / "o")
    path = IdsJournal.locate(prefix, 1, 2)
    with pytest.raises(StoppedEarly, match=re.escape(
            f"after 2 batches, as asked (--stop-after-batches): 2 of the 5 batches of shard 1 of 2 are done, in "
            f"{path}; rerun with --resume to continue")):
        run_shard(prefix, 1, 2, stop_after_batches=2)
    run_shard(prefix, 1, 2, resume=True).close()
    run_shard(prefix, 0, 2).close()
    assert merge(prefix, 2) == run_all(str(tmp_path / "one"), 1)


def test_resume_and_merge_with_other_options_are_refused(tmp_path):
    prefix = str(tmp_path / "o")
    with pytest.raises(Killed):
        run_shard(prefix, 0, 2, crash_after=1)
    path = IdsJournal.locate(prefix, 0, 2)
    before = open(path, "rb").read()
    with pytest.raises(SeqKDError, match=re.escape(f"{path} was started with other options (option); use the same "
                                                   f"options or remove it")):
        run_shard(prefix, 0, 2, resume=True, option="b")
    assert open(path, "rb").read() == before
    run_shard(prefix, 0, 2, resume=True).close()
    run_shard(prefix, 1, 2, option="b").close()
    with pytest.raises(SeqKDError, match=re.escape(f"{IdsJournal.locate(prefix, 1, 2)} and {path} were made with "
                                                   f"different options (option)")):
        merge(prefix, 2)


def test_missing_shard_and_lock(tmp_path):
    prefix = str(tmp_path / "o")
    held = run_shard(prefix, 0, 2)
    try:
        with pytest.raises(SeqKDError, match=re.escape(f"{IdsJournal.locate(prefix, 1, 2)}: missing (shard 1 of 2 "
                                                       f"has not run)")):
            merge(prefix, 2, {0: held})
        assert not held._file.closed  # a held journal stays open (and locked) after a failed merge
        with pytest.raises(SeqKDError, match=re.escape(f"{held.path}: in use by another ids-job run (locked)")):
            merge(prefix, 2)
        with pytest.raises(SeqKDError, match=re.escape(f"{held.path}: in use by another ids-job run (locked)")):
            run_shard(prefix, 0, 2, resume=True)
    finally:
        held.close()
    run_shard(prefix, 0, 2, resume=True).close()  # the lock went with its holder


def test_a_sentence_in_no_shard_is_named(tmp_path):
    prefix = str(tmp_path / "o")
    run_shard(prefix, 0, 2).close()
    run_shard(prefix, 1, 2).close()
    path = IdsJournal.locate(prefix, 1, 2)
    lines = open(path).read().splitlines(keepends=True)
    dropped = json.loads(lines[1])
    lines[1] = json.dumps(dict(dropped, ids=dropped["ids"][1:])) + "\n"
    open(path, "w").writelines(lines)
    with pytest.raises(SeqKDError, match=re.escape(f"{prefix}.shard-*-of-2.jsonl: sentence {dropped['ids'][0]} "
                                                   f"of the {N} of the data is in no journal")):
        merge(prefix, 2)


def test_check_same_config_words():
    check_same_config({"a": 1}, {"a": 1}, "x")
    with pytest.raises(SeqKDError, match=r"^x was started with other options or inputs \(a, b\); do this$"):
        check_same_config({"a": 1}, {"a": 2, "b": 0}, "x", what="options or inputs", remedy="do this")
    with pytest.raises(SeqKDError, match=r"^y and x were made with different options \(a\)$"):
        check_same_config({"a": 1}, {"a": 2}, "x", "y")
