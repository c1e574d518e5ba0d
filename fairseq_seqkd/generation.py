"""One model and one split through fairseq's own generation: the setup and decode path that Seq-KD
(:mod:`fairseq_seqkd.distill`) and evaluation (:mod:`fairseq_seqkd.evaluation`) share.

Everything is fairseq's: the translation task loads the binarized split and builds the model and its
``SequenceGenerator``; we fix the batches once (fairseq's length-sorted batching, no batch dropped),
place the model as fairseq-generate does (``--cpu``, ``--fp16``, ``make_generation_fast_``) and turn the
hypotheses into the strings fairseq-generate prints, so that our outputs equal its outputs.
"""

import argparse
import logging
import math
import os
import sys
import time
from typing import List

import numpy as np
import torch

from fairseq_seqkd.checkpoints import load_model
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.kbest import Sentence

logger = logging.getLogger(__name__)


def load_split(data, subset, source_lang=None, target_lang=None):
    """fairseq's translation task for a binarized data folder, with ``subset`` loaded (SeqKDError if it
    cannot be)."""
    from fairseq.tasks.translation import TranslationConfig, TranslationTask

    if not os.path.isdir(data):
        raise SeqKDError(f"{data}: no such data folder")
    cfg = TranslationConfig(data=data, source_lang=source_lang, target_lang=target_lang, dataset_impl=None,
                            required_seq_len_multiple=1, train_subset="train")
    try:
        task = TranslationTask.setup_task(cfg)
        task.load_dataset(subset)
    except Exception as e:
        raise SeqKDError(f"{data}: cannot load subset '{subset}' ({type(e).__name__}: {e})") from None
    return task


def load_for_generation(path, task, what="model", cpu=False, fp16=False):
    """The model of ``path`` (dictionaries checked against ``task``'s), placed as fairseq-generate places it:
    half precision with ``fp16``, on the GPU unless ``cpu`` or none is available. Returns (model, use_cuda)."""
    model = load_model(path, task, what=what)
    use_cuda = torch.cuda.is_available() and not cpu
    if fp16:
        model.half()
    if use_cuda:
        model.cuda()
    model.make_generation_fast_()
    return model, use_cuda


def fixed_batches(task, model, subset, max_tokens=None, batch_size=None, what="model"):
    """The batches (arrays of dataset indices) of ``subset``: fairseq's length-sorted batching, fixed once.

    Only sources go through the model (targets are references), and every sentence is kept: a source longer
    than the model's positions is a SeqKDError naming the sentence, not a sentence silently skipped.

    ``max_tokens`` is fairseq's: a batch's sentences times its largest ``max(source, target)`` length, </s>
    included. fairseq-generate asserts on a sentence above it and fairseq-train drops it; here each such
    sentence gets a batch of its own, after the others (in fairseq's order), with one warning naming them,
    and the others are fairseq-train's batches. Without such sentences the batches are exactly fairseq's.
    """
    from fairseq import utils

    for name, value in (("max-tokens", max_tokens), ("batch-size", batch_size)):
        if value is not None and value < 1:  # fairseq would read it as no limit
            raise SeqKDError(f"--{name} {value}: must be at least 1")
    dataset = task.dataset(subset)
    max_source = utils.resolve_max_positions(task.max_positions(), model.max_positions())[0]
    too_long = (dataset.src_sizes > max_source).nonzero()[0]
    if len(too_long):
        i = int(too_long[0])
        raise SeqKDError(f"{task.cfg.data}: sentence {i} of {subset} has {dataset.src_sizes[i]} source tokens "
                         f"(with </s>), more than the {what}'s {max_source} positions ({len(too_long)} such "
                         f"sentence(s)); drop or split them before fairseq-preprocess")

    def batch_iterator(max_tokens, max_sentences):
        return task.get_batch_iterator(
            dataset, max_tokens=max_tokens, max_sentences=max_sentences, max_positions=(max_source, sys.maxsize),
            ignore_invalid_inputs=False, required_batch_size_multiple=1, seed=1, num_workers=0,
            disable_iterator_cache=True,
        )

    if max_tokens is None or not (dataset.num_tokens_vec(np.arange(len(dataset))) > max_tokens).any():
        return batch_iterator(max_tokens, batch_size).frozen_batches
    order = batch_iterator(None, None).frozen_batches[0]  # fairseq's order: one batch of every sentence
    over = dataset.num_tokens_vec(order) > max_tokens
    alone = order[over]
    _warn_alone(task.cfg.data, subset, dataset, alone, max_tokens)
    batches = dataset.batch_by_size(order[~over], max_tokens=max_tokens, max_sentences=batch_size,
                                    required_batch_size_multiple=1)
    return tuple(batches) + tuple(alone[k:k + 1] for k in range(len(alone)))


