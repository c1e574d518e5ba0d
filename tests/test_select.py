"""Sentence BLEU equals sacrebleu exactly; seqkd-select equals a brute-force sacrebleu loop; bad inputs."""

import os
import random

import pytest
import sacrebleu
from fairseq.data.data_utils import post_process
from sacrebleu.metrics.bleu import BLEU

import toydata
from fairseq_seqkd.bleu import SentenceBleu
from fairseq_seqkd.cli.select import get_parser, select
from fairseq_seqkd.kbest import Sentence, write_kbest_file

# characters that exercise every rule of sacrebleu's 13a tokenizer
NASTY = list("aábcdeéz") + list("0123456789") + list(".,.,-:;!?'\"&/()[]{}~`@#$%^*+=<>|\\") + [
    " ", " ", " ", "\t", "\u00a0", "&quot;", "&amp;", "&lt;", "&gt;", "<skipped>", "é", "ß", "中", "😀", "--", "..."]


def random_text(rng, max_len=30):
    return "".join(rng.choice(NASTY) for _ in range(rng.randint(0, max_len)))


def test_word_by_word_tokenisation_equals_sacrebleu():
    rng = random.Random(1)
    tokenizer, ours = BLEU(effective_order=True).tokenizer, SentenceBleu()
    for _ in range(5000):
        text = random_text(rng)
        assert ours.tokens(text) == tokenizer(text.rstrip()).split(), repr(text)


def test_scores_equal_sacrebleu_bit_for_bit():
    rng = random.Random(2)
    ours = SentenceBleu()
    words = ["the", "the", "of", "God", "said", ",", ".", "3.5", "1,000", "it's", "\u00e9l", "x-y", "a", "a", "b"]
    checked = 0
    for _ in range(400):
        ref = " ".join(rng.choice(words) for _ in range(rng.randint(0, 15)))
        if rng.random() < 0.2:
            ref = random_text(rng)
        hyps = []
        for _ in range(rng.randint(1, 12)):
            kind = rng.random()
            if kind < 0.1:
                hyps.append("")
            elif kind < 0.3:
                hyps.append(random_text(rng))
            else:
                toks = ref.split()
                for _ in range(rng.randint(0, 5)):
                    if toks and rng.random() < 0.5:
                        toks.pop(rng.randrange(len(toks)))
                    else:
                        toks.insert(rng.randint(0, len(toks)), rng.choice(words))
                hyps.append(" ".join(toks))
        expected = [sacrebleu.sentence_bleu(h, [ref]).score for h in hyps]
        assert ours.scores(hyps, ref) == expected, (hyps, ref)
        best = max(range(len(hyps)), key=lambda i: (expected[i], -i))  # ties: the earliest
        assert ours.choose(hyps, ref) == (best, expected[best], expected[0]), (hyps, ref)
        checked += len(hyps)
    assert checked > 2000


def test_best_prefers_the_earliest_of_equal_scores():
    ours = SentenceBleu()
    ref = "in the beginning God created the heaven"
    hyps = ["in the end", "in the beginning God made", "God created in the beginning",
            "in the beginning God made", ref, ref]
    best, scores = ours.best(hyps, ref)
    assert best == 4 and scores[4] == scores[5] == sacrebleu.sentence_bleu(ref, [ref]).score
    best, _ = ours.best(["x y", "a b", "c d"], ref)  # all zero: the first one
    assert best == 0
    assert ours.choose(hyps, ref) == (4, scores[4], scores[0])
    assert ours.choose(["x y", "a b", "c d"], ref) == (0, 0.0, 0.0)


def brute_force_choice(hyps, ref, remove_bpe):
    dec = (lambda t: t) if remove_bpe == "none" else (lambda t: post_process(t, remove_bpe))
    scores = [sacrebleu.sentence_bleu(dec(h), [dec(ref)]).score for h in hyps]
    return scores.index(max(scores))


def to_sentencepiece(text):
    return " ".join("\u2581" + w if i % 3 else "\u2581" + w[:2] + " " + w[2:] if len(w) > 2 else "\u2581" + w
                    for i, w in enumerate(text.split()))


def to_subword_nmt(text):
    return " ".join(w[:2] + "@@ " + w[2:] if len(w) > 3 else w for w in text.split())


def random_kbest(rng, n, k, encode):
    vocab = ["the", "Lord", "said", "unto", "Moses", ",", "and", "land", "of", "Égypte", "über", "日本", "light", "."]
    sentences = []
    for i in range(n):
        ref = [rng.choice(vocab) for _ in range(rng.randint(1, 12))]
        hyps = []
        for _ in range(rng.randint(1, k)):
            h = ref[:] if rng.random() < 0.7 else []
            for _ in range(rng.randint(0, 4)):
                if h and rng.random() < 0.5:
                    h[rng.randrange(len(h))] = rng.choice(vocab)
                else:
                    h.insert(rng.randint(0, len(h)), rng.choice(vocab))
            hyps.append(encode(" ".join(h)))
        if rng.random() < 0.3 and len(hyps) > 1:
            hyps[1] = hyps[0]  # ties
        sentences.append(Sentence(i, source=f"src {i} \u00e1", reference=encode(" ".join(ref)),
                                  hyps=[(-0.1 * r, h) for r, h in enumerate(hyps)]))
    return sentences


def write_generate_output(path, sentences, rng):
    """fairseq-generate's format, sentences in a shuffled (batch) order, with log noise."""
    order = sentences[:]
    rng.shuffle(order)
    with open(path, "w") as f:
        f.write("2026-11-28 | INFO | fairseq_cli.generate | loading model\n")
        for s in order:
            f.write(f"S-{s.id}\t{s.source}\nT-{s.id}\t{s.reference}\n")
            for score, h in s.hyps:
                f.write(f"H-{s.id}\t{score}\t{h}\nD-{s.id}\t{score}\t{h}\nP-{s.id}\t-0.1 -0.2\n")
        f.write("Generate test with beam=5: BLEU4 = 1.00\n")


