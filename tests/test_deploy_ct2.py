"""seqkd-export / seqkd-translate for a Transformer: a CTranslate2 model directory that translates as
fairseq-generate does, with ctranslate2 and sentencepiece only (torch and fairseq blocked)."""

import io
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import toydata
from fairseq_seqkd.cli.translate import main as translate_main
from fairseq_seqkd.deploy import ct2_bundle, export_model, open_translator
from fairseq_seqkd.deploy.common import MANIFEST
from fairseq_seqkd.deploy.ct2_translator import CT2Translator
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.textio import file_sha256

pytest.importorskip("ctranslate2")  # installed by make (the 'fast' extra)


def lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def stdin_of(text_lines):
    return io.BytesIO(("\n".join(text_lines) + "\n").encode())


def fairseq_best(data, checkpoint, extra):
    """[best hypothesis of sentence i] from fairseq-generate's H- lines (batch size 32)."""
    best = toydata.hypotheses(toydata.generate(data, checkpoint, extra))
    assert sorted(best) == list(range(len(best)))
    return [best[i] for i in range(len(best))]


@pytest.fixture(scope="module")
def exported(transformer_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct2_exported")
    export_model(transformer_model, str(folder / "fp32"))
    export_model(transformer_model, str(folder / "int8"), quantize="int8")
    return folder


@pytest.fixture(scope="module")
def spm_transformer(spm_corpus, tmp_path_factory):
    """A tiny Transformer trained on the SentencePiece toy data."""
    return toydata.train(str(spm_corpus / "bin"), str(tmp_path_factory.mktemp("spm_transformer")),
                         toydata.TINY_TRANSFORMER_ARGS, max_epoch=4)


def translate_all(translator, sources, batch_size):
    ids = [translator.source_ids(s) for s in sources]
    out = []
    for start in range(0, len(ids), batch_size):
        out += [translator.text(h) for h in translator.translate_ids(ids[start:start + batch_size])]
    return out


CASES = {  # seqkd-translate options, fairseq-generate's
    "greedy": (dict(beam=1), ["--beam", "1"]),
    "beam5": (dict(beam=5), ["--beam", "5"]),
    # limits that cut most toy hypotheses: fairseq's forced </s> (rescored) decides the beam's best
    "greedy_max_len_b": (dict(beam=1, max_len_b=3), ["--beam", "1", "--max-len-b", "3"]),
    "beam5_max_len_b_lenpen": (dict(beam=5, max_len_b=4, lenpen=0.3), ["--beam", "5", "--max-len-b", "4",
                                                                        "--lenpen", "0.3"]),
    # fairseq applies max_len_a to a batch's longest source: batches of one sentence
    "beam5_max_len_a": (dict(beam=5, max_len_a=0.6, max_len_b=1), ["--beam", "5", "--max-len-a", "0.6",
                                                                    "--max-len-b", "1", "--batch-size", "1"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_same_as_fairseq_generate(case, exported, toy_data, toy_text, transformer_model):
    """Every sentence of the toy test split gets fairseq-generate's best hypothesis, at batch sizes 1 and 7
    (fairseq's: 32), greedy and beam 5, with and without a length limit that binds (with beam 5 and the limits
    of 3 and 4 words, CTranslate2's own best hypothesis, without the rescoring, was fairseq's for only 82 and
    79 of the 100 sentences)."""
    options, argv = CASES[case]
    translator = CT2Translator.load(str(exported / "fp32"), **options)
    assert not translator.quantized
    sources = lines(os.path.join(toy_text, "test.src"))
    expected = fairseq_best(toy_data, transformer_model, argv)
    assert len(expected) == len(sources) == 100
    for batch_size in (1, 7):
        assert translate_all(translator, sources, batch_size) == expected, f"batch size {batch_size}"
    if "max_len_b" in options and options["beam"] > 1:
        assert translator.rescored > 0  # the rescoring of cut hypotheses was needed, and done


@pytest.fixture(scope="module")
def unk_data(toy_data, toy_text, tmp_path_factory):
    """Toy test sentences with unknown words put in, binarized with the toy dictionaries."""
    folder = tmp_path_factory.mktemp("unk_text")
    src, tgt = lines(os.path.join(toy_text, "test.src"))[:30], lines(os.path.join(toy_text, "test.tgt"))[:30]
    src = [s.replace("s1 ", "s1 zz ").replace("s7", "q7") + (" s99" if i % 3 == 0 else "") for i, s in enumerate(src)]
    for name, text in (("test.src", src), ("test.tgt", tgt)):
        (folder / name).write_text("\n".join(text) + "\n")
    dest = str(tmp_path_factory.mktemp("unk_bin"))
    toydata.preprocess(str(folder), dest, splits=("test",), extra=[
        "--srcdict", os.path.join(toy_data, "dict.src.txt"), "--tgtdict", os.path.join(toy_data, "dict.tgt.txt")])
    return src, dest


def test_unknown_words_same_as_fairseq_generate(unk_data, exported, transformer_model):
    """Words outside the source dictionary are fairseq's <unk> for CTranslate2 too."""
    sources, data = unk_data
    translator = CT2Translator.load(str(exported / "fp32"), beam=5)
    assert sum(" s99" in s for s in sources) == 10
    assert translate_all(translator, sources, 7) == fairseq_best(data, transformer_model, ["--beam", "5"])


def test_sentencepiece_raw_text_same_as_fairseq_generate(spm_corpus, spm_transformer, tmp_path):
    folder = str(tmp_path / "spm_export")
    export_model(spm_transformer, folder, spm_model=str(spm_corpus / "spm" / "src.model"))
    assert os.path.isfile(os.path.join(folder, ct2_bundle.SPM))
    expected = fairseq_best(str(spm_corpus / "bin"), spm_transformer, ["--beam", "3", "--post-process",
                                                                       "sentencepiece"])
    raw = lines(spm_corpus / "raw" / "test.src")  # raw text in, words out
    out = io.StringIO()
    translate_main([folder, "--beam", "3", "--batch-size", "5"], stdin=stdin_of(raw), stdout=out,
                   stderr=io.StringIO())
    assert out.getvalue().splitlines() == expected


def test_int8_close_to_float_and_small_on_disk(exported, toy_text):
    """The int8 directory holds int8 weights (CTranslate2's quantization at conversion) and agrees with float32
    on most sentences. How many depends on the CPU: 8-bit products are exact with VNNI (AVX-512 VNNI machines:
    ~96% on the toy teacher) and saturate with AVX2 only (~59%): hence the loose bound."""
    sources = lines(os.path.join(toy_text, "test.src"))
    fp32 = CT2Translator.load(str(exported / "fp32")).translate(sources, batch_size=16)
    int8 = CT2Translator.load(str(exported / "int8"))
    assert int8.quantized and int8.model.compute_type.startswith("int8")
    out = int8.translate(sources, batch_size=16)
    assert sum(a == b for a, b in zip(out, fp32)) >= 0.5 * len(sources)
    cli_out = io.StringIO()
    translate_main([str(exported / "int8"), "--batch-size", "16"], stdin=stdin_of(sources), stdout=cli_out,
                   stderr=io.StringIO())
    assert cli_out.getvalue().splitlines() == out
    sizes = {kind: os.path.getsize(exported / kind / "model.bin") for kind in ("fp32", "int8")}
    assert sizes["int8"] < 0.8 * sizes["fp32"], sizes  # the toy's embeddings and biases stay float32


def test_an_int8_directory_warns_where_the_cpus_int8_products_saturate(exported, toy_text):
    """Held to AVX2 (oneDNN's ONEDNN_MAX_CPU_ISA, MKL's MKL_ENABLE_INSTRUCTIONS, as on an AVX2-only CPU),
    seqkd-translate says before translating that int8 saturates there; a float32 directory says nothing."""
    from fairseq_seqkd.int8_cpu import this_cpu_ctranslate2_int8_isa

    src = os.path.join(toy_text, "test.src")
    held = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    kinds = (("int8", tuple(held.items())), ("fp32", tuple(held.items())), ("int8", ()))
    runs = dict(zip(kinds, toydata.run_clis([dict(args=["seqkd-translate", str(exported / kind)], env=dict(env),
                                                  stdin_path=src) for kind, env in kinds])))
    warned = [line for line in runs["int8", tuple(held.items())].stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "int8 products run on AVX2 without VNNI" in warned[0] and "saturate" in warned[0]
    assert "a float32 export gives the exact outputs" in warned[0]
    assert "warning:" not in runs["fp32", tuple(held.items())].stderr
    isa = this_cpu_ctranslate2_int8_isa()
    assert ("warning:" in runs["int8", ()].stderr) == (isa is None or not isa.vnni)


def test_manifest(exported, toy_data, transformer_model):
    manifest = json.loads((exported / "fp32" / MANIFEST).read_text())
    assert (manifest["format"], manifest["version"], manifest["kind"]) == (ct2_bundle.FORMAT, ct2_bundle.VERSION,
                                                                          "ctranslate2")
    assert (manifest["arch"], manifest["source_lang"], manifest["target_lang"]) == ("transformer", "src", "tgt")
    assert manifest["dictionaries"] == {side: file_sha256(os.path.join(toy_data, f"dict.{lang}.txt"))
                                        for side, lang in (("source", "src"), ("target", "tgt"))}
    assert manifest["checkpoint_sha256"] == file_sha256(transformer_model)
    assert manifest["quantize"] is None and manifest["spm"] is None
    assert manifest["max_source_positions"] == manifest["max_target_positions"] == 1024
    files = sorted(os.listdir(exported / "fp32"))
    assert files == sorted([MANIFEST, *manifest["files"]]) and "model.bin" in files
    assert all(file_sha256(exported / "fp32" / name) == sha for name, sha in manifest["files"].items())
    with open(exported / "fp32" / "source_vocabulary.json") as f:  # CTranslate2's names for fairseq's symbols
        assert json.load(f)[:4] == ["<s>", "<blank>", "</s>", "<unk>"]
    assert json.loads((exported / "int8" / MANIFEST).read_text())["quantize"] == "int8"
    assert not [name for name in os.listdir(exported) if name.endswith((".tmp", ".old"))]


# -- no torch, no fairseq ---------------------------------------------------------------------------------

BLOCKER = (
    "import importlib.abc, sys\n"
    "BLOCKED = ('torch', 'fairseq', 'fairseq_cli', 'numpy')\n"
    "class Blocker(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name.split('.')[0] in BLOCKED:\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Blocker())\n"
    "for name in BLOCKED:\n"
    "    try:\n"
    "        __import__(name)\n"
    "        raise SystemExit(f'{name} is importable')\n"
    "    except ModuleNotFoundError:\n"
    "        pass\n"
    "import atexit\n"
    "def check():\n"
    "    loaded = sorted(m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in BLOCKED)\n"
    "    assert not loaded, loaded\n"
    "atexit.register(check)\n"
)


def run_blocked(code, argv, stdin_path):
    with open(stdin_path, "rb") as stdin:
        return subprocess.run([sys.executable, "-c", BLOCKER + code, *argv], stdin=stdin,
                              capture_output=True, text=True, cwd=toydata.REPO)


@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_runs_where_torch_and_fairseq_cannot_be_imported(kind, exported, toy_text):
    """A subprocess in which `import torch`, `import fairseq` and `import numpy` fail (a machine with
    `pip install ctranslate2 sentencepiece` and our package) translates as the in-process translator does."""
    src = os.path.join(toy_text, "test.src")
    proc = run_blocked("from fairseq_seqkd.cli.translate import cli_main\ncli_main(sys.argv[1:])\n",
                       [str(exported / kind), "--beam", "5", "--batch-size", "8"], src)
    assert proc.returncode == 0, proc.stderr
    expected = CT2Translator.load(str(exported / kind), beam=5).translate(lines(src), batch_size=8)
    assert proc.stdout.splitlines() == expected
    summary = proc.stderr.strip().splitlines()[-1]
    n_words = sum(len(line.split()) for line in lines(src))
    assert summary.startswith(f"Translated {len(expected)} sentences ({n_words} source words) in ")
    assert "sentences/s" in summary and "source words/s)" in summary


# -- bad input: one line, exit status 1, nothing written -----------------------------------------------------


def test_export_refuses_a_sentencepiece_model_that_does_not_match_the_dictionary(transformer_model, spm_corpus,
                                                                                 toy_data, tmp_path):
    """The toy dictionary holds words (s0 ... s19), the SentencePiece model splits them (▁s 12): refused before
    anything is converted, naming both files; the matching pair is taken."""
    spm = str(spm_corpus / "spm" / "src.model")
    out = tmp_path / "out"
    proc = toydata.run_cli(["seqkd-export", transformer_model, "--out", str(out), "--spm-model", spm], check=False)
    toydata.assert_one_line_error(proc, f"--spm-model {spm}: not the SentencePiece model of the source dictionary "
                                        f"{os.path.join(toy_data, 'dict.src.txt')}: 100.0% of its tokens")
    assert os.listdir(tmp_path) == []
    tgt_spm = str(spm_corpus / "spm" / "tgt.model")  # the other side's model, with the SentencePiece data
    with pytest.raises(SeqKDError, match="not the SentencePiece model of the source dictionary"):
        export_model(transformer_model, str(out), spm_model=tgt_spm, data=str(spm_corpus / "bin"))
    assert os.listdir(tmp_path) == []


@pytest.fixture
def copy_of(exported, tmp_path):
    def make(kind="fp32"):
        folder = tmp_path / f"copy-{kind}"
        shutil.copytree(exported / kind, folder)
        return folder
    return make


def translate_cli(folder, *options):
    return toydata.run_cli(["seqkd-translate", str(folder), *options], input="s1 s2\n", check=False)


def test_a_file_that_does_not_match_the_manifest_is_refused(copy_of):
    folder = copy_of()
    vocab = folder / "source_vocabulary.json"
    symbols = json.loads(vocab.read_text())
    symbols[4], symbols[5] = symbols[5], symbols[4]  # another dictionary of the same size
    vocab.write_text(json.dumps(symbols))
    proc = translate_cli(folder)
    toydata.assert_one_line_error(proc, f"{vocab}: not the file this directory was exported with (its sha256 "
                                        f"differs from the manifest's)")
    assert proc.stdout == ""
    os.remove(folder / "model.bin")
    toydata.assert_one_line_error(translate_cli(folder), f"{folder / 'model.bin'}: no such file")


@pytest.mark.parametrize("damage,message", [
    (lambda text: text[:len(text) // 2], "manifest.json: unreadable (JSONDecodeError)"),
    (lambda text: text.replace('"files"', '"filez"'), "manifest.json: damaged"),
    (lambda text: text.replace('"model.bin"', '"../model.bin"'), "manifest.json: damaged"),
    (lambda text: text.replace('"version": 1', '"version": 7'), "format version 7; this seqkd-translate reads "
                                                                  "version 1"),
    (lambda text: "[1, 2]", "manifest.json: not a model directory written by seqkd-export"),
])
def test_a_damaged_manifest_is_refused(damage, message, copy_of):
    folder = copy_of()
    manifest = folder / MANIFEST
    manifest.write_text(damage(manifest.read_text()))
    proc = translate_cli(folder)
    toydata.assert_one_line_error(proc, message)
    assert proc.stdout == ""


def test_refused_options_and_lines(exported):
    proc = translate_cli(exported / "int8", "--int8-activations", "batch")
    toydata.assert_one_line_error(proc, "--int8-activations batch: for LSTM model directories only")
    long_line = " ".join(["s1"] * 1024)
    proc = toydata.run_cli(["seqkd-translate", str(exported / "fp32")], input=f"s1 s2\n{long_line}\ns3\n",
                           check=False)
    toydata.assert_one_line_error(proc, "stdin line 2: 1024 source tokens, more than the model's limit of 1023")
    assert proc.stdout == ""  # nothing translated before the bad line was found
    with pytest.raises(SeqKDError, match="allow 0 target words"):
        translate_main([str(exported / "fp32"), "--max-len-b", "0"], stdin=io.BytesIO(b"s1\n"), stdout=io.StringIO())
    with pytest.raises(SeqKDError, match="--beam 0: must be at least 1"):
        open_translator(str(exported / "fp32"), beam=0)
    # the one input where fairseq-generate would differ: CTranslate2 gives an empty line for an empty line
    # (fairseq decodes its lone </s>)
    out = io.StringIO()
    translate_main([str(exported / "fp32"), "--beam", "5", "--batch-size", "3"], stdin=io.BytesIO(b"s1 s2\n\ns3\n"),
                   stdout=out, stderr=io.StringIO())
    assert out.getvalue().split("\n")[1] == "" and all(out.getvalue().splitlines()[::2])


# -- atomic publication --------------------------------------------------------------------------------------


def test_a_conversion_that_fails_leaves_nothing(toy_model, tmp_path):
    """An LSTM's weights under a Transformer's name: CTranslate2's converter fails half-way, one line, and
    neither --out nor a temporary folder is left."""
    state = torch.load(toy_model, weights_only=False)
    state["cfg"]["model"].arch = state["cfg"]["model"]._name = "transformer"
    fake = str(tmp_path / "transformer.pt")
    torch.save(state, fake)
    proc = toydata.run_cli(["seqkd-export", fake, "--out", str(tmp_path / "out")], check=False)
    toydata.assert_one_line_error(proc, f"{fake}: CTranslate2")
    assert os.listdir(tmp_path) == ["transformer.pt"]


def test_a_save_that_fails_half_way_leaves_nothing(tmp_path):
    def convert_into(path):
        os.makedirs(path)
        with open(os.path.join(path, "model.bin"), "wb") as f:
            f.write(b"half a model")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        ct2_bundle.save(str(tmp_path / "out"), convert_into, {"arch": "transformer"})
    assert os.listdir(tmp_path) == []


def test_export_again_replaces_its_own_output_and_an_lstm_one(exported, transformer_model, toy_model, tmp_path):
    out = str(tmp_path / "model")
    export_model(toy_model, out)  # an LSTM directory first: a Transformer export replaces it whole
    assert json.loads((tmp_path / "model" / MANIFEST).read_text())["format"] == "fairseq-seqkd-student"
    export_model(transformer_model, out)
    first = {name: (tmp_path / "model" / name).read_bytes() for name in sorted(os.listdir(out))}
    assert sorted(first) == sorted(os.listdir(exported / "fp32"))
    export_model(transformer_model, out)
    again = {name: (tmp_path / "model" / name).read_bytes() for name in sorted(os.listdir(out))}
    assert again == first
    assert sorted(os.listdir(tmp_path)) == ["model"]
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("x")
    with pytest.raises(SeqKDError, match="exists and is neither empty nor an exported model"):
        export_model(transformer_model, str(used))
    assert os.listdir(used) == ["keep.txt"]
