"""fairseq-generate --task seqkd_translation --kbest-out FILE: the same bytes as the in-memory writer
(kbest.write_kbest_file), an incomplete split refused before decoding, no stale FILE left, and a spool whose
memory does not grow with the split."""

import logging
import os
import tracemalloc

import pytest

import toydata
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.kbest import Sentence, read_kbest, write_kbest_file
from fairseq_seqkd.tasks.seqkd_translation import KBestSpool

GENERATE = ["--beam", "4", "--nbest", "4"]


def oracle_entries(data, model, subset="test", beam=4, nbest=4, batch_size=32):
    """The K-best lists of ``subset`` decoded by fairseq_seqkd.generation (the path seqkd-distill takes), with
    fairseq-generate's batches (length-sorted, --batch-size 32)."""
    from fairseq_seqkd import generation

    task = generation.load_split(data, subset)
    model, _ = generation.load_for_generation(model, task, cpu=True)
    decoder = generation.Generator(task, model, beam=beam, nbest=nbest)
    entries = {}
    for batch in generation.fixed_batches(task, model, subset, batch_size=batch_size):
        sample = generation.collate(task.dataset(subset), batch)
        for entry in decoder.kbest_sentences(sample, decoder.generate(sample)):
            entries[entry.id] = entry
    return [entries[i] for i in sorted(entries)]


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def test_kbest_out_is_byte_identical_to_the_in_memory_writer(toy_data, toy_model, tmp_path, caplog):
    path = tmp_path / "out" / "test.kbest"
    path.parent.mkdir()
    path.write_text("stale K-best file of an earlier run\n")
    with caplog.at_level(logging.INFO, logger="fairseq_seqkd.tasks.seqkd_translation"):
        toydata.generate(toy_data, toy_model, [*GENERATE, "--kbest-out", str(path)])
    assert f"removed {path} of an earlier run" in caplog.text
    assert os.listdir(path.parent) == ["test.kbest"]  # no spill or index left behind
    oracle = tmp_path / "oracle.kbest"
    write_kbest_file(str(oracle), oracle_entries(toy_data, toy_model), 4)
    assert read_bytes(path) == read_bytes(oracle)
    assert sorted(read_kbest(str(path))) == list(range(100))


def long_sources(toy_text, limit):
    with open(os.path.join(toy_text, "test.src")) as f:
        return [i for i, line in enumerate(f) if len(line.split()) + 1 > limit]  # + </s>


def shard_sentences(toy_data, toy_model, shard_id):
    out = toydata.generate(toy_data, toy_model, ["--beam", "1", "--distributed-world-size", "2",
                                                 "--distributed-rank", str(shard_id)])
    return {int(line.split("\t")[0][2:]) for line in out.splitlines() if line.startswith("S-")}


@pytest.mark.parametrize("case", ["size-filter", "shard"])
def test_incomplete_split_is_refused_before_decoding_and_no_stale_file_is_left(case, toy_data, toy_model, toy_text,
                                                                                tmp_path):
    if case == "size-filter":
        options = ["--max-source-positions", "6", "--skip-invalid-size-inputs-valid-test"]
        missing = long_sources(toy_text, 6)
        reason = f"{len(missing)} longer than the max positions (6, 1024) and dropped by " \
                 f"--skip-invalid-size-inputs-valid-test"
    else:
        options = ["--distributed-world-size", "2", "--distributed-rank", "0"]
        missing = sorted(set(range(100)) - shard_sentences(toy_data, toy_model, 0))
        reason = f"{len(missing)} left to other shards (this is shard 0 of 2"
    assert 0 < len(missing) < 100
    path = tmp_path / "test.kbest"
    path.write_text("stale K-best file of an earlier run\n")
    with pytest.raises(SystemExit) as stop:
        toydata.generate(toy_data, toy_model, [*GENERATE, "--kbest-out", str(path), *options])
    message = str(stop.value.code)
    first = ", ".join(str(i) for i in missing[:5])
    assert message.startswith(f"error: --kbest-out {path} needs every sentence of test, but {len(missing)} of "
                              f"its 100 would not be generated (ids {first}, ...): {reason}"), message
    assert "\n" not in message
    assert os.listdir(tmp_path) == []  # the stale file is gone, and nothing was spooled


