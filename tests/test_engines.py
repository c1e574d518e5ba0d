"""seqkd-distill's decoding engines (fairseq_seqkd.engines) against the fairseq engine, the reference: the
same outputs in float32, the same contract (shards, resume, Seq-Inter, K-best files), refusals."""

import filecmp
import os
import shutil

import pytest
import torch

import toydata
from fairseq_seqkd.distill import DistillOptions, distill
from fairseq_seqkd.errors import SeqKDError, StoppedEarly
from fairseq_seqkd.kbest import read_kbest

ctranslate2 = pytest.importorskip("ctranslate2")  # installed by make (the 'fast' extra)

#: the Bible presets' length limits, and one that binds on most toy sentences (hypotheses cut at it)
BIBLE_LIMITS = dict(max_len_a=1.2, max_len_b=10)
BINDING_LIMIT = dict(max_len_a=0.0, max_len_b=3)


def run(data, model, prefix, **options):
    return distill(DistillOptions(data=data, path=model, out_prefix=str(prefix), cpu=True,
                                  **{"batch_size": 40, "beam": 5, "nbest": 5, "write_kbest": True, **options}))


def lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


@pytest.fixture(scope="module")
def ct2_cache(tmp_path_factory):
    """One folder for the converted toy Transformer (converted once for the module)."""
    return str(tmp_path_factory.mktemp("ct2_cache"))


@pytest.fixture(scope="module")
def outputs(toy_data, toy_model, transformer_model, ct2_cache, tmp_path_factory):
    """(teacher, engine, quantize, limits) -> the output prefix of one run on the toy training set."""
    out, made = tmp_path_factory.mktemp("engines"), {}

    def get(teacher, engine, quantize=None, limits="none"):
        key = (teacher, engine, quantize, limits)
        if key not in made:
            prefix = out / "-".join(str(k) for k in key) / "train.kd"
            run(toy_data, {"lstm": toy_model, "transformer": transformer_model}[teacher], prefix, engine=engine,
                engine_quantize=quantize, engine_cache=ct2_cache,
                **{"none": {}, "bible": BIBLE_LIMITS, "binding": BINDING_LIMIT}[limits])
            made[key] = prefix
        return made[key]

    return get


def same_share(a, b):
    x, y = lines(f"{a}.tgt"), lines(f"{b}.tgt")
    assert len(x) == len(y) == 1500
    return sum(p == q for p, q in zip(x, y)) / len(x)


@pytest.mark.parametrize("teacher,engine", [("lstm", "seqkd"), ("transformer", "ctranslate2")])
@pytest.mark.parametrize("limits", ["none", "bible", "binding"])
def test_float32_outputs_equal_the_fairseq_engine(outputs, teacher, engine, limits):
    """The issue's goal, >= 99.9% of the top-1 outputs; measured here: all 1500 (the 'binding' limit cuts most
    toy hypotheses: without ctranslate2's rescoring only 1229 of 1500 were equal)."""
    ours, ref = outputs(teacher, engine, limits=limits), outputs(teacher, "fairseq", limits=limits)
    assert same_share(ours, ref) >= 0.999
    a, b = read_kbest(f"{ours}.kbest"), read_kbest(f"{ref}.kbest")
    tops = [(a[i].hyps[0][0], b[i].hyps[0][0]) for i in range(1500) if a[i].hyps[0][1] == b[i].hyps[0][1]]
    assert max(abs(x - y) for x, y in tops) < (1e-4 if engine == "seqkd" else 0.01)  # score, log2
    if engine == "seqkd":  # our decoder replays fairseq's search: whole 5-best lists, scores to float error
        assert all([h for _, h in a[i].hyps] == [h for _, h in b[i].hyps] for i in range(1500))
    assert all(a[i].source == b[i].source and a[i].reference == b[i].reference for i in range(1500))


@pytest.mark.parametrize("teacher,engine,bound", [("lstm", "seqkd", 0.98), ("transformer", "ctranslate2", 0.9)])
def test_int8_outputs_stay_close(outputs, teacher, engine, bound):
    """int8 changes some outputs (measured on these toy teachers: seqkd 1494, ctranslate2 1443 of 1500)."""
    share = same_share(outputs(teacher, engine, "int8"), outputs(teacher, "fairseq"))
    assert share >= bound


