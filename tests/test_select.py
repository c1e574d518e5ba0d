"""seqkd-select's library (fairseq_seqkd.selection) equals a brute-force sacrebleu loop; bad inputs stop
with FILE:LINE and leave no output; worker processes."""

import os
import random
import re

import pytest
import sacrebleu
from fairseq.data.data_utils import post_process

import toydata
from fairseq_seqkd import selection
from fairseq_seqkd.kbest import KBestError, Sentence, write_kbest_file
from fairseq_seqkd.subwords import remove_subwords, remove_subwords_all
from kbest_samples import random_kbest, random_text, to_sentencepiece, to_subword_nmt, write_generate_output


def select(path, out_src, out_tgt, **options):
    return selection.write_selection(str(path), str(out_src), str(out_tgt), **options)


def brute_force_choice(hyps, ref, remove_bpe):
    dec = (lambda t: t) if remove_bpe == "none" else (lambda t: post_process(t, remove_bpe))
    scores = [sacrebleu.sentence_bleu(dec(h), [dec(ref)]).score for h in hyps]
    return scores.index(max(scores))


SEEDS = {(fmt, remove_bpe): seed for seed, (fmt, remove_bpe) in enumerate(
    (f, r) for f in ("kbest", "generate") for r in ("sentencepiece", "subword_nmt", "none"))}


@pytest.mark.parametrize("fmt", ["kbest", "generate"])
@pytest.mark.parametrize("remove_bpe,encode", [("sentencepiece", to_sentencepiece),
                                               ("subword_nmt", to_subword_nmt), ("none", lambda t: t)])
def test_select_equals_brute_force_sacrebleu(tmp_path, fmt, remove_bpe, encode):
    rng = random.Random(SEEDS[fmt, remove_bpe])  # fixed: hash() of a string differs per process
    sentences = random_kbest(rng, 60, 8, encode)
    path = str(tmp_path / "input")
    if fmt == "kbest":
        write_kbest_file(path, sentences, 8)
    else:
        write_generate_output(path, sentences, rng)
    for workers in (1, 2):
        out_src, out_tgt = str(tmp_path / f"src{workers}"), str(tmp_path / f"tgt{workers}")
        select(path, out_src, out_tgt, remove_bpe=remove_bpe, workers=workers)
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
        select(path, tmp_path / "s", out, mode=mode, remove_bpe="none")
        with open(out) as f:
            assert f.read().split("\n")[:-1] == expected


BAD_GENERATE = [
    ("S-0\ta\nT-0\tx\nH-0\tminus-one\tx\n", 3, "score 'minus-one' is not a number"),
    ("S-0\ta\nT-0\tx\nH-0\t-1\tx\nS-1\tb\nH-1\t-1\ty\n", 5, "hypothesis for sentence 1, which has no reference"),
    ("S-0\ta\nT-0\tx\nH-0\t-1\tx\nS-1\tb\nT-1\ty\n", 4, "sentence 1 has no hypotheses"),
    ("S-0\ta\nT-0\tx\nH-0\t-1\tx\nS-1\tb\nT-1\ty\nH-1\t-1\t", 6, "truncated: the last line has no newline"),
    ("S-0\ta\nT-0\tx\nH-0\t-1\tx\nS-2\tb\nT-2\ty\nH-2\t-1\ty\n", 4,
     "sentence id(s) 1 to 1 missing; with fairseq-generate use --task seqkd_translation"),
    ("S-0\ta\nT-0\tx\nT-0\tz\nH-0\t-1\tx\n", 3, "sentence 0 has a second, different reference"),
    ("H-x\t-1\tx\n", 1, "malformed H- line"),
]


@pytest.mark.parametrize("content,line,message", BAD_GENERATE)
def test_bad_generate_output_error_names_file_and_line_no_output(tmp_path, content, line, message):
    path = tmp_path / "gen.out"
    path.write_text(content)
    out_src, out_tgt = tmp_path / "o.src", tmp_path / "o.tgt"
    with pytest.raises(KBestError) as err:
        select(path, out_src, out_tgt)
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
    for workers in (1, 2):
        out = str(tmp_path / f"tgt{workers}")
        select(path, tmp_path / "src", out, workers=workers)
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
        for workers in (1, 2):
            with pytest.raises(KBestError) as err:
                select(path, tmp_path / "out.s", tmp_path / "out.t", workers=workers)
            assert re.match(re.escape(f"{path}:") + message, str(err.value)), (name, str(err.value))
            assert not [f for f in os.listdir(tmp_path) if f.startswith("out.")], name  # no output, no temporary
    path = tmp_path / "latin1"
    path.write_bytes("".join(lines[:13]).encode() + "14\t0\t-1\t\u00e9\n".encode("latin-1") + "".join(lines[14:]).encode())
    with pytest.raises(KBestError, match=f"{path}:14: not UTF-8 text"):
        select(path, tmp_path / "out.s", tmp_path / "out.t")


def test_subword_removal_all_at_once_equals_one_by_one_and_fairseq():
    rng = random.Random(11)
    texts = [to_sentencepiece(random_text(rng)) for _ in range(300)] + ["", " ", "\u2581a \u2581b"]
    for remove_bpe in ("sentencepiece", "subword_nmt", "none"):
        one_by_one = [remove_subwords(t, remove_bpe) for t in texts]
        assert [t.strip() for t in remove_subwords_all(texts, remove_bpe)] == [t.strip() for t in one_by_one]
        if remove_bpe != "none":
            assert one_by_one == [post_process(t, remove_bpe) for t in texts]


def test_a_dying_worker_is_an_error_not_a_hang():
    from concurrent.futures.process import BrokenProcessPool

    with pytest.raises(BrokenProcessPool):
        list(selection._in_workers(os._exit, [3, 3, 3], 2))  # each task kills its worker


@pytest.mark.parametrize("start_method", ["forkserver", "fork"])
def test_workers_start_methods_give_the_same_choices(tmp_path, start_method):
    """forkserver (the library's default: safe in a process that holds torch's thread pools, as this one)
    and fork (seqkd-select's own process, which never runs torch)."""
    sentences = random_kbest(random.Random(3), 40, 5, to_sentencepiece)
    path = str(tmp_path / "k")
    write_kbest_file(path, sentences, 5)
    one = select(path, tmp_path / "s1", tmp_path / "t1", workers=1)
    two = select(path, tmp_path / "s2", tmp_path / "t2", workers=2, start_method=start_method)
    assert one == two and (tmp_path / "t1").read_text() == (tmp_path / "t2").read_text()


@pytest.mark.slow  # a fresh process or a whole corpus: left out by make test-fast
def test_cli_with_workers_equals_library(tmp_path):
    sentences = random_kbest(random.Random(4), 50, 5, to_sentencepiece)
    path = str(tmp_path / "k")
    write_kbest_file(path, sentences, 5)
    select(path, tmp_path / "s1", tmp_path / "t1")
    temp = tmp_path / "temp"
    temp.mkdir()
    proc = toydata.run_cli(["seqkd-select", path, "--out-src", str(tmp_path / "s2"), "--out-tgt",
                            str(tmp_path / "t2"), "--workers", "2"], env={"TMPDIR": str(temp)})
    assert "50 sentences, " in proc.stdout
    assert list(temp.iterdir()) == []  # the workers left nothing in the temporary folder
    assert (tmp_path / "t1").read_text() == (tmp_path / "t2").read_text()
    assert (tmp_path / "s1").read_text() == (tmp_path / "s2").read_text()
