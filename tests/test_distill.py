"""Seq-KD (fairseq_seqkd.distill, seqkd-distill) and K-best writing: order, equality with fairseq-generate,
shards, resume, Seq-Inter, errors."""

import filecmp
import json
import os

import pytest
import sacrebleu

import toydata
from fairseq_seqkd.distill import DistillOptions, distill
from fairseq_seqkd.errors import SeqKDError, StoppedEarly
from fairseq_seqkd.kbest import read_kbest


def run(data, model, prefix, **options):
    return distill(DistillOptions(data=data, path=model, out_prefix=str(prefix), cpu=True,
                                  **{"batch_size": 40, **options}))


def merge(prefix, num_shards):
    return distill(DistillOptions(out_prefix=str(prefix), merge=True, num_shards=num_shards))


def lines(path):
    with open(path) as f:
        return f.read().split("\n")[:-1]


@pytest.fixture(scope="module")
def plain(toy_data, toy_model, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("plain") / "train.kd"
    run(toy_data, toy_model, prefix, beam=5)
    return prefix


def test_corpus_order_kept_and_nothing_left_behind(plain, toy_text):
    assert lines(f"{plain}.src") == lines(os.path.join(toy_text, "train.src"))  # batches were length-sorted
    assert len(lines(f"{plain}.tgt")) == 1500
    assert sorted(os.listdir(plain.parent)) == ["train.kd.src", "train.kd.tgt"]


def test_top1_equals_fairseq_generate(plain, toy_data, toy_model):
    out = toydata.generate(toy_data, toy_model, ["--beam", "5", "--batch-size", "64"], subset="train")
    best = toydata.hypotheses(out)
    assert [best[i] for i in range(1500)] == lines(f"{plain}.tgt")


def test_shards_merged_equal_unsharded(plain, toy_data, toy_model, tmp_path):
    prefix = tmp_path / "train.kd"
    for shard in (2, 0, 1):
        assert run(toy_data, toy_model, prefix, beam=5, num_shards=3, shard_id=shard) is None
    assert sorted(os.listdir(tmp_path)) == [f"train.kd.shard-{i}-of-3.jsonl" for i in range(3)]
    merge(prefix, 3)
    for ext in ("src", "tgt"):
        assert filecmp.cmp(f"{prefix}.{ext}", f"{plain}.{ext}", shallow=False)


def test_merge_refuses_missing_and_unfinished_shards(toy_data, toy_model, tmp_path):
    prefix = tmp_path / "train.kd"
    run(toy_data, toy_model, prefix, num_shards=2, shard_id=0)
    with pytest.raises(SeqKDError, match="shard-1-of-2.jsonl: missing"):
        merge(prefix, 2)
    with pytest.raises(StoppedEarly, match="2 of the 19 batches of shard 1 of 2 are done.*rerun with --resume"):
        run(toy_data, toy_model, prefix, num_shards=2, shard_id=1, stop_after_batches=2)  # stopped half-way
    with pytest.raises(SeqKDError, match=r"shard-1-of-2.jsonl: shard 1 is not finished; run it \(again\) with --resume"):
        merge(prefix, 2)
    assert sorted(os.listdir(tmp_path)) == ["train.kd.shard-0-of-2.jsonl", "train.kd.shard-1-of-2.jsonl"]
    run(toy_data, toy_model, prefix, num_shards=2, shard_id=1, resume=True)
    assert merge(prefix, 2)["sentences"] == 1500
    assert sorted(os.listdir(tmp_path)) == ["train.kd.src", "train.kd.tgt"]


def test_resume_after_a_kill_equals_uninterrupted(plain, toy_data, toy_model, tmp_path):
    prefix = tmp_path / "train.kd"
    with pytest.raises(StoppedEarly, match="11 of the 38 batches"):
        run(toy_data, toy_model, prefix, beam=5, stop_after_batches=11)
    state = tmp_path / "train.kd.shard-0-of-1.jsonl"
    commits = [json.loads(line)["batch"] for line in lines(state) if line.startswith('{"batch"')]
    assert not os.path.exists(f"{prefix}.tgt") and len(commits) == 11
    with open(state, "a") as f:  # killed in the middle of writing the next batch
        f.write('{"batch": 3, "sentences": [{"id": 7, "src": "s1')
    with pytest.raises(SeqKDError, match="exists .* add --resume"):
        run(toy_data, toy_model, prefix, beam=5)
    with pytest.raises(SeqKDError, match=r"started with other options \(beam\)"):
        run(toy_data, toy_model, prefix, beam=4, resume=True)
    run(toy_data, toy_model, prefix, beam=5, resume=True)
    for ext in ("src", "tgt"):
        assert filecmp.cmp(f"{prefix}.{ext}", f"{plain}.{ext}", shallow=False)
    assert not state.exists()


def test_seq_inter_keeps_the_best_bleu_of_the_kbest_list(plain, toy_data, toy_model, toy_text, tmp_path):
    prefix = tmp_path / "train.inter"
    config = run(toy_data, toy_model, prefix, beam=6, nbest=6, select="seq-inter", remove_bpe="none",
                 write_kbest=True, binarize=str(tmp_path / "bin"))
    table = read_kbest(f"{prefix}.kbest")
    refs = lines(os.path.join(toy_text, "train.tgt"))
    chosen = lines(f"{prefix}.tgt")
    assert len(table) == len(chosen) == 1500 and config["nbest"] == 6
    changed = 0
    for i in range(1500):
        entry = table[i]
        assert entry.reference == refs[i] and len(entry.hyps) == 6
        scores = [sacrebleu.sentence_bleu(h, [refs[i]]).score for _, h in entry.hyps]
        assert chosen[i] == entry.hyps[scores.index(max(scores))][1]
        changed += chosen[i] != entry.hyps[0][1]
    assert [table[i].hyps[0][1] for i in range(1500)] == lines(f"{plain}.tgt")  # rank 1 is plain Seq-KD
    assert changed > 0  # the toy teacher is not perfect on every training sentence
    # --binarize: the distilled corpus with the original dictionaries and valid/test sets
    from fairseq.data import Dictionary, data_utils

    d = Dictionary.load(os.path.join(tmp_path, "bin", "dict.tgt.txt"))
    ds = data_utils.load_indexed_dataset(os.path.join(tmp_path, "bin", "train.src-tgt.tgt"), d)
    assert [d.string(ds[i]) for i in range(len(ds))] == chosen
    assert sorted(os.listdir(tmp_path / "bin")) == sorted(os.listdir(toy_data))


def test_fairseq_generate_kbest_out(toy_data, toy_model, tmp_path):
    path = str(tmp_path / "test.kbest")
    out = toydata.generate(toy_data, toy_model, ["--beam", "4", "--nbest", "4", "--kbest-out", path])
    table = read_kbest(path)
    assert sorted(table) == list(range(100))
    h_lines = {}
    for line in out.splitlines():
        if line.startswith("H-"):
            tag, score, text = line.split("\t")
            h_lines.setdefault(int(tag[2:]), []).append((float(score), text))
    for i in range(100):
        assert [t for _, t in table[i].hyps] == [t for _, t in h_lines[i]]
        assert [s for s, _ in table[i].hyps] == pytest.approx([s for s, _ in h_lines[i]], abs=1e-6)


def test_bad_inputs(toy_data, toy_model, tmp_path):
    cases = [
        (dict(data=str(tmp_path / "nope"), path=toy_model), ".*nope: no such data folder"),
        (dict(data=toy_data, path=str(tmp_path / "t.pt")), "teacher .*t.pt: no such file"),
        (dict(data=toy_data, path=toy_model, nbest=6), r"--nbest 6 is larger than --beam 5"),
        (dict(data=toy_data, path=toy_model, select="seq-inter"), "--select seq-inter needs --nbest K"),
        (dict(data=toy_data, path=toy_model, shard_id=2, num_shards=2), r"--shard-id 2"),
        (dict(data=toy_data, path=toy_model, subset="dev"), "cannot load subset 'dev'"),
        (dict(data=toy_data, path=None), "DATA and --path TEACHER.pt are required"),
        (dict(data=toy_data, path=toy_model, beam=0), "--beam 0: must be at least 1"),
    ]
    for options, message in cases:
        with pytest.raises(SeqKDError, match="^(.* )?" + message):
            distill(DistillOptions(out_prefix=str(tmp_path / "o"), cpu=True, **options))
    assert os.listdir(tmp_path) == []


@pytest.mark.slow  # a fresh process or a whole corpus: left out by make test-fast
def test_teacher_with_other_dictionary_is_refused(other_vocab_data, toy_model, tmp_path):
    proc = toydata.run_cli(["seqkd-distill", other_vocab_data, "--path", toy_model, "--out-prefix",
                            str(tmp_path / "o"), "--cpu"], check=False)
    toydata.assert_one_line_error(proc, "target dictionary")
    assert os.listdir(tmp_path) == []



@pytest.mark.slow  # a fresh process or a whole corpus: left out by make test-fast
def test_two_processes_at_once_merge_to_the_unsharded_output(plain, toy_data, toy_model, tmp_path):
    """Issue 7's multi-process check: two shards decoded concurrently by two processes, then merged."""
    import subprocess

    prefix = str(tmp_path / "train.kd")
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=toydata.VENV_BIN + os.pathsep + os.environ["PATH"])
    procs = [subprocess.Popen(["seqkd-distill", toy_data, "--path", toy_model, "--out-prefix", prefix, "--cpu",
                               "--batch-size", "40", "--beam", "5", "--num-shards", "2", "--shard-id", str(i)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in (0, 1)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all("when all 2 shards are done" in out for out in outputs)
    merge(prefix, 2)
    for ext in ("src", "tgt"):
        assert filecmp.cmp(f"{prefix}.{ext}", f"{plain}.{ext}", shallow=False)


def test_long_references_are_kept_and_too_long_sources_named(toy_data, toy_model, tmp_path):
    """Targets are never fed to the teacher: a 1,100-token reference is fine. A source longer than the
    teacher's 1,024 positions stops the run with a one-line error naming the sentence (no line is dropped)."""
    for name, long_side in (("longref", 1), ("longsrc", 0)):
        text = tmp_path / f"{name}-text"
        text.mkdir()
        pairs = toydata.toy_pairs(5, seed=3)
        pairs[2] = tuple(" ".join([w] * 1100) if side == long_side else pairs[2][side]
                         for side, w in enumerate(("s1", "t1")))
        for side, lang in ((0, "src"), (1, "tgt")):
            (text / f"train.{lang}").write_text("".join(p[side] + "\n" for p in pairs))
        data = toydata.preprocess(str(text), str(tmp_path / f"{name}-bin"), splits=("train",), extra=[
            "--srcdict", os.path.join(toy_data, "dict.src.txt"), "--tgtdict", os.path.join(toy_data, "dict.tgt.txt")])
        prefix = tmp_path / name / "train.kd"
        if name == "longref":
            run(data, toy_model, prefix, beam=2)
            assert lines(f"{prefix}.src") == [p[0] for p in pairs]
        else:
            with pytest.raises(SeqKDError, match="sentence 2 of train has 1101 source tokens \\(with </s>\\), more than the "
                                                 "teacher's 1024 positions"):
                run(data, toy_model, prefix, beam=2)
            assert not os.path.exists(prefix.parent)


def test_seq_inter_without_references_is_a_one_line_error(toy_data, tmp_path):
    data = tmp_path / "no-targets"
    data.mkdir()
    for name in os.listdir(toy_data):
        if not name.startswith("train.src-tgt.tgt"):  # the training split without its target side
            (data / name).write_bytes(open(os.path.join(toy_data, name), "rb").read())
    prefix = tmp_path / "out" / "train.inter"
    with pytest.raises(SeqKDError, match="subset 'train' has no target side: --select seq-inter needs the references"):
        run(str(data), "unused.pt", prefix, beam=2, nbest=2, select="seq-inter")
    assert not os.path.exists(prefix.parent)


def test_references_with_unknown_words_are_escaped_as_fairseq_generate_does(toy_data, toy_model, tmp_path):
    """fairseq-generate writes an unknown reference word as <<unk>> (so that a hypothesis' <unk> never
    matches it); the K-best references and the Seq-Inter choice use the same reference."""
    text = tmp_path / "text"
    text.mkdir()
    pairs = toydata.toy_pairs(60, seed=9)
    pairs = [(s, t.replace("t1", "t1 zzz", 1) if i % 3 == 0 else t) for i, (s, t) in enumerate(pairs)]
    for side, lang in ((0, "src"), (1, "tgt")):
        (text / f"train.{lang}").write_text("".join(p[side] + "\n" for p in pairs))
    data = toydata.preprocess(str(text), str(tmp_path / "bin"), splits=("train",), extra=[
        "--srcdict", os.path.join(toy_data, "dict.src.txt"), "--tgtdict", os.path.join(toy_data, "dict.tgt.txt")])
    prefix = tmp_path / "out" / "train.inter"
    run(data, toy_model, prefix, beam=4, nbest=4, select="seq-inter", remove_bpe="none", write_kbest=True)
    table = read_kbest(f"{prefix}.kbest")
    out = toydata.generate(data, toy_model, ["--beam", "4", "--nbest", "4"], subset="train")
    refs = dict((int(tag[2:]), text) for tag, text in (line.split("\t", 1) for line in out.splitlines()
                                                          if line.startswith("T-")))
    assert [table[i].reference for i in range(60)] == [refs[i] for i in range(60)]
    assert sum("<<unk>>" in refs[i] for i in range(60)) >= 10
    chosen = lines(f"{prefix}.tgt")
    for i in range(60):
        scores = [sacrebleu.sentence_bleu(h, [refs[i]]).score for _, h in table[i].hyps]
        assert chosen[i] == table[i].hyps[scores.index(max(scores))][1]


def test_seq_inter_with_sentencepiece_subwords(spm_corpus, spm_model, tmp_path):
    """Sentence BLEU on the words (SentencePiece pieces joined, as fairseq's --post-process sentencepiece);
    the written corpus keeps the pieces."""
    from fairseq.data.data_utils import post_process

    prefix = tmp_path / "valid.inter"
    run(str(spm_corpus / "bin"), spm_model, prefix, subset="valid", beam=4, nbest=4, select="seq-inter",
        remove_bpe="sentencepiece", write_kbest=True)
    table, chosen = read_kbest(f"{prefix}.kbest"), lines(f"{prefix}.tgt")
    assert lines(f"{prefix}.src") == lines(spm_corpus / "tok" / "valid.src")
    assert [table[i].reference for i in range(100)] == lines(spm_corpus / "tok" / "valid.tgt")
    assert sum("\u2581" in h and len(h.split()) > len(post_process(h, "sentencepiece").split())
               for i in range(100) for _, h in table[i].hyps) > 100  # pieces: words split into several
    changed = 0
    for i in range(100):
        ref = post_process(table[i].reference, "sentencepiece")
        scores = [sacrebleu.sentence_bleu(post_process(h, "sentencepiece"), [ref]).score for _, h in table[i].hyps]
        assert chosen[i] == table[i].hyps[scores.index(max(scores))][1]
        changed += chosen[i] != table[i].hyps[0][1]
    assert changed > 0


def test_binarize_copies_the_data_folders_files_and_skips_its_subfolders(toy_data, toy_model, tmp_path):
    """A DATA folder holding folders (a top-k store DATA/topk8, a store's leftover shard folder, a link to a
    folder) besides its files (issue 33): --binarize copies DATA's plain files other than its training split,
    dictionaries and log (a link to a file as the file it names), and no folder, hidden file or broken link."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(toy_data, data)
    for folder in ("topk8", "train.top8.shard-0-of-2"):
        (data / folder).mkdir()
        (data / folder / "values.fp16").write_bytes(b"\0" * 8)
    (data / "topk8" / "sub").mkdir()
    os.symlink(data / "topk8", data / "valid.link")  # a link to a folder
    os.symlink(data / "nowhere", data / "test.broken")  # a broken link
    (data / ".valid.swp").write_text("an editor's file\n")
    (data / "notes.txt").write_text("the user's notes\n")
    os.symlink(os.path.join(toy_data, "test.src-tgt.src.idx"), data / "test.src-tgt.src.idx.link")
    prefix = tmp_path / "out" / "valid.kd"
    assert run(str(data), toy_model, prefix, subset="valid", beam=2, binarize=str(tmp_path / "bin"))["sentences"] == 100
    copied = sorted(n for n in os.listdir(toy_data) if not n.startswith(("train.", "dict.", "preprocess.log")))
    assert copied == sorted(f"{split}.src-tgt.{lang}.{ext}" for split in ("valid", "test") for lang in ("src", "tgt")
                            for ext in ("bin", "idx"))
    names = sorted(os.listdir(tmp_path / "bin"))
    assert names == sorted([*copied, "notes.txt", "test.src-tgt.src.idx.link", "dict.src.txt", "dict.tgt.txt",
                            "preprocess.log", *(f"train.src-tgt.{lang}.{ext}" for lang in ("src", "tgt")
                                                for ext in ("bin", "idx"))])
    assert all(os.path.isfile(tmp_path / "bin" / n) and not os.path.islink(tmp_path / "bin" / n) for n in names)
    for name in copied:
        assert filecmp.cmp(tmp_path / "bin" / name, os.path.join(toy_data, name), shallow=False)
    assert filecmp.cmp(tmp_path / "bin" / "test.src-tgt.src.idx.link", os.path.join(toy_data, "test.src-tgt.src.idx"),
                       shallow=False)
    assert sorted(os.listdir(tmp_path / "out")) == ["valid.kd.src", "valid.kd.tgt"]  # the journal was removed


def test_sentences_longer_than_max_tokens_get_a_batch_of_their_own(toy_data, toy_model, tmp_path):
    """--max-tokens limits fairseq's padded tokens of a batch, max(source, reference) per sentence with </s>
    (fairseq-generate asserts on a sentence above it). seqkd-distill keeps every sentence: one above the limit
    (a long source, or only a long reference) is decoded in a batch of its own, said in one warning, and its
    output is fairseq-generate's; every other batch keeps within the limit; a sentence at the limit fits."""
    from fairseq_seqkd import generation

    data = toydata.over_max_tokens_data(str(tmp_path), toy_data, "train")
    with pytest.raises(AssertionError, match="Sentences lengths should not exceed max_tokens=10"):
        toydata.generate(data, toy_model, ["--beam", "2", "--max-tokens", "10"], subset="train")

    prefix = tmp_path / "out" / "train.kd"
    proc = toydata.run_cli(["seqkd-distill", data, "--path", toy_model, "--out-prefix", str(prefix), "--beam", "2",
                            "--max-tokens", "10", "--cpu"])
    assert (f"{data}: 2 sentence(s) of train have more tokens than --max-tokens 10: each gets a batch of its "
            f"own (sentence 4: 13 source, 4 target tokens; sentence 17: 5 source, 12 target tokens; "
            f"with </s>)") in proc.stdout
    assert lines(f"{prefix}.src") == lines(tmp_path / "text" / "train.src")
    best = toydata.hypotheses(toydata.generate(data, toy_model, ["--beam", "2", "--batch-size", "64"], subset="train"))
    assert lines(f"{prefix}.tgt") == [best[i] for i in range(30)]
    assert sorted(os.listdir(prefix.parent)) == ["train.kd.src", "train.kd.tgt"]

    task = generation.load_split(data, "train")
    model, _ = generation.load_for_generation(toy_model, task, cpu=True)
    batches = generation.fixed_batches(task, model, "train", max_tokens=10)
    ds = task.dataset("train")
    assert sorted(int(i) for b in batches for i in b) == list(range(30))  # every sentence once
    assert [b.tolist() for b in batches if 4 in b or 17 in b] == [[17], [4]]  # last, in fairseq's length order
    assert [b.tolist() for b in batches[-2:]] == [[17], [4]]
    assert [9] in [b.tolist() for b in batches[:-2]]  # at the limit: fairseq's batching, alone as 2 x 10 > 10
    for b in batches[:-2]:
        assert len(b) * max(max(ds.src_sizes[i], ds.tgt_sizes[i]) for i in b) <= 10
    # the others are fairseq-train's batches for --max-tokens 10 (which drops the sentences above it)
    from fairseq import utils
    train = task.get_batch_iterator(ds, max_tokens=10, max_positions=utils.resolve_max_positions(
        task.max_positions(), model.max_positions(), 10), ignore_invalid_inputs=True, required_batch_size_multiple=1,
        seed=1, disable_iterator_cache=True).frozen_batches
    assert [b.tolist() for b in batches[:-2]] == [b.tolist() for b in train]
    with pytest.raises(SeqKDError, match="^--max-tokens 0: must be at least 1$"):  # not fairseq's "no limit"
        generation.fixed_batches(task, model, "train", max_tokens=0)
