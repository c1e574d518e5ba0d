"""Source-only text decoded by seqkd-distill (--subset mono) and joined with the distilled training set
(seqkd-join): the ids keep the parts' sentences apart; fairseq-train reads the joined corpus."""

import os
import shutil

import pytest
import toydata

from fairseq_seqkd.corpus_parts import join_parts
from fairseq_seqkd.distill import DistillOptions, distill
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.multi_target import read_ids


def write_part(prefix, rows, ids=None):
    for ext, column in (("src", 0), ("tgt", 1)):
        with open(f"{prefix}.{ext}", "w") as f:
            f.writelines(row[column] + "\n" for row in rows)
    if ids is not None:
        with open(f"{prefix}.ids", "w") as f:
            f.writelines(f"{i}\n" for i in ids)
    return str(prefix)


def test_join_by_hand(tmp_path):
    # a part with two targets per source (--keep 2), then one with one line per source
    a = write_part(tmp_path / "a", [("x1", "y1"), ("x1", "y1b"), ("x2", "y2"), ("x2", "y2b")], ids=[0, 0, 1, 1])
    b = write_part(tmp_path / "b", [("m1", "n1"), ("m2", "n2"), ("m1", "n3")])
    report = join_parts([a, b], str(tmp_path / "out"), "src", "tgt")
    assert (tmp_path / "out.src").read_text().split() == ["x1", "x1", "x2", "x2", "m1", "m2", "m1"]
    assert (tmp_path / "out.tgt").read_text().split() == ["y1", "y1b", "y2", "y2b", "n1", "n2", "n3"]
    assert (tmp_path / "out.ids").read_text().split() == ["0", "0", "1", "1", "2", "3", "4"]
    assert report == {"parts": [{"prefix": a, "lines": 4, "sentences": 2}, {"prefix": b, "lines": 3, "sentences": 3}],
                      "lines": 7, "sentences": 5}


def test_bad_parts_are_one_line_errors_and_leave_nothing(tmp_path):
    good = write_part(tmp_path / "good", [("x", "y")])
    (tmp_path / "short.src").write_text("a\nb\n")
    (tmp_path / "short.tgt").write_text("a\n")
    bad_id = write_part(tmp_path / "badid", [("x", "y"), ("x", "y")], ids=[0, "one"])
    jump = write_part(tmp_path / "jump", [("x", "y"), ("x", "y")], ids=[0, 2])
    (tmp_path / "empty.src").write_text("")
    (tmp_path / "empty.tgt").write_text("")
    out = str(tmp_path / "out")
    cases = [([good, str(tmp_path / "missing")], f"{tmp_path / 'missing'}.src: no such file"),
             ([str(tmp_path / "short")], f"{tmp_path / 'short'}.tgt: fewer lines than"),
             ([bad_id], f"{bad_id}.ids:2: 'one' is not a sentence id"),
             ([jump], f"{jump}.ids:2: sentence id 2 after 0"),
             ([str(tmp_path / "empty")], "an empty part"),
             ([good, out], "is also a part"),
             ([], "give at least one part")]
    for parts, message in cases:
        with pytest.raises(SeqKDError, match=None) as e:
            join_parts(parts, out, "src", "tgt")
        assert message in str(e.value) and "\n" not in str(e.value)
        assert not any(p.name.startswith("out.") for p in tmp_path.iterdir())


@pytest.fixture(scope="module")
def mono_data(toy_data, tmp_path_factory):
    """A copy of the toy data with a source-only split ``mono`` (120 toy sentences of another seed)."""
    return toydata.with_mono_split(toy_data, str(tmp_path_factory.mktemp("mono_data") / "bin"))


@pytest.mark.parametrize("teacher,engine", [("lstm", "fairseq"), ("lstm", "seqkd"),
                                            ("transformer", "ctranslate2")])
def test_the_mono_split_is_distilled_by_every_engine(mono_data, toy_model, transformer_model, teacher, engine,
                                                     tmp_path):
    model = {"lstm": toy_model, "transformer": transformer_model}[teacher]
    outs = {}
    for name in dict.fromkeys(("fairseq", engine)):
        prefix = tmp_path / name / "mono.kd"
        distill(DistillOptions(data=mono_data, path=model, out_prefix=str(prefix), subset="mono", cpu=True,
                               beam=3, batch_size=32, engine=name, engine_cache=str(tmp_path / "ct2")))
        outs[name] = [(prefix.parent / f"mono.kd.{ext}").read_text().splitlines() for ext in ("src", "tgt")]
    src, tgt = outs[engine]
    assert src == [s for s, _ in toydata.toy_pairs(120, seed=77)]  # every line, in corpus order
    assert len(tgt) == 120 and sum(t != "" for t in tgt) > 100
    assert outs[engine] == outs["fairseq"]


