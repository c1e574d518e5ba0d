"""The ``ctranslate2`` engine: a teacher converted with CTranslate2's fairseq converter, decoded by it.

Conversion happens once per checkpoint *content*, CTranslate2 version and dictionaries: the converted
model is the folder ``CACHE/NAME.ct2-KEY`` (CACHE: ``--engine-cache``, else the checkpoint's folder; NAME:
the checkpoint's file name; KEY: 16 hex digits of the sha256 of the checkpoint's sha256, CTranslate2's
version and the two dictionary files the converter reads), published whole (a temporary folder renamed
into place), so a changed checkpoint, dictionary or CTranslate2 gets a new one and an interrupted
conversion leaves none. Each copy records the checkpoint's path (``seqkd-source.json``); once a new copy
is loaded, the older copies made for the same path are removed (one copy per checkpoint, not one per
content forever). A copy that CTranslate2 cannot load (damaged on disk) is converted again, once.
It is stored in float32; ``--engine-quantize`` is CTranslate2's ``compute_type`` when it is loaded (int8
quality depends on the CPU's instructions: :mod:`fairseq_seqkd.int8_cpu`).

Sources go in as the subword strings of their ids (CTranslate2 adds the source </s> itself), the
batch's length limit as ``max_decoding_length``. Where a hypothesis reaches the limit, fairseq and
CTranslate2 differ: fairseq forces </s> there and scores it, CTranslate2 stops without it. Those
sentences are made fairseq's again: every hypothesis that reached the limit is rescored with its
forced </s> (CTranslate2's ``score_batch``), fairseq's normalisation ``sum / (length + 1) ** lenpen``
applied, and the finished hypotheses taken and sorted as fairseq takes and sorts them.
"""

import hashlib
import json
import logging
import os
import shutil
import time

import torch

from fairseq_seqkd.engines.base import Engine
from fairseq_seqkd.engines import GPU_ONLY
from fairseq_seqkd.errors import SeqKDError

logger = logging.getLogger(__name__)

INSTALL = "pip install ctranslate2 (or, from a checkout: pip install -e '.[fast]')"
EOS = "</s>"


def import_ctranslate2(needed_by="--engine ctranslate2"):
    from fairseq_seqkd.deploy.ct2_translator import import_ctranslate2 as importer

    return importer(needed_by, INSTALL)


SOURCE_RECORD = "seqkd-source.json"  # in each converted copy: the checkpoint it was made from


def conversion_key(sha256, version, dictionaries):
    """16 hex digits naming a converted copy: the checkpoint's content ``sha256``, CTranslate2's ``version``
    and the content of the ``dictionaries`` files the converter reads."""
    from fairseq_seqkd.textio import file_sha256

    parts = [sha256, version, *(file_sha256(path) for path in dictionaries)]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]


def converted_path(checkpoint, key, cache_dir=None):
    """Where the converted copy of ``checkpoint`` named by ``key`` (:func:`conversion_key`) lives."""
    folder = cache_dir or os.path.dirname(os.path.abspath(checkpoint))
    return os.path.join(folder, f"{os.path.basename(checkpoint)}.ct2-{key}")


def _dictionary_files(data, source_lang, target_lang):
    paths = [os.path.join(data, f"dict.{lang}.txt") for lang in (source_lang, target_lang)]
    for path in paths:
        if not os.path.isfile(path):
            raise SeqKDError(f"{path}: no such file (the dictionary CTranslate2's converter reads)")
    return paths


def _one_line(e):
    return " ".join(str(e).split())[:200] or type(e).__name__


