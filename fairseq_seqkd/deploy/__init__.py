"""Deploying a student: export it as a self-contained directory, decode it without fairseq.

Two kinds of directory, chosen by the checkpoint's architecture (:func:`export_model`, ``seqkd-export``) and
read back by the format its manifest names (:func:`open_translator`, ``seqkd-translate``):

- fairseq LSTMs (``luong_lstm_*``, ``lstm_*``): our own format, decoded with torch only:
  :mod:`~fairseq_seqkd.deploy.bundle` (the directory), :mod:`~fairseq_seqkd.deploy.export`,
  :mod:`~fairseq_seqkd.deploy.network` (the LSTM), :mod:`~fairseq_seqkd.deploy.search` (fairseq's greedy and
  beam search) and :mod:`~fairseq_seqkd.deploy.translator`.
- fairseq Transformers (any model CTranslate2's fairseq converter takes): a CTranslate2 model, decoded with
  ctranslate2 and sentencepiece only (no torch, no fairseq): :mod:`~fairseq_seqkd.deploy.ct2_bundle`,
  :mod:`~fairseq_seqkd.deploy.ct2_export` and :mod:`~fairseq_seqkd.deploy.ct2_translator`.

Exporting needs fairseq. This module and :mod:`~fairseq_seqkd.deploy.common` import nothing beyond the
standard library until they know the kind of directory at hand.
"""

from fairseq_seqkd.deploy.common import KINDS, new_folder, read_manifest
from fairseq_seqkd.errors import SeqKDError


def export_model(checkpoint, out, spm_model=None, quantize=None, data=None):
    """Export ``checkpoint`` as the kind of directory its architecture calls for; return the manifest."""
    from fairseq_seqkd.checkpoints import load_checkpoint_state
    from fairseq_seqkd.deploy import ct2_export, export

    if quantize not in (None, *export.QUANTIZE):
        raise SeqKDError(f"--quantize {quantize}: choose one of {', '.join(export.QUANTIZE)}")
    new_folder(out)  # before the slow part; the exporters check again
    state = load_checkpoint_state(checkpoint)
    arch, family = ct2_export.architecture(state)
    if family == "lstm":
        exporter = export.export
    elif family in ct2_export.FAMILIES:
        exporter = ct2_export.export
    else:
        raise SeqKDError(f"{checkpoint}: a {arch!r} model ({family or 'unknown family'}); seqkd-export exports "
                         f"fairseq's LSTM models (luong_lstm_*, lstm_*: our format) and its "
                         f"{', '.join(ct2_export.FAMILIES)} models (CTranslate2's format)")
    return exporter(checkpoint, out, spm_model=spm_model, quantize=quantize, data=data, state=state)


def open_translator(folder, beam=1, lenpen=1.0, max_len_a=0.0, max_len_b=200, threads=None, int8_activations=None):
    """The translator of a model directory of either kind (SeqKDError for a missing or foreign one).

    ``threads``: CPU threads (default: torch's for an LSTM directory, CTranslate2's for a CTranslate2 one).
    ``int8_activations`` is for LSTM directories only (default ``sentence``); a CTranslate2 directory refuses it.
    """
    manifest = read_manifest(folder)
    search = dict(beam=beam, lenpen=lenpen, max_len_a=max_len_a, max_len_b=max_len_b)
    if KINDS.get(manifest["format"]) == "ctranslate2":
        if int8_activations is not None:
            raise SeqKDError(f"--int8-activations {int8_activations}: for LSTM model directories only; {folder} is a "
                             f"CTranslate2 one, whose int8 arithmetic is CTranslate2's own")
        from fairseq_seqkd.deploy.ct2_translator import CT2Translator

        return CT2Translator.load(folder, threads=threads, **search)
    import torch

    from fairseq_seqkd.deploy.translator import Translator

    if threads is not None:
        torch.set_num_threads(threads)
    return Translator.load(folder, int8_activations=int8_activations or "sentence", **search)