def test_a_selection_that_needs_references_is_refused_on_the_mono_split(mono_data, toy_model, tmp_path):
    with pytest.raises(SeqKDError, match="subset 'mono' has no target side: --select seq-inter"):
        distill(DistillOptions(data=mono_data, path=toy_model, out_prefix=str(tmp_path / "x"), subset="mono",
                               cpu=True, beam=3, nbest=3, select="seq-inter"))
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_joined_training_set_and_mono_split_train_with_one_target_per_epoch(mono_data, toy_model, tmp_path):
    """The whole path: distil train (2 targets per source) and mono, join, binarize, train a student."""
    train = tmp_path / "train.kd"
    distill(DistillOptions(data=mono_data, path=toy_model, out_prefix=str(train), cpu=True, beam=3, nbest=2,
                           keep=2, select="top-n", batch_size=64))
    mono = tmp_path / "mono.kd"
    distill(DistillOptions(data=mono_data, path=toy_model, out_prefix=str(mono), subset="mono", cpu=True, beam=3,
                           batch_size=64))
    joined = tmp_path / "joined"
    proc = toydata.run_cli(["seqkd-join", "--part", str(train), "--part", str(mono), "--out-prefix", str(joined),
                            "--source-lang", "src", "--target-lang", "tgt", "--binarize", str(tmp_path / "bin"),
                            "--data", mono_data])
    assert "joined 2 parts" in proc.stdout + proc.stderr
    ids = read_ids(str(tmp_path / "bin" / "train.ids"), 2 * 1500 + 120)
    assert ids.tolist() == [i // 2 for i in range(3000)] + list(range(1500, 1620))
    assert os.path.exists(tmp_path / "bin" / "valid.src-tgt.tgt.bin")
    # Word-KD's store over the joined corpus: one entry per pair, every target token
    import numpy as np

    from fairseq_seqkd.cli.topk import main as topk_main
    from fairseq_seqkd.topk_store import TopKStore

    header = topk_main([str(tmp_path / "bin"), "--path", toy_model, "--out", str(tmp_path / "top4"), "--k", "4",
                        "--batch-size", "64", "--cpu"])
    targets = [len(line.split()) + 1 for line in (tmp_path / "joined.tgt").read_text().splitlines()]  # + </s>
    assert header["sentences"] == 3120
    assert np.array_equal(np.diff(TopKStore.open(str(tmp_path / "top4")).offsets), targets)
    # one epoch of one target per sentence: 1,620 sentences in batches of 100 are 17 updates (3,120 pairs: 32)
    import torch

    for flag, updates in (("--one-target-per-epoch", 17), (None, 32)):
        save = tmp_path / f"save{updates}"
        toydata.train(str(tmp_path / "bin"), str(save), ["--batch-size", "100", "--max-tokens", "100000",
                                                         "--no-save-optimizer-state", *([flag] if flag else [])],
                      max_epoch=1)
        state = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)
        assert state["optimizer_history"][-1]["num_updates"] == updates


def test_cli_needs_data_with_binarize(tmp_path):
    part = write_part(tmp_path / "p", [("x", "y")])
    proc = toydata.run_cli(["seqkd-join", "--part", part, "--out-prefix", str(tmp_path / "o"), "--source-lang",
                            "src", "--target-lang", "tgt", "--binarize", str(tmp_path / "bin")], check=False)
    toydata.assert_one_line_error(proc, "--binarize DIR and --data DATA go together")


def test_the_documented_line_for_fairseq_preprocess_data_makes_the_same_split(toy_data, mono_data, tmp_path):
    """docs/distillation.md's one line that adds a mono split to DATA from fairseq-preprocess: the same files as
    seqkd-prepare --mono-src's binarization."""
    import re
    import subprocess

    page = open(os.path.join(toydata.REPO, "docs", "distillation.md")).read()
    (line,) = [m for m in re.findall(r"^fairseq-preprocess --only-source.*$", page, re.M)]
    data = tmp_path / "DATA"
    shutil.copytree(toy_data, data)
    (tmp_path / "mono.tok.src").write_text("".join(src + "\n" for src, _ in toydata.toy_pairs(120, seed=77)))
    command = line.replace("xx", "src").replace("yy", "tgt")
    env = dict(os.environ, PATH=toydata.VENV_BIN + os.pathsep + os.environ["PATH"])
    proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for ext in ("bin", "idx"):
        name = f"mono.src-tgt.src.{ext}"
        with open(os.path.join(mono_data, name), "rb") as f:
            assert (data / name).read_bytes() == f.read()


def test_decoding_the_mono_split_equals_decoding_the_same_sentences_as_a_training_split(mono_data, toy_model,
                                                                                      tmp_path):
    from fairseq_seqkd.binarize import binarize_like_data

    sources = tmp_path / "sources.src"
    sources.write_text("".join(src + "\n" for src, _ in toydata.toy_pairs(120, seed=77)))
    as_train = binarize_like_data(str(tmp_path / "as_train"), mono_data, str(sources), str(sources), "src", "tgt")
    outputs = []
    for data, subset in ((mono_data, "mono"), (as_train, "train")):
        prefix = tmp_path / subset / "kd"
        distill(DistillOptions(data=data, path=toy_model, out_prefix=str(prefix), subset=subset, cpu=True, beam=4,
                               nbest=4, write_kbest=True, batch_size=16))
        outputs.append([(prefix.parent / f"kd.{ext}").read_bytes() for ext in ("src", "tgt")])
        kbest = (prefix.parent / "kd.kbest").read_text()
        outputs[-1].append([line for line in kbest.splitlines() if "\tT\t" not in line])  # all but references
    assert outputs[0] == outputs[1]
    assert "\tT\t" not in (tmp_path / "mono" / "kd.kbest").read_text()  # no reference rows: none was invented
