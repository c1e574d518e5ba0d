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
from fairseq_seqkd.deploy import bundle, network
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


@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_runs_where_fairseq_and_numpy_cannot_be_imported(kind, exported, toy_text):
    """A subprocess in which `import fairseq` and `import numpy` fail (the torch-only machine the README
    describes) translates as the in-process translator does."""
    src = os.path.join(toy_text, "test.src")
    code = (
        "import importlib.abc, sys\n"
        "class NoFairseq(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('fairseq', 'fairseq_cli'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoFairseq())\n"
        "sys.modules['numpy'] = None  # blocks `import numpy`\n"
        "for name in ('fairseq', 'numpy'):\n"
        "    try:\n"
        "        __import__(name)\n"
        "        raise SystemExit(f'{name} is importable')\n"
        "    except ModuleNotFoundError:\n"
        "        pass\n"
        "from fairseq_seqkd.cli.translate import cli_main\n"
        "cli_main(sys.argv[1:])\n"
        "bad = sorted(m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in "
        "('fairseq', 'fairseq_cli', 'numpy'))\n"
        "assert not bad, bad\n"
    )
    with open(src, "rb") as stdin:
        proc = subprocess.run([sys.executable, "-c", code, str(exported / kind), "--beam", "5", "--batch-size", "8"],
                              stdin=stdin, capture_output=True, text=True, cwd=toydata.REPO)
    assert proc.returncode == 0, proc.stderr
    expected = Translator.load(str(exported / kind), beam=5).translate(lines(src), batch_size=8)
    assert proc.stdout.splitlines() == expected
    summary = proc.stderr.strip().splitlines()[-1]
    n_words = sum(len(line.split()) for line in lines(src))
    assert summary.startswith(f"Translated {len(expected)} sentences ({n_words} source words) in ")
    assert "sentences/s" in summary and "source words/s)" in summary


@pytest.mark.parametrize("activations", ["sentence", "batch"])
def test_int8_close_to_float(activations, exported, toy_text):
    """int8 weights: the BLEU of the greedy output differs from the float model's by at most 1.0 (against the
    references), and agrees with it at BLEU >= 90 (float output as the reference)."""
    sources = lines(os.path.join(toy_text, "test.src"))
    refs = lines(os.path.join(toy_text, "test.tgt"))
    fp32 = Translator.load(str(exported / "fp32")).translate(sources, batch_size=16)
    int8 = Translator.load(str(exported / "int8"), int8_activations=activations)
    assert int8.quantized
    out = int8.translate(sources, batch_size=16)
    cli_out = io.StringIO()
    translate_main([str(exported / "int8"), "--batch-size", "16", "--int8-activations", activations],
                   stdin=io.BytesIO(("\n".join(sources) + "\n").encode()), stdout=cli_out, stderr=io.StringIO())
    assert cli_out.getvalue().splitlines() == out
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
    """A model of neither kind (a Transformer becomes a CTranslate2 directory: tests/test_deploy_ct2.py)."""
    state = torch.load(toy_model, weights_only=False)
    state["cfg"]["model"].arch = state["cfg"]["model"]._name = "fconv"
    fake = str(tmp_path / "fconv.pt")
    torch.save(state, fake)
    out = str(tmp_path / "out")
    proc = toydata.run_cli(["seqkd-export", fake, "--out", out], check=False)
    toydata.assert_one_line_error(proc, "'fconv' model (fconv); seqkd-export exports fairseq's LSTM models")
    assert "transformer" in proc.stderr and not os.path.exists(out) and os.listdir(tmp_path) == ["fconv.pt"]
    with pytest.raises(SeqKDError, match="'fconv' model .* LSTM models .* only"):  # the LSTM exporter alone
        export(fake, out)
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
    with pytest.raises(SeqKDError, match="exists and is neither empty nor an exported model"):
        export(toy_model, str(target))
    assert os.listdir(target) == ["keep.txt"]
    with pytest.raises(SeqKDError, match="not a SentencePiece model"):
        export(toy_model, str(tmp_path / "new"), spm_model=str(target / "keep.txt"))
    assert sorted(os.listdir(tmp_path)) == ["used"]


