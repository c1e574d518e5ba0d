"""Export a trained fairseq LSTM (a ``luong_lstm_*`` student, pruned or not) as a model directory.

Needs fairseq (to read the checkpoint and its dictionaries); what it writes does not (see
:mod:`fairseq_seqkd.deploy.bundle`). The model is rebuilt with fairseq's own ``LSTMModel`` and
loaded strictly, its hyper-parameters read from the built modules, and the exported network is
checked against fairseq's on a probe sentence before anything is written.
"""

import argparse
import logging
import os
from typing import NamedTuple

import torch

from fairseq_seqkd.deploy import bundle as bundle_io
from fairseq_seqkd.deploy.bundle import Vocabulary
from fairseq_seqkd.deploy.network import LSTMNet, int8_weights, parameter_names
from fairseq_seqkd.errors import SeqKDError

logger = logging.getLogger(__name__)

QUANTIZE = ("int8",)


class _Dictionaries:
    """What ``LSTMModel.build_model`` needs of a task."""

    def __init__(self, source, target):
        self.source_dictionary, self.target_dictionary = source, target


def dictionary_files(state, checkpoint, data=None):
    """(data folder, source language, target language, source and target dictionary paths) of a checkpoint:
    its data folder's ``dict.SRC.txt`` and ``dict.TGT.txt`` (``data``, if given, instead of the folder the
    checkpoint was trained on); SeqKDError if they are not there."""
    from fairseq.data.data_utils import infer_language_pair

    task = state["cfg"].task
    data = data or (getattr(task, "data", None) or "").split(os.pathsep)[0]
    if not data or not os.path.isdir(data):
        raise SeqKDError(f"{checkpoint}: its data folder {data or '(none)'} (the dictionaries) is not there; "
                         f"give it with --data DIR")
    src, tgt = getattr(task, "source_lang", None), getattr(task, "target_lang", None)
    if src is None or tgt is None:
        src, tgt = infer_language_pair(data)
    paths = [os.path.join(data, f"dict.{lang}.txt") for lang in (src, tgt)]
    for path in paths:
        if not os.path.isfile(path):
            raise SeqKDError(f"{path}: no such file (the dictionaries of {checkpoint})")
    return data, src, tgt, paths[0], paths[1]


def _dictionaries(state, checkpoint, data):
    from fairseq.data import Dictionary

    _, src, tgt, src_path, tgt_path = dictionary_files(state, checkpoint, data)
    return src, tgt, Dictionary.load(src_path), Dictionary.load(tgt_path)


def _build(state, checkpoint, src_dict, tgt_dict):
    """fairseq's LSTMModel with the checkpoint's weights, or SeqKDError if it is not one."""
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY
    from fairseq.models.lstm import LSTMModel

    args = state["cfg"].model
    arch = getattr(args, "arch", None) or getattr(args, "_name", None)
    family = ARCH_MODEL_NAME_REGISTRY.get(arch)
    if family != "lstm":
        raise SeqKDError(f"{checkpoint}: a {arch!r} model ({family or 'unknown family'}); seqkd-export "
                         f"exports fairseq's LSTM models (luong_lstm_*, lstm_*) only here (a Transformer: "
                         f"fairseq_seqkd.deploy.export_model)")
    if not isinstance(args, argparse.Namespace):
        raise SeqKDError(f"{checkpoint}: its model configuration is not fairseq's legacy LSTM namespace")
    model = LSTMModel.build_model(argparse.Namespace(**vars(args)), _Dictionaries(src_dict, tgt_dict))
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise SeqKDError(f"{checkpoint}: its weights do not fit a {arch} with dictionaries of {len(src_dict)} and "
                         f"{len(tgt_dict)} symbols ({detail})") from None
    if model.decoder.adaptive_softmax is not None:
        raise SeqKDError(f"{checkpoint}: adaptive softmax output layers are not supported")
    return arch, model.eval()


def _config(model):
    enc, dec = model.encoder, model.decoder
    return {
        "encoder_layers": enc.num_layers,
        "encoder_embed_dim": enc.embed_tokens.embedding_dim,
        "encoder_hidden_size": enc.hidden_size,
        "encoder_bidirectional": bool(enc.bidirectional),
        "decoder_layers": dec.num_layers,
        "decoder_embed_dim": dec.embed_tokens.embedding_dim,
        "decoder_hidden_size": dec.hidden_size,
        "decoder_out_embed_dim": dec.additional_fc.out_features if hasattr(dec, "additional_fc") else dec.hidden_size,
        "attention": dec.attention is not None,
        "encoder_hidden_proj": dec.encoder_hidden_proj is not None,
        "additional_fc": hasattr(dec, "additional_fc"),
        "share_input_output_embed": bool(dec.share_input_output_embed),
        "max_source_positions": int(enc.max_source_positions),
        "max_target_positions": int(dec.max_target_positions),
    }


