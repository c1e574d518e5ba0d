"""K-best lists (fairseq_seqkd.kbest): our file and fairseq-generate's output read back exactly; pieces of
whole sentences; the one check that sentence ids are 0..n-1 in order."""

import random

import pytest

from fairseq_seqkd.errors import KBestError, SeqKDError
from fairseq_seqkd.kbest import (KBestFile, Sentence, check_complete, in_id_order, parse_kbest_rows, read_kbest,
                                 read_generate_output, write_kbest_file)
from kbest_samples import random_kbest, to_sentencepiece, write_generate_output


def fields(sentences):
    return [(s.id, s.source, s.reference, s.hyps) for s in sentences]


def test_our_file_round_trips_exactly(tmp_path):
    sentences = random_kbest(random.Random(1), 50, 6, to_sentencepiece)
    sentences[3].hyps[0] = (-1 / 3, "")  # an empty hypothesis, a score that needs all its digits
    sentences[4].reference = None  # a split without references for this one
    path = str(tmp_path / "k")
    write_kbest_file(path, sentences, 6)
    table = read_kbest(path)
    assert sorted(table) == list(range(50))
    assert fields(table[i] for i in range(50)) == fields(sentences)
    assert table[3].hyps[0][0] == -1 / 3


def test_generate_output_in_batch_order_reads_back_in_id_order(tmp_path):
    sentences = random_kbest(random.Random(2), 40, 4, to_sentencepiece)
    path = str(tmp_path / "gen.out")
    write_generate_output(path, sentences, random.Random(3))
    table = read_generate_output(path)
    assert fields(check_complete(path, table, need_reference=True)) == fields(sentences)


@pytest.mark.parametrize("size", [1, 16, 100, 1 << 20])
def test_pieces_hold_whole_sentences_and_the_whole_file(tmp_path, size):
    sentences = random_kbest(random.Random(4), 30, 5, to_sentencepiece)
    path = str(tmp_path / "k")
    write_kbest_file(path, sentences, 5)
    kbest = KBestFile(path)
    pieces = list(kbest.pieces(size))
    with open(path, "rb") as f:
        f.readline()  # the header
        rest = f.read()
    assert b"".join(data for _, data in pieces) == rest and kbest.sentences == 30
    assert kbest.lines == 1 + rest.count(b"\n")
    parsed = [parse_kbest_rows(path, line, data) for line, data in pieces]
    ids = [s.id for piece in parsed for s in piece]
    assert ids == list(range(30))  # no sentence split between two pieces
    assert fields(s for piece in parsed for s in piece) == fields(sentences)
    line = 2  # each piece starts where the previous one ended
    for (first, data), piece in zip(pieces, parsed):
        assert first == line == piece[0].first_line
        line += data.count(b"\n")


def items(*ids):
    return [(sid, 10 + k, f"item{sid}") for k, sid in enumerate(ids)]


def test_in_id_order_passes_a_complete_corpus_and_names_what_is_wrong():
    assert list(in_id_order("f", items(0, 1, 2), 3)) == ["item0", "item1", "item2"]
    cases = [
        (items(0, 2), 3, r"f:11: sentence id\(s\) 1 to 1 missing"),
        (items(1, 2), 3, r"f:10: sentence id\(s\) 0 to 0 missing"),
        (items(0, 1, 1), 3, r"f:12: sentence 1 out of order or repeated \(after sentence 1\)"),
        (items(0, 1, 2), 2, "f:12: sentence 2 beyond the 2 of the header"),
        (items(0, 1), 3, "f:99: truncated: 2 sentences, the header says 3"),
    ]
    for given, expected, message in cases:
        with pytest.raises(KBestError, match=f"^{message}$"):
            list(in_id_order("f", given, expected, end_line=lambda: 99))


def test_check_complete_of_generate_output(tmp_path):
    table = {i: Sentence(i, f"s{i}", f"r{i}", [(-1.0, "h")], first_line=3 * i + 1) for i in (0, 1, 3)}
    with pytest.raises(KBestError, match=r"^g:10: sentence id\(s\) 2 to 2 missing; with fairseq-generate use "
                                         r"--task seqkd_translation"):
        check_complete("g", table)
    del table[3]
    with pytest.raises(KBestError, match="^g: truncated: 2 sentences, --num-sentences says 3$"):
        check_complete("g", table, num_sentences=3)
    table[1].reference = None
    with pytest.raises(KBestError, match="sentence 1, which has no reference"):
        check_complete("g", table, need_reference=True)
    assert [s.id for s in check_complete("g", table)] == [0, 1]
    with pytest.raises(KBestError, match="^g: no sentences found$"):
        check_complete("g", {})


def test_an_unsorted_kbest_file_is_refused(tmp_path):
    path = str(tmp_path / "k")
    write_kbest_file(path, [Sentence(1, "b", "y", [(-1.0, "y")]), Sentence(0, "a", "x", [(-1.0, "x")])], 1)
    with pytest.raises(KBestError, match=r"k:2: sentence id\(s\) 0 to 0 missing"):
        read_kbest(path)


def test_kbest_errors_are_seqkd_errors(tmp_path):
    """One family: a script turns any of them into one line."""
    assert issubclass(KBestError, SeqKDError)
    with pytest.raises(SeqKDError, match="no such file"):
        read_kbest(str(tmp_path / "missing"))
