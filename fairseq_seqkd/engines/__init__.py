"""Decoding engines for the teacher's beam search: fairseq's own, CTranslate2's, or ours.

Every engine decodes the same fixed batches (:func:`fairseq_seqkd.generation.fixed_batches`) into the
same K-best lists (:class:`~fairseq_seqkd.kbest.Sentence`: source, reference, hypotheses with scores in
log base 2), so everything after decoding (selection, journals, merge, binarization) is shared. Length
limits are fairseq's, per batch: ``int(max_len_a * longest source + max_len_b)`` target words.

- ``fairseq``: fairseq's ``SequenceGenerator`` (the reference; ``--fp16`` on a GPU).
- ``ctranslate2``: CTranslate2 for any teacher its fairseq converter supports (Transformers), converted
  once into a folder keyed by the checkpoint's content (:mod:`.ctranslate2_engine`).
- ``seqkd``: our LSTM decoder (:mod:`fairseq_seqkd.deploy`) for fairseq LSTM teachers (``luong_lstm_*``,
  ``lstm*``), exact in float32 or with int8 weights (:mod:`.lstm_engine`).
"""

from typing import Dict, Optional, Tuple

from fairseq_seqkd.errors import SeqKDError

#: engine -> the --engine-quantize values it takes (the first is its default; fairseq takes none)
QUANTIZE: Dict[str, Tuple[str, ...]] = {
    "fairseq": (),
    "ctranslate2": ("float32", "int8", "int8_float16", "float16"),
    "seqkd": ("float32", "int8"),
}
ENGINES = tuple(QUANTIZE)
#: engine -> the fairseq model families it decodes (None: any)
FAMILIES = {"fairseq": None, "ctranslate2": ("transformer", "transformer_align", "bart", "multilingual_transformer"),
            "seqkd": ("lstm",)}
#: quantisations that need a GPU
GPU_ONLY = ("int8_float16", "float16")


def check_engine(engine: str, quantize: Optional[str], fp16: bool = False) -> Optional[str]:
    """The engine's quantisation (its default filled in); SeqKDError for a combination it does not run."""
    if engine not in QUANTIZE:
        raise SeqKDError(f"--engine {engine}: choose one of {', '.join(ENGINES)}")
    choices = QUANTIZE[engine]
    if not choices:
        if quantize is not None:
            raise SeqKDError(f"--engine-quantize {quantize}: the fairseq engine takes none (use --fp16 on a GPU)")
        return None
    if fp16:
        raise SeqKDError(f"--fp16 is the fairseq engine's; with --engine {engine} use --engine-quantize "
                         f"{'float16' if 'float16' in choices else 'int8'}")
    quantize = quantize or choices[0]
    if quantize not in choices:
        raise SeqKDError(f"--engine-quantize {quantize}: --engine {engine} takes {', '.join(choices)}")
    return quantize


def model_family(model) -> Tuple[str, Optional[str]]:
    """(class name, fairseq model family: the name it is registered under) of a loaded model."""
    from fairseq.models import MODEL_REGISTRY

    family = next((name for name, cls in MODEL_REGISTRY.items() if type(model) is cls), None)
    return type(model).__name__, family


def check_family(engine, path, model):
    """SeqKDError naming the engine that can decode this teacher, if ``engine`` cannot."""
    arch, family = model_family(model)
    families = FAMILIES[engine]
    if families is None or family in families:
        return
    able = [e for e, f in FAMILIES.items() if f is not None and family in f] or ["fairseq"]
    raise SeqKDError(f"{path}: a {arch} teacher ({family or 'unknown'} model): --engine {engine} cannot decode "
                     f"it; use --engine {able[0]}")


def build_engine(engine, quantize, task, model, path, *, beam, nbest, max_len_a, max_len_b, lenpen,
                 use_cuda=False, cache_dir=None, teacher_sha256=None, threads=None):
    """An engine decoding ``task``'s data with the teacher ``model`` (loaded from ``path``) as configured
    (``threads``: CTranslate2's CPU threads, fixed when it loads; default: torch's)."""
    check_family(engine, path, model)
    search = dict(beam=beam, nbest=nbest, max_len_a=max_len_a, max_len_b=max_len_b, lenpen=lenpen)
    if engine == "fairseq":
        from fairseq_seqkd.engines.fairseq_engine import FairseqEngine

        return FairseqEngine(task, model, use_cuda=use_cuda, **search)
    if engine == "seqkd":
        from fairseq_seqkd.engines.lstm_engine import LSTMEngine

        return LSTMEngine(task, model, quantize, use_cuda=use_cuda, **search)
    from fairseq_seqkd.engines.ctranslate2_engine import CTranslate2Engine

    return CTranslate2Engine(task, model, path, quantize, use_cuda=use_cuda, cache_dir=cache_dir,
                             teacher_sha256=teacher_sha256, threads=threads, **search)
