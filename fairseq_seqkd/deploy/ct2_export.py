"""Export a trained fairseq Transformer (any model CTranslate2's fairseq converter takes) as a CTranslate2 model
directory (:mod:`fairseq_seqkd.deploy.ct2_bundle`).

Needs fairseq and ctranslate2 (to read and convert the checkpoint); what it writes needs ctranslate2 and
sentencepiece only. The conversion is CTranslate2's ``FairseqConverter``, as for ``seqkd-distill --engine
ctranslate2`` (:mod:`fairseq_seqkd.engines.ctranslate2_engine`), with our plugin as its user dir.
``--quantize int8`` is CTranslate2's ``quantization="int8"`` at conversion, not a ``compute_type`` chosen when
the model is loaded: the directory shipped then holds int8 weights (about a quarter of float32's size on
disk), and it loads as int8 (CTranslate2 turns it into what the CPU runs, if it has no int8 products).

A ``--spm-model`` is checked against the source dictionary before anything is converted: the dictionary was
built from text that model split, so (but for fairseq's specials and filler symbols) its symbols are the
model's pieces; where the symbols that are not pieces of the model cover more than
:data:`MAX_FOREIGN_SHARE` of the dictionary's counts (e.g. the target side's model, or another corpus's), the
export stops with one line naming both files.
"""

import logging
import os
import re

from fairseq_seqkd.deploy import ct2_bundle
from fairseq_seqkd.deploy.common import new_folder
from fairseq_seqkd.engines import FAMILIES as ENGINE_FAMILIES
from fairseq_seqkd.errors import SeqKDError

logger = logging.getLogger(__name__)

#: the fairseq model families whose checkpoints become CTranslate2 directories: those seqkd-distill's ctranslate2
#: engine decodes (CTranslate2's fairseq converter takes them; it takes language models too)
FAMILIES = ENGINE_FAMILIES["ctranslate2"]
QUANTIZE = ("int8",)
#: the largest share of a source dictionary's counts that may fall on symbols that are not pieces of the
#: --spm-model (SentencePiece leaves characters it does not cover as they are: rare ones may be in the data)
MAX_FOREIGN_SHARE = 0.01
_FILLER = re.compile(r"madeupword\d{4}")  # fairseq-preprocess pads dictionaries to a multiple of 8 with these


def architecture(state):
    """(architecture name, fairseq model family or None) of a loaded checkpoint."""
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY

    args = state["cfg"].model
    arch = getattr(args, "arch", None) or getattr(args, "_name", None)
    return arch, ARCH_MODEL_NAME_REGISTRY.get(arch)


def check_spm_matches(spm_path, dictionary, dictionary_path):
    """SeqKDError unless the SentencePiece model ``spm_path`` is the one that split the text ``dictionary``
    (fairseq's, read from ``dictionary_path``) was built from; see the module docstring."""
    from fairseq_seqkd.deploy.export import check_spm_file

    spm = check_spm_file(spm_path)
    pieces = {spm.id_to_piece(i) for i in range(spm.get_piece_size())}
    total = foreign = 0
    examples = []
    for symbol, count in zip(dictionary.symbols[dictionary.nspecial:], dictionary.count[dictionary.nspecial:]):
        if _FILLER.fullmatch(symbol):
            continue
        total += count
        if symbol not in pieces:
            foreign += count
            examples.append(symbol)
    if total and foreign / total > MAX_FOREIGN_SHARE:
        shown = ", ".join(repr(s) for s in examples[:3])
        raise SeqKDError(f"--spm-model {spm_path}: not the SentencePiece model of the source dictionary "
                         f"{dictionary_path}: {foreign / total:.1%} of its tokens ({len(examples)} symbols, e.g. "
                         f"{shown}) are not pieces of this model")


def _converter(checkpoint, data, source_lang, target_lang, quantize):
    """(CTranslate2's version, ``convert_into(path)`` for :func:`ct2_bundle.save`): the same conversion as
    ``seqkd-distill --engine ctranslate2``'s, with CTranslate2's own quantization."""
    from fairseq_seqkd.engines.ctranslate2_engine import convert_into, import_ctranslate2

    ctranslate2 = import_ctranslate2("exporting a Transformer")

    def convert(path):
        try:
            convert_into(checkpoint, data, source_lang, target_lang, path, quantization=quantize)
        except OSError as e:
            raise SeqKDError(f"{path}: cannot write the converted model ({e.strerror or e})") from None

    return ctranslate2.__version__, convert


def _max_positions(state, side):
    """fairseq-generate's limits: a source may be as long as the model's and the task's ``max_source_positions``
    allow; a target is limited by the model's ``max_target_positions`` (SequenceGenerator's
    ``model.max_decoder_positions()``)."""
    configs = (state["cfg"].model, state["cfg"].task) if side == "source" else (state["cfg"].model,)
    limits = [int(n) for n in (getattr(cfg, f"max_{side}_positions", None) for cfg in configs) if n]
    return min(limits) if limits else 1024  # fairseq's DEFAULT_MAX_{SOURCE,TARGET}_POSITIONS


def export(checkpoint, out, spm_model=None, quantize=None, data=None, state=None):
    """Write ``checkpoint`` (a fairseq Transformer) as a CTranslate2 model directory ``out``; return its manifest.
    ``data``: the folder of the dictionaries (default: the checkpoint's data folder); ``state``: the checkpoint,
    if it is loaded already."""
    from fairseq.data import Dictionary

    from fairseq_seqkd.checkpoints import load_checkpoint_state
    from fairseq_seqkd.deploy.export import check_spm_file, dictionary_files
    from fairseq_seqkd.textio import file_sha256

    if quantize not in (None, *QUANTIZE):
        raise SeqKDError(f"--quantize {quantize}: choose one of {', '.join(QUANTIZE)}")
    new_folder(out)  # before the slow part; save checks again
    if spm_model is not None:
        check_spm_file(spm_model)
    if state is None:
        state = load_checkpoint_state(checkpoint)
    arch, family = architecture(state)
    if family not in FAMILIES:
        raise SeqKDError(f"{checkpoint}: a {arch!r} model ({family or 'unknown family'}); CTranslate2 directories "
                         f"are made of {', '.join(FAMILIES)} models")
    data, src_lang, tgt_lang, src_path, tgt_path = dictionary_files(state, checkpoint, data)
    if spm_model is not None:
        check_spm_matches(spm_model, Dictionary.load(src_path), src_path)
    version, convert_into = _converter(checkpoint, data, src_lang, tgt_lang, quantize)
    params = [t for t in state["model"].values() if hasattr(t, "numel")]
    manifest = {
        "arch": arch,
        "family": family,
        "source_lang": src_lang,
        "target_lang": tgt_lang,
        "checkpoint": os.path.abspath(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint),
        "dictionaries": {"source": file_sha256(src_path), "target": file_sha256(tgt_path)},
        "parameters": sum(t.numel() for t in params),
        "quantize": quantize,
        "ctranslate2": version,
        "max_source_positions": _max_positions(state, "source"),
        "max_target_positions": _max_positions(state, "target"),
    }
    ct2_bundle.save(out, convert_into, manifest, spm_model=spm_model)
    logger.info("exported %s (%s, %s parameters%s) to %s for CTranslate2 %s", checkpoint, arch,
                f"{manifest['parameters']:,}", ", int8" if quantize else "", out, version)
    return manifest