@pytest.mark.parametrize("teacher,engine", [("lstm", "seqkd"), ("transformer", "ctranslate2")])
def test_shards_and_a_killed_run_resumed_equal_one_run_of_the_engine(outputs, toy_data, toy_model,
                                                                   transformer_model, ct2_cache, teacher, engine,
                                                                   tmp_path):
    model = {"lstm": toy_model, "transformer": transformer_model}[teacher]
    one = outputs(teacher, engine, limits="bible")
    sharded = tmp_path / "sharded" / "train.kd"
    for shard in (1, 0):
        run(toy_data, model, sharded, engine=engine, engine_cache=ct2_cache, num_shards=2, shard_id=shard,
            **BIBLE_LIMITS)
    distill(DistillOptions(out_prefix=str(sharded), merge=True, num_shards=2))
    resumed = tmp_path / "resumed" / "train.kd"
    with pytest.raises(StoppedEarly):
        run(toy_data, model, resumed, engine=engine, engine_cache=ct2_cache, stop_after_batches=7, **BIBLE_LIMITS)
    with pytest.raises(SeqKDError, match=r"started with other options \(engine"):
        run(toy_data, model, resumed, resume=True, **BIBLE_LIMITS)  # the fairseq engine cannot continue it
    run(toy_data, model, resumed, engine=engine, engine_cache=ct2_cache, resume=True, **BIBLE_LIMITS)
    for prefix in (sharded, resumed):
        for ext in ("src", "tgt", "kbest"):
            assert filecmp.cmp(f"{prefix}.{ext}", f"{one}.{ext}", shallow=False), (prefix, ext)


def test_a_merge_of_shards_from_two_engines_is_refused(toy_data, toy_model, tmp_path):
    prefix = tmp_path / "train.kd"
    run(toy_data, toy_model, prefix, num_shards=2, shard_id=0)
    run(toy_data, toy_model, prefix, num_shards=2, shard_id=1, engine="seqkd")
    with pytest.raises(SeqKDError, match=r"different options \(engine, engine_quantize\)"):
        distill(DistillOptions(out_prefix=str(prefix), merge=True, num_shards=2))


@pytest.mark.parametrize("teacher,engine", [("lstm", "seqkd"), ("transformer", "ctranslate2")])
def test_seq_inter_equals_seqkd_select_on_the_engines_kbest(toy_data, toy_model, transformer_model, ct2_cache,
                                                             teacher, engine, tmp_path):
    model = {"lstm": toy_model, "transformer": transformer_model}[teacher]
    prefix = tmp_path / "train.inter"
    run(toy_data, model, prefix, engine=engine, engine_cache=ct2_cache, select="seq-inter", remove_bpe="none")
    toydata.run_cli(["seqkd-select", f"{prefix}.kbest", "--out-src", str(tmp_path / "sel.src"),
                     "--out-tgt", str(tmp_path / "sel.tgt"), "--remove-bpe", "none"])
    assert lines(tmp_path / "sel.tgt") == lines(f"{prefix}.tgt")
    table = read_kbest(f"{prefix}.kbest")
    assert sum(table[i].hyps[0][1] != t for i, t in enumerate(lines(f"{prefix}.tgt"))) > 0  # not just top-1


def test_teachers_an_engine_cannot_run_are_refused_naming_the_one_that_can(toy_data, toy_model,
                                                                            transformer_model, tmp_path):
    base = ["seqkd-distill", toy_data, "--out-prefix", str(tmp_path / "x"), "--cpu"]
    cases = [
        (["--path", toy_model, "--engine", "ctranslate2"], "a LSTMModel teacher (lstm model): --engine ctranslate2 "
                                                           "cannot decode it; use --engine seqkd"),
        (["--path", transformer_model, "--engine", "seqkd"], "--engine seqkd cannot decode it; use --engine "
                                                              "ctranslate2"),
        (["--path", toy_model, "--engine", "seqkd", "--fp16"], "--fp16 is the fairseq engine's"),
        (["--path", toy_model, "--engine-quantize", "int8"], "--engine-quantize int8: the fairseq engine takes none"),
        (["--path", toy_model, "--engine", "seqkd", "--engine-quantize", "float16"],
         "--engine-quantize float16: --engine seqkd takes float32, int8"),
        (["--path", transformer_model, "--engine", "ctranslate2", "--engine-quantize", "float16"],
         "--engine-quantize float16 needs a GPU"),
    ]
    for extra, message in cases:
        toydata.assert_one_line_error(toydata.run_cli(base + extra, check=False), message)
    assert os.listdir(tmp_path) == []  # nothing written, not even a journal


