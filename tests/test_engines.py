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


#: the share of the toy training outputs that int8 leaves as float32's, at least: ``seqkd`` (fbgemm with 7-bit
#: inputs, no saturation) on every CPU; ``ctranslate2`` by whether the CPU's int8 products saturate (measured:
#: 1,442 of 1,500 with AVX-512 VNNI; 885 of 1,500 with oneDNN held to AVX2, as on an AVX2-only AMD EPYC)
INT8_BOUNDS = {"seqkd": {True: 0.98, False: 0.98}, "ctranslate2": {True: 0.9, False: 0.5}}


def ct2_isa():
    from fairseq_seqkd.int8_cpu import this_cpu_ctranslate2_int8_isa

    return this_cpu_ctranslate2_int8_isa()


@pytest.mark.parametrize("teacher,engine", [("lstm", "seqkd"), ("transformer", "ctranslate2")])
def test_int8_outputs_stay_close(outputs, teacher, engine):
    """int8 changes some outputs, how many depends on the CPU for ctranslate2 (fairseq_seqkd.int8_cpu)."""
    isa = ct2_isa()
    vnni = isa is None or isa.vnni
    share = same_share(outputs(teacher, engine, "int8"), outputs(teacher, "fairseq"))
    bound = INT8_BOUNDS[engine][vnni]
    assert share >= bound, f"{engine} int8 on {isa.name if isa else 'an unknown CPU'}: {share:.3f} < {bound}"


def held_to_avx2(args, tmp_path, env):
    """Run ``seqkd-distill`` ARGS in a new process whose int8 libraries are held to AVX2 (no VNNI) by ``env``."""
    proc = toydata.run_cli(["seqkd-distill", *args, "--cpu", "--batch-size", "40", "--beam", "5"],
                           env={**env, "OMP_NUM_THREADS": "1"})
    return proc