def test_export_again_replaces_its_own_output(exported, toy_model, tmp_path):
    """Rerunning the same export (e.g. after a kill just after it had written its folder) gives the same
    folder anew instead of refusing its own output."""
    out = str(tmp_path / "model")
    export(toy_model, out)
    first = {name: open(os.path.join(out, name), "rb").read() for name in sorted(os.listdir(out))}
    export(toy_model, out)
    assert {name: open(os.path.join(out, name), "rb").read() for name in sorted(os.listdir(out))} == first
    assert sorted(os.listdir(tmp_path)) == ["model"]


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
    proc = toydata.run_cli(["seqkd-translate", str(exported / "fp32")], stdin_path=str(src), check=False)
    toydata.assert_one_line_error(proc, "stdin line 2: 1024 source tokens, more than the model's limit of 1023")
    assert proc.stdout == ""  # nothing translated before the bad line was found
    with pytest.raises(SeqKDError, match="stdin line 2: not UTF-8"):
        translate_main([str(exported / "fp32")], stdin=io.BytesIO(b"s1\n\xff\n"), stdout=io.StringIO())
    with pytest.raises(SeqKDError, match="allow 0 target words"):
        translate_main([str(exported / "fp32"), "--max-len-b", "0"], stdin=io.BytesIO(b"s1\n"), stdout=io.StringIO())


def test_int8_product_rows_independent_of_batch_mates():
    """Int8Linear with per-row input scales: each row's result is bit for bit its result alone, and close to the
    float product with the int8 weight (one scale per matrix is neither, when rows differ in magnitude)."""
    gen = torch.Generator().manual_seed(0)
    for inputs, outputs in ((13, 7), (100, 333), (37, 2000)):
        q, scale = network.quantize_rows(torch.randn(outputs, inputs, generator=gen))
        bias = torch.randn(outputs, generator=gen)
        x = torch.randn(19, inputs, generator=gen) * torch.logspace(-2, 2, 19).unsqueeze(1)
        x[3] = 0.5  # a constant row
        exact = torch.nn.functional.linear(x, q.float() * scale.unsqueeze(1), bias)
        for per_row in (True, False):
            linear = network.Int8Linear(q, scale, bias, per_row=per_row)
            together = linear(x)
            alone = torch.cat([linear(x[i:i + 1]) for i in range(len(x))])
            error = ((together - exact).abs().amax(dim=1) / exact.abs().amax(dim=1)).max().item()
            assert torch.equal(together, alone) == per_row
            assert (error < 0.03) == per_row, error


@pytest.mark.parametrize("beam", [1, 5])
def test_int8_translation_independent_of_batch_mates(beam, exported, toy_text):
    """int8 decoding: each sentence gets the same translation and score in a batch of 16 as alone."""
    sources = lines(os.path.join(toy_text, "test.src"))[:64]
    translator = Translator.load(str(exported / "int8"), beam=beam)
    ids = [translator.source_ids(s) for s in sources]
    alone = [translator.translate_ids([i])[0] for i in ids]
    batched = [h for start in range(0, len(ids), 16) for h in translator.translate_ids(ids[start:start + 16])]
    assert [h.tokens for h in batched] == [h.tokens for h in alone]
    assert [h.score for h in batched] == [h.score for h in alone]


def test_export_output_behind_a_broken_link(toy_model, tmp_path):
    """--out (or a folder above it) a symbolic link to nothing: a one-line error naming the link, nothing
    written; a link to an empty folder gets the bundle where it points."""
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    for out, message in ((tmp_path / "dangling", "dangling: is a broken link to .*gone"),
                         (tmp_path / "dangling" / "model", "model: .*dangling is a broken link to .*gone")):
        with pytest.raises(SeqKDError, match=message):
            export(toy_model, str(out))
    proc = toydata.run_cli(["seqkd-export", toy_model, "--out", str(tmp_path / "dangling")], check=False)
    toydata.assert_one_line_error(proc, "is a broken link to")
    assert sorted(os.listdir(tmp_path)) == ["dangling"] and not os.path.exists(tmp_path / "gone")
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    export(toy_model, str(tmp_path / "link"))
    assert os.path.islink(tmp_path / "link") and os.path.isfile(tmp_path / "empty" / bundle.MANIFEST)
    assert Translator.load(str(tmp_path / "link")).translate(["s1 s2"]) == Translator.load(
        str(tmp_path / "empty")).translate(["s1 s2"])
    assert sorted(os.listdir(tmp_path)) == ["dangling", "empty", "link"]  # no temporary folder left


