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
  stay exactly zero after every update. The mask is the one the checkpoint
  that training starts from carries (``seqkd-prune``'s output, or a checkpoint
  of a pruned run, through ``--finetune-from-model``, ``--restore-file`` or a
  resumed run; see :mod:`fairseq_seqkd.pruning`), or comes from
  ``--prune-ratio`` (magnitude pruning when training starts). Their gradients
  are zeroed after every backward pass (so gradient clipping, momentum and
  gradient accumulation never see them) and the weights re-zeroed after every
  optimizer step (a safety net for optimizer states restored from before
  pruning). With plain ``--fp16`` fairseq's FP16Optimizer keeps an fp32 master
  copy of the weights, which is not masked: its pruned entries can only move
  through optimizer state restored from before pruning, they reach the model
  only inside the optimizer step, right before the re-zeroing, and they are
  never saved (a checkpoint holds the model's weights; the master copy is
  rebuilt from them on resume).

Bad options and inputs stop with a one-line ``error: ...`` (exit status 1), not a traceback.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from fairseq_seqkd import pruning
from fairseq_seqkd.errors import SeqKDError, exit_on_error
from fairseq_seqkd.generation import kbest_sentences
from fairseq_seqkd.kbest import write_kbest_file

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
    # where fairseq-train starts from (its checkpoint options), to read that checkpoint's pruning mask
    save_dir: str = II("checkpoint.save_dir")
    restore_file: str = II("checkpoint.restore_file")
    finetune_from_model: Optional[str] = II("checkpoint.finetune_from_model")
    continue_once: Optional[str] = II("checkpoint.continue_once")
    checkpoint_suffix: str = II("checkpoint.checkpoint_suffix")


@register_task("seqkd_translation", dataclass=SeqKDTranslationConfig)
class SeqKDTranslationTask(TranslationTask):
    """Translation (``--task seqkd_translation``) that never drops a batch, can write K-best lists and holds
    pruning masks."""

    def __init__(self, cfg, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        with exit_on_error():
            if not 0 <= cfg.prune_ratio < 1:
                raise SeqKDError(f"--prune-ratio {cfg.prune_ratio}: must be in [0, 1)")
        self._kbest = {}
        self._kbest_nbest = 1
        self._warned_bsz_mult = False
        self._held = None  # [(name, parameter, mask)] once training has started
        self._restored_masks = None  # masks from a resumed checkpoint (set_checkpoint_dict)

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
            with exit_on_error():
                self._collect_kbest(generator, sample, hypos)
        return hypos

    def _collect_kbest(self, generator, sample, hypos):
        if len(self.datasets) != 1:
            raise SeqKDError(f"--kbest-out needs exactly one loaded subset (fairseq-generate --gen-subset), "
                             f"found {sorted(self.datasets)}")
        for entry in kbest_sentences(self, generator, sample, hypos, self._kbest_nbest):
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
            with exit_on_error():
                self._held = self._masks_for(model)

    def started_from(self):
        """The checkpoint fairseq-train restored this run from (None: a fresh model), by the rules of
        fairseq's ``checkpoint_utils.load_checkpoint``."""
        cfg = self.cfg
        if cfg.restore_file != "checkpoint_last.pt":
            return cfg.restore_file
        last = os.path.join(cfg.save_dir, f"checkpoint_last{cfg.checkpoint_suffix or ''}.pt")
        if os.path.exists(last):
            return last
        return cfg.continue_once or cfg.finetune_from_model or None

    def _masks_for(self, model):
        params = dict(model.named_parameters())
        masks, source = self._restored_masks, "the resumed checkpoint"
        if masks is None:
            source = self.started_from()
            masks = pruning.read_masks(source) if source and os.path.isfile(source) else None
        if masks is not None:
            pruning.check_masks(masks, params, source)
        ratio = self.cfg.prune_ratio
        total = sum(p.numel() for p in pruning.prunable(params, "all").values())
        pruned_before = sum(int((~m).sum()) for m in masks.values()) if masks else 0
        if ratio > 0 and pruned_before < round(ratio * total):
            more = pruning.magnitude_masks(params, ratio, self.cfg.prune_scheme, self.cfg.prune_scope)
            masks = {name: m & masks[name].to(m.device) if masks and name in masks else m for name, m in more.items()}
            source = f"--prune-ratio {ratio} ({self.cfg.prune_scheme}, {self.cfg.prune_scope})"
        if not masks:
            return []
        pruning.apply_masks(params.items(), masks)
        held = [(name, params[name], mask.to(params[name].device)) for name, mask in masks.items()
                if not bool(mask.all())]
        pruned = sum(int((~m).sum()) for _, _, m in held)
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
        return {pruning.TASK_STATE_KEY: pruning.task_state({name: m for name, _, m in self._held})}

    def set_checkpoint_dict(self, state):
        self._restored_masks = pruning.masks_of_task_state(state)
