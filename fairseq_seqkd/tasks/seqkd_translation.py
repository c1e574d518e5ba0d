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
  Seq-Inter does not have to scrape fairseq-generate's output. The batches
  must cover the whole subset: a sentence dropped by fairseq's size filter
  (``--skip-invalid-size-inputs-valid-test``) or left to another shard
  (``--distributed-world-size``) stops the run before decoding. A FILE of an
  earlier run is removed when the run starts, so a failed run never leaves
  one that looks current. The lists are spooled to temporary files next to
  FILE (:class:`KBestSpool`), so memory does not grow with the subset.
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
* ``--one-target-per-epoch``: the training split has several targets per
  source (``seqkd-distill --keep N --binarize DATA`` writes them with
  ``DATA/train.ids``, each pair's source id). Every epoch trains on one of each
  source's targets, drawn at random with a generator seeded by (``--seed``,
  epoch), so an epoch has as many pairs as the original corpus
  (:mod:`fairseq_seqkd.multi_target`). Without it all N pairs are ordinary
  training data.

Bad options and inputs stop with a one-line ``error: ...`` (exit status 1), not a traceback.
"""

import io
import logging
import os
import tempfile
import weakref
from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np
import torch
from fairseq import utils
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from fairseq_seqkd import pruning
from fairseq_seqkd.errors import SeqKDError, exit_on_error
from fairseq_seqkd.generation import kbest_sentences
from fairseq_seqkd.kbest import Sentence, kbest_header, write_kbest_rows
from fairseq_seqkd.multi_target import OneTargetPerSource, read_ids
from fairseq_seqkd.textio import atomic_open, make_folder, remove_stale_temporaries, temporary_prefix

logger = logging.getLogger(__name__)


def _remove_files(paths):
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


class KBestSpool:
    """K-best lists of ``sentences`` sentences that arrive in any order, written to ``path`` in id order once
    the last one is in, with memory that does not grow with the number of sentences.

    Each sentence's rows (in the K-best file's format) are appended to a temporary spill file next to
    ``path``; a temporary index next to it (memory-mapped int64: sentence id -> spill offset, rows' size + 1,
    0 while not yet in) says where. The last :meth:`add` writes ``path`` atomically by copying the rows in
    id order, and removes the temporaries (also removed at exit if the run stops before).
    """

    INDEX_CHUNK = 4096  # index rows read at a time when writing
    MAX_READ = 1 << 18  # bytes copied from the spill at a time

    def __init__(self, path, sentences):
        self.path, self.sentences, self.done, self.written = path, sentences, 0, False
        folder = os.path.dirname(os.path.abspath(path))
        make_folder(folder)
        remove_stale_temporaries(path)  # those of a run killed before it could remove them
        prefix = temporary_prefix(path)
        self._spill = tempfile.NamedTemporaryFile(prefix=prefix, suffix=".spill.tmp", dir=folder, delete=False)
        fd, index_path = tempfile.mkstemp(prefix=prefix, suffix=".index.tmp", dir=folder)
        os.close(fd)
        self._paths = [self._spill.name, index_path]
        self._cleanup = weakref.finalize(self, _remove_files, self._paths)
        self._index = None  # an ndarray view of the memory map: faster to index one row at a time
        if sentences:
            self._index = np.memmap(index_path, dtype=np.int64, mode="w+", shape=(sentences, 2)).view(np.ndarray)
        self._size = 0

    def add(self, entries: Iterable[Sentence], nbest) -> bool:
        """Spool ``entries``; once all sentences are in, write ``path`` (header: ``nbest``) and return True."""
        if self.written:
            raise SeqKDError(f"--kbest-out {self.path}: more sentences after all {self.sentences} were written")
        for entry in entries:
            sid = entry.id
            if not 0 <= sid < self.sentences:
                raise SeqKDError(f"--kbest-out {self.path}: sentence id {sid} is not one of the "
                                 f"{self.sentences} sentences of the subset")
            if self._index[sid, 1]:
                raise SeqKDError(f"--kbest-out {self.path}: sentence {sid} was generated twice")
            rows = io.StringIO()
            write_kbest_rows(rows, entry)
            data = rows.getvalue().encode("utf-8")
            self._spill.write(data)
            self._index[sid] = (self._size, len(data) + 1)
            self._size += len(data)
            self.done += 1
        if self.done < self.sentences:
            return False
        self._write(nbest)
        return True

    def _write(self, nbest):
        self._spill.close()
        with open(self._paths[0], "rb") as spill, atomic_open(self.path, "wb") as out:
            out.write(kbest_header(self.sentences, nbest).encode("utf-8"))
            fd, start, end = spill.fileno(), 0, 0  # the run of spill bytes to copy next
            for first in range(0, self.sentences, self.INDEX_CHUNK):
                for offset, size in self._index[first:first + self.INDEX_CHUNK].tolist():
                    if offset != end or end - start >= self.MAX_READ:
                        out.write(os.pread(fd, end - start, start))
                        start = offset
                    end = offset + size - 1
            out.write(os.pread(fd, end - start, start))
        self.written = True
        self.close()

    def close(self):
        """Remove the temporary files (the spill and the index)."""
        if not self._spill.closed:
            self._spill.close()
        self._index = None
        self._cleanup()


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
    same_batches_every_epoch: bool = field(
        default=False,
        metadata={"help": "build the training batches once, with the seed of the epoch the process starts in "
                          "(fairseq's own default), instead of anew each epoch from that epoch's seed. Off by "
                          "default: with batches built per epoch, a run resumed from a checkpoint trains on the "
                          "same batches as an uninterrupted one (bit-identical on the CPU)"},
    )
    one_target_per_epoch: bool = field(
        default=False,
        metadata={"help": "the training split has several targets per source (seqkd-distill --keep N): read each "
                          "pair's source id from DATA/TRAIN_SUBSET.ids and train each epoch on one target per "
                          "source, drawn at random with a generator seeded by (--seed, epoch), so that an epoch "
                          "has as many pairs as there are sources"},
    )
    seed: int = II("common.seed")
    train_subset: str = II("dataset.train_subset")
    # where fairseq-train starts from (its checkpoint options), to read that checkpoint's pruning mask
    save_dir: str = II("checkpoint.save_dir")
    restore_file: str = II("checkpoint.restore_file")
    finetune_from_model: Optional[str] = II("checkpoint.finetune_from_model")
    continue_once: Optional[str] = II("checkpoint.continue_once")
    checkpoint_suffix: str = II("checkpoint.checkpoint_suffix")


def _set_config(cfg, key, value):
    """Set ``key`` of a task config, an omegaconf DictConfig (closed to new keys) or a Namespace."""
    try:
        from omegaconf import DictConfig, open_dict
    except ImportError:  # pragma: no cover (fairseq depends on omegaconf)
        DictConfig = ()
    if isinstance(cfg, DictConfig):
        with open_dict(cfg):
            cfg[key] = value
    else:
        setattr(cfg, key, value)


@register_task("seqkd_translation", dataclass=SeqKDTranslationConfig)
class SeqKDTranslationTask(TranslationTask):
    """Translation (``--task seqkd_translation``) that never drops a batch, can write K-best lists and holds
    pruning masks."""

    def __init__(self, cfg, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        # fairseq builds a run's batches once, from numpy_seed(seed + the epoch the process starts in), so a
        # process resumed at epoch 3 would group sentences differently from one that started at epoch 1;
        # fairseq's own `rebuild_batches` task setting builds epoch e's batches from seed + e in every process.
        _set_config(cfg, "rebuild_batches", not getattr(cfg, "same_batches_every_epoch", False))
        with exit_on_error():
            if not 0 <= cfg.prune_ratio < 1:
                raise SeqKDError(f"--prune-ratio {cfg.prune_ratio}: must be in [0, 1)")
            if getattr(cfg, "one_target_per_epoch", False) and getattr(cfg, "same_batches_every_epoch", False):
                raise SeqKDError("--one-target-per-epoch draws other pairs every epoch, which needs batches built "
                                 "anew each epoch: drop --same-batches-every-epoch")
        self._kbest = None  # the KBestSpool of --kbest-out once the first batch is generated
        self._kbest_started = False  # whether FILE of an earlier run has been removed
        self._kbest_nbest = 1
        self._warned_bsz_mult = False
        self._held = None  # [(name, parameter, mask)] once training has started
        self._restored_masks = None  # masks from a resumed checkpoint (set_checkpoint_dict)

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        super().load_dataset(split, epoch=epoch, combine=combine, **kwargs)
        if getattr(self.cfg, "one_target_per_epoch", False) and split == self.cfg.train_subset:
            paths = utils.split_paths(self.cfg.data)
            path = os.path.join(paths[(epoch - 1) % len(paths)], f"{split}.ids")
            pairs = self.datasets[split]
            with exit_on_error():
                ids = read_ids(path, len(pairs), split)
            wrapped = self.datasets[split] = OneTargetPerSource(pairs, ids, self.cfg.seed, epoch)
            logger.info("--one-target-per-epoch: %d pairs of %d sources in %s; each epoch trains on one pair per "
                        "source (ids from %s)", len(pairs), wrapped.sources, split, path)

    def get_batch_iterator(self, dataset, *args, required_batch_size_multiple=1, **kwargs):
        if required_batch_size_multiple != 1 and not self._warned_bsz_mult:
            logger.info(
                "using required_batch_size_multiple=1 instead of %d: fairseq would drop the last "
                "batch of each epoch otherwise", required_batch_size_multiple
            )
            self._warned_bsz_mult = True
        itr = super().get_batch_iterator(dataset, *args, required_batch_size_multiple=1, **kwargs)
        if self.cfg.kbest_out and self._kbest_subset(dataset) is not None:
            with exit_on_error():
                self._start_kbest()
                self._check_kbest_coverage(dataset, itr, kwargs.get("max_positions"))
        return itr

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

    # -- --kbest-out ---------------------------------------------------------------------------

    def _kbest_subset(self, dataset):
        """The name of ``dataset`` when it is the one loaded subset (the one --kbest-out writes), else None."""
        if len(self.datasets) == 1:
            name, loaded = next(iter(self.datasets.items()))
            if loaded is dataset:
                return name
        return None

    def _start_kbest(self):
        """Remove FILE of an earlier run (once per run), so that it is never mistaken for this run's."""
        if self._kbest_started:
            return
        self._kbest_started = True
        path = self.cfg.kbest_out
        if os.path.lexists(path):
            try:
                os.remove(path)
            except OSError as e:
                raise SeqKDError(f"--kbest-out {path}: cannot remove the file of an earlier run "
                                 f"({e.strerror})") from None
            logger.info("removed %s of an earlier run: it is written anew once the last sentence is generated",
                        path)

    def _check_kbest_coverage(self, dataset, itr, max_positions):
        """SeqKDError unless the batches this process will generate hold every sentence of the subset."""
        total, name = len(dataset), self._kbest_subset(dataset)
        if total == 0:
            raise SeqKDError(f"--kbest-out {self.cfg.kbest_out}: subset {name} has no sentences")
        batches = itr.frozen_batches
        kept = np.zeros(total, dtype=bool)
        for batch in batches:
            kept[batch] = True
        filtered = total - int(kept.sum())
        if itr.num_shards > 1:  # fairseq-generate gives shard k the batches k, k + N, k + 2N, ... (no shuffling)
            kept[:] = False
            for batch in batches[itr.shard_id::itr.num_shards]:
                kept[batch] = True
        missing = np.flatnonzero(~kept)
        if not len(missing):
            return
        reasons = []
        if filtered:
            reasons.append(f"{filtered} longer than the max positions {max_positions} and dropped by "
                           f"--skip-invalid-size-inputs-valid-test")
        if len(missing) > filtered:
            reasons.append(f"{len(missing) - filtered} left to other shards (this is shard {itr.shard_id} of "
                           f"{itr.num_shards}, --distributed-world-size/--distributed-rank)")
        first = ", ".join(str(i) for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise SeqKDError(f"--kbest-out {self.cfg.kbest_out} needs every sentence of {name}, "
                         f"but {len(missing)} of its {total} would not be generated (ids {first}): "
                         f"{'; '.join(reasons)}")

    def _collect_kbest(self, generator, sample, hypos):
        if len(self.datasets) != 1:
            raise SeqKDError(f"--kbest-out needs exactly one loaded subset (fairseq-generate --gen-subset), "
                             f"found {sorted(self.datasets)}")
        if self._kbest is None:
            self._start_kbest()
            self._kbest = KBestSpool(self.cfg.kbest_out, len(next(iter(self.datasets.values()))))
        if self._kbest.add(kbest_sentences(self, generator, sample, hypos, self._kbest_nbest), self._kbest_nbest):
            logger.info("wrote the K-best lists of %d sentences to %s", self._kbest.sentences, self.cfg.kbest_out)
            self._kbest = None

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
