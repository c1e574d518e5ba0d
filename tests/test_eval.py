"""seqkd-eval against independent computations; seqkd-report from fixed inputs."""

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
from fairseq_seqkd.cli.report import get_parser as report_parser
from fairseq_seqkd.cli.report import report


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


ROWS = [
    {"name": "Teacher 2x256", "bleu_greedy": 15.36, "bleu_beam": 17.87, "ppl": 18.98, "p_yhat": 0.0274,
     "params": 4102096, "params_nonzero": 4101584, "src_words_per_sec_greedy": 587.0, "src_words_per_sec_beam": 372.0},
    {"name": "Baseline 2x128", "bleu_greedy": 5.9, "bleu_beam": 6.1, "ppl": 33.4, "p_yhat": 0.004,
     "params": 1200000, "params_nonzero": 1199872, "src_words_per_sec_greedy": 1200.0, "src_words_per_sec_beam": 700.0},
    {"name": "Seq-KD", "bleu_greedy": 11.0, "bleu_beam": 11.2, "ppl": 60.2, "p_yhat": 0.15,
     "params": 1200000, "params_nonzero": 240000, "src_words_per_sec_greedy": 1190.0, "src_words_per_sec_beam": 690.0},
]


def test_report_from_fixed_inputs(tmp_path):
    (tmp_path / "eval").mkdir()
    for i, row in enumerate(ROWS):
        full = dict(row, beam=5, subset="test", sentences=250, bleu_signature="nrefs:1|tok:13a", device="cpu", threads=2)
        (tmp_path / "eval" / f"{i:02d}.json").write_text(json.dumps(full))
    lines = report(report_parser().parse_args([str(tmp_path)]))
    assert lines[:5] == [
        "| model | params (non-zero) | BLEU K=1 | ΔK=1 | BLEU K=5 | ΔK=5 | PPL | p(ŷ) | words/s K=1 | "
        "words/s K=5 | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        "| Teacher 2x256 | 4.1M | 15.4 | +9.5 | 17.9 | +11.8 | 19.0 | 2.7% | 587 | 372 | 1.6x |",
        "| Baseline 2x128 | 1.2M | 5.9 |  | 6.1 |  | 33.4 | 0.4% | 1200 | 700 | 3.2x |",
        "| Seq-KD | 1.2M (240k) | 11.0 | +5.1 | 11.2 | +5.1 | 60.2 | 15.0% | 1190 | 690 | 3.2x |",
    ]
    with open(tmp_path / "results.md") as f:
        assert f.read().splitlines()[:5] == lines[:5]
    with open(tmp_path / "results.json") as f:
        saved = json.load(f)
    assert [r["name"] for r in saved] == [r["name"] for r in ROWS] and saved[2]["params_nonzero"] == 240000
    import matplotlib.image

    image = matplotlib.image.imread(str(tmp_path / "results.png"))
    assert image.shape[0] > 300 and image.shape[1] > 500


def test_report_bad_inputs(tmp_path):
    with pytest.raises(SystemExit, match="no seqkd-eval JSON files"):
        report(report_parser().parse_args([str(tmp_path)]))
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "a.json").write_text('{"name": "x",\n  "bleu_greedy": }')
    with pytest.raises(SystemExit, match=r"a.json:2: not JSON"):
        report(report_parser().parse_args([str(tmp_path)]))
    (tmp_path / "eval" / "a.json").write_text('{"name": "x"}')
    with pytest.raises(SystemExit, match="a.json: not a seqkd-eval result .missing bleu_greedy"):
        report(report_parser().parse_args([str(tmp_path)]))
