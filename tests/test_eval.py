"""seqkd-eval against independent computations (seqkd-report: test_report.py)."""

import json
import math
import os
import re

import pytest
import sacrebleu
import torch
import torch.nn.functional as F

import toydata
from fairseq_seqkd.cli.eval import evaluate, get_parser


@pytest.fixture(scope="module")
def result(toy_data, toy_model, toy_text, tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    extra = folder / "ref2.tgt"
    with open(os.path.join(toy_text, "test.tgt")) as f:
        extra.write_text("".join(line.replace("t1 ", "t2 ") for line in f))
    args = get_parser().parse_args([toy_data, "--path", toy_model, "--json", str(folder / "model.json"),
                                    "--remove-bpe", "none", "--extra-refs", str(extra), "--cpu",
                                    "--hyps-out", str(folder / "hyps"), "--speed-sentences", "10"])
    return evaluate(args), folder, str(extra)


def generate_bleu(toy_data, toy_model, beam, extra_refs=()):
    out = toydata.generate(toy_data, toy_model, ["--beam", str(beam), "--batch-size", "17"])
    hyps, refs = toydata.hypotheses(out), {}
    for line in out.splitlines():
        if line.startswith("T-"):
            tag, text = line.split("\t", 1)
            refs[int(tag[2:])] = text
    ids = range(len(refs))
    ref_sets = [[refs[i] for i in ids]] + [list(r) for r in extra_refs]
    return sacrebleu.corpus_bleu([hyps[i] for i in ids], ref_sets).score


def test_bleu_equals_sacrebleu_on_fairseq_generate_output(result, toy_data, toy_model):
    r, folder, extra = result
    assert r["bleu_greedy"] == generate_bleu(toy_data, toy_model, 1)
    assert r["bleu_beam"] == generate_bleu(toy_data, toy_model, 5)
    with open(extra) as f:
        second = f.read().splitlines()
    assert r["bleu_beam_multiref"] == generate_bleu(toy_data, toy_model, 5, [second])
    assert r["bleu_signature"].startswith("nrefs:1|") and r["bleu_signature_multiref"].startswith("nrefs:2|")
    with open(folder / "model.json") as f:
        assert json.load(f) == pytest.approx(r)


def test_p_yhat_equals_independent_scoring_of_the_greedy_output(result, toy_data, toy_model):
    from fairseq_seqkd.tasks.seqkd_translation import setup_data_task
    from fairseq_seqkd.teacher import load_model

    r, folder, _ = result
    task = setup_data_task(toy_data, "test")
    model = load_model(toy_model, task)
    ds = task.dataset("test")
    with open(f"{folder}/hyps.greedy") as f:
        greedy = f.read().split("\n")[:-1]
    eos, probs = task.target_dictionary.eos(), []
    with torch.no_grad():
        for i in range(len(ds)):
            src = ds.src[i].unsqueeze(0)
            tokens = task.target_dictionary.encode_line(greedy[i], add_if_not_exist=False).long()  # ends with EOS
            prev = torch.cat([tokens.new_tensor([eos]), tokens[:-1]]).unsqueeze(0)
            logits = model(src, torch.tensor([src.size(1)]), prev)[0]
            lp = F.log_softmax(logits.double(), dim=-1)[0].gather(1, tokens.unsqueeze(1)).sum()
            probs.append(math.exp(float(lp)))
    assert r["p_yhat"] == pytest.approx(sum(probs) / len(probs), rel=1e-4)
    assert 0 < r["p_yhat"] <= 1


def test_ppl_equals_fairseq_validation_perplexity(result, toy_data, toy_model):
    proc = toydata.run_cli(["fairseq-validate", toy_data, "--user-dir", toydata.USER_DIR, "--task",
                            "seqkd_translation", "--path", toy_model, "--valid-subset", "test", "--batch-size", "16",
                            "--num-workers", "0", "--cpu"])
    loss = float(re.search(r"valid on 'test' subset \| loss ([0-9.]+)", proc.stdout + proc.stderr).group(1))
    assert result[0]["ppl"] == pytest.approx(2 ** loss, rel=2e-3)  # fairseq logs the loss to 3 decimals


def test_counts_and_speed_keys(result, toy_model):
    r = result[0]
    state = torch.load(toy_model, weights_only=False)["model"]
    assert r["params"] == sum(t.numel() for t in state.values())
    assert r["params_nonzero"] == sum(int(t.count_nonzero()) for t in state.values())
    for key in ("src_words_per_sec_greedy", "src_words_per_sec_beam", "src_words_per_sec_greedy_batched"):
        assert r[key] > 0
    assert r["speed_sentences"] == 10 and r["threads"] >= 1 and r["device"].startswith("cpu")


def test_bad_reference_files(toy_data, toy_model, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("a\nb\n")
    for refs, message in (([str(tmp_path / "none.txt")], "none.txt: no such file"),
                          ([str(short)], r"short.txt: 2 lines, but subset 'test' has 100 sentences")):
        with pytest.raises(SystemExit, match=message):
            evaluate(get_parser().parse_args([toy_data, "--path", toy_model, "--json", str(tmp_path / "o.json"),
                                              "--refs", *refs, "--cpu"]))
    assert not (tmp_path / "o.json").exists()

