"""The word_kd criterion: exact loss, frozen teacher, checkpoints, errors, training."""

import logging
import math
import os
import re

import pytest
import torch
from fairseq.criterions.cross_entropy import CrossEntropyCriterion

import toydata
from fairseq_seqkd.teacher import FrozenTeacher
from kd_helpers import a_batch, criterion, fresh_student, load_task, oracle_loss


@pytest.fixture(scope="module")
def setup(toy_data, toy_model):
    task = load_task(toy_data)
    student = fresh_student(task)
    sample = a_batch(task)
    assert sample["target"].eq(task.target_dictionary.pad()).sum() > 10  # the loss must skip padding
    teacher = FrozenTeacher.load(toy_model, task).model
    with torch.no_grad():
        s_logits = student(**sample["net_input"])[0]
        t_logits = teacher(**sample["net_input"])[0]
    return task, student, sample, s_logits, t_logits


@pytest.mark.parametrize("alpha,temperature,topk", [
    (0.5, 1.0, 0), (0.9, 1.0, 0), (1.0, 1.0, 0), (0.5, 2.0, 0), (0.5, 0.5, 0),
    (0.5, 1.0, 3), (0.7, 2.0, 5), (0.0, 1.0, 0),
])
def test_loss_equals_independent_oracle(setup, toy_model, alpha, temperature, topk):
    task, student, sample, s_logits, t_logits = setup
    crit = criterion(task, toy_model, alpha, temperature, topk)
    with torch.no_grad():
        loss, sample_size, log = crit(student, sample)
    expected = oracle_loss(s_logits, t_logits, sample["target"], task.target_dictionary.pad(),
                           alpha, temperature, topk)
    assert sample_size == sample["ntokens"]
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    nll = oracle_loss(s_logits, t_logits, sample["target"], task.target_dictionary.pad(), 0.0, 1.0, 0)
    assert float(log["nll_loss"]) == pytest.approx(nll, rel=1e-5)
    if alpha > 0:
        assert float(log["loss"]) == pytest.approx((1 - alpha) * float(log["nll_loss"])
                                                   + alpha * float(log["kd_loss"]), rel=1e-5)


def test_alpha_zero_is_fairseq_cross_entropy_exactly(setup, toy_model):
    task, student, sample, _, _ = setup
    ours = criterion(task, toy_model, alpha=0.0)(student, sample)
    theirs = CrossEntropyCriterion(task, sentence_avg=False)(student, sample)
    assert torch.equal(ours[0], theirs[0]) and ours[1] == theirs[1]
    ours_sent = criterion(task, toy_model, alpha=0.0, sentence_avg=True)(student, sample)
    theirs_sent = CrossEntropyCriterion(task, sentence_avg=True)(student, sample)
    assert ours_sent[1] == theirs_sent[1] == sample["target"].size(0)


def test_topk_full_vocabulary_equals_full(setup, toy_model):
    task, student, sample, _, _ = setup
    with torch.no_grad():
        full = criterion(task, toy_model, 0.5, 1.5, 0)(student, sample)[0]
        topk = criterion(task, toy_model, 0.5, 1.5, len(task.target_dictionary))(student, sample)[0]
    torch.testing.assert_close(full, topk, rtol=1e-6, atol=1e-4)


def test_alpha_one_ignores_gold_words(setup, toy_model):
    task, student, sample, _, _ = setup
    crit = criterion(task, toy_model, alpha=1.0)
    target, pad = sample["target"], task.target_dictionary.pad()
    other = dict(sample, target=target.masked_fill(target.ne(pad), task.target_dictionary.unk()))  # same padding
    with torch.no_grad():
        assert torch.equal(crit(student, sample)[0], crit(student, other)[0])


def test_teacher_frozen_out_of_optimizer_and_checkpoint(setup, toy_model):
    task, student, sample, _, _ = setup
    crit = criterion(task, toy_model)
    crit.train()
    student.train()
    loss, _, _ = crit(student, sample)
    loss.backward()
    teacher = crit.teacher.model
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert list(crit.parameters()) == [] and crit.state_dict() == {}
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    student.zero_grad()
    student.eval()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_teacher_follows_student_dtype(setup, toy_model, dtype):
    task, _, sample, _, _ = setup
    student = fresh_student(task).to(dtype)
    crit = criterion(task, toy_model)
    with torch.no_grad():
        loss, _, log = crit(student, sample)
    assert {p.dtype for p in crit.teacher.model.parameters()} == {dtype}
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and float(log["kd_loss"]) > 0


def test_fairseq_train_half_precision(toy_data, toy_model, tmp_path, caplog):
    """--memory-efficient-fp16 runs the student in float16 on CPU too (plain --fp16 needs CUDA in fairseq)."""
    save_dir = str(tmp_path / "fp16")
    caplog.set_level(logging.INFO)
    toydata.train(toy_data, save_dir, ["--criterion", "word_kd", "--teacher-path", toy_model,
                                       "--memory-efficient-fp16", "--cpu"], max_epoch=1)
    assert re.search(r"kd_loss [0-9.]+ .*loss_scale 128", caplog.text)  # fp16 loss scaling was active
    state = torch.load(os.path.join(save_dir, "checkpoint_last.pt"), weights_only=False)
    assert math.isfinite(state["extra_state"]["val_loss"]) and state["criterion"] is None


