"""seqkd-distill killed, rerun, run twice at once: journals kept until the whole step succeeded, one writer
per journal, the teacher known by its content, a deliberate stop that says so, binarized data without gold
training shards, and a merge whose memory does not grow with the corpus.

Most cases write journals directly (:class:`~fairseq_seqkd.distill.ShardJournal`'s writer) instead of
decoding: they test the journal, the merge and the binarization, not the teacher.
"""

import filecmp
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc

import pytest

import toydata
from fairseq_seqkd.distill import (JOURNAL_FORMAT, OUTPUT_OPTIONS, DistillOptions, ShardJournal,
                                   binarize_distilled, distill, journal_path, merge_shards)
from fairseq_seqkd.errors import SeqKDError, StoppedEarly, exit_on_error
from fairseq_seqkd.kbest import Sentence, write_kbest_file

TEACHER = "/models/teacher.pt"


def run(data, model, prefix, **options):
    return distill(DistillOptions(data=data, path=model, out_prefix=str(prefix), cpu=True,
                                  **{"batch_size": 40, "beam": 3, **options}))


def merge(prefix, num_shards, **options):
    return distill(DistillOptions(out_prefix=str(prefix), merge=True, num_shards=num_shards, **options))


def lines(path):
    with open(path) as f:
        return f.read().split("\n")[:-1]


def record(sid, nbest):
    """A made-up decoded sentence (toy words, so that the toy dictionaries binarize it)."""
    words = [f"{sid % 17}", f"{sid * 7 % 19}", f"{sid // 3 % 13}"]
    rec = {"id": sid, "src": " ".join("s" + w for w in words), "tgt": " ".join("t" + w for w in words[:1 + sid % 3])}
    if nbest:
        rec["ref"] = " ".join("t" + w for w in words)
        rec["hyps"] = [[-0.125 * rank - sid / 1024, " ".join(["t" + words[0]] * (rank + 1))] for rank in range(nbest)]
    return rec


