"""seqkd-prepare --mono-src: source-only text, cleaned, deduplicated and binarized with no target file."""

import json
import os

import pytest
import toydata

from fairseq_seqkd import mono
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.prepare import PrepareOptions, prepare


def test_select_by_hand(tmp_path):
    path = tmp_path / "mono.txt"
    lines = ["s1 s2", "", "s3  s4 ", "s1 s2 s3 s4 s5 s6", "s7", "s3 s4", "  ", "s9 s9", "s1 s2", "s7"]
    path.write_text("\n".join(lines) + "\n")
    codes = mono.select(str(path), known_sources=["s9  s9", "s5"], max_words=5)
    # s1 s2: kept, then repeated; "s3  s4 " kept (whitespace runs collapse), "s3 s4" repeated; 6 words: too long;
    # "s9 s9": a source of the parallel splits
    assert codes.tolist() == [0, 1, 0, 2, 0, 4, 1, 3, 4, 4]
    assert mono.counts(codes) == {"lines": 10, "kept": 3, "removed": {
        "empty": 2, "longer than --max-words": 1, "in the train, valid or test sources": 1, "repeated": 3}}
    out = tmp_path / "kept.txt"
    assert mono.write_kept(str(path), codes, str(out)) == 3
    assert out.read_text() == "s1 s2\ns3  s4\ns7\n"


def test_select_keeps_the_first_occurrence_across_its_flushes(tmp_path):
    """More lines than select holds before it writes its buckets (65,536): a repeat found across them."""
    n = (1 << 16) + 500
    path = tmp_path / "mono.txt"
    path.write_text("".join(f"w{i}\n" for i in range(n)) + "w3\n")
    codes = mono.select(str(path), known_sources=[])
    assert codes.tolist() == [0] * n + [4]


def test_prepare_with_mono_src(toy_text, tmp_path):
    files = {f"{split}_{side}": os.path.join(toy_text, f"{split}.{side}") for split in ("train", "valid", "test")
             for side in ("src", "tgt")}
    with open(files["train_src"]) as f:
        a_train_source = f.readline().strip()
    with open(files["test_src"]) as f:
        a_test_source = f.readline().strip()
    mono_file = tmp_path / "mono.src"
    # 9 words or more: no toy corpus sentence (3-8 words) is one of them
    a, b, c = "s1 s2 s3 s4 s5 s6 s7 s8 s9", "s9 s8 s7 s6 s5 s4 s3 s2 s1", "s2 s2 s2 s2 s2 s2 s2 s2 s2 s2"
    mono_file.write_text(f"{a}\n{a_train_source}\n{b}\n\n{a}\n{a_test_source}\n{c}\n")
    out = tmp_path / "prepared"
    done = prepare(PrepareOptions(src_file=files["train_src"], tgt_file=files["train_tgt"], src_lang="src",
                                  tgt_lang="tgt", out=str(out), valid_src=files["valid_src"],
                                  valid_tgt=files["valid_tgt"], test_src=files["test_src"],
                                  test_tgt=files["test_tgt"], vocab_size=16, mono_src=str(mono_file)))
    kept = [a, b, c]
    assert (out / "raw" / "mono.src").read_text().splitlines() == kept
    assert done["mono"] == {"lines": 7, "kept": 3, "removed": {"empty": 1, "in the train, valid or test sources": 2,
                                                               "repeated": 1}}
    assert json.loads((out / "prepare.json").read_text())["mono"] == done["mono"]
    import sentencepiece as spm

    model = spm.SentencePieceProcessor(model_file=str(out / "spm" / "src.model"))
    tok = (out / "tok" / "mono.src").read_text().splitlines()
    assert tok == [" ".join(p) for p in model.encode(kept, out_type=str)]
    # binarized with the source dictionary and no target file: fairseq loads it without references
    data = out / "bin"
    assert sorted(p.name for p in data.glob("mono.*")) == ["mono.src-tgt.src.bin", "mono.src-tgt.src.idx"]
    from fairseq.data import Dictionary
    from fairseq.data.data_utils import load_indexed_dataset
    from fairseq.tasks.translation import load_langpair_dataset

    src_dict, tgt_dict = (Dictionary.load(str(data / f"dict.{lang}.txt")) for lang in ("src", "tgt"))
    dataset = load_langpair_dataset(str(data), mono.MONO, "src", src_dict, "tgt", tgt_dict, combine=False,
                                    dataset_impl=None, upsample_primary=1, left_pad_source=True,
                                    left_pad_target=False, max_source_positions=1024, max_target_positions=1024)
    assert dataset.tgt is None and len(dataset) == 3
    decoded = [src_dict.string(dataset.src[i]) for i in range(3)]
    assert decoded == tok
    assert load_indexed_dataset(str(data / "mono.src-tgt.tgt"), tgt_dict) is None


def test_bad_mono_files(toy_text, tmp_path):
    files = dict(src_file=os.path.join(toy_text, "train.src"), tgt_file=os.path.join(toy_text, "train.tgt"),
                 src_lang="src", tgt_lang="tgt", valid_size=50, test_size=50, vocab_size=16)
    bad = tmp_path / "bad.src"
    bad.write_bytes(b"s1 s2\ns3 \xff s4\n")
    with pytest.raises(SeqKDError, match=rf"^{bad}:2: not UTF-8 text"):
        prepare(PrepareOptions(**files, out=str(tmp_path / "a"), mono_src=str(bad)))
    assert not (tmp_path / "a").exists()  # stopped before anything was written
    with pytest.raises(SeqKDError, match=rf"^{tmp_path / 'none.src'}: no such file$"):
        prepare(PrepareOptions(**files, out=str(tmp_path / "b"), mono_src=str(tmp_path / "none.src")))
    empty = tmp_path / "empty.src"
    empty.write_text("\n\n")
    with pytest.raises(SeqKDError, match=r"no line left of 2 \(2 empty\)"):
        prepare(PrepareOptions(**files, out=str(tmp_path / "c"), mono_src=str(empty)))
    assert not (tmp_path / "c").exists()


def test_cli_one_line_error(tmp_path, toy_text):
    proc = toydata.run_cli(["seqkd-prepare", "--src-file", os.path.join(toy_text, "train.src"), "--tgt-file",
                            os.path.join(toy_text, "train.tgt"), "--src-lang", "src", "--tgt-lang", "tgt", "--out",
                            str(tmp_path / "o"), "--mono-src", str(tmp_path / "missing.src")], check=False)
    toydata.assert_one_line_error(proc, f"{tmp_path / 'missing.src'}: no such file")