def convert(checkpoint, data, source_lang, target_lang, sha256, cache_dir=None):
    """The converted copy of ``checkpoint`` (made now if there is none); its folder."""
    from fairseq_seqkd.textio import atomic_dir

    ctranslate2 = import_ctranslate2()
    key = conversion_key(sha256, ctranslate2.__version__, _dictionary_files(data, source_lang, target_lang))
    dest = converted_path(checkpoint, key, cache_dir)
    if os.path.isfile(os.path.join(dest, "model.bin")):
        return dest
    logger.info("converting %s for CTranslate2 %s into %s (once for this checkpoint)", checkpoint,
                ctranslate2.__version__, dest)
    try:
        with atomic_dir(dest) as tmp:
            convert_into(checkpoint, data, source_lang, target_lang, tmp, advice="; use --engine fairseq")
            with open(os.path.join(tmp, SOURCE_RECORD), "w", encoding="utf-8") as f:
                json.dump({"checkpoint": os.path.abspath(checkpoint), "sha256": sha256,
                           "ctranslate2": ctranslate2.__version__}, f)
    except OSError as e:
        raise SeqKDError(f"{dest}: cannot write the converted teacher ({e.strerror or _one_line(e)}); name a "
                         f"writable folder with --engine-cache DIR") from None
    return dest


def convert_into(checkpoint, data, source_lang, target_lang, out_dir, quantization=None, advice=""):
    """CTranslate2's fairseq converter on ``checkpoint`` (dictionaries in ``data``, our plugin as its user dir)
    into the folder ``out_dir``, with CTranslate2's ``quantization`` (None: float32). Whatever the converter
    raises becomes one SeqKDError line naming the checkpoint (``advice`` appended); OSError passes through."""
    import fairseq_seqkd

    ctranslate2 = import_ctranslate2()
    try:
        converter = ctranslate2.converters.FairseqConverter(checkpoint, data, source_lang=source_lang,
                                                            target_lang=target_lang, user_dir=fairseq_seqkd.USER_DIR)
        converter.convert(out_dir, quantization=quantization, force=True)
    except (OSError, SeqKDError):
        raise
    except (NotImplementedError, ValueError) as e:
        raise SeqKDError(f"{checkpoint}: CTranslate2's converter refuses it ({_one_line(e)}){advice}") from None
    except Exception as e:  # the converter's own failures (KeyError, RuntimeError, ...): one line, not a traceback
        raise SeqKDError(f"{checkpoint}: CTranslate2 {ctranslate2.__version__}'s converter failed "
                         f"({type(e).__name__}: {_one_line(e)}){advice}") from None


def remove_older_copies(dest):
    """Remove the other converted copies beside ``dest`` that were made from the same checkpoint path (an
    earlier content, dictionary or CTranslate2 version); copies of other checkpoints are left alone."""
    folder, name = os.path.split(dest)
    stem = name.rsplit(".ct2-", 1)[0] + ".ct2-"
    mine = _source_of(dest)
    for entry in os.listdir(folder):
        other = os.path.join(folder, entry)
        if entry == name or not entry.startswith(stem) or not os.path.isdir(other) or entry.endswith((".tmp", ".old")):
            continue
        source = _source_of(other)
        if source is None or source == mine:  # no record: made by a version that keyed copies by content only
            logger.info("removing %s (an older converted copy of %s)", other, mine)
            shutil.rmtree(other, ignore_errors=True)


def _source_of(folder):
    try:
        with open(os.path.join(folder, SOURCE_RECORD), encoding="utf-8") as f:
            return json.load(f).get("checkpoint")
    except (OSError, ValueError, AttributeError):
        return None


def load_translator(path, data, source_lang, target_lang, sha256, cache_dir, **options):
    """(ctranslate2.Translator of ``path``'s converted copy, the copy's folder); a copy that does not load is
    converted again once; older copies of the same checkpoint are removed once it has loaded."""
    ctranslate2 = import_ctranslate2()
    folder = convert(path, data, source_lang, target_lang, sha256, cache_dir)
    try:
        translator = ctranslate2.Translator(folder, **options)
    except (RuntimeError, ValueError, OSError) as e:
        logger.warning("%s: CTranslate2 cannot load this converted copy (%s); converting again", folder,
                       _one_line(e))
        shutil.rmtree(folder, ignore_errors=True)
        folder = convert(path, data, source_lang, target_lang, sha256, cache_dir)
        try:
            translator = ctranslate2.Translator(folder, **options)
        except (RuntimeError, ValueError, OSError) as e:
            raise SeqKDError(f"{folder}: CTranslate2 {ctranslate2.__version__} cannot load the teacher it converted "
                             f"({_one_line(e)}); use --engine fairseq") from None
    remove_older_copies(folder)
    return translator, folder


