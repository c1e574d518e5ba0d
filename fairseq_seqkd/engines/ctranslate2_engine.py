"""The ``ctranslate2`` engine: a teacher converted with CTranslate2's fairseq converter, decoded by it.

Conversion happens once per checkpoint *content*: the converted model is the folder
``CACHE/NAME.ct2-SHA`` (CACHE: ``--engine-cache``, else the checkpoint's folder; NAME: the checkpoint's
file name; SHA: the first 16 hex digits of its sha256), published whole (a temporary folder renamed
into place), so a changed checkpoint gets a new one and an interrupted conversion leaves none. It is
stored in float32; ``--engine-quantize`` is CTranslate2's ``compute_type`` when it is loaded.

Sources go in as the subword strings of their ids (CTranslate2 adds the source </s> itself), the
batch's length limit as ``max_decoding_length``. Where a hypothesis reaches the limit, fairseq and
CTranslate2 differ: fairseq forces </s> there and scores it, CTranslate2 stops without it. Those
sentences are made fairseq's again: every hypothesis that reached the limit is rescored with its
forced </s> (CTranslate2's ``score_batch``), fairseq's normalisation ``sum / (length + 1) ** lenpen``
applied, and the finished hypotheses taken and sorted as fairseq takes and sorts them.
"""

import logging
import math
import os
import time

import torch

from fairseq_seqkd.engines.base import Engine
from fairseq_seqkd.engines import GPU_ONLY
from fairseq_seqkd.errors import SeqKDError

logger = logging.getLogger(__name__)

INSTALL = "pip install 'fairseq-seqkd[fast]' (or: pip install ctranslate2)"
EOS = "</s>"


def import_ctranslate2():
    try:
        import ctranslate2
    except ModuleNotFoundError as e:
        if e.name != "ctranslate2":
            raise
        raise SeqKDError(f"--engine ctranslate2 needs the ctranslate2 package: {INSTALL}") from None
    return ctranslate2


def converted_path(checkpoint, sha256, cache_dir=None):
    """Where the converted copy of ``checkpoint`` (content ``sha256``) lives."""
    folder = cache_dir or os.path.dirname(os.path.abspath(checkpoint))
    return os.path.join(folder, f"{os.path.basename(checkpoint)}.ct2-{sha256[:16]}")


def convert(checkpoint, data, source_lang, target_lang, sha256, cache_dir=None):
    """The converted copy of ``checkpoint`` (made now if there is none); its folder."""
    import fairseq_seqkd
    from fairseq_seqkd.textio import atomic_dir

    ctranslate2 = import_ctranslate2()
    dest = converted_path(checkpoint, sha256, cache_dir)
    if os.path.isfile(os.path.join(dest, "model.bin")):
        return dest
    logger.info("converting %s for CTranslate2 %s into %s (once for this checkpoint)", checkpoint,
                ctranslate2.__version__, dest)
    converter = ctranslate2.converters.FairseqConverter(checkpoint, data, source_lang=source_lang,
                                                        target_lang=target_lang, user_dir=fairseq_seqkd.USER_DIR)
    try:
        with atomic_dir(dest) as tmp:
            converter.convert(tmp, force=True)
    except PermissionError as e:
        raise SeqKDError(f"{dest}: cannot write the converted teacher ({e.strerror}); name a writable folder "
                         f"with --engine-cache DIR") from None
    except (NotImplementedError, ValueError) as e:
        raise SeqKDError(f"{checkpoint}: CTranslate2's converter refuses it ({' '.join(str(e).split())[:200]}); "
                         f"use --engine fairseq") from None
    return dest


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
        self.folder = convert(path, data, task.cfg.source_lang, task.cfg.target_lang,
                              teacher_sha256 or file_sha256(path), cache_dir)
        self.translator = ctranslate2.Translator(self.folder, device="cuda" if use_cuda else "cpu",
                                                 compute_type=quantize, intra_threads=threads or torch.get_num_threads())
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
        return (f"; {self.limited} sentences reached the length limit, their hypotheses rescored in "
                f"{self.rescore_seconds:.1f}s")

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