def _warn_alone(data, subset, dataset, alone, max_tokens, shown=10):
    """One warning naming the sentences over ``max_tokens`` (the first ``shown``, by index) and their lengths."""
    named = []
    for i in sorted(alone.tolist())[:shown]:
        target = f", {dataset.tgt_sizes[i]} target" if dataset.tgt_sizes is not None else ""
        named.append(f"sentence {i}: {dataset.src_sizes[i]} source{target} tokens")
    more = f"; {len(alone) - shown} more" if len(alone) > shown else ""
    logger.warning("%s: %d sentence(s) of %s have more tokens than --max-tokens %d: each gets a batch of its own "
                   "(%s%s; with </s>)", data, len(alone), subset, max_tokens, "; ".join(named), more)


def batches_digest(batches):
    """A digest of fixed batches, their boundaries included: a resumed or merged shard must see the same."""
    import hashlib

    return hashlib.sha1(b"".join(np.int64(len(b)).tobytes() + np.asarray(b, dtype=np.int64).tobytes()
                                 for b in batches)).hexdigest()


def shard_batches(batches, shard_id, num_shards):
    """[(j, batch)] of the fixed batches that shard ``shard_id`` of ``num_shards`` takes: j = shard_id + k N."""
    return [(j, b) for j, b in enumerate(batches) if j % num_shards == shard_id]


def collate(dataset, indices, use_cuda=False):
    """The sample (fairseq's collated batch) of the dataset ``indices``, on the GPU if asked."""
    from fairseq import utils

    sample = dataset.collater([dataset[int(i)] for i in indices])
    return utils.move_to_cuda(sample) if use_cuda else sample


class Generator:
    """fairseq's SequenceGenerator for one model, built by the task as fairseq-generate builds it.

    ``generate(sample)`` returns fairseq's hypotheses (best first per sentence); ``seconds`` adds up the
    time spent in it (the GPU synchronised around each call).
    """

    def __init__(self, task, model, beam=5, nbest=1, max_len_a=0.0, max_len_b=200, lenpen=1.0):
        self.task, self.model, self.nbest = task, model, nbest
        self.generator = task.build_generator([model], argparse.Namespace(
            beam=beam, nbest=nbest, max_len_a=max_len_a, max_len_b=max_len_b, lenpen=lenpen))
        self.cuda = next(model.parameters()).is_cuda
        self.seconds = 0.0

    def generate(self, sample):
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        hypos = self.task.inference_step(self.generator, [self.model], sample)
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        return hypos

    def kbest_sentences(self, sample, hypos) -> List[Sentence]:
        """:func:`kbest_sentences` of a batch this generator decoded."""
        return kbest_sentences(self.task, self.generator, sample, hypos, self.nbest)


def output_symbols(generator):
    """The symbols fairseq-generate strips from its output lines (EOS, and BOS where the generator adds it)."""
    return getattr(generator, "symbols_to_strip_from_output", None) or {generator.eos}


def reference_string(dictionary, tokens, symbols_to_strip):
    """A reference as fairseq-generate's T- line writes it: subword text, unknown words escaped (``<<unk>>``,
    so that a model's ``<unk>`` never matches one)."""
    from fairseq import utils

    tokens = utils.strip_pad(tokens, dictionary.pad()).int().cpu()
    return dictionary.string(tokens, escape_unk=True, extra_symbols_to_ignore=symbols_to_strip)


def kbest_sentences(task, generator, sample, hypos, nbest) -> List[Sentence]:
    """The K-best list of every sentence of a batch: a :class:`~fairseq_seqkd.kbest.Sentence` with its source,
    reference and ``nbest`` hypotheses, as fairseq-generate's S-, T- and H- lines (without ``--post-process``:
    subword text) and H- scores (log base 2, length-normalised)."""
    from fairseq import utils

    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    strip = output_symbols(generator)
    target = sample.get("target")
    out = []
    for i, sid in enumerate(sample["id"].tolist()):
        src = utils.strip_pad(sample["net_input"]["src_tokens"][i], src_dict.pad())
        entry = Sentence(int(sid), source=src_dict.string(src, extra_symbols_to_ignore=strip))
        if target is not None:
            entry.reference = reference_string(tgt_dict, target[i], strip)
        entry.hyps = [
            (float(h["score"]) / math.log(2), tgt_dict.string(h["tokens"].int().cpu(), extra_symbols_to_ignore=strip))
            for h in hypos[i][:nbest]
        ]
        out.append(entry)
    return out