def test_failed_save_leaves_nothing(exported, tmp_path):
    """A bundle that fails half-way (an unpicklable weight) leaves neither --out nor a temporary folder."""
    loaded = bundle.load(str(exported / "fp32"))
    with pytest.raises(Exception):
        bundle.save(str(tmp_path / "out"), loaded.manifest, {"w": lambda: 0}, loaded.source_vocab,
                    loaded.target_vocab)
    assert os.listdir(tmp_path) == []


def test_int8_bidirectional_encoder_independent_of_batch_mates():
    """The same with a 2-layer bidirectional encoder (projected into the decoder's first state), random
    weights, sources of different lengths and beam 3."""
    import argparse

    from fairseq.data import Dictionary
    from fairseq.models.lstm import LSTMModel, base_architecture

    from fairseq_seqkd.deploy.export import from_fairseq

    d = Dictionary()
    for i in range(40):
        d.add_symbol(f"w{i}")
    args = argparse.Namespace(encoder_bidirectional=True, encoder_layers=2, decoder_layers=2, encoder_embed_dim=16,
                              encoder_hidden_size=24, decoder_embed_dim=16, decoder_hidden_size=20,
                              decoder_out_embed_dim=20, criterion="cross_entropy")
    base_architecture(args)
    torch.manual_seed(0)
    model = LSTMModel.build_model(args, argparse.Namespace(source_dictionary=d, target_dictionary=d)).eval()
    config, weights, src_vocab, tgt_vocab = from_fairseq(model, d, d, "int8")
    assert config["encoder_hidden_proj"] and config["encoder_bidirectional"]
    translator = Translator(bundle.Bundle({"model": config}, weights, src_vocab, tgt_vocab), beam=3, max_len_b=8)
    gen = torch.Generator().manual_seed(1)
    sources = [torch.randint(4, len(d), (int(n),), generator=gen).tolist() + [d.eos()]
               for n in torch.randint(1, 12, (24,), generator=gen)]
    alone = [translator.translate_ids([s])[0] for s in sources]
    batched = [h for start in range(0, 24, 8) for h in translator.translate_ids(sources[start:start + 8])]
    assert [(h.tokens, h.score) for h in batched] == [(h.tokens, h.score) for h in alone]


def test_grouped_attention_equals_attention_over_per_row_copies(exported, toy_text):
    """int8 with batch-wide activations attends over one copy of each sentence's encoder output (batched
    products of its beam rows); the oracle is the per-row layout of fairseq's arithmetic on the same int8
    network: the same logits to float rounding, through beam reordering and sentences leaving the batch."""
    translator = Translator.load(str(exported / "int8"), int8_activations="batch")
    net = translator.net
    assert net.grouped_attention
    sources = [translator.source_ids(s) for s in lines(os.path.join(toy_text, "test.src"))[:6]]
    order = sorted(range(len(sources)), key=lambda i: -len(sources[i]))
    src = torch.full((len(sources), len(sources[order[0]])), net.pad, dtype=torch.long)
    for row, i in enumerate(order):
        src[row, :len(sources[i])] = torch.tensor(sources[i])
    enc = net.encode(src, torch.tensor([len(sources[i]) for i in order]))
    assert enc.mask is not None  # padded: the mask is exercised
    beam, rows = 3, torch.arange(len(sources)).repeat_interleave(3)
    grouped = net.start(enc, rows)
    net.grouped_attention = False
    per_row = net.start(enc, rows)
    assert (grouped.group, per_row.group) == (3, None)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, net.vocab_size, (len(rows),), generator=gen)
    for step, (keep_rows, changed) in enumerate([(None, False), ([2, 0, 1, 5, 5, 4, 6, 7, 8, 11, 9, 10, 12, 14, 13,
                                                                   15, 17, 16], False),
                                                 ([3, 5, 4, 12, 12, 13, 15, 16, 17], True), (None, False)]):
        if keep_rows is not None:
            index = torch.tensor(keep_rows)
            grouped.select(index, changed)
            per_row.select(index, changed)
            tokens = tokens.index_select(0, index)
        a = net.step(tokens, grouped)
        b = net.step(tokens, per_row)
        assert a.shape == b.shape == (len(tokens), net.vocab_size)
        assert torch.allclose(a, b, rtol=0, atol=1e-4), (step, (a - b).abs().max())
        tokens = a.argmax(dim=1)
    assert grouped.enc.size(0) == 3  # three sentences left, one copy each