def _check_against_fairseq(model, net, src_dict, tgt_dict, steps=4):
    """The exported float network must give fairseq's log-probabilities on a probe sentence."""
    n = len(src_dict)
    ids = [src_dict.nspecial + (7 * i) % max(1, n - src_dict.nspecial) for i in range(6)] + [src_dict.eos()]
    src = torch.tensor([ids])
    lengths = torch.tensor([len(ids)])
    prev = torch.tensor([[tgt_dict.eos()]])
    with torch.no_grad():
        enc_out = model.encoder(src, src_lengths=lengths)
        enc = net.encode(src, lengths)
        state = net.start(enc, torch.tensor([0]))
        incremental = {}
        for step in range(steps):
            theirs = model.decoder(prev, encoder_out=enc_out, incremental_state=incremental)[0][:, -1, :]
            ours = net.step(prev[:, -1], state)
            if not torch.allclose(theirs, ours, rtol=1e-5, atol=1e-5):
                diff = (theirs - ours).abs().max().item()
                raise SeqKDError(f"the exported network differs from fairseq's (step {step}, max difference "
                                 f"{diff:.3g}): this LSTM variant is not supported")
            prev = torch.cat((prev, theirs.argmax(-1, keepdim=True)), dim=1)


def from_fairseq(model, src_dict, tgt_dict, quantize=None):
    """The exported form of a fairseq ``LSTMModel``: (model config, weights, source and target vocabularies).

    The float network is checked against fairseq's on a probe sentence first.
    """
    if quantize not in (None, *QUANTIZE):
        raise SeqKDError(f"--quantize {quantize}: choose one of {', '.join(QUANTIZE)}")
    config = _config(model)
    names = parameter_names(config)
    params = model.state_dict()
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise SeqKDError(f"parameters this exporter does not know: {', '.join(unknown[:5])}")
    weights = {k: params[k].detach().float().contiguous().clone() for k in names}
    net = LSTMNet(config, weights, pad=src_dict.pad(), target_pad=tgt_dict.pad())
    _check_against_fairseq(model, net, src_dict, tgt_dict)
    if quantize == "int8":
        weights = int8_weights(weights, config)
    vocabs = [Vocabulary(d.symbols, d.bos(), d.pad(), d.eos(), d.unk()) for d in (src_dict, tgt_dict)]
    return config, weights, vocabs[0], vocabs[1]


class FairseqLSTM(NamedTuple):
    arch: str
    model: object
    source_lang: str
    target_lang: str
    source_dict: object
    target_dict: object


def load_lstm(checkpoint, data=None, state=None) -> FairseqLSTM:
    """A checkpoint's fairseq LSTMModel (eval mode) and dictionaries (from ``data``, else the checkpoint's
    data folder); SeqKDError if it is not an LSTM or they do not fit. ``state``: the checkpoint, if it is
    loaded already."""
    from fairseq_seqkd.checkpoints import load_checkpoint_state

    if state is None:
        state = load_checkpoint_state(checkpoint)
    src_lang, tgt_lang, src_dict, tgt_dict = _dictionaries(state, checkpoint, data)
    arch, model = _build(state, checkpoint, src_dict, tgt_dict)
    return FairseqLSTM(arch, model, src_lang, tgt_lang, src_dict, tgt_dict)


def export(checkpoint, out, spm_model=None, quantize=None, data=None, state=None):
    """Write ``checkpoint`` (an LSTM) as a model directory ``out``; return its manifest. ``state``: the
    checkpoint, if it is loaded already. (:func:`fairseq_seqkd.deploy.export_model` chooses between this and
    the CTranslate2 export of a Transformer.)"""
    if quantize not in (None, *QUANTIZE):
        raise SeqKDError(f"--quantize {quantize}: choose one of {', '.join(QUANTIZE)}")
    bundle_io.new_folder(out)  # before the slow part; save checks again
    if spm_model is not None:
        check_spm_file(spm_model)
    lstm = load_lstm(checkpoint, data, state)
    try:
        config, weights, src_vocab, tgt_vocab = from_fairseq(lstm.model, lstm.source_dict, lstm.target_dict, quantize)
    except SeqKDError as e:
        raise SeqKDError(f"{checkpoint}: {e}") from None
    params = lstm.model.state_dict().values()
    arch = lstm.arch
    manifest = {
        "arch": arch,
        "source_lang": lstm.source_lang,
        "target_lang": lstm.target_lang,
        "checkpoint": os.path.abspath(checkpoint),
        "parameters": sum(t.numel() for t in params),
        "nonzero_parameters": sum(int(t.count_nonzero()) for t in params),
        "quantize": quantize,
        "model": config,
    }
    bundle_io.save(out, manifest, weights, src_vocab, tgt_vocab, spm_model=spm_model)
    logger.info("exported %s (%s, %s parameters%s) to %s", checkpoint, arch, f"{manifest['parameters']:,}",
                ", int8" if quantize else "", out)
    return manifest


def check_spm_file(path):
    """The SentencePiece processor of ``--spm-model path``; SeqKDError if it is not one."""
    from fairseq_seqkd.deploy.common import load_spm

    if not os.path.isfile(path):
        raise SeqKDError(f"--spm-model {path}: no such file")
    try:
        return load_spm(path)
    except SeqKDError as e:
        raise SeqKDError(f"--spm-model {e}") from None
