"""fairseq-train and fairseq-generate with --user-dir learn the toy mapping."""

import os

import pytest
import sacrebleu

import toydata


def test_tiny_teacher_learns_toy_mapping(toy_model, toy_data, toy_text):
    out = toydata.generate(toy_data, toy_model, ["--beam", "5"])
    hyps = toydata.hypotheses(out)
    with open(os.path.join(toy_text, "test.tgt")) as f:
        refs = [line.strip() for line in f]
    assert sorted(hyps) == list(range(len(refs)))
    bleu = sacrebleu.corpus_bleu([hyps[i] for i in range(len(refs))], [refs]).score
    assert bleu > 80, bleu


@pytest.mark.slow  # a fresh process or a whole corpus: left out by make test-fast
def test_repo_relative_user_dir(toy_model, toy_data):
    """`--user-dir fairseq_seqkd` from the repository root, as the README shows."""
    proc = toydata.run_cli(["fairseq-generate", toy_data, "--user-dir", "fairseq_seqkd", "--path", toy_model,
                            "--task", "seqkd_translation", "--beam", "1", "--batch-size", "50", "--num-workers", "0"],
                           cwd=toydata.REPO)  # data loader workers would leave a pymp-* folder in TMPDIR
    assert len(toydata.hypotheses(proc.stdout)) == 100


def test_seqkd_task_keeps_the_last_batch_that_translation_drops(toy_model, toy_data):
    """fairseq-fixed's batch_by_size drops a last batch whose size is not a multiple of 8."""
    stock = toydata.generate(toy_data, toy_model, ["--beam", "1", "--batch-size", "50", "--task", "translation"])
    ours = toydata.generate(toy_data, toy_model, ["--beam", "1", "--batch-size", "50"])
    assert len(toydata.hypotheses(stock)) == 96  # 48 + 48: the 4 longest test sentences are lost
    assert sorted(toydata.hypotheses(ours)) == list(range(100))
