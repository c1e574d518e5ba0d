"""Sentence BLEU equals sacrebleu exactly; seqkd-select equals a brute-force sacrebleu loop; bad inputs."""

import os
import random
import re

import pytest
import sacrebleu
from fairseq.data.data_utils import post_process
from sacrebleu.metrics.bleu import BLEU

import toydata
from fairseq_seqkd import bleu, selection
from fairseq_seqkd.bleu import SentenceBleu
from fairseq_seqkd.cli.select import get_parser, select
from fairseq_seqkd.kbest import KBestError, Sentence, write_kbest_file

# characters that exercise every rule of sacrebleu's 13a tokenizer
NASTY = list("aábcdeéz") + list("0123456789") + list(".,.,-:;!?'\"&/()[]{}~`@#$%^*+=<>|\\") + [
    " ", " ", " ", "\t", "\u00a0", "&quot;", "&amp;", "&lt;", "&gt;", "<skipped>", "é", "ß", "中", "😀", "--", "...", "\x00"]


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


def test_choice_prefers_the_earliest_of_equal_scores():
    ours = SentenceBleu()
    ref = "in the beginning God created the heaven"
    hyps = ["in the end", "in the beginning God made", "God created in the beginning",
            "in the beginning God made", ref, ref]
    scores = ours.scores(hyps, ref)
    assert scores[4] == scores[5] == sacrebleu.sentence_bleu(ref, [ref]).score
    assert ours.choose(hyps, ref) == (4, scores[4], scores[0])
    assert ours.choose(["x y", "a b", "c d"], ref) == (0, 0.0, 0.0)  # all zero: the first one


@pytest.mark.parametrize("group, table_size, words", [(256, 1 << 24, 10 ** 6), (3, 40, 5)])
def test_many_lists_at_once_equal_one_at_a_time(monkeypatch, group, table_size, words):
    """Lists scored together (shared words, a text containing the separator); then small groups, tables
    too small for the n-gram lookup (binary search instead) and a scorer that often forgets its words."""
    monkeypatch.setattr(bleu, "GROUP", group)
    monkeypatch.setattr(bleu, "TABLE_SIZE", table_size)
    monkeypatch.setattr(bleu, "WORDS", words)
    rng = random.Random(5)
    words = ["the", "the", "of", "God", ",", ".", "a", "b", "c\x00d", "3.5"]
    lists = []
    for _ in range(600):
        ref = " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
        hyps = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) for _ in range(rng.randint(1, 6))]
        lists.append((hyps, ref))
    together = SentenceBleu().choose_many(lists)
    assert len(together) == 600
    for (hyps, ref), got in zip(lists, together):
        expected = [sacrebleu.sentence_bleu(h, [ref]).score for h in hyps]
        best = max(range(len(hyps)), key=lambda i: (expected[i], -i))
        assert got == (best, expected[best], expected[0]), (hyps, ref)
    with pytest.raises(ValueError):
        SentenceBleu().choose_many([(["a"], "a"), ([], "b")])


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


def test_kbest_file_streamed_in_small_pieces_equals_brute_force(tmp_path, monkeypatch):
    """Pieces of a few rows: sentences never split between pieces, order kept, 1 and 2 processes."""
    monkeypatch.setattr(selection, "PIECE_BYTES", 64)
    rng = random.Random(7)
    sentences = random_kbest(rng, 80, 6, to_sentencepiece)
    path = str(tmp_path / "k")
    write_kbest_file(path, sentences, 6)
    expected = [s.hyps[brute_force_choice([h for _, h in s.hyps], s.reference, "sentencepiece")][1]
                for s in sentences]
    for workers in ("1", "2"):
        out = str(tmp_path / f"tgt{workers}")
        select(get_parser().parse_args([path, "--out-src", str(tmp_path / "src"), "--out-tgt", out,
                                        "--workers", workers]))
        with open(out) as f:
            assert f.read().splitlines() == expected