@pytest.mark.skipif(ct2_isa() is None, reason="needs an x86-64 Linux CPU")
def test_ctranslate2_int8_says_when_its_products_saturate_and_the_bound_for_it_holds(toy_data, transformer_model,
                                                                                    outputs, ct2_cache, tmp_path):
    """Held to AVX2 (oneDNN's ONEDNN_MAX_CPU_ISA, MKL's MKL_ENABLE_INSTRUCTIONS): the engine warns, naming the
    instruction set, and its outputs still meet the bound for CPUs without VNNI."""
    prefix = tmp_path / "train.kd"
    proc = held_to_avx2([toy_data, "--path", transformer_model, "--out-prefix", str(prefix), "--engine",
                         "ctranslate2", "--engine-quantize", "int8", "--engine-cache", ct2_cache], tmp_path,
                        {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    log = proc.stdout + proc.stderr  # fairseq's logging configuration writes to stdout
    warning = next((line for line in log.splitlines() if "--engine-quantize int8: int8 products" in line), log[-3000:])
    assert "AVX2 without VNNI (oneDNN)" in warning and "saturate" in warning
    assert "--engine-quantize float32 gives the exact outputs" in warning
    assert "; int8 on AVX2 without VNNI" in log  # the end-of-run line says it too
    assert same_share(prefix, outputs("transformer", "fairseq")) >= INT8_BOUNDS["ctranslate2"][False]


def test_seqkd_int8_outputs_do_not_depend_on_the_cpus_instructions(toy_data, toy_model, outputs, tmp_path):
    """fbgemm with 7-bit inputs never saturates: held to AVX2 (FBGEMM_ENABLE_INSTRUCTIONS) it gives the very
    outputs it gives with whatever this CPU has (AVX-512 VNNI on the developers' machines)."""
    prefix = tmp_path / "train.kd"
    held_to_avx2([toy_data, "--path", toy_model, "--out-prefix", str(prefix), "--engine", "seqkd",
                  "--engine-quantize", "int8", "--write-kbest", "--nbest", "5"], tmp_path,
                 {"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"})
    native = outputs("lstm", "seqkd", "int8")
    assert lines(f"{prefix}.tgt") == lines(f"{native}.tgt")
    a, b = read_kbest(f"{prefix}.kbest"), read_kbest(f"{native}.kbest")
    assert all([h for _, h in a[i].hyps] == [h for _, h in b[i].hyps] for i in range(1500))


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
    procs = toydata.run_clis([dict(args=base + extra, check=False) for extra, _ in cases])
    for (_, message), proc in zip(cases, procs):
        toydata.assert_one_line_error(proc, message)
    assert os.listdir(tmp_path) == []  # nothing written, not even a journal


def test_without_ctranslate2_the_engine_is_refused_saying_what_to_install(toy_data, transformer_model, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ctranslate2", None)  # as if not installed
    with pytest.raises(SeqKDError, match=r"needs the ctranslate2 package: pip install ctranslate2 "
                                         r"\(or, from a checkout: pip install -e '\.\[fast\]'\)"):
        run(toy_data, transformer_model, tmp_path / "x", engine="ctranslate2", engine_cache=str(tmp_path))


def converted_copies(folder):
    return sorted(n for n in os.listdir(folder) if ".ct2-" in n)


def test_a_changed_checkpoint_gets_a_new_converted_copy_and_the_old_one_goes(toy_data, transformer_model, tmp_path):
    """Converted copies are keyed by the checkpoint's content: a copy made before the change is not used, and
    once the new one has loaded it is removed (one copy per checkpoint, not one per content forever)."""
    from fairseq_seqkd.checkpoints import load_checkpoint_state, save_checkpoint

    teacher = str(tmp_path / "teacher.pt")
    shutil.copy(transformer_model, teacher)
    run(toy_data, teacher, tmp_path / "before" / "train.kd", engine="ctranslate2")  # cache: beside the teacher
    [first] = converted_copies(tmp_path)
    assert os.path.isfile(tmp_path / first / "model.bin")

    def swap(path, rows):  # two target words trade places: a sane, different model
        state = load_checkpoint_state(path)
        name = "decoder.output_projection.weight"
        weight = state["model"][name].clone()
        weight[rows] = weight[rows[::-1]]
        state["model"][name] = weight
        save_checkpoint(state, path)

    other = tmp_path / "other"  # another checkpoint of the same name in the same cache keeps its copy
    other.mkdir()
    shutil.copy(transformer_model, other / "teacher.pt")
    swap(str(other / "teacher.pt"), [6, 7])
    run(toy_data, str(other / "teacher.pt"), tmp_path / "other-out" / "train.kd", engine="ctranslate2",
        engine_cache=str(tmp_path))
    [first, of_other] = sorted(converted_copies(tmp_path), key=lambda n: n != first)
    swap(teacher, [4, 5])  # the two most frequent target words
    run(toy_data, teacher, tmp_path / "after" / "train.kd", engine="ctranslate2")
    copies = converted_copies(tmp_path)
    assert first not in copies and of_other in copies and len(copies) == 2
    # the new copy decodes the changed weights: its outputs are the fairseq engine's on the changed teacher
    run(toy_data, teacher, tmp_path / "fairseq" / "train.kd")
    after, ref = lines(tmp_path / "after" / "train.kd.tgt"), lines(tmp_path / "fairseq" / "train.kd.tgt")
    assert after == ref and after != lines(tmp_path / "before" / "train.kd.tgt")


def test_the_converted_copys_key_covers_ctranslate2s_version_and_the_dictionaries(toy_data, tmp_path):
    from fairseq_seqkd.engines.ctranslate2_engine import conversion_key

    dicts = [os.path.join(toy_data, f"dict.{lang}.txt") for lang in ("src", "tgt")]
    key = conversion_key("ab" * 32, "4.8.5", dicts)
    assert len(key) == 16 and key == conversion_key("ab" * 32, "4.8.5", dicts)
    assert conversion_key("ab" * 32, "4.8.6", dicts) != key
    assert conversion_key("cd" * 32, "4.8.5", dicts) != key
    changed = tmp_path / "dict.tgt.txt"
    changed.write_text(open(dicts[1], encoding="utf-8").read() + "extra 1\n", encoding="utf-8")
    assert conversion_key("ab" * 32, "4.8.5", [dicts[0], str(changed)]) != key
    assert conversion_key("ab" * 32, "4.8.5", dicts[::-1]) != key  # source and target dictionaries have roles


def test_a_damaged_converted_copy_is_converted_again(outputs, toy_data, transformer_model, tmp_path):
    teacher = str(tmp_path / "teacher.pt")
    shutil.copy(transformer_model, teacher)
    run(toy_data, teacher, tmp_path / "first" / "train.kd", engine="ctranslate2")
    [copy] = converted_copies(tmp_path)
    with open(tmp_path / copy / "model.bin", "r+b") as f:  # cut short, as a full disk or a bad copy would
        f.truncate(100)
    run(toy_data, teacher, tmp_path / "second" / "train.kd", engine="ctranslate2")
    assert converted_copies(tmp_path) == [copy] and os.path.getsize(tmp_path / copy / "model.bin") > 100
    assert lines(tmp_path / "second" / "train.kd.tgt") == lines(f"{outputs('transformer', 'ctranslate2')}.tgt")


def test_a_converter_failure_is_one_line(toy_data, transformer_model, tmp_path, monkeypatch):
    """Whatever the converter raises (here a KeyError, as a checkpoint with a missing weight gives) ends in one
    line naming the checkpoint, and leaves no copy."""
    def broken(self, output_dir, **options):
        raise KeyError("encoder.layers.0.fc1.weight")

    monkeypatch.setattr(ctranslate2.converters.FairseqConverter, "convert", broken)
    with pytest.raises(SeqKDError, match=r"teacher\.pt: CTranslate2 [0-9.]+'s converter failed \(KeyError: "
                                         r"'encoder\.layers\.0\.fc1\.weight'\); use --engine fairseq"):
        teacher = str(tmp_path / "teacher.pt")
        shutil.copy(transformer_model, teacher)
        run(toy_data, teacher, tmp_path / "x" / "train.kd", engine="ctranslate2")
    assert converted_copies(tmp_path) == []


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