@pytest.mark.slow  # a fresh process
def test_incomplete_split_is_a_one_line_error_of_the_cli(toy_data, toy_model, tmp_path):
    path = tmp_path / "test.kbest"
    path.write_text("stale\n")
    proc = toydata.run_cli(["fairseq-generate", toy_data, "--user-dir", toydata.USER_DIR, "--task",
                            "seqkd_translation", "--path", toy_model, "--cpu", "--beam", "2", "--nbest", "2",
                            "--kbest-out", str(path), "--max-source-positions", "6",
                            "--skip-invalid-size-inputs-valid-test"], check=False)
    toydata.assert_one_line_error(proc, "would not be generated")
    assert not path.exists()


def synthetic(i, hyps=5):
    """A sentence with ``hyps`` hypotheses, some rows unusual (no reference, non-ASCII text, infinite score)."""
    entry = Sentence(i, source=f"s{i % 97} s{i % 13} é", reference=None if i % 7 == 3 else f"t{i % 97} t{i % 13}")
    entry.hyps = [(-0.1 * rank - i / 1e4 if i % 11 else float("-inf"), f"t{i % 97} h{rank} ü{i}")
                  for rank in range(hyps)]
    return entry


def spooled_ids(n):
    """0 .. n-1 in a scattered order (as length-sorted batches give them), without a list of n ids."""
    step = 7919  # a prime that divides none of the sizes used here
    assert n % step
    return ((i * step) % n for i in range(n))


def test_spool_writes_the_bytes_of_write_kbest_file_in_any_arrival_order(tmp_path):
    n = 1000
    oracle = tmp_path / "oracle.kbest"
    write_kbest_file(str(oracle), [synthetic(i) for i in range(n)], 5)
    path = tmp_path / "out.kbest"
    spool = KBestSpool(str(path), n)
    spool.MAX_READ = 100  # copy in small pieces: runs of consecutive sentences are split
    ids = list(spooled_ids(n))
    ids[100:300] = sorted(ids[100:300])  # some sentences arrive in id order (longer runs)
    for start in range(0, n, 32):
        assert not path.exists()
        assert spool.add([synthetic(i) for i in ids[start:start + 32]], 5) == (start + 32 >= n)
    assert read_bytes(path) == read_bytes(oracle)
    assert sorted(os.listdir(tmp_path)) == ["oracle.kbest", "out.kbest"]


def test_spool_refuses_repeated_and_foreign_ids_and_cleans_up(tmp_path):
    spool = KBestSpool(str(tmp_path / "out.kbest"), 3)
    assert len(os.listdir(tmp_path)) == 2  # the spill and the index
    spool.add([synthetic(1)], 5)
    with pytest.raises(SeqKDError, match="out.kbest: sentence 1 was generated twice"):
        spool.add([synthetic(1)], 5)
    with pytest.raises(SeqKDError, match="out.kbest: sentence id 3 is not one of the 3 sentences"):
        spool.add([synthetic(3)], 5)
    spool.close()
    assert os.listdir(tmp_path) == []
    spool = KBestSpool(str(tmp_path / "out.kbest"), 1)
    assert spool.add([synthetic(0)], 5)
    with pytest.raises(SeqKDError, match="out.kbest: more sentences after all 1 were written"):
        spool.add([], 5)
    assert os.listdir(tmp_path) == ["out.kbest"]


def spool_peak(folder, n):
    """Peak traced memory while spooling and writing ``n`` synthetic sentences (with buffers smaller than
    the default ones, so that a small ``n`` already fills them)."""
    tracemalloc.start()
    try:
        spool = KBestSpool(os.path.join(folder, f"{n}.kbest"), n)
        spool.INDEX_CHUNK, spool.MAX_READ = 512, 1 << 15
        batch = []
        for k, i in enumerate(spooled_ids(n), 1):
            batch.append(synthetic(i))
            if len(batch) == 8 or k == n:
                assert spool.add(batch, 5) == (k == n)
                batch = []
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_spool_memory_does_not_grow_with_the_split(tmp_path):
    small, large = spool_peak(str(tmp_path), 1500), spool_peak(str(tmp_path), 6000)
    assert large < 1.25 * small, (small, large)
    assert sorted(read_kbest(str(tmp_path / "6000.kbest"))) == list(range(6000))
    assert sorted(os.listdir(tmp_path)) == ["1500.kbest", "6000.kbest"]