def journal_config(data, n, num_shards, nbest=0, sha="a" * 64):
    config = {k: getattr(DistillOptions(out_prefix="x"), k) for k in OUTPUT_OPTIONS}
    config.update(data=data, path=TEACHER, num_shards=num_shards, write_kbest=bool(nbest), nbest=max(nbest, 1),
                  source_lang="src", target_lang="tgt", sentences=n, batches=-(-n // 50), batch_digest="0",
                  teacher_sha256=sha)
    return config


def write_journals(prefix, n, num_shards, nbest=0, data="/data", shas=None, batch=50):
    """Finished journals of ``num_shards`` shards over ``n`` sentences, batches of scattered ids (as
    length-sorted batching makes them); returns the journals' paths."""
    ids = list(range(n))
    random.Random(n).shuffle(ids)
    batches = [ids[i:i + batch] for i in range(0, n, batch)]
    paths = []
    for shard in range(num_shards):
        path = journal_path(str(prefix), shard, num_shards)
        sha = shas[shard] if shas else "a" * 64
        journal = ShardJournal.open(path, create=True)
        journal.resume({"seqkd_distill": JOURNAL_FORMAT, "config": journal_config(data, n, num_shards, nbest, sha),
                        "shard_id": shard})
        for j in range(shard, len(batches), num_shards):
            journal.commit(j, [record(sid, nbest) for sid in batches[j]])
        journal.finish()
        journal.close()
        paths.append(path)
    return paths


def expected_outputs(folder, n, nbest):
    """OUT.src / OUT.tgt / OUT.kbest written the simple way, everything in memory (the oracle)."""
    records = [record(sid, nbest) for sid in range(n)]
    os.makedirs(folder)
    for lang in ("src", "tgt"):
        with open(os.path.join(folder, f"o.{lang}"), "w") as f:
            f.writelines(r[lang] + "\n" for r in records)
    if nbest:
        write_kbest_file(os.path.join(folder, "o.kbest"), [
            Sentence(r["id"], r["src"], r["ref"], [tuple(h) for h in r["hyps"]]) for r in records], nbest)
    return os.path.join(folder, "o")


def same_files(prefix, oracle, exts=("src", "tgt")):
    return all(filecmp.cmp(f"{prefix}.{ext}", f"{oracle}.{ext}", shallow=False) for ext in exts)


# 1. the journals stay until merge and binarization have both succeeded

def test_unsharded_rerun_after_a_failed_binarization_only_merges_and_binarizes(toy_data, toy_model, tmp_path):
    prefix = tmp_path / "out" / "train.kd"
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(SeqKDError, match="afile: cannot create this folder"):  # a one-line error, not a traceback
        run(toy_data, toy_model, prefix, binarize=str(tmp_path / "afile" / "bin"))
    journal = journal_path(str(prefix), 0, 1)
    assert os.path.exists(journal)  # the decoding is not lost
    first = {ext: open(f"{prefix}.{ext}", "rb").read() for ext in ("src", "tgt")}
    # had the journal gone, this rerun would decode again, and stop after one batch
    config = run(toy_data, toy_model, prefix, resume=True, stop_after_batches=1, binarize=str(tmp_path / "bin"))
    assert config["sentences"] == 1500
    assert {ext: open(f"{prefix}.{ext}", "rb").read() for ext in ("src", "tgt")} == first
    assert sorted(os.listdir(prefix.parent)) == ["train.kd.src", "train.kd.tgt"]
    assert "train.src-tgt.tgt.bin" in os.listdir(tmp_path / "bin")


def test_sharded_merge_rerun_after_a_failed_binarization(toy_data, tmp_path):
    prefix = tmp_path / "train.kd"
    journals = write_journals(prefix, 300, 3, data=toy_data)
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(SeqKDError, match="afile: cannot create this folder"):
        merge(prefix, 3, binarize=str(tmp_path / "afile" / "bin"))
    assert all(os.path.exists(p) for p in journals)
    assert merge(prefix, 3, binarize=str(tmp_path / "bin"))["sentences"] == 300
    assert not any(os.path.exists(p) for p in journals)
    assert same_files(prefix, expected_outputs(str(tmp_path / "expected"), 300, 0))
    from fairseq.data import Dictionary, data_utils

    d = Dictionary.load(os.path.join(tmp_path, "bin", "dict.tgt.txt"))
    ds = data_utils.load_indexed_dataset(os.path.join(tmp_path, "bin", "train.src-tgt.tgt"), d)
    assert [d.string(ds[i]) for i in range(len(ds))] == lines(f"{prefix}.tgt")


# 2. a deliberate stop is not a success

def test_stop_after_batches_exits_3_and_says_how_far_it_got(toy_data, toy_model, tmp_path, capsys):
    from fairseq_seqkd.cli import distill as cli

    argv = [toy_data, "--path", toy_model, "--out-prefix", str(tmp_path / "o"), "--cpu", "--batch-size", "40",
            "--beam", "3", "--stop-after-batches", "2"]
    with pytest.raises(SystemExit) as stop, exit_on_error():
        cli.main(argv)
    assert stop.value.code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("stopped: after 2 batches, as asked (--stop-after-batches)")
    assert "2 of the 38 batches" in err[-1]
    assert err[-1].endswith("rerun with --resume to continue")
    with pytest.raises(StoppedEarly, match="4 of the 38 batches"):  # resumed: 2 more, 4 in all
        cli.main(argv + ["--resume"])


# 3. one writer per journal

def test_a_second_run_on_a_locked_journal_is_refused(toy_data, toy_model, tmp_path):
    prefix = tmp_path / "train.kd"
    with pytest.raises(StoppedEarly):
        run(toy_data, toy_model, prefix, num_shards=2, shard_id=0, stop_after_batches=1)
    path = journal_path(str(prefix), 0, 2)
    before = open(path, "rb").read()
    holder = ShardJournal.open(path)  # another open file description: another run, as far as flock goes
    try:
        with pytest.raises(SeqKDError, match=f"^{re.escape(path)}: in use by another seqkd-distill run"):
            run(toy_data, toy_model, prefix, num_shards=2, shard_id=0, resume=True)
        write_journals(tmp_path / "m", 10, 1)
        with ShardLock(journal_path(str(tmp_path / "m"), 0, 1)):
            with pytest.raises(SeqKDError, match="m.shard-0-of-1.jsonl: in use by another seqkd-distill run"):
                merge(tmp_path / "m", 1)
    finally:
        holder.close()
    assert open(path, "rb").read() == before


class ShardLock:
    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.journal = ShardJournal.open(self.path)

    def __exit__(self, *exc):
        self.journal.close()


@pytest.mark.slow  # a fresh process
def test_a_running_process_holds_its_journal_and_a_kill_frees_it(toy_data, toy_model, tmp_path):
    """Two processes: seqkd-distill decoding, and this one trying the same shard; after a SIGKILL of the first
    (no chance to clean up) the journal is free and a resumed run continues it."""
    prefix = str(tmp_path / "train.kd")
    path = journal_path(prefix, 0, 1)
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=toydata.VENV_BIN + os.pathsep + os.environ["PATH"])
    proc = subprocess.Popen(["seqkd-distill", toy_data, "--path", toy_model, "--out-prefix", prefix, "--cpu",
                             "--batch-size", "1", "--beam", "3"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while proc.poll() is None and '"batch"' not in (open(path).read() if os.path.exists(path) else ""):
            time.sleep(0.2)
        assert proc.poll() is None, "seqkd-distill ended before the check"
        with pytest.raises(SeqKDError, match="in use by another seqkd-distill run"):
            run(toy_data, toy_model, prefix, beam=3, batch_size=1, resume=True)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = sum(line.startswith('{"batch"') for line in lines(path))
    with pytest.raises(StoppedEarly, match=f"{done + 2} of the 1500 batches"):  # the lock was free
        run(toy_data, toy_model, prefix, beam=3, batch_size=1, resume=True, stop_after_batches=2)


# 4. the teacher is known by its content

def test_a_changed_teacher_checkpoint_is_refused_on_resume(toy_data, toy_model, tmp_path):
    import torch

    teacher = str(tmp_path / "teacher.pt")
    shutil.copy(toy_model, teacher)
    prefix = tmp_path / "train.kd"
    with pytest.raises(StoppedEarly):
        run(toy_data, teacher, prefix, stop_after_batches=2)
    state = torch.load(teacher, map_location="cpu", weights_only=False)  # retrained to the same path
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] + 0.01
    torch.save(state, teacher)
    message = f"^{re.escape(teacher)}: the teacher checkpoint changed .* in .*shard-0-of-1.jsonl"
    with pytest.raises(SeqKDError, match=message):
        run(toy_data, teacher, prefix, resume=True)


def test_a_merge_of_shards_of_two_teachers_is_refused(tmp_path):
    write_journals(tmp_path / "o", 100, 2, shas=["a" * 64, "b" * 64])
    with pytest.raises(SeqKDError, match=f"^{re.escape(TEACHER)}: the teacher checkpoint changed"):
        merge(tmp_path / "o", 2)
    assert sorted(os.listdir(tmp_path)) == ["o.shard-0-of-2.jsonl", "o.shard-1-of-2.jsonl"]


# 5. the binarized folder: no gold training shards, a staging folder of its own

def test_binarize_leaves_out_the_datas_extra_training_shards(toy_data, toy_text, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(toy_data, data)
    for name in os.listdir(toy_data):
        if name.startswith("train."):
            for k in (1, 2):
                shutil.copy(os.path.join(toy_data, name), data / name.replace("train.", f"train{k}.", 1))
    prefix = os.path.join(toy_text, "valid")
    dest = tmp_path / "bin"
    other = tmp_path / "bin.tmp"  # the staging folder of another run (the fixed name of old)
    other.mkdir()
    (other / "theirs").write_text("x")
    binarize_distilled(prefix, {"data": str(data), "source_lang": "src", "target_lang": "tgt"}, str(dest))
    assert sorted(os.listdir(dest)) == sorted(os.listdir(toy_data))  # no train1.*, train2.*
    assert (other / "theirs").read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == ["bin", "bin.tmp", "data"]
    from fairseq.data import Dictionary, data_utils

    d = Dictionary.load(os.path.join(dest, "dict.tgt.txt"))
    ds = data_utils.load_indexed_dataset(os.path.join(dest, "train.src-tgt.tgt"), d)
    assert [d.string(ds[i]) for i in range(len(ds))] == lines(f"{prefix}.tgt")


# 6. the journal on disk: only finished batches count; bad lines are named

def test_an_unfinished_batch_and_a_torn_line_are_cut_off_on_resume(tmp_path):
    path = write_journals(tmp_path / "o", 120, 1, nbest=3)[0]
    raw = open(path, "rb").read()
    head, complete = raw[:raw.rindex(b"\n", 0, len(raw) - 1) + 1], raw[raw.rindex(b"\n", 0, len(raw) - 1) + 1:]
    sentence_lines = [line for line in head.split(b"\n") if line.startswith(b'{"id"')][:2]
    with open(path, "wb") as f:  # killed after two lines of a batch and in the middle of a third
        f.write(head + b"\n".join(sentence_lines) + b'\n{"id": 5, "src": "s1')
    journal = ShardJournal.open(path)
    journal.resume({"seqkd_distill": JOURNAL_FORMAT, "config": journal_config("/data", 120, 1, 3), "shard_id": 0})
    journal.close()
    assert open(path, "rb").read() == head
    assert len(journal.batches) == 3 and journal.sentences == 120 and not journal.complete
    with open(path, "ab") as f:
        f.write(complete)
    merge(tmp_path / "o", 1)
    assert same_files(tmp_path / "o", expected_outputs(str(tmp_path / "expected"), 120, 3), ("src", "tgt", "kbest"))


def test_a_corrupt_line_inside_a_journal_is_named(toy_data, toy_model, tmp_path):
    prefix = tmp_path / "train.kd"
    with pytest.raises(StoppedEarly):
        run(toy_data, toy_model, prefix, stop_after_batches=3)
    path = journal_path(str(prefix), 0, 1)
    data = open(path, "rb").read().split(b"\n")
    data[4] = b'{"id": 12, "src": "s1 s2", "tgt"'
    open(path, "wb").write(b"\n".join(data))
    with pytest.raises(SeqKDError, match=f"^{re.escape(path)}:5: corrupt line .*not a torn last line"):
        run(toy_data, toy_model, prefix, resume=True)
    assert open(path, "rb").read() == b"\n".join(data)  # nothing discarded
    write_journals(tmp_path / "m", 60, 1)
    merged = journal_path(str(tmp_path / "m"), 0, 1)
    data = open(merged, "rb").read().split(b"\n")
    data[6] = data[6].replace(b'"tgt"', b'"tgt', 1)
    open(merged, "wb").write(b"\n".join(data))
    with pytest.raises(SeqKDError, match=f"^{re.escape(merged)}:7: corrupt line"):
        merge(tmp_path / "m", 1)
    assert sorted(os.listdir(tmp_path)) == ["m.shard-0-of-1.jsonl", "train.kd.shard-0-of-1.jsonl"]


def test_a_journal_of_the_old_format_is_refused(tmp_path):
    path = journal_path(str(tmp_path / "o"), 0, 1)
    with open(path, "w") as f:
        f.write('{"seqkd_distill": 1, "config": {}, "shard_id": 0}\n{"complete": true, "batches": 0}\n')
    with pytest.raises(SeqKDError, match=f"^{re.escape(path)}: a journal of an older seqkd-distill \\(format 1\\)"):
        merge(tmp_path / "o", 1)


# 7. memory: the merge streams

def merge_peak(tmp_path, n):
    prefix = tmp_path / f"n{n}" / "o"
    prefix.parent.mkdir()
    write_journals(prefix, n, 2, nbest=5)
    tracemalloc.start()
    try:
        merge_shards(str(prefix), 2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert same_files(prefix, expected_outputs(str(tmp_path / f"expected{n}"), n, 5), ("src", "tgt", "kbest"))
    assert sorted(os.listdir(prefix.parent)) == ["o.kbest", "o.shard-0-of-2.jsonl", "o.shard-1-of-2.jsonl", "o.src",
                                                 "o.tgt"]  # the index is gone
    return peak


def test_merge_peak_memory_does_not_grow_with_the_corpus(tmp_path):
    small, large = merge_peak(tmp_path, 3000), merge_peak(tmp_path, 12000)
    sys.stderr.write(f"merge peak (tracemalloc): {small / 1024:.0f} KiB at 3000 sentences, {large / 1024:.0f} KiB at "
                     f"12000: {large / small:.2f}x\n")
    assert large < 1.25 * small


# 8. journal formats: what needs the newer reader says so to an older one

def format_2_reader(header):
    """The header check of the seqkd-distill that wrote and read only format 2 (before --keep, commit 1431df3^):
    its merge reads ``"tgt"`` of every sentence line, so it must refuse a --keep > 1 journal here."""
    version = header.get("seqkd_distill")
    if version != 2:
        if isinstance(version, int) and version < 2:
            return f"a journal of an older seqkd-distill (format {version})"
        return f"not a seqkd-distill journal (format {version!r})"
    return None


def test_keep_journals_carry_a_format_the_older_reader_refuses(toy_data, toy_model, tmp_path):
    """--keep > 1 journals ("tgts" lines) are format 3, refused in one line by the format-2 reader (which
    failed with a KeyError on them); --keep 1 journals stay format 2, readable by it; both resume here."""
    import json

    for keep, fmt in ((3, 3), (1, 2)):
        prefix = tmp_path / f"keep{keep}" / "valid.kd"
        options = dict(subset="valid", nbest=3, select="top-n", keep=keep, remove_bpe="none")
        with pytest.raises(StoppedEarly):
            run(toy_data, toy_model, prefix, stop_after_batches=1, **options)
        header = json.loads(lines(journal_path(str(prefix), 0, 1))[0])
        assert header["seqkd_distill"] == fmt and header["config"].get("keep", 1) == keep
        assert format_2_reader(header) == (None if keep == 1 else "not a seqkd-distill journal (format 3)")
        assert run(toy_data, toy_model, prefix, resume=True, **options)["sentences"] == 100
        assert len(lines(f"{prefix}.tgt")) == 100 * keep and os.path.exists(f"{prefix}.ids") == (keep > 1)


def test_keep_journals_of_format_2_still_merge_and_resume_as_format_3(tmp_path):
    """Journals written with --keep > 1 before the bump (format 2, "tgts") are merged as before; resumed, their
    header becomes format 3 in place (nothing else changes), so the older reader refuses them too."""
    import json

    from fairseq_seqkd.distill import journal_format

    assert (journal_format(1), journal_format(2), journal_format(5), JOURNAL_FORMAT) == (2, 3, 3, 3)
    config = dict(journal_config("/data", 60, 1), keep=2)
    recs = [dict(record(sid, 0)) for sid in range(60)]
    for rec in recs:
        rec["tgts"] = [rec.pop("tgt"), f"t{rec['id'] % 5}"]
    path = journal_path(str(tmp_path / "o"), 0, 1)
    with open(path, "w") as f:  # as the --keep version before the bump wrote it
        f.write(json.dumps({"seqkd_distill": 2, "config": config, "shard_id": 0}) + "\n")
        for j in range(2):
            f.writelines(json.dumps(rec, ensure_ascii=False) + "\n" for rec in recs[30 * j:30 * j + 30])
            f.write(json.dumps({"batch": j, "n": 30}) + "\n")
    before = open(path, "rb").read()
    journal = ShardJournal.open(path)
    journal.resume({"seqkd_distill": 3, "config": config, "shard_id": 0})
    journal.finish()
    journal.close()
    after = open(path, "rb").read()
    first = before.index(b"\n")
    assert after[:first] == before[:first].replace(b'{"seqkd_distill": 2, ', b'{"seqkd_distill": 3, ', 1)
    assert after[first:] == before[first:] + b'{"complete": true, "batches": 2}\n'
    assert format_2_reader(json.loads(after[:first])) == "not a seqkd-distill journal (format 3)"
    merge(tmp_path / "o", 1)
    assert lines(tmp_path / "o.tgt") == [t for rec in recs for t in rec["tgts"]]
    assert lines(tmp_path / "o.src") == [rec["src"] for rec in recs for _ in range(2)]
    assert lines(tmp_path / "o.ids") == [str(i) for i in range(60) for _ in range(2)]
    # a pre-bump journal merged without resuming (format 2 left as it is)
    open(path, "wb").write(before + b'{"complete": true, "batches": 2}\n')
    merge(tmp_path / "o", 1)
    assert lines(tmp_path / "o.tgt") == [t for rec in recs for t in rec["tgts"]]
    for version, message in ((4, "a journal of a newer seqkd-distill (format 4); finish it with that version, or "
                                 "remove it to start again"), (1, "a journal of an older seqkd-distill (format 1)"),
                             ("3", "not a seqkd-distill journal (format '3')")):
        open(path, "w").write(json.dumps({"seqkd_distill": version, "config": config, "shard_id": 0}) + "\n"
                              + '{"complete": true, "batches": 0}\n')
        with pytest.raises(SeqKDError, match=f"^{re.escape(path)}: {re.escape(message)}"):
            merge(tmp_path / "o", 1)
