"""The ``seqkd_translation`` task: fairseq's translation task plus the hooks Seq-KD needs.

* Every batch iterator uses ``required_batch_size_multiple=1``. The fairseq
  build we depend on (fairseq-fixed 0.12.3.1) drops the last batch of an
  epoch when its size is not a multiple of that value (default 8): with
  ``--task translation``, fairseq-generate silently skips up to 7 test
  sentences and training never sees the same few longest pairs. Distilled
  corpora must not lose lines, so this task never drops a batch.
* ``--kbest-out FILE`` (with fairseq-generate and ``--nbest K``): every
  hypothesis of the generated subset is written to FILE in corpus order (see
  :mod:`fairseq_seqkd.kbest`), once the last sentence has been generated, so
  Seq-Inter does not have to scrape fairseq-generate's output.
* Pruning masks are held fixed while training (§6): weights that are pruned
  stay exactly zero after every update. The mask comes from ``--prune-ratio``
  (magnitude pruning when training starts), from a resumed checkpoint of a
  pruned run, or from the exact zeros of a checkpoint written by
  ``seqkd-prune`` (a model whose weight matrices are at least 0.1% exact
  zeros, padding rows aside, is treated as pruned). Their gradients are
  zeroed after every backward pass (so gradient clipping, momentum and
  gradient accumulation never see them) and the weights re-zeroed after every
  optimizer step (a safety net for optimizer states restored from before
  pruning).
"""

import logging
import math
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq import utils
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from fairseq_seqkd import pruning
from fairseq_seqkd.kbest import Sentence, write_kbest_file
from fairseq_seqkd.textio import fail

logger = logging.getLogger(__name__)


@dataclass
class SeqKDTranslationConfig(TranslationConfig):
    kbest_out: Optional[str] = field(
        default=None,
        metadata={"help": "with fairseq-generate: write every --nbest hypothesis of the generated subset to "
                          "this K-best file, in corpus order (written when the last sentence is done)"},
    )
    prune_ratio: float = field(
        default=0.0,
        metadata={"help": "prune this fraction of the weights by magnitude when training starts and keep them "
                          "at zero (a model pruned with seqkd-prune needs no option)"},
    )
    prune_scheme: ChoiceEnum(pruning.SCHEMES) = field(
        default="class-blind", metadata={"help": "with --prune-ratio: one ranking over all weights, or per tensor"}
    )
    prune_scope: ChoiceEnum(pruning.SCOPES) = field(
        default="all", metadata={"help": "with --prune-ratio: prune embeddings too, or not"}
    )

#: a checkpoint whose weight matrices are at least this fraction exact zeros is treated as pruned
PRUNED_ZERO_FRACTION = 0.001


def setup_data_task(data, subset, source_lang=None, target_lang=None):
    """The task of a binarized data folder with ``subset`` loaded; one-line error if it cannot be."""
    cfg = SeqKDTranslationConfig(data=data, source_lang=source_lang, target_lang=target_lang,
                                 dataset_impl=None, required_seq_len_multiple=1, train_subset="train")
    try:
        task = SeqKDTranslationTask.setup_task(cfg)
        task.load_dataset(subset)
    except Exception as e:
        fail(f"{data}: cannot load subset '{subset}' ({type(e).__name__}: {e})")
    return task


def collate(dataset, batch, use_cuda=False):
    """The sample (fairseq's collated batch) of the dataset indices ``batch``, on the GPU if asked."""
    sample = dataset.collater([dataset[int(i)] for i in batch])
    return utils.move_to_cuda(sample) if use_cuda else sample


def hypothesis_strings(task, generator, sample, hypos, nbest):
    """Per sentence of a batch: a :class:`Sentence` with source, reference and ``nbest`` hypotheses.

    Strings are subword text as in fairseq-generate's S-/T-/H- lines without
    ``--post-process`` (unknown words stay ``<unk>``); scores are fairseq's
    H- scores (log base 2, length-normalised).
    """
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    strip = getattr(generator, "symbols_to_strip_from_output", None) or {generator.eos}
    target = sample.get("target")
    out = []
    for i, sid in enumerate(sample["id"].tolist()):
        src = utils.strip_pad(sample["net_input"]["src_tokens"][i], src_dict.pad())
        entry = Sentence(int(sid), source=src_dict.string(src, extra_symbols_to_ignore=strip))
        if target is not None:
            ref = utils.strip_pad(target[i], tgt_dict.pad()).int().cpu()
            entry.reference = tgt_dict.string(ref, extra_symbols_to_ignore=strip)
        entry.hyps = [
            (float(h["score"]) / math.log(2), tgt_dict.string(h["tokens"].int().cpu(), extra_symbols_to_ignore=strip))
            for h in hypos[i][:nbest]
        ]
        out.append(entry)
    return out