@pytest.mark.parametrize("piece_bytes", [1 << 19, 16])
def test_bad_kbest_file_errors(tmp_path, monkeypatch, piece_bytes):
    monkeypatch.setattr(selection, "PIECE_BYTES", piece_bytes)
    good = tmp_path / "good"
    write_kbest_file(str(good), [Sentence(i, f"s{i}", "x", [(-1.0, "x"), (-2.0, "y")]) for i in range(6)], 2)
    lines = good.read_text().splitlines(keepends=True)  # header, then 4 rows per sentence
    n = len(lines)
    cases = {
        "truncated": ("".join(lines[:-4]), f"{n - 4}: truncated: 5 sentences, the header says 6"),
        "no-newline": ("".join(lines)[:-1], f"{n}: truncated: the last line has no newline"),
        "badrank": ("".join(lines[:19]) + "4\t5\t-1.0\tx\n" + "".join(lines[20:]),
                    "20: rank 5 of sentence 4 out of order"),
        "fields": ("".join(lines[:19]) + "4\t0\n" + "".join(lines[20:]), "20: expected 4 tab-separated fields"),
        "score": ("".join(lines[:19]) + "4\t0\tnan\tx\n" + "".join(lines[20:]), "20: score 'nan' is not a number"),
        # in one piece the parser sees the row apart; alone in a piece, it starts sentence 3 again at rank 1
        "apart": ("".join(lines[:16] + lines[17:21] + lines[16:17] + lines[21:]),
                  "21: (rows of sentence 3 are not together|rank 1 of sentence 3 out of order)"),
        "order": ("".join(lines[:1] + lines[5:9] + lines[1:5] + lines[9:]),
                  r"2: sentence id\(s\) 0 to 0 missing"),
        "gap": ("".join(lines[:9] + lines[13:]).replace("sentences=6", "sentences=5"),
                r"10: sentence id\(s\) 2 to 2 missing"),
        "beyond": ("".join(lines).replace("sentences=6", "sentences=5"), "22: sentence 5 beyond the 5 of the header"),
        "no-hyps": ("".join(lines[:19] + lines[21:]), "18: sentence 4 has no hypotheses"),
        "no-ref": ("".join(lines[:18] + lines[19:]), "19: hypothesis for sentence 4, which has no reference"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_text(content)
        for workers in ("1", "2"):
            with pytest.raises(KBestError) as err:
                select(get_parser().parse_args([str(path), "--out-src", str(tmp_path / "out.s"),
                                                "--out-tgt", str(tmp_path / "out.t"), "--workers", workers]))
            assert re.match(re.escape(f"{path}:") + message, str(err.value)), (name, str(err.value))
            assert not [f for f in os.listdir(tmp_path) if f.startswith("out.")], name  # no output, no temporary
    path = tmp_path / "latin1"
    path.write_bytes("".join(lines[:13]).encode() + "14\t0\t-1\t\u00e9\n".encode("latin-1") + "".join(lines[14:]).encode())
    with pytest.raises(KBestError, match=f"{path}:14: not UTF-8 text"):
        select(get_parser().parse_args([str(path), "--out-src", str(tmp_path / "out.s"), "--out-tgt",
                                        str(tmp_path / "out.t")]))


def test_decoding_all_at_once_equals_one_by_one():
    rng = random.Random(11)
    texts = [to_sentencepiece(random_text(rng)) for _ in range(300)] + ["", " ", "\u2581a \u2581b"]
    for remove_bpe in ("sentencepiece", "subword_nmt", "none"):
        assert [t.strip() for t in selection.decode_all(texts, remove_bpe)] == \
            [selection.decode(t, remove_bpe).strip() for t in texts]


def test_a_dying_worker_is_an_error_not_a_hang():
    from concurrent.futures.process import BrokenProcessPool

    with pytest.raises(BrokenProcessPool):
        list(selection._in_workers(os._exit, [3, 3, 3], 2))  # each task kills its worker