def test_without_ctranslate2_the_engine_is_refused_saying_what_to_install(toy_data, transformer_model, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ctranslate2", None)  # as if not installed
    with pytest.raises(SeqKDError, match=r"needs the ctranslate2 package: pip install 'fairseq-seqkd\[fast\]'"):
        run(toy_data, transformer_model, tmp_path / "x", engine="ctranslate2", engine_cache=str(tmp_path))


def test_a_changed_checkpoint_gets_a_new_converted_copy(toy_data, transformer_model, tmp_path):
    """Converted copies are keyed by the checkpoint's content; a copy made before the change is not used."""
    from fairseq_seqkd.checkpoints import load_checkpoint_state, save_checkpoint
    from fairseq_seqkd.engines.ctranslate2_engine import converted_path
    from fairseq_seqkd.textio import file_sha256

    teacher = str(tmp_path / "teacher.pt")
    shutil.copy(transformer_model, teacher)
    run(toy_data, teacher, tmp_path / "before" / "train.kd", engine="ctranslate2")  # cache: beside the teacher
    first = converted_path(teacher, file_sha256(teacher))
    assert os.path.isfile(os.path.join(first, "model.bin"))
    state = load_checkpoint_state(teacher)
    name = "decoder.output_projection.weight"
    weight = state["model"][name].clone()
    weight[[4, 5]] = weight[[5, 4]]  # the two most frequent target words trade places: a sane, different model
    state["model"][name] = weight
    save_checkpoint(state, teacher)
    run(toy_data, teacher, tmp_path / "after" / "train.kd", engine="ctranslate2")
    second = converted_path(teacher, file_sha256(teacher))
    assert second != first and os.path.isfile(os.path.join(second, "model.bin"))
    assert sorted(n for n in os.listdir(tmp_path) if ".ct2-" in n) == sorted(map(os.path.basename, [first, second]))
    # the new copy decodes the changed weights: its outputs are the fairseq engine's on the changed teacher
    run(toy_data, teacher, tmp_path / "fairseq" / "train.kd")
    after, ref = lines(tmp_path / "after" / "train.kd.tgt"), lines(tmp_path / "fairseq" / "train.kd.tgt")
    assert after == ref and after != lines(tmp_path / "before" / "train.kd.tgt")


def test_seqkd_eval_with_an_engine_gives_the_fairseq_engines_bleu(toy_data, toy_model, transformer_model,
                                                                   ct2_cache):
    from fairseq_seqkd.evaluation import EvalOptions, SpeedOptions, evaluate

    speed = SpeedOptions(sentences=5, repeats=1, warmup=0, min_seconds=0)
    for model, engine in ((toy_model, "seqkd"), (transformer_model, "ctranslate2")):
        results = [evaluate(EvalOptions(data=toy_data, path=model, cpu=True, remove_bpe="none", engine=e,
                                        engine_cache=ct2_cache, speed=speed)) for e in ("fairseq", engine)]
        for key in ("bleu_greedy", "bleu_beam", "p_yhat", "ppl"):
            assert results[0][key] == results[1][key], (engine, key)
        assert [r["engine"] for r in results] == ["fairseq", engine]
        assert results[1]["engine_quantize"] == "float32" and results[0]["engine_quantize"] is None


@pytest.mark.parametrize("limits", ["none", "binding"])
def test_ctranslate2_rescores_exactly_the_sentences_whose_beam_reached_the_length_limit(outputs, toy_data,
                                                                                       transformer_model, ct2_cache,
                                                                                       limits, tmp_path, caplog):
    """fairseq forces </s> at the limit (3 words with the binding limit): with --nbest = --beam, a sentence whose
    fairseq 5-best list holds a 3-word hypothesis is one whose beam reached the limit, i.e. one ctranslate2 had to
    rescore; the end-of-run log line counts them (none without a binding limit)."""
    table = read_kbest(f"{outputs('transformer', 'fairseq', limits=limits)}.kbest")
    expected = sum(any(len(h.split()) == 3 for _, h in table[i].hyps) for i in range(1500)) if limits == "binding" else 0
    with caplog.at_level("INFO", logger="seqkd-distill"):
        run(toy_data, transformer_model, tmp_path / "train.kd", engine="ctranslate2", engine_cache=ct2_cache,
            **{"none": {}, "binding": BINDING_LIMIT}[limits])
    line = next(r.getMessage() for r in caplog.records if "reached the length limit" in r.getMessage())
    assert f"; {expected} sentences reached the length limit, their hypotheses rescored in " in line
    assert limits == "none" or expected > 100  # the binding limit binds
