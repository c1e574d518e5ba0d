"""seqkd-topk and word_kd --kd-topk-store: the store's contents, the loss it gives, refusals, shards, resume."""

import logging
import os
import re

import numpy as np
import pytest
import torch

import toydata
from fairseq_seqkd.cli.topk import main as topk_main
from fairseq_seqkd.criterions.word_kd import WordKDCriterion
from fairseq_seqkd.errors import SeqKDError, StoppedEarly
from fairseq_seqkd.teacher import FrozenTeacher
from fairseq_seqkd.topk_store import (
    SENTENCES_FILE, VALUES_FILE, ShardWriter, TopKStore, shard_folder, store_bytes, target_digest,
)
from kd_helpers import a_batch, criterion, fresh_student, load_task

K = 5
BUILD = ["--k", str(K), "--batch-size", "64", "--cpu"]


def build(data, teacher, out, *extra):
    return topk_main([data, "--path", teacher, "--out", str(out), *BUILD, *extra])


def folder_bytes(path):
    return {name: open(os.path.join(path, name), "rb").read() for name in sorted(os.listdir(path))}


@pytest.fixture(scope="module")
def store(toy_data, toy_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("topk") / "train.top5"
    header = build(toy_data, toy_model, out)
    assert header["sentences"] == 1500 and not os.path.exists(shard_folder(str(out), 0, 1))
    return str(out)


def store_criterion(task, store, alpha=0.5, temperature=1.0, topk=0, teacher=""):
    return WordKDCriterion(task, teacher, alpha, temperature, topk, False, kd_topk_store=store)


def test_store_holds_the_teachers_topk_log_probs_at_every_target_token(store, toy_data, toy_model):
    """Oracle: the teacher run on each sentence alone (no padding), log_softmax then top-k."""
    task = load_task(toy_data)
    task.load_dataset("train")
    ds = task.dataset("train")
    s = TopKStore.open(store)
    h = s.header
    assert (h["k"], h["subset"], h["ids_dtype"], h["target_tokens"]) == (K, "train", "uint16", int(ds.tgt_sizes.sum()))
    assert h["target_digest"] == target_digest(ds.tgt, len(ds))
    assert np.array_equal(np.diff(s.offsets), ds.tgt_sizes)  # every target token, EOS included
    sizes = {name: os.path.getsize(os.path.join(store, name)) for name in os.listdir(store)}
    assert sizes["values.fp16"] == sizes["ids.uint16"] == 2 * K * h["target_tokens"]
    assert sizes["offsets.int64"] == 8 * (len(ds) + 1)
    per_token = store_bytes(store) / h["target_tokens"]
    assert 4 * K < per_token < 4 * K + 1.5, per_token  # 4 bytes per entry + 8 per sentence (6.4 tokens) + header
    teacher = FrozenTeacher.load(toy_model, task)
    for sid in (0, 7, 1499):
        sample = ds.collater([ds[sid]])
        lprobs = torch.log_softmax(teacher.logits(sample["net_input"])[0].float(), dim=-1)
        values, ids = s.gather([sid], [ds.tgt_sizes[sid]])
        expected = lprobs.gather(-1, torch.from_numpy(ids.astype(np.int64)))
        torch.testing.assert_close(torch.from_numpy(values.astype(np.float32)), expected, rtol=1e-3, atol=2e-3)
        kth = lprobs.topk(K, dim=-1).values[:, -1:]
        assert (expected >= kth - 1e-5).all()  # they are the k best words
        assert (np.diff(values.astype(np.float32), axis=1) <= 0).all()  # best first


@pytest.mark.parametrize("left_pad_target", [False, True])
@pytest.mark.parametrize("alpha,temperature", [(0.5, 1.0), (0.7, 2.0), (1.0, 0.5)])
def test_store_loss_equals_live_teacher_topk_loss(store, toy_data, toy_model, alpha, temperature, left_pad_target):
    """Same batch, same T: the loss with the store is the live teacher's top-k loss up to float16 rounding.
    Left-padded targets: the store's rows go back to each sentence's tokens wherever the padding puts them
    (compared with the live teacher on the same sentences right-padded: an LSTM decoder reads left padding)."""
    task = load_task(toy_data, left_pad_target=left_pad_target)
    right = load_task(toy_data)
    sample, right_sample = a_batch(task, "train"), a_batch(right, "train")
    assert torch.equal(sample["id"], right_sample["id"])
    student = fresh_student(task)
    live = criterion(right, toy_model, alpha, temperature, K)
    stored = store_criterion(task, store, alpha, temperature)
    student.train()  # the store is read in training; the same dropout mask for both
    torch.manual_seed(0)
    got, _, log = stored(student, sample)
    torch.manual_seed(0)
    expected, _, live_log = live(student, right_sample)
    student.eval()
    if left_pad_target:  # the student's own outputs depend on the padding side: compare the KD terms' inputs
        values, index = stored._stored_topk(sample)
        live_values, live_index = live.teacher.logits(right_sample["net_input"]).topk(K, dim=-1)
        pad = task.target_dictionary.pad()
        here, there = sample["target"].ne(pad), right_sample["target"].ne(pad)
        assert not torch.equal(here, there)
        assert torch.equal(index[here], live_index[there])
        torch.testing.assert_close(torch.softmax(values[here] / temperature, -1),
                                   torch.softmax(live_values[there] / temperature, -1), rtol=0, atol=2e-3)
        return
    assert float(log["nll_loss"]) == float(live_log["nll_loss"])
    torch.testing.assert_close(got, expected, rtol=2e-4, atol=0)
    assert float(log["kd_loss"]) == pytest.approx(float(live_log["kd_loss"]), rel=2e-4)


def test_store_without_teacher_validates_on_gold_only(store, toy_data, toy_model):
    task = load_task(toy_data)
    sample = a_batch(task, "train")
    student = fresh_student(task)  # eval mode: validation
    no_teacher = store_criterion(task, store)
    assert no_teacher.teacher is None
    loss, _, log = no_teacher(student, sample)
    assert "kd_loss" not in log and torch.equal(loss, log["nll_loss"])
    with_teacher = store_criterion(task, store, teacher=toy_model)
    expected = criterion(task, toy_model, 0.5, 1.0, K)(student, sample)[0]
    assert torch.equal(with_teacher(student, sample)[0], expected)  # validation runs the teacher as before


def test_mismatched_stores_are_refused(store, toy_data, toy_model, toy_text, tmp_path):
    task = load_task(toy_data)
    with pytest.raises(SystemExit, match=r"^error: --kd-topk-store .*: holds the top 5, --kd-topk is 4$"):
        store_criterion(task, store, topk=4)
    assert store_criterion(task, store, topk=K).topk == K
    state = torch.load(toy_model, weights_only=False)
    state["model"]["decoder.embed_tokens.weight"][4, 0] += 1  # another teacher, same dictionaries
    other_teacher = str(tmp_path / "other.pt")
    torch.save(state, other_teacher)
    with pytest.raises(SystemExit, match=r"^error: --kd-topk-store .*: built from another teacher .*other\.pt$"):
        store_criterion(task, store, teacher=other_teacher)
    with pytest.raises(SystemExit, match=r"^error: --kd-cache was removed: .*seqkd-topk"):
        WordKDCriterion(task, toy_model, 0.5, 1.0, K, False, kd_cache=True)
    with pytest.raises(SystemExit, match=r"^error: --kd-topk-store with sharded data"):
        store_criterion(load_task(os.pathsep.join([toy_data, toy_data])), store)
    with pytest.raises(SystemExit, match=r"not a top-k store"):
        store_criterion(task, str(tmp_path))
    # Another corpus with the same dictionaries (a Seq-KD corpus, say): refused at its first training batch.
    text = toydata.write_toy_corpus(str(tmp_path / "text"), sizes=(("train", 1500),), seed=5)
    other = toydata.preprocess(text, str(tmp_path / "bin"), splits=("train",), extra=[
        "--srcdict", os.path.join(toy_data, "dict.src.txt"), "--tgtdict", os.path.join(toy_data, "dict.tgt.txt")])
    other_task = load_task(other)
    crit, sample, student = store_criterion(other_task, store), a_batch(other_task, "train"), fresh_student(other_task)
    student.train()
    with pytest.raises(SystemExit, match=r"^error: --kd-topk-store .*: built for the 1500 sentences of train of "
                                         r".*, whose targets differ from those of train of .*bin"):
        crit(student, sample)


def test_other_dictionary_refused(store, other_vocab_data):
    with pytest.raises(SystemExit, match=r"^error: --kd-topk-store .*: built with another target dictionary"):
        store_criterion(load_task(other_vocab_data), store)


def test_sharded_build_and_merge_equal_one_process(store, toy_data, toy_model, tmp_path):
    out = tmp_path / "train.top5"
    for shard in (2, 0, 1):
        assert build(toy_data, toy_model, out, "--num-shards", "3", "--shard-id", str(shard)) is None
        assert not out.exists()
    with pytest.raises(SeqKDError, match=r"shard-1-of-3/journal.jsonl: in use by another seqkd-topk run"):
        held = ShardWriter.open(shard_folder(str(out), 1, 3))
        try:
            topk_main(["--merge", "--out", str(out), "--num-shards", "3"])
        finally:
            held.close()
    topk_main(["--merge", "--out", str(out), "--num-shards", "3"])
    assert folder_bytes(out) == folder_bytes(store)
    assert sorted(os.listdir(tmp_path)) == ["train.top5"]  # shard folders and the merge index are gone


def test_killed_build_resumes_to_the_same_bytes(store, toy_data, toy_model, tmp_path):
    out = tmp_path / "train.top5"
    with pytest.raises(StoppedEarly, match="stopped after 3 batches"):
        build(toy_data, toy_model, out, "--stop-after-batches", "3")
    folder = shard_folder(str(out), 0, 1)
    # a kill in the middle of the 4th batch: its data partly written, a torn journal line
    with open(os.path.join(folder, VALUES_FILE), "ab") as f:
        f.write(b"\x01" * 1001)
    with open(os.path.join(folder, SENTENCES_FILE), "ab") as f:
        f.write(b"\x02" * 24)
    with open(os.path.join(folder, "journal.jsonl"), "ab") as f:
        f.write(b'{"batch": 3, "sent')
    with pytest.raises(SeqKDError, match="exists .*add --resume"):
        build(toy_data, toy_model, out)
    other_batches = r"was started with other options or inputs \(batch_digest, batch_size, batches\)"
    with pytest.raises(SeqKDError, match=other_batches):
        topk_main([toy_data, "--path", toy_model, "--out", str(out), "--k", str(K), "--batch-size", "32", "--cpu",
                   "--resume"])
    build(toy_data, toy_model, out, "--resume")
    assert folder_bytes(out) == folder_bytes(store)
    assert not os.path.exists(folder)


def test_second_writer_of_a_shard_refused(tmp_path):
    first = ShardWriter.open(str(tmp_path / "s"), create=True)
    try:
        with pytest.raises(SeqKDError, match="in use by another seqkd-topk run"):
            ShardWriter.open(str(tmp_path / "s"))
    finally:
        first.close()
    ShardWriter.open(str(tmp_path / "s")).close()  # the lock went with its holder


def test_damaged_store_refused(store, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name, data in folder_bytes(store).items():
        (copy / name).write_bytes(data[:-2] if name == VALUES_FILE else data)
    with pytest.raises(SeqKDError, match=r"values\.fp16: \d+ bytes, its header says \d+"):
        TopKStore.open(str(copy))


def test_fairseq_train_with_store_matches_live_teacher(store, toy_data, toy_model, tmp_path, caplog):
    """The first update's loss with the store equals the live teacher's top-k (both T = 2); it trains."""
    caplog.set_level(logging.INFO)
    common = ["--criterion", "word_kd", "--kd-temperature", "2", "--log-interval", "1", "--max-update", "1"]
    losses = {}
    for name, extra in (("live", ["--teacher-path", toy_model, "--kd-topk", str(K)]),
                        ("store", ["--kd-topk-store", store])):
        caplog.clear()
        toydata.train(toy_data, str(tmp_path / name), [*common, *extra], max_epoch=1)
        line = re.search(r"epoch 001:\s+1 / \d+ loss=([0-9.]+), nll_loss=([0-9.]+), kd_loss=([0-9.]+)", caplog.text)
        assert line, caplog.text[-2000:]
        losses[name] = [float(x) for x in line.groups()]
        assert "valid on 'valid' subset" in caplog.text
    assert losses["store"] == pytest.approx(losses["live"], abs=2e-3)
    caplog.clear()
    toydata.train(toy_data, str(tmp_path / "more"), ["--criterion", "word_kd", "--kd-topk-store", store], max_epoch=2)
    valid = re.findall(r"valid on 'valid' subset \| loss ([0-9.]+) \| nll_loss ([0-9.]+) \| ppl", caplog.text)
    assert len(valid) == 2 and all(loss == nll for loss, nll in valid)  # no teacher: the gold-word loss only
    after_one = torch.load(str(tmp_path / "store" / "checkpoint_last.pt"), weights_only=False)
    state = torch.load(str(tmp_path / "more" / "checkpoint_last.pt"), weights_only=False)
    assert state["extra_state"]["val_loss"] < float(valid[0][0]) < after_one["extra_state"]["val_loss"]  # it learns
    assert state["criterion"] is None


def test_sentences_longer_than_max_tokens_get_a_batch_of_their_own(toy_data, toy_model, tmp_path, caplog):
    """As seqkd-distill: a sentence above --max-tokens (max(source, target) tokens with </s>, fairseq's count)
    is computed in a batch of its own, with one warning; the store holds every sentence's top k (oracle: the
    teacher run on each sentence alone)."""
    data = toydata.over_max_tokens_data(str(tmp_path), toy_data, "train")
    caplog.set_level(logging.WARNING)
    out = tmp_path / "train.top5"
    header = topk_main([data, "--path", toy_model, "--out", str(out), "--k", str(K), "--max-tokens", "10", "--cpu"])
    assert (f"{data}: 2 sentence(s) of train have more tokens than --max-tokens 10: each gets a batch of its "
            f"own (sentence 4: 13 source, 4 target tokens; sentence 17: 5 source, 12 target tokens; "
            f"with </s>)") in caplog.text
    task = load_task(data)
    task.load_dataset("train")
    ds = task.dataset("train")
    assert header["sentences"] == 30 and header["target_tokens"] == int(ds.tgt_sizes.sum())
    s = TopKStore.open(str(out))
    assert np.array_equal(np.diff(s.offsets), ds.tgt_sizes)
    teacher = FrozenTeacher.load(toy_model, task)
    for sid in range(30):
        lprobs = torch.log_softmax(teacher.logits(ds.collater([ds[sid]])["net_input"])[0].float(), dim=-1)
        values, ids = s.gather([sid], [ds.tgt_sizes[sid]])
        expected = lprobs.topk(K, dim=-1)
        torch.testing.assert_close(torch.from_numpy(values.astype(np.float32)), expected.values, rtol=1e-3, atol=2e-3)
        assert np.array_equal(ids.astype(np.int64), expected.indices.numpy())
