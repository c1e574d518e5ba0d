"""Several outputs per source (issue 20): top-n, MBR-n and Seq-Inter-n against brute-force sacrebleu oracles,
seqkd-distill --keep N (OUT.ids, shards, merge, --binarize) and its n = 1 identities."""

import filecmp
import json
import os
import random
import re

import pytest
import sacrebleu
from fairseq.data.data_utils import post_process

from fairseq_seqkd import mbr, selection
from fairseq_seqkd.distill import DistillOptions
from fairseq_seqkd.errors import SeqKDError, StoppedEarly
from fairseq_seqkd.kbest import Sentence, read_kbest, write_kbest_file
from kbest_samples import random_kbest, to_sentencepiece
from test_distill import lines, merge, run

# -- oracles ---------------------------------------------------------------------------------------------


def words(text, remove_bpe):
    return text if remove_bpe == "none" else post_process(text, remove_bpe)


def brute_mbr(hyps, keep, metric, remove_bpe="none"):
    """The ranks MBR-n keeps: sum of sacrebleu's sentence scores against every other hypothesis (a plain loop),
    highest first, ties to the better rank."""
    texts = [words(h, remove_bpe) for h in hyps]
    sums = [sum(metric(texts[i], [texts[j]]).score for j in range(len(texts)) if j != i) for i in range(len(texts))]
    return sorted(range(len(texts)), key=lambda i: (-sums[i], i))[:keep], sums


def brute_seq_inter(hyps, ref, keep, remove_bpe="none"):
    scores = [sacrebleu.sentence_bleu(words(h, remove_bpe), [words(ref, remove_bpe)]).score for h in hyps]
    return sorted(range(len(hyps)), key=lambda i: (-scores[i], i))[:keep]


METRICS = {"chrf": sacrebleu.sentence_chrf, "bleu": sacrebleu.sentence_bleu}

HAND_MADE = [
    # an outlier at rank 0 goes last; ranks 1 and 3 are the same text: a tie, rank 1 first
    ["z q", "a b c d", "a b c e", "a b c d"],
    # nothing in common: every expected utility is 0, so the model order stays
    ["a", "b", "c"],
    # two equal texts at ranks 0 and 1, the others far: a tie at the top
    ["the cat sat", "the cat sat", "a dog ran", "the cat sat down", ""],
    # whitespace sacrebleu removes for chrF (\x1c is whitespace to Python, not to Rust's split_whitespace)
    ["ab\x1ccd", "abcd", "ab cd", "xy"],
    # empty hypotheses
    ["", "", "a"],
]


@pytest.mark.parametrize("utility", ["chrf", "bleu"])
@pytest.mark.parametrize("hyps", HAND_MADE)
def test_mbr_equals_brute_force_on_hand_made_lists(hyps, utility):
    sentence = Sentence(0, "src", None, [(-0.5 * r, h) for r, h in enumerate(hyps)])
    for keep in range(1, len(hyps) + 1):
        expected, sums = brute_mbr(hyps, keep, METRICS[utility])
        choices = selection.select_n([sentence], "mbr", "none", keep, utility)[0]
        assert [c.rank for c in choices] == expected
        assert [c.target for c in choices] == [hyps[r] for r in expected]
        assert [c.utility for c in choices] == [sums[r] / (len(hyps) - 1) for r in expected]


def test_hand_made_ties_and_outliers():
    """The oracle's own expectations for the first and third lists, spelled out."""
    one = Sentence(0, "s", None, [(0.0, h) for h in HAND_MADE[0]])
    assert [c.rank for c in selection.select_n([one], "mbr", "none", 4, "chrf")[0]] == [1, 3, 2, 0]
    three = Sentence(0, "s", None, [(0.0, h) for h in HAND_MADE[2]])
    assert [c.rank for c in selection.select_n([three], "mbr", "none", 2, "bleu")[0]] == [0, 1]


