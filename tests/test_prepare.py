"""seqkd-prepare (fairseq_seqkd.prepare): split, SentencePiece, binarize; the Bible text cleaning."""

import os
import re

import pytest

import toydata
from fairseq_seqkd.cli.prepare import get_parser
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.prepare import PrepareOptions, prepare


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A 300-pair toy corpus with an extra reference and ids, all line-aligned."""
    folder = tmp_path_factory.mktemp("corpus")
    pairs = toydata.toy_pairs(300, seed=7, max_len=12)
    files = {}
    for name, lines in {
        "src": [s for s, _ in pairs],
        "tgt": [t for _, t in pairs],
        "ref": [t.upper() for _, t in pairs],
        "ids": [f"id{i}" for i in range(len(pairs))],
    }.items():
        files[name] = str(folder / f"corpus.{name}")
        with open(files[name], "w") as f:
            f.writelines(line + "\n" for line in lines)
    return files


def _argv(corpus, out, *extra):
    return [
        "--src-file", corpus["src"], "--tgt-file", corpus["tgt"], "--src-lang", "xx", "--tgt-lang", "yy",
        "--extra-ref", corpus["ref"], "--ids", corpus["ids"], "--out", str(out),
        "--valid-size", "20", "--test-size", "30", "--vocab-size", "40", "--workers", "1", *extra,
    ]


def args_for(corpus, out, *extra):
    return options_of(_argv(corpus, out, *extra))


def options_of(argv):
    """The library's options from seqkd-prepare's command line."""
    return PrepareOptions(**vars(get_parser().parse_args(argv)))


def lines(path):
    with open(path) as f:
        return f.read().splitlines()


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    prepare(args_for(corpus, out))
    return out


def test_split_is_a_partition_that_keeps_lines_aligned(prepared, corpus):
    raw = prepared / "raw"
    ids = {split: lines(raw / f"{split}.ids") for split in ("train", "valid", "test")}
    assert [len(ids[s]) for s in ("train", "valid", "test")] == [250, 20, 30]
    assert sorted(sum(ids.values(), []), key=lambda x: int(x[2:])) == lines(corpus["ids"])
    src, tgt = lines(corpus["src"]), lines(corpus["tgt"])
    for split in ("train", "valid", "test"):
        index = [int(i[2:]) for i in ids[split]]
        assert lines(raw / f"{split}.xx") == [src[i] for i in index]
        assert lines(raw / f"{split}.yy") == [tgt[i] for i in index]
    for split in ("valid", "test"):  # extra references follow the same split
        assert lines(raw / f"{split}.ref1.yy") == [t.upper() for t in lines(raw / f"{split}.yy")]
    assert not (raw / "train.ref1.yy").exists()


def test_binarized_data_decodes_back_to_the_subword_text(prepared):
    from fairseq.data import Dictionary, data_utils

    for lang in ("xx", "yy"):
        d = Dictionary.load(str(prepared / "bin" / f"dict.{lang}.txt"))
        ds = data_utils.load_indexed_dataset(str(prepared / "bin" / f"test.xx-yy.{lang}"), d)
        tok = lines(prepared / "tok" / f"test.{lang}")
        assert [d.string(ds[i]) for i in range(len(ds))] == tok
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(prepared / "spm" / f"{lang}.model"))
        assert [sp.decode(t.split()) for t in tok] == lines(prepared / "raw" / f"test.{lang}")


def test_same_seed_same_split_and_rerun_is_a_no_op(prepared, corpus, tmp_path):
    stamp = prepared / "prepare.json"
    before = os.path.getmtime(stamp)
    done = prepare(args_for(corpus, prepared))
    assert os.path.getmtime(stamp) == before and done["pairs"] == {"valid": 20, "test": 30, "train": 250}
    prepare(args_for(corpus, tmp_path / "again"))
    assert lines(tmp_path / "again" / "raw" / "test.ids") == lines(prepared / "raw" / "test.ids")


def test_other_seed_other_split(prepared, corpus, tmp_path):
    prepare(args_for(corpus, tmp_path, "--seed", "2"))
    assert lines(tmp_path / "raw" / "test.ids") != lines(prepared / "raw" / "test.ids")


def test_changed_options_refuse_to_overwrite(prepared, corpus):
    with pytest.raises(SeqKDError, match=r"prepared with other options \(vocab_size\)"):
        prepare(args_for(corpus, prepared, "--vocab-size", "50"))


def test_max_words_and_train_size(corpus, tmp_path):
    done = prepare(args_for(corpus, tmp_path, "--max-words", "6", "--train-size", "40"))
    assert done["pairs"]["train"] == 40
    src, ids = lines(corpus["src"]), lines(corpus["ids"])
    short = {ids[i] for i in range(len(src)) if len(src[i].split()) <= 6}
    for split in ("train", "valid", "test"):
        assert set(lines(tmp_path / "raw" / f"{split}.ids")) <= short


def test_bad_inputs_one_line_error_and_nothing_written(corpus, tmp_path):
    base = ["--src-lang", "xx", "--tgt-lang", "yy", "--vocab-size", "40", "--valid-size", "5", "--test-size", "5"]
    short = tmp_path / "short.yy"
    short.write_text("\n".join(lines(corpus["tgt"])[:10]) + "\n")
    empty = tmp_path / "empty.yy"
    tgt = lines(corpus["tgt"])
    tgt[41] = "  "
    empty.write_text("\n".join(tgt) + "\n")
    latin1 = tmp_path / "latin1.yy"
    latin1.write_bytes(b"ok\n" * 3 + "fu\u00e9 la luz\n".encode("latin-1") + b"ok\n" * 296)
    cases = [
        (["--src-file", str(tmp_path / "missing.xx"), "--tgt-file", corpus["tgt"]], "missing.xx: no such file"),
        (["--src-file", corpus["src"], "--tgt-file", str(short)], "not line-aligned"),
        (["--src-file", corpus["src"], "--tgt-file", str(empty)], "empty.yy:42: empty line"),
        (["--src-file", corpus["src"], "--tgt-file", str(latin1)], "latin1.yy:4: not UTF-8"),
    ]
    for i, (files, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        with pytest.raises(SeqKDError, match=message):
            prepare(options_of([*files, *base, "--out", str(out)]))
        assert not (out / "prepare.json").exists() and not (out / "bin").exists()
    proc = toydata.run_cli(["seqkd-prepare", *cases[2][0], *base, "--out", str(tmp_path / "cli")], check=False)
    toydata.assert_one_line_error(proc, "empty.yy:42: empty line")  # the script: the same error, one line
    assert not (tmp_path / "cli" / "prepare.json").exists()


@pytest.fixture(scope="module")
def joint(corpus, tmp_path_factory):
    """The toy corpus prepared with --joint-vocab (source words sN, target words tN: few subwords in common)."""
    out = tmp_path_factory.mktemp("joint")
    prepare(args_for(corpus, out, "--joint-vocab"))
    return out


def test_joint_vocab_one_model_and_one_dictionary_of_both_sides(joint, prepared):
    spm_dir, bin_dir = joint / "spm", joint / "bin"
    models = {(spm_dir / f"{name}.model").read_bytes() for name in ("joint", "xx", "yy")}
    assert len(models) == 1  # one model: SRC.model and TGT.model are copies of joint.model
    assert not (prepared / "spm" / "joint.model").exists()  # only with --joint-vocab
    assert (bin_dir / "dict.xx.txt").read_bytes() == (bin_dir / "dict.yy.txt").read_bytes()
    symbols = {line.split()[0] for line in lines(bin_dir / "dict.xx.txt")}
    seen = {lang: {t for line in lines(joint / "tok" / f"train.{lang}") for t in line.split()} for lang in ("xx", "yy")}
    assert seen["xx"] <= symbols and seen["yy"] <= symbols
    # subwords of one side only, both in the one dictionary (per-side dictionaries each lack the other's)
    assert seen["xx"] - seen["yy"] and seen["yy"] - seen["xx"]
    per_side = {lang: {line.split()[0] for line in lines(prepared / "bin" / f"dict.{lang}.txt")} for lang in ("xx", "yy")}
    assert not per_side["xx"] >= seen["yy"] and not per_side["yy"] >= seen["xx"]
    import json

    assert json.loads((joint / "prepare.json").read_text())["config"]["joint_vocab"] is True


def test_joint_vocab_binarized_data_decodes_back_to_the_subword_text(joint):
    import sentencepiece as spm
    from fairseq.data import Dictionary, data_utils

    sp = spm.SentencePieceProcessor(model_file=str(joint / "spm" / "joint.model"))
    for split in ("train", "test"):
        for lang in ("xx", "yy"):
            d = Dictionary.load(str(joint / "bin" / f"dict.{lang}.txt"))
            ds = data_utils.load_indexed_dataset(str(joint / "bin" / f"{split}.xx-yy.{lang}"), d)
            tok = lines(joint / "tok" / f"{split}.{lang}")
            assert len(ds) == len(tok) and [d.string(ds[i]) for i in range(len(ds))] == tok
            assert [sp.decode(t.split()) for t in tok] == lines(joint / "raw" / f"{split}.{lang}")


def test_joint_vocab_is_what_lets_a_transformer_share_all_embeddings(joint, prepared, tmp_path):
    shared = ["--arch", "transformer", "--share-all-embeddings", "--encoder-layers", "1", "--decoder-layers", "1",
              "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
              "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
              "--max-update", "2", "--cpu"]
    path = toydata.train(str(joint / "bin"), str(tmp_path / "joint"), shared, max_epoch=1)
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    weights = state["model"]
    assert state["optimizer_history"][-1]["num_updates"] == 2
    # one embedding matrix: encoder input, decoder input and output projection are the same tensor
    assert "decoder.output_projection.weight" not in weights or torch.equal(
        weights["decoder.output_projection.weight"], weights["encoder.embed_tokens.weight"])
    assert torch.equal(weights["encoder.embed_tokens.weight"], weights["decoder.embed_tokens.weight"])
    with pytest.raises(ValueError, match="--share-all-embeddings requires a joined dictionary"):
        toydata.train(str(prepared / "bin"), str(tmp_path / "per-side"), shared, max_epoch=1)


def test_joint_vocab_refusals(corpus, prepared, tmp_path):
    with pytest.raises(SeqKDError, match=r"^--joint-vocab has one vocabulary .*--vocab-size, not --src-vocab-size$"):
        prepare(args_for(corpus, tmp_path / "sizes", "--joint-vocab", "--src-vocab-size", "30"))
    assert not (tmp_path / "sizes").exists()
    proc = toydata.run_cli(["seqkd-prepare", *[str(a) for a in _argv(corpus, tmp_path / "cli")], "--joint-vocab",
                            "--tgt-vocab-size", "30"], check=False)
    toydata.assert_one_line_error(proc, "--joint-vocab has one vocabulary for both sides")
    assert not (tmp_path / "cli").exists()
    # an OUT prepared with a vocabulary per side is not turned into a joint one (nor the other way round)
    before = (prepared / "bin" / "dict.xx.txt").read_bytes()
    with pytest.raises(SeqKDError, match=r"prepared with other options \(joint_vocab\)"):
        prepare(args_for(corpus, prepared, "--joint-vocab"))
    assert (prepared / "bin" / "dict.xx.txt").read_bytes() == before


def test_a_stamp_from_before_an_option_existed_counts_as_its_default(joint, corpus, tmp_path):
    """prepare.json written before --joint-vocab existed (no joint_vocab key): a rerun without the option is a
    no-op, as before; with it, refused."""
    import json

    done = json.loads((joint / "prepare.json").read_text())
    old = tmp_path / "old"
    old.mkdir()
    config = {k: v for k, v in done["config"].items() if k != "joint_vocab"}
    (old / "prepare.json").write_text(json.dumps(dict(done, config=dict(config, out=str(old)))))
    assert prepare(args_for(corpus, old))["config"] == dict(config, out=str(old))
    with pytest.raises(SeqKDError, match=r"prepared with other options \(joint_vocab\)"):
        prepare(args_for(corpus, old, "--joint-vocab"))


def test_bible_cleaning_rules():
    pytest.importorskip("pysword")
    from pysword.cleaner import OSISCleaner

    from fairseq_seqkd.corpora.bible import CleaningStats, clean_verse

    cleaner, stats = OSISCleaner(), CleaningStats()
    web = ('<w lemma="strong:H0430">God</w><note placement="foot"><reference>1:1 </reference>The Hebrew '
           'word rendered “God” is “אֱלֹהִ֑ים” (Elohim).</note><w lemma="strong:H1254">created</w> the '
           '<w>heavens</w><note>x</note>. <div eID="gen25" type="x-p"/>')
    assert clean_verse(web, cleaner, stats=stats) == "God created the heavens."
    rv = '<w lemma="strong:H7225">EN el principio</w> <w>crió</w>  Dios .'
    assert clean_verse(rv, cleaner, first_of_chapter=True, stats=stats) == "En el principio crió Dios."
    assert clean_verse(rv, cleaner, first_of_chapter=False) == "EN el principio crió Dios."
    assert clean_verse("<w>Y</w> dijo: A.", cleaner, first_of_chapter=True) == "Y dijo: A."  # one letter: kept
    last = ('<w>saints</w>. Amen.  <chapter eID="Rev.22"/><div eID="gen35836" type="x-p"/> <div canonical="true" '
            'eID="gen35575" osisID="Rev" type="book"/> <div sID="gen35837" type="glossary"/> <title>World English '
            'Bible Glossary</title> The following words used in the World English Bible are not very common.')
    assert clean_verse(last, cleaner, stats=stats) == "saints. Amen."
    assert stats == {"note_between_words": 1, "space_before_punctuation": 1, "capitalised_chapter_opening": 1,
                     "back_matter_after_book_end": 1}


@pytest.mark.skipif(not os.path.isdir("/usr/share/sword/modules/texts/ztext/engKJV2006eb"),
                    reason="the sword-text-* Debian packages are not installed")
@pytest.mark.slow  # a fresh process or a whole corpus: left out by make test-fast
def test_read_bible_from_installed_modules():
    from fairseq_seqkd.corpora.bible import read_bible

    refs, texts, stats = read_bible()
    assert len(refs) == len(set(refs)) == len(texts["es"]) == len(texts["en"]) == len(texts["kjv"])
    assert 31000 <= len(refs) <= 31102  # the KJV versification has 31,102 verses
    first = refs.index("Gen.1.1")
    assert texts["en"][first] == "In the beginning, God created the heavens and the earth."
    assert texts["es"][first] == "En el principio crió Dios los cielos y la tierra."
    assert texts["kjv"][first] == "In the beginning God created the heaven and the earth."
    assert refs[-1] == "Rev.22.21"
    assert texts["en"][-1] == "The grace of the Lord Jesus Christ be with all the saints. Amen."  # no glossary
    assert max(len(t.split()) for k in texts for t in texts[k]) < 120  # Esther 8:9, the longest verse, has ~90
    assert stats["verses_in_chapters_with_different_versification"] == 31
    assert not any("<" in t or "  " in t for k in texts for t in texts[k])


def test_bible_reader_output_behind_a_broken_link(tmp_path):
    """--out-dir (or a folder above it, as prepare.sh's OUT/corpus) a symbolic link to nothing: a one-line error
    naming the link, before any module is read; a folder that cannot be made: one line too."""
    from fairseq_seqkd.corpora import bible

    (tmp_path / "out").symlink_to(tmp_path / "gone")
    (tmp_path / "file").write_text("x\n")
    cases = [(tmp_path / "out", r"--out-dir .*out: is a broken link to .*gone$"),
             (tmp_path / "out" / "corpus", r"--out-dir .*corpus: .*out is a broken link to .*gone$"),
             (tmp_path / "file" / "corpus", r"--out-dir .*corpus: cannot create it \(Not a directory\)$")]
    for out_dir, message in cases:
        with pytest.raises(SystemExit) as stop:
            bible.main(["--out-dir", str(out_dir), "--sword-path", str(tmp_path / "no-sword")])
        assert re.fullmatch("error: " + message, str(stop.value)), stop.value
    assert sorted(os.listdir(tmp_path)) == ["file", "out"] and not os.path.lexists(tmp_path / "gone")


def test_prepare_output_behind_a_broken_link(toy_text, tmp_path):
    """seqkd-prepare --out a symbolic link to nothing: one line naming it, nothing created where it points."""
    (tmp_path / "out").symlink_to(tmp_path / "gone")
    proc = toydata.run_cli(["seqkd-prepare", "--src-file", os.path.join(toy_text, "train.src"), "--tgt-file",
                            os.path.join(toy_text, "train.tgt"), "--src-lang", "src", "--tgt-lang", "tgt", "--out",
                            str(tmp_path / "out"), "--valid-size", "10", "--test-size", "10"], check=False)
    toydata.assert_one_line_error(proc, f"--out {tmp_path / 'out'}: is a broken link to {tmp_path / 'gone'}")
    assert not os.path.lexists(tmp_path / "gone")
