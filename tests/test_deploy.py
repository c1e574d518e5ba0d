"""seqkd-export / seqkd-translate: fairseq-generate's best hypotheses token for token, without fairseq."""

import io
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import sacrebleu
import torch

import toydata
from fairseq_seqkd.cli.translate import main as translate_main
from fairseq_seqkd.deploy import bundle
from fairseq_seqkd.deploy.export import export
from fairseq_seqkd.deploy.translator import Translator
from fairseq_seqkd.errors import SeqKDError


def lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


@pytest.fixture(scope="module")
def exported(toy_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    export(toy_model, str(folder / "fp32"))
    export(toy_model, str(folder / "int8"), quantize="int8")
    return folder


@pytest.fixture(scope="module")
def pruned(toy_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pruned")
    path = str(folder / "pruned.pt")
    toydata.run_cli(["seqkd-prune", toy_model, path, "--ratio", "0.6"])
    export(path, str(folder / "export"))
    return path, str(folder / "export")


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
    return str(folder), dest


def fairseq_best(data, checkpoint, extra):
    """{sentence id: (hypothesis, score in base 2)} from fairseq-generate's H- lines."""
    out = toydata.generate(data, checkpoint, extra)
    best = {}
    for line in out.splitlines():
        if line.startswith("H-"):
            tag, score, text = (line.split("\t") + [""])[:3]
            best.setdefault(int(tag[2:]), (text, float(score)))
    return best


def assert_same_as_fairseq(translator, sources, best, batch_sizes=(1, 7)):
    ids = [translator.source_ids(s) for s in sources]
    assert sorted(best) == list(range(len(sources)))
    expected = [best[i][0] for i in range(len(sources))]
    for batch_size in batch_sizes:
        hyps = []
        for start in range(0, len(ids), batch_size):
            hyps += translator.translate_ids(ids[start:start + batch_size])
        assert [translator.text(h) for h in hyps] == expected, f"batch size {batch_size}"
        for i, h in enumerate(hyps):  # fairseq's score (printed in base 2), up to float rounding
            assert h.score / math.log(2) == pytest.approx(best[i][1], abs=1e-5)


CASES = {
    "greedy": (dict(beam=1), ["--beam", "1"]),
    "beam5": (dict(beam=5), ["--beam", "5"]),
    "greedy_max_len_b": (dict(beam=1, max_len_b=3), ["--beam", "1", "--max-len-b", "3"]),
    "beam5_max_len_b_lenpen": (dict(beam=5, max_len_b=4, lenpen=0.3), ["--beam", "5", "--max-len-b", "4",
                                                                        "--lenpen", "0.3"]),
    # fairseq applies max_len_a to a batch's longest source: batches of one sentence
    "beam5_max_len_a": (dict(beam=5, max_len_a=0.6, max_len_b=1), ["--beam", "5", "--max-len-a", "0.6",
                                                                    "--max-len-b", "1", "--batch-size", "1"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_as_fairseq_generate(case, exported, toy_data, toy_model, toy_text):
    options, argv = CASES[case]
    translator = Translator.load(str(exported / "fp32"), **options)
    best = fairseq_best(toy_data, toy_model, argv)
    assert_same_as_fairseq(translator, lines(os.path.join(toy_text, "test.src")), best)


@pytest.mark.parametrize("beam", [1, 5])
def test_pruned_checkpoint_same_as_fairseq_generate(beam, pruned, toy_data, toy_text):
    checkpoint, folder = pruned
    weights = torch.load(os.path.join(folder, bundle.WEIGHTS), weights_only=True)
    assert sum(int((t == 0).sum()) for t in weights.values()) > 0.5 * sum(t.numel() for t in weights.values())
    best = fairseq_best(toy_data, checkpoint, ["--beam", str(beam), "--max-len-b", "12"])  # a pruned model may loop
    assert_same_as_fairseq(Translator.load(folder, beam=beam, max_len_b=12), lines(os.path.join(toy_text, "test.src")),
                           best)


@pytest.mark.parametrize("beam", [1, 5])
def test_unknown_words_same_as_fairseq_generate(beam, unk_data, exported, toy_model):
    text, data = unk_data
    sources = lines(os.path.join(text, "test.src"))
    translator = Translator.load(str(exported / "fp32"), beam=beam, max_len_b=12)
    assert sum(translator.source_vocab.unk in translator.source_ids(s) for s in sources) >= 10  # every third: s99
    best = fairseq_best(data, toy_model, ["--beam", str(beam), "--max-len-b", "12"])
    assert_same_as_fairseq(translator, sources, best)


def test_sentencepiece_raw_text_same_as_fairseq_generate(spm_corpus, spm_model, tmp_path):
    folder = str(tmp_path / "spm_export")
    export(spm_model, folder, spm_model=str(spm_corpus / "spm" / "src.model"))
    assert os.path.isfile(os.path.join(folder, bundle.SPM))
    best = fairseq_best(str(spm_corpus / "bin"), spm_model, ["--beam", "3", "--post-process", "sentencepiece"])
    raw = lines(spm_corpus / "raw" / "test.src")  # raw text in, words out
    out = io.StringIO()
    translate_main([folder, "--beam", "3", "--batch-size", "5"], stdin=io.BytesIO(("\n".join(raw) + "\n").encode()),
                   stdout=out, stderr=io.StringIO())
    assert out.getvalue().splitlines() == [best[i][0] for i in range(len(raw))]


def test_runs_where_fairseq_cannot_be_imported(exported, toy_text):
    """A subprocess in which `import fairseq` fails translates as the in-process translator does."""
    src = os.path.join(toy_text, "test.src")
    code = (
        "import importlib.abc, sys\n"
        "class NoFairseq(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('fairseq', 'fairseq_cli'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoFairseq())\n"
        "try:\n"
        "    import fairseq\n"
        "    raise SystemExit('fairseq is importable')\n"
        "except ModuleNotFoundError:\n"
        "    pass\n"
        "from fairseq_seqkd.cli.translate import cli_main\n"
        "cli_main(sys.argv[1:])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('fairseq', 'fairseq_cli'))\n"
        "assert not bad, bad\n"
    )
    with open(src, "rb") as stdin:
        proc = subprocess.run([sys.executable, "-c", code, str(exported / "fp32"), "--beam", "5", "--batch-size", "8"],
                              stdin=stdin, capture_output=True, text=True, cwd=toydata.REPO)
    assert proc.returncode == 0, proc.stderr
    expected = Translator.load(str(exported / "fp32"), beam=5).translate(lines(src), batch_size=8)
    assert proc.stdout.splitlines() == expected
    summary = proc.stderr.strip().splitlines()[-1]
    n_words = sum(len(line.split()) for line in lines(src))
    assert summary.startswith(f"Translated {len(expected)} sentences ({n_words} source words) in ")
    assert "sentences/s" in summary and "source words/s)" in summary


def test_int8_close_to_float(exported, toy_text):
    """int8 weights: the BLEU of the greedy output differs from the float model's by at most 1.0 (against the
    references), and agrees with it at BLEU >= 90 (float output as the reference)."""
    sources = lines(os.path.join(toy_text, "test.src"))
    refs = lines(os.path.join(toy_text, "test.tgt"))
    fp32 = Translator.load(str(exported / "fp32")).translate(sources, batch_size=16)
    int8 = Translator.load(str(exported / "int8"))
    assert int8.quantized
    out = int8.translate(sources, batch_size=16)
    bleu = {name: sacrebleu.corpus_bleu(hyps, [refs]).score for name, hyps in (("fp32", fp32), ("int8", out))}
    assert bleu["fp32"] > 50  # a trained model: the comparison means something
    assert abs(bleu["int8"] - bleu["fp32"]) <= 1.0, bleu
    assert sacrebleu.corpus_bleu(out, [fp32]).score >= 90
    weights = torch.load(str(exported / "int8" / bundle.WEIGHTS), weights_only=True)
    assert weights["decoder.fc_out.int8"].dtype == torch.int8


def test_manifest_and_vocabularies(exported, toy_data):
    manifest = json.loads((exported / "fp32" / bundle.MANIFEST).read_text())
    assert (manifest["format"], manifest["version"], manifest["arch"]) == (bundle.FORMAT, bundle.VERSION,
                                                                          "luong_lstm_1x32")
    assert manifest["model"]["max_source_positions"] == 1024 and manifest["quantize"] is None
    loaded = bundle.load(str(exported / "fp32"))
    with open(os.path.join(toy_data, "dict.src.txt")) as f:
        words = [line.split()[0] for line in f]
    assert loaded.source_vocab.symbols == ["<s>", "<pad>", "</s>", "<unk>"] + words
    assert not [name for name in os.listdir(exported) if name.endswith(".tmp")]


# -- bad input: one line, exit status 1, nothing written ------------------------------------------


def test_not_an_lstm_checkpoint(toy_model, tmp_path):
    state = torch.load(toy_model, weights_only=False)
    state["cfg"]["model"].arch = state["cfg"]["model"]._name = "transformer"
    fake = str(tmp_path / "transformer.pt")
    torch.save(state, fake)
    out = str(tmp_path / "out")
    proc = toydata.run_cli(["seqkd-export", fake, "--out", out], check=False)
    toydata.assert_one_line_error(proc, "'transformer' model")
    assert "LSTM" in proc.stderr and not os.path.exists(out) and os.listdir(tmp_path) == ["transformer.pt"]
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(SeqKDError, match="not a fairseq checkpoint"):
        export(str(text), out)
    with pytest.raises(SeqKDError, match="no such file"):
        export(str(tmp_path / "missing.pt"), out)
    assert not os.path.exists(out)


def test_export_refuses_a_used_output_and_a_bad_spm_model(exported, toy_model, tmp_path):
    target = tmp_path / "used"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(SeqKDError, match="not an empty directory"):
        export(toy_model, str(target))
    assert os.listdir(target) == ["keep.txt"]
    with pytest.raises(SeqKDError, match="not a SentencePiece model"):
        export(toy_model, str(tmp_path / "new"), spm_model=str(target / "keep.txt"))
    assert sorted(os.listdir(tmp_path)) == ["used"]


def test_missing_directory_or_file(exported, tmp_path):
    proc = toydata.run_cli(["seqkd-translate", str(tmp_path / "nowhere")], check=False)
    toydata.assert_one_line_error(proc, "nowhere: no such directory")
    assert proc.stdout == ""
    broken = tmp_path / "broken"
    shutil.copytree(exported / "fp32", broken)
    os.remove(broken / bundle.WEIGHTS)
    with pytest.raises(SeqKDError, match="weights.pt: no such file"):
        Translator.load(str(broken))
    os.remove(broken / bundle.MANIFEST)
    with pytest.raises(SeqKDError, match="manifest.json: no such file"):
        Translator.load(str(broken))


def test_line_longer_than_the_model_limit(exported, tmp_path):
    long_line = " ".join(["s1"] * 1024)
    src = tmp_path / "in.txt"
    src.write_text(f"s1 s2\n{long_line}\ns3\n")
    with open(src, "rb") as stdin:
        proc = subprocess.run([os.path.join(toydata.VENV_BIN, "seqkd-translate"), str(exported / "fp32")], stdin=stdin,
                              capture_output=True, text=True)
    toydata.assert_one_line_error(proc, "stdin line 2: 1024 source tokens, more than the model's limit of 1023")
    assert proc.stdout == ""  # nothing translated before the bad line was found
    with pytest.raises(SeqKDError, match="stdin line 2: not UTF-8"):
        translate_main([str(exported / "fp32")], stdin=io.BytesIO(b"s1\n\xff\n"), stdout=io.StringIO())
    with pytest.raises(SeqKDError, match="allow 0 target words"):
        translate_main([str(exported / "fp32"), "--max-len-b", "0"], stdin=io.BytesIO(b"s1\n"), stdout=io.StringIO())