class CTranslate2Engine(Engine):
    name = "ctranslate2"

    def __init__(self, task, model, path, quantize="float32", use_cuda=False, cache_dir=None, teacher_sha256=None,
                 threads=None, **search):
        super().__init__(task, model, **search)
        ctranslate2 = import_ctranslate2()
        if quantize in GPU_ONLY and not use_cuda:
            raise SeqKDError(f"--engine-quantize {quantize} needs a GPU; on the CPU use float32 or int8")
        from fairseq_seqkd.textio import file_sha256

        data = task.cfg.data.split(os.pathsep)[0]
        self.int8_isa = None  # what the CPU's int8 products run on (int8 on the CPU only)
        if quantize.startswith("int8") and not use_cuda:
            from fairseq_seqkd.int8_cpu import describe, this_cpu_ctranslate2_int8_isa

            self.int8_isa = this_cpu_ctranslate2_int8_isa()
            (logger.info if self.int8_isa and self.int8_isa.vnni else logger.warning)(
                "--engine ctranslate2 --engine-quantize %s: %s", quantize, describe(self.int8_isa))
        self.translator, self.folder = load_translator(
            path, data, task.cfg.source_lang, task.cfg.target_lang, teacher_sha256 or file_sha256(path), cache_dir,
            device="cuda" if use_cuda else "cpu", compute_type=quantize,
            intra_threads=threads or torch.get_num_threads())
        self.limited = 0  # sentences whose hypotheses reached the length limit (rescored)
        self.rescore_seconds = 0.0  # of self.seconds, the rescoring of those hypotheses

    def decode(self, dataset, batch):
        src_dict, tgt_dict = self.source_dictionary, self.target_dictionary
        sources = [[src_dict[t] for t in dataset[int(i)]["source"][:-1].tolist()] for i in batch]
        longest = max(len(s) for s in sources) + 1  # fairseq counts the </s>
        max_len = self.max_len(longest)
        start = time.perf_counter()
        results = self.translator.translate_batch(
            sources, beam_size=self.beam, num_hypotheses=self.beam, length_penalty=self.lenpen,
            max_decoding_length=max_len, min_decoding_length=1, max_input_length=0, return_scores=True,
            return_end_token=True)
        # Hypotheses cut at the length limit, all of the batch's in one scoring call (see the module docstring).
        cuts = [[h for h in r.hypotheses if not h or h[-1] != EOS] for r in results]
        pairs = [(source, h) for source, cut in zip(sources, cuts) for h in cut]
        rescore = time.perf_counter()
        scored = iter(self.translator.score_batch([s for s, _ in pairs], [h for _, h in pairs], max_input_length=0)
                      if pairs else [])
        self.rescore_seconds += time.perf_counter() - rescore
        out = [self._fairseq_hypotheses(r, cut, [sum(next(scored).log_probs) for _ in cut])
               for r, cut in zip(results, cuts)]
        self.seconds += time.perf_counter() - start
        return [self.sentence(dataset, i, [(score, [tgt_dict.index(t) for t in tokens]) for score, tokens in hyps])
                for i, hyps in zip(batch, out)]

    def note(self):
        isa = f"; int8 on {self.int8_isa.name}" if self.int8_isa else ""
        return (f"; {self.limited} sentences reached the length limit, their hypotheses rescored in "
                f"{self.rescore_seconds:.1f}s{isa}")

    def _fairseq_hypotheses(self, result, cut, cumulative):
        """[(score, tokens)] best first, as fairseq's beam search finishes them (see the module docstring);
        ``cumulative``: the log-probabilities of the ``cut`` hypotheses with a forced </s>."""
        ended = [(s, h[:-1]) for s, h in zip(result.scores, result.hypotheses) if h and h[-1] == EOS]
        if not cut:
            return ended
        self.limited += 1
        order = sorted(range(len(cut)), key=lambda k: -cumulative[k])[:max(self.beam - len(ended), 0)]
        hyps = ended + [(cumulative[k] / (len(cut[k]) + 1) ** self.lenpen, cut[k]) for k in order]
        ranks = torch.sort(torch.tensor([s for s, _ in hyps]), descending=True)[1].tolist()
        return [hyps[k] for k in ranks]
