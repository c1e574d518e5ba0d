"""The Luong LSTM architectures: sizes, defaults, equations, incremental decoding; the Transformer shapes
(transformer_students): sizes, defaults, training."""

import argparse

import pytest
import torch
import torch.nn.functional as F
from fairseq.data import Dictionary
from fairseq.models import ARCH_MODEL_REGISTRY, ARCH_CONFIG_REGISTRY
from fairseq.models.lstm import LSTMModel

import toydata
from fairseq_seqkd.models.luong_lstm import LUONG_SHAPES
from fairseq_seqkd.models.transformer_students import TRANSFORMER_SHAPES


def make_dict(size):
    d = Dictionary()
    for i in range(size - len(d)):
        d.add_symbol(f"w{i}")
    assert len(d) == size
    return d


class FakeTask:
    def __init__(self, src_size, tgt_size):
        self.source_dictionary = make_dict(src_size)
        self.target_dictionary = make_dict(tgt_size)


def build(arch, src_size=60, tgt_size=50, device=None, **overrides):
    args = argparse.Namespace(arch=arch, criterion="cross_entropy", **overrides)
    ARCH_CONFIG_REGISTRY[arch](args)
    task = FakeTask(src_size, tgt_size)
    if device is None:
        return ARCH_MODEL_REGISTRY[arch].build_model(args, task), args, task
    with torch.device(device):
        return ARCH_MODEL_REGISTRY[arch].build_model(args, task), args, task


def luong_param_formula(layers, units, vs, vt):
    """Parameters of a Luong LSTM, counted from the paper's equations (independent oracle)."""
    h = units
    embeddings = vs * h + vt * h
    lstm_layer = lambda inp: 4 * h * (inp + h) + 2 * 4 * h  # W_ih, W_hh and two biases
    encoder = sum(lstm_layer(h) for _ in range(layers))
    decoder = lstm_layer(2 * h) + sum(lstm_layer(h) for _ in range(layers - 1))  # input feeding
    attention = h * h + 2 * h * h  # W_a (general score) and W_c (attentional state), no biases
    output = h * vt + vt
    return embeddings + encoder + decoder + attention + output


@pytest.mark.parametrize(
    "arch,vocab,paper_millions",
    [
        ("luong_lstm_4x1000", 50000, 221),
        ("luong_lstm_2x500", 50000, 84),
        ("luong_lstm_2x300", 50000, 49),
        ("luong_lstm_2x500", 25000, 47),
        ("luong_lstm_2x100", 25000, 8),
    ],
)
def test_paper_parameter_counts(arch, vocab, paper_millions):
    model, _, _ = build(arch, vocab, vocab, device="meta")  # no memory is allocated
    n = sum(p.numel() for p in model.parameters())
    layers, units = LUONG_SHAPES[arch]
    assert n == luong_param_formula(layers, units, vocab, vocab)
    assert abs(n / 1e6 - paper_millions) / paper_millions <= 0.03, n


@pytest.mark.parametrize("arch", sorted(LUONG_SHAPES))
def test_every_architecture_matches_its_name(arch):
    layers, units = LUONG_SHAPES[arch]
    model, args, _ = build(arch, device="meta")
    assert isinstance(model, LSTMModel)
    assert (args.encoder_layers, args.decoder_layers) == (layers, layers)
    assert args.encoder_hidden_size == args.decoder_hidden_size == args.encoder_embed_dim == units
    assert sum(p.numel() for p in model.parameters()) == luong_param_formula(layers, units, 60, 50)


def test_defaults_dropout_unidirectional_and_uniform_init():
    model, args, task = build("luong_lstm_2x64")
    assert args.dropout == 0.3 and args.encoder_dropout_out == 0.3 and args.decoder_dropout_out == 0.3
    assert args.encoder_dropout_in == 0.0 and args.decoder_dropout_in == 0.0
    assert not args.encoder_bidirectional and not model.encoder.lstm.bidirectional
    assert model.decoder.attention is not None
    for name, p in model.named_parameters():
        assert p.abs().max() <= 0.1, name
    pad = task.source_dictionary.pad()
    assert model.encoder.embed_tokens.weight[pad].abs().sum() == 0