@register_task("seqkd_translation", dataclass=SeqKDTranslationConfig)
class SeqKDTranslationTask(TranslationTask):
    """Translation (``--task seqkd_translation``) that never drops a batch and can write K-best lists."""

    def __init__(self, cfg, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        self._kbest = {}
        self._kbest_nbest = 1
        self._warned_bsz_mult = False
        if not 0 <= cfg.prune_ratio < 1:
            raise ValueError(f"--prune-ratio {cfg.prune_ratio}: must be in [0, 1)")
        self._held = None  # [(name, parameter, mask)] once training has started
        self._restored_masks = None  # packed masks from a resumed checkpoint

    def get_batch_iterator(self, dataset, *args, required_batch_size_multiple=1, **kwargs):
        if required_batch_size_multiple != 1 and not self._warned_bsz_mult:
            logger.info(
                "using required_batch_size_multiple=1 instead of %d: fairseq would drop the last "
                "batch of each epoch otherwise", required_batch_size_multiple
            )
            self._warned_bsz_mult = True
        return super().get_batch_iterator(dataset, *args, required_batch_size_multiple=1, **kwargs)

    def build_generator(self, models, args, *rest, **kwargs):
        self._kbest_nbest = getattr(args, "nbest", 1) or 1
        return super().build_generator(models, args, *rest, **kwargs)

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        hypos = super().inference_step(generator, models, sample, prefix_tokens=prefix_tokens,
                                       constraints=constraints)
        if self.cfg.kbest_out:
            self._collect_kbest(generator, sample, hypos)
        return hypos

    def _collect_kbest(self, generator, sample, hypos):
        if len(self.datasets) != 1:
            raise ValueError(f"--kbest-out needs exactly one loaded subset (fairseq-generate --gen-subset), "
                             f"found {sorted(self.datasets)}")
        for entry in hypothesis_strings(self, generator, sample, hypos, self._kbest_nbest):
            self._kbest[entry.id] = entry
        total = len(next(iter(self.datasets.values())))
        if len(self._kbest) == total:
            write_kbest_file(self.cfg.kbest_out, [self._kbest[i] for i in sorted(self._kbest)], self._kbest_nbest)
            logger.info("wrote the K-best lists of %d sentences to %s", total, self.cfg.kbest_out)
            self._kbest = {}

    # -- pruning masks held fixed ------------------------------------------------------------

    def begin_epoch(self, epoch, model):
        super().begin_epoch(epoch, model)
        if self._held is None:
            self._held = self._masks_for(model)

    def _masks_for(self, model):
        params = dict(model.named_parameters())
        if self._restored_masks:
            masks = {name: pruning.unpack(packed) for name, packed in self._restored_masks.items()}
            source = "the resumed checkpoint"
        else:
            weights = pruning.prunable(params, "all")
            zeros = {name: p.detach() == 0 for name, p in weights.items()}
            pad_rows = sum(int(zeros[n][self.src_dict.pad() if n.startswith("encoder") else self.tgt_dict.pad()]
                               .sum()) for n in zeros if "embed_tokens" in n)
            n_zero = sum(int(z.sum()) for z in zeros.values()) - pad_rows
            n_all = sum(p.numel() for p in weights.values())
            ratio = self.cfg.prune_ratio
            if ratio > 0 and n_zero < round(ratio * n_all):
                masks = pruning.magnitude_masks(params, ratio, self.cfg.prune_scheme, self.cfg.prune_scope)
                pruning.apply_masks(params.items(), masks)
                source = f"--prune-ratio {ratio} ({self.cfg.prune_scheme}, {self.cfg.prune_scope})"
            elif n_zero >= PRUNED_ZERO_FRACTION * n_all:
                masks = {name: ~z for name, z in zeros.items()}
                source = "the exact zeros of the restored checkpoint"
            else:
                return []
        held = [(name, params[name], mask.to(params[name].device)) for name, mask in masks.items()
                if name in params and not bool(mask.all())]
        pruned = sum(int((~m).sum()) for _, _, m in held)
        total = sum(p.numel() for p in pruning.prunable(params, "all").values())
        logger.info("holding %d pruned weights (%.1f%% of %d) at zero, from %s", pruned, 100 * pruned / total,
                    total, source)
        return held

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        result = super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)
        for _, param, mask in self._held or ():
            if param.grad is not None:
                param.grad.masked_fill_(~mask, 0)
        return result

    def optimizer_step(self, optimizer, model, update_num):
        super().optimizer_step(optimizer, model, update_num)
        with torch.no_grad():
            for _, param, mask in self._held or ():
                param.masked_fill_(~mask, 0)

    def get_checkpoint_dict(self):
        if not self._held:
            return {}
        return {self.__class__.__name__: {"prune_masks": {name: pruning.pack(m) for name, _, m in self._held}}}

    def set_checkpoint_dict(self, state):
        self._restored_masks = state.get("prune_masks")