@pytest.mark.parametrize("utility", ["chrf", "bleu"])
def test_mbr_equals_brute_force_on_random_subword_lists(utility):
    sentences = random_kbest(random.Random(20), 40, 8, to_sentencepiece)  # ties: rank 1 = rank 0 in ~30%
    chosen = selection.select_n(sentences, "mbr", "sentencepiece", 3, utility)
    for s, choices in zip(sentences, chosen):
        hyps = [h for _, h in s.hyps]
        assert [c.rank for c in choices] == brute_mbr(hyps, 3, METRICS[utility], "sentencepiece")[0]


def test_pairwise_chrf_equals_sacrebleu():
    """fastchrf's pairwise chrF (texts stripped of Python's whitespace first) is sacrebleu's sentence chrF."""
    rng = random.Random(7)
    alphabet = list("abcdeéü中.,-' ") + ["\t", "\u00a0", "\u2003", "\x1c", "\x1f", "\x85"]
    lists = [["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(rng.randint(1, 6))]
             for _ in range(60)]
    worst = 0.0
    for texts, matrix in zip(lists, mbr.pairwise_chrf(lists)):
        for i, h in enumerate(texts):
            for j, r in enumerate(texts):
                worst = max(worst, abs(matrix[i, j] - sacrebleu.sentence_chrf(h, [r]).score))
    assert worst <= 1e-9  # measured: 0.0 (same float64 arithmetic)


def test_seq_inter_n_and_top_n_equal_brute_force():
    sentences = random_kbest(random.Random(21), 60, 8, to_sentencepiece)
    for keep in (1, 3):
        chosen = selection.select_n(sentences, "seq-inter", "sentencepiece", keep)
        top = selection.select_n(sentences, "top-n", "sentencepiece", keep)
        for s, choices, best in zip(sentences, chosen, top):
            hyps = [h for _, h in s.hyps]
            assert [c.rank for c in choices] == brute_seq_inter(hyps, s.reference, keep, "sentencepiece")
            assert [c.target for c in best] == hyps[:keep]  # fewer when the list is shorter
    # keep 1 is select_sentences, today's Seq-Inter, choice for choice
    assert [cs[0] for cs in selection.select_n(sentences, "seq-inter", "sentencepiece", 1)] == \
        selection.select_sentences(sentences, "seq-inter", "sentencepiece")


def test_seqkd_select_keep_writes_ids(tmp_path):
    sentences = random_kbest(random.Random(22), 30, 6, lambda t: t)
    path = str(tmp_path / "k")
    write_kbest_file(path, sentences, 6)
    out = {ext: str(tmp_path / f"out.{ext}") for ext in ("src", "tgt", "ids")}
    summary = selection.write_selection(path, out["src"], out["tgt"], "mbr", "none", keep=2, utility="bleu",
                                        out_ids=out["ids"])
    expected = [(s.id, s.source, s.hyps[r][1]) for s in sentences
                for r in brute_mbr([h for _, h in s.hyps], 2, sacrebleu.sentence_bleu)[0]]
    assert list(zip(map(int, lines(out["ids"])), lines(out["src"]), lines(out["tgt"]))) == expected
    assert summary.outputs == len(expected) < 60  # lists of one hypothesis give one line
    with pytest.raises(SeqKDError, match="^--keep 2 writes several lines per sentence: give --out-ids FILE"):
        selection.write_selection(path, out["src"], out["tgt"], "top-n", "none", keep=2)


def test_bad_keep_options_are_one_line_errors(tmp_path):
    cases = [
        (dict(keep=0, select="top-n"), "--keep 0: must be at least 1"),
        (dict(keep=2), "--keep 2 with top1, which keeps one output: use top-n --keep 2"),
        (dict(keep=5, select="top-n", nbest=4, beam=4), "--keep 5 is larger than --nbest 4"),
        (dict(select="mbr", nbest=1), "--select mbr needs --nbest K with K > 1"),
        (dict(select="mbr", nbest=4, beam=4, mbr_utility="ter"), "--mbr-utility ter: one of chrf, bleu"),
    ]
    for options, message in cases:
        with pytest.raises(SeqKDError, match="^" + message) as e:
            DistillOptions(out_prefix=str(tmp_path / "o"), data=str(tmp_path), path="t.pt", **options).checked()
        assert "\n" not in str(e.value)


# -- seqkd-distill --keep on the toy data (the valid split: 100 sentences) -----------------------------------

K = 6


def distill_valid(data, model, prefix, **options):
    return run(data, model, prefix, subset="valid", beam=K, nbest=K, remove_bpe="none", **options)


@pytest.fixture(scope="module")
def top1(toy_data, toy_model, tmp_path_factory):
    """Today's Seq-KD output with all K hypotheses (OUT.kbest)."""
    prefix = tmp_path_factory.mktemp("top1") / "valid.kd"
    distill_valid(toy_data, toy_model, prefix, write_kbest=True)
    return prefix


@pytest.fixture(scope="module")
def mbr3(toy_data, toy_model, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("mbr3") / "valid.mbr"
    distill_valid(toy_data, toy_model, prefix, select="mbr", keep=3, write_kbest=True,
                  binarize=str(prefix.parent / "bin"))
    return prefix


def test_keep_one_is_byte_identical_to_today(top1, toy_data, toy_model, tmp_path):
    prefix = tmp_path / "valid.topn"
    distill_valid(toy_data, toy_model, prefix, select="top-n", keep=1)
    for ext in ("src", "tgt"):
        assert filecmp.cmp(f"{prefix}.{ext}", f"{top1}.{ext}", shallow=False)
    # Seq-Inter with --keep 1 is today's Seq-Inter: seqkd-select's choice on the same K-best lists
    inter = tmp_path / "valid.inter"
    distill_valid(toy_data, toy_model, inter, select="seq-inter", keep=1)
    selection.write_selection(f"{top1}.kbest", tmp_path / "sel.src", tmp_path / "sel.tgt", "seq-inter", "none")
    assert filecmp.cmp(f"{inter}.tgt", tmp_path / "sel.tgt", shallow=False)
    table = read_kbest(f"{top1}.kbest")
    assert lines(f"{inter}.tgt") == [table[i].hyps[brute_seq_inter([h for _, h in table[i].hyps], table[i].reference,
                                                                    1)[0]][1] for i in range(100)]
    assert sorted(os.listdir(tmp_path)) == ["sel.src", "sel.tgt", "valid.inter.src", "valid.inter.tgt",
                                            "valid.topn.src", "valid.topn.tgt"]  # no OUT.ids with --keep 1


def test_keep_three_mbr_lines_ids_and_binarized(mbr3, top1, toy_text):
    table = read_kbest(f"{mbr3}.kbest")
    assert filecmp.cmp(f"{mbr3}.kbest", f"{top1}.kbest", shallow=False)  # the same K-best lists
    sources = lines(os.path.join(toy_text, "valid.src"))
    ids, src, tgt = [int(i) for i in lines(f"{mbr3}.ids")], lines(f"{mbr3}.src"), lines(f"{mbr3}.tgt")
    assert ids == [i for i in range(100) for _ in range(3)]
    assert src == [sources[i] for i in ids]  # line k of OUT.ids names the source of line k
    expected = [table[i].hyps[r][1] for i in range(100)
                for r in brute_mbr([h for _, h in table[i].hyps], 3, sacrebleu.sentence_chrf)[0]]
    assert tgt == expected
    assert sum(tgt[3 * i] != table[i].hyps[0][1] for i in range(100)) > 0  # MBR is not top-n here
    # --binarize: the 300 pairs and train.ids beside them
    from fairseq.data import Dictionary, data_utils

    folder = mbr3.parent / "bin"
    assert filecmp.cmp(folder / "train.ids", f"{mbr3}.ids", shallow=False)
    d = Dictionary.load(str(folder / "dict.tgt.txt"))
    ds = data_utils.load_indexed_dataset(str(folder / "train.src-tgt.tgt"), d)
    assert [d.string(ds[i]) for i in range(len(ds))] == tgt


def test_seqkd_select_binarize_equals_seqkd_distill_binarize(mbr3, top1, toy_data, tmp_path):
    """One decoding, two corpora (the recipes' --with-multi): seqkd-select --binarize on seqkd-distill's
    OUT.kbest gives the folder seqkd-distill --select mbr --binarize gives, byte for byte."""
    from fairseq_seqkd.cli import select as select_cli

    out = {ext: str(tmp_path / f"sel.{ext}") for ext in ("a", "b", "ids")}
    select_cli.main([f"{top1}.kbest", "--mode", "mbr", "--keep", "3", "--remove-bpe", "none", "--out-src", out["a"],
                     "--out-tgt", out["b"], "--out-ids", out["ids"], "--binarize", str(tmp_path / "bin"),
                     "--data", toy_data])
    ours, theirs = tmp_path / "bin", mbr3.parent / "bin"
    names = sorted(n for n in os.listdir(theirs) if n != "preprocess.log")
    assert sorted(n for n in os.listdir(ours) if n != "preprocess.log") == names and "train.ids" in names
    assert all(filecmp.cmp(ours / n, theirs / n, shallow=False) for n in names), names
    assert sorted(os.listdir(tmp_path)) == ["bin", "sel.a", "sel.b", "sel.ids"]  # no links left behind
    with pytest.raises(SystemExit):  # --binarize without --data: argparse's usage error
        select_cli.main([f"{top1}.kbest", "--out-src", out["a"], "--out-tgt", out["b"], "--binarize", "x"])
    with pytest.raises(SeqKDError, match=f"^{tmp_path}/nodata: no such data folder$"):
        select_cli.main([f"{top1}.kbest", "--out-src", out["a"], "--out-tgt", out["b"], "--binarize",
                         str(tmp_path / "x"), "--data", str(tmp_path / "nodata")])


@pytest.mark.parametrize("select", ["seq-inter", "top-n"])
def test_keep_three_seq_inter_and_top_n(select, top1, toy_data, toy_model, tmp_path):
    prefix = tmp_path / "valid.n"
    distill_valid(toy_data, toy_model, prefix, select=select, keep=3)
    table = read_kbest(f"{top1}.kbest")
    hyps = [[h for _, h in table[i].hyps] for i in range(100)]
    ranks = [brute_seq_inter(hyps[i], table[i].reference, 3) if select == "seq-inter" else [0, 1, 2]
             for i in range(100)]
    assert lines(f"{prefix}.tgt") == [hyps[i][r] for i in range(100) for r in ranks[i]]
    assert lines(f"{prefix}.ids") == [str(i) for i in range(100) for _ in range(3)]


def test_keep_shards_merged_equal_one_run_and_resume_checks_keep(mbr3, toy_data, toy_model, tmp_path):
    prefix = tmp_path / "valid.mbr"
    for shard in (1, 0):
        assert distill_valid(toy_data, toy_model, prefix, select="mbr", keep=3, write_kbest=True, num_shards=2,
                             shard_id=shard) is None
    merge(prefix, 2)
    for ext in ("src", "tgt", "ids", "kbest"):
        assert filecmp.cmp(f"{prefix}.{ext}", f"{mbr3}.{ext}", shallow=False)
    other = tmp_path / "other"
    with pytest.raises(StoppedEarly):
        distill_valid(toy_data, toy_model, other, select="mbr", keep=3, stop_after_batches=1)
    config = json.loads(lines(f"{other}.shard-0-of-1.jsonl")[0])["config"]
    assert (config["keep"], config["mbr_utility"]) == (3, "chrf")
    plain = tmp_path / "plain"
    with pytest.raises(StoppedEarly):
        distill_valid(toy_data, toy_model, plain, select="seq-inter", stop_after_batches=1)
    config = json.loads(lines(f"{plain}.shard-0-of-1.jsonl")[0])["config"]
    assert "keep" not in config and "mbr_utility" not in config  # as before --keep: older journals resume
    for options, changed in ((dict(keep=2), "keep"), (dict(keep=3, mbr_utility="bleu"), "mbr_utility")):
        with pytest.raises(SeqKDError, match=rf"started with other options \({changed}\)"):
            distill_valid(toy_data, toy_model, other, select="mbr", resume=True, **options)


# -- fairseq-train --task seqkd_translation --one-target-per-epoch -----------------------------------------


def train_task(data, *extra):
    """The seqkd_translation task of a fairseq-train command line, its training split loaded."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    import toydata

    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(data), "--user-dir", toydata.USER_DIR, "--task", "seqkd_translation", "--arch", "luong_lstm_1x32",
        "--max-tokens", "400", *extra])
    task = tasks.setup_task(convert_namespace_to_omegaconf(args).task)
    task.load_dataset("train")
    return task


def epochs_of_pairs(task, seed, epochs):
    """For each epoch: the training pairs (line numbers of DATA/train.*) in the batches fairseq builds."""
    dataset = task.dataset("train")
    itr = task.get_batch_iterator(dataset, max_tokens=400, seed=seed, epoch=1, max_positions=(1024, 1024))
    out = []
    for _ in range(epochs):
        out.append(sorted(i for batch in itr.next_epoch_itr(shuffle=True) for i in batch["id"].tolist()))
    return out


def test_one_target_per_epoch(mbr3):
    import numpy as np

    folder = mbr3.parent / "bin"
    source_of = [int(i) for i in lines(folder / "train.ids")]  # 3 pairs for each of 100 sources
    task = train_task(folder, "--one-target-per-epoch", "--seed", "5")
    pairs = epochs_of_pairs(task, 5, 40)
    for epoch, chosen in enumerate(pairs, 1):
        assert sorted(source_of[i] for i in chosen) == list(range(100))  # one pair per source: 100 a epoch
        draw = np.random.default_rng([5, epoch]).integers(0, 3, size=100)  # the documented draw
        assert chosen == [3 * s + int(draw[s]) for s in range(100)]
    assert len({tuple(p) for p in pairs}) == 40  # another choice every epoch
    assert set().union(*pairs) == set(range(300))  # every output of every source, given enough epochs
    assert epochs_of_pairs(train_task(folder, "--one-target-per-epoch", "--seed", "5"), 5, 3) == pairs[:3]
    assert epochs_of_pairs(train_task(folder, "--one-target-per-epoch", "--seed", "6"), 6, 1) != pairs[:1]
    # without the option: all 300 pairs are training data
    assert epochs_of_pairs(train_task(folder, "--seed", "5"), 5, 1) == [list(range(300))]


def test_one_target_per_epoch_with_fairseq_train(mbr3, tmp_path):
    """Stock fairseq-train: 2 epochs of 100 pairs in batches of 10 are 20 updates (60 without the option)."""
    import torch

    import toydata

    folder = str(mbr3.parent / "bin")
    for flag, updates in (("--one-target-per-epoch", 20), (None, 60)):
        save = tmp_path / f"save{updates}"
        toydata.train(folder, str(save), ["--batch-size", "10", "--max-tokens", "100000", "--no-save-optimizer-state",
                                          *([flag] if flag else [])], max_epoch=2)
        state = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)
        assert state["optimizer_history"][-1]["num_updates"] == updates


def test_bad_ids_files_are_one_line_errors(mbr3, tmp_path):
    import shutil

    folder = tmp_path / "bin"
    shutil.copytree(mbr3.parent / "bin", folder)
    ids = folder / "train.ids"
    good = ids.read_text()
    cases = [
        (None, r"train.ids: missing: --one-target-per-epoch needs the source id of every train pair"),
        (good.replace("\n7\n", "\nseven\n", 1), r"train.ids:22: 'seven' is not a sentence id"),
        (good.replace("\n7\n", "\n-7\n", 1), r"train.ids:22: '-7' is not a sentence id"),
        (good[:-1], r"train.ids:300: truncated: the last line has no newline"),
        (good.rsplit("\n", 2)[0] + "\n", r"train.ids:300: missing: 299 ids for the 300 pairs of train"),
        (good + "99\n", r"train.ids:301: more ids than the 300 pairs of train"),
    ]
    for content, message in cases:
        if content is None:
            ids.unlink()
        else:
            ids.write_text(content)
        with pytest.raises(SystemExit) as e:
            train_task(folder, "--one-target-per-epoch")
        assert str(e.value).startswith("error: ") and "\n" not in str(e.value), str(e.value)
        assert re.search(message, str(e.value)), str(e.value)
    with pytest.raises(SystemExit, match="^error: --one-target-per-epoch draws other pairs every epoch"):
        train_task(folder, "--one-target-per-epoch", "--same-batches-every-epoch")


def test_one_target_per_epoch_with_topk_store(mbr3, toy_model, tmp_path, caplog):
    """word_kd --kd-topk-store with --one-target-per-epoch (issue 33): the store, built by seqkd-topk over every
    pair of the split, is read at each batch's own pairs (a pair keeps its line number as its id), so the loss
    of a batch of epoch 1's pairs is the live teacher's top-k loss on that batch, and a fairseq-train run with
    both options logs the live teacher's losses update by update."""
    import logging

    import torch

    import toydata
    from fairseq_seqkd.cli.topk import main as topk_main
    from fairseq_seqkd.criterions.word_kd import WordKDCriterion
    from kd_helpers import criterion, fresh_student

    folder = str(mbr3.parent / "bin")
    store = str(tmp_path / "train.top5")
    assert topk_main([folder, "--path", toy_model, "--out", store, "--k", "5", "--batch-size", "64", "--cpu"])[
        "sentences"] == 300
    task = train_task(folder, "--one-target-per-epoch", "--seed", "5")
    itr = task.get_batch_iterator(task.dataset("train"), max_tokens=400, seed=5, epoch=1, max_positions=(1024, 1024))
    sample = next(itr.next_epoch_itr(shuffle=True))
    ids = sample["id"].tolist()
    tgt = lines(folder + "/../valid.mbr.tgt")
    assert any(i % 3 for i in ids)  # pairs other than the first of their source ...
    assert any(tgt[i] != tgt[i - i % 3] for i in ids)  # ... whose targets differ from the first's
    student = fresh_student(task).train()
    stored = WordKDCriterion(task, "", 0.5, 2.0, 0, False, kd_topk_store=store)
    live = criterion(task, toy_model, 0.5, 2.0, 5)
    torch.manual_seed(0)
    got, _, log = stored(student, sample)
    torch.manual_seed(0)
    expected, _, live_log = live(student, sample)
    assert float(log["nll_loss"]) == float(live_log["nll_loss"])
    torch.testing.assert_close(got, expected, rtol=2e-4, atol=0)
    assert float(log["kd_loss"]) == pytest.approx(float(live_log["kd_loss"]), rel=2e-4)
    # stock fairseq-train, 3 updates: the same batches (one pair per source) and losses as the live teacher's
    caplog.set_level(logging.INFO)
    common = ["--criterion", "word_kd", "--kd-temperature", "2", "--log-interval", "1", "--max-update", "3",
              "--one-target-per-epoch", "--no-save", "--batch-size", "10", "--max-tokens", "100000"]
    losses = {}
    for name, extra in (("live", ["--teacher-path", toy_model, "--kd-topk", "5"]),
                        ("store", ["--kd-topk-store", store])):
        caplog.clear()
        toydata.train(folder, str(tmp_path / name), [*common, *extra], max_epoch=1)
        found = re.findall(r"epoch 001:\s+(\d) / (\d+) loss=([0-9.]+), nll_loss=([0-9.]+), kd_loss=([0-9.]+)",
                           caplog.text)
        assert [u for u, *_ in found] == ["1", "2", "3"], caplog.text[-2000:]
        assert {n for _, n, *_ in found} == {"10"}  # 100 pairs a epoch (one per source) in batches of 10
        losses[name] = [float(x) for *_, loss, nll, kd in found for x in (loss, nll, kd)]
    assert losses["store"] == pytest.approx(losses["live"], abs=2e-3)


def test_read_ids_memory_does_not_grow_with_python_objects_per_line(tmp_path):
    """read_ids (issue 33): a 1M-line ids file is read with about the memory of its int64 result (8 MB), not
    one Python object per line (~60 MB before); values equal int() of every line; a malformed line is named by
    its line number and text wherever it falls, also across the boundaries of the blocks it is read in."""
    import tracemalloc

    import numpy as np

    from fairseq_seqkd import multi_target
    from fairseq_seqkd.multi_target import read_ids

    n = 1_000_000
    rng = np.random.default_rng(0)
    values = np.sort(rng.integers(0, 10**12, n // 4)).repeat(4)  # up to 12 digits, 4 pairs a source
    values[:8] = [0, 0, 7, 10, 99, 100, 10**17 - 1, 123456789012345678 % 10**18]  # edge values, 18 digits
    text = "".join(f"{v}\n" for v in values.tolist())
    text = "0007\n" + text[text.index("\n") + 1:]  # leading zeros: still the number 7
    values[0] = 7
    path = tmp_path / "train.ids"
    path.write_text(text)
    tracemalloc.start()
    try:
        got = read_ids(str(path), n)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got.dtype == np.int64 and np.array_equal(got, values)
    assert peak < 8 * n + (4 << 20), peak  # the result and a few MB of blocks
    # a malformed line at the start, in the middle, at the end, and straddling each of the first blocks
    data = text.encode()
    starts = [0, *(i + 1 for i, c in enumerate(data) if c == 10)][:-1]
    # the line holding byte 30 before the end of block k (~13 bytes a line: it starts 30 to 43 bytes before)
    boundary = [int(np.searchsorted(starts, k * multi_target.READ_BLOCK - 30, "right")) for k in range(1, 9)]
    lines_ = text.split("\n")[:-1]
    long_digits = "9" * (multi_target.READ_BLOCK + 100)
    for number, bad in ((1, "x"), (n // 2, "12a4"), (n, ""), (boundary[0], "1 2"), (boundary[1], "-5"),
                        (boundary[2], "12\r"), (n // 3, "9" * 30), (n // 5, "7" * 19), (n // 6, "é" * 50),
                        (boundary[3], "é" * 50), (boundary[4], "9" * 30 + "x" + "9" * 40), (boundary[5], "9" * 100),
                        (boundary[6], long_digits + "x"), (boundary[7], long_digits), (3, long_digits + "\r")):
        broken = lines_[:number - 1] + [bad] + lines_[number:]
        path.write_text("\n".join(broken) + "\n")
        problem = "is too large for a sentence id" if bad.isdigit() else r"is not a sentence id \(a number >= 0\)"
        with pytest.raises(SeqKDError, match=rf"^{re.escape(str(path))}:{number}: {re.escape(repr(bad[:40]))} "
                                             rf"{problem}$"):
            read_ids(str(path), n)
    path.write_text("1\n" * 3 + "1")
    with pytest.raises(SeqKDError, match=r"train.ids:4: truncated: the last line has no newline$"):
        read_ids(str(path), 4)
    path.write_bytes(b"")
    assert read_ids(str(path), 0).tolist() == []
    with pytest.raises(SeqKDError, match=r"train.ids:1: missing: 0 ids for the 2 pairs of train$"):
        read_ids(str(path), 2)
    path.write_bytes(b"\n5\n")
    with pytest.raises(SeqKDError, match=r"train.ids:1: '' is not a sentence id"):
        read_ids(str(path), 2)