def test_command_line_overrides_win():
    _, args, _ = build("luong_lstm_2x64", dropout=0.1, decoder_layers=2, encoder_bidirectional=True)
    assert args.dropout == 0.1 and args.encoder_dropout_out == 0.1
    assert args.encoder_bidirectional


def _lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh):
    gates = x @ w_ih.t() + b_ih + h @ w_hh.t() + b_hh
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def luong_reference_logits(model, src, prev):
    """Luong et al. (2015) equations written out by hand, for one unpadded sentence."""
    enc, dec = model.encoder, model.decoder
    layers = enc.num_layers
    h = [torch.zeros(enc.hidden_size) for _ in range(layers)]
    c = [torch.zeros(enc.hidden_size) for _ in range(layers)]
    source_states = []
    for tok in src:
        x = enc.embed_tokens.weight[tok]
        for l in range(layers):
            w = [getattr(enc.lstm, f"{n}_l{l}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            h[l], c[l] = _lstm_step(x, h[l], c[l], *w)
            x = h[l]
        source_states.append(x)
    hs = torch.stack(source_states)  # S x H
    feed = torch.zeros(dec.hidden_size)  # input feeding starts from zeros
    logits = []
    for tok in prev:  # the decoder starts from the encoder's final states
        x = torch.cat([dec.embed_tokens.weight[tok], feed])
        for l, cell in enumerate(dec.layers):
            h[l], c[l] = _lstm_step(x, h[l], c[l], cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
            x = h[l]
        score = hs @ (dec.attention.input_proj.weight @ x)  # general: h_s^T W_a h_t
        context = F.softmax(score, dim=0) @ hs
        feed = torch.tanh(dec.attention.output_proj.weight @ torch.cat([context, x]))  # tanh(W_c [c_t; h_t])
        logits.append(dec.fc_out.weight @ feed + dec.fc_out.bias)
    return torch.stack(logits)


def test_forward_follows_luong_equations():
    torch.manual_seed(0)
    model, _, task = build("luong_lstm_2x64")
    model.eval()
    src = torch.tensor([7, 12, 30, 5, task.source_dictionary.eos()])
    prev = torch.tensor([task.target_dictionary.eos(), 9, 14, 22])
    with torch.no_grad():
        out, _ = model(src.unsqueeze(0), torch.tensor([len(src)]), prev.unsqueeze(0))
        expected = luong_reference_logits(model, src, prev)
    torch.testing.assert_close(out[0], expected, rtol=1e-4, atol=1e-5)


def test_incremental_decoding_scores_equal_full_scoring(toy_model, toy_data):
    """Beam search's per-token scores equal the teacher-forced scores of the same hypotheses."""
    from fairseq import checkpoint_utils

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([toy_model])
    model = models[0].eval()
    task.load_dataset("test")
    itr = task.get_batch_iterator(task.dataset("test"), max_sentences=16).next_epoch_itr(shuffle=False)
    sample = next(itr)
    generator = task.build_generator(models, argparse.Namespace(beam=4, nbest=4))
    hypos = task.inference_step(generator, models, sample)
    eos = task.target_dictionary.eos()
    checked = 0
    with torch.no_grad():
        for i, sentence_hypos in enumerate(hypos):
            src = sample["net_input"]["src_tokens"][i]
            src = src[src.ne(task.source_dictionary.pad())].unsqueeze(0)
            for hypo in sentence_hypos:
                tokens = hypo["tokens"]
                prev = torch.cat([tokens.new_tensor([eos]), tokens[:-1]]).unsqueeze(0)
                logits, _ = model(src, torch.tensor([src.size(1)]), prev)
                lprobs = F.log_softmax(logits.float(), dim=-1)[0]
                full = lprobs.gather(1, tokens.unsqueeze(1)).squeeze(1)
                torch.testing.assert_close(hypo["positional_scores"], full, rtol=1e-4, atol=1e-4)
                checked += 1
    assert checked == 4 * sample["nsentences"]


# -- the Transformer shapes (fairseq_seqkd/models/transformer_students.py) ------------------------------------


def transformer_param_formula(encoder_layers, decoder_layers, d, f, vs, vt, share="none"):
    """Parameters of a post-norm fairseq Transformer, counted from its layers (independent oracle): every
    projection has a bias, every layer norm a gain and a bias, the positions are sinusoidal (no parameters).
    share: "none" (three embedding tables), "decoder" (decoder input = output projection), "all" (one table)."""
    attention = 4 * (d * d + d)  # query, key, value and output projections
    norm = 2 * d
    ffn = (d * f + f) + (f * d + d)
    encoder_layer = attention + norm + ffn + norm
    decoder_layer = attention + norm + attention + norm + ffn + norm  # self-attention, encoder attention, FFN
    embeddings = {"none": vs * d + 2 * vt * d, "decoder": vs * d + vt * d, "all": vs * d}[share]
    return encoder_layers * encoder_layer + decoder_layers * decoder_layer + embeddings


@pytest.mark.parametrize("arch,vocab,share,expected", [
    # the Bible preset's sizes: one joint vocabulary of 2,000 subwords, every embedding shared
    ("transformer_student_bible", 2000, "all", 1_115_392),
    ("transformer_teacher_bible", 2000, "all", 4_465_664),
    # the demo's two vocabularies of 2,000 (--student-arch on the demo preset), nothing shared
    ("transformer_student_bible", 2000, "none", 1_627_392),
    ("transformer_teacher_bible", 2000, "decoder", 4_977_664),  # as trained in BENCHMARKS.md
    # Bergamot's student.tiny11 with its 32k joint vocabulary (Bergamot: ~17M, with an SSRU decoder)
    ("transformer_student_tiny", 32000, "all", 17_138_688),
    ("transformer_student_tiny", 32000, "none", 33_522_688),
])
def test_transformer_parameter_counts(arch, vocab, share, expected):
    options = {"all": {"share_all_embeddings": True}, "decoder": {"share_decoder_input_output_embed": True},
               "none": {}}[share]
    model, args, _ = build(arch, vocab, vocab, device="meta", **options)
    n = sum(p.numel() for p in model.parameters())  # parameters() counts a shared tensor once
    assert n == transformer_param_formula(*TRANSFORMER_SHAPES[arch][:4], vocab, vocab, share) == expected
    enc, dec, d, f, heads = TRANSFORMER_SHAPES[arch]
    assert (args.encoder_layers, args.decoder_layers, len(model.encoder.layers), len(model.decoder.layers)) == \
        (enc, dec, enc, dec)
    assert args.encoder_embed_dim == args.decoder_embed_dim == d and args.decoder_ffn_embed_dim == f
    assert args.encoder_attention_heads == args.decoder_attention_heads == heads


def test_transformer_shapes_are_deep_encoder_shallow_decoder_and_overridable():
    assert {name: shape[:2] for name, shape in TRANSFORMER_SHAPES.items()} == {
        "transformer_student_tiny": (6, 2), "transformer_student_bible": (3, 1), "transformer_teacher_bible": (3, 3)}
    _, args, _ = build("transformer_student_bible", decoder_layers=2, dropout=0.3)
    assert (args.encoder_layers, args.decoder_layers, args.dropout) == (3, 2, 0.3)
    _, args, _ = build("transformer_student_tiny")  # fairseq's defaults below the shape: post-norm, no tying
    assert not args.encoder_normalize_before and not args.share_all_embeddings
    assert not args.share_decoder_input_output_embed and args.dropout == 0.1


def test_the_bible_student_trains_on_toy_data(toy_data, tmp_path):
    """fairseq-train builds transformer_student_bible from its name and trains it (2 updates)."""
    path = toydata.train(toy_data, str(tmp_path), ["--arch", "transformer_student_bible", "--lr", "0.001",
                                                   "--max-update", "2", "--cpu"], max_epoch=1)
    state = torch.load(path, map_location="cpu", weights_only=False)
    assert state["optimizer_history"][-1]["num_updates"] == 2
    assert state["cfg"]["model"].arch == "transformer_student_bible"
    weights = state["model"]
    assert {k.split(".")[2] for k in weights if k.startswith("encoder.layers.")} == {"0", "1", "2"}
    assert {k.split(".")[2] for k in weights if k.startswith("decoder.layers.")} == {"0"}
    vs, vt = weights["encoder.embed_tokens.weight"].shape[0], weights["decoder.embed_tokens.weight"].shape[0]
    params = sum(t.numel() for k, t in weights.items() if not k.endswith(".version"))  # (fairseq's format marks)
    assert params == transformer_param_formula(3, 1, 128, 512, vs, vt)
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
