"""The README promises a teacher of any architecture: word_kd and seqkd-distill with a fairseq
`transformer` teacher and a Luong LSTM student, and a Transformer student with an LSTM teacher."""

import os

import pytest
import torch

import toydata
from fairseq_seqkd.criterions.word_kd import WordKDCriterion
from fairseq_seqkd.distill import DistillOptions, distill
from fairseq_seqkd.teacher import FrozenTeacher
from kd_helpers import a_batch, criterion, fresh_student, load_task, oracle_loss


@pytest.mark.parametrize("alpha,temperature,topk", [(0.5, 1.0, 0), (0.7, 2.0, 5)])
def test_loss_with_a_transformer_teacher_equals_oracle(toy_data, transformer_model, alpha, temperature, topk):
    task = load_task(toy_data)
    student, sample = fresh_student(task), a_batch(task)
    teacher = FrozenTeacher.load(transformer_model, task).model
    with torch.no_grad():
        expected = oracle_loss(student(**sample["net_input"])[0], teacher(**sample["net_input"])[0],
                               sample["target"], task.target_dictionary.pad(), alpha, temperature, topk)
        loss = criterion(task, transformer_model, alpha, temperature, topk)(student, sample)[0]
    assert float(loss) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("teacher,student_arch", [("transformer", "luong_lstm_1x32"), ("lstm", "transformer")])
def test_topk_store_equals_live_teacher_across_architectures(toy_data, toy_model, transformer_model, teacher,
                                                             student_arch, tmp_path):
    """seqkd-topk runs the teacher on its own batches (other padding, other rows): a Transformer's positions
    must come out the same as in the student's batch."""
    from fairseq_seqkd.cli.topk import main as topk_main

    task = load_task(toy_data)
    path = transformer_model if teacher == "transformer" else toy_model
    store = str(tmp_path / "store")
    topk_main([toy_data, "--path", path, "--out", store, "--k", "6", "--batch-size", "37", "--cpu"])
    overrides = {} if student_arch.startswith("luong") else dict(
        encoder_layers=1, decoder_layers=1, encoder_embed_dim=16, decoder_embed_dim=16, encoder_ffn_embed_dim=32,
        decoder_ffn_embed_dim=32, encoder_attention_heads=2, decoder_attention_heads=2)
    student = fresh_student(task, arch=student_arch, **overrides)
    batch = a_batch(task, "train", order=list(range(11, -1, -1)))
    live = criterion(task, path, 0.5, 1.0, 6)
    stored = WordKDCriterion(task, "", 0.5, 1.0, 0, False, kd_topk_store=store)
    with torch.no_grad():
        student.train()
        torch.manual_seed(0)
        expected = live(student, batch)[0]
        torch.manual_seed(0)
        got = stored(student, batch)[0]
        student.eval()
    torch.testing.assert_close(got, expected, rtol=2e-4, atol=1e-3)  # the store keeps float16 log-probs


@pytest.mark.slow
@pytest.mark.parametrize("case", ["transformer-teacher", "transformer-student"])
def test_fairseq_train_word_kd_across_architectures(case, toy_data, toy_model, transformer_model, tmp_path):
    teacher = toy_model if case == "transformer-student" else transformer_model
    extra = ["--criterion", "word_kd", "--teacher-path", teacher]
    if case == "transformer-student":
        extra += toydata.TINY_TRANSFORMER_ARGS
    save_dir = tmp_path / "student"
    toydata.train(toy_data, str(save_dir), extra, max_epoch=2)
    state = torch.load(save_dir / "checkpoint_last.pt", weights_only=False)
    model_cfg = state["cfg"]["model"]  # an argparse.Namespace for registered architectures
    assert getattr(model_cfg, "arch", None) == ("transformer" if case == "transformer-student" else "luong_lstm_1x32")
    assert state["criterion"] is None and all(not k.startswith("teacher") for k in state["model"])
    assert state["extra_state"]["train_iterator"]["epoch"] == 3
    hyps = toydata.hypotheses(toydata.generate(toy_data, str(save_dir / "checkpoint_last.pt"), ["--beam", "2"]))
    assert sorted(hyps) == list(range(100))


def test_seqkd_distill_with_a_transformer_teacher_equals_fairseq_generate(toy_data, toy_text, transformer_model,
                                                                          tmp_path):
    prefix = tmp_path / "valid.kd"
    distill(DistillOptions(data=toy_data, path=transformer_model, out_prefix=str(prefix), subset="valid", beam=3,
                           batch_size=16, cpu=True))
    best = toydata.hypotheses(toydata.generate(toy_data, transformer_model, ["--beam", "3"], subset="valid"))
    with open(f"{prefix}.tgt") as f:
        assert f.read().split("\n")[:-1] == [best[i] for i in range(100)]
    with open(f"{prefix}.src") as f, open(os.path.join(toy_text, "valid.src")) as g:
        assert f.read() == g.read()