@pytest.mark.parametrize("fmt", ["kbest", "generate"])
@pytest.mark.parametrize("remove_bpe,encode", [("sentencepiece", to_sentencepiece),
                                               ("subword_nmt", to_subword_nmt), ("none", lambda t: t)])
def test_select_equals_brute_force_sacrebleu(tmp_path, fmt, remove_bpe, encode):
    rng = random.Random(hash((fmt, remove_bpe)) % 1000)
    sentences = random_kbest(rng, 60, 8, encode)
    path = str(tmp_path / "input")
    if fmt == "kbest":
        write_kbest_file(path, sentences, 8)
    else:
        write_generate_output(path, sentences, rng)
    for workers in ("1", "2"):
        out_src, out_tgt = str(tmp_path / f"src{workers}"), str(tmp_path / f"tgt{workers}")
        select(get_parser().parse_args([path, "--out-src", out_src, "--out-tgt", out_tgt,
                                        "--remove-bpe", remove_bpe, "--workers", workers]))
        with open(out_src) as f:
            assert f.read().splitlines() == [s.source for s in sentences]
        with open(out_tgt) as f:
            chosen = f.read().splitlines()
        expected = [s.hyps[brute_force_choice([h for _, h in s.hyps], s.reference, remove_bpe)][1]
                    for s in sentences]
        assert chosen == expected


def test_top1_mode_and_empty_hypotheses(tmp_path):
    sentences = [Sentence(0, "a", "x y", [(-1.0, ""), (-2.0, "x y")]), Sentence(1, "b", "z", [(-1.0, "")])]
    path = str(tmp_path / "k")
    write_kbest_file(path, sentences, 2)
    for mode, expected in (("top1", ["", ""]), ("seq-inter", ["x y", ""])):
        out = str(tmp_path / f"{mode}.tgt")
        select(get_parser().parse_args([path, "--out-src", str(tmp_path / "s"), "--out-tgt", out,
                                        "--mode", mode, "--remove-bpe", "none"]))
        with open(out) as f:
            assert f.read().split("\n")[:-1] == expected


BAD_GENERATE = [
    ("S-0\ta\nT-0\tx\nH-0\tminus-one\tx\n", 3, "score 'minus-one' is not a number"),
    ("S-0\ta\nT-0\tx\nH-0\t-1\tx\nS-1\tb\nH-1\t-1\ty\n", 5, "hypothesis for sentence 1, which has no reference"),
    ("S-0\ta\nT-0\tx\nH-0\t-1\tx\nS-1\tb\nT-1\ty\n", 4, "sentence 1 has no hypotheses"),
    ("S-0\ta\nT-0\tx\nH-0\t-1\tx\nS-1\tb\nT-1\ty\nH-1\t-1\t", 6, "truncated: the last line has no newline"),
    ("S-0\ta\nT-0\tx\nH-0\t-1\tx\nS-2\tb\nT-2\ty\nH-2\t-1\ty\n", None, "1 sentence id(s) missing (1)"),
    ("S-0\ta\nT-0\tx\nT-0\tz\nH-0\t-1\tx\n", 3, "sentence 0 has a second, different reference"),
    ("H-x\t-1\tx\n", 1, "malformed H- line"),
]


@pytest.mark.parametrize("content,line,message", BAD_GENERATE)
def test_bad_generate_output_error_names_file_and_line_no_output(tmp_path, content, line, message):
    from fairseq_seqkd.kbest import KBestError

    path = tmp_path / "gen.out"
    path.write_text(content)
    out_src, out_tgt = tmp_path / "o.src", tmp_path / "o.tgt"
    with pytest.raises(KBestError) as err:
        select(get_parser().parse_args([str(path), "--out-src", str(out_src), "--out-tgt", str(out_tgt)]))
    assert str(err.value).startswith(f"{path}:{line}: {message}" if line else f"{path}: {message}")
    assert os.listdir(tmp_path) == ["gen.out"]  # no output, no temporary file


def test_cli_bad_input_is_one_line_error_exit_1(tmp_path):
    path = tmp_path / "gen.out"
    path.write_text(BAD_GENERATE[0][0])
    proc = toydata.run_cli(["seqkd-select", str(path), "--out-src", str(tmp_path / "s"), "--out-tgt",
                            str(tmp_path / "t")], check=False)
    toydata.assert_one_line_error(proc, f"{path}:3: score 'minus-one' is not a number")
    assert os.listdir(tmp_path) == ["gen.out"]


def test_bad_kbest_file_errors(tmp_path):
    good = tmp_path / "good"
    write_kbest_file(str(good), [Sentence(0, "a", "x", [(-1.0, "x")]), Sentence(1, "b", "y", [(-1.0, "y")])], 1)
    lines = good.read_text().splitlines(keepends=True)
    cases = {
        "truncated": ("".join(lines[:-3]), f"{len(lines) - 3}: truncated: 1 sentences, the header says 2"),
        "badrank": ("".join(lines[:3]) + "0\t5\t-1.0\tx\n" + "".join(lines[4:]), "4: rank 5 of sentence 0 out of order"),
        "fields": ("".join(lines[:3]) + "0\t0\n" + "".join(lines[4:]), "4: expected 4 tab-separated fields"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(Exception, match=f"{path}:{message}"):
            select(get_parser().parse_args([str(path), "--out-src", str(tmp_path / "s"),
                                            "--out-tgt", str(tmp_path / "t")]))
