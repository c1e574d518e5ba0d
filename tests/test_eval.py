"""seqkd-eval against independent computations (seqkd-report: test_report.py)."""

import json
import logging
import math
import os
import re

import pytest
import sacrebleu
import torch
import torch.nn.functional as F

import toydata
from fairseq_seqkd.cli.eval import main as eval_main
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.evaluation import EvalOptions, SpeedOptions, evaluate


@pytest.fixture(scope="module")
def result(toy_data, toy_model, toy_text, tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    extra = folder / "ref2.tgt"
    with open(os.path.join(toy_text, "test.tgt")) as f:
        extra.write_text("".join(line.replace("t1 ", "t2 ") for line in f))
    result = eval_main([toy_data, "--path", toy_model, "--json", str(folder / "model.json"), "--remove-bpe", "none",
                        "--extra-refs", str(extra), "--cpu", "--hyps-out", str(folder / "hyps"), "--speed-sentences",
                        "10", "--speed-min-seconds", "0.2"])
    return result, folder, str(extra)


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
        assert json.load(f) == r  # exactly: JSON keeps every float


def test_p_yhat_equals_independent_scoring_of_the_greedy_output(result, toy_data, toy_model):
    from fairseq_seqkd.checkpoints import load_model
    from fairseq_seqkd.generation import load_split

    r, folder, _ = result
    task = load_split(toy_data, "test")
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


@pytest.mark.slow  # a fresh process or a whole corpus: left out by make test-fast
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
    assert r["name"] == "model" and r["threads"] == 1 and r["speed_repeats"] == 3 and r["speed_warmup"] == 2
    for key in ("greedy", "beam"):  # the median of the repeats, and their spread
        runs = r[f"src_words_per_sec_{key}_runs"]
        assert len(runs) == 3 and r[f"src_words_per_sec_{key}"] == sorted(runs)[1]
        assert r[f"src_words_per_sec_{key}_spread"] == pytest.approx((max(runs) - min(runs)) / sorted(runs)[1])
        assert r[f"speed_decoded_{key}"] >= 10  # at least --speed-sentences, more to last --speed-min-seconds


def test_bad_reference_files(toy_data, toy_model, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("a\nb\n")
    for refs, message in (([str(tmp_path / "none.txt")], "none.txt: no such file"),
                          ([str(short)], r"short.txt: 2 lines, but subset 'test' has 100 sentences")):
        with pytest.raises(SeqKDError, match=message):
            eval_main([toy_data, "--path", toy_model, "--json", str(tmp_path / "o.json"), "--refs", *refs, "--cpu"])
    assert not (tmp_path / "o.json").exists()
    with pytest.raises(SeqKDError, match="--speed-repeats 0: must be at least 1"):
        evaluate(EvalOptions(toy_data, toy_model, cpu=True, speed=SpeedOptions(repeats=0)))


def test_sentencepiece_bleu_equals_sacrebleu_on_fairseq_generate_post_processed(spm_corpus, spm_model, tmp_path):
    data = str(spm_corpus / "bin")
    r = eval_main([data, "--path", spm_model, "--json", str(tmp_path / "spm.json"), "--cpu", "--beam", "3",
                   "--speed-sentences", "5", "--speed-repeats", "1", "--speed-min-seconds", "0"])
    out = toydata.generate(data, spm_model, ["--beam", "3", "--post-process", "sentencepiece"])
    hyps, refs = toydata.hypotheses(out), {}
    for line in out.splitlines():
        if line.startswith("T-"):
            tag, text = line.split("\t", 1)
            refs[int(tag[2:])] = text
    raw = (spm_corpus / "raw" / "test.tgt").read_text().splitlines()
    assert [refs[i] for i in range(100)] == raw  # the references are words again
    assert r["bleu_beam"] == sacrebleu.corpus_bleu([hyps[i] for i in range(100)], [raw]).score
    with_refs = eval_main([data, "--path", spm_model, "--json", str(tmp_path / "refs.json"), "--cpu", "--beam", "3",
                           "--refs", str(spm_corpus / "raw" / "test.tgt"), "--speed-sentences", "5",
                           "--speed-repeats", "1", "--speed-min-seconds", "0"])
    assert with_refs["bleu_beam"] == r["bleu_beam"] and with_refs["bleu_greedy"] == r["bleu_greedy"]

class FakeDataset:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i

    def collater(self, items):
        return items


class FakeEngine:
    """Takes 10 ms of simulated time per sentence; records the thread count it ran with."""

    def __init__(self):
        self.calls, self.threads, self.seconds = [], set(), 0.0

    def decode(self, dataset, batch):
        assert len(batch) == 1  # batch size 1, the paper's setting
        self.calls.append(dataset[batch[0]])
        self.threads.add(torch.get_num_threads())
        self.seconds += 0.01


def test_speed_warmup_minimum_repeats_median_and_threads():
    from fairseq_seqkd.evaluation import measure_speed

    words = [1, 2, 3, 4, 5, 6]
    before = torch.get_num_threads()
    gens = {"greedy": FakeEngine(), "beam": FakeEngine()}
    speeds, n = measure_speed(gens, FakeDataset(6), words,
                              SpeedOptions(sentences=4, repeats=3, warmup=2, min_seconds=0.0, threads=1))
    assert n == 4 and gens["greedy"].calls == [0, 1] + [0, 1, 2, 3] * 3  # warm-up, then 3 x the first 4
    assert speeds["greedy"]["median"] == pytest.approx(10 / 0.04) and speeds["greedy"]["spread"] == 0
    assert gens["beam"].threads == {1} and torch.get_num_threads() == before  # restored afterwards
    gens = {"greedy": FakeEngine()}
    speeds, n = measure_speed(gens, FakeDataset(6), words,
                              SpeedOptions(sentences=4, repeats=1, warmup=0, min_seconds=0.095))
    assert gens["greedy"].calls == [0, 1, 2, 3] * 2 + [0, 1]  # decoded again until 0.095 s had passed
    assert speeds["greedy"]["decoded"] == 10 and speeds["greedy"]["median"] == pytest.approx(23 / 0.1)
    speeds, n = measure_speed({"greedy": FakeEngine()}, FakeDataset(3), words,
                              SpeedOptions(sentences=0, repeats=1, warmup=0, min_seconds=0))
    assert n == 3 and speeds["greedy"]["decoded"] == 3  # 0: every sentence of the subset once


def test_generator_uses_lenpen_and_max_len(toy_data, toy_model):
    """Evaluation and distillation decode through the same Generator, with fairseq-generate's options."""
    from fairseq_seqkd import generation

    task = generation.load_split(toy_data, "test")
    model, _ = generation.load_for_generation(toy_model, task, cpu=True)
    gen = generation.Generator(task, model, beam=3, nbest=2, max_len_a=1.5, max_len_b=7, lenpen=0.25).generator
    assert (gen.beam_size, gen.len_penalty, gen.max_len_a, gen.max_len_b) == (3, 0.25, 1.5, 7)


def test_sentences_longer_than_max_tokens_get_a_batch_of_their_own(toy_data, toy_model, tmp_path, caplog):
    """As seqkd-distill: a sentence above --max-tokens (max(source, reference) tokens with </s>, fairseq's
    count) is decoded and scored in a batch of its own, with one warning: the results are those of a
    --max-tokens every sentence fits in."""
    data = toydata.over_max_tokens_data(str(tmp_path), toy_data, "test")
    common = [data, "--path", toy_model, "--remove-bpe", "none", "--cpu", "--speed-sentences", "2",
              "--speed-repeats", "1", "--speed-warmup", "0", "--speed-min-seconds", "0"]
    caplog.set_level(logging.WARNING)
    small = eval_main([*common, "--json", str(tmp_path / "small.json"), "--max-tokens", "10",
                       "--hyps-out", str(tmp_path / "small")])
    assert (f"{data}: 2 sentence(s) of test have more tokens than --max-tokens 10: each gets a batch of its "
            f"own (sentence 4: 13 source, 4 target tokens; sentence 17: 5 source, 12 target tokens; "
            f"with </s>)") in caplog.text
    caplog.clear()
    fits = eval_main([*common, "--json", str(tmp_path / "fits.json"), "--hyps-out", str(tmp_path / "fits")])
    assert "--max-tokens" not in caplog.text
    for key in ("greedy", "beam"):
        assert (tmp_path / f"small.{key}").read_text() == (tmp_path / f"fits.{key}").read_text()
        assert len((tmp_path / f"small.{key}").read_text().split("\n")) == 31
        assert small[f"bleu_{key}"] == fits[f"bleu_{key}"]
    assert small["ppl"] == pytest.approx(fits["ppl"], rel=1e-6)
    assert small["p_yhat"] == pytest.approx(fits["p_yhat"], rel=1e-6)