def test_bad_inputs_fail_before_training(setup, toy_model, toy_text, tmp_path):
    task = setup[0]
    not_ckpt = tmp_path / "notes.pt"
    not_ckpt.write_text("not a checkpoint\n")
    cases = [
        (dict(teacher=str(tmp_path / "nope.pt")), r"teacher .*nope.pt: no such file"),
        (dict(teacher=str(not_ckpt)), r"teacher .*notes.pt: not a fairseq checkpoint \(UnpicklingError\)$"),
        (dict(teacher=""), r"--criterion word_kd needs --teacher-path"),
        (dict(teacher=toy_model, alpha=1.5), r"--kd-alpha 1.5: must be in \[0, 1\]"),
        (dict(teacher=toy_model, alpha=-0.1), r"--kd-alpha -0.1"),
        (dict(teacher=toy_model, temperature=0.0), r"--kd-temperature 0.0: must be > 0"),
        (dict(teacher=toy_model, topk=-1), r"--kd-topk -1"),
        (dict(teacher=toy_model, topk=len(task.target_dictionary) + 1), r"--kd-topk 25: must be between 0 and the target vocabulary size 24"),
    ]
    for kwargs, message in cases:
        with pytest.raises(SystemExit, match="error: " + message):
            criterion(task, **kwargs)


def test_dictionary_mismatch_names_both_dictionaries(other_vocab_data, toy_data, toy_model):
    with pytest.raises(SystemExit) as err:
        criterion(load_task(other_vocab_data), toy_model)
    message = str(err.value)
    assert message.startswith("error: teacher ") and "target dictionary" in message
    assert os.path.join(toy_data, "dict.tgt.txt") in message and os.path.join(other_vocab_data, "dict.tgt.txt") in message
    assert message.count("symbols") == 2 and "first difference at index 4: 't" in message


def test_fairseq_train_bad_teacher_is_one_line_error(toy_data, tmp_path):
    proc = toydata.run_cli(["fairseq-train", toy_data, "--user-dir", toydata.USER_DIR, *toydata.TINY_TRAIN_ARGS,
                            "--criterion", "word_kd", "--teacher-path", str(tmp_path / "missing.pt"),
                            "--save-dir", str(tmp_path / "ckpt")], check=False)
    toydata.assert_one_line_error(proc, "missing.pt: no such file")
    assert not os.path.exists(tmp_path / "ckpt" / "checkpoint_last.pt")


@pytest.fixture(scope="module")
def word_kd_run(toy_data, toy_model, tmp_path_factory):
    save_dir = str(tmp_path_factory.mktemp("word_kd"))
    toydata.train(toy_data, save_dir, ["--criterion", "word_kd", "--teacher-path", toy_model], max_epoch=12)
    return save_dir


def test_word_kd_training_learns_and_checkpoint_has_no_teacher(word_kd_run, toy_data, toy_text, toy_model):
    best = os.path.join(word_kd_run, "checkpoint_best.pt")
    state = torch.load(best, weights_only=False)
    assert state["criterion"] is None
    baseline = torch.load(toy_model, weights_only=False)  # the same architecture trained with cross_entropy
    assert sorted(state["model"]) == sorted(baseline["model"])
    size, plain = os.path.getsize(best), os.path.getsize(toy_model)
    assert abs(size - plain) / plain < 0.02, (size, plain)
    import sacrebleu

    hyps = toydata.hypotheses(toydata.generate(toy_data, best, ["--beam", "5"]))
    with open(os.path.join(toy_text, "test.tgt")) as f:
        refs = f.read().splitlines()
    assert sacrebleu.corpus_bleu([hyps[i] for i in range(len(refs))], [refs]).score > 80


def test_word_kd_run_resumes_from_its_checkpoint(word_kd_run, toy_data, toy_model, tmp_path):
    import shutil

    resumed = str(tmp_path / "resumed")
    shutil.copytree(word_kd_run, resumed)
    toydata.train(toy_data, resumed, ["--criterion", "word_kd", "--teacher-path", toy_model], max_epoch=13)
    before = torch.load(os.path.join(word_kd_run, "checkpoint_last.pt"), weights_only=False)
    after = torch.load(os.path.join(resumed, "checkpoint_last.pt"), weights_only=False)
    epoch = lambda s: s["extra_state"]["train_iterator"]["epoch"]
    steps = lambda s: s["optimizer_history"][-1]["num_updates"]
    assert epoch(after) == epoch(before) + 1
    assert steps(after) == steps(before) // 12 * 13  # exactly one more epoch of updates


@pytest.mark.slow
def test_word_kd_under_ddp_with_two_cpu_processes(toy_data, toy_model, tmp_path):
    """Each rank loads its own teacher; the ranks split every epoch's batches between them."""
    save_dir = str(tmp_path / "ddp")
    outputs = toydata.run_ranks(["fairseq-train", toy_data, "--user-dir", toydata.USER_DIR, *toydata.TINY_TRAIN_ARGS,
                                 "--criterion", "word_kd", "--teacher-path", toy_model, "--max-epoch", "2",
                                 "--save-dir", save_dir])
    # fairseq silences INFO logs on rank > 0; rank 1 ran the same criterion (it cannot run without a teacher)
    assert outputs[0].count(f"loaded teacher {toy_model}") == 1 and "kd_loss" in outputs[0]
    state = torch.load(os.path.join(save_dir, "checkpoint_last.pt"), weights_only=False)
    single = torch.load(toy_model, weights_only=False)
    # epoch e's batches are built from seed + e (seqkd_translation): each rank takes every other one
    from fairseq_seqkd.generation import load_split

    task = load_split(toy_data, "train")
    batches = [len(task.get_batch_iterator(task.dataset("train"), max_tokens=400, seed=1, epoch=epoch,
                                           disable_iterator_cache=True).frozen_batches) for epoch in (1, 2)]
    assert state["optimizer_history"][-1]["num_updates"] == sum(math.ceil(b / 2) for b in batches)
    assert state["criterion"] is None and sorted(state["model"]) == sorted(single["model"])


