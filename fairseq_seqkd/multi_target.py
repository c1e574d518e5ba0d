"""Training data with several targets per source (``seqkd-distill --keep N``): its ids file, and one target per
source per epoch (``fairseq-train --task seqkd_translation --one-target-per-epoch``).

The ids file (``OUT.ids``, ``DATA/train.ids`` once binarized) has one line per training pair: the 0-based id
of the source sentence the pair comes from, as a decimal number. Lines of the same id need not be adjacent.

:class:`OneTargetPerSource` wraps the training split: its items are the split's own (same indices, same
``id`` in a batch), but each epoch's batches are built from one pair per source, drawn uniformly at random
with ``numpy.random.default_rng([seed, epoch])``. The draw is a pure function of (seed, epoch): a resumed
run, every DDP rank and every data-loader worker see the same one. fairseq calls ``set_epoch`` before it
builds an epoch's batches (the task's ``rebuild_batches``), and the dataset says it cannot reuse an epoch
iterator across epochs. Only ``ordered_indices`` changes with the epoch: items, sizes and the size filter
are the wrapped split's, so data-loader workers that keep an old copy of the dataset stay correct.
"""

import logging

import numpy as np
from fairseq.data import BaseWrapperDataset

from fairseq_seqkd.errors import SeqKDError

logger = logging.getLogger(__name__)


def read_ids(path, expected, split="train"):
    """The source ids of the ``expected`` pairs of ``split`` from the ids file ``path`` (int64 array);
    SeqKDError naming the file and line if it is missing or malformed or has another number of lines."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise SeqKDError(f"{path}: missing: --one-target-per-epoch needs the source id of every {split} pair "
                         f"(seqkd-distill --keep N --binarize DIR writes DIR/train.ids)") from None
    except OSError as e:
        raise SeqKDError(f"{path}: {e.strerror.lower()}") from None
    lines = raw.split(b"\n")
    if lines[-1]:
        raise SeqKDError(f"{path}:{len(lines)}: truncated: the last line has no newline")
    lines.pop()
    for number, line in enumerate(lines, 1):
        if not line.isdigit():
            text = line.decode("utf-8", "replace")
            raise SeqKDError(f"{path}:{number}: {text[:40]!r} is not a sentence id (a number >= 0)")
    if len(lines) < expected:
        raise SeqKDError(f"{path}:{len(lines) + 1}: missing: {len(lines)} ids for the {expected} pairs of {split}")
    if len(lines) > expected:
        raise SeqKDError(f"{path}:{expected + 1}: more ids than the {expected} pairs of {split}")
    return np.array(lines).astype(np.int64) if lines else np.zeros(0, np.int64)


class OneTargetPerSource(BaseWrapperDataset):
    """``dataset`` (pairs whose sources are ``source_ids``) of which each epoch uses one pair per source."""

    def __init__(self, dataset, source_ids, seed, epoch=1):
        super().__init__(dataset)
        if len(source_ids) != len(dataset):
            raise SeqKDError(f"{len(source_ids)} source ids for {len(dataset)} pairs")
        self.seed = seed
        # the pairs grouped by source (stable: in line order within a source)
        self._by_source = np.argsort(source_ids, kind="stable")
        _, self._first, self._count = np.unique(source_ids[self._by_source], return_index=True, return_counts=True)
        self.epoch, self._kept = None, None
        self.set_epoch(epoch)

    @property
    def sources(self):
        return len(self._count)

    def chosen(self, epoch):
        """The indices of the pairs that epoch ``epoch`` trains on, one per source, ascending."""
        pick = np.random.default_rng([self.seed, epoch]).integers(0, self._count)
        return np.sort(self._by_source[self._first + pick])

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return False  # the pairs change every epoch: batches are built anew

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        if epoch != self.epoch:
            kept = np.zeros(len(self.dataset), dtype=bool)
            kept[self.chosen(epoch)] = True
            self.epoch, self._kept = epoch, kept

    def ordered_indices(self):
        """The wrapped split's order (its shuffle and length sort), restricted to this epoch's pairs."""
        order = self.dataset.ordered_indices()
        return order[self._kept[order]]
